//! `audit --fix`: for every failing rule a manifest can fix, the manifest computed from the live
//! deployment ([`plan`], pure), and applying them all or none ([`apply_all`]):
//!
//! 1. every change is sent as a server-side dry run first (`dryRun=All`: admission, validation
//!    and RBAC as for real); one refusal and nothing is applied;
//! 2. then each is applied for real, in order; when one fails, what this run created is deleted
//!    again and what it patched is patched back, in reverse order, and the error says so;
//! 3. Ctrl-C or SIGTERM meanwhile: the change in flight is let finish, then everything applied
//!    is undone the same way (the error names the signal, exit 130 or 143).
//!
//! An object that already exists (a dry-run create answered 409) is left as it is. Objects are
//! created with POST; the MySQL and Redis settings are strategic-merge patches of the container
//! arguments, whose undo restores the previous arguments. No change carries a secret value (the
//! backup job reads the password at run time from the Secret New-API uses).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures::future::BoxFuture;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::discovery;
use super::error::AuditError;
use super::facts::Facts;
use super::rules::{self, Ctx, Workload};
use super::{Outcome, Status};
use crate::config::Selector;
use crate::error::{Error, Result};
use crate::inventory::Role;
use crate::k8s::{Call, Kube};
use crate::signals::Signal;

/// The label and annotation every object created by a fix carries.
pub const MANAGED_BY: &str = "newapi-ops";
pub const RULE_ANNOTATION: &str = "newapi-ops.io/audit-rule";
/// 性能调优 1: scale out when CPU stays above 80 %.
pub const CPU_TARGET_PERCENT: i64 = 80;
/// Redis gets this share of its container's memory limit as maxmemory (the rest is Redis'
/// own overhead, fragmentation and the copy-on-write of a background save).
pub const REDIS_MAXMEMORY_PERCENT: u64 = 75;
/// At most this many slaves are considered when asking how many the cluster holds.
const HPA_MAX_CEILING: i64 = 100;

/// What the fixes need beyond the facts (flags).
#[derive(Debug, Clone, Default)]
pub struct FixInputs {
    /// The Ingress host; without it there is no Ingress fix.
    pub ingress_host: Option<String>,
    pub ingress_class: Option<String>,
    /// A TLS Secret for the Ingress host.
    pub ingress_tls_secret: Option<String>,
    /// The backup CronJob's schedule and image.
    pub backup_cron: String,
    pub backup_image: String,
    /// Only these fix ids (all when empty).
    pub only: Vec<String>,
}

/// Every fix id, with the rule it fixes.
pub const FIXES: &[(&str, &str)] = &[
    ("hpa", "advice.hpa"),
    ("pdb", "advice.pdb"),
    ("ingress", "advice.ingress"),
    ("backup-schedule", "advice.scheduled-backups"),
    ("network-policy", "advice.network-policy"),
    ("mysql-max-connections", "newapi.sql-pool"),
    ("redis-maxmemory", "kube.redis-maxmemory"),
];

/// Create a new object, or patch an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Patch,
}

/// Where a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeStatus {
    Planned,
    /// The server accepted it in a dry run.
    DryRunOk,
    /// An object of that name already exists: left as it is.
    Exists,
    Applied,
    RolledBack,
    Failed,
    /// Not applied: the run stopped before it (a refusal, a failure, no).
    NotApplied,
}

/// One object created or patched.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: Action,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// The object (create) or the strategic-merge patch (patch).
    pub manifest: Json,
    /// The patch that restores the previous state (patch only).
    #[serde(skip)]
    pub undo: Option<Json>,
    pub status: ChangeStatus,
}

impl Change {
    fn create(manifest: Json) -> Change {
        Change {
            action: Action::Create,
            api_version: manifest["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            kind: manifest["kind"].as_str().unwrap_or_default().to_string(),
            name: manifest["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            manifest,
            undo: None,
            status: ChangeStatus::Planned,
        }
    }

    /// `create horizontalpodautoscaler/new-api-slave`.
    pub fn what(&self) -> String {
        format!(
            "{} {}/{}",
            match self.action {
                Action::Create => "create",
                Action::Patch => "patch",
            },
            self.kind.to_lowercase(),
            self.name
        )
    }

    fn resource_name(&self) -> String {
        discovery::resource_name(&self.api_version, &self.kind)
    }
}

/// One fix: the changes that make one rule pass.
#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    pub id: &'static str,
    pub rule: &'static str,
    /// One line: what it does.
    pub summary: String,
    pub changes: Vec<Change>,
    /// How the values were computed, and what to know before applying.
    pub notes: Vec<String>,
}

/// The fixes for a report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FixPlan {
    pub fixes: Vec<Fix>,
    /// Failing rules a manifest could fix but this one cannot be computed (and why).
    pub skipped: Vec<String>,
}

