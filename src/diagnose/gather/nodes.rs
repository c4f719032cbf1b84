//! The nodes check group: node capacity from the nodes and the active pods listed once, and
//! usage from metrics.k8s.io when the cluster serves it (metrics-server).

use k8s_openapi::api::core::v1::Pod;

use super::Ctx;
use crate::capacity::{Amount, NodeCapacity, pod_is_active, pod_resources};
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::nodes as node_check;
use crate::k8s::Kube;
use crate::quantity::{parse_cpu_millis, parse_value};

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
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
    let mut out =
        node_check::check_nodes(&caps, ctx.slave_template(d).as_ref(), usage.as_deref(), &th);
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
                let mut usage = Amount::default();
                for c in i.get("containers")?.as_array()? {
                    let u = c.get("usage")?;
                    usage.cpu_millis += parse_cpu_millis(u.get("cpu")?.as_str()?).ok()?;
                    usage.memory_bytes += parse_value(u.get("memory")?.as_str()?).ok()?;
                }
                let limits = pod
                    .spec
                    .as_ref()
                    .map(|s| pod_resources(s).limits)
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
                    usage: Amount {
                        cpu_millis: parse_cpu_millis(usage.get("cpu")?.as_str()?).ok()?,
                        memory_bytes: parse_value(usage.get("memory")?.as_str()?).ok()?,
                    },
                })
            })
            .collect(),
    )
}
