//! The diagnose report: a one-screen summary, then the findings grouped by component. Its JSON
//! form is the documented `-o json` schema (README.md, "diagnose JSON").

use serde::Serialize;

use super::finding::{Component, Finding, Severity};
use crate::printer::Style;

/// Schema version of the JSON report; bumped on incompatible changes. 2: findings are grouped
/// (one per check and cause, with `cause`, `count` and `subjects`); `counts` count those groups
/// and `pods_affected` the pods behind them.
pub const SCHEMA_VERSION: u32 = 2;

/// How one component's checks went.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentRun {
    pub component: Component,
    /// The worst severity among its findings.
    pub severity: Severity,
    /// Its findings (groups).
    pub findings: usize,
    pub duration_ms: u128,
}

/// Findings (groups) per severity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
    pub ok: usize,
}

/// Distinct pods named by the findings of each severity (a pod counts once, at its worst).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Affected {
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub namespace: String,
    pub context: Option<String>,
    pub started_at: String,
    pub duration_ms: u128,
    /// The worst severity found: decides the exit code (0 ok/info, 1 warning, 2 critical).
    pub severity: Severity,
    pub counts: Counts,
    pub pods_affected: Affected,
    pub components: Vec<ComponentRun>,
    /// Grouped ([`super::finding::group`]); sorted by component, then severity (worst first).
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(
        namespace: String,
        context: Option<String>,
        started_at: String,
        duration_ms: u128,
        mut runs: Vec<ComponentRun>,
        findings: Vec<Finding>,
    ) -> Report {
        let mut findings = super::finding::group(findings);
        findings.sort_by(|a, b| {
            (
                a.component,
                std::cmp::Reverse(a.severity),
                &a.subject,
                &a.check,
            )
                .cmp(&(
                    b.component,
                    std::cmp::Reverse(b.severity),
                    &b.subject,
                    &b.check,
                ))
        });
        runs.sort_by_key(|r| r.component);
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let counts = Counts {
            critical: count(Severity::Critical),
            warning: count(Severity::Warning),
            info: count(Severity::Info),
            ok: count(Severity::Ok),
        };
        let severity = findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok);
        let pods_affected = affected(&findings);
        Report {
            schema_version: SCHEMA_VERSION,
            namespace,
            context,
            started_at,
            duration_ms,
            severity,
            counts,
            pods_affected,
            components: runs,
            findings,
        }
    }

    /// 0 when nothing is above info, 1 for warnings, 2 for anything critical (the mapping is
    /// [`crate::error::report_exit_code`]).
    pub fn exit_code(&self) -> u8 {
        crate::error::report_exit_code(self.severity)
    }

    /// The report for people. A grouped finding shows its worst subject and a few more;
    /// `expand` lists every subject.
    pub fn render(&self, style: Style, expand: bool) -> String {
        let mut out = String::new();
        let ctx = self
            .context
            .as_deref()
            .map(|c| format!(", context {c}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} namespace {}{ctx} — {} in {:.1} s\n",
            style.bold("newapi-ops diagnose:"),
            self.namespace,
            self.started_at,
            self.duration_ms as f64 / 1000.0
        ));
        let c = &self.counts;
        let a = &self.pods_affected;
        let pods = |n: usize| {
            if n == 0 {
                String::new()
            } else {
                format!(" ({})", crate::units::plural(n as u64, "pod", "pods"))
            }
        };
        out.push_str(&format!(
            "{}  {}  {} info{}  {}\n\n",
            paint(
                style,
                Severity::Critical,
                &format!("{} critical{}", c.critical, pods(a.critical))
            ),
            paint(
                style,
                Severity::Warning,
                &format!("{} warning{}", c.warning, pods(a.warning))
            ),
            c.info,
            pods(a.info),
            paint(style, Severity::Ok, &format!("{} ok", c.ok)),
        ));
        // Summary: one line per component, its worst finding.
        for run in &self.components {
            let worst = self.findings.iter().find(|f| f.component == run.component);
            let text = worst.map_or("no findings".to_string(), |f| f.summary.clone());
            let more = run.findings.saturating_sub(1);
            let more = if more > 0 {
                style.dim(&format!(" (+{more} more)"))
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {:<7} {} {}{more}\n",
                run.component.as_str(),
                paint(
                    style,
                    run.severity,
                    &format!("{:<8}", run.severity.as_str())
                ),
                text
            ));
        }
        let notable: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.severity > Severity::Ok)
            .collect();
        if notable.is_empty() {
            out.push_str("\nNothing to do.\n");
            return out;
        }
        let mut current = None;
        for f in notable {
            if current != Some(f.component) {
                current = Some(f.component);
                out.push_str(&format!(
                    "\n{}\n",
                    style.bold(&format!("── {} ──", f.component.as_str()))
                ));
            }
            render_finding(&mut out, f, style, expand);
        }
        out
    }
}

/// How many more subjects of a group the human report names besides the worst.
const EXAMPLES: usize = 3;

