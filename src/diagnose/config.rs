//! Configuration checks over the Deployments' pod templates and the namespace's Secrets and
//! ConfigMaps: one master, slaves marked as slaves, SESSION_SECRET / CRYPTO_SECRET set and
//! identical everywhere (compared by fingerprint, never shown), SYNC_FREQUENCY, well-known default
//! passwords, `latest` images, probes, requests and limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

use super::finding::{Component, Finding, Severity};
use crate::envvars::{EnvValue, Sources, resolve};
use crate::inventory::Role;
use crate::units;

/// Passwords that ship in examples and tutorials (the seed's own MySQL uses 123456).
const DEFAULT_PASSWORDS: &[&str] = &[
    "", "123456", "root", "password", "mysql", "admin", "12345678", "new-api", "newapi",
];

/// A workload's pod template as the checks see it.
pub struct Template<'a> {
    pub role: Role,
    pub name: &'a str,
    pub replicas: i32,
    pub spec: &'a PodSpec,
}

fn finding(check: &str, sev: Severity, summary: String) -> Finding {
    Finding::new(Component::Config, check, sev, summary)
}

/// Extracts the password of a Go MySQL DSN `user:password@tcp(host:port)/db?params`.
/// New-API's SYNC_FREQUENCY when a node does not set it, in seconds (`common/init.go`:
/// `GetEnvOrDefault("SYNC_FREQUENCY", 60)`; a value that is not a number falls back to it too).
pub const DEFAULT_SYNC_SECS: u64 = 60;
/// Past this, a slave serves a changed channel (key, weight, disabled) this long after the
/// master: worth saying.
const SLOW_SYNC_SECS: u64 = 300;

/// A slave's SYNC_FREQUENCY judged: unset is New-API's default (60 s, the seed's value) and fine;
/// not a number, 0 (a reload loop against the database) or slower than five minutes is a warning.
fn sync_frequency_finding(value: Option<&EnvValue>) -> Option<Finding> {
    let raw = value.and_then(EnvValue::value)?.expose().trim().to_string();
    let (summary, next) = match raw.parse::<u64>() {
        Err(_) => (
            format!("SYNC_FREQUENCY={raw:?} is not a number of seconds: New-API ignores it and syncs every {DEFAULT_SYNC_SECS} s"),
            format!("set SYNC_FREQUENCY to a number of seconds ({DEFAULT_SYNC_SECS} is the seed's value)"),
        ),
        Ok(0) => (
            "SYNC_FREQUENCY=0: every slave reloads channels and options from the database in a loop".to_string(),
            format!("set SYNC_FREQUENCY={DEFAULT_SYNC_SECS} on the slaves"),
        ),
        Ok(secs) if secs > SLOW_SYNC_SECS => (
            format!("SYNC_FREQUENCY={secs}: slaves pick up a changed channel or option only after {}", units::duration(std::time::Duration::from_secs(secs))),
            format!("set SYNC_FREQUENCY={DEFAULT_SYNC_SECS} on the slaves (the seed's value), unless the database cannot take it"),
        ),
        Ok(_) => return None,
    };
    Some(
        finding("config.sync-frequency", Severity::Warning, summary)
            .evidence(format!("SYNC_FREQUENCY: {raw}"))
            .next(next),
    )
}

pub fn dsn_password(dsn: &str) -> Option<&str> {
    let creds = dsn.rsplit_once('@')?.0;
    Some(creds.split_once(':').map_or("", |(_, p)| p))
}

