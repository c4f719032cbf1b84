//! The kubelet's decisions for one pod, as a pure state machine: given the pod, the Secrets and
//! ConfigMaps in sight and the time, [`PodRecord::step`] advances each container (pull, config,
//! start, crash, restart, complete) and returns the pod status to write, the events to record,
//! when to look again, and a [`PodView`] for the log and port-forward endpoints.
//!
//! Nothing here talks to the API server, so every behaviour is unit-tested with fixed clocks.
//! Timings (chosen to be quick for tests, slow enough not to flood the API server):
//! `ErrImagePull` shows for [`PULL_ERROR_SHOWS`] before `ImagePullBackOff`; a crash-looping
//! container starts at [`CRASH_FIRST_RESTARTS`] restarts and crashes again every [`CRASH_PERIOD`];
//! repeated warnings (back-off, readiness failures, config errors) are re-recorded every
//! [`EVENT_REPEAT`]; a missing Secret or ConfigMap is looked for again every [`CONFIG_RETRY`] (and
//! whenever one changes).
//!
//! Containers of the tool's own image are real ([`Runtime`]): the step asks the runtime to start
//! an attempt ([`Outcome::starts`]) and reports what the runtime says of it (creating, running,
//! exited with its code); the restart policy decides what follows an exit, with the kubelet's
//! back-off ([`REAL_BACKOFF_FIRST`] doubling up to [`REAL_BACKOFF_MAX`]) between restarts.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, Pod};
use serde_json::{Value, json};

use super::behavior::{self, Behavior, ConfigSource, Termination};
use super::image::{self, ImageVerdict};
use super::logs::{self, Instance, LogProfile, Run};

/// How long `ErrImagePull` shows before `ImagePullBackOff`.
pub const PULL_ERROR_SHOWS: SignedDuration = SignedDuration::from_secs(5);
/// A crash-looping container crashes (and its restart count grows) this often.
pub const CRASH_PERIOD: SignedDuration = SignedDuration::from_secs(30);
/// How long each crashing instance ran before it died.
pub const CRASH_RUN: SignedDuration = SignedDuration::from_secs(6);
/// The restart count a crash-looping container shows from the start.
pub const CRASH_FIRST_RESTARTS: u32 = 5;
/// How often a repeated warning is recorded again (its count bumped).
pub const EVENT_REPEAT: SignedDuration = SignedDuration::from_secs(30);
/// How often a container blocked by a missing Secret or ConfigMap is retried.
pub const CONFIG_RETRY: SignedDuration = SignedDuration::from_secs(10);
/// How long a `succeed` container runs before it exits 0.
pub const SUCCEED_AFTER: SignedDuration = SignedDuration::from_secs(2);
/// The back-off before the first restart of a real container (the kubelet's 10 s), doubled at
/// every further restart up to [`REAL_BACKOFF_MAX`].
pub const REAL_BACKOFF_FIRST: SignedDuration = SignedDuration::from_secs(10);
pub const REAL_BACKOFF_MAX: SignedDuration = SignedDuration::from_secs(300);

/// What the container runtime knows: whether an image is the tool's own (run for real), and the
/// state of each real container attempt it was asked to start.
pub trait Runtime {
    fn local_image(&self, image: &str) -> LocalImage;
    /// The attempt `id` (from a [`StartRequest`]), or `None` if it was never asked for.
    fn run_state(&self, id: &str) -> Option<RunState>;
}

/// Whether an image is the tool's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalImage {
    /// Another image: simulated.
    NotLocal,
    /// The tool's image, runnable; `image_id` as containerd reports it
    /// (`docker.io/library/newapi-ops@sha256:…`, the real digest).
    Runnable { image_id: String },
    /// The tool's image (or another tag of it), which cannot run: `ErrImageNeverPull`.
    Absent { message: String },
}

/// One attempt of a real container, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Being set up (volumes, environment, bundle).
    Creating,
    Running {
        started: Timestamp,
    },
    Exited {
        started: Timestamp,
        finished: Timestamp,
        exit_code: i32,
    },
    /// It could not be created: the container waits with `reason` (e.g.
    /// `CreateContainerConfigError`) and is tried again after [`CONFIG_RETRY`].
    Failed {
        reason: String,
        message: String,
        at: Timestamp,
    },
}

/// No runtime: every image is simulated.
pub struct NoRuntime;

impl Runtime for NoRuntime {
    fn local_image(&self, _: &str) -> LocalImage {
        LocalImage::NotLocal
    }
    fn run_state(&self, _: &str) -> Option<RunState> {
        None
    }
}

/// A real container attempt to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The attempt's container ID (64 hex), also its log's instance ID.
    pub id: String,
    pub container: String,
    pub init: bool,
    /// The restart number (the log file name).
    pub restart: u32,
}

/// An event the kubelet records about the pod (aggregated by the recorder on repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// `spec.containers{name}`, or `None` for the pod itself.
    pub field_path: Option<String>,
    /// How many occurrences this stands for (readiness failures come in batches).
    pub count: u32,
}

/// What the log and port-forward endpoints need to know about a pod.
#[derive(Debug, Clone)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `<ns>_<pod>_<uid>`: the pod's log directory.
    pub pod_dir: String,
    /// The `app` label.
    pub app: Option<String>,
    /// All labels (Service selectors).
    pub labels: BTreeMap<String, String>,
    /// Named and unnamed container ports: (name, containerPort).
    pub ports: Vec<(String, u16)>,
    /// Some container runs the tool's image for real (its ports are the host's).
    pub real: bool,
    pub rate_limited: bool,
    pub start_time: Timestamp,
    pub containers: Vec<ContainerView>,
}

/// One container of a [`PodView`].
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub init: bool,
    pub state: ViewState,
    /// The last terminated instance (`lastState.terminated`).
    pub last: Option<Instance>,
    pub profile: LogProfile,
}

/// A container's current state, as the log endpoint sees it.
#[derive(Debug, Clone)]
pub enum ViewState {
    Waiting { reason: String },
    Running(Instance),
    Terminated(Instance),
}

impl PodView {
    /// Whether some container of the pod is running (so something listens on its ports).
    pub fn any_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| !c.init && matches!(c.state, ViewState::Running(_)))
    }

    pub fn container(&self, name: &str) -> Option<&ContainerView> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// The result of one [`PodRecord::step`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The pod's `status`, for a merge patch of the status subresource.
    pub status: Value,
    pub events: Vec<EventSpec>,
    /// When the pod must be looked at again even if nothing changes (`None`: only on change).
    pub wake: Option<Timestamp>,
    /// Some container waits for a Secret or ConfigMap: step again when one changes.
    pub needs_config: bool,
    /// Real container attempts to start now.
    pub starts: Vec<StartRequest>,
    /// Some real container is being created or runs: step again when the runtime reports.
    pub needs_runtime: bool,
    pub view: PodView,
    /// The behaviour annotation could not be understood (the pod runs normally).
    pub behavior_error: Option<String>,
}

/// Container state kept between steps.
#[derive(Debug, Clone, Default)]
struct ContainerRecord {
    /// Why the container cannot start yet, and since when.
    blocked: Option<(&'static str, Timestamp)>,
    /// The container was created at least once (image and config checks are behind it).
    ever_started: bool,
    restarts: u32,
    /// The running (or, for a completed container, finished) instance.
    current: Option<Instance>,
    /// The last terminated instance.
    last: Option<Instance>,
    /// The behaviour the container is following.
    behavior: Option<Behavior>,
    /// CrashLoop: when it crashes next. Succeed: when it exits.
    next_transition: Option<Timestamp>,
    /// A real container: the attempt asked of the runtime, and how many tries of this restart
    /// failed to be created.
    real: Option<String>,
    tries: u32,
    /// A real container waits until then before its next restart.
    backoff_until: Option<Timestamp>,
}

/// Events already recorded (once) and when repeated ones were last recorded.
#[derive(Debug, Clone, Default)]
struct Ledger {
    once: HashSet<String>,
    last: HashMap<String, Timestamp>,
}

/// A repeated event that is due now.
struct Due {
    /// Time since it was last recorded (`None` the first time).
    elapsed: Option<SignedDuration>,
}

impl Ledger {
    fn once(&mut self, key: String) -> bool {
        self.once.insert(key)
    }

