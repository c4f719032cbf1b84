//! `diagnose`'s MySQL checks against real MariaDB servers (one per test, see `diag_support`):
//! each test causes a condition for real and asserts the finding it produces.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use newapi_ops::diagnose::finding::Severity;
use newapi_ops::diagnose::mysql::{MysqlCheckConfig, check};

use crate::diag_support::{MariaDb, assert_well_formed, by_check, free_port, one};

fn cfg(database: &str) -> MysqlCheckConfig {
    MysqlCheckConfig {
        database: database.into(),
        ..MysqlCheckConfig::default()
    }
}

#[tokio::test]
async fn refused_connection_is_critical_and_classified() {
    let port = free_port(); // nothing listens there any more
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some("refused-pw-0451"))
        .into();
    let findings = check(opts, &cfg("new-api")).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.check, "mysql.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("connection refused"), "{}", f.summary);
    assert_eq!(
        f.subject.as_deref(),
        Some(format!("root@127.0.0.1:{port}").as_str())
    );
    assert_well_formed(&findings, &["refused-pw-0451"]);
}

#[tokio::test]
async fn wrong_password_unknown_database_and_aborted_connects() {
    let db = MariaDb::start().await;
    db.exec(&[
        "CREATE USER 'app'@'%' IDENTIFIED BY 'right-pw-7781'",
        "GRANT ALL PRIVILEGES ON *.* TO 'app'@'%'",
        "CREATE DATABASE `new-api` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
    ])
    .await;

    // Wrong password: 1045.
    let findings = check(
        db.opts("app", Some("wrong-pw-9123"), Some("new-api")),
        &cfg("new-api"),
    )
    .await;
    let f = one(&findings, "mysql.connect");
    assert_eq!(findings.len(), 1);
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.summary.contains("wrong user or password"),
        "{}",
        f.summary
    );
    assert!(f.summary.contains("1045"), "{}", f.summary);
    assert_well_formed(&findings, &["wrong-pw-9123", "right-pw-7781"]);

    // Unknown database in the connection: 1049.
    let findings = check(
        db.opts("app", Some("right-pw-7781"), Some("nope")),
        &cfg("nope"),
    )
    .await;
    let f = one(&findings, "mysql.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.summary.contains("unknown database (1049)"),
        "{}",
        f.summary
    );
    assert!(
        f.next_step
            .as_deref()
            .unwrap()
            .contains("CREATE DATABASE `nope`")
    );
    assert_well_formed(&findings, &["right-pw-7781"]);

    // Unknown database, connected without one.
    let findings = check(
        db.opts("app", Some("right-pw-7781"), None),
        &cfg("missing-db"),
    )
    .await;
    let f = one(&findings, "mysql.database");
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.summary.contains("missing-db"));

    // Many failed logins in a few seconds of uptime: Aborted_connects grows fast.
    for _ in 0..12 {
        let attempt = mysql_async::Conn::new(db.opts("app", Some("wrong-again"), None)).await;
        assert!(attempt.is_err());
    }
    let findings = check(
        db.opts("app", Some("right-pw-7781"), Some("new-api")),
        &cfg("new-api"),
    )
    .await;
    let f = one(&findings, "mysql.aborted_connects");
    assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    assert!(f.evidence[0].starts_with("Aborted_connects = "), "{f:#?}");
    let n: u64 = f.evidence[0]["Aborted_connects = ".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 13, "{f:#?}");
    assert_eq!(one(&findings, "mysql.connect").severity, Severity::Ok);
    assert_well_formed(&findings, &["right-pw-7781", "wrong-again"]);
}

