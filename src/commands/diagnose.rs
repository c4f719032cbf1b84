//! `newapi-ops diagnose`: every check at once, each bounded by a timeout, one report.
//!
//! The Kubernetes part costs a constant number of list calls whatever the number of pods (namespace,
//! pods, Deployments, StatefulSets, events, Secrets, ConfigMaps in the namespace; nodes and active
//! pods cluster-wide), plus log fetches only for unhealthy pods and the slaves' sync check, and one
//! port-forward per New-API pod for the app check — all concurrent and capped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodSpec, Secret};
use kube::Api;
use kube::api::{ListParams, LogParams};

use crate::backends::Endpoint;
use crate::capacity::{NodeCapacity, pod_is_active};
use crate::commands::GlobalArgs;
use crate::config::Settings;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::report::{ComponentRun, Report};
use crate::diagnose::{app, config as config_check, nodes as node_check, pods as pod_check};
use crate::envvars::{EnvValue, Sources, resolve};
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::{self, Call, Kube};
use crate::printer::Printer;

#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// Run only these checks (comma-separated).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<ComponentArg>,

    /// Time limit of each check, e.g. 5s, 1500ms, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Reach MySQL here instead of through the cluster (mysql://user@host:port/db). Put the password in
    /// NEWAPI_OPS_MYSQL_URL rather than on the command line, where `ps` shows it.
    #[arg(
        long,
        env = "NEWAPI_OPS_MYSQL_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub mysql_url: Option<String>,

    /// Reach Redis here instead of through the cluster (redis://[:password@]host:port/db); see --mysql-url.
    #[arg(
        long,
        env = "NEWAPI_OPS_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,

    /// Restarts above this are a warning.
    #[arg(long, default_value_t = 5)]
    pub restart_threshold: i32,

    /// A pod still Terminating this long after its deletion time is stuck.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub stuck_after: Duration,

    /// MySQL queries running longer than this are reported.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub long_query: Duration,

    /// Extra log signatures (TOML, same format as the built-in list; same id replaces).
    #[arg(long, value_name = "FILE")]
    pub signatures: Option<PathBuf>,

    /// How many log fetches and port-forwards run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComponentArg {
    Pods,
    Nodes,
    Logs,
    Mysql,
    Redis,
    App,
    Config,
}

impl From<ComponentArg> for Component {
    fn from(c: ComponentArg) -> Component {
        match c {
            ComponentArg::Pods => Component::Pods,
            ComponentArg::Nodes => Component::Nodes,
            ComponentArg::Logs => Component::Logs,
            ComponentArg::Mysql => Component::Mysql,
            ComponentArg::Redis => Component::Redis,
            ComponentArg::App => Component::App,
            ComponentArg::Config => Component::Config,
        }
    }
}

/// Parses `5s`, `1500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 5s, 1500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if !(0.0..=86_400.0 * 7.0).contains(&secs) || secs.is_nan() {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Everything listed from the API server, once.
struct ClusterData {
    snapshot: Snapshot,
    events: Vec<Event>,
    nodes: Vec<Node>,
    active_pods: Vec<Pod>,
    secrets: Option<Vec<Secret>>,
    configmaps: Option<Vec<ConfigMap>>,
}