    /// Whether the repeated event `key` is due; `next` learns when it will be due again.
    fn every(
        &mut self,
        key: String,
        now: Timestamp,
        period: SignedDuration,
        next: &mut Option<Timestamp>,
    ) -> Option<Due> {
        let due = match self.last.get(&key) {
            None => Some(Due { elapsed: None }),
            Some(&t) if now >= t + period => Some(Due {
                elapsed: Some(now.duration_since(t)),
            }),
            Some(_) => None,
        };
        if due.is_some() {
            self.last.insert(key.clone(), now);
        }
        let at = self.last.get(&key).map_or(now, |&t| t + period);
        wake_at(next, at);
        due
    }
}

fn wake_at(next: &mut Option<Timestamp>, t: Timestamp) {
    *next = Some(next.map_or(t, |n| n.min(t)));
}

/// Everything the simulator remembers about one pod between steps.
#[derive(Debug, Clone)]
pub struct PodRecord {
    uid: String,
    start_time: Timestamp,
    pod_ip: String,
    /// The address kubelet probes come from (the node's gateway on the pod network).
    probe_ip: String,
    containers: HashMap<String, ContainerRecord>,
    /// Condition type → (status, last transition).
    conditions: HashMap<&'static str, (bool, Timestamp)>,
    ledger: Ledger,
}

/// Per-step scratch: the events and wake-up collected while evaluating containers.
struct Scratch<'a> {
    now: Timestamp,
    namespace: &'a str,
    pod_name: &'a str,
    uid: &'a str,
    config: &'a dyn ConfigSource,
    runtime: &'a dyn Runtime,
    events: Vec<EventSpec>,
    wake: Option<Timestamp>,
    needs_config: bool,
    starts: Vec<StartRequest>,
    needs_runtime: bool,
}

impl Scratch<'_> {
    fn normal(&mut self, field_path: &str, reason: &'static str, message: String) {
        self.event(false, reason, message, field_path, 1);
    }

    fn warning(&mut self, field_path: &str, reason: &'static str, message: String) {
        self.event(true, reason, message, field_path, 1);
    }

    fn event(
        &mut self,
        warning: bool,
        reason: &'static str,
        message: String,
        field_path: &str,
        count: u32,
    ) {
        self.events.push(EventSpec {
            warning,
            reason,
            message,
            field_path: Some(field_path.to_string()),
            count,
        });
    }
}

/// The result of evaluating one container.
struct Eval {
    status: Value,
    view: ContainerView,
    ready: bool,
    class: Class,
}

/// Restarts a `flaky` container shows.
const FLAKY_RESTARTS: u32 = 7;

/// The eviction manager's message for a pod evicted under memory pressure.
const EVICTION_MESSAGE: &str = "The node was low on resource: memory. Container new-api was using 2612Mi, which exceeds its request of 1Gi. ";

/// How the kubelet's phase computation counts a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Running,
    Terminated {
        exit_code: i32,
    },
    /// Waiting with a previous termination (restarting).
    WaitingRestart,
    /// Waiting, never ran.
    Waiting,
}

