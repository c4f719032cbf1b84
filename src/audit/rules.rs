//! The rules: each a pure function of the [`Facts`], with a stable id, a severity, a section and
//! a description that says what evidence counts. [`evaluate`] runs them all in catalogue order.
//! A rule whose facts could not be read says [`Status::NotChecked`] with the reason.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value as Json;

use super::facts::{Facts, Read};
use super::{Outcome, Section, Severity, Status};
use crate::backends::{Endpoint, parse_go_dsn, parse_url};
use crate::envvars::{EnvValue, Sources, resolve};
use crate::inventory::Role;
use crate::scale::rollout::selector_matches;

/// A rule of the catalogue.
pub struct Rule {
    pub id: &'static str,
    pub section: Section,
    pub severity: Severity,
    pub advice: Option<u8>,
    pub title: &'static str,
    /// What the rule checks and what evidence counts.
    pub description: &'static str,
    check: fn(&Ctx<'_>) -> Verdict,
}

/// What a rule found.
pub struct Verdict {
    status: Status,
    summary: String,
    evidence: Vec<String>,
}

fn pass(summary: impl Into<String>, evidence: Vec<String>) -> Verdict {
    Verdict {
        status: Status::Pass,
        summary: summary.into(),
        evidence,
    }
}

fn fail(summary: impl Into<String>, evidence: Vec<String>) -> Verdict {
    Verdict {
        status: Status::Fail,
        summary: summary.into(),
        evidence,
    }
}

/// A pass with the summary `ok` or a fail with `bad`, on the same evidence.
fn judged(
    passes: bool,
    ok: impl Into<String>,
    bad: impl Into<String>,
    evidence: Vec<String>,
) -> Verdict {
    if passes {
        pass(ok, evidence)
    } else {
        fail(bad, evidence)
    }
}

fn not_checked(why: impl Into<String>) -> Verdict {
    Verdict {
        status: Status::NotChecked,
        summary: format!("not checked: {}", why.into()),
        evidence: Vec::new(),
    }
}

/// Passwords that ship in examples and tutorials (the seed's MySQL uses 123456).
const DEFAULT_PASSWORDS: &[&str] = &[
    "123456", "root", "password", "mysql", "admin", "12345678", "new-api", "newapi", "changeme",
];

/// Headroom kept for administrators, backups and this tool in the pool arithmetic.
pub const ADMIN_HEADROOM: u64 = crate::diagnose::mysql::ADMIN_HEADROOM;

/// Every environment variable New-API reads (the `.env.example`, common/init.go, model/main.go,
/// common/redis.go of QuantumNous/new-api), for the "did you mean" rule.
pub const KNOWN_ENV: &[&str] = &[
    "PORT",
    "FRONTEND_BASE_URL",
    "ENABLE_PPROF",
    "DEBUG",
    "PYROSCOPE_URL",
    "PYROSCOPE_APP_NAME",
    "PYROSCOPE_BASIC_AUTH_USER",
    "PYROSCOPE_BASIC_AUTH_PASSWORD",
    "PYROSCOPE_MUTEX_RATE",
    "PYROSCOPE_BLOCK_RATE",
    "HOSTNAME",
    "STARTUP_RETRY_ATTEMPTS",
    "STARTUP_RETRY_INTERVAL_MS",
    "ERROR_LOG_ENABLED",
    "SQL_DSN",
    "LOG_SQL_DSN",
    "SQLITE_PATH",
    "SQL_MAX_IDLE_CONNS",
    "SQL_MAX_OPEN_CONNS",
    "SQL_MAX_LIFETIME",
    "SQL_SLOW_THRESHOLD_MS",
    "SKIP_64BIT_QUOTA_SCHEMA_CHECK",
    "REDIS_CONN_STRING",
    "REDIS_HA_CONN_STRING",
    "REDIS_MASTER_NAME",
    "REDIS_POOL_SIZE",
    "SYNC_FREQUENCY",
    "MEMORY_CACHE_ENABLED",
    "CHANNEL_UPDATE_FREQUENCY",
    "BATCH_UPDATE_ENABLED",
    "BATCH_UPDATE_INTERVAL",
    "UPDATE_TASK",
    "RELAY_TIMEOUT",
    "RELAY_IDLE_CONN_TIMEOUT",
    "RELAY_MAX_IDLE_CONNS",
    "RELAY_MAX_IDLE_CONNS_PER_HOST",
    "STREAMING_TIMEOUT",
    "TLS_INSECURE_SKIP_VERIFY",
    "TRUSTED_PROXIES",
    "GEMINI_VISION_MAX_IMAGE_NUM",
    "GEMINI_SAFETY_SETTING",
    "COHERE_SAFETY_SETTING",
    "SESSION_SECRET",
    "CRYPTO_SECRET",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_TRUSTED_URL",
    "USER_SESSION_ACTIVE_LIMIT",
    "USER_SESSION_ISSUANCE_LIMIT",
    "USER_SESSION_ISSUANCE_WINDOW_SECONDS",
    "USER_SESSION_REVOKED_RETENTION_DAYS",
    "USER_SESSION_HOURLY_ALERT_THRESHOLD",
    "GENERATE_DEFAULT_TOKEN",
    "GET_MEDIA_TOKEN",
    "GET_MEDIA_TOKEN_NOT_STREAM",
    "DIFY_DEBUG",
    "LINUX_DO_TOKEN_ENDPOINT",
    "LINUX_DO_USER_ENDPOINT",
    "NODE_TYPE",
    "TRUSTED_REDIRECT_DOMAINS",
    "VERSION",
    "POLLING_INTERVAL",
    "GLOBAL_API_RATE_LIMIT_ENABLE",
    "GLOBAL_API_RATE_LIMIT",
    "GLOBAL_API_RATE_LIMIT_DURATION",
    "GLOBAL_WEB_RATE_LIMIT_ENABLE",
    "GLOBAL_WEB_RATE_LIMIT",
    "GLOBAL_WEB_RATE_LIMIT_DURATION",
    "CRITICAL_RATE_LIMIT_ENABLE",
    "CRITICAL_RATE_LIMIT",
    "CRITICAL_RATE_LIMIT_DURATION",
    "SEARCH_RATE_LIMIT_ENABLE",
    "SEARCH_RATE_LIMIT",
    "SEARCH_RATE_LIMIT_DURATION",
    "MAX_FILE_DOWNLOAD_MB",
    "STREAM_SCANNER_MAX_BUFFER_MB",
    "MAX_REQUEST_BODY_MB",
    "FORCE_STREAM_OPTION",
    "AZURE_DEFAULT_API_VERSION",
    "NOTIFY_LIMIT_COUNT",
    "NOTIFICATION_LIMIT_DURATION_MINUTE",
    "TASK_QUERY_LIMIT",
    "TASK_TIMEOUT_MINUTES",
    "TASK_PRICE_PATCH",
    "CountToken",
];

/// The catalogue, in report order.
pub const RULES: &[Rule] = &[
    Rule {
        id: "advice.external-database",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(1),
        title: "1. Database outside the cluster (RDS, CloudSQL)",
        description: "SQL_DSN of the master names a host outside the cluster (a dotted name, or an ExternalName Service). A Service name of this namespace, or no SQL_DSN at all (SQLite in the pod), fails.",
        check: external_database,
    },
    Rule {
        id: "advice.redis-ha",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(2),
        title: "2. Redis cluster or managed service",
        description: "REDIS_HA_CONN_STRING (Sentinel or Cluster addresses, New-API's HA client) is set, or REDIS_CONN_STRING names a host outside the cluster (a managed Redis). One in-cluster Redis URL fails.",
        check: redis_ha,
    },
    Rule {
        id: "advice.hpa",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(3),
        title: "3. HorizontalPodAutoscaler for the slaves",
        description: "An HPA whose scaleTargetRef is the slave Deployment.",
        check: hpa,
    },
    Rule {
        id: "advice.pdb",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(4),
        title: "4. PodDisruptionBudgets for slaves and master",
        description: "A PodDisruptionBudget whose selector matches the slave pods, and one matching the master pod.",
        check: pdb,
    },
    Rule {
        id: "advice.ingress",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(5),
        title: "5. Ingress rather than NodePort",
        description: "An Ingress routes to a Service of the New-API pods. NodePorts still open are listed as evidence.",
        check: ingress,
    },
    Rule {
        id: "advice.monitoring",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(6),
        title: "6. Monitoring and alerts (Prometheus)",
        description: "A ServiceMonitor or PodMonitor selecting New-API (or a prometheus.io/scrape annotation on its pods or Service) and a PrometheusRule in the namespace. Without the Prometheus Operator's API (monitoring.coreos.com) the rule is not checked: a Prometheus configured by hand is not visible through the API.",
        check: monitoring,
    },
    Rule {
        id: "advice.scheduled-backups",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(7),
        title: "7. Scheduled database backups",
        description: "A CronJob of the namespace, not suspended, that backs up (its name says backup, or its pod runs newapi-ops backup, mysqldump, mariadb-dump, mydumper, xtrabackup or mariabackup).",
        check: scheduled_backups,
    },
    Rule {
        id: "advice.network-policy",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(8),
        title: "8. NetworkPolicy around MySQL and Redis",
        description: "Every in-cluster MySQL and Redis pod is selected by a NetworkPolicy of type Ingress whose rules name their sources (no rule open to every pod).",
        check: network_policy,
    },
    Rule {
        id: "advice.default-secrets",
        section: Section::Advice,
        severity: Severity::Critical,
        advice: Some(9),
        title: "9. Default passwords and secrets changed",
        description: "No well-known password in SQL_DSN or MYSQL_ROOT_PASSWORD; SESSION_SECRET and CRYPTO_SECRET not placeholders (random_string, change-me, example, shorter than 16 characters); SQL_DSN's password in a Secret, not a ConfigMap or the pod template. Values are compared, never shown.",
        check: default_secrets,
    },
    Rule {
        id: "advice.log-aggregation",
        section: Section::Advice,
        severity: Severity::Warning,
        advice: Some(10),
        title: "10. Log aggregation (EFK/ELK)",
        description: "A DaemonSet in any namespace whose name or image is a log shipper: Fluent Bit, Fluentd, Filebeat, Logstash, Vector, Promtail, Grafana Alloy/Agent, the OpenTelemetry Collector, Datadog, Splunk or Elastic Agent.",
        check: log_aggregation,
    },
    Rule {
        id: "newapi.one-master",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "Exactly one master",
        description: "The master Deployment has one replica and every other New-API workload sets NODE_TYPE=slave (New-API treats every other value as master).",
        check: one_master,
    },
    Rule {
        id: "newapi.node-type",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "NODE_TYPE values",
        description: "NODE_TYPE is `slave` on the slaves and unset or `master` on the master; anything else (`Slave`, `slaves`) makes a master.",
        check: node_type,
    },
    Rule {
        id: "newapi.secrets-set",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "SESSION_SECRET and CRYPTO_SECRET set",
        description: "On every New-API workload at least one of SESSION_SECRET and CRYPTO_SECRET is set and neither is `random_string`: otherwise New-API refuses to start. One unset falls back to the other (noted).",
        check: secrets_set,
    },
    Rule {
        id: "newapi.secrets-identical",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "Secrets identical on every pod",
        description: "The effective SESSION_SECRET and CRYPTO_SECRET (after New-API's fallback of one to the other) have the same SHA-256 fingerprint on every New-API pod (the templates when no pod runs); sessions and encrypted values are refused across pods otherwise.",
        check: secrets_identical,
    },
    Rule {
        id: "newapi.redis-when-scaled",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "Redis configured for more than one pod",
        description: "With more than one New-API pod (replicas, or the HPA's maximum), every New-API workload sets REDIS_CONN_STRING or REDIS_HA_CONN_STRING: without Redis the pods do not share caches, rate limits or sessions.",
        check: redis_when_scaled,
    },
    Rule {
        id: "newapi.sql-pool",
        section: Section::Newapi,
        severity: Severity::Critical,
        advice: None,
        title: "Connection pools fit max_connections",
        description: "Σ pods × SQL_MAX_OPEN_CONNS (default 1000; pods: replicas, or the HPA's maximum) plus 10 for administrators fits MySQL's max_connections: the --max-connections argument of the MySQL container when set, else the live value.",
        check: sql_pool,
    },
    Rule {
        id: "newapi.sql-lifetime",
        section: Section::Newapi,
        severity: Severity::Warning,
        advice: None,
        title: "SQL_MAX_LIFETIME in seconds",
        description: "SQL_MAX_LIFETIME is a whole number of seconds (New-API falls back to 60 otherwise), below an hour (a larger value is most likely milliseconds) and below MySQL's wait_timeout.",
        check: sql_lifetime,
    },
    Rule {
        id: "newapi.env-names",
        section: Section::Newapi,
        severity: Severity::Warning,
        advice: None,
        title: "Environment variable names",
        description: "No variable of a New-API container is a near miss (edit distance ≤ 2, or another case) of a variable New-API reads: a typo is silently ignored.",
        check: env_names,
    },
    Rule {
        id: "kube.probes",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "Readiness and liveness probes",
        description: "Every container of the master, slaves, MySQL and Redis has a readiness and a liveness probe.",
        check: probes,
    },
    Rule {
        id: "kube.resources",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "Requests and limits",
        description: "Every container of the deployment requests and limits CPU and memory.",
        check: resources,
    },
    Rule {
        id: "kube.image-tags",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "Pinned images",
        description: "No image is untagged or `latest` (a digest counts as pinned).",
        check: image_tags,
    },
    Rule {
        id: "kube.run-as-non-root",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "runAsNonRoot",
        description: "Every container runs with runAsNonRoot: true (pod or container securityContext) or a non-zero runAsUser.",
        check: run_as_non_root,
    },
    Rule {
        id: "kube.mysql-pvc",
        section: Section::Kubernetes,
        severity: Severity::Critical,
        advice: None,
        title: "MySQL data on a PersistentVolumeClaim",
        description: "An in-cluster MySQL keeps /var/lib/mysql on a PVC (a claim volume or a StatefulSet volumeClaimTemplate) that is Bound.",
        check: mysql_pvc,
    },
    Rule {
        id: "kube.backend-replicas",
        section: Section::Kubernetes,
        severity: Severity::Info,
        advice: None,
        title: "MySQL and Redis not single replicas",
        description: "An in-cluster MySQL or Redis with one replica is a single point of failure (advice 1 and 2 say where to move them).",
        check: backend_replicas,
    },
    Rule {
        id: "kube.slave-spread",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "Slaves spread across nodes",
        description: "With more than one slave, the slave template has a podAntiAffinity or topologySpreadConstraints, so that one node does not take every slave with it.",
        check: slave_spread,
    },
    Rule {
        id: "kube.redis-maxmemory",
        section: Section::Kubernetes,
        severity: Severity::Warning,
        advice: None,
        title: "Redis maxmemory below its memory limit",
        description: "An in-cluster Redis has maxmemory set (the --maxmemory argument, else the live value) and below its container's memory limit, so that it evicts keys instead of being OOMKilled.",
        check: redis_maxmemory,
    },
    Rule {
        id: "backup.recent",
        section: Section::Backups,
        severity: Severity::Warning,
        advice: None,
        title: "A recent backup",
        description: "The newest backup — a successful Job of a backup CronJob, or a complete backup in the local store (--backup-dir) — is younger than --backup-max-age.",
        check: backup_recent,
    },
    Rule {
        id: "backup.verified",
        section: Section::Backups,
        severity: Severity::Warning,
        advice: None,
        title: "The newest backup verified",
        description: "The newest backup of the local store passed `newapi-ops backup verify` (files or restore test).",
        check: backup_verified,
    },
    Rule {
        id: "backup.offsite",
        section: Section::Backups,
        severity: Severity::Warning,
        advice: None,
        title: "A copy off the cluster",
        description: "newapi-ops runs outside the cluster and its local store holds a backup younger than --backup-max-age (a PVC in the cluster is no copy off it). Inside a pod this is not checked.",
        check: backup_offsite,
    },
];

/// Runs every rule.
pub fn evaluate(facts: &Facts) -> Vec<Outcome> {
    let ctx = Ctx::new(facts);
    RULES
        .iter()
        .map(|r| {
            let v = (r.check)(&ctx);
            Outcome {
                id: r.id,
                section: r.section,
                severity: r.severity,
                advice: r.advice,
                title: r.title,
                status: v.status,
                summary: v.summary,
                evidence: v.evidence,
                fix: None,
            }
        })
        .collect()
}

/// A workload of the deployment as the rules see it.
pub struct Workload<'a> {
    pub role: Role,
    pub kind: &'static str,
    pub name: &'a str,
    pub replicas: i32,
    pub labels: BTreeMap<String, String>,
    pub spec: &'a PodSpec,
    /// StatefulSet volumeClaimTemplates by name.
    pub claim_templates: Vec<String>,
}

