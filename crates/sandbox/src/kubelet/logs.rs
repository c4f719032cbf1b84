//! Container logs: what each simulated program prints, where it is kept, and how a
//! `containerLogs` query (tail, since, timestamps, limitBytes) selects from it.
//!
//! A container instance's log is a pure function of its [`LogProfile`] (New-API, MySQL, Redis or
//! a quiet program) and its [`Run`] (start, end, termination): [`generate`] lists the lines with
//! timestamps in a time window. [`LogStore`] materialises them lazily into
//! `<state_dir>/pods/<ns>_<pod>_<uid>/<container>/<restart>.log` (the layout of `/var/log/pods`),
//! one `RFC3339Nano message` line each, bringing a file up to date whenever it is read, followed
//! or appended to (the New-API stand-in appends request lines). Timestamps therefore always agree
//! with the container's start: a slave with `SYNC_FREQUENCY=60` has a sync line every 60 s after
//! it started, however late its log is first read.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::behavior::Termination;

/// The New-API version reported when the image tag does not name one.
pub const NEW_API_DEFAULT_VERSION: &str = "v0.9.0";

/// What kind of program a container runs, which decides what it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogProfile {
    NewApi(NewApi),
    Mysql {
        version: String,
    },
    Redis {
        version: String,
    },
    /// A program that prints nothing (sidecars, init containers, unknown images).
    Quiet,
    /// A real container: nothing is generated, its output is appended as it comes
    /// ([`LogStore::append`]).
    Captured,
}

/// The facts about a New-API container that show in its log (read from its env and probes;
/// values that come from Secrets are never read, only whether they are set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApi {
    pub version: String,
    /// `NODE_TYPE=slave`.
    pub slave: bool,
    /// `SYNC_FREQUENCY` in seconds (60 when unset or invalid).
    pub sync_secs: u64,
    pub sync_set: bool,
    /// `SQL_DSN` is set (MySQL) rather than SQLite.
    pub sql: bool,
    /// `REDIS_CONN_STRING` is set.
    pub redis: bool,
    /// The channel-sync loop stopped after start (annotation `sync-stalled`).
    pub sync_stalled: bool,
    /// HTTP probes the kubelet sends; each shows up as a `[GIN]` request line.
    pub probes: Vec<HttpProbe>,
}

/// A kubelet HTTP probe as the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub path: String,
    pub period_secs: u64,
    pub status: u16,
    pub client_ip: String,
}

/// One run of a container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub started: Timestamp,
    /// When and how it ended; `None` while it runs.
    pub ended: Option<(Timestamp, Termination)>,
    /// Lines printed last, at the end (the previous-log annotation of a crashed instance).
    pub tail: Vec<String>,
}

/// A container instance: the unit a log file belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The 64-hex container ID (without the `containerd://` prefix).
    pub id: String,
    /// The restart number (the file name).
    pub restart: u32,
    pub run: Run,
}

/// Decides what a container logs from its pod (labels, env, probes) and image.
pub fn profile_for(
    pod: &Pod,
    container: &Container,
    first: bool,
    probe_ip: &str,
    readiness_fails: bool,
) -> LogProfile {
    let app = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app"))
        .map(String::as_str)
        .unwrap_or("");
    let image = container.image.as_deref().unwrap_or("");
    let (repo, tag) = split_image(image);
    let kind = if first && !app.is_empty() { app } else { repo };
    if kind.contains("new-api") || kind.contains("one-api") {
        let env = |name: &str| container.env.iter().flatten().find(|e| e.name == name);
        let literal = |name: &str| env(name).and_then(|e| e.value.clone());
        let sync = literal("SYNC_FREQUENCY")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0);
        let mut probes = Vec::new();
        for (probe, is_readiness) in [
            (&container.readiness_probe, true),
            (&container.liveness_probe, false),
        ] {
            if let Some(p) = probe.as_ref().and_then(http_probe_path) {
                let period = probe
                    .as_ref()
                    .and_then(|p| p.period_seconds)
                    .unwrap_or(10)
                    .max(1);
                probes.push(HttpProbe {
                    path: p,
                    period_secs: u64::try_from(period).unwrap_or(10),
                    status: if is_readiness && readiness_fails {
                        500
                    } else {
                        200
                    },
                    client_ip: probe_ip.to_string(),
                });
            }
        }
        LogProfile::NewApi(NewApi {
            version: tag
                .filter(|t| t.starts_with('v') && t[1..].starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or(NEW_API_DEFAULT_VERSION)
                .to_string(),
            slave: literal("NODE_TYPE").is_some_and(|v| v.trim() == "slave"),
            sync_secs: sync.unwrap_or(60),
            sync_set: env("SYNC_FREQUENCY").is_some(),
            sql: env("SQL_DSN").is_some(),
            redis: env("REDIS_CONN_STRING").is_some() || env("REDIS_HA_CONN_STRING").is_some(),
            sync_stalled: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::kubelet::behavior::SYNC_STALLED))
                .is_some_and(|v| v.trim() == "true"),
            probes,
        })
    } else if kind.contains("mysql") || kind.contains("mariadb") {
        LogProfile::Mysql {
            version: semver_from_tag(tag, "8.2.0"),
        }
    } else if kind.contains("redis") {
        LogProfile::Redis {
            version: semver_from_tag(tag, "7.2.4"),
        }
    } else {
        LogProfile::Quiet
    }
}

