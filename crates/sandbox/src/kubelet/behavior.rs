//! What a pod asks of the simulator: the sandbox annotations (set on a workload's pod template by
//! faults and tests), and the check a kubelet makes before it creates a container: every Secret
//! and ConfigMap the container's environment needs must exist and hold the named keys.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Container;

/// How the pod's containers behave once they run: `running` (default), `crashloop-oom`,
/// `crashloop`, `unready`, `oom-recovered`, `flaky`, `succeed`, `evicted`.
pub const BEHAVIOR: &str = "sandbox.newapi-ops.io/behavior";
/// `"true"`: when the pod is deleted, leave it Terminating instead of confirming the deletion.
pub const STUCK_TERMINATING: &str = "sandbox.newapi-ops.io/stuck-terminating";
/// Multi-line text appended as the last lines of the previous container's log.
pub const PREVIOUS_LOG: &str = "sandbox.newapi-ops.io/previous-log";
/// `"true"`: the New-API stand-in answers 429 Too Many Requests.
pub const RATE_LIMITED: &str = "sandbox.newapi-ops.io/rate-limited";
/// `"true"`: a slave's channel-sync loop has stopped: it logs no more `syncing channels from
/// database` lines after starting (a hung goroutine, a dead database connection pool).
pub const SYNC_STALLED: &str = "sandbox.newapi-ops.io/sync-stalled";

/// How a started container behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Runs and is ready.
    Running,
    /// Keeps dying with this termination and is restarted with back-off (`CrashLoopBackOff`).
    CrashLoop(Termination),
    /// Runs, but its readiness probe fails.
    Unready,
    /// Was OOM-killed once, then came back and is ready.
    OomRecovered,
    /// Runs and is ready, but has crashed (exit 1) and been restarted 7 times.
    Flaky,
    /// Evicted by the kubelet under node memory pressure: phase Failed, reason Evicted.
    Evicted,
    /// Runs to completion (exit 0): the pod succeeds unless its restart policy is Always.
    Succeed,
}

/// Why a container instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Termination {
    OomKilled,
    Error,
    Completed,
    /// A real container's process exited with this code (0: `Completed`, else `Error`).
    Exit(i32),
}

impl Termination {
    /// `state.terminated.reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Termination::OomKilled => "OOMKilled",
            Termination::Error => "Error",
            Termination::Completed => "Completed",
            Termination::Exit(0) => "Completed",
            Termination::Exit(_) => "Error",
        }
    }

    /// `state.terminated.exitCode`.
    pub fn exit_code(self) -> i32 {
        match self {
            Termination::OomKilled => 137,
            Termination::Error => 1,
            Termination::Completed => 0,
            Termination::Exit(code) => code,
        }
    }
}

impl Behavior {
    /// Reads the behaviour annotation's value; an unknown value is an error (the caller logs it
    /// and treats the pod as `running`).
    pub fn parse(value: Option<&str>) -> Result<Behavior, String> {
        match value.map(str::trim) {
            None | Some("" | "running") => Ok(Behavior::Running),
            Some("crashloop-oom") => Ok(Behavior::CrashLoop(Termination::OomKilled)),
            Some("crashloop") => Ok(Behavior::CrashLoop(Termination::Error)),
            Some("unready") => Ok(Behavior::Unready),
            Some("oom-recovered") => Ok(Behavior::OomRecovered),
            Some("flaky") => Ok(Behavior::Flaky),
            Some("evicted") => Ok(Behavior::Evicted),
            Some("succeed") => Ok(Behavior::Succeed),
            Some(other) => Err(format!(
                "unknown {BEHAVIOR} value {other:?} (known: running, crashloop-oom, crashloop, unready, oom-recovered, flaky, succeed, evicted)"
            )),
        }
    }
}

/// Read access to the Secrets and ConfigMaps the simulator has seen: only their key names.
pub trait ConfigSource {
    /// The keys of Secret `namespace/name`, or `None` if it does not exist.
    fn secret_keys(&self, namespace: &str, name: &str) -> Option<&BTreeSet<String>>;
    /// The keys (`data` and `binaryData`) of ConfigMap `namespace/name`, or `None`.
    fn config_map_keys(&self, namespace: &str, name: &str) -> Option<&BTreeSet<String>>;
}