impl<'a> Workload<'a> {
    /// The workload of a controller's pod template; None when the template has no spec.
    fn of(
        role: Role,
        kind: &'static str,
        name: &'a str,
        replicas: Option<i32>,
        template: &'a PodTemplateSpec,
    ) -> Option<Workload<'a>> {
        Some(Workload {
            role,
            kind,
            name,
            replicas: replicas.unwrap_or(1),
            labels: template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default(),
            spec: template.spec.as_ref()?,
            claim_templates: Vec::new(),
        })
    }

    pub fn subject(&self) -> String {
        format!("{}/{}", self.kind.to_lowercase(), self.name)
    }
}

/// The facts with the workloads found.
pub struct Ctx<'a> {
    pub f: &'a Facts,
    pub workloads: Vec<Workload<'a>>,
}

impl<'a> Ctx<'a> {
    pub fn new(f: &'a Facts) -> Ctx<'a> {
        let mut workloads = Vec::new();
        for role in Role::ALL {
            let name = role.workload(&f.settings).name.as_str();
            let named = |m: &ObjectMeta| m.name.as_deref() == Some(name);
            let found = f
                .snapshot
                .deployments
                .iter()
                .find(|d| named(&d.metadata))
                .and_then(|d| {
                    Workload::of(role, "Deployment", name, d.spec.replicas, &d.spec.template)
                })
                .or_else(|| {
                    let s = f
                        .snapshot
                        .statefulsets
                        .iter()
                        .find(|s| named(&s.metadata))?;
                    let mut w =
                        Workload::of(role, "StatefulSet", name, s.spec.replicas, &s.spec.template)?;
                    w.claim_templates = s
                        .spec
                        .volume_claim_templates
                        .iter()
                        .flatten()
                        .filter_map(|c| c.metadata.name.clone())
                        .collect();
                    Some(w)
                });
            workloads.extend(found);
        }
        Ctx { f, workloads }
    }

    pub fn workload(&self, role: Role) -> Option<&Workload<'a>> {
        self.workloads.iter().find(|w| w.role == role)
    }

