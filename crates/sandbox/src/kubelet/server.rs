//! The kubelet's HTTPS endpoints on `127.0.0.1:<listen_port>`, where the API server proxies
//! `pods/log` and `pods/portforward`:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` with `previous`, `follow`, `timestamps`,
//!   `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`; errors are plain text with the
//!   kubelet's status codes and messages (the API server relays them);
//! - `GET /portForward/{ns}/{pod}?port=N` upgraded to a WebSocket ([`super::portforward`]);
//! - anything else: 404.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::http::{self, Head};
use super::lifecycle::{PodView, ViewState};
use super::logs::{self, Instance, LogProfile, LogQuery, LogSource};
use super::{KubeletError, Shared, portforward};

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// How long a kept-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Loads the serving certificate chain and key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, KubeletError> {
    let tls_err = |path: &Path, detail: String| KubeletError::Tls {
        path: path.to_path_buf(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|e| tls_err(cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) -> Result<(), KubeletError> {
    http::serve_tls(listener, acceptor, move |tls| {
        let shared = shared.clone();
        async move { handle(tls, &shared).await }
    })
    .await;
    Ok(())
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Logs {
        namespace: &'a str,
        pod: &'a str,
        container: &'a str,
    },
    PortForward {
        namespace: &'a str,
        pod: &'a str,
    },
    NotFound,
}

fn route(head: &Head) -> Route<'_> {
    let parts: Vec<&str> = head.path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", ns, pod, container]
            if !ns.is_empty() && !pod.is_empty() && !container.is_empty() =>
        {
            Route::Logs {
                namespace: ns,
                pod,
                container,
            }
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _]
            if !ns.is_empty() && !pod.is_empty() =>
        {
            Route::PortForward { namespace: ns, pod }
        }
        _ => Route::NotFound,
    }
}

async fn handle<S>(mut stream: S, shared: &Arc<Shared>) -> Result<(), http::ReadError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut buf = Vec::new();
    loop {
        let Some(head) = http::next_request(&mut stream, &mut buf, IDLE_TIMEOUT).await? else {
            return Ok(());
        };
        let keep_alive = head.keep_alive();
        match route(&head) {
            Route::Logs {
                namespace,
                pod,
                container,
            } => {
                let (namespace, pod, container) = (
                    namespace.to_string(),
                    pod.to_string(),
                    container.to_string(),
                );
                if head.method != "GET" {
                    stream
                        .write_all(&http::text(405, "method not allowed", keep_alive))
                        .await?;
                } else {
                    let follow = container_logs(
                        &mut stream,
                        shared,
                        &head,
                        &namespace,
                        &pod,
                        &container,
                        keep_alive,
                    )
                    .await?;
                    if follow {
                        // The whole followed log went out: close (the body was chunked).
                        return Ok(());
                    }
                }
            }
            Route::PortForward { namespace, pod } => {
                let (namespace, pod) = (namespace.to_string(), pod.to_string());
                portforward::serve(
                    stream,
                    std::mem::take(&mut buf),
                    head,
                    &namespace,
                    &pod,
                    shared.clone(),
                )
                .await;
                return Ok(());
            }
            Route::NotFound => {
                stream
                    .write_all(&http::text(404, "404 page not found", keep_alive))
                    .await?;
            }
        }
        if !keep_alive {
            stream.shutdown().await?;
            return Ok(());
        }
    }
}

/// Where a log request points: the instance to read and what it runs.
#[derive(Debug)]
struct Target {
    view: Arc<PodView>,
    container: String,
    instance: Instance,
    profile: LogProfile,
}

