//! The seed deployment as manifests (`fixtures/sandbox/*.yaml`, compiled into the binary so
//! `sandbox up` works from anywhere), applied with server-side apply through kube's dynamic API,
//! and the wait for its rollout.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, pinned_kind};
use kube::{Client, ResourceExt};

use super::SandboxError;

/// The field manager of everything `sandbox` writes.
pub const FIELD_MANAGER: &str = "newapi-ops-sandbox";

/// The namespace of the seed deployment.
pub const NAMESPACE: &str = "new-api";

/// The Secret of the seed deployment and the key holding the MySQL root password.
pub const SECRET_NAME: &str = "new-api-secret";
pub const MYSQL_PASSWORD_KEY: &str = "MYSQL_ROOT_PASSWORD";

/// How long `up` waits for every Deployment to have its replicas available.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);

/// The manifests, in the order they are applied (Namespaces are moved first in any case).
pub const MANIFESTS: &[(&str, &str)] = &[
    (
        "fixtures/sandbox/00-namespace.yaml",
        include_str!("../../../fixtures/sandbox/00-namespace.yaml"),
    ),
    (
        "fixtures/sandbox/10-config.yaml",
        include_str!("../../../fixtures/sandbox/10-config.yaml"),
    ),
    (
        "fixtures/sandbox/20-mysql.yaml",
        include_str!("../../../fixtures/sandbox/20-mysql.yaml"),
    ),
    (
        "fixtures/sandbox/30-redis.yaml",
        include_str!("../../../fixtures/sandbox/30-redis.yaml"),
    ),
    (
        "fixtures/sandbox/40-new-api.yaml",
        include_str!("../../../fixtures/sandbox/40-new-api.yaml"),
    ),
    (
        "fixtures/sandbox/50-rbac.yaml",
        include_str!("../../../fixtures/sandbox/50-rbac.yaml"),
    ),
];

/// One object of a manifest.
#[derive(Debug, Clone)]
pub struct ManifestObject {
    pub file: String,
    pub gvk: GroupVersionKind,
    pub object: DynamicObject,
}

impl ManifestObject {
    pub fn name(&self) -> String {
        self.object.name_any()
    }
    pub fn namespace(&self) -> Option<String> {
        self.object.namespace()
    }
}

/// Parses the compiled-in manifests; Namespaces first, the rest in file order.
pub fn seed() -> Result<Vec<ManifestObject>, SandboxError> {
    let mut all = Vec::new();
    for (file, text) in MANIFESTS {
        all.extend(parse(file, text)?);
    }
    all.sort_by_key(|o| o.gvk.kind != "Namespace");
    Ok(all)
}

/// Parses one multi-document YAML file into objects (empty documents are skipped).
pub fn parse(file: &str, text: &str) -> Result<Vec<ManifestObject>, SandboxError> {
    let bad = |detail: String| SandboxError::Manifest {
        file: file.to_string(),
        detail,
    };
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_json::from_value(doc).map_err(|e| bad(format!("document {}: {e}", i + 1)))?;
        let types = object
            .types
            .clone()
            .ok_or_else(|| bad(format!("document {} has no apiVersion/kind", i + 1)))?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| bad(format!("document {}: {e}", i + 1)))?;
        if object.metadata.name.is_none() {
            return Err(bad(format!(
                "document {} ({}) has no metadata.name",
                i + 1,
                gvk.kind
            )));
        }
        out.push(ManifestObject {
            file: file.to_string(),
            gvk,
            object,
        });
    }
    Ok(out)
}

/// A value of the seed Secret's `stringData` (e.g. the MySQL root password).
pub fn secret_value(
    objects: &[ManifestObject],
    secret: &str,
    key: &str,
) -> Result<String, SandboxError> {
    objects
        .iter()
        .find(|o| o.gvk.kind == "Secret" && o.name() == secret)
        .and_then(|o| {
            o.object
                .data
                .get("stringData")?
                .get(key)?
                .as_str()
                .map(String::from)
        })
        .ok_or_else(|| SandboxError::Manifest {
            file: "fixtures/sandbox/*.yaml".into(),
            detail: format!("the Secret {secret} has no stringData.{key}"),
        })
}

/// The image of the first container of a Deployment in the manifests.
pub fn deployment_image(
    objects: &[ManifestObject],
    deployment: &str,
) -> Result<String, SandboxError> {
    objects
        .iter()
        .find(|o| o.gvk.kind == "Deployment" && o.name() == deployment)
        .and_then(|o| {
            o.object
                .data
                .pointer("/spec/template/spec/containers/0/image")?
                .as_str()
                .map(String::from)
        })
        .ok_or_else(|| SandboxError::Manifest {
            file: "fixtures/sandbox/*.yaml".into(),
            detail: format!("no Deployment {deployment} with a container image"),
        })
}

