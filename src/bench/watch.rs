//! What the deployment notes say to watch while the load runs (`watch kubectl top pods`,
//! `kubectl logs -f -l app=new-api`), done by the tool: the New-API pods listed before and after
//! (restarts, OOMKilled), their usage from metrics.k8s.io sampled every few seconds against
//! their requests and limits, and their logs over the run scanned for the known failure
//! signatures (429, Error 1040, Redis errors, …) and counted per pod from New-API's `[GIN]`
//! request lines, which gives the throughput each pod served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use serde::Serialize;

use super::load::Stop;
use crate::capacity::{Amount, pod_resources};
use crate::config::Settings;
use crate::error::Result;
use crate::inventory::{Role, Snapshot};
use crate::k8s::Kube;
use crate::quantity::{parse_cpu_millis, parse_value};

/// How often metrics.k8s.io is asked during the run.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// At most this much of each pod's log over the run is read.
pub const LOG_LIMIT_BYTES: i64 = 16 << 20;

/// A New-API pod as seen before or after the run.
#[derive(Debug, Clone)]
struct PodState {
    name: String,
    role: Role,
    requests: Amount,
    limits: Amount,
    restarts: i32,
    ready: bool,
    /// Reason of the last termination (e.g. OOMKilled), if any container has one.
    last_termination: Option<String>,
}

/// Usage samples of one pod.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    samples: u32,
    cpu_sum: i64,
    cpu_max: i64,
    memory_max: i64,
}

/// The cluster side of a run, started before the load and finished after it.
pub struct Watch {
    kube: Kube,
    settings: Settings,
    before: Vec<PodState>,
    started_at: jiff::Timestamp,
    stop: Arc<Stop>,
    sampler: tokio::task::JoinHandle<(BTreeMap<String, Usage>, Option<String>)>,
}

/// One pod over the run.
#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    pub pod: String,
    pub role: Role,
    pub cpu_request_millis: i64,
    pub cpu_limit_millis: i64,
    pub memory_request_bytes: i64,
    pub memory_limit_bytes: i64,
    /// From metrics.k8s.io: the mean and the highest CPU, the highest memory sampled.
    pub cpu_mean_millis: Option<i64>,
    pub cpu_max_millis: Option<i64>,
    pub memory_max_bytes: Option<i64>,
    pub samples: u32,
    /// Restarts during the run (the restart count after minus before).
    pub restarts_during: i32,
    /// Why its container last ended, when it restarted during the run (e.g. OOMKilled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<String>,
    /// Requests to the benchmarked path it logged during the run (`[GIN]` lines), by status.
    pub served: BTreeMap<u16, u64>,
    /// `served` per second of the run; None when its log could not be read.
    pub served_per_second: Option<f64>,
    /// Gone after the run (deleted, evicted) or new during it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A failure signature seen in a pod's log during the run.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureSeen {
    pub pod: String,
    pub id: String,
    pub count: usize,
    pub cause: String,
    pub runbook: String,
    pub line: String,
}

/// What the watch saw.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub namespace: String,
    pub pods: Vec<PodReport>,
    /// Why there are no usage figures, when metrics.k8s.io did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_unavailable: Option<String>,
    pub signatures: Vec<SignatureSeen>,
    /// Pods whose log could not be read, with why.
    pub logs_unreadable: Vec<String>,
}

impl ClusterReport {
    /// Restarts of every pod during the run.
    pub fn restarts(&self) -> i32 {
        self.pods.iter().map(|p| p.restarts_during).sum()
    }
}

/// The New-API pods (master and slaves) of the namespace.
async fn new_api_pods(kube: &Kube, settings: &Settings) -> Result<Vec<PodState>> {
    let list = kube
        .list::<Pod>(Some(&settings.namespace), &ListParams::default())
        .await?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| {
            let role = Snapshot::role_of(p, settings)?;
            if !matches!(role, Role::Master | Role::Slave) {
                return None;
            }
            if matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ) {
                return None;
            }
            let statuses = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            let res = p.spec.as_ref().map(pod_resources).unwrap_or_default();
            Some(PodState {
                name: p.metadata.name.clone()?,
                role,
                requests: res.requests,
                limits: res.limits,
                restarts: statuses.iter().map(|c| c.restart_count).sum(),
                ready: !statuses.is_empty() && statuses.iter().all(|c| c.ready),
                last_termination: statuses.iter().find_map(|c| {
                    c.last_state.as_ref()?.terminated.as_ref().map(|t| {
                        t.reason
                            .clone()
                            .unwrap_or_else(|| format!("exit {}", t.exit_code))
                    })
                }),
            })
        })
        .collect())
}

