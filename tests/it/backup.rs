//! `backup`, `restore`, `verify`, `prune`, `schedule`: the real binary against real MariaDB
//! servers of their own (see `diag_support`), each fault caused for real — the server killed
//! mid-backup, a full disk (a 2 MiB tmpfs), writes during the backup, a corrupted chunk, a wrong
//! age identity — and once through the sandbox's port-forward with credentials from its
//! ConfigMap.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use newapi_ops::backup::manifest::Manifest;
use newapi_ops::backup::staging::Owner;

use crate::diag_support::MariaDb;
use crate::support::{Done, Run, sandbox};

const PASSWORD: &str = "bk-pw-5d1e9c07";

/// A MariaDB with the New-API schema in `new-api`, the sandbox's sample rows, `logs_rows` more
/// rows in `logs`, and a user `ops` with a password (so that leaks can be looked for).
pub(crate) struct Fixture {
    pub(crate) db: MariaDb,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) async fn start(logs_rows: u64, other: &str) -> Fixture {
        let db = MariaDb::start().await;
        db.exec(&[
            &format!("CREATE USER 'ops'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'"),
            "GRANT ALL PRIVILEGES ON *.* TO 'ops'@'127.0.0.1'",
            "CREATE DATABASE `new-api` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        ])
        .await;
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sandbox/newapi-schema.sql"),
        )
        .expect("read the schema fixture");
        let mut c = mysql_async::Conn::new(db.opts("root", None, Some("new-api")))
            .await
            .expect("connect");
        c.query_drop(schema).await.expect("load the schema");
        let mut lo = 1000u64;
        let hi = 999 + logs_rows;
        while lo <= hi {
            let top = (lo + 49_999).min(hi);
            c.query_drop(format!(
                "INSERT INTO logs (id, user_id, created_at, type, content, username, token_name, model_name, quota, prompt_tokens, completion_tokens, use_time, is_stream, channel_id, token_id, `group`, ip, other)
                 SELECT seq, 1 + seq % 97, 1731456000 + seq, 2, CONCAT('模型倍率 ', seq % 7, '.00\\n补全\\'倍率\\\\ 1.00'), CONCAT('user', seq % 97), 'token-a', 'gpt-4o', seq % 5000, 100, 20, 1, seq % 2, 1 + seq % 3, 1, 'default', '10.0.0.1', {other}
                 FROM seq_{lo}_to_{top}"
            ))
            .await
            .expect("fill logs");
            lo = top + 1;
        }
        c.query_drop("INSERT INTO options (`key`, value) VALUES ('writer_count', '0')")
            .await
            .expect("insert options");
        // Every kind of value a restore must give back byte for byte.
        c.query_drop(
            "CREATE TABLE kinds (id int AUTO_INCREMENT PRIMARY KEY, b varbinary(16), bits bit(8), j json, d datetime(3), f double, t text, e enum('a','b'), n decimal(20,6), g int GENERATED ALWAYS AS (id * 2) VIRTUAL)",
        )
        .await
        .expect("create kinds");
        // Row 0 of an AUTO_INCREMENT key must stay 0.
        c.query_drop("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')")
            .await
            .expect("sql_mode");
        c.query_drop(
            "INSERT INTO kinds (id, b, bits, j, d, f, t, e, n) VALUES (1, X'00FF0A0D275C1A', b'10100101', '{\"k\": [1, \"\\u00e9\"]}', '2026-11-25 03:00:00.123', 0.1, CONCAT('a', CHAR(0), 'b\\n\\r\\'\\\\', CHAR(26), '中'), 'b', -12345.678901), (2, '', NULL, NULL, NULL, -1.5e300, '', 'a', 0), (0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .await
        .expect("insert kinds");
        c.query_drop("ANALYZE TABLE logs").await.expect("analyze");
        let _ = c.disconnect().await;
        Fixture {
            db,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("mysql://ops:{PASSWORD}@127.0.0.1:{}/new-api", self.db.port)
    }

    /// Where backups go (created by the tool: it must create it 0700).
    pub(crate) fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// `newapi-ops ARGS` reaching this server through NEWAPI_OPS_MYSQL_URL, backups in [`backups`].
    pub(crate) fn run(&self, args: &[&str]) -> Done {
        Run::new(args)
            .env("NEWAPI_OPS_MYSQL_URL", self.url())
            .env("NEWAPI_OPS_BACKUP_DIR", self.backups())
            .output()
    }

    /// `newapi-ops ARGS` as [`Fixture::run`] runs it, started in the background (output piped).
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(crate::support::bin())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .env("NEWAPI_OPS_MYSQL_URL", self.url())
            .env("NEWAPI_OPS_BACKUP_DIR", self.backups())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.db.opts("root", None, None))
            .await
            .expect("connect")
    }
}

/// Neither the output nor any file of the backup directory contains the password.
fn assert_no_leak(done: &Done, dir: &Path) {
    assert!(
        !done.stdout.contains(PASSWORD) && !done.stderr.contains(PASSWORD),
        "the password leaked into the output:\n{}\n{}",
        done.stdout,
        done.stderr
    );
    for f in walk(dir) {
        if f.is_file() {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes()),
                "the password leaked into {}",
                f.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Every directory 0700, every file 0600.
fn assert_private(dir: &Path) {
    for p in walk(dir) {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}, not {want:o}", p.display());
    }
}

/// The entries of the backup directory (complete backups and leftovers alike).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub(crate) async fn checksum(c: &mut mysql_async::Conn, db: &str, table: &str) -> (u64, u64) {
    let count: u64 = c
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.`{table}`"))
        .await
        .unwrap()
        .unwrap();
    let sum: (String, u64) = c
        .query_first(format!("CHECKSUM TABLE `{db}`.`{table}`"))
        .await
        .unwrap()
        .unwrap();
    (count, sum.1)
}

/// Writes running during the backup (inserts, updates, deletes across tables, each transaction
/// adding a `logs` row and bumping a counter in `options`): the backup is one snapshot — the
/// restored copy's row counts and CHECKSUM TABLE equal the manifest's, and the counter equals
/// the number of writer rows although different workers dumped the two tables. Then restore:
/// refused into a non-empty database without --force (73), without a terminal and without
/// --yes (64); files 0600, directories 0700; the password nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn writes_during_the_backup_restore_to_the_snapshot_exactly() {
    let fx = Fixture::start(60_000, "REPEAT('x', 40)").await;
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, commits) = (stop.clone(), commits.clone());
        let opts = fx.db.opts("root", None, Some("new-api"));
        tokio::spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.expect("writer connects");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let mut tx = c.start_transaction(Default::default()).await.unwrap();
                tx.query_drop("INSERT INTO logs (user_id, created_at, type, content) VALUES (1, 1, 9, 'writer')").await.unwrap();
                tx.query_drop("UPDATE options SET value = value + 1 WHERE `key` = 'writer_count'")
                    .await
                    .unwrap();
                tx.query_drop(format!(
                    "UPDATE logs SET quota = quota + 1 WHERE id = {}",
                    1000 + i % 50_000
                ))
                .await
                .unwrap();
                tx.query_drop(format!("DELETE FROM logs WHERE id = {}", 2000 + i))
                    .await
                    .unwrap();
                tx.query_drop("UPDATE users SET used_quota = used_quota + 1")
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                commits.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Let the writer get going, then back up while it runs.
    while commits.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = commits.load(Ordering::SeqCst);
    let url = fx.url();
    let dir = fx.backups();
    let done = tokio::task::spawn_blocking(move || {
        Run::new([
            "backup",
            "--threads",
            "4",
            "--chunk-rows",
            "7000",
            "-o",
            "json",
        ])
        .env("NEWAPI_OPS_MYSQL_URL", url)
        .env("NEWAPI_OPS_BACKUP_DIR", dir)
        .output()
    })
    .await
    .unwrap();
    let during = commits.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    done.code(0);
    assert!(during > 0, "no write committed during the backup");
    // One line of JSON for scheduled jobs.
    assert_eq!(done.stdout.trim().lines().count(), 1, "{}", done.stdout);
    let summary = done.json();
    assert_eq!(summary["consistency"], "backup-stage");
    let id = summary["id"].as_str().unwrap().to_string();
    let path = fx.backups().join(&id);
    let m = Manifest::load(&path).unwrap();
    let logs = m.table("logs").unwrap();
    assert!(
        logs.chunks.len() >= 8,
        "logs split into {} chunks",
        logs.chunks.len()
    );
    assert!(m.tables.iter().all(|t| t.checksum.is_some()));
    assert_eq!(
        m.source,
        format!("ops@127.0.0.1:{}/new-api (from --mysql-url)", fx.db.port)
    );
    assert_private(&fx.backups());
    assert_no_leak(&done, &fx.backups());

    // The restore test: rows and CHECKSUM TABLE of every table equal the snapshot's.
    let v = fx.run(&["backup", "verify", &id, "--restore-test", "-o", "json"]);
    v.code(0);
    let report = v.json();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["tables"].as_array().unwrap().len(), m.tables.len());
    let mut c = fx.conn().await;
    let scratch: Option<String> = c
        .query_first("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'newapi_ops_verify%'")
        .await
        .unwrap();
    assert_eq!(scratch, None, "the scratch database was not dropped");

    // A real restore; then the cross-table invariant of the snapshot.
    fx.run(&["restore", &id, "--database", "copy", "--yes"])
        .code(0)
        .stdout_has("row counts match the manifest");
    for t in &m.tables {
        let (rows, sum) = checksum(&mut c, "copy", &t.name).await;
        assert_eq!((rows, Some(sum)), (t.rows, t.checksum), "table {}", t.name);
    }
    let writer_rows: u64 = c
        .query_first("SELECT COUNT(*) FROM copy.logs WHERE content = 'writer'")
        .await
        .unwrap()
        .unwrap();
    let counter: String = c
        .query_first("SELECT value FROM copy.options WHERE `key` = 'writer_count'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counter.parse::<u64>().unwrap(), writer_rows);
    assert!(writer_rows > 0);
    let blob: Vec<u8> = c
        .query_first("SELECT b FROM copy.kinds WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blob, b"\x00\xff\n\r'\\\x1a");
    let same: u64 = c
        .query_first("SELECT COUNT(*) FROM copy.kinds k JOIN `new-api`.kinds o USING (id) WHERE k.b <=> o.b AND k.bits <=> o.bits AND k.j <=> o.j AND k.d <=> o.d AND k.f <=> o.f AND k.t <=> o.t AND k.e <=> o.e AND k.n <=> o.n AND k.g = o.g")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, 3, "the kinds table differs after the restore");
    // Secondary indexes were added back after the data.
    let idx: u64 = c
        .query_first("SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'copy' AND TABLE_NAME = 'logs'")
        .await
        .unwrap()
        .unwrap();
    let src_idx: u64 = c
        .query_first("SELECT COUNT(DISTINCT INDEX_NAME) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'new-api' AND TABLE_NAME = 'logs'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idx, src_idx);

    // A non-empty target is refused without --force; nothing to ask on without --yes.
    fx.run(&["restore", &id, "--database", "copy", "--yes"])
        .code(73)
        .stderr_has("database `copy`")
        .stderr_has("is not empty")
        .stderr_has("--force");
    fx.run(&["restore", &id, "--database", "copy", "--force"])
        .code(64)
        .stderr_has("no terminal");
    let forced = fx.run(&[
        "restore",
        &id,
        "--database",
        "copy",
        "--force",
        "--yes",
        "-o",
        "json",
    ]);
    forced.code(0);
    assert_eq!(
        forced.json()["replaced"].as_array().unwrap().len(),
        m.tables.len()
    );
    assert_no_leak(&forced, &fx.backups());
    let listed = fx.run(&["backup", "list", "-o", "json"]);
    listed.code(0);
    assert_eq!(listed.json()["backups"][0]["verified"], "restore-test");
}

/// The pid of the `mariadbd` listening on `port` (started by this test).
fn mariadbd_pid(port: u16) -> i32 {
    let needle = format!("--port={port}");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("mariadbd") && cmd.contains(&needle) {
            return pid;
        }
    }
    panic!("no mariadbd with {needle}");
}