impl PodRecord {
    /// Starts remembering `pod`, picking up what an earlier simulator wrote into its status (start
    /// time, container instances) so a restart of the simulator does not restart its containers.
    pub fn new(pod: &Pod, pod_ip: String, probe_ip: String, now: Timestamp) -> PodRecord {
        let status = pod.status.as_ref();
        let start_time = status
            .and_then(|s| s.start_time.as_ref())
            .map_or(now, |t| t.0);
        let mut containers = HashMap::new();
        let behavior =
            Behavior::parse(annotation(pod, behavior::BEHAVIOR)).unwrap_or(Behavior::Running);
        let lists = [
            (
                "init",
                status.and_then(|s| s.init_container_statuses.as_ref()),
            ),
            ("app", status.and_then(|s| s.container_statuses.as_ref())),
        ];
        let mut ledger = Ledger::default();
        for (kind, list) in lists {
            for cs in list.into_iter().flatten() {
                let restarts = u32::try_from(cs.restart_count).unwrap_or(0);
                let state = cs.state.as_ref();
                let id = || plain_id(cs.container_id.as_deref());
                let mut rec = ContainerRecord {
                    restarts,
                    last: cs
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| restored_instance(t, restarts.saturating_sub(1))),
                    ..ContainerRecord::default()
                };
                if let Some(r) = state.and_then(|s| s.running.as_ref()) {
                    rec.current = Some(Instance {
                        id: id(),
                        restart: restarts,
                        run: Run {
                            started: r.started_at.as_ref().map_or(now, |t| t.0),
                            ended: None,
                            tail: Vec::new(),
                        },
                    });
                } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                    rec.current = restored_instance(t, restarts);
                }
                let crashing = state
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
                if crashing && let Some(last) = &rec.last {
                    let termination = last.run.ended.map_or(Termination::Error, |(_, t)| t);
                    rec.behavior = Some(Behavior::CrashLoop(termination));
                    rec.next_transition = Some(now + CRASH_PERIOD);
                } else if rec.current.is_some() {
                    rec.behavior = Some(behavior);
                }
                rec.ever_started = rec.current.is_some() || rec.last.is_some();
                if rec.ever_started {
                    ledger.once(format!("start/{kind}/{}", cs.name));
                }
                containers.insert(format!("{kind}/{}", cs.name), rec);
            }
        }
        let mut conditions = HashMap::new();
        for c in status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            let kind = match c.type_.as_str() {
                "Initialized" => "Initialized",
                "Ready" => "Ready",
                "ContainersReady" => "ContainersReady",
                _ => continue,
            };
            if let Some(t) = &c.last_transition_time {
                conditions.insert(kind, (c.status == "True", t.0));
            }
        }
        PodRecord {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            start_time,
            pod_ip,
            probe_ip,
            containers,
            conditions,
            ledger,
        }
    }

    pub fn pod_ip(&self) -> &str {
        &self.pod_ip
    }

    /// Advances the pod to `now` and says what the kubelet would report (every image simulated).
    #[cfg(test)]
    pub fn step(&mut self, pod: &Pod, config: &dyn ConfigSource, now: Timestamp) -> Outcome {
        self.step_with(pod, config, &NoRuntime, now)
    }

    /// [`PodRecord::step`], with real containers for the images `runtime` runs.
    pub fn step_with(
        &mut self,
        pod: &Pod,
        config: &dyn ConfigSource,
        runtime: &dyn Runtime,
        now: Timestamp,
    ) -> Outcome {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = self.uid.clone();
        let (behavior, behavior_error) = match Behavior::parse(annotation(pod, behavior::BEHAVIOR))
        {
            Ok(b) => (b, None),
            Err(e) => (Behavior::Running, Some(e)),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_string());
        let tail: Vec<String> = annotation(pod, behavior::PREVIOUS_LOG)
            .map(|text| {
                text.trim_end()
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut scratch = Scratch {
            now,
            namespace: &namespace,
            pod_name: &name,
            uid: &uid,
            config,
            runtime,
            events: Vec::new(),
            wake: None,
            needs_config: false,
            starts: Vec::new(),
            needs_runtime: false,
        };

        // Init containers run one after the other, each to completion.
        let mut init_done = true;
        let mut init_failed = false;
        let mut init_evals = Vec::new();
        let mut incomplete_init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let eval = if init_done {
                self.evaluate(
                    &mut scratch,
                    pod,
                    c,
                    true,
                    Behavior::Running,
                    &restart_policy,
                    &tail,
                )
            } else {
                pod_initializing(c, true)
            };
            if eval.class != (Class::Terminated { exit_code: 0 }) {
                if init_done
                    && restart_policy == "Never"
                    && matches!(eval.class, Class::Terminated { exit_code } if exit_code != 0)
                {
                    // An init container that failed is not retried: the pod failed.
                    init_failed = true;
                }
                init_done = false;
                incomplete_init.push(c.name.clone());
            }
            init_evals.push(eval);
        }
        let mut app_evals = Vec::new();
        for c in &spec.containers {
            let eval = if init_done {
                self.evaluate(
                    &mut scratch,
                    pod,
                    c,
                    false,
                    behavior,
                    &restart_policy,
                    &tail,
                )
            } else {
                pod_initializing(c, false)
            };
            app_evals.push(eval);
        }

        let phase = if init_failed {
            "Failed"
        } else {
            pod_phase(
                &app_evals.iter().map(|e| e.class).collect::<Vec<_>>(),
                !init_done,
                &restart_policy,
            )
        };
        let unready: Vec<&str> = spec
            .containers
            .iter()
            .zip(&app_evals)
            .filter(|(_, e)| !e.ready)
            .map(|(c, _)| c.name.as_str())
            .collect();
        let completed = phase == "Succeeded" || phase == "Failed";
        let mut conditions = Vec::new();
        let mut condition =
            |kind: &'static str, ok: bool, reason: Option<&str>, message: Option<String>| {
                let since = match self.conditions.get(kind) {
                    Some(&(was, t)) if was == ok => t,
                    _ => now,
                };
                self.conditions.insert(kind, (ok, since));
                let mut c = json!({
                    "type": kind,
                    "status": if ok { "True" } else { "False" },
                    "lastProbeTime": null,
                    "lastTransitionTime": k8s_time(since),
                });
                if let Some(r) = reason {
                    c["reason"] = json!(r);
                }
                if let Some(m) = message {
                    c["message"] = json!(m);
                }
                conditions.push(c);
            };
        if completed {
            condition("Initialized", true, Some("PodCompleted"), None);
            condition("Ready", false, Some("PodCompleted"), None);
            condition("ContainersReady", false, Some("PodCompleted"), None);
        } else {
            let init_msg = (!init_done).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete_init.join(" ")
                )
            });
            condition(
                "Initialized",
                init_done,
                (!init_done).then_some("ContainersNotInitialized"),
                init_msg,
            );
            let ready = unready.is_empty();
            let msg = (!ready)
                .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
            condition(
                "Ready",
                ready,
                (!ready).then_some("ContainersNotReady"),
                msg.clone(),
            );
            condition(
                "ContainersReady",
                ready,
                (!ready).then_some("ContainersNotReady"),
                msg,
            );
        }
        // The scheduler owns PodScheduled: keep what it wrote.
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map_or(self.start_time, |t| t.0)
            });
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": k8s_time(scheduled.unwrap_or(self.start_time)),
        }));

        let evicted = behavior == Behavior::Evicted;
        let mut status = json!({
            "phase": if evicted { "Failed" } else { phase },
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": k8s_time(self.start_time),
            "containerStatuses": app_evals.iter().map(|e| e.status.clone()).collect::<Vec<_>>(),
        });
        if evicted {
            // What the kubelet's eviction manager writes: the pod failed, its containers were
            // killed, and it stays as a record until deleted.
            status["reason"] = json!("Evicted");
            status["message"] = json!(EVICTION_MESSAGE);
            if let Some(statuses) = status["containerStatuses"].as_array_mut() {
                for cs in statuses {
                    let started = cs["state"]["running"]["startedAt"].clone();
                    cs["state"] = json!({"terminated": {"exitCode": 137, "reason": "Error",
                        "startedAt": started, "finishedAt": k8s_time(now)}});
                    cs["ready"] = json!(false);
                    cs["started"] = json!(false);
                }
            }
            if let Some(conds) = status["conditions"].as_array_mut() {
                for c in conds
                    .iter_mut()
                    .filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady")
                {
                    c["status"] = json!("False");
                }
            }
            scratch.event(true, "Evicted", EVICTION_MESSAGE.into(), "", 1);
        }
        if !init_evals.is_empty() {
            status["initContainerStatuses"] =
                Value::Array(init_evals.iter().map(|e| e.status.clone()).collect());
        }

        let labels = pod.metadata.labels.as_ref();
        let view = PodView {
            pod_dir: format!("{namespace}_{name}_{uid}"),
            namespace: namespace.clone(),
            name: name.clone(),
            uid: uid.clone(),
            app: labels.and_then(|l| l.get("app")).cloned(),
            labels: labels.cloned().unwrap_or_default(),
            ports: spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        u16::try_from(p.container_port).ok()?,
                    ))
                })
                .collect(),
            real: spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .any(|c| {
                    matches!(
                        runtime.local_image(c.image.as_deref().unwrap_or_default()),
                        LocalImage::Runnable { .. }
                    )
                }),
            rate_limited: annotation(pod, behavior::RATE_LIMITED)
                .is_some_and(|v| v.trim() == "true"),
            start_time: self.start_time,
            containers: init_evals
                .into_iter()
                .chain(app_evals)
                .map(|e| e.view)
                .collect(),
        };
        Outcome {
            status,
            events: scratch.events,
            wake: if completed { None } else { scratch.wake },
            needs_config: scratch.needs_config,
            starts: scratch.starts,
            needs_runtime: scratch.needs_runtime,
            view,
            behavior_error,
        }
    }

    /// Advances one container and reports its status.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        s: &mut Scratch<'_>,
        pod: &Pod,
        c: &Container,
        init: bool,
        behavior: Behavior,
        restart_policy: &str,
        tail: &[String],
    ) -> Eval {
        let now = s.now;
        let kind = if init { "init" } else { "app" };
        let key = format!("{kind}/{}", c.name);
        let field_path = format!(
            "spec.{}{{{}}}",
            if init { "initContainers" } else { "containers" },
            c.name
        );
        let image = c.image.clone().unwrap_or_default();
        let first = pod
            .spec
            .as_ref()
            .and_then(|sp| sp.containers.first())
            .is_some_and(|f| f.name == c.name)
            && !init;
        let profile =
            logs::profile_for(pod, c, first, &self.probe_ip, behavior == Behavior::Unready);
        match s.runtime.local_image(&image) {
            LocalImage::NotLocal => {}
            LocalImage::Runnable { image_id } => {
                let mut eval = self.evaluate_real(s, c, init, restart_policy, &key, &field_path);
                if eval.status["imageID"] != "" {
                    eval.status["imageID"] = json!(image_id);
                }
                return eval;
            }
            LocalImage::Absent { message } => {
                if self
                    .ledger
                    .every(format!("neverpull/{key}"), now, EVENT_REPEAT, &mut s.wake)
                    .is_some()
                {
                    s.warning(&field_path, "ErrImageNeverPull", message.clone());
                    s.warning(&field_path, "Failed", "Error: ErrImageNeverPull".into());
                }
                return never_ran(
                    c,
                    init,
                    "ErrImageNeverPull",
                    Some(message),
                    LogProfile::Captured,
                );
            }
        }
        let ledger = &mut self.ledger;
        let rec = self.containers.entry(key.clone()).or_default();

        let waiting = |reason: &str, message: Option<String>, profile: LogProfile| {
            never_ran(c, init, reason, message, profile)
        };

        if !rec.ever_started {
            match image::check(&image) {
                ImageVerdict::Invalid { message } => {
                    block(rec, "image", now);
                    if ledger
                        .every(format!("invalid/{key}"), now, EVENT_REPEAT, &mut s.wake)
                        .is_some()
                    {
                        s.warning(&field_path, "InspectFailed", message.clone());
                        s.warning(&field_path, "Failed", "Error: InvalidImageName".into());
                    }
                    return waiting("InvalidImageName", Some(message), profile);
                }
                ImageVerdict::PullFails { message } => {
                    let since = block(rec, "pull", now);
                    if ledger.once(format!("pull/{key}")) {
                        s.normal(&field_path, "Pulling", format!("Pulling image \"{image}\""));
                        s.warning(
                            &field_path,
                            "Failed",
                            format!("Failed to pull image \"{image}\": {message}"),
                        );
                        s.warning(&field_path, "Failed", "Error: ErrImagePull".into());
                    }
                    if now < since + PULL_ERROR_SHOWS {
                        wake_at(&mut s.wake, since + PULL_ERROR_SHOWS);
                        return waiting("ErrImagePull", Some(message), profile);
                    }
                    let back_off = format!("Back-off pulling image \"{image}\"");
                    if ledger
                        .every(format!("backoff/{key}"), now, EVENT_REPEAT, &mut s.wake)
                        .is_some()
                    {
                        s.normal(&field_path, "BackOff", back_off.clone());
                        s.warning(&field_path, "Failed", "Error: ImagePullBackOff".into());
                    }
                    return waiting("ImagePullBackOff", Some(back_off), profile);
                }
                ImageVerdict::Pulls => {}
            }
            if let Some(message) = config_blocked(rec, ledger, s, c, &key, &field_path) {
                return waiting("CreateContainerConfigError", Some(message), profile);
            }
            rec.blocked = None;
            rec.ever_started = true;
            if ledger.once(format!("start/{key}")) {
                let pull_ns = 800_000_000
                    + u64::from_str_radix(&image::fake_hex(&[&image])[..8], 16).unwrap_or(0)
                        % 2_200_000_000;
                s.normal(&field_path, "Pulling", format!("Pulling image \"{image}\""));
                s.normal(
                    &field_path,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {}",
                        logs::go_duration(pull_ns)
                    ),
                );
                s.normal(
                    &field_path,
                    "Created",
                    format!("Created container {}", c.name),
                );
                s.normal(
                    &field_path,
                    "Started",
                    format!("Started container {}", c.name),
                );
            }
        }

        let uid = s.uid.to_string();
        let id = |restart: u32| image::fake_hex(&[&uid, &c.name, &restart.to_string()]);
        let instance =
            |restart: u32, started: Timestamp, ended: Option<(Timestamp, Termination)>| Instance {
                id: id(restart),
                restart,
                run: Run {
                    started,
                    ended,
                    tail: if ended.is_some() {
                        tail.to_vec()
                    } else {
                        Vec::new()
                    },
                },
            };

        if init {
            if rec.current.is_none() {
                rec.current = Some(instance(0, now, Some((now, Termination::Completed))));
            }
        } else {
            // The behaviour to follow: `succeed` under restartPolicy Always is a crash loop of
            // clean exits.
            let wanted = match (behavior, restart_policy) {
                (Behavior::Succeed, "Always") => Behavior::CrashLoop(Termination::Completed),
                // An evicted pod's containers ran normally; the eviction is the pod's status.
                (Behavior::Evicted, _) => Behavior::Running,
                (b, _) => b,
            };
            if rec.behavior != Some(wanted) {
                enter(rec, wanted, now, &instance);
                if matches!(wanted, Behavior::CrashLoop(_)) {
                    crash_events(s, &image, &c.name, &field_path, 1);
                }
                if matches!(wanted, Behavior::OomRecovered | Behavior::Flaky) {
                    s.normal(
                        &field_path,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    s.normal(
                        &field_path,
                        "Created",
                        format!("Created container {}", c.name),
                    );
                    s.normal(
                        &field_path,
                        "Started",
                        format!("Started container {}", c.name),
                    );
                }
            }
            match wanted {
                Behavior::CrashLoop(termination) => {
                    let mut next = rec.next_transition.unwrap_or(now + CRASH_PERIOD);
                    if now >= next {
                        let missed =
                            now.duration_since(next).as_nanos() / CRASH_PERIOD.as_nanos() + 1;
                        let missed = u32::try_from(missed).unwrap_or(u32::MAX);
                        let last_crash = next
                            + SignedDuration::from_nanos(
                                i64::try_from((i128::from(missed) - 1) * CRASH_PERIOD.as_nanos())
                                    .unwrap_or(0),
                            );
                        rec.restarts = rec.restarts.saturating_add(missed);
                        rec.last = Some(instance(
                            rec.restarts,
                            last_crash - CRASH_RUN,
                            Some((last_crash, termination)),
                        ));
                        next = last_crash + CRASH_PERIOD;
                        crash_events(s, &image, &c.name, &field_path, missed);
                    }
                    rec.next_transition = Some(next);
                    wake_at(&mut s.wake, next);
                }
                Behavior::Succeed => {
                    if let Some(at) = rec.next_transition {
                        if now >= at {
                            if let Some(cur) = rec.current.as_mut()
                                && cur.run.ended.is_none()
                            {
                                cur.run.ended = Some((at, Termination::Completed));
                            }
                            rec.next_transition = None;
                        } else {
                            wake_at(&mut s.wake, at);
                        }
                    }
                }
                Behavior::Unready => {
                    let period = c
                        .readiness_probe
                        .as_ref()
                        .and_then(|p| p.period_seconds)
                        .unwrap_or(10)
                        .max(1);
                    let period = SignedDuration::from_secs(i64::from(period));
                    if let Some(due) =
                        ledger.every(format!("unhealthy/{key}"), now, EVENT_REPEAT, &mut s.wake)
                    {
                        let count = due.elapsed.map_or(1, |e| {
                            u32::try_from(e.as_nanos() / period.as_nanos())
                                .unwrap_or(1)
                                .max(1)
                        });
                        s.event(
                            true,
                            "Unhealthy",
                            "Readiness probe failed: HTTP probe failed with statuscode: 500".into(),
                            &field_path,
                            count,
                        );
                    }
                }
                Behavior::Running
                | Behavior::OomRecovered
                | Behavior::Flaky
                | Behavior::Evicted => {}
            }
        }

        report(rec, c, &image, init, s, profile)
    }

    /// Advances a container of the tool's image, which the runtime runs for real.
    fn evaluate_real(
        &mut self,
        s: &mut Scratch<'_>,
        c: &Container,
        init: bool,
        restart_policy: &str,
        key: &str,
        field_path: &str,
    ) -> Eval {
        let now = s.now;
        let image = c.image.clone().unwrap_or_default();
        let ledger = &mut self.ledger;
        let rec = self.containers.entry(key.to_string()).or_default();
        if !rec.ever_started {
            if let Some(message) = config_blocked(rec, ledger, s, c, key, field_path) {
                return real_waiting(
                    rec,
                    c,
                    &image,
                    init,
                    "CreateContainerConfigError",
                    Some(message),
                );
            }
            rec.blocked = None;
        }
        // Restored from the pod's status (the simulator restarted): the process died with the
        // simulator that ran it.
        if rec.real.is_none()
            && let Some(cur) = rec.current.as_mut()
            && cur.run.ended.is_none()
        {
            cur.run.ended = Some((now, Termination::Exit(137)));
        }
        let restarts_on = |code: i32| match restart_policy {
            "Always" if !init => true,
            "Never" => false,
            _ => code != 0,
        };
        let mut exited: Option<Instance> = None;
        if let Some(id) = rec.real.clone() {
            match s.runtime.run_state(&id) {
                None | Some(RunState::Creating) => {
                    s.needs_runtime = true;
                    return real_waiting(rec, c, &image, init, "ContainerCreating", None);
                }
                Some(RunState::Running { started }) => {
                    s.needs_runtime = true;
                    started_events(ledger, s, &image, &c.name, field_path, &id);
                    rec.current = Some(Instance {
                        id,
                        restart: rec.restarts,
                        run: Run {
                            started,
                            ended: None,
                            tail: Vec::new(),
                        },
                    });
                }
                Some(RunState::Exited {
                    started,
                    finished,
                    exit_code,
                }) => {
                    started_events(ledger, s, &image, &c.name, field_path, &id);
                    let instance = Instance {
                        id,
                        restart: rec.restarts,
                        run: Run {
                            started,
                            ended: Some((finished, Termination::Exit(exit_code))),
                            tail: Vec::new(),
                        },
                    };
                    rec.current = Some(instance.clone());
                    exited = Some(instance);
                }
                Some(RunState::Failed {
                    reason,
                    message,
                    at,
                }) => {
                    if ledger.once(format!("failed/{id}")) {
                        s.warning(field_path, "Failed", format!("Error: {message}"));
                    }
                    let retry = at + CONFIG_RETRY;
                    if now < retry {
                        wake_at(&mut s.wake, retry);
                        return real_waiting(rec, c, &image, init, &reason, Some(message));
                    }
                    rec.real = None;
                    rec.tries += 1;
                }
            }
        } else if let Some(cur) = rec.current.clone().filter(|i| i.run.ended.is_some()) {
            exited = Some(cur);
        }
        if let Some(instance) = exited {
            let code = instance.run.ended.map_or(0, |(_, t)| t.exit_code());
            if !restarts_on(code) {
                return report(rec, c, &image, init, s, LogProfile::Captured);
            }
            let finished = instance.run.ended.map_or(now, |(t, _)| t);
            rec.last = Some(instance);
            rec.current = None;
            rec.real = None;
            rec.tries = 0;
            rec.restarts += 1;
            rec.backoff_until = Some(finished + real_backoff(rec.restarts));
        }
        if rec.real.is_none() {
            if let Some(until) = rec.backoff_until.filter(|u| now < *u) {
                wake_at(&mut s.wake, until);
                if ledger
                    .every(format!("backoff/{key}"), now, EVENT_REPEAT, &mut s.wake)
                    .is_some()
                {
                    s.warning(
                        field_path,
                        "BackOff",
                        "Back-off restarting failed container".into(),
                    );
                }
                let message = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    go_backoff(real_backoff(rec.restarts)),
                    c.name,
                    s.pod_name,
                    s.namespace,
                    s.uid
                );
                return real_waiting(rec, c, &image, init, "CrashLoopBackOff", Some(message));
            }
            rec.backoff_until = None;
            let id = image::fake_hex(&[
                s.uid,
                &c.name,
                &rec.restarts.to_string(),
                "real",
                &rec.tries.to_string(),
            ]);
            s.starts.push(StartRequest {
                id: id.clone(),
                container: c.name.clone(),
                init,
                restart: rec.restarts,
            });
            rec.real = Some(id);
            rec.ever_started = true;
            s.needs_runtime = true;
            return real_waiting(rec, c, &image, init, "ContainerCreating", None);
        }
        report(rec, c, &image, init, s, LogProfile::Captured)
    }
}

