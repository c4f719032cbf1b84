//! The report for people: per section, one line per rule (status, severity, id, summary), the
//! evidence of failing rules under them, the section scores, the grade; then the fixes.

use super::fix::{ChangeStatus, FixReport};
use super::{Report, Severity, Status};
use crate::printer::Style;

fn status_word(s: Status, style: Style) -> String {
    match s {
        Status::Pass => style.green("pass"),
        Status::Fail => style.red("FAIL"),
        Status::NotChecked => style.dim("n/c "),
    }
}

fn severity_word(s: Severity, style: Style) -> String {
    match s {
        Severity::Critical => style.red("critical"),
        Severity::Warning => style.yellow("warning "),
        Severity::Info => "info    ".to_string(),
    }
}

fn score_words(score: Option<u32>, grade: char) -> String {
    match score {
        Some(s) => format!("{grade} ({s}/100)"),
        None => format!("{grade} (nothing could be judged)"),
    }
}

/// The whole report.
pub fn render(report: &Report, style: Style) -> String {
    let mut o = format!(
        "{} namespace {}{}{}\n",
        style.bold("audit of"),
        report.namespace,
        report
            .context
            .as_ref()
            .map(|c| format!(", context {c}"))
            .unwrap_or_default(),
        report
            .server_version
            .as_ref()
            .map(|v| format!(", Kubernetes {v}"))
            .unwrap_or_default()
    );
    for (section, rules, score) in report.by_section() {
        o.push_str(&format!(
            "\n{} — {}\n",
            style.bold(section.title()),
            score.map_or_else(String::new, |s| score_words(s.score, s.grade))
        ));
        for r in rules {
            o.push_str(&format!(
                "  {} {} {:<28} {}\n",
                status_word(r.status, style),
                severity_word(r.severity, style),
                r.id,
                r.summary
            ));
            if r.status == Status::Fail {
                for e in &r.evidence {
                    o.push_str(&format!("{}\n", style.dim(&format!("{:>20}seen: {e}", ""))));
                }
                if let Some(f) = r.fix {
                    o.push_str(&format!(
                        "{}\n",
                        style.dim(&format!(
                            "{:>20}fix:  newapi-ops audit --fix --fixes {f}",
                            ""
                        ))
                    ));
                }
            }
        }
    }
    let c = &report.counts;
    o.push_str(&format!(
        "\n{} {}: {} passed, {} failed, {} not checked\n",
        style.bold("grade"),
        score_words(report.score, report.grade),
        c.pass,
        c.fail,
        c.not_checked
    ));
    if let Some(b) = &report.before {
        o.push_str(&format!(
            "before the fixes: {} ({} failed)\n",
            score_words(b.score, b.grade),
            b.counts.fail
        ));
    }
    if let Some(f) = &report.fixes {
        o.push_str(&render_fixes(f, style));
    }
    o
}

/// The fixes and what became of them.
pub fn render_fixes(f: &FixReport, style: Style) -> String {
    let mut o = String::new();
    if f.fixes.is_empty() && f.skipped.is_empty() {
        o.push_str("\nnothing to fix with a manifest\n");
        return o;
    }
    o.push_str(&format!("\n{} ({})\n", style.bold("fixes"), f.mode));
    for fix in &f.fixes {
        o.push_str(&format!("  {} [{}]: {}\n", fix.id, fix.rule, fix.summary));
        for c in &fix.changes {
            let st = match c.status {
                ChangeStatus::Applied => style.green("applied"),
                ChangeStatus::RolledBack => style.yellow("rolled back"),
                ChangeStatus::Failed => style.red("failed"),
                ChangeStatus::Exists => "exists, left as it is".to_string(),
                ChangeStatus::DryRunOk => "accepted by a dry run".to_string(),
                ChangeStatus::NotApplied => "not applied".to_string(),
                ChangeStatus::Planned => "planned".to_string(),
            };
            o.push_str(&format!("    {} ({}): {st}\n", c.what(), c.api_version));
        }
        for n in &fix.notes {
            o.push_str(&format!("{}\n", style.dim(&format!("    note: {n}"))));
        }
    }
    for s in &f.skipped {
        o.push_str(&format!("  {} {s}\n", style.yellow("not fixed:")));
    }
    if let Some(t) = &f.transcript {
        o.push_str(&format!("transcript: {t}\n"));
    }
    o
}