async fn fetch(kube: &Kube, settings: &Settings) -> Result<ClusterData> {
    let ns = settings.namespace.as_str();
    let all = ListParams::default();
    let active = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let (snapshot, events, nodes, active_pods, secrets, configmaps) = tokio::join!(
        Snapshot::load(kube, settings),
        kube.list::<Event>(Some(ns), &all),
        kube.list_cluster::<Node>(&all),
        kube.list::<Pod>(None, &active),
        kube.list::<Secret>(Some(ns), &all),
        kube.list::<ConfigMap>(Some(ns), &all),
    );
    let snapshot = snapshot?;
    // Secrets and ConfigMaps may be forbidden to a read-only operator: the checks that need
    // them say so instead of failing the report.
    let (nodes, active_pods) = match (nodes, active_pods) {
        (Ok(n), Ok(p)) => (n.items, p.items),
        // Without cluster-wide rights, node capacity is unknown; the node checks say so.
        (Err(Error::Forbidden { .. }), _) | (_, Err(Error::Forbidden { .. })) => {
            (Vec::new(), Vec::new())
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    Ok(ClusterData {
        snapshot,
        events: events.map(|l| l.items).or_else(|e| match e {
            Error::Forbidden { .. } => Ok(Vec::new()),
            e => Err(e),
        })?,
        nodes,
        active_pods,
        secrets: optional(secrets)?,
        configmaps: optional(configmaps)?,
    })
}

/// A list that a read-only operator may be denied: None instead of an error.
fn optional<T: Clone>(r: Result<kube::api::ObjectList<T>>) -> Result<Option<Vec<T>>> {
    match r {
        Ok(l) => Ok(Some(l.items)),
        Err(Error::Forbidden { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn run(global: &GlobalArgs, args: DiagnoseArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings().map_err(could_not_run)?;
    let wanted = wanted(&args);
    let needs_cluster = wanted
        .iter()
        .any(|c| !matches!(c, Component::Mysql | Component::Redis))
        || (wanted.contains(&Component::Mysql) && args.mysql_url.is_none())
        || (wanted.contains(&Component::Redis) && args.redis_url.is_none());
    let kube = if needs_cluster {
        Some(k8s::connect(&settings).await.map_err(could_not_run)?)
    } else {
        None
    };
    if !printer.is_machine() {
        printer.note(&format!("diagnosing namespace {} ...", settings.namespace));
    }
    let report = collect_with(kube, settings, args, Some(printer.redactor())).await?;
    printer.data(&report, |style| report.render(style))?;
    Ok(report.exit_code())
}

/// The check groups `args` asks for.
fn wanted(args: &DiagnoseArgs) -> Vec<Component> {
    if args.only.is_empty() {
        Component::ALL.to_vec()
    } else {
        args.only.iter().map(|c| (*c).into()).collect()
    }
}

/// Runs the checks `args` asks for and returns the report, printing nothing: the library entry
/// point of diagnose (the command prints it; the runbook action `diagnose` reads it). `kube` may
/// be None only when every wanted check has a URL to its backend.
pub async fn collect(kube: Option<Kube>, settings: Settings, args: DiagnoseArgs) -> Result<Report> {
    collect_with(kube, settings, args, None).await
}

/// [`collect`], teaching `learn` (the printer's redactor) the secrets of what it listed.
pub async fn collect_with(
    kube: Option<Kube>,
    settings: Settings,
    args: DiagnoseArgs,
    learn: Option<&crate::redact::Shared>,
) -> Result<Report> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string();
    let wanted = wanted(&args);
    let signatures = load_signatures(args.signatures.as_deref()).map_err(could_not_run)?;

    // The cluster's state, listed once and bounded by the timeout.
    let data = match &kube {
        Some(kube) => {
            let listed = match tokio::time::timeout(args.timeout, fetch(kube, &settings)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Unreachable {
                    server: kube.server.clone(),
                    detail: format!("listing the namespace took longer than {:?}", args.timeout),
                }),
            };
            match listed {
                // A namespace that does not exist is a reason not to run, not a finding.
                Err(e @ Error::NamespaceNotFound { .. }) => return Err(could_not_run(e)),
                Ok(d) => Some(Ok(Arc::new(d))),
                Err(e) => Some(Err(Arc::new(e))),
            }
        }
        None => None,
    };
    if let (Some(shared), Some(Ok(d))) = (learn, &data) {
        let (secrets, configmaps) = (d.secrets.as_deref(), d.configmaps.as_deref());
        crate::secrets::Known::from_objects(
            &settings.namespace,
            secrets,
            configmaps,
            Some(&d.snapshot),
        )
        .teach(shared);
    }

    let ctx = Arc::new(Ctx {
        kube,
        settings,
        args,
        data,
        signatures,
    });
    let mut tasks = Vec::new();
    for component in wanted {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let findings = match tokio::time::timeout(
                ctx.args.timeout,
                run_component(&ctx, component),
            )
            .await
            {
                Ok(f) => f,
                Err(_) => vec![
                    Finding::new(
                        component,
                        &format!("{}.timeout", component.as_str()),
                        Severity::Critical,
                        format!(
                            "the {} checks did not finish within {:?}",
                            component.as_str(),
                            ctx.args.timeout
                        ),
                    )
                    .next(
                        "the backend is hanging or very slow; retry with --timeout 30s to see more",
                    ),
                ],
            };
            (component, t0.elapsed(), findings)
        }));
    }
    let mut runs = Vec::new();
    let mut findings = Vec::new();
    for t in tasks {
        let (component, took, mut fs) = t
            .await
            .map_err(|e| Error::Internal(format!("a check panicked: {e}")))?;
        runs.push(ComponentRun {
            component,
            severity: fs.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok),
            findings: fs.len(),
            duration_ms: took.as_millis(),
        });
        findings.append(&mut fs);
    }
    let report = Report::new(
        ctx.settings.namespace.clone(),
        ctx.kube.as_ref().and_then(|k| k.context.clone()),
        started_at,
        started.elapsed().as_millis(),
        runs,
        findings,
    );
    Ok(report)
}

