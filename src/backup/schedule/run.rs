//! `backup schedule --run-now`: a Job made of the CronJob's `jobTemplate` as `kubectl create job
//! --from=cronjob/NAME` makes it (the template's labels and annotations, the annotation
//! `cronjob.kubernetes.io/instantiate: manual`, the CronJob as its controlling owner, so that the
//! CronJob's history limits and garbage collection cover it), then followed until it is Complete
//! or Failed: the backup id it wrote (the JSON summary its `backup` container printed), or the
//! failed pod's last log lines.

use std::sync::PoisonError;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde_json::{Value, json};

use super::status::{self, Failure};
use super::{CronJobApi, NAME};
use crate::backup::BackupError;
use crate::error::{Error, Result};
use crate::k8s::{Call, Kube, POLL_LIMIT, UNREACHABLE_GRACE};

/// How often the Job is looked at while it runs.
const POLL: Duration = Duration::from_secs(1);

/// The Job of `cronjob` that `kubectl create job --from=cronjob/NAME JOB` would create. Pure.
pub fn job_from(cronjob: &super::api::CronJob, job: &str, namespace: &str) -> Value {
    let template = &cronjob.job_template;
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert("cronjob.kubernetes.io/instantiate".into(), json!("manual"));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": namespace,
            "labels": template["metadata"]["labels"].clone(),
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": cronjob.api_version,
                "kind": "CronJob",
                "name": cronjob.name,
                "uid": cronjob.uid,
                "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": template["spec"].clone()
    })
}

/// Creates the Job from the schedule's CronJob; returns its name.
pub async fn create(kube: &Kube, api: &CronJobApi, namespace: &str) -> Result<String> {
    let Some(cronjob) = api.get(kube, namespace, NAME).await? else {
        return Err(Error::WorkloadNotFound {
            kind: "CronJob".into(),
            name: NAME.into(),
            namespace: namespace.into(),
            available: Vec::new(),
        });
    };
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let call = Call::new("create", "jobs.batch", Some(namespace));
    let stamp = jiff::Timestamp::now().as_second();
    for attempt in 0..5 {
        let name = match attempt {
            0 => format!("{NAME}-manual-{stamp}"),
            n => format!("{NAME}-manual-{stamp}-{}", n + 1),
        };
        let job: Job = serde_json::from_value(job_from(&cronjob, &name, namespace))
            .map_err(|e| Error::Internal(format!("the Job of CronJob {NAME}: {e}")))?;
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => return Ok(name),
            // Two runs in one second: the next name.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(kube.error(&call, e)),
        }
    }
    Err(Error::Internal(format!(
        "could not find a free name for a Job of CronJob {NAME}"
    )))
}

/// How a followed Job ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub job: String,
    pub namespace: String,
    pub succeeded: bool,
    pub duration_secs: u64,
    /// The pod that ran it (the last one).
    pub pod: Option<String>,
    /// The backup the job wrote (from its `backup` container's summary line).
    pub backup_id: Option<String>,
    /// What the job's `backup` container said of it (`backup 2026…: 11 tables, …`).
    pub backup: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// Follows `job` until it is Complete or Failed, for up to `timeout`, calling `progress` with a
