//! Taking a backup: one consistent snapshot shared by N connections, tables split into
//! primary-key ranges that the workers share, rows streamed into compressed chunk files.
//!
//! Consistency is mydumper's method: the first connection takes a brief lock that stops commits
//! (MariaDB's `BACKUP STAGE BLOCK_COMMIT`, else `FLUSH TABLES WITH READ LOCK`), every worker
//! starts `START TRANSACTION WITH CONSISTENT SNAPSHOT`, the binary-log position is read, and the
//! lock is released — all workers then read the same committed state, whatever is written
//! meanwhile. `--single-connection` needs no lock: one connection's own snapshot.
//!
//! Everything is written into `DIR/.tmp-ID/` ([`super::staging`]: the id claimed there, unique
//! across processes) and renamed to `DIR/ID/` only once the manifest is written; on any error,
//! and when the backup is dropped (Ctrl-C, SIGTERM), the temporary directory is removed, so an
//! interrupted backup never looks complete. Each backup first sweeps the temporary directories
//! that dead processes left.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mysql_async::Value;
use mysql_async::prelude::Queryable;
use serde::Serialize;

use super::conn::Db;
use super::error::{BackupError, Result};
use super::files::{self, ChunkSink, FileWriter, Sealer};
use super::manifest::{self, Chunk, Database, FileEntry, Manifest, Server, Snapshot, Table};
use super::sql::{self, Kind, ident, quote};
use super::staging::{self, Staging};
use super::{BackupOptions, Progress};

/// What a finished backup reports (also the one-line JSON of `backup -o json`).
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub id: String,
    pub path: PathBuf,
    pub database: String,
    /// How the server was reached (`root@mysql:3306/new-api (from SQL_DSN, through a
    /// port-forward to pod mysql-...)`); never a password.
    pub source: String,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub duration_ms: u64,
    pub consistency: String,
    pub encrypted: bool,
    pub snapshot: Snapshot,
    /// Temporary directories of dead backups removed before this one started.
    pub swept: Vec<staging::Stale>,
}

impl BackupSummary {
    /// `backup 20261125T030000Z: 11 tables, 34 rows, 1.7 KiB in 0.3s (backup-stage)`: what
    /// `newapi-ops backup` and the runbooks' `mysql.backup` say of a finished backup.
    pub fn headline(&self) -> String {
        format!(
            "backup {}: {} tables, {} rows, {} in {:.1}s ({}{})",
            self.id,
            self.tables,
            self.rows,
            crate::units::bytes(self.bytes),
            self.duration_ms as f64 / 1000.0,
            self.consistency,
            if self.encrypted { ", encrypted" } else { "" },
        )
    }
}

/// A table as planned for the dump.
struct TablePlan {
    name: String,
    /// `` `db`.`t` ``.
    qualified: String,
    /// Non-generated columns, quoted and comma-separated.
    select_list: String,
    /// `INSERT INTO `t` (`a`,`b`) VALUES `.
    insert_prefix: Vec<u8>,
    /// The single integer primary-key column, if the table has one.
    int_pk: Option<String>,
    estimated_rows: u64,
}

enum Job {
    /// `CHECKSUM TABLE` in the snapshot.
    Checksum(Arc<TablePlan>),
    /// One primary-key range of a table (`None` bounds are open).
    Data {
        table: Arc<TablePlan>,
        index: usize,
        low: Option<i128>,
        high: Option<i128>,
    },
}

/// Results shared by the workers.
#[derive(Default)]
struct Results {
    chunks: Vec<(String, usize, Chunk, FileEntry)>,
    checksums: Vec<(String, Option<u64>)>,
}

