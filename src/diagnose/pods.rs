//! Pod and Deployment checks, over what one list of pods, events and Deployments shows:
//! CrashLoopBackOff (with the last termination), image pull failures, missing Secret/ConfigMap
//! keys, Pending with the scheduler's reason, Evicted, running-but-unready with the probe events,
//! restarts, OOMKilled in the last state, stuck Terminating, and Deployments that do not progress.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};

use super::finding::{Component, Finding, Severity};
use crate::units::{age as human_age, seconds_since};

/// Thresholds of the pod checks.
#[derive(Debug, Clone)]
pub struct PodThresholds {
    /// Restarts above this are a warning.
    pub restarts: i32,
    /// A pod still Terminating this long past its grace period is stuck.
    pub terminating_grace_secs: i64,
    /// A Pending pod younger than this is just starting (info, not a warning).
    pub pending_grace_secs: i64,
}

impl Default for PodThresholds {
    fn default() -> Self {
        PodThresholds {
            restarts: 5,
            terminating_grace_secs: 60,
            pending_grace_secs: 30,
        }
    }
}

/// Events grouped by the pod they are about, newest last.
pub fn events_by_pod(events: &[Event]) -> HashMap<String, Vec<&Event>> {
    let mut map: HashMap<String, Vec<&Event>> = HashMap::new();
    for e in events {
        if e.involved_object.kind.as_deref() == Some("Pod")
            && let Some(name) = &e.involved_object.name
        {
            map.entry(name.clone()).or_default().push(e);
        }
    }
    for list in map.values_mut() {
        list.sort_by_key(|e| event_time(e));
    }
    map
}

fn event_time(e: &Event) -> i64 {
    e.last_timestamp
        .as_ref()
        .or(e.first_timestamp.as_ref())
        .map(|t| t.0.as_second())
        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        })
        .unwrap_or(0)
}

fn describe_event(e: &Event) -> String {
    let count = e.count.unwrap_or(1);
    let times = if count > 1 {
        format!(" (x{count})")
    } else {
        String::new()
    };
    format!(
        "event {}{}: {}",
        e.reason.as_deref().unwrap_or("?"),
        times,
        e.message.as_deref().unwrap_or("").trim()
    )
}

/// The newest event of the pod with one of `reasons`.
fn latest<'a>(events: Option<&Vec<&'a Event>>, reasons: &[&str]) -> Option<&'a Event> {
    events?
        .iter()
        .rev()
        .find(|e| e.reason.as_deref().is_some_and(|r| reasons.contains(&r)))
        .copied()
}

/// Checks every pod; `role_of` names the pod's role for the next steps. `healthy_elsewhere`
/// pods of the deployment were found healthy as they were listed (diagnose keeps only a compact
/// record of those): they count as checked and healthy.
pub fn check_pods(
    pods: &[Pod],
    healthy_elsewhere: usize,
    events: &[Event],
    thresholds: &PodThresholds,
    role_of: impl Fn(&Pod) -> Option<&'static str>,
) -> Vec<Finding> {
    let by_pod = events_by_pod(events);
    let mut out = Vec::new();
    let mut healthy = healthy_elsewhere;
    let mut considered = healthy_elsewhere;
    for pod in pods {
        let Some(role) = role_of(pod) else { continue };
        considered += 1;
        let before = out.len();
        check_pod(
            pod,
            role,
            by_pod.get(pod.metadata.name.as_deref().unwrap_or("")),
            thresholds,
            &mut out,
        );
        if out[before..].iter().all(|f| f.severity <= Severity::Info) {
            healthy += 1;
        }
    }
    if considered > 0 && healthy == considered {
        out.push(Finding::new(
            Component::Pods,
            "pods.healthy",
            Severity::Ok,
            format!("all {considered} pods are running and ready"),
        ));
    } else if considered == 0 {
        out.push(Finding::new(
            Component::Pods,
            "pods.none",
            Severity::Critical,
            "no New-API, MySQL or Redis pods in the namespace",
        )
        .next("newapi-ops pods; check the namespace (-n) and the workload selectors in newapi-ops.toml"));
    }
    out
}

