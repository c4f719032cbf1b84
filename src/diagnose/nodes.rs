//! Node checks: NotReady, pressure conditions, cordoned nodes; requests against allocatable per
//! node and in total with the seed's thresholds (CPU requests > 80 %, memory > 85 %); usage
//! against the seed's tuning rules when metrics.k8s.io is served, for each node and for each pod
//! of the deployment against its limits; headroom in slaves.

use k8s_openapi::api::core::v1::PodSpec;

use super::finding::{Component, Finding, Severity};
use crate::capacity::{Amount, NodeCapacity};
use crate::quantity::{format_bytes, format_cpu, percent};

/// The seed's thresholds (性能调优建议 and the capacity figures of 资源总计).
#[derive(Debug, Clone)]
pub struct NodeThresholds {
    pub cpu_requests_percent: i64,
    pub memory_requests_percent: i64,
    pub cpu_usage_percent: i64,
    pub memory_usage_percent: i64,
}

impl Default for NodeThresholds {
    fn default() -> Self {
        NodeThresholds {
            cpu_requests_percent: 80,
            memory_requests_percent: 85,
            cpu_usage_percent: 80,
            memory_usage_percent: 85,
        }
    }
}

/// Usage of one node from metrics.k8s.io.
#[derive(Debug, Clone)]
pub struct NodeUsage {
    pub name: String,
    pub usage: Amount,
}

/// Usage of one pod of the deployment from metrics.k8s.io, with its limits.
#[derive(Debug, Clone)]
pub struct PodUsage {
    pub name: String,
    pub usage: Amount,
    /// Sum of its containers' limits (0 where a container has none).
    pub limits: Amount,
}

/// The seed's tuning rules applied to each pod: CPU usage above `cpu_usage_percent` of its CPU
/// limit, memory above `memory_usage_percent` of its memory limit (a pod without a limit is
/// not judged on that resource).
pub fn check_pod_usage(pods: &[PodUsage], th: &NodeThresholds) -> Vec<Finding> {
    type Show = fn(i64) -> String;
    let mut out = Vec::new();
    for p in pods {
        let rules: [(&str, &str, i64, i64, Show, i64, &str); 2] = [
            (
                "nodes.pod-cpu-usage",
                "CPU",
                p.usage.cpu_millis,
                p.limits.cpu_millis,
                format_cpu,
                th.cpu_usage_percent,
                "newapi-ops runbook run high-cpu (scale out the slaves or raise CPU limits)",
            ),
            (
                "nodes.pod-memory-usage",
                "memory",
                p.usage.memory_bytes,
                p.limits.memory_bytes,
                format_bytes,
                th.memory_usage_percent,
                "newapi-ops runbook run high-memory \
                 (raise memory limits, look for a leak; OOMKilled is next)",
            ),
        ];
        for (check, what, used, limit, show, threshold, next) in rules {
            let Some(pct) = percent(used, limit).filter(|pct| *pct > threshold) else {
                continue;
            };
            out.push(
                Finding::new(
                    Component::Nodes,
                    check,
                    Severity::Warning,
                    format!("pod {} uses {pct}% of its {what} limit", p.name),
                )
                .subject(format!("pod/{}", p.name))
                .evidence(format!(
                    "usage {} of limit {} (tuning rule: {what} > {threshold}%)",
                    show(used),
                    show(limit)
                ))
                .next(next.to_string())
                .cause(format!("{what} usage above {threshold}% of the limit"))
                .weight(pct),
            );
        }
    }
    out
}

