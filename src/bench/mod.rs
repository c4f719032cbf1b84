//! `newapi-ops bench`: the deployment notes' load test (压力测试) as a command. It sends `GET`s
//! to New-API (a URL such as the NodePort, the pods through port-forwards, or the Service from
//! worker pods inside the cluster), closed loop or open loop at a fixed rate with
//! coordinated-omission correction ([`load`]), times them in an HdrHistogram ([`histogram`]),
//! and meanwhile watches what the notes say to watch ([`watch`]): usage against requests and
//! limits, restarts, OOM kills, the failure signatures in the logs, the throughput per pod. It
//! ends by comparing the measured QPS per pod with the capacity model `plan` and `scale --qps`
//! use, and says what to put in newapi-ops.toml.

pub mod client;
pub mod cluster;
pub mod error;
pub mod histogram;
pub mod load;
pub mod render;
pub mod watch;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

pub use error::BenchError;

use self::client::Url;
use self::cluster::{JobMode, JobSpec, WorkerReport};
use self::histogram::LatencySummary;
use self::load::{Endpoint, Live, LoadSpec, Outcome, Stop};
use self::watch::{ClusterReport, Watch};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::Kube;
use crate::printer::Printer;

/// The longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most connections accepted.
pub const MAX_CONNECTIONS: usize = 10_000;
/// The highest open-loop rate accepted, in requests per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The most requests accepted for `--requests`.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// The most in-cluster workers.
pub const MAX_WORKERS: u32 = 100;
/// A pod at this share of its CPU limit (or request, without a limit) is saturated.
pub const CPU_SATURATED: f64 = 0.8;

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Source {
    /// A URL the user gave (the NodePort, an Ingress).
    Url(Url),
    /// The pods of a role (all New-API pods when None) through port-forwards.
    PortForward(Option<Role>),
    /// Worker pods inside the cluster, hitting the Service.
    InCluster(InCluster),
}

/// `--in-cluster`'s settings.
#[derive(Debug, Clone)]
pub struct InCluster {
    pub workers: u32,
    pub image: String,
    /// CPU each worker pod requests.
    pub cpu: String,
    /// How long to wait for the workers beyond the run's duration (pulling, scheduling).
    pub start_timeout: Duration,
    /// Only the Service of this role (else the one in front of all New-API pods).
    pub role: Option<Role>,
}

/// How much load, how fast, for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    pub requests: Option<u64>,
    /// Requests per second (open loop); None: as fast as the connections allow.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Threads of the load generator (wrk's `-t`).
    pub threads: usize,
}

impl Load {
    /// Checks every value before anything is sent.
    pub fn check(&self) -> std::result::Result<(), BenchError> {
        let u = |m: String| Err(BenchError::Usage(m));
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return u(format!(
                "--connections {}: give 1 to {MAX_CONNECTIONS}",
                self.connections
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return u(format!(
                "--duration {}: give more than 0 and at most 1h",
                crate::units::duration(self.duration)
            ));
        }
        if let Some(n) = self.requests
            && (n == 0 || n > MAX_REQUESTS)
        {
            return u(format!("--requests {n}: give 1 to {MAX_REQUESTS}"));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= MAX_RATE)
        {
            return u(format!(
                "--rate {r}: give a rate above 0 and at most {MAX_RATE} requests per second"
            ));
        }
        if self.timeout.is_zero() {
            return u("--timeout must be above zero".into());
        }
        if self.threads == 0 || self.threads > 256 {
            return u(format!("--threads {}: give 1 to 256", self.threads));
        }
        Ok(())
    }

    /// Worker `index`'s share of `workers`: connections, requests and rate split as evenly as
    /// whole numbers allow (the first ones take the remainder).
    pub fn share(&self, index: u32, workers: u32) -> Load {
        let k = u64::from(workers.max(1));
        let i = u64::from(index);
        let split = |total: u64| total / k + u64::from(i < total % k);
        #[allow(clippy::cast_possible_truncation)]
        let connections = split(self.connections as u64).max(1) as usize;
        #[allow(clippy::cast_precision_loss)]
        Load {
            connections,
            duration: self.duration,
            requests: self.requests.map(|n| split(n).max(1)),
            rate: self.rate.map(|r| r / k as f64),
            timeout: self.timeout,
            threads: self.threads,
        }
    }
}

/// Everything `bench` needs, in plain types.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    /// The path requested of pods and Services (a URL brings its own).
    pub path: String,
    pub load: Load,
    /// Watch the cluster while the load runs (usage, restarts, logs).
    pub watch: bool,
    /// A live progress line on the terminal.
    pub progress: bool,
    /// The capacity model: QPS per pod, and where the figure comes from.
    pub model_qps_per_pod: u32,
    pub model_source: String,
}

