//! Settings: defaults that follow the seed deployment, overridden by `newapi-ops.toml` and then by
//! flags. The file is parsed into a wire type with unknown fields denied, then resolved.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file name looked up in the working directory, then in the user's config directory.
pub const CONFIG_FILE: &str = "newapi-ops.toml";

/// The namespace used when neither the config file nor `-n` names one.
pub const DEFAULT_NAMESPACE: &str = "new-api";

/// The config file as written by users.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigWire {
    namespace: Option<String>,
    #[serde(default)]
    workloads: WorkloadsWire,
    /// Directories of the user's runbooks; relative ones are relative to the config file.
    #[serde(default)]
    runbook_dirs: Vec<PathBuf>,
    /// The capacity model, measured (`newapi-ops bench` prints these lines).
    #[serde(default)]
    capacity: CapacityWire,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityWire {
    /// QPS one New-API pod serves; the default of `--qps-per-pod` for `plan` and `scale`.
    qps_per_pod: Option<u32>,
    /// When and how it was measured (free text, shown with the figure).
    measured: Option<String>,
}

/// A measured capacity from the config file's `[capacity]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasuredCapacity {
    pub qps_per_pod: u32,
    /// When and how it was measured, as the file says.
    pub measured: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadsWire {
    master: Option<String>,
    slave: Option<String>,
    mysql: Option<String>,
    redis: Option<String>,
    master_selector: Option<String>,
    slave_selector: Option<String>,
    mysql_selector: Option<String>,
    redis_selector: Option<String>,
}

/// A workload of the deployment: the name of its controller and the label selector of its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: String,
    pub selector: Selector,
}

/// A set of `key=value` label requirements (equality only, which is what the seed uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Selector(pub Vec<(String, String)>);

impl Selector {
    /// Parses `app=new-api,role=master`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not of the form key=value"))?;
            let (k, v) = (k.trim().trim_end_matches('='), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err(format!("`{part}` has an empty key or value"));
            }
            out.push((k.to_string(), v.to_string()));
        }
        if out.is_empty() {
            return Err("the selector is empty".into());
        }
        Ok(Selector(out))
    }

    /// Whether a pod's labels satisfy every requirement.
    pub fn matches(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        let Some(labels) = labels else {
            return false;
        };
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> String {
        s.to_string()
    }
}

/// The workloads of a New-API deployment.
#[derive(Debug, Clone, Serialize)]
pub struct Workloads {
    pub master: Workload,
    pub slave: Workload,
    pub mysql: Workload,
    pub redis: Workload,
}

/// What the command line (or a caller that acts like it) overrides; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The kubeconfig file (else `$KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (else its current context).
    pub context: Option<String>,
    pub namespace: Option<String>,
    /// The config file (else `./newapi-ops.toml`, then the user's config directory).
    pub config: Option<PathBuf>,
    pub master: Option<String>,
    pub slave: Option<String>,
    pub mysql: Option<String>,
    pub redis: Option<String>,
}

/// Everything a command needs to know about where and what New-API is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The kubeconfig file named on the command line, if any.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context named on the command line, if any.
    pub context: Option<String>,
    pub namespace: String,
    pub workloads: Workloads,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// `runbook_dirs` of the config file, relative paths resolved against the file's directory.
    pub runbook_dirs: Vec<PathBuf>,
    /// `[capacity] qps_per_pod` of the config file, when it has one.
    pub capacity: Option<MeasuredCapacity>,
}

impl Settings {
    /// The QPS per pod to plan with: the flag (or its env variable) when given, else the config
    /// file's measured figure, else `default`; with where it comes from, for messages.
    pub fn qps_per_pod(&self, flag: Option<u32>, default: u32) -> (u32, String) {
        if let Some(q) = flag {
            return (q, "--qps-per-pod".into());
        }
        match &self.capacity {
            Some(c) => {
                let file = self
                    .config_file
                    .as_ref()
                    .map_or_else(|| CONFIG_FILE.to_string(), |p| p.display().to_string());
                let when = c
                    .measured
                    .as_ref()
                    .map(|m| format!(", measured {m}"))
                    .unwrap_or_default();
                (c.qps_per_pod, format!("[capacity] in {file}{when}"))
            }
            None => (default, "the deployment notes' estimate".into()),
        }
    }
}

