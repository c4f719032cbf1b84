//! Capacity arithmetic, free of I/O: what pods request against what nodes can give, as
//! `kubectl describe node` ("Allocated resources") and the scheduler's resource fit see it, and
//! how many more pods of a template fit on each node.

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
        for pod in pods {
            if let Some(spec) = &pod.spec {
                let r = pod_resources(spec);
                requested = requested.add(r.requests);
                limits = limits.add(r.limits);
                count += 1;
            }
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

    /// How many more pods of `template` fit here, and what stops the next one.
    pub fn fit(&self, template: &PodSpec) -> Fit {
        if !self.ready {
            return Fit::excluded("node is NotReady");
        }
        if self.unschedulable {
            return Fit::excluded("node is cordoned (SchedulingDisabled)");
        }
        if let Some(sel) = &template.node_selector
            && let Some((k, v)) = sel.iter().find(|(k, v)| self.labels.get(*k) != Some(*v))
        {
            return Fit::excluded(&format!("nodeSelector {k}={v} does not match"));
        }
        let tolerations = template.tolerations.clone().unwrap_or_default();
        if let Some(t) = self.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !tolerations.iter().any(|tol| tolerates(tol, t))
        }) {
            return Fit::excluded(&format!(
                "taint {}{}:{} is not tolerated",
                t.key,
                t.value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                t.effect
            ));
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
