//! The event recorder: writes `core/v1` Events like the kubelet's (source component `kubelet`,
//! host the node, `involvedObject` the pod with its container's `fieldPath`), and aggregates a
//! repeat of the same event (same object, reason, message) into a `count` bump of the first
//! one instead of a new object, so nothing floods the API server.
//!
//! Recording never blocks a pod worker: events go through bounded queues to a few writer tasks,
//! sharded by event identity so repeats of one event stay in order. When a queue is full, the
//! event is dropped (and logged at debug level), as the kubelet's own recorder does under load.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::KubeletError;
use super::lifecycle::EventSpec;

const SHARDS: usize = 4;
const QUEUE: usize = 4096;
/// Forget aggregation state beyond this many distinct events (they then start a new object).
const MAX_REMEMBERED: usize = 50_000;

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub kind: &'static str,
    /// The namespace the event is written to (`default` for nodes).
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    pub fn pod(namespace: &str, name: &str, uid: &str) -> ObjectRef {
        ObjectRef {
            kind: "Pod",
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
        }
    }

    /// The kubelet refers to its node with the node name as UID.
    pub fn node(name: &str) -> ObjectRef {
        ObjectRef {
            kind: "Node",
            namespace: "default".to_string(),
            name: name.to_string(),
            uid: name.to_string(),
        }
    }
}

struct Record {
    object: ObjectRef,
    host: String,
    spec: EventSpec,
}

/// Hands events to the writer tasks. Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    shards: Vec<mpsc::Sender<Record>>,
}

impl EventRecorder {
    /// Starts the writer tasks in `tasks`.
    pub fn start(client: &Client, tasks: &mut JoinSet<Result<(), KubeletError>>) -> EventRecorder {
        let mut shards = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let (tx, rx) = mpsc::channel(QUEUE);
            tasks.spawn(write_loop(client.clone(), rx));
            shards.push(tx);
        }
        EventRecorder { shards }
    }

    /// Queues an event about `object`, reported by the kubelet of node `host`.
    pub fn record(&self, object: &ObjectRef, host: &str, spec: EventSpec) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&object.uid, &spec.field_path, spec.reason, &spec.message).hash(&mut h);
        let shard = usize::try_from(h.finish() % SHARDS as u64).unwrap_or(0);
        let record = Record {
            object: object.clone(),
            host: host.to_string(),
            spec,
        };
        if let Err(e) = self.shards[shard].try_send(record) {
            tracing::debug!("event dropped: {e}");
        }
    }
}

/// Identity of an event for aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    field_path: Option<String>,
    reason: &'static str,
    message: String,
    warning: bool,
}

struct Written {
    namespace: String,
    name: String,
    count: i32,
}

async fn write_loop(client: Client, mut rx: mpsc::Receiver<Record>) -> Result<(), KubeletError> {
    let mut written: HashMap<Key, Written> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let key = Key {
            uid: r.object.uid.clone(),
            field_path: r.spec.field_path.clone(),
            reason: r.spec.reason,
            message: r.spec.message.clone(),
            warning: r.spec.warning,
        };
        let now = Timestamp::now();
        let add = i32::try_from(r.spec.count.max(1)).unwrap_or(i32::MAX);
        if let Some(w) = written.get_mut(&key) {
            let api: Api<Event> = Api::namespaced(client.clone(), &w.namespace);
            let count = w.count.saturating_add(add);
            let patch =
                serde_json::json!({"count": count, "lastTimestamp": Time(whole_second(now))});
            match api
                .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    w.count = count;
                    continue;
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    // Expired (events live an hour): start a new one below.
                    written.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(event = %w.name, "cannot update event: {e}");
                    continue;
                }
            }
        }
        let event = build(&r, now, add);
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &r.object.namespace);
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if written.len() >= MAX_REMEMBERED {
                    written.clear();
                }
                written.insert(
                    key,
                    Written {
                        namespace: r.object.namespace.clone(),
                        name,
                        count: add,
                    },
                );
            }
            // The namespace is being deleted, or similar: nothing to do.
            Err(e) => {
                tracing::debug!(object = %r.object.name, reason = r.spec.reason, "cannot create event: {e}")
            }
        }
    }
    Ok(())
}

fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Event names are `<object>.<hex unix nanos>` like client-go's recorder; the nanos are made
/// unique within the process.
fn event_name(object: &str, now: Timestamp) -> String {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let wanted = i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = wanted.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("{object}.{next:x}"),
            Err(actual) => prev = actual,
        }
    }
}

fn build(r: &Record, now: Timestamp, count: i32) -> Event {
    let time = Time(whole_second(now));
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(&r.object.name, now)),
            namespace: Some(r.object.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(r.object.kind.into()),
            name: Some(r.object.name.clone()),
            namespace: (r.object.kind != "Node").then(|| r.object.namespace.clone()),
            uid: Some(r.object.uid.clone()),
            field_path: r.spec.field_path.clone(),
            resource_version: None,
        },
        reason: Some(r.spec.reason.into()),
        message: Some(r.spec.message.clone()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(r.host.clone()),
        }),
        first_timestamp: Some(time.clone()),
        last_timestamp: Some(time),
        count: Some(count),
        type_: Some(if r.spec.warning { "Warning" } else { "Normal" }.into()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_shaped_like_clientgos() {
        let now: Timestamp = "2025-11-13T10:00:00Z".parse().unwrap();
        let a = event_name("web-1", now);
        let b = event_name("web-1", now);
        assert_ne!(a, b);
        assert!(a.starts_with("web-1."));
        assert!(u64::from_str_radix(a.trim_start_matches("web-1."), 16).is_ok());
    }

    #[test]
    fn events_look_like_the_kubelets() {
        let r = Record {
            object: ObjectRef::pod("new-api", "web-1", "u-1"),
            host: "node-1".into(),
            spec: EventSpec {
                warning: true,
                reason: "BackOff",
                message: "Back-off restarting failed container".into(),
                field_path: Some("spec.containers{new-api}".into()),
                count: 1,
            },
        };
        let e = build(&r, "2025-11-13T10:00:00.7Z".parse().unwrap(), 1);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "Warning");
        assert_eq!(v["source"]["component"], "kubelet");
        assert_eq!(v["source"]["host"], "node-1");
        assert_eq!(v["involvedObject"]["fieldPath"], "spec.containers{new-api}");
        assert_eq!(v["involvedObject"]["namespace"], "new-api");
        assert_eq!(v["firstTimestamp"], "2025-11-13T10:00:00Z");
        assert_eq!(v["count"], 1);
        let node = build(
            &Record {
                object: ObjectRef::node("node-1"),
                host: "node-1".into(),
                spec: EventSpec {
                    warning: false,
                    reason: "NodeReady",
                    message: "Node node-1 status is now: NodeReady".into(),
                    field_path: None,
                    count: 1,
                },
            },
            Timestamp::now(),
            1,
        );
        assert_eq!(node.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(node.involved_object.uid.as_deref(), Some("node-1"));
    }
}
