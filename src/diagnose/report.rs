//! The diagnose report: a one-screen summary, then the findings grouped by component. Its JSON
//! form is the documented `-o json` schema (README.md, "diagnose JSON").

use serde::Serialize;

use super::finding::{Component, Finding, Severity};
use crate::printer::Style;

/// Schema version of the JSON report; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// How one component's checks went.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentRun {
    pub component: Component,
    /// The worst severity among its findings.
    pub severity: Severity,
    pub findings: usize,
    pub duration_ms: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
    pub ok: usize,
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
    pub components: Vec<ComponentRun>,
    /// Sorted by component, then severity (worst first).
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(
        namespace: String,
        context: Option<String>,
        started_at: String,
        duration_ms: u128,
        mut runs: Vec<ComponentRun>,
        mut findings: Vec<Finding>,
    ) -> Report {
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
        Report {
            schema_version: SCHEMA_VERSION,
            namespace,
            context,
            started_at,
            duration_ms,
            severity,
            counts,
            components: runs,
            findings,
        }
    }

    /// 0 when nothing is above info, 1 for warnings, 2 for anything critical (the mapping is
    /// [`crate::error::report_exit_code`]).
    pub fn exit_code(&self) -> u8 {
        crate::error::report_exit_code(self.severity)
    }

    pub fn render(&self, style: Style) -> String {
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
        out.push_str(&format!(
            "{}  {}  {} info  {}\n\n",
            paint(
                style,
                Severity::Critical,
                &format!("{} critical", c.critical)
            ),
            paint(style, Severity::Warning, &format!("{} warning", c.warning)),
            c.info,
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
            let subject = f
                .subject
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {}{}: {}\n",
                paint(
                    style,
                    f.severity,
                    &format!("{:<8}", f.severity.as_str().to_uppercase())
                ),
                style.dim(&f.check),
                subject,
                f.summary
            ));
            for e in &f.evidence {
                out.push_str(&format!("         {} {e}\n", style.dim("seen:")));
            }
            if let Some(n) = &f.next_step {
                out.push_str(&format!("         {} {n}\n", style.bold("next:")));
            }
        }
        out
    }
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
}
