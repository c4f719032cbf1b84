//! Running pods: one watch over all pods feeds a worker per pod bound to one of our nodes (like
//! the kubelet's pod workers). A worker steps the pod's [`PodRecord`] whenever the pod changes,
//! a Secret or ConfigMap it waits for changes, or a timed transition is due, and writes the
//! status through the `pods/status` subresource only when it differs from what it last wrote.
//! A pod being deleted is confirmed with a grace period of 0 (unless it asks to be stuck).
//!
//! Secrets and ConfigMaps are watched too (only their key names are kept), so a container blocked
//! on a missing one starts as soon as it appears. [`PodTable`] publishes each pod's
//! [`PodView`] to the log and port-forward endpoints.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::behavior::{self, ConfigSource};
use super::events::{EventRecorder, ObjectRef};
use super::lifecycle::{NoRuntime, PodRecord, PodView, Runtime};
use super::runtime::{ContainerRuntime, PodContext, spec::PodFacts};
use super::{KubeletConfig, KubeletError, Shared};

/// How many API writes (pod status, deletions) are in flight at once.
const API_WRITES: usize = 32;
/// How long the pod workers wait for the first list of Secrets and ConfigMaps.
const WORLD_SYNC_WAIT: Duration = Duration::from_secs(15);
/// Retry delay after a failed write.
const RETRY: Duration = Duration::from_secs(2);
/// The longest a real container is given to stop (SIGTERM) before SIGKILL.
const MAX_GRACE: Duration = Duration::from_secs(30);

/// Builds a client from the simulator's kubeconfig.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, KubeletError> {
    let err = |detail: String| KubeletError::Kubeconfig {
        path: path.to_path_buf(),
        detail,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    Client::try_from(config).map_err(|e| err(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Secrets and ConfigMaps
// ---------------------------------------------------------------------------------------------

type Keys = HashMap<(String, String), BTreeSet<String>>;

/// The key names of every Secret and ConfigMap, and a signal when they change.
pub struct World {
    secrets: RwLock<Keys>,
    config_maps: RwLock<Keys>,
    /// Bumped on every change; the value says nothing.
    changed: watch::Sender<u64>,
    /// Secrets and ConfigMaps have each been listed once.
    synced: watch::Sender<(bool, bool)>,
}

impl Default for World {
    fn default() -> Self {
        World {
            secrets: RwLock::default(),
            config_maps: RwLock::default(),
            changed: watch::Sender::new(0),
            synced: watch::Sender::new((false, false)),
        }
    }
}

/// A consistent read of the [`World`] for one pod step.
struct Snapshot<'a> {
    secrets: std::sync::RwLockReadGuard<'a, Keys>,
    config_maps: std::sync::RwLockReadGuard<'a, Keys>,
}

impl ConfigSource for Snapshot<'_> {
    fn secret_keys(&self, namespace: &str, name: &str) -> Option<&BTreeSet<String>> {
        self.secrets.get(&(namespace.to_string(), name.to_string()))
    }
    fn config_map_keys(&self, namespace: &str, name: &str) -> Option<&BTreeSet<String>> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
    }
}

impl World {
    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            secrets: self
                .secrets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            config_maps: self
                .config_maps
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let waited = tokio::time::timeout(WORLD_SYNC_WAIT, rx.wait_for(|(s, c)| *s && *c)).await;
        if waited.is_err() {
            tracing::warn!("Secrets and ConfigMaps are not listed yet; starting pods anyway");
        }
    }
}

/// Keeps `World::secrets` up to date.
pub async fn watch_secrets(client: Client, world: Arc<World>) -> Result<(), KubeletError> {
    watch_keys(Api::<Secret>::all(client), world, true, |s: &Secret| {
        let mut keys: BTreeSet<String> = s.data.iter().flatten().map(|(k, _)| k.clone()).collect();
        keys.extend(s.string_data.iter().flatten().map(|(k, _)| k.clone()));
        keys
    })
    .await
}

/// Keeps `World::config_maps` up to date.
pub async fn watch_config_maps(client: Client, world: Arc<World>) -> Result<(), KubeletError> {
    watch_keys(
        Api::<ConfigMap>::all(client),
        world,
        false,
        |c: &ConfigMap| {
            let mut keys: BTreeSet<String> =
                c.data.iter().flatten().map(|(k, _)| k.clone()).collect();
            keys.extend(c.binary_data.iter().flatten().map(|(k, _)| k.clone()));
            keys
        },
    )
    .await
}

