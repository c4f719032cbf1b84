//! The seed's scaling table (扩展建议) — target QPS, slaves, total CPU and memory requests of the
//! deployment — computed from the live Deployments' requests, with, for each row, whether the
//! cluster has room now and how many more nodes of the current size it would need.

use serde::Serialize;

use crate::capacity::{Amount, NodeCapacity, place};
use crate::config::Settings;
use crate::error::Result;
use crate::inventory::Role;
use crate::printer::{Printer, Style, render_table};
use crate::quantity::{format_bytes, format_cpu};

use super::{ClusterView, RoleRequests, role_requests, slaves_for_qps, total_requests};

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub target_qps: u64,
    pub slaves: i32,
    /// Requests of the whole deployment (master, slaves, MySQL, Redis) with that many slaves.
    pub requests: Amount,
    /// Whether every slave would find a node now (None when the capacity is unknown).
    pub room: Option<bool>,
    /// Slave pods that would need a node (target minus those placed now).
    pub new_pods: i64,
    /// How many of them would stay Pending.
    pub pending: i64,
    /// What runs out first (`cpu`, `memory`, `pods`).
    pub limited_by: Vec<String>,
    /// More nodes of the current size needed for the Pending ones (None when unknown, or when a
    /// slave does not fit even on an empty node of that size).
    pub more_nodes: Option<i64>,
}

/// The size of node the table counts in.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSize {
    pub allocatable: Amount,
    /// The nodes of that size now.
    pub like: Vec<String>,
    /// How many slaves an empty one holds, and what runs out first there.
    pub slaves_per_node: i64,
    pub limited_by: Option<String>,
}

/// The whole table.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub namespace: String,
    pub qps_per_pod: u32,
    /// Where `qps_per_pod` comes from (see [`super::ScalePlan::qps_source`]).
    pub qps_source: String,
    pub slave_deployment: String,
    pub slaves_now: i32,
    /// Slave pods bound to a node now.
    pub slaves_placed: i64,
    /// Requests of one pod of each role, and the replicas counted for the other roles.
    pub roles: Vec<RoleRequests>,
    pub node_size: Option<NodeSize>,
    pub rows: Vec<PlanRow>,
    pub capacity_unknown: Option<String>,
}

/// The most common size among the nodes a slave may go to (ties: the larger CPU).
fn node_size(
    nodes: &[NodeCapacity],
    template: &k8s_openapi::api::core::v1::PodSpec,
) -> Option<NodeSize> {
    let eligible: Vec<&NodeCapacity> = nodes
        .iter()
        .filter(|n| n.empty_like().fit(template).excluded.is_none())
        .collect();
    let mut sizes: Vec<(Amount, Vec<String>)> = Vec::new();
    for n in &eligible {
        match sizes.iter_mut().find(|(a, _)| *a == n.allocatable) {
            Some((_, names)) => names.push(n.name.clone()),
            None => sizes.push((n.allocatable, vec![n.name.clone()])),
        }
    }
    sizes.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then(b.0.cpu_millis.cmp(&a.0.cpu_millis))
            .then(b.0.memory_bytes.cmp(&a.0.memory_bytes))
    });
    let (allocatable, like) = sizes.into_iter().next()?;
    let model = eligible.iter().find(|n| n.allocatable == allocatable)?;
    let fit = model.empty_like().fit(template);
    Some(NodeSize {
        allocatable,
        like,
        slaves_per_node: fit.count,
        limited_by: fit.limited_by,
    })
}

/// Builds the table for the target throughputs `qps` (pure, from the view).
pub fn plan_table(
    view: &ClusterView,
    settings: &Settings,
    qps: &[u64],
    qps_per_pod: u32,
) -> Result<PlanReport> {
    let name = &settings.workloads.slave.name;
    let dep = view.deployment(name)?;
    let template = dep.spec.template.spec.clone().unwrap_or_default();
    let roles = role_requests(&view.snapshot, settings);
    let placed = view.placed_pods(dep);
    let size = view.nodes.as_ref().and_then(|n| node_size(n, &template));
    let rows = qps
        .iter()
        .map(|&q| {
            let slaves = i32::try_from(slaves_for_qps(q, qps_per_pod)).unwrap_or(i32::MAX);
            let new_pods = (i64::from(slaves) - placed).max(0);
            let placement = view.nodes.as_ref().map(|n| place(n, &template, new_pods));
            let more_nodes = match (&placement, &size) {
                (Some(p), _) if p.pending == 0 => Some(0),
                (Some(p), Some(s)) if s.slaves_per_node > 0 => {
                    Some((p.pending + s.slaves_per_node - 1) / s.slaves_per_node)
                }
                _ => None,
            };
            PlanRow {
                target_qps: q,
                slaves,
                requests: total_requests(&roles, slaves),
                room: placement.as_ref().map(|p| p.pending == 0),
                new_pods,
                pending: placement.as_ref().map_or(0, |p| p.pending),
                limited_by: placement.map(|p| p.limited_by).unwrap_or_default(),
                more_nodes,
            }
        })
        .collect();
    Ok(PlanReport {
        namespace: view.snapshot.namespace.clone(),
        qps_per_pod,
        qps_source: String::new(),
        slave_deployment: name.clone(),
        slaves_now: dep.spec.replicas.unwrap_or(1),
        slaves_placed: placed,
        roles,
        node_size: size,
        rows,
        capacity_unknown: view.capacity_unknown.clone(),
    })
}

