//! The `nodes` report: per node, requests and limits against allocatable, cluster totals as the
//! deployment notes' 资源总计 shows them, the New-API roles' share, and how many more slaves fit.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use serde::Serialize;

use super::{Amount, Fit, NodeCapacity, PodResources, pod_is_active, pod_resources};
use crate::config::Settings;
use crate::error::Result;
use crate::inventory::{Role, SlimPod, Snapshot};
use crate::k8s::Kube;
use crate::quantity::percent;

/// One node's line.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub capacity: NodeCapacity,
    pub cpu_requests_percent: Option<i64>,
    pub memory_requests_percent: Option<i64>,
    pub cpu_limits_percent: Option<i64>,
    pub memory_limits_percent: Option<i64>,
    /// How many more slaves fit here (None when the slave template is unknown).
    pub slaves_fit: Option<Fit>,
}

/// The New-API roles' share of the requests.
#[derive(Debug, Serialize)]
pub struct RoleShare {
    pub role: String,
    pub pods: usize,
    pub requests: Amount,
    pub limits: Amount,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub nodes: usize,
    pub allocatable: Amount,
    pub requested: Amount,
    pub limits: Amount,
    pub cpu_requests_percent: Option<i64>,
    pub memory_requests_percent: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct NodesReport {
    pub nodes: Vec<NodeRow>,
    pub totals: Totals,
    pub namespace: String,
    pub roles: Vec<RoleShare>,
    /// Requests of one slave pod, from the slave Deployment's template.
    pub slave_requests: Option<Amount>,
    pub slaves_fit: Option<i64>,
}

impl NodesReport {
    /// Lists nodes, active pods and the namespace's Deployments once each and builds the
    /// report; the note says why the slaves that fit are not computed, when they are not.
    pub async fn load(kube: &Kube, settings: &Settings) -> Result<(NodesReport, Option<String>)> {
        let ns = settings.namespace.clone();
        kube.ensure_namespace(&ns).await?;
        let all = ListParams::default();
        let active = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        // Concurrent, but errors are reported in this order, whichever failed first. The pods
        // of every namespace are reduced to what capacity reads as their pages arrive.
        // Each pod is decoded into the fields capacity reads and kept as a compact record
        // ([`Placed`]) as its page arrives.
        let mut pods = Vec::new();
        let (nodes, listed, deployments) = tokio::join!(
            kube.list_cluster::<Node>(&all),
            kube.list_each_as::<Pod, SlimPod>(None, &active, |p| {
                let p = p.into_pod();
                if pod_is_active(&p) {
                    pods.push(Placed::of(&p, settings));
                }
                Ok(())
            }),
            kube.list::<Deployment>(Some(&ns), &all),
        );
        let (nodes, _, deployments) = (nodes?, listed?, deployments?);
        let slave_name = &settings.workloads.slave.name;
        let slave_template = deployments
            .items
            .iter()
            .find(|d| d.metadata.name.as_ref() == Some(slave_name))
            .and_then(|d| d.spec.template.spec.clone());
        let mut note = None;
        if slave_template.is_none() {
            let snap = Snapshot {
                namespace: ns.clone(),
                pods: Vec::new(),
                deployments: deployments.items.clone(),
                statefulsets: Vec::new(),
            };
            note = Some(format!(
                "Deployment \"{slave_name}\" not found in namespace \"{ns}\" (Deployments there: {}); not computing how many more slaves fit",
                none_if_empty(&snap.controller_names())
            ));
        }
        let report = build_placed(&nodes.items, &pods, settings, slave_template.as_ref());
        Ok((report, note))
    }
}

fn none_if_empty(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// An active pod as the `nodes` report keeps it: its node, its role in the deployment (None
/// for a pod of another namespace or of no role) and its requests and limits.
#[derive(Debug, Clone)]
pub struct Placed {
    pub node: Option<String>,
    pub role: Option<Role>,
    pub resources: PodResources,
}

impl Placed {
    pub fn of(p: &Pod, settings: &Settings) -> Placed {
        let ours = p.metadata.namespace.as_deref() == Some(settings.namespace.as_str());
        Placed {
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            role: ours.then(|| Snapshot::role_of(p, settings)).flatten(),
            resources: p.spec.as_ref().map(pod_resources).unwrap_or_default(),
        }
    }
}

/// Builds the report from listed objects (pure, so it is tested without a cluster).
pub fn build(
    nodes: &[Node],
    pods: &[&Pod],
    settings: &Settings,
    slave_template: Option<&k8s_openapi::api::core::v1::PodSpec>,
) -> NodesReport {
    let placed: Vec<Placed> = pods
        .iter()
        .filter(|p| p.spec.is_some())
        .map(|p| Placed::of(p, settings))
        .collect();
    build_placed(nodes, &placed, settings, slave_template)
}

/// [`build`] from the compact records of the active pods.
pub fn build_placed(
    nodes: &[Node],
    pods: &[Placed],
    settings: &Settings,
    slave_template: Option<&k8s_openapi::api::core::v1::PodSpec>,
) -> NodesReport {
    let mut rows: Vec<NodeRow> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.as_deref();
            let on_node = pods
                .iter()
                .filter(|p| p.node.as_deref() == name)
                .map(|p| p.resources);
            let capacity = NodeCapacity::of_resources(n, on_node);
            let a = capacity.allocatable;
            NodeRow {
                cpu_requests_percent: percent(capacity.requested.cpu_millis, a.cpu_millis),
                memory_requests_percent: percent(capacity.requested.memory_bytes, a.memory_bytes),
                cpu_limits_percent: percent(capacity.limits.cpu_millis, a.cpu_millis),
                memory_limits_percent: percent(capacity.limits.memory_bytes, a.memory_bytes),
                slaves_fit: slave_template.map(|t| capacity.fit(t)),
                capacity,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.capacity.name.cmp(&b.capacity.name));
    let allocatable = Amount::sum(rows.iter().map(|r| &r.capacity.allocatable));
    let requested = Amount::sum(rows.iter().map(|r| &r.capacity.requested));
    let limits = Amount::sum(rows.iter().map(|r| &r.capacity.limits));
    let totals = Totals {
        nodes: rows.len(),
        allocatable,
        requested,
        limits,
        cpu_requests_percent: percent(requested.cpu_millis, allocatable.cpu_millis),
        memory_requests_percent: percent(requested.memory_bytes, allocatable.memory_bytes),
    };
    let mut roles = Vec::new();
    for role in Role::ALL {
        let members: Vec<PodResources> = pods
            .iter()
            .filter(|p| p.role == Some(role))
            .map(|p| p.resources)
            .collect();
        roles.push(RoleShare {
            role: role.as_str().to_string(),
            pods: members.len(),
            requests: Amount::sum(members.iter().map(|m| &m.requests)),
            limits: Amount::sum(members.iter().map(|m| &m.limits)),
        });
    }
    let ours = Amount::sum(roles.iter().map(|r| &r.requests));
    let ours_pods: usize = roles.iter().map(|r| r.pods).sum();
    let others = pods.len() - ours_pods;
    if others > 0 {
        let other_lim = Amount::sum(roles.iter().map(|r| &r.limits));
        roles.push(RoleShare {
            role: "other".into(),
            pods: others,
            requests: Amount {
                cpu_millis: requested.cpu_millis - ours.cpu_millis,
                memory_bytes: requested.memory_bytes - ours.memory_bytes,
            },
            limits: Amount {
                cpu_millis: limits.cpu_millis - other_lim.cpu_millis,
                memory_bytes: limits.memory_bytes - other_lim.memory_bytes,
            },
        });
    }
    let slaves_fit = slave_template.map(|_| {
        rows.iter()
            .filter_map(|r| r.slaves_fit.as_ref())
            .map(|f| f.count)
            .sum()
    });
    NodesReport {
        nodes: rows,
        totals,
        namespace: settings.namespace.clone(),
        roles,
        slave_requests: slave_template.map(|t| pod_resources(t).requests),
        slaves_fit,
    }
}
