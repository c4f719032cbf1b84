//! The incident report: markdown for people, written beside the state as `report.md` (0600).
//! Built only from the saved state, which holds nothing unredacted.

use super::state::{Incident, Status};
use super::{SYMPTOMS, ranked};
use crate::diagnose::finding::Severity;

/// Escapes what would break a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The report of `inc`.
pub fn render(inc: &Incident) -> String {
    let mut o = format!("# Incident {}\n\n", inc.id);
    o.push_str(&format!("- started: {}\n", inc.started_at));
    o.push_str(&format!(
        "- ended: {}\n",
        inc.ended_at.as_deref().unwrap_or("(not yet)")
    ));
    o.push_str(&format!("- status: {}\n", inc.status.as_str()));
    o.push_str(&format!(
        "- cluster: context `{}`, namespace `{}`\n",
        inc.context.as_deref().unwrap_or("(in-cluster or default)"),
        inc.namespace
    ));

    o.push_str("\n## Symptoms\n\n");
    match &inc.symptoms {
        None => o.push_str("(not asked yet)\n"),
        Some(keys) if keys.is_empty() => o.push_str("- none chosen: everything was checked\n"),
        Some(keys) => {
            for k in keys {
                let label = SYMPTOMS
                    .iter()
                    .find(|s| s.key == k)
                    .map_or(k.as_str(), |s| s.label);
                o.push_str(&format!("- {label}\n"));
            }
        }
    }

    o.push_str("\n## Timeline\n\n| time (UTC) | what |\n|---|---|\n");
    for e in &inc.timeline {
        o.push_str(&format!("| {} | {} |\n", e.at, cell(&e.what)));
    }

    o.push_str("\n## Findings\n\n");
    match &inc.findings {
        None => o.push_str("(no diagnosis yet)\n"),
        Some(fs) => {
            let shown = ranked(fs);
            if shown.is_empty() {
                o.push_str("Nothing above ok was found.\n");
            }
            for f in shown {
                o.push_str(&format!(
                    "- **{}** `{}`{}: {}\n",
                    f.severity.as_str(),
                    f.check,
                    f.subject
                        .as_deref()
                        .map(|s| format!(" ({s})"))
                        .unwrap_or_default(),
                    f.summary
                ));
                if let Some(others) = f.others(10) {
                    o.push_str(&format!("  - also: {others}\n"));
                }
                for e in &f.evidence {
                    o.push_str(&format!("  - seen: {e}\n"));
                }
                if let Some(n) = &f.next_step {
                    o.push_str(&format!("  - next: `{n}`\n"));
                }
            }
        }
    }

    o.push_str("\n## Runbook\n\n");
    match &inc.chosen {
        None if inc.runbook_done => o.push_str("None was run.\n"),
        None => o.push_str("(none chosen yet)\n"),
        Some(c) => {
            o.push_str(&format!(
                "`{}` — {} ({})\n",
                c.runbook,
                c.title,
                inc.runbook_status.as_deref().unwrap_or("not finished")
            ));
            if !c.inputs.is_empty() {
                let inputs: Vec<String> =
                    c.inputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                o.push_str(&format!("\nInputs: `{}`\n", inputs.join("`, `")));
            }
            if !inc.steps.is_empty() {
                o.push_str(
                    "\n| step | action | effect | status | result |\n|---|---|---|---|---|\n",
                );
                for s in &inc.steps {
                    let mut result = s.summary.clone();
                    if let Some(c) = &s.change {
                        result = format!("{c}: {result}");
                    }
                    if let Some(e) = &s.error {
                        result = format!("{result} (error: {e})");
                    }
                    o.push_str(&format!(
                        "| {} | `{}` | {} | {} | {} |\n",
                        cell(&s.title),
                        s.action,
                        s.effect,
                        s.status,
                        cell(&result)
                    ));
                }
            }
        }
    }

    o.push_str("\n## Actions\n\n");
    if inc.actions.is_empty() {
        o.push_str("Nothing was changed.\n");
    }
    for a in &inc.actions {
        o.push_str(&format!(
            "- {} — `{}` ({}, {})\n",
            a.at, a.change, a.step, a.status
        ));
        for (before, after) in &a.rechecks {
            o.push_str(&format!(
                "  - before: {} ({}): {}\n  - after: {}\n",
                before.label(),
                before.severity.as_str(),
                before.summary,
                after.describe(before)
            ));
        }
        if !a.recheck_note.is_empty() {
            o.push_str(&format!("  - re-check: {}\n", a.recheck_note));
        }
    }

    o.push_str("\n## Notes\n\n");
    if inc.notes.is_empty() {
        o.push_str("None.\n");
    }
    for n in &inc.notes {
        o.push_str(&format!("- {}: {}\n", n.at, n.text));
    }

    o.push_str("\n## Still open\n\n");
    match (&inc.still_open, &inc.final_check) {
        (_, Some(why)) if inc.still_open.is_none() => {
            o.push_str(&format!("The final check could not run: {why}\n"));
        }
        (None, _) => o.push_str(if inc.status == Status::Closed {
            "Not checked.\n"
        } else {
            "(the incident is not closed yet)\n"
        }),
        (Some(open), _) if open.is_empty() => {
            o.push_str(
                "Nothing above info: the final check found no warning or critical finding.\n",
            );
        }
        (Some(open), _) => {
            for f in open {
                let mark = if f.severity == Severity::Critical {
                    "**critical**"
                } else {
                    f.severity.as_str()
                };
                o.push_str(&format!("- {mark} {}: {}\n", f.label(), f.summary));
            }
        }
    }

    if !inc.transcripts.is_empty() {
        o.push_str("\n## Transcripts\n\n");
        for t in &inc.transcripts {
            o.push_str(&format!("- {t}\n"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::finding::{Component, Finding};
    use crate::incident::state::{Action, Chosen, Note, StepDone};
    use crate::incident::{FindingRef, Verdict};

    #[test]
    fn a_report_holds_timeline_findings_actions_notes_and_what_is_open() {
        let mut inc = Incident::new(
            "ID-1".into(),
            "new-api".into(),
            Some("sandbox".into()),
            "t0".into(),
        );
        inc.symptoms = Some(vec!["restarting".into(), "database".into()]);
        let crash = Finding::new(
            Component::Pods,
            "pods.crashloop",
            Severity::Critical,
            "slave in CrashLoopBackOff (OOMKilled 137)",
        )
        .subject("pod/slave-1")
        .evidence("lastState.terminated: OOMKilled exit 137")
        .next("newapi-ops runbook run oomkilled");
        inc.findings = Some(vec![
            crash.clone(),
            Finding::new(Component::Mysql, "mysql.ping", Severity::Ok, "fine"),
        ]);
        inc.event("t1".into(), "diagnosed | 1 critical");
        inc.chosen = Some(Chosen {
            runbook: "oomkilled".into(),
            title: "Pods are OOMKilled".into(),
            inputs: vec![("delete_pod".into(), "slave-1".into())],
            findings: vec![FindingRef::of(&crash)],
        });
        inc.runbook_status = Some("completed".into());
        inc.steps.push(StepDone {
            id: "fresh_pod".into(),
            title: "Delete the pod".into(),
            action: "pod.delete".into(),
            effect: "mutating".into(),
            status: "ok".into(),
            summary: "deleted".into(),
            change: Some("delete pod slave-1".into()),
            error: None,
            output: serde_json::Value::Null,
            at: "t2".into(),
        });
        inc.actions.push(Action {
            step: "fresh_pod".into(),
            change: "delete pod slave-1".into(),
            status: "ok".into(),
            at: "t2".into(),
            rechecks: vec![(
                FindingRef::of(&crash),
                Verdict::Moved {
                    subjects: vec!["pod/slave-2".into()],
                },
            )],
            recheck_note: "watched 20s".into(),
        });
        inc.notes.push(Note {
            at: "t3".into(),
            text: "limit raised to 3Gi | by hand".into(),
        });
        inc.still_open = Some(vec![FindingRef::of(&crash)]);
        inc.status = Status::Closed;
        inc.ended_at = Some("t4".into());
        let md = render(&inc);
        assert!(md.starts_with("# Incident ID-1\n"));
        assert!(md.contains("- Pods restarting or not starting\n- Database errors\n"));
        assert!(md.contains("| t1 | diagnosed \\| 1 critical |"), "{md}");
        assert!(
            md.contains("- **critical** `pods.crashloop` (pod/slave-1): slave in CrashLoopBackOff")
        );
        assert!(md.contains("  - seen: lastState.terminated: OOMKilled exit 137"));
        assert!(!md.contains("mysql.ping"), "ok findings are left out");
        assert!(md.contains(
            "| Delete the pod | `pod.delete` | mutating | ok | delete pod slave-1: deleted |"
        ));
        assert!(md.contains("- t2 — `delete pod slave-1` (fresh_pod, ok)"));
        assert!(md.contains("  - after: pods.crashloop on pod/slave-1: not fixed — the same problem is now on pod/slave-2"));
        assert!(md.contains("- t3: limit raised to 3Gi | by hand"));
        assert!(md.contains("## Still open\n\n- **critical** pods.crashloop on pod/slave-1"));
    }
}
