//! What an incident has been through, saved after every event as `state.json` (0600, in a 0700
//! directory of its own) so that `incident --resume` continues where it stopped and the report
//! can always be written. Everything stored has been through the redactor first.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{FindingRef, Proposal, Verdict};
use crate::diagnose::finding::Finding;
use crate::error::{Error, Result};

/// The state file's format version.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Going on (or stopped without a chance to say so: a killed process).
    Open,
    /// Stopped by Ctrl-C; `--resume` continues.
    Interrupted,
    /// The report is written.
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Interrupted => "interrupted",
            Status::Closed => "closed",
        }
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: String,
    pub what: String,
}

/// A note the operator added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub at: String,
    pub text: String,
}

/// The runbook chosen, with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub runbook: String,
    pub title: String,
    pub inputs: Vec<(String, String)>,
    /// What it is meant to fix.
    pub findings: Vec<FindingRef>,
}

/// A step of the runbook as it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDone {
    pub id: String,
    pub title: String,
    pub action: String,
    pub effect: String,
    pub status: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub output: Json,
    pub at: String,
}

/// A change that was applied, with the re-check of what it was meant to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub step: String,
    pub change: String,
    pub status: String,
    pub at: String,
    /// The findings before the change and what the re-check found of each.
    pub rechecks: Vec<(FindingRef, Verdict)>,
    /// How long the re-check watched, and how it ended.
    pub recheck_note: String,
}

/// Everything about one incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    pub version: u32,
    pub id: String,
    pub status: Status,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub namespace: String,
    /// The symptom keys chosen; None until asked.
    pub symptoms: Option<Vec<String>>,
    /// The findings of the first diagnosis (above ok); None until diagnosed.
    pub findings: Option<Vec<Finding>>,
    #[serde(default)]
    pub proposals: Vec<Proposal>,
    /// The runbook chosen; None until chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<Chosen>,
    /// True once the operator declined every runbook or the chosen one has ended.
    #[serde(default)]
    pub runbook_done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_status: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepDone>,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub timeline: Vec<Event>,
    /// Transcripts of the runbook runs (one per run; a resumed run writes another).
    #[serde(default)]
    pub transcripts: Vec<String>,
    /// What the final check still found (above info); None until checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub still_open: Option<Vec<FindingRef>>,
    /// Whether the final check asked was complete (false: it could not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_check: Option<String>,
}

/// An incident id: `20261129T223000Z-4f2a1c`.
pub fn new_id() -> String {
    let t = jiff::Timestamp::now();
    let stamp = t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let salt = (u64::from(t.subsec_nanosecond().unsigned_abs()) ^ u64::from(std::process::id()))
        % 0x100_0000;
    format!("{stamp}-{salt:06x}")
}

/// The default incidents directory: `$XDG_STATE_HOME/newapi-ops/incidents`.
pub fn default_dir() -> PathBuf {
    crate::runbook::transcript::default_runs_dir()
        .parent()
        .map(|p| p.join("incidents"))
        .unwrap_or_else(|| PathBuf::from("incidents"))
}

impl Incident {
    pub fn new(id: String, namespace: String, context: Option<String>, at: String) -> Incident {
        Incident {
            version: VERSION,
            id,
            status: Status::Open,
            started_at: at,
            ended_at: None,
            context,
            namespace,
            symptoms: None,
            findings: None,
            proposals: Vec::new(),
            chosen: None,
            runbook_done: false,
            runbook_status: None,
            steps: Vec::new(),
            actions: Vec::new(),
            notes: Vec::new(),
            timeline: Vec::new(),
            transcripts: Vec::new(),
            still_open: None,
            final_check: None,
        }
    }

    /// Adds a timeline line stamped `at`.
    pub fn event(&mut self, at: String, what: impl Into<String>) {
        self.timeline.push(Event {
            at,
            what: what.into(),
        });
    }

