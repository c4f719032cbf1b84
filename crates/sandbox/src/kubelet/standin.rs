//! The New-API stand-in: a tiny HTTP/1.1 server on a loopback port chosen at start-up, behind
//! port 3000 of every `app=new-api` pod when port-forwarded.
//!
//! One server answers for all pods: the port-forward registers the source port of its
//! connection with the pod it is for ([`Registry::register`]) before forwarding a byte, so each
//! request is answered (and logged) as that pod:
//!
//! - `GET /api/status`: New-API's JSON (`{"success":true,"message":"","data":{"version":…,
//!   "start_time":<pod start>,…}}`); 429 with an empty body when the pod is annotated
//!   `sandbox.newapi-ops.io/rate-limited: "true"`; 500 with an empty body when the real Redis
//!   backend does not answer a PING, which is also logged (`Redis ping test failed: …`) to the
//!   pod's log, as New-API does when Redis is down;
//! - `GET /`: a small HTML page; anything else: 404.
//!
//! Every request adds a `[GIN]` line to the pod's log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::http::{self, Head};
use super::lifecycle::{PodView, ViewState};
use super::logs::{self, LogProfile, LogSource};
use super::{KubeletError, Shared};

/// How long a Redis PING may take before Redis counts as down.
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a PING result is reused (many pods are checked at once in benchmarks).
const PING_CACHE: Duration = Duration::from_secs(1);

type Peers = Arc<Mutex<HashMap<u16, (String, String)>>>;

/// Which pod each stand-in connection is for, and the stand-in's address.
pub struct Registry {
    addr: SocketAddr,
    peers: Peers,
    ping: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// Unregisters a connection when dropped (the port-forward ended).
pub struct PeerGuard {
    peers: Peers,
    port: u16,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.port);
    }
}

impl Registry {
    pub fn new(addr: SocketAddr) -> Registry {
        Registry {
            addr,
            peers: Arc::default(),
            ping: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Says that connections from local port `port` are for pod `namespace/name`.
    pub fn register(&self, port: u16, namespace: &str, name: &str) -> PeerGuard {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port, (namespace.to_string(), name.to_string()));
        PeerGuard {
            peers: self.peers.clone(),
            port,
        }
    }

    fn pod_of(&self, port: u16) -> Option<(String, String)> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&port)
            .cloned()
    }

    /// Whether Redis answers a PING (cached for a moment).
    async fn redis_alive(&self, addr: &str) -> Result<(), String> {
        {
            let cached = self
                .ping
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, result)) = cached.as_ref()
                && at.elapsed() < PING_CACHE
            {
                return result.clone();
            }
        }
        let result = ping(addr).await;
        *self
            .ping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), result.clone()));
        result
    }
}

/// Sends `PING` in the inline protocol and expects `+PONG` (or an auth error: Redis is up).
async fn ping(addr: &str) -> Result<(), String> {
    let attempt = async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: connect: {}", short_io(&e)))?;
        tcp.write_all(b"PING\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
            Ok(())
        } else if n == 0 {
            Err("EOF".to_string())
        } else {
            Err(format!("unexpected reply {:?}", reply.trim_end()))
        }
    };
    match tokio::time::timeout(PING_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn short_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// Serves stand-in connections until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> Result<(), KubeletError> {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = listener.accept().await.map_err(|source| KubeletError::Io {
            action: "accepting a stand-in connection".into(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        connections.spawn(handle(tcp, peer, shared.clone()));
    }
}

async fn handle(mut tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let head = match http::read_head(&mut tcp, &mut buf).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                let _ = tcp.write_all(&http::text(400, &e.to_string(), false)).await;
                return;
            }
        };
        // Skip the request body, if any.
        let mut body = head.content_length();
        let already = body.min(buf.len());
        buf.drain(..already);
        body -= already;
        while body > 0 {
            let mut chunk = [0u8; 4096];
            match tcp.read(&mut chunk[..body.min(4096)]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body -= n,
            }
        }
        let started = Instant::now();
        let view = shared
            .standin
            .pod_of(peer.port())
            .and_then(|(ns, name)| shared.table.get(&ns, &name));
        let keep_alive = head.keep_alive();
        let response = match &view {
            Some(v) => answer(&head, v, &shared, keep_alive).await,
            None => http::text(
                502,
                "the New-API stand-in only answers port-forwarded connections",
                false,
            ),
        };
        if let Some(v) = &view {
            let status = response_status(&response);
            let latency = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let now = Timestamp::now();
            let line = logs::new_api_request_line(
                now,
                status,
                &head.method,
                &head.path,
                "127.0.0.1",
                latency,
            );
            log_to_pod(&shared, v, now, &line);
        }
        if tcp.write_all(&response).await.is_err() || view.is_none() || !keep_alive {
            return;
        }
    }
}

