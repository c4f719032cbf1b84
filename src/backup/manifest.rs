//! The manifest of a backup (`manifest.json`): what was backed up, from where, at which snapshot,
//! and the size and SHA-256 of every file, so that a backup can be checked without the server
//! and without the decryption key. It holds no credentials.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{BackupError, Result};

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The record of the last verification, beside the manifest.
pub const VERIFIED: &str = "verified.json";
/// Format version written by this tool.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version (1).
    pub format: u32,
    /// The backup's id: its UTC start time, `20261125T030000Z`.
    pub id: String,
    /// `newapi-ops 0.1.0`.
    pub tool: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub server: Server,
    /// `user@host:port/db` as reached (never a password).
    pub source: String,
    pub database: Database,
    /// `backup-stage` (MariaDB BACKUP STAGE BLOCK_COMMIT), `flush-tables-with-read-lock`, or
    /// `single-connection`.
    pub consistency: String,
    /// Binary log position and GTID at the snapshot, when the server has a binary log.
    pub snapshot: Snapshot,
    /// `zstd` (level in `compression_level`).
    pub compression: String,
    pub compression_level: i32,
    /// Present when the data files are encrypted with age.
    pub encryption: Option<Encryption>,
    /// Connection character set the data was written in.
    pub charset: String,
    pub tables: Vec<Table>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `SELECT VERSION()`.
    pub version: String,
    /// `mariadb` or `mysql`.
    pub flavor: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub name: String,
    pub charset: String,
    pub collation: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// `age`.
    pub scheme: String,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub name: String,
    /// Rows written, counted while streaming them.
    pub rows: u64,
    /// `CHECKSUM TABLE` in the snapshot (None if the server could not compute it).
    pub checksum: Option<u64>,
    /// The file with `SHOW CREATE TABLE`.
    pub schema_file: String,
    /// The data files, in primary-key order.
    pub chunks: Vec<Chunk>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    pub file: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn recipients(&self) -> String {
        self.encryption
            .as_ref()
            .map(|e| e.recipients.join(", "))
            .unwrap_or_default()
    }

    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| BackupError::file("reading the manifest", &path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| BackupError::BadManifest {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(BackupError::BadManifest {
                path,
                detail: format!("format {} (this version reads format {FORMAT})", m.format),
            });
        }
        Ok(m)
    }
}

/// The outcome of the last `backup verify`, kept beside the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    pub at: String,
    /// `files` (every file against the manifest) or `restore-test` (also restored and compared).
    pub mode: String,
    pub ok: bool,
    #[serde(default)]
    pub problems: Vec<String>,
}

impl Verified {
    pub fn load(dir: &Path) -> Option<Verified> {
        let text = std::fs::read_to_string(dir.join(VERIFIED)).ok()?;
        serde_json::from_str(&text).ok()
    }
}
