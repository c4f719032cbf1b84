//! The gathering half of diagnose: what to run, concurrently, each check group bounded by the
//! timeout, and the report they make. It lists the cluster's state once, hands every check group
//! what it needs, and turns an unreachable API server, MySQL or Redis into a finding instead of an
//! error, so that a report always comes out.
//!
//! The Kubernetes part costs one list per kind whatever the number of pods (namespace, pods,
//! Deployments, StatefulSets, Warning events, Secrets, ConfigMaps in the namespace; nodes and
//! active pods cluster-wide), each paged by [`crate::k8s::PAGE_SIZE`] objects and reduced as its
//! pages arrive ([`slim`]); plus log reads for unhealthy pods and a sample of the slaves
//! ([`logs`]), and port-forwards to a sample of the New-API pods ([`app`]; [`sample`] says which)
//! — concurrent, capped by [`Options::concurrency`], and stopped at a deadline inside the time
//! limit. Each group's findings are grouped (one per check and cause) as they come. The judging is
//! in the sibling modules ([`super::pods`], [`super::nodes`], [`super::mysql`], ...).

mod app;
mod backends;
mod backups;
mod logs;
mod nodes;
mod sample;
mod slim;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, PodSpec, Secret};
use kube::api::ListParams;

use super::finding::{Component, Finding, Severity};
use super::report::{ComponentRun, Report};
use super::signatures::{self, Signature};
use super::{config as config_check, pods as pod_check};
use crate::config::Settings;
use crate::envvars::Sources;
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::Kube;

/// The variable that gives diagnose a MySQL URL without putting it on the command line.
pub const MYSQL_URL_ENV: &str = "NEWAPI_OPS_MYSQL_URL";
/// The variable that gives diagnose a Redis URL without putting it on the command line.
pub const REDIS_URL_ENV: &str = "NEWAPI_OPS_REDIS_URL";

/// How many timeouts the whole listing of the cluster's state may take (each page has one).
const LISTING_LIMITS: u32 = 12;

/// What diagnose runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The check groups to run; empty runs them all.
    pub components: Vec<Component>,
    /// The time limit of each check group (and of listing the cluster's state).
    pub timeout: Duration,
    /// Reach MySQL here instead of through the cluster (`mysql://user:password@host:port/db`).
    pub mysql_url: Option<String>,
    /// Reach Redis here instead of through the cluster (`redis://[:password@]host:port/db`).
    pub redis_url: Option<String>,
    /// Restarts above this are a warning.
    pub restart_threshold: i32,
    /// A pod still Terminating this long after its deletion time is stuck.
    pub stuck_after: Duration,
    /// MySQL queries running longer than this are reported.
    pub long_query: Duration,
    /// Extra log signatures (TOML, the format of the built-in list; the same id replaces).
    pub signatures: Option<PathBuf>,
    /// How many log fetches and port-forwards run at once.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            components: Vec::new(),
            timeout: Duration::from_secs(5),
            mysql_url: None,
            redis_url: None,
            restart_threshold: 5,
            stuck_after: Duration::from_secs(60),
            long_query: Duration::from_secs(10),
            signatures: None,
            concurrency: 8,
        }
    }
}

impl Options {
    /// The check groups these options run.
    pub fn wanted(&self) -> Vec<Component> {
        if self.components.is_empty() {
            Component::ALL.to_vec()
        } else {
            self.components.clone()
        }
    }

    /// Whether the checks need the API server: all but MySQL and Redis do, and those do when no
    /// URL says where they are.
    pub fn needs_cluster(&self) -> bool {
        let wanted = self.wanted();
        wanted
            .iter()
            .any(|c| !matches!(c, Component::Mysql | Component::Redis))
            || (wanted.contains(&Component::Mysql) && self.mysql_url.is_none())
            || (wanted.contains(&Component::Redis) && self.redis_url.is_none())
    }
}

/// A URL from the environment variable `var` ([`MYSQL_URL_ENV`], [`REDIS_URL_ENV`]); an empty
/// one is none.
pub fn url_from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// Everything listed from the API server, once.
struct ClusterData {
    /// The namespace's controllers (its pods are in `pods`).
    snapshot: Snapshot,
    /// The namespace's pods, listed once: compact records of the healthy slaves, the others
    /// reduced.
    pods: slim::Pods,
    events: Vec<Event>,
    nodes: Vec<Node>,
    /// The active pods of the other namespaces (the namespace's own are in `snapshot`).
    active_elsewhere: Vec<Pod>,
    secrets: Option<Vec<Secret>>,
    configmaps: Option<Vec<ConfigMap>>,
}

