//! The MySQL checks of `diagnose`: can New-API's database be reached, and is it healthy and sized
//! for New-API?
//!
//! [`check`] opens one connection (never through the local Unix socket: `prefer_socket` is turned
//! off so a port-forward to 127.0.0.1 cannot end up on a local server) and runs each check in turn.
//! Every query is bounded by [`MysqlCheckConfig::query_timeout`] and, when set, by the overall
//! [`MysqlCheckConfig::budget`]; a query that fails or times out becomes a finding of its own and
//! the rest still runs (after a timeout or a broken connection the next query reconnects). Nothing
//! here changes the server.
//!
//! Finding ids and thresholds:
//!
//! | id | what | severity |
//! |---|---|---|
//! | `mysql.connect` | connect + `SELECT 1` latency; or why it cannot connect (refused, timeout, 1045 wrong user or password, 1049 unknown database, 1040 too many connections, ...) | ok; warning when `SELECT 1` takes ≥ `latency_warn`; critical when it cannot connect |
//! | `mysql.version` | `VERSION()`, MySQL or MariaDB | info |
//! | `mysql.connections` | Threads_connected / max_connections | warning > 80 %, critical ≥ 95 % |
//! | `mysql.pool` | New-API pods × SQL_MAX_OPEN_CONNS (default 1000) against max_connections | warning when the pools can open more than max_connections |
//! | `mysql.wait_timeout` | wait_timeout against New-API's SQL_MAX_LIFETIME (default 60 s) | warning when MySQL closes idle connections first |
//! | `mysql.aborted_connects`, `mysql.slow_queries` | counters since the server started | info with the values; warning when ≥ `counter_warn_min` and on average ≥ `counter_warn_per_hour` per hour of uptime |
//! | `mysql.long_query` | statements running ≥ `long_query_secs` (information_schema.PROCESSLIST) | warning per statement |
//! | `mysql.deadlock` | `LATEST DETECTED DEADLOCK` of SHOW ENGINE INNODB STATUS, `Innodb_deadlocks` (MariaDB) | warning when the server has seen one |
//! | `mysql.database` | the database does not exist | critical |
//! | `mysql.tables` | size (data + index) and estimated rows of each table | info |
//! | `mysql.logs_table` | New-API's `logs` table above `logs_warn_bytes` | warning |
//! | `mysql.charset` | default charset of the database and of each table | warning when not utf8mb4 |
//!
//! Findings never carry the password: evidence names the user, host, port and database only.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row, Value};

use super::finding::{Component, Finding, Severity};

/// What [`check`] needs to know about the deployment, and its thresholds.
#[derive(Debug, Clone)]
pub struct MysqlCheckConfig {
    /// New-API's database (the one in SQL_DSN).
    pub database: String,
    /// New-API pods (master + slaves) that each open their own pool.
    pub new_api_pods: u32,
    /// New-API's SQL_MAX_OPEN_CONNS (default 1000).
    pub sql_max_open_conns: u32,
    /// New-API's SQL_MAX_LIFETIME in seconds (default 60).
    pub sql_max_lifetime_secs: u64,
    /// A statement running at least this long is reported.
    pub long_query_secs: u64,
    /// The `logs` table is reported above this size (data + index).
    pub logs_warn_bytes: u64,
    /// Bound of the connection attempt.
    pub connect_timeout: Duration,
    /// Bound of each query.
    pub query_timeout: Duration,
    /// Bound of the whole check, if any: checks that would start after it are reported as skipped.
    pub budget: Option<Duration>,
    /// `SELECT 1` slower than this is a warning.
    pub latency_warn: Duration,
    /// How findings name the server; default `user@host:port`. Through a port-forward the local
    /// port changes on every run: the caller names it by its workload so that findings can be
    /// found again (an incident's re-check compares subjects).
    pub subject: Option<String>,
    /// Counters (Aborted_connects, Slow_queries) below this are only information.
    pub counter_warn_min: u64,
    /// Counters growing at least this fast (per hour of uptime, on average) are a warning.
    pub counter_warn_per_hour: f64,
}

impl Default for MysqlCheckConfig {
    fn default() -> Self {
        MysqlCheckConfig {
            database: "new-api".into(),
            new_api_pods: 4,
            sql_max_open_conns: NEWAPI_DEFAULT_MAX_OPEN_CONNS,
            sql_max_lifetime_secs: NEWAPI_DEFAULT_MAX_LIFETIME_SECS,
            long_query_secs: 10,
            // A fifth of the seed's 10Gi MySQL volume.
            logs_warn_bytes: 2 * GIB,
            connect_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(3),
            budget: None,
            latency_warn: Duration::from_millis(250),
            subject: None,
            counter_warn_min: 10,
            counter_warn_per_hour: 60.0,
        }
    }
}

/// New-API's default SQL_MAX_OPEN_CONNS (model/main.go: `SetMaxOpenConns(GetEnvOrDefault("SQL_MAX_OPEN_CONNS", 1000))`).
pub const NEWAPI_DEFAULT_MAX_OPEN_CONNS: u32 = 1000;
/// New-API's default SQL_MAX_LIFETIME in seconds (model/main.go).
pub const NEWAPI_DEFAULT_MAX_LIFETIME_SECS: u64 = 60;
/// Connections left to administrators, backups and this tool when suggesting SQL_MAX_OPEN_CONNS.
pub const ADMIN_HEADROOM: u64 = 10;

const GIB: u64 = 1024 * 1024 * 1024;
const QUERY_PREVIEW_CHARS: usize = 120;
const MAX_LONG_QUERIES: usize = 10;

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    /// 1045
    AccessDenied,
    /// 1049
    UnknownDatabase,
    /// 1040
    TooManyConnections,
    /// 1130: the server does not accept this user from this host.
    HostNotAllowed,
    /// 1044: the user may not use the database.
    DatabaseDenied,
    /// The host name does not resolve.
    UnknownHost,
    Other(String),
}

