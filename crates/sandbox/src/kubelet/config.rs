//! The simulator's configuration file (`<sandbox dir>/kubelet.json`), written by `sandbox up` and
//! read by `newapi-ops sandbox kubelet --config PATH`. This struct is the contract between them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the kubelet simulator needs to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletConfig {
    /// Kubeconfig with cluster-admin rights (system:masters) used by the simulator.
    pub kubeconfig: PathBuf,
    /// The HTTPS port served on 127.0.0.1 (pods/log and pods/portforward); every simulated node
    /// advertises it in status.daemonEndpoints.kubeletEndpoint.Port.
    pub listen_port: u16,
    /// PEM serving certificate and key for that port.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The nodes this simulator registers and runs pods for.
    pub nodes: Vec<SimNode>,
    /// Where port-forwards to the backing services go.
    pub backends: Backends,
    /// Where the simulator keeps container logs and its own state.
    pub state_dir: PathBuf,
    /// Real containers (pods of the tool's own image, run with `runc`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<ContainersConfig>,
}

/// How pods of the tool's own image are run for real (see `kubelet::runtime`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersConfig {
    /// The image pods name (`newapi-ops:<version>`, [`crate::image::IMAGE`]).
    pub image: String,
    /// The OCI layout holding it (tag = the reference's tag), when it could be built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<PathBuf>,
    /// Its manifest digest (`sha256:…`), when built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why pods of the image cannot run (no root, no runc/umoci, the build failed): they fail
    /// with `ErrImageNeverPull` and this reason. `None` when they can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// The API server (`127.0.0.1:PORT`), behind the `kubernetes` Service.
    pub api_server: String,
}

/// One simulated node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimNode {
    pub name: String,
    /// Capacity = allocatable, as Kubernetes quantities: "4", "6148Mi", "110".
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

/// Loopback addresses of the real services behind the pods.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backends {
    /// MariaDB standing in for pods labelled app=mysql (port 3306), e.g. "127.0.0.1:41234".
    pub mysql: String,
    /// Redis standing in for pods labelled app=redis (port 6379).
    pub redis: String,
}