/// The capacity model against the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub model_qps_per_pod: u32,
    pub model_source: String,
    /// Pods that served the load.
    pub pods: usize,
    /// Successful (2xx) responses per second per pod.
    pub measured_qps_per_pod: Option<f64>,
    /// Whether the pods were the limit: `cpu`, `errors`, or null when they were not saturated
    /// (the figure is then a lower bound).
    pub saturated_by: Option<String>,
    /// Whether the figure can stand as the model's (saturated, not through a port-forward).
    pub is_capacity: bool,
    pub verdict: String,
    /// The lines to put in newapi-ops.toml, when the figure is a capacity.
    pub config: Option<String>,
}

/// One place the load went, with what it got.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    pub endpoint: String,
    pub responses: u64,
    pub responses_per_second: f64,
}

/// The result of a run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub target: String,
    /// `closed` or `open` (fixed rate, coordinated omission corrected).
    pub mode: &'static str,
    pub connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub duration_limit_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_limit: Option<u64>,
    pub started_at: jiff::Timestamp,
    pub elapsed_s: f64,
    /// Every request sent: responses + errors.
    pub requests: u64,
    pub requests_per_second: f64,
    pub responses: u64,
    /// Responses by status code.
    pub status: BTreeMap<String, u64>,
    /// Requests without a response, by why (connect, timeout, closed, io, bad_response).
    pub errors: BTreeMap<String, u64>,
    pub timeouts: u64,
    pub latency: LatencySummary,
    pub connections_opened: u64,
    /// Open loop: the largest delay of a send behind its schedule (the generator's own lag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_send_lag_ms: Option<f64>,
    pub interrupted: bool,
    pub endpoints: Vec<EndpointReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<InClusterReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_not_watched: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    pub warnings: Vec<String>,
    /// What went wrong after the report could be made (missing workers): printed, then the
    /// command's error.
    #[serde(skip)]
    pub failure: Option<BenchError>,
}

/// How the in-cluster workers ran.
#[derive(Debug, Clone, Serialize)]
pub struct InClusterReport {
    pub service_url: String,
    pub job_mode: JobMode,
    pub jobs: Vec<String>,
    pub workers: Vec<WorkerReport>,
}

/// Resolves `url`'s host (the first address).
async fn resolve(url: &Url) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host((url.resolve_host(), url.port))
        .await
        .map_err(|e| BenchError::Unreachable {
            target: url.to_string(),
            attempts: 0,
            detail: format!("the host does not resolve: {e}"),
        })?;
    addrs.next().ok_or_else(|| {
        BenchError::Unreachable {
            target: url.to_string(),
            attempts: 0,
            detail: "the host has no address".into(),
        }
        .into()
    })
}

