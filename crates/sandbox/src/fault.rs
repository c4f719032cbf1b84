//! Breaking the sandbox on purpose, for rehearsal, and healing it.
//!
//! Pod faults change the pod template of the `new-api-slave` Deployment, so they roll out like a
//! bad release would: the kubelet simulator reads the annotation
//! `sandbox.newapi-ops.io/behavior` (`crashloop`, `crashloop-oom`, `unready`) on the new pods and
//! serves `sandbox.newapi-ops.io/previous-log` as their previous container's log; `imagepull` sets
//! an image tag that does not exist. The template faults replace each other (the last one wins).
//! `mysql-down` / `redis-down` SIGKILL the real MariaDB / Redis. `heal` undoes all of it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;

use super::SandboxError;
use super::backends::{self, MariaDbLayout, RedisLayout};
use super::binaries::Binaries;
use super::control_plane::admin_client;
use super::manifests::{self, FIELD_MANAGER, MYSQL_PASSWORD_KEY, SECRET_NAME};
use super::process;
use super::state::SandboxState;

/// Pod-template annotation the kubelet simulator obeys.
pub const BEHAVIOR_ANNOTATION: &str = "sandbox.newapi-ops.io/behavior";
/// Pod annotation giving the CPU and memory the sandbox's metrics server reports for the pod,
/// e.g. `cpu=900m,memory=1900Mi` (either may be left out; without it a pod uses a little).
pub const USAGE_ANNOTATION: &str = "sandbox.newapi-ops.io/usage";
/// Pod-template annotation holding the log of the "previous" (crashed) container.
pub const PREVIOUS_LOG_ANNOTATION: &str = "sandbox.newapi-ops.io/previous-log";
/// The Deployment pod faults are injected into.
pub const FAULT_TARGET: &str = "new-api-slave";
/// The container of New-API in both Deployments.
pub const CONTAINER: &str = "new-api";
/// An image that cannot be pulled.
pub const BROKEN_IMAGE: &str = "calciumion/new-api:does-not-exist";

/// A way to break the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// New slave pods crash at start (`Error 1040: Too many connections`) and back off.
    Crashloop,
    /// New slave pods are OOMKilled (exit 137) and back off.
    Oom,
    /// New slave pods use an image tag that does not exist (ImagePullBackOff).
    Imagepull,
    /// New slave pods run but fail their readiness probe.
    Unready,
    /// MariaDB (behind the mysql pod) is killed.
    MysqlDown,
    /// Redis (behind the redis pod) is killed.
    RedisDown,
}

impl Fault {
    /// Every fault, in the order `sandbox fault --help` lists them.
    pub const ALL: [Fault; 6] = [
        Fault::Crashloop,
        Fault::Oom,
        Fault::Imagepull,
        Fault::Unready,
        Fault::MysqlDown,
        Fault::RedisDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Crashloop => "crashloop",
            Fault::Oom => "oom",
            Fault::Imagepull => "imagepull",
            Fault::Unready => "unready",
            Fault::MysqlDown => "mysql-down",
            Fault::RedisDown => "redis-down",
        }
    }
}

/// What `fault` did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub fault: Fault,
    /// `deployment/new-api-slave`, `process/mariadb`, ...
    pub target: String,
    pub changed: bool,
    pub detail: String,
}

/// What `heal` did: one line per repair (empty when nothing was broken).
#[derive(Debug, Clone, Serialize)]
pub struct HealReport {
    pub repaired: Vec<String>,
}

/// The template of the slave Deployment as a fault (or health) wants it.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    behavior: Option<&'static str>,
    previous_log: Option<String>,
    image: String,
}

/// Injects `fault` into the running sandbox.
pub async fn inject(state: &SandboxState, fault: Fault) -> Result<FaultReport, SandboxError> {
    match fault {
        Fault::MysqlDown => Ok(kill_process(state, fault, "mariadb").await),
        Fault::RedisDown => Ok(kill_process(state, fault, "redis").await),
        Fault::Crashloop | Fault::Oom | Fault::Imagepull | Fault::Unready => {
            let seed = manifests::seed()?;
            let healthy_image = manifests::deployment_image(&seed, FAULT_TARGET)?;
            let now = jiff::Zoned::now();
            let want = match fault {
                Fault::Crashloop => Template {
                    behavior: Some("crashloop"),
                    previous_log: Some(crash_log(&now)),
                    image: healthy_image,
                },
                Fault::Oom => Template {
                    behavior: Some("crashloop-oom"),
                    previous_log: Some(oom_log()),
                    image: healthy_image,
                },
                Fault::Unready => Template {
                    behavior: Some("unready"),
                    previous_log: None,
                    image: healthy_image,
                },
                _ => Template {
                    behavior: None,
                    previous_log: None,
                    image: BROKEN_IMAGE.to_string(),
                },
            };
            let changed = set_template(state, &want).await?;
            let detail = match fault {
                Fault::Crashloop => {
                    "new slave pods crash with `Error 1040: Too many connections` and back off"
                        .into()
                }
                Fault::Oom => "new slave pods are OOMKilled (exit 137) and back off".into(),
                Fault::Unready => {
                    "new slave pods run but fail their readiness probe on /api/status".into()
                }
                _ => {
                    format!("slave image set to {BROKEN_IMAGE}: new pods stay in ImagePullBackOff")
                }
            };
            Ok(FaultReport {
                fault,
                target: format!("deployment/{FAULT_TARGET}"),
                changed,
                detail,
            })
        }
    }
}