impl ClusterData {
    /// The Secrets and ConfigMaps that environment variables refer to.
    fn sources(&self) -> Sources<'_> {
        Sources {
            secrets: self.secrets.as_deref(),
            configmaps: self.configmaps.as_deref(),
        }
    }

    /// Every active pod of the cluster, this namespace's and the others', as what the nodes
    /// hold: its node and its requests and limits.
    fn active_pods(&self) -> impl Iterator<Item = (&str, crate::capacity::PodResources)> {
        self.pods
            .others
            .iter()
            .chain(&self.active_elsewhere)
            .filter(|p| crate::capacity::pod_is_active(p))
            .filter_map(|p| {
                let spec = p.spec.as_ref()?;
                Some((
                    spec.node_name.as_deref()?,
                    crate::capacity::pod_resources(spec),
                ))
            })
            .chain(
                self.pods
                    .healthy_slaves
                    .iter()
                    .map(|h| (&*h.node, h.resources)),
            )
    }

    /// The pods of New-API itself (master and slaves) that are not healthy slaves (those are
    /// `pods.healthy_slaves`).
    fn new_api_pods<'a>(&'a self, settings: &'a Settings) -> impl Iterator<Item = &'a Pod> {
        self.pods.others.iter().filter(|p| {
            matches!(
                Snapshot::role_of(p, settings),
                Some(Role::Master | Role::Slave)
            )
        })
    }
}