/// One `GET` of the namespace's pod metrics: usage per pod, or why there is none.
async fn pod_usage(
    kube: &Kube,
    namespace: &str,
) -> std::result::Result<BTreeMap<String, Amount>, String> {
    let req = http::Request::get(format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
    ))
    .body(Vec::new())
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value = match kube.client.request(req).await {
        Ok(v) => v,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 503 => {
            return Err("metrics.k8s.io is not served (no metrics-server)".into());
        }
        Err(e) => return Err(format!("metrics.k8s.io did not answer: {e}")),
    };
    let mut out = BTreeMap::new();
    for item in v["items"].as_array().into_iter().flatten() {
        let Some(name) = item["metadata"]["name"].as_str() else {
            continue;
        };
        let mut a = Amount::default();
        for c in item["containers"].as_array().into_iter().flatten() {
            if let Some(cpu) = c["usage"]["cpu"]
                .as_str()
                .and_then(|q| parse_cpu_millis(q).ok())
            {
                a.cpu_millis += cpu;
            }
            if let Some(m) = c["usage"]["memory"]
                .as_str()
                .and_then(|q| parse_value(q).ok())
            {
                a.memory_bytes += m;
            }
        }
        out.insert(name.to_string(), a);
    }
    Ok(out)
}

impl Watch {
    /// Lists the pods and starts sampling their usage; call [`Watch::finish`] after the load.
    pub async fn start(kube: &Kube, settings: &Settings) -> Result<Watch> {
        let before = new_api_pods(kube, settings).await?;
        let stop = Stop::new();
        let (k, ns, s) = (kube.clone(), settings.namespace.clone(), stop.clone());
        let sampler = tokio::spawn(async move {
            let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
            let mut unavailable = None;
            // The first sample is taken before the load (it only says whether metrics.k8s.io
            // answers); then one every SAMPLE_EVERY, and a last one when the load stops, so
            // that a run shorter than SAMPLE_EVERY is measured under load too.
            let mut first = true;
            let mut last = false;
            loop {
                match pod_usage(&k, &ns).await {
                    Ok(now) => {
                        unavailable = None;
                        for (pod, a) in now.into_iter().filter(|_| !first) {
                            let u = usage.entry(pod).or_default();
                            u.samples += 1;
                            u.cpu_sum += a.cpu_millis;
                            u.cpu_max = u.cpu_max.max(a.cpu_millis);
                            u.memory_max = u.memory_max.max(a.memory_bytes);
                        }
                    }
                    Err(why) => {
                        if usage.is_empty() {
                            unavailable = Some(why);
                        }
                    }
                }
                first = false;
                if last {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(SAMPLE_EVERY) => {}
                    () = s.wait() => last = true,
                }
            }
            (usage, unavailable)
        });
        Ok(Watch {
            kube: kube.clone(),
            settings: settings.clone(),
            before,
            started_at: jiff::Timestamp::now(),
            stop,
            sampler,
        })
    }

    /// The pods the run targets (ready ones of the role, or all New-API pods).
    pub fn ready_pods(&self, role: Option<Role>) -> usize {
        self.before
            .iter()
            .filter(|p| p.ready && role.is_none_or(|r| p.role == r))
            .count()
    }

