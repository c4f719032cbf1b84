//! Scheduled backups in the cluster: a ServiceAccount, a Role allowing only what the job reads
//! (the master Deployment, and the ConfigMaps/Secrets its environment names, by name) and the one
//! ConfigMap it writes (its status), a RoleBinding, a PVC for the backups (or an existing one),
//! and a CronJob — batch/v1 where the server serves it, batch/v1beta1 otherwise ([`api`]) — whose
//! pod runs, in order and without a shell in the image, `newapi-ops backup`, `backup verify
//! latest`, `backup prune` (the retention) as init containers, then `backup status --publish`,
//! which writes the volume's listing into the ConfigMap [`STATUS_CONFIGMAP`] for `backup status`
//! and `diagnose` to read ([`status`]). The job reaches MySQL by its Service name with the pod's
//! service-account token; the password is read at run time from the Secret/ConfigMap New-API
//! itself uses, and is never copied into any of these objects.
//!
//! `backup schedule --run-now` makes a Job of the CronJob's template as `kubectl create job
//! --from=cronjob/…` does and follows it ([`run`]).

pub mod api;
pub mod cron;
pub mod run;
pub mod status;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

pub use api::CronJobApi;

use crate::error::{Error, Result};
use crate::k8s::{Call, Kube};

/// Name of every object (and label value) the schedule creates.
pub const NAME: &str = "newapi-ops-backup";
/// Where the backups volume is mounted in the job's pod.
pub const MOUNT: &str = "/backups";
/// The ConfigMap the job writes the volume's listing into (key [`status::KEY`]).
pub const STATUS_CONFIGMAP: &str = "newapi-ops-backup-status";
/// The labels of the job's objects, as a selector (the Jobs of the CronJob and of `--run-now`).
pub const SELECTOR: &str =
    "app.kubernetes.io/component=backup,app.kubernetes.io/managed-by=newapi-ops";

/// What the schedule is made of.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub namespace: String,
    /// Cron expression, e.g. `0 3 * * *`.
    pub cron: String,
    pub keep_last: usize,
    pub keep_daily: usize,
    pub image: String,
    /// An existing PVC to use; otherwise one named [`NAME`] is created with `size`.
    pub existing_pvc: Option<String>,
    pub size: String,
    pub storage_class: Option<String>,
    /// The master workload (whose environment gives SQL_DSN).
    pub master: String,
    /// ConfigMaps and Secrets the master's environment names (the Role may `get` only these).
    pub configmaps: Vec<String>,
    pub secrets: Vec<String>,
    pub threads: usize,
    pub encrypt_to: Vec<String>,
    /// Extra `newapi-ops` flags (workload names differing from the defaults).
    pub extra_args: Vec<String>,
}

fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": "newapi-ops",
        "app.kubernetes.io/component": "backup",
        "app.kubernetes.io/managed-by": "newapi-ops"
    })
}

fn meta(spec: &ScheduleSpec, name: &str) -> Value {
    json!({"name": name, "namespace": spec.namespace, "labels": labels()})
}