impl FixPlan {
    pub fn fix_for(&self, rule: &str) -> Option<&'static str> {
        self.fixes.iter().find(|f| f.rule == rule).map(|f| f.id)
    }

    pub fn changes(&self) -> usize {
        self.fixes.iter().map(|f| f.changes.len()).sum()
    }
}

/// What `--fix` did.
#[derive(Debug, Clone, Serialize)]
pub struct FixReport {
    /// dry-run, applied, declined, refused, failed, nothing-to-fix.
    pub mode: &'static str,
    pub fixes: Vec<Fix>,
    pub skipped: Vec<String>,
    /// The transcript of the run (for real runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

fn meta(ctx: &Ctx<'_>, name: &str, rule: &str) -> Json {
    json!({
        "name": name,
        "namespace": ctx.f.namespace,
        "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        "annotations": {RULE_ANNOTATION: rule}
    })
}

fn match_labels(sel: &Selector) -> Json {
    let m: serde_json::Map<String, Json> =
        sel.0.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"matchLabels": m})
}

/// Computes the fixes of the failing rules (pure).
pub fn plan(facts: &Facts, outcomes: &[Outcome], inputs: &FixInputs) -> FixPlan {
    let ctx = Ctx::new(facts);
    let failing = |rule: &str| {
        outcomes
            .iter()
            .any(|o| o.id == rule && o.status == Status::Fail)
    };
    let wanted = |id: &str| inputs.only.is_empty() || inputs.only.iter().any(|o| o == id);
    let mut out = FixPlan::default();
    let mut planned_max = None;
    for (id, rule) in FIXES {
        if !failing(rule) || !wanted(id) {
            continue;
        }
        let made = match *id {
            "hpa" => hpa(&ctx)
                .inspect(|(_, max)| planned_max = Some(*max))
                .map(|(f, _)| f),
            "pdb" => pdb(&ctx),
            "ingress" => ingress(&ctx, inputs),
            "backup-schedule" => backup_schedule(&ctx, inputs),
            "network-policy" => network_policy(&ctx),
            "mysql-max-connections" => mysql_max_connections(&ctx, planned_max),
            "redis-maxmemory" => redis_maxmemory(&ctx),
            _ => Err("no such fix".to_string()),
        };
        match made {
            Ok(f) => out.fixes.push(f),
            Err(why) => out.skipped.push(format!("{rule} (fix {id}): {why}")),
        }
    }
    out
}

/// How many slaves the cluster holds now, per the `plan` arithmetic: those placed plus as many
/// more as fit, one by one, as the scheduler would place them.
fn slaves_the_cluster_holds(ctx: &Ctx<'_>, w: &Workload<'_>) -> std::result::Result<i64, String> {
    let Some(nodes) = &ctx.f.nodes else {
        return Err(ctx
            .f
            .capacity_unknown
            .clone()
            .unwrap_or_else(|| "capacity unknown".into()));
    };
    let sel = &ctx.f.settings.workloads.slave.selector;
    let placed = ctx
        .f
        .snapshot
        .pods
        .iter()
        .filter(|p| sel.matches(p.metadata.labels.as_ref()))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count();
    let placed = i64::try_from(placed).unwrap_or(0);
    let more = crate::capacity::place(nodes, w.spec, HPA_MAX_CEILING - placed)
        .placed
        .len();
    Ok(placed + i64::try_from(more).unwrap_or(0))
}