/// The error a kubelet reports (`CreateContainerConfigError`) when `container`'s environment
/// cannot be built, or `None` when it can. Same order and messages as the kubelet: `envFrom`
/// first, then `env`.
pub fn env_error(
    namespace: &str,
    container: &Container,
    source: &dyn ConfigSource,
) -> Option<String> {
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref
            && !r.optional.unwrap_or(false)
            && source.config_map_keys(namespace, &r.name).is_none()
        {
            return Some(format!("configmap \"{}\" not found", r.name));
        }
        if let Some(r) = &from.secret_ref
            && !r.optional.unwrap_or(false)
            && source.secret_keys(namespace, &r.name).is_none()
        {
            return Some(format!("secret \"{}\" not found", r.name));
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            let optional = r.optional.unwrap_or(false);
            match source.config_map_keys(namespace, &r.name) {
                None if !optional => return Some(format!("configmap \"{}\" not found", r.name)),
                Some(keys) if !optional && !keys.contains(&r.key) => {
                    return Some(format!(
                        "couldn't find key {} in ConfigMap {namespace}/{}",
                        r.key, r.name
                    ));
                }
                _ => {}
            }
        }
        if let Some(r) = &from.secret_key_ref {
            let optional = r.optional.unwrap_or(false);
            match source.secret_keys(namespace, &r.name) {
                None if !optional => return Some(format!("secret \"{}\" not found", r.name)),
                Some(keys) if !optional && !keys.contains(&r.key) => {
                    return Some(format!(
                        "couldn't find key {} in Secret {namespace}/{}",
                        r.key, r.name
                    ));
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Fake {
        secrets: HashMap<String, BTreeSet<String>>,
        maps: HashMap<String, BTreeSet<String>>,
    }

    impl ConfigSource for Fake {
        fn secret_keys(&self, ns: &str, name: &str) -> Option<&BTreeSet<String>> {
            self.secrets.get(&format!("{ns}/{name}"))
        }
        fn config_map_keys(&self, ns: &str, name: &str) -> Option<&BTreeSet<String>> {
            self.maps.get(&format!("{ns}/{name}"))
        }
    }

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn behaviours() {
        assert_eq!(Behavior::parse(None), Ok(Behavior::Running));
        assert_eq!(
            Behavior::parse(Some("crashloop-oom")),
            Ok(Behavior::CrashLoop(Termination::OomKilled))
        );
        assert_eq!(
            Behavior::parse(Some("crashloop")),
            Ok(Behavior::CrashLoop(Termination::Error))
        );
        assert_eq!(Behavior::parse(Some(" unready ")), Ok(Behavior::Unready));
        assert_eq!(
            Behavior::parse(Some("oom-recovered")),
            Ok(Behavior::OomRecovered)
        );
        assert_eq!(Behavior::parse(Some("succeed")), Ok(Behavior::Succeed));
        assert_eq!(Behavior::parse(Some("flaky")), Ok(Behavior::Flaky));
        assert_eq!(Behavior::parse(Some("evicted")), Ok(Behavior::Evicted));
        assert!(Behavior::parse(Some("explode")).is_err());
        assert_eq!(Termination::OomKilled.exit_code(), 137);
        assert_eq!(Termination::Error.reason(), "Error");
        assert_eq!(Termination::Exit(0).reason(), "Completed");
        assert_eq!(Termination::Exit(3).reason(), "Error");
        assert_eq!(Termination::Exit(3).exit_code(), 3);
    }

    #[test]
    fn env_references() {
        let mut world = Fake::default();
        let c = container(serde_json::json!({
            "name": "app",
            "env": [
                {"name": "PLAIN", "value": "x"},
                {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "opt", "key": "k", "optional": true}}},
            ]
        }));
        assert_eq!(
            env_error("ns", &c, &world).as_deref(),
            Some("secret \"db\" not found")
        );
        world
            .secrets
            .insert("ns/db".into(), BTreeSet::from(["user".to_string()]));
        assert_eq!(
            env_error("ns", &c, &world).as_deref(),
            Some("couldn't find key dsn in Secret ns/db")
        );
        world
            .secrets
            .insert("ns/db".into(), BTreeSet::from(["dsn".to_string()]));
        assert_eq!(env_error("ns", &c, &world), None);
        // Another namespace's Secret does not count.
        assert!(env_error("other", &c, &world).is_some());

        let c = container(serde_json::json!({
            "name": "app",
            "envFrom": [{"configMapRef": {"name": "settings"}}],
            "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]
        }));
        assert_eq!(
            env_error("ns", &c, &world).as_deref(),
            Some("configmap \"settings\" not found")
        );
        world.maps.insert("ns/settings".into(), BTreeSet::new());
        assert_eq!(
            env_error("ns", &c, &world).as_deref(),
            Some("couldn't find key k in ConfigMap ns/settings")
        );
        let optional = container(serde_json::json!({
            "name": "app",
            "envFrom": [{"secretRef": {"name": "nope", "optional": true}}]
        }));
        assert_eq!(env_error("ns", &optional, &world), None);
    }
}
