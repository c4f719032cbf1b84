//! What every check produces: findings with a severity, the evidence seen, and the next step.
//! This is also the `-o json` schema of `diagnose` (documented in README.md).

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Ok < Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The part of the deployment a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Pods,
    Nodes,
    Logs,
    Mysql,
    Redis,
    App,
    Config,
    Backups,
}

impl Component {
    pub const ALL: [Component; 8] = [
        Component::Pods,
        Component::Nodes,
        Component::Logs,
        Component::Mysql,
        Component::Redis,
        Component::App,
        Component::Config,
        Component::Backups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Pods => "pods",
            Component::Nodes => "nodes",
            Component::Logs => "logs",
            Component::Mysql => "mysql",
            Component::Redis => "redis",
            Component::App => "app",
            Component::Config => "config",
            Component::Backups => "backups",
        }
    }
}

/// One thing a check found — or, once grouped ([`group`]), one problem that several subjects
/// share: the findings of one check with one cause become a single finding that carries every
/// subject (`subjects`, worst first) and how many there are (`count`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub component: Component,
    /// A stable identifier of the check, e.g. `mysql.connections`, `pods.crashloop`.
    pub check: String,
    /// The worst severity of its subjects.
    pub severity: Severity,
    /// What makes two findings of this check the same problem, stable across subjects (no pod
    /// names, no counts): `Pending: Insufficient cpu`, `CPU usage above 80% of the limit`. Set by
    /// the check; when it is not, [`group`] derives it from the summary ([`derived_cause`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
    /// What the object is (pod, node, table, ...), when the finding is about one; in a group,
    /// the worst subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line for people: what is wrong (or fine). In a group of more than one subject:
    /// how many share it and the cause (`989 pods: CPU usage above 80% of the limit`); each
    /// subject's own line is in `subjects`.
    pub summary: String,
    /// What was seen: fields, events, log lines, measured values. Never a secret. In a group,
    /// the worst subject's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// What to do next: a command or `runbook run NAME`. In a group, the worst subject's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// How many subjects share this finding (1 for a finding about one thing, or none).
    #[serde(default = "one")]
    pub count: usize,
    /// Every subject, worst first, each with its own severity and summary (schema 2; empty
    /// before grouping and for a finding about no subject).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    /// How bad it is within its severity (a percentage, a restart count): picks the worst
    /// subject of a group. Not part of the report.
    #[serde(skip)]
    pub weight: i64,
}

fn one() -> usize {
    1
}

/// One subject of a grouped finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub subject: String,
    pub severity: Severity,
    /// The line this subject's own finding had.
    pub summary: String,
}

impl Finding {
    pub fn new(
        component: Component,
        check: &str,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Self {
        Finding {
            component,
            check: check.to_string(),
            severity,
            cause: String::new(),
            subject: None,
            summary: summary.into(),
            evidence: Vec::new(),
            next_step: None,
            count: 1,
            subjects: Vec::new(),
            weight: 0,
        }
    }

    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The cause shared by every subject with this problem (see [`Finding::cause`]).
    #[must_use]
    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.cause = cause.into();
        self
    }

    /// How bad within its severity (see [`Finding::weight`]).
    #[must_use]
    pub fn weight(mut self, weight: i64) -> Self {
        self.weight = weight;
        self
    }

    #[must_use]
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }

    #[must_use]
    pub fn next(mut self, step: impl Into<String>) -> Self {
        self.next_step = Some(step.into());
        self
    }

    /// Every subject of the finding: its `subjects`, or the one `subject` of an ungrouped one.
    pub fn subject_names(&self) -> Vec<&str> {
        if self.subjects.is_empty() {
            self.subject.as_deref().into_iter().collect()
        } else {
            self.subjects.iter().map(|s| s.subject.as_str()).collect()
        }
    }

    /// `pod/b, pod/c, pod/d and 985 more`: up to `n` subjects after the worst, and how many
    /// more there are; None for a finding of at most one subject.
    pub fn others(&self, n: usize) -> Option<String> {
        let rest = self.subjects.get(1..).filter(|r| !r.is_empty())?;
        let shown: Vec<&str> = rest.iter().take(n).map(|s| s.subject.as_str()).collect();
        let more = rest.len() - shown.len();
        Some(if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        })
    }

    /// Whether `subject` is one of its subjects.
    pub fn is_about(&self, subject: &str) -> bool {
        self.subject.as_deref() == Some(subject)
            || self.subjects.iter().any(|s| s.subject == subject)
    }
}

