//! The application itself: `GET /api/status` on every New-API pod (through a port-forward to
//! port 3000), `success: true`, one version everywhere, recent restarts (start_time), latency;
//! a 429 (GLOBAL_API_RATE_LIMIT) and an empty-body 500 (what New-API answers when Redis is down)
//! are recognised as such.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::finding::{Component, Finding, Severity};

/// One pod's answer to GET /api/status.
#[derive(Debug, Clone)]
pub struct StatusProbe {
    pub pod: String,
    pub outcome: Result<HttpAnswer, String>,
}

/// A parsed HTTP answer with its latency.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: Vec<u8>,
    pub latency: Duration,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    success: bool,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: Option<StatusData>,
}

#[derive(Debug, Deserialize)]
struct StatusData {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    start_time: Option<i64>,
}

/// GET `path` on `addr` over HTTP/1.1, bounded by `timeout`.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<HttpAnswer, String> {
    let start = Instant::now();
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs_f32()))?
        .map_err(|e| format!("connect: {e}"))?;
    http_get_on(stream, path, timeout.saturating_sub(start.elapsed()), start).await
}

/// GET `path` over a connection already open (a port-forward's stream), bounded by `timeout`;
/// the latency counts from `start` (when the connection was asked for).
pub async fn http_get_on<S>(
    stream: S,
    path: &str,
    timeout: Duration,
    start: Instant,
) -> Result<HttpAnswer, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (status, body) = tokio::time::timeout(timeout, exchange(stream, path))
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs_f32()))??;
    Ok(HttpAnswer {
        status,
        body,
        latency: start.elapsed(),
    })
}

/// Sends one `GET path` with `Connection: close` and reads the answer to its end.
async fn exchange<S>(mut stream: S, path: &str) -> Result<(u16, Vec<u8>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: newapi-ops\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // Read until the answer is whole (by its Content-Length or last chunk) or the other side
    // closes: a port-forward's stream may stay open after the pod has answered.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if is_whole(&raw) {
            break;
        }
    }
    parse_response(&raw)
}

/// Whether `raw` holds a whole HTTP answer that says how long it is.
fn is_whole(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = resp.parse(raw) else {
        return false;
    };
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return raw.ends_with(b"0\r\n\r\n");
    }
    header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| raw.len() - head >= len)
}