    pub fn newapi(&self) -> impl Iterator<Item = &Workload<'a>> {
        self.workloads
            .iter()
            .filter(|w| matches!(w.role, Role::Master | Role::Slave))
    }

    pub fn sources(&self) -> Sources<'a> {
        Sources {
            secrets: self.f.secrets.got().map(Vec::as_slice),
            configmaps: self.f.configmaps.got().map(Vec::as_slice),
        }
    }

    /// The resolved environment of a workload's first container.
    pub fn env(&self, w: &Workload<'_>) -> BTreeMap<String, EnvValue> {
        w.spec
            .containers
            .first()
            .map(|c| resolve(c, &self.sources()))
            .unwrap_or_default()
    }

    /// The HPA of the slaves: (name, min, max).
    pub fn slave_hpa(&self) -> Option<(String, i64, i64)> {
        let slave = &self.f.settings.workloads.slave.name;
        self.f.hpas.got()?.iter().find_map(|h| {
            let t = &h["spec"]["scaleTargetRef"];
            (t["kind"] == "Deployment" && t["name"].as_str() == Some(slave)).then(|| {
                (
                    h["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    h["spec"]["minReplicas"].as_i64().unwrap_or(1),
                    h["spec"]["maxReplicas"].as_i64().unwrap_or(1),
                )
            })
        })
    }

    /// The most New-API pods there may be: the master's replicas and the slaves' (or their
    /// HPA's maximum, or `planned_max` when a fix is about to add one).
    pub fn pods_max(&self, planned_max: Option<i64>) -> (i64, String) {
        let master = self
            .workload(Role::Master)
            .map_or(0, |w| i64::from(w.replicas));
        let slaves = self
            .workload(Role::Slave)
            .map_or(0, |w| i64::from(w.replicas));
        let hpa = self.slave_hpa().map(|h| h.2).or(planned_max);
        let (n, how) = match hpa {
            Some(max) if max > slaves => (max, format!("HPA maximum {max}")),
            _ => (slaves, format!("{slaves} replicas")),
        };
        (
            master + n,
            format!("{} (master {master} + slaves {how})", master + n),
        )
    }

    /// The template labels of a role's pods.
    fn labels(&self, role: Role) -> Option<&BTreeMap<String, String>> {
        self.workload(role).map(|w| &w.labels)
    }
}

fn set_value<'e>(env: &'e BTreeMap<String, EnvValue>, var: &str) -> Option<&'e str> {
    env.get(var)
        .and_then(EnvValue::value)
        .map(|v| v.expose().trim())
        .filter(|v| !v.is_empty())
}

fn unreadable<'e>(env: &'e BTreeMap<String, EnvValue>, var: &str) -> Option<&'e str> {
    match env.get(var) {
        Some(EnvValue::Unreadable(why)) => Some(why.as_str()),
        _ => None,
    }
}

/// A Service of this namespace that is an ExternalName for `host`.
fn external_name(f: &Facts, host: &str) -> Option<String> {
    let short = host.split('.').next().unwrap_or(host);
    f.services.got()?.iter().find_map(|s| {
        let spec = s.spec.as_ref()?;
        (s.metadata.name.as_deref() == Some(short) && spec.type_.as_deref() == Some("ExternalName"))
            .then(|| spec.external_name.clone().unwrap_or_default())
    })
}

fn master_env(ctx: &Ctx<'_>) -> Option<BTreeMap<String, EnvValue>> {
    ctx.workload(Role::Master).map(|w| ctx.env(w))
}

fn external_database(ctx: &Ctx<'_>) -> Verdict {
    let Some(env) = master_env(ctx) else {
        return not_checked("no master workload to read SQL_DSN from");
    };
    if let Some(why) = unreadable(&env, "SQL_DSN") {
        return not_checked(format!("SQL_DSN: {why}"));
    }
    let Some(dsn) = set_value(&env, "SQL_DSN") else {
        return fail(
            "SQL_DSN is not set: New-API keeps its data in SQLite inside the pod",
            vec!["SQL_DSN: unset on the master".into()],
        );
    };
    let ep = match parse_go_dsn(dsn) {
        Ok(ep) => ep,
        Err(e) => return fail(format!("SQL_DSN does not parse: {e}"), Vec::new()),
    };
    where_it_runs(
        ctx,
        ("SQL_DSN", &ep, Role::Mysql),
        format!(
            "MySQL runs in the cluster (host `{}`): use a managed database cluster (RDS, CloudSQL)",
            ep.host
        ),
        "MySQL is outside the cluster",
    )
}

/// Where a backend runs: a host outside the cluster (or an ExternalName Service) passes, a
/// Service of the cluster fails with `inside`.
fn where_it_runs(
    ctx: &Ctx<'_>,
    (var, ep, role): (&str, &Endpoint, Role),
    inside: String,
    outside: &str,
) -> Verdict {
    let mut evidence = vec![format!("{var} host: {}:{}", ep.host, ep.port)];
    if let Some(ext) = external_name(ctx.f, &ep.host) {
        evidence.push(format!("Service {} is an ExternalName for {ext}", ep.host));
        return pass(format!("{outside} ({ext})"), evidence);
    }
    if ep.in_cluster_host() {
        if let Some(w) = ctx.workload(role) {
            evidence.push(format!("{} runs {} replica(s)", w.subject(), w.replicas));
        }
        return fail(inside, evidence);
    }
    pass(format!("{outside} ({})", ep.host), evidence)
}

fn redis_ha(ctx: &Ctx<'_>) -> Verdict {
    let Some(env) = master_env(ctx) else {
        return not_checked("no master workload to read REDIS_CONN_STRING from");
    };
    for var in ["REDIS_HA_CONN_STRING", "REDIS_CONN_STRING"] {
        if let Some(why) = unreadable(&env, var) {
            return not_checked(format!("{var}: {why}"));
        }
    }
    if let Some(ha) = set_value(&env, "REDIS_HA_CONN_STRING") {
        let n = ha.split(',').filter(|a| !a.trim().is_empty()).count();
        let master = set_value(&env, "REDIS_MASTER_NAME");
        return pass(
            format!(
                "Redis through New-API's HA client ({})",
                crate::units::plural(n, "address", "addresses")
            ),
            vec![format!(
                "REDIS_HA_CONN_STRING: {n} address(es); REDIS_MASTER_NAME: {}",
                master.map_or("(unset: Redis Cluster)", |_| "set (Sentinel)")
            )],
        );
    }
    let Some(url) = set_value(&env, "REDIS_CONN_STRING") else {
        return fail(
            "neither REDIS_CONN_STRING nor REDIS_HA_CONN_STRING is set: no Redis at all",
            vec!["REDIS_CONN_STRING, REDIS_HA_CONN_STRING: unset on the master".into()],
        );
    };
    let ep = match parse_url(url, "redis", 6379) {
        Ok(ep) => ep,
        Err(e) => return fail(format!("REDIS_CONN_STRING does not parse: {e}"), Vec::new()),
    };
    where_it_runs(
        ctx,
        ("REDIS_CONN_STRING", &ep, Role::Redis),
        format!(
            "one in-cluster Redis (host `{}`): use a managed Redis or Sentinel (REDIS_HA_CONN_STRING)",
            ep.host
        ),
        "Redis is a managed service",
    )
}

fn hpa(ctx: &Ctx<'_>) -> Verdict {
    if let Read::NotChecked(why) = &ctx.f.hpas {
        return not_checked(why.clone());
    }
    let slave = &ctx.f.settings.workloads.slave.name;
    if ctx.workload(Role::Slave).is_none() {
        return not_checked(format!("no slave workload {slave}"));
    }
    match ctx.slave_hpa() {
        Some((name, min, max)) => pass(
            format!("HPA {name} scales {slave} between {min} and {max}"),
            vec![format!(
                "horizontalpodautoscaler/{name}: min {min}, max {max}"
            )],
        ),
        None => fail(
            format!("no HorizontalPodAutoscaler targets deployment/{slave}"),
            vec![format!(
                "{} HPA(s) in the namespace, none for {slave}",
                ctx.f.hpas.got().map_or(0, Vec::len)
            )],
        ),
    }
}