/// MariaDB killed (SIGKILL) while chunks are being written: non-zero exit naming the lost
/// connection, no complete-looking backup, the temporary directory removed.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_killed_mid_backup_leaves_nothing_that_looks_complete() {
    let fx = Fixture::start(300_000, "REPEAT('y', 100)").await;
    let mut child = fx.spawn(&["backup", "--threads", "2", "--chunk-rows", "4000"]);
    wait_for_chunks(&fx.backups(), &mut child).await;
    let pid = mariadbd_pid(fx.db.port);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let out = child.wait_with_output().unwrap();
    let done = Done::from(out);
    done.code(69)
        .stderr_has("lost the connection to MySQL")
        .stderr_has("nothing incomplete was kept");
    assert_nothing_left(&fx, "the kill");
}

/// After a stopped backup: nothing in the directory (no `.tmp-*`), nothing listed.
fn assert_nothing_left(fx: &Fixture, after: &str) {
    assert_eq!(
        entries(&fx.backups()),
        Vec::<String>::new(),
        "leftovers after {after}"
    );
    fx.run(&["backup", "list"]).code(0).stdout_has("no backups");
}

/// The chunk files of `logs` in the temporary directories of `dir`.
fn chunks_written(dir: &Path) -> usize {
    chunks_of(dir, "logs")
}