impl ConnectFailure {
    /// A short reason for the summary.
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::Refused => {
                "connection refused (nothing listens there: MySQL down or wrong port)".into()
            }
            ConnectFailure::Timeout => {
                "no answer in time (network, firewall or an overloaded server)".into()
            }
            ConnectFailure::AccessDenied => "access denied (1045): wrong user or password".into(),
            ConnectFailure::UnknownDatabase => "unknown database (1049)".into(),
            ConnectFailure::TooManyConnections => {
                "too many connections (1040): max_connections is exhausted".into()
            }
            ConnectFailure::HostNotAllowed => {
                "host not allowed (1130): the user may not connect from this address".into()
            }
            ConnectFailure::DatabaseDenied => "access to the database denied (1044)".into(),
            ConnectFailure::UnknownHost => "the host name does not resolve".into(),
            ConnectFailure::Other(detail) => detail.clone(),
        }
    }

    /// What to do about it.
    pub fn next_step(&self, database: &str) -> String {
        match self {
            ConnectFailure::Refused | ConnectFailure::Timeout | ConnectFailure::UnknownHost => {
                "newapi-ops pods (is the mysql pod Running and Ready?), then runbook run db-connection".into()
            }
            ConnectFailure::AccessDenied => {
                "compare the password in SQL_DSN with MYSQL_ROOT_PASSWORD in the Secret (runbook run db-connection)".into()
            }
            ConnectFailure::UnknownDatabase => format!(
                "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci (or fix the database name in SQL_DSN)",
                database.replace('`', "``")
            ),
            ConnectFailure::TooManyConnections => {
                "raise max_connections or lower SQL_MAX_OPEN_CONNS (runbook run db-connection)".into()
            }
            ConnectFailure::HostNotAllowed | ConnectFailure::DatabaseDenied => {
                "GRANT the user access from the pods' network (runbook run db-connection)".into()
            }
            ConnectFailure::Other(_) => "runbook run db-connection".into(),
        }
    }
}

/// Classifies a connection error.
pub fn classify(err: &mysql_async::Error) -> ConnectFailure {
    match err {
        mysql_async::Error::Server(e) => match e.code {
            1045 => ConnectFailure::AccessDenied,
            1049 => ConnectFailure::UnknownDatabase,
            1040 => ConnectFailure::TooManyConnections,
            1130 => ConnectFailure::HostNotAllowed,
            1044 => ConnectFailure::DatabaseDenied,
            code => ConnectFailure::Other(format!("server error {code}: {}", e.message)),
        },
        mysql_async::Error::Io(mysql_async::IoError::Io(e)) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            std::io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ if is_lookup_failure(&e.to_string()) => ConnectFailure::UnknownHost,
            _ => ConnectFailure::Other(format!("I/O error: {e}")),
        },
        other => {
            let text = other.to_string();
            if is_lookup_failure(&text) {
                ConnectFailure::UnknownHost
            } else {
                ConnectFailure::Other(text)
            }
        }
    }
}

fn is_lookup_failure(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("lookup") || t.contains("name or service not known") || t.contains("name resolution")
}

/// Severity of Threads_connected against max_connections: warning above 80 %, critical from 95 %.
pub fn connections_severity(connected: u64, max_connections: u64) -> Severity {
    if max_connections == 0 {
        return Severity::Info;
    }
    // Integer arithmetic: connected/max > 0.80 ⇔ 100·connected > 80·max.
    if connected * 100 >= max_connections * 95 {
        Severity::Critical
    } else if connected * 100 > max_connections * 80 {
        Severity::Warning
    } else {
        Severity::Ok
    }
}

/// The New-API pool arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCheck {
    /// How many connections New-API may open: pods × SQL_MAX_OPEN_CONNS.
    pub demand: u64,
    pub max_connections: u64,
    /// Whether every pool can open its maximum at once.
    pub fits: bool,
    /// The largest SQL_MAX_OPEN_CONNS that fits, keeping [`ADMIN_HEADROOM`] connections free.
    pub suggested_max_open: u64,
    /// max_connections that lets every pool open its maximum, plus the headroom.
    pub suggested_max_connections: u64,
}

/// `pods` pools of `max_open` connections each against MySQL's `max_connections`.
pub fn pool_check(pods: u32, max_open: u32, max_connections: u64) -> PoolCheck {
    let demand = u64::from(pods) * u64::from(max_open);
    let suggested_max_open = if pods == 0 {
        0
    } else {
        max_connections.saturating_sub(ADMIN_HEADROOM).max(1) / u64::from(pods)
    };
    PoolCheck {
        demand,
        max_connections,
        fits: demand + ADMIN_HEADROOM <= max_connections || pods == 0,
        suggested_max_open: suggested_max_open.max(1),
        suggested_max_connections: demand + ADMIN_HEADROOM,
    }
}

/// A counter's average growth per hour since the server started.
pub fn per_hour(value: u64, uptime_secs: u64) -> f64 {
    if uptime_secs == 0 {
        return value as f64 * 3600.0;
    }
    value as f64 * 3600.0 / uptime_secs as f64
}

/// Info for a counter, warning when it is at least `min` and grew on average at least
/// `warn_per_hour` per hour of uptime.
pub fn counter_severity(value: u64, uptime_secs: u64, min: u64, warn_per_hour: f64) -> Severity {
    if value >= min && per_hour(value, uptime_secs) >= warn_per_hour {
        Severity::Warning
    } else {
        Severity::Info
    }
}

/// The charset a collation belongs to (`utf8mb4_unicode_ci` → `utf8mb4`).
pub fn charset_of(collation: &str) -> &str {
    collation.split('_').next().unwrap_or(collation)
}

/// The most recent deadlock InnoDB reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deadlock {
    /// When it happened, as the server printed it (server time).
    pub when: String,
    /// Per transaction: its number, thread line (thread id, host, user) and statement.
    pub transactions: Vec<DeadlockTransaction>,
    /// The transaction InnoDB rolled back, e.g. `(1)`.
    pub rolled_back: Option<String>,
    /// The tables whose locks were involved, e.g. `` `new-api`.`tokens` ``.
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadlockTransaction {
    pub number: String,
    pub thread: String,
    pub statement: String,
}

