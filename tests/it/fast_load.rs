//! `restore --fast-load` against real MariaDB servers of their own (the `backup` tests'
//! fixture): the same data as a normal restore, the globals relaxed during the load and put
//! back after it — also when the restore is stopped by a real SIGTERM or SIGINT mid-load, or
//! fails mid-load because its connections are killed on the server —, refused while another
//! client is connected (unless `--allow-other-clients`) and for an account without SUPER.

use mysql_async::prelude::Queryable;
use newapi_ops::backup::manifest::Manifest;

use crate::backup::{Fixture, hold_mid_load, same_as_manifest, wait_for_statement};
use crate::support::Done;

/// The globals a fast load relaxes, as `(innodb_flush_log_at_trx_commit, sync_binlog)`.
async fn globals(c: &mut mysql_async::Conn) -> (String, String) {
    c.query_first("SELECT @@GLOBAL.innodb_flush_log_at_trx_commit, @@GLOBAL.sync_binlog")
        .await
        .unwrap()
        .unwrap()
}

/// A fixture whose server runs as a production server does (`sync_binlog = 1`: MariaDB's
/// default is 0, and a global already at its fast value is not changed), with a backup of it.
async fn fixture(logs_rows: u64, chunk_rows: &str) -> (Fixture, String) {
    let fx = Fixture::start(logs_rows, "REPEAT('z', 100)").await;
    fx.db
        .exec(&[
            "SET GLOBAL sync_binlog = 1",
            "SET GLOBAL innodb_flush_log_at_trx_commit = 1",
        ])
        .await;
    let done = fx.run(&["backup", "--chunk-rows", chunk_rows, "-o", "json"]);
    done.code(0);
    let id = done.json()["id"].as_str().unwrap().to_string();
    (fx, id)
}

/// A fast load gives the same tables (rows, CHECKSUM TABLE, every kind of value) as the
/// manifest and as a normal restore; the summary names the globals it relaxed and put back, and
/// they are back; the note before the load gives the SQL to put them back by hand.
#[tokio::test(flavor = "multi_thread")]
async fn fast_load_restores_the_same_data_and_puts_the_globals_back() {
    let (fx, id) = fixture(20_000, "6000").await;
    let m = Manifest::load(&fx.backups().join(&id)).unwrap();
    let fast = fx.run(&[
        "restore",
        &id,
        "--database",
        "fast",
        "--yes",
        "--fast-load",
        "-o",
        "json",
    ]);
    fast.code(0)
        .stderr_has("fast load: durability relaxed during the load")
        .stderr_has("innodb_flush_log_at_trx_commit 1 → 0")
        .stderr_has("SET GLOBAL sync_binlog = 1; SET GLOBAL innodb_flush_log_at_trx_commit = 1;")
        // MariaDB 10.11 has it read-only: checked, and left alone with a note.
        .stderr_has("innodb_doublewrite is read-only on this server");
    let s = fast.json();
    let f = &s["fast_load"];
    assert_eq!(f["put_back"], true, "{s:#}");
    let changed: Vec<(String, String)> = f["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["original"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            (
                "innodb_flush_log_at_trx_commit".to_string(),
                "1".to_string()
            ),
            ("sync_binlog".to_string(), "1".to_string())
        ],
        "{s:#}"
    );
    same_as_manifest(&fx, &m, "fast").await;
    let mut c = fx.conn().await;
    assert_eq!(globals(&mut c).await, ("1".into(), "1".into()));
    let _ = c.disconnect().await;

    // A normal restore of the same backup: the same tables, and no `fast_load` in its summary.
    let normal = fx.run(&[
        "restore",
        &id,
        "--database",
        "normal",
        "--yes",
        "-o",
        "json",
    ]);
    normal.code(0);
    assert!(normal.json().get("fast_load").is_none());
    same_as_manifest(&fx, &m, "normal").await;
    let human = fx.run(&[
        "restore",
        &id,
        "--database",
        "fast",
        "--force",
        "--yes",
        "--fast-load",
    ]);
    human.code(0).stdout_has(
        "fast load: innodb_flush_log_at_trx_commit 1 → 0 → 1, sync_binlog 1 → 0 → 1; all put back",
    );
}

/// A fast load stopped mid-load by a real SIGTERM, then another by a real SIGINT: while the load
/// is held (a global read lock taken by the test) the globals are relaxed; after the signal the
/// restore names the half-loaded database, exits 143 / 130, and the globals are back.
#[tokio::test(flavor = "multi_thread")]
async fn fast_load_stopped_by_sigterm_or_sigint_puts_the_globals_back() {
    let (fx, id) = fixture(100_000, "2000").await;
    for (signal, code, name) in [
        (nix::sys::signal::SIGTERM, 143, "SIGTERM"),
        (nix::sys::signal::SIGINT, 130, "SIGINT"),
    ] {
        let db = format!("copy_{}", name.to_lowercase());
        // --allow-other-clients: the test's own connection watches the load (another client).
        let mut child = fx.spawn(&[
            "restore",
            &id,
            "--database",
            &db,
            "--yes",
            "--threads",
            "1",
            "--fast-load",
            "--allow-other-clients",
        ]);
        let mut c = fx.conn().await;
        hold_mid_load(&mut c, &mut child, &db).await;
        assert_eq!(
            globals(&mut c).await,
            ("0".into(), "0".into()),
            "relaxed during the load"
        );
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        let done = Done::from(child.wait_with_output().unwrap());
        c.query_drop("UNLOCK TABLES").await.unwrap();
        done.code(code)
            .stderr_has(&format!("interrupted by {name}"))
            .stderr_has(&format!("`{db}` is left half-loaded"));
        assert_eq!(
            globals(&mut c).await,
            ("1".into(), "1".into()),
            "{name}: the globals are not back:\n{}",
            done.stderr
        );
        let _ = c.disconnect().await;
    }
}

