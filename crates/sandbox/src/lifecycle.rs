//! `up`, `status` and `down`: the sandbox as a whole.
//!
//! `up` is idempotent (a healthy sandbox is left alone), serialised by a lock on `DIR/.lock` (two
//! test binaries may call it at once), and leaks nothing when it fails part-way: every process it
//! started is killed when its handle is dropped, until the very end. `down` stops each process
//! group (SIGTERM, then SIGKILL after a grace period) and removes the directory; it is safe to run
//! twice and never deletes a directory the sandbox did not create.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::SandboxError;
use super::backends::{self, MariaDbLayout, RedisLayout};
use super::binaries::Binaries;
use super::control_plane::{self, ControlPlaneLayout};
use super::kubelet::config::{Backends, ContainersConfig, KubeletConfig, SimNode};
use super::kubelet::services;
use super::manifests::{self, MYSQL_PASSWORD_KEY, NAMESPACE, ROLLOUT_TIMEOUT, SECRET_NAME};
use super::metrics::MetricsConfig;
use super::netns::{self, NetnsPlan};
use super::pki::{self, PkiPaths};
use super::process::{self, Started, StopOutcome, Target};
use super::state::{ImageState, MetricsState, MysqlState, RedisState, STATE_FILE, SandboxState};

/// The file that marks a directory as a sandbox (created by `up`, required by `down`).
pub const MARKER: &str = ".newapi-ops-sandbox";

/// The processes of a complete sandbox, by their name in `state.json`.
pub const COMPONENTS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "mariadb",
    "redis",
    "kubelet",
];

/// The process serving metrics.k8s.io, when the sandbox has one.
pub const METRICS_SERVER: &str = "metrics-server";

/// How long a node may take to be registered Ready by the simulator.
pub const NODES_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the aggregation layer may take to serve metrics.k8s.io once the server listens.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `down` waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The default sandbox directory: `$NEWAPI_OPS_SANDBOX_DIR`, else
/// `${XDG_STATE_HOME:-~/.local/state}/newapi-ops/sandbox`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NEWAPI_OPS_SANDBOX_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("newapi-ops").join("sandbox")
}

/// The simulated nodes: `count` nodes of 4 CPUs; the first with 6148Mi, the others 6147Mi, so
/// two nodes give the seed's cluster (8 CPUs, 12295Mi).
pub fn sim_nodes(count: usize) -> Vec<SimNode> {
    (1..=count.max(1))
        .map(|i| SimNode {
            name: format!("sandbox-node-{i}"),
            cpu: "4".into(),
            memory: if i == 1 {
                "6148Mi".into()
            } else {
                "6147Mi".into()
            },
            pods: "110".into(),
        })
        .collect()
}

/// What `up` should do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    /// Number of simulated nodes (default 2).
    pub nodes: usize,
    /// The command that runs the kubelet simulator, before `--config PATH` is appended. Default:
    /// this executable with `-v sandbox kubelet` (tests driving the library from a test binary
    /// pass the newapi-ops binary here).
    pub kubelet_command: Option<(PathBuf, Vec<OsString>)>,
    /// How long to wait for the seed deployment to roll out.
    pub rollout_timeout: Duration,
    /// Serve metrics.k8s.io (needs root and `ip`; without them the sandbox starts without it
    /// and says why).
    pub metrics: bool,
}

impl UpOptions {
    pub fn new(dir: PathBuf) -> Self {
        UpOptions {
            dir,
            nodes: 2,
            kubelet_command: None,
            rollout_timeout: ROLLOUT_TIMEOUT,
            metrics: true,
        }
    }
}

/// The result of `up`.
#[derive(Debug, Clone, Serialize)]
pub struct UpOutcome {
    /// True when a healthy sandbox was already running (nothing was started).
    pub already_running: bool,
    /// Problems seen on an already running sandbox that do not stop it from being used (a
    /// Deployment broken by `sandbox fault`, say).
    pub warnings: Vec<String>,
    pub state: SandboxState,
    /// Wall time of this `up`.
    pub elapsed: Duration,
}