/// Extracts the `LATEST DETECTED DEADLOCK` section of SHOW ENGINE INNODB STATUS (MySQL 8 and
/// MariaDB print the same layout).
pub fn parse_latest_deadlock(status: &str) -> Option<Deadlock> {
    let start = status.find("LATEST DETECTED DEADLOCK")?;
    let section = &status[start..];
    let mut lines = section
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().chars().all(|c| c == '-'));
    let when_line = lines.next()?.trim();
    let when = when_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut deadlock = Deadlock {
        when,
        ..Deadlock::default()
    };
    let mut current: Option<DeadlockTransaction> = None;
    let mut in_statement = false;
    let all: Vec<&str> = lines.collect();
    for (i, raw) in all.iter().enumerate() {
        let line = raw.trim_end();
        // The section ends at the next "-----\nHEADER" block.
        if line.chars().all(|c| c == '-')
            && !line.is_empty()
            && all.get(i + 1).is_some_and(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '/')
            })
        {
            break;
        }
        if let Some(rest) = line.strip_prefix("*** (")
            && let Some(num) = rest.strip_suffix(") TRANSACTION:")
        {
            if let Some(t) = current.take() {
                deadlock.transactions.push(t);
            }
            current = Some(DeadlockTransaction {
                number: format!("({num})"),
                ..DeadlockTransaction::default()
            });
            in_statement = false;
            continue;
        }
        if let Some(rest) = line.strip_prefix("*** WE ROLL BACK TRANSACTION ") {
            deadlock.rolled_back = Some(rest.trim().to_string());
            in_statement = false;
            continue;
        }
        if line.starts_with("***") {
            in_statement = false;
        }
        if let Some(at) = line.find(" of table ") {
            let table = line[at + " of table ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            if !table.is_empty() && !deadlock.tables.contains(&table) {
                deadlock.tables.push(table);
            }
        }
        if let Some(t) = current.as_mut() {
            if (line.starts_with("MySQL thread id") || line.starts_with("MariaDB thread id"))
                && t.thread.is_empty()
            {
                t.thread = line.to_string();
                in_statement = true;
                continue;
            }
            if in_statement && !line.trim().is_empty() {
                if !t.statement.is_empty() {
                    t.statement.push(' ');
                }
                t.statement.push_str(line.trim());
            }
        }
    }
    if let Some(t) = current.take() {
        deadlock.transactions.push(t);
    }
    Some(deadlock)
}

/// Bytes for people: `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A cell as text (the text protocol sends everything as bytes).
fn cell(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::UInt(v) => Some(v.to_string()),
        Value::Float(v) => Some(v.to_string()),
        Value::Double(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn cell_u64(row: &Row, i: usize) -> Option<u64> {
    let text = cell(row, i)?;
    let t = text.trim();
    t.parse::<u64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|v| *v >= 0.0)
            .map(|v| v as u64)
    })
}

/// Why one query produced no answer.
#[derive(Debug)]
enum StepError {
    Timeout(Duration),
    Budget,
    Mysql(mysql_async::Error),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Timeout(d) => write!(f, "no answer within {}", humantime(*d)),
            StepError::Budget => write!(f, "the time budget of the MySQL check ran out"),
            StepError::Mysql(e) => write!(f, "{}", one_line(&e.to_string())),
        }
    }
}

fn humantime(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// One connection, reopened after a timeout or an I/O failure; every query is bounded.
struct Session {
    opts: Opts,
    conn: Option<Conn>,
    query_timeout: Duration,
    deadline: Option<Instant>,
}

impl Session {
    fn remaining(&self) -> Result<Duration, StepError> {
        match self.deadline {
            None => Ok(self.query_timeout),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(StepError::Budget)
                } else {
                    Ok(left.min(self.query_timeout))
                }
            }
        }
    }

    async fn rows(&mut self, sql: &str, params: Params) -> Result<Vec<Row>, StepError> {
        let limit = self.remaining()?;
        if self.conn.is_none() {
            let opened = tokio::time::timeout(limit, Conn::new(self.opts.clone())).await;
            match opened {
                Ok(Ok(conn)) => self.conn = Some(conn),
                Ok(Err(e)) => return Err(StepError::Mysql(e)),
                Err(_) => return Err(StepError::Timeout(limit)),
            }
        }
        let limit = self.remaining()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(StepError::Budget);
        };
        let result = match params {
            Params::Empty => tokio::time::timeout(limit, conn.query::<Row, _>(sql)).await,
            params => tokio::time::timeout(limit, conn.exec::<Row, _, _>(sql, params)).await,
        };
        match result {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                if !matches!(e, mysql_async::Error::Server(_)) {
                    self.conn = None;
                }
                Err(StepError::Mysql(e))
            }
            Err(_) => {
                // The connection is in the middle of a reply: drop it, reconnect next time.
                self.conn = None;
                Err(StepError::Timeout(limit))
            }
        }
    }

    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
        }
    }
}

fn finding(check: &str, severity: Severity, summary: impl Into<String>) -> Finding {
    Finding::new(Component::Mysql, check, severity, summary)
}

/// A query that did not answer, as a finding of the check it belonged to.
fn step_failed(check: &str, what: &str, err: &StepError, target: &str) -> Finding {
    let severity = match err {
        StepError::Timeout(_) => Severity::Warning,
        StepError::Budget | StepError::Mysql(_) => Severity::Info,
    };
    let next = match err {
        StepError::Mysql(mysql_async::Error::Server(e)) if matches!(e.code, 1142 | 1227 | 1044) => {
            "grant the user PROCESS and SELECT on information_schema, or run diagnose with the root credentials".to_string()
        }
        StepError::Budget => "give diagnose a longer timeout (--timeout)".to_string(),
        _ => "runbook run db-connection".to_string(),
    };
    finding(check, severity, format!("could not check {what}: {err}"))
        .subject(target.to_string())
        .evidence(format!("while reading {what} from {target}"))
        .next(next)
}