fn check_pod(
    pod: &Pod,
    role: &str,
    events: Option<&Vec<&Event>>,
    th: &PodThresholds,
    out: &mut Vec<Finding>,
) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_default();
    let f = |check: &str, sev: Severity, summary: String| {
        Finding::new(Component::Pods, check, sev, summary).subject(format!("pod/{name}"))
    };
    if phase == "Succeeded" {
        return;
    }
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
        let overdue = seconds_since(&deleted.0);
        if overdue > th.terminating_grace_secs {
            let mut finding = f(
                "pods.terminating",
                Severity::Warning,
                format!(
                    "{role} pod stuck Terminating for {} past its deletion time",
                    human_age(overdue)
                ),
            )
            .cause(format!("{role} pod stuck Terminating"))
            .weight(overdue)
            .evidence(format!(
                "metadata.deletionTimestamp: {} (grace period {grace}s)",
                deleted.0
            ));
            if let Some(fin) = pod.metadata.finalizers.as_ref().filter(|f| !f.is_empty()) {
                finding = finding.evidence(format!("metadata.finalizers: {}", fin.join(", ")));
            }
            out.push(finding.next(format!(
                "check the node {} is alive; if it is gone: newapi-ops runbook run pod-startup-failure (pod.delete with force)",
                pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
            )));
        }
        return;
    }
    if phase == "Failed" && status.reason.as_deref() == Some("Evicted") {
        out.push(
            f("pods.evicted", Severity::Warning, format!("{role} pod was evicted"))
                .cause(format!("{role} pod evicted: {}", eviction_cause(status.message.as_deref().unwrap_or(""))))
                .evidence(format!("status.message: {}", status.message.clone().unwrap_or_default()))
                .next("newapi-ops nodes (the node ran short of memory or disk); delete the evicted pod; runbook resource-shortage"),
        );
        return;
    }
    if phase == "Pending"
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
    {
        let age = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| seconds_since(&t.0));
        let sched = latest(events, &["FailedScheduling"]);
        let reason = sched.and_then(|e| e.message.clone()).or_else(|| {
            status
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "PodScheduled")?
                .message
                .clone()
        });
        let sev = if age < th.pending_grace_secs && reason.is_none() {
            Severity::Info
        } else {
            Severity::Critical
        };
        let cause = reason
            .as_deref()
            .map(scheduling_cause)
            .unwrap_or("not scheduled yet");
        let mut finding = f(
            "pods.pending",
            sev,
            format!("{role} pod Pending for {}: {cause}", human_age(age)),
        )
        .cause(format!(
            "{role} pod Pending: {}",
            pending_cause(reason.as_deref())
        ))
        .weight(age);
        if let Some(e) = sched {
            finding = finding.evidence(describe_event(e));
        } else if let Some(r) = &reason {
            finding = finding.evidence(format!("condition PodScheduled: {r}"));
        }
        let next = if cause.contains("PersistentVolumeClaim") {
            "kubectl get pvc -n <namespace> (bind or provision the volume); runbook pod-startup-failure"
        } else if cause.contains("taint") {
            "the nodes' taints are not tolerated: add a toleration or untaint a node; newapi-ops nodes"
        } else {
            "newapi-ops nodes (see how much is free); newapi-ops runbook run resource-shortage"
        };
        out.push(finding.next(next));
        return;
    }
    let spec_containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = status.container_statuses.clone().unwrap_or_default();
    let mut problem = false;
    for cs in &statuses {
        let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
        let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let last_text = last.map(|t| {
            format!(
                "lastState.terminated: {} exit {}{}",
                t.reason.as_deref().unwrap_or("?"),
                t.exit_code,
                t.finished_at
                    .as_ref()
                    .map(|x| format!(" at {}", x.0))
                    .unwrap_or_default()
            )
        });
        match waiting.and_then(|w| w.reason.as_deref()) {
            Some("CrashLoopBackOff") => {
                problem = true;
                let oom = last.is_some_and(|t| {
                    t.reason.as_deref() == Some("OOMKilled") || t.exit_code == 137
                });
                let how = last
                    .map(|t| {
                        format!(
                            " (last exit: {} {})",
                            t.reason.as_deref().unwrap_or("?"),
                            t.exit_code
                        )
                    })
                    .unwrap_or_default();
                let mut finding = f(
                    "pods.crashloop",
                    Severity::Critical,
                    format!(
                        "{role} pod in CrashLoopBackOff{how}, {} restarts",
                        cs.restart_count
                    ),
                )
                .cause(format!("{role} pod in CrashLoopBackOff{how}"))
                .weight(i64::from(cs.restart_count))
                .evidence(format!(
                    "container {} waiting: CrashLoopBackOff{}",
                    cs.name,
                    waiting
                        .and_then(|w| w.message.clone())
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ));
                if let Some(t) = &last_text {
                    finding = finding.evidence(t.clone());
                }
                out.push(finding.next(if oom {
                    format!("newapi-ops runbook run oomkilled (raise the memory limit of {role}); newapi-ops logs {name} --previous")
                } else {
                    format!("newapi-ops logs {name} --previous; newapi-ops runbook run pod-startup-failure")
                }));
            }
            Some(
                r
                @ ("ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull"),
            ) => {
                problem = true;
                let mut finding = f(
                    "pods.image",
                    Severity::Critical,
                    format!("{role} pod cannot pull its image: {r}"),
                )
                .cause(format!("{role} pod cannot pull {}: {r}", cs.image))
                .evidence(format!("container {} image {}", cs.name, cs.image));
                if let Some(m) = waiting.and_then(|w| w.message.clone()) {
                    finding = finding.evidence(format!("state.waiting.message: {m}"));
                }
                if let Some(e) = latest(events, &["Failed"]) {
                    finding = finding.evidence(describe_event(e));
                }
                out.push(finding.next(
                    "check the image name and tag exist and the registry is reachable (imagePullSecrets); newapi-ops runbook run pod-startup-failure",
                ));
            }
            Some(
                r @ ("CreateContainerConfigError" | "CreateContainerError" | "RunContainerError"),
            ) => {
                problem = true;
                let msg = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
                out.push(
                    f("pods.config-error", Severity::Critical, format!("{role} pod cannot start its container: {r}"))
                        .cause(format!("{role} pod cannot start its container: {r}: {}", msg.trim()))
                        .evidence(format!("container {}: {msg}", cs.name))
                        .next("create the missing Secret/ConfigMap or key the pod refers to; newapi-ops runbook run pod-startup-failure"),
                );
            }
            _ => {}
        }
        if problem {
            continue;
        }
        if let Some(t) = last
            && t.reason.as_deref() == Some("OOMKilled")
        {
            problem = true;
            out.push(
                f(
                    "pods.oomkilled",
                    Severity::Warning,
                    format!(
                        "{role} pod was OOMKilled and restarted ({} restarts)",
                        cs.restart_count
                    ),
                )
                .cause(format!("{role} pod OOMKilled and restarted"))
                .weight(i64::from(cs.restart_count))
                .evidence(last_text.clone().unwrap_or_default())
                .next(
                    "newapi-ops runbook run oomkilled (raise the memory limit or look for a leak)",
                ),
            );
            continue;
        }
        if cs.restart_count > th.restarts {
            problem = true;
            let mut finding = f(
                "pods.restarts",
                Severity::Warning,
                format!("{role} pod restarted {} times", cs.restart_count),
            )
            .cause(format!(
                "{role} pod restarted more than {} times (last: {})",
                th.restarts,
                last.and_then(|t| t.reason.as_deref())
                    .unwrap_or("no termination recorded")
            ))
            .weight(i64::from(cs.restart_count));
            if let Some(t) = &last_text {
                finding = finding.evidence(t.clone());
            }
            out.push(finding.next(format!("newapi-ops logs {name} --previous")));
        }
    }
    if !problem && phase == "Running" {
        let ready = statuses.iter().filter(|c| c.ready).count();
        if ready < spec_containers {
            let mut finding = f(
                "pods.unready",
                Severity::Warning,
                format!(
                    "{role} pod is running but not ready ({ready}/{spec_containers}): it gets no traffic"
                ),
            )
            .cause(format!("{role} pod running but not ready"));
            match latest(events, &["Unhealthy"]) {
                Some(e) => finding = finding.evidence(describe_event(e)),
                None => finding = finding.evidence("no Unhealthy probe event recorded".to_string()),
            }
            out.push(finding.next(format!(
                "newapi-ops logs {name}; the readiness probe of New-API is GET /api/status: newapi-ops diagnose --only app"
            )));
        }
    }
}