/// Starts the sandbox in `opts.dir`, or finds it already running. `progress` receives one line
/// per step.
pub async fn up(
    opts: &UpOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UpOutcome, SandboxError> {
    let begin = Instant::now();
    let dir = absolute(&opts.dir)?;
    // Checked first, so a machine without the programs gets no directory, only the hint.
    let bins = Binaries::locate()?;
    prepare_dir(&dir)?;
    let _lock = lock(&dir).await?;

    if let Some(state) = SandboxState::load(&dir)? {
        let report = status(&dir).await?;
        if report.problems_blocking().is_empty() {
            return Ok(UpOutcome {
                already_running: true,
                warnings: report.problems.clone(),
                state,
                elapsed: begin.elapsed(),
            });
        }
        if report.processes.iter().any(|p| p.alive) {
            return Err(SandboxError::Unhealthy {
                dir,
                problems: report.problems_blocking(),
            });
        }
        progress("found the state of a stopped sandbox: removing it and starting afresh");
        wipe(&dir)?;
    } else if dir_has_leftovers(&dir)? {
        progress("removing the data of a stopped sandbox");
        wipe(&dir)?;
    }

    let seed = manifests::seed()?;
    let password = manifests::secret_value(&seed, SECRET_NAME, MYSQL_PASSWORD_KEY)?;
    let nodes = sim_nodes(opts.nodes);
    let ports = process::free_ports(8)?;
    let logs = dir.join("logs");
    let layout = ControlPlaneLayout {
        dir: dir.clone(),
        logs: logs.clone(),
        etcd_port: ports[0],
        etcd_peer_port: ports[1],
        apiserver_port: ports[2],
        controller_manager_port: ports[3],
        scheduler_port: ports[4],
        pki: PkiPaths::new(&dir),
        admin_kubeconfig: dir.join("admin.kubeconfig"),
    };
    let kubelet_port = ports[5];
    let mariadb = MariaDbLayout::new(&dir, ports[6], password, "new-api".into());
    let redis = RedisLayout::new(&dir, ports[7]);
    let server = layout.api_server();

    // The program the kubelet simulator (and the metrics server) runs as: this executable unless
    // told otherwise. The tool's image is built from it.
    let (program, kubelet_args) = match &opts.kubelet_command {
        Some((p, a)) => (p.clone(), a.clone()),
        None => (
            std::env::current_exe()
                .map_err(|e| SandboxError::io("finding the newapi-ops executable", e))?,
            vec!["-v".into(), "sandbox".into(), "kubelet".into()],
        ),
    };
    // Real containers: root, runc and umoci.
    let containers_off = crate::image::unavailable();

    progress("generating certificates and kubeconfigs");
    let users = pki::users()?;
    let node_names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    pki::generate(
        &layout.pki,
        &node_names,
        &users,
        &services::kubernetes_addrs(),
    )?;
    let ca_pem = std::fs::read_to_string(&layout.pki.ca_cert)
        .map_err(|e| SandboxError::io(format!("reading {}", layout.pki.ca_cert.display()), e))?;
    for u in &users {
        let path = dir.join(format!("{}.kubeconfig", u.name));
        pki::write_file(
            &path,
            pki::kubeconfig(&server, &ca_pem, u.name, &u.token).as_bytes(),
            0o600,
        )?;
    }

    // metrics.k8s.io: a network namespace the API server can reach (it refuses loopback).
    let (metrics, metrics_off, netns_guard) = if !opts.metrics {
        (None, Some("started with --no-metrics".to_string()), None)
    } else if let Some(why) = netns::unavailable() {
        progress(&format!(
            "metrics.k8s.io will not be served: {why}; `diagnose` will say usage is not checked"
        ));
        (None, Some(why), None)
    } else {
        let plan = netns::create(&dir)?;
        progress(&format!(
            "created network namespace {} ({} <-> {}) for the metrics server",
            plan.name, plan.host_addr, plan.ns_addr
        ));
        let listen = plan.metrics_addr();
        (
            Some(MetricsState {
                netns: plan.clone(),
                listen,
            }),
            None,
            Some(NetnsGuard {
                plan: plan.clone(),
                armed: true,
            }),
        )
    };

    let state = SandboxState {
        dir: dir.clone(),
        api_server: server.clone(),
        kubeconfig: dir.join("admin.kubeconfig"),
        viewer_kubeconfig: dir.join("viewer.kubeconfig"),
        reader_kubeconfig: dir.join("reader.kubeconfig"),
        ca_cert: layout.pki.ca_cert.clone(),
        etcd_port: layout.etcd_port,
        kubelet_port,
        controller_manager_port: layout.controller_manager_port,
        scheduler_port: layout.scheduler_port,
        namespace: NAMESPACE.into(),
        mysql: MysqlState {
            port: mariadb.port,
            socket: mariadb.socket.clone(),
            password_env: MYSQL_PASSWORD_KEY.into(),
            user: "root".into(),
            database: mariadb.database.clone(),
            datadir: mariadb.datadir.clone(),
        },
        redis: RedisState {
            port: redis.port,
            dir: redis.datadir.clone(),
        },
        processes: BTreeMap::new(),
        nodes: nodes.clone(),
        started_at: jiff::Timestamp::now(),
        metrics: metrics.clone(),
        metrics_off,
        image: None,
        image_off: None,
    };
    // Saved after every start, so `down` can stop what an `up` killed half-way had started.
    let recorder = Recorder(Mutex::new(state));

    progress(
        "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, MariaDB and Redis",
    );
    let control = async {
        let etcd = control_plane::start_etcd(&bins, &layout).await;
        let etcd = recorder.record(etcd)?;
        let (apiserver, client) = match control_plane::start_apiserver(&bins, &layout).await {
            Ok((s, c)) => (recorder.record(Ok(s))?, c),
            Err(e) => return Err(e),
        };
        let (cm, sched) = tokio::join!(
            control_plane::start_controller_manager(&bins, &layout),
            control_plane::start_scheduler(&bins, &layout),
        );
        let cm = recorder.record(cm);
        let sched = recorder.record(sched);
        Ok::<_, SandboxError>((vec![etcd, apiserver, cm?, sched?], client))
    };
    let backends = async {
        let redis_started = recorder.record(backends::start_redis(&bins, &redis).await)?;
        backends::install_mariadb(&bins, &mariadb).await?;
        let mariadb_started = recorder.record(backends::start_mariadb(&bins, &mariadb).await)?;
        backends::load_schema(&mariadb).await?;
        Ok::<_, SandboxError>(vec![redis_started, mariadb_started])
    };
    // The tool's image, built (CPU: compressing the layer) while the others start (waiting).
    let image = async {
        if let Some(why) = &containers_off {
            progress(&format!(
                "pods of {} will not run ({why}); they fail with ErrImageNeverPull",
                crate::image::IMAGE
            ));
            return Err(why.clone());
        }
        let (binary, layout, log) = (program.clone(), dir.join("image"), logs.join("image.log"));
        let built = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))
                .map_err(|e| format!("creating the log directory: {e}"))?;
            crate::image::build_or_load(&binary, &layout, &log)
        })
        .await
        .map_err(|e| format!("building the image: {e}"))
        .and_then(|r| r);
        match &built {
            Ok(b) => progress(&format!(
                "image {} {} ({}), run for real with runc",
                b.reference,
                if b.cached {
                    "loaded from the cache"
                } else {
                    "built"
                },
                b.digest
            )),
            Err(e) => progress(&format!(
                "the image {} could not be built: {e}; its pods fail with ErrImageNeverPull",
                crate::image::IMAGE
            )),
        }
        built
    };
    let (control, image) = tokio::join!(async { tokio::try_join!(control, backends) }, image);
    let ((mut started, client), backend_started) = control?;
    started.extend(backend_started);
    let (image_state, image_off) = match image {
        Ok(b) => (
            Some(ImageState {
                reference: b.reference,
                digest: b.digest,
                layout: b.layout,
            }),
            None,
        ),
        Err(why) => (None, Some(why)),
    };
    {
        let mut state = recorder
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.image = image_state.clone();
        state.image_off = image_off.clone();
    }

    progress("starting the kubelet simulator");
    let kubelet_config = KubeletConfig {
        kubeconfig: dir.join("admin.kubeconfig"),
        listen_port: kubelet_port,
        tls_cert: layout.pki.kubelet_cert.clone(),
        tls_key: layout.pki.kubelet_key.clone(),
        nodes: nodes.clone(),
        backends: Backends {
            mysql: format!("127.0.0.1:{}", mariadb.port),
            redis: format!("127.0.0.1:{}", redis.port),
        },
        state_dir: dir.join("kubelet"),
        containers: Some(ContainersConfig {
            image: crate::image::IMAGE.to_string(),
            layout: image_state.as_ref().map(|i| i.layout.clone()),
            digest: image_state.as_ref().map(|i| i.digest.clone()),
            unavailable: image_off.clone(),
            api_server: format!("127.0.0.1:{}", layout.apiserver_port),
        }),
    };
    let kubelet_json = dir.join("kubelet.json");
    let text = serde_json::to_string_pretty(&kubelet_config)
        .map_err(|e| SandboxError::Other(format!("serializing {}: {e}", kubelet_json.display())))?;
    pki::write_file(&kubelet_json, text.as_bytes(), 0o600)?;
    let mut args = kubelet_args;
    args.push("--config".into());
    args.push(kubelet_json.into_os_string());
    let mut kubelet = process::spawn("kubelet", &program, &args, &logs, &dir)?;
    recorder.note(&kubelet)?;
    {
        let client = client.clone();
        let names = node_names.clone();
        process::wait_ready(&mut kubelet, NODES_TIMEOUT, || {
            let client = client.clone();
            let names = names.clone();
            async move { nodes_ready(&client, &names).await }
        })
        .await
        .map_err(|e| match e {
            SandboxError::NotReady {
                waited,
                detail,
                log,
                tail,
                ..
            } => SandboxError::NotReady {
                component: "the kubelet simulator (registering the nodes)".into(),
                waited,
                detail,
                log,
                tail,
            },
            SandboxError::StartFailed {
                detail, log, tail, ..
            } => SandboxError::StartFailed {
                component: "the kubelet simulator".into(),
                detail,
                log,
                tail,
            },
            other => other,
        })?;
    }

    progress("applying the seed deployment (fixtures/sandbox/*.yaml)");
    // Workloads last, once their claims are bound: a pod created before would first be reported
    // unschedulable ("unbound immediate PersistentVolumeClaims"), noise in every later diagnosis.
    let (workloads, rest): (Vec<_>, Vec<_>) = seed
        .iter()
        .cloned()
        .partition(|o| o.gvk.kind == "Deployment");
    manifests::apply_all(&client, &server, &rest).await?;
    manifests::wait_claims_bound(&client, &server, &rest, NODES_TIMEOUT).await?;
    manifests::apply_all(&client, &server, &workloads).await?;
    let deployments: Vec<String> = seed
        .iter()
        .filter(|o| o.gvk.kind == "Deployment")
        .map(manifests::ManifestObject::name)
        .collect();
    progress(&format!(
        "waiting for {} to roll out",
        deployments.join(", ")
    ));
    let kubelet_log = kubelet.log.clone();
    let rollout = manifests::wait_rollout(
        &client,
        NAMESPACE,
        &deployments,
        opts.rollout_timeout,
        &kubelet_log,
    );
    tokio::pin!(rollout);
    // The simulator dying while we wait is the likeliest cause of a stuck rollout: say so at once.
    loop {
        tokio::select! {
            r = &mut rollout => { r?; break; }
            () = tokio::time::sleep(Duration::from_millis(300)) => {
                if let Ok(Some(status)) = kubelet.child.try_wait() {
                    return Err(SandboxError::StartFailed {
                        component: "kubelet simulator".into(),
                        detail: format!("it exited ({status}) while the deployment rolled out"),
                        tail: process::tail_log(&kubelet.log, 15),
                        log: kubelet.log.clone(),
                    });
                }
            }
        }
    }

    started.push(kubelet);
    if let Some(m) = &metrics {
        progress("starting the metrics server and registering metrics.k8s.io");
        let metrics_config = MetricsConfig {
            kubeconfig: dir.join("admin.kubeconfig"),
            api_server: server.clone(),
            netns: m.netns.name.clone(),
            listen: m.listen,
            tls_cert: layout.pki.metrics_cert.clone(),
            tls_key: layout.pki.metrics_key.clone(),
            client_ca: layout.pki.front_proxy_ca_cert.clone(),
        };
        let metrics_json = dir.join("metrics.json");
        let text = serde_json::to_string_pretty(&metrics_config).map_err(|e| {
            SandboxError::Other(format!("serializing {}: {e}", metrics_json.display()))
        })?;
        pki::write_file(&metrics_json, text.as_bytes(), 0o600)?;
        let mut margs = vec!["-v".into(), "sandbox".into(), "metrics-server".into()];
        margs.push("--config".into());
        margs.push(metrics_json.into_os_string());
        let mut metrics_server = process::spawn(METRICS_SERVER, &program, &margs, &logs, &dir)?;
        recorder.note(&metrics_server)?;
        let listen = m.listen;
        process::wait_ready(&mut metrics_server, NODES_TIMEOUT, || async move {
            tcp_probe(std::net::SocketAddr::V4(listen)).await
        })
        .await?;
        // 1.20's aggregator panics on server-side apply of an APIService ("FieldManager must be
        // installed to run apply"): the Service and Endpoints are applied, the APIService created.
        let (apiservice, rest): (Vec<_>, Vec<_>) = metrics_registration(&ca_pem, m.listen)?
            .into_iter()
            .partition(|o| o.gvk.kind == "APIService");
        manifests::apply_all(&client, &server, &rest).await?;
        for o in &apiservice {
            create_or_replace(&client, &server, o).await?;
        }
        wait_metrics_served(&client, &mut metrics_server, METRICS_TIMEOUT).await?;
        started.push(metrics_server);
    }
    if let Some(guard) = netns_guard {
        guard.disarm();
    }
    let mut state = recorder
        .0
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for s in started {
        let name = s.name.clone();
        state.processes.insert(name, s.detach());
    }
    state.started_at = jiff::Timestamp::now();
    state.save()?;
    Ok(UpOutcome {
        already_running: false,
        warnings: Vec::new(),
        state,
        elapsed: begin.elapsed(),
    })
}

