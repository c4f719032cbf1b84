//! The sandbox's metrics server: serves metrics.k8s.io/v1beta1 to the API server's aggregation
//! layer, as metrics-server does on a real cluster, with figures decided by [`usage`].
//!
//! `sandbox up` starts it as `newapi-ops sandbox metrics-server --config DIR/metrics.json`. It
//! watches pods and nodes through the API server (127.0.0.1, from the host's network namespace)
//! and listens, over TLS, on the sandbox's network namespace address ([`super::netns`]), where
//! the API server proxies `/apis/metrics.k8s.io/v1beta1/...` to it. Only clients holding a
//! certificate of the front-proxy CA (the API server's proxy client) are accepted; the API server
//! has already authenticated and authorized the user.

pub mod usage;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::kubelet::http::{self, Head};

/// How long a kept-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The metrics server's configuration file, written by `sandbox up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Kubeconfig used to watch pods and nodes.
    pub kubeconfig: PathBuf,
    /// The API server that kubeconfig points at.
    pub api_server: String,
    /// The network namespace (`ip netns` name) to listen in.
    pub netns: String,
    /// Where to listen inside it.
    pub listen: SocketAddrV4,
    /// PEM serving certificate and key.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The front-proxy CA: clients must present a certificate it signed.
    pub client_ca: PathBuf,
}

