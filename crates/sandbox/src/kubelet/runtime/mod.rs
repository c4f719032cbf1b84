//! Real containers: pods of the tool's own image ([`crate::image::IMAGE`]) run with `runc`.
//!
//! The image is unpacked once (`umoci unpack`) into `<state>/images/<digest>`. Each container
//! attempt gets a bundle `<state>/containers/<id>` (0700): a hard-linked copy of that root
//! filesystem (`cp -al`: milliseconds; a full copy when the process runs as root with a writable
//! root filesystem, so it cannot write through to the shared image), its own `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname` ([`super::services`]), its Secret and ConfigMap volumes,
//! and a `config.json` (0600: it holds the environment) made from the one `umoci` wrote, edited
//! as [`spec`] decides: argv, environment, user, working directory, capabilities, read-only root,
//! mounts, no terminal, the host's network namespace.
//!
//! `runc run` runs it in the foreground: its stdout and stderr are the container's, appended
//! line by line to the pod's log (what `pods/log` serves), and its exit status is the
//! container's exit code (128+signal when killed). `runc` writes its own errors to
//! `<bundle>/runc.log`: an error before the container's process existed (no pid file) is a
//! `CreateContainerError`, one after (exec failed) exit code 128. The bundle is removed once the
//! container is gone; the state of every attempt is kept for [`super::lifecycle`] until the pod
//! goes away.

pub mod spec;
mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Client;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{OnceCell, watch};

use self::spec::{CreateError, PodFacts, ProcessSpec};
use super::Shared;
use super::config::ContainersConfig;
use super::lifecycle::{LocalImage, RunState, Runtime, StartRequest};
use super::logs::{Instance, LogProfile, LogSource, Run};
use super::services::{self, Services};
use crate::image::ImageConfig;

/// A line longer than this is split (as the kubelet's CRI log does at 16 KiB).
const MAX_LINE: usize = 16 * 1024;

/// The unpacked image every bundle is copied from.
struct Unpacked {
    rootfs: PathBuf,
    /// The `config.json` `umoci unpack` wrote.
    base: Value,
    image: ImageConfig,
}

/// One attempt the runtime was asked for.
struct Tracked {
    pod_uid: String,
    state: RunState,
    /// The pod is being deleted: do not start it.
    stopping: bool,
}

/// The container runtime of the kubelet simulator.
pub struct ContainerRuntime {
    config: ContainersConfig,
    client: Client,
    root: PathBuf,
    runc: Option<PathBuf>,
    umoci: Option<PathBuf>,
    no_pivot: bool,
    /// The open-files limit containers get: our own hard limit (they may not exceed it).
    nofile: u64,
    image: OnceCell<Result<Arc<Unpacked>, String>>,
    runs: Mutex<HashMap<String, Tracked>>,
    changed: watch::Sender<u64>,
    services: Arc<Services>,
    shared: Arc<Shared>,
}

/// What a start needs to know about the pod beyond its spec.
pub struct PodContext {
    pub facts: PodFacts,
    /// `<ns>_<pod>_<uid>`: the pod's log directory.
    pub pod_dir: String,
}