    /// Stops sampling, lists the pods again, reads their logs over the run; `elapsed` is how
    /// long the load ran and `path` the path it requested.
    pub async fn finish(self, elapsed: Duration, path: &str) -> Result<ClusterReport> {
        let window = RunWindow {
            from: self.started_at,
            until: jiff::Timestamp::now(),
        };
        // The sampler takes its last sample, under the load's tail, and ends.
        self.stop.stop();
        let (usage, unavailable) = self
            .sampler
            .await
            .unwrap_or_else(|_| (BTreeMap::new(), Some("the sampler failed".into())));
        let after = new_api_pods(&self.kube, &self.settings).await?;
        let mut names: Vec<String> = self.before.iter().map(|p| p.name.clone()).collect();
        for p in &after {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
        // The server takes whole seconds (kube rounds `sinceTime` to the nearest one, which
        // dropped every line of a run shorter than the half second it was rounded up by), so
        // the log is asked from the second before the start, with the kubelet's timestamps,
        // and cut to the run here.
        let params = LogParams {
            since_time: Some(window.since()),
            timestamps: true,
            limit_bytes: Some(LOG_LIMIT_BYTES),
            ..LogParams::default()
        };
        let (logs, failures) = crate::logs::read(
            &self.kube,
            &self.settings.namespace,
            &names,
            &params,
            4,
            &|_| true,
        )
        .await;
        // A container that restarted during the run took the first part of the run with it:
        // its previous log has those lines and, above all, why it ended (OOM, Error 1040).
        let restarted: Vec<String> = after
            .iter()
            .filter(|a| {
                self.before
                    .iter()
                    .any(|b| b.name == a.name && a.restarts > b.restarts)
            })
            .map(|a| a.name.clone())
            .collect();
        let (previous, previous_failures) = if restarted.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let params = LogParams {
                previous: true,
                ..params.clone()
            };
            crate::logs::read(
                &self.kube,
                &self.settings.namespace,
                &restarted,
                &params,
                4,
                &|_| true,
            )
            .await
        };
        let Tally {
            served,
            seen,
            cut_short,
        } = tally(logs.iter().chain(&previous), window, path);
        let unreadable: Vec<String> = failures
            .iter()
            .map(|(p, e)| format!("{p}: {e}"))
            .chain(
                previous_failures
                    .iter()
                    .map(|(p, e)| format!("{p} (the container before its restart): {e}")),
            )
            .collect();
        let read_ok = |pod: &str| !failures.iter().any(|(p, _)| p == pod);
        let secs = elapsed.as_secs_f64().max(0.001);
        let mut pods = Vec::new();
        for name in &names {
            let b = self.before.iter().find(|p| &p.name == name);
            let a = after.iter().find(|p| &p.name == name);
            let Some(state) = a.or(b) else { continue };
            let u = usage.get(name).copied().unwrap_or_default();
            let restarts_during = match (b, a) {
                (Some(b), Some(a)) => (a.restarts - b.restarts).max(0),
                _ => 0,
            };
            let note = match (b, a) {
                (Some(_), None) => Some("gone after the run (deleted or evicted)".to_string()),
                (None, Some(_)) => Some("started during the run".to_string()),
                _ if cut_short.contains(name) => Some(format!(
                    "its log over the run passed {}: the requests counted are a lower bound",
                    crate::units::bytes(LOG_LIMIT_BYTES.unsigned_abs())
                )),
                _ => None,
            };
            let counts = served.get(name).cloned().unwrap_or_default();
            #[allow(clippy::cast_precision_loss)]
            let per_second = read_ok(name).then(|| counts.values().sum::<u64>() as f64 / secs);
            pods.push(PodReport {
                pod: name.clone(),
                role: state.role,
                cpu_request_millis: state.requests.cpu_millis,
                cpu_limit_millis: state.limits.cpu_millis,
                memory_request_bytes: state.requests.memory_bytes,
                memory_limit_bytes: state.limits.memory_bytes,
                cpu_mean_millis: (u.samples > 0).then(|| u.cpu_sum / i64::from(u.samples)),
                cpu_max_millis: (u.samples > 0).then_some(u.cpu_max),
                memory_max_bytes: (u.samples > 0).then_some(u.memory_max),
                samples: u.samples,
                restarts_during,
                terminated: (restarts_during > 0)
                    .then(|| a.and_then(|a| a.last_termination.clone()))
                    .flatten(),
                served: counts,
                served_per_second: per_second,
                note,
            });
        }
        pods.sort_by(|x, y| (x.role, &x.pod).cmp(&(y.role, &y.pod)));
        Ok(ClusterReport {
            namespace: self.settings.namespace.clone(),
            pods,
            metrics_unavailable: unavailable,
            signatures: seen,
            logs_unreadable: unreadable,
        })
    }
}