/// The cause of a finding whose check did not set one: its summary with the subject's name and
/// every number masked, so that `pod a restarted 7 times` and `pod b restarted 9 times` share
/// `pod * restarted # times`.
pub fn derived_cause(f: &Finding) -> String {
    let mut s = f.summary.clone();
    if let Some(subject) = &f.subject {
        let name = subject.rsplit('/').next().unwrap_or(subject);
        if !name.is_empty() {
            s = s.replace(name, "*");
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut in_number = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            // "1.5 s", "3,000": one number.
            if !(in_number && (c == '.' || c == ',')) {
                in_number = false;
            }
            if !in_number {
                out.push(c);
            }
        }
    }
    out
}

/// What the subjects of a group are, for "989 pods": `pod/x` → pods.
fn noun(subjects: &[Subject]) -> (&'static str, &'static str) {
    let kind = subjects
        .first()
        .and_then(|s| s.subject.split_once('/'))
        .map(|(k, _)| k);
    let same = subjects
        .iter()
        .all(|s| s.subject.split_once('/').map(|(k, _)| k) == kind);
    match kind.filter(|_| same) {
        Some("pod") => ("pod", "pods"),
        Some("node") => ("node", "nodes"),
        Some("deployment") => ("Deployment", "Deployments"),
        Some("statefulset") => ("StatefulSet", "StatefulSets"),
        Some("table") => ("table", "tables"),
        _ => ("subject", "subjects"),
    }
}