/// The chunk files of `table` in the temporary directories of `dir`.
fn chunks_of(dir: &Path, table: &str) -> usize {
    let prefix = format!("{table}.0");
    entries(dir)
        .iter()
        .filter(|e| e.starts_with(".tmp-"))
        .flat_map(|t| entries(&dir.join(t)))
        .filter(|f| f.starts_with(&prefix))
        .count()
}

/// Waits until the backup `child` has written two chunks of `logs` into its temporary
/// directory (it must still be running then).
async fn wait_for_chunks(dir: &Path, child: &mut std::process::Child) {
    while chunks_written(dir) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

pub(crate) fn sigterm(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
}

/// Two `backup --dir SAME` processes started together, four times: every one succeeds, with an
/// id of its own (`ID`, `ID-2` when they start in the same second); all eight are listed,
/// verify, and nothing temporary is left.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_backups_into_one_directory_get_distinct_ids() {
    let fx = Fixture::start(2_000, "'{}'").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        // Start just after a second begins, so that both most likely claim the same second
        // (a help to hit the collision, not a condition of the test).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_nanos(
            u64::from(1_000_000_000 - now.subsec_nanos()) + 20_000_000,
        ));
        let args = ["backup", "--threads", "2", "-o", "json"];
        let (a, b) = (fx.spawn(&args), fx.spawn(&args));
        let (a, b) = (
            Done::from(a.wait_with_output().unwrap()),
            Done::from(b.wait_with_output().unwrap()),
        );
        a.code(0);
        b.code(0);
        let (a, b) = (
            a.json()["id"].as_str().unwrap().to_string(),
            b.json()["id"].as_str().unwrap().to_string(),
        );
        assert_ne!(a, b, "two backups took one id");
        ids.extend([a, b]);
    }
    let mut want = ids.clone();
    want.sort();
    want.dedup();
    assert_eq!(want.len(), 8, "{ids:?}");
    let listed = fx.run(&["backup", "list", "-o", "json"]);
    listed.code(0);
    let mut got: Vec<String> = listed.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, want);
    for id in &ids {
        fx.run(&["backup", "verify", id])
            .code(0)
            .stdout_has("files match the manifest");
    }
    assert_eq!(entries(&fx.backups()), want, "something temporary was left");
}

