//! `mysql.backup` and `backup.verify`: the backup module's library entry points, the very code
//! `newapi-ops backup` and `newapi-ops backup verify` run. The plan of a backup only reads: it
//! reaches MySQL as New-API does, lists the base tables that would be backed up and says where
//! the files would go; applying it runs [`crate::backup::backup_deployment`].

use std::path::PathBuf;

use serde_json::json;

use super::backends::{mysql, tables};
use super::change::{Kind, Plan};
use super::{Ctx, Done, err_line};
use crate::backup::store::dir_or_default;
use crate::backup::{self, BackupError, NoProgress};
use crate::runbook::args::Resolved;
use crate::runbook::catalogue as c;
use crate::units::bytes;

/// The most connections a backup may use (as `newapi-ops backup --threads`).
const MAX_THREADS: i64 = 64;

/// A backup as planned.
#[derive(Debug)]
pub struct Job {
    dir: PathBuf,
    database: String,
    threads: usize,
    tables: Vec<String>,
    encrypt_to: Vec<String>,
}

/// `dir` as given (relative to the working directory, like `backup --dir`), else the default,
/// made absolute so that the plan, the prompt and the transcript say exactly where.
fn backup_dir(dir: Option<&str>) -> PathBuf {
    let d = dir_or_default(dir.filter(|d| !d.trim().is_empty()).map(PathBuf::from));
    std::path::absolute(&d).unwrap_or(d)
}

fn err(e: BackupError) -> String {
    err_line(&crate::error::Error::from(e))
}

/// What a backup would write, read from the server; writes nothing.
pub async fn plan(ctx: &Ctx, a: &c::BackupArgs<Resolved>) -> Result<Plan, String> {
    if !(1..=MAX_THREADS).contains(&a.threads) {
        return Err(format!(
            "threads: {} is out of range (1-{MAX_THREADS})",
            a.threads
        ));
    }
    let dir = backup_dir(a.dir.as_deref());
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "{} exists and is not a directory: choose another `dir`",
            dir.display()
        ));
    }
    let mut m = mysql(ctx).await?;
    let all = tables(&mut m, true).await?;
    let name = |t: &serde_json::Value| t["name"].as_str().unwrap_or_default().to_string();
    for wanted in &a.tables {
        if !all.iter().any(|t| &name(t) == wanted) {
            let mut available: Vec<String> = all.iter().map(name).collect();
            available.sort();
            return Err(err(BackupError::NoTable {
                database: m.database.clone(),
                table: wanted.clone(),
                available,
            }));
        }
    }
    let chosen: Vec<&serde_json::Value> = all
        .iter()
        .filter(|t| a.tables.is_empty() || a.tables.contains(&name(t)))
        .collect();
    let rows: i64 = chosen.iter().filter_map(|t| t["rows"].as_i64()).sum();
    let size: i64 = chosen.iter().filter_map(|t| t["data_bytes"].as_i64()).sum();
    let n = chosen.len();
    let threads = usize::try_from(a.threads).unwrap_or(1);
    let mut details = vec![
        format!(
            "tables: {}",
            if chosen.is_empty() {
                "none".to_string()
            } else {
                chosen
                    .iter()
                    .map(|t| name(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        format!(
            "about {rows} rows, {} of data (the server's estimates), read by {threads} connection{} from one consistent snapshot, via {}",
            bytes(u64::try_from(size).unwrap_or(0)),
            if threads == 1 { "" } else { "s" },
            m.via
        ),
        format!(
            "writes {}/<UTC start time>/ (manifest.json and zstd-compressed SQL per table; files 0600, directories 0700), through a temporary directory renamed only when complete",
            dir.display()
        ),
    ];
    if a.encrypt_to.is_empty() {
        details.push("not encrypted".into());
    } else {
        details.push(format!(
            "data files encrypted with age to {} recipient{}",
            a.encrypt_to.len(),
            if a.encrypt_to.len() == 1 { "" } else { "s" }
        ));
    }
    let change = format!(
        "back up database {} ({n} table{}) to {}",
        m.database,
        if n == 1 { "" } else { "s" },
        dir.display()
    );
    let planned_output = json!({
        "id": "", "path": dir.display().to_string(), "dir": dir.display().to_string(),
        "database": m.database, "tables": n, "rows": rows, "bytes": 0, "duration_ms": 0,
        "encrypted": !a.encrypt_to.is_empty(), "applied": false,
    });
    Ok(Plan {
        change,
        details,
        noop: false,
        planned_output,
        kind: Kind::Backup(Box::new(Job {
            dir,
            database: m.database.clone(),
            threads,
            tables: a.tables.clone(),
            encrypt_to: a.encrypt_to.clone(),
        })),
    })
}

/// Takes the backup as `newapi-ops backup` does.
pub async fn apply(ctx: &Ctx, job: Job) -> Result<Done, String> {
    let Job {
        dir,
        database,
        threads,
        tables,
        encrypt_to,
    } = job;
    let summary = backup::backup_deployment(
        Some(&ctx.kube),
        &ctx.settings,
        None,
        dir.clone(),
        |opts| {
            opts.database = Some(database);
            opts.tables = tables;
            opts.threads = threads;
            opts.encrypt_to = encrypt_to;
        },
        &NoProgress,
    )
    .await
    .map_err(|e| err_line(&e))?;
    let out = json!({
        "id": summary.id,
        "path": summary.path.display().to_string(),
        "dir": dir.display().to_string(),
        "database": summary.database,
        "tables": summary.tables,
        "rows": summary.rows,
        "bytes": summary.bytes,
        "duration_ms": summary.duration_ms,
        "encrypted": summary.encrypted,
        "applied": true,
    });
    let text = format!("{} into {}", summary.headline(), summary.path.display());
    Ok(Done::of("mysql.backup", &out, text))
}

/// Checks a backup's files against its manifest (no database needed).
pub async fn verify(a: &c::BackupVerifyArgs<Resolved>) -> Result<Done, String> {
    let dir = backup_dir(a.dir.as_deref());
    let path = backup::store::find(&dir, &a.id).map_err(err)?;
    let report = backup::verify::verify(&path, None, &NoProgress)
        .await
        .map_err(err)?;
    if !report.ok {
        return Err(format!(
            "backup {} in {} does not match its manifest: {}",
            report.id,
            dir.display(),
            report.problems.join("; ")
        ));
    }
    let out = json!({
        "id": report.id, "path": path.display().to_string(), "ok": true,
        "files": report.files, "problems": report.problems,
    });
    let text = format!(
        "backup {}: {} files match the manifest ({})",
        report.id,
        report.files,
        path.display()
    );
    Ok(Done::of("backup.verify", &out, text))
}