/// Runs every MySQL check against the server `opts` points at.
pub async fn check(opts: Opts, cfg: &MysqlCheckConfig) -> Vec<Finding> {
    let opts: Opts = OptsBuilder::from_opts(opts).prefer_socket(false).into();
    let target = cfg.subject.clone().unwrap_or_else(|| {
        format!(
            "{}@{}:{}",
            opts.user().unwrap_or("(no user)"),
            opts.ip_or_hostname(),
            opts.tcp_port()
        )
    });
    let began = Instant::now();
    let deadline = cfg.budget.map(|b| began + b);
    let connect_limit = match deadline {
        Some(d) => cfg
            .connect_timeout
            .min(d.saturating_duration_since(Instant::now())),
        None => cfg.connect_timeout,
    };
    let db_shown = opts.db_name().unwrap_or(&cfg.database).to_string();

    let started = Instant::now();
    let conn = match tokio::time::timeout(connect_limit, Conn::new(opts.clone())).await {
        Ok(Ok(conn)) => conn,
        outcome => {
            let failure = match outcome {
                Ok(Err(e)) => {
                    tracing::debug!(target = %target, "mysql connect failed: {e}");
                    classify(&e)
                }
                _ => ConnectFailure::Timeout,
            };
            let mut f = finding(
                "mysql.connect",
                Severity::Critical,
                format!("cannot connect to MySQL: {}", failure.reason()),
            )
            .subject(target.clone())
            .evidence(format!("user {target}, database {db_shown}"));
            if failure == ConnectFailure::Timeout {
                f = f.evidence(format!("no answer within {}", humantime(connect_limit)));
            }
            if let ConnectFailure::Other(detail) = &failure {
                f = f.evidence(one_line(detail));
            }
            return vec![f.next(failure.next_step(&db_shown))];
        }
    };
    let connect_latency = started.elapsed();
    let mut s = Session {
        opts,
        conn: Some(conn),
        query_timeout: cfg.query_timeout,
        deadline,
    };
    let mut out = Vec::new();

    // Latency of a trivial query.
    let t = Instant::now();
    match s.rows("SELECT 1", Params::Empty).await {
        Ok(_) => {
            let q = t.elapsed();
            let severity = if q >= cfg.latency_warn {
                Severity::Warning
            } else {
                Severity::Ok
            };
            let summary = if severity == Severity::Ok {
                format!(
                    "MySQL answers: connect {}, SELECT 1 {}",
                    ms(connect_latency),
                    ms(q)
                )
            } else {
                format!("MySQL answers slowly: SELECT 1 took {}", ms(q))
            };
            out.push(
                finding("mysql.connect", severity, summary)
                    .subject(target.clone())
                    .evidence(format!(
                        "connected as {target} (database {db_shown}) in {}",
                        ms(connect_latency)
                    ))
                    .evidence(format!("SELECT 1 answered in {}", ms(q)))
                    .next(if severity == Severity::Ok {
                        "nothing to do".to_string()
                    } else {
                        "runbook run slow-response (check the MySQL pod's CPU and slow queries)"
                            .to_string()
                    }),
            );
        }
        Err(e) => out.push(step_failed("mysql.connect", "SELECT 1", &e, &target)),
    }

    version(&mut s, &target, &mut out).await;
    let status = status_and_variables(&mut s, &target, &mut out).await;
    if let Some((st, vars)) = &status {
        connections(st, vars, cfg, &target, &mut out);
        counters(st, vars, cfg, &target, &mut out);
    }
    long_queries(&mut s, cfg, &target, &mut out).await;
    deadlocks(&mut s, status.as_ref().map(|(st, _)| st), &target, &mut out).await;
    schema(&mut s, cfg, &mut out).await;
    s.close().await;
    out
}

type Pairs = Vec<(String, String)>;

fn lookup<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn lookup_u64(pairs: &Pairs, name: &str) -> Option<u64> {
    lookup(pairs, name).and_then(|v| v.trim().parse().ok())
}

async fn version(s: &mut Session, target: &str, out: &mut Vec<Finding>) {
    match s
        .rows("SELECT VERSION(), @@version_comment", Params::Empty)
        .await
    {
        Ok(rows) => {
            let row = rows.first();
            let version = row.and_then(|r| cell(r, 0)).unwrap_or_default();
            let comment = row.and_then(|r| cell(r, 1)).unwrap_or_default();
            let flavour = if version.contains("MariaDB") || comment.contains("MariaDB") {
                "MariaDB"
            } else {
                "MySQL"
            };
            let number = version.split('-').next().unwrap_or(&version);
            out.push(
                finding(
                    "mysql.version",
                    Severity::Info,
                    format!("{flavour} {number}"),
                )
                .subject(target.to_string())
                .evidence(format!("VERSION() = {version}"))
                .evidence(format!("@@version_comment = {comment}"))
                .next("nothing to do"),
            );
        }
        Err(e) => out.push(step_failed(
            "mysql.version",
            "the server version",
            &e,
            target,
        )),
    }
}

async fn status_and_variables(
    s: &mut Session,
    target: &str,
    out: &mut Vec<Finding>,
) -> Option<(Pairs, Pairs)> {
    let pairs = |rows: Vec<Row>| -> Pairs {
        rows.iter()
            .filter_map(|r| Some((cell(r, 0)?, cell(r, 1).unwrap_or_default())))
            .collect()
    };
    let status = s
        .rows(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Threads_running', \
             'Max_used_connections', 'Aborted_connects', 'Aborted_clients', 'Slow_queries', 'Uptime', \
             'Innodb_deadlocks', 'Connection_errors_max_connections')",
            Params::Empty,
        )
        .await;
    let status = match status {
        Ok(rows) => pairs(rows),
        Err(e) => {
            out.push(step_failed(
                "mysql.connections",
                "the server status",
                &e,
                target,
            ));
            return None;
        }
    };
    let vars = s
        .rows(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', 'long_query_time', \
             'slow_query_log', 'wait_timeout')",
            Params::Empty,
        )
        .await;
    match vars {
        Ok(rows) => Some((status, pairs(rows))),
        Err(e) => {
            out.push(step_failed(
                "mysql.connections",
                "the server variables",
                &e,
                target,
            ));
            None
        }
    }
}