/// A fast load that fails mid-load: every connection of the restore's account is killed on
/// the server while it loads (the guard's own connection too). The restore fails as a lost
/// connection (69) naming the half-loaded database, and the globals are put back on a new
/// connection.
#[tokio::test(flavor = "multi_thread")]
async fn fast_load_failing_mid_load_puts_the_globals_back() {
    let (fx, id) = fixture(100_000, "2000").await;
    let mut child = fx.spawn(&[
        "restore",
        &id,
        "--database",
        "broken",
        "--yes",
        "--threads",
        "2",
        "--fast-load",
        "--allow-other-clients",
    ]);
    let mut c = fx.conn().await;
    wait_for_statement(
        &mut c,
        &mut child,
        "DB = 'broken' AND INFO LIKE 'LOAD DATA%'",
        "the restore ended before its connections were killed",
    )
    .await;
    assert_eq!(globals(&mut c).await, ("0".into(), "0".into()));
    let ids: Vec<u64> = c
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'ops'")
        .await
        .unwrap();
    assert!(ids.len() >= 3, "two loaders and the guard: {ids:?}");
    for id in ids {
        let _ = c.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    let done = Done::from(child.wait_with_output().unwrap());
    done.code(69)
        .stderr_has("failed part-way")
        .stderr_has("`broken` is left half-loaded");
    assert_eq!(
        globals(&mut c).await,
        ("1".into(), "1".into()),
        "the globals are not back:\n{}",
        done.stderr
    );
    let _ = c.disconnect().await;
}

/// Another client connected: refused (75) naming it, nothing changed (no database, globals as
/// they were); with --allow-other-clients the load proceeds and puts the globals back. An
/// account without SUPER: refused (77) before anything changes, saying which privilege it needs.
#[tokio::test(flavor = "multi_thread")]
async fn fast_load_is_refused_with_other_clients_unless_allowed_and_without_super() {
    let (fx, id) = fixture(2_000, "1000").await;
    fx.db
        .exec(&[
            "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app-pw'",
            "CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY 'weak-pw'",
            "GRANT SELECT, INSERT, CREATE, DROP, ALTER, INDEX, PROCESS ON *.* TO 'weak'@'127.0.0.1'",
        ])
        .await;
    let app = mysql_async::Conn::new(fx.db.opts("app", Some("app-pw"), None))
        .await
        .expect("connect as app");
    let into_busy = |extra: &[&str]| {
        let mut args = vec!["restore", id.as_str(), "--database", "busy", "--yes"];
        args.extend_from_slice(extra);
        fx.run(&args)
    };
    let refused = into_busy(&["--fast-load"]);
    refused
        .code(75)
        .stderr_has("--fast-load: 1 other client is connected")
        .stderr_has("app@127.0.0.1 (id ")
        .stderr_has("--allow-other-clients proceeds all the same");
    let mut c = fx.conn().await;
    assert_eq!(globals(&mut c).await, ("1".into(), "1".into()));
    let made: Option<String> = c
        .query_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'busy'",
        )
        .await
        .unwrap();
    assert_eq!(made, None, "a refused restore created its database");
    // --force is about the target's tables, not about other clients; and
    // --allow-other-clients means nothing without --fast-load.
    into_busy(&["--fast-load", "--force"])
        .code(75)
        .stderr_has("--allow-other-clients proceeds all the same");
    into_busy(&["--allow-other-clients"])
        .code(64)
        .stderr_has("--fast-load");
    let allowed = into_busy(&["--fast-load", "--allow-other-clients"]);
    allowed
        .code(0)
        .stderr_has("--allow-other-clients: other clients connected (")
        .stdout_has("all put back");
    assert_eq!(globals(&mut c).await, ("1".into(), "1".into()));
    let _ = app.disconnect().await;
    let _ = c.disconnect().await;

    let weak = format!("mysql://weak:weak-pw@127.0.0.1:{}/new-api", fx.db.port);
    let denied =
        crate::support::Run::new(["restore", &id, "--database", "weak", "--yes", "--fast-load"])
            .env("NEWAPI_OPS_MYSQL_URL", &weak)
            .env("NEWAPI_OPS_BACKUP_DIR", fx.backups())
            .output();
    denied
        .code(77)
        .stderr_has("may not change global variables")
        .stderr_has("SUPER")
        .stderr_has("grant SUPER to the account, or restore without --fast-load");
}