/// Errors before any check ran: diagnose could not run (exit code 3).
fn could_not_run(e: Error) -> Error {
    Error::CouldNotRun(Box::new(e))
}

struct Ctx {
    kube: Option<Kube>,
    settings: Settings,
    args: DiagnoseArgs,
    data: Option<std::result::Result<Arc<ClusterData>, Arc<Error>>>,
    signatures: Vec<crate::diagnose::signatures::Signature>,
}

impl Ctx {
    /// The listed cluster state, or the finding that says why there is none.
    fn data(&self, component: Component) -> std::result::Result<&ClusterData, Box<Finding>> {
        match &self.data {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(Box::new(cluster_finding(component, e))),
            None => Err(Box::new(Finding::new(
                component,
                &format!("{}.cluster", component.as_str()),
                Severity::Critical,
                "no cluster connection",
            ))),
        }
    }
}

/// An API server problem as a finding of the component that needed it.
fn cluster_finding(component: Component, e: &Error) -> Finding {
    let mut f = Finding::new(
        component,
        &format!("{}.cluster", component.as_str()),
        Severity::Critical,
        format!("cannot check {}: {e}", component.as_str()),
    );
    if let Some(h) = e.hint() {
        f = f.next(h);
    }
    f
}

async fn run_component(ctx: &Ctx, component: Component) -> Vec<Finding> {
    match component {
        Component::Pods => check_pods(ctx),
        Component::Nodes => check_nodes(ctx).await,
        Component::Config => check_config(ctx),
        Component::Logs => check_logs(ctx).await,
        Component::App => check_app(ctx).await,
        Component::Mysql => check_mysql(ctx).await,
        Component::Redis => check_redis(ctx).await,
    }
}

fn role_name(pod: &Pod, settings: &Settings) -> Option<&'static str> {
    Snapshot::role_of(pod, settings).map(Role::as_str)
}

