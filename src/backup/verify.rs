//! Verifying a backup: every file against the manifest (size and SHA-256, naming each file that
//! differs or is missing); with a restore test, the backup restored into a scratch database and
//! each table's row count and `CHECKSUM TABLE` compared with the manifest, the scratch database
//! dropped afterwards whatever happened.

use std::path::Path;

use serde::Serialize;

use super::conn::Db;
use super::error::{BackupError, Result};
use super::files;
use super::load::{LoadMethod, RestoreOptions, prepare_restore};
use super::manifest::{self, Manifest, Verified};
use super::sql::ident;
use super::{NoProgress, Progress};
use crate::backends::Endpoint;
use crate::signals::Signal;

/// The problems of the files of a backup, each naming its file; empty when all is well.
pub fn check_files(dir: &Path, m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &m.files {
        let path = dir.join(&f.name);
        match files::hash_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{}: missing", f.name));
            }
            Err(e) => problems.push(format!("{}: cannot read: {e}", f.name)),
            Ok((bytes, _)) if bytes != f.bytes => problems.push(format!(
                "{}: {bytes} bytes, the manifest says {}",
                f.name, f.bytes
            )),
            Ok((_, sha)) if sha != f.sha256 => problems.push(format!(
                "{}: SHA-256 {sha} differs from the manifest's {}",
                f.name, f.sha256
            )),
            Ok(_) => {}
        }
    }
    // Every file the tables name must be listed (a manifest edited by hand, or truncated).
    for t in &m.tables {
        for name in std::iter::once(&t.schema_file).chain(t.chunks.iter().map(|c| &c.file)) {
            if !m.files.iter().any(|f| &f.name == name) {
                problems.push(format!(
                    "{name}: named by table {} but not in the file list",
                    t.name
                ));
            }
        }
    }
    problems
}

/// One table compared after a restore test.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub rows_expected: u64,
    pub rows_restored: u64,
    pub checksum_expected: Option<u64>,
    pub checksum_restored: Option<u64>,
    pub ok: bool,
}

/// What `backup verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: String,
    /// `files` or `restore-test`.
    pub mode: String,
    pub ok: bool,
    pub files: usize,
    pub problems: Vec<String>,
    pub tables: Vec<TableCheck>,
    /// The scratch database used by the restore test (dropped).
    pub scratch_database: Option<String>,
}

/// Checks the files; with `restore_test`, also restores into a scratch database on `mysql` and
/// compares. Records the outcome in `verified.json` and returns the report (a failed check is
/// a report with `ok: false`, not an error).
pub async fn verify(
    dir: &Path,
    restore_test: Option<(&Endpoint, usize, Option<&Path>)>,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    verify_until(dir, restore_test, progress, std::future::pending()).await
}

/// [`verify`], unless `stop` resolves first (Ctrl-C, SIGTERM): then the restore test stops,
/// its scratch database is dropped all the same, and the error says it was interrupted.
pub async fn verify_until(
    dir: &Path,
    restore_test: Option<(&Endpoint, usize, Option<&Path>)>,
    progress: &dyn Progress,
    stop: impl std::future::Future<Output = Signal>,
) -> Result<VerifyReport> {
    let m = Manifest::load(dir)?;
    let mut report = VerifyReport {
        id: m.id.clone(),
        mode: if restore_test.is_some() {
            "restore-test"
        } else {
            "files"
        }
        .into(),
        ok: true,
        files: m.files.len(),
        problems: check_files(dir, &m),
        tables: Vec::new(),
        scratch_database: None,
    };
    if report.problems.is_empty()
        && let Some((mysql, threads, identity)) = restore_test
    {
        let scratch = scratch_name(&m.id);
        report.scratch_database = Some(scratch.clone());
        let outcome = tokio::select! {
            biased;
            signal = stop => Err(BackupError::Interrupted {
                what: "restore test".into(),
                signal,
            }),
            r = restore_and_compare(dir, &m, mysql, threads, identity, &scratch, progress) => r,
        };
        // Drop the scratch database whatever happened.
        let dropped = drop_database(mysql, &scratch).await;
        match outcome {
            Ok(tables) => report.tables = tables,
            Err(BackupError::Corrupt { problems, .. } | BackupError::Mismatch { problems, .. }) => {
                report.problems.extend(problems);
            }
            Err(e) => return Err(e),
        }
        dropped?;
        for t in &report.tables {
            if !t.ok {
                report.problems.push(format!(
                    "table {}: restored {} rows (checksum {}), the manifest says {} rows (checksum {})",
                    t.table,
                    t.rows_restored,
                    show(t.checksum_restored),
                    t.rows_expected,
                    show(t.checksum_expected)
                ));
            }
        }
    }
    report.ok = report.problems.is_empty();
    let record = Verified {
        at: jiff::Timestamp::now().to_string(),
        mode: report.mode.clone(),
        ok: report.ok,
        problems: report.problems.clone(),
    };
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| BackupError::Usage(format!("serializing the verification: {e}")))?;
    files::write_private(dir, manifest::VERIFIED, &json)?;
    Ok(report)
}

