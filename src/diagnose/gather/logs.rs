//! The logs check group: the previous (else current) log of every unhealthy pod against the
//! failure signatures, and whether the slaves old enough to judge have logged a channel sync
//! within twice their SYNC_FREQUENCY. Log reads only for those pods, capped in number at once and
//! started only until a deadline inside the time limit: the failures first (a pod of each kind of
//! failure before a second of any), then the sync check on a sample of the slaves (every slave up
//! to [`sample::ALL_UP_TO`], else the suspects and a few per ReplicaSet, more of a group where
//! one is out of sync; see [`sample`]). Each log is read as a stream, line by line, and dropped
//! once judged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

use super::sample::{self, Candidate, Pick, Why};
use super::{ClusterData, Ctx};
use crate::config::Settings;
use crate::diagnose::config::DEFAULT_SYNC_SECS;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::signatures::{self, Signature};
use crate::envvars::{EnvValue, resolve};
use crate::inventory::PodView;
use crate::inventory::{Role, Snapshot};
use crate::k8s::{Call, Kube};
use crate::logs::split_timestamp;
use crate::units::plural;

/// Log reads start until this share of the time limit has passed, each may take this share.
const START_UNTIL: f32 = 0.6;
const PER_READ: f32 = 0.3;

/// The pods whose logs are worth reading: crashing, unready, restarting — ordered so that a pod
/// of each kind of failure (owner, image and status) comes before a second one of any.
fn unhealthy<'a>(pods: &'a [Pod], settings: &Settings) -> Vec<&'a Pod> {
    let mut kinds: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        let Some(role) = Snapshot::role_of(p, settings) else {
            continue;
        };
        let v = PodView::new(p, role);
        if v.healthy() || v.phase == "Pending" || v.phase == "Succeeded" {
            continue;
        }
        let kind = format!("{} {}", Candidate::of(p, role).group, v.status);
        kinds.entry(kind).or_default().push(p);
    }
    sample::round_robin(
        kinds
            .into_values()
            .map(|mut v| {
                v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                v
            })
            .collect(),
    )
}

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
    let t0 = Instant::now();
    let d = match ctx.data(Component::Logs) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let limit = ctx.opts.timeout;
    let start_until = tokio::time::Instant::from_std(t0 + limit.mul_f32(START_UNTIL));
    let per_read = limit.mul_f32(PER_READ);
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &ctx.settings.namespace);
    let sick = unhealthy(&d.pods.others, &ctx.settings);
    let sync_secs = sync_frequency(ctx, d);
    // A slave younger than two sync periods cannot be judged yet.
    let window = i64::try_from(2 * sync_secs + 5).unwrap_or(i64::MAX);
    // The healthy slaves old enough to judge: the compact records and the others.
    let cands: Vec<Candidate> = d
        .pods
        .others
        .iter()
        .filter(|p| Snapshot::role_of(p, &ctx.settings) == Some(Role::Slave))
        .filter(|p| PodView::new(p, Role::Slave).healthy())
        .filter(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| crate::units::seconds_since(&t.0) >= window)
        })
        .map(|p| Candidate::of(p, Role::Slave))
        .chain(
            d.pods
                .healthy_slaves
                .iter()
                .filter(|h| h.age_secs().is_some_and(|a| a >= window))
                .map(super::slim::HealthySlave::candidate),
        )
        .collect();
    let by_name = |name: &str| {
        cands
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.name.as_str())
    };
    let mut plan = sample::plan(&cands);
    let mut jobs: Vec<LogJob> = sick.iter().map(|p| LogJob::Failure(p)).collect();
    jobs.extend(
        plan.picks
            .iter()
            .filter_map(|pick| Some(LogJob::Sync(by_name(&pick.name)?, pick.clone()))),
    );
    ctx.progress(
        Component::Logs,
        format!(
            "reading the logs of {} and the sync of {}",
            plural(sick.len() as u64, "unhealthy pod", "unhealthy pods"),
            plan.describe("slaves")
        ),
    );
    let sigs = &ctx.signatures;
    let run = one_lifetime(|job| {
        let api = api.clone();
        async move {
            let pick = job.pick();
            let fs = job.run(&api, kube, sigs, sync_secs, per_read).await;
            (pick, fs)
        }
    });
    let conc = ctx.opts.concurrency.max(1);
    let (mut done, mut skipped) = sample::within(jobs, conc, start_until, &run).await;
    // A sampled slave out of sync: look at more of its group while there is time.
    if skipped.is_empty() {
        let mut groups: Vec<usize> = done
            .iter()
            .filter_map(|(pick, fs)| {
                let pick = pick.as_ref()?;
                (pick.why == Why::Sample && out_of_sync(fs)).then_some(pick.group)
            })
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let mut more = Vec::new();
        for g in groups {
            for pick in sample::more_of(&mut plan, &cands, g, sample::ESCALATE) {
                if let Some(p) = by_name(&pick.name) {
                    more.push(LogJob::Sync(p, pick));
                }
            }
        }
        if !more.is_empty() {
            let (d2, s2) = sample::within(more, conc, start_until, &run).await;
            done.extend(d2);
            skipped.extend(s2);
        }
    }
    let read = done.len();
    ctx.progress(
        Component::Logs,
        format!("read {read} of {} logs", read + skipped.len()),
    );
    let mut out: Vec<Finding> = done.into_iter().flat_map(|(_, fs)| fs).collect();
    if out.iter().all(|f| f.severity <= Severity::Info) {
        out.push(Finding::new(
            Component::Logs,
            "logs.ok",
            Severity::Ok,
            format!(
                "no known failure in the logs of {}; {} old enough to judge synced channels within {} s",
                plural(sick.len() as u64, "unhealthy pod", "unhealthy pods"),
                if plan.is_all() {
                    plural(cands.len() as u64, "slave", "slaves")
                } else {
                    format!("{} sampled of {} slaves", plan.picks.len(), cands.len())
                },
                2 * sync_secs
            ),
        ));
    }
    if !plan.is_all() {
        out.push(Finding::new(
            Component::Logs,
            "logs.sampled",
            Severity::Info,
            format!(
                "channel sync checked on {}; the others were judged by their group's sample",
                plan.describe("slaves")
            ),
        ));
    }
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(LogJob::pod_name).collect();
        out.push(sample::incomplete(
            Component::Logs,
            &format!("read {read} of {} logs", read + skipped.len()),
            &names,
            limit,
        ));
    }
    out
}