fn selector_of(v: &Json) -> Option<LabelSelector> {
    serde_json::from_value(v.clone()).ok()
}

/// The PDBs (names) whose selector matches a role's pod template.
fn pdbs_for(ctx: &Ctx<'_>, role: Role) -> Vec<String> {
    let Some(labels) = ctx.labels(role) else {
        return Vec::new();
    };
    ctx.f
        .pdbs
        .got()
        .into_iter()
        .flatten()
        .filter(|p| {
            selector_of(&p["spec"]["selector"]).is_some_and(|s| selector_matches(&s, Some(labels)))
        })
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn pdb(ctx: &Ctx<'_>) -> Verdict {
    if let Read::NotChecked(why) = &ctx.f.pdbs {
        return not_checked(why.clone());
    }
    let mut missing = Vec::new();
    let mut evidence = Vec::new();
    for role in [Role::Slave, Role::Master] {
        let Some(w) = ctx.workload(role) else {
            continue;
        };
        let found = pdbs_for(ctx, role);
        if found.is_empty() {
            missing.push(w.name.to_string());
            evidence.push(format!(
                "{}: no PodDisruptionBudget selects its pods",
                w.subject()
            ));
        } else {
            evidence.push(format!("{}: {}", w.subject(), found.join(", ")));
        }
    }
    if missing.is_empty() {
        pass("slaves and master have PodDisruptionBudgets", evidence)
    } else {
        fail(
            format!(
                "no PodDisruptionBudget for {}: a node drain may take them all at once",
                missing.join(" and ")
            ),
            evidence,
        )
    }
}

/// The Services whose selector picks New-API pods.
pub fn newapi_services<'a>(ctx: &Ctx<'a>) -> Vec<&'a k8s_openapi::api::core::v1::Service> {
    let labels: Vec<&BTreeMap<String, String>> = ctx.newapi().map(|w| &w.labels).collect();
    ctx.f
        .services
        .got()
        .into_iter()
        .flatten()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .is_some_and(|sel| {
                    !sel.is_empty()
                        && labels
                            .iter()
                            .any(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)))
                })
        })
        .collect()
}

/// The Services an Ingress sends traffic to (networking.k8s.io/v1 and v1beta1 shapes).
pub fn ingress_backends(ing: &Json) -> Vec<String> {
    let mut out = Vec::new();
    let mut backend = |b: &Json| {
        if let Some(n) = b["service"]["name"].as_str().or(b["serviceName"].as_str()) {
            out.push(n.to_string());
        }
    };
    backend(&ing["spec"]["defaultBackend"]);
    backend(&ing["spec"]["backend"]);
    for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
        for path in rule["http"]["paths"].as_array().into_iter().flatten() {
            backend(&path["backend"]);
        }
    }
    out
}

fn ingress(ctx: &Ctx<'_>) -> Verdict {
    for r in [&ctx.f.ingresses.why(), &ctx.f.services.why()] {
        if !r.is_empty() {
            return not_checked(r.to_string());
        }
    }
    let services = newapi_services(ctx);
    let mut evidence = Vec::new();
    for s in &services {
        let spec = s.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("NodePort")
            || spec.type_.as_deref() == Some("LoadBalancer")
        {
            let ports: Vec<String> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port.map(|n| n.to_string()))
                .collect();
            evidence.push(format!(
                "service/{} is {} (node port {})",
                s.metadata.name.as_deref().unwrap_or_default(),
                spec.type_.as_deref().unwrap_or_default(),
                ports.join(", ")
            ));
        }
    }
    let names: Vec<&str> = services
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    let routed: Vec<String> = ctx
        .f
        .ingresses
        .got()
        .into_iter()
        .flatten()
        .filter(|i| {
            ingress_backends(i)
                .iter()
                .any(|b| names.contains(&b.as_str()))
        })
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if routed.is_empty() {
        if names.is_empty() {
            evidence.push("no Service selects the New-API pods".into());
        }
        fail(
            "no Ingress routes to New-API: it is reached through a NodePort (or not at all)",
            evidence,
        )
    } else {
        evidence.insert(
            0,
            format!("ingress/{} → {}", routed.join(", "), names.join(", ")),
        );
        pass(
            format!("Ingress {} routes to New-API", routed.join(", ")),
            evidence,
        )
    }
}

fn scrape_annotated(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let on = |m: Option<&BTreeMap<String, String>>| {
        m.and_then(|a| a.get("prometheus.io/scrape"))
            .is_some_and(|v| v == "true")
    };
    for d in &ctx.f.snapshot.deployments {
        let name = d.metadata.name.as_deref().unwrap_or_default();
        if ctx.newapi().any(|w| w.name == name)
            && on(d
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref()))
        {
            out.push(format!("deployment/{name}: prometheus.io/scrape=true"));
        }
    }
    for s in newapi_services(ctx) {
        if on(s.metadata.annotations.as_ref()) {
            out.push(format!(
                "service/{}: prometheus.io/scrape=true",
                s.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }
    out
}

fn monitoring(ctx: &Ctx<'_>) -> Verdict {
    let annotated = scrape_annotated(ctx);
    let (Read::Got(monitors), Read::Got(rules)) = (&ctx.f.monitors, &ctx.f.prometheus_rules) else {
        let why = [ctx.f.monitors.why(), ctx.f.prometheus_rules.why()]
            .into_iter()
            .find(|w| !w.is_empty())
            .unwrap_or_default()
            .to_string();
        let mut v = not_checked(why);
        v.evidence = annotated;
        return v;
    };
    let mut evidence = annotated.clone();
    let pod_labels: Vec<&BTreeMap<String, String>> = ctx.newapi().map(|w| &w.labels).collect();
    let svc_labels: Vec<BTreeMap<String, String>> = newapi_services(ctx)
        .iter()
        .map(|s| s.metadata.labels.clone().unwrap_or_default())
        .collect();
    let selecting: Vec<String> = monitors
        .iter()
        .filter(|m| {
            let Some(sel) = selector_of(&m["spec"]["selector"]) else {
                return false;
            };
            if m["kind"] == "PodMonitor" {
                pod_labels.iter().any(|l| selector_matches(&sel, Some(l)))
            } else {
                svc_labels.iter().any(|l| selector_matches(&sel, Some(l)))
            }
        })
        .map(|m| {
            format!(
                "{}/{}",
                m["kind"].as_str().unwrap_or_default().to_lowercase(),
                m["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    evidence.extend(selecting.iter().cloned());
    evidence.push(format!(
        "{} PrometheusRule(s) in the namespace",
        rules.len()
    ));
    let scraped = !selecting.is_empty() || !annotated.is_empty();
    match (scraped, rules.is_empty()) {
        (true, false) => pass("New-API is scraped and alerts are defined", evidence),
        (false, _) => fail(
            "nothing scrapes New-API (no ServiceMonitor/PodMonitor selects it, no scrape annotation)",
            evidence,
        ),
        (true, true) => fail(
            "New-API is scraped but no PrometheusRule defines alerts",
            evidence,
        ),
    }
}

/// Whether a CronJob (JSON) backs up a database.
pub fn is_backup_cronjob(cj: &Json) -> bool {
    let re =
        regex::Regex::new(r"(?i)(backup|mysqldump|mariadb-dump|mydumper|xtrabackup|mariabackup)")
            .unwrap_or_else(|e| unreachable!("static regex: {e}"));
    let name = cj["metadata"]["name"].as_str().unwrap_or_default();
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let containers = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["initContainers"].as_array().into_iter().flatten());
    re.is_match(name)
        || containers.into_iter().any(|c| {
            let mut words = vec![c["image"].as_str().unwrap_or_default().to_string()];
            for key in ["command", "args"] {
                for w in c[key].as_array().into_iter().flatten() {
                    words.push(w.as_str().unwrap_or_default().to_string());
                }
            }
            words.iter().any(|w| re.is_match(w))
        })
}

fn scheduled_backups(ctx: &Ctx<'_>) -> Verdict {
    let Read::Got(cronjobs) = &ctx.f.cronjobs else {
        return not_checked(ctx.f.cronjobs.why().to_string());
    };
    let backups: Vec<&Json> = cronjobs.iter().filter(|c| is_backup_cronjob(c)).collect();
    let evidence: Vec<String> = backups
        .iter()
        .map(|c| {
            format!(
                "cronjob/{} \"{}\"{}",
                c["metadata"]["name"].as_str().unwrap_or_default(),
                c["spec"]["schedule"].as_str().unwrap_or_default(),
                if c["spec"]["suspend"] == true {
                    " (suspended)"
                } else {
                    ""
                }
            )
        })
        .collect();
    if backups.iter().any(|c| c["spec"]["suspend"] != true) {
        pass("database backups are scheduled", evidence)
    } else if backups.is_empty() {
        fail(
            format!(
                "no backup CronJob in the namespace ({} CronJob(s) in all)",
                cronjobs.len()
            ),
            evidence,
        )
    } else {
        fail("every backup CronJob is suspended", evidence)
    }
}

fn ports_of(w: &Workload<'_>) -> Vec<i32> {
    w.spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten().map(|p| p.container_port))
        .collect()
}

fn network_policy(ctx: &Ctx<'_>) -> Verdict {
    let Read::Got(policies) = &ctx.f.network_policies else {
        return not_checked(ctx.f.network_policies.why().to_string());
    };
    let mut open = Vec::new();
    let mut evidence = Vec::new();
    let mut any = false;
    for role in [Role::Mysql, Role::Redis] {
        let Some(w) = ctx.workload(role) else {
            evidence.push(format!("{}: not in the cluster", role.as_str()));
            continue;
        };
        any = true;
        let selecting: Vec<_> = policies
            .iter()
            .filter(|p| {
                let spec = p.spec.clone().unwrap_or_default();
                let ingress_type = spec
                    .policy_types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|t| t == "Ingress"));
                ingress_type
                    && selector_matches(&spec.pod_selector.unwrap_or_default(), Some(&w.labels))
            })
            .collect();
        if selecting.is_empty() {
            open.push(w.name.to_string());
            evidence.push(format!(
                "{} (ports {:?}): no NetworkPolicy selects its pods: every pod may reach it",
                w.subject(),
                ports_of(w)
            ));
            continue;
        }
        let wide: Vec<String> = selecting
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.ingress.as_ref())
                    .is_some_and(|rules| {
                        rules
                            .iter()
                            .any(|r| r.from.as_ref().is_none_or(Vec::is_empty))
                    })
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let names: Vec<String> = selecting
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if wide.is_empty() {
            evidence.push(format!("{}: {}", w.subject(), names.join(", ")));
        } else {
            open.push(w.name.to_string());
            evidence.push(format!(
                "{}: {} allow(s) every source (an ingress rule without `from`)",
                w.subject(),
                wide.join(", ")
            ));
        }
    }
    if !any {
        return pass("MySQL and Redis run outside the cluster", evidence);
    }
    judged(
        open.is_empty(),
        "MySQL and Redis accept only the sources their NetworkPolicies name",
        format!(
            "{} reachable from every pod of the cluster",
            open.join(" and ")
        ),
        evidence,
    )
}

/// Whether a secret value looks like a placeholder.
fn placeholder(v: &str) -> Option<&'static str> {
    let l = v.to_lowercase();
    if l == "random_string" {
        Some("New-API's documented placeholder random_string")
    } else if [
        "change-me",
        "changeme",
        "change_me",
        "example",
        "your-",
        "your_",
        "placeholder",
    ]
    .iter()
    .any(|p| l.contains(p))
    {
        Some("a placeholder (change-me, example, your-…)")
    } else if DEFAULT_PASSWORDS.contains(&l.as_str()) {
        Some("a well-known password")
    } else if v.chars().count() < 16 {
        Some("shorter than 16 characters")
    } else {
        None
    }
}