impl ContainerRuntime {
    pub fn new(
        client: Client,
        config: ContainersConfig,
        state_dir: &Path,
        services: Arc<Services>,
        shared: Arc<Shared>,
    ) -> Arc<ContainerRuntime> {
        Arc::new(ContainerRuntime {
            config,
            client,
            root: state_dir.to_path_buf(),
            runc: crate::image::find_program("runc"),
            umoci: crate::image::find_program("umoci"),
            no_pivot: root_is_ramfs(),
            nofile: own_nofile_limit(),
            image: OnceCell::new(),
            runs: Mutex::new(HashMap::new()),
            changed: watch::Sender::new(0),
            services,
            shared,
        })
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that sees a change whenever some attempt changes state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn set(&self, id: &str, state: RunState) {
        if let Some(t) = self.runs().get_mut(id) {
            t.state = state;
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Starts an attempt in the background (its state is `Creating` at once).
    pub fn start(self: &Arc<Self>, pod: Arc<Pod>, req: StartRequest, ctx: PodContext) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.runs().insert(
            req.id.clone(),
            Tracked {
                pod_uid: uid,
                state: RunState::Creating,
                stopping: false,
            },
        );
        let me = self.clone();
        tokio::spawn(async move { me.run_attempt(pod, req, ctx).await });
    }

    async fn run_attempt(self: Arc<Self>, pod: Arc<Pod>, req: StartRequest, ctx: PodContext) {
        let bundle = self.root.join("containers").join(&req.id);
        let failed = |e: CreateError| RunState::Failed {
            reason: e.reason.to_string(),
            message: e.message,
            at: Timestamp::now(),
        };
        let state = match self.create(&pod, &req, &ctx, &bundle).await {
            Err(e) => failed(e),
            Ok(()) if self.runs().get(&req.id).is_none_or(|t| t.stopping) => RunState::Failed {
                reason: "ContainerCreating".into(),
                message: "the pod is being deleted".into(),
                at: Timestamp::now(),
            },
            Ok(()) => match self.execute(&req, &ctx, &bundle).await {
                Ok(s) => s,
                Err(e) => failed(e),
            },
        };
        if let RunState::Failed {
            reason, message, ..
        } = &state
        {
            tracing::warn!(pod = %ctx.pod_dir, container = %req.container, "{reason}: {message}");
        }
        // Gone before the state says so: nothing of it (config.json holds the environment) is
        // left once the pod reports the end.
        let _ = std::fs::remove_dir_all(&bundle);
        self.set(&req.id, state);
    }

    /// The image, unpacked on first use.
    async fn unpacked(&self) -> Result<Arc<Unpacked>, String> {
        self.image
            .get_or_init(|| async { self.unpack().await.map(Arc::new) })
            .await
            .clone()
    }

    async fn unpack(&self) -> Result<Unpacked, String> {
        let layout = self
            .config
            .layout
            .clone()
            .ok_or("the sandbox has no image layout")?;
        let umoci = self.umoci.clone().ok_or("umoci is not installed")?;
        let tag = crate::image::TAG;
        let image = crate::image::inspect(&layout, tag)?;
        let hex = image.digest.trim_start_matches("sha256:").to_string();
        let dest = self.root.join("images").join(&hex);
        if !dest.join("config.json").is_file() {
            let tmp = self.root.join("images").join(format!(".{hex}.tmp"));
            let _ = std::fs::remove_dir_all(&tmp);
            if let Some(parent) = tmp.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            let out = tokio::process::Command::new(&umoci)
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:{tag}", layout.display()))
                .arg(&tmp)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| format!("running umoci: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "umoci unpack failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::fs::rename(&tmp, &dest).map_err(|e| format!("moving the unpacked image: {e}"))?;
        }
        let text = std::fs::read_to_string(dest.join("config.json"))
            .map_err(|e| format!("reading the unpacked config: {e}"))?;
        let base: Value =
            serde_json::from_str(&text).map_err(|e| format!("parsing the unpacked config: {e}"))?;
        Ok(Unpacked {
            rootfs: dest.join("rootfs"),
            base,
            image,
        })
    }

    /// Everything before the process: environment, user, bundle, volumes, `config.json`.
    async fn create(
        &self,
        pod: &Pod,
        req: &StartRequest,
        ctx: &PodContext,
        bundle: &Path,
    ) -> Result<(), CreateError> {
        if self.runc.is_none() {
            return Err(CreateError::create("runc is not installed"));
        }
        let unpacked = self.unpacked().await.map_err(CreateError::create)?;
        let c = find_container(pod, req).ok_or_else(|| {
            CreateError::create(format!("container {} is not in the pod", req.container))
        })?;
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let sources = volumes::fetch_sources(&self.client, pod, c).await?;
        let services = self.services.snapshot();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let service_env = services::service_env(&services, &namespace, links);
        let kube_env = spec::environment(pod, c, &sources, &service_env, &ctx.facts)?;
        let read_etc = |f: &str| std::fs::read_to_string(unpacked.rootfs.join("etc").join(f));
        let user = spec::user(
            pod,
            c,
            &unpacked.image,
            &read_etc("passwd").unwrap_or_default(),
            &read_etc("group").unwrap_or_default(),
        )?;
        let argv = spec::command_line(c, &unpacked.image, &kube_env)?;
        // The image's environment, then the container's over it, HOME from the user's entry.
        let mut env: Vec<(String, String)> = unpacked
            .image
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in kube_env {
            match env.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => env.push((k, v)),
            }
        }
        if !env.iter().any(|(k, _)| k == "HOME") {
            env.push(("HOME".into(), user.home.clone()));
        }
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .or_else(|| pod.metadata.name.clone())
            .unwrap_or_default();

        let sc = c.security_context.as_ref();
        let readonly_root = sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false);
        make_private_dir(bundle)
            .map_err(|e| CreateError::create(format!("creating the bundle: {e}")))?;
        // Hard links share the image's files: only a process that could write them (root, on a
        // writable root filesystem) gets a copy of its own.
        let copy = user.uid == 0 && !readonly_root;
        let out = tokio::process::Command::new("cp")
            .arg(if copy { "-a" } else { "-al" })
            .arg(&unpacked.rootfs)
            .arg(bundle.join("rootfs"))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                CreateError::create(format!("copying the image's root filesystem: {e}"))
            })?;
        if !out.status.success() {
            return Err(CreateError::create(format!(
                "copying the image's root filesystem: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let etc = |name: &str, text: String| -> Result<spec::Mount, CreateError> {
            let path = bundle.join(name);
            std::fs::write(&path, text)
                .map_err(|e| CreateError::create(format!("writing {name}: {e}")))?;
            Ok(spec::Mount {
                source: path.display().to_string(),
                destination: format!("/etc/{name}"),
                readonly: false,
            })
        };
        let mut mounts = vec![
            etc(
                "hosts",
                services::hosts_file(&services, &namespace, &hostname),
            )?,
            etc(
                "resolv.conf",
                services::resolv_conf(&namespace, self.services.own_addr()),
            )?,
            etc("hostname", format!("{hostname}\n"))?,
        ];
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let pod_volumes = self.root.join("volumes").join(&pod_uid);
        let fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .and_then(|g| u32::try_from(g).ok());
        mounts.extend(
            volumes::mounts(
                &self.client,
                pod,
                c,
                &sources,
                &volumes::VolumeDirs {
                    pod_dir: &pod_volumes,
                    bundle,
                },
                volumes::Owner {
                    uid: user.uid,
                    gid: user.gid,
                    fs_group,
                },
            )
            .await?,
        );
        let cwd = c
            .working_dir
            .clone()
            .or_else(|| unpacked.image.working_dir.clone())
            .unwrap_or_else(|| "/".into());
        let no_new_privileges = !sc
            .and_then(|s| s.allow_privilege_escalation)
            .unwrap_or(true);
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert("io.kubernetes.pod.namespace".into(), namespace.clone());
        annotations.insert(
            "io.kubernetes.pod.name".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        annotations.insert("io.kubernetes.pod.uid".into(), pod_uid);
        annotations.insert("io.kubernetes.container.name".into(), req.container.clone());
        let config = spec::oci_config(
            &unpacked.base,
            &ProcessSpec {
                args: argv,
                env,
                cwd,
                user,
                hostname,
                readonly_root,
                no_new_privileges,
                capabilities: spec::capabilities(c),
                mounts,
                annotations,
                nofile: self.nofile,
            },
        );
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|e| CreateError::create(format!("writing config.json: {e}")))?;
        write_private(&bundle.join("config.json"), &text)
            .map_err(|e| CreateError::create(format!("writing config.json: {e}")))
    }

    /// Runs the bundle to its end; its output goes to the pod's log.
    async fn execute(
        &self,
        req: &StartRequest,
        ctx: &PodContext,
        bundle: &Path,
    ) -> Result<RunState, CreateError> {
        let runc = self
            .runc
            .clone()
            .ok_or_else(|| CreateError::create("runc is not installed"))?;
        let runc_root = self.root.join("runc");
        make_private_dir(&runc_root)
            .map_err(|e| CreateError::create(format!("creating {}: {e}", runc_root.display())))?;
        let runc_log = bundle.join("runc.log");
        let pid_file = bundle.join("pid");
        let mut cmd = tokio::process::Command::new(runc);
        cmd.arg("--root")
            .arg(&runc_root)
            .arg("--log")
            .arg(&runc_log)
            .arg("--log-format")
            .arg("json")
            .arg("run");
        if self.no_pivot {
            cmd.arg("--no-pivot");
        }
        cmd.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&req.id)
            .current_dir(bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| CreateError::create(format!("starting runc: {e}")))?;
        let started = Timestamp::now();
        self.set(&req.id, RunState::Running { started });
        let instance = Instance {
            id: req.id.clone(),
            restart: req.restart,
            run: Run {
                started,
                ended: None,
                tail: Vec::new(),
            },
        };
        let out = child.stdout.take();
        let err = child.stderr.take();
        let logs = &self.shared.logs;
        let append = |line: &str| {
            let src = LogSource {
                pod_dir: &ctx.pod_dir,
                container: &req.container,
                instance: &instance,
                profile: &LogProfile::Captured,
            };
            if let Err(e) = logs.append(&src, Timestamp::now(), line) {
                tracing::warn!(pod = %ctx.pod_dir, "cannot write the container's log: {e}");
            }
        };
        // The log file exists from the start, even for a container that prints nothing.
        append_nothing(logs, ctx, req, &instance);
        // The container is pid 1 of its own pid namespace: when it exits, everything it started
        // dies with it, and its output ends.
        let (status, (), ()) = tokio::join!(child.wait(), pump(out, &append), pump(err, &append));
        let finished = Timestamp::now();
        let runc_error = runc_error(&runc_log);
        let exit_code = match status {
            Ok(s) => exit_code(s),
            Err(e) => {
                tracing::warn!("waiting for runc: {e}");
                137
            }
        };
        let _ = tokio::process::Command::new(self.runc.as_deref().unwrap_or(Path::new("runc")))
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "--force", &req.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match runc_error {
            Some(message) if !pid_file.exists() => {
                self.shared.logs.discard(&req.id);
                Err(CreateError::create(format!(
                    "failed to create the container: {message}"
                )))
            }
            Some(_) => Ok(RunState::Exited {
                started,
                finished,
                exit_code: 128,
            }),
            None => Ok(RunState::Exited {
                started,
                finished,
                exit_code,
            }),
        }
    }

    /// Stops the pod's containers: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_pod(&self, pod_uid: &str, grace: Duration) {
        let ids: Vec<String> = {
            let mut runs = self.runs();
            runs.iter_mut()
                .filter(|(_, t)| t.pod_uid == pod_uid)
                .filter_map(|(id, t)| {
                    t.stopping = true;
                    matches!(t.state, RunState::Running { .. } | RunState::Creating)
                        .then(|| id.clone())
                })
                .collect()
        };
        if ids.is_empty() {
            return;
        }
        for id in &ids {
            self.signal(id, "TERM").await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut rx = self.subscribe();
        while !self.all_done(&ids) {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                for id in &ids {
                    self.signal(id, "KILL").await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while !self.all_done(&ids) {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                break;
            }
        }
    }

    fn all_done(&self, ids: &[String]) -> bool {
        let runs = self.runs();
        ids.iter().all(|id| {
            runs.get(id).is_none_or(|t| {
                matches!(t.state, RunState::Exited { .. } | RunState::Failed { .. })
            })
        })
    }

    async fn signal(&self, id: &str, signal: &str) {
        let Some(runc) = &self.runc else { return };
        let _ = tokio::process::Command::new(runc)
            .arg("--root")
            .arg(self.root.join("runc"))
            .args(["kill", id, signal])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Forgets a deleted pod: its attempts and its emptyDir volumes.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.runs().retain(|_, t| {
            t.pod_uid != pod_uid || matches!(t.state, RunState::Running { .. } | RunState::Creating)
        });
        if !pod_uid.is_empty() {
            let _ = std::fs::remove_dir_all(self.root.join("volumes").join(pod_uid));
        }
    }
}

impl Runtime for ContainerRuntime {
    fn local_image(&self, image: &str) -> LocalImage {
        let missing = match (&self.runc, &self.umoci) {
            (Some(_), Some(_)) => None,
            _ => Some("runc and umoci are not installed (scripts/setup.sh installs them)"),
        };
        super::image::local(image, &self.config, missing)
    }

    fn run_state(&self, id: &str) -> Option<RunState> {
        self.runs().get(id).map(|t| t.state.clone())
    }
}

fn find_container<'a>(pod: &'a Pod, req: &StartRequest) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    if req.init {
        spec.init_containers
            .iter()
            .flatten()
            .find(|c| c.name == req.container)
    } else {
        spec.containers.iter().find(|c| c.name == req.container)
    }
}