/// SIGTERM (as Kubernetes stops a CronJob's pod) while chunks are being written: exit 143, the
/// message says so, and no `.tmp-*` directory is left.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_backup_exits_143_and_leaves_no_temporary_directory() {
    let fx = Fixture::start(300_000, "REPEAT('y', 100)").await;
    // One connection and the slowest compression: long enough to be stopped mid-way.
    let mut child = fx.spawn(&[
        "backup",
        "--threads",
        "1",
        "--chunk-rows",
        "4000",
        "--level",
        "19",
    ]);
    wait_for_chunks(&fx.backups(), &mut child).await;
    sigterm(&child);
    let done = Done::from(child.wait_with_output().unwrap());
    done.code(143)
        .stderr_has("backup interrupted by SIGTERM")
        .stderr_has("nothing incomplete was kept");
    assert_nothing_left(&fx, "SIGTERM");
}

/// Writes a temporary directory as a backup in progress leaves it: a chunk and the owner record.
fn leftover(dir: &Path, name: &str, owner: &Owner) {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("logs.00001.sql.zst"), vec![0u8; 4096]).unwrap();
    std::fs::write(
        path.join("owner.json"),
        serde_json::to_vec_pretty(owner).unwrap(),
    )
    .unwrap();
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

/// A `.tmp-*` directory whose process is dead is removed by the next `backup` and by `prune`
/// (which say so); one whose process lives (this test's) is kept by both.
#[tokio::test(flavor = "multi_thread")]
async fn stale_temporary_directories_of_dead_processes_are_swept() {
    let fx = Fixture::start(1_000, "'{}'").await;
    let dir = fx.backups();
    let me = Owner::current();
    let dead = Owner {
        pid: dead_pid(),
        ..me.clone()
    };
    leftover(&dir, ".tmp-20200101T000000Z", &dead);
    leftover(&dir, ".tmp-20200101T000001Z", &me);
    let done = fx.run(&["backup", "-o", "json"]);
    done.code(0)
        .stderr_has("removed .tmp-20200101T000000Z, left by an interrupted backup")
        .stderr_has(&format!("process {} on this host is gone", dead.pid));
    let summary = done.json();
    assert_eq!(summary["swept"][0]["name"], ".tmp-20200101T000000Z");
    let id = summary["id"].as_str().unwrap().to_string();
    let mut want = vec![".tmp-20200101T000001Z".to_string(), id.clone()];
    want.sort();
    assert_eq!(entries(&dir), want);

    leftover(&dir, ".tmp-20200102T000000Z", &dead);
    let dry = fx.run(&[
        "backup",
        "prune",
        "--keep-last",
        "5",
        "--dry-run",
        "-o",
        "json",
    ]);
    dry.code(0);
    assert_eq!(
        dry.json()["removed_incomplete"][0]["name"],
        ".tmp-20200102T000000Z"
    );
    assert!(dir.join(".tmp-20200102T000000Z").exists());
    fx.run(&["backup", "prune", "--keep-last", "5"])
        .code(0)
        .stdout_has(&format!(
            "deleted .tmp-20200102T000000Z (an interrupted backup: process {} on this host is gone)",
            dead.pid
        ));
    assert_eq!(entries(&dir), want, "the live one must stay");
    fx.run(&["backup", "list"]).code(0).stdout_has(&id);
}

