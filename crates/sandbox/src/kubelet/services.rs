//! Services as the sandbox's real containers see them.
//!
//! Containers run in the host's network namespace (so loopback reaches MariaDB, Redis and the API
//! server), and there is no cluster DNS. Instead every Service gets a loopback address of its
//! own, `127.<net>.x.y` (the whole 127.0.0.0/8 is local; each sandbox has its own /16, `net`),
//! on which the simulator listens on each Service port and forwards every connection to a backend
//! chosen then: a running pod the selector picks, reached like a port-forward to it (MariaDB for
//! `app=mysql` port 3306, Redis for `app=redis` 6379, the New-API stand-in for `app=new-api`
//! 3000, the pod's own port on the host for a pod running a real container), or the API server
//! for `default/kubernetes`. A container's `/etc/hosts` maps every Service's names (`mysql` in the
//! pod's namespace; `mysql.new-api`, `mysql.new-api.svc`, `mysql.new-api.svc.cluster.local`
//! everywhere) to its address, and its environment gets the Service variables a kubelet sets
//! (`KUBERNETES_SERVICE_HOST`, `MYSQL_SERVICE_PORT`, …).
//!
//! `127.<net>.0.1` is the sandbox's own: the simulator binds port [`LOCK_PORT`] there when it
//! starts and holds it for as long as it runs, which is how two sandboxes on one machine keep out
//! of each other's /16 ([`claim_net`]); `127.<net>.0.2` is the `kubernetes` Service (the API
//! server's certificate names that address of every /16 a sandbox may take).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::lifecycle::PodView;
use super::{KubeletError, Shared};

/// The port the simulator holds on `127.<net>.0.1` (the kubelet's well-known port).
pub const LOCK_PORT: u16 = 10250;
/// How long dialing the API server may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The sandbox's own address in its /16.
pub fn lock_addr(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net, 0, 1)
}

/// The `kubernetes` Service's address.
pub fn kubernetes_addr(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net, 0, 2)
}

/// The /16s a sandbox may take: 127.20.0.0/16 to 127.219.0.0/16.
pub const NETS: std::ops::RangeInclusive<u8> = 20..=219;

/// The `kubernetes` Service addresses of every /16 in [`NETS`]: the API server's certificate
/// names them all, since which one a sandbox gets is only known when its simulator starts.
pub fn kubernetes_addrs() -> Vec<Ipv4Addr> {
    NETS.map(kubernetes_addr).collect()
}

/// Takes a /16 for the sandbox whose simulator keeps its state in `dir`: the first one, from
/// one derived from the directory on, whose [`LOCK_PORT`] can be bound (and is then held by the
/// returned listener for as long as it lives). `None` when all are taken.
pub fn claim_net(dir: &Path) -> Option<(u8, std::net::TcpListener)> {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let count = NETS.len();
    let start = usize::from(digest[0]) % count;
    (0..count)
        .filter_map(|i| u8::try_from(usize::from(*NETS.start()) + (start + i) % count).ok())
        .find_map(|net| {
            std::net::TcpListener::bind((lock_addr(net), LOCK_PORT))
                .ok()
                .map(|l| (net, l))
        })
}

/// A Service port, as the forwarder needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    /// `targetPort`: a number or a container port's name.
    pub target: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// One Service with its loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub addr: Ipv4Addr,
    /// TCP ports only.
    pub ports: Vec<ServicePort>,
    /// `None`: no selector (its Endpoints are not followed: nothing answers).
    pub selector: Option<BTreeMap<String, String>>,
}

impl ServiceInfo {
    fn is_kubernetes(&self) -> bool {
        self.namespace == "default" && self.name == "kubernetes"
    }
}

/// The Services the simulator forwards, and their listeners.
pub struct Services {
    net: u8,
    api_server: String,
    inner: Mutex<Inner>,
    /// Round-robin over a Service's pods.
    next: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(String, String), Entry>,
    used: HashSet<u16>,
}