/// Takes a backup as `opts` says; `progress` hears about each table.
pub async fn run_backup(opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupSummary> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let sealer = Sealer::new(opts.compression_level, &opts.encrypt_to)?;
    let threads = if opts.single_connection {
        1
    } else {
        opts.threads.max(1)
    };
    let database = opts
        .database
        .clone()
        .or_else(|| opts.mysql.database.clone())
        .ok_or_else(|| BackupError::DatabaseUnknown {
            endpoint: opts.mysql.to_string(),
        })?;

    // The control connection: what there is to back up.
    progress.phase("connecting");
    let mut c0 = Db::connect(&opts.mysql).await?;
    let version: String = c0
        .rows::<String>("SELECT VERSION()", "reading the server version")
        .await?
        .pop()
        .unwrap_or_default();
    let mariadb = version.to_lowercase().contains("mariadb");
    let db_info = database_info(&mut c0, &database).await?;
    let tables = plan_tables(&mut c0, &database, &opts.tables).await?;

    // The directory: DIR/.tmp-ID, renamed to DIR/ID at the end; first, what dead backups left.
    files::create_dir_private(&opts.dir)?;
    let swept = staging::sweep(&opts.dir, false);
    let tmp = Staging::claim(&opts.dir, &started_at)?;
    let id = tmp.id.clone();

    // The snapshot.
    progress.phase("taking the snapshot");
    // With several workers the control connection only holds the lock: a BACKUP STAGE or
    // UNLOCK statement ends the transaction of the connection that runs it.
    let (mut workers, control) = if threads == 1 {
        (vec![c0], None)
    } else {
        let mut ws = Vec::with_capacity(threads);
        for _ in 0..threads {
            ws.push(Db::connect(&opts.mysql).await?);
        }
        (ws, Some(c0))
    };
    for w in &mut workers {
        w.exec(
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "setting the isolation level",
        )
        .await?;
    }
    let (consistency, snapshot) = match control {
        None => single_snapshot(&mut workers[0], mariadb).await?,
        Some(mut c0) => {
            let r = shared_snapshot(&mut c0, &mut workers, mariadb, &version).await;
            c0.close().await;
            r?
        }
    };

    // Schema files, read in the snapshot by the first connection.
    let mut schema_files = Vec::new();
    for t in &tables {
        let row: Option<(String, String)> = workers[0]
            .conn
            .query_first(format!("SHOW CREATE TABLE {}", t.qualified))
            .await
            .map_err(|e| workers[0].error(&format!("reading the definition of {}", t.name), &e))?;
        let ddl = row.map(|(_, d)| d).unwrap_or_default();
        let name = format!(
            "{}.schema.sql{}",
            files::safe_name(&t.name),
            sealer.suffix()
        );
        let mut w = FileWriter::create(&tmp.path, &name, &sealer)?;
        w.write_all(ddl.as_bytes())?;
        w.write_all(b";\n")?;
        schema_files.push((t.name.clone(), w.finish()?));
    }

    // The plan: checksums first (they run beside the data), then data ranges, largest first.
    let mut jobs = VecDeque::new();
    for t in &tables {
        jobs.push_back(Job::Checksum(t.clone()));
    }
    for t in &tables {
        progress.table_started(&t.name, t.estimated_rows);
        let ranges = split_ranges(&mut workers[0], t, opts.chunk_rows).await?;
        for (index, (low, high)) in ranges.into_iter().enumerate() {
            jobs.push_back(Job::Data {
                table: t.clone(),
                index,
                low,
                high,
            });
        }
    }
    let queue = Mutex::new(jobs);
    let results = Mutex::new(Results::default());
    progress.phase("dumping");
    let ctx = WorkerCtx {
        dir: &tmp.path,
        sealer: &sealer,
        statement_bytes: opts.statement_bytes.max(4096),
        queue: &queue,
        results: &results,
        progress,
    };
    futures::future::try_join_all(workers.iter_mut().map(|w| worker(w, &ctx))).await?;
    for w in &mut workers {
        w.exec("COMMIT", "ending the snapshot").await?;
    }
    for w in workers {
        w.close().await;
    }

    // The manifest, then the rename that makes the backup complete.
    let results = results
        .into_inner()
        .map_err(|_| BackupError::Usage("a backup worker panicked".into()))?;
    let mut all_files: Vec<FileEntry> = schema_files.iter().map(|(_, f)| f.clone()).collect();
    let mut manifest_tables = Vec::new();
    for t in &tables {
        let mut chunks: Vec<(usize, Chunk)> = results
            .chunks
            .iter()
            .filter(|(n, ..)| *n == t.name)
            .map(|(_, i, c, _)| (*i, c.clone()))
            .collect();
        chunks.sort_by_key(|(i, _)| *i);
        let rows = chunks.iter().map(|(_, c)| c.rows).sum();
        progress.table_done(&t.name, rows);
        manifest_tables.push(Table {
            name: t.name.clone(),
            rows,
            checksum: results
                .checksums
                .iter()
                .find(|(n, _)| *n == t.name)
                .and_then(|(_, c)| *c),
            schema_file: schema_files
                .iter()
                .find(|(n, _)| *n == t.name)
                .map(|(_, f)| f.name.clone())
                .unwrap_or_default(),
            chunks: chunks.into_iter().map(|(_, c)| c).collect(),
        });
    }
    all_files.extend(results.chunks.iter().map(|(.., f)| f.clone()));
    all_files.sort_by(|a, b| a.name.cmp(&b.name));
    let finished_at = jiff::Timestamp::now();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let m = Manifest {
        format: manifest::FORMAT,
        id: id.clone(),
        tool: concat!("newapi-ops ", env!("CARGO_PKG_VERSION")).to_string(),
        started_at: started_at.to_string(),
        finished_at: finished_at.to_string(),
        duration_ms,
        server: Server {
            version,
            flavor: if mariadb { "mariadb" } else { "mysql" }.into(),
        },
        source: opts.source.clone(),
        database: db_info,
        consistency: consistency.clone(),
        snapshot: snapshot.clone(),
        compression: "zstd".into(),
        compression_level: opts.compression_level,
        encryption: sealer.recipients.as_ref().map(|_| manifest::Encryption {
            scheme: "age".into(),
            recipients: opts
                .encrypt_to
                .iter()
                .map(|r| r.trim().to_string())
                .collect(),
        }),
        charset: "utf8mb4".into(),
        tables: manifest_tables,
        files: all_files,
    };
    let json = serde_json::to_vec_pretty(&m)
        .map_err(|e| BackupError::Usage(format!("serializing the manifest: {e}")))?;
    files::write_private(&tmp.path, manifest::MANIFEST, &json)?;
    let final_path = tmp.into_place(&opts.dir)?;
    Ok(BackupSummary {
        id,
        path: final_path,
        database,
        source: opts.source.clone(),
        tables: m.tables.len(),
        rows: m.total_rows(),
        bytes: m.total_bytes(),
        files: m.files.len(),
        duration_ms,
        consistency,
        encrypted: m.encryption.is_some(),
        snapshot,
        swept,
    })
}

