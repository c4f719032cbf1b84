//! The nodes check group: node capacity from the nodes and the active pods listed once, and
//! usage from metrics.k8s.io when the cluster serves it (metrics-server).

use std::collections::HashMap;

use serde::Deserialize;

use super::{ClusterData, Ctx};
use crate::capacity::{Amount, NodeCapacity, PodResources, pod_resources};
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
    let mut on_node: HashMap<&str, Vec<PodResources>> = HashMap::new();
    for (node, resources) in d.active_pods() {
        on_node.entry(node).or_default().push(resources);
    }
    let caps: Vec<NodeCapacity> = d
        .nodes
        .iter()
        .map(|n| {
            let pods = n
                .metadata
                .name
                .as_deref()
                .and_then(|name| on_node.get(name))
                .map_or(&[][..], Vec::as_slice);
            NodeCapacity::of_resources(n, pods.iter().copied())
        })
        .collect();
    let (usage, pod_usage) = match &ctx.kube {
        Some(kube) => {
            tokio::join!(
                node_metrics(kube),
                pod_metrics(kube, &ctx.settings.namespace, d)
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

/// A metrics.k8s.io list, read into only the fields used (a list of 10,000 pods is not held as
/// a JSON tree).
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct MetricsList<T> {
    #[serde(default)]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    cpu: Option<String>,
    #[serde(default)]
    memory: Option<String>,
}

impl Usage {
    fn amount(&self) -> Option<Amount> {
        Some(Amount {
            cpu_millis: parse_cpu_millis(self.cpu.as_deref()?).ok()?,
            memory_bytes: parse_value(self.memory.as_deref()?).ok()?,
        })
    }
}

#[derive(Deserialize)]
struct PodMetrics {
    metadata: Meta,
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    usage: Usage,
}

#[derive(Deserialize)]
struct NodeMetrics {
    metadata: Meta,
    usage: Usage,
}

/// Usage of the namespace's pods from metrics.k8s.io with their limits (from `pods`), or None
/// when it is not served.
async fn pod_metrics(
    kube: &Kube,
    namespace: &str,
    d: &ClusterData,
) -> Option<Vec<node_check::PodUsage>> {
    let list: MetricsList<PodMetrics> =
        metrics_list(kube, &format!("namespaces/{namespace}/pods")).await?;
    let limits: HashMap<&str, Amount> = d
        .pods
        .others
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|p| {
            let limits = p.spec.as_ref().map(|s| pod_resources(s).limits)?;
            Some((p.metadata.name.as_deref()?, limits))
        })
        .chain(
            d.pods
                .healthy_slaves
                .iter()
                .map(|h| (h.name.as_str(), h.resources.limits)),
        )
        .collect();
    Some(
        list.items
            .into_iter()
            .filter_map(|i| {
                let limits = *limits.get(i.metadata.name.as_str())?;
                let mut usage = Amount::default();
                for c in &i.containers {
                    let a = c.usage.amount()?;
                    usage.cpu_millis += a.cpu_millis;
                    usage.memory_bytes += a.memory_bytes;
                }
                Some(node_check::PodUsage {
                    name: i.metadata.name,
                    usage,
                    limits,
                })
            })
            .collect(),
    )
}

/// `GET /apis/metrics.k8s.io/v1beta1/{what}`, or None when it is not served (or fails).
async fn metrics_list<T: serde::de::DeserializeOwned>(kube: &Kube, what: &str) -> Option<T> {
    let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/{what}"))
        .body(Vec::new())
        .ok()?;
    kube.client.request(req).await.ok()
}

/// Node usage from metrics.k8s.io, or None when it is not served.
async fn node_metrics(kube: &Kube) -> Option<Vec<node_check::NodeUsage>> {
    let list: MetricsList<NodeMetrics> = metrics_list(kube, "nodes").await?;
    Some(
        list.items
            .into_iter()
            .filter_map(|i| {
                Some(node_check::NodeUsage {
                    usage: i.usage.amount()?,
                    name: i.metadata.name,
                })
            })
            .collect(),
    )
}
