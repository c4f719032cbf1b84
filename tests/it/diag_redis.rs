//! `diagnose`'s Redis checks against real Redis servers (one per test, see `diag_support`): each
//! test causes a condition for real and asserts the finding it produces.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use newapi_ops::diagnose::finding::Severity;
use newapi_ops::diagnose::redis::{RedisCheckConfig, check};

use crate::diag_support::{Redis, assert_well_formed, free_port, one};

fn cfg() -> RedisCheckConfig {
    RedisCheckConfig::default()
}

#[tokio::test]
async fn refused_connection_is_critical() {
    let port = free_port();
    let client =
        redis::Client::open(format!("redis://:refused-pw-2718@127.0.0.1:{port}/")).unwrap();
    let findings = check(client, &cfg()).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.check, "redis.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("connection refused"), "{}", f.summary);
    assert_eq!(
        f.subject.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_well_formed(&findings, &["refused-pw-2718"]);
}

#[tokio::test]
async fn auth_required_wrong_password_and_right_password() {
    let server = Redis::start(&["--requirepass", "redis-pw-1618"]).await;

    let findings = check(server.client(None), &cfg()).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, "redis.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("NOAUTH"), "{}", f.summary);
    assert!(
        f.next_step
            .as_deref()
            .unwrap()
            .contains("REDIS_CONN_STRING")
    );
    assert_well_formed(&findings, &["redis-pw-1618"]);

    let findings = check(server.client(Some("not-it-5772")), &cfg()).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, "redis.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("WRONGPASS"), "{}", f.summary);
    assert_well_formed(&findings, &["redis-pw-1618", "not-it-5772"]);

    let findings = check(server.client(Some("redis-pw-1618")), &cfg()).await;
    assert_eq!(one(&findings, "redis.connect").severity, Severity::Ok);
    assert!(
        one(&findings, "redis.server")
            .summary
            .starts_with("Redis 7.")
    );
    assert_well_formed(&findings, &["redis-pw-1618"]);
}

/// Writes 10 KB values until Redis refuses one (or `max` keys), returning how many were stored.
async fn fill(conn: &mut redis::aio::MultiplexedConnection, max: usize) -> (usize, Option<String>) {
    let value = "v".repeat(10_000);
    for i in 0..max {
        let r: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query_async(conn)
            .await;
        if let Err(e) = r {
            return (i, Some(e.to_string()));
        }
    }
    (max, None)
}

#[tokio::test]
async fn full_with_noeviction_refuses_writes() {
    let server = Redis::start(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]).await;
    let mut conn = server.conn(None).await;
    let (stored, err) = fill(&mut conn, 2000).await;
    let err = err.expect("Redis refuses writes once full");
    assert!(err.contains("OOM"), "{err}");
    assert!(stored > 10);

    let findings = check(server.client(None), &cfg()).await;
    assert_well_formed(&findings, &[]);
    let mem = one(&findings, "redis.memory");
    assert!(mem.severity >= Severity::Warning, "{mem:#?}");
    assert!(mem.evidence[0].contains("maxmemory = 2.0 MiB"), "{mem:#?}");
    let policy = one(&findings, "redis.eviction_policy");
    assert_eq!(policy.severity, Severity::Warning);
    assert!(policy.next_step.as_deref().unwrap().contains("allkeys-lru"));
    assert_eq!(one(&findings, "redis.evictions").severity, Severity::Ok);
}

#[tokio::test]
async fn evictions_under_allkeys_lru() {
    let server = Redis::start(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"]).await;
    let mut conn = server.conn(None).await;
    let (stored, err) = fill(&mut conn, 500).await;
    assert_eq!(
        (stored, err),
        (500, None),
        "allkeys-lru never refuses a write"
    );

    let findings = check(server.client(None), &cfg()).await;
    assert_well_formed(&findings, &[]);
    let ev = one(&findings, "redis.evictions");
    assert_eq!(ev.severity, Severity::Warning, "{ev:#?}");
    let n: u64 = ev.evidence[0]
        .strip_prefix("evicted_keys = ")
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0, "{ev:#?}");
    assert_eq!(
        one(&findings, "redis.eviction_policy").severity,
        Severity::Ok
    );
}

#[tokio::test]
async fn low_hit_rate_and_recent_restart() {
    let server = Redis::start(&[]).await;
    let mut conn = server.conn(None).await;
    let _: () = redis::cmd("SET")
        .arg("token:1")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for _ in 0..10 {
        pipe.cmd("GET").arg("token:1");
    }
    for i in 0..1200 {
        pipe.cmd("GET").arg(format!("missing:{i}"));
    }
    let _: Vec<Option<String>> = pipe.query_async(&mut conn).await.unwrap();

    let findings = check(server.client(None), &cfg()).await;
    assert_well_formed(&findings, &[]);
    let hit = one(&findings, "redis.hit_rate");
    assert_eq!(hit.severity, Severity::Warning, "{hit:#?}");
    assert!(hit.summary.contains("0.8 %"), "{}", hit.summary);
    assert_eq!(
        hit.evidence,
        vec!["keyspace_hits = 10, keyspace_misses = 1200".to_string()]
    );
    // The server just started.
    let up = one(&findings, "redis.uptime");
    assert_eq!(up.severity, Severity::Warning);
    assert!(up.summary.contains("restarted"), "{}", up.summary);
    // No maxmemory: information, with the policy.
    let mem = one(&findings, "redis.memory");
    assert_eq!(mem.severity, Severity::Info);
    assert!(mem.summary.contains("no maxmemory"), "{}", mem.summary);
    assert!(mem.summary.contains("noeviction"), "{}", mem.summary);
    assert_eq!(
        one(&findings, "redis.server").evidence,
        vec!["db0: 1 keys".to_string()]
    );

    // Too few lookups to judge on a fresh server.
    let fresh = Redis::start(&[]).await;
    let findings = check(fresh.client(None), &cfg()).await;
    assert_eq!(one(&findings, "redis.hit_rate").severity, Severity::Info);
}

/// A raw client that has been accepted (PONG) or refused (the error Redis sends).
fn raw_client(port: u16) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 128];
    let n = s.read(&mut buf).unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

#[tokio::test]
async fn clients_near_maxclients_and_rejected_connections() {
    let server = Redis::start(&["--maxclients", "6"]).await;
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let (s, answer) = raw_client(server.port);
            assert_eq!(answer, "+PONG");
            s
        })
        .collect();
    // 4 held + the check's own = 5 of 6.
    let findings = check(server.client(None), &cfg()).await;
    assert_well_formed(&findings, &[]);
    let clients = one(&findings, "redis.clients");
    assert_eq!(clients.severity, Severity::Warning, "{clients:#?}");
    assert!(
        clients.summary.starts_with("5 of 6 clients"),
        "{}",
        clients.summary
    );
    assert_eq!(
        one(&findings, "redis.rejected_connections").severity,
        Severity::Ok
    );

    // Fill it up once the check's connection is gone; the next client is refused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let (s, answer) = raw_client(server.port);
        assert_eq!(answer, "+PONG");
        held.push(s);
    }
    let (_, refused) = raw_client(server.port);
    assert!(
        refused.contains("max number of clients reached"),
        "{refused}"
    );
    held.truncate(3);
    // Let Redis notice the closed sockets.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let findings = check(server.client(None), &cfg()).await;
    let rejected = one(&findings, "redis.rejected_connections");
    assert_eq!(rejected.severity, Severity::Warning, "{rejected:#?}");
    assert!(
        rejected.evidence.contains(&"maxclients = 6".to_string()),
        "{rejected:#?}"
    );
}
