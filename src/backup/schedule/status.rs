//! What the schedule has done: the CronJob (at the version discovery chose), its last successful
//! and last failed Job (the failed one with its pod's last log lines), and the newest backup in
//! the volume.
//!
//! **How the volume is read.** The job's last container (`backup status --publish`) writes the
//! volume's listing (ids, times, sizes, verified or not: no secret, a few KiB) into the
//! ConfigMap [`super::STATUS_CONFIGMAP`], which its Role may `get` and `patch` by name and
//! nothing else. `backup status` and `diagnose` read that ConfigMap with one GET. This works on
//! any cluster with the rights `kubectl get configmap` needs — no pod to start, no volume to
//! attach (a ReadWriteOnce volume may be attached to another node, and a pod would need rights
//! to create pods and time to pull an image), and it answers within diagnose's timeout. What it
//! shows is the volume as the last job that finished its retention left it; when a job failed
//! before that, the listing is the previous one, and the failed Job says so.

use std::path::Path;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{CronJobApi, NAME, SELECTOR, STATUS_CONFIGMAP, api, cron};
use crate::backup::store::Entry;
use crate::error::{Error, Result};
use crate::k8s::{Call, Kube};

/// The key of [`super::STATUS_CONFIGMAP`] that holds the listing (JSON).
pub const KEY: &str = "status.json";
/// How many backups the listing names (newest first); the count covers them all.
const LISTED: usize = 20;
/// How many log lines of a failed pod are kept.
pub const LOG_LINES: i64 = 20;

/// The volume's listing, as the job writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub schema_version: u32,
    /// When the job wrote it.
    pub written_at: String,
    /// The directory in the job's pod.
    pub dir: String,
    /// How many complete backups there are, and their size.
    pub backups: usize,
    pub bytes: u64,
    /// The newest first, at most [`LISTED`].
    pub newest: Vec<Entry>,
}

/// The listing of the backups in `dir` (oldest first, as [`crate::backup::store::list`] gives).
pub fn volume_status(dir: &Path, entries: &[Entry]) -> VolumeStatus {
    VolumeStatus {
        schema_version: 1,
        written_at: now(),
        dir: dir.display().to_string(),
        backups: entries.len(),
        bytes: entries.iter().map(|e| e.bytes).sum(),
        newest: entries.iter().rev().take(LISTED).cloned().collect(),
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// Writes `status` into the status ConfigMap (a merge patch of its one key: the job's Role
/// allows `patch` of that name only).
pub async fn publish(kube: &Kube, namespace: &str, status: &VolumeStatus) -> Result<()> {
    let text = serde_json::to_string(status)
        .map_err(|e| Error::Internal(format!("serializing the volume's listing: {e}")))?;
    let api: Api<ConfigMap> = Api::namespaced(kube.client.clone(), namespace);
    let pp = PatchParams {
        field_manager: Some("newapi-ops-backup-job".into()),
        ..Default::default()
    };
    api.patch(
        STATUS_CONFIGMAP,
        &pp,
        &Patch::Merge(json!({"data": {KEY: text}})),
    )
    .await
    .map_err(|e| kube.error(&Call::new("patch", "configmaps", Some(namespace)), e))?;
    Ok(())
}

/// The volume's listing from the status ConfigMap; Ok(Err(why)) when there is none to read.
pub async fn read_volume(
    kube: &Kube,
    namespace: &str,
) -> Result<std::result::Result<VolumeStatus, String>> {
    let api: Api<ConfigMap> = Api::namespaced(kube.client.clone(), namespace);
    let call = Call::new("get", "configmaps", Some(namespace));
    let cm = match api.get_opt(STATUS_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(e) => match kube.error(&call, e) {
            e @ Error::Forbidden { .. } => return Ok(Err(format!("the volume is not read: {e}"))),
            e => return Err(e),
        },
    };
    let Some(cm) = cm else {
        return Ok(Err(format!(
            "no ConfigMap {STATUS_CONFIGMAP}: `newapi-ops backup schedule` creates it, and each backup job fills it"
        )));
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(KEY)) else {
        return Ok(Err(format!(
            "ConfigMap {STATUS_CONFIGMAP} is empty: no backup job has finished its retention yet"
        )));
    };
    Ok(serde_json::from_str(text)
        .map_err(|e| format!("ConfigMap {STATUS_CONFIGMAP} key {KEY} is not a listing: {e}")))
}

/// One finished (or running) Job of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRun {
    pub name: String,
    /// Made by `--run-now` (or `kubectl create job --from`), not by the schedule.
    pub manual: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub succeeded: bool,
    /// The failed pod, its failed container and exit code, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// Why a Job failed, as its pod shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub pod: Option<String>,
    pub container: Option<String>,
    pub exit_code: Option<i32>,
    /// The Job's or the container's reason (`BackoffLimitExceeded`, `Error`).
    pub reason: String,
    /// The log line that says what went wrong (the last `error:` line, else the last line).
    pub log_line: Option<String>,
    /// The failed container's last log lines.
    pub log_tail: Vec<String>,
}

/// Everything `backup status` shows of the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleStatus {
    pub namespace: String,
    pub server_version: Option<String>,
    /// The CronJob API this server serves (None: none).
    pub api_version: Option<String>,
    pub cronjob: Option<CronJobView>,
    pub last_success: Option<JobRun>,
    pub last_failure: Option<JobRun>,
    /// The newest finished Job failed.
    pub last_failed: bool,
    /// Jobs still running.
    pub running: Vec<String>,
    pub volume: Option<VolumeStatus>,
    /// Why the volume's listing is not there.
    pub volume_note: Option<String>,
}

