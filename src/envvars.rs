//! A container's environment as the kubelet would build it — literal values, `valueFrom`
//! Secret/ConfigMap keys, `envFrom` — resolved from listed Secrets and ConfigMaps. Values are
//! [`Sensitive`]: they never print; they compare and fingerprint.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use sha2::{Digest, Sha256};

/// A value that must not be shown. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(s: impl Into<String>) -> Self {
        Sensitive(s.into())
    }
    /// The value itself, for the few places that must use it (connecting, comparing).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// A short, one-way fingerprint to compare values across pods without showing them.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(<redacted>)")
    }
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Literal,
    Secret(String),
    ConfigMap(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Literal => f.write_str("literal value in the pod template"),
            Origin::Secret(n) => write!(f, "Secret {n}"),
            Origin::ConfigMap(n) => write!(f, "ConfigMap {n}"),
        }
    }
}

/// One resolved variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    Set {
        value: Sensitive,
        origin: Origin,
    },
    /// The Secret/ConfigMap or key does not exist.
    Missing(String),
    /// We may not read it (RBAC) — the value is unknown, not absent.
    Unreadable(String),
}

impl EnvValue {
    pub fn value(&self) -> Option<&Sensitive> {
        match self {
            EnvValue::Set { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Secrets and ConfigMaps of the namespace; `secrets` is None when listing them was denied.
pub struct Sources<'a> {
    pub secrets: Option<&'a [Secret]>,
    pub configmaps: Option<&'a [ConfigMap]>,
}

impl Sources<'_> {
    fn secret(&self, name: &str, key: &str) -> EnvValue {
        let Some(secrets) = self.secrets else {
            return EnvValue::Unreadable(format!("Secret {name} (not allowed to read Secrets)"));
        };
        let Some(s) = secrets
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
        else {
            return EnvValue::Missing(format!("secret \"{name}\" not found"));
        };
        if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
            return EnvValue::Set {
                value: Sensitive::new(String::from_utf8_lossy(&v.0).into_owned()),
                origin: Origin::Secret(name.to_string()),
            };
        }
        if let Some(v) = s.string_data.as_ref().and_then(|d| d.get(key)) {
            return EnvValue::Set {
                value: Sensitive::new(v.clone()),
                origin: Origin::Secret(name.to_string()),
            };
        }
        EnvValue::Missing(format!("couldn't find key {key} in Secret {name}"))
    }

    fn configmap(&self, name: &str, key: &str) -> EnvValue {
        let Some(cms) = self.configmaps else {
            return EnvValue::Unreadable(format!(
                "ConfigMap {name} (not allowed to read ConfigMaps)"
            ));
        };
        let Some(cm) = cms
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
        else {
            return EnvValue::Missing(format!("configmap \"{name}\" not found"));
        };
        match cm.data.as_ref().and_then(|d| d.get(key)) {
            Some(v) => EnvValue::Set {
                value: Sensitive::new(v.clone()),
                origin: Origin::ConfigMap(name.to_string()),
            },
            None => EnvValue::Missing(format!("couldn't find key {key} in ConfigMap {name}")),
        }
    }
}

/// Resolves a container's environment; later definitions win, as in Kubernetes (`env` over
/// `envFrom`).
pub fn resolve(container: &Container, src: &Sources<'_>) -> BTreeMap<String, EnvValue> {
    let mut out = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.secret_ref {
            let name = r.name.as_str();
            match src
                .secrets
                .map(|ss| ss.iter().find(|s| s.metadata.name.as_deref() == Some(name)))
            {
                Some(Some(s)) => {
                    for k in s.data.iter().flat_map(|d| d.keys()) {
                        out.insert(format!("{prefix}{k}"), src.secret(name, k));
                    }
                }
                Some(None) => {}
                None => {
                    out.insert(
                        format!("{prefix}<all keys of Secret {name}>"),
                        src.secret(name, ""),
                    );
                }
            }
        }
        if let Some(r) = &from.config_map_ref {
            let name = r.name.as_str();
            if let Some(Some(cm)) = src
                .configmaps
                .map(|cs| cs.iter().find(|c| c.metadata.name.as_deref() == Some(name)))
            {
                for k in cm.data.iter().flat_map(|d| d.keys()) {
                    out.insert(format!("{prefix}{k}"), src.configmap(name, k));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            EnvValue::Set {
                value: Sensitive::new(v.clone()),
                origin: Origin::Literal,
            }
        } else if let Some(from) = &var.value_from {
            if let Some(r) = &from.secret_key_ref {
                src.secret(&r.name, &r.key)
            } else if let Some(r) = &from.config_map_key_ref {
                src.configmap(&r.name, &r.key)
            } else {
                continue; // fieldRef / resourceFieldRef: not configuration we check
            }
        } else {
            EnvValue::Set {
                value: Sensitive::new(""),
                origin: Origin::Literal,
            }
        };
        out.insert(var.name.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn container(env: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "c", "env": env})).unwrap()
    }

    #[test]
    fn resolves_literals_secrets_and_configmaps_without_showing_them() {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "SESSION_SECRET".to_string(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Default::default()
        };
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("cm".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "SQL_DSN".to_string(),
                "root:pw@tcp(mysql:3306)/new-api".to_string(),
            )])),
            ..Default::default()
        };
        let secrets = [secret];
        let cms = [cm];
        let src = Sources {
            secrets: Some(&secrets),
            configmaps: Some(&cms),
        };
        let c = container(serde_json::json!([
            {"name": "NODE_TYPE", "value": "slave"},
            {"name": "SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "SESSION_SECRET"}}},
            {"name": "SQL_DSN", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "SQL_DSN"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}},
        ]));
        let env = resolve(&c, &src);
        assert_eq!(env["NODE_TYPE"].value().unwrap().expose(), "slave");
        let s = env["SESSION_SECRET"].value().unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.fingerprint().len(), 12);
        assert!(
            matches!(&env["GONE"], EnvValue::Missing(m) if m.contains("couldn't find key nope in Secret s"))
        );

        let denied = Sources {
            secrets: None,
            configmaps: Some(&cms),
        };
        assert!(matches!(
            resolve(&c, &denied)["SESSION_SECRET"],
            EnvValue::Unreadable(_)
        ));
    }
}
