//! Scaling and restarting New-API's Deployments safely — the code behind `scale`, `plan`,
//! `restart` and the runbook actions `deployment.scale` and `deployment.restart`.
//!
//! The steps, each a function so that callers can stop between them:
//! 1. [`ClusterView::load`]: the namespace's workloads, plus nodes and every active pod when RBAC
//!    allows (otherwise the capacity check is skipped with a warning, never the scale itself).
//! 2. [`plan_scale`] / [`plan_restart`]: the throughput estimate, the totals of requests, and where
//!    each new pod would go ([`crate::capacity::place`]) — pure, from listed objects.
//! 3. [`apply_scale`] / [`apply_restart`]: one write through the `scale` subresource (or the
//!    `kubectl rollout restart` template annotation), then a record of what was done (from → to,
//!    who, when) in the annotation [`LAST_SCALE_ANNOTATION`], which `scale --undo` reads.
//! 4. [`rollout::wait`]: follows the rollout.
//!
//! [`execute_scale`] and [`execute_restart`] chain them with confirmation and output, the same way
//! for the commands and the runbook engine.

mod apply;
pub mod restart;
pub mod rollout;
pub mod table;

pub use apply::{
    Actor, Applied, ScaleRecord, ScaleReport, ScaleRequest, Target, apply_scale, check_replicas,
    execute_scale,
};
pub use restart::{
    RestartPlan, RestartReport, RestartRequest, Restarted, Strategy, apply_restart,
    execute_restart, plan_restart, render_restart_plan, strategy,
};

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use serde::Serialize;

use crate::capacity::{Amount, NodeCapacity, Placement, place, pod_is_active, pod_resources};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::Kube;
use crate::printer::{Printer, Style, render_table};
use crate::quantity::{format_bytes, format_cpu, percent};
use crate::units::plural;

/// The annotation on a Deployment recording the last scale done by newapi-ops (JSON, see
/// [`ScaleRecord`]).
pub const LAST_SCALE_ANNOTATION: &str = "newapi-ops.io/last-scale";
/// The pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// Our field manager name on the API server.
pub const FIELD_MANAGER: &str = "newapi-ops";
/// The seed's estimate: about 1000 QPS per New-API pod.
pub const DEFAULT_QPS_PER_POD: u32 = 1000;
/// The largest replica count `scale` accepts unless told otherwise.
pub const DEFAULT_MAX_REPLICAS: i32 = 20;
/// How long `scale` and `restart` follow a rollout unless told otherwise.
/// Up to this many new slaves, the plan shows one line each; past it, one line per node.
const PLACEMENT_LINES: i64 = 12;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the capacity arithmetic needs of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// The namespace's Deployments and StatefulSets, and its active pods when listed.
    pub snapshot: Snapshot,
    /// Every node with the active pods bound to it; None when they could not be listed.
    pub nodes: Option<Vec<NodeCapacity>>,
    /// Why [`ClusterView::nodes`] is None (an RBAC denial, typically).
    pub capacity_unknown: Option<String>,
}

