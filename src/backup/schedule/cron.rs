//! The cron schedules a CronJob takes (as Kubernetes parses them: five fields, `@daily` and the
//! other descriptors, `@every 6h`, an optional `CRON_TZ=`/`TZ=` prefix), parsed far enough to
//! know the schedule's **period**: the longest wait between two consecutive runs (`0 3 * * 1-5`
//! waits 3 days over the weekend). That is what "the newest backup is older than two periods"
//! measures against.

use std::time::Duration;

/// A parsed schedule: the set of each field, as bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday 0.
    weekdays: u8,
    /// Day-of-month or day-of-week was `*`: then the other alone decides (cron's rule: when
    /// both are restricted, a day matching either runs).
    days_star: bool,
    weekdays_star: bool,
}

/// A schedule: calendar fields, or a fixed interval (`@every 6h`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Calendar(Cron),
    Every(Duration),
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses a CronJob's `spec.schedule`; the error says which field is wrong and why.
pub fn parse(schedule: &str) -> Result<Schedule, String> {
    let mut s = schedule.trim();
    if let Some(rest) = s.strip_prefix("CRON_TZ=").or_else(|| s.strip_prefix("TZ=")) {
        s = rest.split_once(' ').map_or("", |(_, r)| r.trim());
    }
    let expanded = match s {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => {
            if let Some(every) = other.strip_prefix("@every ") {
                let d = crate::units::parse_duration(every.trim())
                    .map_err(|e| format!("@every {}: {e}", every.trim()))?;
                if d.is_zero() {
                    return Err("@every needs a duration above zero".into());
                }
                return Ok(Schedule::Every(d));
            }
            if other.starts_with('@') {
                return Err(format!(
                    "unknown descriptor {other} (known: @yearly, @monthly, @weekly, @daily, @hourly, @every DURATION)"
                ));
            }
            other
        }
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{} fields, expected five (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    let weekdays = field(fields[4], "day-of-week", 0, 7, &WEEKDAYS, 0)?;
    // 7 is Sunday too.
    let weekdays = (weekdays & 0x7f) | u64::from(weekdays & 0x80 != 0);
    Ok(Schedule::Calendar(Cron {
        minutes: field(fields[0], "minute", 0, 59, &[], 0)?,
        hours: narrow(field(fields[1], "hour", 0, 23, &[], 0)?),
        days: narrow(field(fields[2], "day-of-month", 1, 31, &[], 0)?),
        months: narrow(field(fields[3], "month", 1, 12, &MONTHS, 1)?),
        weekdays: narrow(weekdays),
        days_star: is_star(fields[2]),
        weekdays_star: is_star(fields[4]),
    }))
}

fn narrow<T: TryFrom<u64> + Default>(bits: u64) -> T {
    T::try_from(bits).unwrap_or_default()
}

fn is_star(f: &str) -> bool {
    f == "*" || f == "?"
}

/// One field as a bit set: lists of `*`, `N`, `A-B`, each optionally `/STEP`.
fn field(
    f: &str,
    what: &str,
    min: u64,
    max: u64,
    names: &[&str],
    first: u64,
) -> Result<u64, String> {
    let value = |v: &str| -> Result<u64, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u64 + first);
        }
        let n: u64 = v
            .parse()
            .map_err(|_| format!("{what} {f:?}: {v:?} is not a number"))?;
        if n < min || n > max {
            return Err(format!("{what} {f:?}: {n} is outside {min}-{max}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in f.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u64 =
                    s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{what} {f:?}: step {s:?} is not a number above 0")
                    })?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `N/STEP` runs from N to the end, as cron does.
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return Err(format!("{what} {f:?}: range {lo}-{hi} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// The longest wait between two consecutive runs, looked for over eight years (so that a
    /// schedule on the 29th of February has one); None when it never runs (`0 0 31 2 *`).
    pub fn period(&self) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Calendar(c) => c.period(),
        }
    }
}

impl Cron {
    fn period(&self) -> Option<Duration> {
        // The minutes of a day at which it runs, in order.
        let in_day: Vec<i64> = (0..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(|h| {
                (0..60)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| h * 60 + m)
            })
            .collect();
        let (first, last) = (*in_day.first()?, *in_day.last()?);
        let mut longest = in_day.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let mut day = jiff::civil::date(2024, 1, 1);
        let mut previous_last: Option<i64> = None;
        let mut runs_days = 0;
        for n in 0..(8 * 366) {
            if self.runs_on(day) {
                runs_days += 1;
                let start = n * 1440;
                if let Some(p) = previous_last {
                    longest = longest.max(start + first - p);
                }
                previous_last = Some(start + last);
            }
            day = day.tomorrow().ok()?;
        }
        if runs_days == 0 {
            return None;
        }
        if runs_days == 1 && in_day.len() == 1 {
            // Once in eight years: that is its period, near enough.
            longest = 8 * 365 * 1440;
        }
        Some(Duration::from_secs(u64::try_from(longest).ok()? * 60))
    }

    fn runs_on(&self, d: jiff::civil::Date) -> bool {
        let month = self.months & (1 << d.month()) != 0;
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        let day = match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        };
        month && day
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(s: &str) -> Duration {
        parse(s).unwrap().period().unwrap()
    }

    const H: u64 = 3600;

    #[test]
    fn periods_of_the_usual_schedules() {
        assert_eq!(period("0 3 * * *"), Duration::from_secs(24 * H));
        assert_eq!(period("@daily"), Duration::from_secs(24 * H));
        assert_eq!(period("@midnight"), Duration::from_secs(24 * H));
        assert_eq!(period("@hourly"), Duration::from_secs(H));
        assert_eq!(period("*/15 * * * *"), Duration::from_secs(15 * 60));
        assert_eq!(period("0 */6 * * *"), Duration::from_secs(6 * H));
        assert_eq!(period("* * * * *"), Duration::from_secs(60));
        assert_eq!(period("@weekly"), Duration::from_secs(7 * 24 * H));
        assert_eq!(period("0 3 * * sun"), Duration::from_secs(7 * 24 * H));
        assert_eq!(period("0 3 * * 7"), Duration::from_secs(7 * 24 * H));
        // Weekdays only: the weekend is the longest wait.
        assert_eq!(period("0 3 * * 1-5"), Duration::from_secs(3 * 24 * H));
        // 1:00, 1:30, 13:00, 13:30: the longest wait is 11.5 h.
        assert_eq!(period("0,30 1,13 * * *").as_secs(), 23 * H / 2);
        assert_eq!(period("0 1,13 * * *"), Duration::from_secs(12 * H));
        // Monthly: the longest month.
        assert_eq!(period("@monthly"), Duration::from_secs(31 * 24 * H));
        assert_eq!(period("0 0 1 jan,jul *").as_secs() / (24 * H), 184);
        assert_eq!(
            period("CRON_TZ=Europe/Berlin 0 3 * * *"),
            Duration::from_secs(24 * H)
        );
        assert_eq!(period("@every 6h"), Duration::from_secs(6 * H));
        // Both day fields restricted: either runs (the 1st, and every Monday).
        assert!(period("0 0 1 * 1") <= Duration::from_secs(7 * 24 * H));
        // Leap days exist in eight years.
        assert!(period("0 0 29 2 *") >= Duration::from_secs(365 * 24 * H));
    }

    #[test]
    fn what_is_not_a_schedule_says_why() {
        for (s, why) in [
            ("0 3 * *", "4 fields"),
            ("61 3 * * *", "outside 0-59"),
            ("0 3 * * mon-", "is not a number"),
            ("0 3 * * */0", "step"),
            ("0 5-3 * * *", "backwards"),
            ("@fortnightly", "unknown descriptor"),
            ("every day", "fields"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert_eq!(parse("0 0 31 2 *").unwrap().period(), None);
    }
}