async fn kill_process(state: &SandboxState, fault: Fault, name: &str) -> FaultReport {
    let target = format!("process/{name}");
    let Some(p) = state.processes.get(name) else {
        return FaultReport {
            fault,
            target,
            changed: false,
            detail: format!("{name} is not part of this sandbox"),
        };
    };
    if !process::is_alive(p.pid, Some(&p.program)) {
        return FaultReport {
            fault,
            target,
            changed: false,
            detail: format!("{name} (pid {}) was already down", p.pid),
        };
    }
    process::signal_group(p.pid, nix::sys::signal::Signal::SIGKILL);
    let begin = std::time::Instant::now();
    while process::is_alive(p.pid, Some(&p.program)) && begin.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = match name {
        "mariadb" => state.mysql.port,
        _ => state.redis.port,
    };
    FaultReport {
        fault,
        target,
        changed: true,
        detail: format!(
            "killed {name} (pid {}, SIGKILL): nothing answers on 127.0.0.1:{port}",
            p.pid
        ),
    }
}

/// Undoes every fault: restores the slave template and restarts MariaDB / Redis if they are down
/// (same port, same data directory). Updates `state` (new pids) and saves it.
pub async fn heal(state: &mut SandboxState) -> Result<HealReport, SandboxError> {
    let seed = manifests::seed()?;
    let mut repaired = Vec::new();
    let healthy = Template {
        behavior: None,
        previous_log: None,
        image: manifests::deployment_image(&seed, FAULT_TARGET)?,
    };
    if set_template(state, &healthy).await? {
        repaired.push(format!(
            "deployment/{FAULT_TARGET}: removed the fault annotations and restored image {}",
            healthy.image
        ));
    }

    let mariadb_down = state
        .processes
        .get("mariadb")
        .is_none_or(|p| !process::is_alive(p.pid, Some(&p.program)));
    let redis_down = state
        .processes
        .get("redis")
        .is_none_or(|p| !process::is_alive(p.pid, Some(&p.program)));
    if mariadb_down || redis_down {
        let bins = Binaries::locate()?;
        if mariadb_down {
            let password = manifests::secret_value(&seed, SECRET_NAME, MYSQL_PASSWORD_KEY)?;
            let mut layout = MariaDbLayout::new(
                &state.dir,
                state.mysql.port,
                password,
                state.mysql.database.clone(),
            );
            layout.socket = state.mysql.socket.clone();
            layout.datadir = state.mysql.datadir.clone();
            let started = backends::start_mariadb(&bins, &layout).await?;
            let record = started.detach();
            repaired.push(format!(
                "process/mariadb: restarted on 127.0.0.1:{} (pid {})",
                state.mysql.port, record.pid
            ));
            state.processes.insert("mariadb".into(), record);
            state.save()?;
        }
        if redis_down {
            let mut layout = RedisLayout::new(&state.dir, state.redis.port);
            layout.datadir = state.redis.dir.clone();
            let started = backends::start_redis(&bins, &layout).await?;
            let record = started.detach();
            repaired.push(format!(
                "process/redis: restarted on 127.0.0.1:{} (pid {})",
                state.redis.port, record.pid
            ));
            state.processes.insert("redis".into(), record);
            state.save()?;
        }
    }
    Ok(HealReport { repaired })
}