fn check_pods(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Pods) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let th = pod_check::PodThresholds {
        restarts: ctx.args.restart_threshold,
        terminating_grace_secs: i64::try_from(ctx.args.stuck_after.as_secs()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    let mut out = pod_check::check_pods(&d.snapshot.pods, &d.events, &th, |p| {
        role_name(p, &ctx.settings)
    });
    let ours: Vec<&Deployment> = d
        .snapshot
        .deployments
        .iter()
        .filter(|dep| {
            Role::ALL.iter().any(|r| {
                dep.metadata.name.as_deref() == Some(r.workload(&ctx.settings).name.as_str())
            })
        })
        .collect();
    out.extend(pod_check::check_deployments(&ours));
    for role in [Role::Master, Role::Slave] {
        if d.snapshot.controller(role, &ctx.settings).is_none() {
            out.push(
                Finding::new(
                    Component::Pods,
                    "deployments.missing",
                    Severity::Critical,
                    format!(
                        "{} Deployment \"{}\" not found",
                        role.as_str(),
                        role.workload(&ctx.settings).name
                    ),
                )
                .evidence(format!(
                    "Deployments and StatefulSets here: {}",
                    d.snapshot.controller_names().join(", ")
                ))
                .next("set the names in newapi-ops.toml or with --master/--slave"),
            );
        }
    }
    out
}

fn slave_template(ctx: &Ctx, d: &ClusterData) -> Option<PodSpec> {
    d.snapshot
        .controller(Role::Slave, &ctx.settings)
        .and_then(|c| c.template)
}

async fn check_nodes(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Nodes) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    if d.nodes.is_empty() {
        return vec![Finding::new(
            Component::Nodes,
            "nodes.unknown",
            Severity::Info,
            "nodes not checked: not allowed to list nodes and pods cluster-wide (or the cluster has no nodes)",
        )
        .next("use a context with cluster-wide read rights (list nodes, list pods)")];
    }
    let active: Vec<&Pod> = d.active_pods.iter().filter(|p| pod_is_active(p)).collect();
    let caps: Vec<NodeCapacity> = d
        .nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.as_deref();
            NodeCapacity::new(
                n,
                active
                    .iter()
                    .copied()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == name),
            )
        })
        .collect();
    let (usage, pod_usage) = match &ctx.kube {
        Some(kube) => {
            tokio::join!(
                node_metrics(kube),
                pod_metrics(kube, &ctx.settings.namespace, &d.active_pods)
            )
        }
        None => (None, None),
    };
    let th = node_check::NodeThresholds::default();
    let mut out = node_check::check_nodes(
        &caps,
        slave_template(ctx, d).as_ref(),
        usage.as_deref(),
        &th,
    );
    if let Some(pods) = pod_usage {
        out.extend(node_check::check_pod_usage(&pods, &th));
    }
    out
}

/// Usage of the namespace's pods from metrics.k8s.io with their limits (from `pods`), or None
/// when it is not served.
async fn pod_metrics(
    kube: &Kube,
    namespace: &str,
    pods: &[Pod],
) -> Option<Vec<node_check::PodUsage>> {
    let v = metrics_list(kube, &format!("namespaces/{namespace}/pods")).await?;
    let items = v.get("items")?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|i| {
                let name = i.get("metadata")?.get("name")?.as_str()?;
                let pod = pods.iter().find(|p| {
                    p.metadata.name.as_deref() == Some(name)
                        && p.metadata.namespace.as_deref() == Some(namespace)
                })?;
                let mut usage = crate::capacity::Amount::default();
                for c in i.get("containers")?.as_array()? {
                    let u = c.get("usage")?;
                    usage.cpu_millis +=
                        crate::quantity::parse_cpu_millis(u.get("cpu")?.as_str()?).ok()?;
                    usage.memory_bytes +=
                        crate::quantity::parse_value(u.get("memory")?.as_str()?).ok()?;
                }
                let limits = pod
                    .spec
                    .as_ref()
                    .map(|s| crate::capacity::pod_resources(s).limits)
                    .unwrap_or_default();
                Some(node_check::PodUsage {
                    name: name.to_string(),
                    usage,
                    limits,
                })
            })
            .collect(),
    )
}

/// `GET /apis/metrics.k8s.io/v1beta1/{what}`, or None when it is not served (or fails).
async fn metrics_list(kube: &Kube, what: &str) -> Option<serde_json::Value> {
    let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/{what}"))
        .body(Vec::new())
        .ok()?;
    kube.client.request(req).await.ok()
}

/// Node usage from metrics.k8s.io, or None when it is not served.
async fn node_metrics(kube: &Kube) -> Option<Vec<node_check::NodeUsage>> {
    let v = metrics_list(kube, "nodes").await?;
    let items = v.get("items")?.as_array()?;
    Some(
        items
            .iter()
            .filter_map(|i| {
                let usage = i.get("usage")?;
                Some(node_check::NodeUsage {
                    name: i.get("metadata")?.get("name")?.as_str()?.to_string(),
                    usage: crate::capacity::Amount {
                        cpu_millis: crate::quantity::parse_cpu_millis(usage.get("cpu")?.as_str()?)
                            .ok()?,
                        memory_bytes: crate::quantity::parse_value(usage.get("memory")?.as_str()?)
                            .ok()?,
                    },
                })
            })
            .collect(),
    )
}

