//! Known New-API failure signatures: regular expressions over pod logs, each with a severity, a
//! one-line cause and the runbook to run.
//!
//! The built-in list is `signatures.toml` next to this file, compiled in. Users extend it with a
//! file of the same shape ([`load`]); [`merge`] lets a user signature replace the built-in one of
//! the same id. Loading goes through a "wire" struct with `deny_unknown_fields`, then validation,
//! so every error names the file and line: a typo in a field name, a bad regex, an unknown runbook
//! or severity, a duplicate id, or an example line the pattern does not match.
//!
//! [`scan`] counts matches over log lines and keeps the first and last matching line;
//! [`last_sync`] finds when a slave last logged `syncing channels from database`, which New-API's
//! `model.SyncChannelCache` prints every SYNC_FREQUENCY seconds.

use std::path::Path;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::finding::Severity;

/// The built-in signatures file.
pub const BUILTIN_TOML: &str = include_str!("signatures.toml");

/// The name the built-in file has in error messages.
pub const BUILTIN_NAME: &str = "src/diagnose/signatures.toml (built in)";

/// The runbooks a signature may name.
pub const RUNBOOKS: [&str; 10] = [
    "pod-startup-failure",
    "resource-shortage",
    "db-connection",
    "high-cpu",
    "high-memory",
    "slow-response",
    "oomkilled",
    "scale-out",
    "backup",
    "production-readiness",
];

/// Stored matching lines are cut to this many characters.
pub const MAX_LINE_CHARS: usize = 500;

/// The line New-API's `model.SyncChannelCache` logs before each channel sync.
pub const SYNC_LINE: &str = "syncing channels from database";

/// One known failure signature.
#[derive(Debug, Clone)]
pub struct Signature {
    pub id: String,
    pub pattern: Regex,
    pub severity: Severity,
    /// One line: what a match means.
    pub cause: String,
    /// One of [`RUNBOOKS`].
    pub runbook: String,
    /// Log lines the pattern is known to match (checked at load time).
    pub examples: Vec<String>,
}

/// A signature seen in a log.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureMatch {
    pub id: String,
    pub severity: Severity,
    pub cause: String,
    pub runbook: String,
    /// How many lines matched.
    pub count: usize,
    /// The first matching line (cut to [`MAX_LINE_CHARS`]).
    pub first_line: String,
    /// The last matching line (equal to `first_line` when `count` is 1).
    pub last_line: String,
}

/// Why a signatures file could not be used. Every variant names the file; all but `Io` the line.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("cannot read signatures file {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the expected shape (unknown field, missing field, wrong type).
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed, but a value is wrong (bad regex, unknown runbook, ...).
    #[error("{file}:{line}: signature {id:?}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        id: String,
        field: &'static str,
        message: String,
    },
}

impl SignatureError {
    /// The 1-based line the error points at, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            SignatureError::Io { .. } => None,
            SignatureError::Parse { line, .. } | SignatureError::Invalid { line, .. } => {
                Some(*line)
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    #[serde(default)]
    signature: Vec<SignatureWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureWire {
    id: Spanned<String>,
    pattern: Spanned<String>,
    severity: Spanned<String>,
    cause: Spanned<String>,
    runbook: Spanned<String>,
    #[serde(default)]
    examples: Vec<Spanned<String>>,
}

/// The built-in signatures.
pub fn builtin() -> Result<Vec<Signature>, SignatureError> {
    parse(BUILTIN_TOML, BUILTIN_NAME)
}

/// Reads a user signatures file.
pub fn load(path: &Path) -> Result<Vec<Signature>, SignatureError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SignatureError::Io {
        file: file.clone(),
        source,
    })?;
    parse(&text, &file)
}

