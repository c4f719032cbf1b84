//! The sandbox's credentials, generated in Rust with `rcgen`: a CA, the API server's and the
//! kubelet simulator's serving certificates (signed by that CA), the service-account signing key
//! (ECDSA P-256), the API server's static token file (`admin` in `system:masters`, `viewer` and
//! `reader` with no groups) and one kubeconfig per user. Secrets are written 0600.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::SandboxError;

/// The first address of the service CIDR, which the API server's certificate must also name.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// Paths of the generated files (all under `DIR/pki`, kubeconfigs in `DIR`).
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub kubelet_cert: PathBuf,
    pub kubelet_key: PathBuf,
    pub service_account_key: PathBuf,
    /// The public half of the service-account key (PKIX), for `--service-account-key-file`.
    pub service_account_pub: PathBuf,
    pub tokens: PathBuf,
    /// The aggregation layer's front-proxy CA (`--requestheader-client-ca-file`): it signs only
    /// the client certificate the API server presents to aggregated API servers.
    pub front_proxy_ca_cert: PathBuf,
    /// `--proxy-client-cert-file` / `--proxy-client-key-file` (CN `front-proxy-client`).
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
    /// The sandbox metrics server's serving certificate (names the Service and the netns address).
    pub metrics_cert: PathBuf,
    pub metrics_key: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: &Path) -> Self {
        let pki = dir.join("pki");
        PkiPaths {
            ca_cert: pki.join("ca.crt"),
            ca_key: pki.join("ca.key"),
            apiserver_cert: pki.join("apiserver.crt"),
            apiserver_key: pki.join("apiserver.key"),
            kubelet_cert: pki.join("kubelet.crt"),
            kubelet_key: pki.join("kubelet.key"),
            service_account_key: pki.join("service-account.key"),
            service_account_pub: pki.join("service-account.pub"),
            tokens: pki.join("tokens.csv"),
            front_proxy_ca_cert: pki.join("front-proxy-ca.crt"),
            front_proxy_client_cert: pki.join("front-proxy-client.crt"),
            front_proxy_client_key: pki.join("front-proxy-client.key"),
            metrics_cert: pki.join("metrics-server.crt"),
            metrics_key: pki.join("metrics-server.key"),
        }
    }
}

/// One API user of the sandbox: a bearer token in the token file and a kubeconfig.
#[derive(Debug, Clone)]
pub struct SandboxUser {
    pub name: &'static str,
    pub groups: &'static [&'static str],
    pub token: String,
}

/// The users the sandbox defines: `admin` (cluster-admin through `system:masters`), `viewer`
/// (no RBAC bindings: every call is a real 403) and `reader` (bound to the `view` ClusterRole in
/// namespace new-api only, by `fixtures/sandbox/50-rbac.yaml`).
pub fn users() -> Result<Vec<SandboxUser>, SandboxError> {
    Ok(vec![
        SandboxUser {
            name: "admin",
            groups: &["system:masters"],
            token: random_token()?,
        },
        SandboxUser {
            name: "viewer",
            groups: &[],
            token: random_token()?,
        },
        SandboxUser {
            name: "reader",
            groups: &[],
            token: random_token()?,
        },
    ])
}

/// Generates the CA, the serving certificates and the service-account key, and writes the token
/// file for `users`. The API server's certificate also names `extra_ips` (the loopback address
/// of the `kubernetes` Service that real containers reach it at).
pub fn generate(
    paths: &PkiPaths,
    node_names: &[String],
    users: &[SandboxUser],
    extra_ips: &[Ipv4Addr],
) -> Result<(), SandboxError> {
    let pki_dir = paths.ca_cert.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(pki_dir)
        .map_err(|e| SandboxError::io(format!("creating {}", pki_dir.display()), e))?;

    let issuer = new_ca("newapi-ops sandbox CA", &paths.ca_cert, &paths.ca_key)?;

    let apiserver_names = vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    let mut apiserver_ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(KUBERNETES_SERVICE_IP),
    ];
    apiserver_ips.extend(extra_ips.iter().map(|ip| IpAddr::V4(*ip)));
    serving_cert(
        &issuer,
        "kube-apiserver",
        &apiserver_names,
        &apiserver_ips,
        &paths.apiserver_cert,
        &paths.apiserver_key,
    )?;

    let mut kubelet_names = vec!["localhost".to_string()];
    kubelet_names.extend(node_names.iter().cloned());
    serving_cert(
        &issuer,
        "newapi-ops sandbox kubelet",
        &kubelet_names,
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        &paths.kubelet_cert,
        &paths.kubelet_key,
    )?;

    let sa_key = KeyPair::generate().map_err(|e| pki_err("service-account key", e))?;
    write_file(
        &paths.service_account_key,
        sa_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(
        &paths.service_account_pub,
        sa_key.public_key_pem().as_bytes(),
        0o644,
    )?;

    write_file(&paths.tokens, token_file(users).as_bytes(), 0o600)?;

    // The aggregation layer: its own CA, as kubeadm does, so that no other client certificate
    // can pass for the API server's proxy.
    let front_proxy_key = pki_dir.join("front-proxy-ca.key");
    let front_proxy = new_ca(
        "newapi-ops sandbox front-proxy CA",
        &paths.front_proxy_ca_cert,
        &front_proxy_key,
    )?;
    leaf_cert(
        &front_proxy,
        FRONT_PROXY_CLIENT,
        &[],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &paths.front_proxy_client_cert,
        &paths.front_proxy_client_key,
    )?;
    let metrics_names: Vec<String> = METRICS_SERVICE_NAMES
        .iter()
        .map(|n| (*n).to_string())
        .collect();
    serving_cert(
        &issuer,
        "newapi-ops sandbox metrics server",
        &metrics_names,
        &[],
        &paths.metrics_cert,
        &paths.metrics_key,
    )?;
    Ok(())
}

