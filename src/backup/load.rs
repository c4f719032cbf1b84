//! Restoring a backup: every file checked against the manifest first, then tables created with
//! their primary key only, the chunks loaded in parallel (unique and foreign-key checks off, one
//! transaction per chunk), the secondary indexes built afterwards in one `ALTER TABLE` per
//! table, the foreign keys last, and the row counts compared with the manifest.
//!
//! Rows go to the server as `LOAD DATA LOCAL INFILE` when it allows that (MariaDB does by
//! default; MySQL 8 has `local_infile=OFF`): each `INSERT` of a chunk is turned into LOAD DATA's
//! text format on the fly ([`super::infile`]), which the server parses with less work. Otherwise,
//! and for any statement that does not convert, the `INSERT` statements run as they are. A chunk
//! whose LOAD DATA gives a warning or a row count other than expected is rolled back and loaded
//! again with its `INSERT` statements, so LOAD DATA never changes what ends up in the table.
//!
//! In two steps, so that the caller can ask for confirmation knowing what will change:
//! [`prepare_restore`] checks everything and changes nothing; [`PreparedRestore::run`] loads.
//! A load stopped part-way — by an error, or by the `stop` future of
//! [`PreparedRestore::run_until`] (Ctrl-C, SIGTERM) — is a
//! [`BackupError::RestoreIncomplete`], which names the half-loaded database and how to clean it.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use super::conn::Db;
use super::error::{BackupError, Result};
use super::files::{self, Identities, OpenError};
use super::manifest::Manifest;
use super::sql::{self, SplitDdl, ident, quote};
use super::{Progress, fastload, infile, verify};
use crate::backends::Endpoint;
use crate::signals::Signal;

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
    /// How rows are sent: LOAD DATA LOCAL INFILE when the server allows it, or INSERT.
    pub method: LoadMethod,
    /// Relax the server's durability during the load ([`fastload`]): for a dedicated or
    /// scratch server; refused while other clients are connected unless
    /// `allow_other_clients`.
    pub fast_load: bool,
    /// With `fast_load`: proceed while other clients are connected.
    pub allow_other_clients: bool,
}

/// How a restore sends rows to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMethod {
    /// LOAD DATA LOCAL INFILE if the server allows it (`local_infile`), else INSERT.
    #[default]
    Auto,
    /// LOAD DATA LOCAL INFILE; an error if the server refuses it.
    LoadData,
    /// The backup's multi-row INSERT statements as they are.
    Insert,
}

impl LoadMethod {
    /// As shown to people.
    pub fn describe(self) -> &'static str {
        match self {
            LoadMethod::Auto => "auto",
            LoadMethod::LoadData => "LOAD DATA LOCAL INFILE",
            LoadMethod::Insert => "multi-row INSERT",
        }
    }
}

/// How long each step of a restore took, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    /// Checking the target, creating the database and the tables.
    pub create_ms: u64,
    /// Loading the rows (tables with their primary key only).
    pub load_ms: u64,
    /// Building the secondary indexes.
    pub indexes_ms: u64,
    /// Adding the foreign keys.
    pub foreign_keys_ms: u64,
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
    /// How the rows were sent (`load-data` or `insert`).
    pub method: LoadMethod,
    /// Why the restore used INSERT where it would have used LOAD DATA, if it did.
    pub notes: Vec<String>,
    /// Where the time went.
    pub phases: Phases,
    /// With `--fast-load`: the globals relaxed during the load, all put back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_load: Option<fastload::FastLoadReport>,
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
    /// How rows will be sent: `LoadData` or `Insert`, never `Auto`.
    pub method: LoadMethod,
    /// Why INSERT is used although LOAD DATA was wanted (for a note before the load).
    pub method_note: Option<String>,
    /// The target's tables before the restore.
    existing: Vec<String>,
    /// With `--fast-load`: what will be relaxed (checked, nothing changed yet).
    pub fast_load: Option<fastload::Plan>,
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
        .iter()
        .filter(|t| manifest.table(t).is_some())
        .cloned()
        .collect();
    let (method, method_note) = choose_method(&mut control, opts.method).await?;
    let fast_load = if opts.fast_load {
        Some(fastload::check(&mut control, opts.allow_other_clients).await?)
    } else {
        None
    };
    Ok(PreparedRestore {
        dir: dir.to_path_buf(),
        manifest,
        opts,
        identities,
        replaced,
        database_exists: !exists.is_empty(),
        method,
        method_note,
        existing,
        fast_load,
        control,
    })
}