/// The kubelet's check before it creates a container: a Secret or ConfigMap (or a key) the
/// environment needs is missing. Returns the message (and marks the container blocked, asks to
/// be woken, records the warning) if so.
fn config_blocked(
    rec: &mut ContainerRecord,
    ledger: &mut Ledger,
    s: &mut Scratch<'_>,
    c: &Container,
    key: &str,
    field_path: &str,
) -> Option<String> {
    let now = s.now;
    let message = behavior::env_error(s.namespace, c, s.config)?;
    block(rec, "config", now);
    s.needs_config = true;
    wake_at(&mut s.wake, now + CONFIG_RETRY);
    if ledger
        .every(
            format!("config/{key}/{message}"),
            now,
            EVENT_REPEAT,
            &mut s.wake,
        )
        .is_some()
    {
        s.warning(field_path, "Failed", format!("Error: {message}"));
    }
    Some(message)
}

/// The back-off before restart number `restarts` of a real container.
fn real_backoff(restarts: u32) -> SignedDuration {
    let doublings = restarts.saturating_sub(1).min(16);
    let secs = REAL_BACKOFF_FIRST.as_secs().saturating_mul(1 << doublings);
    SignedDuration::from_secs(secs.min(REAL_BACKOFF_MAX.as_secs()))
}