/// SIGTERM while a restore is loading (held there by a global read lock, so that it cannot
/// finish first): exit 143, and the message names the half-loaded database and how to clean it;
/// doing what it says works. The same for `verify --restore-test`: its scratch database is
/// dropped before it exits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_restore_names_the_half_loaded_database() {
    let fx = Fixture::start(100_000, "REPEAT('z', 100)").await;
    let done = fx.run(&["backup", "--chunk-rows", "2000", "-o", "json"]);
    done.code(0);
    let id = done.json()["id"].as_str().unwrap().to_string();
    let mut child = fx.spawn(&[
        "restore",
        &id,
        "--database",
        "copy",
        "--yes",
        "--threads",
        "1",
    ]);
    let mut c = fx.conn().await;
    hold_mid_load(&mut c, &mut child, "copy").await;
    sigterm(&child);
    let done = Done::from(child.wait_with_output().unwrap());
    c.query_drop("UNLOCK TABLES").await.unwrap();
    done.code(143)
        .stderr_has(&format!("restore of backup {id} into `copy`"))
        .stderr_has("interrupted by SIGTERM")
        .stderr_has("`copy` is left half-loaded")
        .stderr_has("DROP DATABASE `copy`;")
        .stderr_has(&format!(
            "newapi-ops restore {id} --database copy --force --yes"
        ));
    // As the hint says: restoring again over it with --force gives the whole backup.
    fx.run(&["restore", &id, "--database", "copy", "--force", "--yes"])
        .code(0)
        .stdout_has("row counts match the manifest");
    let m = Manifest::load(&fx.backups().join(&id)).unwrap();
    for t in &m.tables {
        let (rows, sum) = checksum(&mut c, "copy", &t.name).await;
        assert_eq!((rows, Some(sum)), (t.rows, t.checksum), "copy.{}", t.name);
    }

    // A restore test stopped the same way still drops its scratch database (its DROP waits for
    // the lock to go: `main` must leave the signal to it meanwhile), then exits 143.
    let scratch = newapi_ops::backup::verify::scratch_name(&id);
    let mut child = fx.spawn(&["backup", "verify", &id, "--restore-test", "--threads", "1"]);
    hold_mid_load(&mut c, &mut child, &scratch).await;
    sigterm(&child);
    wait_for_statement(
        &mut c,
        &mut child,
        "INFO LIKE 'DROP DATABASE%'",
        "the restore test ended without dropping its scratch database",
    )
    .await;
    c.query_drop("UNLOCK TABLES").await.unwrap();
    let done = Done::from(child.wait_with_output().unwrap());
    done.code(143)
        .stderr_has("restore test interrupted by SIGTERM")
        .stderr_has("nothing incomplete was kept");
    let left: Option<String> = c
        .query_first(format!(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{scratch}'"
        ))
        .await
        .unwrap();
    assert_eq!(left, None, "the scratch database was left");
    let _ = c.disconnect().await;
}

/// Waits until the restore `child` is loading rows into `db`, then takes the global read lock
/// on `c`: from then on the restore's writes wait, so it cannot finish (or fail) before it is
/// stopped. (It watches the process list: a read of a table that an empty-table bulk load is
/// filling can stall both on MariaDB 10.11.)
pub(crate) async fn hold_mid_load(
    c: &mut mysql_async::Conn,
    child: &mut std::process::Child,
    db: &str,
) {
    let loading = format!("DB = '{db}' AND (INFO LIKE 'LOAD DATA%' OR INFO LIKE 'INSERT INTO%')");
    let early = "the restore ended before it was stopped";
    wait_for_statement(c, child, &loading, early).await;
    c.query_drop("FLUSH TABLES WITH READ LOCK").await.unwrap();
    assert!(child.try_wait().unwrap().is_none(), "{early}");
}

/// Waits until the server's process list has a statement `matching` (an SQL condition on
/// PROCESSLIST); `child` must be running meanwhile, else `ended` is the failure.
pub(crate) async fn wait_for_statement(
    c: &mut mysql_async::Conn,
    child: &mut std::process::Child,
    matching: &str,
    ended: &str,
) {
    loop {
        let n: Option<u64> = c
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE {matching}"
            ))
            .await
            .unwrap();
        if n.unwrap_or(0) > 0 {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "{ended}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Unmounts the tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk (a 2 MiB tmpfs): a clear error naming the file and the full disk (exit 74),
/// nothing half-written left, nothing listed.
#[tokio::test(flavor = "multi_thread")]
async fn disk_full_is_a_clear_error_and_leaves_nothing() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test mounts a 2 MiB tmpfs and needs root (CI runs as root)"
    );
    // Hex of SHA-256: about 2 bytes per byte after zstd, so several MiB in all.
    let fx = Fixture::start(60_000, "CONCAT(SHA2(seq, 256), SHA2(seq + 1, 256))").await;
    let mnt = fx.dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mount a tmpfs on {}", mnt.display());
    let _unmount = Tmpfs(mnt.clone());
    let target = mnt.join("backups").display().to_string();
    let done = Run::new(["backup", "--threads", "2", "--dir", &target])
        .env("NEWAPI_OPS_MYSQL_URL", fx.url())
        .output();
    done.code(74)
        .stderr_has("No space left on device")
        .stderr_has("is full");
    assert_eq!(entries(&mnt.join("backups")), Vec::<String>::new());
    assert_no_leak(&done, &mnt);
}