fn http_probe_path(p: &Probe) -> Option<String> {
    p.http_get
        .as_ref()
        .map(|h| h.path.clone().unwrap_or_else(|| "/".to_string()))
}

/// `registry/team/redis:7-alpine` → (`redis`, Some(`7-alpine`)).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let name = image.split('@').next().unwrap_or(image);
    let (name, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    (name.rsplit('/').next().unwrap_or(name), tag)
}

/// `8.2-oracle` → `8.2.0`; no numeric tag → `default`.
fn semver_from_tag(tag: Option<&str>, default: &str) -> String {
    let numeric: String = tag
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let parts: Vec<&str> = numeric.split('.').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return default.to_string();
    }
    let mut parts: Vec<String> = parts.into_iter().take(3).map(str::to_string).collect();
    // `redis:7` runs the default 7.x; `mysql:8.0` runs 8.0.0.
    let default_parts: Vec<&str> = default.split('.').collect();
    if parts.len() < 3 && default_parts.len() == 3 && default_parts[..parts.len()] == parts[..] {
        return default.to_string();
    }
    while parts.len() < 3 {
        parts.push("0".to_string());
    }
    parts.join(".")
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

type Render<'a> = Box<dyn Fn(Timestamp) -> Vec<String> + 'a>;

/// A line source that repeats: first at `start + first`, then every `period`.
struct Periodic<'a> {
    first: SignedDuration,
    period: SignedDuration,
    render: Render<'a>,
}

/// The lines `run` prints with a timestamp `t` in `(from, until]` (from the start when `from` is
/// `None`), in order. Start-up lines of a run shorter than its start-up are squeezed before its
/// end; periodic lines stop at the end; the termination lines and `run.tail` come last.
pub fn generate(
    profile: &LogProfile,
    run: &Run,
    from: Option<Timestamp>,
    until: Timestamp,
) -> Vec<(Timestamp, String)> {
    let end = run.ended.map(|(t, _)| t);
    let in_window = |t: Timestamp| from.is_none_or(|f| t > f) && t <= until;
    let mut out: Vec<(Timestamp, String)> = Vec::new();

    for (offset, render) in startup(profile) {
        let mut t = run.started + offset;
        if let Some(e) = end {
            t = t.min(e);
        }
        if in_window(t) {
            out.extend(render(t).into_iter().map(|l| (t, l)));
        }
    }

    let mut periodic_lines: Vec<(Timestamp, usize, String)> = Vec::new();
    for (order, p) in periodic(profile).into_iter().enumerate() {
        let first_t = run.started + p.first;
        let period_ns = p.period.as_nanos().max(1);
        // First k with t_k > from.
        let mut k: i128 = match from {
            Some(f) if f >= first_t => (f.duration_since(first_t).as_nanos() / period_ns) + 1,
            _ => 0,
        };
        let at = |k: i128| {
            let offset = i64::try_from(k.checked_mul(period_ns)?).ok()?;
            first_t.checked_add(SignedDuration::from_nanos(offset)).ok()
        };
        while let Some(t) = at(k) {
            if t > until || end.is_some_and(|e| t >= e) {
                break;
            }
            if in_window(t) {
                periodic_lines.extend((p.render)(t).into_iter().map(|l| (t, order, l)));
            }
            k += 1;
        }
    }
    periodic_lines.sort_by_key(|(t, order, _)| (*t, *order));
    out.extend(periodic_lines.into_iter().map(|(t, _, l)| (t, l)));

    if let Some((e, termination)) = run.ended
        && in_window(e)
    {
        if run.tail.is_empty() {
            out.extend(
                termination_lines(profile, termination, e)
                    .into_iter()
                    .map(|l| (e, l)),
            );
        }
        out.extend(run.tail.iter().map(|l| (e, l.clone())));
    }
    // Start-up lines squeezed to the end can tie with periodic ones; keep the order stable.
    out.sort_by_key(|(t, _)| *t);
    out
}

fn ms(n: i64) -> SignedDuration {
    SignedDuration::from_millis(n)
}