/// Groups findings: those of the same component, check and cause become one finding with every
/// subject (worst first: severity, then weight, then name), the worst subject's evidence and next
/// step, and the worst severity. A group of one keeps its own summary; a larger one says how many
/// share the cause. Findings about no subject are grouped the same way (their count adds up).
/// Already grouped findings can be grouped again (their subjects merge).
pub fn group(findings: Vec<Finding>) -> Vec<Finding> {
    let mut order: Vec<(Component, String, String)> = Vec::new();
    let mut groups: std::collections::HashMap<(Component, String, String), Vec<Finding>> =
        std::collections::HashMap::new();
    for mut f in findings {
        if f.cause.is_empty() {
            f.cause = derived_cause(&f);
        }
        let key = (f.component, f.check.clone(), f.cause.clone());
        let entry = groups.entry(key.clone()).or_default();
        if entry.is_empty() {
            order.push(key);
        }
        entry.push(f);
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(merge)
        .collect()
}

/// One group's findings as one finding.
fn merge(mut members: Vec<Finding>) -> Finding {
    members.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.weight.cmp(&a.weight))
            .then(a.subject.cmp(&b.subject))
    });
    let count: usize = members.iter().map(|f| f.count.max(1)).sum();
    let mut subjects: Vec<Subject> = Vec::new();
    for f in &members {
        if f.subjects.is_empty() {
            if let Some(s) = &f.subject {
                subjects.push(Subject {
                    subject: s.clone(),
                    severity: f.severity,
                    summary: f.summary.clone(),
                });
            }
        } else {
            subjects.extend(f.subjects.iter().cloned());
        }
    }
    subjects.sort_by_key(|s| std::cmp::Reverse(s.severity));
    let mut worst = members.swap_remove(0);
    if count > 1 {
        let (one, many) = noun(&subjects);
        let what = if subjects.is_empty() {
            crate::units::plural(count as u64, "finding", "findings")
        } else {
            crate::units::plural(count as u64, one, many)
        };
        worst.summary = format!("{what}: {}", worst.cause);
    }
    worst.count = count;
    worst.subject = subjects
        .first()
        .map(|s| s.subject.clone())
        .or(worst.subject);
    worst.subjects = subjects;
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(check: &str, sev: Severity, name: &str, cause: &str, weight: i64) -> Finding {
        Finding::new(Component::Pods, check, sev, format!("{name} is {weight}"))
            .subject(format!("pod/{name}"))
            .cause(cause)
            .weight(weight)
            .evidence(format!("seen on {name}"))
            .next(format!("look at {name}"))
    }

    #[test]
    fn many_pods_with_one_cause_are_one_finding() {
        let many: Vec<Finding> = (0..989)
            .map(|i| {
                pod(
                    "nodes.pod-cpu-usage",
                    Severity::Warning,
                    &format!("s-{i:03}"),
                    "CPU usage above 80% of the limit",
                    81 + i % 15,
                )
            })
            .collect();
        let out = group(many);
        assert_eq!(out.len(), 1);
        let g = &out[0];
        assert_eq!(g.count, 989);
        assert_eq!(g.subjects.len(), 989);
        assert_eq!(g.summary, "989 pods: CPU usage above 80% of the limit");
        // The worst: highest weight (95), first by name among those.
        assert_eq!(g.subject.as_deref(), Some("pod/s-014"));
        assert_eq!(g.subjects[0].subject, "pod/s-014");
        assert_eq!(g.evidence, vec!["seen on s-014"]);
        assert_eq!(g.next_step.as_deref(), Some("look at s-014"));
        assert!(g.is_about("pod/s-500"));
    }

    #[test]
    fn two_causes_of_one_check_are_two_findings_and_severity_is_the_worst() {
        let out = group(vec![
            pod(
                "pods.pending",
                Severity::Critical,
                "a",
                "Pending: Insufficient cpu",
                0,
            ),
            pod(
                "pods.pending",
                Severity::Critical,
                "b",
                "Pending: pod has unbound immediate PersistentVolumeClaims",
                0,
            ),
            pod(
                "pods.pending",
                Severity::Info,
                "c",
                "Pending: Insufficient cpu",
                0,
            ),
            pod(
                "pods.unready",
                Severity::Warning,
                "a",
                "Pending: Insufficient cpu",
                0,
            ),
        ]);
        assert_eq!(out.len(), 3, "{out:#?}");
        let cpu = &out[0];
        assert_eq!((cpu.count, cpu.severity), (2, Severity::Critical));
        assert_eq!(cpu.subjects[1].severity, Severity::Info);
        assert_eq!(out[1].count, 1);
        assert_eq!(
            out[1].summary, "b is 0",
            "a group of one keeps its own line"
        );
        assert_eq!(out[2].check, "pods.unready");
    }

    #[test]
    fn without_a_cause_the_summary_with_names_and_numbers_masked_decides() {
        let f = |name: &str, n: u32| {
            Finding::new(
                Component::Pods,
                "pods.restarts",
                Severity::Warning,
                format!("slave pod {name} restarted {n} times in 1.5 s"),
            )
            .subject(format!("pod/{name}"))
        };
        assert_eq!(
            derived_cause(&f("x-1", 7)),
            "slave pod * restarted # times in # s"
        );
        let out = group(vec![
            f("x-1", 7),
            f("y-22", 12),
            Finding::new(Component::Pods, "pods.restarts", Severity::Warning, "other"),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].count, 2);
        // Grouping again merges, and a v1 finding (no count) reads as one.
        let again = group(out.clone());
        assert_eq!(again, out);
        let v1: Finding = serde_json::from_str(
            r#"{"component":"pods","check":"x","severity":"ok","summary":"s"}"#,
        )
        .unwrap();
        assert_eq!((v1.count, v1.subjects.len()), (1, 0));
    }
}