fn check_config(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Config) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let controllers: Vec<_> = Role::ALL
        .iter()
        .filter_map(|r| d.snapshot.controller(*r, &ctx.settings))
        .collect();
    let templates: Vec<config_check::Template<'_>> = controllers
        .iter()
        .filter_map(|c| {
            Some(config_check::Template {
                role: c.role,
                name: &c.name,
                replicas: c.desired,
                spec: c.template.as_ref()?,
            })
        })
        .collect();
    let src = Sources {
        secrets: d.secrets.as_deref(),
        configmaps: d.configmaps.as_deref(),
    };
    config_check::check_config(&templates, &src)
}

/// The pods whose logs are worth reading: crashing, unready, restarting.
fn unhealthy<'a>(pods: &'a [Pod], settings: &Settings) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| Snapshot::role_of(p, settings).is_some())
        .filter(|p| {
            let v = crate::inventory::PodView::new(p, Role::Master);
            !v.healthy() && v.phase != "Pending" && v.phase != "Succeeded"
        })
        .collect()
}

async fn check_logs(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Logs) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let ns = ctx.settings.namespace.clone();
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
    let sick = unhealthy(&d.snapshot.pods, &ctx.settings);
    let sync_secs = sync_frequency(ctx, d);
    // A slave younger than two sync periods cannot be judged yet.
    let window = i64::try_from(2 * sync_secs + 5).unwrap_or(i64::MAX);
    let slaves: Vec<&Pod> = d
        .snapshot
        .pods
        .iter()
        .filter(|p| Snapshot::role_of(p, &ctx.settings) == Some(Role::Slave))
        .filter(|p| crate::inventory::PodView::new(p, Role::Slave).healthy())
        .filter(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| crate::units::seconds_since(&t.0) >= window)
        })
        .collect();
    let mut jobs: Vec<LogJob> = sick.iter().map(|p| LogJob::Failure((*p).clone())).collect();
    jobs.extend(slaves.iter().map(|p| LogJob::Sync((*p).clone())));
    let results: Vec<Vec<Finding>> = futures::stream::iter(jobs)
        .map(|job| {
            let api = api.clone();
            let kube = kube.clone();
            let sigs = &ctx.signatures;
            async move { job.run(&api, &kube, sigs, sync_secs).await }
        })
        .buffer_unordered(ctx.args.concurrency.max(1))
        .collect()
        .await;
    let mut out: Vec<Finding> = results.into_iter().flatten().collect();
    if out.iter().all(|f| f.severity <= Severity::Info) {
        out.push(Finding::new(
            Component::Logs,
            "logs.ok",
            Severity::Ok,
            format!(
                "no known failure in the logs of {} unhealthy pod{}; {} slave{} old enough to judge synced channels within {} s",
                sick.len(),
                if sick.len() == 1 { "" } else { "s" },
                slaves.len(),
                if slaves.len() == 1 { "" } else { "s" },
                2 * sync_secs
            ),
        ));
    }
    out
}

/// SYNC_FREQUENCY of the slaves (New-API's default is 600 s).
fn sync_frequency(ctx: &Ctx, d: &ClusterData) -> u64 {
    let Some(spec) = slave_template(ctx, d) else {
        return 600;
    };
    let Some(c) = spec.containers.first() else {
        return 600;
    };
    let src = Sources {
        secrets: d.secrets.as_deref(),
        configmaps: d.configmaps.as_deref(),
    };
    resolve(c, &src)
        .get("SYNC_FREQUENCY")
        .and_then(EnvValue::value)
        .and_then(|v| v.expose().trim().parse().ok())
        .unwrap_or(600)
}

enum LogJob {
    Failure(Pod),
    Sync(Pod),
}