impl Settings {
    /// Resolves settings from defaults, the config file and the command line.
    pub fn resolve(over: &Overrides) -> Result<Settings> {
        let (wire, config_file) = match &over.config {
            Some(path) => (read_config(path)?, Some(path.clone())),
            None => match find_config() {
                Some(path) => (read_config(&path)?, Some(path)),
                None => (ConfigWire::default(), None),
            },
        };
        let file = config_file.clone().unwrap_or_default();
        let sel = |value: &Option<String>, default: &str| -> Result<Selector> {
            Selector::parse(value.as_deref().unwrap_or(default)).map_err(|detail| Error::Config {
                path: file.clone(),
                detail: format!("bad selector: {detail}"),
            })
        };
        let w = &wire.workloads;
        let pick = |flag: &Option<String>, file: &Option<String>, default: &str| {
            flag.clone()
                .or_else(|| file.clone())
                .unwrap_or_else(|| default.to_string())
        };
        let workloads = Workloads {
            master: Workload {
                name: pick(&over.master, &w.master, "new-api-master"),
                selector: sel(&w.master_selector, "app=new-api,role=master")?,
            },
            slave: Workload {
                name: pick(&over.slave, &w.slave, "new-api-slave"),
                selector: sel(&w.slave_selector, "app=new-api,role=slave")?,
            },
            mysql: Workload {
                name: pick(&over.mysql, &w.mysql, "mysql"),
                selector: sel(&w.mysql_selector, "app=mysql")?,
            },
            redis: Workload {
                name: pick(&over.redis, &w.redis, "redis"),
                selector: sel(&w.redis_selector, "app=redis")?,
            },
        };
        let runbook_dirs = relative_to(config_file.as_deref(), &wire.runbook_dirs);
        let capacity = match wire.capacity.qps_per_pod {
            Some(0) => {
                return Err(Error::Config {
                    path: file.clone(),
                    detail: "[capacity] qps_per_pod: must be at least 1".into(),
                });
            }
            Some(q) => Some(MeasuredCapacity {
                qps_per_pod: q,
                measured: wire.capacity.measured.clone(),
            }),
            None => None,
        };
        let namespace = match (&over.namespace, wire.namespace) {
            (Some(flag), _) => {
                check_namespace(flag)
                    .map_err(|why| Error::Usage(format!("-n/--namespace: {why}")))?;
                flag.clone()
            }
            (None, Some(from_file)) => {
                check_namespace(&from_file).map_err(|why| Error::Config {
                    path: file.clone(),
                    detail: format!("namespace: {why}"),
                })?;
                from_file
            }
            (None, None) => DEFAULT_NAMESPACE.to_string(),
        };
        Ok(Settings {
            kubeconfig: over.kubeconfig.clone(),
            context: over.context.clone(),
            namespace,
            workloads,
            config_file,
            runbook_dirs,
            capacity,
        })
    }
}

/// A namespace name is a DNS-1123 label: 1 to 63 lowercase letters, digits and `-`, starting and
/// ending with a letter or digit. Checked before any call, so that a name can never reach the API
/// server as part of a path or a query (`new-api%2Fpods`, `new-api?watch=true`).
pub fn check_namespace(name: &str) -> std::result::Result<(), String> {
    let shown: String = if name.chars().count() > 70 {
        format!(
            "{}… ({} bytes)",
            name.chars().take(40).collect::<String>(),
            name.len()
        )
    } else {
        format!("{name:?}")
    };
    let why = if name.is_empty() {
        Some("the name is empty".to_string())
    } else if name.len() > 63 {
        Some(format!("{} bytes long; at most 63 are allowed", name.len()))
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(format!(
            "{c:?} is not allowed: only lowercase letters, digits and '-'"
        ))
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("it must start and end with a letter or digit".to_string())
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "{shown} is not a namespace name: {why} (a DNS-1123 label, e.g. new-api)"
        )),
    }
}

/// `paths` with the relative ones taken relative to the directory of `file` (made absolute, so
/// that they mean the same whatever the working directory).
fn relative_to(file: Option<&Path>, paths: &[PathBuf]) -> Vec<PathBuf> {
    let base = file
        .and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    paths
        .iter()
        .map(|p| match &base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.clone(),
        })
        .collect()
}