impl ClusterView {
    /// Lists the namespace's Deployments and StatefulSets, the nodes and every active pod, all
    /// at once. Nodes and pods of all namespaces need cluster-wide read access: without it the
    /// view has no capacity and says why.
    pub async fn load(kube: &Kube, settings: &Settings) -> Result<ClusterView> {
        let ns = settings.namespace.as_str();
        kube.ensure_namespace(ns).await?;
        let all = ListParams::default();
        let active = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let (deployments, statefulsets, nodes, pods) = tokio::join!(
            kube.list::<Deployment>(Some(ns), &all),
            kube.list::<StatefulSet>(Some(ns), &all),
            kube.list_cluster::<Node>(&all),
            kube.list::<Pod>(None, &active),
        );
        let (deployments, statefulsets) = (deployments?, statefulsets?);
        let (nodes, pods, capacity_unknown) = match (nodes, pods) {
            (Ok(nodes), Ok(pods)) => (Some(nodes.items), pods.items, None),
            (Err(e), _) | (_, Err(e)) if can_do_without(&e) => {
                (None, Vec::new(), Some(e.to_string()))
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let pods: Vec<Pod> = pods.into_iter().filter(pod_is_active).collect();
        let nodes = nodes.map(|nodes| node_capacities(&nodes, &pods));
        Ok(ClusterView {
            snapshot: Snapshot {
                namespace: ns.to_string(),
                pods: pods
                    .into_iter()
                    .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                    .collect(),
                deployments: deployments.items,
                statefulsets: statefulsets.items,
            },
            nodes,
            capacity_unknown,
        })
    }

    /// The Deployment called `name`, or an error listing what exists.
    pub fn deployment(&self, name: &str) -> Result<&Deployment> {
        self.snapshot
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| Error::WorkloadNotFound {
                kind: "Deployment".into(),
                name: name.to_string(),
                namespace: self.snapshot.namespace.clone(),
                available: self.snapshot.controller_names(),
            })
    }

    /// How many pods of a Deployment are bound to a node and not going away.
    fn placed_pods(&self, dep: &Deployment) -> i64 {
        let n = self
            .snapshot
            .pods
            .iter()
            .filter(|p| rollout::selector_matches(&dep.spec.selector, p.metadata.labels.as_ref()))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }
}

/// Without cluster-wide read access the capacity check is skipped, not the command.
fn can_do_without(e: &Error) -> bool {
    matches!(e, Error::Forbidden { .. })
}

/// Each node's capacity with the active pods bound to it.
pub fn node_capacities(nodes: &[Node], pods: &[Pod]) -> Vec<NodeCapacity> {
    let mut out: Vec<NodeCapacity> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.as_deref();
            NodeCapacity::new(
                n,
                pods.iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == name),
            )
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One role's share of the requests.
#[derive(Debug, Clone, Serialize)]
pub struct RoleRequests {
    pub role: Role,
    pub kind: &'static str,
    pub name: String,
    pub replicas: i32,
    /// Requests of one pod.
    pub per_pod: Amount,
}

/// The requests of every role of the deployment that exists (MySQL and Redis may be outside the
/// cluster: then they are not counted).
pub fn role_requests(snapshot: &Snapshot, settings: &Settings) -> Vec<RoleRequests> {
    Role::ALL
        .into_iter()
        .filter_map(|role| snapshot.controller(role, settings))
        .map(|c| RoleRequests {
            role: c.role,
            kind: c.kind,
            name: c.name,
            replicas: c.desired,
            per_pod: c
                .template
                .as_ref()
                .map(|t| pod_resources(t).requests)
                .unwrap_or_default(),
        })
        .collect()
}

/// The total requests of the deployment with `slaves` slave replicas.
pub fn total_requests(roles: &[RoleRequests], slaves: i32) -> Amount {
    let parts: Vec<Amount> = roles
        .iter()
        .map(|r| {
            let n = if r.role == Role::Slave {
                slaves
            } else {
                r.replicas
            };
            r.per_pod.times(i64::from(n))
        })
        .collect();
    Amount::sum(parts.iter())
}

/// The seed's throughput estimate: about `per_pod` QPS per New-API pod, the slaves carrying the
/// reads and the master adding its own share ("~3000-4000 QPS" for 3 slaves and a master).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Throughput {
    pub slaves: i32,
    pub slaves_qps: i64,
    pub with_master_qps: i64,
}

pub fn throughput(slaves: i32, masters: i32, per_pod: u32) -> Throughput {
    let per = i64::from(per_pod);
    Throughput {
        slaves,
        slaves_qps: i64::from(slaves) * per,
        with_master_qps: i64::from(slaves + masters) * per,
    }
}

impl Throughput {
    fn render(&self) -> String {
        if self.with_master_qps == self.slaves_qps {
            format!("~{} QPS", self.slaves_qps)
        } else {
            format!("~{}-{} QPS", self.slaves_qps, self.with_master_qps)
        }
    }
}