/// The kubelet's checks before reading logs (`validateContainerLogStatus`), giving the status
/// code and message it would answer with.
fn resolve(
    view: Option<Arc<PodView>>,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<Target, (u16, String)> {
    let view = view.ok_or_else(|| (404, format!("pod \"{pod}\" does not exist")))?;
    let c = view.container(container).ok_or_else(|| {
        (
            404,
            format!("container \"{container}\" not found in pod \"{pod}\""),
        )
    })?;
    let instance = if previous {
        c.last.clone().ok_or_else(|| {
            (
                400,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            )
        })?
    } else {
        match (&c.state, &c.last) {
            (ViewState::Running(i) | ViewState::Terminated(i), _) => i.clone(),
            (ViewState::Waiting { .. }, Some(last)) => last.clone(),
            (ViewState::Waiting { reason }, None) => {
                let why = match reason.as_str() {
                    "ErrImagePull" => "image can't be pulled".to_string(),
                    "ImagePullBackOff" => "trying and failing to pull image".to_string(),
                    other => other.to_string(),
                };
                return Err((
                    400,
                    format!(
                        "container \"{container}\" in pod \"{pod}\" is waiting to start: {why}"
                    ),
                ));
            }
        }
    };
    Ok(Target {
        container: c.name.clone(),
        profile: c.profile.clone(),
        instance,
        view,
    })
}

/// Answers one `containerLogs` request; returns whether it was a (finished) follow.
#[allow(clippy::too_many_arguments)]
async fn container_logs<S>(
    stream: &mut S,
    shared: &Arc<Shared>,
    head: &Head,
    namespace: &str,
    pod: &str,
    container: &str,
    keep_alive: bool,
) -> Result<bool, std::io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let now = Timestamp::now();
    let query = match LogQuery::from_params(&head.query, now) {
        Ok(q) => q,
        Err(e) => {
            stream.write_all(&http::text(400, &e, keep_alive)).await?;
            return Ok(false);
        }
    };
    let target = match resolve(
        shared.table.get(namespace, pod),
        pod,
        container,
        query.previous,
    ) {
        Ok(t) => t,
        Err((status, message)) => {
            stream
                .write_all(&http::text(status, &message, keep_alive))
                .await?;
            return Ok(false);
        }
    };
    let source = LogSource {
        pod_dir: &target.view.pod_dir,
        container: &target.container,
        instance: &target.instance,
        profile: &target.profile,
    };
    if !query.follow {
        let body = match shared.logs.read(&source, now) {
            Ok(stored) => logs::render(&stored, &query),
            Err(e) => {
                stream
                    .write_all(&http::text(
                        500,
                        &format!("failed to read container log: {e}"),
                        keep_alive,
                    ))
                    .await?;
                return Ok(false);
            }
        };
        stream
            .write_all(&http::response(
                200,
                "text/plain",
                body.as_bytes(),
                keep_alive,
                &[],
            ))
            .await?;
        return Ok(false);
    }
    follow(stream, shared, namespace, pod, target, &query).await?;
    Ok(true)
}

