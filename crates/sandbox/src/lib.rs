//! The local sandbox: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler) on loopback, a kubelet simulator, MariaDB and Redis,
//! with the seed deployment applied. Shared by `newapi-ops sandbox` and the integration tests.
//!
//! A crate of its own (`newapi-ops-sandbox`), which the tool builds in behind its default feature
//! `sandbox`; it does not depend on the tool. The kubelet simulator and the metrics server run as
//! `newapi-ops sandbox kubelet|metrics-server` (the running executable, started again by `up`).
//!
//! The pieces, in the order `up` uses them:
//! - [`binaries`] finds the programs (`KUBEBUILDER_ASSETS`, the cache `scripts/setup.sh` fills, PATH);
//! - [`pki`] writes the CA, serving certificates, service-account key, token file and kubeconfigs;
//! - [`process`] starts each component in its own process group, logging to `DIR/logs/`, and stops
//!   them again;
//! - [`control_plane`] and [`backends`] start etcd, the three control-plane binaries, MariaDB and
//!   Redis and wait until each one answers;
//! - [`manifests`] applies `fixtures/sandbox/*.yaml` (server-side apply) and waits for the rollout;
//! - [`image`] builds the tool's own container image (`newapi-ops:<version>`), which the kubelet
//!   simulator runs for real with `runc`;
//! - [`netns`] and [`metrics`] serve metrics.k8s.io through the API server's aggregation layer
//!   (a network namespace of its own, because the API server refuses loopback endpoints);
//! - [`state`] is `DIR/state.json`, the record every later command (and the tests) read;
//! - [`lifecycle`] ties them into `up`, `status` and `down`; [`fault`] breaks and heals it.

pub mod backends;
pub mod binaries;
pub mod control_plane;
pub mod fault;
pub mod image;
pub mod kubelet;
pub mod lifecycle;
pub mod manifests;
pub mod metrics;
pub mod netns;
pub mod pki;
pub mod process;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

pub use fault::Fault;
pub use lifecycle::{
    DownReport, StatusReport, UpOptions, UpOutcome, default_dir, down, status, up,
};
pub use state::SandboxState;

