//! The logs check group: the previous (else current) log of every unhealthy pod against the
//! failure signatures, and whether the slaves old enough to judge have logged a channel sync
//! within twice their SYNC_FREQUENCY. Log reads only for those pods, capped in number at once.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

use super::{ClusterData, Ctx};
use crate::config::Settings;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::signatures::{self, Signature};
use crate::envvars::{EnvValue, resolve};
use crate::inventory::PodView;
use crate::inventory::{Role, Snapshot};
use crate::k8s::{Call, Kube};
use crate::logs::split_timestamp;
use crate::units::plural;

/// New-API's SYNC_FREQUENCY when the slaves do not set it, in seconds.
const DEFAULT_SYNC_SECS: u64 = 600;

/// The pods whose logs are worth reading: crashing, unready, restarting.
fn unhealthy<'a>(pods: &'a [Pod], settings: &Settings) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| Snapshot::role_of(p, settings).is_some())
        .filter(|p| {
            let v = PodView::new(p, Role::Master);
            !v.healthy() && v.phase != "Pending" && v.phase != "Succeeded"
        })
        .collect()
}

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::Logs) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ctx.settings.namespace);
    let sick = unhealthy(&d.snapshot.pods, &ctx.settings);
    let sync_secs = sync_frequency(ctx, d);
    // A slave younger than two sync periods cannot be judged yet.
    let window = i64::try_from(2 * sync_secs + 5).unwrap_or(i64::MAX);
    let slaves: Vec<&Pod> = d
        .snapshot
        .pods
        .iter()
        .filter(|p| Snapshot::role_of(p, &ctx.settings) == Some(Role::Slave))
        .filter(|p| PodView::new(p, Role::Slave).healthy())
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
            let sigs = &ctx.signatures;
            async move { job.run(&api, kube, sigs, sync_secs).await }
        })
        .buffer_unordered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    let mut out: Vec<Finding> = results.into_iter().flatten().collect();
    if out.iter().all(|f| f.severity <= Severity::Info) {
        out.push(Finding::new(
            Component::Logs,
            "logs.ok",
            Severity::Ok,
            format!(
                "no known failure in the logs of {}; {} old enough to judge synced channels within {} s",
                plural(sick.len() as u64, "unhealthy pod", "unhealthy pods"),
                plural(slaves.len() as u64, "slave", "slaves"),
                2 * sync_secs
            ),
        ));
    }
    out
}

/// SYNC_FREQUENCY of the slaves (New-API's default is 600 s).
fn sync_frequency(ctx: &Ctx, d: &ClusterData) -> u64 {
    let Some(spec) = ctx.slave_template(d) else {
        return DEFAULT_SYNC_SECS;
    };
    let Some(c) = spec.containers.first() else {
        return DEFAULT_SYNC_SECS;
    };
    resolve(c, &d.sources())
        .get("SYNC_FREQUENCY")
        .and_then(EnvValue::value)
        .and_then(|v| v.expose().trim().parse().ok())
        .unwrap_or(DEFAULT_SYNC_SECS)
}

/// One log read.
enum LogJob {
    /// An unhealthy pod's log, against the signatures.
    Failure(Pod),
    /// A healthy slave's recent log, for a channel sync.
    Sync(Pod),
}

impl LogJob {
    async fn run(
        self,
        api: &Api<Pod>,
        kube: &Kube,
        sigs: &[Signature],
        sync_secs: u64,
    ) -> Vec<Finding> {
        match self {
            LogJob::Failure(pod) => failure(&pod, api, kube, sigs).await,
            LogJob::Sync(pod) => sync(&pod, api, kube, sync_secs).await,
        }
    }
}

/// A log that could not be read: information, not a failure of the check.
fn unavailable(kube: &Kube, pod: &Pod, name: &str, e: kube::Error) -> Finding {
    let call = Call::new("get", "pods/log", pod.metadata.namespace.as_deref());
    Finding::new(
        Component::Logs,
        "logs.unavailable",
        Severity::Info,
        format!("cannot read the log of {name}: {}", kube.error(&call, e)),
    )
    .subject(format!("pod/{name}"))
}

async fn failure(pod: &Pod, api: &Api<Pod>, kube: &Kube, sigs: &[Signature]) -> Vec<Finding> {
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
    let text = match api.logs(&name, &params).await {
        Ok(t) => t,
        Err(e) => return vec![unavailable(kube, pod, &name, e)],
    };
    let which = if restarted { "previous" } else { "current" };
    let lines = text.lines().map(|l| split_timestamp(l).1);
    signatures::scan(lines, sigs)
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

async fn sync(pod: &Pod, api: &Api<Pod>, kube: &Kube, sync_secs: u64) -> Vec<Finding> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Only slaves older than this window are given to this job (see `check`).
    let window = 2 * sync_secs + 5;
    let params = LogParams {
        since_seconds: Some(i64::try_from(window).unwrap_or(i64::MAX)),
        timestamps: true,
        ..Default::default()
    };
    match api.logs(&name, &params).await {
        Ok(text) => match signatures::last_sync(text.lines()) {
            Some(_) => Vec::new(),
            None => vec![
                Finding::new(
                    Component::Logs,
                    "logs.slave-out-of-sync",
                    Severity::Warning,
                    format!("{name} has not logged `syncing channels from database` in the last {window} s (SYNC_FREQUENCY {sync_secs} s)"),
                )
                .subject(format!("pod/{name}"))
                .evidence(format!("{} log lines in the last {window} s, none a channel sync", text.lines().count()))
                .next(format!("newapi-ops logs {name} --since {window}s; check its database connection: newapi-ops runbook run db-connection")),
            ],
        },
        Err(e) => vec![unavailable(kube, pod, &name, e)],
    }
}