struct Entry {
    info: Arc<ServiceInfo>,
    slot: Option<u16>,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

impl Services {
    pub fn new(net: u8, api_server: String) -> Services {
        Services {
            net,
            api_server,
            inner: Mutex::new(Inner::default()),
            next: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every Service known now.
    pub fn snapshot(&self) -> Vec<Arc<ServiceInfo>> {
        let mut out: Vec<Arc<ServiceInfo>> = self
            .lock()
            .entries
            .values()
            .map(|e| e.info.clone())
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    /// The address of the sandbox's /16 that holds no Service (a nameserver that refuses).
    pub fn own_addr(&self) -> Ipv4Addr {
        lock_addr(self.net)
    }

    /// Takes in a new or changed Service: gives it an address and listens on its ports.
    fn apply(self: &Arc<Self>, svc: &Service, shared: &Arc<Shared>) {
        let namespace = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        let spec = svc.spec.clone().unwrap_or_default();
        let ports: Vec<ServicePort> = spec
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let target = match &p.target_port {
                    Some(IntOrString::Int(n)) => TargetPort::Number(u16::try_from(*n).ok()?),
                    Some(IntOrString::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                    None => TargetPort::Number(port),
                };
                Some(ServicePort {
                    name: p.name.clone(),
                    port,
                    target,
                })
            })
            .collect();
        let selector = spec.selector.filter(|s| !s.is_empty());
        let key = (namespace.clone(), name.clone());
        let mut inner = self.lock();
        if let Some(e) = inner.entries.get_mut(&key)
            && e.info.ports == ports
        {
            if e.info.selector != selector {
                let mut info = (*e.info).clone();
                info.selector = selector;
                e.info = Arc::new(info);
            }
            return;
        }
        let old = inner.entries.remove(&key);
        let (addr, slot) = match old.as_ref() {
            Some(e) => (e.info.addr, e.slot),
            None if namespace == "default" && name == "kubernetes" => {
                (kubernetes_addr(self.net), None)
            }
            None => {
                let slot = free_slot(&namespace, &name, &inner.used);
                inner.used.insert(slot);
                (slot_addr(self.net, slot), Some(slot))
            }
        };
        drop(old);
        let info = Arc::new(ServiceInfo {
            namespace,
            name,
            addr,
            ports,
            selector,
        });
        let listeners = info
            .ports
            .iter()
            .map(|p| {
                tokio::spawn(listen(
                    self.clone(),
                    shared.clone(),
                    info.namespace.clone(),
                    info.name.clone(),
                    addr,
                    p.port,
                ))
            })
            .collect();
        inner.entries.insert(
            key,
            Entry {
                info,
                slot,
                listeners,
            },
        );
    }

    fn remove(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        if let Some(e) = inner
            .entries
            .remove(&(namespace.to_string(), name.to_string()))
            && let Some(slot) = e.slot
        {
            inner.used.remove(&slot);
        }
    }

    fn current(&self, namespace: &str, name: &str) -> Option<Arc<ServiceInfo>> {
        self.lock()
            .entries
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.info.clone())
    }
}

/// Slots 16..65520 of the /16 (`x.y` = slot / 256, slot % 256), never `.0` or `.255`. The first
/// choice is derived from the Service's name, so a Service keeps its address while it exists and
/// usually gets the same one back.
fn free_slot(namespace: &str, name: &str, used: &HashSet<u16>) -> u16 {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let span: u32 = 65_520 - 16;
    let start = (u32::from(digest[0]) << 8 | u32::from(digest[1])) % span;
    (0..span)
        .map(|i| u16::try_from(16 + (start + i) % span).unwrap_or(16))
        .find(|s| !used.contains(s) && !matches!(s & 0xff, 0 | 255))
        .unwrap_or(16)
}

fn slot_addr(net: u8, slot: u16) -> Ipv4Addr {
    let [hi, lo] = slot.to_be_bytes();
    Ipv4Addr::new(127, net, hi, lo)
}

/// Follows every Service of the cluster until the watch ends.
pub async fn run(
    client: Client,
    services: Arc<Services>,
    shared: Arc<Shared>,
) -> Result<(), KubeletError> {
    let mut stream = watcher::watcher(Api::<Service>::all(client), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut relist: Option<HashSet<(String, String)>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Err(e) => tracing::warn!("watching Services: {e}"),
            Ok(Event::Init) => relist = Some(HashSet::new()),
            Ok(Event::InitApply(s)) => {
                if let Some(seen) = relist.as_mut() {
                    seen.insert((s.namespace().unwrap_or_default(), s.name_any()));
                }
                services.apply(&s, &shared);
            }
            Ok(Event::InitDone) => {
                if let Some(seen) = relist.take() {
                    let gone: Vec<(String, String)> = services
                        .lock()
                        .entries
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for (ns, name) in gone {
                        services.remove(&ns, &name);
                    }
                }
            }
            Ok(Event::Apply(s)) => services.apply(&s, &shared),
            Ok(Event::Delete(s)) => {
                services.remove(&s.namespace().unwrap_or_default(), &s.name_any());
            }
        }
    }
    Err(KubeletError::Stopped("Service watch"))
}

/// Accepts connections on one Service port until aborted.
async fn listen(
    services: Arc<Services>,
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    addr: Ipv4Addr,
    port: u16,
) {
    // A listener of the Service's previous version may still be closing.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind((addr, port)).await {
            Ok(l) => break l,
            Err(e) if tries < 20 && e.kind() == std::io::ErrorKind::AddrInUse => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(service = %format!("{namespace}/{name}"), "cannot listen on {addr}:{port}: {e}");
                return;
            }
        }
    };
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let services = services.clone();
        let shared = shared.clone();
        let (namespace, name) = (namespace.clone(), name.clone());
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            if let Err(e) = forward(inbound, &services, &shared, &namespace, &name, port).await {
                tracing::debug!(service = %format!("{namespace}/{name}:{port}"), "connection not forwarded: {e}");
            }
        });
    }
}

