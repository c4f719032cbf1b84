//! Following a Deployment's rollout until its available replicas reach the count asked for: a
//! progress bar on a terminal; the scheduler's own reason for each Pending pod (`FailedScheduling`)
//! when pods cannot be placed (unschedulable for 15 s with nothing else moving) or the time is up;
//! a change of the replicas by someone else reported, never overwritten; the API server going
//! away reported with what is known of the Deployment.
//!
//! [`observe`] and [`judge`] are pure, so the decisions are unit-tested; [`wait`] polls the API
//! server once a second (one `get deployments`, one `list pods`, and `list events` only while a
//! pod cannot be scheduled).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::k8s::{Call, Kube, POLL_LIMIT, UNREACHABLE_GRACE};
use crate::units::plural;

/// How long pods must stay unschedulable, with nothing else about the rollout changing, before
/// we stop waiting. Longer than kube-scheduler's longest retry back-off (10 s), so a pod that
/// failed while an old pod was still terminating has been retried by then.
const STUCK_FOR: Duration = Duration::from_secs(15);
/// Time between polls.
const POLL: Duration = Duration::from_secs(1);

/// What a wait is about, for its messages.
#[derive(Debug, Clone)]
pub struct Story {
    /// `deployment/new-api-slave in namespace new-api`.
    pub what: String,
    /// What the Deployment is left at whatever happens next, e.g. `spec.replicas stays at 5, as
    /// requested`.
    pub state: String,
    /// What was accepted and when, for when the API server goes away: `as requested:
    /// spec.replicas = 5 was accepted by the API server at ...`.
    pub accepted: String,
    /// The next step when the rollout does not complete.
    pub next: String,
}

/// One wait.
#[derive(Debug, Clone)]
pub struct Watch {
    pub namespace: String,
    pub name: String,
    /// The replicas that must end up available.
    pub replicas: i32,
    /// The Deployment's `metadata.generation` after our change (0 when not known): the
    /// controller must have observed at least this one.
    pub min_generation: i64,
    pub timeout: Duration,
    /// Draw a progress bar (only on a terminal, never with `-o json`).
    pub progress: bool,
    pub story: Story,
}

/// How a completed rollout ended.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    pub replicas: i32,
    pub available: i32,
    pub updated: i32,
    pub waited_seconds: u64,
}

/// A pod that is not (yet) serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodProblem {
    pub name: String,
    /// The scheduler cannot place it (`PodScheduled=False`, reason `Unschedulable`).
    pub unschedulable: bool,
    /// The scheduler's words for an unschedulable pod, else what the pod waits for.
    pub reason: String,
}

/// What one poll saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub spec_replicas: i32,
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
    pub updated: i32,
    pub available: i32,
    pub pending: Vec<PodProblem>,
    pub not_ready: Vec<PodProblem>,
    pub terminating: usize,
    /// The field manager that last wrote `spec.replicas` and when, if the server tracks it
    /// (1.20 does not for writes through the `scale` subresource).
    pub replicas_manager: Option<(String, Option<jiff::Timestamp>)>,
}

/// The decision after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    Waiting,
    /// Pods the scheduler cannot place, and nothing else moving.
    Stuck,
    /// Someone set the replicas to this.
    Changed(i32),
}

/// Whether `labels` satisfy a label selector (matchLabels and matchExpressions).
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

/// The `matchLabels` part of a selector as a server-side label selector (expressions are
/// checked locally by [`selector_matches`]).
fn label_query(sel: &LabelSelector) -> String {
    sel.match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// What a pod's containers wait for (`ContainerCreating`, `CrashLoopBackOff`, ...).
fn container_waiting(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone()?;
        Some(format!("container {}: {reason}", cs.name))
    })
}