fn connections(
    st: &Pairs,
    vars: &Pairs,
    cfg: &MysqlCheckConfig,
    target: &str,
    out: &mut Vec<Finding>,
) {
    let (Some(connected), Some(max)) = (
        lookup_u64(st, "Threads_connected"),
        lookup_u64(vars, "max_connections"),
    ) else {
        out.push(
            finding(
                "mysql.connections",
                Severity::Info,
                "the server did not report Threads_connected or max_connections",
            )
            .subject(target.to_string())
            .evidence("SHOW GLOBAL STATUS / SHOW GLOBAL VARIABLES returned no value")
            .next("runbook run db-connection"),
        );
        return;
    };
    let pct = if max == 0 {
        0.0
    } else {
        connected as f64 * 100.0 / max as f64
    };
    let severity = connections_severity(connected, max);
    let summary = match severity {
        Severity::Ok => format!("{connected} of {max} connections in use ({pct:.0} %)"),
        _ => format!(
            "{connected} of {max} connections in use ({pct:.0} %): MySQL is close to refusing new ones"
        ),
    };
    let mut f = finding("mysql.connections", severity, summary)
        .subject(target.to_string())
        .evidence(format!(
            "Threads_connected = {connected}, max_connections = {max}"
        ));
    if let Some(peak) = lookup_u64(st, "Max_used_connections") {
        f = f.evidence(format!(
            "Max_used_connections = {peak} since the server started"
        ));
    }
    if let Some(refused) = lookup_u64(st, "Connection_errors_max_connections").filter(|v| *v > 0) {
        f = f.evidence(format!(
            "Connection_errors_max_connections = {refused}: connections were already refused"
        ));
    }
    out.push(f.next(if severity == Severity::Ok {
        "nothing to do".to_string()
    } else {
        "SHOW PROCESSLIST to see who holds them; raise max_connections or lower SQL_MAX_OPEN_CONNS (runbook run db-connection)".to_string()
    }));

    // New-API's pools.
    let pool = pool_check(cfg.new_api_pods, cfg.sql_max_open_conns, max);
    let arithmetic = format!(
        "{} New-API pods × SQL_MAX_OPEN_CONNS {} = {} possible connections; max_connections = {}",
        cfg.new_api_pods, cfg.sql_max_open_conns, pool.demand, max
    );
    if pool.fits {
        out.push(
            finding(
                "mysql.pool",
                Severity::Ok,
                format!(
                    "New-API's connection pools fit in max_connections ({} ≤ {max})",
                    pool.demand
                ),
            )
            .subject(target.to_string())
            .evidence(arithmetic)
            .next("nothing to do"),
        );
    } else {
        let mut f = finding(
            "mysql.pool",
            Severity::Warning,
            format!(
                "New-API may open {} connections but MySQL allows {max}: under load pods get \"Error 1040: Too many connections\"",
                pool.demand
            ),
        )
        .subject(target.to_string())
        .evidence(arithmetic);
        if cfg.sql_max_open_conns == NEWAPI_DEFAULT_MAX_OPEN_CONNS {
            f = f.evidence("SQL_MAX_OPEN_CONNS is New-API's default (1000 per pod)");
        }
        if max == 151 {
            f = f.evidence("max_connections = 151 is MySQL's default (the seed keeps it)");
        }
        out.push(f.next(format!(
            "raise max_connections to at least {} (SET PERSIST max_connections = {}, or --max-connections in the MySQL container's args), \
             or set SQL_MAX_OPEN_CONNS={} on the New-API Deployments ({} pods × {} + {ADMIN_HEADROOM} spare ≤ {max})",
            pool.suggested_max_connections,
            pool.suggested_max_connections,
            pool.suggested_max_open,
            cfg.new_api_pods,
            pool.suggested_max_open,
        )));
    }

    // Idle connections closed by MySQL before New-API recycles them.
    if let Some(wait) = lookup_u64(vars, "wait_timeout") {
        let lifetime = cfg.sql_max_lifetime_secs;
        if lifetime > 0 && wait < lifetime {
            out.push(
                finding(
                    "mysql.wait_timeout",
                    Severity::Warning,
                    format!("MySQL closes idle connections after {wait} s, before New-API recycles them ({lifetime} s)"),
                )
                .subject(target.to_string())
                .evidence(format!("wait_timeout = {wait} s, SQL_MAX_LIFETIME = {lifetime} s"))
                .evidence("New-API then logs \"closing bad idle connection\" / \"driver: bad connection\"")
                .next(format!("set SQL_MAX_LIFETIME below {wait} on the New-API Deployments, or raise wait_timeout")),
            );
        } else {
            out.push(
                finding(
                    "mysql.wait_timeout",
                    Severity::Ok,
                    format!(
                        "wait_timeout ({wait} s) is longer than SQL_MAX_LIFETIME ({lifetime} s)"
                    ),
                )
                .subject(target.to_string())
                .evidence(format!(
                    "wait_timeout = {wait} s, SQL_MAX_LIFETIME = {lifetime} s"
                ))
                .next("nothing to do"),
            );
        }
    }
}

fn counters(
    st: &Pairs,
    vars: &Pairs,
    cfg: &MysqlCheckConfig,
    target: &str,
    out: &mut Vec<Finding>,
) {
    let uptime = lookup_u64(st, "Uptime").unwrap_or(0);
    let uptime_text = format!("Uptime = {uptime} s");
    if let Some(aborted) = lookup_u64(st, "Aborted_connects") {
        let severity = counter_severity(
            aborted,
            uptime,
            cfg.counter_warn_min,
            cfg.counter_warn_per_hour,
        );
        let rate = per_hour(aborted, uptime);
        let summary = if severity == Severity::Warning {
            format!(
                "{aborted} failed connection attempts since start ({rate:.0}/h): clients with a wrong password or broken connections"
            )
        } else {
            format!("{aborted} failed connection attempts since start")
        };
        let mut f = finding("mysql.aborted_connects", severity, summary)
            .subject(target.to_string())
            .evidence(format!(
                "Aborted_connects = {aborted}, {uptime_text} ({rate:.1} per hour)"
            ));
        if let Some(clients) = lookup_u64(st, "Aborted_clients") {
            f = f.evidence(format!(
                "Aborted_clients = {clients} (connections dropped without closing)"
            ));
        }
        out.push(f.next(if severity == Severity::Warning {
            "check that every pod's SQL_DSN has the current password (newapi-ops logs master --grep 1045); runbook run db-connection"
        } else {
            "nothing to do"
        }));
    }
    if let Some(slow) = lookup_u64(st, "Slow_queries") {
        let severity = counter_severity(
            slow,
            uptime,
            cfg.counter_warn_min,
            cfg.counter_warn_per_hour,
        );
        let rate = per_hour(slow, uptime);
        let long_query_time = lookup(vars, "long_query_time").unwrap_or("?");
        let slow_log = lookup(vars, "slow_query_log").unwrap_or("?");
        let summary = if severity == Severity::Warning {
            format!("{slow} slow queries since start ({rate:.0}/h)")
        } else {
            format!("{slow} slow queries since start")
        };
        let mut f = finding("mysql.slow_queries", severity, summary)
            .subject(target.to_string())
            .evidence(format!(
                "Slow_queries = {slow}, {uptime_text} ({rate:.1} per hour)"
            ))
            .evidence(format!(
                "long_query_time = {long_query_time} s, slow_query_log = {slow_log}"
            ));
        if severity == Severity::Warning && !slow_log.eq_ignore_ascii_case("on") {
            f = f.evidence(
                "the slow query log is off: SET GLOBAL slow_query_log = ON to see which queries",
            );
        }
        out.push(f.next(if severity == Severity::Warning {
            "runbook run slow-response (read the slow query log, add indexes)"
        } else {
            "nothing to do"
        }));
    }
}