async fn database_info(c0: &mut Db, database: &str) -> Result<Database> {
    let row: Vec<(String, String, String)> = c0
        .rows(
            &format!(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote(database)
            ),
            "reading the database",
        )
        .await?;
    match row.into_iter().next() {
        Some((name, charset, collation)) => Ok(Database {
            name,
            charset,
            collation,
        }),
        None => {
            let available: Vec<String> = c0
                .rows(
                    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql','information_schema','performance_schema','sys') ORDER BY 1",
                    "listing databases",
                )
                .await
                .unwrap_or_default();
            Err(BackupError::NoDatabase {
                endpoint: c0.endpoint.clone(),
                database: database.to_string(),
                available,
            })
        }
    }
}

/// The base tables to back up (all, or those named), largest first.
async fn plan_tables(c0: &mut Db, database: &str, only: &[String]) -> Result<Vec<Arc<TablePlan>>> {
    let db = quote(database);
    let listed: Vec<(String, String, Option<u64>)> = c0
        .rows(
            &format!(
                "SELECT TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db}"
            ),
            "listing tables",
        )
        .await?;
    let base: Vec<(String, u64)> = listed
        .iter()
        .filter(|(_, ty, _)| ty == "BASE TABLE")
        .map(|(n, _, r)| (n.clone(), r.unwrap_or(0)))
        .collect();
    for name in only {
        if !base.iter().any(|(n, _)| n == name) {
            let mut available: Vec<String> = base.iter().map(|(n, _)| n.clone()).collect();
            available.sort();
            return Err(BackupError::NoTable {
                database: database.to_string(),
                table: name.clone(),
                available,
            });
        }
    }
    let columns: Vec<(String, String, String)> = c0
        .rows(
            &format!(
                "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {db} ORDER BY TABLE_NAME, ORDINAL_POSITION"
            ),
            "listing columns",
        )
        .await?;
    let pks: Vec<(String, String, String)> = c0
        .rows(
            &format!(
                "SELECT s.TABLE_NAME, s.COLUMN_NAME, c.DATA_TYPE FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = {db} AND s.INDEX_NAME = 'PRIMARY' ORDER BY s.TABLE_NAME, s.SEQ_IN_INDEX"
            ),
            "reading primary keys",
        )
        .await?;
    let mut out = Vec::new();
    for (name, est) in base {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let cols: Vec<&str> = columns
            .iter()
            .filter(|(t, _, extra)| *t == name && !extra.to_uppercase().contains("GENERATED"))
            .map(|(_, c, _)| c.as_str())
            .collect();
        let quoted: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let select_list = quoted.join(",");
        let pk: Vec<&(String, String, String)> = pks.iter().filter(|(t, ..)| *t == name).collect();
        let int_pk = match pk.as_slice() {
            [(_, col, ty)]
                if matches!(
                    ty.to_lowercase().as_str(),
                    "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
                ) =>
            {
                Some(col.clone())
            }
            _ => None,
        };
        out.push(Arc::new(TablePlan {
            qualified: format!("{}.{}", ident(database), ident(&name)),
            insert_prefix: format!("INSERT INTO {} ({select_list}) VALUES ", ident(&name))
                .into_bytes(),
            select_list,
            int_pk,
            estimated_rows: est,
            name,
        }));
    }
    out.sort_by(|a, b| {
        b.estimated_rows
            .cmp(&a.estimated_rows)
            .then(a.name.cmp(&b.name))
    });
    Ok(out)
}