/// Everything that stops the metrics server.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read the metrics server config {}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },

    #[error("cannot load {}: {detail}", path.display())]
    Tls { path: PathBuf, detail: String },

    #[error("cannot listen on {addr} in network namespace {netns}: {source}")]
    Listen {
        addr: SocketAddrV4,
        netns: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot reach the API server: {0}")]
    Api(String),

    #[error("the {0} stopped unexpectedly")]
    Stopped(&'static str),
}

/// Reads `metrics.json`.
pub fn load_config(path: &Path) -> Result<MetricsConfig, MetricsError> {
    let err = |detail: String| MetricsError::Config {
        path: path.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The watched state.
struct Cache {
    pods: Store<Pod>,
    nodes: Store<Node>,
}

/// Runs the server until the process is killed or something fatal happens.
pub async fn run(config: MetricsConfig) -> Result<(), MetricsError> {
    let acceptor = tls_acceptor(&config)?;
    let listener = super::netns::bind_in(&config.netns, config.listen)
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| MetricsError::Listen {
            addr: config.listen,
            netns: config.netns.clone(),
            source,
        })?;
    let client = super::control_plane::client_for(&config.kubeconfig, &config.api_server)
        .await
        .map_err(|e| MetricsError::Api(e.to_string()))?;

    let mut tasks: JoinSet<Result<(), MetricsError>> = JoinSet::new();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    );
    let node_stream = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    );
    tasks.spawn(async move {
        pod_stream
            .default_backoff()
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::warn!("watching pods: {e}");
                }
            })
            .await;
        Err(MetricsError::Stopped("pod watch"))
    });
    tasks.spawn(async move {
        node_stream
            .default_backoff()
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::warn!("watching nodes: {e}");
                }
            })
            .await;
        Err(MetricsError::Stopped("node watch"))
    });
    let cache = Arc::new(Cache { pods, nodes });
    tasks.spawn(serve(listener, acceptor, cache));
    tracing::info!(listen = %config.listen, netns = %config.netns, "metrics server started");

    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => {
                return Err(MetricsError::Stopped("server (a task panicked)"));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// TLS with the serving certificate, requiring a client certificate of the front-proxy CA.
fn tls_acceptor(config: &MetricsConfig) -> Result<TlsAcceptor, MetricsError> {
    let tls_err = |path: &Path, detail: String| MetricsError::Tls {
        path: path.to_path_buf(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.tls_cert)
        .map_err(|e| tls_err(&config.tls_cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&config.tls_cert, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key)
        .map_err(|e| tls_err(&config.tls_key, e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&config.client_ca)
        .map_err(|e| tls_err(&config.client_ca, e.to_string()))?
    {
        let cert = cert.map_err(|e| tls_err(&config.client_ca, e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| tls_err(&config.client_ca, e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls_err(&config.client_ca, e.to_string()))?;
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&config.tls_cert, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&config.tls_cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    cache: Arc<Cache>,
) -> Result<(), MetricsError> {
    http::serve_tls(listener, acceptor, move |tls| {
        let cache = cache.clone();
        async move { handle(tls, &cache).await }
    })
    .await;
    Ok(())
}

async fn handle<S>(mut stream: S, cache: &Cache) -> Result<(), http::ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let Some(head) = http::next_request(&mut stream, &mut buf, IDLE_TIMEOUT).await? else {
            return Ok(());
        };
        let keep_alive = head.keep_alive();
        let (status, body) = answer(&head, cache);
        let body = serde_json::to_vec(&body).unwrap_or_default();
        stream
            .write_all(&http::response(
                status,
                "application/json",
                &body,
                keep_alive,
                &[],
            ))
            .await?;
        if !keep_alive {
            stream.shutdown().await?;
            return Ok(());
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Health,
    Discovery,
    Nodes(Option<&'a str>),
    Pods {
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    },
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    let path = path.trim_end_matches('/');
    if matches!(path, "/healthz" | "/readyz" | "/livez") {
        return Route::Health;
    }
    let Some(rest) = path.strip_prefix("/apis/metrics.k8s.io/v1beta1") else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Route::Discovery,
        ["nodes"] => Route::Nodes(None),
        ["nodes", name] => Route::Nodes(Some(name)),
        ["pods"] => Route::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", ns, "pods"] => Route::Pods {
            namespace: Some(ns),
            name: None,
        },
        ["namespaces", ns, "pods", name] => Route::Pods {
            namespace: Some(ns),
            name: Some(name),
        },
        _ => Route::NotFound,
    }
}

/// The status code and JSON body for a request.
fn answer(head: &Head, cache: &Cache) -> (u16, Value) {
    if head.method != "GET" {
        return (
            405,
            usage::status(405, "MethodNotAllowed", "only get and list are served"),
        );
    }
    let selector = match head
        .params("labelSelector")
        .next()
        .map(usage::Selector::parse)
        .transpose()
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return (400, usage::status(400, "BadRequest", &e)),
    };
    let now = jiff::Timestamp::now();
    let pods = cache.pods.state();
    match route(&head.path) {
        Route::Health => (200, Value::String("ok".into())),
        Route::Discovery => (200, usage::discovery()),
        Route::NotFound => (
            404,
            usage::status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
        Route::Nodes(name) => {
            let nodes: Vec<_> = cache
                .nodes
                .state()
                .into_iter()
                .filter(|n| usage::node_is_measured(n))
                .filter(|n| name.is_none_or(|want| n.metadata.name.as_deref() == Some(want)))
                .filter(|n| selector.matches(n.metadata.labels.as_ref()))
                .collect();
            let items: Vec<Value> = nodes
                .iter()
                .map(|n| usage::node_metrics(n, pods.iter().map(AsRef::as_ref), now))
                .collect();
            match name {
                None => (200, usage::list("NodeMetricsList", &head.path, items)),
                Some(want) => match items.into_iter().next() {
                    Some(item) => (200, usage::single("NodeMetrics", item)),
                    None => (
                        404,
                        usage::status(
                            404,
                            "NotFound",
                            &format!("nodemetrics.metrics.k8s.io \"{want}\" not found"),
                        ),
                    ),
                },
            }
        }
        Route::Pods { namespace, name } => {
            let items: Vec<Value> = pods
                .iter()
                .filter(|p| usage::is_measured(p))
                .filter(|p| namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns)))
                .filter(|p| name.is_none_or(|want| p.metadata.name.as_deref() == Some(want)))
                .filter(|p| selector.matches(p.metadata.labels.as_ref()))
                .map(|p| usage::pod_metrics(p, now))
                .collect();
            match name {
                None => (200, usage::list("PodMetricsList", &head.path, items)),
                Some(want) => match items.into_iter().next() {
                    Some(item) => (200, usage::single("PodMetrics", item)),
                    None => (
                        404,
                        usage::status(
                            404,
                            "NotFound",
                            &format!("podmetrics.metrics.k8s.io \"{want}\" not found"),
                        ),
                    ),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1"), Route::Discovery);
        assert_eq!(route("/apis/metrics.k8s.io/v1beta1/"), Route::Discovery);
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/nodes"),
            Route::Nodes(None)
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/nodes/n1"),
            Route::Nodes(Some("n1"))
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/pods"),
            Route::Pods {
                namespace: None,
                name: None
            }
        );
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/namespaces/new-api/pods/p"),
            Route::Pods {
                namespace: Some("new-api"),
                name: Some("p")
            }
        );
        assert_eq!(route("/healthz"), Route::Health);
        assert_eq!(
            route("/apis/metrics.k8s.io/v1beta1/services"),
            Route::NotFound
        );
        assert_eq!(route("/api/v1/pods"), Route::NotFound);
    }
}