/// The slave count that carries `qps` at `per_pod` QPS each (rounded up), as the seed's table.
pub fn slaves_for_qps(qps: u64, per_pod: u32) -> u64 {
    qps.div_ceil(u64::from(per_pod.max(1)))
}

/// The cluster's requests against allocatable, before and after.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterTotals {
    pub nodes: usize,
    pub allocatable: Amount,
    pub requested_before: Amount,
    pub requested_after: Amount,
}

/// Where the new pods would go.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    /// Pods of the Deployment bound to a node now.
    pub placed_now: i64,
    /// Pods that need a node: the target minus those already placed.
    pub new_pods: i64,
    #[serde(flatten)]
    pub placement: Placement,
}

/// Everything `scale` shows before it acts.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePlan {
    pub namespace: String,
    pub deployment: String,
    pub from: i32,
    pub to: i32,
    /// When this plan returns to the count before a recorded scale (`--undo`).
    pub undoes: Option<ScaleRecord>,
    pub qps_per_pod: u32,
    /// Where `qps_per_pod` comes from (`--qps-per-pod`, `[capacity]` of the config file with
    /// when it was measured, or the deployment notes' estimate); empty when not said.
    pub qps_source: String,
    pub throughput_before: Throughput,
    pub throughput_after: Throughput,
    /// The requests of one slave pod.
    pub per_pod: Amount,
    /// Requests of the whole deployment (master, slaves, MySQL, Redis), before and after.
    pub requests_before: Amount,
    pub requests_after: Amount,
    pub roles: Vec<RoleRequests>,
    pub cluster: Option<ClusterTotals>,
    /// None when scaling down, or when the capacity is unknown.
    pub capacity: Option<Preflight>,
    pub capacity_unknown: Option<String>,
}

impl ScalePlan {
    /// `deployment/new-api-slave in namespace new-api`.
    pub fn what(&self) -> String {
        format!(
            "deployment/{} in namespace {}",
            self.deployment, self.namespace
        )
    }

    /// How many of the new pods would stay Pending (0 when unknown).
    pub fn pending(&self) -> i64 {
        self.capacity.as_ref().map_or(0, |c| c.placement.pending)
    }

    /// The question asked before acting.
    pub fn prompt(&self) -> String {
        let base = format!(
            "Scale deployment/{} in namespace {} from {} to {}",
            self.deployment, self.namespace, self.from, self.to
        );
        match &self.capacity {
            Some(c) if c.placement.pending > 0 => format!(
                "{base} although {} would stay Pending ({})?",
                plural(c.placement.pending, "new pod", "new pods"),
                limit_words(&c.placement.limited_by).unwrap_or_else(|| "no node fits".into())
            ),
            _ => format!("{base}?"),
        }
    }
}

/// "not enough CPU", "not enough CPU and memory".
fn limit_words(limited_by: &[String]) -> Option<String> {
    if limited_by.is_empty() {
        return None;
    }
    let names: Vec<&str> = limited_by.iter().map(|r| resource_name(r)).collect();
    Some(format!("not enough {}", names.join(" and ")))
}

fn resource_name(r: &str) -> &str {
    match r {
        "cpu" => "CPU",
        "pods" => "room for pods",
        other => other,
    }
}