/// Creates the instance's (empty) log file.
fn append_nothing(
    logs: &super::logs::LogStore,
    ctx: &PodContext,
    req: &StartRequest,
    instance: &Instance,
) {
    let src = LogSource {
        pod_dir: &ctx.pod_dir,
        container: &req.container,
        instance,
        profile: &LogProfile::Captured,
    };
    if let Err(e) = logs.read(&src, Timestamp::now()) {
        tracing::warn!(pod = %ctx.pod_dir, "cannot create the container's log: {e}");
    }
}

/// Reads `reader` to its end, giving each line (at most [`MAX_LINE`] bytes) to `line`.
async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, line: &(dyn Fn(&str) + Sync)) {
    let Some(reader) = reader else { return };
    let mut r = BufReader::new(reader);
    let mut buf: Vec<u8> = Vec::new();
    let emit = |buf: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(buf);
        line(text.trim_end_matches('\r'));
        buf.clear();
    };
    while let Ok(available) = r.fill_buf().await {
        if available.is_empty() {
            break;
        }
        let room = MAX_LINE - buf.len();
        match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&available[..i]);
                r.consume(i + 1);
                emit(&mut buf);
            }
            None => {
                let take = available.len().min(room);
                buf.extend_from_slice(&available[..take]);
                r.consume(take);
                if buf.len() >= MAX_LINE {
                    emit(&mut buf);
                }
            }
        }
    }
    if !buf.is_empty() {
        emit(&mut buf);
    }
}

