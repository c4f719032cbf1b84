//! What the sandbox's metrics server reports, decided from the pods and nodes the API server
//! knows: a pod's usage comes from its annotation `sandbox.newapi-ops.io/usage`
//! (`cpu=900m,memory=1900Mi`) or is a small default per container; a node's usage is the sum of
//! its running pods' plus a little for the system. The documents are metrics.k8s.io/v1beta1's
//! (`NodeMetrics`, `PodMetrics` and their lists, `APIResourceList`), CPU in nanocores.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::fault::USAGE_ANNOTATION;
use newapi_ops_quantity::{parse_cpu_nanos, parse_value};

/// The group/version served.
pub const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";
/// The window every figure is said to cover (metrics-server's default).
pub const WINDOW: &str = "30s";

/// Usage of a container without an annotation on its pod.
pub const DEFAULT_CONTAINER: Usage = Usage {
    nanocores: 15_000_000,
    bytes: 64 << 20,
};
/// What a node uses beyond its pods (system daemons, the kubelet).
pub const NODE_OVERHEAD: Usage = Usage {
    nanocores: 120_000_000,
    bytes: 480 << 20,
};

/// CPU in nanocores and memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub nanocores: i64,
    pub bytes: i64,
}

impl Usage {
    fn plus(self, other: Usage) -> Usage {
        Usage {
            nanocores: self.nanocores.saturating_add(other.nanocores),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }

    /// `{"cpu": "250m", "memory": "512Mi"}`.
    pub fn to_json(self) -> Value {
        json!({"cpu": format_nanocores(self.nanocores), "memory": format_memory(self.bytes)})
    }
}

/// Parses the annotation's value: `cpu=Q,memory=Q` in any order, either optional. A missing one
/// is `None` (the default is used for it).
pub fn parse_annotation(value: &str) -> Result<(Option<i64>, Option<i64>), String> {
    let (mut cpu, mut memory) = (None, None);
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, q) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not key=quantity"))?;
        match key.trim() {
            "cpu" => cpu = Some(parse_cpu_nanos(q.trim()).map_err(|e| e.to_string())?),
            "memory" => memory = Some(parse_value(q.trim()).map_err(|e| e.to_string())?),
            other => return Err(format!("unknown key {other:?} (use cpu and memory)")),
        }
    }
    if cpu.is_some_and(|c| c < 0) || memory.is_some_and(|m| m < 0) {
        return Err("usage cannot be negative".into());
    }
    Ok((cpu, memory))
}

/// Each container's usage for a pod: the annotation's total shared evenly among its containers
/// (the first takes the remainder), else the default per container. A malformed annotation
/// counts as absent (and is logged).
pub fn pod_containers(pod: &Pod) -> Vec<(String, Usage)> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Vec::new();
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(USAGE_ANNOTATION))
        .and_then(|v| match parse_annotation(v) {
            Ok(u) => Some(u),
            Err(e) => {
                tracing::warn!(
                    pod = pod.metadata.name.as_deref().unwrap_or(""),
                    "ignoring {USAGE_ANNOTATION}={v:?}: {e}"
                );
                None
            }
        })
        .unwrap_or((None, None));
    let n = i64::try_from(names.len()).unwrap_or(i64::MAX);
    let share = |total: Option<i64>, default: i64, first: bool| match total {
        Some(t) => t / n + if first { t % n } else { 0 },
        None => default,
    };
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let first = i == 0;
            let usage = Usage {
                nanocores: share(annotated.0, DEFAULT_CONTAINER.nanocores, first),
                bytes: share(annotated.1, DEFAULT_CONTAINER.bytes, first),
            };
            (name, usage)
        })
        .collect()
}

/// Whether metrics are reported for the pod: it runs on a node.
pub fn is_measured(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Whether metrics are reported for the node: it is Ready (a kubelet answers for it).
pub fn node_is_measured(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The `PodMetrics` document of a measured pod.
pub fn pod_metrics(pod: &Pod, now: jiff::Timestamp) -> Value {
    let containers: Vec<Value> = pod_containers(pod)
        .into_iter()
        .map(|(name, u)| json!({"name": name, "usage": u.to_json()}))
        .collect();
    json!({
        "metadata": {
            "name": pod.metadata.name,
            "namespace": pod.metadata.namespace,
            "labels": pod.metadata.labels,
            "creationTimestamp": now.to_string(),
        },
        "timestamp": now.to_string(),
        "window": WINDOW,
        "containers": containers,
    })
}

/// A node's usage: its measured pods' plus [`NODE_OVERHEAD`].
pub fn node_usage<'a>(node: &str, pods: impl IntoIterator<Item = &'a Pod>) -> Usage {
    pods.into_iter()
        .filter(|p| {
            is_measured(p) && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        })
        .flat_map(pod_containers)
        .fold(NODE_OVERHEAD, |acc, (_, u)| acc.plus(u))
}

/// The `NodeMetrics` document of a node.
pub fn node_metrics<'a>(
    node: &Node,
    pods: impl IntoIterator<Item = &'a Pod>,
    now: jiff::Timestamp,
) -> Value {
    let name = node.metadata.name.clone().unwrap_or_default();
    json!({
        "metadata": {
            "name": name,
            "labels": node.metadata.labels,
            "creationTimestamp": now.to_string(),
        },
        "timestamp": now.to_string(),
        "window": WINDOW,
        "usage": node_usage(&name, pods).to_json(),
    })
}

/// A list document (`NodeMetricsList`, `PodMetricsList`).
pub fn list(kind: &str, self_link: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": GROUP_VERSION,
        "metadata": {"selfLink": self_link},
        "items": items,
    })
}

