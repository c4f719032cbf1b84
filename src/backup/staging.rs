//! The temporary directory of a backup in progress, `DIR/.tmp-ID/`: how a backup claims its id,
//! who owns the directory, its removal when the backup does not complete, and the sweep of those
//! that dead processes left behind.
//!
//! **Ids.** An id is the UTC second the backup started (`20261125T030000Z`), with `-2`, `-3` ...
//! when that one is taken. It is claimed by creating `DIR/.tmp-ID` with `mkdir` (which fails if
//! it exists, atomically, across processes) while `DIR/ID` does not exist; so two backups into
//! one directory in the same second get different ids, and the rename into place that ends a
//! backup never meets another's.
//!
//! **Owner.** The claim writes `owner.json` into the directory: the pid, the host name, the
//! kernel's boot id, the pid namespace and the process's start time (clock ticks since boot, so
//! that a reused pid is not mistaken for the owner). It is removed just before the rename.
//!
//! **Sweep.** `backup` and `backup prune` remove `.tmp-*` directories whose owner is dead: same
//! host, boot and pid namespace, and the pid is gone, a zombie, or another process now (its start
//! time differs). An owner that cannot be checked from here (another host or container, an
//! earlier boot, or no `owner.json`: a leftover of an older version) is removed only when the
//! directory is untouched for over a day. A live backup's directory is never removed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{BackupError, Result};
use super::files;

/// Temporary directories start with this.
pub const PREFIX: &str = ".tmp-";
/// The owner record in a temporary directory.
pub const OWNER: &str = "owner.json";
/// How many ids of one second are tried (`ID`, `ID-2` ... `ID-1000`).
const MAX_SUFFIX: u32 = 1000;
/// A temporary directory whose owner cannot be checked is stale after this long.
const UNKNOWN_OWNER_STALE_SECS: u64 = 86_400;

/// Who is writing a temporary directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// The host name (`/proc/sys/kernel/hostname`; a pod's name in Kubernetes); may be empty.
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: changes when the machine restarts.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// The pid namespace (`/proc/self/ns/pid`, e.g. `pid:[4026531836]`): pids compare only
    /// within one.
    #[serde(default)]
    pub pid_ns: Option<String>,
    /// The process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    #[serde(default)]
    pub start_ticks: Option<u64>,
    /// When the backup started (UTC).
    #[serde(default)]
    pub started_at: String,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            host: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.display().to_string()),
            start_ticks: start_ticks(pid),
            started_at: jiff::Timestamp::now().to_string(),
        }
    }

    /// Reads `dir/owner.json`; None if missing or unreadable.
    pub fn load(dir: &Path) -> Option<Owner> {
        let bytes = std::fs::read(dir.join(OWNER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes `dir/owner.json` (0600).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::Usage(format!("serializing the owner record: {e}")))?;
        files::write_private(dir, OWNER, &json)
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What `/proc/PID/stat` says of a process: its state letter and start time.
fn proc_stat(pid: u32) -> std::io::Result<(String, Option<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain anything: fields count after it.
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("").to_string();
    // Field 3 (state) is fields[0], so field 22 (starttime) is fields[19].
    let start = fields.get(19).and_then(|f| f.parse().ok());
    Ok((state, start))
}

fn start_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).ok().and_then(|(_, start)| start)
}

/// Whether the owner of a temporary directory is still at work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Certainly dead, and why (`process 4242 on this host is gone`).
    Dead(String),
    /// Cannot be checked from here, and why (`owned by process 1 on host backup-2910-x`).
    Unknown(String),
}

/// Judges `owner` from the process `me` (normally [`Owner::current`]).
pub fn liveness(owner: &Owner, me: &Owner) -> Liveness {
    let who = format!("process {}", owner.pid);
    if owner.host != me.host {
        return Liveness::Unknown(format!("owned by {who} on host {:?}", owner.host));
    }
    // Another boot id: this host before its last restart, or another machine of the same
    // name; only the second could still be running, and it cannot be asked from here.
    if let (Some(theirs), Some(ours)) = (&owner.boot_id, &me.boot_id)
        && theirs != ours
    {
        return Liveness::Unknown(format!(
            "owned by {who} of an earlier boot of this host (or of another machine named {:?})",
            owner.host
        ));
    }
    if owner.pid_ns != me.pid_ns {
        return Liveness::Unknown(format!("owned by {who} in another container on this host"));
    }
    if owner.pid == 0 || i32::try_from(owner.pid).is_err() {
        return Liveness::Unknown(format!("owned by an impossible pid {}", owner.pid));
    }
    if owner.pid == me.pid && owner.start_ticks == me.start_ticks {
        return Liveness::Alive;
    }
    match pid_state(owner.pid) {
        PidState::Gone => Liveness::Dead(format!("{who} on this host is gone")),
        PidState::Zombie => Liveness::Dead(format!("{who} on this host has exited")),
        PidState::Running(Some(start))
            if owner.start_ticks.is_some_and(|theirs| theirs != start) =>
        {
            Liveness::Dead(format!(
                "{who} on this host is gone (the pid is another process's now)"
            ))
        }
        PidState::Running(_) => Liveness::Alive,
    }
}

