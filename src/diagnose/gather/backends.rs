//! The MySQL and Redis check groups: each backend reached as New-API reaches it (the master's
//! SQL_DSN / REDIS_CONN_STRING, through a port-forward from outside the cluster) unless the
//! options give a URL, with what the checks need to know about New-API (its pods, its pool).

use std::collections::BTreeMap;

use super::Ctx;
use crate::backends::{Backend, Endpoint, ResolveError};
use crate::capacity::pod_is_active;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::{mysql, redis as redis_check};
use crate::envvars::{EnvValue, resolve};
use crate::inventory::{Role, Snapshot};
use crate::portforward::Forward;

/// A backend reached: where, the port-forward that keeps it reachable, and how it was found.
type Reached = (Endpoint, Option<Forward>, String);

/// How to reach a backend: the user's URL, else the New-API env var through the cluster (the
/// shared resolution of [`crate::backends`], fed with the data diagnose listed once).
async fn endpoint(ctx: &Ctx, backend: Backend) -> Result<Reached, Finding> {
    let (component, url) = match backend {
        Backend::Mysql => (Component::Mysql, &ctx.opts.mysql_url),
        Backend::Redis => (Component::Redis, &ctx.opts.redis_url),
    };
    let scheme = backend.scheme();
    let to_finding = |e: ResolveError| {
        let (check, severity, next) = match &e {
            ResolveError::Unset { .. } => (
                "unconfigured",
                if component == Component::Redis {
                    Severity::Info
                } else {
                    Severity::Critical
                },
                format!("pass --{scheme}-url to check a {scheme} server anyway"),
            ),
            ResolveError::BadUrl { .. } => ("connect", Severity::Critical, "fix the URL".into()),
            ResolveError::NoPod { .. } => (
                "connect",
                Severity::Critical,
                "see the pods findings".into(),
            ),
            ResolveError::Forward { .. } => (
                "connect",
                Severity::Critical,
                "check RBAC for pods/portforward".into(),
            ),
            other => (
                "connect",
                Severity::Critical,
                other.hint().unwrap_or_default(),
            ),
        };
        Finding::new(
            component,
            &format!("{}.{check}", component.as_str()),
            severity,
            e.to_string(),
        )
        .next(next)
    };
    if let Some(url) = url {
        let r = crate::backends::endpoint_from_url(backend, url).map_err(to_finding)?;
        return Ok((r.endpoint, r.forward, r.via));
    }
    let d = ctx.data(component).map_err(|f| *f)?;
    let master = d
        .snapshot
        .controller(Role::Master, &ctx.settings)
        .and_then(|c| c.template);
    let env: BTreeMap<String, EnvValue> = master
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| resolve(c, &d.sources()))
        .unwrap_or_default();
    let master_name = format!("Deployment {}", ctx.settings.workloads.master.name);
    let reached =
        crate::backends::endpoint_from_env(backend, &env, &master_name).map_err(to_finding)?;
    let pods = d
        .pods
        .others
        .iter()
        .filter(|p| Snapshot::role_of(p, &ctx.settings) == Some(backend.role()));
    let r = crate::backends::forward_if_needed(
        reached,
        backend,
        ctx.kube.as_ref(),
        &ctx.settings.namespace,
        pods,
    )
    .await
    .map_err(to_finding)?;
    Ok((r.endpoint, r.forward, r.via))
}

/// The number of New-API pods and a variable of the master's environment, parsed.
fn new_api_pods_and_env<T: std::str::FromStr>(ctx: &Ctx, var: &str) -> (u32, Option<T>) {
    let Some(Ok(d)) = ctx.data.as_ref() else {
        return (1, None);
    };
    let pods = d
        .new_api_pods(&ctx.settings)
        .filter(|p| pod_is_active(p))
        .count()
        + d.pods.healthy_slaves.len();
    let value = d
        .snapshot
        .controller(Role::Master, &ctx.settings)
        .and_then(|c| c.template)
        .and_then(|t| t.containers.first().map(|c| resolve(c, &d.sources())))
        .and_then(|env| {
            env.get(var)
                .and_then(EnvValue::value)
                .and_then(|v| v.expose().trim().parse().ok())
        });
    (u32::try_from(pods).unwrap_or(u32::MAX).max(1), value)
}

/// Adds how the backend was reached to the evidence of its connect finding.
fn note_via(out: &mut [Finding], connect_check: &str, via: &str) {
    for f in out {
        if f.check == connect_check {
            f.evidence.push(format!("reached as {via}"));
        }
    }
}

pub(super) async fn check_mysql(ctx: &Ctx) -> Vec<Finding> {
    let (ep, fwd, via) = match endpoint(ctx, Backend::Mysql).await {
        Ok(x) => x,
        Err(f) => return vec![f],
    };
    let (new_api_pods, max_open) = new_api_pods_and_env::<u32>(ctx, "SQL_MAX_OPEN_CONNS");
    let (_, lifetime) = new_api_pods_and_env::<u64>(ctx, "SQL_MAX_LIFETIME");
    let defaults = mysql::MysqlCheckConfig::default();
    let cfg = mysql::MysqlCheckConfig {
        database: ep.database.clone().unwrap_or_else(|| "new-api".into()),
        new_api_pods,
        sql_max_open_conns: max_open.unwrap_or(defaults.sql_max_open_conns),
        sql_max_lifetime_secs: lifetime.unwrap_or(defaults.sql_max_lifetime_secs),
        long_query_secs: ctx.opts.long_query.as_secs(),
        budget: Some(ctx.opts.timeout.mul_f32(0.9)),
        // Through a port-forward: named after the workload, not the local port of this run.
        subject: fwd.as_ref().map(|_| {
            format!(
                "{}@{}",
                ep.user.as_deref().unwrap_or("(no user)"),
                ctx.settings.workloads.mysql.name
            )
        }),
        ..defaults
    };
    let mut out = mysql::check(ep.mysql_opts(), &cfg).await;
    note_via(&mut out, "mysql.connect", &via);
    out
}

/// The memory limit of the Redis pods' first container, in bytes.
fn redis_memory_limit(ctx: &Ctx) -> Option<u64> {
    let Some(Ok(d)) = ctx.data.as_ref() else {
        return None;
    };
    let spec = d
        .snapshot
        .controller(Role::Redis, &ctx.settings)?
        .template?;
    let limits = spec
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?;
    let bytes = crate::quantity::parse_value(&limits.get("memory")?.0).ok()?;
    u64::try_from(bytes).ok()
}

pub(super) async fn check_redis(ctx: &Ctx) -> Vec<Finding> {
    let (ep, fwd, via) = match endpoint(ctx, Backend::Redis).await {
        Ok(x) => x,
        Err(f) => return vec![f],
    };
    let client = match redis::Client::open(ep.redis_info()) {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::new(
                Component::Redis,
                "redis.connect",
                Severity::Critical,
                format!("bad Redis address {ep}: {e}"),
            )];
        }
    };
    let (new_api_pods, _) = new_api_pods_and_env::<u32>(ctx, "SQL_MAX_OPEN_CONNS");
    let cfg = redis_check::RedisCheckConfig {
        budget: Some(ctx.opts.timeout.mul_f32(0.9)),
        memory_limit_bytes: redis_memory_limit(ctx),
        new_api_pods,
        subject: fwd
            .as_ref()
            .map(|_| ctx.settings.workloads.redis.name.clone()),
        ..Default::default()
    };
    let mut out = redis_check::check(client, &cfg).await;
    note_via(&mut out, "redis.connect", &via);
    out
}