const START: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT";

/// One connection's own snapshot, no lock; MariaDB reports its binary-log position.
async fn single_snapshot(w: &mut Db, mariadb: bool) -> Result<(String, Snapshot)> {
    w.exec(START, "starting the snapshot").await?;
    let mut snap = Snapshot::default();
    if mariadb {
        let st: Vec<(String, String)> = w
            .rows(
                "SHOW STATUS LIKE 'binlog_snapshot_%'",
                "reading the snapshot position",
            )
            .await
            .unwrap_or_default();
        for (k, v) in st {
            match k.as_str() {
                "Binlog_snapshot_file" if !v.is_empty() => snap.binlog_file = Some(v),
                "Binlog_snapshot_position" => snap.binlog_position = v.parse().ok(),
                _ => {}
            }
        }
        if snap.binlog_file.is_none() {
            snap.binlog_position = None;
        }
        snap.gtid = gtid(w, mariadb).await;
    }
    Ok(("single-connection".into(), snap))
}

/// The same snapshot on every worker: `control` stops commits (and holds nothing else), each
/// worker starts its snapshot, the position is read, commits resume.
async fn shared_snapshot(
    control: &mut Db,
    workers: &mut [Db],
    mariadb: bool,
    version: &str,
) -> Result<(String, Snapshot)> {
    let backup_stage = mariadb && mariadb_at_least(version, 10, 4);
    let (lock, unlock, method): (&[&str], &str, &str) = if backup_stage {
        (
            &["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"],
            "BACKUP STAGE END",
            "backup-stage",
        )
    } else {
        (
            &["FLUSH TABLES WITH READ LOCK"],
            "UNLOCK TABLES",
            "flush-tables-with-read-lock",
        )
    };
    control
        .exec(
            "SET SESSION lock_wait_timeout = 60",
            "setting the lock timeout",
        )
        .await?;
    for s in lock {
        if let Err(e) = control.conn.query_drop(*s).await {
            let err = control.error(&format!("taking the lock ({s})"), &e);
            return Err(match err {
                BackupError::Denied {
                    endpoint, detail, ..
                } => BackupError::LockRefused { endpoint, detail },
                other => other,
            });
        }
    }
    let started = async {
        for w in workers.iter_mut() {
            w.exec(START, "starting the snapshot").await?;
        }
        Ok::<_, BackupError>(binlog_position(control, mariadb).await)
    }
    .await;
    // Unlock whatever happened: commits must not stay blocked.
    let unlocked = control.exec(unlock, "releasing the lock").await;
    let snap = started?;
    unlocked?;
    Ok((method.to_string(), snap))
}