/// Parses a whole HTTP/1.1 response (Content-Length, chunked, or close-delimited).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err("the connection closed before a whole HTTP answer arrived".into());
        }
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length").and_then(|v| v.trim().parse::<usize>().ok())
    {
        rest.get(..len)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

/// Turns the probes into findings.
pub fn check_app(probes: &[StatusProbe], now_unix: i64, slow: Duration) -> Vec<Finding> {
    check_app_of(probes, probes.len(), now_unix, slow)
}

/// [`check_app`] when `probes` are a sample of `total` pods: the ok finding says so.
pub fn check_app_of(
    probes: &[StatusProbe],
    total: usize,
    now_unix: i64,
    slow: Duration,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut versions: Vec<(String, String)> = Vec::new();
    let mut good = 0;
    for p in probes {
        let f = |check: &str, sev: Severity, summary: String| {
            Finding::new(Component::App, check, sev, summary).subject(format!("pod/{}", p.pod))
        };
        let answer = match &p.outcome {
            Ok(a) => a,
            Err(e) => {
                out.push(
                    f(
                        "app.unreachable",
                        Severity::Critical,
                        format!("GET /api/status on {} failed: {e}", p.pod),
                    )
                    .cause(format!("GET /api/status failed: {}", mask(e, &p.pod)))
                    .evidence(format!("port-forward to {}:3000: {e}", p.pod))
                    .next(format!(
                        "newapi-ops logs {} ; is the container listening on 3000?",
                        p.pod
                    )),
                );
                continue;
            }
        };
        let ms = answer.latency.as_millis();
        match answer.status {
            200 => match serde_json::from_slice::<StatusBody>(&answer.body) {
                Ok(body) if body.success => {
                    good += 1;
                    if let Some(v) = body.data.as_ref().and_then(|d| d.version.clone()) {
                        versions.push((p.pod.clone(), v));
                    }
                    if let Some(start) = body.data.as_ref().and_then(|d| d.start_time) {
                        let up = now_unix - start;
                        if (0..600).contains(&up) {
                            out.push(
                                f("app.restarted", Severity::Info, format!("{} started {} s ago", p.pod, up))
                                    .cause("New-API started less than 10 minutes ago")
                                    .weight(600 - up)
                                    .evidence(format!("/api/status data.start_time: {start}")),
                            );
                        }
                    }
                    if answer.latency > slow {
                        out.push(
                            f("app.slow", Severity::Warning, format!("{} answered /api/status in {ms} ms", p.pod))
                                .cause(format!("/api/status slower than {} ms", slow.as_millis()))
                                .weight(i64::try_from(ms).unwrap_or(i64::MAX))
                                .evidence(format!("latency {ms} ms (threshold {} ms)", slow.as_millis()))
                                .next("newapi-ops runbook run slow-response"),
                        );
                    }
                }
                Ok(body) => out.push(
                    f("app.status", Severity::Critical, format!("{} reports success=false: {}", p.pod, body.message))
                        .cause(format!("/api/status reports success=false: {}", body.message))
                        .evidence(format!("HTTP 200, body: {}", snippet(&answer.body))),
                ),
                Err(e) => out.push(
                    f("app.status", Severity::Critical, format!("{} answered 200 but not New-API's status JSON", p.pod))
                        .cause("/api/status answers 200 but not New-API's status JSON")
                        .evidence(format!("{e}; body: {}", snippet(&answer.body))),
                ),
            },
            429 => out.push(
                f("app.rate-limited", Severity::Warning, format!("{} answers 429 Too Many Requests", p.pod))
                    .cause("/api/status answers 429 Too Many Requests")
                    .evidence("HTTP 429 on /api/status: the global rate limit (GLOBAL_API_RATE_LIMIT) is reached".to_string())
                    .next("raise GLOBAL_API_RATE_LIMIT or scale out: newapi-ops runbook run scale-out"),
            ),
            500 if answer.body.iter().all(u8::is_ascii_whitespace) => out.push(
                f("app.redis-down", Severity::Critical, format!("{} answers an empty 500: New-API does this when Redis is unreachable", p.pod))
                    .cause("/api/status answers an empty 500 (Redis unreachable)")
                    .evidence("HTTP 500 with an empty body on /api/status".to_string())
                    .next("newapi-ops diagnose --only redis; newapi-ops runbook run db-connection"),
            ),
            code => out.push(
                f("app.status", Severity::Critical, format!("{} answers HTTP {code} on /api/status", p.pod))
                    .cause(format!("/api/status answers HTTP {code}"))
                    .evidence(format!("HTTP {code}, body: {}", snippet(&answer.body)))
                    .next(format!("newapi-ops logs {}", p.pod)),
            ),
        }
    }
    let mut distinct: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 1 {
        let mut f = Finding::new(
            Component::App,
            "app.versions",
            Severity::Warning,
            format!(
                "pods run {} different versions: {}",
                distinct.len(),
                distinct.join(", ")
            ),
        );
        for v in &distinct {
            let pods: Vec<String> = versions
                .iter()
                .filter(|(_, x)| x.as_str() == *v)
                .map(|(p, _)| p.clone())
                .collect();
            f = f.evidence(format!(
                "{v}: {}",
                crate::units::list_and_verb(&pods, "", "").trim_end()
            ));
        }
        out.push(f.next(
            "finish or redo the rollout so that all pods run one release (pin the image tag)",
        ));
    }
    if !probes.is_empty() && good == probes.len() {
        let version = distinct
            .first()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        out.push(Finding::new(
            Component::App,
            "app.ok",
            Severity::Ok,
            if total > good {
                format!(
                    "all {good} New-API pods probed of {total} answer /api/status{version}; the other {} are ready",
                    total - good
                )
            } else {
                format!("all {good} New-API pods answer /api/status{version}")
            },
        ));
    }
    out
}

/// An error about `pod` without its name and numbers (ports, addresses), the same for every
/// pod that fails the same way.
fn mask(error: &str, pod: &str) -> String {
    let probe = Finding::new(Component::App, "", Severity::Ok, error.to_string())
        .subject(format!("pod/{pod}"));
    super::finding::derived_cause(&probe)
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.is_empty() {
        "(empty)".into()
    } else {
        s.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(status: u16, body: &str) -> StatusProbe {
        StatusProbe {
            pod: "p".into(),
            outcome: Ok(HttpAnswer {
                status,
                body: body.as_bytes().to_vec(),
                latency: Duration::from_millis(5),
            }),
        }
    }

    #[test]
    fn parses_content_length_chunked_and_close_delimited() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hi"[..]));
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n").unwrap();
        assert_eq!((s, b.as_slice()), (200, &b"hello"[..]));
        let (s, b) = parse_response(b"HTTP/1.1 500 Internal Server Error\r\n\r\n").unwrap();
        assert_eq!((s, b.len()), (500, 0));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Len").is_err());
    }

    #[test]
    fn recognises_redis_down_rate_limit_and_versions() {
        let ok = |v: &str| {
            probe(
                200,
                &format!(
                    r#"{{"success":true,"message":"","data":{{"version":"{v}","start_time":0}}}}"#
                ),
            )
        };
        let out = check_app(&[ok("v1"), ok("v2")], 1_000_000, Duration::from_secs(1));
        assert!(out.iter().any(|f| f.check == "app.versions"));
        let out = check_app(&[probe(500, "")], 0, Duration::from_secs(1));
        assert_eq!(out[0].check, "app.redis-down");
        let out = check_app(&[probe(429, "")], 0, Duration::from_secs(1));
        assert_eq!(out[0].check, "app.rate-limited");
        let out = check_app(&[ok("v1")], 100, Duration::from_secs(1));
        assert!(out.iter().any(|f| f.check == "app.restarted"));
        assert!(out.iter().any(|f| f.check == "app.ok"));
    }
}