impl LogJob {
    async fn run(
        self,
        api: &Api<Pod>,
        kube: &Kube,
        sigs: &[crate::diagnose::signatures::Signature],
        sync_secs: u64,
    ) -> Vec<Finding> {
        match self {
            LogJob::Failure(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let restarted = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.restart_count > 0));
                let params = LogParams {
                    previous: restarted,
                    tail_lines: Some(200),
                    timestamps: true,
                    ..Default::default()
                };
                let call = Call::new("get", "pods/log", pod.metadata.namespace.as_deref());
                let text = match api.logs(&name, &params).await {
                    Ok(t) => t,
                    Err(e) => {
                        let e = kube.error(&call, e);
                        return vec![
                            Finding::new(
                                Component::Logs,
                                "logs.unavailable",
                                Severity::Info,
                                format!("cannot read the log of {name}: {e}"),
                            )
                            .subject(format!("pod/{name}")),
                        ];
                    }
                };
                let which = if restarted { "previous" } else { "current" };
                let lines: Vec<&str> = text
                    .lines()
                    .map(|l| crate::logs::split_timestamp(l).1)
                    .collect();
                crate::diagnose::signatures::scan(lines.into_iter(), sigs)
                    .into_iter()
                    .map(|m| {
                        let mut f = Finding::new(
                            Component::Logs,
                            &format!("logs.{}", m.id),
                            m.severity,
                            format!("{name}: {}", m.cause),
                        )
                        .subject(format!("pod/{name}"))
                        .evidence(format!(
                            "{which} log ({}x): {}",
                            m.count,
                            m.first_line.trim()
                        ));
                        if m.count > 1 && m.last_line != m.first_line {
                            f = f.evidence(format!("last: {}", m.last_line.trim()));
                        }
                        f.next(format!("newapi-ops runbook run {}", m.runbook))
                    })
                    .collect()
            }
            LogJob::Sync(pod) => {
                let name = pod.metadata.name.clone().unwrap_or_default();
                // Only slaves older than this window are given to this job (check_logs).
                let window = 2 * sync_secs + 5;
                let params = LogParams {
                    since_seconds: Some(i64::try_from(window).unwrap_or(i64::MAX)),
                    timestamps: true,
                    ..Default::default()
                };
                match api.logs(&name, &params).await {
                    Ok(text) => match crate::diagnose::signatures::last_sync(text.lines()) {
                        Some(_) => Vec::new(),
                        None => vec![Finding::new(
                            Component::Logs,
                            "logs.slave-out-of-sync",
                            Severity::Warning,
                            format!("{name} has not logged `syncing channels from database` in the last {window} s (SYNC_FREQUENCY {sync_secs} s)"),
                        )
                        .subject(format!("pod/{name}"))
                        .evidence(format!("{} log lines in the last {window} s, none a channel sync", text.lines().count()))
                        .next(format!("newapi-ops logs {name} --since {window}s; check its database connection: newapi-ops runbook run db-connection"))],
                    },
                    Err(e) => vec![Finding::new(Component::Logs, "logs.unavailable", Severity::Info, format!("cannot read the log of {name}: {}", kube.error(&Call::new("get", "pods/log", pod.metadata.namespace.as_deref()), e)))
                        .subject(format!("pod/{name}"))],
                }
            }
        }
    }
}

async fn check_app(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::App) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let pods: Vec<String> = d
        .snapshot
        .pods
        .iter()
        .filter(|p| {
            matches!(
                Snapshot::role_of(p, &ctx.settings),
                Some(Role::Master | Role::Slave)
            )
        })
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if pods.is_empty() {
        return vec![
            Finding::new(
                Component::App,
                "app.no-pods",
                Severity::Critical,
                "no New-API pod is running: the API is down",
            )
            .next("see the pods findings; newapi-ops runbook run pod-startup-failure"),
        ];
    }
    let ns = ctx.settings.namespace.clone();
    let per_call = ctx.args.timeout.mul_f32(0.8);
    let probes: Vec<app::StatusProbe> = futures::stream::iter(pods)
        .map(|pod| {
            let ns = ns.clone();
            async move {
                let outcome = match crate::portforward::forward(kube, &ns, &pod, 3000).await {
                    Ok(fwd) => app::http_get(fwd.local, "/api/status", per_call).await,
                    Err(e) => Err(e.to_string()),
                };
                app::StatusProbe { pod, outcome }
            }
        })
        .buffer_unordered(ctx.args.concurrency.max(1))
        .collect()
        .await;
    app::check_app(
        &probes,
        jiff::Timestamp::now().as_second(),
        Duration::from_secs(1),
    )
}

