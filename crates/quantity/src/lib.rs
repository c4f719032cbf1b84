//! Kubernetes resource quantities ("1000m", "1Gi", "12295Mi", "1.5", "1e3") as exact integers:
//! CPU in millicores, memory (and everything else) in base units, both rounded up as
//! Kubernetes' `MilliValue()`/`Value()` do.
//!
//! A crate of its own so that newapi-ops and its sandbox share one parser without the sandbox
//! depending on the tool.

use std::fmt;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity \"{input}\": {reason}")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

fn parse(input: &str) -> Result<Parsed, QuantityError> {
    let err = |reason| QuantityError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("no number"));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: u128 = 0;
    for d in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
            .ok_or_else(|| err("too large"))?;
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| err("too long"))?;
    let mut exp10 = -frac_len;
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
            if e.abs() > 30 {
                return Err(err("exponent out of range"));
            }
            exp10 += e;
        }
        _ => {
            return Err(err(
                "unknown suffix (use m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)",
            ));
        }
    }
    Ok(Parsed {
        negative,
        mantissa,
        exp10,
        exp2,
    })
}

impl Parsed {
    /// The value × 10^scale, rounded up (away from zero), as i64.
    fn scaled(self, scale: i32, input: &str) -> Result<i64, QuantityError> {
        let too_large = || QuantityError {
            input: input.to_string(),
            reason: "too large",
        };
        let mut num = self.mantissa;
        num = num.checked_shl(self.exp2).ok_or_else(too_large)?;
        if self.exp2 > 0 && num >> self.exp2 != self.mantissa {
            return Err(too_large());
        }
        let e = self.exp10 + scale;
        let value = if e >= 0 {
            let factor = 10u128.checked_pow(e.unsigned_abs()).ok_or_else(too_large)?;
            num.checked_mul(factor).ok_or_else(too_large)?
        } else {
            match 10u128.checked_pow(e.unsigned_abs()) {
                Some(div) => num.div_ceil(div),
                None => u128::from(num > 0),
            }
        };
        let value = i64::try_from(value).map_err(|_| too_large())?;
        Ok(if self.negative { -value } else { value })
    }
}

/// CPU in millicores: "1000m" → 1000, "1.5" → 1500, "2" → 2000.
pub fn parse_cpu_millis(s: &str) -> Result<i64, QuantityError> {
    parse(s)?.scaled(3, s)
}

/// CPU in nanocores: "250m" → 250000000, "123456n" → 123456 (what metrics.k8s.io reports).
pub fn parse_cpu_nanos(s: &str) -> Result<i64, QuantityError> {
    parse(s)?.scaled(9, s)
}

/// A quantity in base units (bytes for memory): "1Gi" → 1073741824, "1.5" → 2 (rounded up).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    parse(s)?.scaled(0, s)
}

/// Millicores for people: 7000 → "7000m", 250 → "250m".
pub fn format_cpu(millis: i64) -> String {
    format!("{millis}m")
}

/// Bytes for people, in the largest binary unit that divides them exactly, else Mi with a
/// decimal: 10 GiB → "10Gi", 10310 MiB → "10310Mi".
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    if bytes == 0 {
        return "0".into();
    }
    for (unit, size) in UNITS {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let mi = bytes as f64 / (1u64 << 20) as f64;
    format!("{mi:.1}Mi")
}

/// `part` as a whole percentage of `whole`, rounded to nearest (7000m of 8000m → 88).
pub fn percent(part: i64, whole: i64) -> Option<i64> {
    (whole > 0).then(|| (part * 100 * 2 + whole) / (whole * 2))
}

/// A quantity that is displayed as it was written and compared as parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {} memory {}",
            format_cpu(self.cpu_millis),
            format_bytes(self.memory_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(parse_cpu_millis("1000m"), Ok(1000));
        assert_eq!(parse_cpu_millis("1"), Ok(1000));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1500));
        assert_eq!(parse_cpu_millis("0.1"), Ok(100));
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert_eq!(parse_cpu_millis("4"), Ok(4000));
        // Sub-millicore values round up, as Kubernetes does.
        assert_eq!(parse_cpu_millis("1u"), Ok(1));
        assert_eq!(parse_cpu_millis("100n"), Ok(1));
        assert_eq!(parse_cpu_millis("2e3"), Ok(2_000_000));
        assert_eq!(parse_cpu_millis("+3"), Ok(3000));
        assert_eq!(parse_cpu_millis("-1"), Ok(-1000));
        assert_eq!(parse_cpu_nanos("250m"), Ok(250_000_000));
        assert_eq!(parse_cpu_nanos("123456n"), Ok(123_456));
        assert_eq!(parse_cpu_nanos("2"), Ok(2_000_000_000));
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_value("1Gi"), Ok(1 << 30));
        assert_eq!(parse_value("12295Mi"), Ok(12295 << 20));
        assert_eq!(parse_value("6148Mi"), Ok(6148 << 20));
        assert_eq!(parse_value("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_value("1G"), Ok(1_000_000_000));
        assert_eq!(parse_value("129e6"), Ok(129_000_000));
        assert_eq!(parse_value("128974848"), Ok(128_974_848));
        assert_eq!(parse_value("123Ki"), Ok(123 * 1024));
        assert_eq!(parse_value("1.5"), Ok(2));
        assert_eq!(
            parse_value("8Ei"),
            Err(QuantityError {
                input: "8Ei".into(),
                reason: "too large"
            })
        );
    }

    #[test]
    fn bad_quantities() {
        for bad in [
            "", "m", "1.2.3", "Gi", "1Gb", "1 Gi", "abc", "1e", "1e99", ".",
        ] {
            assert!(parse_value(bad).is_err(), "{bad} should be refused");
        }
        let e = parse_cpu_millis("1x").unwrap_err();
        assert!(e.to_string().contains("\"1x\""), "{e}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu(7000), "7000m");
        assert_eq!(format_bytes(10 << 30), "10Gi");
        assert_eq!(format_bytes(10310 << 20), "10310Mi");
        assert_eq!(format_bytes(12295 << 20), "12295Mi");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(1_500_000), "1.4Mi");
        assert_eq!(percent(7000, 8000), Some(88));
        assert_eq!(percent(10240, 12295), Some(83));
        assert_eq!(percent(1, 0), None);
    }
}
