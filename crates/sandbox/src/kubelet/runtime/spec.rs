//! What a real container is made of, decided as a kubelet and containerd decide it, without I/O:
//! its command line (`command`/`args` against the image's entrypoint/cmd, `$(VAR)` expanded),
//! its environment (Service variables, `envFrom`, `env` with `value`, `valueFrom` secretKeyRef,
//! configMapKeyRef, fieldRef, resourceFieldRef), its user (securityContext against the image's
//! `User`, `runAsNonRoot`), and the OCI runtime config (`config.json`) `runc` runs.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use serde_json::{Value, json};

use crate::image::ImageConfig;

/// Why a container cannot be created: the waiting reason and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateError {
    pub reason: &'static str,
    pub message: String,
}

impl CreateError {
    pub fn config(message: impl Into<String>) -> CreateError {
        CreateError {
            reason: "CreateContainerConfigError",
            message: message.into(),
        }
    }

    pub fn create(message: impl Into<String>) -> CreateError {
        CreateError {
            reason: "CreateContainerError",
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// The values of the Secrets and ConfigMaps a container refers to, by name (its namespace's).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: HashMap<String, BTreeMap<String, String>>,
}

/// Facts about the pod a `fieldRef` or `resourceFieldRef` may ask for that are not in its spec.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub pod_ip: String,
    pub host_ip: String,
    /// The node's allocatable CPU (millicores) and memory (bytes): what an unset limit means.
    pub node_cpu_millis: i64,
    pub node_memory_bytes: i64,
}

/// Expands `$(VAR)` references with `vars` (`$$` escapes; unknown references stay as written),
/// as the kubelet does in `env` values, `command` and `args`.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Whether `name` is a valid environment variable name (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// The container's environment: Service variables first, then `envFrom` (in order, with
/// prefixes; keys that are not valid names are skipped, as the kubelet does), then `env` (in
/// order, `$(VAR)` expanded against what is defined so far); later definitions win.
pub fn environment(
    pod: &Pod,
    c: &Container,
    sources: &Sources,
    service_env: &[(String, String)],
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, CreateError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    let mut set = |name: String, value: String, values: &mut HashMap<String, String>| {
        if !values.contains_key(&name) {
            order.push(name.clone());
        }
        values.insert(name, value);
    };
    for (k, v) in service_env {
        set(k.clone(), v.clone(), &mut values);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        let name = format!("{prefix}{k}");
                        if valid_env_name(&name) {
                            set(name, v.clone(), &mut values);
                        }
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => {
                    return Err(CreateError::config(format!(
                        "configmap \"{}\" not found",
                        r.name
                    )));
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        let name = format!("{prefix}{k}");
                        if valid_env_name(&name) {
                            set(name, String::from_utf8_lossy(v).into_owned(), &mut values);
                        }
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => {
                    return Err(CreateError::config(format!(
                        "secret \"{}\" not found",
                        r.name
                    )));
                }
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                if let Some(r) = &from.secret_key_ref {
                    let data = sources.secrets.get(&r.name);
                    key_value(data, &r.name, &r.key, r.optional, "Secret", namespace)?
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                } else if let Some(r) = &from.config_map_key_ref {
                    let data = sources.config_maps.get(&r.name);
                    key_value(data, &r.name, &r.key, r.optional, "ConfigMap", namespace)?.cloned()
                } else if let Some(f) = &from.field_ref {
                    Some(field_value(pod, &f.field_path, facts).map_err(CreateError::config)?)
                } else if let Some(r) = &from.resource_field_ref {
                    Some(resource_value(c, r, facts).map_err(CreateError::config)?)
                } else {
                    Some(String::new())
                }
            }
            (Some(v), None) => Some(expand(v, &|name| values.get(name).cloned())),
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            set(var.name.clone(), v, &mut values);
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| values.remove(&k).map(|v| (k, v)))
        .collect())
}

/// The value of `key` in Secret/ConfigMap `name` (`data`: its contents, `None` when it does not
/// exist), or the kubelet's error; `None` when it is optional and missing.
fn key_value<'a, V>(
    data: Option<&'a BTreeMap<String, V>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
    kind: &str,
    namespace: &str,
) -> Result<Option<&'a V>, CreateError> {
    match data.map(|d| d.get(key)) {
        Some(Some(v)) => Ok(Some(v)),
        _ if optional.unwrap_or(false) => Ok(None),
        Some(None) => Err(CreateError::config(format!(
            "couldn't find key {key} in {kind} {namespace}/{name}"
        ))),
        None => Err(CreateError::config(format!(
            "{} \"{name}\" not found",
            kind.to_ascii_lowercase()
        ))),
    }
}