#[tokio::test]
async fn healthy_database_sizes_pool_arithmetic_and_big_logs_table() {
    let db = MariaDb::start().await;
    db.exec(&[
        "CREATE DATABASE `new-api` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        "CREATE TABLE `new-api`.users (id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(64)) ENGINE=InnoDB",
        "INSERT INTO `new-api`.users (username) VALUES ('root'), ('alice'), ('bob')",
        "CREATE TABLE `new-api`.logs (id BIGINT PRIMARY KEY AUTO_INCREMENT, created_at BIGINT, content TEXT, \
         KEY idx_created_at (created_at)) ENGINE=InnoDB",
    ])
    .await;
    // About 4 MB of log rows.
    let mut c = db.root().await;
    c.query_drop("USE `new-api`").await.unwrap();
    let payload = "x".repeat(1000);
    for batch in 0..20 {
        let values: Vec<String> = (0..200)
            .map(|i| format!("({}, '{payload}')", 1_700_000_000 + batch * 200 + i))
            .collect();
        c.query_drop(format!(
            "INSERT INTO logs (created_at, content) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
    }
    c.query_drop("ANALYZE TABLE logs, users").await.unwrap();
    let _ = c.disconnect().await;

    let config = MysqlCheckConfig {
        logs_warn_bytes: 1024 * 1024,
        ..cfg("new-api")
    };
    let findings = check(db.opts("root", None, Some("new-api")), &config).await;
    assert_well_formed(&findings, &[]);

    assert_eq!(one(&findings, "mysql.connect").severity, Severity::Ok);
    let version = one(&findings, "mysql.version");
    assert!(
        version.summary.starts_with("MariaDB 10."),
        "{}",
        version.summary
    );
    assert_eq!(one(&findings, "mysql.connections").severity, Severity::Ok);

    // The seed's arithmetic, for real: MariaDB's default max_connections is 151.
    let pool = one(&findings, "mysql.pool");
    assert_eq!(pool.severity, Severity::Warning);
    assert!(pool.summary.contains("4000"), "{}", pool.summary);
    assert!(pool.summary.contains("151"), "{}", pool.summary);
    let next = pool.next_step.as_deref().unwrap();
    assert!(next.contains("max_connections"), "{next}");
    assert!(next.contains("SQL_MAX_OPEN_CONNS=35"), "{next}");

    let tables = one(&findings, "mysql.tables");
    assert_eq!(tables.severity, Severity::Info);
    assert!(tables.summary.starts_with("2 tables"), "{}", tables.summary);
    let logs_line = tables
        .evidence
        .iter()
        .find(|e| e.starts_with("logs: "))
        .expect("logs evidence");
    // InnoDB's row count is an estimate from sampled pages.
    let rows: u64 = logs_line
        .split('~')
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=5000).contains(&rows), "{logs_line}");
    assert!(
        tables
            .evidence
            .iter()
            .any(|e| e.starts_with("users: ") && e.contains("~3 rows")),
        "{tables:#?}"
    );

    let logs = one(&findings, "mysql.logs_table");
    assert_eq!(logs.severity, Severity::Warning);
    assert_eq!(logs.subject.as_deref(), Some("new-api.logs"));
    assert!(
        logs.next_step
            .as_deref()
            .unwrap()
            .contains("DELETE /api/log/?target_timestamp=")
    );

    assert_eq!(one(&findings, "mysql.charset").severity, Severity::Ok);
    assert_eq!(one(&findings, "mysql.long_query").severity, Severity::Ok);
    assert_eq!(one(&findings, "mysql.deadlock").severity, Severity::Ok);
    assert_eq!(one(&findings, "mysql.wait_timeout").severity, Severity::Ok);

    // Under the threshold the logs table is fine; a pool that fits is fine.
    let config = MysqlCheckConfig {
        new_api_pods: 4,
        sql_max_open_conns: 30,
        ..cfg("new-api")
    };
    let findings = check(db.opts("root", None, Some("new-api")), &config).await;
    assert_eq!(one(&findings, "mysql.logs_table").severity, Severity::Ok);
    assert_eq!(one(&findings, "mysql.pool").severity, Severity::Ok);
}

