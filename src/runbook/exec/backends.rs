//! Read-only actions against New-API's MySQL and Redis, reached as New-API reaches them
//! (SQL_DSN / REDIS_CONN_STRING of the master; a port-forward from outside the cluster). No
//! output carries a password: endpoints print as user@host:port/db.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use serde_json::{Value as Json, json};

use super::{Ctx, Done, err_line};
use crate::backends::{Backend, Reached, resolve_backend};
use crate::runbook::args::Resolved;
use crate::runbook::catalogue as c;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A MySQL connection and the port-forward it runs through.
pub struct Mysql {
    pub conn: Conn,
    pub via: String,
    pub database: String,
    _reached: Reached,
}

pub async fn mysql(ctx: &Ctx) -> Result<Mysql, String> {
    let reached = resolve_backend(Backend::Mysql, Some(&ctx.kube), &ctx.settings, None)
        .await
        .map_err(|e| {
            format!(
                "cannot reach MySQL: {}",
                err_line(&crate::error::Error::from(e))
            )
        })?;
    let via = reached.via.clone();
    let database = reached
        .endpoint
        .database
        .clone()
        .unwrap_or_else(|| "new-api".into());
    let conn = match tokio::time::timeout(TIMEOUT, Conn::new(reached.endpoint.mysql_opts())).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let why = crate::diagnose::mysql::classify(&e);
            return Err(format!(
                "cannot connect to MySQL at {via}: {}; next: {}",
                why.reason(),
                why.next_step(&database)
            ));
        }
        Err(_) => return Err(format!("MySQL at {via} did not answer within {TIMEOUT:?}")),
    };
    Ok(Mysql {
        conn,
        via,
        database,
        _reached: reached,
    })
}