/// Removes the network namespace when `up` fails part-way (dropped armed), unless `up` succeeded.
struct NetnsGuard {
    plan: NetnsPlan,
    armed: bool,
}

impl NetnsGuard {
    /// Success: the namespace belongs to the running sandbox now (`down` removes it).
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if self.armed {
            netns::remove(&self.plan);
        }
    }
}

/// Connects to `addr` within 3 s.
async fn tcp_probe(addr: std::net::SocketAddr) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no answer on {addr} within 3s"))?
        .map(drop)
        .map_err(|e| format!("{addr}: {e}"))
}

/// The Service, Endpoints and APIService that point the aggregation layer at the metrics
/// server (the serving certificate is checked against the sandbox CA in `caBundle`).
fn metrics_registration(
    ca_pem: &str,
    listen: std::net::SocketAddrV4,
) -> Result<Vec<manifests::ManifestObject>, SandboxError> {
    let text = format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {{app.kubernetes.io/managed-by: newapi-ops-sandbox}}
spec:
  ports:
    - {{name: https, port: 443, targetPort: {port}, protocol: TCP}}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {{app.kubernetes.io/managed-by: newapi-ops-sandbox}}
subsets:
  - addresses: [{{ip: "{ip}"}}]
    ports: [{{name: https, port: {port}, protocol: TCP}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels: {{app.kubernetes.io/managed-by: newapi-ops-sandbox}}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  service: {{name: metrics-server, namespace: kube-system, port: 443}}
  caBundle: {ca}
"#,
        ip = listen.ip(),
        port = listen.port(),
        ca = pki::base64(ca_pem.as_bytes()),
    );
    manifests::parse("metrics.k8s.io registration", &text)
}

/// Creates a cluster-scoped object, or replaces the one of that name.
async fn create_or_replace(
    client: &Client,
    server: &str,
    o: &manifests::ManifestObject,
) -> Result<(), SandboxError> {
    use kube::api::{ApiResource, DynamicObject, PostParams};
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&o.gvk));
    let failed = |e: kube::Error| SandboxError::Apply {
        file: o.file.clone(),
        kind: o.gvk.kind.clone(),
        namespace: String::new(),
        name: o.name(),
        detail: e.to_string(),
    };
    match api.create(&PostParams::default(), &o.object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(st)) if st.code == 409 => {
            let current = api.get(&o.name()).await.map_err(failed)?;
            let mut object = o.object.clone();
            object.metadata.resource_version = current.metadata.resource_version;
            api.replace(&o.name(), &PostParams::default(), &object)
                .await
                .map(drop)
                .map_err(failed)
        }
        Err(e) => Err(failed(e)),
    }
    .map_err(|e| {
        tracing::debug!(server, "{e}");
        e
    })
}

