//! Capacity arithmetic, free of I/O: what pods request against what nodes can give, as
//! `kubectl describe node` ("Allocated resources") and the scheduler's resource fit see it, and
//! how many more pods of a template fit on each node; [`report`] lists what the `nodes` report needs
//! (once per kind) and builds it.

pub mod report;

pub use report::{NodeRow, NodesReport, RoleShare, Totals, build as nodes_report};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;

use crate::quantity::{parse_cpu_millis, parse_value};

/// CPU and memory, exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl Amount {
    fn add(self, o: Amount) -> Amount {
        Amount {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
        }
    }
    fn max(self, o: Amount) -> Amount {
        Amount {
            cpu_millis: self.cpu_millis.max(o.cpu_millis),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
        }
    }
    pub fn sum<'a>(items: impl IntoIterator<Item = &'a Amount>) -> Amount {
        items.into_iter().fold(Amount::default(), |a, b| a.add(*b))
    }
    /// `self × n`.
    pub fn times(self, n: i64) -> Amount {
        Amount {
            cpu_millis: self.cpu_millis * n,
            memory_bytes: self.memory_bytes * n,
        }
    }
}

/// Reads cpu and memory out of a resource map; unparsable values count as zero and are reported
/// through `bad`.
fn amount(map: Option<&BTreeMap<String, Quantity>>, bad: &mut Vec<String>) -> Amount {
    let mut a = Amount::default();
    if let Some(map) = map {
        if let Some(q) = map.get("cpu") {
            match parse_cpu_millis(&q.0) {
                Ok(v) => a.cpu_millis = v,
                Err(e) => bad.push(e.to_string()),
            }
        }
        if let Some(q) = map.get("memory") {
            match parse_value(&q.0) {
                Ok(v) => a.memory_bytes = v,
                Err(e) => bad.push(e.to_string()),
            }
        }
    }
    a
}

/// A pod's effective requests and limits, as the scheduler computes them:
/// max(sum of containers, largest init container) + overhead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PodResources {
    pub requests: Amount,
    pub limits: Amount,
}

pub fn pod_resources(spec: &PodSpec) -> PodResources {
    let mut bad = Vec::new();
    let mut req = Amount::default();
    let mut lim = Amount::default();
    for c in &spec.containers {
        let r = c.resources.as_ref();
        req = req.add(amount(r.and_then(|r| r.requests.as_ref()), &mut bad));
        lim = lim.add(amount(r.and_then(|r| r.limits.as_ref()), &mut bad));
    }
    for c in spec.init_containers.iter().flatten() {
        let r = c.resources.as_ref();
        req = req.max(amount(r.and_then(|r| r.requests.as_ref()), &mut bad));
        lim = lim.max(amount(r.and_then(|r| r.limits.as_ref()), &mut bad));
    }
    let overhead = amount(spec.overhead.as_ref(), &mut bad);
    if !bad.is_empty() {
        tracing::warn!(
            "ignoring unparsable resource quantities: {}",
            bad.join("; ")
        );
    }
    PodResources {
        requests: req.add(overhead),
        limits: lim.add(overhead),
    }
}

/// A pod reduced to what capacity reads — where it runs, its containers' requests and limits,
/// its phase, name, namespace and labels (for the roles' share) —, for lists of every pod in the
/// cluster that are reduced page by page instead of held whole.
pub fn for_capacity(p: Pod) -> Pod {
    use k8s_openapi::api::core::v1::{Container, PodStatus};
    let resources = |c: Container| Container {
        resources: c.resources,
        ..Default::default()
    };
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            labels: p.metadata.labels,
            ..Default::default()
        },
        spec: p.spec.map(|s| PodSpec {
            containers: s.containers.into_iter().map(resources).collect(),
            init_containers: s
                .init_containers
                .map(|cs| cs.into_iter().map(resources).collect()),
            node_name: s.node_name,
            overhead: s.overhead,
            ..Default::default()
        }),
        status: p.status.map(|s| PodStatus {
            phase: s.phase,
            ..Default::default()
        }),
    }
}

