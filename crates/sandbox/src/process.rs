//! Starting, watching and stopping the sandbox's processes.
//!
//! Each component runs in its own process group (so a signal to the group reaches everything it
//! forked), with stdin from /dev/null and stdout/stderr appended to `DIR/logs/<name>.log`, so it
//! outlives the `sandbox up` that started it. Liveness is read from /proc: a pid is alive when it
//! exists, is not a zombie, and its command line still names the program we started (pids get
//! reused after a reboot).

use std::ffi::OsString;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::SandboxError;

/// A process the sandbox started. Until [`Started::detach`] is called it is killed (with its
/// process group) when dropped, so an error, a panic or Ctrl-C during `up` (the future being
/// dropped) stops what was started instead of leaking it.
#[derive(Debug)]
pub struct Started {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub program: PathBuf,
    armed: bool,
}

impl Started {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Success: let the process outlive us. Returns what `state.json` records about it.
    pub fn detach(mut self) -> super::state::ProcessState {
        self.armed = false;
        self.record()
    }

    /// What `state.json` records about this process.
    pub fn record(&self) -> super::state::ProcessState {
        super::state::ProcessState {
            pid: self.pid(),
            log: self.log.clone(),
            program: self.program.clone(),
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
            tracing::info!(component = %self.name, "stopped after a failed start");
        }
    }
}

/// Starts `program args` as component `name`, in its own process group, logging to
/// `logs_dir/<name>.log` (appended: a restarted component keeps its history).
pub fn spawn(
    name: &str,
    program: &Path,
    args: &[OsString],
    logs_dir: &Path,
    workdir: &Path,
) -> Result<Started, SandboxError> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(logs_dir)
        .map_err(|e| SandboxError::io(format!("creating {}", logs_dir.display()), e))?;
    let log = logs_dir.join(format!("{name}.log"));
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))?;
    let rendered: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let _ = writeln!(
        out,
        "=== newapi-ops sandbox: starting {name} at {}: {} {}",
        jiff::Timestamp::now(),
        program.display(),
        rendered.join(" ")
    );
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))?;
    let child = Command::new(program)
        .args(args)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| SandboxError::StartFailed {
            component: name.to_string(),
            detail: format!("cannot execute {}: {e}", program.display()),
            log: log.clone(),
            tail: String::new(),
        })?;
    tracing::debug!(component = name, pid = child.id(), "started");
    Ok(Started {
        name: name.to_string(),
        child,
        log,
        program: program.to_path_buf(),
        armed: true,
    })
}

/// Polls `probe` until it succeeds, the child exits (an error showing the end of its log), or
/// `timeout` passes (an error with the probe's last complaint and the end of the log).
pub async fn wait_ready<F, Fut>(
    started: &mut Started,
    timeout: Duration,
    mut probe: F,
) -> Result<(), SandboxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let begin = Instant::now();
    loop {
        if let Ok(Some(status)) = started.child.try_wait() {
            // Let the last words reach the log file.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(SandboxError::StartFailed {
                component: started.name.clone(),
                detail: format!("it exited ({status}) before it was ready"),
                log: started.log.clone(),
                tail: tail_log(&started.log, 15),
            });
        }
        let last = match probe().await {
            Ok(()) => {
                tracing::debug!(component = %started.name, elapsed = ?begin.elapsed(), "ready");
                return Ok(());
            }
            Err(e) => e,
        };
        if begin.elapsed() >= timeout {
            return Err(SandboxError::NotReady {
                component: started.name.clone(),
                waited: timeout,
                detail: last,
                log: started.log.clone(),
                tail: tail_log(&started.log, 15),
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Whether `pid` is a live (non-zombie) process whose command line mentions `program`'s file
/// name. With no `program`, any live process counts.
pub fn is_alive(pid: u32, program: Option<&Path>) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    if matches!(state, "Z" | "X" | "x") {
        return false;
    }
    let Some(program) = program else {
        return true;
    };
    let Some(file_name) = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return true;
    };
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&file_name))
        .unwrap_or(false)
}

