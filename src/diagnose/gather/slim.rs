//! What diagnose keeps of each listed object: only the fields its checks read. Lists are paged
//! ([`crate::k8s::Kube::list_each`]) and every object is reduced as its page arrives, so that
//! what stays in memory per pod is a few hundred bytes of what matters, not the whole object
//! (managed fields, environment, volumes, probes, annotations).

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A pod of the namespace, reduced to what the pod, logs, app and backend checks read
/// ([`crate::inventory::reduced`]).
pub(super) fn pod(p: Pod) -> Pod {
    crate::inventory::reduced(p)
}

/// A pod of any namespace as the node checks see it: where it runs, what it requests and its
/// limits, its phase ([`crate::capacity::for_capacity`]).
pub(super) fn active_pod(p: Pod) -> Pod {
    crate::capacity::for_capacity(p)
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
        let slim = pod(full);
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
