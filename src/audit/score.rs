//! Scores and grades. Each rule weighs by its severity (critical 5, warning 3, info 1); a
//! section's score is the weight of its passing rules over the weight of the rules that could be
//! judged (not-checked rules count for nothing either way), 0–100, rounded down. The overall
//! score is the same over every rule. Grades: A ≥ 90, B ≥ 80, C ≥ 70, D ≥ 60, F below; a
//! failing critical rule caps the grade at D. Nothing judged at all grades F.

use serde::Serialize;

use super::{Outcome, Section, Severity, Status};

/// How many rules passed, failed, or could not be judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub not_checked: usize,
}

/// One section's score.
#[derive(Debug, Clone, Serialize)]
pub struct SectionScore {
    pub section: Section,
    pub title: &'static str,
    pub score: Option<u32>,
    pub grade: char,
    pub counts: Counts,
}

/// The score and grade before `--fix` applied anything.
#[derive(Debug, Clone, Serialize)]
pub struct Before {
    pub score: Option<u32>,
    pub grade: char,
    pub counts: Counts,
}

/// Everything [`score`] computes.
#[derive(Debug, Clone)]
pub struct Scored {
    pub score: Option<u32>,
    pub grade: char,
    pub counts: Counts,
    pub sections: Vec<SectionScore>,
}

pub fn weight(s: Severity) -> u32 {
    match s {
        Severity::Critical => 5,
        Severity::Warning => 3,
        Severity::Info => 1,
    }
}

/// The grade of a score, capped at D when a critical rule fails.
pub fn grade(score: Option<u32>, critical_failed: bool) -> char {
    let g = match score {
        Some(s) if s >= 90 => 'A',
        Some(s) if s >= 80 => 'B',
        Some(s) if s >= 70 => 'C',
        Some(s) if s >= 60 => 'D',
        _ => 'F',
    };
    if critical_failed && g < 'D' { 'D' } else { g }
}

fn of<'a>(rules: impl Iterator<Item = &'a Outcome>) -> (Option<u32>, char, Counts) {
    let mut counts = Counts::default();
    let (mut got, mut judged) = (0u32, 0u32);
    let mut critical_failed = false;
    for r in rules {
        match r.status {
            Status::Pass => {
                counts.pass += 1;
                got += weight(r.severity);
                judged += weight(r.severity);
            }
            Status::Fail => {
                counts.fail += 1;
                judged += weight(r.severity);
                critical_failed |= r.severity == Severity::Critical;
            }
            Status::NotChecked => counts.not_checked += 1,
        }
    }
    let score = (judged > 0).then(|| got * 100 / judged);
    (score, grade(score, critical_failed), counts)
}

/// Scores the rules, per section and overall.
pub fn score(rules: &[Outcome]) -> Scored {
    let sections = Section::ALL
        .into_iter()
        .map(|s| {
            let (score, grade, counts) = of(rules.iter().filter(|r| r.section == s));
            SectionScore {
                section: s,
                title: s.title(),
                score,
                grade,
                counts,
            }
        })
        .collect();
    let (score, grade, counts) = of(rules.iter());
    Scored {
        score,
        grade,
        counts,
        sections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(section: Section, severity: Severity, status: Status) -> Outcome {
        Outcome {
            id: "x",
            section,
            severity,
            advice: None,
            title: "x",
            status,
            summary: String::new(),
            evidence: Vec::new(),
            fix: None,
        }
    }

    #[test]
    fn weights_grades_and_the_critical_cap() {
        let rules = [
            rule(Section::Advice, Severity::Warning, Status::Pass),
            rule(Section::Advice, Severity::Warning, Status::Fail),
            rule(Section::Advice, Severity::Info, Status::NotChecked),
            rule(Section::Newapi, Severity::Critical, Status::Pass),
        ];
        let s = score(&rules);
        // (3 + 5) / (3 + 3 + 5) = 72 %.
        assert_eq!(s.score, Some(72));
        assert_eq!(s.grade, 'C');
        assert_eq!(
            s.counts,
            Counts {
                pass: 2,
                fail: 1,
                not_checked: 1
            }
        );
        assert_eq!(s.sections[0].score, Some(50));
        assert_eq!(s.sections[0].grade, 'F');
        assert_eq!(s.sections[1].score, Some(100));
        assert_eq!(s.sections[3].score, None);
        assert_eq!(s.sections[3].grade, 'F');
        // A failing critical rule: at best D.
        let mut many: Vec<Outcome> = (0..20)
            .map(|_| rule(Section::Advice, Severity::Warning, Status::Pass))
            .collect();
        many.push(rule(Section::Newapi, Severity::Critical, Status::Fail));
        let s = score(&many);
        assert_eq!(s.score, Some(92));
        assert_eq!(s.grade, 'D');
        assert_eq!(grade(Some(59), true), 'F');
    }
}