fn mariadb_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

async fn binlog_position(c: &mut Db, mariadb: bool) -> Snapshot {
    let mut snap = Snapshot::default();
    for q in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        if let Ok(mut rows) = c.conn.query::<mysql_async::Row, _>(q).await {
            if let Some(row) = rows.pop() {
                let mut row = row;
                snap.binlog_file = row.take::<String, _>(0);
                snap.binlog_position = row.take::<u64, _>(1);
            }
            break;
        }
    }
    snap.gtid = gtid(c, mariadb).await;
    snap
}

async fn gtid(c: &mut Db, mariadb: bool) -> Option<String> {
    let q = if mariadb {
        "SELECT @@GLOBAL.gtid_binlog_pos"
    } else {
        "SELECT @@GLOBAL.gtid_executed"
    };
    c.conn
        .query_first::<Option<String>, _>(q)
        .await
        .ok()
        .flatten()
        .flatten()
        .filter(|g| !g.trim().is_empty())
}

/// Primary-key ranges of about `chunk_rows` rows each (by the estimate), read in the snapshot.
async fn split_ranges(
    c0: &mut Db,
    t: &TablePlan,
    chunk_rows: u64,
) -> Result<Vec<(Option<i128>, Option<i128>)>> {
    let whole = vec![(None, None)];
    let Some(pk) = &t.int_pk else {
        return Ok(whole);
    };
    if t.estimated_rows <= chunk_rows.max(1) {
        return Ok(whole);
    }
    let row: Option<(Option<String>, Option<String>)> = c0
        .conn
        .query_first(format!(
            "SELECT MIN({p}), MAX({p}) FROM {}",
            t.qualified,
            p = ident(pk)
        ))
        .await
        .map_err(|e| c0.error(&format!("reading the key range of {}", t.name), &e))?;
    let (Some(Some(min)), Some(Some(max))) = (
        row.as_ref()
            .map(|r| r.0.as_deref().and_then(|s| s.parse::<i128>().ok())),
        row.as_ref()
            .map(|r| r.1.as_deref().and_then(|s| s.parse::<i128>().ok())),
    ) else {
        return Ok(whole);
    };
    let pieces = i128::from(t.estimated_rows.div_ceil(chunk_rows.max(1))).max(1);
    let span = (max - min + 1).max(1);
    let step = (span / pieces).max(1);
    let mut out = Vec::new();
    let mut low = None;
    let mut next = min + step;
    while next <= max {
        out.push((low, Some(next)));
        low = Some(next);
        next += step;
    }
    out.push((low, None));
    Ok(out)
}

struct WorkerCtx<'a> {
    dir: &'a Path,
    sealer: &'a Sealer,
    statement_bytes: usize,
    queue: &'a Mutex<VecDeque<Job>>,
    results: &'a Mutex<Results>,
    progress: &'a dyn Progress,
}

fn next_job(q: &Mutex<VecDeque<Job>>) -> Option<Job> {
    q.lock().ok()?.pop_front()
}

