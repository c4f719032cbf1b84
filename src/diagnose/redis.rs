//! The Redis checks of `diagnose`: is New-API's cache reachable, sized, and useful?
//!
//! [`check`] connects with bounded connect and response timeouts (each cut to what is left of
//! [`RedisCheckConfig::budget`], when set), measures PING, reads `INFO` once (parsed by the pure
//! [`Info::parse`]) and turns its fields into findings. It changes nothing on the server.
//! `CONFIG GET maxclients` is asked only when INFO lacks `maxclients` (Redis before 7); a refused
//! CONFIG (managed Redis renames it) just leaves that check out.
//!
//! Finding ids and thresholds:
//!
//! | id | what | severity |
//! |---|---|---|
//! | `redis.connect` | PING latency; or why it cannot connect (refused, timeout, NOAUTH: a password is required, WRONGPASS: wrong password) | ok; warning when PING ≥ `latency_warn`; critical when it cannot connect or PING fails |
//! | `redis.server` | version, mode, role, keys per database | info |
//! | `redis.memory` | used_memory against maxmemory | info when maxmemory is 0 (unlimited), warning > `memory_warn_ratio` (85 %, the seed's tuning rule), critical when full under noeviction; warning when maxmemory exceeds the container's memory limit |
//! | `redis.eviction_policy` | maxmemory-policy | warning for noeviction with a maxmemory (writes fail when full) |
//! | `redis.evictions` | evicted_keys since start | warning when > 0 |
//! | `redis.hit_rate` | keyspace_hits / (hits + misses) | info under `hit_rate_min_lookups` lookups, warning below `hit_rate_warn` |
//! | `redis.rejected_connections` | rejected_connections since start | warning when > 0 |
//! | `redis.clients` | connected_clients against maxclients | warning > 80 %, critical ≥ 95 % |
//! | `redis.uptime` | uptime_in_seconds | warning under `restart_warn`, info under `restart_info` |
//!
//! Evidence names the address only, never the password of the connection URL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError};

use super::finding::{Component, Finding, Severity};
use crate::units::{bytes, duration};

/// Thresholds and bounds of [`check`].
#[derive(Debug, Clone)]
pub struct RedisCheckConfig {
    /// Bound of the connection (TCP + AUTH).
    pub connect_timeout: Duration,
    /// Bound of each command.
    pub command_timeout: Duration,
    /// PING slower than this is a warning.
    pub latency_warn: Duration,
    /// used_memory / maxmemory above this is a warning (the seed: memory > 85 %).
    pub memory_warn_ratio: f64,
    /// The Redis container's memory limit, when known (the seed: 4Gi).
    pub memory_limit_bytes: Option<u64>,
    /// A hit rate below this is a warning...
    pub hit_rate_warn: f64,
    /// ...once there were at least this many lookups.
    pub hit_rate_min_lookups: u64,
    /// connected_clients / maxclients above this is a warning; from `clients_crit_ratio` critical.
    pub clients_warn_ratio: f64,
    pub clients_crit_ratio: f64,
    /// Started less than this long ago: warning (caches are cold, maybe an OOM kill).
    pub restart_warn: Duration,
    /// Started less than this long ago: info.
    pub restart_info: Duration,
    /// New-API pods, each with a go-redis pool of REDIS_POOL_SIZE (default 10), for evidence.
    pub new_api_pods: u32,
    /// How findings name the server; default `host:port` (see the MySQL check's `subject`).
    pub subject: Option<String>,
    /// Bound of the whole check, if any: each step gets at most what is left of it, so the check
    /// returns its findings before an outer timeout of the same length would drop them.
    pub budget: Option<Duration>,
}

impl Default for RedisCheckConfig {
    fn default() -> Self {
        RedisCheckConfig {
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(3),
            latency_warn: Duration::from_millis(100),
            memory_warn_ratio: 0.85,
            memory_limit_bytes: None,
            hit_rate_warn: 0.80,
            hit_rate_min_lookups: 1000,
            clients_warn_ratio: 0.80,
            clients_crit_ratio: 0.95,
            restart_warn: Duration::from_secs(600),
            restart_info: Duration::from_secs(3600),
            new_api_pods: 4,
            subject: None,
            budget: None,
        }
    }
}

