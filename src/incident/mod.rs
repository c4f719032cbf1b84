//! `newapi-ops incident`: the guided way from "something is wrong" to a written report. This
//! module holds what the flow decides with, free of I/O so it is unit-tested here: the symptoms
//! an operator can pick (and the checks and words each brings), the ranking of runbooks by
//! symptoms and findings, the re-check verdict after a change, and the saved state that
//! `--resume` continues from. The flow itself is [`flow`] ([`run`]); the questions are behind
//! [`prompt::Prompter`]; the report is [`report`].

pub mod flow;
pub mod prompt;
pub mod report;
pub mod state;

pub use flow::{Options, Outcome, Resume, listen_for_ctrl_c, resumable, run};

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::diagnose::finding::{Component, Finding, Severity};
use crate::runbook::model::Runbook;

/// Something an operator can say is wrong.
#[derive(Debug, Clone, Copy)]
pub struct Symptom {
    pub key: &'static str,
    pub label: &'static str,
    /// The diagnose checks it needs.
    pub components: &'static [Component],
    /// Words matched against the runbooks' symptoms, names and titles.
    pub words: &'static [&'static str],
}

use Component as C;

/// The symptoms of the first question, in the order shown.
pub const SYMPTOMS: &[Symptom] = &[
    Symptom {
        key: "restarting",
        label: "Pods restarting or not starting",
        components: &[C::Pods, C::Logs, C::Nodes, C::Config],
        words: &["crashloop", "restart", "oom", "startup", "pending"],
    },
    Symptom {
        key: "5xx",
        label: "5xx / 502 errors",
        components: &[C::Pods, C::App, C::Logs, C::Mysql, C::Redis],
        words: &["502", "not ready", "crashloop", "connection refused"],
    },
    Symptom {
        key: "slow",
        label: "Slow responses",
        components: &[C::App, C::Mysql, C::Redis, C::Nodes, C::Pods],
        words: &["slow", "latency", "timeout", "hit rate"],
    },
    Symptom {
        key: "sessions",
        label: "Users logged out or sessions failing",
        components: &[C::Config, C::Redis, C::Logs, C::App],
        words: &["session", "securecookie", "logged out", "redis"],
    },
    Symptom {
        key: "database",
        label: "Database errors",
        components: &[C::Mysql, C::Logs, C::Pods, C::Config],
        words: &["database", "mysql", "too many connections", "connection"],
    },
    Symptom {
        key: "resources",
        label: "High CPU or memory",
        components: &[C::Nodes, C::Pods, C::Logs],
        words: &["cpu", "memory", "oom"],
    },
    Symptom {
        key: "scaling",
        label: "Scaling needed",
        components: &[C::Nodes, C::Pods, C::App],
        words: &["scale", "capacity", "qps"],
    },
    Symptom {
        key: "unknown",
        label: "I don't know — check everything",
        components: &Component::ALL,
        words: &[],
    },
];

/// The symptom with this key.
pub fn symptom(key: &str) -> Option<&'static Symptom> {
    SYMPTOMS.iter().find(|s| s.key == key)
}

/// The checks the chosen symptoms need, in diagnose's order; everything when none was chosen.
pub fn components_for(keys: &[String]) -> Vec<Component> {
    let chosen: Vec<&Symptom> = keys.iter().filter_map(|k| symptom(k)).collect();
    if chosen.is_empty() {
        return Component::ALL.to_vec();
    }
    Component::ALL
        .into_iter()
        .filter(|c| chosen.iter().any(|s| s.components.contains(c)))
        .collect()
}

/// A finding as the incident remembers it: enough to find it again in a later report. A grouped
/// finding keeps every subject it had (`subject` is the worst).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRef {
    pub component: Component,
    pub check: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub summary: String,
    /// Every subject of a grouped finding (more than one); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