/// The CronJob as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CronJobView {
    pub name: String,
    pub api_version: String,
    pub schedule: String,
    pub suspended: bool,
    pub created: Option<String>,
    pub last_schedule: Option<String>,
    /// The longest wait between two runs, in seconds (None: the schedule does not parse, or
    /// never runs).
    pub period_secs: Option<u64>,
    /// Why the schedule does not parse.
    pub schedule_error: Option<String>,
}

/// Reads the schedule's state: discovery, the CronJob, its Jobs (one list), the newest failed
/// Job's pod and log, the status ConfigMap.
pub async fn gather(kube: &Kube, namespace: &str) -> Result<ScheduleStatus> {
    let (server_version, api) = api::discover(kube).await?;
    let mut st = ScheduleStatus {
        namespace: namespace.to_string(),
        server_version,
        api_version: api.as_ref().map(|a| a.api_version.clone()),
        ..ScheduleStatus::default()
    };
    if let Some(api) = &api {
        st.cronjob = cronjob_view(kube, api, namespace).await?;
    }
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let listed = jobs
        .list(&ListParams::default().labels(SELECTOR))
        .await
        .map_err(|e| kube.error(&Call::new("list", "jobs.batch", Some(namespace)), e))?;
    let mut finished: Vec<(jiff::Timestamp, JobRun)> = Vec::new();
    for job in &listed.items {
        let run = job_run(job);
        match finished_at(job) {
            Some(at) => finished.push((at, run)),
            None => st.running.push(run.name),
        }
    }
    finished.sort_by_key(|(at, _)| *at);
    st.last_failed = finished.last().is_some_and(|(_, r)| !r.succeeded);
    st.last_success = finished
        .iter()
        .rev()
        .find(|(_, r)| r.succeeded)
        .map(|(_, r)| r.clone());
    if let Some((_, failed)) = finished.iter().rev().find(|(_, r)| !r.succeeded) {
        let job = listed
            .items
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(failed.name.as_str()));
        let mut failed = failed.clone();
        if let Some(job) = job {
            failed.failure = Some(failure(kube, namespace, job).await?);
        }
        st.last_failure = Some(failed);
    }
    match read_volume(kube, namespace).await? {
        Ok(v) => st.volume = Some(v),
        Err(why) => st.volume_note = Some(why),
    }
    Ok(st)
}

async fn cronjob_view(kube: &Kube, api: &CronJobApi, ns: &str) -> Result<Option<CronJobView>> {
    let Some(cj) = api.get(kube, ns, NAME).await? else {
        return Ok(None);
    };
    let (period_secs, schedule_error) = match cron::parse(&cj.schedule) {
        Ok(s) => match s.period() {
            Some(p) => (Some(p.as_secs()), None),
            None => (None, Some("it never runs (no such date)".to_string())),
        },
        Err(e) => (None, Some(e)),
    };
    Ok(Some(CronJobView {
        name: cj.name,
        api_version: cj.api_version,
        schedule: cj.schedule,
        suspended: cj.suspended,
        created: cj.created.map(|t| t.to_string()),
        last_schedule: cj.last_schedule.map(|t| t.to_string()),
        period_secs,
        schedule_error,
    }))
}