/// line saying where it is whenever that changes (and every poll, for the elapsed time). Not
/// finished by then: [`BackupError::StillRunning`], with where it was.
///
/// Each look is bounded ([`POLL_LIMIT`]); while the API server does not answer, it looks again
/// for up to [`UNREACHABLE_GRACE`], then gives up following (the Job goes on without us).
pub async fn follow(
    kube: &Kube,
    namespace: &str,
    job: &str,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Finished> {
    let last = std::sync::Mutex::new(String::new());
    let tracked = |line: &str| {
        progress(line);
        line.clone_into(&mut last.lock().unwrap_or_else(PoisonError::into_inner));
    };
    match tokio::time::timeout(timeout, follow_until_done(kube, namespace, job, &tracked)).await {
        Ok(done) => done,
        Err(_) => {
            let last = last.lock().unwrap_or_else(PoisonError::into_inner);
            let prefix = format!("job {job}: ");
            Err(BackupError::StillRunning {
                job: job.to_string(),
                namespace: namespace.to_string(),
                waited: timeout,
                last: last.strip_prefix(&prefix).unwrap_or(&last).to_string(),
            }
            .into())
        }
    }
}

async fn follow_until_done(
    kube: &Kube,
    namespace: &str,
    job: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Finished> {
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let call = Call::new("get", "jobs.batch", Some(namespace));
    let started = std::time::Instant::now();
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        let look = async {
            let j = jobs.get(job).await.map_err(|e| kube.error(&call, e))?;
            let pods = status::pods_of(kube, namespace, job).await?;
            Ok::<_, Error>((j, pods))
        };
        let (j, pods) = match kube.within(POLL_LIMIT, &call, look).await {
            Ok(looked) => {
                failing_since = None;
                looked
            }
            Err(e) if e.is_transient() => {
                let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= UNREACHABLE_GRACE {
                    return Err(BackupError::LostWhileFollowing {
                        job: job.to_string(),
                        namespace: namespace.to_string(),
                        server: kube.server.clone(),
                        detail: e.detail(),
                        lost_for: since.elapsed(),
                    }
                    .into());
                }
                tracing::debug!("looking at job {job} failed, retrying: {e}");
                progress(&format!(
                    "job {job}: the API server does not answer, looking again ({})",
                    crate::units::duration(since.elapsed())
                ));
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let elapsed = started.elapsed().as_secs();
        match status::outcome_of(&j).map(|(k, _)| k) {
            Some("Complete") => {
                let pod = pods
                    .iter()
                    .find(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
                    })
                    .or(pods.first())
                    .and_then(|p| p.metadata.name.clone());
                let backup = match &pod {
                    Some(p) => tokio::time::timeout(POLL_LIMIT, summary_line(kube, namespace, p))
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                };
                return Ok(Finished {
                    job: job.to_string(),
                    namespace: namespace.to_string(),
                    succeeded: true,
                    duration_secs: elapsed,
                    backup_id: backup
                        .as_ref()
                        .and_then(|b| b["id"].as_str())
                        .map(str::to_string),
                    backup,
                    pod,
                    failure: None,
                });
            }
            Some(_) => {
                let failure = kube
                    .within(POLL_LIMIT, &call, status::failure(kube, namespace, &j))
                    .await?;
                return Ok(Finished {
                    job: job.to_string(),
                    namespace: namespace.to_string(),
                    succeeded: false,
                    duration_secs: elapsed,
                    pod: failure.pod.clone(),
                    backup_id: None,
                    backup: None,
                    failure: Some(failure),
                });
            }
            None => progress(&where_it_is(job, &pods, elapsed)),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `job X: pod Y running backup (12 s), 1 failed attempt`.
fn where_it_is(job: &str, pods: &[k8s_openapi::api::core::v1::Pod], elapsed: u64) -> String {
    let failed = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .count();
    let now = pods.first().map_or_else(
        || "waiting for its pod".to_string(),
        |p| {
            let name = p.metadata.name.as_deref().unwrap_or("?");
            let status = p.status.as_ref();
            let running = status.and_then(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
                    .find_map(|c| {
                        let st = c.state.as_ref()?;
                        if st.running.is_some() {
                            return Some(format!("running {}", c.name));
                        }
                        st.waiting
                            .as_ref()
                            .and_then(|w| w.reason.clone())
                            .filter(|r| r != "PodInitializing")
                            .map(|r| format!("{}: {r}", c.name))
                    })
            });
            let phase = status
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into());
            format!("pod {name} {}", running.unwrap_or(phase))
        },
    );
    let mut line = format!(
        "job {job}: {now} ({})",
        crate::units::duration(Duration::from_secs(elapsed))
    );
    if failed > 0 {
        line.push_str(&format!(
            ", {} (the Job retries)",
            crate::units::plural(failed, "failed attempt", "failed attempts")
        ));
    }
    line
}

/// The JSON summary the `backup` container printed (its last line that parses as JSON with an
/// `id`).
async fn summary_line(kube: &Kube, namespace: &str, pod: &str) -> Option<Value> {
    status::tail(kube, namespace, pod, "backup")
        .await
        .iter()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"].is_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_is_what_kubectl_create_job_from_makes() {
        let cj = super::super::api::CronJob {
            name: NAME.into(),
            uid: "0b5e-uid".into(),
            api_version: "batch/v1beta1".into(),
            created: None,
            schedule: "0 3 * * *".into(),
            suspended: false,
            job_template: json!({
                "metadata": {"labels": {"app.kubernetes.io/component": "backup"},
                             "annotations": {"team": "db"}},
                "spec": {"backoffLimit": 2, "template": {"spec": {"containers": []}}}
            }),
            last_schedule: None,
            active: 0,
        };
        let j = job_from(&cj, "newapi-ops-backup-manual-1", "new-api");
        assert_eq!(j["apiVersion"], "batch/v1");
        assert_eq!(
            j["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
            "manual"
        );
        assert_eq!(j["metadata"]["annotations"]["team"], "db");
        assert_eq!(
            j["metadata"]["labels"]["app.kubernetes.io/component"],
            "backup"
        );
        let owner = &j["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "CronJob");
        assert_eq!(owner["apiVersion"], "batch/v1beta1");
        assert_eq!(owner["uid"], "0b5e-uid");
        assert_eq!(owner["controller"], true);
        assert_eq!(j["spec"]["backoffLimit"], 2);
        let _: Job = serde_json::from_value(j).unwrap();
    }
}