/// Reads a Deployment and its pods into what [`judge`] needs.
pub fn observe(dep: &Deployment, pods: &[Pod]) -> Observed {
    let status = dep.status.clone().unwrap_or_default();
    let mut o = Observed {
        spec_replicas: dep.spec.replicas.unwrap_or(1),
        generation: dep.metadata.generation.unwrap_or(0),
        observed_generation: status.observed_generation.unwrap_or(0),
        replicas: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        replicas_manager: replicas_manager(dep),
        ..Observed::default()
    };
    for pod in pods {
        if !selector_matches(&dep.spec.selector, pod.metadata.labels.as_ref()) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            o.terminating += 1;
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        match phase {
            Some("Pending") | None => {
                let scheduled = condition(pod, "PodScheduled");
                let problem = match scheduled {
                    Some(c) if c.status == "False" => PodProblem {
                        name,
                        unschedulable: c.reason.as_deref() == Some("Unschedulable"),
                        reason: c
                            .message
                            .clone()
                            .or_else(|| c.reason.clone())
                            .unwrap_or_else(|| "not scheduled yet".into()),
                    },
                    None => PodProblem {
                        name,
                        unschedulable: false,
                        reason: "not scheduled yet".into(),
                    },
                    Some(_) => PodProblem {
                        name,
                        unschedulable: false,
                        reason: container_waiting(pod)
                            .unwrap_or_else(|| "starting on its node".into()),
                    },
                };
                o.pending.push(problem);
            }
            Some("Running") => {
                let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
                if !ready {
                    o.not_ready.push(PodProblem {
                        name,
                        unschedulable: false,
                        reason: container_waiting(pod)
                            .map_or_else(|| "not ready".into(), |w| format!("not ready ({w})")),
                    });
                }
            }
            _ => {}
        }
    }
    o
}

/// The field manager of the most recent managed-fields entry that owns `spec.replicas`.
fn replicas_manager(dep: &Deployment) -> Option<(String, Option<jiff::Timestamp>)> {
    dep.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| Some((m.manager.clone()?, m.time.as_ref().map(|t| t.0))))
}

/// Decides after a poll: done, keep waiting, stuck on pods that cannot be scheduled, or the
/// replicas were changed by someone else.
pub fn judge(replicas: i32, min_generation: i64, o: &Observed) -> Verdict {
    if o.spec_replicas != replicas {
        return Verdict::Changed(o.spec_replicas);
    }
    let observed = o.observed_generation >= o.generation && o.observed_generation >= min_generation;
    if observed && o.replicas == replicas && o.updated == replicas && o.available == replicas {
        return Verdict::Done;
    }
    let unschedulable = o.pending.iter().filter(|p| p.unschedulable).count();
    let unschedulable = i32::try_from(unschedulable).unwrap_or(i32::MAX);
    if observed
        && unschedulable > 0
        && o.terminating == 0
        && o.available + unschedulable >= replicas
    {
        return Verdict::Stuck;
    }
    Verdict::Waiting
}

/// Whether two polls show the same rollout: same counts, same pods waiting.
fn same_picture(a: &Observed, b: &Observed) -> bool {
    let names = |o: &Observed| o.pending.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    (
        a.replicas,
        a.updated,
        a.available,
        a.terminating,
        a.generation,
    ) == (
        b.replicas,
        b.updated,
        b.available,
        b.terminating,
        b.generation,
    ) && names(a) == names(b)
}

/// One look at the Deployment and its pods, bounded by `limit` (a frozen API server must not
/// hold the wait past its timeout).
async fn poll(kube: &Kube, w: &Watch, limit: Duration) -> Result<(Deployment, Vec<Pod>)> {
    let call = Call::new("get", "deployments.apps", Some(&w.namespace));
    kube.within(limit, &call, poll_once(kube, w)).await
}

async fn poll_once(kube: &Kube, w: &Watch) -> Result<(Deployment, Vec<Pod>)> {
    let deployments: Api<Deployment> = Api::namespaced(kube.client.clone(), &w.namespace);
    let dep = deployments
        .get(&w.name)
        .await
        .map_err(|e| kube.error(&Call::new("get", "deployments.apps", Some(&w.namespace)), e))?;
    let lp = ListParams::default().labels(&label_query(&dep.spec.selector));
    let pods = kube.list::<Pod>(Some(&w.namespace), &lp).await?;
    Ok((dep, pods.items))
}

/// The scheduler's latest `FailedScheduling` message for each of `pods` (best effort: events
/// may be forbidden or already gone; the pod's own condition carries the same words).
async fn scheduler_reasons(kube: &Kube, namespace: &str) -> BTreeMap<String, String> {
    let lp = ListParams::default().fields("reason=FailedScheduling");
    let Ok(events) = kube.list::<Event>(Some(namespace), &lp).await else {
        return BTreeMap::new();
    };
    let mut latest: BTreeMap<String, (Option<jiff::Timestamp>, String)> = BTreeMap::new();
    for e in events.items {
        let (Some(name), Some(message)) = (e.involved_object.name.clone(), e.message.clone())
        else {
            continue;
        };
        let at = e
            .last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or_else(|| e.event_time.as_ref().map(|t| t.0))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0));
        match latest.get(&name) {
            Some((prev, _)) if *prev >= at => {}
            _ => {
                latest.insert(name, (at, message));
            }
        }
    }
    latest.into_iter().map(|(k, (_, m))| (k, m)).collect()
}

