//! The little HTTP/1.1 the simulator speaks, by hand: reading a request head (httparse),
//! query strings, and writing simple responses; and the TLS accept loop. Used by the kubelet
//! endpoints, the New-API stand-in and the metrics server.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A parsed request line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// Decoded query parameters, in order (a name may repeat).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
}

impl Head {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`.
    pub fn params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => self.minor_version >= 1,
        }
    }

    /// The request body length announced by `Content-Length` (0 if none).
    pub fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// The next request head of a kept-alive connection: None when the peer closed it or stayed
/// idle longer than `idle`; a malformed request is answered 400 before its error is returned.
pub async fn next_request<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    idle: std::time::Duration,
) -> Result<Option<Head>, ReadError> {
    use tokio::io::AsyncWriteExt;
    match tokio::time::timeout(idle, read_head(stream, buf)).await {
        Ok(Ok(head)) => Ok(head),
        Err(_) => Ok(None),
        Ok(Err(e)) => {
            let _ = stream.write_all(&text(400, &e.to_string(), false)).await;
            Err(e)
        }
    }
}

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts TLS connections on `listener` until the task is aborted, each served by `handle` on a
/// task of its own. A failed accept (too many open files, ...) is logged and retried; a failed
/// handshake or connection only ends that connection.
pub async fn serve_tls<F, Fut>(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handle: F,
) where
    F: Fn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ReadError>> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handle = handle.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            if let Err(e) = handle(tls).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// Reads one request head from `r`. `buf` holds bytes already read; on return it holds what came
/// after the head (the body or the next request, or WebSocket frames). `Ok(None)`: the peer
/// closed the connection before starting a request.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Head>, ReadError> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let target = req.path.unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let head = Head {
                        method: req.method.unwrap_or("GET").to_string(),
                        path: percent_decode(path),
                        query: parse_query(query),
                        headers: req
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        minor_version: req.version.unwrap_or(1),
                    };
                    buf.drain(..len);
                    return Ok(Some(head));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(ReadError::Malformed(e.to_string())),
            }
            if buf.len() > MAX_HEAD {
                return Err(ReadError::Malformed("request head too large".into()));
            }
        }
        let mut chunk = [0u8; 8192];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(ReadError::Malformed(
                "connection closed inside a request head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Splits `a=1&b=x%20y` into decoded pairs.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The standard reason phrase of the statuses the simulator uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// A complete response with a body.
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nDate: {}\r\n",
        reason_phrase(status),
        body.len(),
        http_date(jiff::Timestamp::now())
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A plain-text response (how the kubelet reports errors).
pub fn text(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        keep_alive,
        &[],
    )
}

/// `Thu, 13 Nov 2025 10:00:00 GMT`.
pub fn http_date(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_heads_and_keeps_the_rest() {
        let raw = b"GET /containerLogs/ns/pod/c?previous=true&tailLines=5&sinceTime=2025-11-13T10%3A00%3A00Z HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nEXTRA";
        let mut r: &[u8] = raw;
        let mut buf = Vec::new();
        let head = read_head(&mut r, &mut buf).await.unwrap().unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/containerLogs/ns/pod/c");
        assert_eq!(head.params("tailLines").collect::<Vec<_>>(), ["5"]);
        assert_eq!(
            head.params("sinceTime").next(),
            Some("2025-11-13T10:00:00Z")
        );
        assert_eq!(head.header("upgrade"), Some("websocket"));
        assert!(head.keep_alive());
        assert_eq!(buf, b"EXTRA");

        let mut empty: &[u8] = b"";
        assert!(
            read_head(&mut empty, &mut Vec::new())
                .await
                .unwrap()
                .is_none()
        );
        let mut bad: &[u8] = b"GET / HTTP/1.1\r\nHost";
        assert!(read_head(&mut bad, &mut Vec::new()).await.is_err());
    }

    #[test]
    fn queries_and_responses() {
        assert_eq!(
            parse_query("port=3306&port=6379,3000&x"),
            vec![
                ("port".to_string(), "3306".to_string()),
                ("port".to_string(), "6379,3000".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        let r = String::from_utf8(text(400, "bad", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(r.contains("Content-Length: 3\r\n"));
        assert!(r.ends_with("Connection: close\r\n\r\nbad"));
        assert_eq!(chunk(b"hello"), b"5\r\nhello\r\n");
        assert_eq!(
            http_date("2025-11-13T10:00:00Z".parse().unwrap()),
            "Thu, 13 Nov 2025 10:00:00 GMT"
        );
    }
}