/// Whether a pod still holds its node's resources (not finished).
pub fn pod_is_active(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A node as far as capacity is concerned.
#[derive(Debug, Clone, Serialize)]
pub struct NodeCapacity {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    /// Conditions other than Ready that are True (MemoryPressure, DiskPressure, PIDPressure, ...).
    pub pressure: Vec<String>,
    pub allocatable: Amount,
    pub allocatable_pods: i64,
    pub requested: Amount,
    pub limits: Amount,
    pub pods: i64,
    #[serde(skip)]
    pub taints: Vec<Taint>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

impl NodeCapacity {
    /// Builds the node's view from the node and every active pod bound to it.
    pub fn new<'a>(node: &Node, pods: impl IntoIterator<Item = &'a Pod>) -> NodeCapacity {
        NodeCapacity::of_resources(
            node,
            pods.into_iter()
                .filter_map(|p| p.spec.as_ref().map(pod_resources)),
        )
    }

    /// [`NodeCapacity::new`] from the requests and limits of each active pod bound to the node
    /// (what a compact record of a pod keeps).
    pub fn of_resources(node: &Node, pods: impl IntoIterator<Item = PodResources>) -> NodeCapacity {
        let status = node.status.clone().unwrap_or_default();
        let mut bad = Vec::new();
        let allocatable = amount(status.allocatable.as_ref(), &mut bad);
        let allocatable_pods = status
            .allocatable
            .as_ref()
            .and_then(|a| a.get("pods"))
            .and_then(|q| parse_value(&q.0).ok())
            .unwrap_or(110);
        let conditions = status.conditions.unwrap_or_default();
        let ready = conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let pressure = conditions
            .iter()
            .filter(|c| c.type_ != "Ready" && c.status == "True")
            .map(|c| c.type_.clone())
            .collect();
        let mut requested = Amount::default();
        let mut limits = Amount::default();
        let mut count = 0;
        for r in pods {
            requested = requested.add(r.requests);
            limits = limits.add(r.limits);
            count += 1;
        }
        let spec = node.spec.clone().unwrap_or_default();
        NodeCapacity {
            name: node.metadata.name.clone().unwrap_or_default(),
            ready,
            unschedulable: spec.unschedulable.unwrap_or(false),
            pressure,
            allocatable,
            allocatable_pods,
            requested,
            limits,
            pods: count,
            taints: spec.taints.unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
        }
    }

    /// What is left to request.
    pub fn free(&self) -> Amount {
        Amount {
            cpu_millis: self.allocatable.cpu_millis - self.requested.cpu_millis,
            memory_bytes: self.allocatable.memory_bytes - self.requested.memory_bytes,
        }
    }

    /// Why no pod of `template` can go here at all, whatever the resources: (our words, the
    /// scheduler's words as in its `FailedScheduling` events).
    fn exclusion(&self, template: &PodSpec) -> Option<(String, String)> {
        if !self.ready {
            return Some(("node is NotReady".into(), "node(s) were not ready".into()));
        }
        if self.unschedulable {
            return Some((
                "node is cordoned (SchedulingDisabled)".into(),
                "node(s) were unschedulable".into(),
            ));
        }
        if let Some(sel) = &template.node_selector
            && let Some((k, v)) = sel.iter().find(|(k, v)| self.labels.get(*k) != Some(*v))
        {
            return Some((
                format!("nodeSelector {k}={v} does not match"),
                "node(s) didn't match node selector".into(),
            ));
        }
        let tolerations = template.tolerations.clone().unwrap_or_default();
        if let Some(t) = self.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !tolerations.iter().any(|tol| tolerates(tol, t))
        }) {
            return Some((
                format!(
                    "taint {}{}:{} is not tolerated",
                    t.key,
                    t.value
                        .as_deref()
                        .map(|v| format!("={v}"))
                        .unwrap_or_default(),
                    t.effect
                ),
                format!(
                    "node(s) had taint {{{}: {}}}, that the pod didn't tolerate",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            ));
        }
        None
    }

    /// How many more pods of `template` fit here, and what stops the next one.
    pub fn fit(&self, template: &PodSpec) -> Fit {
        if let Some((why, _)) = self.exclusion(template) {
            return Fit::excluded(&why);
        }
        let need = pod_resources(template).requests;
        let free = self.free();
        let mut best: Option<(i64, &'static str)> = None;
        let mut consider = |count: i64, what: &'static str| {
            if best.is_none_or(|(c, _)| count < c) {
                best = Some((count, what));
            }
        };
        if need.cpu_millis > 0 {
            consider((free.cpu_millis / need.cpu_millis).max(0), "cpu");
        }
        if need.memory_bytes > 0 {
            consider((free.memory_bytes / need.memory_bytes).max(0), "memory");
        }
        consider((self.allocatable_pods - self.pods).max(0), "pods");
        let (count, limit) = best.unwrap_or((0, "pods"));
        Fit {
            count,
            limited_by: Some(limit.to_string()),
            excluded: None,
        }
    }
}

