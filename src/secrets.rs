//! Which values of the namespace are secret, for the redactor ([`crate::redact`]): every value
//! of its Secrets (a service account token's namespace and CA certificate aside), and from the
//! environment of its workloads' containers (pod templates and pods, as the kubelet resolves
//! it) the passwords of `SQL_DSN`/`REDIS_CONN_STRING`-like values and the values of variables
//! whose name says secret. The names of its Secrets and ConfigMaps are never secrets.
//!
//! A command reads these once it has connected ([`learn`]), or hands over what it already
//! listed ([`Known::from_objects`]: diagnose lists Secrets and ConfigMaps once, for its own
//! checks too).

use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use kube::api::ListParams;
use regex::Regex;

use crate::config::Settings;
use crate::inventory::Snapshot;
use crate::k8s::Kube;
use crate::redact::{Redactor, Shared};

/// What the namespace holds that is secret, and the names never to mask.
#[derive(Default)]
pub struct Known {
    values: Vec<String>,
    names: Vec<String>,
}

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Known({} values, names {:?})",
            self.values.len(),
            self.names
        )
    }
}

impl Known {
    /// From listed objects (any of them may be missing: a reader may not list Secrets).
    pub fn from_objects(
        namespace: &str,
        secrets: Option<&[Secret]>,
        configmaps: Option<&[ConfigMap]>,
        snapshot: Option<&Snapshot>,
    ) -> Known {
        let mut k = Known::default();
        for s in secrets.into_iter().flatten() {
            k.names.extend(s.metadata.name.clone());
            // A service account's token Secret also holds the namespace's name and the
            // cluster's CA certificate, which are not secrets.
            let sa_token = s.type_.as_deref() == Some("kubernetes.io/service-account-token");
            // Helm's release records are compressed blobs, never printed.
            if s.type_.as_deref() == Some("helm.sh/release.v1") {
                continue;
            }
            for (key, v) in s.data.iter().flatten() {
                if sa_token && key != "token" {
                    continue;
                }
                let v = String::from_utf8_lossy(&v.0);
                if v.trim() != namespace {
                    k.values.push(v.into_owned());
                }
            }
            k.values
                .extend(s.string_data.iter().flat_map(|d| d.values().cloned()));
        }
        k.names.extend(
            configmaps
                .into_iter()
                .flatten()
                .filter_map(|c| c.metadata.name.clone()),
        );
        let Some(snapshot) = snapshot else { return k };
        let src = crate::envvars::Sources {
            secrets,
            configmaps,
        };
        let templates = snapshot
            .deployments
            .iter()
            .filter_map(|d| d.spec.template.spec.as_ref())
            .chain(
                snapshot
                    .statefulsets
                    .iter()
                    .filter_map(|s| s.spec.template.spec.as_ref()),
            )
            .chain(snapshot.pods.iter().filter_map(|p| p.spec.as_ref()));
        for spec in templates {
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                k.learn_env(c, &src);
            }
        }
        k
    }

    fn learn_env(&mut self, c: &Container, src: &crate::envvars::Sources<'_>) {
        static SECRETISH: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
        let secretish = SECRETISH.get_or_init(|| {
            Regex::new(r"(?i)(pass|secret|token|key|dsn|conn|credential)")
                .unwrap_or_else(|e| unreachable!("static regex: {e}"))
        });
        for (name, value) in crate::envvars::resolve(c, src) {
            let Some(v) = value.value() else { continue };
            let v = v.expose();
            if let Ok(ep) = crate::backends::parse_go_dsn(v)
                && let Some(p) = &ep.password
            {
                self.values.push(p.expose().to_string());
            }
            for scheme in ["redis", "mysql"] {
                if let Ok(ep) = crate::backends::parse_url(v, scheme, 0)
                    && let Some(p) = &ep.password
                {
                    self.values.push(p.expose().to_string());
                }
            }
            // A whole DSN is masked by its password; as a value it would hide the host too.
            if secretish.is_match(&name) && !v.contains("://") && !v.contains("@tcp(") {
                self.values.push(v.to_string());
            }
        }
    }

    /// Teaches `shared` these values and names.
    pub fn teach(&self, shared: &Shared) {
        shared.learn(
            self.values.iter().map(String::as_str),
            self.names.iter().map(String::as_str),
        );
    }
}

/// Lists what [`Known::from_objects`] needs (Secrets and ConfigMaps, and the snapshot unless one
/// is given); what may not be listed is left out.
pub async fn read(kube: &Kube, settings: &Settings, snapshot: Option<&Snapshot>) -> Known {
    let ns = settings.namespace.as_str();
    let lp = ListParams::default();
    let loaded = async {
        match snapshot {
            Some(_) => None,
            None => Snapshot::load(kube, settings).await.ok(),
        }
    };
    let (secrets, configmaps, loaded) = tokio::join!(
        kube.list::<Secret>(Some(ns), &lp),
        kube.list::<ConfigMap>(Some(ns), &lp),
        loaded,
    );
    let secrets = secrets.ok().map(|l| l.items);
    let configmaps = configmaps.ok().map(|l| l.items);
    Known::from_objects(
        ns,
        secrets.as_deref(),
        configmaps.as_deref(),
        snapshot.or(loaded.as_ref()),
    )
}

/// Reads the namespace's secrets into `shared` (the printer's redactor); returns a copy of the
/// redactor for what the command writes itself (a transcript, an incident).
pub async fn learn(shared: &Shared, kube: &Kube, settings: &Settings) -> Redactor {
    read(kube, settings, None).await.teach(shared);
    shared.snapshot()
}

/// [`learn`] with the snapshot the command already loaded.
pub async fn learn_with(
    shared: &Shared,
    kube: &Kube,
    settings: &Settings,
    snapshot: &Snapshot,
) -> Redactor {
    read(kube, settings, Some(snapshot)).await.teach(shared);
    shared.snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_from_objects() {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "new-api-secret"},
            "stringData": {"SESSION_SECRET": "s3ssion-secret-value"},
            "data": {"MYSQL_ROOT_PASSWORD": "MTIzNDU2"}
        }))
        .unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "new-api-config"},
            "data": {"SQL_DSN": "root:dsn-password@tcp(mysql:3306)/new-api"}
        }))
        .unwrap();
        let deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "new-api-master"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{
                "name": "new-api",
                "env": [
                    {"name": "SQL_DSN", "valueFrom": {"configMapKeyRef": {"name": "new-api-config", "key": "SQL_DSN"}}},
                    {"name": "CRYPTO_SECRET", "value": "crypto-literal-value"},
                    {"name": "NODE_TYPE", "value": "master"}
                ]
            }]}}}
        }))
        .unwrap();
        let snapshot = Snapshot {
            namespace: "new-api".into(),
            pods: Vec::new(),
            deployments: vec![deployment],
            statefulsets: Vec::new(),
        };
        let k = Known::from_objects(
            "new-api",
            Some(std::slice::from_ref(&secret)),
            Some(std::slice::from_ref(&cm)),
            Some(&snapshot),
        );
        let shared = Shared::new();
        k.teach(&shared);
        let t = shared.text(
            "new-api-secret new-api-config 123456 s3ssion-secret-value dsn-password crypto-literal-value master",
        );
        assert_eq!(t, "new-api-secret new-api-config *** *** *** *** master");
    }
}