/// What the pods' logs say of the run.
struct Tally {
    /// Requests to the path, by pod and status.
    served: BTreeMap<String, BTreeMap<u16, u64>>,
    seen: Vec<SignatureSeen>,
    /// Pods whose log reached [`LOG_LIMIT_BYTES`] (their counts are short).
    cut_short: Vec<String>,
}

/// Counts the `[GIN]` lines for `path` and the failure signatures in the logs read (the
/// current logs and, for containers that restarted, their previous ones: one pod may come
/// twice, a line it has in both counts once), only the lines of `window`.
fn tally<'a>(
    logs: impl Iterator<Item = &'a Vec<crate::logs::LogLine>>,
    window: RunWindow,
    path: &str,
) -> Tally {
    let mut by_pod: BTreeMap<&str, Vec<&crate::logs::LogLine>> = BTreeMap::new();
    let mut cut_short = Vec::new();
    for lines in logs {
        let Some(pod) = lines.first().map(|l| l.pod.as_str()) else {
            continue;
        };
        // What the kubelet sent, timestamps and newlines included: at the limit, the log
        // was cut and the counts are short.
        let bytes: usize = lines
            .iter()
            .map(|l| l.line.len() + l.time.as_ref().map_or(0, |t| t.len() + 1) + 1)
            .sum();
        if i64::try_from(bytes).unwrap_or(i64::MAX) >= LOG_LIMIT_BYTES - 4096 {
            cut_short.push(pod.to_string());
        }
        by_pod
            .entry(pod)
            .or_default()
            .extend(lines.iter().filter(|l| window.holds(l.time.as_deref())));
    }
    let signatures = crate::diagnose::signatures::builtin().unwrap_or_default();
    let mut served: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    let mut seen = Vec::new();
    for (pod, mut lines) in by_pod {
        // A container waiting to restart shows its last run as the current log too: once.
        lines.sort_by(|x, y| (&x.time, &x.line).cmp(&(&y.time, &y.line)));
        lines.dedup_by(|x, y| x.time.is_some() && x.time == y.time && x.line == y.line);
        let counts = served.entry(pod.to_string()).or_default();
        for l in &lines {
            if let Some(status) = gin_status(&l.line, path) {
                *counts.entry(status).or_default() += 1;
            }
        }
        for m in
            crate::diagnose::signatures::scan(lines.iter().map(|l| l.line.as_str()), &signatures)
        {
            seen.push(SignatureSeen {
                pod: pod.to_string(),
                id: m.id,
                count: m.count,
                cause: m.cause,
                runbook: m.runbook,
                line: m.last_line,
            });
        }
    }
    Tally {
        served,
        seen,
        cut_short,
    }
}

/// The time the load ran, to cut the pods' logs to.
#[derive(Debug, Clone, Copy)]
struct RunWindow {
    from: jiff::Timestamp,
    until: jiff::Timestamp,
}

/// Lines logged this long after the load ended still count: the last responses' lines reach
/// the kubelet a moment after the client read them.
const LOG_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

impl RunWindow {
    /// The `sinceTime` to ask for: the whole second the run started in (the API server keeps
    /// whole seconds only; rounding to the nearest would cut up to half a second off the run).
    fn since(self) -> jiff::Timestamp {
        jiff::Timestamp::from_second(self.from.as_second()).unwrap_or(self.from)
    }

    /// Whether a line with the kubelet's timestamp `time` was logged during the run; a line
    /// without one (a kubelet that ignores `timestamps`) is kept, as the server chose it.
    fn holds(self, time: Option<&str>) -> bool {
        match time.map(str::parse::<jiff::Timestamp>) {
            Some(Ok(t)) => t >= self.from && t <= self.until + LOG_GRACE,
            _ => true,
        }
    }
}