/// New-API's default REDIS_POOL_SIZE (common/redis.go).
pub const NEWAPI_DEFAULT_POOL_SIZE: u64 = 10;

/// The reply of `INFO`: sections of `field:value` lines, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub sections: Vec<InfoSection>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoSection {
    /// As written after `# ` (e.g. `Memory`); empty for fields before any header.
    pub name: String,
    pub fields: Vec<(String, String)>,
}

impl Info {
    /// Parses INFO text: `# Section` headers, `field:value` lines (the value may hold more `:`),
    /// CRLF or LF line ends; anything else is skipped.
    pub fn parse(text: &str) -> Info {
        let mut info = Info::default();
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r').trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('#') {
                info.sections.push(InfoSection {
                    name: name.trim().to_string(),
                    fields: Vec::new(),
                });
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if info.sections.is_empty() {
                info.sections.push(InfoSection::default());
            }
            if let Some(section) = info.sections.last_mut() {
                section
                    .fields
                    .push((key.trim().to_string(), value.trim().to_string()));
            }
        }
        info
    }

    /// A section by name, ignoring case.
    pub fn section(&self, name: &str) -> Option<&InfoSection> {
        self.sections
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// A field from any section (field names are unique across INFO's sections).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.sections
            .iter()
            .flat_map(|s| s.fields.iter())
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_u64(&self, field: &str) -> Option<u64> {
        self.get(field).and_then(|v| v.parse().ok())
    }

    /// Keys per database from the Keyspace section (`db0:keys=1,expires=0,avg_ttl=0`).
    pub fn keyspace(&self) -> BTreeMap<String, u64> {
        self.section("Keyspace")
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|(db, v)| {
                        let keys = parse_subfields(v).get("keys")?.parse().ok()?;
                        Some((db.clone(), keys))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `a=1,b=2` → {a: 1, b: 2}.
pub fn parse_subfields(value: &str) -> BTreeMap<String, String> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Why a connection or the first PING failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    /// NOAUTH: the server wants a password and none was given.
    NoAuth,
    /// WRONGPASS or another authentication refusal: wrong (user or) password.
    WrongPass,
    Other(String),
}

impl ConnectFailure {
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::Refused => {
                "connection refused (nothing listens there: Redis down or wrong port)".into()
            }
            ConnectFailure::Timeout => {
                "no answer in time (network, firewall or a blocked server)".into()
            }
            ConnectFailure::NoAuth => {
                "NOAUTH: Redis requires a password and the connection has none".into()
            }
            ConnectFailure::WrongPass => "WRONGPASS: wrong user or password".into(),
            ConnectFailure::Other(d) => d.clone(),
        }
    }

    pub fn next_step(&self) -> String {
        match self {
            ConnectFailure::Refused | ConnectFailure::Timeout => {
                "newapi-ops pods (is the redis pod Running and Ready?); New-API logs \"Redis ping test failed\" and exits meanwhile".into()
            }
            ConnectFailure::NoAuth | ConnectFailure::WrongPass => {
                "make REDIS_CONN_STRING (redis://:PASSWORD@host:6379) match Redis' requirepass (runbook run db-connection)".into()
            }
            ConnectFailure::Other(_) => "runbook run db-connection".into(),
        }
    }
}

/// Classifies a connection or PING error.
pub fn classify(err: &RedisError) -> ConnectFailure {
    let code = err.code().unwrap_or("");
    let text = err.to_string();
    if code == "NOAUTH" || text.contains("NOAUTH") {
        ConnectFailure::NoAuth
    } else if code == "WRONGPASS"
        || text.contains("WRONGPASS")
        || text.contains("invalid password")
        || err.kind() == ErrorKind::AuthenticationFailed
    {
        ConnectFailure::WrongPass
    } else if err.is_connection_refusal() {
        ConnectFailure::Refused
    } else if err.is_timeout() {
        ConnectFailure::Timeout
    } else {
        ConnectFailure::Other(one_line(&text))
    }
}