fn default_secrets(ctx: &Ctx<'_>) -> Verdict {
    let mut bad = Vec::new();
    let mut unread = Vec::new();
    let mut evidence = Vec::new();
    for w in ctx.newapi() {
        let env = ctx.env(w);
        match env.get("SQL_DSN") {
            Some(EnvValue::Set { value, origin }) => {
                if let Some(pw) = crate::diagnose::config::dsn_password(value.expose()) {
                    if DEFAULT_PASSWORDS.contains(&pw) || pw.is_empty() {
                        bad.push(format!(
                            "{}: the MySQL password in SQL_DSN ({origin}) is {}",
                            w.subject(),
                            if pw.is_empty() {
                                "empty"
                            } else {
                                "a well-known default"
                            }
                        ));
                    }
                    if !pw.is_empty()
                        && matches!(
                            origin,
                            crate::envvars::Origin::ConfigMap(_) | crate::envvars::Origin::Literal
                        )
                    {
                        bad.push(format!(
                            "{}: SQL_DSN carries a password and comes from a {origin}, not a Secret",
                            w.subject()
                        ));
                    }
                }
            }
            Some(EnvValue::Unreadable(why)) => {
                unread.push(format!("{}: SQL_DSN: {why}", w.subject()))
            }
            _ => {}
        }
        for var in ["SESSION_SECRET", "CRYPTO_SECRET"] {
            match env.get(var) {
                Some(EnvValue::Set { value, origin }) if !value.expose().trim().is_empty() => {
                    if let Some(why) = placeholder(value.expose().trim()) {
                        bad.push(format!("{}: {var} ({origin}) is {why}", w.subject()));
                    } else {
                        evidence.push(format!(
                            "{}: {var} sha256:{}",
                            w.subject(),
                            value.fingerprint()
                        ));
                    }
                }
                Some(EnvValue::Unreadable(why)) => {
                    unread.push(format!("{}: {var}: {why}", w.subject()));
                }
                _ => {}
            }
        }
    }
    if let Some(w) = ctx.workload(Role::Mysql) {
        match ctx.env(w).get("MYSQL_ROOT_PASSWORD") {
            Some(EnvValue::Set { value, origin })
                if DEFAULT_PASSWORDS.contains(&value.expose()) || value.expose().is_empty() =>
            {
                bad.push(format!(
                    "{}: MYSQL_ROOT_PASSWORD ({origin}) is a well-known default",
                    w.subject()
                ));
            }
            Some(EnvValue::Unreadable(why)) => {
                unread.push(format!("{}: MYSQL_ROOT_PASSWORD: {why}", w.subject()));
            }
            _ => {}
        }
    }
    if !bad.is_empty() {
        let n = bad.len();
        bad.extend(unread);
        return fail(
            format!("{} default or misplaced password(s) and secret(s)", n),
            bad,
        );
    }
    if !unread.is_empty() {
        let mut v = not_checked(unread.join("; "));
        v.evidence = unread;
        return v;
    }
    pass("no default password or placeholder secret found", evidence)
}