/// How a process ended when we stopped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopOutcome {
    /// It was already gone.
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for the grace period and was killed.
    Killed,
    /// It was still there after SIGKILL (should not happen).
    Stuck,
}

/// One process to stop: its name, pid (= process group id) and program.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub pid: u32,
    pub program: Option<PathBuf>,
}

/// Sends SIGTERM to every target's process group, waits up to `grace` for all of them, then
/// SIGKILLs the rest. Returns the outcome per target, in input order.
pub async fn stop_all(targets: &[Target], grace: Duration) -> Vec<StopOutcome> {
    let mut outcome: Vec<StopOutcome> = targets
        .iter()
        .map(|t| {
            if is_alive(t.pid, t.program.as_deref()) && signal_group(t.pid, Signal::SIGTERM) {
                StopOutcome::Terminated
            } else {
                StopOutcome::NotRunning
            }
        })
        .collect();
    let begin = Instant::now();
    let alive = |i: usize| is_alive(targets[i].pid, targets[i].program.as_deref());
    while (0..targets.len()).any(|i| outcome[i] == StopOutcome::Terminated && alive(i)) {
        if begin.elapsed() >= grace {
            for (i, o) in outcome.iter_mut().enumerate() {
                if *o == StopOutcome::Terminated && alive(i) {
                    signal_group(targets[i].pid, Signal::SIGKILL);
                    *o = StopOutcome::Killed;
                }
            }
            let kill_begin = Instant::now();
            while (0..targets.len()).any(|i| outcome[i] == StopOutcome::Killed && alive(i))
                && kill_begin.elapsed() < Duration::from_secs(3)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for (i, o) in outcome.iter_mut().enumerate() {
                if *o == StopOutcome::Killed && alive(i) {
                    *o = StopOutcome::Stuck;
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outcome
}

/// Sends `signal` to the process group `pgid`; false when there is no such group.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!("sending {signal} to process group {pgid}: {e}");
            false
        }
    }
}

/// The last `lines` lines of a log file (reads at most its last 16 KiB).
pub fn tail_log(path: &Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// Reserves `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
pub fn free_ports(n: usize) -> Result<Vec<u16>, SandboxError> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| SandboxError::io("finding free ports on 127.0.0.1", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| SandboxError::io("finding free ports on 127.0.0.1", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail_log(&p, 2), "c\nd");
        assert_eq!(tail_log(&dir.path().join("missing"), 2), "");
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(5).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
    }

    #[tokio::test]
    async fn spawns_in_own_group_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let started = spawn(
            "sleeper",
            Path::new("/bin/sleep"),
            &["30".into()],
            dir.path(),
            dir.path(),
        )
        .unwrap();
        let pid = started.pid();
        // Between fork and exec the child still runs the test binary.
        let begin = Instant::now();
        while !is_alive(pid, Some(Path::new("/bin/sleep")))
            && begin.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_alive(pid, Some(Path::new("/bin/sleep"))));
        assert!(!is_alive(pid, Some(Path::new("/usr/bin/other-program"))));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 1..];
        let pgrp: u32 = after.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, pid, "own process group");
        let targets = [Target {
            name: "sleeper".into(),
            pid,
            program: Some("/bin/sleep".into()),
        }];
        let out = stop_all(&targets, Duration::from_secs(5)).await;
        assert_eq!(out, vec![StopOutcome::Terminated]);
        let _ = started.detach();
        assert_eq!(
            stop_all(&targets, Duration::from_secs(1)).await,
            vec![StopOutcome::NotRunning]
        );
        assert!(
            std::fs::read_to_string(dir.path().join("sleeper.log"))
                .unwrap()
                .contains("starting sleeper")
        );
    }

    #[test]
    fn dropping_an_armed_process_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let started = spawn(
            "sleeper",
            Path::new("/bin/sleep"),
            &["30".into()],
            dir.path(),
            dir.path(),
        )
        .unwrap();
        let pid = started.pid();
        drop(started);
        assert!(!is_alive(pid, None), "killed and reaped");
    }
}