fn startup(profile: &LogProfile) -> Vec<(SignedDuration, Render<'_>)> {
    let mut lines: Vec<(SignedDuration, Render<'_>)> = Vec::new();
    match profile {
        LogProfile::NewApi(n) => {
            let mut msgs: Vec<String> = Vec::new();
            if n.sql {
                msgs.push("using MySQL as database".into());
            } else {
                msgs.push("SQL_DSN not set, using SQLite as database".into());
            }
            msgs.push("database migration started".into());
            msgs.push("database migrated".into());
            if n.redis {
                if !n.sync_set {
                    msgs.push("SYNC_FREQUENCY not set, use default value 60".into());
                }
                msgs.push("Redis is enabled".into());
            } else {
                msgs.push("REDIS_CONN_STRING not set, Redis is not enabled".into());
            }
            msgs.push(format!("New API {} started", n.version));
            if n.redis {
                msgs.push("memory cache enabled".into());
                msgs.push(format!("sync frequency: {} seconds", n.sync_secs));
                msgs.push("channels synced from database".into());
            }
            for (i, m) in msgs.into_iter().enumerate() {
                let offset = ms(40 * i64::try_from(i).unwrap_or(0));
                lines.push((offset, Box::new(move |t| vec![new_api_sys_line(t, &m)])));
            }
        }
        LogProfile::Mysql { version } => {
            let entry = move |msg: String| -> Render<'_> {
                Box::new(move |t| {
                    vec![format!("{} [Note] [Entrypoint]: {msg}", entrypoint_time(t))]
                })
            };
            let server = move |level: &'static str,
                               code: &'static str,
                               sub: &'static str,
                               msg: String|
                  -> Render<'_> {
                Box::new(move |t| {
                    vec![format!(
                        "{} 0 [{level}] [{code}] [{sub}] {msg}",
                        mysql_time(t)
                    )]
                })
            };
            lines.push((
                ms(0),
                entry(format!(
                    "Entrypoint script for MySQL Server {version}-1.el8 started."
                )),
            ));
            lines.push((ms(90), entry("Switching to dedicated user 'mysql'".into())));
            lines.push((
                ms(120),
                entry(format!(
                    "Entrypoint script for MySQL Server {version}-1.el8 started."
                )),
            ));
            lines.push((
                ms(600),
                server(
                    "System",
                    "MY-015015",
                    "Server",
                    "MySQL Server - start.".into(),
                ),
            ));
            lines.push((
                ms(820),
                server(
                    "System",
                    "MY-010116",
                    "Server",
                    format!("/usr/sbin/mysqld (mysqld {version}) starting as process 1"),
                ),
            ));
            lines.push((
                ms(840),
                server(
                    "System",
                    "MY-013576",
                    "InnoDB",
                    "InnoDB initialization has started.".into(),
                ),
            ));
            lines.push((
                ms(1460),
                server(
                    "System",
                    "MY-013577",
                    "InnoDB",
                    "InnoDB initialization has ended.".into(),
                ),
            ));
            lines.push((
                ms(1790),
                server(
                    "Warning",
                    "MY-010068",
                    "Server",
                    "CA certificate ca.pem is self signed.".into(),
                ),
            ));
            lines.push((
                ms(1800),
                server(
                    "System",
                    "MY-013602",
                    "Server",
                    "Channel mysql_main configured to support TLS. Encrypted connections are now supported for this channel.".into(),
                ),
            ));
            lines.push((
                ms(1830),
                server(
                    "System",
                    "MY-011323",
                    "Server",
                    "X Plugin ready for connections. Bind-address: '::' port: 33060, socket: /var/run/mysqld/mysqlx.sock".into(),
                ),
            ));
            lines.push((
                ms(1840),
                server(
                    "System",
                    "MY-010931",
                    "Server",
                    format!(
                        "/usr/sbin/mysqld: ready for connections. Version: '{version}'  socket: '/var/run/mysqld/mysqld.sock'  port: 3306  MySQL Community Server - GPL."
                    ),
                ),
            ));
        }
        LogProfile::Redis { version } => {
            let line = |role: char, mark: char, msg: String| -> Render<'_> {
                Box::new(move |t| vec![format!("1:{role} {} {mark} {msg}", redis_time(t))])
            };
            lines.push((
                ms(0),
                line(
                    'C',
                    '*',
                    "oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo".into(),
                ),
            ));
            lines.push((
                ms(0),
                line('C', '*', format!("Redis version={version}, bits=64, commit=00000000, modified=0, pid=1, just started")),
            ));
            lines.push((
                ms(0),
                line(
                    'C',
                    '#',
                    "Warning: no config file specified, using the default config. In order to specify a config file use redis-server /path/to/redis.conf".into(),
                ),
            ));
            lines.push((
                ms(1),
                line('M', '*', "monotonic clock: POSIX clock_gettime".into()),
            ));
            lines.push((
                ms(2),
                line('M', '*', "Running mode=standalone, port=6379.".into()),
            ));
            lines.push((ms(2), line('M', '*', "Server initialized".into())));
            lines.push((
                ms(3),
                line('M', '*', "Ready to accept connections tcp".into()),
            ));
        }
        LogProfile::Quiet | LogProfile::Captured => {}
    }
    lines
}