/// LOAD DATA LOCAL INFILE if wanted and the server allows it (`@@local_infile`); otherwise
/// INSERT, with the reason (an error only when LOAD DATA was asked for explicitly).
async fn choose_method(
    control: &mut Db,
    wanted: LoadMethod,
) -> Result<(LoadMethod, Option<String>)> {
    if wanted == LoadMethod::Insert {
        return Ok((LoadMethod::Insert, None));
    }
    let allowed: Vec<Option<String>> = control
        .rows(
            "SELECT @@local_infile",
            "asking whether LOAD DATA LOCAL is allowed",
        )
        .await
        .unwrap_or_default();
    let on = matches!(allowed.first(), Some(Some(v)) if v == "1" || v.eq_ignore_ascii_case("ON"));
    if on {
        return Ok((LoadMethod::LoadData, None));
    }
    let why = format!(
        "the server does not allow LOAD DATA LOCAL INFILE (local_infile is OFF on {}): \
         loading with multi-row INSERT instead, which is slower",
        control.endpoint
    );
    if wanted == LoadMethod::LoadData {
        return Err(BackupError::Usage(format!(
            "--load-with load-data: the server on {} does not allow LOAD DATA LOCAL INFILE \
             (local_infile is OFF); use --load-with auto (or insert)",
            control.endpoint
        )));
    }
    Ok((LoadMethod::Insert, Some(why)))
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
        self.run_until(progress, std::future::pending()).await
    }

    /// Loads the backup unless `stop` resolves first (with the signal that stopped it): then the
    /// load is dropped where it is. Once the target has begun to change, any failure is a
    /// [`BackupError::RestoreIncomplete`] naming what is left and how to clean it.
    ///
    /// With `--fast-load`, the globals are relaxed just before the load and put back after it,
    /// whatever its outcome (success, error, `stop`); if that fails, the error is a
    /// [`BackupError::GlobalsLeft`] that names them and the SQL to put them back.
    pub async fn run_until(
        mut self,
        progress: &dyn Progress,
        stop: impl std::future::Future<Output = Signal>,
    ) -> Result<RestoreSummary> {
        let relaxed = match self.fast_load.take() {
            Some(plan) => match plan.apply(&self.opts.mysql).await {
                Ok(r) => Some(r),
                Err(e) => {
                    self.control.close().await;
                    return Err(e);
                }
            },
            None => None,
        };
        let outcome = self.run_inner(progress, stop).await;
        let Some(relaxed) = relaxed else {
            return outcome;
        };
        match (relaxed.put_back().await, outcome) {
            (Ok(report), Ok(mut summary)) => {
                summary.fast_load = Some(report);
                Ok(summary)
            }
            (Ok(_), Err(e)) => Err(e),
            (
                Err(BackupError::GlobalsLeft {
                    endpoint,
                    left,
                    detail,
                    ..
                }),
                outcome,
            ) => Err(BackupError::GlobalsLeft {
                endpoint,
                left,
                detail,
                cause: outcome.err().map(Box::new),
            }),
            (Err(other), _) => Err(other),
        }
    }

    async fn run_inner(
        self,
        progress: &dyn Progress,
        stop: impl std::future::Future<Output = Signal>,
    ) -> Result<RestoreSummary> {
        let id = self.manifest.id.clone();
        let database = self.opts.database.clone();
        let endpoint = self.control.endpoint.clone();
        let existed = self.database_exists;
        let encrypted = self.manifest.encryption.is_some();
        let other_tables: Vec<String> = self
            .existing
            .iter()
            .filter(|t| self.manifest.table(t).is_none())
            .cloned()
            .collect();
        let touched = AtomicBool::new(false);
        let outcome = tokio::select! {
            biased;
            signal = stop => Err(BackupError::Interrupted { what: "restore".into(), signal }),
            r = self.load(progress, &touched) => r,
        };
        match outcome {
            // Loaded, but not what the manifest says: its own error says not to use the copy.
            Err(e @ BackupError::Mismatch { .. }) => Err(e),
            Err(cause) if touched.load(Ordering::SeqCst) => Err(BackupError::RestoreIncomplete {
                id,
                database,
                endpoint,
                existed,
                other_tables,
                encrypted,
                cause: Box::new(cause),
            }),
            other => other,
        }
    }

    /// The load itself; sets `touched` just before its first change to the target.
    async fn load(self, progress: &dyn Progress, touched: &AtomicBool) -> Result<RestoreSummary> {
        let PreparedRestore {
            dir,
            manifest,
            opts,
            identities,
            replaced,
            mut control,
            method,
            method_note,
            ..
        } = self;
        let started = Instant::now();
        let mut phases = Phases::default();
        let mut lap = Instant::now();
        let target = ident(&opts.database);
        let db = &manifest.database;
        progress.phase("creating tables");
        touched.store(true, Ordering::SeqCst);
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
        let mut auto_increment: BTreeMap<String, String> = BTreeMap::new();
        for t in &manifest.tables {
            let mut text = String::new();
            open(&dir, &t.schema_file, identities.as_ref(), &manifest)?
                .read_to_string(&mut text)
                .map_err(|e| BackupError::file("reading", dir.join(&t.schema_file), e))?;
            let ddl = text.trim_end().trim_end_matches(';').to_string();
            let split = sql::split_create_table(&ddl);
            if let Some(col) = sql::auto_increment_column(&ddl) {
                auto_increment.insert(t.name.clone(), ident(&col));
            }
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
        phases.create_ms = ms(&mut lap);
        progress.phase("loading");
        let queue = Mutex::new(jobs);
        let loaded: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
        let notes = Mutex::new(method_note.into_iter().collect::<Vec<_>>());
        let infile = AtomicBool::new(method == LoadMethod::LoadData);
        let ctx = LoadCtx {
            dir: &dir,
            manifest: &manifest,
            identities: identities.as_ref(),
            queue: &queue,
            loaded: &loaded,
            auto_increment: &auto_increment,
            infile: &infile,
            notes: &notes,
            progress,
        };
        futures::future::try_join_all(workers.iter_mut().map(|w| load_worker(w, &ctx))).await?;
        let loaded = loaded.into_inner().unwrap_or_default();
        let notes = notes.into_inner().unwrap_or_default();
        let method = if infile.load(Ordering::SeqCst) {
            LoadMethod::LoadData
        } else {
            LoadMethod::Insert
        };
        phases.load_ms = ms(&mut lap);

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
        phases.indexes_ms = ms(&mut lap);
        let fks: VecDeque<(String, String)> = tables
            .iter()
            .filter_map(|t| {
                let ddl = ddls.get(&t.name)?;
                Some((t.name.clone(), ddl.add_foreign_keys(&t.name)?))
            })
            .collect();
        run_statements(&mut workers, fks, "adding the foreign keys of").await?;
        phases.foreign_keys_ms = ms(&mut lap);
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
            method,
            notes,
            phases,
            fast_load: None,
        })
    }
}