impl FindingRef {
    pub fn of(f: &Finding) -> FindingRef {
        let names = f.subject_names();
        FindingRef {
            component: f.component,
            check: f.check.clone(),
            severity: f.severity,
            subject: f.subject.clone(),
            summary: f.summary.clone(),
            subjects: if names.len() > 1 {
                names.into_iter().map(str::to_string).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Its subjects: all of a group's, else the one.
    pub fn subject_names(&self) -> Vec<&str> {
        if self.subjects.is_empty() {
            self.subject.as_deref().into_iter().collect()
        } else {
            self.subjects.iter().map(String::as_str).collect()
        }
    }

    /// `pods.crashloop on pod/x`, `pods.crashloop on pod/x and 9 more`.
    pub fn label(&self) -> String {
        let more = self.subjects.len().saturating_sub(1);
        match &self.subject {
            Some(s) if more > 0 => format!("{} on {s} and {more} more", self.check),
            Some(s) => format!("{} on {s}", self.check),
            None => self.check.clone(),
        }
    }
}

/// A runbook that fits, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub runbook: String,
    pub title: String,
    /// One line: which findings point to it and which symptoms it matches.
    pub why: String,
    pub score: u32,
    /// The findings it is meant to fix: what is re-checked after its changes.
    pub findings: Vec<FindingRef>,
}

static RUNBOOK_RUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"runbook run ([a-z0-9][a-z0-9-]*)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// The runbook a finding's next step names, if any.
pub fn runbook_of(f: &Finding) -> Option<&str> {
    let next = f.next_step.as_deref()?;
    RUNBOOK_RUN
        .captures(next)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

fn weight(s: Severity) -> u32 {
    match s {
        Severity::Critical => 10,
        Severity::Warning => 5,
        Severity::Info => 1,
        Severity::Ok => 0,
    }
}

/// Ranks the runbooks: each finding (above ok) whose next step names a runbook counts for it by
/// its severity; each symptom word the runbook matches counts two. Runbooks with nothing for
/// them are left out.
pub fn propose(
    runbooks: &[Runbook],
    symptom_keys: &[String],
    findings: &[Finding],
) -> Vec<Proposal> {
    let chosen: Vec<&Symptom> = symptom_keys.iter().filter_map(|k| symptom(k)).collect();
    let mut out = Vec::new();
    for rb in runbooks {
        let pointing: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity > Severity::Ok && runbook_of(f) == Some(rb.name.as_str()))
            .collect();
        let mut matched: Vec<&str> = Vec::new();
        let mut symptom_score = 0;
        for s in &chosen {
            let words: Vec<String> = s.words.iter().map(|w| (*w).to_string()).collect();
            let n = rb.score(&words);
            if n > 0 {
                matched.push(s.label);
                symptom_score += 2 * u32::try_from(n).unwrap_or(u32::MAX / 4);
            }
        }
        let finding_score: u32 = pointing.iter().map(|f| weight(f.severity)).sum();
        let score = finding_score + symptom_score;
        if score == 0 {
            continue;
        }
        let mut refs: Vec<FindingRef> = pointing.iter().map(|f| FindingRef::of(f)).collect();
        refs.sort_by_key(|r| std::cmp::Reverse(r.severity));
        let mut why = Vec::new();
        if !refs.is_empty() {
            let shown: Vec<String> = refs
                .iter()
                .take(3)
                .map(|r| format!("{} ({})", r.label(), r.severity.as_str()))
                .collect();
            let more = refs.len().saturating_sub(3);
            why.push(format!(
                "{} to it: {}{}",
                crate::units::plural(refs.len() as u64, "finding points", "findings point"),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if !matched.is_empty() {
            why.push(format!("matches what you saw: {}", matched.join(", ")));
        }
        out.push(Proposal {
            runbook: rb.name.clone(),
            title: rb.title.clone(),
            why: why.join("; "),
            score,
            findings: refs,
        });
    }
    out.sort_by(|a, b| b.score.cmp(&a.score).then(a.runbook.cmp(&b.runbook)));
    out
}

/// Findings worth showing, worst first (ok findings dropped).
pub fn ranked(findings: &[Finding]) -> Vec<&Finding> {
    let mut v: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity > Severity::Ok)
        .collect();
    v.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.component.cmp(&b.component))
            .then(a.check.cmp(&b.check))
    });
    v
}

/// What a re-check found of a finding a change was meant to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Not reported any more.
    Gone,
    /// Still reported about the same subject.
    Still { summary: String },
    /// Gone from its subject, but the same check now fires on others (a replaced pod that
    /// fails the same way).
    Moved { subjects: Vec<String> },
}

impl Verdict {
    pub fn describe(&self, target: &FindingRef) -> String {
        match self {
            Verdict::Gone => format!("{}: gone", target.label()),
            Verdict::Still { summary } => format!("{}: still there — {summary}", target.label()),
            Verdict::Moved { subjects } => format!(
                "{}: not fixed — the same problem is now on {}",
                target.label(),
                subjects.join(", ")
            ),
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self, Verdict::Gone)
    }
}

