//! One helper for each small job of saying numbers to people: bytes, durations (both ways),
//! ages and plurals. Every command uses these, so `1h30m` means the same everywhere and a size
//! reads the same in every report.

use std::time::Duration;

/// The longest duration any flag or runbook argument accepts: a week.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// Bytes for people, in binary units with one decimal: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1 pod`, `3 pods`.
pub fn plural<N>(n: N, one: &str, many: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8>,
{
    let word = if n == N::from(1) { one } else { many };
    format!("{n} {word}")
}

/// `pod-a has`, `pod-a and pod-b have`, `pod-a, pod-b and 3 more have`: a short list of names
/// with the verb agreeing.
pub fn list_and_verb(names: &[String], one: &str, many: &str) -> String {
    const SHOWN: usize = 3;
    let verb = if names.len() == 1 { one } else { many };
    let list = match names {
        [] => "none".to_string(),
        [a] => a.clone(),
        _ if names.len() <= SHOWN => {
            format!(
                "{} and {}",
                names[..names.len() - 1].join(", "),
                names[names.len() - 1]
            )
        }
        _ => format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        ),
    };
    format!("{list} {verb}")
}

/// Parses a duration: a bare number of seconds (`90`, `1.5`), or one or more `<number><unit>`
/// parts with the units `ms`, `s`, `m`, `h`, `d` (`1500ms`, `5s`, `2m`, `1h30m`, `1.5h`).
/// Anything over [`MAX_DURATION`] is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let example = "examples: 90s, 1500ms, 5m, 1h30m";
    if text.is_empty() {
        return Err(format!("an empty string is not a duration ({example})"));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.trim_start().is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration ({example})"));
        }
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration ({example})"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let factor = match unit.trim() {
            "" if digits == rest.len() && total == 0.0 => 1.0,
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(format!("`{text}` has a number without a unit ({example})")),
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use ms, s, m, h or d; {example})"
                ));
            }
        };
        total += n * factor;
        rest = next;
    }
    if !total.is_finite() || total > MAX_DURATION.as_secs_f64() {
        return Err(format!("`{text}` is longer than the limit of 7 days"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// [`parse_duration`] for a time limit: zero is refused, since nothing could finish in it.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "`{}` is no time at all: give a limit above zero (e.g. 30s, 5m)",
            s.trim()
        ));
    }
    Ok(d)
}

/// A duration for people: `250 ms`, `12 s`, `1.5 s`, `4 min`, `3 h`, `2 days`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    match d.as_secs() {
        0 => format!("{ms} ms"),
        s if s < 10 && !ms.is_multiple_of(1000) => format!("{:.1} s", d.as_secs_f64()),
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// An age in the compact form of `kubectl get`: `45s`, `12m`, `5h`, `3d`.
pub fn age(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Whole seconds from `then` to now (negative when `then` is in the future).
pub fn seconds_since(then: &jiff::Timestamp) -> i64 {
    jiff::Timestamp::now().as_second() - then.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(300_103), "293.1 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1u8, "pod", "pods"), "1 pod");
        assert_eq!(plural(0usize, "pod", "pods"), "0 pods");
        assert_eq!(plural(-1i64, "pod", "pods"), "-1 pods");
    }

    #[test]
    fn lists_of_names() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(list_and_verb(&n(&["a"]), "has", "have"), "a has");
        assert_eq!(
            list_and_verb(&n(&["a", "b"]), "has", "have"),
            "a and b have"
        );
        assert_eq!(
            list_and_verb(&n(&["a", "b", "c", "d", "e"]), "has", "have"),
            "a, b, c and 2 more have"
        );
    }

    #[test]
    fn one_grammar_for_durations() {
        let ok = [
            ("90", 90_000),
            ("1.5", 1_500),
            ("1500ms", 1_500),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("1d", 86_400_000),
            ("2m30s", 150_000),
            ("0", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in ["", "abc", "5x", "1h30", "-5s", "8d", "s", "1e9"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("0s").unwrap_err().contains("above zero"));
        assert_eq!(parse_timeout("1h30m").unwrap().as_secs(), 5400);
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration(Duration::from_secs(5)), "5 s");
        assert_eq!(duration(Duration::from_secs(90)), "90 s");
        assert_eq!(duration(Duration::from_secs(600)), "10 min");
        assert_eq!(duration(Duration::from_secs(3 * 86_400)), "3 days");
        assert_eq!(age(45), "45s");
        assert_eq!(age(-3), "0s");
        assert_eq!(age(3 * 86_400), "3d");
    }
}