/// How to reach a backend: the user's URL, else the New-API env var through the cluster (the
/// shared resolution of [`crate::backends`], fed with the data diagnose listed once).
async fn backend_endpoint(
    ctx: &Ctx,
    component: Component,
    role: Role,
    var: &str,
) -> std::result::Result<(Endpoint, Option<crate::portforward::Forward>, String), Finding> {
    use crate::backends::{Backend, ResolveError};
    let (backend, url) = match component {
        Component::Mysql => (Backend::Mysql, &ctx.args.mysql_url),
        _ => (Backend::Redis, &ctx.args.redis_url),
    };
    debug_assert_eq!((backend.var(), backend.role()), (var, role));
    let scheme = backend.scheme();
    let to_finding = |e: ResolveError| {
        let (check, severity, next) = match &e {
            ResolveError::Unset { .. } => (
                "unconfigured",
                if component == Component::Redis {
                    Severity::Info
                } else {
                    Severity::Critical
                },
                format!("pass --{scheme}-url to check a {scheme} server anyway"),
            ),
            ResolveError::BadUrl { .. } => ("connect", Severity::Critical, "fix the URL".into()),
            ResolveError::NoPod { .. } => (
                "connect",
                Severity::Critical,
                "see the pods findings".into(),
            ),
            ResolveError::Forward { .. } => (
                "connect",
                Severity::Critical,
                "check RBAC for pods/portforward".into(),
            ),
            other => (
                "connect",
                Severity::Critical,
                other.hint().unwrap_or_default(),
            ),
        };
        Finding::new(
            component,
            &format!("{}.{check}", component.as_str()),
            severity,
            e.to_string(),
        )
        .next(next)
    };
    if let Some(url) = url {
        let r = crate::backends::endpoint_from_url(backend, url).map_err(to_finding)?;
        return Ok((r.endpoint, r.forward, r.via));
    }
    let d = ctx.data(component).map_err(|f| *f)?;
    let master = d
        .snapshot
        .controller(Role::Master, &ctx.settings)
        .and_then(|c| c.template);
    let src = Sources {
        secrets: d.secrets.as_deref(),
        configmaps: d.configmaps.as_deref(),
    };
    let env: BTreeMap<String, EnvValue> = master
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| resolve(c, &src))
        .unwrap_or_default();
    let master_name = format!("Deployment {}", ctx.settings.workloads.master.name);
    let reached =
        crate::backends::endpoint_from_env(backend, &env, &master_name).map_err(to_finding)?;
    let pods = d
        .snapshot
        .pods
        .iter()
        .filter(|p| Snapshot::role_of(p, &ctx.settings) == Some(role));
    let r = crate::backends::forward_if_needed(
        reached,
        backend,
        ctx.kube.as_ref(),
        &ctx.settings.namespace,
        pods,
    )
    .await
    .map_err(to_finding)?;
    Ok((r.endpoint, r.forward, r.via))
}

/// The number of New-API pods and a variable of the master's environment, parsed.
fn new_api_pods_and_env<T: std::str::FromStr>(ctx: &Ctx, var: &str) -> (u32, Option<T>) {
    let Some(Ok(d)) = ctx.data.as_ref() else {
        return (1, None);
    };
    let pods = d
        .snapshot
        .pods
        .iter()
        .filter(|p| {
            matches!(
                Snapshot::role_of(p, &ctx.settings),
                Some(Role::Master | Role::Slave)
            )
        })
        .filter(|p| pod_is_active(p))
        .count();
    let src = Sources {
        secrets: d.secrets.as_deref(),
        configmaps: d.configmaps.as_deref(),
    };
    let value = d
        .snapshot
        .controller(Role::Master, &ctx.settings)
        .and_then(|c| c.template)
        .and_then(|t| t.containers.first().map(|c| resolve(c, &src)))
        .and_then(|env| {
            env.get(var)
                .and_then(EnvValue::value)
                .and_then(|v| v.expose().trim().parse().ok())
        });
    (u32::try_from(pods).unwrap_or(u32::MAX).max(1), value)
}