impl NodeCapacity {
    /// Why one more pod of `template` cannot be scheduled here, in the scheduler's words
    /// (`Insufficient cpu`, `node(s) were unschedulable`, ...); empty when it fits.
    pub fn shortfalls(&self, template: &PodSpec) -> Vec<String> {
        if let Some((_, scheduler)) = self.exclusion(template) {
            return vec![scheduler];
        }
        let need = pod_resources(template).requests;
        let free = self.free();
        let mut out = Vec::new();
        if need.cpu_millis > 0 && need.cpu_millis > free.cpu_millis {
            out.push("Insufficient cpu".to_string());
        }
        if need.memory_bytes > 0 && need.memory_bytes > free.memory_bytes {
            out.push("Insufficient memory".to_string());
        }
        if self.pods >= self.allocatable_pods {
            out.push("Too many pods".to_string());
        }
        out
    }

    /// Counts one more pod with these resources on this node.
    pub fn add_pod(&mut self, r: PodResources) {
        self.requested = self.requested.add(r.requests);
        self.limits = self.limits.add(r.limits);
        self.pods += 1;
    }

    /// A node of the same size, labels and taints, Ready, schedulable and empty: what "one more
    /// node like this one" would offer.
    pub fn empty_like(&self) -> NodeCapacity {
        NodeCapacity {
            ready: true,
            unschedulable: false,
            pressure: Vec::new(),
            requested: Amount::default(),
            limits: Amount::default(),
            pods: 0,
            ..self.clone()
        }
    }

    /// The default scheduler's preference for a node once `need` is added (higher is better):
    /// least-allocated plus balanced-allocation, the two resource scores of kube-scheduler 1.20.
    fn score(&self, need: Amount) -> i64 {
        let a = self.allocatable;
        let r = self.requested.add(need);
        let frac = |used: i64, total: i64| {
            if total <= 0 {
                1.0
            } else {
                #[allow(clippy::cast_precision_loss)]
                let f = used as f64 / total as f64;
                f.clamp(0.0, 1.0)
            }
        };
        let (fc, fm) = (
            frac(r.cpu_millis, a.cpu_millis),
            frac(r.memory_bytes, a.memory_bytes),
        );
        let least = ((1.0 - fc) + (1.0 - fm)) / 2.0 * 100.0;
        let balanced = (1.0 - (fc - fm).abs()) * 100.0;
        #[allow(clippy::cast_possible_truncation)]
        let total = (least + balanced).round() as i64;
        total
    }
}

/// Where new pods of a template would go, placed one by one as the scheduler would: each on the
/// node it prefers among those where it fits, that node's free resources shrinking each time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// One entry per pod that fits, in order.
    pub placed: Vec<Placed>,
    /// How many would stay Pending.
    pub pending: i64,
    /// The resources that run out for the first pod that does not fit on the most nodes (`cpu`,
    /// `memory`, `pods`; several when tied); empty when every pod fits or when no node is
    /// eligible at all.
    pub limited_by: Vec<String>,
    /// For the first pod that does not fit, the scheduler's summary, e.g.
    /// `0/2 nodes are available: 2 Insufficient cpu.`
    pub reason: Option<String>,
}

/// One new pod's predicted node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub node: String,
    /// What that node has left to request once the pod is there.
    pub free_after: Amount,
}

/// Places `count` pods of `template` across `nodes` (see [`Placement`]). Nodes are considered in
/// name order, so ties go to the first name (the real scheduler breaks ties at random).
pub fn place(nodes: &[NodeCapacity], template: &PodSpec, count: i64) -> Placement {
    let mut nodes: Vec<NodeCapacity> = nodes.to_vec();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let res = pod_resources(template);
    let mut placed = Vec::new();
    for i in 0..count.max(0) {
        let best = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.shortfalls(template).is_empty())
            .max_by(|(ia, a), (ib, b)| {
                a.score(res.requests)
                    .cmp(&b.score(res.requests))
                    .then(ib.cmp(ia))
            })
            .map(|(i, _)| i);
        let Some(idx) = best else {
            let (limited_by, reason) = unschedulable(&nodes, template);
            return Placement {
                placed,
                pending: count - i,
                limited_by,
                reason: Some(reason),
            };
        };
        nodes[idx].add_pod(res);
        placed.push(Placed {
            node: nodes[idx].name.clone(),
            free_after: nodes[idx].free(),
        });
    }
    Placement {
        placed,
        pending: 0,
        limited_by: Vec::new(),
        reason: None,
    }
}