/// Looks for `target` in a new set of (grouped) findings: still there when the same check still
/// names any of its subjects; moved when that check now names only other subjects.
pub fn verdict(target: &FindingRef, now: &[Finding]) -> Verdict {
    let same_check: Vec<&Finding> = now
        .iter()
        .filter(|f| f.severity > Severity::Ok && f.check == target.check)
        .collect();
    let wanted = target.subject_names();
    let still = if wanted.is_empty() {
        same_check.iter().find(|f| f.subject.is_none())
    } else {
        same_check
            .iter()
            .find(|f| wanted.iter().any(|s| f.is_about(s)))
    };
    if let Some(f) = still {
        let left: Vec<&str> = wanted.iter().copied().filter(|s| f.is_about(s)).collect();
        let summary = if wanted.len() > 1 {
            let left: Vec<String> = left.iter().map(|s| (*s).to_string()).collect();
            format!(
                "{} of {}: {}",
                left.len(),
                wanted.len(),
                crate::units::list_and_verb(&left, "is still there", "are still there")
            )
        } else {
            f.subjects
                .iter()
                .find(|s| wanted.contains(&s.subject.as_str()))
                .map_or_else(|| f.summary.clone(), |s| s.summary.clone())
        };
        return Verdict::Still { summary };
    }
    let others: Vec<String> = same_check
        .iter()
        .flat_map(|f| f.subject_names())
        .map(str::to_string)
        .collect();
    if !wanted.is_empty() && !others.is_empty() {
        Verdict::Moved { subjects: others }
    } else {
        Verdict::Gone
    }
}