async fn watch_keys<K>(
    api: Api<K>,
    world: Arc<World>,
    secrets: bool,
    keys_of: fn(&K) -> BTreeSet<String>,
) -> Result<(), KubeletError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let what = if secrets { "Secrets" } else { "ConfigMaps" };
    let target = if secrets {
        &world.secrets
    } else {
        &world.config_maps
    };
    let id = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Option<Keys> = None;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching {what}: {e}");
                continue;
            }
        };
        let write = || {
            target
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        match event {
            Event::Init => {
                relist = Some(Keys::new());
                continue;
            }
            Event::InitApply(o) => {
                if let Some(r) = relist.as_mut() {
                    r.insert(id(&o), keys_of(&o));
                }
                continue;
            }
            Event::InitDone => {
                if let Some(r) = relist.take() {
                    *write() = r;
                }
                world.synced.send_modify(|(s, c)| {
                    if secrets {
                        *s = true;
                    } else {
                        *c = true;
                    }
                });
            }
            Event::Apply(o) => {
                write().insert(id(&o), keys_of(&o));
            }
            Event::Delete(o) => {
                write().remove(&id(&o));
            }
        }
        world.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
    Err(KubeletError::Stopped(if secrets {
        "Secret watch"
    } else {
        "ConfigMap watch"
    }))
}

// ---------------------------------------------------------------------------------------------
// The pod table
// ---------------------------------------------------------------------------------------------

/// The latest [`PodView`] of every pod the simulator runs, by namespace and name.
#[derive(Default)]
pub struct PodTable {
    pods: RwLock<HashMap<(String, String), Arc<PodView>>>,
}

impl PodTable {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<PodView>> {
        self.pods
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn publish(&self, view: Arc<PodView>) {
        self.pods
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((view.namespace.clone(), view.name.clone()), view);
    }