/// One item with its kind and apiVersion (a GET of a single object).
pub fn single(kind: &str, mut item: Value) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.insert("kind".into(), kind.into());
        o.insert("apiVersion".into(), GROUP_VERSION.into());
    }
    item
}

/// The discovery document of metrics.k8s.io/v1beta1.
pub fn discovery() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// A `Status` failure document, as the API server writes them.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

/// An equality-based label selector (`a=b,c!=d`); other forms are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<(String, String, bool)>);

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut out = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, true)
            } else {
                return Err(format!(
                    "unsupported label selector term {term:?} (only key=value and key!=value)"
                ));
            };
            out.push((key.trim().to_string(), value.trim().to_string(), equal));
        }
        Ok(Selector(out))
    }

    pub fn matches(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        self.0.iter().all(|(k, v, equal)| {
            let actual = labels.and_then(|l| l.get(k));
            (actual == Some(v)) == *equal
        })
    }
}

/// Nanocores as metrics-server writes them: whole millicores as `250m`, else `123456n`.
pub fn format_nanocores(n: i64) -> String {
    if n % 1_000_000 == 0 {
        format!("{}m", n / 1_000_000)
    } else {
        format!("{n}n")
    }
}

/// Bytes as `512Mi` when whole mebibytes, else `1234Ki` or plain bytes.
pub fn format_memory(b: i64) -> String {
    if b != 0 && b % (1 << 20) == 0 {
        format!("{}Mi", b >> 20)
    } else if b % (1 << 10) == 0 {
        format!("{}Ki", b >> 10)
    } else {
        b.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, containers: &[&str], usage: Option<&str>) -> Pod {
        let mut annotations = serde_json::Map::new();
        if let Some(u) = usage {
            annotations.insert(USAGE_ANNOTATION.into(), u.into());
        }
        let cs: Vec<Value> = containers
            .iter()
            .map(|c| json!({"name": c, "image": "x"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "new-api", "labels": {"app": "new-api"}, "annotations": annotations},
            "spec": {"nodeName": node, "containers": cs},
            "status": {"phase": "Running"},
        }))
        .unwrap()
    }

    #[test]
    fn annotation_values() {
        assert_eq!(
            parse_annotation("cpu=900m,memory=1900Mi"),
            Ok((Some(900_000_000), Some(1900 << 20)))
        );
        assert_eq!(
            parse_annotation(" memory = 1Gi "),
            Ok((None, Some(1 << 30)))
        );
        assert!(parse_annotation("cpu=lots").is_err());
        assert!(parse_annotation("disk=1Gi").is_err());
        assert!(parse_annotation("cpu").is_err());
        assert!(parse_annotation("cpu=-1").is_err());
    }

    #[test]
    fn annotated_usage_is_shared_among_containers() {
        let p = pod(
            "a",
            "n1",
            &["app", "sidecar"],
            Some("cpu=901m,memory=1900Mi"),
        );
        let cs = pod_containers(&p);
        assert_eq!(cs[0].1.nanocores + cs[1].1.nanocores, 901_000_000);
        assert_eq!(cs[0].1.bytes + cs[1].1.bytes, 1900 << 20);
        let plain = pod("b", "n1", &["app"], None);
        assert_eq!(pod_containers(&plain)[0].1, DEFAULT_CONTAINER);
        let bad = pod("c", "n1", &["app"], Some("cpu=oops"));
        assert_eq!(pod_containers(&bad)[0].1, DEFAULT_CONTAINER);
    }

    #[test]
    fn node_usage_sums_its_running_pods() {
        let a = pod("a", "n1", &["app"], Some("cpu=3"));
        let b = pod("b", "n1", &["app"], None);
        let elsewhere = pod("c", "n2", &["app"], Some("cpu=2"));
        let mut pending = pod("d", "n1", &["app"], Some("cpu=1"));
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let u = node_usage("n1", [&a, &b, &elsewhere, &pending]);
        assert_eq!(
            u.nanocores,
            3_000_000_000 + DEFAULT_CONTAINER.nanocores + NODE_OVERHEAD.nanocores
        );
        assert_eq!(
            u.bytes,
            DEFAULT_CONTAINER.bytes * 2 + NODE_OVERHEAD.bytes,
            "a's memory is the default"
        );
    }

    #[test]
    fn documents_have_the_metrics_api_shape() {
        let now: jiff::Timestamp = "2026-11-25T04:09:18Z".parse().unwrap();
        let p = pod("a", "n1", &["app"], Some("cpu=250m,memory=512Mi"));
        let m = pod_metrics(&p, now);
        assert_eq!(m["containers"][0]["usage"]["cpu"], "250m");
        assert_eq!(m["containers"][0]["usage"]["memory"], "512Mi");
        assert_eq!(m["window"], "30s");
        let l = list("PodMetricsList", "/x", vec![m]);
        assert_eq!(l["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(discovery()["resources"][0]["kind"], "NodeMetrics");
    }

    #[test]
    fn quantities_are_written_as_metrics_server_does() {
        assert_eq!(format_nanocores(250_000_000), "250m");
        assert_eq!(format_nanocores(123_456), "123456n");
        assert_eq!(format_memory(512 << 20), "512Mi");
        assert_eq!(format_memory(1234 << 10), "1234Ki");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(0), "0Ki");
    }

    #[test]
    fn equality_selectors() {
        let s = Selector::parse("app=new-api,tier!=db").unwrap();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("app".to_string(), "new-api".to_string());
        assert!(s.matches(Some(&labels)));
        labels.insert("tier".to_string(), "db".to_string());
        assert!(!s.matches(Some(&labels)));
        assert!(Selector::parse("app in (a,b)").is_err());
        assert!(Selector::default().matches(None));
    }
}