    /// The incident's directory under `root`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.id)
    }

    /// Writes `state.json` atomically (temporary file, then rename), 0600 in a 0700 directory.
    pub fn save(&self, root: &Path) -> Result<PathBuf> {
        let dir = self.dir(root);
        create_private_dir(&dir)?;
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("serializing the incident state: {e}")))?;
        let path = dir.join("state.json");
        write_private(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Reads an incident's state.
    pub fn load(root: &Path, id: &str) -> Result<Incident> {
        let path = root.join(id).join("state.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let inc: Incident = serde_json::from_str(&text).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        if inc.version != VERSION {
            return Err(Error::Usage(format!(
                "{} was written by another version of newapi-ops (state version {}, this one reads {VERSION})",
                path.display(),
                inc.version
            )));
        }
        Ok(inc)
    }
}

/// The newest incident under `root` that is not closed, if any.
pub fn latest_unfinished(root: &Path) -> Result<Option<Incident>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // Ids start with their UTC time: the newest sorts last.
    ids.sort();
    for id in ids.iter().rev() {
        let inc = Incident::load(root, id)?;
        if inc.status != Status::Closed {
            return Ok(Some(inc));
        }
    }
    Ok(None)
}

/// Creates `dir` (and its parents) and makes it 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("restricting {}", dir.display()), e))
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing {}", path.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_privately_and_the_newest_unfinished_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        assert!(latest_unfinished(root.path()).unwrap().is_none());
        let mut a = Incident::new(
            "20261129T100000Z-aaaaaa".into(),
            "new-api".into(),
            None,
            "t0".into(),
        );
        a.status = Status::Closed;
        a.save(root.path()).unwrap();
        let mut b = Incident::new(
            "20261129T110000Z-bbbbbb".into(),
            "new-api".into(),
            Some("sandbox".into()),
            "t1".into(),
        );
        b.symptoms = Some(vec!["restarting".into()]);
        b.event("t1".into(), "symptoms chosen");
        let path = b.save(root.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let c = Incident::new(
            "20261129T120000Z-cccccc".into(),
            "new-api".into(),
            None,
            "t2".into(),
        );
        let mut c2 = c.clone();
        c2.status = Status::Closed;
        c2.save(root.path()).unwrap();
        let got = latest_unfinished(root.path()).unwrap().unwrap();
        assert_eq!(got.id, b.id);
        assert_eq!(got.symptoms, b.symptoms);
        assert_eq!(got.timeline, b.timeline);
        assert!(!root.path().join(&b.id).join("state.tmp").exists());
    }
}

/// One process at a time works on an incident: `lock` in its directory names the holder (pid,
/// host, boot; as a backup's owner record). A second `--resume` of the same incident is refused
/// while the holder lives; a lock whose process has died is taken over. Removed when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of the incident in `dir` (which must exist).
    pub fn take(dir: &Path, id: &str) -> Result<Lock> {
        use crate::backup::staging::{Liveness, Owner, liveness};
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("lock");
        let me = Owner::current();
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let json = serde_json::to_vec_pretty(&me)
                        .map_err(|e| Error::Internal(format!("serializing the lock: {e}")))?;
                    f.write_all(&json)
                        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<Owner> = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    let Some(holder) = holder else {
                        // Being written this very moment, or garbage: not ours to break.
                        return Err(Error::IncidentLocked {
                            id: id.to_string(),
                            holder: format!("an unreadable lock file {}", path.display()),
                        });
                    };
                    match liveness(&holder, &me) {
                        Liveness::Dead(_) => {
                            let _ = std::fs::remove_file(&path);
                        }
                        Liveness::Alive | Liveness::Unknown(_) => {
                            return Err(Error::IncidentLocked {
                                id: id.to_string(),
                                holder: format!(
                                    "process {} on host {:?} (since {})",
                                    holder.pid, holder.host, holder.started_at
                                ),
                            });
                        }
                    }
                }
                Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(Error::IncidentLocked {
            id: id.to_string(),
            holder: "another process that took it just now".into(),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
