//! A small, fast HTTP/1.1 client for one thing: the same `GET` over and over on a kept-alive
//! connection, as wrk does. The request is built once; a response is parsed with `httparse` and
//! its body (Content-Length, chunked, or up to the close) read and dropped without copying.
//! Written by hand rather than on hyper: a load generator wants the least work per request
//! (it shares the machine with what it measures), and one GET on a kept-alive connection needs
//! none of a general client's pooling, headers map or body streams. BENCHMARKS.md has its
//! figures against wrk, hey and ab; hyper-util's client was not measured.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: `http://host:port/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host as written (for the `Host` header and messages).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`. Only plain HTTP: the load goes to a NodePort, a
    /// Service or a port-forward, where TLS would measure the handshake more than New-API.
    pub fn parse(text: &str) -> Result<Url, String> {
        let t = text.trim();
        let rest = if let Some(r) = t.strip_prefix("http://") {
            r
        } else if t.starts_with("https://") {
            return Err(format!(
                "`{t}`: https is not supported; bench the NodePort or the Service over http (e.g. http://NODE:30000/api/status)"
            ));
        } else {
            return Err(format!(
                "`{t}` is not an http:// URL (e.g. http://localhost:30000/api/status)"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!("`{t}`: credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{t}`: unclosed [ in the host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, t)?,
                None if after.is_empty() => 80,
                None => return Err(format!("`{t}`: unexpected text after the host")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p, t)?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("`{t}` names no host"));
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{t}`: the path has spaces or control characters"));
        }
        let path = path.split('#').next().unwrap_or("/").to_string();
        Ok(Url { host, port, path })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> Url {
        Url {
            path: path.to_string(),
            ..self.clone()
        }
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host for name resolution (IPv6 without its brackets).
    pub fn resolve_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{whole}`: `{p}` is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// The request bytes, built once per target.
pub fn request_bytes(url: &Url) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: newapi-ops-bench/{}\r\nAccept: */*\r\n\r\n",
        url.path,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Why a request got no response.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The TCP connection could not be opened (refused, unreachable).
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// The server closed the connection before a complete response.
    Closed,
    /// Reading or writing failed (reset, broken pipe).
    Io,
    /// What came back is not HTTP/1.x.
    BadResponse,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::Io => "io",
            Failure::BadResponse => "bad response",
        }
    }
}

/// One connection, kept alive between requests while the server allows it.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` in use.
    filled: usize,
    /// The server said `Connection: close` (or HTTP/1.0 without keep-alive).
    closing: bool,
}

/// Opens a connection (Nagle off: a request is one small write).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err(Failure::Connect),
        Err(_) => return Err(Failure::Timeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn {
        stream,
        buf: vec![0; 16 * 1024],
        filled: 0,
        closing: false,
    })
}

/// How the body of a response is delimited.
enum Body {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    /// Whether the connection may carry another request.
    pub fn reusable(&self) -> bool {
        !self.closing
    }

    /// Sends `req` and reads the whole response; returns its status code.
    pub async fn get(&mut self, req: &[u8]) -> Result<u16, Failure> {
        self.stream
            .write_all(req)
            .await
            .map_err(|e| io_failure(&e))?;
        // Headers.
        let (status, head_len, body) = loop {
            if self.filled > 0 {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[..self.filled]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
                        let keep_alive_default = resp.version == Some(1);
                        let mut body = Body::UntilClose;
                        let mut close = !keep_alive_default;
                        for h in resp.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let len = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                                    .ok_or(Failure::BadResponse)?;
                                body = Body::Length(len);
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                if contains_token(h.value, b"chunked") {
                                    body = Body::Chunked;
                                }
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                if contains_token(h.value, b"close") {
                                    close = true;
                                } else if contains_token(h.value, b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                        if status == 204 || status == 304 || (100..200).contains(&status) {
                            body = Body::Length(0);
                        }
                        if matches!(body, Body::UntilClose) {
                            close = true;
                        }
                        self.closing = close;
                        break (status, n, body);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(Failure::BadResponse),
                }
            }
            if self.filled == self.buf.len() {
                if self.buf.len() >= 256 * 1024 {
                    return Err(Failure::BadResponse);
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
            self.fill().await?;
        };
        self.consume(head_len);
        match body {
            Body::Length(n) => self.skip(n).await?,
            Body::Chunked => self.skip_chunked().await?,
            Body::UntilClose => loop {
                self.filled = 0;
                match self.stream.read(&mut self.buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(io_failure(&e)),
                }
            },
        }
        Ok(status)
    }

    /// Reads more bytes into the buffer; the end of the stream here is a [`Failure::Closed`].
    async fn fill(&mut self) -> Result<(), Failure> {
        match self.stream.read(&mut self.buf[self.filled..]).await {
            Ok(0) => Err(Failure::Closed),
            Ok(n) => {
                self.filled += n;
                Ok(())
            }
            Err(e) => Err(io_failure(&e)),
        }
    }

    /// Drops the first `n` buffered bytes.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Reads and drops `n` body bytes.
    async fn skip(&mut self, mut n: usize) -> Result<(), Failure> {
        loop {
            let take = n.min(self.filled);
            self.consume(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Reads and drops a chunked body (trailers included).
    async fn skip_chunked(&mut self) -> Result<(), Failure> {
        loop {
            let line = self.line().await?;
            let size_text = line.split(';').next().unwrap_or("").trim().to_string();
            let size = usize::from_str_radix(&size_text, 16).map_err(|_| Failure::BadResponse)?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(());
            }
            self.skip(size).await?;
            if !self.line().await?.is_empty() {
                return Err(Failure::BadResponse);
            }
        }
    }

    /// One CRLF-terminated line of the buffer (without the CRLF), reading as needed.
    async fn line(&mut self) -> Result<String, Failure> {
        loop {
            if let Some(i) = self.buf[..self.filled]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let s = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.consume(i + 2);
                return Ok(s);
            }
            if self.filled == self.buf.len() {
                return Err(Failure::BadResponse);
            }
            self.fill().await?;
        }
    }
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn io_failure(e: &std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Failure::Closed,
        _ => Failure::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://localhost:30000/api/status").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 30000, "/api/status")
        );
        assert_eq!(u.to_string(), "http://localhost:30000/api/status");
        let u = Url::parse("http://10.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert_eq!(u.authority(), "10.0.0.1");
        let u = Url::parse("http://[::1]:8080/x?y=1#frag").unwrap();
        assert_eq!(
            (u.resolve_host(), u.port, u.path.as_str()),
            ("::1", 8080, "/x?y=1")
        );
        for bad in [
            "https://example.com/",
            "ftp://x",
            "localhost:3000",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Url::parse("https://x/")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn the_request_is_a_plain_keep_alive_get() {
        let r = request_bytes(&Url::parse("http://h:81/api/status").unwrap());
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("GET /api/status HTTP/1.1\r\nHost: h:81\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(contains_token(b"keep-alive, Close", b"close"));
        assert!(!contains_token(b"closed", b"close"));
    }

    async fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                if s.write_all(reply).await.is_err() {
                    break;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn bodies_of_every_framing_are_read_to_their_end() {
        let t = Duration::from_secs(5);
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // Content-Length, twice on one connection.
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let mut c = connect(addr, t).await.unwrap();
        assert_eq!(c.get(req).await, Ok(200));
        assert_eq!(c.get(req).await, Ok(200));
        assert!(c.reusable());
        // Chunked with a trailer.
        let addr = serve_once(
            b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .await;
        let mut c = connect(addr, t).await.unwrap();
        assert_eq!(c.get(req).await, Ok(429));
        assert_eq!(c.get(req).await, Ok(429));
        // Connection: close is honoured.
        let addr =
            serve_once(b"HTTP/1.1 500 Internal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        let mut c = connect(addr, t).await.unwrap();
        assert_eq!(c.get(req).await, Ok(500));
        assert!(!c.reusable());
        // Garbage.
        let addr = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let mut c = connect(addr, t).await.unwrap();
        assert_eq!(c.get(req).await, Err(Failure::BadResponse));
    }
}
