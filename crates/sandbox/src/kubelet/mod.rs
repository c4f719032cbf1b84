//! The kubelet simulator: plays the kubelet for every node of the sandbox's control plane.
//!
//! For most images there is no container runtime: the simulator registers the configured nodes
//! (Ready, untainted, heartbeating), watches the pods bound to them and writes their status the
//! way a kubelet would decide it from what it sees: image references, Secrets and ConfigMaps the
//! environment needs, and the sandbox annotations faults put on pod templates
//! ([`behavior`]). It records the matching events, and serves the kubelet's HTTPS endpoints the
//! API server proxies to: `containerLogs` (generated, New-API-like logs) and `portForward`
//! (WebSocket channel protocol, to MariaDB, Redis or an in-process New-API stand-in).
//!
//! Pods of the tool's own image ([`crate::image::IMAGE`]) are the exception: [`runtime`] runs them
//! for real with `runc` (their output is their log, their exit code their termination), in the
//! host's network, where [`services`] gives every Service a loopback address that forwards to
//! the real backends.
//!
//! Layout: [`config`] is the contract with `sandbox up`; [`image`], [`behavior`], [`logs`],
//! [`lifecycle`] and [`runtime::spec`] are pure decisions (unit-tested); [`nodes`], [`pods`] and
//! [`events`] talk to the API server; [`server`], [`http`], [`portforward`], [`standin`] and
//! [`services`] serve connections; [`runtime`] runs containers.

pub mod behavior;
pub mod config;
mod events;
pub(crate) mod http;
mod image;
mod lifecycle;
mod logs;
mod nodes;
mod pods;
mod portforward;
pub(crate) mod runtime;
mod server;
pub(crate) mod services;
mod standin;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;

pub use config::{Backends, ContainersConfig, KubeletConfig, SimNode};

/// Everything that can stop the simulator.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("cannot read the kubelet simulator config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid kubelet simulator config {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid kubelet simulator config: {0}")]
    InvalidConfig(String),

    #[error("cannot use kubeconfig {path}: {detail}")]
    Kubeconfig { path: PathBuf, detail: String },

    #[error("cannot load the serving certificate/key ({path}): {detail}")]
    Tls { path: PathBuf, detail: String },

    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },

    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error("the {0} stopped unexpectedly")]
    Stopped(&'static str),
}

impl KubeletError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> KubeletError {
        KubeletError::Api {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

/// Reads and checks `kubelet.json`.
pub fn load_config(path: &Path) -> Result<KubeletConfig, KubeletError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeletError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let config: KubeletConfig =
        serde_json::from_str(&text).map_err(|source| KubeletError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })?;
    validate(&config)?;
    Ok(config)
}

fn validate(config: &KubeletConfig) -> Result<(), KubeletError> {
    if config.nodes.is_empty() {
        return Err(KubeletError::InvalidConfig("no nodes to simulate".into()));
    }
    let mut names = std::collections::HashSet::new();
    for n in &config.nodes {
        if n.name.is_empty() || !names.insert(n.name.as_str()) {
            return Err(KubeletError::InvalidConfig(format!(
                "node names must be unique and non-empty (got {:?})",
                n.name
            )));
        }
    }
    if config.listen_port == 0 {
        return Err(KubeletError::InvalidConfig(
            "listen_port must not be 0".into(),
        ));
    }
    Ok(())
}

/// State shared by the pod workers and the connection handlers.
pub(crate) struct Shared {
    pub table: pods::PodTable,
    pub logs: logs::LogStore,
    pub backends: Backends,
    pub standin: standin::Registry,
}