/// `10s`, `5m0s`: a back-off as the kubelet writes it.
fn go_backoff(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// The events of a real attempt that started (once per attempt).
fn started_events(
    ledger: &mut Ledger,
    s: &mut Scratch<'_>,
    image: &str,
    name: &str,
    field_path: &str,
    id: &str,
) {
    if ledger.once(format!("started/{id}")) {
        s.normal(
            field_path,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        );
        s.normal(field_path, "Created", format!("Created container {name}"));
        s.normal(field_path, "Started", format!("Started container {name}"));
    }
}

/// A real container waiting (being created, backing off, or failing to be created), with its
/// last termination if it had one.
fn real_waiting(
    rec: &ContainerRecord,
    c: &Container,
    image: &str,
    init: bool,
    reason: &str,
    message: Option<String>,
) -> Eval {
    let mut state = json!({"waiting": {"reason": reason}});
    if let Some(m) = message {
        state["waiting"]["message"] = json!(m);
    }
    let last_json = rec
        .last
        .as_ref()
        .map_or(json!({}), |i| json!({"terminated": terminated_json(i)}));
    let image_id = if rec.ever_started {
        image::parse_normalized(image)
            .map(|r| r.image_id())
            .unwrap_or_default()
    } else {
        String::new()
    };
    Eval {
        status: container_status(
            c,
            image,
            &image_id,
            rec.last.as_ref().map(|i| i.id.as_str()),
            state,
            last_json,
            false,
            rec.restarts,
            false,
        ),
        view: ContainerView {
            name: c.name.clone(),
            init,
            state: ViewState::Waiting {
                reason: reason.to_string(),
            },
            last: rec.last.clone(),
            profile: LogProfile::Captured,
        },
        ready: false,
        class: if rec.last.is_some() {
            Class::WaitingRestart
        } else {
            Class::Waiting
        },
    }
}

/// The status and view of a container as its record now stands.
fn report(
    rec: &ContainerRecord,
    c: &Container,
    image: &str,
    init: bool,
    s: &Scratch<'_>,
    profile: LogProfile,
) -> Eval {
    let image_id = image::parse_normalized(image)
        .map(|r| r.image_id())
        .unwrap_or_default();
    let last_json = rec
        .last
        .as_ref()
        .map_or(json!({}), |i| json!({"terminated": terminated_json(i)}));
    let (state, view_state, ready, class, container_id) = match &rec.current {
        Some(i) if i.run.ended.is_none() => (
            json!({"running": {"startedAt": k8s_time(i.run.started)}}),
            ViewState::Running(i.clone()),
            rec.behavior != Some(Behavior::Unready),
            Class::Running,
            Some(i.id.clone()),
        ),
        Some(i) => {
            let exit_code = i.run.ended.map_or(0, |(_, t)| t.exit_code());
            (
                json!({"terminated": terminated_json(i)}),
                ViewState::Terminated(i.clone()),
                init && exit_code == 0,
                Class::Terminated { exit_code },
                Some(i.id.clone()),
            )
        }
        None => {
            let message = format!(
                "back-off 5m0s restarting failed container={} pod={}_{}({})",
                c.name, s.pod_name, s.namespace, s.uid
            );
            (
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}),
                ViewState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                },
                false,
                if rec.last.is_some() {
                    Class::WaitingRestart
                } else {
                    Class::Waiting
                },
                rec.last.as_ref().map(|i| i.id.clone()),
            )
        }
    };
    let started = class == Class::Running;
    Eval {
        status: container_status(
            c,
            image,
            &image_id,
            container_id.as_deref(),
            state,
            last_json,
            ready,
            rec.restarts,
            started,
        ),
        view: ContainerView {
            name: c.name.clone(),
            init,
            state: view_state,
            last: rec.last.clone(),
            profile,
        },
        ready,
        class,
    }
}

/// Marks the container blocked for `why`; returns since when.
fn block(rec: &mut ContainerRecord, why: &'static str, now: Timestamp) -> Timestamp {
    match rec.blocked {
        Some((w, since)) if w == why => since,
        _ => {
            rec.blocked = Some((why, now));
            now
        }
    }
}

/// Moves a started container into behaviour `wanted` at `now`, the way the container would get
/// there: a running instance that must crash or be OOM-killed ends now.
fn enter(
    rec: &mut ContainerRecord,
    wanted: Behavior,
    now: Timestamp,
    instance: &dyn Fn(u32, Timestamp, Option<(Timestamp, Termination)>) -> Instance,
) {
    let running = rec
        .current
        .as_ref()
        .filter(|i| i.run.ended.is_none())
        .cloned();
    match wanted {
        Behavior::Running | Behavior::Unready | Behavior::Evicted => {
            if running.is_none() {
                if rec.current.is_some() || rec.last.is_some() {
                    rec.restarts += 1;
                }
                rec.current = Some(instance(rec.restarts, now, None));
            }
        }
        Behavior::OomRecovered | Behavior::Flaky => {
            let (termination, restarts) = if wanted == Behavior::Flaky {
                (Termination::Error, FLAKY_RESTARTS)
            } else {
                (Termination::OomKilled, 1)
            };
            let previous_start = running.as_ref().map_or(now, |i| i.run.started);
            let previous = rec.restarts;
            rec.restarts = rec.restarts.max(restarts).max(previous + 1);
            rec.last = Some(instance(previous, previous_start, Some((now, termination))));
            rec.current = Some(instance(rec.restarts, now, None));
        }
        Behavior::CrashLoop(termination) => {
            let previous_start = running.as_ref().map_or(now, |i| i.run.started);
            rec.restarts = (rec.restarts + 1).max(CRASH_FIRST_RESTARTS);
            rec.last = Some(instance(
                rec.restarts,
                previous_start,
                Some((now, termination)),
            ));
            rec.current = None;
            rec.next_transition = Some(now + CRASH_PERIOD);
        }
        Behavior::Succeed => {
            if running.is_none() {
                if rec.current.is_some() || rec.last.is_some() {
                    rec.restarts += 1;
                }
                rec.current = Some(instance(rec.restarts, now, None));
            }
            let started = rec.current.as_ref().map_or(now, |i| i.run.started);
            rec.next_transition = Some(started + SUCCEED_AFTER);
        }
    }
    rec.behavior = Some(wanted);
}

/// The events of `times` crash-and-restart cycles.
fn crash_events(s: &mut Scratch<'_>, image: &str, name: &str, field_path: &str, times: u32) {
    s.event(
        false,
        "Pulled",
        format!("Container image \"{image}\" already present on machine"),
        field_path,
        times,
    );
    s.event(
        false,
        "Created",
        format!("Created container {name}"),
        field_path,
        times,
    );
    s.event(
        false,
        "Started",
        format!("Started container {name}"),
        field_path,
        times,
    );
    s.event(
        true,
        "BackOff",
        "Back-off restarting failed container".into(),
        field_path,
        times,
    );
}

