//! What diagnose keeps of each listed object: only the fields its checks read. Lists are paged
//! ([`crate::k8s::Kube::list_each`]) and every object is reduced as its page arrives, so that
//! what stays in memory per pod is a few hundred bytes of what matters, not the whole object
//! (managed fields, environment, volumes, probes, annotations).

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::sample::Candidate;
use crate::capacity::{PodResources, pod_resources};
use crate::config::Settings;
use crate::inventory::{PodView, Role, Snapshot};

/// A pod of any namespace as the node checks see it: where it runs, what it requests and its
/// limits, its phase ([`crate::capacity::for_capacity`]).
pub(super) fn active_pod(p: Pod) -> Pod {
    crate::capacity::for_capacity(p)
}

/// A healthy slave as diagnose keeps it: the compact record of the pods that make up nearly all
/// of a big deployment — running, every container ready, never restarted, not being deleted — of
/// which no check reports anything by itself. What the checks read of it is here (about 100
/// bytes and its name, against some 5 KiB for a reduced `Pod`); every other pod is kept as a
/// reduced `Pod` ([`crate::inventory::reduced`]).
#[derive(Debug, Clone)]
pub(super) struct HealthySlave {
    pub name: String,
    /// Its sampling group (owner and image, [`Candidate::group`]), shared by the pods of a group.
    pub group: Arc<str>,
    /// Its node, shared by the pods on it.
    pub node: Arc<str>,
    /// When it was created (Unix seconds).
    pub created: Option<i64>,
    /// Its requests and limits.
    pub resources: PodResources,
}

impl HealthySlave {
    /// The sampler's view of it: a healthy slave is never suspect.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            name: self.name.clone(),
            group: self.group.to_string(),
            master: false,
            suspect: false,
            node: Some(self.node.to_string()),
        }
    }

    /// Its age in seconds, when its creation time is known.
    pub fn age_secs(&self) -> Option<i64> {
        self.created
            .map(|t| jiff::Timestamp::now().as_second().saturating_sub(t))
    }
}

/// The namespace's pods as listed: the compact records of the healthy slaves, the reduced
/// `Pod` of every other pod. Group and node names are stored once each ([`Interner`]).
#[derive(Debug, Default)]
pub(super) struct Pods {
    pub healthy_slaves: Vec<HealthySlave>,
    pub others: Vec<Pod>,
    interned: HashSet<Arc<str>>,
}

impl Pods {
    /// Keeps one listed (reduced) pod: as a compact record when it is a healthy slave.
    pub fn keep(&mut self, p: Pod, settings: &Settings) {
        match self.healthy_slave(&p, settings) {
            Some(h) => self.healthy_slaves.push(h),
            None => self.others.push(p),
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.interned.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone());
        a
    }

    fn healthy_slave(&mut self, p: &Pod, settings: &Settings) -> Option<HealthySlave> {
        if Snapshot::role_of(p, settings) != Some(Role::Slave)
            || p.metadata.deletion_timestamp.is_some()
        {
            return None;
        }
        let status = p.status.as_ref()?;
        let statuses = status.container_statuses.as_deref().unwrap_or_default();
        let clean = statuses.iter().all(|c| {
            c.restart_count == 0 && c.last_state.as_ref().is_none_or(|l| l.terminated.is_none())
        });
        if !clean || status.conditions.as_ref().is_some_and(|c| !c.is_empty()) {
            return None;
        }
        if !PodView::new(p, Role::Slave).healthy() || status.phase.as_deref() != Some("Running") {
            return None;
        }
        let spec = p.spec.as_ref()?;
        let node = spec.node_name.as_deref()?;
        let candidate = Candidate::of(p, Role::Slave);
        Some(HealthySlave {
            name: p.metadata.name.clone()?,
            group: self.intern(&candidate.group),
            node: self.intern(node),
            created: p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            resources: pod_resources(spec),
        })
    }
}

/// The reasons of the events the pod checks read ([`crate::diagnose::pods`]): the scheduler's,
/// the probes', the image pulls'.
const EVENT_REASONS: [&str; 3] = ["FailedScheduling", "Unhealthy", "Failed"];

/// An event the pod checks read, reduced to what they show; None for any other event.
pub(super) fn event(e: Event) -> Option<Event> {
    if e.involved_object.kind.as_deref() != Some("Pod")
        || !e
            .reason
            .as_deref()
            .is_some_and(|r| EVENT_REASONS.contains(&r))
    {
        return None;
    }
    Some(Event {
        involved_object: ObjectReference {
            kind: e.involved_object.kind,
            name: e.involved_object.name,
            ..Default::default()
        },
        reason: e.reason,
        message: e.message,
        count: e.count,
        first_timestamp: e.first_timestamp,
        last_timestamp: e.last_timestamp,
        event_time: e.event_time,
        metadata: ObjectMeta {
            creation_timestamp: e.metadata.creation_timestamp,
            ..Default::default()
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slim_pod_keeps_what_the_checks_read() {
        let full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "new-api-slave-x", "namespace": "new-api",
                "labels": {"app": "new-api", "role": "slave"},
                "annotations": {"big": "x".repeat(10_000)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "new-api-slave-6cf7", "uid": "u"}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "new-api", "image": "calciumion/new-api:v1",
                    "env": [{"name": "SQL_DSN", "value": "root:secret@tcp(mysql)/db"}],
                    "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
                }],
                "volumes": [{"name": "data", "emptyDir": {}}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "containerStatuses": [{
                    "name": "new-api", "image": "calciumion/new-api:v1", "imageID": "sha256:abc",
                    "containerID": "containerd://abc", "ready": false, "restartCount": 7,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
                }]
            }
        }))
        .unwrap();
        let slim = crate::inventory::reduced(full);
        assert!(slim.metadata.annotations.is_none() && slim.metadata.managed_fields.is_none());
        assert_eq!(
            slim.metadata.owner_references.as_ref().unwrap()[0].name,
            "new-api-slave-6cf7"
        );
        let spec = slim.spec.as_ref().unwrap();
        assert!(spec.volumes.is_none() && spec.containers[0].env.is_none());
        assert!(spec.containers[0].resources.is_some());
        let cs = &slim
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(cs.restart_count, 7);
        assert!(cs.image_id.is_empty() && cs.container_id.is_none());
        let view = crate::inventory::PodView::new(&slim, crate::inventory::Role::Slave);
        assert_eq!(view.status, "CrashLoopBackOff");
        assert_eq!(view.last_termination.unwrap().exit_code, 137);
    }
}
