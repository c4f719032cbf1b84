//! `bench --in-cluster --workers K`: the load comes from K pods of the tool's own image inside
//! the cluster, hitting New-API's Service, so the load is not limited by one machine or by a
//! port-forward. Each pod runs `newapi-ops bench worker`, which prints its counts and its
//! latency histogram as the last line of its log ([`super::worker`]); the coordinator waits
//! for the pods, reads their logs, merges the histograms and deletes what it created.
//!
//! Where the server has Indexed Jobs (`completionMode: Indexed`, Kubernetes 1.21+ with the
//! feature on) one Job of K completions runs the workers, each taking its index from the
//! `batch.kubernetes.io/job-completion-index` annotation. Whether the server has them is asked
//! of the server itself, not of its version: the Job is first created with `dryRun=All`, and a
//! server that does not know the field drops it from its answer. There, K Jobs of one pod each
//! run the workers, the index in each one's arguments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::BenchError;
use super::load::Stop;
use super::worker::WorkerResult;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::{Call, Kube};

/// The label every object of one run carries, with the run's id.
pub const RUN_LABEL: &str = "newapi-ops.io/bench-run";
/// The env variable a worker reads its index from (set from the Indexed Job's annotation).
pub const INDEX_ENV: &str = "NEWAPI_OPS_WORKER_INDEX";
/// The Indexed Job's annotation with the pod's index.
pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";

/// What the Jobs run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub namespace: String,
    /// Short id of the run: names and labels.
    pub run: String,
    pub workers: u32,
    pub image: String,
    /// `bench worker …` arguments shared by all workers (without the index).
    pub worker_args: Vec<String>,
    /// CPU each worker requests (e.g. `500m`).
    pub cpu: String,
    /// The Job gives up this long after it started.
    pub deadline: Duration,
}

/// How the workers were run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobMode {
    /// One Indexed Job, K completions.
    Indexed,
    /// K Jobs of one pod each (servers without Indexed Jobs).
    JobPerWorker,
}

/// One worker as the coordinator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    pub index: u32,
    pub pod: Option<String>,
    pub phase: String,
    /// Why it gave no result, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub responses: u64,
}

/// A run's id: 6 hex digits.
pub fn run_id() -> String {
    let t = jiff::Timestamp::now();
    let salt = (u64::from(t.subsec_nanosecond().unsigned_abs()) ^ u64::from(std::process::id()))
        % 0x100_0000;
    format!("{salt:06x}")
}

fn labels(spec: &JobSpec) -> Value {
    json!({
        "app.kubernetes.io/name": "newapi-ops",
        "app.kubernetes.io/component": "bench",
        "app.kubernetes.io/managed-by": "newapi-ops",
        RUN_LABEL: spec.run,
    })
}

/// The Job manifests for `mode`: one Indexed Job, or one Job per worker.
pub fn job_manifests(spec: &JobSpec, mode: JobMode) -> Vec<Value> {
    let base = format!("newapi-ops-bench-{}", spec.run);
    let deadline = spec.deadline.as_secs().max(60);
    let job = |name: String, index: Option<u32>| {
        let mut args = spec.worker_args.clone();
        let mut env = Vec::new();
        match index {
            Some(i) => args.extend(["--index".to_string(), i.to_string()]),
            None => env.push(json!({
                "name": INDEX_ENV,
                "valueFrom": {"fieldRef": {
                    "fieldPath": format!("metadata.annotations['{INDEX_ANNOTATION}']")
                }}
            })),
        }
        let mut job_spec = json!({
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {RUN_LABEL: spec.run}}
                        }
                    }]}},
                    "containers": [{
                        "name": "bench",
                        "image": spec.image,
                        "args": args,
                        "env": env,
                        "resources": {
                            "requests": {"cpu": spec.cpu, "memory": "32Mi"},
                            "limits": {"memory": "256Mi"}
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        });
        match index {
            Some(_) => {
                job_spec["completions"] = json!(1);
                job_spec["parallelism"] = json!(1);
            }
            None => {
                job_spec["completionMode"] = json!("Indexed");
                job_spec["completions"] = json!(spec.workers);
                job_spec["parallelism"] = json!(spec.workers);
            }
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": spec.namespace, "labels": labels(spec)},
            "spec": job_spec
        })
    };
    match mode {
        JobMode::Indexed => vec![job(base, None)],
        JobMode::JobPerWorker => (0..spec.workers)
            .map(|i| job(format!("{base}-{i}"), Some(i)))
            .collect(),
    }
}