/// Milliseconds since `lap`, which restarts.
fn ms(lap: &mut Instant) -> u64 {
    let n = u64::try_from(lap.elapsed().as_millis()).unwrap_or(u64::MAX);
    *lap = Instant::now();
    n
}

use std::io::Read as _;

struct LoadCtx<'a> {
    dir: &'a Path,
    manifest: &'a Manifest,
    identities: Option<&'a Identities>,
    queue: &'a Mutex<VecDeque<(String, String)>>,
    loaded: &'a Mutex<BTreeMap<String, u64>>,
    /// Each table's AUTO_INCREMENT column, quoted.
    auto_increment: &'a BTreeMap<String, String>,
    /// Whether chunks are sent as LOAD DATA (cleared for good if the server refuses it).
    infile: &'a AtomicBool,
    /// Why INSERT was used instead of LOAD DATA, for the summary.
    notes: &'a Mutex<Vec<String>>,
    progress: &'a dyn Progress,
}

impl LoadCtx<'_> {
    fn note(&self, what: String) {
        if let Ok(mut n) = self.notes.lock() {
            n.push(what);
        }
    }
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

/// What one attempt at a chunk came to.
enum Attempt {
    /// Committed with this many rows.
    Loaded(u64),
    /// Rolled back: the server refuses LOAD DATA LOCAL (for every later chunk too).
    Refused(String),
    /// Rolled back: LOAD DATA did not give exactly what INSERT would (warnings, a row count
    /// other than the statement's); this chunk is loaded again with INSERT.
    Differs(String),
    /// Rolled back by the server as a deadlock victim (two loads starting on one empty table
    /// both want its table lock): the same again.
    Deadlock(String),
}

