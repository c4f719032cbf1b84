//! Latencies in an HdrHistogram: microseconds from 1 µs to one hour at three significant digits
//! (the resolution wrk reports at), the summary the report shows, and the HdrHistogram V2 wire
//! form (base64) in which an in-cluster worker hands its histogram to the coordinator.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::Serialize;

/// The largest latency recorded as itself (one hour, in µs); longer ones saturate to it.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// Latencies of one run (or of several, merged), in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Latencies {
        // 1 µs .. 1 h at 3 significant digits is always a valid set of bounds.
        let h = Histogram::new_with_bounds(1, MAX_MICROS, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable_histogram()));
        Latencies(h)
    }

    /// Records one latency.
    pub fn record(&mut self, d: std::time::Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every value of `other` (the histograms of the connections, of the workers).
    pub fn merge(&mut self, other: &Latencies) -> Result<(), String> {
        self.0
            .add(&other.0)
            .map_err(|e| format!("merging latency histograms: {e:?}"))
    }

    /// How many latencies are recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The summary the report shows.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| {
            #[allow(clippy::cast_precision_loss)]
            let v = micros as f64 / 1000.0;
            v
        };
        LatencySummary {
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            stdev_ms: h.stdev() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// The histogram in HdrHistogram's V2 encoding, as base64 (the form other HdrHistogram
    /// implementations read too).
    pub fn to_base64(&self) -> Result<String, String> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(|e| format!("serializing the latency histogram: {e:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(buf))
    }

    /// Reads [`Latencies::to_base64`]'s form back.
    pub fn from_base64(text: &str) -> Result<Latencies, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("the histogram is not base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("the histogram is not in HdrHistogram V2 form: {e:?}"))?;
        // Re-bound it like ours, so merging never fails on a narrower range.
        let mut out = Latencies::new();
        out.0
            .add(&h)
            .map_err(|e| format!("the histogram does not fit 1 µs..1 h: {e:?}"))?;
        Ok(out)
    }
}

/// `Histogram::new(3)` cannot fail (3 significant digits is in range); this is never reached.
fn unreachable_histogram() -> Histogram<u64> {
    Histogram::new_with_max(2, 2).unwrap_or_else(|_| std::process::abort())
}

/// Latency percentiles in milliseconds (zero when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min_ms: f64,
    pub mean_ms: f64,
    pub stdev_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    #[serde(rename = "p99.9_ms")]
    pub p99_9_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut l = Latencies::new();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(l.count(), 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
        assert!((s.min_ms - 1.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn the_wire_form_round_trips_and_merges() {
        let (mut a, mut b) = (Latencies::new(), Latencies::new());
        for _ in 0..900 {
            a.record(Duration::from_millis(2));
        }
        for _ in 0..100 {
            b.record(Duration::from_millis(200));
        }
        let a2 = Latencies::from_base64(&a.to_base64().unwrap()).unwrap();
        let b2 = Latencies::from_base64(&b.to_base64().unwrap()).unwrap();
        let mut m = a2.clone();
        m.merge(&b2).unwrap();
        assert_eq!(m.count(), 1000);
        let s = m.summary();
        assert!((s.p50_ms - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 200.0).abs() < 0.5, "{s:?}");
        assert_eq!(a2.summary(), a.summary());
        assert!(Latencies::from_base64("not base64!").is_err());
        assert!(Latencies::from_base64("aGVsbG8=").is_err());
    }

    #[test]
    fn extremes_saturate_instead_of_failing() {
        let mut l = Latencies::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        assert_eq!(l.count(), 2);
        assert!(l.summary().max_ms >= 3_599_000.0);
    }
}