fn find_config() -> Option<PathBuf> {
    let here = PathBuf::from(CONFIG_FILE);
    if here.is_file() {
        return Some(here);
    }
    let user = dirs::config_dir()?.join("newapi-ops").join(CONFIG_FILE);
    user.is_file().then_some(user)
}

fn read_config(path: &Path) -> Result<ConfigWire> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        detail: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => format!("cannot read it: {e}"),
        },
    })?;
    toml::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        detail: e.to_string().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parses_and_matches() {
        let s = Selector::parse("app=new-api, role=slave").unwrap();
        assert_eq!(s.to_string(), "app=new-api,role=slave");
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("app".to_string(), "new-api".to_string());
        assert!(!s.matches(Some(&labels)));
        labels.insert("role".to_string(), "slave".to_string());
        assert!(s.matches(Some(&labels)));
        assert!(!s.matches(None));
    }

    #[test]
    fn selector_rejects_garbage() {
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("app").is_err());
        assert!(Selector::parse("=x").is_err());
    }

    #[test]
    fn runbook_dirs_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("conf").join(CONFIG_FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            "runbook_dirs = [\"mine\", \"../shared/rb\", \"/srv/runbooks\"]\n",
        )
        .unwrap();
        let over = Overrides {
            config: Some(file.clone()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&over).unwrap();
        let base = std::path::absolute(dir.path().join("conf")).unwrap();
        assert_eq!(
            s.runbook_dirs,
            vec![
                base.join("mine"),
                base.join("../shared/rb"),
                PathBuf::from("/srv/runbooks")
            ]
        );
        // A config file named without a directory is in the working directory.
        let here = std::path::absolute(".").unwrap();
        assert_eq!(
            relative_to(Some(Path::new(CONFIG_FILE)), &[PathBuf::from("rb")]),
            vec![here.join("rb")]
        );
        // Not a list of strings: an error naming the file.
        std::fs::write(&file, "runbook_dirs = \"mine\"\n").unwrap();
        let err = Settings::resolve(&over).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains(CONFIG_FILE), "{err}");
    }

    #[test]
    fn namespaces_are_dns_labels() {
        for ok in ["new-api", "a", "ns1", &"a".repeat(63)] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(10 << 20);
        for bad in [
            "",
            "New-Api",
            "new-api?watch=true",
            "new-api%2Fpods",
            "-x",
            "x-",
            "a/b",
            "名字",
            &long,
        ] {
            let err = check_namespace(bad).unwrap_err();
            assert!(err.contains("not a namespace name"), "{err}");
            assert!(err.len() < 300, "the message stays short: {}", err.len());
        }
        let over = Overrides {
            namespace: Some("new-api?watch=true".into()),
            ..Overrides::default()
        };
        let err = Settings::resolve(&over).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[test]
    fn a_measured_capacity_is_the_default_and_the_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CONFIG_FILE);
        std::fs::write(
            &file,
            "[capacity]\nqps_per_pod = 850\nmeasured = \"2026-12-01 by newapi-ops bench\"\n",
        )
        .unwrap();
        let over = Overrides {
            config: Some(file.clone()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&over).unwrap();
        let (q, from) = s.qps_per_pod(None, 1000);
        assert_eq!(q, 850);
        assert!(
            from.contains("[capacity]") && from.contains("2026-12-01"),
            "{from}"
        );
        assert_eq!(s.qps_per_pod(Some(2000), 1000).0, 2000);
        std::fs::write(&file, "[capacity]\nqps_per_pod = 0\n").unwrap();
        assert!(matches!(
            Settings::resolve(&over),
            Err(Error::Config { .. })
        ));
        std::fs::write(&file, "[capacity]\nqps = 5\n").unwrap();
        assert!(matches!(
            Settings::resolve(&over),
            Err(Error::Config { .. })
        ));
        let none = Settings::resolve(&Overrides {
            config: Some(dir.path().join("missing.toml")),
            ..Overrides::default()
        });
        assert!(none.is_err());
    }

    #[test]
    fn unknown_config_fields_are_rejected() {
        let err = toml::from_str::<ConfigWire>("namespac = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
