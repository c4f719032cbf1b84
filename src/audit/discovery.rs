//! Which API versions this server serves, asked of the server itself (never guessed from its
//! version number): one `GET /apis` for the groups and their versions, plus the resource list of
//! a group version where the group alone does not say it (batch/v1 has Jobs from 1.2 but
//! CronJobs only from 1.21).

use std::collections::BTreeMap;

use kube::discovery::ApiResource;
use serde::Serialize;

use crate::error::Result;
use crate::k8s::{Call, Kube};

/// The version chosen for each kind the audit reads or writes; None when none is served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiVersions {
    /// `v1.20.2`.
    pub server_version: Option<String>,
    /// autoscaling/v2, else v2beta2, else v1 (CPU only).
    pub hpa: Option<String>,
    /// policy/v1, else v1beta1.
    pub pdb: Option<String>,
    /// batch/v1, else v1beta1.
    pub cronjob: Option<String>,
    /// networking.k8s.io/v1 (1.19+), else v1beta1 (else extensions/v1beta1).
    pub ingress: Option<String>,
    /// monitoring.coreos.com/v1 (the Prometheus Operator), when served.
    pub monitoring: Option<String>,
}

/// The group versions the server serves, by group (`""` is the core group).
pub type Served = BTreeMap<String, Vec<String>>;

/// Picks the first of `candidates` (`group/version`) that `served` lists.
pub fn pick(served: &Served, candidates: &[&str]) -> Option<String> {
    candidates.iter().find_map(|gv| {
        let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv));
        served
            .get(group)
            .is_some_and(|vs| vs.iter().any(|v| v == version))
            .then(|| (*gv).to_string())
    })
}

/// Asks the server. A server that refuses discovery is an error (nothing else would work).
pub async fn discover(kube: &Kube) -> Result<ApiVersions> {
    let call = Call::new("get", "/apis (API discovery)", None);
    let groups = kube
        .client
        .list_api_groups()
        .await
        .map_err(|e| kube.error(&call, e))?;
    let mut served: Served = BTreeMap::new();
    for g in groups.groups {
        served.insert(
            g.name.clone(),
            g.versions.into_iter().map(|v| v.version).collect(),
        );
    }
    // Which version serves CronJobs (batch/v1 from 1.21, batch/v1beta1 before) needs the
    // resource lists: the backup schedule's discovery, which also asks the server's version.
    let (server_version, cronjob) = crate::backup::schedule::api::discover(kube).await?;
    let cronjob = cronjob.map(|api| api.api_version);
    Ok(ApiVersions {
        server_version,
        hpa: pick(
            &served,
            &["autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v1"],
        ),
        pdb: pick(&served, &["policy/v1", "policy/v1beta1"]),
        cronjob,
        ingress: pick(
            &served,
            &[
                "networking.k8s.io/v1",
                "networking.k8s.io/v1beta1",
                "extensions/v1beta1",
            ],
        ),
        monitoring: pick(&served, &["monitoring.coreos.com/v1"]),
    })
}

/// The plural resource name of the kinds the audit reads or writes.
pub fn plural(kind: &str) -> String {
    match kind {
        "NetworkPolicy" => "networkpolicies".into(),
        "Ingress" => "ingresses".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

/// The [`ApiResource`] of `kind` at `api_version` (`group/version` or `v1`).
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    ApiResource::from_gvk_with_plural(&gvk, &plural(kind))
}

/// `horizontalpodautoscalers.autoscaling`, as RBAC names a resource.
pub fn resource_name(api_version: &str, kind: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{}.{group}", plural(kind)),
        None => plural(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(list: &[(&str, &[&str])]) -> Served {
        list.iter()
            .map(|(g, vs)| (g.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    #[test]
    fn the_newest_served_version_wins() {
        // Kubernetes 1.20.
        let s = served(&[
            ("autoscaling", &["v1", "v2beta1", "v2beta2"]),
            ("policy", &["v1beta1"]),
        ]);
        assert_eq!(
            pick(
                &s,
                &["autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v1"]
            )
            .as_deref(),
            Some("autoscaling/v2beta2")
        );
        assert_eq!(
            pick(&s, &["policy/v1", "policy/v1beta1"]).as_deref(),
            Some("policy/v1beta1")
        );
        // Kubernetes 1.25.
        let s = served(&[("autoscaling", &["v1", "v2"]), ("policy", &["v1"])]);
        assert_eq!(
            pick(&s, &["autoscaling/v2", "autoscaling/v2beta2"]).as_deref(),
            Some("autoscaling/v2")
        );
        assert_eq!(pick(&s, &["monitoring.coreos.com/v1"]), None);
    }

    #[test]
    fn plurals_and_rbac_names() {
        assert_eq!(
            resource_name("autoscaling/v2beta2", "HorizontalPodAutoscaler"),
            "horizontalpodautoscalers.autoscaling"
        );
        assert_eq!(
            resource_name("networking.k8s.io/v1", "NetworkPolicy"),
            "networkpolicies.networking.k8s.io"
        );
        assert_eq!(
            resource_name("v1", "PersistentVolumeClaim"),
            "persistentvolumeclaims"
        );
        assert_eq!(
            resource("policy/v1beta1", "PodDisruptionBudget").group,
            "policy"
        );
    }
}
