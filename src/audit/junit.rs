//! The report as JUnit XML, for CI: one `<testsuite>` per section, one `<testcase>` per rule
//! (`classname` the section, `name` the rule id); a failing rule is a `<failure>` whose `type` is
//! its severity and whose text is its evidence; a rule not checked is `<skipped>` with the reason.
//! The score and grade are `<properties>` of the whole run.

use super::{Report, Status};

/// Escapes text for XML (content and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// The XML document.
pub fn render(report: &Report) -> String {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let c = &report.counts;
    o.push_str(&format!(
        "<testsuites name=\"newapi-ops audit\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\">\n",
        report.rules.len(),
        c.fail,
        c.not_checked
    ));
    for (section, rules, score) in report.by_section() {
        let count = |s: Status| rules.iter().filter(|r| r.status == s).count();
        o.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" timestamp=\"{}\">\n",
            section.as_str(),
            rules.len(),
            count(Status::Fail),
            count(Status::NotChecked),
            escape(&report.started_at)
        ));
        if let Some(s) = score {
            o.push_str(&format!(
                "    <properties>\n      <property name=\"score\" value=\"{}\"/>\n      <property name=\"grade\" value=\"{}\"/>\n    </properties>\n",
                s.score.map_or_else(|| "-".to_string(), |v| v.to_string()),
                s.grade
            ));
        }
        for r in rules {
            o.push_str(&format!(
                "    <testcase classname=\"audit.{}\" name=\"{}\">\n",
                section.as_str(),
                escape(r.id)
            ));
            let text = |r: &super::Outcome| {
                let mut t = r.summary.clone();
                for e in &r.evidence {
                    t.push_str("\n- ");
                    t.push_str(e);
                }
                t
            };
            match r.status {
                Status::Pass => o.push_str(&format!(
                    "      <system-out>{}</system-out>\n",
                    escape(&text(r))
                )),
                Status::Fail => o.push_str(&format!(
                    "      <failure type=\"{}\" message=\"{}\">{}</failure>\n",
                    r.severity.as_str(),
                    escape(&r.summary),
                    escape(&text(r))
                )),
                Status::NotChecked => o.push_str(&format!(
                    "      <skipped message=\"{}\"/>\n",
                    escape(&r.summary)
                )),
            }
            o.push_str("    </testcase>\n");
        }
        o.push_str("  </testsuite>\n");
    }
    o.push_str("</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;?"
        );
    }
}
