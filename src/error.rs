//! Typed errors of newapi-ops and the one place that maps them to exit codes.
//!
//! Every variant says what went wrong and where; [`Error::hint`] says what to do next.

use std::path::PathBuf;

use crate::backends::ResolveError;
use crate::backup::BackupError;
use crate::bench::BenchError;
use crate::exit;
use crate::signals::Signal;

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, typed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("no kubeconfig found (looked at {looked}) and not running inside a pod")]
    NoKubeconfig { looked: String },

    #[error("cannot use kubeconfig {path}: {detail}")]
    KubeconfigInvalid { path: String, detail: String },

    #[error("context \"{context}\" is not in kubeconfig {path}")]
    UnknownContext {
        context: String,
        path: String,
        available: Vec<String>,
    },

    #[error("cannot reach the Kubernetes API server at {server}: {detail}")]
    Unreachable { server: String, detail: String },

    #[error("TLS handshake with the Kubernetes API server at {server} failed: {detail}")]
    Tls { server: String, detail: String },

    #[error("the API server at {server} rejected our credentials (401 Unauthorized){who}")]
    Unauthorized { server: String, who: String },

    #[error("RBAC denied {verb} on {resource}{scope}: {message}")]
    Forbidden {
        verb: String,
        resource: String,
        scope: String,
        message: String,
    },

    #[error("namespace \"{namespace}\" not found")]
    NamespaceNotFound {
        namespace: String,
        available: Vec<String>,
    },

    #[error("{kind} \"{name}\" not found in namespace \"{namespace}\"")]
    WorkloadNotFound {
        kind: String,
        name: String,
        namespace: String,
        available: Vec<String>,
    },

    #[error("the API server answered {code} to {call}: {message}")]
    Api {
        call: String,
        code: u16,
        message: String,
    },

    #[error("invalid configuration in {path}: {detail}")]
    Config { path: PathBuf, detail: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[cfg(feature = "sandbox")]
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),

    /// MySQL or Redis could not be located or reached through the cluster.
    #[error(transparent)]
    Backend(#[from] crate::backends::ResolveError),

    /// Backups, restores and their schedule.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),

    /// `audit --fix`: a fix refused by the server's dry run, or applied and rolled back.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Load tests (`bench`).
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),

    #[error("diagnose could not run: {0}")]
    CouldNotRun(Box<Error>),

    /// A runbook file that does not validate (each error with file:line:column).
    #[error("runbook {file} is invalid:\n{}", .errors.join("\n"))]
    RunbookInvalid { file: String, errors: Vec<String> },

    #[error("no runbook file at {path}")]
    RunbookFileNotFound {
        path: String,
        available: Vec<String>,
    },

    #[error("no runbook named \"{name}\"")]
    RunbookNotFound {
        name: String,
        available: Vec<String>,
    },

    #[error(
        "no previous container to read: {} not restarted",
        crate::units::list_and_verb(.pods, "has", "have")
    )]
    NoPreviousLog { pods: Vec<String> },

    #[error("interrupted")]
    Interrupted,

    /// Stopped by SIGTERM (`kill`, Kubernetes stopping the pod), handled as Ctrl-C is.
    #[error("terminated (SIGTERM)")]
    Terminated,

    #[error("confirmation needed, but there is no terminal to ask on: {prompt}")]
    ConfirmationRequired { prompt: String },

    #[error("`incident` asks questions, and there is no terminal to ask them on")]
    IncidentNeedsTerminal,

    #[error("incident {id} is being worked on by {holder}")]
    IncidentLocked { id: String, holder: String },

    #[error("no incident to resume in {dir}{}", id.as_ref().map(|i| format!(" with the id {i}")).unwrap_or_default())]
    NoIncidentToResume { dir: PathBuf, id: Option<String> },

    #[error(
        "nothing to undo: {what} has no record of a scale by newapi-ops (annotation {annotation})"
    )]
    NothingToUndo { what: String, annotation: String },

    #[error("the replicas of {what} are {found}, not {expected}: {detail}")]
    ReplicasChanged {
        what: String,
        expected: i32,
        found: i32,
        detail: String,
    },

    #[error("{what}: {summary}{}", pending_lines(.pending))]
    RolloutIncomplete {
        what: String,
        /// "4 of 5 replicas available after 5m (timeout)".
        summary: String,
        /// One line per Pending pod: `name: the scheduler's reason`.
        pending: Vec<String>,
        /// What the deployment is left at, e.g. "spec.replicas stays at 5, as requested".
        state: String,
        /// The next step.
        next: String,
    },

    #[error(
        "lost the API server at {server} while following the rollout of {what}: {detail}; {state}"
    )]
    LostDuringRollout {
        server: String,
        detail: String,
        what: String,
        /// What is known of the deployment: "as requested: spec.replicas = 5 was accepted ...".
        state: String,
        next: String,
    },

    #[error("{0}")]
    Internal(String),
}

