//! Restoring a backup: every file checked against the manifest first, then tables created with
//! their primary key only, the chunks loaded in parallel (unique and foreign-key checks off, one
//! transaction per chunk), the secondary indexes built afterwards in one `ALTER TABLE` per
//! table, the foreign keys last, and the row counts compared with the manifest.
//!
//! In two steps, so that the caller can ask for confirmation knowing what will change:
//! [`prepare_restore`] checks everything and changes nothing; [`PreparedRestore::run`] loads.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use super::conn::Db;
use super::error::{BackupError, Result};
use super::files::{self, Identities, OpenError};
use super::manifest::Manifest;
use super::sql::{self, SplitDdl, ident, quote};
use super::{Progress, verify};
use crate::backends::Endpoint;

/// Where and how to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub mysql: Endpoint,
    /// The database to restore into (created if missing).
    pub database: String,
    /// Connections loading in parallel.
    pub threads: usize,
    /// Drop and replace the backup's tables in a non-empty database.
    pub force: bool,
    /// The age identity file, for an encrypted backup.
    pub identity: Option<PathBuf>,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub id: String,
    pub database: String,
    pub target: String,
    pub tables: usize,
    pub rows: u64,
    pub duration_ms: u64,
    /// Tables that existed and were replaced (`--force`).
    pub replaced: Vec<String>,
}

/// A restore checked and ready; nothing has changed yet.
pub struct PreparedRestore {
    dir: PathBuf,
    pub manifest: Manifest,
    opts: RestoreOptions,
    identities: Option<Identities>,
    /// Tables of the target database that the restore drops and replaces.
    pub replaced: Vec<String>,
    /// Whether the target database exists already.
    pub database_exists: bool,
    control: Db,
}

/// Checks the backup (every file against the manifest; the identity, if encrypted) and the
/// target (refusing a non-empty database without `--force`). Changes nothing.
pub async fn prepare_restore(dir: &Path, opts: RestoreOptions) -> Result<PreparedRestore> {
    let manifest = Manifest::load(dir)?;
    let problems = verify::check_files(dir, &manifest);
    if !problems.is_empty() {
        return Err(BackupError::Corrupt {
            id: manifest.id.clone(),
            problems,
        });
    }
    let identities = open_identities(dir, &manifest, opts.identity.as_deref())?;
    let mut control = Db::connect(&opts.mysql).await?;
    let exists: Vec<String> = control
        .rows(
            &format!(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote(&opts.database)
            ),
            "looking for the target database",
        )
        .await?;
    let existing: Vec<String> = control
        .rows(
            &format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME",
                quote(&opts.database)
            ),
            "listing the target's tables",
        )
        .await?;
    if !existing.is_empty() && !opts.force {
        return Err(BackupError::TargetNotEmpty {
            endpoint: control.endpoint.clone(),
            database: opts.database.clone(),
            tables: existing,
        });
    }
    let replaced = existing
        .into_iter()
        .filter(|t| manifest.table(t).is_some())
        .collect();
    Ok(PreparedRestore {
        dir: dir.to_path_buf(),
        manifest,
        opts,
        identities,
        replaced,
        database_exists: !exists.is_empty(),
        control,
    })
}

/// Loads the identities an encrypted backup needs and proves they open it.
pub fn open_identities(
    dir: &Path,
    manifest: &Manifest,
    identity: Option<&Path>,
) -> Result<Option<Identities>> {
    if manifest.encryption.is_none() {
        return Ok(None);
    }
    let Some(file) = identity else {
        return Err(BackupError::NeedIdentity {
            id: manifest.id.clone(),
            recipients: manifest.recipients(),
        });
    };
    let ids = Identities::load(file)?;
    if let Some(first) = manifest.tables.first() {
        open(dir, &first.schema_file, Some(&ids), manifest)?;
    }
    Ok(Some(ids))
}

/// Opens one file of the backup for reading, mapping failures to typed errors.
pub fn open(
    dir: &Path,
    name: &str,
    ids: Option<&Identities>,
    manifest: &Manifest,
) -> Result<Box<dyn std::io::BufRead + Send>> {
    let path = dir.join(name);
    files::open_sealed(&path, ids).map_err(|e| match e {
        OpenError::WrongIdentity => BackupError::WrongIdentity {
            id: manifest.id.clone(),
            file: ids.map(|i| i.file.clone()).unwrap_or_default(),
            recipients: manifest.recipients(),
        },
        OpenError::NeedIdentity => BackupError::NeedIdentity {
            id: manifest.id.clone(),
            recipients: manifest.recipients(),
        },
        OpenError::Io(e) => BackupError::file("reading", &path, e),
        OpenError::Damaged(detail) => BackupError::Corrupt {
            id: manifest.id.clone(),
            problems: vec![format!("{name}: {detail}")],
        },
    })
}