fn pod_initializing(c: &Container, init: bool) -> Eval {
    never_ran(c, init, "PodInitializing", None, LogProfile::Quiet)
}

/// A container that has not run yet, waiting for `reason`.
fn never_ran(
    c: &Container,
    init: bool,
    reason: &str,
    message: Option<String>,
    profile: LogProfile,
) -> Eval {
    let image = c.image.clone().unwrap_or_default();
    let mut state = json!({"waiting": {"reason": reason}});
    if let Some(m) = message {
        state["waiting"]["message"] = json!(m);
    }
    Eval {
        status: container_status(c, &image, "", None, state, json!({}), false, 0, false),
        view: ContainerView {
            name: c.name.clone(),
            init,
            state: ViewState::Waiting {
                reason: reason.to_string(),
            },
            last: None,
            profile,
        },
        ready: false,
        class: Class::Waiting,
    }
}

#[allow(clippy::too_many_arguments)]
fn container_status(
    c: &Container,
    image: &str,
    image_id: &str,
    container_id: Option<&str>,
    state: Value,
    last_state: Value,
    ready: bool,
    restarts: u32,
    started: bool,
) -> Value {
    let mut v = json!({
        "name": c.name,
        "state": state,
        "lastState": last_state,
        "ready": ready,
        "restartCount": restarts,
        "image": image,
        "imageID": image_id,
        "started": started,
    });
    if let Some(id) = container_id {
        v["containerID"] = json!(format!("containerd://{id}"));
    }
    v
}

fn terminated_json(i: &Instance) -> Value {
    let (finished, termination) = i
        .run
        .ended
        .unwrap_or((i.run.started, Termination::Completed));
    json!({
        "exitCode": termination.exit_code(),
        "reason": termination.reason(),
        "startedAt": k8s_time(i.run.started),
        "finishedAt": k8s_time(finished),
        "containerID": format!("containerd://{}", i.id),
    })
}

/// The kubelet's pod phase (`getPhase`) from its containers.
fn pod_phase(classes: &[Class], initializing: bool, restart_policy: &str) -> &'static str {
    let mut running = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    let mut waiting = 0;
    for class in classes {
        match class {
            Class::Running => running += 1,
            Class::Terminated { exit_code } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            Class::WaitingRestart => stopped += 1,
            Class::Waiting => waiting += 1,
        }
    }
    if initializing || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// `containerd://abc` → `abc`.
fn plain_id(id: Option<&str>) -> String {
    let id = id.unwrap_or("");
    id.split_once("://")
        .map_or(id, |(_, rest)| rest)
        .to_string()
}

fn restored_instance(t: &ContainerStateTerminated, restart: u32) -> Option<Instance> {
    let started = t.started_at.as_ref()?.0;
    let finished = t.finished_at.as_ref().map_or(started, |f| f.0);
    let termination = match (t.reason.as_deref(), t.exit_code) {
        (Some("OOMKilled"), _) => Termination::OomKilled,
        (Some("Completed"), 0) => Termination::Completed,
        (_, 1) => Termination::Error,
        // A real container's exit code (or another runtime's), kept as it was.
        (_, code) => Termination::Exit(code),
    };
    Some(Instance {
        id: plain_id(t.container_id.as_deref()),
        restart,
        run: Run {
            started,
            ended: Some((finished, termination)),
            tail: Vec::new(),
        },
    })
}