fn response_status(response: &[u8]) -> u16 {
    response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The New-API container of the pod, if it runs.
fn new_api_container(view: &PodView) -> Option<(&str, &logs::Instance, &LogProfile)> {
    view.containers
        .iter()
        .find_map(|c| match (&c.state, &c.profile) {
            (ViewState::Running(i), p @ LogProfile::NewApi(_)) => Some((c.name.as_str(), i, p)),
            _ => None,
        })
}

fn log_to_pod(shared: &Shared, view: &PodView, now: Timestamp, line: &str) {
    if let Some((container, instance, profile)) = new_api_container(view) {
        let source = LogSource {
            pod_dir: &view.pod_dir,
            container,
            instance,
            profile,
        };
        if let Err(e) = shared.logs.append(&source, now, line) {
            tracing::debug!(pod = %view.name, "cannot append to the pod log: {e}");
        }
    }
}

async fn answer(head: &Head, view: &PodView, shared: &Shared, keep_alive: bool) -> Vec<u8> {
    let json = "application/json; charset=utf-8";
    match (head.method.as_str(), head.path.as_str()) {
        ("GET", "/api/status") => {
            if view.rate_limited {
                return http::response(429, "text/plain; charset=utf-8", b"", keep_alive, &[]);
            }
            if let Err(e) = shared.standin.redis_alive(&shared.backends.redis).await {
                let now = Timestamp::now();
                log_to_pod(shared, view, now, &logs::new_api_sys_line(now, &format!("Redis ping test failed: {e}")));
                return http::response(500, "text/plain; charset=utf-8", b"", keep_alive, &[]);
            }
            let body = status_body(view);
            http::response(200, json, body.as_bytes(), keep_alive, &[])
        }
        ("GET" | "HEAD", "/") => http::response(
            200,
            "text/html; charset=utf-8",
            b"<!doctype html><html><head><title>New API</title></head><body><div id=\"root\"></div></body></html>",
            keep_alive,
            &[],
        ),
        _ => http::text(404, "404 page not found", keep_alive),
    }
}

/// New-API's `GET /api/status` body for this pod.
fn status_body(view: &PodView) -> String {
    let version = new_api_container(view)
        .and_then(|(_, _, p)| match p {
            LogProfile::NewApi(n) => Some(n.version.clone()),
            _ => None,
        })
        .unwrap_or_else(|| logs::NEW_API_DEFAULT_VERSION.to_string());
    serde_json::json!({
        "success": true,
        "message": "",
        "data": {
            "version": version,
            "start_time": view.start_time.as_second(),
            "email_verification": false,
            "github_oauth": false,
            "github_client_id": "",
            "linuxdo_oauth": false,
            "telegram_oauth": false,
            "system_name": "New API",
            "logo": "",
            "footer_html": "",
            "wechat_qrcode": "",
            "wechat_login": false,
            "server_address": "http://localhost:3000",
            "turnstile_check": false,
            "turnstile_site_key": "",
            "top_up_link": "",
            "docs_link": "",
            "quota_per_unit": 500_000,
            "display_in_currency": true,
            "enable_batch_update": false,
            "enable_drawing": true,
            "enable_task": true,
            "enable_data_export": true,
            "data_export_default_time": "hour",
            "default_collapse_sidebar": false,
            "mj_notify_enabled": false,
            "chats": [],
            "demo_site_enabled": false,
            "self_use_mode_enabled": false,
            "setup": true,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_forgets_closed_connections() {
        let r = Registry::new("127.0.0.1:1".parse().unwrap());
        let g = r.register(50000, "ns", "web-1");
        assert_eq!(r.pod_of(50000), Some(("ns".into(), "web-1".into())));
        drop(g);
        assert_eq!(r.pod_of(50000), None);
    }

    #[tokio::test]
    async fn ping_says_why_redis_is_down() {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let e = ping(&addr).await.unwrap_err();
        assert!(e.contains("connection refused"), "{e}");

        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut b = [0u8; 6];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(b"+PONG\r\n").await.unwrap();
        });
        assert_eq!(ping(&addr).await, Ok(()));
    }

    #[test]
    fn statuses() {
        assert_eq!(response_status(&http::text(429, "", false)), 429);
    }
}