async fn q(m: &mut Mysql, sql: &str) -> Result<Vec<Row>, String> {
    match tokio::time::timeout(TIMEOUT, m.conn.query::<Row, _>(sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(format!("MySQL ({}): {e}", m.via)),
        Err(_) => Err(format!(
            "MySQL ({}) did not answer `{sql}` within {TIMEOUT:?}",
            m.via
        )),
    }
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        mysql_async::Value::Int(v) => Some(v.to_string()),
        mysql_async::Value::UInt(v) => Some(v.to_string()),
        mysql_async::Value::Float(v) => Some(v.to_string()),
        mysql_async::Value::Double(v) => Some(v.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn int(row: &Row, i: usize) -> i64 {
    text(row, i)
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map_or(0, |f| f as i64)
}

/// `SHOW GLOBAL STATUS/VARIABLES` rows as a map (names lowercased).
async fn vars(
    m: &mut Mysql,
    sql: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    Ok(q(m, sql)
        .await?
        .iter()
        .filter_map(|r| Some((text(r, 0)?.to_lowercase(), text(r, 1).unwrap_or_default())))
        .collect())
}

pub async fn mysql_ping(ctx: &Ctx) -> Result<Done, String> {
    let mut m = mysql(ctx).await?;
    let t0 = Instant::now();
    q(&mut m, "SELECT 1").await?;
    let latency = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let version = q(&mut m, "SELECT VERSION()")
        .await?
        .first()
        .and_then(|r| text(r, 0))
        .unwrap_or_default();
    let out = json!({"via": m.via, "latency_ms": latency, "version": version});
    let summary = format!("MySQL {version} answers in {latency} ms ({})", m.via);
    Ok(Done::of("mysql.ping", &out, summary))
}

pub async fn mysql_status(ctx: &Ctx) -> Result<Done, String> {
    let mut m = mysql(ctx).await?;
    let st = vars(&mut m, "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected','Threads_running','Slow_queries','Uptime','Aborted_connects')").await?;
    let vs = vars(&mut m, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections','long_query_time','slow_query_log')").await?;
    let n = |map: &std::collections::BTreeMap<String, String>, k: &str| -> i64 {
        map.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |f| f as i64)
    };
    let connected = n(&st, "threads_connected");
    let max = n(&vs, "max_connections");
    let pct = crate::quantity::percent(connected, max).unwrap_or(0);
    let slow_log = vs
        .get("slow_query_log")
        .is_some_and(|v| v.eq_ignore_ascii_case("on") || v == "1");
    let long_query_time: f64 = vs
        .get("long_query_time")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let out = json!({
        "threads_connected": connected,
        "threads_running": n(&st, "threads_running"),
        "max_connections": max,
        "connections_percent": pct,
        "slow_queries": n(&st, "slow_queries"),
        "slow_query_log": slow_log,
        "long_query_time": long_query_time,
        "uptime_secs": n(&st, "uptime"),
        "aborted_connects": n(&st, "aborted_connects"),
    });
    let summary = format!(
        "{connected} / {max} connections ({pct}%), {} running, {} slow queries since start (slow log {}, long_query_time {long_query_time} s)",
        n(&st, "threads_running"),
        n(&st, "slow_queries"),
        if slow_log { "on" } else { "off" }
    );
    Ok(Done::of("mysql.status", &out, summary))
}

/// User statements running now, longest first (never this connection or system threads).
pub async fn processlist(
    m: &mut Mysql,
    min_seconds: i64,
    id: Option<i64>,
    limit: i64,
) -> Result<Vec<Json>, String> {
    let mut sql = format!(
        "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, LEFT(INFO, 200) FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Killed') \
         AND USER NOT IN ('system user', 'event_scheduler') AND TIME >= {}",
        min_seconds.max(0)
    );
    if let Some(id) = id {
        sql.push_str(&format!(" AND ID = {id}"));
    }
    sql.push_str(&format!(
        " ORDER BY TIME DESC LIMIT {}",
        limit.clamp(1, 1000)
    ));
    Ok(q(m, &sql)
        .await?
        .iter()
        .map(|r| {
            json!({
                "id": int(r, 0), "user": text(r, 1), "host": text(r, 2), "db": text(r, 3),
                "command": text(r, 4), "time": int(r, 5), "state": text(r, 6), "info": text(r, 7),
            })
        })
        .collect())
}

pub async fn mysql_processlist(
    ctx: &Ctx,
    a: &c::ProcesslistArgs<Resolved>,
) -> Result<Done, String> {
    let mut m = mysql(ctx).await?;
    let queries = processlist(&mut m, a.min_seconds, None, a.limit).await?;
    let longest = queries
        .first()
        .and_then(|x| x["time"].as_i64())
        .unwrap_or(0);
    let summary = if queries.is_empty() {
        format!("no statement running {} s or longer", a.min_seconds)
    } else {
        format!(
            "{} statement{} running ≥ {} s, the longest {} s: {}",
            queries.len(),
            if queries.len() == 1 { "" } else { "s" },
            a.min_seconds,
            longest,
            queries[0]["info"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect::<String>()
        )
    };
    let out = json!({"count": queries.len(), "longest_secs": longest, "queries": queries});
    Ok(Done::of("mysql.processlist", &out, summary))
}

/// The tables of New-API's database, largest first (only base tables when `base_only`), each
/// `{name, rows, data_bytes, index_bytes, total_bytes}` (rows and sizes as the server estimates).
pub async fn tables(m: &mut Mysql, base_only: bool) -> Result<Vec<Json>, String> {
    let db = m.database.replace('\'', "''");
    let only = if base_only {
        " AND TABLE_TYPE = 'BASE TABLE'"
    } else {
        ""
    };
    let rows = q(
        m,
        &format!(
            "SELECT TABLE_NAME, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{db}'{only} ORDER BY DATA_LENGTH + INDEX_LENGTH DESC, TABLE_NAME"
        ),
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (d, i) = (int(r, 2), int(r, 3));
            json!({"name": text(r, 0), "rows": int(r, 1), "data_bytes": d, "index_bytes": i, "total_bytes": d + i})
        })
        .collect())
}

pub async fn mysql_table_sizes(ctx: &Ctx, a: &c::TableSizesArgs<Resolved>) -> Result<Done, String> {
    let mut m = mysql(ctx).await?;
    let tables = tables(&mut m, false).await?;
    let total: i64 = tables
        .iter()
        .filter_map(|t| t["total_bytes"].as_i64())
        .sum();
    let logs = tables
        .iter()
        .find(|t| t["name"] == "logs")
        .and_then(|t| t["total_bytes"].as_i64());
    let keep = usize::try_from(a.limit.max(1)).unwrap_or(10);
    let summary = format!(
        "{} tables in {}, {} in all; logs table {}",
        tables.len(),
        m.database,
        crate::quantity::format_bytes(total),
        logs.map_or("absent".into(), crate::quantity::format_bytes)
    );
    let out = json!({"database": m.database, "total_bytes": total, "logs_bytes": logs,
        "tables": tables.into_iter().take(keep).collect::<Vec<_>>()});
    Ok(Done::of("mysql.table_sizes", &out, summary))
}

async fn redis_conn(
    ctx: &Ctx,
) -> Result<(redis::aio::MultiplexedConnection, String, Reached), String> {
    let reached = resolve_backend(Backend::Redis, Some(&ctx.kube), &ctx.settings, None)
        .await
        .map_err(|e| {
            format!(
                "cannot reach Redis: {}",
                err_line(&crate::error::Error::from(e))
            )
        })?;
    let via = reached.via.clone();
    let client = redis::Client::open(reached.endpoint.redis_info())
        .map_err(|e| format!("bad Redis address {via}: {e}"))?;
    let conn = match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let why = crate::diagnose::redis::classify(&e);
            return Err(format!(
                "cannot connect to Redis at {via}: {}; next: {}",
                why.reason(),
                why.next_step()
            ));
        }
        Err(_) => return Err(format!("Redis at {via} did not answer within {TIMEOUT:?}")),
    };
    Ok((conn, via, reached))
}