impl PreparedRestore {
    /// The confirmation question: what will change where.
    pub fn question(&self) -> String {
        let m = &self.manifest;
        let mut q = format!(
            "Restore backup {} ({} tables, {} rows, taken {}) into database `{}` on {}?",
            m.id,
            m.tables.len(),
            m.total_rows(),
            m.started_at,
            self.opts.database,
            self.control.endpoint
        );
        if !self.replaced.is_empty() {
            q.push_str(&format!(
                " This DROPS and replaces {} existing table(s): {}.",
                self.replaced.len(),
                self.replaced.join(", ")
            ));
        }
        q
    }

    /// Gives up without changing anything.
    pub async fn abandon(self) {
        self.control.close().await;
    }

    /// Loads the backup.
    pub async fn run(self, progress: &dyn Progress) -> Result<RestoreSummary> {
        let started = Instant::now();
        let PreparedRestore {
            dir,
            manifest,
            opts,
            identities,
            replaced,
            mut control,
            ..
        } = self;
        let target = ident(&opts.database);
        let db = &manifest.database;
        progress.phase("creating tables");
        control
            .exec(
                &format!(
                    "CREATE DATABASE IF NOT EXISTS {target} CHARACTER SET {} COLLATE {}",
                    db.charset, db.collation
                ),
                "creating the database",
            )
            .await?;
        control
            .exec(&format!("USE {target}"), "using the database")
            .await?;
        control
            .exec(
                "SET SESSION foreign_key_checks = 0",
                "disabling foreign-key checks",
            )
            .await?;
        let mut ddls: BTreeMap<String, SplitDdl> = BTreeMap::new();
        for t in &manifest.tables {
            let mut text = String::new();
            open(&dir, &t.schema_file, identities.as_ref(), &manifest)?
                .read_to_string(&mut text)
                .map_err(|e| BackupError::file("reading", dir.join(&t.schema_file), e))?;
            let ddl = text.trim_end().trim_end_matches(';').to_string();
            let split = sql::split_create_table(&ddl);
            control
                .exec(
                    &format!("DROP TABLE IF EXISTS {}", ident(&t.name)),
                    &format!("dropping {}", t.name),
                )
                .await?;
            control
                .exec(&split.create, &format!("creating table {}", t.name))
                .await?;
            ddls.insert(t.name.clone(), split);
        }

        // Data: every chunk of every table, largest tables first, shared by the workers.
        let mut tables: Vec<&super::manifest::Table> = manifest.tables.iter().collect();
        tables.sort_by_key(|t| std::cmp::Reverse(t.rows));
        let mut jobs = VecDeque::new();
        for t in &tables {
            progress.table_started(&t.name, t.rows);
            for c in &t.chunks {
                jobs.push_back((t.name.clone(), c.file.clone()));
            }
        }
        let threads = opts.threads.max(1);
        let mut workers = vec![control];
        for _ in 1..threads {
            workers.push(Db::connect(&opts.mysql).await?);
        }
        for w in &mut workers[1..] {
            w.exec(&format!("USE {target}"), "using the database")
                .await?;
        }
        for w in &mut workers {
            w.exec(
                "SET SESSION unique_checks = 0, foreign_key_checks = 0",
                "disabling unique and foreign-key checks",
            )
            .await?;
        }
        progress.phase("loading");
        let queue = Mutex::new(jobs);
        let loaded: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
        let ctx = LoadCtx {
            dir: &dir,
            manifest: &manifest,
            identities: identities.as_ref(),
            queue: &queue,
            loaded: &loaded,
            progress,
        };
        futures::future::try_join_all(workers.iter_mut().map(|w| load_worker(w, &ctx))).await?;
        let loaded = loaded.into_inner().unwrap_or_default();

        // Secondary indexes, one ALTER per table, then foreign keys.
        progress.phase("indexing");
        let alters: VecDeque<(String, String)> = tables
            .iter()
            .filter_map(|t| {
                let ddl = ddls.get(&t.name)?;
                Some((t.name.clone(), ddl.add_indexes(&t.name)?))
            })
            .collect();
        run_statements(&mut workers, alters, "adding the indexes of").await?;
        let fks: VecDeque<(String, String)> = tables
            .iter()
            .filter_map(|t| {
                let ddl = ddls.get(&t.name)?;
                Some((t.name.clone(), ddl.add_foreign_keys(&t.name)?))
            })
            .collect();
        run_statements(&mut workers, fks, "adding the foreign keys of").await?;
        let endpoint = workers[0].endpoint.clone();
        for w in workers {
            w.close().await;
        }

        let mut problems = Vec::new();
        for t in &manifest.tables {
            let got = loaded.get(&t.name).copied().unwrap_or(0);
            progress.table_done(&t.name, got);
            if got != t.rows {
                problems.push(format!(
                    "table {}: {got} rows loaded, the manifest says {}",
                    t.name, t.rows
                ));
            }
        }
        if !problems.is_empty() {
            return Err(BackupError::Mismatch {
                id: manifest.id.clone(),
                problems,
            });
        }
        Ok(RestoreSummary {
            id: manifest.id.clone(),
            database: opts.database.clone(),
            target: endpoint,
            tables: manifest.tables.len(),
            rows: manifest.total_rows(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            replaced,
        })
    }
}

use std::io::Read as _;

struct LoadCtx<'a> {
    dir: &'a Path,
    manifest: &'a Manifest,
    identities: Option<&'a Identities>,
    queue: &'a Mutex<VecDeque<(String, String)>>,
    loaded: &'a Mutex<BTreeMap<String, u64>>,
    progress: &'a dyn Progress,
}