/// Waits until `GET /apis/metrics.k8s.io/v1beta1/nodes` through the API server lists nodes.
async fn wait_metrics_served(
    client: &Client,
    metrics_server: &mut Started,
    timeout: Duration,
) -> Result<(), SandboxError> {
    let begin = Instant::now();
    loop {
        if let Ok(Some(status)) = metrics_server.child.try_wait() {
            return Err(SandboxError::StartFailed {
                component: "metrics server".into(),
                detail: format!("it exited ({status}) before metrics.k8s.io was served"),
                tail: process::tail_log(&metrics_server.log, 15),
                log: metrics_server.log.clone(),
            });
        }
        let last = match metrics_nodes(client).await {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => "the node list is empty".to_string(),
            Err(e) => e,
        };
        if begin.elapsed() >= timeout {
            let condition = apiservice_condition(client).await;
            return Err(SandboxError::MetricsNotServed {
                waited: timeout,
                detail: format!("{last}; APIService v1beta1.metrics.k8s.io: {condition}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// How many nodes `GET /apis/metrics.k8s.io/v1beta1/nodes` lists.
pub async fn metrics_nodes(client: &Client) -> Result<usize, String> {
    let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/nodes")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = client
        .request(req)
        .await
        .map_err(|e| format!("GET /apis/metrics.k8s.io/v1beta1/nodes: {e}"))?;
    Ok(v["items"].as_array().map_or(0, Vec::len))
}

/// The Available condition of the APIService, for error messages.
async fn apiservice_condition(client: &Client) -> String {
    let Ok(req) =
        http::Request::get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
            .body(Vec::new())
    else {
        return "unknown".into();
    };
    match client.request::<serde_json::Value>(req).await {
        Ok(v) => v["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"))
            .map_or("no Available condition yet".into(), |c| {
                format!(
                    "Available={} ({}: {})",
                    c["status"].as_str().unwrap_or("?"),
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )
            }),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// Keeps `state.json` current while processes start.
struct Recorder(Mutex<SandboxState>);

impl Recorder {
    /// Records a started process (on success) and passes the result through.
    fn record(&self, started: Result<Started, SandboxError>) -> Result<Started, SandboxError> {
        let started = started?;
        self.note(&started)?;
        Ok(started)
    }

    fn note(&self, started: &Started) -> Result<(), SandboxError> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .processes
            .insert(started.name.clone(), started.record());
        state.save()
    }
}

/// Ok when every node in `names` is registered, Ready and without the not-ready taint.
async fn nodes_ready(client: &Client, names: &[String]) -> Result<(), String> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    let mut waiting = Vec::new();
    for name in names {
        match list.items.iter().find(|n| &n.name_any() == name) {
            None => waiting.push(format!("{name} not registered")),
            Some(n) if !node_is_ready(n) => waiting.push(format!("{name} not Ready")),
            Some(n) if has_not_ready_taint(n) => {
                waiting.push(format!("{name} still tainted not-ready"))
            }
            Some(_) => {}
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(waiting.join(", "))
    }
}

fn node_is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn has_not_ready_taint(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == "node.kubernetes.io/not-ready"))
}

/// One process in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    pub pid: u32,
    pub alive: bool,
    /// Whether it answers on its port (None when not checked: not alive).
    pub answering: Option<bool>,
    pub detail: Option<String>,
    pub log: PathBuf,
}

/// One node in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
}

/// The report of `sandbox status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub dir: PathBuf,
    pub api_server: String,
    pub kubeconfig: PathBuf,
    pub healthy: bool,
    pub processes: Vec<ProcessStatus>,
    pub api_ready: bool,
    pub nodes: Vec<NodeStatus>,
    pub deployments: Vec<manifests::DeploymentRollout>,
    /// Whether this sandbox serves metrics.k8s.io (None: it does not, see `metrics_off`), and if
    /// so whether the API server answers `GET /apis/metrics.k8s.io/v1beta1/nodes`.
    pub metrics_served: Option<bool>,
    pub metrics_off: Option<String>,
    /// Everything that is not as `up` left it.
    pub problems: Vec<String>,
}

impl StatusReport {
    /// Problems that make the sandbox unusable (a process down, the API not answering), as
    /// opposed to a Deployment that does not roll out (which a fault may have caused on purpose).
    pub fn problems_blocking(&self) -> Vec<String> {
        let mut out: Vec<String> = COMPONENTS
            .iter()
            .filter(|c| !self.processes.iter().any(|p| p.name == **c))
            .map(|c| format!("{c} was never started"))
            .collect();
        if self.metrics_served.is_some() && !self.processes.iter().any(|p| p.name == METRICS_SERVER)
        {
            out.push(format!("{METRICS_SERVER} was never started"));
        }
        out.extend(
            self.processes
                .iter()
                .filter(|p| !p.alive || p.answering == Some(false))
                .map(process_problem),
        );
        if !self.api_ready
            && self
                .processes
                .iter()
                .any(|p| p.name == "kube-apiserver" && p.alive)
        {
            out.push("the API server does not answer /readyz".into());
        }
        out
    }
}

fn process_problem(p: &ProcessStatus) -> String {
    if p.alive {
        format!(
            "{} (pid {}) does not answer{}",
            p.name,
            p.pid,
            p.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )
    } else {
        format!("{} (pid {}) is not running", p.name, p.pid)
    }
}

/// Checks every part of the sandbox in `dir`.
pub async fn status(dir: &Path) -> Result<StatusReport, SandboxError> {
    let dir = absolute(dir)?;
    let state = SandboxState::require(&dir)?;
    let seed = manifests::seed()?;
    let password = manifests::secret_value(&seed, SECRET_NAME, MYSQL_PASSWORD_KEY)?;
    let ca_pem = std::fs::read(&state.ca_cert).unwrap_or_default();
    let api_port = control_plane::port_of(&state.api_server).unwrap_or(0);
    let api_check = control_plane::readyz(&ca_pem, api_port).await;

    let mut processes = Vec::new();
    for (name, p) in &state.processes {
        let alive = process::is_alive(p.pid, Some(&p.program));
        let probe = if alive {
            Some(probe_process(name, &state, &api_check, &password).await)
        } else {
            None
        };
        processes.push(ProcessStatus {
            name: name.clone(),
            pid: p.pid,
            alive,
            answering: probe.as_ref().map(Result::is_ok),
            detail: probe.and_then(Result::err),
            log: p.log.clone(),
        });
    }

    let mut problems: Vec<String> = processes
        .iter()
        .filter(|p| !p.alive || p.answering == Some(false))
        .map(process_problem)
        .collect();
    let (mut nodes, mut deployments) = (Vec::new(), Vec::new());
    let mut metrics_served = state.metrics.as_ref().map(|_| false);
    let api_ready = api_check.is_ok();
    if let Err(e) = &api_check {
        problems.push(format!("API server {}: {e}", state.api_server));
    }
    // Only a ready server gets kube calls: kube's client logs every failed call as an error.
    let client = if api_ready {
        match control_plane::admin_client(&state.kubeconfig, &state.api_server).await {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    } else {
        None
    };
    if let Some(client) = &client {
        {
            let api: Api<Node> = Api::all(client.clone());
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for want in &state.nodes {
                        let ready = list
                            .items
                            .iter()
                            .find(|n| n.name_any() == want.name)
                            .is_some_and(node_is_ready);
                        if !ready {
                            problems.push(format!("node {} is not Ready", want.name));
                        }
                        nodes.push(NodeStatus {
                            name: want.name.clone(),
                            ready,
                        });
                    }
                }
                Err(e) => problems.push(format!("listing nodes: {e}")),
            }
            if state.metrics.is_some() {
                match metrics_nodes(client).await {
                    Ok(n) if n > 0 => metrics_served = Some(true),
                    Ok(_) => {
                        metrics_served = Some(false);
                        problems.push("metrics.k8s.io lists no node".into());
                    }
                    Err(e) => {
                        metrics_served = Some(false);
                        problems.push(format!("metrics.k8s.io is not served: {e}"));
                    }
                }
            }
            match manifests::rollouts(client, &state.namespace).await {
                Ok(list) => {
                    for d in list.iter().filter(|d| !d.complete) {
                        problems.push(format!("deployment {}: {}", d.name, d.summary()));
                    }
                    deployments = list;
                }
                Err(e) => problems.push(format!("listing deployments: {e}")),
            }
        }
    }
    Ok(StatusReport {
        dir,
        api_server: state.api_server.clone(),
        kubeconfig: state.kubeconfig.clone(),
        healthy: problems.is_empty(),
        processes,
        api_ready,
        nodes,
        deployments,
        metrics_served,
        metrics_off: state.metrics_off.clone(),
        problems,
    })
}

