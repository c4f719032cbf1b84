//! Backups of the New-API database: the engine behind `newapi-ops backup`, `restore`, and the
//! runbooks' `mysql.backup` action.
//!
//! A backup is a directory `DIR/ID/` (ID = UTC start time, `20261125T030000Z`), mode 0700:
//!
//! | file | content |
//! |---|---|
//! | `manifest.json` | [`manifest::Manifest`]: server version, snapshot position, per-table rows and `CHECKSUM TABLE`, per-file size and SHA-256, tool version, start and end time |
//! | `TABLE.schema.sql.zst` | `SHOW CREATE TABLE` |
//! | `TABLE.00001.sql.zst` ... | the rows of one primary-key range, as multi-row `INSERT` statements, one per line |
//! | `verified.json` | written by `backup verify` |
//!
//! Files are 0600. With `--encrypt-to`, data and schema files are compressed then encrypted with
//! age (`.zst.age`); the manifest stays readable, so `verify` checks every file without the key.
//! Table names map to file names with `%XX` escapes for anything but letters, digits, `_`, `-`.
//! An unencrypted chunk is plain SQL: `zstd -dc logs.00001.sql.zst | mysql db` loads it.
//!
//! A backup in progress is `DIR/.tmp-ID/` ([`staging`]), never listed, removed when the backup
//! fails or is stopped (Ctrl-C, SIGTERM); `backup` and `backup prune` remove those of dead
//! processes.

mod conn;
pub mod dump;
pub mod error;
pub mod fastload;
pub mod files;
pub mod infile;
pub mod load;
pub mod manifest;
pub mod schedule;
pub mod sql;
pub mod staging;
pub mod store;
pub mod verify;

use std::path::PathBuf;

pub use dump::{BackupSummary, run_backup};
pub use error::BackupError;
pub use load::{LoadMethod, PreparedRestore, RestoreOptions, RestoreSummary, prepare_restore};

use crate::backends::Endpoint;
use crate::config::Settings;
use crate::k8s::Kube;

/// What to back up, where, and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Where to connect (possibly the local end of a port-forward).
    pub mysql: Endpoint,
    /// How the server was reached, for the manifest (`root@mysql:3306/new-api (from SQL_DSN)`).
    pub source: String,
    /// The database; default: the endpoint's.
    pub database: Option<String>,
    /// The directory holding backups (created 0700 if missing).
    pub dir: PathBuf,
    /// Only these tables (default: every base table).
    pub tables: Vec<String>,
    /// Connections reading in parallel.
    pub threads: usize,
    /// age recipients (`age1...`); empty: not encrypted.
    pub encrypt_to: Vec<String>,
    /// One connection and its own snapshot, no lock (for servers that forbid it).
    pub single_connection: bool,
    /// Target rows per chunk file (tables with an integer primary key are split by ranges).
    pub chunk_rows: u64,
    /// Size of one INSERT statement, in bytes (approximate; one row may exceed it).
    pub statement_bytes: usize,
    /// zstd level.
    pub compression_level: i32,
}

impl BackupOptions {
    /// Defaults for everything but where to connect and where to write.
    pub fn new(mysql: Endpoint, source: String, dir: PathBuf) -> BackupOptions {
        BackupOptions {
            mysql,
            source,
            database: None,
            dir,
            tables: Vec::new(),
            threads: DEFAULT_THREADS,
            encrypt_to: Vec::new(),
            single_connection: false,
            chunk_rows: DEFAULT_CHUNK_ROWS,
            statement_bytes: DEFAULT_STATEMENT_BYTES,
            compression_level: DEFAULT_LEVEL,
        }
    }
}

/// Connections used by default (for backup and restore).
pub const DEFAULT_THREADS: usize = 4;
/// Rows per chunk file by default.
pub const DEFAULT_CHUNK_ROWS: u64 = 100_000;
/// Bytes per INSERT statement by default.
pub const DEFAULT_STATEMENT_BYTES: usize = 256 * 1024;
/// zstd level by default.
pub const DEFAULT_LEVEL: i32 = 3;

/// Hears how a backup or restore advances (a progress bar, a runbook's log). Every method has
/// a default that does nothing.
pub trait Progress: Sync {
    /// A step of the whole: `connecting`, `taking the snapshot`, `dumping`, `loading`, `indexing`.
    fn phase(&self, _what: &str) {}
    /// A table starts; `estimated_rows` may be 0 or rough.
    fn table_started(&self, _table: &str, _estimated_rows: u64) {}
    /// `rows` more rows of `table` were written or loaded.
    fn rows(&self, _table: &str, _rows: u64) {}
    /// A table is complete with `rows` rows.
    fn table_done(&self, _table: &str, _rows: u64) {}
}

/// Progress that nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Backs up the deployment's database the way `newapi-ops backup` does: MySQL is reached through
/// `mysql_url`, else through the cluster ([`crate::backends::resolve_mysql`]: SQL_DSN of the
/// master, a port-forward from outside, the Service name inside); `tune` adjusts the options
/// (threads, tables, encryption...) before the backup starts. This is the entry point of the
/// runbooks' `mysql.backup` action and of the `backup` command alike.
pub async fn backup_deployment(
    kube: Option<&Kube>,
    settings: &Settings,
    mysql_url: Option<&str>,
    dir: PathBuf,
    tune: impl FnOnce(&mut BackupOptions),
    progress: &dyn Progress,
) -> crate::error::Result<BackupSummary> {
    let reached = crate::backends::resolve_mysql(kube, settings, mysql_url).await?;
    let mut opts = BackupOptions::new(reached.endpoint.clone(), reached.via.clone(), dir);
    tune(&mut opts);
    let summary = run_backup(&opts, progress).await;
    // MySQL "went away" through a port-forward: when the API server no longer answers, it is the
    // API server that was lost, and the error says so.
    let summary = match (&summary, kube) {
        (Err(BackupError::Lost { during, .. }), Some(kube)) if reached.forward.is_some() => {
            match kube.alive(std::time::Duration::from_secs(5)).await {
                Err(e) => Err(BackupError::ForwardLost {
                    server: kube.server.clone(),
                    during: during.clone(),
                    detail: e.to_string(),
                }),
                Ok(()) => summary,
            }
        }
        _ => summary,
    };
    // The port-forward (if any) stays open until the backup is over.
    drop(reached);
    Ok(summary?)
}