/// Brings the slave Deployment's template to `want`; false when it already was.
async fn set_template(state: &SandboxState, want: &Template) -> Result<bool, SandboxError> {
    let client = admin_client(&state.kubeconfig, &state.api_server).await?;
    let api: Api<Deployment> = Api::namespaced(client, &state.namespace);
    let api_err = |what: &str, e: kube::Error| SandboxError::Api {
        server: state.api_server.clone(),
        what: format!(
            "{what} deployment/{FAULT_TARGET} in namespace {}",
            state.namespace
        ),
        detail: e.to_string(),
    };
    let current = api
        .get(FAULT_TARGET)
        .await
        .map_err(|e| api_err("to read", e))?;
    let template = Some(&current.spec.template);
    let annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let image = template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let have = Template {
        behavior: annotations
            .get(BEHAVIOR_ANNOTATION)
            .map(|b| match b.as_str() {
                "crashloop" => "crashloop",
                "crashloop-oom" => "crashloop-oom",
                "unready" => "unready",
                _ => "other",
            }),
        previous_log: annotations.get(PREVIOUS_LOG_ANNOTATION).cloned(),
        image,
    };
    // A fresh crash log carries a fresh timestamp: compare what matters.
    if have.behavior == want.behavior
        && have.previous_log.is_some() == want.previous_log.is_some()
        && have.image == want.image
    {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "spec": { "template": {
            "metadata": { "annotations": {
                BEHAVIOR_ANNOTATION: want.behavior,
                PREVIOUS_LOG_ANNOTATION: want.previous_log,
            }},
            "spec": { "containers": [ { "name": CONTAINER, "image": want.image } ] }
        }}
    });
    let params = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}-fault")),
        ..PatchParams::default()
    };
    api.patch(FAULT_TARGET, &params, &Patch::Strategic(&patch))
        .await
        .map_err(|e| api_err("to patch", e))?;
    Ok(true)
}

fn newapi_time(now: &jiff::Zoned, offset_secs: i64) -> String {
    let t = now
        .checked_add(jiff::SignedDuration::from_secs(offset_secs))
        .unwrap_or_else(|_| now.clone());
    t.strftime("%Y/%m/%d - %H:%M:%S").to_string()
}

/// The last lines of a New-API container that cannot get a database connection at start (the
/// simulator appends them to the startup lines it writes itself).
pub fn crash_log(now: &jiff::Zoned) -> String {
    let t = |s| newapi_time(now, s);
    format!(
        "[ERR] {} | failed to connect database, retrying (1/3): Error 1040: Too many connections\n\
         [ERR] {} | failed to connect database, retrying (2/3): Error 1040: Too many connections\n\
         [ERR] {} | failed to connect database, retrying (3/3): Error 1040: Too many connections\n\
         [FATAL] {} | failed to initialize database: Error 1040: Too many connections\n",
        t(-7),
        t(-5),
        t(-3),
        t(-3),
    )
}

/// The last lines of a New-API container whose Go runtime ran out of memory under load.
pub fn oom_log() -> String {
    "fatal error: runtime: out of memory\n\
     \n\
     runtime stack:\n\
     runtime.throw({0x1d3c2f1?, 0x7ffd9a1c3e20?})\n\
     \t/usr/local/go/src/runtime/panic.go:1077 +0x5c fp=0x7ffd9a1c3df0 sp=0x7ffd9a1c3dc0 pc=0x43d7fc\n\
     runtime.sysMapOS(0xc0a0000000, 0x8000000)\n\
     \t/usr/local/go/src/runtime/mem_linux.go:167 +0x11b fp=0x7ffd9a1c3e38 sp=0x7ffd9a1c3df0 pc=0x41b9bb\n\
     runtime.(*mheap).grow(0x2f1c9a0, 0x3f50?)\n\
     \t/usr/local/go/src/runtime/mheap.go:1498 +0x2f3 fp=0x7ffd9a1c3ea8 sp=0x7ffd9a1c3e38 pc=0x42f0d3\n\
     runtime.(*mheap).allocSpan(0x2f1c9a0, 0x3f50, 0x0, 0x1)\n\
     \t/usr/local/go/src/runtime/mheap.go:1193 +0x1f3 fp=0x7ffd9a1c3f48 sp=0x7ffd9a1c3ea8 pc=0x42e6f3\n\
     \n\
     goroutine 4187 [running]:\n\
     encoding/json.(*decodeState).literalStore(...)\n\
     \t/usr/local/go/src/encoding/json/decode.go:985\n\
     github.com/QuantumNous/new-api/relay/channel/openai.OaiStreamHandler(0xc001f2e000, ...)\n\
     \t/build/relay/channel/openai/relay-openai.go:214 +0x4b1\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_read_like_newapi() {
        let now: jiff::Zoned = "2025-11-13T09:12:03+08:00[Asia/Shanghai]".parse().unwrap();
        let crash = crash_log(&now);
        assert!(crash.contains("[FATAL] 2025/11/13 - 09:12:00 | failed to initialize database: Error 1040: Too many connections"));
        let oom = oom_log();
        assert!(oom.starts_with("fatal error: runtime: out of memory\n\nruntime stack:\n"));
        assert!(oom.contains("runtime.throw({0x1d3c2f1?"));
    }
}