/// The scheduler's reason without its counts, the same for every pod it applies to:
/// "0/50 nodes are available: 48 Insufficient cpu, 2 node(s) had taint {x: y}." → "Insufficient
/// cpu, node(s) had taint {x: y}"; a message of another form is kept with its numbers masked.
pub fn pending_cause(reason: Option<&str>) -> String {
    let Some(msg) = reason.map(str::trim).filter(|m| !m.is_empty()) else {
        return "not scheduled yet".into();
    };
    let Some((_, reasons)) = msg.split_once("are available:") else {
        return mask_numbers(msg);
    };
    let mut parts: Vec<String> = reasons
        .trim()
        .trim_end_matches('.')
        .split(", ")
        .map(|p| {
            let p = p.trim();
            match p.split_once(' ') {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
                _ => p.to_string(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort();
    parts.dedup();
    parts.join(", ")
}

/// Why a pod was evicted, without the figures: "The node was low on resource: memory.
/// Container x was using 1Gi, which exceeds its request of 0." → "The node was low on resource:
/// memory".
fn eviction_cause(msg: &str) -> String {
    let first = msg
        .split(". ")
        .next()
        .unwrap_or(msg)
        .trim()
        .trim_end_matches('.');
    mask_numbers(first)
}

/// Every run of digits as `#`.
fn mask_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_digit = false;
    for c in s.chars() {
        let digit = c.is_ascii_digit();
        if !digit {
            out.push(c);
        } else if !prev_digit {
            out.push('#');
        }
        prev_digit = digit;
    }
    out
}

/// The scheduler's reason, shortened: "0/2 nodes are available: 2 Insufficient cpu." → kept whole
/// but classified for the next step.
fn scheduling_cause(msg: &str) -> &str {
    msg.trim()
}

/// Deployment checks: unavailable replicas and a failed rollout.
pub fn check_deployments(deployments: &[&Deployment]) -> Vec<Finding> {
    let mut out = Vec::new();
    for d in deployments {
        let name = d.metadata.name.clone().unwrap_or_default();
        let desired = d.spec.replicas.unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let available = status.available_replicas.unwrap_or(0);
        let conditions = status.conditions.unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| {
            c.type_.as_deref() == Some("Progressing")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        }) {
            out.push(
                Finding::new(
                    Component::Pods,
                    "deployments.stalled",
                    Severity::Critical,
                    format!("rollout of {name} exceeded its progress deadline"),
                )
                .cause("rollout exceeded its progress deadline")
                .subject(format!("deployment/{name}"))
                .evidence(format!(
                    "condition Progressing=False ProgressDeadlineExceeded: {}",
                    c.message.clone().unwrap_or_default()
                ))
                .next(format!(
                    "see the pod findings above; undo with kubectl rollout undo deployment/{name}"
                )),
            );
        }
        if available < desired {
            let sev = if available == 0 && desired > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            out.push(
                Finding::new(
                    Component::Pods,
                    "deployments.unavailable",
                    sev,
                    format!("{name}: {available} of {desired} replicas available"),
                )
                .cause(if available == 0 {
                    "no replica available"
                } else {
                    "replicas unavailable"
                })
                .weight(i64::from(desired - available))
                .subject(format!("deployment/{name}"))
                .evidence(format!(
                    "status: replicas {}, ready {}, available {}, unavailable {}",
                    status.replicas.unwrap_or(0),
                    status.ready_replicas.unwrap_or(0),
                    available,
                    status.unavailable_replicas.unwrap_or(desired - available)
                ))
                .next("see the pod findings for the cause"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedulers_reason_without_its_counts_is_the_cause() {
        assert_eq!(
            pending_cause(Some("0/50 nodes are available: 50 Insufficient cpu.")),
            "Insufficient cpu"
        );
        assert_eq!(
            pending_cause(Some(
                "0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
            )),
            pending_cause(Some(
                "0/4 nodes are available: 3 Insufficient cpu, 1 Insufficient memory."
            )),
            "the same reasons, other counts: one cause"
        );
        assert_ne!(
            pending_cause(Some("0/3 nodes are available: 3 Insufficient cpu.")),
            pending_cause(Some(
                "0/3 nodes are available: 3 pod has unbound immediate PersistentVolumeClaims."
            )),
        );
        assert_eq!(pending_cause(None), "not scheduled yet");
        assert_eq!(
            pending_cause(Some("binding rejected: 2 times")),
            "binding rejected: # times"
        );
        assert_eq!(
            eviction_cause("The node was low on resource: memory. Container x was using 1Gi."),
            "The node was low on resource: memory"
        );
    }

    #[test]
    fn many_pods_pending_for_one_reason_are_one_finding() {
        let pod = |name: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "creationTimestamp": "2020-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                    "message": format!("0/{} nodes are available: {} Insufficient cpu.", name.len(), name.len())}]}
            }))
            .unwrap()
        };
        let pods: Vec<Pod> = (0..300).map(|i| pod(&format!("slave-{i}"))).collect();
        let out = crate::diagnose::finding::group(check_pods(
            &pods,
            0,
            &[],
            &PodThresholds::default(),
            |_| Some("slave"),
        ));
        let pending: Vec<&Finding> = out.iter().filter(|f| f.check == "pods.pending").collect();
        assert_eq!(pending.len(), 1, "{out:#?}");
        assert_eq!(pending[0].count, 300);
        assert_eq!(
            pending[0].summary,
            "300 pods: slave pod Pending: Insufficient cpu"
        );
    }
}