async fn worker(db: &mut Db, ctx: &WorkerCtx<'_>) -> Result<()> {
    while let Some(job) = next_job(ctx.queue) {
        match job {
            Job::Checksum(t) => {
                let row: Option<(String, Option<u64>)> = db
                    .conn
                    .query_first(format!("CHECKSUM TABLE {}", t.qualified))
                    .await
                    .map_err(|e| db.error(&format!("checksumming {}", t.name), &e))?;
                if let Ok(mut r) = ctx.results.lock() {
                    r.checksums.push((t.name.clone(), row.and_then(|(_, c)| c)));
                }
            }
            Job::Data {
                table,
                index,
                low,
                high,
            } => {
                let (chunk, entry) = dump_range(db, ctx, &table, index, low, high).await?;
                if let Ok(mut r) = ctx.results.lock() {
                    r.chunks.push((table.name.clone(), index, chunk, entry));
                }
            }
        }
    }
    Ok(())
}

async fn dump_range(
    db: &mut Db,
    ctx: &WorkerCtx<'_>,
    t: &TablePlan,
    index: usize,
    low: Option<i128>,
    high: Option<i128>,
) -> Result<(Chunk, FileEntry)> {
    let mut sql = format!("SELECT {} FROM {}", t.select_list, t.qualified);
    if let Some(pk) = &t.int_pk {
        let pk = ident(pk);
        match (low, high) {
            (Some(l), Some(h)) => sql.push_str(&format!(" WHERE {pk} >= {l} AND {pk} < {h}")),
            (Some(l), None) => sql.push_str(&format!(" WHERE {pk} >= {l}")),
            (None, Some(h)) => sql.push_str(&format!(" WHERE {pk} < {h}")),
            (None, None) => {}
        }
    }
    let name = format!(
        "{}.{:05}.sql{}",
        files::safe_name(&t.name),
        index + 1,
        ctx.sealer.suffix()
    );
    let mut sink = ChunkSink::create(ctx.dir, &name, ctx.sealer)?;
    let during = format!("reading rows of {}", t.name);
    let mut result = db
        .conn
        .query_iter(sql)
        .await
        .map_err(|e| BackupError::mysql(&db.endpoint, &during, &e))?;
    let kinds: Vec<Kind> = result
        .columns_ref()
        .iter()
        .map(|c| Kind::of(c.column_type(), c.character_set()))
        .collect();
    let cap = ctx.statement_bytes + ctx.statement_bytes / 4;
    let mut buf: Vec<u8> = Vec::with_capacity(cap);
    let mut in_statement = 0u64;
    let mut rows = 0u64;
    loop {
        let row = match result.next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(BackupError::mysql(&db.endpoint, &during, &e)),
        };
        if in_statement == 0 {
            buf.extend_from_slice(&t.insert_prefix);
        } else {
            buf.push(b',');
        }
        buf.push(b'(');
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            match row.as_ref(i) {
                None | Some(Value::NULL) => buf.extend_from_slice(b"NULL"),
                Some(Value::Bytes(b)) => sql::push_value(&mut buf, *kind, b),
                Some(other) => buf.extend_from_slice(other.as_sql(true).as_bytes()),
            }
        }
        buf.push(b')');
        in_statement += 1;
        rows += 1;
        if buf.len() >= ctx.statement_bytes {
            buf.extend_from_slice(b";\n");
            let full = std::mem::replace(&mut buf, Vec::with_capacity(cap));
            sink.write(full).await?;
            ctx.progress.rows(&t.name, in_statement);
            in_statement = 0;
        }
    }
    if in_statement > 0 {
        buf.extend_from_slice(b";\n");
        sink.write(buf).await?;
        ctx.progress.rows(&t.name, in_statement);
    }
    let entry = sink.finish().await?;
    Ok((
        Chunk {
            file: entry.name.clone(),
            rows,
        },
        entry,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(mariadb_at_least("10.11.6-MariaDB-0+deb12u1", 10, 4));
        assert!(!mariadb_at_least("10.3.39-MariaDB", 10, 4));
        assert!(mariadb_at_least("11.4.2-MariaDB", 10, 4));
    }
}