/// The Pending pods of [`Error::RolloutIncomplete`], one per line.
fn pending_lines(pending: &[String]) -> String {
    pending.iter().map(|p| format!("\n  {p}")).collect()
}

impl Error {
    /// Whether a wait should retry after this error, as the API server may come back: it did
    /// not answer (refused, reset, timed out), TLS broke mid-way, or it answered 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Tls { .. } => true,
            Error::Api { code, .. } => *code == 0 || *code >= 500,
            _ => false,
        }
    }

    /// What went wrong without the server's address, for a message that names it already.
    pub fn detail(&self) -> String {
        match self {
            Error::Unreachable { detail, .. } | Error::Tls { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::NoKubeconfig { .. } | Error::KubeconfigInvalid { .. } | Error::Config { .. } => {
                exit::CONFIG
            }
            Error::UnknownContext { .. }
            | Error::NamespaceNotFound { .. }
            | Error::WorkloadNotFound { .. } => exit::NOT_FOUND,
            Error::Unreachable { .. } | Error::Tls { .. } => exit::UNAVAILABLE,
            Error::Unauthorized { .. } | Error::Forbidden { .. } => exit::PERMISSION,
            Error::Api { .. } | Error::Internal(_) => exit::INTERNAL,
            Error::Io { .. } => exit::IO,
            #[cfg(feature = "sandbox")]
            Error::Sandbox(e) => sandbox_code(e),
            Error::Backend(e) => resolve_code(e),
            Error::Backup(e) => backup_code(e),
            Error::Audit(e) => audit_code(e),
            Error::Bench(e) => bench_code(e),
            Error::CouldNotRun(_) => exit::COULD_NOT_RUN,
            Error::Interrupted => exit::INTERRUPTED,
            Error::Terminated => exit::TERMINATED,
            Error::RunbookInvalid { .. } => exit::DATA,
            Error::RunbookNotFound { .. }
            | Error::RunbookFileNotFound { .. }
            | Error::NoPreviousLog { .. } => exit::NOT_FOUND,
            Error::ConfirmationRequired { .. } => exit::USAGE,
            Error::IncidentNeedsTerminal => exit::USAGE,
            Error::NoIncidentToResume { .. } => exit::NOT_FOUND,
            Error::IncidentLocked { .. } => exit::CONFLICT,
            Error::NothingToUndo { .. } => exit::NOT_FOUND,
            Error::ReplicasChanged { .. } => exit::CONFLICT,
            Error::RolloutIncomplete { .. } => exit::ROLLOUT_INCOMPLETE,
            Error::LostDuringRollout { .. } => exit::UNAVAILABLE,
        }
    }

    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Usage(_) => "see `newapi-ops --help`".into(),
            Error::NoKubeconfig { .. } if cfg!(feature = "sandbox") => "pass --kubeconfig PATH or set KUBECONFIG; for a local cluster to try, run `newapi-ops sandbox up`".into(),
            Error::NoKubeconfig { .. } => "pass --kubeconfig PATH or set KUBECONFIG; in a pod, mount its service account token (automountServiceAccountToken: true)".into(),
            Error::KubeconfigInvalid { .. } => "check the file with `kubectl config view --kubeconfig PATH`".into(),
            Error::UnknownContext { available, .. } => {
                if available.is_empty() {
                    "the kubeconfig defines no contexts".into()
                } else {
                    format!("use one of: {}", available.join(", "))
                }
            }
            Error::Unreachable { .. } => "check that the cluster is running and that this address is reachable from here (VPN, firewall, `kubectl cluster-info`)".into(),
            Error::Tls { .. } => "the server's certificate does not match the certificate-authority in the kubeconfig: fetch a fresh kubeconfig for this cluster".into(),
            Error::Unauthorized { .. } => "the token or client certificate is expired or wrong: log in again or fetch a fresh kubeconfig".into(),
            Error::Forbidden { verb, resource, scope, .. } => format!(
                "ask a cluster admin for a Role granting `{verb}` on `{resource}`{scope}, or use a context that has it"
            ),
            Error::NamespaceNotFound { available, .. } => {
                if available.is_empty() {
                    "pass -n/--namespace with the namespace New-API runs in".into()
                } else {
                    format!("pass -n/--namespace; namespaces here: {}", available.join(", "))
                }
            }
            Error::WorkloadNotFound { kind, available, .. } => {
                let there = if available.is_empty() {
                    format!("there are no {kind}s in this namespace")
                } else {
                    format!("{kind}s here: {}", available.join(", "))
                };
                if kind == "pod" {
                    there
                } else {
                    format!("{there}; set the names in newapi-ops.toml or with --master/--slave/--mysql/--redis")
                }
            }
            Error::NoPreviousLog { .. } => "drop --previous to read the running containers' logs; `newapi-ops pods` shows which pods restarted".into(),
            Error::Config { detail, .. } if detail == "no such file" => "pass an existing file to --config (or fix NEWAPI_OPS_CONFIG); without either, ./newapi-ops.toml and then ~/.config/newapi-ops/newapi-ops.toml are read when they exist".into(),
            Error::Config { .. } => "fix the file, or move it away to use the defaults".into(),
            Error::IncidentNeedsTerminal => "run it in a terminal; in a script use `newapi-ops diagnose` for the report and `newapi-ops runbook run NAME` for a runbook, or `newapi-ops incident --answers FILE` to answer its questions from a file".into(),
            Error::IncidentLocked { id, .. } => format!("wait for that run to finish (or stop it), then `newapi-ops incident --resume {id}`; the lock of a process that has died is taken over by itself"),
            Error::NoIncidentToResume { dir, .. } => format!("start a new one with `newapi-ops incident`; past incidents are the directories of {}", dir.display()),
            Error::ConfirmationRequired { .. } => "pass --yes to go ahead without a prompt, or --dry-run to only see the plan".into(),
            Error::NothingToUndo { .. } => "scale to an explicit count instead: `newapi-ops scale N`".into(),
            Error::ReplicasChanged { .. } => "find out who else sets the replicas (an autoscaler, another operator, a CI job); newapi-ops changed nothing more — run `newapi-ops scale N` again once that is settled".into(),
            Error::RolloutIncomplete { state, next, .. } => format!("{state}; {next}"),
            Error::LostDuringRollout { next, .. } => next.clone(),
            #[cfg(feature = "sandbox")]
            Error::Sandbox(e) => return e.hint(),
            Error::Backend(e) => return e.hint(),
            Error::Backup(e) => return e.hint(),
            Error::Audit(e) => return e.hint(),
            Error::Bench(e) => return e.hint(),
            Error::CouldNotRun(e) => return e.hint(),
            Error::RunbookInvalid { file, .. } => {
                format!("`newapi-ops runbook validate {file}` lists every error")
            }
            Error::RunbookFileNotFound { available, .. } => format!(
                "a name or a path with '/' or .yaml: the path is not there; runbooks by name: {} (e.g. `newapi-ops runbook run {}`)",
                available.join(", "),
                available.first().map_or("NAME", String::as_str)
            ),
            Error::RunbookNotFound { available, .. } => format!(
                "runbooks here: {} (`newapi-ops runbook list`; add yours with --runbook-dir DIR)",
                available.join(", ")
            ),
            Error::Api { code, .. } => match code {
                404 => "the object is gone or was never there: check the names with `newapi-ops pods` (or `kubectl get`)".into(),
                409 => "someone else changed it at the same moment: run the command again".into(),
                c if *c >= 500 || *c == 0 => "the API server had a problem: run again; if it persists, check the API server's health (`kubectl get --raw /readyz?verbose`) and its logs".into(),
                _ => "the API server refused the request as sent: run again with -vv to see the call; if it persists, this is a bug of newapi-ops".into(),
            },
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => "check the permissions of the file or directory named (and who runs newapi-ops)".into(),
                std::io::ErrorKind::NotFound => "check that the path named exists".into(),
                std::io::ErrorKind::StorageFull => "free some space on that file system, or point newapi-ops at another directory".into(),
                std::io::ErrorKind::ReadOnlyFilesystem => "that file system is read-only: point newapi-ops at a writable directory".into(),
                _ => return None,
            },
            Error::Internal(_) => "this is a bug of newapi-ops: run again with -vv and report what it prints".into(),
            Error::Interrupted | Error::Terminated => return None,
        })
    }
}