/// The table for people.
pub fn render_plan_table(r: &PlanReport, style: Style, printer: &Printer) -> String {
    let mut t = printer.table(&[
        "TARGET QPS",
        "SLAVES",
        "CPU REQUESTS",
        "MEMORY REQUESTS",
        "ROOM NOW",
        "MORE NODES",
    ]);
    for row in &r.rows {
        let room = match row.room {
            None => "unknown".to_string(),
            Some(true) => style.green("yes"),
            Some(false) => style.red(&format!(
                "no: {} of {} new fit{}",
                row.new_pods - row.pending,
                row.new_pods,
                if row.limited_by.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", row.limited_by.join(", "))
                }
            )),
        };
        t.add_row(vec![
            row.target_qps.to_string(),
            row.slaves.to_string(),
            format_cpu(row.requests.cpu_millis),
            format_bytes(row.requests.memory_bytes),
            room,
            row.more_nodes.map_or_else(|| "-".into(), |n| n.to_string()),
        ]);
    }
    let mut out = render_table(&t);
    let parts: Vec<String> = r
        .roles
        .iter()
        .map(|role| {
            let count = if role.role == Role::Slave {
                "N".to_string()
            } else {
                role.replicas.to_string()
            };
            format!(
                "{} {count}×({}, {})",
                role.role.as_str(),
                format_cpu(role.per_pod.cpu_millis),
                format_bytes(role.per_pod.memory_bytes)
            )
        })
        .collect();
    out.push_str(&format!(
        "\nRequests: {} (namespace {}); ~{} QPS per slave{}.\n",
        parts.join(" + "),
        r.namespace,
        r.qps_per_pod,
        super::source_note(&r.qps_source)
    ));
    out.push_str(&format!(
        "Now: {} slaves ({} on nodes).\n",
        r.slaves_now, r.slaves_placed
    ));
    match (&r.capacity_unknown, &r.node_size) {
        (Some(why), _) => out.push_str(&style.yellow(&format!(
            "Room not checked: {why}.\n"
        ))),
        (None, Some(s)) => out.push_str(&format!(
            "A node of the current size ({} CPU, {} memory, like {}) holds {} slaves when empty{}.\n",
            format_cpu(s.allocatable.cpu_millis),
            format_bytes(s.allocatable.memory_bytes),
            s.like.join(", "),
            s.slaves_per_node,
            s.limited_by
                .as_deref()
                .map(|l| format!(" ({l} runs out first)"))
                .unwrap_or_default()
        )),
        (None, None) => out.push_str("No node can take a slave: MORE NODES cannot be counted.\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table_from_the_seed_requests() {
        let (view, settings) = super::super::tests::seed_view();
        let r = plan_table(&view, &settings, &[1000, 3000, 5000, 10000], 1000).unwrap();
        let rows: Vec<(i32, i64, i64)> = r
            .rows
            .iter()
            .map(|row| {
                (
                    row.slaves,
                    row.requests.cpu_millis,
                    row.requests.memory_bytes >> 30,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [(1, 5000, 8), (3, 7000, 10), (5, 9000, 12), (10, 14000, 17)]
        );
        let room: Vec<(Option<bool>, Option<i64>)> = r
            .rows
            .iter()
            .map(|row| (row.room, row.more_nodes))
            .collect();
        assert_eq!(
            room,
            [
                (Some(true), Some(0)),
                (Some(true), Some(0)),
                (Some(false), Some(1)),
                (Some(false), Some(2))
            ]
        );
        let size = r.node_size.as_ref().unwrap();
        assert_eq!(size.slaves_per_node, 4);
        assert_eq!(r.rows[2].limited_by, ["cpu"]);
    }
}
