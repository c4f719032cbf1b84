//! The directory of backups: listing the complete ones (those with a manifest; a backup in
//! progress or interrupted is a `.tmp-*` directory and never listed), finding one by id, and
//! retention (which also sweeps the `.tmp-*` directories of dead processes, [`staging::sweep`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{BackupError, Result};
use super::manifest::{MANIFEST, Manifest, Verified};
use super::staging::{self, Stale};

/// The directory backups go to when none is given: `$NEWAPI_OPS_BACKUP_DIR` when set, else
/// [`default_dir`] (`backup --dir` and the runbooks' `mysql.backup` and `backup.verify` agree).
pub fn dir_or_default(dir: Option<PathBuf>) -> PathBuf {
    dir.or_else(|| {
        std::env::var_os("NEWAPI_OPS_BACKUP_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(default_dir)
}

/// `<data dir>/newapi-ops/backups` (`~/.local/share/...` on Linux), else `./newapi-ops-backups`.
pub fn default_dir() -> PathBuf {
    dirs::data_dir().map_or_else(
        || PathBuf::from("newapi-ops-backups"),
        |d| d.join("newapi-ops").join("backups"),
    )
}

/// One complete backup, as `backup list` shows it (and the scheduled job's status ConfigMap
/// holds it: [`crate::backup::schedule::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub started_at: String,
    pub database: String,
    pub bytes: u64,
    pub tables: usize,
    pub rows: u64,
    pub encrypted: bool,
    /// `files`, `restore-test`, or None if never verified (or the last verification failed).
    pub verified: Option<String>,
    /// The last verification failed.
    pub verify_failed: bool,
}

/// The complete backups in `dir`, oldest first (ids sort by time). A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::file("listing backups in", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let path = ent.path();
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !path.join(MANIFEST).is_file() {
            continue;
        }
        let Ok(m) = Manifest::load(&path) else {
            continue;
        };
        let v = Verified::load(&path);
        out.push(Entry {
            id: name,
            started_at: m.started_at.clone(),
            database: m.database.name.clone(),
            bytes: m.total_bytes(),
            tables: m.tables.len(),
            rows: m.total_rows(),
            encrypted: m.encryption.is_some(),
            verified: v.as_ref().filter(|v| v.ok).map(|v| v.mode.clone()),
            verify_failed: v.as_ref().is_some_and(|v| !v.ok),
            path,
        });
    }
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The directory of backup `id` (or `latest`) in `dir`.
pub fn find(dir: &Path, id: &str) -> Result<PathBuf> {
    let all = list(dir)?;
    let found = if id == "latest" {
        all.last()
    } else {
        all.iter().find(|e| e.id == id)
    };
    found
        .map(|e| e.path.clone())
        .ok_or_else(|| BackupError::NotFound {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            available: all.iter().rev().take(10).map(|e| e.id.clone()).collect(),
        })
}

/// What retention decided.
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    pub kept: Vec<Kept>,
    pub deleted: Vec<String>,
    /// Leftovers of interrupted backups (`.tmp-*`) whose process is dead, removed (see
    /// [`staging::sweep`]).
    pub removed_incomplete: Vec<Stale>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub id: String,
    /// Why: `last N`, `daily`, `newest verified`.
    pub reasons: Vec<String>,
}

/// Which backups to keep: the `keep_last` newest; the newest of each of the `keep_daily` most
/// recent days that have backups (UTC); and always the newest verified one. Pure, for tests.
pub fn plan_prune(
    entries: &[Entry],
    keep_last: usize,
    keep_daily: usize,
) -> Vec<(String, Vec<String>)> {
    let mut newest_first: Vec<&Entry> = entries.iter().collect();
    newest_first.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    let mut reasons: Vec<(String, Vec<String>)> = newest_first
        .iter()
        .map(|e| (e.id.clone(), Vec::new()))
        .collect();
    for (i, _) in newest_first.iter().enumerate().take(keep_last) {
        reasons[i].1.push("last".into());
    }
    let mut days = BTreeSet::new();
    for (i, e) in newest_first.iter().enumerate() {
        let day = e.started_at.get(..10).unwrap_or("").to_string();
        if days.len() < keep_daily && days.insert(day) {
            reasons[i].1.push("daily".into());
        }
    }
    if let Some(i) = newest_first.iter().position(|e| e.verified.is_some()) {
        reasons[i].1.push("newest verified".into());
    }
    reasons
}

/// Applies [`plan_prune`] to `dir` (unless `dry_run`).
pub fn prune(
    dir: &Path,
    keep_last: usize,
    keep_daily: usize,
    dry_run: bool,
) -> Result<PruneOutcome> {
    let entries = list(dir)?;
    let plan = plan_prune(&entries, keep_last, keep_daily);
    let mut kept = Vec::new();
    let mut deleted = Vec::new();
    for (id, reasons) in plan {
        if reasons.is_empty() {
            if !dry_run {
                let path = dir.join(&id);
                std::fs::remove_dir_all(&path)
                    .map_err(|e| BackupError::file("deleting backup", &path, e))?;
            }
            deleted.push(id);
        } else {
            kept.push(Kept { id, reasons });
        }
    }
    let removed_incomplete = staging::sweep(dir, dry_run);
    Ok(PruneOutcome {
        kept,
        deleted,
        removed_incomplete,
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, at: &str, verified: bool) -> Entry {
        Entry {
            id: id.into(),
            path: PathBuf::new(),
            started_at: at.into(),
            database: "new-api".into(),
            bytes: 0,
            tables: 0,
            rows: 0,
            encrypted: false,
            verified: verified.then(|| "files".into()),
            verify_failed: false,
        }
    }

    #[test]
    fn keeps_last_daily_and_the_newest_verified() {
        let e = [
            entry("a", "2026-11-20T03:00:00Z", true),
            entry("b", "2026-11-21T03:00:00Z", false),
            entry("c", "2026-11-22T03:00:00Z", false),
            entry("d", "2026-11-22T15:00:00Z", false),
            entry("e", "2026-11-23T03:00:00Z", false),
        ];
        let plan = plan_prune(&e, 1, 2);
        let keep: Vec<&str> = plan
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(id, _)| id.as_str())
            .collect();
        // e: last and daily (23rd); d: daily (22nd, newest of that day); a: newest verified.
        assert_eq!(keep, ["e", "d", "a"]);
        let none = plan_prune(&e, 0, 0);
        assert_eq!(none.iter().filter(|(_, r)| !r.is_empty()).count(), 1);
    }
}