/// The common name of the API server's proxy client certificate
/// (`--requestheader-allowed-names`).
pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";

/// The names the aggregation layer may use for the metrics Service (it checks
/// `<service>.<namespace>.svc` against the serving certificate).
pub const METRICS_SERVICE_NAMES: &[&str] = &[
    "metrics-server.kube-system.svc",
    "metrics-server.kube-system.svc.cluster.local",
    "metrics-server.kube-system",
];

/// Generates a self-signed CA, writes its certificate and key, and returns it as an issuer.
fn new_ca(
    common_name: &str,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Issuer<'static, KeyPair>, SandboxError> {
    let ca_key = KeyPair::generate().map_err(|e| pki_err(common_name, e))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.remove(DnType::CommonName);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| pki_err(common_name, e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    write_file(cert_path, ca_cert.pem().as_bytes(), 0o644)?;
    write_file(key_path, issuer.key().serialize_pem().as_bytes(), 0o600)?;
    Ok(issuer)
}

fn serving_cert(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), SandboxError> {
    leaf_cert(
        issuer,
        common_name,
        dns_names,
        ips,
        ExtendedKeyUsagePurpose::ServerAuth,
        cert_path,
        key_path,
    )
}

fn leaf_cert(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    usage: ExtendedKeyUsagePurpose,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), SandboxError> {
    let key = KeyPair::generate().map_err(|e| pki_err(common_name, e))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(|e| pki_err(common_name, e))?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| pki_err(common_name, e))?;
    write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(())
}

/// The API server's `--token-auth-file`: `token,user,uid,"group1,group2"`.
pub fn token_file(users: &[SandboxUser]) -> String {
    let mut out = String::new();
    for u in users {
        out.push_str(&format!("{},{},{}", u.token, u.name, u.name));
        if !u.groups.is_empty() {
            out.push_str(&format!(",\"{}\"", u.groups.join(",")));
        }
        out.push('\n');
    }
    out
}

/// A kubeconfig with one cluster, one user (bearer token) and one context named `sandbox`
/// (namespace new-api). Every value is ours (a URL, base64, a user name, hex): no quoting needed.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: sandbox\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: sandbox\n  \
           context:\n    \
             cluster: sandbox\n    \
             user: {user}\n    \
             namespace: new-api\n\
         current-context: sandbox\n",
        ca = base64(ca_pem.as_bytes()),
    )
}

/// A random token of 32 hex characters from the kernel's CSPRNG.
pub fn random_token() -> Result<String, SandboxError> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| SandboxError::io("reading /dev/urandom for a token", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `data` to `path` with the given mode (created or truncated).
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), SandboxError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        // The mode above only applies to a new file; an existing one keeps its mode otherwise.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()
    };
    write().map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))
}

fn pki_err(what: &str, e: rcgen::Error) -> SandboxError {
    SandboxError::Pki {
        what: what.to_string(),
        detail: e.to_string(),
    }
}

/// Standard base64 with padding (RFC 4648), for `certificate-authority-data`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "input {input:?}");
        }
    }

    #[test]
    fn token_file_lists_groups_only_when_present() {
        let users = vec![
            SandboxUser {
                name: "admin",
                groups: &["system:masters"],
                token: "t1".into(),
            },
            SandboxUser {
                name: "viewer",
                groups: &[],
                token: "t2".into(),
            },
        ];
        assert_eq!(
            token_file(&users),
            "t1,admin,admin,\"system:masters\"\nt2,viewer,viewer\n"
        );
    }

    #[test]
    fn kubeconfig_is_readable_by_kube() {
        let text = kubeconfig("https://127.0.0.1:6443", "PEM", "viewer", "tok");
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("sandbox"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("UEVN"));
        assert_eq!(kc.auth_infos[0].name, "viewer");
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.user.as_deref(), Some("viewer"));
        assert_eq!(ctx.namespace.as_deref(), Some("new-api"));
    }

    #[test]
    fn generates_a_ca_and_signed_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let users = users().unwrap();
        generate(
            &paths,
            &["sandbox-node-1".into()],
            &users,
            &[Ipv4Addr::new(127, 42, 0, 2)],
        )
        .unwrap();
        for p in [&paths.ca_cert, &paths.apiserver_cert, &paths.kubelet_cert] {
            let pem = std::fs::read_to_string(p).unwrap();
            assert!(
                pem.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                p.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.service_account_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let tokens = std::fs::read_to_string(&paths.tokens).unwrap();
        assert_eq!(tokens.lines().count(), 3);
    }
}