fn periodic(profile: &LogProfile) -> Vec<Periodic<'_>> {
    let mut out = Vec::new();
    match profile {
        LogProfile::NewApi(n) => {
            let secs = |s: u64| {
                SignedDuration::from_secs(i64::try_from(s).unwrap_or(i64::MAX / 2_000_000_000))
            };
            // Both loops sleep first, then log (model.SyncOptions / model.SyncChannelCache).
            out.push(Periodic {
                first: secs(n.sync_secs),
                period: secs(n.sync_secs),
                render: Box::new(|t| vec![new_api_sys_line(t, "syncing options from database")]),
            });
            if n.slave && !n.sync_stalled {
                out.push(Periodic {
                    first: secs(n.sync_secs),
                    period: secs(n.sync_secs),
                    render: Box::new(|t| {
                        vec![
                            new_api_sys_line(t, "syncing channels from database"),
                            new_api_sys_line(t, "channels synced from database"),
                        ]
                    }),
                });
            }
            for p in &n.probes {
                out.push(Periodic {
                    first: secs(p.period_secs),
                    period: secs(p.period_secs),
                    render: Box::new(move |t| {
                        vec![new_api_request_line(
                            t,
                            p.status,
                            "GET",
                            &p.path,
                            &p.client_ip,
                            pseudo_latency_ns(t),
                        )]
                    }),
                });
            }
        }
        LogProfile::Redis { .. } => {
            out.push(Periodic {
                first: SignedDuration::from_secs(300),
                period: SignedDuration::from_secs(300),
                render: Box::new(|t| {
                    let pid = 20 + (t.as_second().rem_euclid(9000));
                    let ts = redis_time(t);
                    vec![
                        format!("1:M {ts} * 100 changes in 300 seconds. Saving..."),
                        format!("1:M {ts} * Background saving started by pid {pid}"),
                        format!("{pid}:C {ts} * DB saved on disk"),
                        format!(
                            "{pid}:C {ts} * Fork CoW for RDB: current 0 MB, peak 0 MB, average 0 MB"
                        ),
                        format!("1:M {ts} * Background saving terminated with success"),
                    ]
                }),
            });
        }
        LogProfile::Mysql { .. } | LogProfile::Quiet | LogProfile::Captured => {}
    }
    out
}

fn termination_lines(profile: &LogProfile, termination: Termination, t: Timestamp) -> Vec<String> {
    match (profile, termination) {
        // A SIGKILL from the OOM killer leaves no last words; exit 0 neither. A real container
        // says what it said.
        (_, Termination::OomKilled | Termination::Completed)
        | (LogProfile::Captured, _)
        | (_, Termination::Exit(_)) => Vec::new(),
        (LogProfile::NewApi(_), Termination::Error) => vec![format!(
            "[FATAL] {} | failed to initialize database: dial tcp 10.96.0.20:3306: connect: connection refused ",
            new_api_time(t)
        )],
        (LogProfile::Mysql { .. }, Termination::Error) => vec![
            format!(
                "{} 0 [ERROR] [MY-010946] [Server] Failed to start mysqld daemon. Check mysqld error log.",
                mysql_time(t)
            ),
            format!("{} 0 [ERROR] [MY-010119] [Server] Aborting", mysql_time(t)),
        ],
        (LogProfile::Redis { .. }, Termination::Error) => vec![format!(
            "1:M {} # Fatal error loading the DB, check server logs. Exiting.",
            redis_time(t)
        )],
        (LogProfile::Quiet, Termination::Error) => vec!["Error: exit status 1".to_string()],
    }
}

// ---------------------------------------------------------------------------------------------
// Line formats
// ---------------------------------------------------------------------------------------------

fn utc(t: Timestamp, fmt: &str) -> String {
    t.to_zoned(TimeZone::UTC).strftime(fmt).to_string()
}

/// `2025/11/13 - 10:00:00`, New-API's (Go) time format.
fn new_api_time(t: Timestamp) -> String {
    utc(t, "%Y/%m/%d - %H:%M:%S")
}

fn mysql_time(t: Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        utc(t, "%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond() / 1000
    )
}

fn entrypoint_time(t: Timestamp) -> String {
    format!("{}+00:00", utc(t, "%Y-%m-%d %H:%M:%S"))
}