async fn long_queries(
    s: &mut Session,
    cfg: &MysqlCheckConfig,
    target: &str,
    out: &mut Vec<Finding>,
) {
    let sql = format!(
        "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, LEFT(INFO, {QUERY_PREVIEW_CHARS}) \
         FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL AND TIME >= {} \
         AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID', 'Slave_IO', 'Slave_SQL', 'Slave_worker') \
         ORDER BY TIME DESC LIMIT {}",
        cfg.long_query_secs,
        MAX_LONG_QUERIES + 1
    );
    let rows = match s.rows(&sql, Params::Empty).await {
        Ok(rows) => rows,
        Err(e) => {
            out.push(step_failed(
                "mysql.long_query",
                "running queries",
                &e,
                target,
            ));
            return;
        }
    };
    if rows.is_empty() {
        out.push(
            finding(
                "mysql.long_query",
                Severity::Ok,
                format!(
                    "no query has been running for {} s or more",
                    cfg.long_query_secs
                ),
            )
            .subject(target.to_string())
            .evidence("information_schema.PROCESSLIST")
            .next("nothing to do"),
        );
        return;
    }
    for row in rows.iter().take(MAX_LONG_QUERIES) {
        let id = cell(row, 0).unwrap_or_default();
        let user = cell(row, 1).unwrap_or_default();
        let host = cell(row, 2).unwrap_or_default();
        let db = cell(row, 3).unwrap_or_else(|| "-".into());
        let command = cell(row, 4).unwrap_or_default();
        let time = cell_u64(row, 5).unwrap_or(0);
        let state = cell(row, 6).unwrap_or_default();
        let query = one_line(&cell(row, 7).unwrap_or_default());
        out.push(
            finding(
                "mysql.long_query",
                Severity::Warning,
                format!("query {id} has been running for {time} s"),
            )
            .subject(format!("query {id}"))
            .evidence(format!("id {id}, user {user}@{host}, db {db}, {command} for {time} s, state {state:?}"))
            .evidence(format!("query: {}", clip(&query, QUERY_PREVIEW_CHARS)))
            .next(format!("KILL QUERY {id} if it is stuck (runbook step mysql.kill_query); runbook run slow-response")),
        );
    }
    if rows.len() > MAX_LONG_QUERIES {
        out.push(
            finding(
                "mysql.long_query",
                Severity::Warning,
                format!(
                    "more than {MAX_LONG_QUERIES} queries run for {} s or more",
                    cfg.long_query_secs
                ),
            )
            .subject(target.to_string())
            .evidence(format!("only the {MAX_LONG_QUERIES} longest are listed"))
            .next("SHOW FULL PROCESSLIST; runbook run slow-response"),
        );
    }
}

async fn deadlocks(s: &mut Session, status: Option<&Pairs>, target: &str, out: &mut Vec<Finding>) {
    let counter = status.and_then(|st| lookup_u64(st, "Innodb_deadlocks"));
    let text = match s.rows("SHOW ENGINE INNODB STATUS", Params::Empty).await {
        Ok(rows) => rows.first().and_then(|r| cell(r, 2)).unwrap_or_default(),
        Err(e) => {
            let mut f = step_failed("mysql.deadlock", "InnoDB's latest deadlock", &e, target);
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f);
            return;
        }
    };
    match parse_latest_deadlock(&text) {
        Some(d) => {
            let count = counter
                .map(|n| format!(" ({n} since the server started)"))
                .unwrap_or_default();
            let mut f = finding(
                "mysql.deadlock",
                Severity::Warning,
                format!("InnoDB detected a deadlock at {}{count}", d.when),
            )
            .subject(if d.tables.is_empty() {
                target.to_string()
            } else {
                d.tables.join(", ")
            })
            .evidence(format!(
                "LATEST DETECTED DEADLOCK at {} (server time)",
                d.when
            ));
            for t in &d.transactions {
                let rolled = if d.rolled_back.as_deref() == Some(t.number.as_str()) {
                    " — rolled back"
                } else {
                    ""
                };
                f = f.evidence(format!(
                    "{} {}: {}{rolled}",
                    t.number,
                    clip(&t.thread, 100),
                    clip(&one_line(&t.statement), QUERY_PREVIEW_CHARS)
                ));
            }
            if !d.tables.is_empty() {
                f = f.evidence(format!("tables: {}", d.tables.join(", ")));
            }
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f.next(
                "New-API logs these as \"Error 1213\": newapi-ops logs master --grep 1213; frequent ones need shorter transactions or indexes (runbook run slow-response)",
            ));
        }
        None if counter.is_some_and(|n| n > 0) => {
            let n = counter.unwrap_or(0);
            out.push(
                finding("mysql.deadlock", Severity::Warning, format!("InnoDB counted {n} deadlocks since the server started"))
                    .subject(target.to_string())
                    .evidence(format!("Innodb_deadlocks = {n}; SHOW ENGINE INNODB STATUS has no LATEST DETECTED DEADLOCK section"))
                    .next("newapi-ops logs master --grep 1213; runbook run slow-response"),
            );
        }
        None => {
            let mut f = finding(
                "mysql.deadlock",
                Severity::Ok,
                "no InnoDB deadlock since the server started",
            )
            .subject(target.to_string())
            .evidence("SHOW ENGINE INNODB STATUS has no LATEST DETECTED DEADLOCK section");
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f.next("nothing to do"));
        }
    }
}

struct Table {
    name: String,
    engine: String,
    rows: u64,
    data: u64,
    index: u64,
    collation: String,
}