/// Connects one accepted connection to a backend of the Service, then copies both ways.
async fn forward(
    mut inbound: TcpStream,
    services: &Services,
    shared: &Arc<Shared>,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(), String> {
    let info = services
        .current(namespace, name)
        .ok_or("the Service is gone")?;
    let sp = info
        .ports
        .iter()
        .find(|p| p.port == port)
        .ok_or("the port is gone")?;
    let (mut outbound, _guard) = if info.is_kubernetes() {
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&services.api_server))
            .await
            .map_err(|_| "the API server does not answer".to_string())?
            .map_err(|e| format!("the API server: {e}"))?;
        (tcp, None)
    } else {
        let selector = info.selector.as_ref().ok_or("no selector")?;
        let pods: Vec<(Arc<PodView>, u16)> = shared
            .table
            .in_namespace(namespace)
            .into_iter()
            .filter(|v| v.any_running() && selects(selector, &v.labels))
            .filter_map(|v| {
                let p = target_port(&sp.target, &v)?;
                Some((v, p))
            })
            .collect();
        if pods.is_empty() {
            return Err("no running pod behind the Service".into());
        }
        let first = services.next.fetch_add(1, Ordering::Relaxed);
        let mut last = String::new();
        let mut reached = None;
        for i in 0..pods.len() {
            let (view, p) = &pods[(first + i) % pods.len()];
            match super::portforward::connect(view, *p, shared).await {
                Ok(c) => {
                    reached = Some(c);
                    break;
                }
                Err(e) => last = e,
            }
        }
        reached.ok_or(last)?
    };
    let _ = outbound.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Whether a Service selector picks a pod with these labels.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod's port a Service's `targetPort` means.
fn target_port(target: &TargetPort, view: &PodView) -> Option<u16> {
    match target {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => view.ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p),
    }
}

// ---------------------------------------------------------------------------------------------
// What a container sees
// ---------------------------------------------------------------------------------------------

/// The names a Service answers to from a pod in `pod_ns`.
fn names(s: &ServiceInfo, pod_ns: &str) -> Vec<String> {
    let mut out = vec![
        format!("{}.{}.svc.cluster.local", s.name, s.namespace),
        format!("{}.{}.svc", s.name, s.namespace),
        format!("{}.{}", s.name, s.namespace),
    ];
    if s.namespace == pod_ns {
        out.push(s.name.clone());
    }
    out
}

/// A container's `/etc/hosts`: localhost, the pod's hostname, then every Service.
pub fn hosts_file(services: &[Arc<ServiceInfo>], pod_ns: &str, hostname: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (newapi-ops sandbox: Services on loopback addresses).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    out.push_str(&format!("127.0.0.1\t{hostname}\n"));
    for s in services {
        out.push_str(&format!("{}\t{}\n", s.addr, names(s, pod_ns).join(" ")));
    }
    out
}

/// A container's `/etc/resolv.conf`: the cluster's search path, and a nameserver that refuses at
/// once (every name there is resolves from `/etc/hosts`).
pub fn resolv_conf(pod_ns: &str, nameserver: Ipv4Addr) -> String {
    format!(
        "search {pod_ns}.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver {nameserver}\n\
         options ndots:5\n"
    )
}