/// Builds the plan for scaling `name` to `to` replicas (pure, from the view).
pub fn plan_scale(
    view: &ClusterView,
    settings: &Settings,
    name: &str,
    to: i32,
    qps_per_pod: u32,
) -> Result<ScalePlan> {
    let dep = view.deployment(name)?;
    let from = dep.spec.replicas.unwrap_or(1);
    let template = dep.spec.template.spec.clone();
    let per_pod = template
        .as_ref()
        .map(|t| pod_resources(t).requests)
        .unwrap_or_default();
    let mut roles = role_requests(&view.snapshot, settings);
    // The Deployment scaled is counted as the slaves, whatever its role.
    if !roles
        .iter()
        .any(|r| r.role == Role::Slave && r.name == name)
    {
        roles.retain(|r| r.name != name);
        roles.push(RoleRequests {
            role: Role::Slave,
            kind: "Deployment",
            name: name.to_string(),
            replicas: from,
            per_pod,
        });
    }
    let masters = roles
        .iter()
        .find(|r| r.role == Role::Master)
        .map_or(0, |r| r.replicas);
    let delta = per_pod.times(i64::from(to - from));
    let cluster = view.nodes.as_ref().map(|nodes| {
        let requested = Amount::sum(nodes.iter().map(|n| &n.requested));
        ClusterTotals {
            nodes: nodes.len(),
            allocatable: Amount::sum(nodes.iter().map(|n| &n.allocatable)),
            requested_before: requested,
            requested_after: Amount {
                cpu_millis: requested.cpu_millis + delta.cpu_millis,
                memory_bytes: requested.memory_bytes + delta.memory_bytes,
            },
        }
    });
    let capacity = match (&view.nodes, &template) {
        (Some(nodes), Some(t)) if to > from || i64::from(to) > view.placed_pods(dep) => {
            let placed_now = view.placed_pods(dep);
            let new_pods = (i64::from(to) - placed_now).max(0);
            Some(Preflight {
                placed_now,
                new_pods,
                placement: place(nodes, t, new_pods),
            })
        }
        _ => None,
    };
    Ok(ScalePlan {
        namespace: view.snapshot.namespace.clone(),
        deployment: name.to_string(),
        from,
        to,
        undoes: None,
        qps_per_pod,
        qps_source: String::new(),
        throughput_before: throughput(from, masters, qps_per_pod),
        throughput_after: throughput(to, masters, qps_per_pod),
        per_pod,
        requests_before: total_requests(&roles, from),
        requests_after: total_requests(&roles, to),
        roles,
        cluster,
        capacity,
        capacity_unknown: view.capacity_unknown.clone(),
    })
}

fn ratio(part: i64, whole: i64, fmt: fn(i64) -> String) -> String {
    format!(
        "{} / {} = {}",
        fmt(part),
        fmt(whole),
        percent(part, whole).map_or_else(|| "-".into(), |p| format!("{p}%"))
    )
}