/// The findings a change is meant to fix: those of the proposal whose subjects the change names
/// (`delete pod new-api-slave-x`) — a group narrowed to the subjects named —, else all of them.
pub fn targets_of(change: &str, findings: &[FindingRef]) -> Vec<FindingRef> {
    // A whole name: `slave-1` is not named by `delete pod slave-10`.
    let named_in_change = |s: &str| {
        let name = s.rsplit('/').next().unwrap_or(s);
        let part_of_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        !name.is_empty()
            && change.match_indices(name).any(|(i, _)| {
                !change[..i].chars().next_back().is_some_and(part_of_name)
                    && !change[i + name.len()..]
                        .chars()
                        .next()
                        .is_some_and(part_of_name)
            })
    };
    let named: Vec<FindingRef> = findings
        .iter()
        .filter_map(|f| {
            let hit: Vec<&str> = f
                .subject_names()
                .into_iter()
                .filter(|s| named_in_change(s))
                .collect();
            if hit.is_empty() {
                return None;
            }
            let mut narrowed = f.clone();
            if hit.len() < f.subject_names().len() {
                narrowed.subject = Some(hit[0].to_string());
                narrowed.subjects = if hit.len() > 1 {
                    hit.iter().map(|s| (*s).to_string()).collect()
                } else {
                    Vec::new()
                };
            }
            Some(narrowed)
        })
        .collect();
    if named.is_empty() {
        findings.to_vec()
    } else {
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(check: &str, sev: Severity, subject: Option<&str>, next: Option<&str>) -> Finding {
        let mut x = Finding::new(Component::Pods, check, sev, format!("{check} summary"));
        if let Some(s) = subject {
            x = x.subject(s);
        }
        if let Some(n) = next {
            x = x.next(n);
        }
        x
    }

    fn library() -> Vec<Runbook> {
        crate::runbook::library::load(&[]).runbooks
    }

    #[test]
    fn symptoms_choose_the_checks_and_nothing_chosen_means_everything() {
        assert_eq!(components_for(&[]), Component::ALL.to_vec());
        assert_eq!(components_for(&["unknown".into()]), Component::ALL.to_vec());
        let db = components_for(&["database".into()]);
        assert_eq!(db, vec![C::Pods, C::Logs, C::Mysql, C::Config]);
        let two = components_for(&["sessions".into(), "scaling".into()]);
        assert_eq!(
            two,
            vec![C::Pods, C::Nodes, C::Logs, C::Redis, C::App, C::Config]
        );
        // Every symptom's key is unique and the last one checks everything.
        let mut keys: Vec<&str> = SYMPTOMS.iter().map(|s| s.key).collect();
        keys.dedup();
        assert_eq!(keys.len(), SYMPTOMS.len());
    }

    #[test]
    fn findings_outrank_symptom_words_and_each_proposal_says_why() {
        let findings = vec![
            f(
                "pods.crashloop",
                Severity::Critical,
                Some("pod/new-api-slave-1"),
                Some("newapi-ops runbook run oomkilled --input delete_pod=new-api-slave-1"),
            ),
            f(
                "logs.mysql-too-many-connections",
                Severity::Critical,
                Some("pod/new-api-slave-1"),
                Some("newapi-ops runbook run db-connection"),
            ),
            f(
                "pods.restarts",
                Severity::Warning,
                Some("pod/new-api-slave-1"),
                Some("newapi-ops runbook run oomkilled"),
            ),
            f(
                "pods.ok",
                Severity::Ok,
                None,
                Some("newapi-ops runbook run scale-out"),
            ),
        ];
        let p = propose(&library(), &["restarting".into()], &findings);
        let names: Vec<&str> = p.iter().map(|p| p.runbook.as_str()).collect();
        assert_eq!(names[0], "oomkilled", "{p:#?}");
        assert!(names.contains(&"db-connection"));
        assert!(
            names.contains(&"pod-startup-failure"),
            "symptom words alone: {names:?}"
        );
        assert!(
            !names.contains(&"scale-out"),
            "an ok finding proposes nothing"
        );
        assert!(!names.contains(&"backup"));
        let oom = &p[0];
        assert!(
            oom.why.starts_with("2 findings point to it: pods.crashloop on pod/new-api-slave-1 (critical), pods.restarts"),
            "{}",
            oom.why
        );
        assert!(
            oom.why.contains("matches what you saw: Pods restarting"),
            "{}",
            oom.why
        );
        assert_eq!(oom.findings.len(), 2);
        let startup = p
            .iter()
            .find(|p| p.runbook == "pod-startup-failure")
            .unwrap();
        assert!(startup.findings.is_empty());
        assert!(
            startup.why.starts_with("matches what you saw"),
            "{}",
            startup.why
        );
    }

    #[test]
    fn nothing_proposed_without_findings_or_matching_symptoms() {
        assert!(propose(&library(), &["unknown".into()], &[]).is_empty());
    }

    #[test]
    fn a_recheck_tells_gone_still_and_moved_apart() {
        let target = FindingRef::of(&f(
            "pods.crashloop",
            Severity::Critical,
            Some("pod/a"),
            None,
        ));
        assert_eq!(verdict(&target, &[]), Verdict::Gone);
        let still = [f("pods.crashloop", Severity::Critical, Some("pod/a"), None)];
        assert!(matches!(verdict(&target, &still), Verdict::Still { .. }));
        let moved = [
            f("pods.crashloop", Severity::Critical, Some("pod/b"), None),
            f("pods.restarts", Severity::Warning, Some("pod/a"), None),
        ];
        assert_eq!(
            verdict(&target, &moved),
            Verdict::Moved {
                subjects: vec!["pod/b".into()]
            }
        );
        assert!(
            Verdict::Moved {
                subjects: vec!["pod/b".into()]
            }
            .describe(&target)
            .contains("not fixed — the same problem is now on pod/b")
        );
        // An ok finding of the same check does not count.
        let ok = [f("pods.crashloop", Severity::Ok, Some("pod/a"), None)];
        assert_eq!(verdict(&target, &ok), Verdict::Gone);
    }

    #[test]
    fn a_change_targets_the_findings_about_what_it_names() {
        let refs = vec![
            FindingRef::of(&f(
                "pods.crashloop",
                Severity::Critical,
                Some("pod/slave-1"),
                None,
            )),
            FindingRef::of(&f(
                "pods.crashloop",
                Severity::Critical,
                Some("pod/slave-2"),
                None,
            )),
            FindingRef::of(&f("deployments.unavailable", Severity::Warning, None, None)),
        ];
        let t = targets_of(
            "delete pod slave-2 (its Deployment starts a new one)",
            &refs,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].subject.as_deref(), Some("pod/slave-2"));
        assert_eq!(targets_of("scale new-api-slave 3 → 5", &refs).len(), 3);
    }

    #[test]
    fn a_grouped_finding_is_still_there_while_any_of_its_subjects_is() {
        let crash = |names: &[&str]| {
            crate::diagnose::finding::group(
                names
                    .iter()
                    .map(|n| {
                        f("pods.crashloop", Severity::Critical, Some(n), None)
                            .cause("CrashLoopBackOff (last exit: OOMKilled 137)")
                    })
                    .collect(),
            )
        };
        let before = crash(&["pod/a", "pod/b", "pod/c"]);
        assert_eq!(before.len(), 1);
        let target = FindingRef::of(&before[0]);
        assert_eq!(target.label(), "pods.crashloop on pod/a and 2 more");
        match verdict(&target, &crash(&["pod/c", "pod/x"])) {
            Verdict::Still { summary } => {
                assert_eq!(summary, "1 of 3: pod/c is still there");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            verdict(&target, &crash(&["pod/x", "pod/y"])),
            Verdict::Moved {
                subjects: vec!["pod/x".into(), "pod/y".into()]
            }
        );
        assert_eq!(verdict(&target, &[]), Verdict::Gone);
        // A change that names one pod of the group re-checks that pod.
        let t = targets_of(
            "delete pod b in namespace new-api",
            std::slice::from_ref(&target),
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].subject.as_deref(), t[0].subjects.len()),
            (Some("pod/b"), 0)
        );
        assert!(matches!(
            verdict(&t[0], &crash(&["pod/a", "pod/c"])),
            Verdict::Moved { .. }
        ));
    }

    #[test]
    fn the_runbook_a_next_step_names() {
        let x = f(
            "a",
            Severity::Warning,
            None,
            Some("newapi-ops runbook run db-connection --input x=1"),
        );
        assert_eq!(runbook_of(&x), Some("db-connection"));
        assert_eq!(
            runbook_of(&f("a", Severity::Warning, None, Some("kubectl get pods"))),
            None
        );
        assert_eq!(runbook_of(&f("a", Severity::Warning, None, None)), None);
    }
}
