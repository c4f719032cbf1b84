//! The test harness: one sandbox (real control plane, kubelet simulator, MariaDB, Redis) per test
//! run, started by the binary under test, and a small builder to run that binary.
//!
//! Set `NEWAPI_OPS_TEST_SANDBOX=DIR` to reuse a sandbox that is already up (`newapi-ops sandbox up
//! --dir DIR`); otherwise the first test that needs one starts it in a temporary directory, and a
//! watchdog process stops it when the test process exits, however it exits.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_newapi-ops")
}

/// What the tests read of `<dir>/state.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Sandbox {
    pub dir: PathBuf,
    pub api_server: String,
    pub kubeconfig: PathBuf,
    pub viewer_kubeconfig: PathBuf,
    pub reader_kubeconfig: PathBuf,
    pub ca_cert: PathBuf,
    pub mysql: Port,
    pub redis: Port,
    /// Present when the sandbox serves metrics.k8s.io (root with `ip`, no `--no-metrics`).
    #[serde(default)]
    pub metrics: Option<serde_json::Value>,
    /// Why it does not, otherwise.
    #[serde(default)]
    pub metrics_off: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Port {
    pub port: u16,
}

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// The shared sandbox, started on first use.
pub fn sandbox() -> &'static Sandbox {
    SANDBOX.get_or_init(|| {
        let dir = match std::env::var_os("NEWAPI_OPS_TEST_SANDBOX") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("newapi-ops-test-{}", std::process::id()));
                start_watchdog(&dir);
                let out = Command::new(bin())
                    .args(["sandbox", "up", "--dir"])
                    .arg(&dir)
                    .env("NO_COLOR", "1")
                    .stdin(Stdio::null())
                    .output()
                    .expect("run newapi-ops sandbox up");
                assert!(
                    out.status.success(),
                    "sandbox up failed ({}):\n{}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                dir
            }
        };
        let state = std::fs::read_to_string(dir.join("state.json")).expect("read state.json");
        serde_json::from_str(&state).expect("parse state.json")
    })
}

/// A sandbox of its own for tests that change shared state (scaling the seed's slaves, killing
/// MariaDB, faults), started once per `name` and stopped when the test process exits. Other
/// tests keep using [`sandbox`] undisturbed.
pub fn private_sandbox(name: &str) -> Sandbox {
    private_sandbox_with(name, &[])
}

/// Where [`private_sandbox`] puts the sandbox of `name` (for a test that prepares the machine
/// before it starts).
pub fn private_sandbox_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("newapi-ops-test-{}-{name}", std::process::id()))
}