/// The status of a New-API `[GIN]` request line for `path`
/// (`[GIN] 2025/11/13 - 10:00:10 | 2025… | 200 |  1.2ms | 10.0.0.1 | GET "/api/status"`).
pub fn gin_status(line: &str, path: &str) -> Option<u16> {
    let rest = line.strip_prefix("[GIN]")?;
    let bare = path.split('?').next().unwrap_or(path);
    if !rest.contains(bare) {
        return None;
    }
    rest.split('|').find_map(|f| {
        let f = f.trim();
        (f.len() == 3 && f.bytes().all(|b| b.is_ascii_digit()))
            .then(|| f.parse::<u16>().ok())
            .flatten()
            .filter(|s| (100..600).contains(s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_window_is_the_run_to_the_nanosecond() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let w = RunWindow {
            from: t("2026-12-01T12:42:25.655Z"),
            until: t("2026-12-01T12:42:25.724Z"),
        };
        // Asked from the second it started in, never rounded up past the run's first lines.
        assert_eq!(w.since(), t("2026-12-01T12:42:25Z"));
        let late = RunWindow {
            from: t("2026-12-01T12:42:25.999Z"),
            ..w
        };
        assert_eq!(late.since(), t("2026-12-01T12:42:25Z"));
        assert!(!w.holds(Some("2026-12-01T12:42:25.654999999Z")), "before");
        assert!(w.holds(Some("2026-12-01T12:42:25.655000000Z")));
        assert!(w.holds(Some("2026-12-01T12:42:25.700000000Z")));
        assert!(w.holds(Some("2026-12-01T12:42:26.724000000Z")), "the grace");
        assert!(!w.holds(Some("2026-12-01T12:42:26.724000001Z")), "after");
        assert!(w.holds(None), "no timestamp: as the server chose");
    }

    #[test]
    fn a_restarted_pods_two_logs_count_once_and_only_within_the_run() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let w = RunWindow {
            from: t("2026-12-01T12:00:00Z"),
            until: t("2026-12-01T12:00:30Z"),
        };
        let line = |pod: &str, time: &str, text: &str| {
            crate::logs::LogLine::parse(pod, &format!("{time} {text}"))
        };
        let gin = "[GIN] 2026/12/01 - 12:00:05 | 1 | 200 | 1ms | 127.0.0.1 | GET /api/status";
        let limited = "[GIN] 2026/12/01 - 12:00:05 | 1 | 429 | 1ms | 127.0.0.1 | GET /api/status";
        // The container before its restart: two requests, then killed.
        let previous = vec![
            line("a", "2026-12-01T11:59:59.900000000Z", gin),
            line("a", "2026-12-01T12:00:05.000000000Z", gin),
            line("a", "2026-12-01T12:00:06.000000000Z", limited),
            line(
                "a",
                "2026-12-01T12:00:07.000000000Z",
                "fatal error: runtime: out of memory",
            ),
        ];
        // Its current log: the new container's request — and, while it waits to restart, the
        // kubelet gives the last run as the current log too.
        let current = vec![
            line("a", "2026-12-01T12:00:06.000000000Z", limited),
            line(
                "a",
                "2026-12-01T12:00:07.000000000Z",
                "fatal error: runtime: out of memory",
            ),
            line("a", "2026-12-01T12:00:20.000000000Z", gin),
            line("a", "2026-12-01T12:00:31.500000000Z", gin),
        ];
        let other = vec![line("b", "2026-12-01T12:00:10.000000000Z", gin)];
        let logs = [current, other, previous];
        let got = tally(logs.iter(), w, "/api/status");
        assert_eq!(
            got.served["a"],
            BTreeMap::from([(200, 2), (429, 1)]),
            "before the run, after it and the doubled lines are not counted"
        );
        assert_eq!(got.served["b"], BTreeMap::from([(200, 1)]));
        let oom: Vec<&SignatureSeen> = got
            .seen
            .iter()
            .filter(|s| s.id == "out-of-memory")
            .collect();
        assert_eq!(oom.len(), 1, "{:?}", got.seen);
        assert_eq!((oom[0].pod.as_str(), oom[0].count), ("a", 1));
        assert!(got.cut_short.is_empty());
    }

    #[test]
    fn gin_lines_give_the_status_of_the_path() {
        let l = "[GIN] 2025/11/13 - 10:00:10 | 20251113100010123 | 429 |      1.2ms |  10.0.0.1 |     GET \"/api/status\"";
        assert_eq!(gin_status(l, "/api/status"), Some(429));
        assert_eq!(gin_status(l, "/api/status?x=1"), Some(429));
        assert_eq!(gin_status(l, "/api/user"), None);
        assert_eq!(gin_status("[SYS] started | 200 |", "/"), None);
        let l = "[GIN] 2025/11/13 - 10:00:10 | 200 | 1ms | 10.0.0.1 | GET \"/\"";
        assert_eq!(gin_status(l, "/"), Some(200));
    }
}