async fn probe_process(
    name: &str,
    state: &SandboxState,
    api_check: &Result<(), String>,
    password: &str,
) -> Result<(), String> {
    match name {
        "etcd" => match control_plane::http_get(state.etcd_port, "/health").await? {
            (200, body) if body.contains("true") => Ok(()),
            (code, body) => Err(format!("GET /health answered {code}: {}", body.trim())),
        },
        "kube-apiserver" => api_check.clone(),
        "mariadb" => backends::mariadb_ping(state.mysql.port, password).await,
        "redis" => backends::redis_ping(state.redis.port).await,
        "kubelet" => tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(("127.0.0.1", state.kubelet_port)),
        )
        .await
        .map_err(|_| format!("no answer on 127.0.0.1:{} within 3s", state.kubelet_port))?
        .map(drop)
        .map_err(|e| format!("127.0.0.1:{}: {e}", state.kubelet_port)),
        "kube-controller-manager" => control_plane::healthz(state.controller_manager_port).await,
        "kube-scheduler" => control_plane::healthz(state.scheduler_port).await,
        METRICS_SERVER => match &state.metrics {
            Some(m) => tcp_probe(std::net::SocketAddr::V4(m.listen)).await,
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// One process stopped by `down`.
#[derive(Debug, Clone, Serialize)]
pub struct StoppedProcess {
    pub name: String,
    pub pid: u32,
    pub outcome: StopOutcome,
}

/// The report of `sandbox down`.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    pub dir: PathBuf,
    /// Whether there was a sandbox there at all.
    pub found: bool,
    pub stopped: Vec<StoppedProcess>,
    /// Whether the directory was removed (false with --keep-data).
    pub removed: bool,
    /// The network namespace removed (of metrics.k8s.io), if there was one.
    pub netns_removed: Option<String>,
    pub elapsed: Duration,
}

/// Removes the network namespace named after `dir`, if there is one; returns its name then.
fn remove_netns_of(dir: &Path) -> Option<String> {
    if netns::unavailable().is_some() {
        return None;
    }
    let plan = NetnsPlan::for_dir(dir);
    netns::remove(&plan).then_some(plan.name)
}

/// Stops the sandbox in `dir` and removes the directory (unless `keep_data`).
pub async fn down(dir: &Path, keep_data: bool) -> Result<DownReport, SandboxError> {
    let begin = Instant::now();
    let dir = absolute(dir)?;
    let mut report = DownReport {
        dir: dir.clone(),
        found: false,
        stopped: Vec::new(),
        removed: false,
        netns_removed: None,
        elapsed: Duration::ZERO,
    };
    if !dir.exists() || (!dir.join(MARKER).exists() && is_empty_dir(&dir)?) {
        // Nothing of a sandbox here any more, but its namespace may be (the directory of a
        // crashed run removed by hand): its name is this directory's.
        report.netns_removed = remove_netns_of(&dir);
        return Ok(report);
    }
    if !dir.join(MARKER).exists() {
        return Err(SandboxError::NotASandbox { dir });
    }
    report.found = true;
    let _lock = lock(&dir).await?;
    let mut targets: Vec<Target> = match SandboxState::load(&dir) {
        Ok(Some(state)) => state
            .processes
            .iter()
            .map(|(name, p)| Target {
                name: name.clone(),
                pid: p.pid,
                program: Some(p.program.clone()),
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("{e}; looking for the sandbox's processes by working directory");
            Vec::new()
        }
    };
    // Whatever else still runs from this directory (a state file lost or out of date).
    for t in strays(&dir) {
        if !targets.iter().any(|k| k.pid == t.pid) {
            targets.push(t);
        }
    }
    let outcomes = process::stop_all(&targets, STOP_GRACE).await;
    report.stopped = targets
        .iter()
        .zip(outcomes)
        .map(|(t, outcome)| StoppedProcess {
            name: t.name.clone(),
            pid: t.pid,
            outcome,
        })
        .collect();
    if let Some(stuck) = report
        .stopped
        .iter()
        .find(|s| s.outcome == StopOutcome::Stuck)
    {
        return Err(SandboxError::Other(format!(
            "{} (pid {}) survived SIGKILL; {} was left in place",
            stuck.name,
            stuck.pid,
            dir.display()
        )));
    }
    // Real containers outlive the kubelet simulator that ran them (runc's child, their own
    // session): kill and remove them.
    {
        let state_dir = dir.join("kubelet");
        let _ = tokio::task::spawn_blocking(move || {
            super::kubelet::runtime::remove_leftovers(&state_dir);
        })
        .await;
    }
    // By name, whatever the state says: a crashed `up` may have made it before saving anything.
    report.netns_removed = remove_netns_of(&dir);
    if keep_data {
        // The next `up` must not take the stopped processes' pids for live ones.
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
    } else {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| SandboxError::io(format!("removing {}", dir.display()), e))?;
        report.removed = true;
    }
    report.elapsed = begin.elapsed();
    Ok(report)
}

/// Programs the sandbox starts, by file name.
const OUR_PROGRAMS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "mariadbd",
    "redis-server",
];