enum PidState {
    Gone,
    Zombie,
    /// Alive, with its start time when /proc says.
    Running(Option<u64>),
}

fn pid_state(pid: u32) -> PidState {
    let have_proc = Path::new("/proc/self/stat").exists();
    if have_proc {
        match proc_stat(pid) {
            Ok((state, _)) if matches!(state.as_str(), "Z" | "X" | "x") => {
                return PidState::Zombie;
            }
            Ok((_, start)) => return PidState::Running(start),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidState::Gone,
            Err(_) => {}
        }
    }
    // No /proc to read: ask the kernel whether the pid exists (signal 0 sends nothing).
    let Ok(raw) = i32::try_from(pid) else {
        return PidState::Running(None);
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Err(nix::errno::Errno::ESRCH) => PidState::Gone,
        _ => PidState::Running(None),
    }
}

/// The temporary directory of a backup in progress: removed when dropped, unless
/// [`Staging::into_place`] renamed it to its final name. Dropping happens on every error and
/// when the backup's future is dropped (Ctrl-C, SIGTERM), so no `.tmp-*` outlives a backup
/// this process could clean up after.
#[derive(Debug)]
pub struct Staging {
    pub id: String,
    pub path: PathBuf,
    armed: bool,
}

impl Staging {
    /// Claims the first free id of the second `at` in `dir` (which must exist) by creating
    /// `dir/.tmp-ID`, and writes the owner record into it.
    pub fn claim(dir: &Path, at: &jiff::Timestamp) -> Result<Staging> {
        let base = at.strftime("%Y%m%dT%H%M%SZ").to_string();
        for n in 1..=MAX_SUFFIX {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            if taken(&dir.join(&id)) {
                continue;
            }
            let path = dir.join(format!("{PREFIX}{id}"));
            match create_dir_exclusive(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(BackupError::file("creating directory", &path, e)),
            }
            let staging = Staging {
                id: id.clone(),
                path,
                armed: true,
            };
            // Another backup of that id may have been renamed into place between the check
            // above and the mkdir; now that `.tmp-ID` is ours, none can be any more.
            if taken(&dir.join(&id)) {
                continue; // dropping `staging` removes the directory
            }
            let mut owner = Owner::current();
            owner.started_at = at.to_string();
            owner.save(&staging.path)?;
            return Ok(staging);
        }
        Err(BackupError::Usage(format!(
            "no free backup id left for {base} in {} ({MAX_SUFFIX} taken)",
            dir.display()
        )))
    }