/// Applies every object with server-side apply (forcing conflicts: the sandbox owns these).
/// Returns `kind/name` of each object applied.
pub async fn apply_all(
    client: &Client,
    server: &str,
    objects: &[ManifestObject],
) -> Result<Vec<String>, SandboxError> {
    let mut kinds: HashMap<String, (ApiResource, ApiCapabilities)> = HashMap::new();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    for o in objects {
        let key = format!("{}/{}/{}", o.gvk.group, o.gvk.version, o.gvk.kind);
        if !kinds.contains_key(&key) {
            let found = pinned_kind(client, &o.gvk)
                .await
                .map_err(|e| SandboxError::Api {
                    server: server.to_string(),
                    what: format!("to look up the kind {key}"),
                    detail: e.to_string(),
                })?;
            kinds.insert(key.clone(), found);
        }
        let (resource, caps) = &kinds[&key];
        let name = o.name();
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            let ns = o.namespace().unwrap_or_else(|| "default".into());
            Api::namespaced_with(client.clone(), &ns, resource)
        } else {
            Api::all_with(client.clone(), resource)
        };
        api.patch(&name, &params, &Patch::Apply(&o.object))
            .await
            .map_err(|e| SandboxError::Apply {
                file: o.file.clone(),
                kind: o.gvk.kind.clone(),
                namespace: o.namespace().map(|n| format!("{n}/")).unwrap_or_default(),
                name: name.clone(),
                detail: e.to_string(),
            })?;
        applied.push(format!("{}/{name}", o.gvk.kind));
    }
    Ok(applied)
}