/// Processes whose working directory is `dir` and that run one of our programs (or the kubelet
/// simulator or the metrics server): the sandbox starts everything there.
fn strays(dir: &Path) -> Vec<Target> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || std::fs::read_link(e.path().join("cwd")).ok().as_deref() != Some(dir) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = args.first().cloned().unwrap_or_default();
        let base = exe
            .split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let ours = |sub: &str| args.windows(2).any(|w| w[0] == "sandbox" && w[1] == sub);
        let is_kubelet = ours("kubelet");
        let is_metrics = ours(METRICS_SERVER);
        if OUR_PROGRAMS.contains(&base.as_str()) || is_kubelet || is_metrics {
            // Only process-group leaders: signals go to the whole group.
            let pgid = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    let after = s[s.rfind(')')? + 1..].to_string();
                    after.split_whitespace().nth(2)?.parse::<u32>().ok()
                });
            if pgid == Some(pid) {
                out.push(Target {
                    name: if is_kubelet {
                        "kubelet".into()
                    } else if is_metrics {
                        METRICS_SERVER.into()
                    } else {
                        base
                    },
                    pid,
                    program: None,
                });
            }
        }
    }
    out
}

/// Makes `dir` absolute without requiring it to exist.
fn absolute(dir: &Path) -> Result<PathBuf, SandboxError> {
    std::path::absolute(dir)
        .map_err(|e| SandboxError::io(format!("resolving {}", dir.display()), e))
}