#[tokio::test]
async fn latin1_schema_and_table_are_warnings() {
    let db = MariaDb::start().await;
    db.exec(&[
        "CREATE DATABASE legacy CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        "CREATE TABLE legacy.options (`key` VARCHAR(64) PRIMARY KEY, value TEXT) ENGINE=InnoDB",
        "CREATE TABLE legacy.good (id INT PRIMARY KEY) ENGINE=InnoDB CHARACTER SET utf8mb4",
    ])
    .await;
    let findings = check(db.opts("root", None, Some("legacy")), &cfg("legacy")).await;
    assert_well_formed(&findings, &[]);
    let charset = by_check(&findings, "mysql.charset");
    assert_eq!(charset.len(), 2, "{charset:#?}");
    let schema = charset
        .iter()
        .find(|f| f.summary.contains("defaults to latin1"))
        .expect("schema finding");
    assert_eq!(schema.severity, Severity::Warning);
    assert!(
        schema
            .next_step
            .as_deref()
            .unwrap()
            .contains("ALTER DATABASE `legacy` CHARACTER SET utf8mb4")
    );
    let tables = charset
        .iter()
        .find(|f| f.summary.contains("table(s)"))
        .expect("tables finding");
    assert_eq!(tables.severity, Severity::Warning);
    assert_eq!(
        tables.evidence,
        vec!["options: latin1 (latin1_swedish_ci)".to_string()]
    );
}