pub fn check_config(templates: &[Template<'_>], src: &Sources<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let master = templates.iter().find(|t| t.role == Role::Master);
    if let Some(m) = master
        && m.replicas != 1
    {
        out.push(
                finding(
                    "config.master-replicas",
                    Severity::Critical,
                    format!("{} has {} replicas; New-API must run exactly one master", m.name, m.replicas),
                )
                .subject(format!("deployment/{}", m.name))
                .evidence(format!("spec.replicas: {}", m.replicas))
                .next(format!("kubectl scale deployment {} --replicas=1 (scale the slaves instead: newapi-ops scale N)", m.name)),
            );
    }
    // Environment of every New-API container, by workload.
    let mut envs: Vec<(&Template<'_>, BTreeMap<String, EnvValue>)> = Vec::new();
    for t in templates
        .iter()
        .filter(|t| matches!(t.role, Role::Master | Role::Slave))
    {
        if let Some(c) = t.spec.containers.first() {
            envs.push((t, resolve(c, src)));
        }
    }
    for (t, env) in &envs {
        let node_type = env
            .get("NODE_TYPE")
            .and_then(EnvValue::value)
            .map(|v| v.expose().to_string());
        let subject = format!("deployment/{}", t.name);
        match (t.role, node_type.as_deref()) {
            (Role::Slave, Some("slave"))
            | (Role::Master, None | Some("master"))
            | (Role::Mysql | Role::Redis, _) => {}
            (Role::Slave, other) => out.push(
                finding(
                    "config.node-type",
                    Severity::Critical,
                    format!(
                        "{} does not set NODE_TYPE=slave: its pods act as masters",
                        t.name
                    ),
                )
                .subject(subject.clone())
                .evidence(format!("NODE_TYPE: {}", other.unwrap_or("(unset)")))
                .next("set env NODE_TYPE=slave on the slave Deployment"),
            ),
            (_, Some(other)) => out.push(
                finding(
                    "config.node-type",
                    Severity::Critical,
                    format!("the master {} has NODE_TYPE={other}", t.name),
                )
                .subject(subject.clone())
                .evidence(format!("NODE_TYPE: {other}"))
                .next("remove NODE_TYPE from the master (or set it to master)"),
            ),
        }
        if t.role == Role::Slave
            && let Some(f) = sync_frequency_finding(env.get("SYNC_FREQUENCY"))
        {
            out.push(f.subject(subject.clone()));
        }
    }
    for (var, missing_sev, why) in [
        (
            "SESSION_SECRET",
            Severity::Critical,
            "sessions signed on one pod are refused by another (securecookie: the value is not valid)",
        ),
        (
            "CRYPTO_SECRET",
            Severity::Warning,
            "values encrypted on one pod cannot be read on another",
        ),
    ] {
        compare_secret(&envs, var, missing_sev, why, &mut out);
    }
    // Well-known default passwords.
    for (t, env) in &envs {
        if let Some(EnvValue::Set { value, origin }) = env.get("SQL_DSN") {
            if let Some(pw) = dsn_password(value.expose())
                && DEFAULT_PASSWORDS.contains(&pw)
            {
                out.push(
                        finding("config.default-password", Severity::Warning, format!("the MySQL password in SQL_DSN of {} is a well-known default", t.name))
                            .subject(format!("deployment/{}", t.name))
                            .evidence(format!("SQL_DSN from {origin}: password is on the list of default passwords (not shown)"))
                            .next("change the MySQL password and SQL_DSN (seed advice 9: 修改默认密码和 secrets)"),
                    );
            }
            if matches!(
                origin,
                crate::envvars::Origin::ConfigMap(_) | crate::envvars::Origin::Literal
            ) && dsn_password(value.expose()).is_some_and(|p| !p.is_empty())
            {
                out.push(
                    finding("config.dsn-not-secret", Severity::Warning, format!("SQL_DSN of {} carries a password but comes from a {origin}", t.name))
                        .subject(format!("deployment/{}", t.name))
                        .evidence(format!("SQL_DSN from {origin}"))
                        .next("move SQL_DSN into a Secret (ConfigMaps are readable by anyone with view rights)"),
                );
            }
            break;
        }
    }
    for t in templates.iter().filter(|t| t.role == Role::Mysql) {
        if let Some(c) = t.spec.containers.first() {
            let env = resolve(c, src);
            if let Some(EnvValue::Set { value, origin }) = env.get("MYSQL_ROOT_PASSWORD")
                && DEFAULT_PASSWORDS.contains(&value.expose())
            {
                out.push(
                        finding("config.default-password", Severity::Warning, format!("MySQL's root password ({}) is a well-known default", t.name))
                            .subject(format!("deployment/{}", t.name))
                            .evidence(format!("MYSQL_ROOT_PASSWORD from {origin}: on the list of default passwords (not shown)"))
                            .next("change the root password (ALTER USER) and the Secret"),
                    );
            }
        }
    }
    // Images, probes, resources.
    for t in templates {
        for c in &t.spec.containers {
            let image = c.image.clone().unwrap_or_default();
            if !crate::inventory::image_is_pinned(&image) {
                out.push(
                    finding(
                        "config.image-latest",
                        Severity::Warning,
                        format!(
                            "{} runs {image}: `latest` changes under you on every pull",
                            t.name
                        ),
                    )
                    .subject(format!("deployment/{}", t.name))
                    .evidence(format!("container {} image {image}", c.name))
                    .next("pin a version tag (or a digest) so that all pods run the same release"),
                );
            }
            if matches!(t.role, Role::Master | Role::Slave)
                && (c.readiness_probe.is_none() || c.liveness_probe.is_none())
            {
                let missing: Vec<&str> = [
                    ("readiness", c.readiness_probe.is_none()),
                    ("liveness", c.liveness_probe.is_none()),
                ]
                .into_iter()
                .filter_map(|(n, m)| m.then_some(n))
                .collect();
                out.push(
                    finding(
                        "config.probes",
                        Severity::Warning,
                        format!("{} has no {} probe", t.name, missing.join(" or ")),
                    )
                    .subject(format!("deployment/{}", t.name))
                    .evidence(format!(
                        "container {}: {} probe missing",
                        c.name,
                        missing.join(", ")
                    ))
                    .next("add httpGet probes on /api/status port 3000"),
                );
            }
            let r = c.resources.clone().unwrap_or_default();
            let has = |m: &Option<BTreeMap<String, _>>, k: &str| {
                m.as_ref().is_some_and(|m| m.contains_key(k))
            };
            let lacking: Vec<String> = [("requests", &r.requests), ("limits", &r.limits)]
                .into_iter()
                .flat_map(|(what, m)| {
                    ["cpu", "memory"]
                        .into_iter()
                        .filter(move |k| !has(m, k))
                        .map(move |k| format!("{what}.{k}"))
                })
                .collect();
            if !lacking.is_empty() {
                out.push(
                    finding("config.resources", Severity::Warning, format!("{} lacks {}", t.name, lacking.join(", ")))
                        .subject(format!("deployment/{}", t.name))
                        .evidence(format!("container {} resources: {}", c.name, lacking.join(", ")))
                        .next("set requests and limits as in the seed (资源配置) so the scheduler and OOM killer behave predictably"),
                );
            }
        }
    }
    if out.iter().all(|f| f.severity <= Severity::Info) {
        out.push(finding("config.ok", Severity::Ok, "configuration follows the checks (one master, slaves, shared secrets, pinned images, probes, resources)".into()));
    }
    out
}

fn compare_secret(
    envs: &[(&Template<'_>, BTreeMap<String, EnvValue>)],
    var: &str,
    missing_sev: Severity,
    why: &str,
    out: &mut Vec<Finding>,
) {
    let mut prints: Vec<(String, String)> = Vec::new();
    for (t, env) in envs {
        match env.get(var) {
            Some(EnvValue::Set { value, .. }) if !value.expose().is_empty() => {
                prints.push((t.name.to_string(), value.fingerprint()))
            }
            Some(EnvValue::Unreadable(what)) => {
                out.push(
                    finding(
                        &format!("config.{}", var.to_lowercase().replace('_', "-")),
                        Severity::Info,
                        format!("cannot compare {var} of {}: {what}", t.name),
                    )
                    .subject(format!("deployment/{}", t.name)),
                );
                return;
            }
            other => {
                let detail = match other {
                    Some(EnvValue::Missing(m)) => m.clone(),
                    _ => "unset or empty".to_string(),
                };
                out.push(
                    finding(
                        &format!("config.{}", var.to_lowercase().replace('_', "-")),
                        missing_sev,
                        format!("{var} is not set on {}: {why}", t.name),
                    )
                    .subject(format!("deployment/{}", t.name))
                    .evidence(format!("{var}: {detail}"))
                    .next(format!(
                        "set the same {var} on master and slaves, from one Secret"
                    )),
                );
            }
        }
    }
    let first = prints.first().map(|p| p.1.clone());
    if prints.iter().any(|p| Some(&p.1) != first.as_ref()) {
        let mut f = finding(
            &format!("config.{}", var.to_lowercase().replace('_', "-")),
            Severity::Critical,
            format!("{var} differs between the New-API workloads: {why}"),
        );
        for (name, fp) in &prints {
            f = f.evidence(format!("{name}: {var} fingerprint sha256:{fp}"));
        }
        out.push(f.next(format!(
            "use one Secret for {var} on master and slaves, then newapi-ops restart"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_passwords() {
        assert_eq!(
            dsn_password("root:123456@tcp(mysql:3306)/new-api"),
            Some("123456")
        );
        assert_eq!(dsn_password("u:p@ss@tcp(h:1)/d"), Some("p@ss"));
        assert_eq!(dsn_password("root@tcp(h)/d"), Some(""));
        assert_eq!(dsn_password("no-at-sign"), None);
    }

    fn spec(env: serde_json::Value, image: &str) -> PodSpec {
        serde_json::from_value(
            serde_json::json!({"containers": [{"name": "new-api", "image": image, "env": env}]}),
        )
        .unwrap()
    }

    #[test]
    fn differing_session_secrets_are_critical_and_never_shown() {
        let m = spec(
            serde_json::json!([{"name": "SESSION_SECRET", "value": "alpha-secret"}, {"name": "CRYPTO_SECRET", "value": "c"}]),
            "calciumion/new-api:v0.9.0",
        );
        let s = spec(
            serde_json::json!([{"name": "SESSION_SECRET", "value": "beta-secret"}, {"name": "CRYPTO_SECRET", "value": "c"}, {"name": "NODE_TYPE", "value": "slave"}, {"name": "SYNC_FREQUENCY", "value": "60"}]),
            "calciumion/new-api:v0.9.0",
        );
        let templates = [
            Template {
                role: Role::Master,
                name: "new-api-master",
                replicas: 1,
                spec: &m,
            },
            Template {
                role: Role::Slave,
                name: "new-api-slave",
                replicas: 3,
                spec: &s,
            },
        ];
        let out = check_config(
            &templates,
            &Sources {
                secrets: Some(&[]),
                configmaps: Some(&[]),
            },
        );
        let f = out
            .iter()
            .find(|f| f.check == "config.session-secret")
            .expect("finding");
        assert_eq!(f.severity, Severity::Critical);
        let text = serde_json::to_string(&out).unwrap();
        assert!(
            !text.contains("alpha-secret") && !text.contains("beta-secret"),
            "{text}"
        );
        assert!(!out.iter().any(|f| f.check == "config.crypto-secret"));
    }

    #[test]
    fn two_masters_latest_images_and_missing_node_type() {
        let m = spec(serde_json::json!([]), "calciumion/new-api");
        let s = spec(
            serde_json::json!([{"name": "SYNC_FREQUENCY", "value": "3600"}]),
            "calciumion/new-api:latest",
        );
        let templates = [
            Template {
                role: Role::Master,
                name: "m",
                replicas: 2,
                spec: &m,
            },
            Template {
                role: Role::Slave,
                name: "s",
                replicas: 3,
                spec: &s,
            },
        ];
        let out = check_config(
            &templates,
            &Sources {
                secrets: Some(&[]),
                configmaps: Some(&[]),
            },
        );
        let checks: Vec<&str> = out.iter().map(|f| f.check.as_str()).collect();
        for c in [
            "config.master-replicas",
            "config.node-type",
            "config.sync-frequency",
            "config.session-secret",
            "config.image-latest",
            "config.probes",
            "config.resources",
        ] {
            assert!(checks.contains(&c), "{c} missing from {checks:?}");
        }
    }

    #[test]
    fn sync_frequency_unset_is_new_apis_default_and_fine() {
        let judged = |env: serde_json::Value| {
            let s = spec(env, "calciumion/new-api:v0.9.0");
            let templates = [Template {
                role: Role::Slave,
                name: "new-api-slave",
                replicas: 3,
                spec: &s,
            }];
            let src = Sources {
                secrets: Some(&[]),
                configmaps: Some(&[]),
            };
            check_config(&templates, &src)
                .into_iter()
                .find(|f| f.check == "config.sync-frequency")
                .map(|f| f.summary)
        };
        let with = |v: &str| serde_json::json!([{"name": "SYNC_FREQUENCY", "value": v}]);
        assert_eq!(judged(serde_json::json!([])), None);
        assert_eq!(judged(with("60")), None);
        assert_eq!(judged(with("300")), None);
        let slow = judged(with("3600")).expect("3600 s is slow");
        assert!(slow.contains("only after 60 min"), "{slow}");
        let zero = judged(with("0")).expect("0 loops");
        assert!(zero.contains("in a loop"), "{zero}");
        let junk = judged(with("1m")).expect("not a number");
        assert!(
            junk.contains("not a number of seconds") && junk.contains("every 60 s"),
            "{junk}"
        );
    }
}