    /// Every pod of a namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<PodView>> {
        self.pods
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Removes the pod if the entry is still this incarnation (a StatefulSet pod comes back with
    /// the same name and a new UID).
    fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self
            .pods
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|v| v.uid == uid) {
            pods.remove(&key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pod IPs
// ---------------------------------------------------------------------------------------------

/// Hands out pod IPs `10.244.<node>.<n>` (n = 2..=254; .1 is the node's gateway).
#[derive(Default)]
struct IpAllocator {
    used: Mutex<HashMap<usize, BTreeSet<u8>>>,
}

fn node_octet(node: usize) -> u8 {
    u8::try_from(node % 256).unwrap_or(0)
}

/// The node's address on the pod network, where kubelet probes come from.
fn gateway(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node_octet(node), 1)
}

impl IpAllocator {
    fn allocate(&self, node: usize, existing: Option<&str>) -> Ipv4Addr {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let set = used.entry(node).or_default();
        let octet = node_octet(node);
        if let Some(ip) = existing.and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            let o = ip.octets();
            if o[0] == 10
                && o[1] == 244
                && o[2] == octet
                && (2..=254).contains(&o[3])
                && set.insert(o[3])
            {
                return ip;
            }
        }
        let host = (2..=254u8).find(|h| !set.contains(h)).unwrap_or_else(|| {
            tracing::warn!(node, "pod network of the node is full; reusing an address");
            254
        });
        set.insert(host);
        Ipv4Addr::new(10, 244, octet, host)
    }

    fn release(&self, node: usize, ip: Ipv4Addr) {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(set) = used.get_mut(&node) {
            set.remove(&ip.octets()[3]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

struct Context {
    client: Client,
    shared: Arc<Shared>,
    events: EventRecorder,
    world: Arc<World>,
    ips: IpAllocator,
    writes: Semaphore,
    node_names: Vec<String>,
    /// (millicores, bytes) allocatable per node, for the downward API.
    node_sizes: Vec<(i64, i64)>,
    /// Real containers, when the sandbox runs them.
    runtime: Option<Arc<ContainerRuntime>>,
}

/// Watches all pods and runs a worker for each pod bound to one of our nodes.
pub async fn run(
    client: Client,
    config: Arc<KubeletConfig>,
    shared: Arc<Shared>,
    events: EventRecorder,
    world: Arc<World>,
    runtime: Option<Arc<ContainerRuntime>>,
) -> Result<(), KubeletError> {
    world.wait_synced().await;
    let node_names: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
    let node_index: HashMap<String, usize> = node_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let ctx = Arc::new(Context {
        client: client.clone(),
        shared,
        events,
        world,
        ips: IpAllocator::default(),
        writes: Semaphore::new(API_WRITES),
        node_names,
        node_sizes: config
            .nodes
            .iter()
            .map(|n| {
                (
                    newapi_ops_quantity::parse_cpu_millis(&n.cpu).unwrap_or(0),
                    newapi_ops_quantity::parse_value(&n.memory).unwrap_or(0),
                )
            })
            .collect(),
        runtime,
    });
    let mut workers: HashMap<String, watch::Sender<Arc<Pod>>> = HashMap::new();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut stream = watcher::watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();

    let apply = |pod: Pod,
                 workers: &mut HashMap<String, watch::Sender<Arc<Pod>>>,
                 running: &mut JoinSet<()>|
     -> Option<String> {
        let node = pod.spec.as_ref()?.node_name.as_deref()?;
        let &index = node_index.get(node)?;
        let uid = pod.metadata.uid.clone()?;
        match workers.get(&uid) {
            Some(tx) => {
                tx.send_replace(Arc::new(pod));
            }
            None => {
                let (tx, rx) = watch::channel(Arc::new(pod));
                running.spawn(worker(ctx.clone(), index, rx));
                workers.insert(uid.clone(), tx);
            }
        }
        Some(uid)
    };

    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else {
                    return Err(KubeletError::Stopped("pod watch"));
                };
                match event {
                    Err(e) => tracing::warn!("watching pods: {e}"),
                    Ok(Event::Init) => relist = Some(HashSet::new()),
                    Ok(Event::InitApply(pod)) => {
                        if let Some(uid) = apply(pod, &mut workers, &mut running)
                            && let Some(seen) = relist.as_mut()
                        {
                            seen.insert(uid);
                        }
                    }
                    Ok(Event::InitDone) => {
                        // Pods that vanished while the watch was down: stop their workers.
                        if let Some(seen) = relist.take() {
                            workers.retain(|uid, _| seen.contains(uid));
                        }
                    }
                    Ok(Event::Apply(pod)) => {
                        apply(pod, &mut workers, &mut running);
                    }
                    Ok(Event::Delete(pod)) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            // Dropping the sender ends the worker.
                            workers.remove(uid);
                        }
                    }
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a pod worker panicked: {e}");
                }
            }
        }
    }
}

/// Runs one pod until it is deleted (its sender is dropped).
async fn worker(ctx: Arc<Context>, node_index: usize, mut rx: watch::Receiver<Arc<Pod>>) {
    let first = rx.borrow_and_update().clone();
    let namespace = first.namespace().unwrap_or_default();
    let name = first.name_any();
    let uid = first.metadata.uid.clone().unwrap_or_default();
    let node = ctx.node_names[node_index].clone();
    let existing_ip = first.status.as_ref().and_then(|s| s.pod_ip.clone());
    let ip = ctx.ips.allocate(node_index, existing_ip.as_deref());
    let mut record = PodRecord::new(
        &first,
        ip.to_string(),
        gateway(node_index).to_string(),
        Timestamp::now(),
    );
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let object = ObjectRef::pod(&namespace, &name, &uid);
    let mut world_rx = ctx.world.changed.subscribe();
    let mut runtime_rx = ctx.runtime.as_ref().map(|r| r.subscribe());
    let runtime: &(dyn Runtime + Sync) = match &ctx.runtime {
        Some(r) => r.as_ref(),
        None => &NoRuntime,
    };
    let mut written: Option<serde_json::Value> = None;
    let mut deletion_confirmed = false;
    let mut warned = false;
    let pod_dir = format!("{namespace}_{name}_{uid}");
    tracing::debug!(pod = %format!("{namespace}/{name}"), %node, ip = record.pod_ip(), "running pod");

    loop {
        let pod = rx.borrow_and_update().clone();
        let mut wake: Option<Timestamp> = None;
        let mut needs_config = false;
        let mut needs_runtime = false;
        if pod.metadata.deletion_timestamp.is_some() {
            let stuck = pod
                .annotations()
                .get(behavior::STUCK_TERMINATING)
                .is_some_and(|v| v.trim() == "true");
            if !stuck && !deletion_confirmed {
                if let Some(rt) = &ctx.runtime {
                    rt.stop_pod(&uid, grace_period(&pod)).await;
                }
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let _permit = ctx.writes.acquire().await;
                match api.delete(&name, &params).await {
                    Ok(_) => deletion_confirmed = true,
                    Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                        deletion_confirmed = true
                    }
                    Err(e) => {
                        tracing::warn!(pod = %name, "cannot confirm the deletion: {e}");
                        wake = Some(Timestamp::now() + RETRY);
                    }
                }
            }
        } else {
            let outcome = {
                let snapshot = ctx.world.snapshot();
                record.step_with(&pod, &snapshot, runtime, Timestamp::now())
            };
            if let Some(rt) = &ctx.runtime {
                for start in outcome.starts.iter().cloned() {
                    let facts = PodFacts {
                        pod_ip: record.pod_ip().to_string(),
                        host_ip: "127.0.0.1".into(),
                        node_cpu_millis: ctx.node_sizes[node_index].0,
                        node_memory_bytes: ctx.node_sizes[node_index].1,
                    };
                    let pod_ctx = PodContext {
                        facts,
                        pod_dir: pod_dir.clone(),
                    };
                    rt.start(pod.clone(), start, pod_ctx);
                }
            }
            needs_runtime = outcome.needs_runtime;
            if let Some(e) = &outcome.behavior_error
                && !warned
            {
                tracing::warn!(pod = %format!("{namespace}/{name}"), "{e}");
                warned = true;
            }
            ctx.shared.table.publish(Arc::new(outcome.view));
            for event in outcome.events {
                ctx.events.record(&object, &node, event);
            }
            wake = outcome.wake;
            needs_config = outcome.needs_config;
            if written.as_ref() != Some(&outcome.status) {
                let patch = json!({"metadata": {"uid": uid}, "status": outcome.status});
                let _permit = ctx.writes.acquire().await;
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => written = Some(outcome.status),
                    // Gone, or a new pod with the same name: the watch will tell.
                    Err(kube::Error::Api(s))
                        if s.is_not_found() || s.code == 409 || s.code == 422 => {}
                    Err(e) => {
                        tracing::warn!(pod = %format!("{namespace}/{name}"), "cannot write pod status: {e}");
                        let retry = Timestamp::now() + RETRY;
                        wake = Some(wake.map_or(retry, |w| w.min(retry)));
                    }
                }
            }
        }
        let sleep = wake.map(|w| {
            let d = w.duration_since(Timestamp::now());
            Duration::try_from(d).unwrap_or(Duration::ZERO) + Duration::from_millis(5)
        });
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = world_rx.changed(), if needs_config => {}
            () = runtime_changed(&mut runtime_rx), if needs_runtime => {}
            () = tokio::time::sleep(sleep.unwrap_or(Duration::ZERO)), if sleep.is_some() => {}
        }
    }
    if let Some(rt) = &ctx.runtime {
        // Gone without a graceful deletion (or the worker's watch lost it): no process stays.
        rt.stop_pod(&uid, Duration::ZERO).await;
        rt.forget_pod(&uid);
    }
    ctx.ips.release(node_index, ip);
    ctx.shared.table.remove(&namespace, &name, &uid);
    ctx.shared.logs.forget_pod(&pod_dir);
    tracing::debug!(pod = %format!("{namespace}/{name}"), "pod gone");
}