/// Checks the nodes. `usage` is None when metrics.k8s.io is not served.
pub fn check_nodes(
    nodes: &[NodeCapacity],
    slave_template: Option<&PodSpec>,
    usage: Option<&[NodeUsage]>,
    th: &NodeThresholds,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let f = |check: &str, sev: Severity, node: &str, summary: String| {
        Finding::new(Component::Nodes, check, sev, summary).subject(format!("node/{node}"))
    };
    if nodes.is_empty() {
        out.push(Finding::new(
            Component::Nodes,
            "nodes.none",
            Severity::Critical,
            "the cluster has no nodes",
        ));
        return out;
    }
    for n in nodes {
        if !n.ready {
            out.push(
                f(
                    "nodes.not-ready",
                    Severity::Critical,
                    &n.name,
                    format!("node {} is NotReady: its pods are not served", n.name),
                )
                .cause("node NotReady")
                .evidence("condition Ready is not True".to_string())
                .next("check the kubelet on that node; pods there will be evicted"),
            );
        }
        for p in &n.pressure {
            out.push(
                f("nodes.pressure", Severity::Critical, &n.name, format!("node {} reports {p}", n.name))
                    .cause(format!("node reports {p}"))
                    .evidence(format!("condition {p}=True"))
                    .next("free resources on the node or move pods away; newapi-ops runbook run resource-shortage"),
            );
        }
        if n.unschedulable {
            out.push(
                f(
                    "nodes.cordoned",
                    Severity::Warning,
                    &n.name,
                    format!("node {} is cordoned: no new pods go there", n.name),
                )
                .cause("node cordoned")
                .evidence("spec.unschedulable: true".to_string())
                .next(format!(
                    "kubectl uncordon {} when maintenance is over",
                    n.name
                )),
            );
        }
        let cpu = percent(n.requested.cpu_millis, n.allocatable.cpu_millis).unwrap_or(0);
        let mem = percent(n.requested.memory_bytes, n.allocatable.memory_bytes).unwrap_or(0);
        if cpu > th.cpu_requests_percent || mem > th.memory_requests_percent {
            out.push(
                f(
                    "nodes.requests",
                    Severity::Warning,
                    &n.name,
                    format!("node {} is {cpu}% CPU / {mem}% memory requested", n.name),
                )
                .cause(format!(
                    "requests above {}% CPU or {}% memory of allocatable",
                    th.cpu_requests_percent, th.memory_requests_percent
                ))
                .weight(cpu.max(mem))
                .evidence(format!(
                    "requests cpu {} of {}, memory {} of {}",
                    format_cpu(n.requested.cpu_millis),
                    format_cpu(n.allocatable.cpu_millis),
                    format_bytes(n.requested.memory_bytes),
                    format_bytes(n.allocatable.memory_bytes)
                ))
                .next("newapi-ops nodes; add a node before scaling out"),
            );
        }
    }
    let alloc = Amount::sum(nodes.iter().map(|n| &n.allocatable));
    let req = Amount::sum(nodes.iter().map(|n| &n.requested));
    let cpu = percent(req.cpu_millis, alloc.cpu_millis).unwrap_or(0);
    let mem = percent(req.memory_bytes, alloc.memory_bytes).unwrap_or(0);
    let sev = if cpu > th.cpu_requests_percent || mem > th.memory_requests_percent {
        Severity::Warning
    } else {
        Severity::Ok
    };
    out.push(
        Finding::new(
            Component::Nodes,
            "nodes.total-requests",
            sev,
            format!(
                "cluster requests: CPU {} / {} = {cpu}%, memory {} / {} = {mem}%",
                format_cpu(req.cpu_millis),
                format_cpu(alloc.cpu_millis),
                format_bytes(req.memory_bytes),
                format_bytes(alloc.memory_bytes)
            ),
        )
        .evidence(format!(
            "thresholds: CPU requests > {}%, memory requests > {}%",
            th.cpu_requests_percent, th.memory_requests_percent
        )),
    );
    if let Some(t) = slave_template {
        let fits: Vec<(String, i64)> = nodes
            .iter()
            .map(|n| (n.name.clone(), n.fit(t).count))
            .collect();
        let total: i64 = fits.iter().map(|(_, c)| c).sum();
        let sev = if total == 0 {
            Severity::Warning
        } else {
            Severity::Info
        };
        let mut finding = Finding::new(
            Component::Nodes,
            "nodes.headroom",
            sev,
            crate::units::plural(total, "more slave fits", "more slaves fit"),
        )
        .evidence(headroom_line(&fits));
        if total == 0 {
            finding = finding
                .next("scaling out will leave pods Pending: add a node first; newapi-ops plan");
        }
        out.push(finding);
    }
    match usage {
        None => out.push(
            Finding::new(Component::Nodes, "nodes.metrics", Severity::Info, "metrics.k8s.io is not served: CPU and memory usage not checked")
                .next("install metrics-server to check usage against the tuning rules (CPU > 80 %, memory > 85 %)"),
        ),
        Some(usage) => {
            for u in usage {
                let Some(n) = nodes.iter().find(|n| n.name == u.name) else { continue };
                let cpu = percent(u.usage.cpu_millis, n.allocatable.cpu_millis).unwrap_or(0);
                let mem = percent(u.usage.memory_bytes, n.allocatable.memory_bytes).unwrap_or(0);
                if cpu > th.cpu_usage_percent {
                    out.push(
                        f("nodes.cpu-usage", Severity::Warning, &n.name, format!("node {} uses {cpu}% CPU", n.name))
                            .cause(format!("CPU usage above {}% of allocatable", th.cpu_usage_percent))
                            .weight(cpu)
                            .evidence(format!("usage {} of {}", format_cpu(u.usage.cpu_millis), format_cpu(n.allocatable.cpu_millis)))
                            .next("newapi-ops runbook run high-cpu (scale out the slaves or raise CPU limits)"),
                    );
                }
                if mem > th.memory_usage_percent {
                    out.push(
                        f("nodes.memory-usage", Severity::Warning, &n.name, format!("node {} uses {mem}% memory", n.name))
                            .cause(format!("memory usage above {}% of allocatable", th.memory_usage_percent))
                            .weight(mem)
                            .evidence(format!("usage {} of {}", format_bytes(u.usage.memory_bytes), format_bytes(n.allocatable.memory_bytes)))
                            .next("newapi-ops runbook run high-memory (raise memory limits, look for a leak)"),
                    );
                }
            }
        }
    }
    out
}