/// The exit code of a sandbox failure (crates/sandbox has its own error type; the codes are
/// chosen here).
#[cfg(feature = "sandbox")]
fn sandbox_code(e: &crate::sandbox::SandboxError) -> u8 {
    use crate::sandbox::SandboxError as S;
    match e {
        S::MissingBinaries { .. } | S::State { .. } => exit::CONFIG,
        S::NotFound { .. } => exit::NOT_FOUND,
        S::NotASandbox { .. } => exit::USAGE,
        S::Io { .. } => exit::IO,
        S::Pki { .. } | S::Manifest { .. } | S::Other(_) => exit::INTERNAL,
        S::Unhealthy { .. }
        | S::StartFailed { .. }
        | S::NotReady { .. }
        | S::Api { .. }
        | S::Apply { .. }
        | S::Rollout { .. }
        | S::Mysql { .. }
        | S::Kubelet(_)
        | S::Netns { .. }
        | S::Metrics(_)
        | S::MetricsNotServed { .. } => exit::UNAVAILABLE,
    }
}

impl From<Signal> for Error {
    /// What `main` reports when a signal stopped a command that did not handle it itself.
    fn from(s: Signal) -> Error {
        match s {
            Signal::Interrupt => Error::Interrupted,
            Signal::Terminate => Error::Terminated,
        }
    }
}