fn redis_time(t: Timestamp) -> String {
    format!(
        "{}.{:03}",
        utc(t, "%d %b %Y %H:%M:%S"),
        t.subsec_nanosecond() / 1_000_000
    )
}

/// The kubelet's log timestamp: RFC 3339 in UTC with exactly nine fractional digits.
pub fn rfc3339_nano(t: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        utc(t, "%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond()
    )
}

/// A New-API system line: `[SYS] 2025/11/13 - 10:00:00 | message `.
pub fn new_api_sys_line(t: Timestamp, msg: &str) -> String {
    format!("[SYS] {} | {msg} ", new_api_time(t))
}

/// A New-API request line as its gin logger prints it.
pub fn new_api_request_line(
    t: Timestamp,
    status: u16,
    method: &str,
    path: &str,
    client_ip: &str,
    latency_ns: u64,
) -> String {
    let request_id = format!(
        "{}{}{}",
        utc(t, "%Y%m%d%H%M%S"),
        t.subsec_nanosecond(),
        &pseudo_token(t)
    );
    format!(
        "[GIN] {} | {request_id} | {status:3} | {:>13} | {client_ip:>15} | {method:>7} {path}",
        new_api_time(t),
        go_duration(latency_ns)
    )
}

fn hash_of(t: Timestamp, salt: u8) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.as_nanosecond().hash(&mut h);
    salt.hash(&mut h);
    h.finish()
}

/// A plausible request latency (80 µs – 2 ms) that is the same every time `t` is rendered.
pub fn pseudo_latency_ns(t: Timestamp) -> u64 {
    80_000 + hash_of(t, 1) % 1_920_000
}

fn pseudo_token(t: Timestamp) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut h = hash_of(t, 2);
    let mut s = String::with_capacity(8);
    for _ in 0..8 {
        s.push(char::from(ALPHABET[usize::try_from(h % 62).unwrap_or(0)]));
        h /= 62;
    }
    s
}