fn log_aggregation(ctx: &Ctx<'_>) -> Verdict {
    let Read::Got(dss) = &ctx.f.daemonsets else {
        return not_checked(ctx.f.daemonsets.why().to_string());
    };
    let re = regex::Regex::new(
        r"(?i)(fluent-?bit|fluentd|filebeat|logstash|vector|promtail|grafana-agent|alloy|otel|opentelemetry-collector|datadog|splunk|elastic-agent)",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"));
    let found: Vec<String> = dss
        .iter()
        .filter(|d| {
            let name = d.metadata.name.as_deref().unwrap_or_default();
            re.is_match(name)
                || d.spec.template.spec.as_ref().is_some_and(|p| {
                    p.containers
                        .iter()
                        .any(|c| re.is_match(c.image.as_deref().unwrap_or_default()))
                })
        })
        .map(|d| {
            format!(
                "daemonset/{}/{}",
                d.metadata.namespace.as_deref().unwrap_or_default(),
                d.metadata.name.as_deref().unwrap_or_default()
            )
        })
        .collect();
    if found.is_empty() {
        fail(
            format!(
                "no log shipper DaemonSet in the cluster ({} DaemonSet(s) in all): logs are lost with their pods",
                dss.len()
            ),
            Vec::new(),
        )
    } else {
        pass(format!("logs are shipped by {}", found.join(", ")), found)
    }
}

fn node_type_of(env: &BTreeMap<String, EnvValue>) -> Option<String> {
    env.get("NODE_TYPE")
        .and_then(EnvValue::value)
        .map(|v| v.expose().to_string())
}

fn one_master(ctx: &Ctx<'_>) -> Verdict {
    let Some(m) = ctx.workload(Role::Master) else {
        return fail(
            format!(
                "no master workload {}",
                ctx.f.settings.workloads.master.name
            ),
            Vec::new(),
        );
    };
    let mut masters = i64::from(m.replicas);
    let mut evidence = vec![format!("{}: {} replica(s)", m.subject(), m.replicas)];
    if let Some(s) = ctx.workload(Role::Slave) {
        let nt = node_type_of(&ctx.env(s));
        if nt.as_deref() != Some("slave") {
            masters += i64::from(s.replicas);
            evidence.push(format!(
                "{}: NODE_TYPE={} makes its {} pod(s) masters",
                s.subject(),
                nt.as_deref().unwrap_or("(unset)"),
                s.replicas
            ));
        }
    }
    if masters == 1 {
        pass("one master", evidence)
    } else {
        fail(
            format!(
                "{masters} New-API masters: exactly one may run (it migrates the database and runs the background jobs)"
            ),
            evidence,
        )
    }
}

fn node_type(ctx: &Ctx<'_>) -> Verdict {
    let mut bad = Vec::new();
    let mut evidence = Vec::new();
    for w in ctx.newapi() {
        let nt = node_type_of(&ctx.env(w));
        let ok = match w.role {
            Role::Slave => nt.as_deref() == Some("slave"),
            _ => matches!(nt.as_deref(), None | Some("master")),
        };
        let line = format!(
            "{}: NODE_TYPE={}",
            w.subject(),
            nt.as_deref().unwrap_or("(unset)")
        );
        if ok {
            evidence.push(line);
        } else {
            bad.push(format!(
                "{line} (New-API: every value but `slave` is a master)"
            ));
        }
    }
    if bad.is_empty() {
        pass("NODE_TYPE as New-API expects", evidence)
    } else {
        let n = bad.len();
        bad.extend(evidence);
        fail(format!("{n} workload(s) with a wrong NODE_TYPE"), bad)
    }
}

/// (session, crypto) as set on a workload, trimmed; Err when unreadable.
fn secrets_of(env: &BTreeMap<String, EnvValue>) -> Result<(Option<&str>, Option<&str>), String> {
    for var in ["SESSION_SECRET", "CRYPTO_SECRET"] {
        if let Some(why) = unreadable(env, var) {
            return Err(format!("{var}: {why}"));
        }
    }
    Ok((
        set_value(env, "SESSION_SECRET"),
        set_value(env, "CRYPTO_SECRET"),
    ))
}

fn secrets_set(ctx: &Ctx<'_>) -> Verdict {
    let mut bad = Vec::new();
    let mut evidence = Vec::new();
    for w in ctx.newapi() {
        let env = ctx.env(w);
        let (session, crypto) = match secrets_of(&env) {
            Ok(x) => x,
            Err(why) => return not_checked(format!("{}: {why}", w.subject())),
        };
        match (session, crypto) {
            (None, None) => bad.push(format!(
                "{}: SESSION_SECRET and CRYPTO_SECRET both unset or empty: New-API refuses to start",
                w.subject()
            )),
            (s, c) if s == Some("random_string") || c == Some("random_string") => bad.push(format!(
                "{}: a secret is `random_string`: New-API refuses to start",
                w.subject()
            )),
            (Some(_), None) => evidence.push(format!(
                "{}: CRYPTO_SECRET unset: falls back to SESSION_SECRET",
                w.subject()
            )),
            (None, Some(_)) => evidence.push(format!(
                "{}: SESSION_SECRET unset: falls back to CRYPTO_SECRET",
                w.subject()
            )),
            (Some(_), Some(_)) => evidence.push(format!("{}: both set", w.subject())),
        }
    }
    if bad.is_empty() {
        pass(
            "SESSION_SECRET/CRYPTO_SECRET set on every New-API workload",
            evidence,
        )
    } else {
        fail("New-API would refuse to start", bad)
    }
}

fn secrets_identical(ctx: &Ctx<'_>) -> Verdict {
    let src = ctx.sources();
    let slave_sel = &ctx.f.settings.workloads.slave.selector;
    let master_sel = &ctx.f.settings.workloads.master.selector;
    // Every running New-API pod, else the templates.
    let mut subjects: Vec<(String, BTreeMap<String, EnvValue>)> = ctx
        .f
        .snapshot
        .pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && (slave_sel.matches(p.metadata.labels.as_ref())
                    || master_sel.matches(p.metadata.labels.as_ref()))
        })
        .filter_map(|p| {
            let c: &Container = p.spec.as_ref()?.containers.first()?;
            Some((
                format!("pod/{}", p.metadata.name.as_deref().unwrap_or_default()),
                resolve(c, &src),
            ))
        })
        .collect();
    if subjects.is_empty() {
        subjects = ctx.newapi().map(|w| (w.subject(), ctx.env(w))).collect();
    }
    let mut prints: Vec<(String, String, String)> = Vec::new();
    for (who, env) in &subjects {
        let (s, c) = match secrets_of(env) {
            Ok(x) => x,
            Err(why) => return not_checked(format!("{who}: {why}")),
        };
        let session = s.or(c);
        let crypto = c.or(s);
        let fp = |v: Option<&str>| {
            v.map_or_else(
                || "(none)".to_string(),
                |v| crate::envvars::Sensitive::new(v).fingerprint(),
            )
        };
        prints.push((who.clone(), fp(session), fp(crypto)));
    }
    let evidence: Vec<String> = prints
        .iter()
        .map(|(w, s, c)| format!("{w}: SESSION_SECRET sha256:{s}, CRYPTO_SECRET sha256:{c}"))
        .collect();
    let first = prints.first().map(|p| (p.1.clone(), p.2.clone()));
    let differ: Vec<&str> = ["SESSION_SECRET", "CRYPTO_SECRET"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            prints.iter().any(|p| {
                let mine = if *i == 0 { &p.1 } else { &p.2 };
                let theirs = first.as_ref().map(|f| if *i == 0 { &f.0 } else { &f.1 });
                Some(mine) != theirs
            })
        })
        .map(|(_, v)| v)
        .collect();
    judged(
        differ.is_empty(),
        format!(
            "the same secrets on {}",
            crate::units::plural(prints.len(), "New-API pod", "New-API pods")
        ),
        format!(
            "{} differ(s) between New-API pods: sessions or encrypted values are refused across pods",
            differ.join(" and ")
        ),
        evidence,
    )
}

fn redis_when_scaled(ctx: &Ctx<'_>) -> Verdict {
    let (pods, how) = ctx.pods_max(None);
    if pods <= 1 {
        return pass(
            format!("one New-API pod ({how}): Redis is optional"),
            Vec::new(),
        );
    }
    let mut missing = Vec::new();
    let mut evidence = vec![format!("New-API pods: {how}")];
    for w in ctx.newapi() {
        let env = ctx.env(w);
        for var in ["REDIS_CONN_STRING", "REDIS_HA_CONN_STRING"] {
            if let Some(why) = unreadable(&env, var) {
                return not_checked(format!("{}: {var}: {why}", w.subject()));
            }
        }
        if set_value(&env, "REDIS_CONN_STRING").is_some()
            || set_value(&env, "REDIS_HA_CONN_STRING").is_some()
        {
            evidence.push(format!("{}: Redis configured", w.subject()));
        } else {
            missing.push(w.name.to_string());
            evidence.push(format!(
                "{}: neither REDIS_CONN_STRING nor REDIS_HA_CONN_STRING",
                w.subject()
            ));
        }
    }
    judged(
        missing.is_empty(),
        format!("Redis configured for {pods} New-API pods"),
        format!(
            "{pods} New-API pods but no Redis on {}: the pods do not share caches and rate limits",
            missing.join(", ")
        ),
        evidence,
    )
}

/// The value of `--flag=N` / `--flag N` (dashes and underscores alike) among a container's
/// command and args.
pub fn arg_value(c: &Container, flag: &str) -> Option<String> {
    let norm = |s: &str| s.replace('_', "-");
    let want = norm(flag);
    let words: Vec<&String> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let n = norm(w);
        if let Some(v) = n.strip_prefix(&format!("{want}=")) {
            return Some(v.to_string());
        }
        if n == want {
            return words.get(i + 1).map(|s| s.to_string());
        }
    }
    None
}

/// SQL_MAX_OPEN_CONNS of a workload (New-API's default when unset or not a number).
fn max_open(env: &BTreeMap<String, EnvValue>) -> u64 {
    set_value(env, "SQL_MAX_OPEN_CONNS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::from(
            crate::diagnose::mysql::NEWAPI_DEFAULT_MAX_OPEN_CONNS,
        ))
}

/// The pool arithmetic: (demand, how it was computed).
pub fn pool_demand(ctx: &Ctx<'_>, planned_max: Option<i64>) -> (u64, Vec<String>) {
    let mut demand = 0u64;
    let mut lines = Vec::new();
    let hpa = ctx.slave_hpa().map(|h| h.2).or(planned_max);
    for w in ctx.newapi() {
        let env = ctx.env(w);
        let open = max_open(&env);
        let pods = match (w.role, hpa) {
            (Role::Slave, Some(max)) if max > i64::from(w.replicas) => max,
            _ => i64::from(w.replicas),
        };
        let pods = u64::try_from(pods).unwrap_or(0);
        demand += pods * open;
        lines.push(format!(
            "{}: {pods} pod(s) × SQL_MAX_OPEN_CONNS {open}{} = {}",
            w.subject(),
            if set_value(&env, "SQL_MAX_OPEN_CONNS").is_none() {
                " (New-API's default)"
            } else {
                ""
            },
            pods * open
        ));
    }
    (demand, lines)
}

/// MySQL's max_connections: (value, where it comes from).
pub fn max_connections(ctx: &Ctx<'_>) -> Option<(u64, String)> {
    if let Some(w) = ctx.workload(Role::Mysql)
        && let Some(c) = w.spec.containers.first()
        && let Some(v) = arg_value(c, "--max-connections").and_then(|v| v.parse().ok())
    {
        let live = ctx
            .f
            .mysql
            .got()
            .map(|m| format!("; live {}", m.max_connections))
            .unwrap_or_default();
        return Some((v, format!("--max-connections={v} on {}{live}", w.subject())));
    }
    ctx.f.mysql.got().map(|m| {
        (
            m.max_connections,
            format!("max_connections {} ({})", m.max_connections, m.via),
        )
    })
}