/// Severity of `used` against a limit: warning above `warn_ratio`, critical from 100 % when the
/// policy cannot evict.
pub fn memory_severity(used: u64, maxmemory: u64, policy: &str, warn_ratio: f64) -> Severity {
    if maxmemory == 0 {
        return Severity::Info;
    }
    let ratio = used as f64 / maxmemory as f64;
    if ratio >= 1.0 && policy == "noeviction" {
        Severity::Critical
    } else if ratio > warn_ratio {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// keyspace_hits / (hits + misses), if there were lookups.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Severity of the hit rate: info below `min_lookups`, warning below `warn`.
pub fn hit_rate_severity(hits: u64, misses: u64, warn: f64, min_lookups: u64) -> Severity {
    match hit_rate(hits, misses) {
        _ if hits + misses < min_lookups => Severity::Info,
        Some(rate) if rate < warn => Severity::Warning,
        _ => Severity::Ok,
    }
}

/// Severity of connected_clients against maxclients.
pub fn clients_severity(connected: u64, maxclients: u64, warn: f64, crit: f64) -> Severity {
    if maxclients == 0 {
        return Severity::Info;
    }
    let ratio = connected as f64 / maxclients as f64;
    if ratio >= crit {
        Severity::Critical
    } else if ratio > warn {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// Severity of the uptime: a recent restart.
pub fn uptime_severity(uptime: Duration, warn: Duration, info: Duration) -> Severity {
    if uptime < warn {
        Severity::Warning
    } else if uptime < info {
        Severity::Info
    } else {
        Severity::Ok
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn finding(check: &str, severity: Severity, summary: impl Into<String>) -> Finding {
    Finding::new(Component::Redis, check, severity, summary)
}

async fn command<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    limit: Duration,
) -> Result<T, String> {
    if limit.is_zero() {
        return Err("the time budget of the Redis check ran out".into());
    }
    match tokio::time::timeout(limit, cmd.query_async::<T>(conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Runs every Redis check against `client`'s server.
pub async fn check(client: Client, cfg: &RedisCheckConfig) -> Vec<Finding> {
    let target = cfg
        .subject
        .clone()
        .unwrap_or_else(|| client.get_connection_info().addr().to_string());
    let deadline = cfg.budget.map(|b| Instant::now() + b);
    // A step's bound: its own timeout, cut to what is left of the budget.
    let bound = |t: Duration| match deadline {
        Some(d) => t.min(d.saturating_duration_since(Instant::now())),
        None => t,
    };
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(bound(cfg.connect_timeout)))
        .set_response_timeout(Some(bound(cfg.command_timeout)));
    let critical = |failure: ConnectFailure, extra: Option<String>| {
        let mut f = finding(
            "redis.connect",
            Severity::Critical,
            format!("cannot use Redis: {}", failure.reason()),
        )
        .subject(target.clone())
        .evidence(format!("address {target}"));
        if let Some(extra) = extra {
            f = f.evidence(extra);
        }
        vec![f.next(failure.next_step())]
    };

    let started = Instant::now();
    // Bounded twice: the client's own connect timeout, and ours around the whole handshake.
    let outer = bound(cfg.connect_timeout + cfg.command_timeout);
    let mut conn = match tokio::time::timeout(
        outer,
        client.get_multiplexed_async_connection_with_config(&conn_cfg),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(target = %target, "redis connect failed: {e}");
            let failure = classify(&e);
            let extra =
                matches!(failure, ConnectFailure::Other(_)).then(|| one_line(&e.to_string()));
            return critical(failure, extra);
        }
        Err(_) => {
            return critical(
                ConnectFailure::Timeout,
                Some(format!("no connection within {} ms", outer.as_millis())),
            );
        }
    };
    let connect_latency = started.elapsed();

    let ping_started = Instant::now();
    let ping_limit = bound(cfg.command_timeout);
    let pong = tokio::time::timeout(
        ping_limit,
        redis::cmd("PING").query_async::<String>(&mut conn),
    )
    .await;
    let ping = ping_started.elapsed();
    match pong {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let failure = classify(&e);
            return critical(
                failure,
                Some(format!("PING answered: {}", one_line(&e.to_string()))),
            );
        }
        Err(_) => {
            return critical(
                ConnectFailure::Timeout,
                Some(format!(
                    "PING got no answer within {} ms",
                    ping_limit.as_millis()
                )),
            );
        }
    }

    let mut out = Vec::new();
    let severity = if ping >= cfg.latency_warn {
        Severity::Warning
    } else {
        Severity::Ok
    };
    out.push(
        finding(
            "redis.connect",
            severity,
            if severity == Severity::Ok {
                format!("Redis answers: PING {}", ms(ping))
            } else {
                format!("Redis answers slowly: PING took {}", ms(ping))
            },
        )
        .subject(target.clone())
        .evidence(format!("connected to {target} in {}", ms(connect_latency)))
        .evidence(format!("PING answered in {}", ms(ping)))
        .next(if severity == Severity::Ok {
            "nothing to do"
        } else {
            "check the Redis pod's CPU (newapi-ops nodes) and slow commands (SLOWLOG GET 10); runbook run slow-response"
        }),
    );

    let text =
        match command::<String>(&mut conn, &redis::cmd("INFO"), bound(cfg.command_timeout)).await {
            Ok(text) => text,
            Err(e) => {
                out.push(
                    finding(
                        "redis.server",
                        Severity::Warning,
                        format!("could not read INFO: {e}"),
                    )
                    .subject(target.clone())
                    .evidence(format!("INFO on {target}"))
                    .next("runbook run db-connection"),
                );
                return out;
            }
        };
    let info = Info::parse(&text);
    let maxclients = match info.get_u64("maxclients") {
        Some(v) => Some(v),
        None => command::<Vec<String>>(
            &mut conn,
            redis::cmd("CONFIG").arg("GET").arg("maxclients"),
            bound(cfg.command_timeout),
        )
        .await
        .ok()
        .and_then(|kv| kv.get(1).and_then(|v| v.parse().ok())),
    };
    out.extend(findings_from_info(&info, maxclients, cfg, &target));
    out
}

/// The findings INFO supports (pure: the integration tests drive it through [`check`], the unit
/// tests directly).
pub fn findings_from_info(
    info: &Info,
    maxclients: Option<u64>,
    cfg: &RedisCheckConfig,
    target: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let subject = target.to_string();

    // Server.
    let version = info.get("redis_version").unwrap_or("?");
    let mode = info.get("redis_mode").unwrap_or("standalone");
    let role = info.get("role").unwrap_or("?");
    let mut f = finding(
        "redis.server",
        Severity::Info,
        format!("Redis {version} ({mode}, {role})"),
    )
    .subject(subject.clone());
    let keyspace = info.keyspace();
    if keyspace.is_empty() {
        f = f.evidence("no keys");
    }
    for (db, keys) in &keyspace {
        f = f.evidence(format!("{db}: {keys} keys"));
    }
    out.push(f.next("nothing to do"));

    // Memory.
    let used = info.get_u64("used_memory").unwrap_or(0);
    let max = info.get_u64("maxmemory").unwrap_or(0);
    let policy = info.get("maxmemory_policy").unwrap_or("?").to_string();
    let peak = info.get_u64("used_memory_peak");
    let rss = info.get_u64("used_memory_rss");
    let mut f = if max == 0 {
        let mut f = finding(
            "redis.memory",
            Severity::Info,
            format!(
                "Redis uses {} with no maxmemory (unlimited; policy {policy})",
                bytes(used)
            ),
        )
        .subject(subject.clone())
        .evidence(format!(
            "used_memory = {} ({used}), maxmemory = 0, maxmemory_policy = {policy}",
            bytes(used)
        ));
        let next = match cfg.memory_limit_bytes {
            Some(limit) => {
                let ratio = used as f64 / limit as f64;
                f = f.evidence(format!(
                    "container memory limit {} ({:.0} % used): without maxmemory Redis grows until the kernel kills it",
                    bytes(limit),
                    ratio * 100.0
                ));
                if ratio > cfg.memory_warn_ratio {
                    f.severity = Severity::Warning;
                    f.summary = format!(
                        "Redis uses {} of its {} container limit with no maxmemory: it will be OOMKilled",
                        bytes(used),
                        bytes(limit)
                    );
                }
                format!(
                    "CONFIG SET maxmemory {} and maxmemory-policy allkeys-lru (about 75 % of the container limit), and keep them in the Redis args",
                    limit / 4 * 3
                )
            }
            None => "set maxmemory below the Redis container's memory limit (seed: 4Gi → maxmemory 3gb) with maxmemory-policy allkeys-lru".to_string(),
        };
        f.next_step = Some(next);
        f
    } else {
        let severity = memory_severity(used, max, &policy, cfg.memory_warn_ratio);
        let pct = used as f64 * 100.0 / max as f64;
        let summary = match severity {
            Severity::Critical => format!(
                "Redis is full ({pct:.0} % of maxmemory) and its policy is noeviction: writes fail with OOM"
            ),
            Severity::Warning => format!(
                "Redis uses {pct:.0} % of maxmemory ({} of {})",
                bytes(used),
                bytes(max)
            ),
            _ => format!(
                "Redis uses {pct:.0} % of maxmemory ({} of {})",
                bytes(used),
                bytes(max)
            ),
        };
        let next = match severity {
            Severity::Ok => "nothing to do".to_string(),
            _ => "raise maxmemory (below the container limit) or use maxmemory-policy allkeys-lru; runbook run high-memory".to_string(),
        };
        finding("redis.memory", severity, summary)
            .subject(subject.clone())
            .evidence(format!(
                "used_memory = {} ({used}), maxmemory = {} ({max}), maxmemory_policy = {policy}",
                bytes(used),
                bytes(max)
            ))
            .next(next)
    };
    if let Some(p) = peak {
        f = f.evidence(format!("used_memory_peak = {}", bytes(p)));
    }
    if let Some(r) = rss {
        f = f.evidence(format!("used_memory_rss = {}", bytes(r)));
    }
    if max > 0
        && let Some(limit) = cfg.memory_limit_bytes
        && max > limit
    {
        f.severity = f.severity.max(Severity::Warning);
        f = f.evidence(format!(
            "maxmemory {} is above the container memory limit {}: the kernel kills Redis before it evicts",
            bytes(max),
            bytes(limit)
        ));
    }
    out.push(f);

    // Policy.
    if max > 0 && policy == "noeviction" {
        out.push(
            finding(
                "redis.eviction_policy",
                Severity::Warning,
                "maxmemory-policy is noeviction: when Redis is full every write fails (\"OOM command not allowed\")",
            )
            .subject(subject.clone())
            .evidence(format!("maxmemory = {}, maxmemory_policy = noeviction", bytes(max)))
            .evidence("New-API uses Redis as a cache (tokens, users, rate limits): evicting old keys is safe")
            .next("CONFIG SET maxmemory-policy allkeys-lru (and keep it in the Redis args)"),
        );
    } else {
        let note = if max == 0 {
            " (no effect while maxmemory is 0)"
        } else {
            ""
        };
        out.push(
            finding(
                "redis.eviction_policy",
                Severity::Ok,
                format!("maxmemory-policy is {policy}{note}"),
            )
            .subject(subject.clone())
            .evidence(format!("maxmemory_policy = {policy}"))
            .next("nothing to do"),
        );
    }

    let uptime = info.get_u64("uptime_in_seconds").unwrap_or(0);
    let per_hour = |n: u64| {
        if uptime == 0 {
            n as f64 * 3600.0
        } else {
            n as f64 * 3600.0 / uptime as f64
        }
    };

    // Evictions.
    let evicted = info.get_u64("evicted_keys").unwrap_or(0);
    if evicted > 0 {
        out.push(
            finding(
                "redis.evictions",
                Severity::Warning,
                format!("Redis evicted {evicted} keys since it started ({:.0}/h): the cache is too small for New-API's data", per_hour(evicted)),
            )
            .subject(subject.clone())
            .evidence(format!("evicted_keys = {evicted}, uptime {}", duration(Duration::from_secs(uptime))))
            .evidence(format!("used_memory = {}, maxmemory = {}, policy {policy}", bytes(used), bytes(max)))
            .next("raise maxmemory (and the container's memory limit with it); runbook run high-memory"),
        );
    } else {
        out.push(
            finding(
                "redis.evictions",
                Severity::Ok,
                "no key evicted since Redis started",
            )
            .subject(subject.clone())
            .evidence("evicted_keys = 0")
            .next("nothing to do"),
        );
    }

    // Hit rate.
    let hits = info.get_u64("keyspace_hits").unwrap_or(0);
    let misses = info.get_u64("keyspace_misses").unwrap_or(0);
    let lookups = hits + misses;
    let severity = hit_rate_severity(hits, misses, cfg.hit_rate_warn, cfg.hit_rate_min_lookups);
    let rate_text =
        hit_rate(hits, misses).map_or_else(|| "-".to_string(), |r| format!("{:.1} %", r * 100.0));
    let summary = match severity {
        Severity::Info => format!(
            "only {lookups} key lookups since start: too few to judge the hit rate ({rate_text})"
        ),
        Severity::Warning => format!(
            "cache hit rate {rate_text} is below {:.0} %: most lookups miss and go to MySQL",
            cfg.hit_rate_warn * 100.0
        ),
        _ => format!("cache hit rate {rate_text}"),
    };
    out.push(
        finding("redis.hit_rate", severity, summary)
            .subject(subject.clone())
            .evidence(format!("keyspace_hits = {hits}, keyspace_misses = {misses}"))
            .next(if severity == Severity::Warning {
                "check that every New-API pod has REDIS_CONN_STRING and MEMORY_CACHE_ENABLED, that SYNC_FREQUENCY is not tiny, and that keys are not evicted; runbook run slow-response"
            } else {
                "nothing to do"
            }),
    );

    // Rejected connections.
    let rejected = info.get_u64("rejected_connections").unwrap_or(0);
    if rejected > 0 {
        let mut f = finding(
            "redis.rejected_connections",
            Severity::Warning,
            format!(
                "Redis refused {rejected} connections since it started: maxclients was reached"
            ),
        )
        .subject(subject.clone())
        .evidence(format!("rejected_connections = {rejected}"));
        if let Some(m) = maxclients {
            f = f.evidence(format!("maxclients = {m}"));
        }
        out.push(f.next(format!(
            "raise maxclients, or lower REDIS_POOL_SIZE (New-API default {NEWAPI_DEFAULT_POOL_SIZE} per pod)"
        )));
    } else {
        out.push(
            finding(
                "redis.rejected_connections",
                Severity::Ok,
                "no connection refused since Redis started",
            )
            .subject(subject.clone())
            .evidence("rejected_connections = 0")
            .next("nothing to do"),
        );
    }

    // Clients.
    let connected = info.get_u64("connected_clients").unwrap_or(0);
    match maxclients {
        Some(m) => {
            let severity =
                clients_severity(connected, m, cfg.clients_warn_ratio, cfg.clients_crit_ratio);
            let pct = if m == 0 {
                0.0
            } else {
                connected as f64 * 100.0 / m as f64
            };
            out.push(
                finding("redis.clients", severity, format!("{connected} of {m} clients connected ({pct:.0} %)"))
                    .subject(subject.clone())
                    .evidence(format!("connected_clients = {connected}, maxclients = {m}"))
                    .evidence(format!(
                        "New-API needs about {} ({} pods × REDIS_POOL_SIZE {NEWAPI_DEFAULT_POOL_SIZE} by default)",
                        u64::from(cfg.new_api_pods) * NEWAPI_DEFAULT_POOL_SIZE,
                        cfg.new_api_pods
                    ))
                    .next(if severity == Severity::Ok {
                        "nothing to do"
                    } else {
                        "CLIENT LIST to see who holds them; raise maxclients or lower REDIS_POOL_SIZE"
                    }),
            );
        }
        None => out.push(
            finding(
                "redis.clients",
                Severity::Info,
                format!("{connected} clients connected (maxclients unknown)"),
            )
            .subject(subject.clone())
            .evidence(format!(
                "connected_clients = {connected}; INFO has no maxclients and CONFIG GET was refused"
            ))
            .next("nothing to do"),
        ),
    }

    // Uptime.
    let severity = uptime_severity(
        Duration::from_secs(uptime),
        cfg.restart_warn,
        cfg.restart_info,
    );
    let summary = match severity {
        Severity::Ok => format!(
            "Redis has been up for {}",
            duration(Duration::from_secs(uptime))
        ),
        _ => format!(
            "Redis restarted {} ago: its cache started empty",
            duration(Duration::from_secs(uptime))
        ),
    };
    out.push(
        finding("redis.uptime", severity, summary)
            .subject(subject)
            .evidence(format!("uptime_in_seconds = {uptime}"))
            .next(if severity == Severity::Ok {
                "nothing to do"
            } else {
                "newapi-ops pods: was the redis pod restarted or OOMKilled? (runbook run oomkilled if so)"
            }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nexecutable:/usr/bin/redis-server\r\nuptime_in_seconds:1800\r\n\r\n\
        # Clients\r\nconnected_clients:12\r\nmaxclients:100\r\n\r\n\
        # Memory\r\nused_memory:900\r\nused_memory_peak:950\r\nmaxmemory:1000\r\nmaxmemory_policy:noeviction\r\n\r\n\
        # Stats\r\nrejected_connections:0\r\nevicted_keys:0\r\nkeyspace_hits:100\r\nkeyspace_misses:900\r\n\r\n\
        # Replication\r\nrole:master\r\n\r\n\
        # Keyspace\r\ndb0:keys=42,expires=3,avg_ttl=1000\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn parses_sections_and_fields() {
        let info = Info::parse(SAMPLE);
        let names: Vec<&str> = info.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Server",
                "Clients",
                "Memory",
                "Stats",
                "Replication",
                "Keyspace"
            ]
        );
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(
            info.get("executable"),
            Some("/usr/bin/redis-server"),
            "values keep their colons"
        );
        assert_eq!(info.get_u64("maxmemory"), Some(1000));
        assert_eq!(info.section("memory").unwrap().fields.len(), 4);
        assert_eq!(info.get("nope"), None);
        let ks = info.keyspace();
        assert_eq!(ks.get("db0"), Some(&42));
        assert_eq!(ks.get("db1"), Some(&1));
    }

    #[test]
    fn parses_lf_only_and_headerless_text() {
        let info = Info::parse("a:1\nb:x:y\n\n# Stats\nc:3\ngarbage\n");
        assert_eq!(info.sections[0].name, "");
        assert_eq!(info.get("b"), Some("x:y"));
        assert_eq!(info.get_u64("c"), Some(3));
        assert_eq!(Info::parse(""), Info::default());
        assert_eq!(
            parse_subfields("keys=1,expires=0")
                .get("expires")
                .map(String::as_str),
            Some("0")
        );
    }

    #[test]
    fn thresholds() {
        assert_eq!(
            memory_severity(850, 1000, "allkeys-lru", 0.85),
            Severity::Ok
        );
        assert_eq!(
            memory_severity(851, 1000, "allkeys-lru", 0.85),
            Severity::Warning
        );
        assert_eq!(
            memory_severity(1000, 1000, "allkeys-lru", 0.85),
            Severity::Warning
        );
        assert_eq!(
            memory_severity(1000, 1000, "noeviction", 0.85),
            Severity::Critical
        );
        assert_eq!(memory_severity(5, 0, "noeviction", 0.85), Severity::Info);
        assert_eq!(hit_rate(0, 0), None);
        assert_eq!(hit_rate(3, 1), Some(0.75));
        assert_eq!(hit_rate_severity(10, 10, 0.8, 1000), Severity::Info);
        assert_eq!(hit_rate_severity(700, 300, 0.8, 1000), Severity::Warning);
        assert_eq!(hit_rate_severity(800, 200, 0.8, 1000), Severity::Ok);
        assert_eq!(clients_severity(80, 100, 0.8, 0.95), Severity::Ok);
        assert_eq!(clients_severity(81, 100, 0.8, 0.95), Severity::Warning);
        assert_eq!(clients_severity(95, 100, 0.8, 0.95), Severity::Critical);
        let (w, i) = (Duration::from_secs(600), Duration::from_secs(3600));
        assert_eq!(
            uptime_severity(Duration::from_secs(5), w, i),
            Severity::Warning
        );
        assert_eq!(
            uptime_severity(Duration::from_secs(1800), w, i),
            Severity::Info
        );
        assert_eq!(
            uptime_severity(Duration::from_secs(86400), w, i),
            Severity::Ok
        );
    }

    fn by_check<'a>(fs: &'a [Finding], check: &str) -> &'a Finding {
        fs.iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} in {fs:#?}"))
    }

    #[test]
    fn findings_of_a_sample() {
        let info = Info::parse(SAMPLE);
        let fs = findings_from_info(
            &info,
            info.get_u64("maxclients"),
            &RedisCheckConfig::default(),
            "127.0.0.1:6379",
        );
        assert_eq!(by_check(&fs, "redis.memory").severity, Severity::Warning);
        assert_eq!(
            by_check(&fs, "redis.eviction_policy").severity,
            Severity::Warning
        );
        assert_eq!(by_check(&fs, "redis.evictions").severity, Severity::Ok);
        let hit = by_check(&fs, "redis.hit_rate");
        assert_eq!(hit.severity, Severity::Warning);
        assert!(hit.summary.contains("10.0 %"), "{}", hit.summary);
        assert_eq!(by_check(&fs, "redis.clients").severity, Severity::Ok);
        assert_eq!(by_check(&fs, "redis.uptime").severity, Severity::Info);
        assert!(
            fs.iter()
                .all(|f| f.next_step.is_some() && !f.evidence.is_empty())
        );
    }

    #[test]
    fn unlimited_memory_against_the_container_limit() {
        let info = Info::parse(
            "used_memory:900\nmaxmemory:0\nmaxmemory_policy:noeviction\nuptime_in_seconds:99999\n",
        );
        let cfg = RedisCheckConfig {
            memory_limit_bytes: Some(1000),
            ..RedisCheckConfig::default()
        };
        let fs = findings_from_info(&info, None, &cfg, "r:6379");
        let mem = by_check(&fs, "redis.memory");
        assert_eq!(mem.severity, Severity::Warning);
        assert!(mem.summary.contains("OOMKilled"), "{}", mem.summary);
        assert_eq!(
            by_check(&fs, "redis.eviction_policy").severity,
            Severity::Ok
        );
        assert_eq!(by_check(&fs, "redis.clients").severity, Severity::Info);
        let fs = findings_from_info(&info, None, &RedisCheckConfig::default(), "r:6379");
        assert_eq!(by_check(&fs, "redis.memory").severity, Severity::Info);
        // maxmemory above the container limit.
        let info = Info::parse("used_memory:10\nmaxmemory:2000\nmaxmemory_policy:allkeys-lru\n");
        let fs = findings_from_info(&info, None, &cfg, "r:6379");
        assert_eq!(by_check(&fs, "redis.memory").severity, Severity::Warning);
    }
}