/// A corrupted chunk: verify names the file (exit 65) and records the failure; restore refuses
/// to load the backup.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_chunk_is_named() {
    let fx = Fixture::start(20_000, "'{}'").await;
    let done = fx.run(&["backup", "--chunk-rows", "5000", "-o", "json"]);
    done.code(0);
    let id = done.json()["id"].as_str().unwrap().to_string();
    fx.run(&["backup", "verify", &id])
        .code(0)
        .stdout_has("files match the manifest");
    let chunk = fx.backups().join(&id).join("logs.00002.sql.zst");
    let mut bytes = std::fs::read(&chunk).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&chunk, bytes).unwrap();
    fx.run(&["backup", "verify", &id])
        .code(65)
        .stdout_has("logs.00002.sql.zst: SHA-256")
        .stderr_has("logs.00002.sql.zst");
    fx.run(&["backup", "list"]).code(0).stdout_has("FAILED");
    fx.run(&["restore", &id, "--database", "copy", "--yes"])
        .code(65)
        .stderr_has("logs.00002.sql.zst");
    // Nothing was created.
    let mut c = fx.conn().await;
    let copy: Option<String> = c
        .query_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'copy'",
        )
        .await
        .unwrap();
    assert_eq!(copy, None);
}

fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    use age::secrecy::ExposeSecret as _;
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (path, id.to_public().to_string())
}

/// `--encrypt-to`: files are age-encrypted (verify still checks them without the key); restore
/// needs the identity (64), a wrong identity is a clear error (77), the right one restores.
/// Then retention: prune keeps the last N and never the newest verified backup.
#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backups_need_the_right_identity_and_prune_keeps_the_verified() {
    let fx = Fixture::start(5_000, "'{}'").await;
    let (right, recipient) = identity(fx.dir.path(), "right.txt");
    let (wrong, _) = identity(fx.dir.path(), "wrong.txt");
    let done = fx.run(&["backup", "--encrypt-to", &recipient, "-o", "json"]);
    done.code(0);
    let id = done.json()["id"].as_str().unwrap().to_string();
    let path = fx.backups().join(&id);
    let names = entries(&path);
    assert!(
        names.iter().filter(|n| n.ends_with(".sql.zst.age")).count() >= 22,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".sql.zst")), "{names:?}");
    // The plaintext is nowhere: a known value of the users table is not in any file.
    for f in &names {
        let bytes = std::fs::read(path.join(f)).unwrap();
        assert!(
            !bytes.windows(5).any(|w| w == b"gpt-4"),
            "{f} is not encrypted"
        );
    }
    fx.run(&["backup", "verify", &id]).code(0);
    fx.run(&["restore", &id, "--database", "copy", "--yes"])
        .code(64)
        .stderr_has("--identity");
    fx.run(&["restore", &id, "--database", "copy", "--yes", "--identity"])
        .code(64);
    let w = wrong.display().to_string();
    fx.run(&[
        "restore",
        &id,
        "--database",
        "copy",
        "--yes",
        "--identity",
        &w,
    ])
    .code(77)
    .stderr_has("no identity in")
    .stderr_has(&recipient);
    let r = right.display().to_string();
    fx.run(&[
        "restore",
        &id,
        "--database",
        "copy",
        "--yes",
        "--identity",
        &r,
    ])
    .code(0);
    fx.run(&["backup", "verify", &id, "--restore-test", "--identity", &r])
        .code(0)
        .stdout_has("CHECKSUM TABLE match");
    let bad = fx.run(&["backup", "--encrypt-to", "age1notarecipient"]);
    bad.code(64).stderr_has("not an age recipient");

    // Retention: two more (unverified) backups; keep the last one: the verified one stays.
    let second = fx.run(&["backup", "-o", "json"]);
    second.code(0);
    let third = fx.run(&["backup", "-o", "json"]);
    third.code(0);
    let second = second.json()["id"].as_str().unwrap().to_string();
    let third = third.json()["id"].as_str().unwrap().to_string();
    let dry = fx.run(&[
        "backup",
        "prune",
        "--keep-last",
        "1",
        "--dry-run",
        "-o",
        "json",
    ]);
    dry.code(0);
    assert_eq!(dry.json()["deleted"], serde_json::json!([second]));
    assert_eq!(entries(&fx.backups()).len(), 3);
    fx.run(&["backup", "prune", "--keep-last", "1"])
        .code(0)
        .stdout_has(&format!("deleted {second}"));
    assert_eq!(entries(&fx.backups()), {
        let mut v = vec![id.clone(), third.clone()];
        v.sort();
        v
    });
    fx.run(&["backup", "list"])
        .code(0)
        .stdout_has("yes (restore-test)");
}

/// The kubernetes-validate CLI: from scripts/setup.sh's venv, else PATH.
fn kubernetes_validate() -> Option<PathBuf> {
    let cache = std::env::var_os("NEWAPI_OPS_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("newapi-ops")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/newapi-ops")))?;
    let venv = cache.join("venv/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubernetes-validate"))
            .find(|p| p.is_file())
    })
}