    /// Removes the owner record and renames the directory to `dir/ID`: the backup is complete.
    pub fn into_place(mut self, dir: &Path) -> Result<PathBuf> {
        let owner = self.path.join(OWNER);
        std::fs::remove_file(&owner)
            .map_err(|e| BackupError::file("removing the owner record", &owner, e))?;
        let final_path = dir.join(&self.id);
        std::fs::rename(&self.path, &final_path)
            .map_err(|e| BackupError::file("renaming the backup into place", &final_path, e))?;
        self.armed = false;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(final_path)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "could not remove the incomplete backup {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Whether something named `path` exists (a file, a directory, a dangling link).
fn taken(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// `mkdir path` with mode 0700, failing if it exists.
fn create_dir_exclusive(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(files::DIR_MODE)
        .create(path)
}

/// A stale temporary directory: removed (or, in a dry run, to be removed).
#[derive(Debug, Clone, Serialize)]
pub struct Stale {
    /// The directory's name (`.tmp-20261125T030000Z`).
    pub name: String,
    /// Why it is stale (`process 4242 on this host is gone`).
    pub why: String,
}

/// Removes (unless `dry_run`) the temporary directories of `dir` whose owner is dead; see the
/// module's documentation for the rule. Best effort: a directory that cannot be read or
/// removed is left (and logged).
pub fn sweep(dir: &Path, dry_run: bool) -> Vec<Stale> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let me = Owner::current();
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let path = ent.path();
        if !name.starts_with(PREFIX) || !ent.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let owner = Owner::load(&path);
        let why = match owner.as_ref().map(|o| liveness(o, &me)) {
            Some(Liveness::Alive) => continue,
            Some(Liveness::Dead(why)) => why,
            Some(Liveness::Unknown(why)) if older_than_a_day(&path) => {
                format!("{why}, untouched for over a day")
            }
            None if older_than_a_day(&path) => {
                "no owner record, untouched for over a day".to_string()
            }
            Some(Liveness::Unknown(_)) | None => continue,
        };
        if !dry_run {
            // The owner read must still be the owner: the name could have been freed and
            // claimed again meanwhile (by a backup of the same second).
            if Owner::load(&path) != owner {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("could not remove {}: {e}", path.display());
                continue;
            }
        }
        out.push(Stale { name, why });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn older_than_a_day(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > UNKNOWN_OWNER_STALE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> jiff::Timestamp {
        "2026-11-25T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn ids_are_claimed_in_order_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let a = Staging::claim(dir.path(), &at()).unwrap();
        assert_eq!(a.id, "20261125T030000Z");
        assert!(dir.path().join(".tmp-20261125T030000Z").is_dir());
        let b = Staging::claim(dir.path(), &at()).unwrap();
        assert_eq!(b.id, "20261125T030000Z-2");
        // A complete backup of that id is taken too.
        std::fs::create_dir(dir.path().join("20261125T030000Z-3")).unwrap();
        let c = Staging::claim(dir.path(), &at()).unwrap();
        assert_eq!(c.id, "20261125T030000Z-4");
        assert_eq!(Owner::load(&c.path).unwrap().pid, std::process::id());
        let done = a.into_place(dir.path()).unwrap();
        assert_eq!(done, dir.path().join("20261125T030000Z"));
        assert!(!done.join(OWNER).exists());
        drop(b);
        drop(c);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["20261125T030000Z", "20261125T030000Z-3"]);
    }

    #[test]
    fn concurrent_claims_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Barrier::new(8);
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let st = Staging::claim(dir.path(), &at()).unwrap();
                        let id = st.id.clone();
                        st.into_place(dir.path()).unwrap();
                        id
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 8, "{ids:?}");
    }

    #[test]
    fn liveness_of_owners() {
        let me = Owner::current();
        assert_eq!(liveness(&me, &me), Liveness::Alive);
        // A child that has exited and been reaped: its pid is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = Owner {
            pid: child.id(),
            ..me.clone()
        };
        assert!(matches!(liveness(&dead, &me), Liveness::Dead(_)));
        // Our pid with another start time: a reused pid.
        let reused = Owner {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(matches!(liveness(&reused, &me), Liveness::Dead(_)));
        // Before the host's last restart (or another machine of the same name): not ours to say.
        let rebooted = Owner {
            boot_id: Some("another-boot".into()),
            ..me.clone()
        };
        assert!(matches!(liveness(&rebooted, &me), Liveness::Unknown(_)));
        let elsewhere = Owner {
            host: format!("{}-other", me.host),
            pid: child.id(),
            ..me.clone()
        };
        assert!(matches!(liveness(&elsewhere, &me), Liveness::Unknown(_)));
        let zero = Owner {
            pid: 0,
            ..me.clone()
        };
        assert!(matches!(liveness(&zero, &me), Liveness::Unknown(_)));
    }

    #[test]
    fn the_sweep_removes_only_the_dead_and_the_old_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let write = |name: &str, owner: Option<&Owner>| {
            let p = dir.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("logs.00001.sql.zst"), b"x").unwrap();
            if let Some(o) = owner {
                o.save(&p).unwrap();
            }
        };
        write(".tmp-live", Some(&me));
        write(
            ".tmp-dead",
            Some(&Owner {
                pid: child.id(),
                ..me.clone()
            }),
        );
        write(
            ".tmp-elsewhere",
            Some(&Owner {
                host: format!("{}-other", me.host),
                ..me.clone()
            }),
        );
        write(".tmp-legacy", None);
        std::fs::create_dir(dir.path().join("20261125T030000Z")).unwrap();
        let dry = sweep(dir.path(), true);
        assert_eq!(
            dry.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [".tmp-dead"]
        );
        assert!(dir.path().join(".tmp-dead").exists());
        let swept = sweep(dir.path(), false);
        assert_eq!(swept.len(), 1);
        assert!(swept[0].why.contains("is gone"), "{swept:?}");
        for kept in [
            ".tmp-live",
            ".tmp-elsewhere",
            ".tmp-legacy",
            "20261125T030000Z",
        ] {
            assert!(dir.path().join(kept).exists(), "{kept} was removed");
        }
        assert!(!dir.path().join(".tmp-dead").exists());
    }
}