fn sql_pool(ctx: &Ctx<'_>) -> Verdict {
    if let Some(env) = master_env(ctx)
        && set_value(&env, "SQL_DSN").is_none()
        && unreadable(&env, "SQL_DSN").is_none()
    {
        return pass(
            "SQL_DSN unset: New-API uses SQLite, no MySQL pool",
            Vec::new(),
        );
    }
    let Some((max, from)) = max_connections(ctx) else {
        return not_checked(ctx.f.mysql.why().to_string());
    };
    let (demand, mut evidence) = pool_demand(ctx, None);
    evidence.push(format!("MySQL: {from}"));
    judged(
        demand + ADMIN_HEADROOM <= max,
        format!("pools of at most {demand} connections fit max_connections {max}"),
        format!(
            "New-API may open {demand} connections (+{ADMIN_HEADROOM} for administrators) but MySQL allows {max}: `Too many connections` under load"
        ),
        evidence,
    )
}

fn sql_lifetime(ctx: &Ctx<'_>) -> Verdict {
    let wait = ctx.f.mysql.got().map(|m| m.wait_timeout);
    let mut bad = Vec::new();
    let mut evidence = Vec::new();
    for w in ctx.newapi() {
        let env = ctx.env(w);
        let Some(v) = set_value(&env, "SQL_MAX_LIFETIME") else {
            evidence.push(format!("{}: unset (60 s)", w.subject()));
            continue;
        };
        match v.parse::<u64>() {
            Err(_) => bad.push(format!(
                "{}: SQL_MAX_LIFETIME={v} is not a whole number of seconds: New-API falls back to 60",
                w.subject()
            )),
            Ok(n) if n >= 3600 => bad.push(format!(
                "{}: SQL_MAX_LIFETIME={n} s is {}: New-API reads seconds, so this looks like milliseconds",
                w.subject(),
                crate::units::duration(std::time::Duration::from_secs(n))
            )),
            Ok(n) if wait.is_some_and(|t| n >= t) => bad.push(format!(
                "{}: SQL_MAX_LIFETIME={n} s is not below MySQL's wait_timeout {} s: MySQL closes idle connections first",
                w.subject(),
                wait.unwrap_or_default()
            )),
            Ok(n) => evidence.push(format!("{}: {n} s", w.subject())),
        }
    }
    if let Some(t) = wait {
        evidence.push(format!("MySQL wait_timeout {t} s"));
    }
    if bad.is_empty() {
        pass("SQL_MAX_LIFETIME is a sensible number of seconds", evidence)
    } else {
        fail(format!("{} wrong SQL_MAX_LIFETIME", bad.len()), bad)
    }
}

fn env_names(ctx: &Ctx<'_>) -> Verdict {
    let mut bad = Vec::new();
    for w in ctx.newapi() {
        for c in &w.spec.containers {
            for var in c.env.iter().flatten() {
                let name = var.name.as_str();
                if KNOWN_ENV.contains(&name) || name.len() < 5 {
                    continue;
                }
                let close = KNOWN_ENV
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(name))
                    .copied()
                    .or_else(|| {
                        KNOWN_ENV
                            .iter()
                            .map(|k| (crate::runbook::diag::edit_distance(name, k), *k))
                            .filter(|(d, _)| *d <= 2)
                            .min_by_key(|(d, _)| *d)
                            .map(|(_, k)| k)
                    });
                if let Some(k) = close {
                    bad.push(format!(
                        "{} container {}: {name} is not a New-API variable: did you mean {k}?",
                        w.subject(),
                        c.name
                    ));
                }
            }
        }
    }
    if bad.is_empty() {
        pass("no near-miss variable names", Vec::new())
    } else {
        fail(
            format!("{} misspelled variable(s), ignored by New-API", bad.len()),
            bad,
        )
    }
}

/// A rule judged on every container of the deployment's workloads: `lacking` says what one
/// lacks (nothing: it passes); the rule passes with `ok` when no container lacks anything.
fn per_container(
    ctx: &Ctx<'_>,
    ok: &str,
    what: &str,
    lacking: impl Fn(&Workload<'_>, &Container) -> Vec<String>,
) -> Verdict {
    if ctx.workloads.is_empty() {
        return not_checked("none of the deployment's workloads was found");
    }
    let mut bad = Vec::new();
    for w in &ctx.workloads {
        for c in &w.spec.containers {
            let l = lacking(w, c);
            if !l.is_empty() {
                bad.push(format!(
                    "{} container {}: {}",
                    w.subject(),
                    c.name,
                    l.join(", ")
                ));
            }
        }
    }
    if bad.is_empty() {
        pass(ok, Vec::new())
    } else {
        fail(format!("{} container(s) {what}", bad.len()), bad)
    }
}

fn probes(ctx: &Ctx<'_>) -> Verdict {
    per_container(
        ctx,
        "every container has readiness and liveness probes",
        "without probes",
        |_, c| {
            let mut l = Vec::new();
            if c.readiness_probe.is_none() {
                l.push("no readiness probe".to_string());
            }
            if c.liveness_probe.is_none() {
                l.push("no liveness probe".to_string());
            }
            l
        },
    )
}

fn resources(ctx: &Ctx<'_>) -> Verdict {
    per_container(
        ctx,
        "every container requests and limits CPU and memory",
        "without requests or limits",
        |_, c| {
            let r = c.resources.clone().unwrap_or_default();
            let mut l = Vec::new();
            for (what, m) in [("requests", &r.requests), ("limits", &r.limits)] {
                for k in ["cpu", "memory"] {
                    if !m.as_ref().is_some_and(|m| m.contains_key(k)) {
                        l.push(format!("no {what}.{k}"));
                    }
                }
            }
            l
        },
    )
}

fn image_tags(ctx: &Ctx<'_>) -> Verdict {
    per_container(
        ctx,
        "every image is pinned to a version or digest",
        "on `latest` or untagged",
        |_, c| {
            let image = c.image.clone().unwrap_or_default();
            if !crate::inventory::image_is_pinned(&image) {
                vec![format!("{image} is not pinned")]
            } else {
                Vec::new()
            }
        },
    )
}

fn run_as_non_root(ctx: &Ctx<'_>) -> Verdict {
    per_container(
        ctx,
        "every container runs as a non-root user",
        "may run as root",
        |w, c| {
            let pod = w.spec.security_context.as_ref();
            let own = c.security_context.as_ref();
            let non_root = own
                .and_then(|s| s.run_as_non_root)
                .or(pod.and_then(|s| s.run_as_non_root))
                .unwrap_or(false);
            let user = own
                .and_then(|s| s.run_as_user)
                .or(pod.and_then(|s| s.run_as_user));
            if non_root || user.is_some_and(|u| u != 0) {
                Vec::new()
            } else {
                vec!["may run as root (no runAsNonRoot, no runAsUser)".to_string()]
            }
        },
    )
}

fn mysql_pvc(ctx: &Ctx<'_>) -> Verdict {
    let Some(w) = ctx.workload(Role::Mysql) else {
        return pass("MySQL is not in the cluster", Vec::new());
    };
    let mount = w
        .spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == "/var/lib/mysql");
    let Some(mount) = mount else {
        return fail(
            format!(
                "{} mounts nothing at /var/lib/mysql: its data is lost with the pod",
                w.subject()
            ),
            Vec::new(),
        );
    };
    if w.claim_templates.contains(&mount.name) {
        return pass(
            format!(
                "{} keeps its data on volumeClaimTemplate {}",
                w.subject(),
                mount.name
            ),
            Vec::new(),
        );
    }
    let volume = w
        .spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name);
    let Some(claim) = volume.and_then(|v| v.persistent_volume_claim.as_ref()) else {
        let what = volume.map_or("no such volume", |v| {
            if v.empty_dir.is_some() {
                "an emptyDir"
            } else if v.host_path.is_some() {
                "a hostPath"
            } else {
                "not a PersistentVolumeClaim"
            }
        });
        return fail(
            format!(
                "{}: /var/lib/mysql is {what}: its data is not on a PVC",
                w.subject()
            ),
            vec![format!("volume {}", mount.name)],
        );
    };
    let Read::Got(pvcs) = &ctx.f.pvcs else {
        return not_checked(ctx.f.pvcs.why().to_string());
    };
    let pvc = pvcs
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(claim.claim_name.as_str()));
    let Some(pvc) = pvc else {
        return fail(
            format!("{}: PVC {} does not exist", w.subject(), claim.claim_name),
            Vec::new(),
        );
    };
    let status = pvc.status.as_ref();
    let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
    let size = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let evidence = vec![format!(
        "persistentvolumeclaim/{}: {phase} {size}",
        claim.claim_name
    )];
    judged(
        phase == "Bound",
        format!("MySQL data on PVC {} ({size})", claim.claim_name),
        format!("PVC {} is {phase}, not Bound", claim.claim_name),
        evidence,
    )
}