/// `Complete` or `Failed`, when the Job has one of these conditions true.
pub fn outcome_of(job: &Job) -> Option<(&'static str, Option<jiff::Timestamp>)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        let kind = match c.type_.as_str() {
            "Complete" => "Complete",
            "Failed" => "Failed",
            _ => return None,
        };
        (c.status == "True").then(|| {
            (
                kind,
                c.last_transition_time
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| c.last_probe_time.as_ref().map(|t| t.0)),
            )
        })
    })
}

fn finished_at(job: &Job) -> Option<jiff::Timestamp> {
    let (_, at) = outcome_of(job)?;
    let completion = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0);
    Some(
        completion
            .or(at)
            .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
    )
}

fn job_run(job: &Job) -> JobRun {
    let outcome = outcome_of(job);
    JobRun {
        name: job.metadata.name.clone().unwrap_or_default(),
        manual: job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cronjob.kubernetes.io/instantiate"))
            .is_some_and(|v| v == "manual"),
        started_at: job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string()),
        finished_at: finished_at(job).map(|t| t.to_string()),
        succeeded: outcome.is_some_and(|(k, _)| k == "Complete"),
        failure: None,
    }
}

/// The Job's pods, newest first.
pub async fn pods_of(kube: &Kube, namespace: &str, job: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let mut list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .map_err(|e| kube.error(&Call::new("list", "pods", Some(namespace)), e))?
        .items;
    list.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    Ok(list)
}

/// The container of `pod` that failed (init containers first: they run first), with its exit
/// code and reason.
pub fn failed_container(pod: &Pod) -> Option<(String, i32, String)> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let t = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            (t.exit_code != 0).then(|| {
                (
                    c.name.clone(),
                    t.exit_code,
                    t.reason.clone().unwrap_or_else(|| "Error".into()),
                )
            })
        })
}

/// Why `job` failed: its newest failed pod's container, exit code and last log lines; else the
/// Job's own condition.
pub async fn failure(kube: &Kube, namespace: &str, job: &Job) -> Result<Failure> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let condition = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
        });
    let job_reason = condition
        .map(|c| {
            let reason = c.reason.clone().unwrap_or_else(|| "Failed".into());
            match &c.message {
                Some(m) => format!("{reason}: {m}"),
                None => reason,
            }
        })
        .unwrap_or_else(|| "Failed".into());
    let pods = pods_of(kube, namespace, &name).await?;
    let Some((pod, (container, exit_code, reason))) = pods
        .iter()
        .find_map(|p| failed_container(p).map(|c| (p, c)))
    else {
        let pod = pods.first();
        return Ok(Failure {
            pod: pod.and_then(|p| p.metadata.name.clone()),
            container: None,
            exit_code: None,
            reason: pod
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.reason.clone().or_else(|| s.message.clone()))
                .unwrap_or(job_reason),
            log_line: None,
            log_tail: Vec::new(),
        });
    };
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let log_tail = tail(kube, namespace, &pod_name, &container).await;
    Ok(Failure {
        pod: Some(pod_name),
        container: Some(container),
        exit_code: Some(exit_code),
        reason: format!("{reason} (exit {exit_code}); {job_reason}"),
        log_line: telling_line(&log_tail),
        log_tail,
    })
}

/// The last [`LOG_LINES`] lines of a container's log (none when it cannot be read).
pub async fn tail(kube: &Kube, namespace: &str, pod: &str, container: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let params = LogParams {
        container: Some(container.to_string()),
        tail_lines: Some(LOG_LINES),
        ..Default::default()
    };
    pods.logs(pod, &params)
        .await
        .map(|l| {
            l.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The line that says what went wrong: the last that starts with `error` (newapi-ops' own
/// errors do), else the last line.
pub fn telling_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .rev()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with("error"))
        .or_else(|| lines.last())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telling_line_is_the_error() {
        let lines: Vec<String> = [
            "note: reaching MySQL",
            "error: cannot connect to MySQL at root@mysql:3306/new-api: refused",
            "hint: check that MySQL runs",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            telling_line(&lines).as_deref(),
            Some("error: cannot connect to MySQL at root@mysql:3306/new-api: refused")
        );
        let plain: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(telling_line(&plain).as_deref(), Some("b"));
        assert_eq!(telling_line(&[]), None);
    }
}