/// Through the sandbox: a backup with no --mysql-url (SQL_DSN from the cluster's ConfigMap, a
/// port-forward to the MySQL pod; the seed's password nowhere); `schedule` on this 1.20 control
/// plane says batch/v1 CronJob needs Kubernetes 1.21 (exit 69); `schedule --dry-run` prints
/// manifests that pass `kubernetes-validate --strict` for Kubernetes 1.25 (its oldest schemas) and 1.34; `status` says
/// the CronJob is not served and shows the newest backup.
#[test]
fn through_the_sandbox_port_forward_and_schedule() {
    let _ = sandbox();
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("backups");
    let d = dir.display().to_string();
    let done = Run::new(["backup", "--dir", &d, "--threads", "2"])
        .admin()
        .output();
    done.code(0)
        .stdout_has("through a port-forward to pod mysql-")
        .stdout_has("complete: backup");
    // The seed's MySQL password (from its ConfigMap) is in no output and no file.
    let secret = "123456";
    assert!(!done.stdout.contains(secret) && !done.stderr.contains(secret));
    for f in walk(&dir).into_iter().filter(|p| p.is_file()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the seed's password is in {}",
            f.display()
        );
    }
    assert_private(&dir);
    Run::new(["backup", "verify", "latest", "--dir", &d])
        .admin()
        .output()
        .code(0);

    // Applying the schedule and running it is tests/it/backup_schedule.rs' (on a sandbox of its
    // own: a CronJob here would change what the other tests of this sandbox see).
    let schedule = [
        "backup",
        "schedule",
        "--cron",
        "0 3 * * *",
        "--keep-last",
        "14",
        "--dry-run",
    ];
    let dry = Run::new(schedule).admin().output();
    dry.code(0)
        .stderr_has("CronJob as batch/v1beta1")
        .stderr_has("v1.20.2")
        .stdout_has("apiVersion: batch/v1beta1\nkind: CronJob")
        .stdout_has("kind: CronJob")
        .stdout_has("concurrencyPolicy: Forbid")
        .stdout_has("new-api-config");
    assert!(!dry.stdout.contains("123456"));
    // `-o yaml` prints the same manifests, nothing else on stdout.
    let yaml = Run::new(schedule.iter().chain(&["-o", "yaml"]))
        .admin()
        .output();
    yaml.code(0);
    assert_eq!(yaml.stdout, dry.stdout);
    assert!(yaml.stdout.starts_with("---\n"));
    let json = Run::new(["backup", "schedule", "--dry-run", "-o", "json"])
        .admin()
        .output();
    json.code(0);
    let list = json.json();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 6);

    match kubernetes_validate() {
        None => panic!(
            "kubernetes-validate is not installed: run scripts/setup.sh (it installs it into a venv)"
        ),
        Some(kv) => {
            // What a cluster that serves batch/v1 gets: the same objects at batch/v1 (the
            // schemas here begin with 1.25, which no longer has batch/v1beta1).
            let file = home.path().join("schedule.yaml");
            std::fs::write(
                &file,
                dry.stdout
                    .replace("apiVersion: batch/v1beta1\n", "apiVersion: batch/v1\n"),
            )
            .unwrap();
            for version in ["1.25.0", "1.34.0"] {
                let out = Command::new(&kv)
                    .args(["--strict", "-k", version])
                    .arg(&file)
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    out.status.success(),
                    "kubernetes-validate {version}:\n{text}"
                );
                assert!(!text.contains("ERROR"), "{text}");
            }
        }
    }

    let status = Run::new(["backup", "status", "--dir", &d]).admin().output();
    status
        .code(0)
        .stdout_has("no CronJob newapi-ops-backup in namespace new-api")
        .stdout_has("newest backup in");
    let cron = Run::new(["backup", "schedule", "--crontab", "--dir", "/srv/backups"]).output();
    cron.code(0)
        .stdout_has("0 3 * * * newapi-ops backup --dir /srv/backups")
        .stdout_has("backup prune --dir /srv/backups --keep-last 14");
}