/// The exit code of a stop signal: 128 + its number.
fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Interrupt => exit::INTERRUPTED,
        Signal::Terminate => exit::TERMINATED,
    }
}

/// The exit code of a failed `audit --fix`: the API error's underneath, or the signal's.
fn audit_code(e: &crate::audit::AuditError) -> u8 {
    match (e, e.source_error()) {
        (crate::audit::AuditError::Interrupted { signal, .. }, _) => signal_code(*signal),
        (_, Some(source)) => source.exit_code(),
        (_, None) => exit::INTERNAL,
    }
}

/// The exit code of a MySQL/Redis resolution failure.
fn resolve_code(e: &ResolveError) -> u8 {
    match e {
        ResolveError::BadUrl { .. } => exit::USAGE,
        ResolveError::Unreadable { .. } => exit::PERMISSION,
        ResolveError::Unset { .. } | ResolveError::BadValue { .. } | ResolveError::NoCluster => {
            exit::CONFIG
        }
        ResolveError::NoPod { .. } => exit::UNAVAILABLE,
        ResolveError::Forward { source, .. } | ResolveError::Cluster(source) => source.exit_code(),
    }
}

/// The exit code of a load test that could not run or finish.
fn bench_code(e: &BenchError) -> u8 {
    match e {
        BenchError::Usage(_) => exit::USAGE,
        BenchError::Unreachable { .. } => exit::UNAVAILABLE,
        BenchError::NoPods { .. } | BenchError::NoService { .. } => exit::NOT_FOUND,
        BenchError::WorkersIncomplete { .. } => exit::WORKERS_INCOMPLETE,
        BenchError::BadWorkerResult { .. } => exit::DATA,
    }
}

/// The exit code of a backup, restore or schedule failure.
fn backup_code(e: &BackupError) -> u8 {
    match e {
        BackupError::Usage(_)
        | BackupError::NeedIdentity { .. }
        | BackupError::BadRecipient { .. } => exit::USAGE,
        BackupError::Connect { .. }
        | BackupError::Lost { .. }
        | BackupError::ForwardLost { .. }
        | BackupError::CronJobUnsupported { .. }
        | BackupError::LostWhileFollowing { .. } => exit::UNAVAILABLE,
        BackupError::Denied { .. }
        | BackupError::LockRefused { .. }
        | BackupError::WrongIdentity { .. } => exit::PERMISSION,
        BackupError::Query { .. } => exit::INTERNAL,
        BackupError::NoDatabase { .. }
        | BackupError::NoTable { .. }
        | BackupError::NotFound { .. } => exit::NOT_FOUND,
        BackupError::DatabaseUnknown { .. } | BackupError::BadIdentity { .. } => exit::CONFIG,
        BackupError::File { .. } => exit::IO,
        BackupError::Corrupt { .. }
        | BackupError::BadManifest { .. }
        | BackupError::Mismatch { .. } => exit::DATA,
        BackupError::TargetNotEmpty { .. } => exit::CANT_CREATE,
        BackupError::OtherClients { .. } => exit::SERVER_BUSY,
        BackupError::FastLoadDenied { .. } => exit::PERMISSION,
        BackupError::GlobalsLeft { cause, .. } => {
            cause.as_deref().map_or(exit::UNAVAILABLE, backup_code)
        }
        BackupError::Declined { .. } => exit::DECLINED,
        BackupError::Interrupted { signal, .. } | BackupError::StoppedFollowing { signal, .. } => {
            signal_code(*signal)
        }
        BackupError::JobFailed { .. } => exit::JOB_FAILED,
        BackupError::StillRunning { .. } => exit::JOB_NOT_FINISHED,
        BackupError::RestoreIncomplete { cause, .. } => backup_code(cause),
    }
}