/// Lists the cluster's state: every list paged, each page within `page_limit`, each object
/// reduced as its page arrives. The namespace's pods are listed once (all phases); the node
/// checks add the active pods of the other namespaces only, so no pod is listed twice.
async fn fetch(kube: &Kube, settings: &Settings, page_limit: Duration) -> Result<ClusterData> {
    let kube = &kube.with_page_limit(page_limit);
    let ns = settings.namespace.as_str();
    let all = ListParams::default();
    // Only Warning events are read (FailedScheduling, Unhealthy, Failed), and of those only the
    // pods' with those reasons are kept.
    let warnings = ListParams::default().fields("type=Warning");
    let elsewhere = ListParams::default().fields(&format!(
        "status.phase!=Succeeded,status.phase!=Failed,metadata.namespace!={ns}"
    ));
    let (mut events, mut active_elsewhere) = (Vec::new(), Vec::new());
    let mut pods = slim::Pods::default();
    let get_namespace = crate::k8s::Call::new("get", "namespaces", None);
    let namespace_checked = kube.within(page_limit, &get_namespace, kube.ensure_namespace(ns));
    let (snapshot, listed_events, nodes, listed_elsewhere, secrets, configmaps) = tokio::join!(
        async {
            namespace_checked.await?;
            Snapshot::load_each(kube, settings, |p| {
                pods.keep(p, settings);
                Ok(())
            })
            .await
        },
        kube.list_each::<Event>(Some(ns), &warnings, |e| {
            events.extend(slim::event(e));
            Ok(())
        }),
        kube.list_cluster::<Node>(&all),
        kube.list_each_as::<Pod, crate::inventory::SlimPod>(None, &elsewhere, |p| {
            active_elsewhere.push(slim::active_pod(p.into_pod()));
            Ok(())
        }),
        kube.list::<Secret>(Some(ns), &all),
        kube.list::<ConfigMap>(Some(ns), &all),
    );
    let snapshot = snapshot?;
    tracing::debug!(
        "diagnose: {} pods listed, {} kept as compact records (healthy slaves), {} as reduced pods",
        pods.healthy_slaves.len() + pods.others.len(),
        pods.healthy_slaves.len(),
        pods.others.len()
    );
    // Secrets and ConfigMaps may be forbidden to a read-only operator: the checks that need
    // them say so instead of failing the report.
    let (nodes, active_elsewhere) = match (nodes, listed_elsewhere) {
        (Ok(n), Ok(_)) => (n.items, active_elsewhere),
        // Without cluster-wide rights, node capacity is unknown; the node checks say so.
        (Err(Error::Forbidden { .. }), _) | (_, Err(Error::Forbidden { .. })) => {
            (Vec::new(), Vec::new())
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let events = match listed_events {
        Ok(_) => events,
        Err(Error::Forbidden { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(ClusterData {
        snapshot,
        pods,
        events,
        nodes,
        active_elsewhere,
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

/// Runs the checks `opts` asks for and returns the report, printing nothing (`diagnose` prints
/// it; the runbook action `diagnose` and `incident` read it). `kube` may be None only when every
/// wanted check has a URL to its backend ([`Options::needs_cluster`]); an API server that does
/// not answer is a finding of each check that needed it. Errors only when diagnose cannot run at
/// all ([`Error::CouldNotRun`]: the namespace does not exist, a bad signatures file).
pub async fn run(kube: Option<&Kube>, settings: &Settings, opts: &Options) -> Result<Report> {
    run_learning(kube, settings, opts, None).await
}

/// [`run`], teaching `learn` (the printer's redactor) the secrets of what it listed, so that
/// nothing a pod wrote to its log (a DSN, a session secret) is printed verbatim.
pub async fn run_learning(
    kube: Option<&Kube>,
    settings: &Settings,
    opts: &Options,
    learn: Option<&crate::redact::Shared>,
) -> Result<Report> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string();
    let wanted = opts.wanted();
    let signatures = load_signatures(opts.signatures.as_deref()).map_err(could_not_run)?;

    // The cluster's state, listed once and bounded by the timeout.
    let data = match kube {
        Some(kube) => {
            // Each page within the timeout; the whole listing within LISTING_LIMITS of it (a
            // list of 10,000 pods on a busy server takes a while, and keeps coming).
            let whole = opts.timeout.saturating_mul(LISTING_LIMITS);
            let listed =
                match tokio::time::timeout(whole, fetch(kube, settings, opts.timeout)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Unreachable {
                        server: kube.server.clone(),
                        detail: format!(
                            "listing the namespace took longer than {}",
                            crate::units::duration(whole)
                        ),
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
        kube: kube.cloned(),
        settings: settings.clone(),
        opts: opts.clone(),
        data,
        signatures,
        progress: std::sync::Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    for component in wanted {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let findings = match tokio::time::timeout(
                ctx.opts.timeout,
                run_component(&ctx, component),
            )
            .await
            {
                Ok(f) => super::finding::group(f),
                Err(_) => {
                    let mut f = Finding::new(
                        component,
                        &format!("{}.timeout", component.as_str()),
                        Severity::Critical,
                        format!(
                            "the {} checks did not finish within {}",
                            component.as_str(),
                            crate::units::duration(ctx.opts.timeout)
                        ),
                    )
                    .next(
                        "the backend is hanging or very slow; retry with --timeout 30s to see more",
                    );
                    let done = ctx.progress_of(component);
                    f = f.evidence(if done.is_empty() {
                        "nothing was finished before the limit".to_string()
                    } else {
                        format!("done before the limit: {}", done.join("; "))
                    });
                    vec![f]
                }
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
    Ok(Report::new(
        ctx.settings.namespace.clone(),
        ctx.kube.as_ref().and_then(|k| k.context.clone()),
        started_at,
        started.elapsed().as_millis(),
        runs,
        findings,
    ))
}

/// Errors before any check ran: diagnose could not run (exit code 3).
pub fn could_not_run(e: Error) -> Error {
    Error::CouldNotRun(Box::new(e))
}

/// What every check group of one run shares.
struct Ctx {
    kube: Option<Kube>,
    settings: Settings,
    opts: Options,
    data: Option<std::result::Result<Arc<ClusterData>, Arc<Error>>>,
    signatures: Vec<Signature>,
    /// What each check group has got done so far (the last note of each), for the finding of
    /// one that runs out of time.
    progress: std::sync::Mutex<Vec<(Component, String)>>,
}

impl Ctx {
    /// Notes what `component` has done so far (replacing its previous note).
    fn progress(&self, component: Component, note: String) {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.retain(|(c, _)| *c != component);
        p.push((component, note));
    }

    /// What `component` noted it has done.
    fn progress_of(&self, component: Component) -> Vec<String> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(c, _)| *c == component)
            .map(|(_, n)| n.clone())
            .collect()
    }

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

    /// The slaves' pod template, when their controller is there.
    fn slave_template(&self, d: &ClusterData) -> Option<PodSpec> {
        d.snapshot
            .controller(Role::Slave, &self.settings)
            .and_then(|c| c.template)
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
        Component::Nodes => nodes::check(ctx).await,
        Component::Config => check_config(ctx),
        Component::Logs => logs::check(ctx).await,
        Component::App => app::check(ctx).await,
        Component::Mysql => backends::check_mysql(ctx).await,
        Component::Redis => backends::check_redis(ctx).await,
        Component::Backups => backups::check(ctx).await,
    }
}

fn check_pods(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Pods) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let th = pod_check::PodThresholds {
        restarts: ctx.opts.restart_threshold,
        terminating_grace_secs: i64::try_from(ctx.opts.stuck_after.as_secs()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    let healthy = d.pods.healthy_slaves.len();
    let mut out = pod_check::check_pods(&d.pods.others, healthy, &d.events, &th, |p| {
        Snapshot::role_of(p, &ctx.settings).map(Role::as_str)
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
    config_check::check_config(&templates, &d.sources())
}

/// The built-in log signatures, with the user's file merged in.
fn load_signatures(extra: Option<&Path>) -> Result<Vec<Signature>> {
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