async fn load_worker(db: &mut Db, ctx: &LoadCtx<'_>) -> Result<()> {
    loop {
        let job = ctx.queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some((table, file)) = job else {
            return Ok(());
        };
        let rows = load_chunk(db, ctx, &table, &file).await?;
        if let Ok(mut l) = ctx.loaded.lock() {
            *l.entry(table).or_default() += rows;
        }
    }
}

/// Loads one chunk file in one transaction; statements are read (decrypted, decompressed) on a
/// thread of its own, at most two ahead.
async fn load_chunk(db: &mut Db, ctx: &LoadCtx<'_>, table: &str, file: &str) -> Result<u64> {
    let reader = open(ctx.dir, file, ctx.identities, ctx.manifest)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(1);
    let reading = std::thread::Builder::new()
        .name("restore-reader".into())
        .spawn(move || {
            let mut reader = reader;
            loop {
                // Statements are about DEFAULT_STATEMENT_BYTES: no doubling past that.
                let mut line = Vec::with_capacity(super::DEFAULT_STATEMENT_BYTES + 64 * 1024);
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if tx.blocking_send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        })
        .map_err(|e| BackupError::file("starting a reader thread for", ctx.dir.join(file), e))?;
    let during = format!("loading {file}");
    db.exec("BEGIN", &during).await?;
    let mut rows = 0u64;
    while let Some(line) = rx.recv().await {
        let line = line.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                BackupError::Corrupt {
                    id: ctx.manifest.id.clone(),
                    problems: vec![format!("{file}: {e}")],
                }
            }
            _ => BackupError::file("reading", ctx.dir.join(file), e),
        })?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        db.conn
            .query_drop(line)
            .await
            .map_err(|e| db.error(&during, &e))?;
        let n = db.conn.affected_rows();
        rows += n;
        ctx.progress.rows(table, n);
    }
    db.exec("COMMIT", &during).await?;
    let _ = tokio::task::spawn_blocking(move || reading.join()).await;
    Ok(rows)
}

/// Runs `(table, statement)` jobs on the connections in parallel.
async fn run_statements(
    workers: &mut [Db],
    jobs: VecDeque<(String, String)>,
    during: &str,
) -> Result<()> {
    let queue = Mutex::new(jobs);
    futures::future::try_join_all(
        workers
            .iter_mut()
            .map(|db| statement_worker(db, &queue, during)),
    )
    .await?;
    Ok(())
}

async fn statement_worker(
    db: &mut Db,
    queue: &Mutex<VecDeque<(String, String)>>,
    during: &str,
) -> Result<()> {
    loop {
        let job = queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some((table, stmt)) = job else {
            return Ok(());
        };
        db.exec(&stmt, &format!("{during} {table}")).await?;
    }
}