/// How many times a chunk chosen as a deadlock victim is loaded again.
const DEADLOCK_RETRIES: usize = 5;

/// Server errors meaning "LOAD DATA LOCAL is not allowed here": MariaDB's "The used command is
/// not allowed with this MariaDB version", MySQL 8's "Loading local data is disabled".
const LOCAL_REFUSED: &[u16] = &[1148, 3948];

/// "Deadlock found when trying to get lock": the server rolled the transaction back.
const DEADLOCK: u16 = 1213;

/// Bytes per piece of LOAD DATA input handed to the driver.
const INFILE_PIECE: usize = 64 * 1024;

/// Loads one chunk file in one transaction, as LOAD DATA while the server allows it, else (or
/// if LOAD DATA would not give exactly the rows INSERT gives) with its INSERT statements.
async fn load_chunk(db: &mut Db, ctx: &LoadCtx<'_>, table: &str, file: &str) -> Result<u64> {
    if ctx.infile.load(Ordering::SeqCst) {
        match attempt_chunk(db, ctx, table, file, true).await? {
            Attempt::Loaded(rows) => return Ok(rows),
            Attempt::Refused(why) => {
                if ctx.infile.swap(false, Ordering::SeqCst) {
                    ctx.note(format!(
                        "the server refused LOAD DATA LOCAL INFILE ({why}): loading with multi-row INSERT instead"
                    ));
                }
            }
            Attempt::Differs(why) | Attempt::Deadlock(why) => {
                ctx.note(format!("{file}: {why}; loaded with INSERT instead"));
            }
        }
    }
    match attempt_chunk(db, ctx, table, file, false).await? {
        Attempt::Loaded(rows) => Ok(rows),
        Attempt::Refused(why) | Attempt::Differs(why) | Attempt::Deadlock(why) => {
            Err(BackupError::Query {
                endpoint: db.endpoint.clone(),
                during: format!("loading {file}"),
                detail: why,
            })
        }
    }
}

/// One statement of a chunk, as read (and converted) by the reader thread.
enum Statement {
    Sql(Vec<u8>),
    Infile(infile::Infile),
}