/// Pins a closure over jobs to the one lifetime of the pods they borrow.
fn one_lifetime<'a, F, Fut>(f: F) -> F
where
    F: Fn(LogJob<'a>) -> Fut,
{
    f
}

/// Whether a sync read found the slave out of sync.
fn out_of_sync(fs: &[Finding]) -> bool {
    fs.iter().any(|f| f.check == "logs.slave-out-of-sync")
}

/// SYNC_FREQUENCY of the slaves (New-API's default is 60 s).
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
enum LogJob<'a> {
    /// An unhealthy pod's log, against the signatures.
    Failure(&'a Pod),
    /// A healthy slave's recent log (by name), for a channel sync.
    Sync(&'a str, Pick),
}

impl LogJob<'_> {
    fn pick(&self) -> Option<Pick> {
        match self {
            LogJob::Failure(_) => None,
            LogJob::Sync(_, pick) => Some(pick.clone()),
        }
    }

    fn pod_name(&self) -> String {
        match self {
            LogJob::Failure(p) => p.metadata.name.clone().unwrap_or_default(),
            LogJob::Sync(name, _) => (*name).to_string(),
        }
    }

    async fn run(
        self,
        api: &Api<Pod>,
        kube: &Kube,
        sigs: &[Signature],
        sync_secs: u64,
        limit: Duration,
    ) -> Vec<Finding> {
        let name = self.pod_name();
        let work = async {
            match self {
                LogJob::Failure(pod) => failure(pod, api, kube, sigs).await,
                LogJob::Sync(pod, _) => sync(pod, api, kube, sync_secs).await,
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(fs) => fs,
            Err(_) => {
                vec![
                    Finding::new(
                        Component::Logs,
                        "logs.unavailable",
                        Severity::Info,
                        format!(
                            "the log of {name} did not come within {}",
                            crate::units::duration(limit)
                        ),
                    )
                    .subject(format!("pod/{name}"))
                    .cause("a log read took too long"),
                ]
            }
        }
    }
}

/// A log that could not be read: information, not a failure of the check.
fn unavailable(kube: &Kube, api: &Api<Pod>, name: &str, e: kube::Error) -> Finding {
    let call = Call::new("get", "pods/log", api.namespace());
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
        Err(e) => return vec![unavailable(kube, api, &name, e)],
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
            .cause(m.cause.clone())
            .weight(i64::try_from(m.count).unwrap_or(i64::MAX))
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

async fn sync(name: &str, api: &Api<Pod>, kube: &Kube, sync_secs: u64) -> Vec<Finding> {
    // Only slaves older than this window are given to this job (see `check`).
    let window = 2 * sync_secs + 5;
    let params = LogParams {
        since_seconds: Some(i64::try_from(window).unwrap_or(i64::MAX)),
        timestamps: true,
        ..Default::default()
    };
    // Read line by line, and stop at the first sync: a busy slave's window may be long.
    let read = async {
        let mut lines = api.log_stream(name, &params).await?.lines();
        let mut seen = 0usize;
        while let Some(line) = lines.try_next().await.map_err(kube::Error::ReadEvents)? {
            seen += 1;
            if signatures::last_sync(std::iter::once(line.as_str())).is_some() {
                return Ok::<_, kube::Error>((true, seen));
            }
        }
        Ok((false, seen))
    };
    match read.await {
        Ok((true, _)) => Vec::new(),
        Ok((false, seen)) => vec![
            Finding::new(
                Component::Logs,
                "logs.slave-out-of-sync",
                Severity::Warning,
                format!("{name} has not logged `syncing channels from database` in the last {window} s (SYNC_FREQUENCY {sync_secs} s)"),
            )
            .subject(format!("pod/{name}"))
            .cause(format!("no `syncing channels from database` within 2×SYNC_FREQUENCY ({window} s)"))
            .evidence(format!("{seen} log lines in the last {window} s, none a channel sync"))
            .next(format!("newapi-ops logs {name} --since {window}s; check its database connection: newapi-ops runbook run db-connection")),
        ],
        Err(e) => vec![unavailable(kube, api, name, e)],
    }
}