/// The Service environment variables a kubelet gives a container in `pod_ns`: those of the
/// namespace's Services when `links` (enableServiceLinks, the default), and always the
/// `kubernetes` Service's (`KUBERNETES_SERVICE_HOST`/`_PORT`, how in-cluster clients find the
/// API server).
pub fn service_env(
    services: &[Arc<ServiceInfo>],
    pod_ns: &str,
    links: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let wanted = (links && s.namespace == pod_ns) || s.is_kubernetes();
        let Some(first) = s.ports.first().filter(|_| wanted) else {
            continue;
        };
        let prefix = s.name.to_ascii_uppercase().replace('-', "_");
        let host = s.addr.to_string();
        out.push((format!("{prefix}_SERVICE_HOST"), host.clone()));
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in &s.ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        n.to_ascii_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        out.push((
            format!("{prefix}_PORT"),
            format!("tcp://{host}:{}", first.port),
        ));
        for p in &s.ports {
            let base = format!("{prefix}_PORT_{}_TCP", p.port);
            out.push((base.clone(), format!("tcp://{host}:{}", p.port)));
            out.push((format!("{base}_PROTO"), "tcp".into()));
            out.push((format!("{base}_PORT"), p.port.to_string()));
            out.push((format!("{base}_ADDR"), host.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, addr: [u8; 4], ports: &[(Option<&str>, u16)]) -> Arc<ServiceInfo> {
        Arc::new(ServiceInfo {
            namespace: ns.into(),
            name: name.into(),
            addr: Ipv4Addr::from(addr),
            ports: ports
                .iter()
                .map(|(n, p)| ServicePort {
                    name: n.map(str::to_string),
                    port: *p,
                    target: TargetPort::Number(*p),
                })
                .collect(),
            selector: None,
        })
    }

    #[test]
    fn slots_are_stable_and_avoid_collisions() {
        let mut used = HashSet::new();
        let a = free_slot("new-api", "mysql", &used);
        assert_eq!(a, free_slot("new-api", "mysql", &used));
        assert!((16..65_520).contains(&a));
        assert!(!matches!(a & 0xff, 0 | 255));
        used.insert(a);
        let b = free_slot("new-api", "mysql", &used);
        assert_ne!(a, b);
        assert_eq!(
            slot_addr(42, 0x0102),
            Ipv4Addr::new(127, 42, 1, 2),
            "x.y = slot / 256, slot % 256"
        );
        assert_eq!(kubernetes_addr(42), Ipv4Addr::new(127, 42, 0, 2));
    }

    #[test]
    fn hosts_resolv_and_env() {
        let list = vec![
            svc(
                "default",
                "kubernetes",
                [127, 42, 0, 2],
                &[(Some("https"), 443)],
            ),
            svc(
                "new-api",
                "mysql",
                [127, 42, 7, 9],
                &[(Some("mysql"), 3306)],
            ),
            svc("other", "redis", [127, 42, 8, 1], &[(None, 6379)]),
        ];
        let hosts = hosts_file(&list, "new-api", "job-x");
        assert!(hosts.contains("127.0.0.1\tjob-x\n"));
        assert!(hosts.contains(
            "127.42.7.9\tmysql.new-api.svc.cluster.local mysql.new-api.svc mysql.new-api mysql\n"
        ));
        // Another namespace's Service only by its qualified names.
        assert!(
            hosts.contains(
                "127.42.8.1\tredis.other.svc.cluster.local redis.other.svc redis.other\n"
            )
        );
        assert!(hosts.contains("127.42.0.2\tkubernetes.default.svc.cluster.local kubernetes.default.svc kubernetes.default\n"));

        let resolv = resolv_conf("new-api", Ipv4Addr::new(127, 42, 0, 1));
        assert!(
            resolv
                .starts_with("search new-api.svc.cluster.local svc.cluster.local cluster.local\n")
        );
        assert!(resolv.contains("nameserver 127.42.0.1\n"));

        let env: HashMap<String, String> =
            service_env(&list, "new-api", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "127.42.0.2");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["MYSQL_SERVICE_HOST"], "127.42.7.9");
        assert_eq!(env["MYSQL_PORT_3306_TCP"], "tcp://127.42.7.9:3306");
        assert!(!env.contains_key("REDIS_SERVICE_HOST"), "another namespace");
        let no_links: HashMap<String, String> =
            service_env(&list, "new-api", false).into_iter().collect();
        assert!(no_links.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!no_links.contains_key("MYSQL_SERVICE_HOST"));
    }

    #[test]
    fn nets_are_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _held) = claim_net(dir.path()).expect("a free /16");
        assert!(NETS.contains(&a));
        let (b, _also) = claim_net(dir.path()).expect("another free /16");
        assert_ne!(a, b, "the first is held");
        assert_eq!(kubernetes_addrs().len(), 200);
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "mysql".to_string()),
            ("x".into(), "y".into()),
        ]
        .into();
        assert!(selects(
            &[("app".to_string(), "mysql".to_string())].into(),
            &labels
        ));
        assert!(!selects(
            &[("app".to_string(), "redis".to_string())].into(),
            &labels
        ));
    }
}