/// `node-1: 3, node-2: 1`; with many nodes the ten with the most room and how many others
/// (and how many of those have none).
fn headroom_line(fits: &[(String, i64)]) -> String {
    const SHOWN: usize = 10;
    let mut sorted: Vec<&(String, i64)> = fits.iter().collect();
    if fits.len() > SHOWN {
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    let mut line = sorted
        .iter()
        .take(SHOWN)
        .map(|(n, c)| format!("{n}: {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    if fits.len() > SHOWN {
        let rest = &sorted[SHOWN..];
        let full = rest.iter().filter(|(_, c)| *c == 0).count();
        line.push_str(&format!(
            " and {} more {} ({full} with room for none)",
            rest.len(),
            if rest.len() == 1 { "node" } else { "nodes" }
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(cpu_millis: i64, memory_mi: i64) -> Amount {
        Amount {
            cpu_millis,
            memory_bytes: memory_mi << 20,
        }
    }

    #[test]
    fn headroom_of_many_nodes_names_the_roomiest() {
        let few: Vec<(String, i64)> = vec![("a".into(), 1), ("b".into(), 0)];
        assert_eq!(headroom_line(&few), "a: 1, b: 0");
        let many: Vec<(String, i64)> = (0..100)
            .map(|i| (format!("n{i:03}"), i64::from(i % 3 == 0)))
            .collect();
        let line = headroom_line(&many);
        assert!(line.starts_with("n000: 1, n003: 1"), "{line}");
        assert!(
            line.ends_with(" and 90 more nodes (66 with room for none)"),
            "{line}"
        );
    }

    #[test]
    fn pods_above_the_tuning_rules_of_their_limits() {
        let pods = [
            PodUsage {
                name: "hot".into(),
                usage: amount(1900, 1900),
                limits: amount(2000, 2048),
            },
            PodUsage {
                name: "calm".into(),
                usage: amount(1600, 1700),
                limits: amount(2000, 2048),
            },
            PodUsage {
                name: "unlimited".into(),
                usage: amount(4000, 9000),
                limits: Amount::default(),
            },
        ];
        let out = check_pod_usage(&pods, &NodeThresholds::default());
        let ids: Vec<(&str, Option<&str>)> = out
            .iter()
            .map(|f| (f.check.as_str(), f.subject.as_deref()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("nodes.pod-cpu-usage", Some("pod/hot")),
                ("nodes.pod-memory-usage", Some("pod/hot")),
            ],
            "80% CPU and 83% memory are not above the rules; no limit, no judgement"
        );
        assert!(out[0].summary.contains("95%"), "{}", out[0].summary);
        assert!(out[1].summary.contains("93%"), "{}", out[1].summary);
    }
}