/// Resolves when the runtime reports a change (never without a runtime).
async fn runtime_changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// How long a real container of a pod being deleted may take to stop after SIGTERM: the
/// deletion's grace period (else the pod's), at most [`MAX_GRACE`].
fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_are_per_node_and_reused_after_release() {
        let a = IpAllocator::default();
        let x = a.allocate(0, None);
        let y = a.allocate(0, None);
        assert_eq!(x, Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(y, Ipv4Addr::new(10, 244, 0, 3));
        assert_eq!(a.allocate(3, None), Ipv4Addr::new(10, 244, 3, 2));
        a.release(0, x);
        assert_eq!(a.allocate(0, None), x);
        // An address from an earlier run is kept if it is free and on the right node.
        assert_eq!(
            a.allocate(0, Some("10.244.0.77")),
            Ipv4Addr::new(10, 244, 0, 77)
        );
        assert_eq!(
            a.allocate(0, Some("10.244.0.77")),
            Ipv4Addr::new(10, 244, 0, 4)
        );
        assert_eq!(
            a.allocate(1, Some("10.244.0.9")),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(gateway(2), Ipv4Addr::new(10, 244, 2, 1));
    }

    #[test]
    fn snapshot_reads_keys() {
        let world = World::default();
        world.secrets.write().unwrap().insert(
            ("ns".into(), "db".into()),
            BTreeSet::from(["dsn".to_string()]),
        );
        let snap = world.snapshot();
        assert!(snap.secret_keys("ns", "db").unwrap().contains("dsn"));
        assert!(snap.config_map_keys("ns", "db").is_none());
    }
}