/// The plan for people.
pub fn render_scale_plan(plan: &ScalePlan, style: Style, printer: &Printer) -> String {
    let mut out = String::new();
    let title = match &plan.undoes {
        Some(r) => format!(
            "{}: {} → {} replicas (undoing {} → {} by {} at {})",
            plan.what(),
            plan.from,
            plan.to,
            r.from,
            r.to,
            r.by,
            r.at
        ),
        None => format!("{}: {} → {} replicas", plan.what(), plan.from, plan.to),
    };
    out.push_str(&style.bold(&title));
    out.push_str("\n\n");
    let mut t = printer.table(&["", "NOW", "AFTER"]);
    t.add_row(vec![
        "slaves".to_string(),
        plan.from.to_string(),
        plan.to.to_string(),
    ]);
    t.add_row(vec![
        "estimated throughput".to_string(),
        plan.throughput_before.render(),
        plan.throughput_after.render(),
    ]);
    t.add_row(vec![
        "CPU requests".to_string(),
        format_cpu(plan.requests_before.cpu_millis),
        format_cpu(plan.requests_after.cpu_millis),
    ]);
    t.add_row(vec![
        "memory requests".to_string(),
        format_bytes(plan.requests_before.memory_bytes),
        format_bytes(plan.requests_after.memory_bytes),
    ]);
    if let Some(c) = &plan.cluster {
        t.add_row(vec![
            format!("cluster CPU ({} nodes)", c.nodes),
            ratio(
                c.requested_before.cpu_millis,
                c.allocatable.cpu_millis,
                format_cpu,
            ),
            ratio(
                c.requested_after.cpu_millis,
                c.allocatable.cpu_millis,
                format_cpu,
            ),
        ]);
        t.add_row(vec![
            "cluster memory".to_string(),
            ratio(
                c.requested_before.memory_bytes,
                c.allocatable.memory_bytes,
                format_bytes,
            ),
            ratio(
                c.requested_after.memory_bytes,
                c.allocatable.memory_bytes,
                format_bytes,
            ),
        ]);
    }
    out.push_str(&render_table(&t));
    let others: Vec<String> = plan
        .roles
        .iter()
        .filter(|r| r.role != Role::Slave)
        .map(|r| {
            format!(
                "{} {}×({}, {})",
                r.role.as_str(),
                r.replicas,
                format_cpu(r.per_pod.cpu_millis),
                format_bytes(r.per_pod.memory_bytes)
            )
        })
        .collect();
    out.push_str(&style.dim(&format!(
        "requests: slaves N×({}, {}){}{}; throughput: ~{} QPS per New-API pod{}\n",
        format_cpu(plan.per_pod.cpu_millis),
        format_bytes(plan.per_pod.memory_bytes),
        if others.is_empty() { "" } else { " + " },
        others.join(" + "),
        plan.qps_per_pod,
        source_note(&plan.qps_source)
    )));
    out.push('\n');
    if let Some(why) = &plan.capacity_unknown {
        out.push_str(&style.yellow(&format!(
            "Capacity not checked: {why}. The scheduler will decide; watch for Pending pods.\n"
        )));
        return out;
    }
    if plan.to < plan.from {
        out.push_str(&format!(
            "Scaling down frees {} CPU and {} memory of requests.\n",
            format_cpu(plan.per_pod.cpu_millis * i64::from(plan.from - plan.to)),
            format_bytes(plan.per_pod.memory_bytes * i64::from(plan.from - plan.to))
        ));
        return out;
    }
    let Some(c) = &plan.capacity else {
        return out;
    };
    out.push_str(&format!(
        "Capacity (each slave requests cpu {}, memory {}; {} placed on nodes now):\n",
        format_cpu(plan.per_pod.cpu_millis),
        format_bytes(plan.per_pod.memory_bytes),
        c.placed_now
    ));
    // One line per new slave while that stays readable; past that, one line per node (and one
    // for the Pending ones), so `scale 1000 --dry-run` is a screen, not a thousand lines.
    let placed = &c.placement.placed;
    if i64::try_from(placed.len()).unwrap_or(i64::MAX) + c.placement.pending <= PLACEMENT_LINES {
        let mut i = 0;
        for p in placed {
            i += 1;
            out.push_str(&format!(
                "  new slave {i} → {} (left there: cpu {}, memory {})\n",
                p.node,
                format_cpu(p.free_after.cpu_millis),
                format_bytes(p.free_after.memory_bytes)
            ));
        }
        for _ in 0..c.placement.pending {
            i += 1;
            out.push_str(&style.red(&format!(
                "  new slave {i} → Pending: {}\n",
                c.placement.reason.as_deref().unwrap_or("no node fits")
            )));
        }
    } else {
        let mut nodes: Vec<(&str, usize, &Amount)> = Vec::new();
        for p in placed {
            match nodes.iter_mut().find(|(n, _, _)| *n == p.node) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 = &p.free_after;
                }
                None => nodes.push((&p.node, 1, &p.free_after)),
            }
        }
        for (node, n, left) in nodes {
            out.push_str(&format!(
                "  {} → {node} (left there: cpu {}, memory {})\n",
                plural(n, "new slave", "new slaves"),
                format_cpu(left.cpu_millis),
                format_bytes(left.memory_bytes)
            ));
        }
        if c.placement.pending > 0 {
            out.push_str(&style.red(&format!(
                "  {} → Pending: {}\n",
                plural(c.placement.pending, "new slave", "new slaves"),
                c.placement.reason.as_deref().unwrap_or("no node fits")
            )));
        }
    }
    let fits = c.new_pods - c.placement.pending;
    let verdict = if c.placement.pending == 0 {
        style.green(&if c.new_pods == 1 {
            "The new slave fits.".to_string()
        } else {
            format!("All {} new slaves fit.", c.new_pods)
        })
    } else {
        let limit = match c.placement.limited_by.as_slice() {
            [] => "no node is eligible".to_string(),
            [one] => format!("{} is the limit", resource_name(one)),
            many => format!(
                "{} are the limits",
                many.iter()
                    .map(|r| resource_name(r))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        };
        style.red(&format!(
            "Only {fits} of the {} fit{}; {limit}: {} would stay Pending.",
            plural(c.new_pods, "new slave", "new slaves"),
            if fits == 1 { "s" } else { "" },
            plural(c.placement.pending, "pod", "pods")
        ))
    };
    out.push_str(&verdict);
    out.push('\n');
    out
}

