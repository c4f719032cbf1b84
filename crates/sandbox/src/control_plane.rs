//! The Kubernetes control plane of the sandbox: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on 127.0.0.1, with the flags shared/FACTS.md records as working for 1.20.2, and
//! how to tell that each one is ready.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;

use super::SandboxError;
use super::binaries::Binaries;
use super::pki::PkiPaths;
use super::process::{self, Started};

/// The service CIDR handed to the API server and controller-manager.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// How long each component may take to become ready.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
pub const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
pub const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(45);

/// Ports and paths the control plane uses.
#[derive(Debug, Clone)]
pub struct ControlPlaneLayout {
    pub dir: PathBuf,
    pub logs: PathBuf,
    pub etcd_port: u16,
    pub etcd_peer_port: u16,
    pub apiserver_port: u16,
    /// Insecure /healthz of the controller-manager (`--port`, 127.0.0.1 only).
    pub controller_manager_port: u16,
    /// Insecure /healthz of the scheduler.
    pub scheduler_port: u16,
    pub pki: PkiPaths,
    pub admin_kubeconfig: PathBuf,
}

impl ControlPlaneLayout {
    pub fn api_server(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }
}

fn args(list: &[String]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Starts etcd and waits for its /health.
pub async fn start_etcd(bins: &Binaries, l: &ControlPlaneLayout) -> Result<Started, SandboxError> {
    let client = format!("http://127.0.0.1:{}", l.etcd_port);
    let peer = format!("http://127.0.0.1:{}", l.etcd_peer_port);
    let argv = args(&[
        "--name=sandbox".into(),
        format!("--data-dir={}", path(&l.dir.join("etcd"))),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=sandbox={peer}"),
        "--initial-cluster-state=new".into(),
        // A few MB of cluster state; the default 2 GB quota and snapshot rate are for real clusters.
        "--snapshot-count=5000".into(),
    ]);
    let mut started = process::spawn("etcd", &bins.etcd, &argv, &l.logs, &l.dir)?;
    let port = l.etcd_port;
    process::wait_ready(&mut started, ETCD_TIMEOUT, || async move {
        match http_get(port, "/health").await? {
            (200, body) if body.contains("true") => Ok(()),
            (code, body) => Err(format!("GET /health answered {code}: {}", body.trim())),
        }
    })
    .await?;
    Ok(started)
}

/// Audit policy of the sandbox's API server: every read and every change made by a client, at
/// Metadata level, once complete; but not watches, nor the status, event and lease writes that
/// the kubelet simulator and the controllers make all the time.
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    verbs: ["watch"]
  - level: None
    verbs: ["create", "update", "patch"]
    resources:
      - group: ""
        resources: ["events", "pods/status", "nodes/status", "nodes"]
      - group: "coordination.k8s.io"
        resources: ["leases"]
  - level: None
    nonResourceURLs: ["/readyz*", "/healthz*", "/livez*"]
  - level: Metadata
"#;

/// Starts kube-apiserver and waits for /readyz (which includes the RBAC bootstrap roles).
pub async fn start_apiserver(
    bins: &Binaries,
    l: &ControlPlaneLayout,
) -> Result<(Started, Client), SandboxError> {
    let sa_key = path(&l.pki.service_account_key);
    // An audit log of what clients ask (not what controllers write), so tests and benchmarks can
    // count the API calls newapi-ops makes, as an operator's cluster audit would show them.
    let policy = l.dir.join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY)
        .map_err(|e| SandboxError::io(format!("writing {}", policy.display()), e))?;
    let argv = args(&[
        format!("--audit-policy-file={}", path(&policy)),
        format!("--audit-log-path={}", path(&l.logs.join("audit.log"))),
        "--audit-log-format=json".into(),
        "--audit-log-maxsize=200".into(),
        "--audit-log-maxbackup=1".into(),
        format!("--etcd-servers=http://127.0.0.1:{}", l.etcd_port),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", l.apiserver_port),
        format!(
            "--cert-dir={}",
            path(&l.dir.join("pki").join("apiserver-generated"))
        ),
        format!("--tls-cert-file={}", path(&l.pki.apiserver_cert)),
        format!("--tls-private-key-file={}", path(&l.pki.apiserver_key)),
        format!("--token-auth-file={}", path(&l.pki.tokens)),
        "--authorization-mode=RBAC".into(),
        // 1.20 reads public keys only from this file: the PKIX public half of the signing key.
        format!(
            "--service-account-key-file={}",
            path(&l.pki.service_account_pub)
        ),
        format!("--service-account-signing-key-file={sa_key}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        // The simulated nodes are reachable at their InternalIP (127.0.0.1) only.
        "--kubelet-preferred-address-types=InternalIP".into(),
        // The `kubernetes` Service would get 127.0.0.1 endpoints, which validation rejects.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
        // The aggregation layer, for metrics.k8s.io: the API server authenticates to aggregated
        // servers with the front-proxy client certificate and names the user in these headers;
        // it reaches them at their endpoint address (there is no kube-proxy for Service IPs).
        format!(
            "--requestheader-client-ca-file={}",
            path(&l.pki.front_proxy_ca_cert)
        ),
        format!(
            "--requestheader-allowed-names={}",
            super::pki::FRONT_PROXY_CLIENT
        ),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!(
            "--proxy-client-cert-file={}",
            path(&l.pki.front_proxy_client_cert)
        ),
        format!(
            "--proxy-client-key-file={}",
            path(&l.pki.front_proxy_client_key)
        ),
        "--enable-aggregator-routing=true".into(),
    ]);
    let mut started = process::spawn(
        "kube-apiserver",
        &bins.kube_apiserver,
        &argv,
        &l.logs,
        &l.dir,
    )?;
    let ca_pem = std::fs::read(&l.pki.ca_cert)
        .map_err(|e| SandboxError::io(format!("reading {}", l.pki.ca_cert.display()), e))?;
    let port = l.apiserver_port;
    process::wait_ready(&mut started, APISERVER_TIMEOUT, || {
        let ca_pem = ca_pem.clone();
        async move { readyz(&ca_pem, port).await }
    })
    .await?;
    let client = admin_client(&l.admin_kubeconfig, &l.api_server()).await?;
    Ok((started, client))
}

/// GET /readyz on the API server at 127.0.0.1:`port`, anonymously (allowed once the RBAC
/// bootstrap roles exist, which is part of being ready), over TLS checked against `ca_pem`.
/// Done by hand rather than with kube's client, which logs every refused connection and 5xx as
/// an error while the server starts.
pub async fn readyz(ca_pem: &[u8], port: u16) -> Result<(), String> {
    match https_get(ca_pem, port, "/readyz").await? {
        (200, body) if body.trim() == "ok" => Ok(()),
        (code, body) => Err(format!(
            "GET /readyz answered {code}: {}",
            body.lines()
                .filter(|l| l.contains("failed"))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The port of an `https://127.0.0.1:PORT` URL.
pub fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// An HTTP/1.1 GET over TLS to 127.0.0.1:`port`, trusting only `ca_pem`.
pub async fn https_get(ca_pem: &[u8], port: u16, path: &str) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("reading the sandbox CA: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("using the sandbox CA: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with 127.0.0.1:{port}: {e}"))?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("writing to 127.0.0.1:{port}: {e}"))?;
        let mut buf = Vec::new();
        match tls.read_to_end(&mut buf).await {
            Ok(_) => {}
            // Go closes without close_notify after `Connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(format!("reading from 127.0.0.1:{port}: {e}")),
        }
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from 127.0.0.1:{port} within 5s"))??;
    parse_http_response(&buf).ok_or_else(|| format!("not an HTTP answer from 127.0.0.1:{port}"))
}

/// Starts kube-controller-manager (without the node lifecycle controller: nothing would keep the
/// simulated nodes' leases fresh) and waits for its /healthz.
pub async fn start_controller_manager(
    bins: &Binaries,
    l: &ControlPlaneLayout,
) -> Result<Started, SandboxError> {
    let argv = args(&[
        format!("--kubeconfig={}", path(&l.admin_kubeconfig)),
        format!(
            "--service-account-private-key-file={}",
            path(&l.pki.service_account_key)
        ),
        format!("--root-ca-file={}", path(&l.pki.ca_cert)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--controllers=*,-nodelifecycle".into(),
        // Bind the mysql PVC to its PV within a second, not at the next 15s resync.
        "--pvclaimbinder-sync-period=1s".into(),
        // The defaults (20 requests/s, bursts of 30) make a ReplicaSet of 10,000 pods take a
        // quarter of an hour to create (a pod and an event each); the API server is local.
        "--kube-api-qps=500".into(),
        "--kube-api-burst=1000".into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        format!("--port={}", l.controller_manager_port),
        "--address=127.0.0.1".into(),
        "--profiling=false".into(),
    ]);
    let mut started = process::spawn(
        "kube-controller-manager",
        &bins.kube_controller_manager,
        &argv,
        &l.logs,
        &l.dir,
    )?;
    let port = l.controller_manager_port;
    process::wait_ready(&mut started, CONTROLLER_TIMEOUT, || healthz(port)).await?;
    Ok(started)
}

/// Starts kube-scheduler and waits for its /healthz.
pub async fn start_scheduler(
    bins: &Binaries,
    l: &ControlPlaneLayout,
) -> Result<Started, SandboxError> {
    let argv = args(&[
        format!("--kubeconfig={}", path(&l.admin_kubeconfig)),
        // As the controller-manager: bind thousands of pods in seconds, not minutes.
        "--kube-api-qps=500".into(),
        "--kube-api-burst=1000".into(),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        format!("--port={}", l.scheduler_port),
        "--address=127.0.0.1".into(),
        "--profiling=false".into(),
    ]);
    let mut started = process::spawn(
        "kube-scheduler",
        &bins.kube_scheduler,
        &argv,
        &l.logs,
        &l.dir,
    )?;
    let port = l.scheduler_port;
    process::wait_ready(&mut started, CONTROLLER_TIMEOUT, || healthz(port)).await?;
    Ok(started)
}

/// GET /healthz on a plain-HTTP health port (controller-manager, scheduler).
pub async fn healthz(port: u16) -> Result<(), String> {
    match http_get(port, "/healthz").await? {
        (200, body) if body.trim() == "ok" => Ok(()),
        (code, body) => Err(format!("GET /healthz answered {code}: {}", body.trim())),
    }
}

/// A kube client for the sandbox's admin kubeconfig, with short timeouts.
pub async fn admin_client(kubeconfig: &Path, server: &str) -> Result<Client, SandboxError> {
    client_for(kubeconfig, server).await
}

/// A kube client for one of the sandbox's kubeconfigs.
pub async fn client_for(kubeconfig: &Path, server: &str) -> Result<Client, SandboxError> {
    let api_err = |what: &str, detail: String| SandboxError::Api {
        server: server.to_string(),
        what: what.to_string(),
        detail,
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| {
        api_err(
            "to load its kubeconfig",
            format!("{}: {e}", kubeconfig.display()),
        )
    })?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| {
                api_err(
                    "to load its kubeconfig",
                    format!("{}: {e}", kubeconfig.display()),
                )
            })?;
    config.connect_timeout = Some(Duration::from_secs(3));
    config.read_timeout = Some(Duration::from_secs(20));
    Client::try_from(config).map_err(|e| api_err("to build a client", e.to_string()))
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port` (etcd and the controllers' health endpoints);
/// returns the status code and body.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("writing to 127.0.0.1:{port}: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("reading from 127.0.0.1:{port}: {e}"))?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("no answer from 127.0.0.1:{port} within 3s"))??;
    parse_http_response(&buf).ok_or_else(|| format!("not an HTTP answer from 127.0.0.1:{port}"))
}

fn parse_http_response(buf: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok";
        assert_eq!(parse_http_response(r), Some((200, "ok".into())));
        assert_eq!(parse_http_response(b"garbage"), None);
    }

    #[test]
    fn port_of_an_api_server_url() {
        assert_eq!(port_of("https://127.0.0.1:6443"), Some(6443));
        assert_eq!(port_of("https://127.0.0.1"), None);
    }
}