/// The objects, in the order they are applied.
pub fn objects(spec: &ScheduleSpec) -> Vec<Value> {
    let mut rules = vec![json!({
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": [spec.master],
        "verbs": ["get"]
    })];
    if !spec.configmaps.is_empty() {
        rules.push(json!({
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": spec.configmaps,
            "verbs": ["get"]
        }));
    }
    rules.push(json!({
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": [STATUS_CONFIGMAP],
        "verbs": ["get", "patch"]
    }));
    if !spec.secrets.is_empty() {
        rules.push(json!({
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": spec.secrets,
            "verbs": ["get"]
        }));
    }
    let pvc_name = spec
        .existing_pvc
        .clone()
        .unwrap_or_else(|| NAME.to_string());
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(spec, NAME)
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(spec, NAME),
            "rules": rules
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(spec, NAME),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": spec.namespace}]
        }),
    ];
    if spec.existing_pvc.is_none() {
        let mut pvc_spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": spec.size}}
        });
        if let Some(sc) = &spec.storage_class {
            pvc_spec["storageClassName"] = json!(sc);
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(spec, NAME),
            "spec": pvc_spec
        }));
    }
    out.push(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(spec, STATUS_CONFIGMAP)
    }));
    let mut backup_args = vec![
        "backup".to_string(),
        "--dir".into(),
        MOUNT.into(),
        "--namespace".into(),
        spec.namespace.clone(),
        "--master".into(),
        spec.master.clone(),
        "--threads".into(),
        spec.threads.to_string(),
        "--output".into(),
        "json".into(),
    ];
    for r in &spec.encrypt_to {
        backup_args.extend(["--encrypt-to".to_string(), r.clone()]);
    }
    backup_args.extend(spec.extra_args.iter().cloned());
    let prune_args = vec![
        "backup".to_string(),
        "prune".into(),
        "--dir".into(),
        MOUNT.into(),
        "--keep-last".into(),
        spec.keep_last.to_string(),
        "--keep-daily".into(),
        spec.keep_daily.to_string(),
        "--output".into(),
        "json".into(),
    ];
    let verify_args = vec![
        "backup".to_string(),
        "verify".into(),
        "latest".into(),
        "--dir".into(),
        MOUNT.into(),
        "--output".into(),
        "json".into(),
    ];
    let publish_args = vec![
        "backup".to_string(),
        "status".into(),
        "--publish".into(),
        "--dir".into(),
        MOUNT.into(),
        "--namespace".into(),
        spec.namespace.clone(),
        "--output".into(),
        "json".into(),
    ];
    let security = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}
    });
    let resources = json!({
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"}
    });
    let container = |name: &str, args: Vec<String>| {
        json!({
            "name": name,
            "image": spec.image,
            "args": args,
            "volumeMounts": [{"name": "backups", "mountPath": MOUNT}],
            "securityContext": security,
            "resources": resources
        })
    };
    out.push(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta(spec, NAME),
        "spec": {
            "schedule": spec.cron,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels()},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 21600,
                    "template": {
                        "metadata": {"labels": labels()},
                        "spec": {
                            "serviceAccountName": NAME,
                            "restartPolicy": "Never",
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65532,
                                "runAsGroup": 65532,
                                "fsGroup": 65532
                            },
                            "initContainers": [
                                container("backup", backup_args),
                                container("verify", verify_args),
                                container("prune", prune_args)
                            ],
                            "containers": [container("status", publish_args)],
                            "volumes": [{
                                "name": "backups",
                                "persistentVolumeClaim": {"claimName": pvc_name}
                            }]
                        }
                    }
                }
            }
        }
    }));
    out
}

/// The objects as one YAML stream (`---` between documents).
pub fn to_yaml(objects: &[Value]) -> std::result::Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).map_err(|e| e.to_string())?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The objects as a `v1 List`, for `-o json`.
pub fn to_list(objects: &[Value]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": objects})
}

/// A crontab line for a host outside the cluster.
pub fn crontab_line(cron: &str, dir: &str, keep_last: usize, keep_daily: usize) -> String {
    format!(
        "{cron} newapi-ops backup --dir {dir} -q -o json >> {dir}/backup.log 2>&1 && newapi-ops backup prune --dir {dir} --keep-last {keep_last} --keep-daily {keep_daily} -q >> {dir}/backup.log 2>&1"
    )
}

/// The objects with the CronJob at `api_version` (what discovery chose for this cluster).
pub fn at_version(mut objects: Vec<Value>, api_version: &str) -> Vec<Value> {
    for o in &mut objects {
        if o["kind"] == "CronJob" {
            o["apiVersion"] = json!(api_version);
        }
    }
    objects
}