/// Lines for the pods that are not serving: Pending ones first, with the scheduler's reason.
async fn problem_lines(kube: &Kube, w: &Watch, o: &Observed) -> Vec<String> {
    let reasons = if o.pending.iter().any(|p| p.unschedulable) {
        scheduler_reasons(kube, &w.namespace).await
    } else {
        BTreeMap::new()
    };
    let mut lines: Vec<String> = o
        .pending
        .iter()
        .map(|p| {
            let reason = reasons.get(&p.name).unwrap_or(&p.reason);
            if p.unschedulable {
                format!("{} Pending (FailedScheduling): {reason}", p.name)
            } else {
                format!("{} Pending: {reason}", p.name)
            }
        })
        .collect();
    lines.extend(
        o.not_ready
            .iter()
            .map(|p| format!("{}: {}", p.name, p.reason)),
    );
    lines
}

/// What is moving in a rollout, for the progress bar: `3 updated, 1 Pending, 2 terminating`.
/// Old pods going away are progress (their requests are freed when they are gone), so they are
/// shown rather than leaving a bar that seems not to move.
fn moving(o: &Observed) -> String {
    let mut s = format!("{} updated", o.updated);
    if !o.pending.is_empty() {
        s.push_str(&format!(", {} Pending", o.pending.len()));
    }
    if o.terminating > 0 {
        s.push_str(&format!(", {} terminating", o.terminating));
    }
    s
}