/// Runs the load with a progress line; `stop` ends it early.
pub async fn drive(spec: LoadSpec, progress: bool, stop: Arc<Stop>) -> Result<Outcome> {
    let live = Arc::new(Live::default());
    let bar = progress_bar(progress, &spec);
    let ticker = bar.clone().map(|bar| {
        let live = live.clone();
        tokio::spawn(async move {
            let mut last = (std::time::Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let done = live.done.load(Ordering::Relaxed);
                let failed = live.failed.load(Ordering::Relaxed);
                let now = std::time::Instant::now();
                let dt = now.duration_since(last.0).as_secs_f64().max(0.001);
                #[allow(clippy::cast_precision_loss)]
                let rate = (done - last.1) as f64 / dt;
                last = (now, done);
                bar.set_message(format!("{done} requests, {rate:.0}/s, {failed} errors"));
                bar.tick();
            }
        })
    });
    let outcome = load::run(spec, live, stop).await.map_err(Error::Internal);
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

fn progress_bar(progress: bool, spec: &LoadSpec) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(spec.duration.as_secs().max(1));
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} bench {elapsed}/{len}s {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// Runs `bench`: the load from here (a URL or port-forwards) or from worker pods, the cluster
/// watched meanwhile when `kube` is there. `kube` may be None only for a URL.
pub async fn run(
    kube: Option<&Kube>,
    settings: &Settings,
    opts: &Options,
    stop: Arc<Stop>,
    printer: &Printer,
) -> Result<Report> {
    opts.load.check()?;
    let mut warnings = Vec::new();
    let need_kube = || {
        kube.ok_or_else(|| {
            Error::from(BenchError::Usage(
                "--target and --in-cluster need the cluster: no kubeconfig".into(),
            ))
        })
    };
    if let Source::InCluster(ic) = &opts.source {
        return run_in_cluster(need_kube()?, settings, opts, ic, stop, printer).await;
    }
    // Where the requests go, and (for port-forwards) the forwards that must live meanwhile.
    let mut forwards = Vec::new();
    let (target, endpoints, role) = match &opts.source {
        Source::Url(url) => {
            let addr = resolve(url).await?;
            let ep = Endpoint {
                addr,
                label: url.to_string(),
                request: Arc::new(client::request_bytes(url)),
            };
            (url.to_string(), vec![ep], None)
        }
        Source::PortForward(role) => {
            let kube = need_kube()?;
            let snap = Snapshot::load(kube, settings).await?;
            let pods = ready_pods(&snap, settings, *role);
            if pods.is_empty() {
                return Err(BenchError::NoPods {
                    role: role.map_or("New-API", Role::as_str).to_string(),
                    namespace: settings.namespace.clone(),
                }
                .into());
            }
            let mut eps = Vec::new();
            for (pod, port) in &pods {
                let f = crate::portforward::forward(kube, &settings.namespace, pod, *port).await?;
                let url = Url {
                    host: "127.0.0.1".into(),
                    port: f.local.port(),
                    path: opts.path.clone(),
                };
                eps.push(Endpoint {
                    addr: f.local,
                    label: format!("pod/{pod}"),
                    request: Arc::new(client::request_bytes(&url)),
                });
                forwards.push(f);
            }
            warnings.push(
                "through port-forwards every byte goes through the API server and the kubelet: the throughput is theirs more than New-API's; for capacity use --url (the NodePort) or --in-cluster".to_string(),
            );
            let what = role.map_or("New-API", Role::as_str);
            (
                format!(
                    "{} {what} pods through port-forwards, {}",
                    pods.len(),
                    opts.path
                ),
                eps,
                *role,
            )
        }
        Source::InCluster(_) => unreachable_source()?,
    };
    for w in &warnings {
        printer.warn(w);
    }
    let (watch, not_watched) = start_watch(kube, settings, opts, printer).await;
    let path = match &opts.source {
        Source::Url(u) => u.path.clone(),
        _ => opts.path.clone(),
    };
    let spec = LoadSpec {
        endpoints,
        connections: opts.load.connections,
        duration: opts.load.duration,
        requests: opts.load.requests,
        rate: opts.load.rate,
        timeout: opts.load.timeout,
        threads: opts.load.threads,
    };
    let started_at = jiff::Timestamp::now();
    printer.note(&format!(
        "bench {target}: {}, {} connections, up to {}{}",
        if opts.load.rate.is_some() {
            "open loop"
        } else {
            "closed loop"
        },
        opts.load.connections,
        crate::units::duration(opts.load.duration),
        opts.load
            .requests
            .map(|n| format!(" or {n} requests"))
            .unwrap_or_default()
    ));
    let outcome = drive(spec, opts.progress, stop).await?;
    drop(forwards);
    let cluster = finish_watch(watch, outcome.elapsed, &path, &mut warnings).await;
    let through_forward = matches!(opts.source, Source::PortForward(_));
    let mut report = build_report(
        target,
        opts,
        started_at,
        &outcome,
        cluster,
        not_watched,
        warnings,
        role,
        through_forward,
    );
    if outcome.responses() == 0 && !outcome.interrupted && outcome.requests() > 0 {
        report.failure = Some(BenchError::Unreachable {
            target: report.target.clone(),
            attempts: outcome.requests(),
            detail: report
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(report)
}

fn unreachable_source<T>() -> Result<T> {
    Err(Error::Internal("in-cluster source handled above".into()))
}

/// Ready pods of the role (all New-API pods when None) with their HTTP port.
fn ready_pods(snap: &Snapshot, settings: &Settings, role: Option<Role>) -> Vec<(String, u16)> {
    snap.pods
        .iter()
        .filter(|p| {
            let r = Snapshot::role_of(p, settings);
            let fits = match role {
                Some(want) => r == Some(want),
                None => matches!(r, Some(Role::Master | Role::Slave)),
            };
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            fits && ready && p.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|p| {
            let port = p
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .map(|p| p.container_port)
                .next()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(3000);
            Some((p.metadata.name.clone()?, port))
        })
        .collect()
}

/// Ends the watch after the load; what went wrong is a warning of the report.
async fn finish_watch(
    watch: Option<Watch>,
    elapsed: Duration,
    path: &str,
    warnings: &mut Vec<String>,
) -> Option<ClusterReport> {
    match watch?.finish(elapsed, path).await {
        Ok(c) => Some(c),
        Err(e) => {
            warnings.push(format!("the cluster was not watched to the end: {e}"));
            None
        }
    }
}

async fn start_watch(
    kube: Option<&Kube>,
    settings: &Settings,
    opts: &Options,
    printer: &Printer,
) -> (Option<Watch>, Option<String>) {
    if !opts.watch {
        return (None, Some("--no-watch".into()));
    }
    let Some(kube) = kube else {
        return (None, Some("no kubeconfig".into()));
    };
    match Watch::start(kube, settings).await {
        Ok(w) => (Some(w), None),
        Err(e) => {
            printer.warn(&format!("the cluster is not watched during the run: {e}"));
            (None, Some(e.to_string()))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    target: String,
    opts: &Options,
    started_at: jiff::Timestamp,
    o: &Outcome,
    cluster: Option<ClusterReport>,
    not_watched: Option<String>,
    warnings: Vec<String>,
    role: Option<Role>,
    through_forward: bool,
) -> Report {
    let secs = o.elapsed.as_secs_f64().max(1e-6);
    #[allow(clippy::cast_precision_loss)]
    let per_second = |n: u64| n as f64 / secs;
    let endpoints = o
        .per_endpoint
        .iter()
        .map(|(k, v)| EndpointReport {
            endpoint: k.clone(),
            responses: *v,
            responses_per_second: per_second(*v),
        })
        .collect();
    let ok: u64 = o
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let capacity = capacity(
        opts,
        o,
        ok,
        secs,
        cluster.as_ref(),
        role,
        through_forward,
        &target,
        started_at,
    );
    Report {
        schema_version: 1,
        target,
        mode: if opts.load.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: opts.load.connections,
        rate: opts.load.rate,
        duration_limit_s: opts.load.duration.as_secs_f64(),
        requests_limit: opts.load.requests,
        started_at,
        elapsed_s: o.elapsed.as_secs_f64(),
        requests: o.requests(),
        requests_per_second: per_second(o.requests()),
        responses: o.responses(),
        status: o
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        errors: o
            .failures
            .iter()
            .map(|(k, v)| {
                (
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    *v,
                )
            })
            .collect(),
        timeouts: o
            .failures
            .get(&client::Failure::Timeout)
            .copied()
            .unwrap_or(0),
        latency: o.latencies.summary(),
        connections_opened: o.connections_opened,
        max_send_lag_ms: opts
            .load
            .rate
            .map(|_| o.max_send_lag.as_secs_f64() * 1000.0),
        interrupted: o.interrupted,
        endpoints,
        in_cluster: None,
        cluster,
        cluster_not_watched: not_watched,
        capacity,
        warnings,
        failure: None,
    }
}

/// The measured QPS per pod against the model, with the verdict and the config lines.
#[allow(clippy::too_many_arguments)]
fn capacity(
    opts: &Options,
    o: &Outcome,
    ok: u64,
    secs: f64,
    cluster: Option<&ClusterReport>,
    role: Option<Role>,
    through_forward: bool,
    target: &str,
    started_at: jiff::Timestamp,
) -> Option<Capacity> {
    let cluster = cluster?;
    let serving: Vec<&watch::PodReport> = cluster
        .pods
        .iter()
        .filter(|p| role.is_none_or(|r| p.role == r))
        .filter(|p| p.served.values().sum::<u64>() > 0)
        .collect();
    let pods = if serving.is_empty() {
        cluster
            .pods
            .iter()
            .filter(|p| role.is_none_or(|r| p.role == r))
            .count()
    } else {
        serving.len()
    };
    if pods == 0 || o.responses() == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let measured = ok as f64 / secs / pods as f64;
    // The busiest pod's CPU against its limit (else its request).
    let cpu_share = cluster
        .pods
        .iter()
        .filter(|p| role.is_none_or(|r| p.role == r))
        .filter_map(|p| {
            let cap = if p.cpu_limit_millis > 0 {
                p.cpu_limit_millis
            } else {
                p.cpu_request_millis
            };
            #[allow(clippy::cast_precision_loss)]
            let share = p.cpu_max_millis? as f64 / cap.max(1) as f64;
            (cap > 0).then_some(share)
        })
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    #[allow(clippy::cast_precision_loss)]
    let bad_share = (o.responses() - ok + o.failed()) as f64 / o.requests().max(1) as f64;
    let saturated_by = if cpu_share.is_some_and(|s| s >= CPU_SATURATED) {
        Some("cpu".to_string())
    } else if bad_share > 0.01 {
        Some("errors".to_string())
    } else {
        None
    };
    let model = opts.model_qps_per_pod;
    let rounded = (measured.round().max(1.0)) as u32;
    let cpu_text = cpu_share.map_or("CPU not measured (no metrics.k8s.io)".to_string(), |s| {
        format!("busiest pod at {:.0} % of its CPU limit", s * 100.0)
    });
    let is_capacity = saturated_by.is_some() && !through_forward;
    let verdict = if through_forward {
        format!(
            "{measured:.0} QPS per pod through port-forwards: the API server's limit, not New-API's; the model ({model} QPS per pod, {}) stays",
            opts.model_source
        )
    } else if let Some(by) = &saturated_by {
        let how = if by == "cpu" {
            cpu_text.clone()
        } else {
            format!(
                "{:.1} % of requests failed or were not 2xx",
                bad_share * 100.0
            )
        };
        let cmp = if f64::from(model) > 0.0 {
            measured / f64::from(model)
        } else {
            0.0
        };
        format!(
            "the pods were saturated ({how}) at {measured:.0} QPS per pod: {:.0} % of the model's {model} ({}); set qps_per_pod = {rounded} so that `plan` and `scale --qps` use it",
            cmp * 100.0,
            opts.model_source
        )
    } else {
        format!(
            "the pods were not saturated ({cpu_text}, {:.1} % errors): {measured:.0} QPS per pod is a lower bound, not a capacity; raise --connections (or use --in-cluster) until CPU nears the limit or errors appear",
            bad_share * 100.0
        )
    };
    let config = is_capacity.then(|| {
        format!(
            "[capacity]\nqps_per_pod = {rounded}\nmeasured = \"{} by newapi-ops bench: {target}, {pods} pods, {} connections, {}\"",
            started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            opts.load.connections,
            saturated_by.as_deref().map_or("", |b| if b == "cpu" { "CPU-bound" } else { "error-bound" })
        )
    });
    Some(Capacity {
        model_qps_per_pod: model,
        model_source: opts.model_source.clone(),
        pods,
        measured_qps_per_pod: Some(measured),
        saturated_by,
        is_capacity,
        verdict,
        config,
    })
}

/// `--in-cluster`: the workers as Jobs, their results merged.
async fn run_in_cluster(
    kube: &Kube,
    settings: &Settings,
    opts: &Options,
    ic: &InCluster,
    stop: Arc<Stop>,
    printer: &Printer,
) -> Result<Report> {
    if ic.workers == 0 || ic.workers > MAX_WORKERS {
        return Err(BenchError::Usage(format!(
            "--workers {}: give 1 to {MAX_WORKERS}",
            ic.workers
        ))
        .into());
    }
    if opts.load.connections < ic.workers as usize {
        return Err(BenchError::Usage(format!(
            "--connections {} is fewer than --workers {}: each worker needs a connection",
            opts.load.connections, ic.workers
        ))
        .into());
    }
    let ns = settings.namespace.as_str();
    kube.ensure_namespace(ns).await?;
    let url = cluster::service_url(kube, settings, ic.role, &opts.path).await?;
    let run = cluster::run_id();
    let spec = JobSpec {
        namespace: ns.to_string(),
        run: run.clone(),
        workers: ic.workers,
        image: ic.image.clone(),
        worker_args: worker_args(&url, &opts.load, ic.workers),
        cpu: ic.cpu.clone(),
        deadline: opts.load.duration + ic.start_timeout + Duration::from_secs(60),
    };
    let indexed = cluster::job_manifests(&spec, JobMode::Indexed);
    let mode = match indexed.first() {
        Some(j) if cluster::indexed_jobs_served(kube, ns, j).await? => JobMode::Indexed,
        _ => JobMode::JobPerWorker,
    };
    let manifests = match mode {
        JobMode::Indexed => indexed,
        JobMode::JobPerWorker => cluster::job_manifests(&spec, mode),
    };
    let (watch, not_watched) = start_watch(Some(kube), settings, opts, printer).await;
    let started_at = jiff::Timestamp::now();
    let jobs = cluster::create(kube, ns, &manifests).await?;
    printer.note(&format!(
        "bench {url} from {} in the cluster ({}): {}",
        crate::units::plural(ic.workers, "worker", "workers"),
        match mode {
            JobMode::Indexed => format!("Indexed Job {}", jobs.join(", ")),
            JobMode::JobPerWorker => format!(
                "{} one per worker",
                crate::units::plural(jobs.len(), "Job", "Jobs")
            ),
        },
        if opts.load.rate.is_some() {
            "open loop"
        } else {
            "closed loop"
        }
    ));
    let limit = opts.load.duration + ic.start_timeout;
    let collected =
        cluster::collect(kube, ns, &spec, limit, &stop, |m| tracing::info!("{m}")).await;
    cluster::delete(kube, ns, &jobs).await;
    let (results, workers) = collected?;
    let outcome = worker::merge(&results).map_err(Error::Internal)?;
    let mut warnings = Vec::new();
    let cluster_report = finish_watch(watch, outcome.elapsed, &opts.path, &mut warnings).await;
    let mut report = build_report(
        url.clone(),
        opts,
        started_at,
        &outcome,
        cluster_report,
        not_watched,
        warnings,
        ic.role,
        false,
    );
    report.interrupted |= stop.is_stopped();
    let missing: Vec<String> = workers
        .iter()
        .filter_map(|w| {
            w.problem.as_ref().map(|p| {
                format!(
                    "worker {}{}: {p}",
                    w.index,
                    w.pod
                        .as_ref()
                        .map(|n| format!(" (pod {n})"))
                        .unwrap_or_default()
                )
            })
        })
        .collect();
    if !missing.is_empty() && !report.interrupted {
        report.failure = Some(BenchError::WorkersIncomplete {
            finished: results.len(),
            total: ic.workers as usize,
            missing,
        });
    }
    report.in_cluster = Some(InClusterReport {
        service_url: url,
        job_mode: mode,
        jobs,
        workers,
    });
    Ok(report)
}

/// The arguments of `newapi-ops bench worker` for the run's totals (each worker takes its
/// share by its index).
pub fn worker_args(url: &str, load: &Load, workers: u32) -> Vec<String> {
    let mut a = vec![
        "bench".to_string(),
        "worker".into(),
        "--url".into(),
        url.to_string(),
        "--connections".into(),
        load.connections.to_string(),
        "--duration".into(),
        format!("{}ms", load.duration.as_millis()),
        "--timeout".into(),
        format!("{}ms", load.timeout.as_millis()),
        "--workers".into(),
        workers.to_string(),
    ];
    if let Some(n) = load.requests {
        a.extend(["--requests".into(), n.to_string()]);
    }
    if let Some(r) = load.rate {
        a.extend(["--rate".into(), r.to_string()]);
    }
    a
}

/// `bench worker`: this worker's share of the load against `url`, then its result line.
pub async fn run_worker(
    url: &Url,
    load: &Load,
    index: u32,
    workers: u32,
    stop: Arc<Stop>,
) -> Result<String> {
    if workers == 0 || index >= workers {
        return Err(
            BenchError::Usage(format!("--index {index} is not below --workers {workers}")).into(),
        );
    }
    let share = load.share(index, workers);
    share.check()?;
    let addr = resolve(url).await?;
    let spec = LoadSpec {
        endpoints: vec![Endpoint {
            addr,
            label: url.to_string(),
            request: Arc::new(client::request_bytes(url)),
        }],
        connections: share.connections,
        duration: share.duration,
        requests: share.requests,
        rate: share.rate,
        timeout: share.timeout,
        threads: share.threads,
    };
    let started_at = jiff::Timestamp::now();
    let outcome = drive(spec, false, stop).await?;
    worker::WorkerResult::line(index, &url.to_string(), started_at, &outcome)
        .map_err(Error::Internal)
}

/// `bench merge`: workers' results (`(name, text)` each) merged into one report.
pub fn merge_results(sources: &[(String, String)], opts: &Options) -> Result<Report> {
    let mut results = Vec::new();
    for (name, text) in sources {
        results.push(worker::WorkerResult::find(text, name)?);
    }
    let outcome = worker::merge(&results).map_err(|detail| BenchError::BadWorkerResult {
        source_name: "the results".into(),
        detail,
    })?;
    let target = results
        .first()
        .map(|r| r.target.clone())
        .unwrap_or_default();
    let started = results
        .iter()
        .map(|r| r.started_at)
        .min()
        .unwrap_or_else(jiff::Timestamp::now);
    let connections = outcome.connections_opened;
    let mut report = build_report(
        target,
        opts,
        started,
        &outcome,
        None,
        Some("merged from results".into()),
        Vec::new(),
        None,
        false,
    );
    report.connections = usize::try_from(connections).unwrap_or(usize::MAX);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load() -> Load {
        Load {
            connections: 10,
            duration: Duration::from_secs(30),
            requests: Some(1001),
            rate: Some(300.0),
            timeout: Duration::from_secs(10),
            threads: 2,
        }
    }

    #[test]
    fn values_are_checked_up_front() {
        assert!(load().check().is_ok());
        let bad = [
            Load {
                connections: 0,
                ..load()
            },
            Load {
                connections: MAX_CONNECTIONS + 1,
                ..load()
            },
            Load {
                duration: Duration::ZERO,
                ..load()
            },
            Load {
                duration: Duration::from_secs(7200),
                ..load()
            },
            Load {
                requests: Some(0),
                ..load()
            },
            Load {
                rate: Some(0.0),
                ..load()
            },
            Load {
                rate: Some(-5.0),
                ..load()
            },
            Load {
                rate: Some(f64::NAN),
                ..load()
            },
            Load {
                rate: Some(2e6),
                ..load()
            },
            Load {
                timeout: Duration::ZERO,
                ..load()
            },
        ];
        for b in bad {
            assert!(matches!(b.check(), Err(BenchError::Usage(_))), "{b:?}");
        }
    }

    #[test]
    fn workers_share_the_load_exactly() {
        let l = load();
        let shares: Vec<Load> = (0..3).map(|i| l.share(i, 3)).collect();
        assert_eq!(shares.iter().map(|s| s.connections).sum::<usize>(), 10);
        assert_eq!(
            shares.iter().map(|s| s.requests.unwrap()).sum::<u64>(),
            1001
        );
        let rate: f64 = shares.iter().map(|s| s.rate.unwrap()).sum();
        assert!((rate - 300.0).abs() < 1e-9);
        assert_eq!(shares[0].connections, 4);
        assert_eq!(shares[2].connections, 3);
    }

    #[test]
    fn worker_args_carry_the_totals() {
        let a = worker_args("http://new-api.new-api.svc:3000/api/status", &load(), 3);
        let s = a.join(" ");
        assert!(s.starts_with("bench worker --url http://new-api.new-api.svc:3000/api/status"));
        assert!(s.contains("--connections 10") && s.contains("--workers 3"));
        assert!(
            s.contains("--duration 30000ms")
                && s.contains("--requests 1001")
                && s.contains("--rate 300")
        );
    }
}