fn hpa(ctx: &Ctx<'_>) -> std::result::Result<(Fix, i64), String> {
    let w = ctx.workload(Role::Slave).ok_or("no slave workload")?;
    let av = ctx
        .f
        .apis
        .hpa
        .clone()
        .ok_or("this server serves no autoscaling API")?;
    let min = i64::from(w.replicas.max(1));
    let mut notes = Vec::new();
    let max = match slaves_the_cluster_holds(ctx, w) {
        Ok(holds) => {
            notes.push(format!(
                "max {}: the slaves the cluster holds now (the `plan` arithmetic: placed slaves plus those that still fit)",
                holds.max(min)
            ));
            if holds <= min {
                notes.push("the cluster has no room for another slave: max = min until nodes are added (`newapi-ops plan`)".into());
            }
            holds.max(min)
        }
        Err(why) => {
            notes.push(format!("capacity not checked ({why}): max = 2 × min"));
            min * 2
        }
    };
    notes.push(format!(
        "min {min}: today's replicas; CPU target {CPU_TARGET_PERCENT} % of requests (性能调优 1: add slaves when CPU stays above 80 %)"
    ));
    let lacks_cpu = w.spec.containers.iter().any(|c| {
        !c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key("cpu"))
    });
    if lacks_cpu {
        notes.push(
            "the slaves request no CPU: the HPA cannot compute a utilization until they do".into(),
        );
    }
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name});
    let spec = if av == "autoscaling/v1" {
        notes.push("autoscaling/v1 only: the CPU metric".into());
        json!({"scaleTargetRef": target, "minReplicas": min, "maxReplicas": max,
               "targetCPUUtilizationPercentage": CPU_TARGET_PERCENT})
    } else {
        json!({"scaleTargetRef": target, "minReplicas": min, "maxReplicas": max,
               "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                   "target": {"type": "Utilization", "averageUtilization": CPU_TARGET_PERCENT}}}]})
    };
    let manifest = json!({
        "apiVersion": av, "kind": "HorizontalPodAutoscaler",
        "metadata": meta(ctx, w.name, "advice.hpa"), "spec": spec
    });
    Ok((
        Fix {
            id: "hpa",
            rule: "advice.hpa",
            summary: format!(
                "an HPA ({av}) scaling deployment/{} between {min} and {max} at {CPU_TARGET_PERCENT} % CPU",
                w.name
            ),
            changes: vec![Change::create(manifest)],
            notes,
        },
        max,
    ))
}

fn pdb(ctx: &Ctx<'_>) -> std::result::Result<Fix, String> {
    let av = ctx
        .f
        .apis
        .pdb
        .clone()
        .ok_or("this server serves no policy API for PodDisruptionBudgets")?;
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let s = &ctx.f.settings.workloads;
    for (role, sel, budget, why) in [
        (
            Role::Slave,
            &s.slave.selector,
            json!({"maxUnavailable": 1}),
            "slaves: maxUnavailable 1, a drain takes them one at a time",
        ),
        (
            Role::Master,
            &s.master.selector,
            json!({"minAvailable": 1}),
            "master: minAvailable 1, a drain stops at the master until you move it deliberately (New-API runs exactly one; delete its pod when ready)",
        ),
    ] {
        let Some(w) = ctx.workload(role) else {
            continue;
        };
        if pdb_missing(ctx, role) {
            let mut spec = budget;
            spec["selector"] = match_labels(sel);
            changes.push(Change::create(json!({
                "apiVersion": av, "kind": "PodDisruptionBudget",
                "metadata": meta(ctx, &format!("{}-pdb", w.name), "advice.pdb"), "spec": spec
            })));
            notes.push(why.to_string());
        }
    }
    if changes.is_empty() {
        return Err("every workload already has a PodDisruptionBudget".into());
    }
    Ok(Fix {
        id: "pdb",
        rule: "advice.pdb",
        summary: format!("{} PodDisruptionBudget(s) ({av})", changes.len()),
        changes,
        notes,
    })
}

fn pdb_missing(ctx: &Ctx<'_>, role: Role) -> bool {
    let Some(w) = ctx.workload(role) else {
        return false;
    };
    !ctx.f.pdbs.got().into_iter().flatten().any(|p| {
        serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(
            p["spec"]["selector"].clone(),
        )
        .is_ok_and(|s| crate::scale::rollout::selector_matches(&s, Some(&w.labels)))
    })
}

fn ingress(ctx: &Ctx<'_>, inputs: &FixInputs) -> std::result::Result<Fix, String> {
    let host = inputs
        .ingress_host
        .clone()
        .ok_or("pass --ingress-host HOST (the name clients will use)")?;
    let av = ctx
        .f
        .apis
        .ingress
        .clone()
        .ok_or("this server serves no Ingress API")?;
    let labels: Vec<_> = ctx.newapi().map(|w| w.labels.clone()).collect();
    let svc = rules::newapi_services(ctx)
        .into_iter()
        // The Service that reaches every New-API pod first (the seed's selects app=new-api).
        .max_by_key(|s| {
            let sel = s
                .spec
                .as_ref()
                .and_then(|sp| sp.selector.clone())
                .unwrap_or_default();
            labels
                .iter()
                .filter(|l| sel.iter().all(|(k, v)| l.get(k) == Some(v)))
                .count()
        })
        .ok_or("no Service selects the New-API pods")?;
    let name = svc.metadata.name.clone().unwrap_or_default();
    let port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map(|p| p.port)
        .ok_or("the New-API Service has no port")?;
    let backend = if av == "networking.k8s.io/v1" {
        json!({"service": {"name": name, "port": {"number": port}}})
    } else {
        json!({"serviceName": name, "servicePort": port})
    };
    let mut path = json!({"path": "/", "backend": backend});
    if av == "networking.k8s.io/v1" {
        path["pathType"] = json!("Prefix");
    }
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": [path]}}]});
    if let Some(class) = &inputs.ingress_class {
        spec["ingressClassName"] = json!(class);
    }
    let mut notes = vec![format!(
        "routes {host} to service/{name} port {port}; once clients use it, switch service/{name} to ClusterIP to close the NodePort"
    )];
    if let Some(tls) = &inputs.ingress_tls_secret {
        spec["tls"] = json!([{"hosts": [host], "secretName": tls}]);
    } else {
        notes.push("no TLS: pass --ingress-tls-secret NAME for HTTPS".into());
    }
    if inputs.ingress_class.is_none() {
        notes.push("no --ingress-class: the cluster's default IngressClass serves it".into());
    }
    Ok(Fix {
        id: "ingress",
        rule: "advice.ingress",
        summary: format!("an Ingress ({av}) for {host} → service/{name}:{port}"),
        changes: vec![Change::create(json!({
            "apiVersion": av, "kind": "Ingress",
            "metadata": meta(ctx, &name, "advice.ingress"), "spec": spec
        }))],
        notes,
    })
}

fn backup_schedule(ctx: &Ctx<'_>, inputs: &FixInputs) -> std::result::Result<Fix, String> {
    let av = ctx
        .f
        .apis
        .cronjob
        .clone()
        .ok_or("this server serves no CronJob API")?;
    let master = ctx.workload(Role::Master).ok_or("no master workload")?;
    let container = master
        .spec
        .containers
        .first()
        .ok_or("the master has no container")?;
    let (configmaps, secrets) = crate::backends::env_references(container);
    let spec = crate::backup::schedule::ScheduleSpec {
        namespace: ctx.f.namespace.clone(),
        cron: inputs.backup_cron.clone(),
        keep_last: 14,
        keep_daily: 7,
        image: inputs.backup_image.clone(),
        existing_pvc: None,
        size: "20Gi".into(),
        storage_class: None,
        master: master.name.to_string(),
        configmaps: configmaps.into_iter().collect(),
        secrets: secrets.into_iter().collect(),
        threads: crate::backup::DEFAULT_THREADS,
        encrypt_to: Vec::new(),
        extra_args: Vec::new(),
    };
    let mut changes = Vec::new();
    for mut o in crate::backup::schedule::objects(&spec) {
        if o["kind"] == "CronJob" {
            o["apiVersion"] = json!(av);
        }
        o["metadata"]["annotations"] = json!({RULE_ANNOTATION: "advice.scheduled-backups"});
        changes.push(Change::create(o));
    }
    Ok(Fix {
        id: "backup-schedule",
        rule: "advice.scheduled-backups",
        summary: format!(
            "the backup CronJob ({av}) at \"{}\" with its ServiceAccount, Role, RoleBinding and PVC (as `newapi-ops backup schedule`)",
            inputs.backup_cron
        ),
        changes,
        notes: vec![
            "the job reads SQL_DSN at run time from the Secret/ConfigMap New-API uses: no password is copied into these objects".into(),
            format!("keeps 14 backups and one a day for 7 days on a 20Gi PVC; image {}", inputs.backup_image),
        ],
    })
}

fn network_policy(ctx: &Ctx<'_>) -> std::result::Result<Fix, String> {
    let policies = ctx
        .f
        .network_policies
        .got()
        .ok_or("NetworkPolicies could not be read")?;
    let s = &ctx.f.settings.workloads;
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    for (role, sel, default_port) in [
        (Role::Mysql, &s.mysql.selector, 3306),
        (Role::Redis, &s.redis.selector, 6379),
    ] {
        let Some(w) = ctx.workload(role) else {
            continue;
        };
        let selected = policies.iter().any(|p| {
            p.spec.as_ref().is_some_and(|sp| {
                crate::scale::rollout::selector_matches(
                    &sp.pod_selector.clone().unwrap_or_default(),
                    Some(&w.labels),
                )
            })
        });
        if selected {
            notes.push(format!(
                "{}: already selected by a NetworkPolicy that allows every source; NetworkPolicies add up, so narrow or remove that one by hand",
                w.subject()
            ));
            continue;
        }
        let port = w
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .map(|p| p.container_port)
            .next()
            .unwrap_or(default_port);
        let mut from = vec![
            json!({"podSelector": match_labels(&s.master.selector)}),
            json!({"podSelector": match_labels(&s.slave.selector)}),
        ];
        if role == Role::Mysql {
            from.push(json!({"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "newapi-ops", "app.kubernetes.io/component": "backup"}}}));
        }
        changes.push(Change::create(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(ctx, &format!("{}-allow-new-api", w.name), "advice.network-policy"),
            "spec": {
                "podSelector": match_labels(sel),
                "policyTypes": ["Ingress"],
                "ingress": [{"from": from, "ports": [{"protocol": "TCP", "port": port}]}]
            }
        })));
        notes.push(format!(
            "{}: only the New-API pods{} reach port {port}; port-forwards (newapi-ops, kubectl) go through the kubelet and keep working",
            w.subject(),
            if role == Role::Mysql { " and the newapi-ops backup job" } else { "" }
        ));
    }
    if changes.is_empty() {
        return Err(notes.join("; "));
    }
    notes.push(
        "enforced only by a network plugin that implements NetworkPolicy (Calico, Cilium, ...)"
            .into(),
    );
    Ok(Fix {
        id: "network-policy",
        rule: "advice.network-policy",
        summary: format!(
            "{} NetworkPolicy(ies): only New-API reaches MySQL and Redis",
            changes.len()
        ),
        changes,
        notes,
    })
}

/// The container's args without `flags` (and their values when given apart), plus `extra`.
fn args_with(
    c: &k8s_openapi::api::core::v1::Container,
    flags: &[&str],
    extra: &[String],
) -> Vec<String> {
    let norm = |s: &str| s.replace('_', "-");
    let mut out = Vec::new();
    let mut skip_next = false;
    for a in c.args.iter().flatten() {
        if skip_next {
            skip_next = false;
            continue;
        }
        let n = norm(a);
        if flags.iter().any(|f| n.starts_with(&format!("{f}="))) {
            continue;
        }
        if flags.contains(&n.as_str()) {
            skip_next = true;
            continue;
        }
        out.push(a.clone());
    }
    out.extend(extra.iter().cloned());
    out
}

/// A strategic-merge patch of one container's args, and the patch that undoes it.
fn args_patch(w: &Workload<'_>, container: &str, args: Vec<String>, rule: &str) -> Change {
    let old = w
        .spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .and_then(|c| c.args.clone());
    let patch = |args: Json| json!({"spec": {"template": {"spec": {"containers": [{"name": container, "args": args}]}}}});
    let mut manifest = patch(json!(args));
    manifest["metadata"] = json!({"annotations": {RULE_ANNOTATION: rule}});
    let mut undo = patch(old.map_or(Json::Null, |a| json!(a)));
    undo["metadata"] = json!({"annotations": {RULE_ANNOTATION: Json::Null}});
    Change {
        action: Action::Patch,
        api_version: "apps/v1".into(),
        kind: w.kind.to_string(),
        name: w.name.to_string(),
        manifest,
        undo: Some(undo),
        status: ChangeStatus::Planned,
    }
}

fn restart_note(w: &Workload<'_>) -> String {
    format!(
        "changing the pod template restarts {} ({}): apply it in a quiet hour",
        w.subject(),
        if w.role == Role::Mysql {
            "MySQL is unavailable until its pod is back"
        } else {
            "Redis starts empty: New-API refills its cache from MySQL"
        }
    )
}

fn mysql_max_connections(
    ctx: &Ctx<'_>,
    planned_max: Option<i64>,
) -> std::result::Result<Fix, String> {
    let w = ctx
        .workload(Role::Mysql)
        .ok_or("MySQL is not in the cluster: raise max_connections where it runs")?;
    let c = w
        .spec
        .containers
        .first()
        .ok_or("the MySQL workload has no container")?;
    let (demand, mut notes) = rules::pool_demand(ctx, planned_max);
    let want = demand + rules::ADMIN_HEADROOM;
    let args = args_with(
        c,
        &["--max-connections"],
        &[format!("--max-connections={want}")],
    );
    notes.push(format!(
        "max_connections {want} = {demand} (the pools) + {} (administrators, backups, this tool)",
        rules::ADMIN_HEADROOM
    ));
    if let Some((now, from)) = rules::max_connections(ctx) {
        notes.push(format!("now: {now} ({from})"));
        let per_pod = now.saturating_sub(rules::ADMIN_HEADROOM)
            / u64::try_from(ctx.pods_max(planned_max).0.max(1)).unwrap_or(1);
        notes.push(format!(
            "or, instead, lower SQL_MAX_OPEN_CONNS to {} on the New-API workloads",
            per_pod.max(1)
        ));
    }
    notes.push(restart_note(w));
    Ok(Fix {
        id: "mysql-max-connections",
        rule: "newapi.sql-pool",
        summary: format!(
            "--max-connections={want} on {} container {}",
            w.subject(),
            c.name
        ),
        changes: vec![args_patch(w, &c.name, args, "newapi.sql-pool")],
        notes,
    })
}

fn redis_maxmemory(ctx: &Ctx<'_>) -> std::result::Result<Fix, String> {
    let w = ctx
        .workload(Role::Redis)
        .ok_or("Redis is not in the cluster")?;
    let c = w
        .spec
        .containers
        .first()
        .ok_or("the Redis workload has no container")?;
    let limit = rules::redis_limit(w)
        .ok_or("the Redis container has no memory limit to size maxmemory from")?;
    let mib = limit * REDIS_MAXMEMORY_PERCENT / 100 / (1024 * 1024);
    let live_policy = ctx
        .f
        .redis
        .got()
        .map(|r| r.policy.clone())
        .filter(|p| !p.is_empty() && p != "noeviction");
    let policy = rules::arg_value(c, "--maxmemory-policy")
        .or(live_policy)
        .unwrap_or_else(|| "allkeys-lru".into());
    let args = args_with(
        c,
        &["--maxmemory", "--maxmemory-policy"],
        &[
            "--maxmemory".into(),
            format!("{mib}mb"),
            "--maxmemory-policy".into(),
            policy.clone(),
        ],
    );
    let mut notes = vec![
        format!(
            "maxmemory {mib}mb = {REDIS_MAXMEMORY_PERCENT} % of the memory limit {} (the rest: Redis' overhead and a background save's copy-on-write)",
            crate::units::bytes(limit)
        ),
        format!(
            "policy {policy}: New-API's keys are a cache, evicting the least recently used is safe"
        ),
    ];
    if c.command.is_none() && c.args.is_none() {
        notes.push(
            "the official redis image starts redis-server with arguments that begin with `--`"
                .into(),
        );
    }
    notes.push(restart_note(w));
    Ok(Fix {
        id: "redis-maxmemory",
        rule: "kube.redis-maxmemory",
        summary: format!(
            "--maxmemory {mib}mb --maxmemory-policy {policy} on {} container {}",
            w.subject(),
            c.name
        ),
        changes: vec![args_patch(w, &c.name, args, "kube.redis-maxmemory")],
        notes,
    })
}

/// The changes as one YAML stream (patches preceded by a comment saying what they patch).
pub fn to_yaml(plan: &[Fix]) -> std::result::Result<String, String> {
    let mut out = String::new();
    for f in plan {
        for c in &f.changes {
            out.push_str("---\n");
            out.push_str(&format!("# fix {} ({}): {}\n", f.id, f.rule, c.what()));
            if c.action == Action::Patch {
                out.push_str(&format!(
                    "# strategic-merge patch of {} {}/{}\n",
                    c.api_version,
                    c.kind.to_lowercase(),
                    c.name
                ));
            }
            out.push_str(&serde_saphyr::to_string(&c.manifest).map_err(|e| e.to_string())?);
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// What a dry run said of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    Accepted,
    /// A create of an object that already exists (409).
    Exists,
}

/// Applies changes; behind a trait so that the all-or-nothing logic is tested without a cluster.
pub trait Applier: Send + Sync {
    fn dry_run<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<DryRun>>;
    fn apply<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>>;
    /// Deletes what `apply` created, or patches back what it patched.
    fn undo<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>>;
}

/// The real API server.
pub struct KubeApplier<'k> {
    pub kube: &'k Kube,
    pub namespace: String,
}

impl KubeApplier<'_> {
    fn api(&self, c: &Change) -> Api<DynamicObject> {
        let ar = discovery::resource(&c.api_version, &c.kind);
        Api::namespaced_with(self.kube.client.clone(), &self.namespace, &ar)
    }

    fn verb(c: &Change) -> &'static str {
        match c.action {
            Action::Create => "create",
            Action::Patch => "patch",
        }
    }

    async fn send(&self, c: &Change, dry_run: bool) -> Result<DryRun> {
        let api = self.api(c);
        let call = Call::new(Self::verb(c), c.resource_name(), Some(&self.namespace));
        let result = match c.action {
            Action::Create => {
                let obj: DynamicObject = serde_json::from_value(c.manifest.clone())
                    .map_err(|e| Error::Internal(format!("fix manifest {}: {e}", c.what())))?;
                let pp = PostParams {
                    dry_run,
                    field_manager: Some(MANAGED_BY.into()),
                };
                api.create(&pp, &obj).await.map(|_| ())
            }
            Action::Patch => {
                let pp = PatchParams {
                    dry_run,
                    field_manager: Some(MANAGED_BY.into()),
                    ..PatchParams::default()
                };
                api.patch(&c.name, &pp, &Patch::Strategic(&c.manifest))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(DryRun::Accepted),
            Err(kube::Error::Api(s)) if s.code == 409 && c.action == Action::Create => {
                Ok(DryRun::Exists)
            }
            Err(e) => Err(self.kube.error(&call, e)),
        }
    }
}

impl Applier for KubeApplier<'_> {
    fn dry_run<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<DryRun>> {
        Box::pin(self.send(c, true))
    }

    fn apply<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match self.send(c, false).await? {
                DryRun::Accepted => Ok(()),
                DryRun::Exists => Err(Error::Api {
                    call: c.what(),
                    code: 409,
                    message: "created meanwhile by someone else".into(),
                }),
            }
        })
    }

    fn undo<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let api = self.api(c);
            match (c.action, &c.undo) {
                (Action::Create, _) => {
                    let call = Call::new("delete", c.resource_name(), Some(&self.namespace));
                    api.delete(&c.name, &DeleteParams::background())
                        .await
                        .map(|_| ())
                        .map_err(|e| self.kube.error(&call, e))
                }
                (Action::Patch, Some(undo)) => {
                    let call = Call::new("patch", c.resource_name(), Some(&self.namespace));
                    let pp = PatchParams {
                        field_manager: Some(MANAGED_BY.into()),
                        ..PatchParams::default()
                    };
                    api.patch(&c.name, &pp, &Patch::Strategic(undo))
                        .await
                        .map(|_| ())
                        .map_err(|e| self.kube.error(&call, e))
                }
                (Action::Patch, None) => Ok(()),
            }
        })
    }
}

