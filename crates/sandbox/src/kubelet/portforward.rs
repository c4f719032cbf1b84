//! The kubelet side of `pods/portforward` over WebSocket (subprotocol `v4.channel.k8s.io`).
//!
//! The protocol, as the kubelet (`cri/streaming/portforward/websocket.go`) and kube-rs's client
//! (`kube-client/src/api/portforward.rs`) speak it: every binary frame starts with a channel
//! byte; port number `i` of the request (`?port=A&port=B` or `?port=A,B`) owns data channel `2i`
//! and error channel `2i+1`. The server's first frame on each of those channels carries the port
//! as two bytes little-endian. Data frames are copied to and from the pod's port; if the port
//! cannot be reached, one text message on the error channel says why (`error forwarding port …:
//! unable to do port forwarding: …`). When every port is done, or the client closes, the
//! connection closes with a Close frame.
//!
//! What a pod's port is: `app=mysql` port 3306 → the MariaDB backend, `app=redis` port 6379 →
//! the Redis backend, `app=new-api` port 3000 → the in-process New-API stand-in (which learns the
//! pod from the connection's source port), and any port of a pod running a real container → that
//! port on the host (real containers share the host's network). Nothing listens when no
//! container of the pod runs.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Shared;
use super::http::{self, Head};
use super::lifecycle::PodView;
use super::standin::PeerGuard;

/// The channel subprotocol spoken here.
pub const PROTOCOL: &str = "v4.channel.k8s.io";
/// How long dialing a backend may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest data frame sent.
const FRAME: usize = 32 * 1024;

/// The two-byte channel header plus the port, as the first frame of a channel.
pub fn port_frame(channel: u8, port: u16) -> Vec<u8> {
    let p = port.to_le_bytes();
    vec![channel, p[0], p[1]]
}

/// A data or error frame for `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    v
}

/// The ports of `?port=…` (repeated and/or comma-separated), or the kubelet's error.
pub fn parse_ports<'a>(values: impl Iterator<Item = &'a str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for value in values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .trim()
                .parse()
                .map_err(|e| format!("unable to parse \"{value}\" as a port: {e}"))?;
            if port < 1 {
                return Err(format!("port \"{value}\" must be > 0"));
            }
            ports.push(port);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    if ports.len() > 127 {
        return Err("too many ports".into());
    }
    Ok(ports)
}

/// Picks the subprotocol from the client's offer (`Sec-WebSocket-Protocol`, comma-separated):
/// `Some(Some(p))` to answer with `p`, `Some(None)` when the client offered none (binary channel
/// protocol, as the kubelet allows), `None` when nothing offered is spoken here.
pub fn negotiate(offer: Option<&str>) -> Option<Option<&'static str>> {
    let Some(offer) = offer.map(str::trim).filter(|o| !o.is_empty()) else {
        return Some(None);
    };
    offer
        .split(',')
        .map(str::trim)
        .any(|p| p == PROTOCOL)
        .then_some(Some(PROTOCOL))
}

/// Where a pod's port leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tcp(String),
    Standin,
}

/// The backend behind `port` of a pod, by its `app` label.
pub fn target_for(app: Option<&str>, port: u16, backends: &super::Backends) -> Option<Target> {
    match (app?, port) {
        ("mysql", 3306) => Some(Target::Tcp(backends.mysql.clone())),
        ("redis", 6379) => Some(Target::Tcp(backends.redis.clone())),
        ("new-api", 3000) => Some(Target::Standin),
        _ => None,
    }
}

/// Upgrades the connection and forwards the requested ports until done.
pub async fn serve<S>(
    mut stream: S,
    leftover: Vec<u8>,
    head: Head,
    namespace: &str,
    pod: &str,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let reject = |status: u16, msg: &str| http::text(status, msg, false);
    let upgrade = head
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let key = head
        .header("sec-websocket-key")
        .map(str::trim)
        .map(str::to_string);
    let Some(key) = key.filter(|_| upgrade) else {
        let msg = if head
            .header("upgrade")
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("spdy"))
        {
            "SPDY port forwarding is not supported by the sandbox kubelet; use a WebSocket client (v4.channel.k8s.io)"
        } else {
            "port forwarding needs a WebSocket upgrade (v4.channel.k8s.io)"
        };
        let _ = stream.write_all(&reject(400, msg)).await;
        return;
    };
    let ports = match parse_ports(head.params("port")) {
        Ok(p) => p,
        Err(e) => {
            let _ = stream.write_all(&reject(400, &e)).await;
            return;
        }
    };
    let Some(view) = shared.table.get(namespace, pod) else {
        let _ = stream.write_all(&reject(404, "pod does not exist")).await;
        return;
    };
    let Some(protocol) = negotiate(head.header("sec-websocket-protocol")) else {
        let offered = head.header("sec-websocket-protocol").unwrap_or("");
        let msg =
            format!("requested protocol(s) are not supported: [{offered}]; supports [{PROTOCOL}]");
        let _ = stream.write_all(&reject(400, &msg)).await;
        return;
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(p) = protocol {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    answer.push_str("\r\n");
    if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, None).await;
    tracing::debug!(pod = %format!("{namespace}/{pod}"), ?ports, "port-forward started");
    forward(ws, &ports, &view, &shared).await;
    tracing::debug!(pod = %format!("{namespace}/{pod}"), "port-forward ended");
}

/// What the per-port readers tell the connection loop.
enum Note {
    /// Send this frame to the client.
    Frame(Vec<u8>),
    /// Port `index` is finished (its backend closed or failed).
    Done(usize),
}