/// Rows go in as LOAD DATA LOCAL INFILE when the server allows it, as multi-row INSERT when
/// asked to or when the server has `local_infile` OFF (as MySQL 8 has by default): a note says
/// so and the summary names the method, never a failure; either way every table's rows and
/// CHECKSUM TABLE equal the manifest's (the `kinds` table holds NUL, tab-free control bytes,
/// quotes, backslashes, binary and bit values, NULLs and empty strings).
#[tokio::test(flavor = "multi_thread")]
async fn restore_loads_with_load_data_and_falls_back_to_insert() {
    let fx = Fixture::start(20_000, "CONCAT('{\"t\":\"', seq, '\\\\t\\\\\\\\\"}')").await;
    let mut c = fx.conn().await;
    // Text that LOAD DATA's own format would misread if it were not escaped.
    c.query_drop("INSERT INTO `new-api`.kinds (id, b, t) VALUES (3, X'5C4E09', CONCAT('\\\\N', CHAR(9), 'NULL', CHAR(10), '\\\\')), (4, X'', 'NULL'), (5, NULL, '\\\\')")
        .await
        .expect("insert nasty text");
    let done = fx.run(&["backup", "--chunk-rows", "6000", "-o", "json"]);
    done.code(0);
    let id = done.json()["id"].as_str().unwrap().to_string();
    let m = Manifest::load(&fx.backups().join(&id)).unwrap();

    // MariaDB allows LOAD DATA LOCAL by default.
    let loaded = fx.run(&[
        "restore",
        &id,
        "--database",
        "via_infile",
        "--yes",
        "-o",
        "json",
    ]);
    loaded.code(0);
    let s = loaded.json();
    assert_eq!(s["method"], "load-data", "{s:#}");
    assert_eq!(s["notes"].as_array().unwrap().len(), 0, "{s:#}");
    assert!(s["phases"]["load_ms"].as_u64().is_some(), "{s:#}");
    assert!(s["phases"]["indexes_ms"].as_u64().is_some(), "{s:#}");
    same_as_manifest(&fx, &m, "via_infile").await;
    fx.run(&[
        "restore",
        &id,
        "--database",
        "via_insert",
        "--yes",
        "--load-with",
        "insert",
    ])
    .code(0)
    .stdout_has("multi-row INSERT: load ");
    same_as_manifest(&fx, &m, "via_insert").await;

    // A server that refuses LOAD DATA LOCAL: INSERT, with a note, and the same data.
    c.query_drop("SET GLOBAL local_infile = 0").await.unwrap();
    let fell_back = fx.run(&[
        "restore",
        &id,
        "--database",
        "fell_back",
        "--yes",
        "-o",
        "json",
    ]);
    fell_back
        .code(0)
        .stderr_has("does not allow LOAD DATA LOCAL INFILE")
        .stderr_has("multi-row INSERT instead");
    let s = fell_back.json();
    assert_eq!(s["method"], "insert", "{s:#}");
    assert_eq!(s["notes"].as_array().unwrap().len(), 1, "{s:#}");
    same_as_manifest(&fx, &m, "fell_back").await;
    fx.run(&[
        "restore",
        &id,
        "--database",
        "insisted",
        "--yes",
        "--load-with",
        "load-data",
    ])
    .code(64)
    .stderr_has("local_infile is OFF");
    let _ = c.disconnect().await;
}

/// Every table of `db` has the manifest's rows and CHECKSUM TABLE, and `kinds` equals the
/// source's value for value.
pub(crate) async fn same_as_manifest(fx: &Fixture, m: &Manifest, db: &str) {
    let mut c = fx.conn().await;
    for t in &m.tables {
        let (rows, sum) = checksum(&mut c, db, &t.name).await;
        assert_eq!((rows, Some(sum)), (t.rows, t.checksum), "{db}.{}", t.name);
    }
    let kinds: u64 = c
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.kinds k JOIN `new-api`.kinds o USING (id) WHERE k.b <=> o.b AND k.bits <=> o.bits AND k.j <=> o.j AND k.d <=> o.d AND k.f <=> o.f AND k.t <=> o.t AND k.e <=> o.e AND k.n <=> o.n AND k.g = o.g"))
        .await
        .unwrap()
        .unwrap();
    let source: u64 = c
        .query_first("SELECT COUNT(*) FROM `new-api`.kinds")
        .await
        .unwrap()
        .unwrap();
    assert!(source >= 3, "the source has its rows of every kind");
    assert_eq!(kinds, source, "{db}.kinds differs from the source");
    let _ = c.disconnect().await;
}

/// The API server dies while a backup reads MySQL through the tool's port-forward (the way it
/// reaches MySQL from outside the cluster): exit 69, and the error names the API server — not
/// MySQL, which is fine — and that nothing incomplete was kept.
#[tokio::test(flavor = "multi_thread")]
async fn losing_the_api_server_mid_backup_names_the_api_server() {
    use mysql_async::prelude::Queryable;
    let sb = crate::support::private_sandbox("backup-apigone");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(sb.mysql.port)
        .user(Some("root"))
        .pass(Some("123456"))
        .db_name(Some("new-api"));
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("connect to the sandbox's MariaDB");
    c.query_drop("CREATE TABLE bulk (id bigint PRIMARY KEY, pad varchar(200))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO bulk SELECT seq, REPEAT('y', 150) FROM seq_1_to_300000")
        .await
        .unwrap();
    let _ = c.disconnect().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let mut child = Command::new(crate::support::bin())
        .args([
            "backup",
            "--threads",
            "1",
            "--chunk-rows",
            "4000",
            "--level",
            "19",
        ])
        .arg("--dir")
        .arg(&backups)
        .env("KUBECONFIG", &sb.kubeconfig)
        .env("HOME", dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while chunks_of(&backups, "bulk") < 2 {
        if child.try_wait().unwrap().is_some() {
            let out = Done::from(child.wait_with_output().unwrap());
            panic!(
                "the backup ended before it was stopped:\n{}\n{}",
                out.stdout, out.stderr
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    crate::support::signal_process(&sb, "kube-apiserver", nix::sys::signal::Signal::SIGKILL);
    let done = Done::from(child.wait_with_output().unwrap());
    done.code(69)
        .stderr_has(&format!(
            "lost the API server at {}",
            sb.api_server.trim_end_matches('/')
        ))
        .stderr_has("the port-forward to MySQL went through it")
        .stderr_has("nothing incomplete was kept");
}
