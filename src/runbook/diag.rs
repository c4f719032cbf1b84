//! Validation errors with their place in the file: `file:line:column: message`, and a `help:`
//! line (the allowed values, a "did you mean").

use serde::Serialize;

/// A position in a runbook file (1-based line and column; 0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn new(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    /// Where serde-saphyr saw a node.
    pub fn of(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(0),
            column: u32::try_from(loc.column()).unwrap_or(0),
        }
    }

    /// Where a `Spanned` value was written.
    pub fn at<T>(s: &serde_saphyr::Spanned<T>) -> Pos {
        Pos::of(&s.referenced)
    }
}

/// One error found in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The errors of one file, collected as analysis goes on.
#[derive(Debug, Default)]
pub struct Diags {
    pub file: String,
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &str) -> Diags {
        Diags {
            file: file.to_string(),
            list: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, message, None::<String>);
    }

    pub fn push(&mut self, pos: Pos, message: impl Into<String>, help: Option<impl Into<String>>) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            help: help.map(Into::into),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The errors in file order.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by_key(|d| (d.line, d.column));
        self.list.dedup();
        self.list
    }
}

/// `allowed: a, b, c` plus `did you mean `x`?` when one is close to `got`.
pub fn allowed_help(got: &str, allowed: &[&str]) -> String {
    let mut help = format!("allowed: {}", allowed.join(", "));
    if let Some(close) = closest(got, allowed) {
        help = format!("did you mean `{close}`? {help}");
    }
    help
}

/// The allowed value nearest to `got`, if it is near enough to be a typo.
pub fn closest<'a>(got: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(got, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4) && *d < a.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("replica", "replicas"), 1);
        assert_eq!(
            closest("pods.lst", &["pods.list", "nodes.conditions"]),
            Some("pods.list")
        );
        assert_eq!(closest("zzz", &["pods.list"]), None);
        let h = allowed_help("rol", &["role", "tail"]);
        assert!(h.starts_with("did you mean `role`?"), "{h}");
    }
}