/// The exit code of a runbook run that ended (not an error): 0 completed, 1 completed with failed
/// steps that said continue, 2 otherwise (aborted, stopped).
pub fn run_exit_code(status: crate::runbook::engine::RunStatus) -> u8 {
    use crate::runbook::engine::RunStatus;
    match status {
        RunStatus::Completed => exit::OK,
        RunStatus::CompletedWithFailures => exit::RUN_FAILED_STEPS,
        RunStatus::Aborted | RunStatus::Stopped => exit::RUN_ABORTED,
        RunStatus::Interrupted => exit::INTERRUPTED,
    }
}

/// The exit code of an audit: 0 unless `--fail-on` names a severity that a failing rule reaches:
/// then 2 when a critical rule fails, else 1 (`--fail-on warning` and a warning rule fails).
/// Rules of severity info never fail the run.
pub fn audit_exit_code(
    worst_failure: Option<crate::audit::Severity>,
    fail_on: Option<crate::audit::Severity>,
) -> u8 {
    use crate::audit::Severity;
    match (worst_failure, fail_on) {
        (Some(worst), Some(threshold)) if worst >= threshold && worst > Severity::Info => {
            if worst == Severity::Critical {
                exit::CRITICAL
            } else {
                exit::WARNINGS
            }
        }
        _ => exit::OK,
    }
}

/// The exit code of a diagnose report: its worst finding.
pub fn report_exit_code(worst: crate::diagnose::finding::Severity) -> u8 {
    use crate::diagnose::finding::Severity;
    match worst {
        Severity::Ok | Severity::Info => exit::OK,
        Severity::Warning => exit::WARNINGS,
        Severity::Critical => exit::CRITICAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a kubeconfig, the hint offers `sandbox up` only in a build that has it (not in
    /// the container image's).
    #[test]
    fn no_kubeconfig_offers_the_sandbox_only_where_it_is_built() {
        let hint = Error::NoKubeconfig {
            looked: "~/.kube/config (missing)".into(),
        }
        .hint()
        .unwrap();
        assert!(hint.contains("--kubeconfig"), "{hint}");
        assert_eq!(
            hint.contains("sandbox up"),
            cfg!(feature = "sandbox"),
            "{hint}"
        );
    }

    #[test]
    fn signals_end_in_128_plus_their_number() {
        assert_eq!(Error::from(Signal::Interrupt).exit_code(), 130);
        assert_eq!(Error::from(Signal::Terminate).exit_code(), 143);
        let interrupted = |signal| {
            Error::from(BackupError::Interrupted {
                what: "backup".into(),
                signal,
            })
        };
        assert_eq!(interrupted(Signal::Terminate).exit_code(), 143);
        assert_eq!(interrupted(Signal::Interrupt).exit_code(), 130);
        // An incomplete restore ends as its cause does.
        let incomplete = |cause| {
            Error::from(BackupError::RestoreIncomplete {
                id: "x".into(),
                database: "copy".into(),
                endpoint: "e".into(),
                existed: false,
                other_tables: Vec::new(),
                encrypted: false,
                cause: Box::new(cause),
            })
        };
        let by_signal = BackupError::Interrupted {
            what: "restore".into(),
            signal: Signal::Terminate,
        };
        assert_eq!(incomplete(by_signal).exit_code(), exit::TERMINATED);
        let lost = BackupError::Lost {
            endpoint: "e".into(),
            during: "loading".into(),
            detail: "gone".into(),
        };
        assert_eq!(incomplete(lost).exit_code(), exit::UNAVAILABLE);
    }
}