async fn schema(s: &mut Session, cfg: &MysqlCheckConfig, out: &mut Vec<Finding>) {
    let db = cfg.database.as_str();
    let subject = format!("database {db}");
    // MySQL 8 caches table statistics for a day by default; ask for fresh ones (MariaDB has no
    // such variable and refuses the statement, which is fine).
    let _ = s
        .rows(
            "SET SESSION information_schema_stats_expiry = 0",
            Params::Empty,
        )
        .await;
    let schemata = s
        .rows(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            Params::Positional(vec![Value::from(db)]),
        )
        .await;
    let (charset, collation) = match schemata {
        Ok(rows) => match rows.first() {
            Some(r) => (
                cell(r, 0).unwrap_or_default(),
                cell(r, 1).unwrap_or_default(),
            ),
            None => {
                out.push(
                    finding(
                        "mysql.database",
                        Severity::Critical,
                        format!("database {db} does not exist"),
                    )
                    .subject(subject)
                    .evidence(format!("information_schema.SCHEMATA has no {db}"))
                    .next(ConnectFailure::UnknownDatabase.next_step(db)),
                );
                return;
            }
        },
        Err(e) => {
            out.push(step_failed(
                "mysql.charset",
                "the database's charset",
                &e,
                &subject,
            ));
            return;
        }
    };
    let tables = s
        .rows(
            "SELECT TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, TABLE_COLLATION \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
            Params::Positional(vec![Value::from(db)]),
        )
        .await;
    let mut tables: Vec<Table> = match tables {
        Ok(rows) => rows
            .iter()
            .map(|r| Table {
                name: cell(r, 0).unwrap_or_default(),
                engine: cell(r, 1).unwrap_or_default(),
                rows: cell_u64(r, 2).unwrap_or(0),
                data: cell_u64(r, 3).unwrap_or(0),
                index: cell_u64(r, 4).unwrap_or(0),
                collation: cell(r, 5).unwrap_or_default(),
            })
            .collect(),
        Err(e) => {
            out.push(step_failed("mysql.tables", "the tables", &e, &subject));
            Vec::new()
        }
    };
    tables.sort_by(|a, b| {
        (b.data + b.index)
            .cmp(&(a.data + a.index))
            .then(a.name.cmp(&b.name))
    });

    // Sizes.
    if !tables.is_empty() {
        let total: u64 = tables.iter().map(|t| t.data + t.index).sum();
        let mut f = finding(
            "mysql.tables",
            Severity::Info,
            format!("{} tables, {} in total", tables.len(), format_bytes(total)),
        )
        .subject(subject.clone());
        for t in &tables {
            f = f.evidence(format!(
                "{}: {} (data {} + index {}), ~{} rows, {}",
                t.name,
                format_bytes(t.data + t.index),
                format_bytes(t.data),
                format_bytes(t.index),
                t.rows,
                t.engine
            ));
        }
        out.push(f.next("nothing to do (row counts are InnoDB's estimates)"));
    }
    if let Some(logs) = tables.iter().find(|t| t.name == "logs") {
        let size = logs.data + logs.index;
        if size > cfg.logs_warn_bytes {
            out.push(
                finding(
                    "mysql.logs_table",
                    Severity::Warning,
                    format!(
                        "New-API's logs table holds {} (~{} rows), above {}: it grows without bound",
                        format_bytes(size),
                        logs.rows,
                        format_bytes(cfg.logs_warn_bytes)
                    ),
                )
                .subject(format!("{db}.logs"))
                .evidence(format!("logs: data {} + index {}, ~{} rows", format_bytes(logs.data), format_bytes(logs.index), logs.rows))
                .evidence("New-API writes a row per request and never deletes them itself")
                .next(
                    "runbook run backup, then prune old logs: in New-API's admin settings (log settings → clear history logs), \
                     i.e. DELETE /api/log/?target_timestamp=<unix time> as an admin; or in SQL DELETE FROM logs WHERE created_at < <unix time> LIMIT 10000 \
                     (repeat), then OPTIMIZE TABLE logs to return the space",
                ),
            );
        } else {
            out.push(
                finding(
                    "mysql.logs_table",
                    Severity::Ok,
                    format!("New-API's logs table holds {}", format_bytes(size)),
                )
                .subject(format!("{db}.logs"))
                .evidence(format!(
                    "~{} rows; the warning threshold is {}",
                    logs.rows,
                    format_bytes(cfg.logs_warn_bytes)
                ))
                .next("nothing to do"),
            );
        }
    }

    // Charsets.
    let schema_cs = charset.to_ascii_lowercase();
    let bad_tables: Vec<&Table> = tables
        .iter()
        .filter(|t| {
            !t.collation.is_empty() && charset_of(&t.collation.to_ascii_lowercase()) != "utf8mb4"
        })
        .collect();
    let alter_db = format!(
        "ALTER DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        quote_ident(db)
    );
    if schema_cs != "utf8mb4" {
        out.push(
            finding(
                "mysql.charset",
                Severity::Warning,
                format!("database {db} defaults to {charset}, not utf8mb4: new tables cannot store emoji and some Chinese text"),
            )
            .subject(subject.clone())
            .evidence(format!("DEFAULT_CHARACTER_SET_NAME = {charset}, DEFAULT_COLLATION_NAME = {collation}"))
            .next(format!("runbook run backup, then {alter_db}")),
        );
    }
    if !bad_tables.is_empty() {
        let mut f = finding(
            "mysql.charset",
            Severity::Warning,
            format!("{} table(s) of {db} are not utf8mb4", bad_tables.len()),
        )
        .subject(subject.clone());
        for t in &bad_tables {
            f = f.evidence(format!(
                "{}: {} ({})",
                t.name,
                charset_of(&t.collation),
                t.collation
            ));
        }
        let example = bad_tables
            .first()
            .map(|t| quote_ident(&t.name))
            .unwrap_or_default();
        out.push(f.next(format!(
            "runbook run backup, then ALTER TABLE {example} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci (for each table listed)"
        )));
    }
    if schema_cs == "utf8mb4" && bad_tables.is_empty() {
        out.push(
            finding(
                "mysql.charset",
                Severity::Ok,
                format!("database {db} and its tables use utf8mb4"),
            )
            .subject(subject)
            .evidence(format!(
                "DEFAULT_CHARACTER_SET_NAME = {charset}, DEFAULT_COLLATION_NAME = {collation}"
            ))
            .next("nothing to do"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_thresholds() {
        assert_eq!(connections_severity(80, 100), Severity::Ok);
        assert_eq!(connections_severity(81, 100), Severity::Warning);
        assert_eq!(connections_severity(94, 100), Severity::Warning);
        assert_eq!(connections_severity(95, 100), Severity::Critical);
        assert_eq!(connections_severity(152, 151), Severity::Critical);
        assert_eq!(connections_severity(9, 10), Severity::Warning);
        assert_eq!(connections_severity(120, 151), Severity::Ok);
        assert_eq!(connections_severity(122, 151), Severity::Warning);
        assert_eq!(connections_severity(1, 0), Severity::Info);
    }

    #[test]
    fn pool_arithmetic_of_the_seed() {
        // 1 master + 3 slaves, New-API's default pool, MySQL's default max_connections.
        let p = pool_check(4, 1000, 151);
        assert_eq!(p.demand, 4000);
        assert!(!p.fits);
        assert_eq!(p.suggested_max_open, 35); // (151 - 10) / 4
        assert_eq!(p.suggested_max_connections, 4010);
        assert!(4 * p.suggested_max_open + ADMIN_HEADROOM <= 151);
    }

    #[test]
    fn pool_that_fits() {
        let p = pool_check(4, 30, 151);
        assert_eq!(p.demand, 120);
        assert!(p.fits);
        let tight = pool_check(4, 36, 151);
        assert!(!tight.fits, "144 + 10 spare > 151");
        assert!(pool_check(0, 1000, 151).fits);
        assert_eq!(pool_check(20, 1000, 5).suggested_max_open, 1);
    }

    #[test]
    fn counters_warn_when_many_and_fast() {
        // 5 in an hour: too few to matter.
        assert_eq!(counter_severity(5, 10, 10, 60.0), Severity::Info);
        // 20 in 10 seconds: fast.
        assert_eq!(counter_severity(20, 10, 10, 60.0), Severity::Warning);
        // 100 over 30 days: slow.
        assert_eq!(counter_severity(100, 30 * 86400, 10, 60.0), Severity::Info);
        // 2000 in a day: 83/h.
        assert_eq!(counter_severity(2000, 86400, 10, 60.0), Severity::Warning);
        assert!((per_hour(60, 3600) - 60.0).abs() < 1e-9);
        assert_eq!(counter_severity(10, 0, 10, 60.0), Severity::Warning);
    }

    #[test]
    fn charsets_of_collations() {
        assert_eq!(charset_of("utf8mb4_unicode_ci"), "utf8mb4");
        assert_eq!(charset_of("utf8mb4_0900_ai_ci"), "utf8mb4");
        assert_eq!(charset_of("latin1_swedish_ci"), "latin1");
        assert_eq!(charset_of("utf8mb3_general_ci"), "utf8mb3");
        assert_eq!(charset_of("binary"), "binary");
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(16384), "16.0 KiB");
        assert_eq!(format_bytes(3 * GIB / 2), "1.5 GiB");
    }

    #[test]
    fn classifies_connection_errors() {
        let server = |code: u16| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        assert_eq!(classify(&server(1045)), ConnectFailure::AccessDenied);
        assert_eq!(classify(&server(1049)), ConnectFailure::UnknownDatabase);
        assert_eq!(classify(&server(1040)), ConnectFailure::TooManyConnections);
        assert_eq!(classify(&server(1130)), ConnectFailure::HostNotAllowed);
        assert!(matches!(classify(&server(1234)), ConnectFailure::Other(_)));
        let io = |kind: std::io::ErrorKind| {
            mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(kind, "x")))
        };
        assert_eq!(
            classify(&io(std::io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            classify(&io(std::io::ErrorKind::TimedOut)),
            ConnectFailure::Timeout
        );
        let dns = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        )));
        assert_eq!(classify(&dns), ConnectFailure::UnknownHost);
        assert!(
            ConnectFailure::AccessDenied
                .reason()
                .contains("wrong user or password")
        );
        assert!(
            ConnectFailure::UnknownDatabase
                .next_step("new-api")
                .contains("`new-api`")
        );
    }

    const MARIADB_STATUS: &str = "