/// The scheduler's `FitError` message for a pod that fits nowhere, and the resources in it.
fn unschedulable(nodes: &[NodeCapacity], template: &PodSpec) -> (Vec<String>, String) {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for n in nodes {
        for r in n.shortfalls(template) {
            *counts.entry(r).or_default() += 1;
        }
    }
    let mut reasons: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    // kube-scheduler sorts the "count reason" strings.
    reasons.sort();
    let limited: Vec<(&str, i64)> = [
        ("cpu", "Insufficient cpu"),
        ("memory", "Insufficient memory"),
        ("pods", "Too many pods"),
    ]
    .into_iter()
    .filter_map(|(name, key)| counts.get(key).map(|c| (name, *c)))
    .collect();
    // What runs out on the most nodes is the limit: relieving anything else would not help there.
    let most = limited.iter().map(|l| l.1).max().unwrap_or(0);
    (
        limited
            .into_iter()
            .filter(|l| l.1 == most)
            .map(|(n, _)| n.to_string())
            .collect(),
        format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            reasons.join(", ")
        ),
    )
}

/// The answer of [`NodeCapacity::fit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fit {
    pub count: i64,
    /// The resource that runs out first (cpu, memory or pods).
    pub limited_by: Option<String>,
    /// Why no pod can go there at all (NotReady, cordoned, taint, nodeSelector).
    pub excluded: Option<String>,
}

impl Fit {
    fn excluded(why: &str) -> Fit {
        Fit {
            count: 0,
            limited_by: None,
            excluded: Some(why.to_string()),
        }
    }
}