/// Waits until every PersistentVolumeClaim among `objects` is Bound.
pub async fn wait_claims_bound(
    client: &Client,
    server: &str,
    objects: &[ManifestObject],
    timeout: Duration,
) -> Result<(), SandboxError> {
    let begin = Instant::now();
    for claim in objects
        .iter()
        .filter(|o| o.gvk.kind == "PersistentVolumeClaim")
    {
        let ns = claim.namespace().unwrap_or_else(|| "default".into());
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        loop {
            let phase = api
                .get(&claim.name())
                .await
                .map_err(|e| SandboxError::Api {
                    server: server.to_string(),
                    what: format!("to read PersistentVolumeClaim {ns}/{}", claim.name()),
                    detail: e.to_string(),
                })?
                .status
                .and_then(|s| s.phase)
                .unwrap_or_default();
            if phase == "Bound" {
                break;
            }
            if begin.elapsed() >= timeout {
                return Err(SandboxError::Api {
                    server: server.to_string(),
                    what: format!("to bind PersistentVolumeClaim {ns}/{}", claim.name()),
                    detail: format!(
                        "still {phase:?} after {}s (the PersistentVolume binder runs in \
                         kube-controller-manager: see logs/kube-controller-manager.log)",
                        timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Rollout of one Deployment, as `kubectl rollout status` judges it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentRollout {
    pub name: String,
    pub desired: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// Pods of every ReplicaSet of the Deployment (old ones included, during a rollout).
    pub total: i32,
    pub complete: bool,
}

impl DeploymentRollout {
    /// `3/3 available, 3 updated, 4 in total`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}/{} available, {} updated",
            self.available, self.desired, self.updated
        );
        if self.total > self.desired {
            s.push_str(&format!(
                ", {} old still running",
                self.total - self.updated
            ));
        }
        s
    }
}

/// The rollout state of every Deployment in `namespace`.
pub async fn rollouts(
    client: &Client,
    namespace: &str,
) -> Result<Vec<DeploymentRollout>, kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .map(|d| {
            let desired = d.spec.replicas.unwrap_or(1);
            let st = d.status.clone().unwrap_or_default();
            let generation = d.metadata.generation.unwrap_or(0);
            let observed = st.observed_generation.unwrap_or(0);
            let updated = st.updated_replicas.unwrap_or(0);
            let ready = st.ready_replicas.unwrap_or(0);
            let available = st.available_replicas.unwrap_or(0);
            let total = st.replicas.unwrap_or(0);
            DeploymentRollout {
                name: d.name_any(),
                desired,
                updated,
                ready,
                available,
                total,
                complete: observed >= generation
                    && updated >= desired
                    && available >= desired
                    && total <= desired,
            }
        })
        .collect())
}

/// Waits until every Deployment of the seed has its replicas updated and available. On timeout
/// the error lists the incomplete Deployments and why their pods are not ready.
pub async fn wait_rollout(
    client: &Client,
    namespace: &str,
    expected: &[String],
    timeout: Duration,
    kubelet_log: &Path,
) -> Result<(), SandboxError> {
    let begin = Instant::now();
    loop {
        let pending: Vec<String> = match rollouts(client, namespace).await {
            Ok(list) => {
                let mut pending: Vec<String> = expected
                    .iter()
                    .filter(|e| !list.iter().any(|d| &d.name == *e))
                    .map(|e| format!("{e}: not created"))
                    .collect();
                pending.extend(
                    list.iter()
                        .filter(|d| !d.complete)
                        .map(|d| format!("{}: {}", d.name, d.summary())),
                );
                pending
            }
            Err(e) => vec![format!("listing Deployments: {e}")],
        };
        if pending.is_empty() {
            return Ok(());
        }
        if begin.elapsed() >= timeout {
            let mut pending = pending;
            pending.extend(unready_pods(client, namespace).await);
            return Err(SandboxError::Rollout {
                waited: timeout,
                pending,
                kubelet_log: kubelet_log.to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line per pod that is not ready: phase, node, and the reason the scheduler or kubelet gave.
pub async fn unready_pods(client: &Client, namespace: &str) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(pods) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    pods.items
        .iter()
        .filter_map(|p| {
            let st = p.status.as_ref()?;
            let conditions = st.conditions.clone().unwrap_or_default();
            let ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return None;
            }
            let why = conditions
                .iter()
                .filter(|c| c.status != "True")
                .filter_map(|c| c.message.clone().or_else(|| c.reason.clone()))
                .chain(
                    st.container_statuses
                        .iter()
                        .flatten()
                        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()),
                )
                .collect::<Vec<_>>()
                .join(", ");
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "no node".into());
            Some(format!(
                "pod {} {} on {node}{}",
                p.name_any(),
                st.phase.clone().unwrap_or_else(|| "Unknown".into()),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_parses_with_namespace_first() {
        let objects = seed().unwrap();
        assert_eq!(objects[0].gvk.kind, "Namespace");
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o.gvk.kind, o.name()))
            .collect();
        for want in [
            "ConfigMap/new-api-config",
            "Secret/new-api-secret",
            "PersistentVolume/mysql-pv",
            "PersistentVolumeClaim/mysql-pvc",
            "Deployment/mysql",
            "Deployment/redis",
            "Deployment/new-api-master",
            "Deployment/new-api-slave",
            "Service/new-api",
            "Service/mysql",
            "Service/redis",
            "RoleBinding/reader-view",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing {want} in {names:?}"
            );
        }
    }

    #[test]
    fn seed_has_the_seeds_values() {
        let objects = seed().unwrap();
        assert_eq!(
            secret_value(&objects, SECRET_NAME, MYSQL_PASSWORD_KEY).unwrap(),
            "123456"
        );
        assert_eq!(
            deployment_image(&objects, "new-api-slave").unwrap(),
            "calciumion/new-api:latest"
        );
        let cm = objects.iter().find(|o| o.gvk.kind == "ConfigMap").unwrap();
        assert_eq!(
            cm.object.data["data"]["SQL_DSN"],
            "root:123456@tcp(mysql:3306)/new-api"
        );
        assert_eq!(
            cm.object.data["data"]["REDIS_CONN_STRING"],
            "redis://redis:6379"
        );
        // requests and limits per Deployment: (name, replicas, req cpu, req mem, lim cpu, lim mem)
        for (name, replicas, rc, rm, lc, lm) in [
            ("new-api-master", 1, "1000m", "1Gi", "3000m", "4Gi"),
            ("new-api-slave", 3, "1000m", "1Gi", "2000m", "2Gi"),
            ("mysql", 1, "2000m", "4Gi", "4000m", "8Gi"),
            ("redis", 1, "1000m", "2Gi", "2000m", "4Gi"),
        ] {
            let d = objects
                .iter()
                .find(|o| o.gvk.kind == "Deployment" && o.name() == name)
                .unwrap();
            let spec = &d.object.data["spec"];
            assert_eq!(spec["replicas"], replicas, "{name}");
            let res = &spec["template"]["spec"]["containers"][0]["resources"];
            assert_eq!(res["requests"]["cpu"], rc, "{name}");
            assert_eq!(res["requests"]["memory"], rm, "{name}");
            assert_eq!(res["limits"]["cpu"], lc, "{name}");
            assert_eq!(res["limits"]["memory"], lm, "{name}");
        }
        // Server-side apply in 1.20 rejects ports without a protocol (it is their list key).
        for o in &objects {
            let mut ports = Vec::new();
            if let Some(p) = o
                .object
                .data
                .pointer("/spec/ports")
                .and_then(|p| p.as_array())
            {
                ports.extend(p.iter());
            }
            if let Some(cs) = o
                .object
                .data
                .pointer("/spec/template/spec/containers")
                .and_then(|c| c.as_array())
            {
                for c in cs {
                    ports.extend(c["ports"].as_array().into_iter().flatten());
                }
            }
            for p in ports {
                assert_eq!(p["protocol"], "TCP", "{} {}: {p}", o.gvk.kind, o.name());
            }
        }
        let svc = objects
            .iter()
            .find(|o| o.gvk.kind == "Service" && o.name() == "new-api")
            .unwrap();
        assert_eq!(svc.object.data["spec"]["ports"][0]["nodePort"], 30000);
    }
}
