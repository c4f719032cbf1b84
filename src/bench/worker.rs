//! What an in-cluster worker hands back: one line, the last of its output (so of its pod's
//! log), `NEWAPI-OPS-BENCH-RESULT {json}`, with its counts and its latency histogram in
//! HdrHistogram's V2 encoding (base64). The coordinator reads each worker's log and merges the
//! lines into one [`Outcome`]; `bench merge` does the same for files.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::Failure;
use super::error::BenchError;
use super::histogram::Latencies;
use super::load::Outcome;

/// The marker that starts a result line.
pub const MARKER: &str = "NEWAPI-OPS-BENCH-RESULT ";

/// The wire form of one worker's outcome (version 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerResult {
    pub version: u32,
    /// The worker's index (0-based) among the run's workers.
    pub index: u32,
    pub target: String,
    pub started_at: jiff::Timestamp,
    pub elapsed_ms: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub failures: BTreeMap<Failure, u64>,
    pub connections_opened: u64,
    pub interrupted: bool,
    pub max_send_lag_ms: u64,
    /// HdrHistogram V2, base64, microseconds.
    pub histogram: String,
}

impl WorkerResult {
    /// The line a worker prints for `outcome`.
    pub fn line(
        index: u32,
        target: &str,
        started_at: jiff::Timestamp,
        outcome: &Outcome,
    ) -> Result<String, String> {
        let r = WorkerResult {
            version: 1,
            index,
            target: target.to_string(),
            started_at,
            elapsed_ms: u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
            statuses: outcome.statuses.clone(),
            failures: outcome.failures.clone(),
            connections_opened: outcome.connections_opened,
            interrupted: outcome.interrupted,
            max_send_lag_ms: u64::try_from(outcome.max_send_lag.as_millis()).unwrap_or(u64::MAX),
            histogram: outcome.latencies.to_base64()?,
        };
        let json = serde_json::to_string(&r).map_err(|e| e.to_string())?;
        Ok(format!("{MARKER}{json}"))
    }

    /// The last result line of `text` (a worker's output or pod log), parsed. `source_name`
    /// names where the text came from in errors.
    pub fn find(text: &str, source_name: &str) -> Result<WorkerResult, BenchError> {
        let bad = |detail: String| BenchError::BadWorkerResult {
            source_name: source_name.to_string(),
            detail,
        };
        let line = text
            .lines()
            .rev()
            .find_map(|l| l.find(MARKER).map(|i| &l[i + MARKER.len()..]))
            .ok_or_else(|| bad("no result line (the worker did not finish)".into()))?;
        let r: WorkerResult =
            serde_json::from_str(line).map_err(|e| bad(format!("bad result line: {e}")))?;
        if r.version != 1 {
            return Err(bad(format!("result version {} (this is 1)", r.version)));
        }
        Ok(r)
    }

    /// Back into an [`Outcome`] (its responses attributed to the worker).
    pub fn outcome(&self) -> Result<Outcome, String> {
        let latencies = Latencies::from_base64(&self.histogram)?;
        let responses: u64 = self.statuses.values().sum();
        if latencies.count() != responses {
            return Err(format!(
                "the histogram holds {} latencies but the counts say {responses} responses",
                latencies.count()
            ));
        }
        let mut per_endpoint = BTreeMap::new();
        if responses > 0 {
            per_endpoint.insert(format!("worker {}", self.index), responses);
        }
        Ok(Outcome {
            latencies,
            statuses: self.statuses.clone(),
            failures: self.failures.clone(),
            per_endpoint,
            elapsed: Duration::from_millis(self.elapsed_ms),
            connections_opened: self.connections_opened,
            interrupted: self.interrupted,
            max_send_lag: Duration::from_millis(self.max_send_lag_ms),
        })
    }
}

/// Merges workers' results into one outcome. The workers ran side by side, so the run lasted
/// as long as the longest of them; rates add up.
pub fn merge(results: &[WorkerResult]) -> Result<Outcome, String> {
    let mut total = Outcome::default();
    for r in results {
        let o = r
            .outcome()
            .map_err(|e| format!("worker {}: {e}", r.index))?;
        total.absorb(&o)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ms: u64, n: u64, status: u16) -> Outcome {
        let mut o = Outcome::default();
        for _ in 0..n {
            o.latencies.record(Duration::from_millis(ms));
        }
        o.statuses.insert(status, n);
        o.failures.insert(Failure::Timeout, 1);
        o.elapsed = Duration::from_secs(10);
        o.connections_opened = 4;
        o
    }

    #[test]
    fn workers_results_merge_into_one_histogram() {
        let t = jiff::Timestamp::UNIX_EPOCH;
        let a = WorkerResult::line(0, "http://s/api/status", t, &outcome(2, 900, 200)).unwrap();
        let b = WorkerResult::line(1, "http://s/api/status", t, &outcome(200, 100, 429)).unwrap();
        let log_a = format!("starting\n{a}\n");
        // A pod log may carry the kubelet's timestamp before the line.
        let log_b = format!("2026-01-01T00:00:00Z {b}");
        let results = vec![
            WorkerResult::find(&log_a, "pod a").unwrap(),
            WorkerResult::find(&log_b, "pod b").unwrap(),
        ];
        let m = merge(&results).unwrap();
        assert_eq!(m.responses(), 1000);
        assert_eq!(m.failed(), 2);
        assert_eq!(m.requests(), 1002);
        assert_eq!(m.statuses[&200], 900);
        assert_eq!(m.statuses[&429], 100);
        assert_eq!(m.connections_opened, 8);
        assert_eq!(m.elapsed, Duration::from_secs(10));
        let s = m.latencies.summary();
        assert!((s.p50_ms - 2.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 200.0).abs() < 0.5, "{s:?}");
        assert_eq!(m.per_endpoint["worker 1"], 100);
    }

    #[test]
    fn a_missing_or_damaged_line_names_its_source() {
        let e = WorkerResult::find("just logs\n", "pod x").unwrap_err();
        assert!(e.to_string().contains("pod x") && e.to_string().contains("no result line"));
        let e = WorkerResult::find(&format!("{MARKER}{{\"version\":1}}"), "f").unwrap_err();
        assert!(e.to_string().contains("bad result line"), "{e}");
        let t = jiff::Timestamp::UNIX_EPOCH;
        let line = WorkerResult::line(0, "u", t, &outcome(1, 5, 200)).unwrap();
        let mut r = WorkerResult::find(&line, "f").unwrap();
        r.statuses.insert(200, 6);
        assert!(r.outcome().unwrap_err().contains("counts say 6"));
    }
}