/// Go's `time.Duration` string for durations under a second: `850ns`, `152.345µs`, `1.2ms`.
pub fn go_duration(ns: u64) -> String {
    fn trimmed(whole: u64, frac: u64, digits: usize, unit: &str) -> String {
        if frac == 0 {
            return format!("{whole}{unit}");
        }
        let f = format!("{frac:0digits$}");
        format!("{whole}.{}{unit}", f.trim_end_matches('0'))
    }
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => trimmed(ns / 1_000, ns % 1_000, 3, "µs"),
        1_000_000..1_000_000_000 => trimmed(ns / 1_000_000, ns % 1_000_000, 6, "ms"),
        _ => trimmed(ns / 1_000_000_000, ns % 1_000_000_000, 9, "s"),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/// The query of `GET /containerLogs/...`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub previous: bool,
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

impl LogQuery {
    /// Reads the decoded query parameters; `now` resolves `sinceSeconds`.
    pub fn from_params(params: &[(String, String)], now: Timestamp) -> Result<LogQuery, String> {
        let flag = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE");
        let mut q = LogQuery::default();
        for (k, v) in params {
            match k.as_str() {
                "previous" => q.previous = flag(v),
                "follow" => q.follow = flag(v),
                "timestamps" => q.timestamps = flag(v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    q.tail_lines = u64::try_from(n).ok();
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes must be a positive integer".into());
                    }
                    q.limit_bytes = u64::try_from(n).ok();
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds must be a positive integer".into());
                    }
                    q.since = Some(now - SignedDuration::from_secs(n));
                }
                "sinceTime" => {
                    let t: Timestamp = v
                        .parse()
                        .map_err(|e| format!("invalid sinceTime {v:?}: {e}"))?;
                    q.since = Some(t);
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Selects from stored log text (`timestamp message` lines) what `q` asks for, like the kubelet:
/// the last `tailLines` lines, then those not older than `since`, with or without their
/// timestamps, cut at `limitBytes`.
pub fn render(stored: &str, q: &LogQuery) -> String {
    let lines: Vec<&str> = stored.lines().collect();
    let start = match q.tail_lines {
        Some(n) => lines
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    let mut out = String::new();
    for line in &lines[start..] {
        push_line(&mut out, line, q);
    }
    if let Some(limit) = q.limit_bytes {
        truncate_bytes(&mut out, usize::try_from(limit).unwrap_or(usize::MAX));
    }
    out
}

/// Appends one stored line to `out` if it passes `since`, formatted per `timestamps`.
pub fn push_line(out: &mut String, line: &str, q: &LogQuery) {
    let (ts, msg) = line.split_once(' ').unwrap_or((line, ""));
    if let Some(since) = q.since
        && ts.parse::<Timestamp>().is_ok_and(|t| t < since)
    {
        return;
    }
    out.push_str(if q.timestamps { line } else { msg });
    out.push('\n');
}

/// Cuts `s` to at most `limit` bytes (at a character boundary).
pub fn truncate_bytes(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

// ---------------------------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------------------------

/// Where an instance's log comes from: the pod directory, the container and what it runs.
pub struct LogSource<'a> {
    /// `<ns>_<pod>_<uid>`.
    pub pod_dir: &'a str,
    pub container: &'a str,
    pub instance: &'a Instance,
    pub profile: &'a LogProfile,
}

struct Materialized {
    pod_dir: String,
    path: PathBuf,
    /// Every line with a timestamp up to this one is in the file.
    through: Option<Timestamp>,
    /// The instance ended and its last lines are written.
    complete: bool,
}

/// Log files under `<state_dir>/pods`, written lazily.
pub struct LogStore {
    root: PathBuf,
    files: Mutex<HashMap<String, Materialized>>,
}

impl LogStore {
    pub fn new(state_dir: &Path) -> LogStore {
        LogStore {
            root: state_dir.join("pods"),
            files: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Materialized>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the file of `src` up to `now` (appending what the program printed since the last
    /// time), then runs `f` on its path while no one else writes to it.
    fn with_synced<T>(
        &self,
        src: &LogSource<'_>,
        now: Timestamp,
        f: impl FnOnce(&Path) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut files = self.lock();
        let entry = files
            .entry(src.instance.id.clone())
            .or_insert_with(|| Materialized {
                pod_dir: src.pod_dir.to_string(),
                path: self
                    .root
                    .join(src.pod_dir)
                    .join(src.container)
                    .join(format!("{}.log", src.instance.restart)),
                through: None,
                complete: false,
            });
        if !entry.complete {
            let run = &src.instance.run;
            let lines = generate(src.profile, run, entry.through, now);
            if entry.through.is_none() || !lines.is_empty() {
                if let Some(dir) = entry.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&entry.path)?;
                let mut buf = String::new();
                for (t, line) in lines {
                    buf.push_str(&rfc3339_nano(t));
                    buf.push(' ');
                    buf.push_str(&line);
                    buf.push('\n');
                }
                file.write_all(buf.as_bytes())?;
            }
            entry.through = Some(entry.through.map_or(now, |t| t.max(now)));
            if let Some((end, _)) = run.ended
                && now >= end
            {
                entry.complete = true;
            }
        }
        f(&entry.path)
    }

    /// The whole log of `src` as of `now`.
    pub fn read(&self, src: &LogSource<'_>, now: Timestamp) -> io::Result<String> {
        self.with_synced(src, now, |p| std::fs::read_to_string(p))
    }

    /// What was written after byte `offset`, and the new end offset (for `follow`). Only whole
    /// lines are returned.
    pub fn read_from(
        &self,
        src: &LogSource<'_>,
        now: Timestamp,
        offset: u64,
    ) -> io::Result<(String, u64)> {
        self.with_synced(src, now, |p| {
            let mut file = std::fs::File::open(p)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut s = String::new();
            file.read_to_string(&mut s)?;
            let whole = s.rfind('\n').map_or(0, |i| i + 1);
            s.truncate(whole);
            Ok((s, offset + u64::try_from(whole).unwrap_or(0)))
        })
    }

    /// Appends `text` (one line) to the running instance's log at `now`.
    pub fn append(&self, src: &LogSource<'_>, now: Timestamp, text: &str) -> io::Result<()> {
        self.with_synced(src, now, |p| {
            let mut file = std::fs::OpenOptions::new().append(true).open(p)?;
            let line = format!("{} {}\n", rfc3339_nano(now), text.replace('\n', " "));
            file.write_all(line.as_bytes())
        })
    }

    /// Forgets the log of instance `id` and removes its file (a container that never ran).
    pub fn discard(&self, id: &str) {
        if let Some(m) = self.lock().remove(id) {
            let _ = std::fs::remove_file(m.path);
        }
    }

    /// Forgets a deleted pod and removes its log directory.
    pub fn forget_pod(&self, pod_dir: &str) {
        self.lock().retain(|_, m| m.pod_dir != pod_dir);
        let _ = std::fs::remove_dir_all(self.root.join(pod_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn slave(sync: u64) -> LogProfile {
        LogProfile::NewApi(NewApi {
            version: "v0.9.0".into(),
            slave: true,
            sync_secs: sync,
            sync_set: true,
            sql: true,
            redis: true,
            sync_stalled: false,
            probes: vec![HttpProbe {
                path: "/api/status".into(),
                period_secs: 10,
                status: 200,
                client_ip: "10.244.0.1".into(),
            }],
        })
    }

    #[test]
    fn new_api_startup_and_sync_lines() {
        let run = Run {
            started: t("2025-11-13T10:00:00Z"),
            ended: None,
            tail: vec![],
        };
        let lines = generate(&slave(60), &run, None, t("2025-11-13T10:02:05Z"));
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            text[0],
            "[SYS] 2025/11/13 - 10:00:00 | using MySQL as database "
        );
        assert!(text.contains(&"[SYS] 2025/11/13 - 10:00:00 | New API v0.9.0 started "));
        let syncs: Vec<Timestamp> = lines
            .iter()
            .filter(|(_, l)| l.contains("syncing channels from database"))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            syncs,
            vec![t("2025-11-13T10:01:00Z"), t("2025-11-13T10:02:00Z")]
        );
        let probes = lines.iter().filter(|(_, l)| l.starts_with("[GIN]")).count();
        assert_eq!(probes, 12);
        let gin = lines.iter().find(|(_, l)| l.starts_with("[GIN]")).unwrap();
        assert!(
            gin.1
                .starts_with("[GIN] 2025/11/13 - 10:00:10 | 20251113100010"),
            "{}",
            gin.1
        );
        assert!(
            gin.1.ends_with("|      10.244.0.1 |     GET /api/status"),
            "{}",
            gin.1
        );
        // Sorted by time.
        assert!(lines.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn windows_are_disjoint_and_complete() {
        let run = Run {
            started: t("2025-11-13T10:00:00Z"),
            ended: None,
            tail: vec![],
        };
        let p = slave(15);
        let all = generate(&p, &run, None, t("2025-11-13T10:05:00Z"));
        let mut pieces = generate(&p, &run, None, t("2025-11-13T10:01:00Z"));
        pieces.extend(generate(
            &p,
            &run,
            Some(t("2025-11-13T10:01:00Z")),
            t("2025-11-13T10:03:17.5Z"),
        ));
        pieces.extend(generate(
            &p,
            &run,
            Some(t("2025-11-13T10:03:17.5Z")),
            t("2025-11-13T10:05:00Z"),
        ));
        assert_eq!(all, pieces);
    }

    #[test]
    fn crashed_run_ends_with_tail() {
        let started = t("2025-11-13T10:00:00Z");
        let run = Run {
            started,
            ended: Some((started, Termination::Error)),
            tail: vec!["Error 1040: Too many connections".into()],
        };
        let lines = generate(&slave(60), &run, None, t("2025-11-13T11:00:00Z"));
        // The start-up is squeezed into the zero-length run; nothing periodic; the tail is last.
        assert!(lines.iter().all(|(t, _)| *t == started));
        assert!(
            lines
                .iter()
                .any(|(_, l)| l.contains("New API v0.9.0 started"))
        );
        assert_eq!(lines.last().unwrap().1, "Error 1040: Too many connections");
        assert!(!lines.iter().any(|(_, l)| l.contains("[FATAL]")));

        let run = Run {
            started,
            ended: Some((t("2025-11-13T10:00:06Z"), Termination::Error)),
            tail: vec![],
        };
        let lines = generate(&slave(60), &run, None, t("2025-11-13T11:00:00Z"));
        assert!(
            lines
                .last()
                .unwrap()
                .1
                .starts_with("[FATAL] 2025/11/13 - 10:00:06 | failed to initialize database")
        );
        let oom = Run {
            started,
            ended: Some((t("2025-11-13T10:00:06Z"), Termination::OomKilled)),
            tail: vec![],
        };
        let lines = generate(
            &LogProfile::Redis {
                version: "7.2.4".into(),
            },
            &oom,
            None,
            t("2025-11-13T11:00:00Z"),
        );
        assert_eq!(
            lines.last().unwrap().1,
            "1:M 13 Nov 2025 10:00:00.003 * Ready to accept connections tcp"
        );
    }

    #[test]
    fn mysql_and_redis_lines() {
        let run = Run {
            started: t("2025-11-13T10:00:00Z"),
            ended: None,
            tail: vec![],
        };
        let my = generate(
            &LogProfile::Mysql {
                version: "8.2.0".into(),
            },
            &run,
            None,
            t("2025-11-13T10:00:10Z"),
        );
        assert_eq!(
            my[0].1,
            "2025-11-13 10:00:00+00:00 [Note] [Entrypoint]: Entrypoint script for MySQL Server 8.2.0-1.el8 started."
        );
        assert!(my.last().unwrap().1.starts_with("2025-11-13T10:00:01.840000Z 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections."));
        let r = generate(
            &LogProfile::Redis {
                version: "7.2.4".into(),
            },
            &run,
            None,
            t("2025-11-13T10:10:00Z"),
        );
        assert!(r.iter().filter(|(_, l)| l.contains("Saving...")).count() == 2);
        assert!(generate(&LogProfile::Quiet, &run, None, t("2025-11-13T10:10:00Z")).is_empty());
    }

    #[test]
    fn queries() {
        let stored = "2025-11-13T10:00:00.000000000Z one\n2025-11-13T10:00:01.000000000Z two\n2025-11-13T10:00:02.500000000Z three\n";
        let q = LogQuery::default();
        assert_eq!(render(stored, &q), "one\ntwo\nthree\n");
        let q = LogQuery {
            tail_lines: Some(2),
            timestamps: true,
            ..LogQuery::default()
        };
        assert_eq!(
            render(stored, &q),
            "2025-11-13T10:00:01.000000000Z two\n2025-11-13T10:00:02.500000000Z three\n"
        );
        let q = LogQuery {
            tail_lines: Some(0),
            ..LogQuery::default()
        };
        assert_eq!(render(stored, &q), "");
        let q = LogQuery {
            since: Some(t("2025-11-13T10:00:01Z")),
            ..LogQuery::default()
        };
        assert_eq!(render(stored, &q), "two\nthree\n");
        let q = LogQuery {
            limit_bytes: Some(6),
            ..LogQuery::default()
        };
        assert_eq!(render(stored, &q), "one\ntw");

        let now = t("2025-11-13T10:00:10Z");
        let params = |s: &[(&str, &str)]| -> Vec<(String, String)> {
            s.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let q = LogQuery::from_params(
            &params(&[
                ("previous", "true"),
                ("tailLines", "5"),
                ("sinceSeconds", "8"),
                ("timestamps", "true"),
            ]),
            now,
        )
        .unwrap();
        assert!(q.previous && q.timestamps && !q.follow);
        assert_eq!(q.tail_lines, Some(5));
        assert_eq!(q.since, Some(t("2025-11-13T10:00:02Z")));
        let q =
            LogQuery::from_params(&params(&[("sinceTime", "2025-11-13T10:00:01Z")]), now).unwrap();
        assert_eq!(q.since, Some(t("2025-11-13T10:00:01Z")));
        assert!(LogQuery::from_params(&params(&[("tailLines", "x")]), now).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            rfc3339_nano(t("2025-11-13T10:00:00.5Z")),
            "2025-11-13T10:00:00.500000000Z"
        );
        assert_eq!(go_duration(850), "850ns");
        assert_eq!(go_duration(152_345), "152.345µs");
        assert_eq!(go_duration(1_200_000), "1.2ms");
        assert_eq!(go_duration(2_000_000), "2ms");
        assert_eq!(semver_from_tag(Some("8.2-oracle"), "x"), "8.2.0");
        assert_eq!(semver_from_tag(Some("latest"), "7.2.4"), "7.2.4");
        assert_eq!(semver_from_tag(Some("7-alpine"), "7.2.4"), "7.2.4");
        assert_eq!(semver_from_tag(Some("6"), "7.2.4"), "6.0.0");
        assert_eq!(semver_from_tag(Some("8.0.36"), "8.2.0"), "8.0.36");
        assert_eq!(
            split_image("docker.io/calciumion/new-api:v0.9.1"),
            ("new-api", Some("v0.9.1"))
        );
        assert_eq!(split_image("localhost:5000/redis"), ("redis", None));
    }

    #[test]
    fn store_materializes_lazily_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(dir.path());
        let started = t("2025-11-13T10:00:00Z");
        let instance = Instance {
            id: "abc".into(),
            restart: 0,
            run: Run {
                started,
                ended: None,
                tail: vec![],
            },
        };
        let profile = slave(60);
        let src = LogSource {
            pod_dir: "ns_pod_uid",
            container: "new-api",
            instance: &instance,
            profile: &profile,
        };
        let first = store.read(&src, t("2025-11-13T10:00:30Z")).unwrap();
        assert!(first.starts_with("2025-11-13T10:00:00.000000000Z [SYS] 2025/11/13 - 10:00:00 | using MySQL as database \n"));
        assert!(!first.contains("syncing"));
        store
            .append(
                &src,
                t("2025-11-13T10:00:45Z"),
                "[SYS] x | Redis ping test failed",
            )
            .unwrap();
        let (more, off) = store
            .read_from(
                &src,
                t("2025-11-13T10:01:05Z"),
                u64::try_from(first.len()).unwrap(),
            )
            .unwrap();
        assert!(more.contains("Redis ping test failed"));
        assert!(more.contains("syncing channels from database"));
        let all = store.read(&src, t("2025-11-13T10:01:05Z")).unwrap();
        assert_eq!(u64::try_from(all.len()).unwrap(), off);
        assert!(dir.path().join("pods/ns_pod_uid/new-api/0.log").exists());
        store.forget_pod("ns_pod_uid");
        assert!(!dir.path().join("pods/ns_pod_uid").exists());
    }
}