async fn check_mysql(ctx: &Ctx) -> Vec<Finding> {
    let (ep, fwd, via) = match backend_endpoint(ctx, Component::Mysql, Role::Mysql, "SQL_DSN").await
    {
        Ok(x) => x,
        Err(f) => return vec![f],
    };
    let (new_api_pods, max_open) = new_api_pods_and_env::<u32>(ctx, "SQL_MAX_OPEN_CONNS");
    let (_, lifetime) = new_api_pods_and_env::<u64>(ctx, "SQL_MAX_LIFETIME");
    let defaults = crate::diagnose::mysql::MysqlCheckConfig::default();
    let cfg = crate::diagnose::mysql::MysqlCheckConfig {
        database: ep.database.clone().unwrap_or_else(|| "new-api".into()),
        new_api_pods,
        sql_max_open_conns: max_open.unwrap_or(defaults.sql_max_open_conns),
        sql_max_lifetime_secs: lifetime.unwrap_or(defaults.sql_max_lifetime_secs),
        long_query_secs: ctx.args.long_query.as_secs(),
        budget: Some(ctx.args.timeout.mul_f32(0.9)),
        // Through a port-forward: named after the workload, not the local port of this run.
        subject: fwd.as_ref().map(|_| {
            format!(
                "{}@{}",
                ep.user.as_deref().unwrap_or("(no user)"),
                ctx.settings.workloads.mysql.name
            )
        }),
        ..defaults
    };
    let mut out = crate::diagnose::mysql::check(ep.mysql_opts(), &cfg).await;
    for f in &mut out {
        if f.check == "mysql.connect" {
            f.evidence.push(format!("reached as {via}"));
        }
    }
    out
}

/// The memory limit of the Redis pods' first container, in bytes.
fn redis_memory_limit(ctx: &Ctx) -> Option<u64> {
    let Some(Ok(d)) = ctx.data.as_ref() else {
        return None;
    };
    let spec = d
        .snapshot
        .controller(Role::Redis, &ctx.settings)?
        .template?;
    let limits = spec
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?;
    let bytes = crate::quantity::parse_value(&limits.get("memory")?.0).ok()?;
    u64::try_from(bytes).ok()
}

async fn check_redis(ctx: &Ctx) -> Vec<Finding> {
    let (ep, fwd, via) =
        match backend_endpoint(ctx, Component::Redis, Role::Redis, "REDIS_CONN_STRING").await {
            Ok(x) => x,
            Err(f) => return vec![f],
        };
    let client = match redis::Client::open(ep.redis_info()) {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::new(
                Component::Redis,
                "redis.connect",
                Severity::Critical,
                format!("bad Redis address {ep}: {e}"),
            )];
        }
    };
    let (new_api_pods, _) = new_api_pods_and_env::<u32>(ctx, "SQL_MAX_OPEN_CONNS");
    let cfg = crate::diagnose::redis::RedisCheckConfig {
        budget: Some(ctx.args.timeout.mul_f32(0.9)),
        memory_limit_bytes: redis_memory_limit(ctx),
        new_api_pods,
        subject: fwd
            .as_ref()
            .map(|_| ctx.settings.workloads.redis.name.clone()),
        ..Default::default()
    };
    let mut out = crate::diagnose::redis::check(client, &cfg).await;
    for f in &mut out {
        if f.check == "redis.connect" {
            f.evidence.push(format!("reached as {via}"));
        }
    }
    out
}

fn load_signatures(
    extra: Option<&std::path::Path>,
) -> Result<Vec<crate::diagnose::signatures::Signature>> {
    use crate::diagnose::signatures;
    let builtin =
        signatures::builtin().map_err(|e| Error::Internal(format!("built-in signatures: {e}")))?;
    match extra {
        None => Ok(builtin),
        Some(path) => {
            let user = signatures::load(path).map_err(|e| Error::Config {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            Ok(signatures::merge(builtin, user))
        }
    }
}