fn backend_replicas(ctx: &Ctx<'_>) -> Verdict {
    let single: Vec<String> = [Role::Mysql, Role::Redis]
        .into_iter()
        .filter_map(|r| ctx.workload(r))
        .filter(|w| w.replicas <= 1)
        .map(|w| format!("{}: {} replica", w.subject(), w.replicas))
        .collect();
    if single.is_empty() {
        pass(
            "no single-replica MySQL or Redis in the cluster",
            Vec::new(),
        )
    } else {
        fail(
            format!("{} single point(s) of failure", single.len()),
            single,
        )
    }
}

fn slave_spread(ctx: &Ctx<'_>) -> Verdict {
    let Some(w) = ctx.workload(Role::Slave) else {
        return not_checked("no slave workload");
    };
    if w.replicas <= 1 {
        return pass(format!("{} has one replica", w.subject()), Vec::new());
    }
    let anti = w
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .is_some();
    let spread = w
        .spec
        .topology_spread_constraints
        .as_ref()
        .is_some_and(|t| !t.is_empty());
    if anti || spread {
        pass(
            format!(
                "{} spreads its pods ({})",
                w.subject(),
                if anti {
                    "podAntiAffinity"
                } else {
                    "topologySpreadConstraints"
                }
            ),
            Vec::new(),
        )
    } else {
        let nodes: std::collections::BTreeSet<&str> = ctx
            .f
            .snapshot
            .pods
            .iter()
            .filter(|p| {
                ctx.f
                    .settings
                    .workloads
                    .slave
                    .selector
                    .matches(p.metadata.labels.as_ref())
            })
            .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
            .collect();
        fail(
            format!(
                "{} has no podAntiAffinity or topologySpreadConstraints: its {} pods may all land on one node",
                w.subject(),
                w.replicas
            ),
            vec![format!("slaves run on {} node(s) now", nodes.len())],
        )
    }
}

/// Redis' memory limit in bytes.
pub fn redis_limit(w: &Workload<'_>) -> Option<u64> {
    let q = w
        .spec
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")?;
    u64::try_from(crate::quantity::parse_value(&q.0).ok()?).ok()
}

/// A Redis memory size (`3gb`, `512mb`, `1073741824`) in bytes.
pub fn redis_bytes(s: &str) -> Option<u64> {
    let l = s.trim().to_lowercase();
    let split = l.find(|c: char| !c.is_ascii_digit()).unwrap_or(l.len());
    let (n, unit) = l.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn redis_maxmemory(ctx: &Ctx<'_>) -> Verdict {
    let Some(w) = ctx.workload(Role::Redis) else {
        return pass("Redis is not in the cluster", Vec::new());
    };
    let configured = w
        .spec
        .containers
        .first()
        .and_then(|c| arg_value(c, "--maxmemory"))
        .and_then(|v| redis_bytes(&v).map(|b| (b, format!("--maxmemory {v} on {}", w.subject()))));
    let value = configured.or_else(|| {
        ctx.f.redis.got().map(|r| {
            (
                r.maxmemory,
                format!("live maxmemory {} ({})", r.maxmemory, r.via),
            )
        })
    });
    let Some((max, from)) = value else {
        return not_checked(ctx.f.redis.why().to_string());
    };
    let limit = redis_limit(w);
    let mut evidence = vec![from];
    if let Some(l) = limit {
        evidence.push(format!("memory limit {}", crate::units::bytes(l)));
    }
    if let Some(r) = ctx.f.redis.got() {
        evidence.push(format!("maxmemory-policy {}", r.policy));
    }
    if max == 0 {
        return fail(
            "Redis has no maxmemory: it grows until the kernel OOM-kills it",
            evidence,
        );
    }
    match limit {
        Some(l) if max >= l => fail(
            format!(
                "maxmemory {} is not below the memory limit {}: OOMKilled before it evicts",
                crate::units::bytes(max),
                crate::units::bytes(l)
            ),
            evidence,
        ),
        _ => pass(format!("maxmemory {}", crate::units::bytes(max)), evidence),
    }
}

/// The newest successful backup known: (when, what).
fn newest_backup(ctx: &Ctx<'_>) -> Option<(jiff::Timestamp, String)> {
    let mut seen: Vec<(jiff::Timestamp, String)> = Vec::new();
    let backup_jobs: Vec<String> = ctx
        .f
        .cronjobs
        .got()
        .into_iter()
        .flatten()
        .filter(|c| is_backup_cronjob(c))
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for cj in ctx.f.cronjobs.got().into_iter().flatten() {
        let name = cj["metadata"]["name"].as_str().unwrap_or_default();
        if backup_jobs.iter().any(|b| b == name)
            && let Some(t) = cj["status"]["lastSuccessfulTime"]
                .as_str()
                .and_then(|t| t.parse().ok())
        {
            seen.push((t, format!("cronjob/{name} last success")));
        }
    }
    for j in ctx.f.jobs.got().into_iter().flatten() {
        let owned = j
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "CronJob" && backup_jobs.contains(&o.name));
        let status = j.status.as_ref();
        if owned
            && status.and_then(|s| s.succeeded).unwrap_or(0) > 0
            && let Some(t) = status.and_then(|s| s.completion_time.as_ref())
        {
            seen.push((
                t.0,
                format!("job/{}", j.metadata.name.as_deref().unwrap_or_default()),
            ));
        }
    }
    if let Some(e) = ctx.f.backups.got().and_then(|b| b.last())
        && let Ok(t) = e.started_at.parse::<jiff::Timestamp>()
    {
        seen.push((t, format!("{} in {}", e.id, ctx.f.backup_dir)));
    }
    seen.into_iter().max_by_key(|(t, _)| *t)
}

fn age_secs(ctx: &Ctx<'_>, t: jiff::Timestamp) -> i64 {
    ctx.f.now.as_second() - t.as_second()
}

fn backup_recent(ctx: &Ctx<'_>) -> Verdict {
    let max = i64::try_from(ctx.f.backup_max_age.as_secs()).unwrap_or(i64::MAX);
    match newest_backup(ctx) {
        Some((t, what)) => {
            let age = age_secs(ctx, t);
            let evidence = vec![format!("{what} at {t}")];
            if age <= max {
                pass(
                    format!("newest backup {} old", crate::units::age(age)),
                    evidence,
                )
            } else {
                fail(
                    format!(
                        "newest backup is {} old (more than {})",
                        crate::units::age(age),
                        crate::units::duration(ctx.f.backup_max_age)
                    ),
                    evidence,
                )
            }
        }
        None => {
            if let Read::NotChecked(why) = &ctx.f.backups
                && ctx.f.cronjobs.got().is_none()
            {
                return not_checked(why.clone());
            }
            fail(
                format!(
                    "no backup found (no successful backup Job, nothing in {})",
                    ctx.f.backup_dir
                ),
                Vec::new(),
            )
        }
    }
}

fn backup_verified(ctx: &Ctx<'_>) -> Verdict {
    let Read::Got(list) = &ctx.f.backups else {
        return not_checked(ctx.f.backups.why().to_string());
    };
    match list.last() {
        None => fail(
            format!("no backup in {} to verify", ctx.f.backup_dir),
            Vec::new(),
        ),
        Some(e) => match &e.verified {
            Some(mode) => pass(
                format!("newest backup {} verified ({mode})", e.id),
                vec![format!("{} in {}", e.id, ctx.f.backup_dir)],
            ),
            None => fail(
                format!(
                    "newest backup {} {}: run `newapi-ops backup verify {}`",
                    e.id,
                    if e.verify_failed {
                        "failed its verification"
                    } else {
                        "was never verified"
                    },
                    e.id
                ),
                vec![format!("{} in {}", e.id, ctx.f.backup_dir)],
            ),
        },
    }
}

fn backup_offsite(ctx: &Ctx<'_>) -> Verdict {
    if ctx.f.in_cluster {
        return not_checked(
            "newapi-ops runs inside the cluster: its local store is no copy off it",
        );
    }
    let Read::Got(list) = &ctx.f.backups else {
        return not_checked(ctx.f.backups.why().to_string());
    };
    let max = i64::try_from(ctx.f.backup_max_age.as_secs()).unwrap_or(i64::MAX);
    let recent = list.iter().rev().find_map(|e| {
        let t: jiff::Timestamp = e.started_at.parse().ok()?;
        (age_secs(ctx, t) <= max).then(|| (e, age_secs(ctx, t)))
    });
    match recent {
        Some((e, age)) => pass(
            format!(
                "a copy off the cluster: {} ({} old)",
                e.id,
                crate::units::age(age)
            ),
            vec![format!("{} in {}", e.id, ctx.f.backup_dir)],
        ),
        None => fail(
            format!(
                "no backup younger than {} outside the cluster (in {})",
                crate::units::duration(ctx.f.backup_max_age),
                ctx.f.backup_dir
            ),
            vec![format!("{} backup(s) there", list.len())],
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests;