fn progress_bar(w: &Watch) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !w.progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(u64::try_from(w.replicas.max(0)).unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {prefix} [{bar:20}] {pos}/{len} available, {msg} ({elapsed})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(w.name.clone());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Waits until the Deployment has `w.replicas` updated, available replicas (and no more), or
/// fails: [`Error::RolloutIncomplete`] (timeout, or pods the scheduler cannot place),
/// [`Error::ReplicasChanged`] (someone else set the replicas; we leave them), or
/// [`Error::LostDuringRollout`] (the API server stayed unreachable).
pub async fn wait(kube: &Kube, w: &Watch) -> Result<RolloutReport> {
    let start = Instant::now();
    let bar = progress_bar(w);
    let outcome = wait_inner(kube, w, start, &bar).await;
    bar.finish_and_clear();
    outcome
}

async fn wait_inner(
    kube: &Kube,
    w: &Watch,
    start: Instant,
    bar: &indicatif::ProgressBar,
) -> Result<RolloutReport> {
    let started_at = jiff::Timestamp::now();
    let mut failing_since: Option<Instant> = None;
    // Since when the rollout has been stuck, and what it looked like then.
    let mut stuck: Option<(Instant, Observed)> = None;
    let mut last: Option<Observed> = None;
    loop {
        let left = w.timeout.saturating_sub(start.elapsed());
        match poll(kube, w, left.clamp(Duration::from_secs(1), POLL_LIMIT)).await {
            Err(e) if e.is_transient() => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::debug!("poll failed, retrying: {e}");
                if since.elapsed() >= UNREACHABLE_GRACE || start.elapsed() >= w.timeout {
                    let detail = e.detail();
                    return Err(Error::LostDuringRollout {
                        server: kube.server.clone(),
                        detail: format!(
                            "{detail} (unreachable for {})",
                            crate::units::duration(since.elapsed())
                        ),
                        what: w.story.what.clone(),
                        state: w.story.accepted.clone(),
                        next: format!(
                            "nothing else was changed; once the API server is back, check the pods with `newapi-ops pods`; {}",
                            w.story.next
                        ),
                    });
                }
            }
            Err(e) => return Err(e),
            Ok((dep, pods)) => {
                failing_since = None;
                let o = observe(&dep, &pods);
                bar.set_position(u64::try_from(o.available.clamp(0, w.replicas)).unwrap_or(0));
                bar.set_message(moving(&o));
                match judge(w.replicas, w.min_generation, &o) {
                    Verdict::Done => {
                        return Ok(RolloutReport {
                            replicas: o.replicas,
                            available: o.available,
                            updated: o.updated,
                            waited_seconds: start.elapsed().as_secs(),
                        });
                    }
                    Verdict::Changed(found) => {
                        // Named only when the server recorded a write of the replicas after
                        // the wait began (a second of slack for clock skew).
                        let by = o
                            .replicas_manager
                            .as_ref()
                            .filter(|(m, at)| {
                                m != crate::scale::FIELD_MANAGER
                                    && at.is_some_and(|at| {
                                        at >= started_at - jiff::SignedDuration::from_secs(1)
                                    })
                            })
                            .map(|(m, _)| format!(" (field manager `{m}`)"))
                            .unwrap_or_default();
                        return Err(Error::ReplicasChanged {
                            what: w.story.what.clone(),
                            expected: w.replicas,
                            found,
                            detail: format!(
                                "someone else set them to {found}{by} while newapi-ops was waiting for the rollout to {}; newapi-ops stopped waiting and left them at {found}",
                                w.replicas
                            ),
                        });
                    }
                    Verdict::Stuck => {
                        let since = match &stuck {
                            Some((since, seen)) if same_picture(seen, &o) => *since,
                            _ => {
                                stuck = Some((Instant::now(), o.clone()));
                                Instant::now()
                            }
                        };
                        if since.elapsed() >= STUCK_FOR {
                            let unschedulable =
                                o.pending.iter().filter(|p| p.unschedulable).count();
                            return Err(Error::RolloutIncomplete {
                                what: w.story.what.clone(),
                                summary: format!(
                                    "{} of {} replicas available; the scheduler cannot place {}:",
                                    o.available,
                                    w.replicas,
                                    plural(unschedulable, "pod", "pods")
                                ),
                                pending: problem_lines(kube, w, &o).await,
                                state: w.story.state.clone(),
                                next: w.story.next.clone(),
                            });
                        }
                    }
                    Verdict::Waiting => stuck = None,
                }
                last = Some(o);
            }
        }
        if start.elapsed() >= w.timeout {
            let o = last.unwrap_or_default();
            return Err(Error::RolloutIncomplete {
                what: w.story.what.clone(),
                summary: format!(
                    "{} of {} replicas available ({}) when the timeout of {} ran out{}",
                    o.available,
                    w.replicas,
                    moving(&o),
                    jiff::SignedDuration::try_from(w.timeout)
                        .map_or_else(|_| format!("{:?}", w.timeout), |d| format!("{d:#}")),
                    if o.pending.is_empty() && o.not_ready.is_empty() {
                        String::new()
                    } else {
                        ":".into()
                    }
                ),
                pending: problem_lines(kube, w, &o).await,
                state: w.story.state.clone(),
                next: w.story.next.clone(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(spec: i32, generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "new-api-slave", "generation": generation},
            "spec": {
                "replicas": spec,
                "selector": {"matchLabels": {"app": "new-api", "role": "slave"}},
                "template": {"metadata": {"labels": {"app": "new-api", "role": "slave"}}}
            },
            "status": status
        }))
        .unwrap()
    }

    fn pod(name: &str, phase: &str, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "new-api", "role": "slave"}},
            "status": {"phase": phase, "conditions": conditions}
        }))
        .unwrap()
    }

    fn unschedulable(name: &str) -> Pod {
        pod(
            name,
            "Pending",
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient cpu."}]),
        )
    }

    fn running(name: &str) -> Pod {
        pod(
            name,
            "Running",
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]),
        )
    }

    #[test]
    fn complete_when_every_replica_is_updated_and_available() {
        let d = dep(
            5,
            3,
            json!({"observedGeneration": 3, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 5}),
        );
        assert_eq!(judge(5, 3, &observe(&d, &[])), Verdict::Done);
        // Not before the controller has seen our change.
        let d = dep(
            5,
            4,
            json!({"observedGeneration": 3, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 5}),
        );
        assert_eq!(judge(5, 4, &observe(&d, &[])), Verdict::Waiting);
    }

    #[test]
    fn an_unschedulable_pod_with_everything_else_available_is_stuck() {
        let d = dep(
            5,
            2,
            json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 4}),
        );
        let pods = [
            running("a"),
            running("b"),
            running("c"),
            running("d"),
            unschedulable("e"),
        ];
        let o = observe(&d, &pods);
        assert_eq!(o.pending.len(), 1);
        assert!(o.pending[0].unschedulable);
        assert_eq!(
            o.pending[0].reason,
            "0/2 nodes are available: 2 Insufficient cpu."
        );
        assert_eq!(judge(5, 2, &o), Verdict::Stuck);
    }

    #[test]
    fn unschedulable_while_others_still_start_or_terminate_is_not_stuck_yet() {
        let d = dep(
            5,
            2,
            json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 5, "availableReplicas": 3}),
        );
        let starting = pod(
            "d",
            "Pending",
            json!([{"type": "PodScheduled", "status": "True"}]),
        );
        let pods = [
            running("a"),
            running("b"),
            running("c"),
            starting.clone(),
            unschedulable("e"),
        ];
        assert_eq!(judge(5, 2, &observe(&d, &pods)), Verdict::Waiting);

        let mut leaving = running("x");
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let d = dep(
            4,
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 3}),
        );
        let o = observe(
            &d,
            &[
                running("a"),
                running("b"),
                running("c"),
                leaving,
                unschedulable("e"),
            ],
        );
        assert_eq!(o.terminating, 1);
        assert_eq!(judge(4, 2, &o), Verdict::Waiting);
    }

    #[test]
    fn old_pods_terminating_during_a_rollout_are_progress_not_a_stuck_rollout() {
        // A rolling restart on a full cluster: the surge pod cannot be placed until an old pod
        // has gone, and the old pod takes its grace period to terminate.
        let d = dep(
            3,
            7,
            json!({"observedGeneration": 7, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}),
        );
        let mut leaving = running("old-1");
        leaving.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let while_leaving = observe(
            &d,
            &[
                running("old-2"),
                running("new-1"),
                leaving,
                unschedulable("new-2"),
            ],
        );
        // The terminating pod is neither Pending nor unready, and the rollout keeps waiting.
        assert_eq!(while_leaving.terminating, 1);
        assert!(while_leaving.not_ready.is_empty());
        assert_eq!(judge(3, 7, &while_leaving), Verdict::Waiting);
        assert_eq!(
            moving(&while_leaving),
            "1 updated, 1 Pending, 1 terminating"
        );
        // Once it is gone, the same unschedulable pod with nothing else moving is stuck...
        let gone = observe(
            &d,
            &[running("old-2"), running("new-1"), unschedulable("new-2")],
        );
        assert_eq!(judge(3, 7, &gone), Verdict::Stuck);
        assert_eq!(moving(&gone), "1 updated, 1 Pending");
        // ...and the stuck clock starts then, not while the old pod was going.
        assert!(!same_picture(&while_leaving, &gone));
    }

    #[test]
    fn a_stuck_rollout_must_stay_the_same_to_count_as_stuck() {
        let d = dep(
            3,
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        let a = observe(&d, &[running("a"), unschedulable("e")]);
        let b = observe(&d, &[running("a"), unschedulable("f")]);
        assert!(same_picture(&a, &a.clone()));
        // Another pod waits now: the scheduler got a new chance, the clock starts again.
        assert!(!same_picture(&a, &b));
    }

    #[test]
    fn a_change_of_the_replicas_by_someone_else_is_reported() {
        let mut d = dep(2, 5, json!({"observedGeneration": 5}));
        d.metadata.managed_fields = Some(vec![
            serde_json::from_value(json!({
                "manager": "kubectl", "operation": "Update", "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
            }))
            .unwrap(),
        ]);
        let o = observe(&d, &[]);
        assert_eq!(judge(4, 0, &o), Verdict::Changed(2));
        assert_eq!(
            o.replicas_manager,
            Some((
                "kubectl".into(),
                Some("2026-01-01T00:00:00Z".parse().unwrap())
            ))
        );
    }

    #[test]
    fn pods_of_other_workloads_are_ignored_and_not_ready_ones_listed() {
        let d = dep(1, 1, json!({}));
        let mut other = unschedulable("other");
        other.metadata.labels = Some(BTreeMap::from([("app".into(), "mysql".into())]));
        let unready = pod(
            "s",
            "Running",
            json!([{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]),
        );
        let o = observe(&d, &[other, unready]);
        assert!(o.pending.is_empty());
        assert_eq!(o.not_ready.len(), 1);
    }

    #[test]
    fn selector_expressions() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "new-api"},
            "matchExpressions": [
                {"key": "role", "operator": "In", "values": ["slave", "reader"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selector_matches(
            &sel,
            Some(&l(&[("app", "new-api"), ("role", "slave")]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&l(&[("app", "new-api"), ("role", "master")]))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&l(&[
                ("app", "new-api"),
                ("role", "slave"),
                ("canary", "1")
            ]))
        ));
        assert!(!selector_matches(&sel, None));
        assert_eq!(label_query(&sel), "app=new-api");
    }
}