/// Server-side dry run of every change; the first refusal stops it (nothing is applied).
pub async fn dry_run_all(
    applier: &dyn Applier,
    fixes: &mut [Fix],
) -> std::result::Result<(), AuditError> {
    for f in fixes.iter_mut() {
        let id = f.id;
        for c in &mut f.changes {
            match applier.dry_run(c).await {
                Ok(DryRun::Accepted) => c.status = ChangeStatus::DryRunOk,
                Ok(DryRun::Exists) => c.status = ChangeStatus::Exists,
                Err(e) => {
                    c.status = ChangeStatus::Failed;
                    return Err(AuditError::Rejected {
                        what: format!("{} (fix {id})", c.what()),
                        source: Box::new(e),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What stops [`apply_all`] part-way: resolves with the signal (Ctrl-C, SIGTERM) that asked to stop.
pub type Stop<'a> = Pin<&'a mut (dyn Future<Output = Signal> + Send)>;

/// Applies every change that passed the dry run, in order; when one fails, undoes the ones
/// applied, in reverse order.
///
/// `stop` is watched throughout: a signal while a change is in flight lets that request finish
/// (its outcome is known, so it can be undone; a request dropped half-way might still be
/// carried out by the server), then everything this run applied is undone, and the rest is not
/// applied. `notify` is told at once that the signal was heard and what is done about it.
pub async fn apply_all(
    applier: &dyn Applier,
    fixes: &mut [Fix],
    mut stop: Stop<'_>,
    notify: &(dyn Fn(&str) + Sync),
) -> std::result::Result<(), AuditError> {
    let positions: Vec<(usize, usize)> = fixes
        .iter()
        .enumerate()
        .flat_map(|(i, f)| (0..f.changes.len()).map(move |j| (i, j)))
        .collect();
    let mut done: Vec<(usize, usize)> = Vec::new();
    let mut stopped: Option<(Signal, Option<String>)> = None;
    for &(i, j) in &positions {
        if fixes[i].changes[j].status != ChangeStatus::DryRunOk {
            continue;
        }
        // A signal between two changes: the next one is not started.
        if let Poll::Ready(signal) = futures::poll!(stop.as_mut()) {
            stopped = Some((signal, None));
            break;
        }
        let what = format!("{} (fix {})", fixes[i].changes[j].what(), fixes[i].id);
        let mut in_flight = applier.apply(&fixes[i].changes[j]);
        let result = tokio::select! {
            biased;
            r = &mut in_flight => r,
            signal = stop.as_mut() => {
                notify(&format!(
                    "{signal}: letting {what} finish, then rolling back what this run applied…"
                ));
                stopped = Some((signal, Some(what.clone())));
                (&mut in_flight).await
            }
        };
        drop(in_flight);
        match result {
            Ok(()) => {
                fixes[i].changes[j].status = ChangeStatus::Applied;
                done.push((i, j));
            }
            Err(e) if stopped.is_none() => {
                fixes[i].changes[j].status = ChangeStatus::Failed;
                let (rolled_back, not_rolled_back) = roll_back(applier, fixes, &done).await;
                return Err(AuditError::ApplyFailed {
                    what,
                    source: Box::new(e),
                    rolled_back,
                    not_rolled_back,
                });
            }
            Err(e) => {
                // Stopped meanwhile, and the change in flight failed anyway: nothing of it to undo.
                fixes[i].changes[j].status = ChangeStatus::Failed;
                tracing::info!("{what} failed after the signal: {e}");
            }
        }
        if stopped.is_some() {
            break;
        }
    }
    // A signal after the last change: undone all the same (the run was asked to stop before it
    // could say it had finished).
    if stopped.is_none()
        && let Poll::Ready(signal) = futures::poll!(stop.as_mut())
    {
        stopped = Some((signal, None));
    }
    let Some((signal, in_flight)) = stopped else {
        return Ok(());
    };
    notify(&format!(
        "{signal}: rolling back {} this run applied…",
        crate::units::plural(done.len(), "change", "changes")
    ));
    let (rolled_back, not_rolled_back) = roll_back(applier, fixes, &done).await;
    Err(AuditError::Interrupted {
        signal,
        in_flight,
        rolled_back,
        not_rolled_back,
    })
}

/// Undoes the changes `done` (in reverse order); what is left planned is marked not applied.
/// Returns the `Kind/name` undone and the `Kind/name: why` that could not be.
async fn roll_back(
    applier: &dyn Applier,
    fixes: &mut [Fix],
    done: &[(usize, usize)],
) -> (Vec<String>, Vec<String>) {
    let mut rolled_back = Vec::new();
    let mut not_rolled_back = Vec::new();
    for &(i, j) in done.iter().rev() {
        let c = &fixes[i].changes[j];
        let name = format!("{}/{}", c.kind, c.name);
        match applier.undo(c).await {
            Ok(()) => {
                rolled_back.push(name);
                fixes[i].changes[j].status = ChangeStatus::RolledBack;
            }
            Err(e) => not_rolled_back.push(format!("{name}: {e}")),
        }
    }
    for c in fixes.iter_mut().flat_map(|f| f.changes.iter_mut()) {
        if c.status == ChangeStatus::DryRunOk {
            c.status = ChangeStatus::NotApplied;
        }
    }
    (rolled_back, not_rolled_back)
}

#[cfg(test)]
mod tests;