async fn redis_info_text(
    conn: &mut redis::aio::MultiplexedConnection,
    via: &str,
) -> Result<crate::diagnose::redis::Info, String> {
    let text: String =
        tokio::time::timeout(TIMEOUT, redis::cmd("INFO").arg("all").query_async(conn))
            .await
            .map_err(|_| format!("Redis ({via}) did not answer INFO"))?
            .map_err(|e| format!("Redis ({via}): INFO: {e}"))?;
    Ok(crate::diagnose::redis::Info::parse(&text))
}

pub async fn redis_ping(ctx: &Ctx) -> Result<Done, String> {
    let (mut conn, via, _r) = redis_conn(ctx).await?;
    let t0 = Instant::now();
    let pong: String = tokio::time::timeout(TIMEOUT, redis::cmd("PING").query_async(&mut conn))
        .await
        .map_err(|_| format!("Redis ({via}) did not answer PING"))?
        .map_err(|e| format!("Redis ({via}): PING: {e}"))?;
    let latency = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let info = redis_info_text(&mut conn, &via).await?;
    let version = info.get("redis_version").unwrap_or("").to_string();
    let out = json!({"via": via, "latency_ms": latency, "version": version});
    Ok(Done::of(
        "redis.ping",
        &out,
        format!("Redis {version} answers {pong} in {latency} ms ({via})"),
    ))
}

pub async fn redis_info(ctx: &Ctx) -> Result<Done, String> {
    let (mut conn, via, _r) = redis_conn(ctx).await?;
    let info = redis_info_text(&mut conn, &via).await?;
    let g = |k: &str| info.get_u64(k).unwrap_or(0);
    let used = g("used_memory");
    let max = g("maxmemory");
    let (hits, misses) = (g("keyspace_hits"), g("keyspace_misses"));
    let hit_rate = crate::diagnose::redis::hit_rate(hits, misses);
    let keys: u64 = info.keyspace().values().sum();
    let pct = (max > 0).then(|| used.saturating_mul(100) / max);
    let out = json!({
        "used_memory": used, "maxmemory": max,
        "maxmemory_policy": info.get("maxmemory_policy").unwrap_or(""),
        "memory_percent": pct, "hit_rate": hit_rate,
        "keyspace_hits": hits, "keyspace_misses": misses, "evicted_keys": g("evicted_keys"),
        "connected_clients": g("connected_clients"), "keys": keys, "uptime_secs": g("uptime_in_seconds"),
    });
    let summary = format!(
        "memory {} of {} ({}), hit rate {}, {} keys, {} evicted, {} clients",
        crate::units::bytes(used),
        if max == 0 {
            "no limit".to_string()
        } else {
            crate::units::bytes(max)
        },
        info.get("maxmemory_policy").unwrap_or("?"),
        hit_rate.map_or("n/a (no lookups yet)".into(), |h| format!(
            "{:.1}%",
            h * 100.0
        )),
        keys,
        g("evicted_keys"),
        g("connected_clients"),
    );
    Ok(Done::of("redis.info", &out, summary))
}