/// Creates `dir` (0700) with its marker, or checks that an existing one is ours or empty.
fn prepare_dir(dir: &Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        if !dir.join(MARKER).exists() && !is_empty_dir(dir)? {
            return Err(SandboxError::NotASandbox {
                dir: dir.to_path_buf(),
            });
        }
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
    }
    pki::write_file(
        &dir.join(MARKER),
        b"This directory is a newapi-ops sandbox; `newapi-ops sandbox down` removes it.\n",
        0o644,
    )
}

fn is_empty_dir(dir: &Path) -> Result<bool, SandboxError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| SandboxError::io(format!("reading {}", dir.display()), e))?
        .next()
        .is_none())
}

/// Whether `dir` holds anything but the marker and the lock (data kept by `down --keep-data`).
fn dir_has_leftovers(dir: &Path) -> Result<bool, SandboxError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| SandboxError::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .any(|e| e.file_name() != MARKER && e.file_name() != ".lock"))
}

/// Removes everything in `dir` but the marker and the lock.
fn wipe(dir: &Path) -> Result<(), SandboxError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SandboxError::io(format!("reading {}", dir.display()), e))?;
    for e in entries.flatten() {
        if e.file_name() == MARKER || e.file_name() == ".lock" {
            continue;
        }
        let path = e.path();
        let result = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|err| SandboxError::io(format!("removing {}", path.display()), err))?;
    }
    Ok(())
}