/// Runs the simulator until the future is dropped (the process is killed) or something fatal
/// happens. Registers the nodes first and returns an error if that fails.
pub async fn run(config: KubeletConfig) -> Result<(), KubeletError> {
    validate(&config)?;
    let config = Arc::new(config);
    let client = pods::client_from_kubeconfig(&config.kubeconfig).await?;
    std::fs::create_dir_all(&config.state_dir).map_err(|source| KubeletError::Io {
        action: format!("creating state directory {}", config.state_dir.display()),
        source,
    })?;
    let acceptor = server::tls_acceptor(&config.tls_cert, &config.tls_key)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.listen_port))
        .await
        .map_err(|source| KubeletError::Listen {
            port: config.listen_port,
            source,
        })?;
    let standin_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|source| KubeletError::Listen { port: 0, source })?;
    let standin_addr = standin_listener
        .local_addr()
        .map_err(|source| KubeletError::Io {
            action: "reading the stand-in's address".into(),
            source,
        })?;

    let shared = Arc::new(Shared {
        table: pods::PodTable::default(),
        logs: logs::LogStore::new(&config.state_dir),
        backends: config.backends.clone(),
        standin: standin::Registry::new(standin_addr),
    });

    // Every task lives in this set: dropping `run` aborts them all.
    let mut tasks: JoinSet<Result<(), KubeletError>> = JoinSet::new();
    let events = events::EventRecorder::start(&client, &mut tasks);
    nodes::register_all(&client, &config, &events).await?;
    tracing::info!(
        nodes = config.nodes.len(),
        port = config.listen_port,
        standin = %standin_addr,
        "kubelet simulator registered its nodes"
    );

    tasks.spawn(server::serve(listener, acceptor, shared.clone()));
    tasks.spawn(standin::serve(standin_listener, shared.clone()));
    tasks.spawn(nodes::heartbeat(
        client.clone(),
        config.clone(),
        events.clone(),
    ));
    let world = Arc::new(pods::World::default());
    tasks.spawn(pods::watch_secrets(client.clone(), world.clone()));
    tasks.spawn(pods::watch_config_maps(client.clone(), world.clone()));
    // Real containers: the sandbox's loopback /16 (held for as long as we run), the Service
    // forwarders, and the runtime, after removing what a killed predecessor left running.
    let mut _net_lock = None;
    let runtime = match &config.containers {
        Some(c) => {
            let mut c = c.clone();
            let net = match services::claim_net(&config.state_dir) {
                Some((net, lock)) => {
                    _net_lock = Some(lock);
                    net
                }
                None => {
                    if c.unavailable.is_none() {
                        c.unavailable = Some(
                            "every loopback /16 for Services (127.20-219.0.0) is taken by other sandboxes"
                                .into(),
                        );
                    }
                    0
                }
            };
            let state_dir = config.state_dir.clone();
            let _ =
                tokio::task::spawn_blocking(move || runtime::remove_leftovers(&state_dir)).await;
            let table = Arc::new(services::Services::new(net, c.api_server.clone()));
            if net != 0 {
                tracing::info!(
                    "Services of real containers on 127.{net}.0.0/16 (kubernetes: {})",
                    services::kubernetes_addr(net)
                );
                tasks.spawn(services::run(client.clone(), table.clone(), shared.clone()));
            }
            if let Some(why) = &c.unavailable {
                tracing::info!("pods of {} will not run: {why}", c.image);
            }
            Some(runtime::ContainerRuntime::new(
                client.clone(),
                c,
                &config.state_dir,
                table,
                shared.clone(),
            ))
        }
        None => None,
    };
    tasks.spawn(pods::run(
        client,
        config.clone(),
        shared,
        events,
        world,
        runtime,
    ));

    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => {
                return Err(KubeletError::Stopped("simulator (a task panicked)"));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_checks_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet.json");
        let good = serde_json::json!({
            "kubeconfig": "/x/admin.kubeconfig", "listen_port": 10250,
            "tls_cert": "/x/k.crt", "tls_key": "/x/k.key",
            "nodes": [{"name": "node-1", "cpu": "4", "memory": "6148Mi", "pods": "110"}],
            "backends": {"mysql": "127.0.0.1:3306", "redis": "127.0.0.1:6379"},
            "state_dir": "/x/kubelet"
        });
        std::fs::write(&path, good.to_string()).unwrap();
        let c = load_config(&path).unwrap();
        assert_eq!(c.nodes[0].name, "node-1");

        let mut dup = good.clone();
        dup["nodes"] = serde_json::json!([
            {"name": "a", "cpu": "1", "memory": "1Gi", "pods": "10"},
            {"name": "a", "cpu": "1", "memory": "1Gi", "pods": "10"}
        ]);
        std::fs::write(&path, dup.to_string()).unwrap();
        assert!(matches!(
            load_config(&path),
            Err(KubeletError::InvalidConfig(_))
        ));

        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            load_config(&path),
            Err(KubeletError::ParseConfig { .. })
        ));
        assert!(matches!(
            load_config(&dir.path().join("missing.json")),
            Err(KubeletError::ReadConfig { .. })
        ));
    }
}