/// The in-cluster URL of the Service in front of the New-API pods (of `role`, or of any New-API
/// pod): `http://NAME.NAMESPACE.svc:PORT`, the Service that selects the most of them.
pub async fn service_url(
    kube: &Kube,
    settings: &Settings,
    role: Option<Role>,
    path: &str,
) -> Result<String> {
    let ns = settings.namespace.as_str();
    let lp = ListParams::default();
    let (services, pods) = tokio::join!(
        kube.list::<Service>(Some(ns), &lp),
        kube.list::<Pod>(Some(ns), &lp)
    );
    let (services, pods) = (services?, pods?);
    let targets: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| {
            let r = Snapshot::role_of(p, settings);
            match role {
                Some(want) => r == Some(want),
                None => matches!(r, Some(Role::Master | Role::Slave)),
            }
        })
        .collect();
    let best = services
        .items
        .iter()
        .filter_map(|s| {
            let selector = s
                .spec
                .as_ref()?
                .selector
                .as_ref()
                .filter(|m| !m.is_empty())?;
            let selects = |p: &Pod| {
                let labels = p.metadata.labels.as_ref();
                selector
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            };
            let matched = targets.iter().filter(|p| selects(p)).count();
            // Pods it selects that are not the targets (the master behind a Service of all
            // New-API pods when the slaves are asked for, or pods of something else).
            let others = pods
                .items
                .iter()
                .filter(|p| selects(p))
                .count()
                .saturating_sub(matched);
            (matched > 0).then_some(((others == 0, matched), s))
        })
        .max_by_key(|(rank, s)| (*rank, std::cmp::Reverse(s.metadata.name.clone())));
    let Some((_, svc)) = best else {
        let role_name = role.map_or("New-API", Role::as_str).to_string();
        return Err(BenchError::NoService {
            namespace: ns.to_string(),
            role: role_name,
            selector: match role {
                Some(r) => r.workload(settings).selector.to_string(),
                None => format!(
                    "{} or {}",
                    settings.workloads.master.selector, settings.workloads.slave.selector
                ),
            },
            available: services
                .items
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect(),
        }
        .into());
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| ports.first())
        .map_or(3000, |p| p.port);
    let name = svc.metadata.name.clone().unwrap_or_default();
    Ok(format!("http://{name}.{ns}.svc:{port}{path}"))
}

/// Whether the server runs Indexed Jobs: it keeps `completionMode` in its answer to a
/// dry-run create of the Indexed manifest.
pub async fn indexed_jobs_served(kube: &Kube, namespace: &str, indexed: &Value) -> Result<bool> {
    let api: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let job: Job = serde_json::from_value(indexed.clone())
        .map_err(|e| Error::Internal(format!("bench Job manifest: {e}")))?;
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answer = api
        .create(&pp, &job)
        .await
        .map_err(|e| kube.error(&Call::new("create", "jobs.batch", Some(namespace)), e))?;
    Ok(answer
        .spec
        .and_then(|s| s.completion_mode)
        .is_some_and(|m| m == "Indexed"))
}

/// Creates the Jobs; returns their names.
pub async fn create(kube: &Kube, namespace: &str, jobs: &[Value]) -> Result<Vec<String>> {
    let api: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let mut names = Vec::new();
    for j in jobs {
        let job: Job = serde_json::from_value(j.clone())
            .map_err(|e| Error::Internal(format!("bench Job manifest: {e}")))?;
        let created = api.create(&PostParams::default(), &job).await;
        match created {
            Ok(c) => names.push(c.metadata.name.unwrap_or_default()),
            Err(e) => {
                let err = kube.error(&Call::new("create", "jobs.batch", Some(namespace)), e);
                delete(kube, namespace, &names).await;
                return Err(err);
            }
        }
    }
    Ok(names)
}

/// Deletes the Jobs and their pods (best effort: a failure is logged, never hides the result).
pub async fn delete(kube: &Kube, namespace: &str, names: &[String]) {
    let api: Api<Job> = Api::namespaced(kube.client.clone(), namespace);
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    for n in names {
        if let Err(e) = api.delete(n, &dp).await {
            tracing::warn!("could not delete Job {n}: {e}");
        }
    }
}

/// The index of a worker pod: its Indexed Job annotation, else the `-N` of its Job's name.
fn pod_index(p: &Pod, run: &str) -> Option<u32> {
    if let Some(i) = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_ANNOTATION))
    {
        return i.parse().ok();
    }
    let job = p.metadata.labels.as_ref()?.get("job-name")?;
    job.strip_prefix(&format!("newapi-ops-bench-{run}-"))?
        .parse()
        .ok()
}

/// Why a pod will not run, when it is stuck for good (image, config, scheduling).
fn stuck(p: &Pod) -> Option<String> {
    let st = p.status.as_ref()?;
    for c in st.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if matches!(
                reason.as_str(),
                "ErrImagePull"
                    | "ImagePullBackOff"
                    | "InvalidImageName"
                    | "CreateContainerConfigError"
            ) {
                return Some(format!(
                    "{reason}: {}",
                    w.message.clone().unwrap_or_default()
                ));
            }
        }
    }
    None
}

fn describe(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let phase = st.phase.clone().unwrap_or_else(|| "Pending".into());
    if let Some(c) = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return format!(
            "{phase}, not scheduled: {}",
            c.message.clone().unwrap_or_default()
        );
    }
    phase
}