async fn forward<S>(ws: WebSocketStream<S>, ports: &[u16], view: &PodView, shared: &Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Note>(64);
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::with_capacity(ports.len());
    let mut guards: Vec<PeerGuard> = Vec::new();
    let mut readers = tokio::task::JoinSet::new();
    let mut open = 0usize;

    for (index, &port) in ports.iter().enumerate() {
        let data = u8::try_from(2 * index).unwrap_or(u8::MAX);
        if sink
            .send(Message::binary(port_frame(data, port)))
            .await
            .is_err()
            || sink
                .send(Message::binary(port_frame(data + 1, port)))
                .await
                .is_err()
        {
            return;
        }
        match connect(view, port, shared).await {
            Ok((tcp, guard)) => {
                guards.extend(guard);
                let (mut read, write) = tcp.into_split();
                writers.push(Some(write));
                open += 1;
                let tx = tx.clone();
                readers.spawn(async move {
                    let mut buf = vec![0u8; FRAME];
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send(Note::Frame(frame(data, &buf[..n]))).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = tx.send(Note::Done(index)).await;
                });
            }
            Err(reason) => {
                writers.push(None);
                let message = format!(
                    "error forwarding port {port} to pod {}_{}, uid {}: unable to do port forwarding: {reason}",
                    view.name, view.namespace, view.uid
                );
                tracing::debug!("{message}");
                if sink
                    .send(Message::binary(frame(data + 1, message.as_bytes())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    drop(tx);

    if open > 0 {
        loop {
            tokio::select! {
                note = rx.recv() => match note {
                    Some(Note::Frame(f)) => {
                        if sink.send(Message::binary(f)).await.is_err() {
                            break;
                        }
                    }
                    Some(Note::Done(index)) => {
                        if let Some(mut w) = writers.get_mut(index).and_then(Option::take) {
                            let _ = w.shutdown().await;
                        }
                        open -= 1;
                        if open == 0 {
                            break;
                        }
                    }
                    None => break,
                },
                incoming = source.next() => match incoming {
                    Some(Ok(Message::Binary(data))) if data.len() > 1 => {
                        let channel = usize::from(data[0]);
                        // Data from the client only flows on data (even) channels.
                        if channel % 2 == 0
                            && let Some(Some(w)) = writers.get_mut(channel / 2)
                            && w.write_all(&data[1..]).await.is_err()
                        {
                            writers[channel / 2] = None;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    readers.abort_all();
    for w in writers.iter_mut().filter_map(Option::take) {
        let mut w = w;
        let _ = w.shutdown().await;
    }
    drop(guards);
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

/// Opens the connection behind `port`, or says why nothing listens there (also used by the
/// Service forwarders).
pub(crate) async fn connect(
    view: &PodView,
    port: u16,
    shared: &Arc<Shared>,
) -> Result<(TcpStream, Option<PeerGuard>), String> {
    let refused = || format!("dial tcp4 127.0.0.1:{port}: connect: connection refused");
    if !view.any_running() {
        return Err(refused());
    }
    let target = if view.real {
        Target::Tcp(format!("127.0.0.1:{port}"))
    } else {
        target_for(view.app.as_deref(), port, &shared.backends).ok_or_else(refused)?
    };
    let addr = match &target {
        Target::Tcp(a) => a.clone(),
        Target::Standin => shared.standin.addr().to_string(),
    };
    let tcp = match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(refused()),
        Ok(Err(e)) => return Err(format!("dial tcp4 127.0.0.1:{port}: connect: {e}")),
        Err(_) => return Err(format!("dial tcp4 127.0.0.1:{port}: i/o timeout")),
    };
    let _ = tcp.set_nodelay(true);
    let guard = match target {
        Target::Standin => {
            let local = tcp.local_addr().map_err(|e| e.to_string())?;
            Some(
                shared
                    .standin
                    .register(local.port(), &view.namespace, &view.name),
            )
        }
        Target::Tcp(_) => None,
    };
    Ok((tcp, guard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::Backends;

    #[test]
    fn framing() {
        assert_eq!(port_frame(0, 3306), vec![0, 0xea, 0x0c]);
        assert_eq!(port_frame(3, 6379), vec![3, 0xeb, 0x18]);
        assert_eq!(frame(2, b"PING"), b"\x02PING".to_vec());
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(parse_ports(["3306"].into_iter()), Ok(vec![3306]));
        assert_eq!(
            parse_ports(["3306,6379", "3000"].into_iter()),
            Ok(vec![3306, 6379, 3000])
        );
        assert!(
            parse_ports(std::iter::empty())
                .unwrap_err()
                .contains("is required")
        );
        assert!(
            parse_ports(["x"].into_iter())
                .unwrap_err()
                .contains("unable to parse")
        );
        assert!(
            parse_ports(["0"].into_iter())
                .unwrap_err()
                .contains("must be > 0")
        );
        assert_eq!(
            negotiate(Some("v5.channel.k8s.io, v4.channel.k8s.io")),
            Some(Some(PROTOCOL))
        );
        assert_eq!(negotiate(Some("v4.channel.k8s.io")), Some(Some(PROTOCOL)));
        assert_eq!(negotiate(None), Some(None));
        assert_eq!(negotiate(Some("v5.channel.k8s.io")), None);
    }

    #[test]
    fn targets() {
        let b = Backends {
            mysql: "127.0.0.1:1".into(),
            redis: "127.0.0.1:2".into(),
        };
        assert_eq!(
            target_for(Some("mysql"), 3306, &b),
            Some(Target::Tcp("127.0.0.1:1".into()))
        );
        assert_eq!(
            target_for(Some("redis"), 6379, &b),
            Some(Target::Tcp("127.0.0.1:2".into()))
        );
        assert_eq!(target_for(Some("new-api"), 3000, &b), Some(Target::Standin));
        assert_eq!(target_for(Some("redis"), 3306, &b), None);
        assert_eq!(target_for(None, 3306, &b), None);
    }
}