/// Streams a log as it grows (chunked), until the container instance ends or the client leaves.
async fn follow<S>(
    stream: &mut S,
    shared: &Arc<Shared>,
    namespace: &str,
    pod: &str,
    mut target: Target,
    query: &LogQuery,
) -> Result<(), std::io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let now = Timestamp::now();
    let source = LogSource {
        pod_dir: &target.view.pod_dir,
        container: &target.container,
        instance: &target.instance,
        profile: &target.profile,
    };
    let (stored, mut offset) = shared.logs.read_from(&source, now, 0)?;
    let mut sent = logs::render(&stored, query);
    let mut budget = query
        .limit_bytes
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    if let Some(b) = budget.as_mut() {
        *b = b.saturating_sub(sent.len());
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nDate: {}\r\nConnection: close\r\n\r\n",
        http::http_date(now)
    );
    stream.write_all(head.as_bytes()).await?;
    if !sent.is_empty() {
        stream.write_all(&http::chunk(sent.as_bytes())).await?;
    }
    stream.flush().await?;
    sent.clear();
    let mut probe = [0u8; 512];
    loop {
        if budget == Some(0)
            || target
                .instance
                .run
                .ended
                .is_some_and(|(end, _)| Timestamp::now() >= end)
        {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            read = stream.read(&mut probe) => {
                match read {
                    Ok(0) | Err(_) => return Ok(()), // the client went away
                    Ok(_) => {}
                }
            }
        }
        // The instance may have ended meanwhile (crash, pod deleted): learn it from the table.
        let current = shared.table.get(namespace, pod).and_then(|view| {
            let c = view.container(&target.container)?;
            let same = |i: &Instance| i.id == target.instance.id;
            match (&c.state, &c.last) {
                (ViewState::Running(i) | ViewState::Terminated(i), _) if same(i) => Some(i.clone()),
                (_, Some(l)) if same(l) => Some(l.clone()),
                _ => None,
            }
        });
        let gone = current.is_none();
        if let Some(i) = current {
            target.instance = i;
        }
        let source = LogSource {
            pod_dir: &target.view.pod_dir,
            container: &target.container,
            instance: &target.instance,
            profile: &target.profile,
        };
        let (more, new_offset) = shared.logs.read_from(&source, Timestamp::now(), offset)?;
        offset = new_offset;
        let mut out = String::new();
        for line in more.lines() {
            logs::push_line(&mut out, line, query);
        }
        if let Some(b) = budget.as_mut() {
            logs::truncate_bytes(&mut out, *b);
            *b -= out.len();
        }
        if !out.is_empty() {
            stream.write_all(&http::chunk(out.as_bytes())).await?;
            stream.flush().await?;
        }
        if gone {
            break;
        }
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::behavior::Termination;
    use crate::kubelet::lifecycle::ContainerView;
    use crate::kubelet::logs::Run;

    fn head(path: &str) -> Head {
        Head {
            method: "GET".into(),
            path: path.into(),
            query: vec![],
            headers: vec![],
            minor_version: 1,
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&head("/containerLogs/new-api/web-1/new-api")),
            Route::Logs {
                namespace: "new-api",
                pod: "web-1",
                container: "new-api"
            }
        );
        assert_eq!(
            route(&head("/portForward/new-api/mysql-0")),
            Route::PortForward {
                namespace: "new-api",
                pod: "mysql-0"
            }
        );
        assert_eq!(route(&head("/pods")), Route::NotFound);
        assert_eq!(route(&head("/containerLogs/ns/pod")), Route::NotFound);
    }

    fn instance(restart: u32, ended: bool) -> Instance {
        let t: Timestamp = "2025-11-13T10:00:00Z".parse().unwrap();
        Instance {
            id: format!("id{restart}"),
            restart,
            run: Run {
                started: t,
                ended: ended.then_some((t, Termination::OomKilled)),
                tail: vec![],
            },
        }
    }

    fn view(state: ViewState, last: Option<Instance>) -> Arc<PodView> {
        Arc::new(PodView {
            namespace: "ns".into(),
            name: "web-1".into(),
            uid: "u".into(),
            pod_dir: "ns_web-1_u".into(),
            app: None,
            labels: Default::default(),
            ports: Vec::new(),
            real: false,
            rate_limited: false,
            start_time: Timestamp::now(),
            containers: vec![ContainerView {
                name: "app".into(),
                init: false,
                state,
                last,
                profile: LogProfile::Quiet,
            }],
        })
    }

    #[test]
    fn kubelet_log_checks() {
        let running = view(ViewState::Running(instance(0, false)), None);
        let err = resolve(Some(running.clone()), "web-1", "app", true).unwrap_err();
        assert_eq!(
            err,
            (
                400,
                "previous terminated container \"app\" in pod \"web-1\" not found".to_string()
            )
        );
        assert_eq!(
            resolve(Some(running.clone()), "web-1", "app", false)
                .unwrap()
                .instance
                .id,
            "id0"
        );
        assert_eq!(
            resolve(Some(running), "web-1", "nope", false)
                .unwrap_err()
                .0,
            404
        );
        assert_eq!(resolve(None, "web-1", "app", false).unwrap_err().0, 404);

        let crashing = view(
            ViewState::Waiting {
                reason: "CrashLoopBackOff".into(),
            },
            Some(instance(5, true)),
        );
        assert_eq!(
            resolve(Some(crashing.clone()), "web-1", "app", true)
                .unwrap()
                .instance
                .id,
            "id5"
        );
        assert_eq!(
            resolve(Some(crashing), "web-1", "app", false)
                .unwrap()
                .instance
                .id,
            "id5"
        );

        let pulling = view(
            ViewState::Waiting {
                reason: "ImagePullBackOff".into(),
            },
            None,
        );
        assert_eq!(
            resolve(Some(pulling), "web-1", "app", false).unwrap_err().1,
            "container \"app\" in pod \"web-1\" is waiting to start: trying and failing to pull image"
        );
    }
}