/// One attempt at a chunk, in one transaction (again while the server picks it as a deadlock
/// victim); statements are read (decrypted, decompressed, converted for LOAD DATA) on a thread
/// of its own, at most two ahead.
async fn attempt_chunk(
    db: &mut Db,
    ctx: &LoadCtx<'_>,
    table: &str,
    file: &str,
    as_infile: bool,
) -> Result<Attempt> {
    let mut tries = 0;
    loop {
        let reader = open(ctx.dir, file, ctx.identities, ctx.manifest)?;
        let auto_increment = ctx.auto_increment.get(table).cloned();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Statement>>(1);
        let reading = std::thread::Builder::new()
            .name("restore-reader".into())
            .spawn(move || {
                let mut reader = reader;
                // Statements are about DEFAULT_STATEMENT_BYTES: no doubling past that.
                let fresh = || Vec::with_capacity(super::DEFAULT_STATEMENT_BYTES + 64 * 1024);
                let mut line = fresh();
                loop {
                    // A converted line's buffer is read into again; a line sent as SQL goes.
                    line.clear();
                    let item = match reader.read_until(b'\n', &mut line) {
                        Ok(0) => return,
                        Ok(_) if line.iter().all(u8::is_ascii_whitespace) => continue,
                        Ok(_) => Ok(
                            match as_infile
                                .then(|| infile::convert(&line, auto_increment.as_deref()))
                                .flatten()
                            {
                                Some(converted) => Statement::Infile(converted),
                                None => Statement::Sql(std::mem::replace(&mut line, fresh())),
                            },
                        ),
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| {
                BackupError::file("starting a reader thread for", ctx.dir.join(file), e)
            })?;
        let during = format!("loading {file}");
        db.exec("BEGIN", &during).await?;
        let mut rows = 0u64;
        let mut outcome = None;
        while let Some(item) = rx.recv().await {
            let item = item.map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                    BackupError::Corrupt {
                        id: ctx.manifest.id.clone(),
                        problems: vec![format!("{file}: {e}")],
                    }
                }
                _ => BackupError::file("reading", ctx.dir.join(file), e),
            })?;
            let n = match item {
                Statement::Sql(line) => match db.conn.query_drop(line).await {
                    Ok(()) => db.conn.affected_rows(),
                    Err(mysql_async::Error::Server(e)) if e.code == DEADLOCK => {
                        outcome = Some(Attempt::Deadlock(format!("{} ({})", e.message, e.code)));
                        break;
                    }
                    Err(e) => return Err(db.error(&during, &e)),
                },
                Statement::Infile(converted) => {
                    // Sent in pieces of the one buffer, so that the driver's write buffers stay small.
                    let data = bytes::Bytes::from(converted.data);
                    let pieces: Vec<std::io::Result<bytes::Bytes>> = (0..data.len())
                        .step_by(INFILE_PIECE)
                        .map(|at| Ok(data.slice(at..(at + INFILE_PIECE).min(data.len()))))
                        .collect();
                    db.conn.set_infile_handler(async move {
                        Ok(Box::pin(futures::stream::iter(pieces)) as mysql_async::InfileData)
                    });
                    match db.conn.query_drop(&converted.statement).await {
                        Ok(()) => {}
                        Err(mysql_async::Error::Server(e)) if LOCAL_REFUSED.contains(&e.code) => {
                            outcome = Some(Attempt::Refused(format!("{} ({})", e.message, e.code)));
                            break;
                        }
                        Err(mysql_async::Error::Server(e)) if e.code == DEADLOCK => {
                            outcome =
                                Some(Attempt::Deadlock(format!("{} ({})", e.message, e.code)));
                            break;
                        }
                        Err(e) => return Err(db.error(&during, &e)),
                    }
                    let (n, warnings) = (db.conn.affected_rows(), db.conn.get_warnings());
                    if warnings > 0 || n != converted.rows {
                        outcome = Some(Attempt::Differs(format!(
                            "LOAD DATA gave {warnings} warning(s) and {n} of {} rows",
                            converted.rows
                        )));
                        break;
                    }
                    n
                }
            };
            rows += n;
            ctx.progress.rows(table, n);
        }
        let finish = if outcome.is_some() {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        db.exec(finish, &during).await?;
        // Stops the reader if it is still going (a rolled-back attempt).
        drop(rx);
        let _ = tokio::task::spawn_blocking(move || reading.join()).await;
        match outcome {
            Some(Attempt::Deadlock(_)) if tries < DEADLOCK_RETRIES => tries += 1,
            other => return Ok(other.unwrap_or(Attempt::Loaded(rows))),
        }
    }
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