#[tokio::test]
async fn long_running_query_is_reported() {
    let db = MariaDb::start().await;
    let mut sleeper = db.root().await;
    let sleeper_id = sleeper.id();
    let task = tokio::spawn(async move {
        let r: Result<Vec<u64>, _> = sleeper.query("SELECT SLEEP(30)").await;
        (sleeper, r)
    });
    // Wait until the server has seen it run for a second.
    let mut admin = db.root().await;
    for _ in 0..100 {
        let t: Option<u64> = admin
            .query_first(format!(
                "SELECT TIME FROM information_schema.PROCESSLIST WHERE ID = {sleeper_id}"
            ))
            .await
            .unwrap();
        if t.is_some_and(|t| t >= 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = MysqlCheckConfig {
        long_query_secs: 1,
        ..cfg("mysql")
    };
    let findings = check(db.opts("root", None, None), &config).await;
    admin
        .query_drop(format!("KILL QUERY {sleeper_id}"))
        .await
        .unwrap();
    let (sleeper, _) = task.await.unwrap();
    let _ = sleeper.disconnect().await;
    let _ = admin.disconnect().await;

    assert_well_formed(&findings, &[]);
    let long = one(&findings, "mysql.long_query");
    assert_eq!(long.severity, Severity::Warning);
    assert_eq!(
        long.subject.as_deref(),
        Some(format!("query {sleeper_id}").as_str())
    );
    assert!(
        long.evidence
            .iter()
            .any(|e| e.contains("query: SELECT SLEEP(30)")),
        "{long:#?}"
    );
    assert!(
        long.evidence
            .iter()
            .any(|e| e.starts_with(&format!("id {sleeper_id}, user root@127.0.0.1:"))),
        "{long:#?}"
    );
    assert!(
        long.next_step
            .as_deref()
            .unwrap()
            .contains(&format!("KILL QUERY {sleeper_id}"))
    );
}

#[tokio::test]
async fn real_deadlock_is_reported() {
    let db = MariaDb::start().await;
    db.exec(&[
        "CREATE DATABASE `new-api` CHARACTER SET utf8mb4",
        "CREATE TABLE `new-api`.tokens (id INT PRIMARY KEY, remain_quota INT) ENGINE=InnoDB",
        "INSERT INTO `new-api`.tokens VALUES (1, 0), (2, 0)",
    ])
    .await;
    let opts = db.opts("root", None, Some("new-api"));
    let mut a = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let mut b = mysql_async::Conn::new(opts.clone()).await.unwrap();
    a.query_drop("SET SESSION innodb_lock_wait_timeout = 20")
        .await
        .unwrap();
    b.query_drop("SET SESSION innodb_lock_wait_timeout = 20")
        .await
        .unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("UPDATE tokens SET remain_quota = 1 WHERE id = 1")
        .await
        .unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("UPDATE tokens SET remain_quota = 2 WHERE id = 2")
        .await
        .unwrap();
    // A waits for B's row...
    let waiter = tokio::spawn(async move {
        let r = a
            .query_drop("UPDATE tokens SET remain_quota = 1 WHERE id = 2")
            .await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and B for A's: InnoDB detects the cycle and rolls one back.
    let rb = b
        .query_drop("UPDATE tokens SET remain_quota = 2 WHERE id = 1")
        .await;
    let (mut a, ra) = waiter.await.unwrap();
    let codes: Vec<u16> = [&ra, &rb]
        .iter()
        .filter_map(|r| match r {
            Err(mysql_async::Error::Server(e)) => Some(e.code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![1213],
        "one transaction is the deadlock victim: {ra:?} {rb:?}"
    );
    a.query_drop("ROLLBACK").await.unwrap();
    b.query_drop("ROLLBACK").await.unwrap();
    let _ = a.disconnect().await;
    let _ = b.disconnect().await;

    let findings = check(opts, &cfg("new-api")).await;
    assert_well_formed(&findings, &[]);
    let d = one(&findings, "mysql.deadlock");
    assert_eq!(d.severity, Severity::Warning);
    assert!(
        d.summary.starts_with("InnoDB detected a deadlock at "),
        "{}",
        d.summary
    );
    assert!(
        d.summary.contains("(1 since the server started)"),
        "{}",
        d.summary
    );
    assert_eq!(d.subject.as_deref(), Some("`new-api`.`tokens`"));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.contains("UPDATE tokens SET remain_quota = 2 WHERE id = 1")),
        "{d:#?}"
    );
    assert!(
        d.evidence.iter().any(|e| e.contains("rolled back")),
        "{d:#?}"
    );
    assert!(
        d.evidence.iter().any(|e| e == "Innodb_deadlocks = 1"),
        "{d:#?}"
    );
}

#[tokio::test]
async fn slow_queries_growing_fast() {
    let db = MariaDb::start().await;
    let mut c = db.root().await;
    c.query_drop("SET SESSION long_query_time = 0")
        .await
        .unwrap();
    for i in 0..30 {
        let _: Option<u32> = c.query_first(format!("SELECT {i}")).await.unwrap();
    }
    let _ = c.disconnect().await;
    let findings = check(db.opts("root", None, None), &cfg("mysql")).await;
    assert_well_formed(&findings, &[]);
    let slow = one(&findings, "mysql.slow_queries");
    assert_eq!(slow.severity, Severity::Warning, "{slow:#?}");
    assert!(
        slow.evidence
            .iter()
            .any(|e| e.contains("slow_query_log = OFF")),
        "{slow:#?}"
    );
    let n: u64 = slow
        .summary
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= 30, "{}", slow.summary);
}

#[tokio::test]
async fn threads_near_a_lowered_max_connections_then_too_many() {
    let db = MariaDb::start().await;
    db.exec(&[
        "SET GLOBAL max_connections = 10",
        "CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw-3141'",
        "GRANT SELECT ON *.* TO 'app'@'%'",
    ])
    .await;
    // 8 connections held + the check's own = 9 of 10.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(db.root().await);
    }
    let findings = check(db.opts("root", None, None), &cfg("mysql")).await;
    assert_well_formed(&findings, &[]);
    let c = one(&findings, "mysql.connections");
    assert_eq!(c.severity, Severity::Warning, "{c:#?}");
    assert!(
        c.summary.starts_with("9 of 10 connections"),
        "{}",
        c.summary
    );
    let pool = one(&findings, "mysql.pool");
    assert_eq!(pool.severity, Severity::Warning);
    assert!(
        pool.evidence[0].contains("max_connections = 10"),
        "{pool:#?}"
    );

    // Fill the server: a user without SUPER is refused with 1040.
    held.push(db.root().await);
    held.push(db.root().await);
    let findings = check(db.opts("app", Some("app-pw-3141"), None), &cfg("mysql")).await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = one(&findings, "mysql.connect");
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.summary.contains("too many connections (1040)"),
        "{}",
        f.summary
    );
    assert_well_formed(&findings, &["app-pw-3141"]);
    for conn in held {
        let _ = conn.disconnect().await;
    }
}
