//! Node registration and heartbeats, as the kubelet does them.
//!
//! Each configured node is created (or its labels updated if it exists), then its status is set
//! through the status subresource: capacity = allocatable, the four conditions (Ready, no
//! pressure), addresses (InternalIP 127.0.0.1 and Hostname), the kubelet endpoint port and
//! nodeInfo. The `node.kubernetes.io/not-ready` taint the API server adds at creation is then
//! removed: the sandbox runs no node lifecycle controller to do it. Every [`HEARTBEAT`] the
//! conditions' `lastHeartbeatTime` is refreshed and the node's Lease in `kube-node-lease` renewed;
//! a node deleted behind the simulator's back is registered again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::events::{EventRecorder, ObjectRef};
use super::lifecycle::{EventSpec, k8s_time};
use super::{KubeletConfig, KubeletError, SimNode};

/// How often node conditions are refreshed.
pub const HEARTBEAT: Duration = Duration::from_secs(20);
/// The taint the API server puts on new nodes.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The Kubernetes version the simulated kubelets report.
pub const KUBELET_VERSION: &str = "v1.20.2";

/// Where node Leases live, and how long one is valid.
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;

/// How many nodes are registered or heartbeated at once.
const PARALLEL: usize = 8;
/// How long registration keeps retrying while the API server is not answering yet.
const REGISTER_ATTEMPTS: u32 = 30;

/// Registers every node, retrying for a while if the API server is not ready yet.
pub async fn register_all(
    client: &Client,
    config: &KubeletConfig,
    events: &EventRecorder,
) -> Result<(), KubeletError> {
    let api: Api<Node> = Api::all(client.clone());
    let port = config.listen_port;
    let results: Vec<Result<(), KubeletError>> = futures::stream::iter(
        config.nodes.iter().enumerate(),
    )
    .map(|(index, node)| {
        let api = api.clone();
        async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match register(&api, node, index, port, Timestamp::now()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt < REGISTER_ATTEMPTS && retryable(&e) => {
                        tracing::debug!(node = %node.name, "registration failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(KubeletError::api(
                            format!("registering node {}", node.name),
                            e,
                        ));
                    }
                }
            }
        }
    })
    .buffer_unordered(PARALLEL)
    .collect()
    .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    for node in &config.nodes {
        let object = ObjectRef::node(&node.name);
        let event = |reason: &'static str, message: String| EventSpec {
            warning: false,
            reason,
            message,
            field_path: None,
            count: 1,
        };
        events.record(
            &object,
            &node.name,
            event("Starting", "Starting kubelet.".into()),
        );
        for (reason, what) in [
            ("NodeHasSufficientMemory", "NodeHasSufficientMemory"),
            ("NodeHasNoDiskPressure", "NodeHasNoDiskPressure"),
            ("NodeHasSufficientPID", "NodeHasSufficientPID"),
            ("NodeReady", "NodeReady"),
        ] {
            events.record(
                &object,
                &node.name,
                event(reason, format!("Node {} status is now: {what}", node.name)),
            );
        }
    }
    Ok(())
}

/// Errors worth retrying at start-up: the API server is not reachable or not ready yet.
fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        _ => true,
    }
}