/// ` (SOURCE)` after a QPS-per-pod figure, or nothing when the source is not known.
pub fn source_note(source: &str) -> String {
    if source.is_empty() {
        String::new()
    } else {
        format!(" ({source})")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn seed_dep(
        name: &str,
        role: &str,
        replicas: i32,
        cpu: &str,
        mem: &str,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "new-api"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "new-api", "role": role}},
                "template": {
                    "metadata": {"labels": {"app": "new-api", "role": role}},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
                }
            }
        }))
        .unwrap()
    }

    fn seed_sts(name: &str, app: &str, cpu: &str, mem: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "new-api"},
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
                }
            }
        }))
        .unwrap()
    }

    fn bound(labels: serde_json::Value, node: &str, cpu: &str, mem: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{node}-{cpu}"), "namespace": "new-api", "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]},
            "status": {"phase": "Running"}
        }))
        .unwrap()
    }

    fn node(name: &str, mem: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": mem, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }))
        .unwrap()
    }

    /// The seed deployment as the sandbox places it: MySQL and the master on one node, Redis and
    /// the three slaves on the other.
    pub(crate) fn seed_view() -> (ClusterView, Settings) {
        let slave = json!({"app": "new-api", "role": "slave"});
        let pods = vec![
            bound(json!({"app": "mysql"}), "node-a", "2000m", "4Gi"),
            bound(
                json!({"app": "new-api", "role": "master"}),
                "node-a",
                "1000m",
                "1Gi",
            ),
            bound(json!({"app": "redis"}), "node-b", "1000m", "2Gi"),
            bound(slave.clone(), "node-b", "1000m", "1Gi"),
            bound(slave.clone(), "node-b", "1000m", "1Gi"),
            bound(slave, "node-b", "1000m", "1Gi"),
        ];
        let nodes = node_capacities(&[node("node-a", "6148Mi"), node("node-b", "6147Mi")], &pods);
        let settings = Settings::resolve(&crate::config::Overrides::default()).unwrap();
        let view = ClusterView {
            snapshot: Snapshot {
                namespace: "new-api".into(),
                pods,
                deployments: vec![
                    seed_dep("new-api-master", "master", 1, "1000m", "1Gi"),
                    seed_dep("new-api-slave", "slave", 3, "1000m", "1Gi"),
                ],
                statefulsets: vec![
                    seed_sts("mysql", "mysql", "2000m", "4Gi"),
                    seed_sts("redis", "redis", "1000m", "2Gi"),
                ],
            },
            nodes: Some(nodes),
            capacity_unknown: None,
        };
        (view, settings)
    }

    #[test]
    fn a_big_scale_plan_is_one_line_per_node_not_per_pod() {
        let (view, settings) = seed_view();
        let plan = plan_scale(&view, &settings, "new-api-slave", 100_000, 1000).unwrap();
        let printer = Printer::new(crate::printer::Format::Human, true, false);
        let text = render_scale_plan(&plan, printer.style, &printer);
        assert!(text.lines().count() < 30, "{text}");
        assert!(text.contains("1 new slave → node-a"), "{text}");
        assert!(text.contains("99996 new slaves → Pending"), "{text}");
    }

    #[test]
    fn scale_5_on_the_seed_cluster_one_of_two_fits_cpu_is_the_limit() {
        let (view, settings) = seed_view();
        let plan = plan_scale(&view, &settings, "new-api-slave", 5, 1000).unwrap();
        assert_eq!((plan.from, plan.to), (3, 5));
        assert_eq!(plan.requests_before.cpu_millis, 7000);
        assert_eq!(plan.requests_after.cpu_millis, 9000);
        assert_eq!(plan.requests_after.memory_bytes, 12 << 30);
        assert_eq!(plan.throughput_before.render(), "~3000-4000 QPS");
        assert_eq!(plan.throughput_after.slaves_qps, 5000);
        let c = plan.capacity.as_ref().unwrap();
        assert_eq!((c.placed_now, c.new_pods, c.placement.pending), (3, 2, 1));
        assert_eq!(c.placement.placed[0].node, "node-a");
        assert_eq!(c.placement.limited_by, ["cpu"]);
        let cluster = plan.cluster.as_ref().unwrap();
        assert_eq!(cluster.requested_after.cpu_millis, 9000);
        let printer = Printer::new(crate::printer::Format::Human, true, false);
        let text = render_scale_plan(&plan, printer.style, &printer);
        assert!(
            text.contains("Only 1 of the 2 new slaves fits; CPU is the limit"),
            "{text}"
        );
        assert!(
            text.contains("0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."),
            "{text}"
        );
        assert!(text.contains("7000m / 8000m = 88%"), "{text}");
        assert!(
            plan.prompt()
                .contains("although 1 new pod would stay Pending (not enough CPU)")
        );
    }

    #[test]
    fn scaling_down_needs_no_capacity() {
        let (view, settings) = seed_view();
        let plan = plan_scale(&view, &settings, "new-api-slave", 2, 1000).unwrap();
        assert!(plan.capacity.is_none());
        assert_eq!(plan.requests_after.cpu_millis, 6000);
        assert_eq!(
            plan.prompt(),
            "Scale deployment/new-api-slave in namespace new-api from 3 to 2?"
        );
    }

    #[test]
    fn a_missing_deployment_lists_what_exists() {
        let (view, settings) = seed_view();
        let err = plan_scale(&view, &settings, "nope", 2, 1000).unwrap_err();
        assert!(matches!(err, Error::WorkloadNotFound { .. }), "{err}");
        assert!(err.hint().unwrap().contains("new-api-slave"));
    }

    #[test]
    fn qps_to_slaves_as_the_seed_table() {
        assert_eq!(slaves_for_qps(1000, 1000), 1);
        assert_eq!(slaves_for_qps(5000, 1000), 5);
        assert_eq!(slaves_for_qps(5001, 1000), 6);
        assert_eq!(slaves_for_qps(0, 1000), 0);
    }

    #[test]
    fn replica_counts_are_checked() {
        assert_eq!(check_replicas(5, 20, "scale").unwrap(), 5);
        assert_eq!(check_replicas(0, 20, "scale").unwrap(), 0);
        let err = check_replicas(21, 20, "scale 21").unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(err.to_string().contains("0 to 20"));
        assert!(check_replicas(-1, 20, "scale -1").is_err());
    }

    #[test]
    fn the_record_round_trips_and_logs() {
        let r = ScaleRecord {
            from: 3,
            to: 5,
            by: "alice".into(),
            context: Some("prod".into()),
            at: "2026-11-25T10:00:00Z".into(),
            undo: false,
        };
        let mut d = seed_dep("new-api-slave", "slave", 5, "1", "1Gi");
        d.metadata.annotations = Some(
            [(
                LAST_SCALE_ANNOTATION.to_string(),
                serde_json::to_string(&r).unwrap(),
            )]
            .into(),
        );
        assert_eq!(ScaleRecord::of(&d), Some(r.clone()));
        assert_eq!(
            r.log_line("new-api", "new-api-slave"),
            "2026-11-25T10:00:00Z scale new-api/new-api-slave 3 -> 5 by alice (context prod)"
        );
        d.metadata.annotations =
            Some([(LAST_SCALE_ANNOTATION.to_string(), "garbage".into())].into());
        assert_eq!(ScaleRecord::of(&d), None);
    }
}