/// The exit code of `runc run`: the container's, or 128+signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(137)
}

/// The last error `runc` logged (`--log-format json`: one object per line).
fn runc_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
}

/// Whether `/` is the initial ramfs, where `pivot_root` is impossible (runc needs `--no-pivot`).
fn root_is_ramfs() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() > 2 && f[1] == "/").then(|| f[2].to_string())
                })
                .next_back()
        })
        .is_some_and(|t| t == "rootfs" || t == "ramfs")
}

/// This process's hard RLIMIT_NOFILE (`/proc/self/limits`), at most containerd's 1048576.
fn own_nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("Max open files"))?;
            let hard = line.split_whitespace().nth(4)?;
            Some(hard.parse::<u64>().unwrap_or(1_048_576))
        })
        .unwrap_or(1024)
        .min(1_048_576)
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Kills and removes every container left in `<state_dir>/runc` (by a simulator that was
/// killed, or when the sandbox goes down), and their bundles. Blocking.
pub fn remove_leftovers(state_dir: &Path) {
    let runc_root = state_dir.join("runc");
    if let Some(runc) = crate::image::find_program("runc")
        && runc_root.is_dir()
    {
        let run = |args: &[&str]| {
            std::process::Command::new(&runc)
                .arg("--root")
                .arg(&runc_root)
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
        };
        if let Ok(out) = run(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = run(&["kill", id, "KILL"]);
                let _ = run(&["delete", "--force", id]);
            }
        }
    }
    let _ = std::fs::remove_dir_all(state_dir.join("containers"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_splits_lines_and_long_ones() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("one\r\ntwo\n{long}\nlast");
        let got = std::sync::Mutex::new(Vec::<String>::new());
        pump(Some(input.as_bytes()), &|l: &str| {
            got.lock().unwrap().push(l.to_string())
        })
        .await;
        let got = got.into_inner().unwrap();
        assert_eq!(got[0], "one");
        assert_eq!(got[1], "two");
        assert_eq!(got[2].len(), MAX_LINE);
        assert_eq!(got[3], "x".repeat(10));
        assert_eq!(got[4], "last");
    }

    #[test]
    fn runc_errors_are_read_from_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"exec: no such file\"}\n",
        )
        .unwrap();
        assert_eq!(runc_error(&log).as_deref(), Some("exec: no such file"));
        assert_eq!(runc_error(&dir.path().join("missing")), None);
    }
}