/// Waits for the workers' pods to finish (or `limit`, or `stop`), reads their results and
/// returns them with what each worker did. Jobs are not deleted here.
pub async fn collect(
    kube: &Kube,
    namespace: &str,
    spec: &JobSpec,
    limit: Duration,
    stop: &Stop,
    mut progress: impl FnMut(&str),
) -> Result<(Vec<WorkerResult>, Vec<WorkerReport>)> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("{RUN_LABEL}={}", spec.run));
    let call = Call::new("list", "pods", Some(namespace));
    let started = Instant::now();
    let mut pods: BTreeMap<u32, Pod>;
    loop {
        let list = api.list(&lp).await.map_err(|e| kube.error(&call, e))?;
        pods = BTreeMap::new();
        for p in list.items {
            if let Some(i) = pod_index(&p, &spec.run) {
                // The latest pod of an index (a Job may have replaced one).
                pods.insert(i, p);
            }
        }
        let finished = pods
            .values()
            .filter(|p| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .count();
        let stuck_now = pods.values().filter_map(stuck).next();
        progress(&format!(
            "{} of {} workers started, {finished} finished",
            pods.len(),
            spec.workers
        ));
        let all_done = finished == spec.workers as usize;
        if all_done || stuck_now.is_some() || started.elapsed() >= limit || stop.is_stopped() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = stop.wait() => {}
        }
    }
    let mut results = Vec::new();
    let mut reports = Vec::new();
    for index in 0..spec.workers {
        let Some(p) = pods.get(&index) else {
            reports.push(WorkerReport {
                index,
                pod: None,
                phase: "not created".into(),
                problem: Some("the Job controller created no pod for it".into()),
                responses: 0,
            });
            continue;
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        let phase = describe(p);
        let done = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let mut report = WorkerReport {
            index,
            pod: Some(name.clone()),
            phase: phase.clone(),
            problem: None,
            responses: 0,
        };
        if !done {
            report.problem = Some(stuck(p).unwrap_or_else(|| {
                format!("still {phase} after {}", crate::units::duration(limit))
            }));
            reports.push(report);
            continue;
        }
        let params = LogParams {
            container: Some("bench".into()),
            tail_lines: Some(20),
            ..LogParams::default()
        };
        match api.logs(&name, &params).await {
            Ok(text) => match WorkerResult::find(&text, &format!("worker {index} (pod {name})")) {
                Ok(r) => {
                    report.responses = r.statuses.values().sum();
                    results.push(r);
                }
                Err(e) => report.problem = Some(e.to_string()),
            },
            Err(e) => {
                report.problem = Some(
                    kube.error(&Call::new("get", "pods/log", Some(namespace)), e)
                        .to_string(),
                );
            }
        }
        reports.push(report);
    }
    Ok((results, reports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            namespace: "new-api".into(),
            run: "abc123".into(),
            workers: 3,
            image: "newapi-ops:0.1.0".into(),
            worker_args: vec![
                "bench".into(),
                "worker".into(),
                "--url".into(),
                "http://new-api.new-api.svc:3000/api/status".into(),
            ],
            cpu: "500m".into(),
            deadline: Duration::from_secs(150),
        }
    }

    #[test]
    fn an_indexed_job_takes_the_index_from_its_annotation() {
        let jobs = job_manifests(&spec(), JobMode::Indexed);
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!(j["metadata"]["name"], "newapi-ops-bench-abc123");
        assert_eq!(j["spec"]["completionMode"], "Indexed");
        assert_eq!(j["spec"]["completions"], 3);
        assert_eq!(j["spec"]["parallelism"], 3);
        assert_eq!(j["spec"]["backoffLimit"], 0);
        let c = &j["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["env"][0]["name"], INDEX_ENV);
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        assert!(!c["args"].as_array().unwrap().iter().any(|a| a == "--index"));
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"][RUN_LABEL],
            "abc123"
        );
        // It is a valid Job for the typed client.
        let _: Job = serde_json::from_value(j.clone()).unwrap();
    }

    #[test]
    fn without_indexed_jobs_each_worker_is_a_job_with_its_index() {
        let jobs = job_manifests(&spec(), JobMode::JobPerWorker);
        assert_eq!(jobs.len(), 3);
        for (i, j) in jobs.iter().enumerate() {
            assert_eq!(
                j["metadata"]["name"],
                format!("newapi-ops-bench-abc123-{i}")
            );
            assert!(j["spec"].get("completionMode").is_none());
            assert_eq!(j["spec"]["completions"], 1);
            let args: Vec<&str> = j["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(&args[args.len() - 2..], ["--index", &i.to_string()]);
            let _: Job = serde_json::from_value(j.clone()).unwrap();
        }
    }

    #[test]
    fn a_pods_index_comes_from_the_annotation_or_the_job_name() {
        let p: Pod = serde_json::from_value(json!({"metadata": {
            "name": "x", "annotations": {INDEX_ANNOTATION: "2"}}}))
        .unwrap();
        assert_eq!(pod_index(&p, "abc123"), Some(2));
        let p: Pod = serde_json::from_value(json!({"metadata": {
            "name": "x", "labels": {"job-name": "newapi-ops-bench-abc123-7"}}}))
        .unwrap();
        assert_eq!(pod_index(&p, "abc123"), Some(7));
        assert_eq!(pod_index(&p, "other"), None);
    }
}