/// Parses and validates signatures from TOML text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Signature>, SignatureError> {
    let wire: FileWire = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        SignatureError::Parse {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut out: Vec<Signature> = Vec::with_capacity(wire.signature.len());
    for w in wire.signature {
        let id = w.id.get_ref().trim().to_string();
        let invalid = |span: std::ops::Range<usize>, field: &'static str, message: String| {
            SignatureError::Invalid {
                file: file.to_string(),
                line: line_col(text, span.start).0,
                id: id.clone(),
                field,
                message,
            }
        };
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                w.id.span(),
                "id",
                "must be non-empty letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if out.iter().any(|s| s.id == id) {
            return Err(invalid(
                w.id.span(),
                "id",
                "defined twice in this file".into(),
            ));
        }
        let pattern = Regex::new(w.pattern.get_ref())
            .map_err(|e| invalid(w.pattern.span(), "pattern", one_line(&e.to_string())))?;
        if pattern.is_match("") {
            return Err(invalid(
                w.pattern.span(),
                "pattern",
                "matches the empty string, so it would match every line".into(),
            ));
        }
        let severity = match w.severity.get_ref().as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            other => {
                return Err(invalid(
                    w.severity.span(),
                    "severity",
                    format!("{other:?} is not one of info, warning, critical"),
                ));
            }
        };
        let cause = w.cause.get_ref().trim().to_string();
        if cause.is_empty() || cause.contains('\n') {
            return Err(invalid(
                w.cause.span(),
                "cause",
                "must be one non-empty line".into(),
            ));
        }
        let runbook = w.runbook.get_ref().trim().to_string();
        if !RUNBOOKS.contains(&runbook.as_str()) {
            return Err(invalid(
                w.runbook.span(),
                "runbook",
                format!("{runbook:?} is not one of {}", RUNBOOKS.join(", ")),
            ));
        }
        let mut examples = Vec::with_capacity(w.examples.len());
        for ex in w.examples {
            if !pattern.is_match(ex.get_ref()) {
                return Err(invalid(
                    ex.span(),
                    "examples",
                    format!("the pattern does not match the example {:?}", ex.get_ref()),
                ));
            }
            examples.push(ex.into_inner());
        }
        out.push(Signature {
            id,
            pattern,
            severity,
            cause,
            runbook,
            examples,
        });
    }
    Ok(out)
}

/// The built-in signatures with the user's: a user signature replaces the built-in one with the
/// same id (in its place); new ones come after the built-in list, in the user's order.
pub fn merge(builtin: Vec<Signature>, user: Vec<Signature>) -> Vec<Signature> {
    let mut out = builtin;
    for sig in user {
        match out.iter_mut().find(|s| s.id == sig.id) {
            Some(slot) => *slot = sig,
            None => out.push(sig),
        }
    }
    out
}

/// Matches every line against every signature. One result per signature that matched at least
/// once, in the order of their first matching line.
pub fn scan<'a>(lines: impl Iterator<Item = &'a str>, sigs: &[Signature]) -> Vec<SignatureMatch> {
    // (index of the first matching line, match) per signature.
    let mut found: Vec<Option<(usize, SignatureMatch)>> = vec![None; sigs.len()];
    for (n, line) in lines.enumerate() {
        for (i, sig) in sigs.iter().enumerate() {
            if !sig.pattern.is_match(line) {
                continue;
            }
            let line = clip(line.trim_end());
            match &mut found[i] {
                Some((_, m)) => {
                    m.count += 1;
                    m.last_line = line;
                }
                slot @ None => {
                    *slot = Some((
                        n,
                        SignatureMatch {
                            id: sig.id.clone(),
                            severity: sig.severity,
                            cause: sig.cause.clone(),
                            runbook: sig.runbook.clone(),
                            count: 1,
                            first_line: line.clone(),
                            last_line: line,
                        },
                    ));
                }
            }
        }
    }
    let mut hits: Vec<(usize, SignatureMatch)> = found.into_iter().flatten().collect();
    hits.sort_by_key(|(n, _)| *n);
    hits.into_iter().map(|(_, m)| m).collect()
}

/// When a slave last logged [`SYNC_LINE`]: the latest time among those lines. A line's time is its
/// kubelet prefix (`2025-11-13T10:00:00.123456789Z `, from `kubectl logs --timestamps`) when it has
/// one, else New-API's own `[SYS] 2025/11/13 - 10:00:00 |`, which carries no zone and is read as
/// UTC (containers run in UTC unless TZ is set; ask the API server for timestamps to avoid the
/// guess). Lines with neither are skipped.
pub fn last_sync<'a>(lines: impl Iterator<Item = &'a str>) -> Option<jiff::Timestamp> {
    lines
        .filter(|l| l.contains(SYNC_LINE))
        .filter_map(line_time)
        .max()
}

/// Whether a slave whose last sync was at `last` is out of sync at `now`: no sync within twice
/// its SYNC_FREQUENCY.
pub fn sync_is_stale(
    last: jiff::Timestamp,
    now: jiff::Timestamp,
    sync_frequency: std::time::Duration,
) -> bool {
    let allowed = sync_frequency.saturating_mul(2);
    match jiff::SignedDuration::try_from(allowed) {
        Ok(allowed) => now.duration_since(last) > allowed,
        Err(_) => false,
    }
}

