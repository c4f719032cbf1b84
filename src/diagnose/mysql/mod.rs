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
//!
//! The connection and its bounded queries are [`connect`] (with the classification of connection
//! errors), the deadlock section of SHOW ENGINE INNODB STATUS is read by [`deadlock`], and the
//! database's tables, sizes and charsets are checked by [`schema`].

mod connect;
mod deadlock;
mod schema;

use std::time::{Duration, Instant};

use mysql_async::{Conn, Opts, OptsBuilder, Params, Row};

use super::finding::{Component, Finding, Severity};
use connect::{Session, StepError, cell, cell_u64};

pub use connect::{ConnectFailure, classify};
pub use deadlock::{Deadlock, DeadlockTransaction, parse_latest_deadlock};
pub use schema::charset_of;

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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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
                f = f.evidence(format!(
                    "no answer within {}",
                    crate::units::duration(connect_limit)
                ));
            }
            if let ConnectFailure::Other(detail) = &failure {
                f = f.evidence(one_line(detail));
            }
            return vec![f.next(failure.next_step(&db_shown))];
        }
    };
    let connect_latency = started.elapsed();
    let mut s = Session::new(opts, conn, cfg.query_timeout, deadline);
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
    deadlock::deadlocks(&mut s, status.as_ref().map(|(st, _)| st), &target, &mut out).await;
    schema::schema(&mut s, cfg, &mut out).await;
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
}