/// Takes the exclusive lock on `DIR/.lock` (waiting for another `up`/`down`/`heal` to finish).
/// The descriptor is close-on-exec, so the sandbox's processes do not inherit the lock.
pub async fn lock(dir: &Path) -> Result<std::fs::File, SandboxError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SandboxError::io(format!("opening {}", path.display()), e))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| SandboxError::Other(format!("waiting for {}: {e}", path.display())))?
        .map_err(|e| SandboxError::io(format!("locking {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_make_the_seeds_cluster() {
        let nodes = sim_nodes(2);
        assert_eq!(nodes[0].name, "sandbox-node-1");
        assert_eq!(nodes[0].memory, "6148Mi");
        assert_eq!(nodes[1].memory, "6147Mi");
        assert!(nodes.iter().all(|n| n.cpu == "4" && n.pods == "110"));
        assert_eq!(sim_nodes(0).len(), 1);
    }

    #[tokio::test]
    async fn down_refuses_a_foreign_directory_and_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
        assert!(matches!(
            down(&foreign, false).await,
            Err(SandboxError::NotASandbox { .. })
        ));
        assert!(foreign.join("precious.txt").exists());

        let missing = root.path().join("missing");
        let r = down(&missing, false).await.unwrap();
        assert!(!r.found);

        let ours = root.path().join("ours");
        prepare_dir(&ours).unwrap();
        std::fs::write(ours.join("x"), "").unwrap();
        let r = down(&ours, false).await.unwrap();
        assert!(r.found && r.removed && !ours.exists());
        let r = down(&ours, false).await.unwrap();
        assert!(!r.found);
    }

    #[test]
    fn prepare_refuses_a_non_empty_foreign_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file"), "").unwrap();
        assert!(matches!(
            prepare_dir(root.path()),
            Err(SandboxError::NotASandbox { .. })
        ));
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        prepare_dir(&empty).unwrap();
        assert!(empty.join(MARKER).exists());
    }
}