/// Creates (or updates) one node, sets its status and removes the not-ready taint.
async fn register(
    api: &Api<Node>,
    node: &SimNode,
    index: usize,
    port: u16,
    now: Timestamp,
) -> Result<(), kube::Error> {
    let labels = json!({
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    });
    let cidr = format!("10.244.{}.0/24", index % 256);
    let body: Node = serde_json::from_value(json!({
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &body).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let patch = json!({"metadata": {"labels": labels}});
            api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Err(e) => return Err(e),
    }
    api.patch_status(
        &node.name,
        &PatchParams::default(),
        &Patch::Merge(&full_status(node, port, now)),
    )
    .await?;
    remove_not_ready_taint(api, &node.name).await?;
    let leases: Api<Lease> = Api::namespaced(api.clone().into_client(), LEASE_NAMESPACE);
    renew_lease(&leases, &node.name, now).await
}

/// Renews (or creates) the node's Lease, as the kubelet does between status updates.
async fn renew_lease(api: &Api<Lease>, node: &str, now: Timestamp) -> Result<(), kube::Error> {
    let spec = json!({
        "holderIdentity": node,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": micro_time(now),
    });
    match api
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": node, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A `metav1.MicroTime`: RFC 3339 with microseconds.
fn micro_time(t: Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        &k8s_time(t)[..19],
        t.subsec_nanosecond() / 1000
    )
}

async fn remove_not_ready_taint(api: &Api<Node>, name: &str) -> Result<(), kube::Error> {
    let current = api.get(name).await?;
    let taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
    if !taints.iter().any(|t| t.key == NOT_READY_TAINT) {
        return Ok(());
    }
    let kept: Vec<_> = taints
        .into_iter()
        .filter(|t| t.key != NOT_READY_TAINT)
        .collect();
    let patch = json!({"spec": {"taints": kept}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The node status the kubelet posts at registration.
fn full_status(node: &SimNode, port: u16, now: Timestamp) -> Value {
    let resources = json!({"cpu": node.cpu, "memory": node.memory, "pods": node.pods});
    let machine = super::image::fake_hex(&["machine", &node.name]);
    json!({
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions(now, now),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": &machine[..32],
                "systemUUID": uuid_like(&super::image::fake_hex(&["system", &node.name])),
                "bootID": uuid_like(&super::image::fake_hex(&["boot", &node.name, &now.as_second().to_string()])),
                "kernelVersion": "6.1.0-sandbox",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.4.3",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
    })
}

fn uuid_like(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The four conditions of a healthy node.
fn conditions(heartbeat: Timestamp, since: Timestamp) -> Value {
    let c = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": k8s_time(heartbeat),
            "lastTransitionTime": k8s_time(since),
        })
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// Refreshes every node's conditions every [`HEARTBEAT`], re-registering deleted nodes.
pub async fn heartbeat(
    client: Client,
    config: Arc<KubeletConfig>,
    events: EventRecorder,
) -> Result<(), KubeletError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let api: Api<Node> = Api::all(client);
    let since = Timestamp::now();
    let port = config.listen_port;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; registration just happened
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        futures::stream::iter(config.nodes.iter().enumerate())
            .for_each_concurrent(PARALLEL, |(index, node)| {
                let api = api.clone();
                let leases = leases.clone();
                let events = events.clone();
                async move {
                    let patch = json!({"status": {"conditions": conditions(now, since)}});
                    match api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {
                            if let Err(e) = renew_lease(&leases, &node.name, now).await {
                                tracing::warn!(node = %node.name, "cannot renew the node lease: {e}");
                            }
                        }
                        Err(kube::Error::Api(s)) if s.is_not_found() => {
                            tracing::info!(node = %node.name, "node was deleted; registering it again");
                            match register(&api, node, index, port, now).await {
                                Ok(()) => events.record(
                                    &ObjectRef::node(&node.name),
                                    &node.name,
                                    EventSpec {
                                        warning: false,
                                        reason: "RegisteredNode",
                                        message: format!("Node {} event: Registered Node {} in Controller", node.name, node.name),
                                        field_path: None,
                                        count: 1,
                                    },
                                ),
                                Err(e) => tracing::warn!(node = %node.name, "cannot register node again: {e}"),
                            }
                        }
                        Err(e) => tracing::warn!(node = %node.name, "node heartbeat failed: {e}"),
                    }
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shape() {
        let node = SimNode {
            name: "node-1".into(),
            cpu: "4".into(),
            memory: "6148Mi".into(),
            pods: "110".into(),
        };
        let now: Timestamp = "2025-11-13T10:00:00Z".parse().unwrap();
        let s = &full_status(&node, 10250, now)["status"];
        assert_eq!(s["capacity"], s["allocatable"]);
        assert_eq!(s["capacity"]["memory"], "6148Mi");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(s["nodeInfo"]["kubeletVersion"], "v1.20.2");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["lastHeartbeatTime"], "2025-11-13T10:00:00Z");
        // Parses as a Node status.
        let _: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(s.clone()).unwrap();
        assert_eq!(uuid_like(&"a".repeat(64)).len(), 36);
        assert_eq!(
            micro_time("2025-11-13T10:00:00.123456789Z".parse().unwrap()),
            "2025-11-13T10:00:00.123456Z"
        );
    }
}