fn render_finding(out: &mut String, f: &Finding, style: Style, expand: bool) {
    let label = paint(
        style,
        f.severity,
        &format!("{:<8}", f.severity.as_str().to_uppercase()),
    );
    let pad = "         ";
    if f.count <= 1 || f.subjects.len() <= 1 {
        let subject = f
            .subject
            .as_deref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{label} {}{subject}: {}\n",
            style.dim(&f.check),
            f.summary
        ));
    } else {
        out.push_str(&format!("{label} {}: {}\n", style.dim(&f.check), f.summary));
        let worst = &f.subjects[0];
        out.push_str(&format!(
            "{pad}{} {} — {}\n",
            style.dim("worst:"),
            worst.subject,
            worst.summary
        ));
        if expand {
            for s in &f.subjects[1..] {
                out.push_str(&format!(
                    "{pad}{} {} — {}\n",
                    style.dim(&format!("{:<6}", s.severity.as_str())),
                    s.subject,
                    s.summary
                ));
            }
        } else {
            let others = f.others(EXAMPLES).unwrap_or_default();
            let hint = if f.subjects.len() - 1 > EXAMPLES {
                " (--expand lists them)"
            } else {
                ""
            };
            out.push_str(&format!("{pad}{} {others}{hint}\n", style.dim("also:")));
        }
    }
    for e in &f.evidence {
        out.push_str(&format!("{pad}{} {e}\n", style.dim("seen:")));
    }
    if let Some(n) = &f.next_step {
        out.push_str(&format!("{pad}{} {n}\n", style.bold("next:")));
    }
}

/// Distinct pods per severity, each at the worst severity it is named with.
fn affected(findings: &[Finding]) -> Affected {
    let mut worst: std::collections::HashMap<&str, Severity> = std::collections::HashMap::new();
    for f in findings {
        let named: Vec<(&str, Severity)> = if f.subjects.is_empty() {
            f.subject
                .as_deref()
                .map(|s| (s, f.severity))
                .into_iter()
                .collect()
        } else {
            f.subjects
                .iter()
                .map(|s| (s.subject.as_str(), s.severity))
                .collect()
        };
        for (s, sev) in named {
            if s.starts_with("pod/") {
                let e = worst.entry(s).or_insert(sev);
                *e = (*e).max(sev);
            }
        }
    }
    let mut a = Affected::default();
    for sev in worst.values() {
        match sev {
            Severity::Critical => a.critical += 1,
            Severity::Warning => a.warning += 1,
            Severity::Info => a.info += 1,
            Severity::Ok => {}
        }
    }
    a
}

fn paint(style: Style, sev: Severity, s: &str) -> String {
    match sev {
        Severity::Critical => style.red(s),
        Severity::Warning => style.yellow(s),
        Severity::Ok => style.green(s),
        Severity::Info => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_worst_finding() {
        let f = |s| Finding::new(Component::Pods, "x", s, "y");
        let r = |fs: Vec<Finding>| Report::new("ns".into(), None, "t".into(), 1, vec![], fs);
        assert_eq!(r(vec![]).exit_code(), 0);
        assert_eq!(r(vec![f(Severity::Ok), f(Severity::Info)]).exit_code(), 0);
        assert_eq!(
            r(vec![f(Severity::Warning), f(Severity::Info)]).exit_code(),
            1
        );
        assert_eq!(
            r(vec![f(Severity::Warning), f(Severity::Critical)]).exit_code(),
            2
        );
        let rep = r(vec![f(Severity::Info), f(Severity::Critical)]);
        assert_eq!(rep.findings[0].severity, Severity::Critical);
        assert_eq!(rep.counts.critical, 1);
    }

    #[test]
    fn groups_are_counted_once_and_their_pods_each() {
        let hot = |i: usize| {
            Finding::new(
                Component::Nodes,
                "nodes.pod-cpu-usage",
                Severity::Warning,
                format!("pod s-{i} uses 95% of its CPU limit"),
            )
            .subject(format!("pod/s-{i}"))
            .cause("CPU usage above 80% of the limit")
        };
        let mut fs: Vec<Finding> = (0..20).map(hot).collect();
        fs.push(
            Finding::new(
                Component::Pods,
                "pods.crashloop",
                Severity::Critical,
                "crash",
            )
            .subject("pod/s-0")
            .cause("CrashLoopBackOff"),
        );
        let rep = Report::new("ns".into(), None, "t".into(), 1, vec![], fs);
        assert_eq!((rep.counts.critical, rep.counts.warning), (1, 1));
        assert_eq!(
            (rep.pods_affected.critical, rep.pods_affected.warning),
            (1, 19),
            "s-0 counts at its worst"
        );
        let text = rep.render(Style { color: false }, false);
        assert!(
            text.contains("1 critical (1 pod)  1 warning (19 pods)"),
            "{text}"
        );
        assert!(
            text.contains("nodes.pod-cpu-usage: 20 pods: CPU usage above 80% of the limit"),
            "{text}"
        );
        assert!(text.contains("and 16 more (--expand lists them)"), "{text}");
        let all = rep.render(Style { color: false }, true);
        assert_eq!(
            all.matches("uses 95% of its CPU limit").count(),
            20,
            "{all}"
        );
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["schema_version"], 2);
        let g = &json["findings"][1];
        assert_eq!(
            (g["count"].as_u64(), g["subjects"].as_array().map(Vec::len)),
            (Some(20), Some(20))
        );
    }
}