/// The time a log line carries: the kubelet's RFC 3339 prefix, else New-API's `[LEVEL] Y/m/d -
/// H:M:S` (as UTC).
pub fn line_time(line: &str) -> Option<jiff::Timestamp> {
    let line = line.trim_start();
    if let Some(first) = line.split_whitespace().next()
        && first.contains('T')
        && let Ok(ts) = first.parse::<jiff::Timestamp>()
    {
        return Some(ts);
    }
    newapi_time(line)
}

/// Finds `[XXX] YYYY/MM/DD - HH:MM:SS` anywhere in the line (after an optional prefix).
fn newapi_time(line: &str) -> Option<jiff::Timestamp> {
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let close = after.find(']')?;
        let tag = &after[..close];
        let tail = after[close + 1..].trim_start();
        if !tag.is_empty()
            && tag.len() <= 8
            && tag.chars().all(|c| c.is_ascii_uppercase())
            && let Some(ts) = parse_newapi_datetime(tail)
        {
            return Some(ts);
        }
        rest = &after[close + 1..];
    }
    None
}

/// Parses `YYYY/MM/DD - HH:MM:SS` at the start of `s`, as UTC.
fn parse_newapi_datetime(s: &str) -> Option<jiff::Timestamp> {
    let text = s.get(..21)?;
    let dt = jiff::civil::DateTime::strptime("%Y/%m/%d - %H:%M:%S", text).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(line: &str) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(sigs: &[Signature]) -> Vec<&str> {
        sigs.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn builtin_loads_and_covers_the_known_failures() {
        let sigs = builtin().unwrap();
        for id in [
            "redis-ping-failed",
            "session-secret-mismatch",
            "session-secret-unset",
            "database-init-failed",
            "mysql-too-many-connections",
            "mysql-bad-connection",
            "mysql-idle-connection-closed",
            "unexpected-eof",
            "mysql-deadlock",
            "out-of-memory",
            "context-deadline-exceeded",
        ] {
            assert!(ids(&sigs).contains(&id), "missing {id}");
        }
        for s in &sigs {
            assert!(!s.examples.is_empty(), "{} has no example", s.id);
            assert!(RUNBOOKS.contains(&s.runbook.as_str()));
        }
    }

    #[test]
    fn builtin_matches_the_strings_new_api_logs() {
        let sigs = builtin().unwrap();
        let log = [
            "[SYS] 2025/11/13 - 10:00:00 | main.go:60 | New API v0.9.0 started",
            "[FATAL] 2025/11/13 - 10:00:01 | common/redis.go:42 | [Redis ping test failed: context deadline exceeded]",
            "[sessions] ERROR! securecookie: the value is not valid",
            "Error 1040 (08004): Too many connections",
            "[mysql] 2025/11/13 10:00:02 packets.go:122: closing bad idle connection: unexpected EOF",
            "driver: bad connection",
            "Error 1213 (40001): Deadlock found when trying to get lock; try restarting transaction",
            "[FATAL] 2025/11/13 - 10:00:03 | main.go:150 | [failed to initialize database: Error 1045 (28000): Access denied]",
            "fatal error: runtime: out of memory",
            "2025/11/13 10:00:04 please set SESSION_SECRET to a random string",
        ];
        let found = scan(log.iter().copied(), &sigs);
        let got: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "redis-ping-failed",
                "context-deadline-exceeded",
                "session-secret-mismatch",
                "mysql-too-many-connections",
                "mysql-idle-connection-closed",
                "unexpected-eof",
                "mysql-bad-connection",
                "mysql-deadlock",
                "database-init-failed",
                "out-of-memory",
                "session-secret-unset",
            ]
        );
        // Harmless lines match nothing.
        let quiet = [
            "[SYS] 2025/11/13 - 10:00:00 | x | syncing channels from database",
            "[GIN] 200 | GET /api/status",
        ];
        assert!(scan(quiet.iter().copied(), &sigs).is_empty());
    }

    #[test]
    fn scan_counts_and_keeps_first_and_last() {
        let sigs = parse(
            "[[signature]]\nid='x'\npattern='boom \\d'\nseverity='warning'\ncause='c'\nrunbook='high-cpu'\n",
            "t.toml",
        )
        .unwrap();
        let log = "ok\nboom 1\nfine\nboom 2   \nboom 3\n";
        let m = scan(log.lines(), &sigs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].count, 3);
        assert_eq!(m[0].first_line, "boom 1");
        assert_eq!(m[0].last_line, "boom 3");
        assert_eq!(m[0].severity, Severity::Warning);
        assert_eq!(m[0].runbook, "high-cpu");
    }

    #[test]
    fn scan_clips_long_lines() {
        let sigs = parse(
            "[[signature]]\nid='x'\npattern='boom'\nseverity='info'\ncause='c'\nrunbook='backup'\n",
            "t.toml",
        )
        .unwrap();
        let long = format!("boom {}", "é".repeat(2000));
        let m = scan(std::iter::once(long.as_str()), &sigs);
        assert_eq!(m[0].first_line.chars().count(), MAX_LINE_CHARS + 1);
        assert!(m[0].first_line.ends_with('…'));
    }

    fn err(text: &str) -> SignatureError {
        parse(text, "user.toml").unwrap_err()
    }

    #[test]
    fn unknown_field_is_reported_with_its_line() {
        let e = err(
            "[[signature]]\nid = 'a'\npattern = 'x'\nseverity = 'info'\ncause = 'c'\nrunbok = 'backup'\n",
        );
        assert_eq!(e.line(), Some(6), "{e}");
        let text = e.to_string();
        assert!(text.starts_with("user.toml:6:"), "{text}");
        assert!(text.contains("runbok"), "{text}");
    }

    #[test]
    fn missing_field_is_an_error() {
        let e = err("[[signature]]\nid = 'a'\npattern = 'x'\nseverity = 'info'\ncause = 'c'\n");
        assert!(matches!(e, SignatureError::Parse { .. }));
        assert!(e.to_string().contains("runbook"), "{e}");
    }

    #[test]
    fn bad_regex_is_reported_at_the_pattern_line() {
        let e = err(
            "# comment\n\n[[signature]]\nid = 'a'\npattern = 'unclosed ('\nseverity = 'info'\ncause = 'c'\nrunbook = 'backup'\n",
        );
        assert_eq!(e.line(), Some(5), "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("user.toml:5: signature \"a\": pattern:"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        let base = |sev: &str, rb: &str| {
            format!(
                "[[signature]]\nid = 'a'\npattern = 'x'\nseverity = '{sev}'\ncause = 'c'\nrunbook = '{rb}'\n"
            )
        };
        let e = err(&base("fatal", "backup"));
        assert_eq!(e.line(), Some(4));
        assert!(e.to_string().contains("severity"), "{e}");
        let e = err(&base("ok", "backup"));
        assert_eq!(e.line(), Some(4));
        let e = err(&base("info", "reboot-everything"));
        assert_eq!(e.line(), Some(6));
        assert!(e.to_string().contains("runbook"), "{e}");
    }

    #[test]
    fn duplicate_ids_empty_patterns_and_wrong_examples_are_rejected() {
        let one = "[[signature]]\nid = 'a'\npattern = 'x'\nseverity = 'info'\ncause = 'c'\nrunbook = 'backup'\n";
        let e = err(&format!("{one}{one}"));
        assert_eq!(e.line(), Some(8), "{e}");
        let e = err(
            "[[signature]]\nid = 'a'\npattern = '.*'\nseverity = 'info'\ncause = 'c'\nrunbook = 'backup'\n",
        );
        assert_eq!(e.line(), Some(3));
        let e = err(
            "[[signature]]\nid = 'a'\npattern = 'x'\nseverity = 'info'\ncause = 'c'\nrunbook = 'backup'\nexamples = [\n  'x here',\n  'nothing'\n]\n",
        );
        assert_eq!(e.line(), Some(9), "{e}");
        assert!(e.to_string().contains("examples"), "{e}");
    }

    #[test]
    fn not_toml_is_a_parse_error_with_position() {
        let e = err("[[signature]]\nid = 'a\n");
        assert!(matches!(e, SignatureError::Parse { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn load_reads_a_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sigs.toml");
        std::fs::write(
            &path,
            "[[signature]]\nid = 'mine'\npattern = 'custom failure'\nseverity = 'critical'\ncause = 'c'\nrunbook = 'scale-out'\n",
        )
        .unwrap();
        let sigs = load(&path).unwrap();
        assert_eq!(ids(&sigs), vec!["mine"]);
        let missing = load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(missing, SignatureError::Io { .. }));
        assert!(missing.to_string().contains("nope.toml"));
        std::fs::write(&path, "[[signature]]\nid = 'a'\n").unwrap();
        let bad = load(&path).unwrap_err();
        assert!(
            bad.to_string().starts_with(&path.display().to_string()),
            "{bad}"
        );
    }

    #[test]
    fn merge_replaces_by_id_and_appends_new_ones() {
        let builtin = builtin().unwrap();
        let n = builtin.len();
        let user = parse(
            "[[signature]]\nid = 'redis-ping-failed'\npattern = 'my redis'\nseverity = 'warning'\ncause = 'mine'\nrunbook = 'db-connection'\n\
             [[signature]]\nid = 'new-one'\npattern = 'other'\nseverity = 'info'\ncause = 'c'\nrunbook = 'backup'\n",
            "user.toml",
        )
        .unwrap();
        let merged = merge(builtin, user);
        assert_eq!(merged.len(), n + 1);
        assert_eq!(merged[0].id, "redis-ping-failed");
        assert_eq!(merged[0].cause, "mine");
        assert_eq!(merged[0].severity, Severity::Warning);
        assert_eq!(merged.last().unwrap().id, "new-one");
        assert!(scan(std::iter::once("Redis ping test failed"), &merged).is_empty());
        assert_eq!(
            scan(std::iter::once("my redis is gone"), &merged)[0].id,
            "redis-ping-failed"
        );
    }

    #[test]
    fn last_sync_reads_kubelet_timestamps() {
        let log = "2025-11-13T10:00:00.123456789Z [SYS] 2025/11/13 - 18:00:00 | model/channel_cache.go:90 | syncing channels from database\n\
                   2025-11-13T10:01:00.5Z [SYS] 2025/11/13 - 18:01:00 | model/channel_cache.go:90 | syncing channels from database\n\
                   2025-11-13T10:01:00.9Z [SYS] 2025/11/13 - 18:01:00 | model/channel_cache.go:60 | channels synced from database\n\
                   2025-11-13T10:01:30Z [GIN] 200 | GET /api/status\n";
        let ts = last_sync(log.lines()).unwrap();
        assert_eq!(
            ts,
            "2025-11-13T10:01:00.5Z".parse::<jiff::Timestamp>().unwrap()
        );
    }

    #[test]
    fn last_sync_reads_new_api_timestamps_as_utc() {
        let log = "[SYS] 2025/11/13 - 10:00:00 | model/channel_cache.go:90 | syncing channels from database\n\
                   [SYS] 2025/11/13 - 10:02:00 | model/channel_cache.go:90 | syncing channels from database\n\
                   [SYS] 2025/11/13 - 10:01:00 | model/channel_cache.go:90 | syncing channels from database\n\
                   [SYS] 2025/11/13 - 10:03:00 | main.go:90 | syncing options from database\n";
        let ts = last_sync(log.lines()).unwrap();
        assert_eq!(
            ts,
            "2025-11-13T10:02:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        // one-api's format (no caller) too.
        let one = "[SYS] 2024/01/02 - 03:04:05 | syncing channels from database";
        assert_eq!(
            last_sync(std::iter::once(one)).unwrap(),
            "2024-01-02T03:04:05Z".parse::<jiff::Timestamp>().unwrap()
        );
    }

    #[test]
    fn last_sync_is_none_without_a_sync_line_or_a_time() {
        assert_eq!(
            last_sync(["[SYS] 2025/11/13 - 10:00:00 | x | started"].into_iter()),
            None
        );
        assert_eq!(
            last_sync(["syncing channels from database"].into_iter()),
            None
        );
        assert_eq!(
            last_sync(["[SYS] 2025/13/45 - 10:00:00 | syncing channels from database"].into_iter()),
            None
        );
    }

    #[test]
    fn stale_after_twice_the_sync_frequency() {
        let last: jiff::Timestamp = "2025-11-13T10:00:00Z".parse().unwrap();
        let freq = std::time::Duration::from_secs(60);
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert!(!sync_is_stale(last, at("2025-11-13T10:01:59Z"), freq));
        assert!(!sync_is_stale(last, at("2025-11-13T10:02:00Z"), freq));
        assert!(sync_is_stale(last, at("2025-11-13T10:02:01Z"), freq));
    }
}
