//! `DIR/state.json`: what a running sandbox is made of: addresses, ports, kubeconfigs, and the pid
//! and log of each process. Written 0600 by `up` (and `heal`, which restarts processes), read by
//! `status`, `down`, `fault`, `heal` and the integration tests — the field names are a contract.
//! It holds no secret: the tokens are in the kubeconfigs, the MySQL password in the Secret of the
//! seed deployment (key `password_env`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SandboxError;
use super::kubelet::config::SimNode;
use super::netns::NetnsPlan;
use super::pki::write_file;

/// File name of the state inside the sandbox directory.
pub const STATE_FILE: &str = "state.json";

/// Everything later commands need to find the sandbox's parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    /// The sandbox directory.
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub api_server: String,
    /// Kubeconfig of `admin` (system:masters).
    pub kubeconfig: PathBuf,
    /// Kubeconfig of `viewer` (no RBAC bindings).
    pub viewer_kubeconfig: PathBuf,
    /// Kubeconfig of `reader` (ClusterRole `view` in namespace new-api only).
    pub reader_kubeconfig: PathBuf,
    /// The CA that signed the API server's and the kubelet's certificates.
    pub ca_cert: PathBuf,
    pub etcd_port: u16,
    /// Where the kubelet simulator serves pods/log and pods/portforward.
    pub kubelet_port: u16,
    /// Plain-HTTP /healthz of the controller-manager and the scheduler (127.0.0.1).
    pub controller_manager_port: u16,
    pub scheduler_port: u16,
    /// The namespace of the seed deployment.
    pub namespace: String,
    pub mysql: MysqlState,
    pub redis: RedisState,
    /// By component: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, mariadb,
    /// redis, kubelet, and metrics-server when metrics.k8s.io is served.
    pub processes: BTreeMap<String, ProcessState>,
    /// The simulated nodes.
    pub nodes: Vec<SimNode>,
    /// When `up` finished.
    pub started_at: jiff::Timestamp,
    /// How metrics.k8s.io is served (absent: it is not, see `metrics_off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsState>,
    /// Why metrics.k8s.io is not served (`--no-metrics`, not root, no `ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_off: Option<String>,
    /// The tool's own image, which the kubelet simulator runs for real (absent: see
    /// `image_off`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageState>,
    /// Why pods of the image cannot run (not root, no runc/umoci, the build failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_off: Option<String>,
}

/// The tool's image in the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageState {
    /// What a pod names: `newapi-ops:<version>`.
    pub reference: String,
    /// The manifest digest (`sha256:…`).
    pub digest: String,
    /// Its OCI layout (`DIR/image`).
    pub layout: PathBuf,
}

/// The metrics server's network namespace and address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsState {
    #[serde(flatten)]
    pub netns: NetnsPlan,
    /// `ADDRESS:PORT` inside the namespace.
    pub listen: std::net::SocketAddrV4,
}

/// The MariaDB behind pods labelled app=mysql.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MysqlState {
    pub port: u16,
    /// Unix socket (root may log in there without a password).
    pub socket: PathBuf,
    /// Where the password is: this key of the Secret `new-api-secret` in the seed deployment,
    /// and the environment variable of that name in the mysql container.
    pub password_env: String,
    pub user: String,
    pub database: String,
    pub datadir: PathBuf,
}

/// The Redis behind pods labelled app=redis.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisState {
    pub port: u16,
    pub dir: PathBuf,
}

/// One process of the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessState {
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// The program started (to tell a live process from a reused pid).
    pub program: PathBuf,
}

impl SandboxState {
    /// Reads `DIR/state.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, SandboxError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SandboxError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SandboxError::State {
                path,
                detail: e.to_string(),
            })
    }

    /// Reads `DIR/state.json`, or says there is no sandbox there.
    pub fn require(dir: &Path) -> Result<Self, SandboxError> {
        Self::load(dir)?.ok_or_else(|| SandboxError::NotFound {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes `DIR/state.json` (0600), atomically.
    pub fn save(&self) -> Result<(), SandboxError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let mut text = serde_json::to_string_pretty(self).map_err(|e| SandboxError::State {
            path: path.clone(),
            detail: format!("serializing: {e}"),
        })?;
        text.push('\n');
        write_file(&tmp, text.as_bytes(), 0o600)?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))
    }
}