/// A `fieldRef` of the downward API.
fn field_value(pod: &Pod, path: &str, facts: &PodFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?;
        Some(rest.strip_suffix("']")?.to_string())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => facts.host_ip.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// A `resourceFieldRef`: the container's request or limit (a limit that is not set is the
/// node's allocatable), divided by the divisor and rounded up.
fn resource_value(
    c: &Container,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    facts: &PodFacts,
) -> Result<String, String> {
    use newapi_ops_quantity::{parse_cpu_millis, parse_value};
    let res = c.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<String> {
        let map = match which {
            "limits" => res.and_then(|r| r.limits.as_ref()),
            _ => res.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let (which, name) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {}", r.resource))?;
    let divisor = r.divisor.as_ref().map(|d| d.0.clone());
    let div_up = |v: i64, d: i64| if d <= 0 { v } else { (v + d - 1) / d };
    match name {
        "cpu" => {
            let millis = match get(which, "cpu").or_else(|| get("limits", "cpu")) {
                Some(q) => parse_cpu_millis(&q).map_err(|e| e.to_string())?,
                None if which == "limits" => facts.node_cpu_millis,
                None => 0,
            };
            let d = match divisor.as_deref() {
                None | Some("" | "1") => 1000,
                Some(d) => parse_cpu_millis(d).map_err(|e| e.to_string())?,
            };
            Ok(div_up(millis, d).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match get(which, name).or_else(|| get("limits", name)) {
                Some(q) => parse_value(&q).map_err(|e| e.to_string())?,
                None if which == "limits" && name == "memory" => facts.node_memory_bytes,
                None => 0,
            };
            let d = match divisor.as_deref() {
                None | Some("") => 1,
                Some(d) => parse_value(d).map_err(|e| e.to_string())?,
            };
            Ok(div_up(bytes, d).to_string())
        }
        _ => Err(format!("unsupported container resource: {}", r.resource)),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line and user
// ---------------------------------------------------------------------------------------------

/// The process's argv: `command` replaces the image's entrypoint (and drops its cmd), `args`
/// replaces the cmd; `$(VAR)` is expanded with the container's environment.
pub fn command_line(
    c: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, CreateError> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let lookup = |name: &str| vars.get(name).map(|v| (*v).to_string());
    let expand_all =
        |list: &[String]| -> Vec<String> { list.iter().map(|a| expand(a, &lookup)).collect() };
    let argv: Vec<String> = match (&c.command, &c.args) {
        (Some(cmd), args) if !cmd.is_empty() => {
            let mut v = expand_all(cmd);
            v.extend(expand_all(args.as_deref().unwrap_or_default()));
            v
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut v = image.entrypoint.clone();
            v.extend(expand_all(args));
            v
        }
        _ => {
            let mut v = image.entrypoint.clone();
            v.extend(image.cmd.iter().cloned());
            v
        }
    };
    if argv.is_empty() {
        return Err(CreateError::create("no command specified"));
    }
    Ok(argv)
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// One line of an `/etc/passwd` or `/etc/group`.
fn lookup_line<'a>(
    text: &'a str,
    by_name: Option<&str>,
    by_id: Option<u32>,
) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 3
                && (by_name.is_some_and(|n| f[0] == n)
                    || by_id.is_some_and(|id| f[2].parse::<u32>().ok() == Some(id)))
        })
}

/// The user of a container: `runAsUser`/`runAsGroup` (container, else pod) over the image's
/// `User` (numeric or a name in the image's `/etc/passwd`); supplemental groups and `fsGroup`;
/// `runAsNonRoot` refuses uid 0 (and a user name it cannot check), with the kubelet's message.
pub fn user(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    passwd: &str,
    group: &str,
) -> Result<User, CreateError> {
    let pod_sc: Option<&PodSecurityContext> =
        pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let c_sc: Option<&SecurityContext> = c.security_context.as_ref();
    let run_as_user = c_sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = c_sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let non_root = c_sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    let pod_name = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    );
    let id = |v: i64| {
        u32::try_from(v).map_err(|_| CreateError::config(format!("invalid user or group id {v}")))
    };

    let (image_user, image_group) = match image.user.as_deref() {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Some(a), Some(b)),
            None => (Some(u), None),
        },
    };
    let (uid, passwd_gid) = match run_as_user {
        Some(u) => {
            let uid = id(u)?;
            let gid = lookup_line(passwd, None, Some(uid)).and_then(|f| f.get(3)?.parse().ok());
            (uid, gid)
        }
        None => match image_user {
            None | Some("") => (0, Some(0)),
            Some(u) => match u.parse::<u32>() {
                Ok(uid) => (
                    uid,
                    lookup_line(passwd, None, Some(uid)).and_then(|f| f.get(3)?.parse().ok()),
                ),
                Err(_) => {
                    if non_root {
                        return Err(CreateError::config(format!(
                            "container has runAsNonRoot and image has non-numeric user ({u}), cannot verify user is non-root (pod: \"{pod_name}\", container: {})",
                            c.name
                        )));
                    }
                    let f = lookup_line(passwd, Some(u), None).ok_or_else(|| {
                        CreateError::create(format!(
                            "unable to find user {u}: no matching entries in passwd file"
                        ))
                    })?;
                    (
                        f[2].parse().unwrap_or(0),
                        f.get(3).and_then(|g| g.parse().ok()),
                    )
                }
            },
        },
    };
    if non_root && uid == 0 {
        return Err(CreateError::config(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: {})",
            c.name
        )));
    }
    let gid = match run_as_group {
        Some(g) => id(g)?,
        None => match image_group.filter(|_| run_as_user.is_none()) {
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup_line(group, Some(g), None)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        CreateError::create(format!(
                            "unable to find group {g}: no matching entries in group file"
                        ))
                    })?,
            },
            None => passwd_gid.unwrap_or(0),
        },
    };
    let mut additional_gids: Vec<u32> = Vec::new();
    for g in pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(pod_sc.and_then(|s| s.fs_group))
    {
        let g = id(g)?;
        if g != gid && !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    let home = lookup_line(passwd, None, Some(uid))
        .and_then(|f| f.get(5).map(|h| (*h).to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// containerd's default capabilities for a container.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities after `securityContext.capabilities` (`drop: [ALL]` drops all).
pub fn capabilities(c: &Container) -> Vec<String> {
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let norm = |c: &String| {
        let up = c.to_ascii_uppercase();
        if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    let drop: Vec<String> = caps
        .and_then(|c| c.drop.as_ref())
        .into_iter()
        .flatten()
        .map(norm)
        .collect();
    let mut out: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| (*c).to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
        let add = norm(add);
        if add != "CAP_ALL" && !out.contains(&add) {
            out.push(add);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub destination: String,
    pub readonly: bool,
}

/// Everything the OCI config of one container needs beyond the image's.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub user: User,
    pub hostname: String,
    pub readonly_root: bool,
    pub no_new_privileges: bool,
    pub capabilities: Vec<String>,
    pub mounts: Vec<Mount>,
    pub annotations: BTreeMap<String, String>,
    /// RLIMIT_NOFILE (soft = hard): containerd gives 1048576, the sandbox what it has itself.
    pub nofile: u64,
}

/// The `config.json` for `runc`: the one `umoci unpack` wrote for the image (`base`), with the
/// process, user, hostname and mounts of this container, no terminal, and the host's network
/// (the `network` namespace removed: Services are on loopback addresses).
pub fn oci_config(base: &Value, p: &ProcessSpec) -> Value {
    let mut c = base.clone();
    let env: Vec<String> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(p.args);
    c["process"]["env"] = json!(env);
    c["process"]["cwd"] = json!(p.cwd);
    c["process"]["user"] = json!({
        "uid": p.user.uid,
        "gid": p.user.gid,
        "additionalGids": p.user.additional_gids,
    });
    c["process"]["noNewPrivileges"] = json!(p.no_new_privileges);
    let caps = json!(p.capabilities);
    c["process"]["capabilities"] = json!({
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
        "inheritable": [],
        "ambient": [],
    });
    c["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": p.nofile, "soft": p.nofile}]);
    c["root"] = json!({"path": "rootfs", "readonly": p.readonly_root});
    c["hostname"] = json!(p.hostname);
    if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }
    let mut mounts: Vec<Value> = c["mounts"].as_array().cloned().unwrap_or_default();
    for m in &p.mounts {
        let mut options = vec!["rbind", "rprivate"];
        if m.readonly {
            options.push("ro");
        }
        mounts.push(json!({
            "destination": m.destination,
            "type": "bind",
            "source": m.source,
            "options": options,
        }));
    }
    c["mounts"] = json!(mounts);
    c["annotations"] = json!(p.annotations);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "job-1", "namespace": "new-api", "uid": "u-1",
                         "labels": {"app": "backup"}, "annotations": {"team": "ops"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn container(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            digest: "sha256:x".into(),
            user: Some("65532:65532".into()),
            entrypoint: vec!["/usr/local/bin/newapi-ops".into()],
            cmd: vec![],
            env: vec!["PATH=/usr/local/bin".into()],
            working_dir: Some("/home/nonroot".into()),
        }
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nnonroot:x:65532:\n";

    #[test]
    fn expansion() {
        let vars = |n: &str| (n == "A").then(|| "1".to_string());
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("ünï $", &vars), "ünï $");
    }

    #[test]
    fn environment_like_a_kubelet() {
        let p = pod(json!({"containers": [], "nodeName": "node-1", "serviceAccountName": "sa"}));
        let c = container(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "missing", "optional": true}}],
            "env": [
                {"name": "PLAIN", "value": "a-$(CFG_TZ)-$(NOPE)"},
                {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "db", "key": "none", "optional": true}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "MYSQL_SERVICE_PORT", "value": "override"},
            ],
            "resources": {"requests": {"cpu": "250m"}},
        }));
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cfg".into(),
            [
                ("TZ".to_string(), "UTC".to_string()),
                ("bad key".into(), "x".into()),
            ]
            .into(),
        );
        sources.secrets.insert(
            "db".into(),
            [("dsn".to_string(), b"root:pw@tcp(mysql)/x".to_vec())].into(),
        );
        let facts = PodFacts {
            pod_ip: "10.244.0.5".into(),
            host_ip: "127.0.0.1".into(),
            node_cpu_millis: 4000,
            node_memory_bytes: 6148 * 1024 * 1024,
        };
        let services = vec![("MYSQL_SERVICE_PORT".to_string(), "3306".to_string())];
        let env = environment(&p, &c, &sources, &services, &facts).unwrap();
        let m: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(m["CFG_TZ"], "UTC");
        assert!(!m.contains_key("CFG_bad key"));
        assert_eq!(m["PLAIN"], "a-UTC-$(NOPE)");
        assert_eq!(m["DSN"], "root:pw@tcp(mysql)/x");
        assert!(!m.contains_key("OPT"));
        assert_eq!(m["POD"], "job-1");
        assert_eq!(m["NS"], "new-api");
        assert_eq!(m["APP"], "backup");
        assert_eq!(m["IP"], "10.244.0.5");
        assert_eq!(m["NODE"], "node-1");
        assert_eq!(m["MEM"], "6148", "no limit: the node's allocatable");
        assert_eq!(m["CPU"], "250");
        assert_eq!(m["MYSQL_SERVICE_PORT"], "override");
        assert_eq!(
            env[0].0, "MYSQL_SERVICE_PORT",
            "defined first, overridden in place"
        );

        let missing = container(json!({"name": "c", "env": [
            {"name": "DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "other"}}}]}));
        let e = environment(&p, &missing, &sources, &[], &facts).unwrap_err();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert_eq!(e.message, "couldn't find key other in Secret new-api/db");
        let gone = container(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}));
        assert_eq!(
            environment(&p, &gone, &sources, &[], &facts)
                .unwrap_err()
                .message,
            "configmap \"x\" not found"
        );
    }

    #[test]
    fn command_lines() {
        let env = vec![("NS".to_string(), "new-api".to_string())];
        let c = container(json!({"name": "c"}));
        assert_eq!(
            command_line(&c, &image(), &env).unwrap(),
            ["/usr/local/bin/newapi-ops"]
        );
        let c = container(json!({"name": "c", "args": ["pods", "-n", "$(NS)"]}));
        assert_eq!(
            command_line(&c, &image(), &env).unwrap(),
            ["/usr/local/bin/newapi-ops", "pods", "-n", "new-api"]
        );
        let c = container(json!({"name": "c", "command": ["newapi-ops", "--version"]}));
        assert_eq!(
            command_line(&c, &image(), &env).unwrap(),
            ["newapi-ops", "--version"]
        );
        let mut empty = image();
        empty.entrypoint.clear();
        assert_eq!(
            command_line(&container(json!({"name": "c"})), &empty, &env)
                .unwrap_err()
                .message,
            "no command specified"
        );
    }

    #[test]
    fn users() {
        let p = pod(json!({"containers": []}));
        let c = container(json!({"name": "c"}));
        let u = user(&p, &c, &image(), PASSWD, GROUP).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.home.as_str()),
            (65532, 65532, "/home/nonroot")
        );

        let p = pod(json!({"containers": [], "securityContext": {
            "runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}}));
        let u = user(&p, &c, &image(), PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 0, "/"));
        assert_eq!(u.additional_gids, [3000, 2000]);

        let c = container(json!({"name": "c", "securityContext": {"runAsUser": 0}}));
        let e = user(&p, &c, &image(), PASSWD, GROUP).unwrap_err();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert!(
            e.message
                .starts_with("container has runAsNonRoot and image will run as root")
        );

        let mut named = image();
        named.user = Some("nonroot".into());
        let u = user(
            &pod(json!({"containers": []})),
            &container(json!({"name": "c"})),
            &named,
            PASSWD,
            GROUP,
        )
        .unwrap();
        assert_eq!((u.uid, u.gid), (65532, 65532));
        let e = user(&p, &container(json!({"name": "c"})), &named, PASSWD, GROUP);
        assert!(e.is_ok(), "runAsUser given: the name does not matter");
        let strict = pod(json!({"containers": [], "securityContext": {"runAsNonRoot": true}}));
        assert!(
            user(
                &strict,
                &container(json!({"name": "c"})),
                &named,
                PASSWD,
                GROUP
            )
            .unwrap_err()
            .message
            .contains("non-numeric user (nonroot)")
        );
    }

    #[test]
    fn capabilities_and_config() {
        let c = container(json!({"name": "c", "securityContext": {
            "capabilities": {"drop": ["ALL"], "add": ["net_bind_service"]}}}));
        assert_eq!(capabilities(&c), ["CAP_NET_BIND_SERVICE"]);
        let c = container(
            json!({"name": "c", "securityContext": {"capabilities": {"drop": ["KILL"]}}}),
        );
        let caps = capabilities(&c);
        assert!(caps.contains(&"CAP_CHOWN".to_string()) && !caps.contains(&"CAP_KILL".to_string()));

        let base = json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": true, "args": ["x"], "env": ["TERM=xterm"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]}
        });
        let spec = ProcessSpec {
            args: vec!["/usr/local/bin/newapi-ops".into(), "--version".into()],
            env: vec![("A".into(), "b".into())],
            cwd: "/home/nonroot".into(),
            user: User {
                uid: 65532,
                gid: 65532,
                additional_gids: vec![2000],
                home: "/home/nonroot".into(),
            },
            hostname: "job-1".into(),
            readonly_root: true,
            no_new_privileges: true,
            capabilities: vec![],
            mounts: vec![
                Mount {
                    source: "/d/hosts".into(),
                    destination: "/etc/hosts".into(),
                    readonly: false,
                },
                Mount {
                    source: "/d/sa".into(),
                    destination: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                    readonly: true,
                },
            ],
            annotations: BTreeMap::new(),
            nofile: 4096,
        };
        let c = oci_config(&base, &spec);
        assert_eq!(c["process"]["terminal"], false);
        assert_eq!(c["process"]["args"][1], "--version");
        assert_eq!(c["process"]["env"], json!(["A=b"]));
        assert_eq!(c["process"]["user"]["uid"], 65532);
        assert_eq!(c["process"]["user"]["additionalGids"], json!([2000]));
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(c["hostname"], "job-1");
        assert_eq!(
            c["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "mount"}])
        );
        let mounts = c["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[2]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(c["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(c["process"]["rlimits"][0]["hard"], 4096);
    }
}