/// A `metav1.Time` as the API writes it: RFC 3339, whole seconds, UTC.
pub fn k8s_time(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[derive(Default)]
    struct World {
        secrets: HashMap<String, BTreeSet<String>>,
    }

    impl ConfigSource for World {
        fn secret_keys(&self, ns: &str, name: &str) -> Option<&BTreeSet<String>> {
            self.secrets.get(&format!("{ns}/{name}"))
        }
        fn config_map_keys(&self, _: &str, _: &str) -> Option<&BTreeSet<String>> {
            None
        }
    }

    fn t0() -> Timestamp {
        "2025-11-13T10:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    fn pod(annotations: serde_json::Value, containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "new-api", "uid": "u-1",
                         "labels": {"app": "new-api"}, "annotations": annotations},
            "spec": {"containers": containers, "nodeName": "node-1"},
        }))
        .unwrap()
    }

    fn app(image: &str) -> serde_json::Value {
        json!([{"name": "new-api", "image": image}])
    }

    fn record(p: &Pod) -> PodRecord {
        PodRecord::new(p, "10.244.0.2".into(), "10.244.0.1".into(), t0())
    }

    fn cs(o: &Outcome) -> &Value {
        &o.status["containerStatuses"][0]
    }

    fn condition<'a>(o: &'a Outcome, kind: &str) -> &'a Value {
        o.status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap()
    }

    #[test]
    fn running_pod() {
        let p = pod(json!({}), app("calciumion/new-api:v0.9.0"));
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Running");
        assert_eq!(o.status["podIP"], "10.244.0.2");
        assert_eq!(o.status["hostIP"], "127.0.0.1");
        assert_eq!(o.status["startTime"], "2025-11-13T10:00:00Z");
        assert_eq!(cs(&o)["ready"], true);
        assert_eq!(cs(&o)["started"], true);
        assert_eq!(cs(&o)["restartCount"], 0);
        assert_eq!(
            cs(&o)["state"]["running"]["startedAt"],
            "2025-11-13T10:00:00Z"
        );
        assert!(
            cs(&o)["containerID"]
                .as_str()
                .unwrap()
                .starts_with("containerd://")
        );
        assert!(
            cs(&o)["imageID"]
                .as_str()
                .unwrap()
                .starts_with("docker.io/calciumion/new-api@sha256:")
        );
        assert_eq!(condition(&o, "Ready")["status"], "True");
        assert_eq!(condition(&o, "PodScheduled")["status"], "True");
        let reasons: Vec<&str> = o.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["Pulling", "Pulled", "Created", "Started"]);
        assert_eq!(
            o.events[0].field_path.as_deref(),
            Some("spec.containers{new-api}")
        );
        assert_eq!(o.wake, None);
        // Nothing changes later: the same status, no new events.
        let o2 = r.step(&p, &World::default(), at(100));
        assert_eq!(o2.status, o.status);
        assert!(o2.events.is_empty());
        assert!(o.view.any_running());
    }

    #[test]
    fn crash_loop_oom() {
        let p = pod(
            json!({"sandbox.newapi-ops.io/behavior": "crashloop-oom",
                           "sandbox.newapi-ops.io/previous-log": "line one\nError 1040: Too many connections\n"}),
            app("calciumion/new-api:v0.9.0"),
        );
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Running");
        let c = cs(&o);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            c["state"]["waiting"]["message"],
            "back-off 5m0s restarting failed container=new-api pod=web-1_new-api(u-1)"
        );
        assert_eq!(c["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(c["restartCount"], 5);
        assert_eq!(c["ready"], false);
        assert_eq!(c["started"], false);
        assert_eq!(condition(&o, "Ready")["status"], "False");
        assert_eq!(condition(&o, "Ready")["reason"], "ContainersNotReady");
        assert!(o.events.iter().any(|e| e.reason == "BackOff" && e.warning));
        assert_eq!(o.wake, Some(at(30)));
        let view = &o.view.containers[0];
        let last = view.last.as_ref().unwrap();
        assert_eq!(
            last.run.tail,
            ["line one", "Error 1040: Too many connections"]
        );

        let o = r.step(&p, &World::default(), at(31));
        let c = cs(&o);
        assert_eq!(c["restartCount"], 6);
        assert_eq!(
            c["lastState"]["terminated"]["finishedAt"],
            "2025-11-13T10:00:30Z"
        );
        assert_eq!(
            c["lastState"]["terminated"]["startedAt"],
            "2025-11-13T10:00:24Z"
        );
        assert_eq!(o.wake, Some(at(60)));
        let backoff = o.events.iter().find(|e| e.reason == "BackOff").unwrap();
        assert_eq!(backoff.count, 1);
        // A long gap counts every missed crash at once.
        let o = r.step(&p, &World::default(), at(125));
        assert_eq!(cs(&o)["restartCount"], 9);
        assert_eq!(
            cs(&o)["lastState"]["terminated"]["finishedAt"],
            "2025-11-13T10:02:00Z"
        );
        assert_eq!(
            o.events
                .iter()
                .find(|e| e.reason == "BackOff")
                .unwrap()
                .count,
            3
        );
    }

    #[test]
    fn crash_loop_error_then_fixed() {
        let mut p = pod(
            json!({"sandbox.newapi-ops.io/behavior": "crashloop"}),
            app("calciumion/new-api:v0.9.0"),
        );
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(cs(&o)["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(cs(&o)["lastState"]["terminated"]["exitCode"], 1);
        // The fault is removed: the container restarts and stays up, restarts kept.
        p.metadata.annotations = None;
        let o = r.step(&p, &World::default(), at(10));
        assert_eq!(cs(&o)["restartCount"], 6);
        assert_eq!(
            cs(&o)["state"]["running"]["startedAt"],
            "2025-11-13T10:00:10Z"
        );
        assert_eq!(cs(&o)["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(cs(&o)["ready"], true);
    }

    #[test]
    fn unready_and_oom_recovered() {
        let p = pod(
            json!({"sandbox.newapi-ops.io/behavior": "unready"}),
            app("calciumion/new-api:v0.9.0"),
        );
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Running");
        assert!(cs(&o)["state"]["running"].is_object());
        assert_eq!(cs(&o)["ready"], false);
        assert_eq!(condition(&o, "Ready")["status"], "False");
        let unhealthy = o.events.iter().find(|e| e.reason == "Unhealthy").unwrap();
        assert_eq!(
            unhealthy.message,
            "Readiness probe failed: HTTP probe failed with statuscode: 500"
        );
        assert!(unhealthy.warning);
        assert_eq!(o.wake, Some(at(30)));
        let o = r.step(&p, &World::default(), at(30));
        assert_eq!(
            o.events
                .iter()
                .find(|e| e.reason == "Unhealthy")
                .unwrap()
                .count,
            3
        );
        assert!(r.step(&p, &World::default(), at(31)).events.is_empty());

        let p = pod(
            json!({"sandbox.newapi-ops.io/behavior": "oom-recovered"}),
            app("calciumion/new-api:v0.9.0"),
        );
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(cs(&o)["ready"], true);
        assert_eq!(cs(&o)["restartCount"], 1);
        assert_eq!(cs(&o)["lastState"]["terminated"]["reason"], "OOMKilled");
        assert_eq!(cs(&o)["lastState"]["terminated"]["exitCode"], 137);
        assert!(cs(&o)["state"]["running"].is_object());
        let view = &o.view.containers[0];
        assert!(matches!(view.state, ViewState::Running(ref i) if i.restart == 1));
        assert_eq!(view.last.as_ref().unwrap().restart, 0);
    }

    #[test]
    fn image_problems() {
        let p = pod(json!({}), app("Calciumion/New-API:latest"));
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Pending");
        assert_eq!(cs(&o)["state"]["waiting"]["reason"], "InvalidImageName");
        assert!(o.events.iter().any(|e| e.reason == "InspectFailed"));
        assert!(!o.view.any_running());

        let p = pod(json!({}), app("registry.invalid/new-api:v1"));
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(cs(&o)["state"]["waiting"]["reason"], "ErrImagePull");
        assert_eq!(cs(&o)["imageID"], "");
        assert_eq!(o.wake, Some(at(5)));
        let reasons: Vec<&str> = o.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["Pulling", "Failed", "Failed"]);
        let o = r.step(&p, &World::default(), at(5));
        assert_eq!(cs(&o)["state"]["waiting"]["reason"], "ImagePullBackOff");
        assert_eq!(
            cs(&o)["state"]["waiting"]["message"],
            "Back-off pulling image \"registry.invalid/new-api:v1\""
        );
        assert!(o.events.iter().any(|e| e.reason == "BackOff"));
        assert_eq!(o.wake, Some(at(35)));
        assert_eq!(o.status["phase"], "Pending");
    }

    #[test]
    fn missing_secret_then_created() {
        let p = pod(
            json!({}),
            json!([{"name": "new-api", "image": "calciumion/new-api:v0.9.0",
                    "env": [{"name": "SQL_DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}]}]),
        );
        let mut world = World::default();
        let mut r = record(&p);
        let o = r.step(&p, &world, t0());
        assert_eq!(
            cs(&o)["state"]["waiting"]["reason"],
            "CreateContainerConfigError"
        );
        assert_eq!(
            cs(&o)["state"]["waiting"]["message"],
            "secret \"db\" not found"
        );
        assert!(o.needs_config);
        assert_eq!(o.wake, Some(at(10)));
        assert_eq!(o.events[0].message, "Error: secret \"db\" not found");
        world
            .secrets
            .insert("new-api/db".into(), BTreeSet::from(["dsn".to_string()]));
        let o = r.step(&p, &world, at(12));
        assert_eq!(o.status["phase"], "Running");
        assert_eq!(
            cs(&o)["state"]["running"]["startedAt"],
            "2025-11-13T10:00:12Z"
        );
        // Once running, the Secret going away does not matter any more.
        world.secrets.clear();
        let o = r.step(&p, &world, at(20));
        assert_eq!(o.status["phase"], "Running");
    }

    #[test]
    fn jobs_succeed() {
        let mut p = pod(
            json!({"sandbox.newapi-ops.io/behavior": "succeed"}),
            app("busybox:1.36"),
        );
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Running");
        assert_eq!(o.wake, Some(at(2)));
        let o = r.step(&p, &World::default(), at(2));
        assert_eq!(o.status["phase"], "Succeeded");
        assert_eq!(cs(&o)["state"]["terminated"]["reason"], "Completed");
        assert_eq!(cs(&o)["state"]["terminated"]["exitCode"], 0);
        assert_eq!(condition(&o, "Ready")["reason"], "PodCompleted");
        assert_eq!(o.wake, None);
    }

    #[test]
    fn init_containers_run_first() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "mysql-0", "namespace": "new-api", "uid": "u-2", "labels": {"app": "mysql"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "containers": [{"name": "mysql", "image": "mysql:8.2"}]
            },
        }))
        .unwrap();
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Running");
        assert_eq!(
            o.status["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(o.status["initContainerStatuses"][0]["ready"], true);
        assert_eq!(condition(&o, "Initialized")["status"], "True");
        assert!(matches!(
            o.view.containers[1].profile,
            LogProfile::Mysql { .. }
        ));

        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "mysql-0", "namespace": "new-api", "uid": "u-3"},
            "spec": {
                "initContainers": [{"name": "init", "image": "does-not-exist/init:1"}],
                "containers": [{"name": "mysql", "image": "mysql:8.2"}]
            },
        }))
        .unwrap();
        let mut r = record(&p);
        let o = r.step(&p, &World::default(), t0());
        assert_eq!(o.status["phase"], "Pending");
        assert_eq!(
            o.status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        assert_eq!(
            condition(&o, "Initialized")["reason"],
            "ContainersNotInitialized"
        );
    }

    #[test]
    fn restores_from_existing_status() {
        let p = pod(json!({}), app("calciumion/new-api:v0.9.0"));
        let mut r = record(&p);
        let first = r.step(&p, &World::default(), t0());
        let mut p2 = p.clone();
        p2.status = Some(serde_json::from_value(first.status.clone()).unwrap());
        let mut again = PodRecord::new(&p2, "10.244.0.2".into(), "10.244.0.1".into(), at(500));
        let o = again.step(&p2, &World::default(), at(500));
        assert_eq!(o.status, first.status);
        assert!(o.events.is_empty());
    }

    /// A runtime whose attempts the test moves along by hand.
    #[derive(Default)]
    struct FakeRuntime {
        states: std::cell::RefCell<HashMap<String, RunState>>,
        absent: Option<String>,
    }

    impl Runtime for FakeRuntime {
        fn local_image(&self, image: &str) -> LocalImage {
            match (&self.absent, image.starts_with("newapi-ops:")) {
                (_, false) => LocalImage::NotLocal,
                (Some(m), true) => LocalImage::Absent { message: m.clone() },
                (None, true) => LocalImage::Runnable {
                    image_id: "docker.io/library/newapi-ops@sha256:abc".into(),
                },
            }
        }
        fn run_state(&self, id: &str) -> Option<RunState> {
            self.states.borrow().get(id).cloned()
        }
    }

    impl FakeRuntime {
        fn set(&self, id: &str, state: RunState) {
            self.states.borrow_mut().insert(id.to_string(), state);
        }
    }

    fn job(policy: &str, init: Option<&str>) -> Pod {
        let mut spec = json!({
            "containers": [{"name": "tool", "image": "newapi-ops:0.1.0", "args": ["--version"]}],
            "nodeName": "node-1",
            "restartPolicy": policy,
        });
        if let Some(image) = init {
            spec["initContainers"] = json!([{"name": "first", "image": image}]);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "job-x", "namespace": "new-api", "uid": "u-9"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn exited(secs: i64, code: i32) -> RunState {
        RunState::Exited {
            started: at(secs - 1),
            finished: at(secs),
            exit_code: code,
        }
    }

    #[test]
    fn a_real_job_runs_to_completion() {
        let p = job("Never", None);
        let rt = FakeRuntime::default();
        let mut r = record(&p);
        let o = r.step_with(&p, &World::default(), &rt, t0());
        assert_eq!(o.starts.len(), 1);
        let start = o.starts[0].clone();
        assert_eq!(
            (start.container.as_str(), start.init, start.restart),
            ("tool", false, 0)
        );
        assert_eq!(cs(&o)["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(o.status["phase"], "Pending");
        assert!(o.needs_runtime);
        assert!(o.view.real);
        assert!(matches!(o.view.containers[0].profile, LogProfile::Captured));
        // Asked once: the next step waits for the runtime.
        assert!(
            r.step_with(&p, &World::default(), &rt, at(1))
                .starts
                .is_empty()
        );

        rt.set(&start.id, RunState::Running { started: at(1) });
        let o = r.step_with(&p, &World::default(), &rt, at(1));
        assert_eq!(o.status["phase"], "Running");
        assert_eq!(
            cs(&o)["state"]["running"]["startedAt"],
            "2025-11-13T10:00:01Z"
        );
        assert_eq!(cs(&o)["containerID"], format!("containerd://{}", start.id));
        assert_eq!(cs(&o)["imageID"], "docker.io/library/newapi-ops@sha256:abc");
        let reasons: Vec<&str> = o.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["Pulled", "Created", "Started"]);
        assert!(matches!(&o.view.containers[0].state, ViewState::Running(i) if i.id == start.id));

        rt.set(&start.id, exited(3, 0));
        let o = r.step_with(&p, &World::default(), &rt, at(3));
        assert_eq!(o.status["phase"], "Succeeded");
        let t = &cs(&o)["state"]["terminated"];
        assert_eq!(
            (t["reason"].as_str(), t["exitCode"].as_i64()),
            (Some("Completed"), Some(0))
        );
        assert!(o.starts.is_empty());
        assert_eq!(o.wake, None);
        assert!(!o.needs_runtime);
    }

    #[test]
    fn a_failing_real_container_under_never_fails_the_pod() {
        let p = job("Never", None);
        let rt = FakeRuntime::default();
        let mut r = record(&p);
        let id = r.step_with(&p, &World::default(), &rt, t0()).starts[0]
            .id
            .clone();
        rt.set(&id, exited(2, 3));
        let o = r.step_with(&p, &World::default(), &rt, at(2));
        assert_eq!(o.status["phase"], "Failed");
        let t = &cs(&o)["state"]["terminated"];
        assert_eq!(
            (t["reason"].as_str(), t["exitCode"].as_i64()),
            (Some("Error"), Some(3))
        );
        assert_eq!(cs(&o)["restartCount"], 0);
    }

    #[test]
    fn on_failure_restarts_with_back_off() {
        let p = job("OnFailure", None);
        let rt = FakeRuntime::default();
        let mut r = record(&p);
        let first = r.step_with(&p, &World::default(), &rt, t0()).starts[0].clone();
        rt.set(&first.id, exited(2, 1));
        let o = r.step_with(&p, &World::default(), &rt, at(2));
        assert_eq!(o.status["phase"], "Running", "waiting to restart");
        let c = cs(&o);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert!(
            c["state"]["waiting"]["message"]
                .as_str()
                .unwrap()
                .starts_with("back-off 10s restarting failed container=tool")
        );
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(c["restartCount"], 1);
        assert_eq!(o.wake, Some(at(12)));
        assert!(o.starts.is_empty());
        assert!(o.events.iter().any(|e| e.reason == "BackOff" && e.warning));
        assert!(matches!(&o.view.containers[0].last, Some(i) if i.id == first.id));

        let o = r.step_with(&p, &World::default(), &rt, at(12));
        let second = o.starts[0].clone();
        assert_eq!(second.restart, 1);
        assert_ne!(second.id, first.id);
        rt.set(&second.id, exited(20, 0));
        let o = r.step_with(&p, &World::default(), &rt, at(20));
        assert_eq!(o.status["phase"], "Succeeded");
        assert_eq!(cs(&o)["restartCount"], 1);
        assert_eq!(real_backoff(1), SignedDuration::from_secs(10));
        assert_eq!(real_backoff(3), SignedDuration::from_secs(40));
        assert_eq!(real_backoff(12), REAL_BACKOFF_MAX);
        assert_eq!(go_backoff(REAL_BACKOFF_MAX), "5m0s");
    }

    #[test]
    fn a_real_init_container_runs_first_and_its_failure_fails_the_pod() {
        let p = job("Never", Some("newapi-ops:0.1.0"));
        let rt = FakeRuntime::default();
        let mut r = record(&p);
        let o = r.step_with(&p, &World::default(), &rt, t0());
        assert_eq!(o.starts.len(), 1);
        assert!(o.starts[0].init);
        assert_eq!(
            o.status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        let init = o.starts[0].id.clone();
        rt.set(&init, exited(2, 0));
        let o = r.step_with(&p, &World::default(), &rt, at(2));
        assert_eq!(o.starts.len(), 1, "then the app container");
        assert!(!o.starts[0].init);

        let p = job("Never", Some("newapi-ops:0.1.0"));
        let mut r = record(&p);
        let init = r.step_with(&p, &World::default(), &rt, t0()).starts[0]
            .id
            .clone();
        rt.set(&init, exited(2, 5));
        let o = r.step_with(&p, &World::default(), &rt, at(2));
        assert_eq!(o.status["phase"], "Failed");
        assert!(o.starts.is_empty());
        assert_eq!(
            o.status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            5
        );
    }

    #[test]
    fn real_containers_that_cannot_start() {
        let rt = FakeRuntime {
            absent: Some("Container image \"newapi-ops:0.1.0\" is not present with pull policy of Never: no runc".into()),
            ..FakeRuntime::default()
        };
        let p = job("Never", None);
        let mut r = record(&p);
        let o = r.step_with(&p, &World::default(), &rt, t0());
        assert_eq!(cs(&o)["state"]["waiting"]["reason"], "ErrImageNeverPull");
        assert!(
            cs(&o)["state"]["waiting"]["message"]
                .as_str()
                .unwrap()
                .ends_with("no runc")
        );
        assert!(
            o.events
                .iter()
                .any(|e| e.reason == "ErrImageNeverPull" && e.warning)
        );
        assert!(o.starts.is_empty());

        let rt = FakeRuntime::default();
        let mut r = record(&p);
        let id = r.step_with(&p, &World::default(), &rt, t0()).starts[0]
            .id
            .clone();
        rt.set(
            &id,
            RunState::Failed {
                reason: "CreateContainerConfigError".into(),
                message: "secret \"db\" not found".into(),
                at: at(1),
            },
        );
        let o = r.step_with(&p, &World::default(), &rt, at(1));
        assert_eq!(
            cs(&o)["state"]["waiting"]["reason"],
            "CreateContainerConfigError"
        );
        assert_eq!(o.wake, Some(at(11)));
        assert!(
            o.events
                .iter()
                .any(|e| e.message == "Error: secret \"db\" not found")
        );
        let o = r.step_with(&p, &World::default(), &rt, at(11));
        assert_eq!(o.starts.len(), 1, "tried again");
        assert_ne!(o.starts[0].id, id);
    }

    #[test]
    fn phases() {
        use Class::*;
        assert_eq!(pod_phase(&[Running, Waiting], false, "Always"), "Pending");
        assert_eq!(
            pod_phase(&[Running, WaitingRestart], false, "Always"),
            "Running"
        );
        assert_eq!(pod_phase(&[WaitingRestart], false, "Always"), "Running");
        assert_eq!(
            pod_phase(&[Terminated { exit_code: 0 }], false, "Never"),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(&[Terminated { exit_code: 1 }], false, "Never"),
            "Failed"
        );
        assert_eq!(
            pod_phase(&[Terminated { exit_code: 1 }], false, "OnFailure"),
            "Running"
        );
        assert_eq!(pod_phase(&[Running], true, "Always"), "Pending");
    }
}