/// Kubernetes' toleration matching (`ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeCondition, NodeSpec, NodeStatus, PodStatus, ResourceRequirements,
    };

    fn res(cpu: &str, mem: &str) -> Option<BTreeMap<String, Quantity>> {
        Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(mem.into())),
        ]))
    }

    fn spec(req: (&str, &str), lim: (&str, &str)) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: res(req.0, req.1),
                    limits: res(lim.0, lim.1),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn pod(s: PodSpec, phase: &str) -> Pod {
        Pod {
            spec: Some(s),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(cpu: &str, mem: &str, ready: bool) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: res(cpu, mem),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn slave() -> PodSpec {
        spec(("1000m", "1Gi"), ("2000m", "2Gi"))
    }

    #[test]
    fn init_containers_and_overhead_count_like_the_scheduler() {
        let mut s = slave();
        s.init_containers = Some(vec![Container {
            name: "init".into(),
            resources: Some(ResourceRequirements {
                requests: res("1500m", "512Mi"),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        s.overhead = res("100m", "0");
        let r = pod_resources(&s);
        assert_eq!(
            r.requests,
            Amount {
                cpu_millis: 1600,
                memory_bytes: 1 << 30
            }
        );
    }

    #[test]
    fn seed_node_with_one_slot_left() {
        // A seed node: MySQL (2000m/4Gi) + master (1000m/1Gi) on 4 CPU / 6148Mi.
        let pods = [
            pod(spec(("2000m", "4Gi"), ("4000m", "8Gi")), "Running"),
            pod(spec(("1000m", "1Gi"), ("3000m", "4Gi")), "Running"),
        ];
        let n = NodeCapacity::new(&node("4", "6148Mi", true), pods.iter());
        assert_eq!(n.requested.cpu_millis, 3000);
        assert_eq!(n.limits.memory_bytes, 12 << 30);
        let fit = n.fit(&slave());
        assert_eq!(fit.count, 1);
        assert_eq!(fit.limited_by.as_deref(), Some("cpu"));
    }

    #[test]
    fn memory_can_be_the_limit() {
        let n = NodeCapacity::new(&node("16", "2Gi", true), std::iter::empty());
        let fit = n.fit(&slave());
        assert_eq!((fit.count, fit.limited_by.as_deref()), (2, Some("memory")));
    }

    #[test]
    fn finished_pods_free_their_resources() {
        assert!(!pod_is_active(&pod(slave(), "Succeeded")));
        assert!(pod_is_active(&pod(slave(), "Pending")));
    }

    #[test]
    fn not_ready_cordoned_tainted_and_selected_nodes_are_excluded() {
        let n = NodeCapacity::new(&node("4", "8Gi", false), std::iter::empty());
        assert!(n.fit(&slave()).excluded.unwrap().contains("NotReady"));

        let mut cordoned = node("4", "8Gi", true);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let n = NodeCapacity::new(&cordoned, std::iter::empty());
        assert!(n.fit(&slave()).excluded.unwrap().contains("cordoned"));

        let mut tainted = node("4", "8Gi", true);
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        }]);
        let n = NodeCapacity::new(&tainted, std::iter::empty());
        assert!(
            n.fit(&slave())
                .excluded
                .unwrap()
                .contains("dedicated=db:NoSchedule")
        );
        let mut tolerant = slave();
        tolerant.tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("db".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]);
        assert_eq!(n.fit(&tolerant).count, 4);

        let mut selective = slave();
        selective.node_selector = Some(BTreeMap::from([("pool".to_string(), "api".to_string())]));
        let n = NodeCapacity::new(&node("4", "8Gi", true), std::iter::empty());
        assert!(n.fit(&selective).excluded.unwrap().contains("pool=api"));
    }

    fn named(name: &str, cpu: &str, mem: &str, pods: &[Pod]) -> NodeCapacity {
        let mut n = node(cpu, mem, true);
        n.metadata.name = Some(name.into());
        NodeCapacity::new(&n, pods.iter())
    }

    /// The seed's cluster: two 4-CPU / 6148Mi nodes, MySQL and the master on one, Redis and the
    /// three slaves on the other: 7000m of 8000m requested, 1000m free on `node-a`.
    fn seed_nodes() -> Vec<NodeCapacity> {
        let mysql = pod(spec(("2000m", "4Gi"), ("4000m", "8Gi")), "Running");
        let redis = pod(spec(("1000m", "2Gi"), ("2000m", "4Gi")), "Running");
        let master = pod(spec(("1000m", "1Gi"), ("3000m", "4Gi")), "Running");
        let s = pod(slave(), "Running");
        vec![
            named("node-a", "4", "6148Mi", &[mysql, master]),
            named("node-b", "4", "6148Mi", &[redis, s.clone(), s.clone(), s]),
        ]
    }

    #[test]
    fn two_new_slaves_on_the_seed_cluster_one_fits_cpu_runs_out() {
        let p = place(&seed_nodes(), &slave(), 2);
        assert_eq!(p.placed.len(), 1);
        assert_eq!(p.placed[0].node, "node-a");
        assert_eq!(p.placed[0].free_after.cpu_millis, 0);
        assert_eq!(p.pending, 1);
        assert_eq!(p.limited_by, vec!["cpu".to_string()]);
        // node-a is then out of memory too (4Mi left), node-b only out of CPU: CPU is the limit.
        assert_eq!(
            p.reason.as_deref(),
            Some("0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.")
        );
    }

    #[test]
    fn placement_prefers_the_least_allocated_node_and_spreads() {
        let nodes = vec![
            named("a", "4", "8Gi", &[pod(slave(), "Running")]),
            named("b", "4", "8Gi", &[]),
        ];
        let p = place(&nodes, &slave(), 3);
        let order: Vec<&str> = p.placed.iter().map(|x| x.node.as_str()).collect();
        assert_eq!(order, ["b", "a", "b"]);
        assert_eq!(p.pending, 0);
        assert!(p.reason.is_none() && p.limited_by.is_empty());
    }

    #[test]
    fn placement_reports_memory_and_exclusions_like_the_scheduler() {
        let mut cordoned = node("16", "16Gi", true);
        cordoned.metadata.name = Some("z".into());
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let nodes = vec![
            named("a", "16", "2Gi", &[]),
            NodeCapacity::new(&cordoned, std::iter::empty()),
        ];
        let p = place(&nodes, &slave(), 3);
        assert_eq!(p.placed.len(), 2);
        assert_eq!(p.pending, 1);
        assert_eq!(p.limited_by, vec!["memory".to_string()]);
        assert_eq!(
            p.reason.as_deref(),
            Some("0/2 nodes are available: 1 Insufficient memory, 1 node(s) were unschedulable.")
        );
    }

    #[test]
    fn an_empty_node_like_a_seed_node_holds_four_slaves() {
        let empty = seed_nodes()[1].empty_like();
        assert_eq!((empty.pods, empty.requested), (0, Amount::default()));
        let fit = empty.fit(&slave());
        assert_eq!((fit.count, fit.limited_by.as_deref()), (4, Some("cpu")));
    }

    #[test]
    fn shortfalls_name_every_missing_resource() {
        let n = named("a", "500m", "512Mi", &[]);
        assert_eq!(
            n.shortfalls(&slave()),
            vec![
                "Insufficient cpu".to_string(),
                "Insufficient memory".to_string()
            ]
        );
        assert!(named("b", "4", "8Gi", &[]).shortfalls(&slave()).is_empty());
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let exists_all = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exists_all, &taint));
        let wrong_effect = Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_effect, &taint));
        let wrong_value = Toleration {
            key: Some("k".into()),
            value: Some("w".into()),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_value, &taint));
    }
}