=====================================
2026-11-25 03:53:36 0x7f03b00dd6c0 INNODB MONITOR OUTPUT
=====================================
------------------------
LATEST DETECTED DEADLOCK
------------------------
2026-11-25 03:53:35 0x7f03b00dd6c0
*** (1) TRANSACTION:
TRANSACTION 24, ACTIVE 2 sec starting index read
mysql tables in use 1, locked 1
LOCK WAIT 3 lock struct(s), heap size 1128, 2 row lock(s), undo log entries 1
MariaDB thread id 10, OS thread handle 139653815326400, query id 29 127.0.0.1 root Updating
update a set v=2 where id=1
*** WAITING FOR THIS LOCK TO BE GRANTED:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`a` trx id 24 lock_mode X locks rec but not gap waiting
Record lock, heap no 2 PHYSICAL RECORD: n_fields 4; compact format; info bits 0
 0: len 4; hex 80000001; asc     ;;

*** CONFLICTING WITH:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`a` trx id 23 lock_mode X locks rec but not gap

*** (2) TRANSACTION:
TRANSACTION 23, ACTIVE 2 sec starting index read
mysql tables in use 1, locked 1
MariaDB thread id 9, OS thread handle 139653815633600, query id 28 127.0.0.1 root Updating
update a
  set v=1 where id=2
*** WAITING FOR THIS LOCK TO BE GRANTED:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`b` trx id 23 lock_mode X locks rec but not gap waiting

*** WE ROLL BACK TRANSACTION (1)
------------
TRANSACTIONS
------------
Trx id counter 26
";

    #[test]
    fn parses_the_latest_deadlock() {
        let d = parse_latest_deadlock(MARIADB_STATUS).unwrap();
        assert_eq!(d.when, "2026-11-25 03:53:35");
        assert_eq!(d.transactions.len(), 2);
        assert_eq!(d.transactions[0].number, "(1)");
        assert!(d.transactions[0].thread.starts_with("MariaDB thread id 10"));
        assert_eq!(d.transactions[0].statement, "update a set v=2 where id=1");
        assert_eq!(d.transactions[1].statement, "update a set v=1 where id=2");
        assert_eq!(d.rolled_back.as_deref(), Some("(1)"));
        assert_eq!(
            d.tables,
            vec!["`t1`.`a`".to_string(), "`t1`.`b`".to_string()]
        );
    }

    #[test]
    fn parses_a_mysql8_deadlock_and_none_without_one() {
        let mysql8 = "------------------------\nLATEST DETECTED DEADLOCK\n------------------------\n\
            2025-11-13 10:00:00 140000000000000\n*** (1) TRANSACTION:\nTRANSACTION 1, ACTIVE 1 sec starting index read\n\
            MySQL thread id 8, OS thread handle 1, query id 10 localhost root updating\nUPDATE tokens SET remain_quota = 1 WHERE id = 2\n\
            *** (1) HOLDS THE LOCK(S):\nRECORD LOCKS space id 2 page no 4 n bits 72 index PRIMARY of table `new-api`.`tokens` trx id 1 lock_mode X\n\
            *** (2) TRANSACTION:\nTRANSACTION 2, ACTIVE 1 sec starting index read\n\
            MySQL thread id 9, OS thread handle 2, query id 11 localhost root updating\nUPDATE tokens SET remain_quota = 1 WHERE id = 1\n\
            *** WE ROLL BACK TRANSACTION (2)\n------------\nTRANSACTIONS\n------------\n";
        let d = parse_latest_deadlock(mysql8).unwrap();
        assert_eq!(d.when, "2025-11-13 10:00:00");
        assert_eq!(d.transactions.len(), 2);
        assert_eq!(
            d.transactions[1].statement,
            "UPDATE tokens SET remain_quota = 1 WHERE id = 1"
        );
        assert_eq!(d.rolled_back.as_deref(), Some("(2)"));
        assert_eq!(d.tables, vec!["`new-api`.`tokens`".to_string()]);
        assert_eq!(
            parse_latest_deadlock("=====\nTRANSACTIONS\n------------\n"),
            None
        );
    }
}