/// Creates or updates every object (server-side apply, field manager `newapi-ops`; the status
/// ConfigMap's data belongs to the job, which writes it with a manager of its own, so applying
/// again never clears it); returns `Kind/name` of each.
pub async fn apply(kube: &Kube, namespace: &str, objects: &[Value]) -> Result<Vec<String>> {
    use crate::audit::discovery::{resource, resource_name};
    let pp = PatchParams::apply("newapi-ops").force();
    let mut done = Vec::new();
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let av = o["apiVersion"].as_str().unwrap_or_default();
        if kind.is_empty() || name.is_empty() || av.is_empty() {
            return Err(Error::Internal(format!(
                "schedule: an object without kind, name or apiVersion: {o}"
            )));
        }
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(kube.client.clone(), namespace, &resource(av, kind));
        api.patch(name, &pp, &Patch::Apply(o)).await.map_err(|e| {
            kube.error(
                &Call::new("patch", resource_name(av, kind), Some(namespace)),
                e,
            )
        })?;
        done.push(format!("{kind}/{name}"));
    }
    Ok(done)
}

/// Whether an existing PVC is there.
pub async fn require_pvc(kube: &Kube, namespace: &str, name: &str) -> Result<()> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(kube.client.clone(), namespace);
    let call = Call::new("get", "persistentvolumeclaims", Some(namespace));
    match api.get_opt(name).await.map_err(|e| kube.error(&call, e))? {
        Some(_) => Ok(()),
        None => {
            let available = api
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter_map(|p| p.metadata.name)
                        .collect()
                })
                .unwrap_or_default();
            Err(Error::WorkloadNotFound {
                kind: "PersistentVolumeClaim".into(),
                name: name.to_string(),
                namespace: namespace.to_string(),
                available,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScheduleSpec {
        ScheduleSpec {
            namespace: "new-api".into(),
            cron: "0 3 * * *".into(),
            keep_last: 14,
            keep_daily: 7,
            image: "newapi-ops:0.1.0".into(),
            existing_pvc: None,
            size: "20Gi".into(),
            storage_class: None,
            master: "new-api-master".into(),
            configmaps: vec!["new-api-config".into()],
            secrets: vec![],
            threads: 4,
            encrypt_to: vec![],
            extra_args: vec![],
        }
    }

    #[test]
    fn objects_parse_as_their_kubernetes_types() {
        use k8s_openapi::api::batch::v1::CronJob;
        use k8s_openapi::api::rbac::v1::Role;
        let objs = objects(&spec());
        let kinds: Vec<&str> = objs.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "PersistentVolumeClaim",
                "ConfigMap",
                "CronJob"
            ]
        );
        let cj: CronJob = serde_json::from_value(objs[5].clone()).unwrap();
        let s = cj.spec;
        assert_eq!(s.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(s.starting_deadline_seconds, Some(3600));
        let pod = s.job_template.spec.unwrap().template.spec.unwrap();
        // backup, verify, prune (the retention, with its flags) in order; then the status.
        let inits: Vec<_> = pod.init_containers.unwrap_or_default();
        let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["backup", "verify", "prune"]);
        let prune = inits[2].args.clone().unwrap_or_default().join(" ");
        assert!(prune.contains("--keep-last 14 --keep-daily 7"), "{prune}");
        let status = pod.containers[0].args.clone().unwrap_or_default().join(" ");
        assert!(status.starts_with("backup status --publish"), "{status}");
        let role: Role = serde_json::from_value(objs[1].clone()).unwrap();
        let rules = role.rules.unwrap_or_default();
        assert!(rules.iter().all(|r| r.resource_names.is_some()));
        // Reads only, but for the status ConfigMap, which it may patch.
        for r in &rules {
            let names = r.resource_names.clone().unwrap_or_default();
            if names == [STATUS_CONFIGMAP] {
                assert_eq!(r.verbs, ["get", "patch"]);
            } else {
                assert_eq!(r.verbs, ["get"]);
            }
        }
        let yaml = to_yaml(&objs).unwrap();
        assert_eq!(yaml.matches("---\n").count(), 6);
        let at = at_version(objs, "batch/v1beta1");
        assert_eq!(at[5]["apiVersion"], "batch/v1beta1");
        assert_eq!(at[4]["apiVersion"], "v1");
        let mut with_pvc = spec();
        with_pvc.existing_pvc = Some("mine".into());
        let objs = objects(&with_pvc);
        assert_eq!(objs.len(), 5);
        assert!(objs[4].to_string().contains("\"claimName\":\"mine\""));
    }
}