fn show(c: Option<u64>) -> String {
    c.map_or_else(|| "none".into(), |c| c.to_string())
}

/// `newapi_ops_verify_20261125t030000z`: ours, recognisable, and unique per backup.
pub fn scratch_name(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("newapi_ops_verify_{safe}")
}

async fn restore_and_compare(
    dir: &Path,
    m: &Manifest,
    mysql: &Endpoint,
    threads: usize,
    identity: Option<&Path>,
    scratch: &str,
    progress: &dyn Progress,
) -> Result<Vec<TableCheck>> {
    // A scratch database left by an interrupted earlier test is ours: start afresh.
    drop_database(mysql, scratch).await?;
    let prepared = prepare_restore(
        dir,
        RestoreOptions {
            mysql: mysql.clone(),
            database: scratch.to_string(),
            threads,
            force: false,
            identity: identity.map(Path::to_path_buf),
            method: LoadMethod::Auto,
            fast_load: false,
            allow_other_clients: false,
        },
    )
    .await?;
    // The scratch database is dropped whatever happens: what a half-loaded one would need is
    // not the caller's concern, the cause is.
    prepared.run(progress).await.map_err(|e| match e {
        BackupError::RestoreIncomplete { cause, .. } => *cause,
        e => e,
    })?;
    let mut db = Db::connect(mysql).await?;
    let mut out = Vec::new();
    for t in &m.tables {
        let q = format!("{}.{}", ident(scratch), ident(&t.name));
        let rows: Option<u64> = db
            .rows::<u64>(
                &format!("SELECT COUNT(*) FROM {q}"),
                "counting restored rows",
            )
            .await?
            .pop();
        let checksum: Option<(String, Option<u64>)> = db
            .rows(
                &format!("CHECKSUM TABLE {q}"),
                "checksumming restored tables",
            )
            .await?
            .pop();
        let checksum = checksum.and_then(|(_, c)| c);
        let rows = rows.unwrap_or(0);
        out.push(TableCheck {
            table: t.name.clone(),
            rows_expected: t.rows,
            rows_restored: rows,
            checksum_expected: t.checksum,
            checksum_restored: checksum,
            ok: rows == t.rows && (t.checksum.is_none() || checksum == t.checksum),
        });
    }
    db.close().await;
    Ok(out)
}

async fn drop_database(mysql: &Endpoint, name: &str) -> Result<()> {
    let mut db = Db::connect(mysql).await?;
    let r = db
        .exec(
            &format!("DROP DATABASE IF EXISTS {}", ident(name)),
            "dropping the scratch database",
        )
        .await;
    db.close().await;
    r
}

/// Verifies without progress (for callers that have none).
pub async fn verify_files_only(dir: &Path) -> Result<VerifyReport> {
    verify(dir, None, &NoProgress).await
}