/// [`private_sandbox`] started with extra `sandbox up` arguments (e.g. `--no-metrics`).
pub fn private_sandbox_with(name: &str, up_args: &[&str]) -> Sandbox {
    type Started = Vec<(String, Vec<String>, Sandbox)>;
    static PRIVATE: std::sync::Mutex<Started> = std::sync::Mutex::new(Vec::new());
    let mut started = PRIVATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let args: Vec<String> = up_args.iter().map(|a| (*a).to_string()).collect();
    if let Some((_, was, sb)) = started.iter().find(|(n, _, _)| n == name) {
        // One name, one sandbox: a test that wants other `up` arguments needs its own name.
        assert_eq!(
            was, &args,
            "private sandbox {name} was started with other arguments"
        );
        return sb.clone();
    }
    let dir = private_sandbox_dir(name);
    start_watchdog(&dir);
    let out = Command::new(bin())
        .args(["sandbox", "up", "--dir"])
        .arg(&dir)
        .args(up_args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run newapi-ops sandbox up");
    assert!(
        out.status.success(),
        "private sandbox {name} failed to start ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let state = std::fs::read_to_string(dir.join("state.json")).expect("read state.json");
    let sb: Sandbox = serde_json::from_str(&state).expect("parse state.json");
    started.push((name.to_string(), args, sb.clone()));
    sb
}

impl Run {
    /// Points the run at a given sandbox's admin kubeconfig.
    pub fn admin_of(mut self, sb: &Sandbox) -> Run {
        self.cmd.env("KUBECONFIG", &sb.kubeconfig);
        self
    }
}

/// A shell that waits for this test process to end, then stops the sandbox. It is never waited
/// on: it must outlive this process, and it is reparented to init when we exit.
#[allow(clippy::zombie_processes)]
fn start_watchdog(dir: &Path) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_dead_runs);
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{bin}' sandbox down --dir '{dir}' >/dev/null 2>&1",
        pid = std::process::id(),
        bin = bin(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the sandbox watchdog");
}

/// Stops what test runs that died before their watchdogs ran left behind (a CI machine whose
/// run was cut short keeps its processes' namespaces, links and directories otherwise): every
/// `newapi-ops-test-<pid>[-name]` sandbox of the temporary directory whose process is gone.
fn sweep_dead_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("newapi-ops-test-"))
        else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = Command::new(bin())
            .args(["sandbox", "down", "--dir"])
            .arg(entry.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

use std::os::unix::process::CommandExt as _;

/// A run of the binary with a clean environment (no user kubeconfig, no colour).
pub struct Run {
    cmd: Command,
    home: tempfile::TempDir,
}

impl Run {
    pub fn new<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let home = tempfile::tempdir().expect("temp home");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join(".config"))
            .env("NO_COLOR", "1")
            .current_dir(home.path())
            .stdin(Stdio::null());
        // Where the control-plane binaries are (scripts/test.sh exports it; else the cache).
        let assets = std::env::var_os("KUBEBUILDER_ASSETS").or_else(|| {
            let cache = std::env::var_os("HOME")
                .map(PathBuf::from)?
                .join(".cache/newapi-ops/k8s-1.20.2/bin");
            cache.is_dir().then(|| cache.into_os_string())
        });
        if let Some(assets) = assets {
            cmd.env("KUBEBUILDER_ASSETS", assets);
        }
        Run { cmd, home }
    }

    /// Points the run at the sandbox's admin kubeconfig.
    pub fn admin(mut self) -> Run {
        self.cmd.env("KUBECONFIG", &sandbox().kubeconfig);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(k, v);
        self
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn output(mut self) -> Done {
        let out = self.cmd.output().expect("run newapi-ops");
        Done::from(out)
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Done {
    fn from(o: Output) -> Done {
        Done {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Done {
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Done {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Done {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Done {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A kube client as the sandbox admin, for setting up test objects.
pub async fn admin_client() -> kube::Client {
    admin_client_of(sandbox()).await
}

/// A kube client as the admin of `sb`.
pub async fn admin_client_of(sb: &Sandbox) -> kube::Client {
    client_of(&sb.kubeconfig).await
}

/// A kube client as the user of `kubeconfig`.
pub async fn client_of(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Writes a kubeconfig like the admin one with the given server, CA and token.
pub fn custom_kubeconfig(dir: &Path, server: &str, ca_pem: &str, token: &str) -> PathBuf {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\ncurrent-context: ctx\n"
    );
    let path = dir.join("custom.kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// The admin token from the sandbox's kubeconfig.
pub fn admin_token() -> String {
    let kc = kube::config::Kubeconfig::read_from(&sandbox().kubeconfig).expect("read kubeconfig");
    kc.auth_infos
        .into_iter()
        .find_map(|a| a.auth_info.and_then(|i| i.token))
        .map(|t| {
            use secrecy::ExposeSecret as _;
            t.expose_secret().to_string()
        })
        .expect("admin token")
}

/// A port on loopback that nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Creates a fresh namespace named after `base` (unique to this test run, so a rerun against a
/// reused sandbox never collides) with a New-API master (1 replica) and slave Deployment (`slaves`
/// replicas) requesting no resources (so they never disturb the seed's capacity figures), the
/// slave pod template annotated with the simulator behaviour `slave_behavior`.
pub async fn deploy_newapi(base: &str, slaves: i32, slave_behavior: &str) -> String {
    let ns = format!("{base}-{}", std::process::id());
    let ns = ns.as_str();
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};

    let client = admin_client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let nsobj: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ns, "labels": {"newapi-ops-test": "true"}}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &nsobj)
        .await
        .expect("create namespace");
    let deployments: Api<Deployment> = Api::namespaced(client, ns);
    for (role, replicas, behavior) in [("master", 1, "running"), ("slave", slaves, slave_behavior)]
    {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("new-api-{role}"), "labels": {"app": "new-api", "role": role}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "new-api", "role": role}},
                "template": {
                    "metadata": {
                        "labels": {"app": "new-api", "role": role},
                        "annotations": {"sandbox.newapi-ops.io/behavior": behavior}
                    },
                    "spec": {"containers": [{
                        "name": "new-api",
                        "image": "calciumion/new-api:latest",
                        "ports": [{"containerPort": 3000}],
                        "env": [{"name": "NODE_TYPE", "value": role}]
                    }]}
                }
            }
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
    }
    ns.to_string()
}

/// Deletes a test namespace (best effort).
pub async fn delete_namespace(ns: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(admin_client().await);
    let _ = api.delete(ns, &Default::default()).await;
}

/// Runs `newapi-ops ARGS -o json` as admin until `ready` holds for its output (at most ~90 s,
/// which only bounds a wait for the cluster to converge; it times nothing).
pub fn poll_json(args: &[&str], ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..180 {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-o", "json"]);
        let done = Run::new(full).admin().output();
        if done.code == 0 {
            last = done.json();
            if ready(&last) {
                return last;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("condition not reached; last output:\n{last:#}");
}

/// Creates a fresh namespace named after `base` (unique to this run) and the given objects in it
/// (Deployment, Pod, Secret, ConfigMap, PersistentVolumeClaim); returns the namespace.
pub async fn apply_in(base: &str, objects: &[serde_json::Value]) -> String {
    apply_in_of(sandbox(), base, objects).await
}

/// [`apply_in`] in the sandbox `sb`.
pub async fn apply_in_of(sb: &Sandbox, base: &str, objects: &[serde_json::Value]) -> String {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret};
    use kube::api::{Api, PostParams};

    async fn create<K>(client: &kube::Client, ns: &str, v: &serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let obj: K = serde_json::from_value(v.clone()).expect("test object");
        Api::<K>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create {v}: {e}"));
    }

    let ns = format!("{base}-{}", std::process::id());
    let client = admin_client_of(sb).await;
    let nsobj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await
        .expect("create namespace");
    // Pods can be created only once the token controller gave the namespace's default
    // ServiceAccount its token (Kubernetes 1.20).
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    for _ in 0..200 {
        if let Ok(Some(sa)) = sas.get_opt("default").await
            && sa.secrets.is_some_and(|s| !s.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for v in objects {
        match v["kind"].as_str() {
            Some("Deployment") => create::<Deployment>(&client, &ns, v).await,
            Some("Pod") => create::<Pod>(&client, &ns, v).await,
            Some("Secret") => create::<Secret>(&client, &ns, v).await,
            Some("ConfigMap") => create::<ConfigMap>(&client, &ns, v).await,
            Some("PersistentVolumeClaim") => create::<PersistentVolumeClaim>(&client, &ns, v).await,
            other => panic!("apply_in: unsupported kind {other:?}"),
        }
    }
    ns
}

/// A New-API Deployment for tests: no resource requests (never disturbs the seed's figures),
/// `role` master or slave, with extra pod-template annotations and container fields merged in.
pub fn newapi_deployment(
    role: &str,
    replicas: i32,
    annotations: serde_json::Value,
    container: serde_json::Value,
) -> serde_json::Value {
    let mut c = serde_json::json!({
        "name": "new-api",
        "image": "calciumion/new-api:v0.9.0",
        "ports": [{"containerPort": 3000}],
        "env": [
            {"name": "NODE_TYPE", "value": role},
            {"name": "SYNC_FREQUENCY", "value": "60"},
            {"name": "SESSION_SECRET", "value": "test-session-secret"},
            {"name": "CRYPTO_SECRET", "value": "test-crypto-secret"}
        ]
    });
    if let (Some(base), Some(extra)) = (c.as_object_mut(), container.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": format!("new-api-{role}")},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "new-api", "role": role}},
            "template": {
                "metadata": {"labels": {"app": "new-api", "role": role}, "annotations": annotations},
                "spec": {"containers": [c]}
            }
        }
    })
}

/// Runs `diagnose -o json ARGS` until `ready` holds for its report (bounded wait for the cluster
/// to converge, not a time limit); returns the report and the exit code of that run.
pub fn poll_diagnose(
    args: &[&str],
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, i32) {
    let mut last = (serde_json::Value::Null, -1);
    for _ in 0..180 {
        let mut full = vec!["diagnose", "-o", "json"];
        full.extend_from_slice(args);
        let done = Run::new(full).admin().output();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&done.stdout) {
            if ready(&v) {
                return (v, done.code);
            }
            last = (v, done.code);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!(
        "diagnose never reached the condition; last report:\n{:#}",
        last.0
    );
}

/// The findings of a report with this check id.
pub fn findings<'a>(report: &'a serde_json::Value, check: &str) -> Vec<&'a serde_json::Value> {
    report["findings"]
        .as_array()
        .map(|f| f.iter().filter(|f| f["check"] == check).collect())
        .unwrap_or_default()
}

/// Every subject the (grouped) findings of `check` name: each finding's `subjects`, else its
/// `subject`.
pub fn subjects_of(report: &serde_json::Value, check: &str) -> std::collections::BTreeSet<String> {
    findings(report, check)
        .iter()
        .flat_map(|f| match f["subjects"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(|s| s["subject"].as_str().map(str::to_string))
                .collect::<Vec<_>>(),
            None => f["subject"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect(),
        })
        .collect()
}

/// Serializes the tests that look at or change the cluster's nodes (the seed's totals vs. a
/// broken extra node).
pub fn nodes_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `signal` to one of the sandbox's processes (`kube-apiserver`, `mariadb`, ...), by the pid
/// in its state.json: a fault caused for real.
pub fn signal_process(sb: &Sandbox, process: &str, signal: nix::sys::signal::Signal) {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("state.json")).unwrap()).unwrap();
    let pid = state["processes"][process]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid of {process} in state.json"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        signal,
    )
    .unwrap_or_else(|e| panic!("{signal} to {process}: {e}"));
}
