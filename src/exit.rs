//! Every exit code of newapi-ops, in one leaf module. README.md's "Exit codes" table documents
//! each one; the test below reads that table, so a code cannot change or appear without it.
//! Which error or outcome ends in which code is decided in one place: [`crate::error`].
//!
//! Codes 0–3 belong to commands that report findings (diagnose) or runs (runbook); errors use the
//! sysexits.h range so scripts can tell the two apart.

/// Success.
pub const OK: u8 = 0;
/// diagnose: warnings found.
pub const WARNINGS: u8 = 1;
/// diagnose: critical findings.
pub const CRITICAL: u8 = 2;
/// diagnose could not run at all (no kubeconfig, bad config, namespace missing).
pub const COULD_NOT_RUN: u8 = 3;
/// Bad command line or bad input value (EX_USAGE).
pub const USAGE: u8 = 64;
/// Data is damaged or does not match: a corrupt backup, restored data that differs (EX_DATAERR).
pub const DATA: u8 = 65;
/// A named thing does not exist: namespace, workload, context, file (EX_NOINPUT).
pub const NOT_FOUND: u8 = 66;
/// A backend could not be reached: API server, MySQL, Redis, TLS failure (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// A bug or an unexpected answer (EX_SOFTWARE).
pub const INTERNAL: u8 = 70;
/// Refused to overwrite: the target of a restore is not empty (EX_CANTCREAT).
pub const CANT_CREATE: u8 = 73;
/// Local I/O failed: a file could not be read or written (EX_IOERR).
pub const IO: u8 = 74;
/// Authentication (401) or authorization (403) refused (EX_NOPERM).
pub const PERMISSION: u8 = 77;
/// Configuration is missing or invalid: kubeconfig, newapi-ops.toml (EX_CONFIG).
pub const CONFIG: u8 = 78;
/// scale/restart: the change was applied but the rollout did not complete — pods the
/// scheduler cannot place, or the timeout (EX_TEMPFAIL).
pub const ROLLOUT_INCOMPLETE: u8 = 75;
/// scale/restart: someone else changed the replicas (while planning or waiting, or since
/// the change `--undo` would revert); newapi-ops did not overwrite them.
pub const CONFLICT: u8 = 76;
/// bench --in-cluster: not every worker reported (pods not started, failed, no result); the
/// report covers those that did (EX_TEMPFAIL, as a rollout that did not complete).
pub const WORKERS_INCOMPLETE: u8 = 75;
/// backup schedule --run-now: the backup Job failed (the failed pod's last log lines are shown;
/// EX_TEMPFAIL: fix the cause and run it again).
pub const JOB_FAILED: u8 = 75;
/// backup schedule --run-now: the Job had not finished within --timeout; it keeps running
/// (EX_TEMPFAIL: look again later).
pub const JOB_NOT_FINISHED: u8 = 75;
/// restore --fast-load: other clients are connected to the server; nothing was changed (retry
/// when they are gone, or `--allow-other-clients`) (EX_TEMPFAIL).
pub const SERVER_BUSY: u8 = 75;
/// scale/restart: the answer at the confirmation prompt was no; nothing was changed.
pub const DECLINED: u8 = 1;
/// runbook run: completed, but steps that say `on_failure: continue` failed.
pub const RUN_FAILED_STEPS: u8 = 1;
/// runbook run: aborted (a step failed, was declined, or was stopped).
pub const RUN_ABORTED: u8 = 2;
/// Interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15), as `kill` or Kubernetes stopping a pod sends it; handled as
/// Ctrl-C is.
pub const TERMINATED: u8 = 143;

/// Every code above with its name, for the documentation test.
pub const ALL: &[(&str, u8)] = &[
    ("OK", OK),
    ("WARNINGS", WARNINGS),
    ("CRITICAL", CRITICAL),
    ("COULD_NOT_RUN", COULD_NOT_RUN),
    ("USAGE", USAGE),
    ("DATA", DATA),
    ("NOT_FOUND", NOT_FOUND),
    ("UNAVAILABLE", UNAVAILABLE),
    ("INTERNAL", INTERNAL),
    ("CANT_CREATE", CANT_CREATE),
    ("IO", IO),
    ("PERMISSION", PERMISSION),
    ("CONFIG", CONFIG),
    ("ROLLOUT_INCOMPLETE", ROLLOUT_INCOMPLETE),
    ("CONFLICT", CONFLICT),
    ("WORKERS_INCOMPLETE", WORKERS_INCOMPLETE),
    ("JOB_FAILED", JOB_FAILED),
    ("JOB_NOT_FINISHED", JOB_NOT_FINISHED),
    ("SERVER_BUSY", SERVER_BUSY),
    ("DECLINED", DECLINED),
    ("RUN_FAILED_STEPS", RUN_FAILED_STEPS),
    ("RUN_ABORTED", RUN_ABORTED),
    ("INTERRUPTED", INTERRUPTED),
    ("TERMINATED", TERMINATED),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The codes in the first column of README.md's "Exit codes" table.
    fn documented() -> BTreeSet<u8> {
        let readme = include_str!("../README.md");
        let table = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .expect("README.md has an \"Exit codes\" section");
        let table = table.split("\n## ").next().unwrap_or(table);
        let mut codes = BTreeSet::new();
        for line in table.lines().filter(|l| l.starts_with("| ")) {
            let first = line
                .trim_start_matches("| ")
                .split(" |")
                .next()
                .unwrap_or("");
            for code in first.split(',').map(str::trim) {
                if let Ok(c) = code.parse::<u8>() {
                    codes.insert(c);
                }
            }
        }
        codes
    }

    #[test]
    fn every_code_is_documented_in_the_readme_and_nothing_else_is() {
        let ours: BTreeSet<u8> = super::ALL.iter().map(|(_, c)| *c).collect();
        let readme = documented();
        for (name, code) in super::ALL {
            assert!(
                readme.contains(code),
                "exit::{name} = {code} is not in README.md's table"
            );
        }
        for code in &readme {
            assert!(
                ours.contains(code),
                "README.md documents exit code {code}, which exit.rs lacks"
            );
        }
    }

    #[test]
    fn the_values_scripts_rely_on() {
        use super::*;
        let pinned = [
            (OK, 0),
            (WARNINGS, 1),
            (CRITICAL, 2),
            (COULD_NOT_RUN, 3),
            (USAGE, 64),
            (DATA, 65),
            (NOT_FOUND, 66),
            (UNAVAILABLE, 69),
            (INTERNAL, 70),
            (CANT_CREATE, 73),
            (IO, 74),
            (ROLLOUT_INCOMPLETE, 75),
            (CONFLICT, 76),
            (WORKERS_INCOMPLETE, 75),
            (JOB_FAILED, 75),
            (SERVER_BUSY, 75),
            (PERMISSION, 77),
            (CONFIG, 78),
            (DECLINED, 1),
            (RUN_FAILED_STEPS, 1),
            (RUN_ABORTED, 2),
            (INTERRUPTED, 130),
            (TERMINATED, 143),
        ];
        for (code, want) in pinned {
            assert_eq!(code, want);
        }
    }
}