/// Errors of the sandbox. Each says what went wrong and where; [`SandboxError::hint`] says what
/// to do about it. Which exit code each one ends in is the tool's decision (newapi-ops's
/// `error::Error::exit_code` matches on these variants).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Other(String),

    #[error("missing programs for the sandbox: {}", missing.join(", "))]
    MissingBinaries {
        missing: Vec<String>,
        /// Where we looked, for the message.
        looked: Vec<PathBuf>,
    },

    #[error("no sandbox in {}", dir.display())]
    NotFound { dir: PathBuf },

    #[error("{} is not a sandbox directory (it is not empty and has no {} marker)", dir.display(), lifecycle::MARKER)]
    NotASandbox { dir: PathBuf },

    #[error("the sandbox in {} is running but unhealthy: {}", dir.display(), problems.join("; "))]
    Unhealthy { dir: PathBuf, problems: Vec<String> },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("generating the sandbox's certificates failed ({what}): {detail}")]
    Pki { what: String, detail: String },

    #[error("{component} failed to start: {detail}{}", log_tail(tail, log))]
    StartFailed {
        component: String,
        detail: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{component} was not ready after {}s: {detail}{}", waited.as_secs(), log_tail(tail, log))]
    NotReady {
        component: String,
        waited: Duration,
        detail: String,
        log: PathBuf,
        tail: String,
    },

    #[error("the sandbox's API server at {server} failed {what}: {detail}")]
    Api {
        server: String,
        what: String,
        detail: String,
    },

    #[error("cannot read the sandbox manifest {file}: {detail}")]
    Manifest { file: String, detail: String },

    #[error("applying {kind} {namespace}{name} from {file} failed: {detail}")]
    Apply {
        file: String,
        kind: String,
        namespace: String,
        name: String,
        detail: String,
    },

    #[error("the seed deployment did not roll out within {}s: {}", waited.as_secs(), pending.join("; "))]
    Rollout {
        waited: Duration,
        pending: Vec<String>,
        kubelet_log: PathBuf,
    },

    #[error("MariaDB on 127.0.0.1:{port} {what}: {detail}")]
    Mysql {
        port: u16,
        what: String,
        detail: String,
    },

    #[error("the sandbox state {} is unreadable: {detail}", path.display())]
    State { path: PathBuf, detail: String },

    #[error("the kubelet simulator failed: {0}")]
    Kubelet(#[from] kubelet::KubeletError),

    #[error("setting up the network namespace {name} for metrics.k8s.io failed: {detail}")]
    Netns { name: String, detail: String },

    #[error("the metrics server failed: {0}")]
    Metrics(#[from] metrics::MetricsError),

    #[error("metrics.k8s.io was not served after {}s: {detail}", waited.as_secs())]
    MetricsNotServed { waited: Duration, detail: String },
}

/// Formats the last lines of a component's log for an error message.
fn log_tail(tail: &str, log: &std::path::Path) -> String {
    if tail.trim().is_empty() {
        format!("\n  (log: {}, empty)", log.display())
    } else {
        let indented: Vec<String> = tail.lines().map(|l| format!("    | {l}")).collect();
        format!(
            "\n  last lines of {}:\n{}",
            log.display(),
            indented.join("\n")
        )
    }
}

impl SandboxError {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }

    /// What the user can do about it, if we know.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SandboxError::MissingBinaries { looked, .. } => {
                let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "run `scripts/setup.sh` (installs etcd, MariaDB, Redis and builds the control plane \
                     into the cache), or point KUBEBUILDER_ASSETS at a directory holding kube-apiserver, \
                     kube-controller-manager, kube-scheduler and etcd; looked in: {}",
                    looked.join(", ")
                )
            }
            SandboxError::NotFound { .. } => {
                "start one with `newapi-ops sandbox up` (use the same --dir, or NEWAPI_OPS_SANDBOX_DIR)".into()
            }
            SandboxError::NotASandbox { .. } => {
                "pass --dir with a new or empty directory; newapi-ops never deletes a directory it did not create".into()
            }
            SandboxError::Unhealthy { .. } => {
                "run `newapi-ops sandbox heal` if a fault was injected, or `newapi-ops sandbox down` then `up` to start afresh".into()
            }
            SandboxError::StartFailed { log, .. } | SandboxError::NotReady { log, .. } => format!(
                "read the whole log at {}; `newapi-ops sandbox down` cleans up, then try `up` again",
                log.display()
            ),
            SandboxError::Rollout { kubelet_log, .. } => format!(
                "look at the pods (`KUBECONFIG=<dir>/admin.kubeconfig newapi-ops pods`) and the kubelet simulator's log at {}",
                kubelet_log.display()
            ),
            SandboxError::Api { .. } | SandboxError::Apply { .. } => {
                "check `newapi-ops sandbox status` and the API server's log in <dir>/logs/kube-apiserver.log".into()
            }
            SandboxError::Mysql { .. } => "read <dir>/logs/mariadb.log".into(),
            SandboxError::State { .. } => {
                "run `newapi-ops sandbox down` to stop what is left and remove the directory, then `up`".into()
            }
            SandboxError::Pki { .. } | SandboxError::Manifest { .. } => {
                "this is a bug in newapi-ops; please report it with the message above".into()
            }
            SandboxError::Netns { .. } => {
                "`sandbox up --no-metrics` starts the sandbox without metrics.k8s.io; `ip netns list` \
                 and `ip link` show what is there"
                    .into()
            }
            SandboxError::MetricsNotServed { .. } => {
                "read <dir>/logs/metrics-server.log and <dir>/logs/kube-apiserver.log; \
                 `sandbox up --no-metrics` starts the sandbox without metrics.k8s.io"
                    .into()
            }
            SandboxError::Io { .. }
            | SandboxError::Kubelet(_)
            | SandboxError::Metrics(_)
            | SandboxError::Other(_) => {
                return None;
            }
        })
    }
}
