//! Running actions against the cluster and the backends. Read-only actions run directly;
//! mutating ones are planned first (read-only: what exactly would change), then applied — the
//! engine decides in between (dry-run, confirmation).

mod backends;
mod backup;
mod change;
mod cluster;

use serde::Serialize;
use serde_json::Value as Json;

use super::args::{Resolved, Resolver};
use super::catalogue::{self as c, Action};
use crate::config::Settings;
use crate::k8s::Kube;

pub use change::Plan;

/// What actions need: the cluster and the settings.
pub struct Ctx {
    pub kube: Kube,
    pub settings: Settings,
}

/// A step's result: its output (what later steps read) and one line for people.
#[derive(Debug, Clone)]
pub struct Done {
    pub output: Json,
    pub summary: String,
}

impl Done {
    /// From a typed output. In debug builds, checks that every field the catalogue declares
    /// for `action` is there.
    pub fn of<T: Serialize>(action: &str, out: &T, summary: impl Into<String>) -> Done {
        let output = serde_json::to_value(out).unwrap_or(Json::Null);
        if let (Some(spec), Json::Object(map)) = (c::spec(action), &output) {
            for f in spec.outputs {
                debug_assert!(
                    map.contains_key(f.name),
                    "{action}: output field {} missing",
                    f.name
                );
            }
        }
        Done {
            output,
            summary: summary.into(),
        }
    }
}

/// An action with its arguments' values.
#[derive(Debug, Clone)]
pub enum Call {
    PodsList(c::PodsListArgs<Resolved>),
    PodsFailing(c::PodsFailingArgs<Resolved>),
    PodsDescribe(c::PodsDescribeArgs<Resolved>),
    PodsTop(c::PodsTopArgs<Resolved>),
    LogsFetch(c::LogsFetchArgs<Resolved>),
    NodesAllocation,
    NodesConditions,
    ObjectsList(c::ObjectsListArgs<Resolved>),
    MysqlPing,
    MysqlStatus,
    MysqlProcesslist(c::ProcesslistArgs<Resolved>),
    MysqlTableSizes(c::TableSizesArgs<Resolved>),
    RedisPing,
    RedisInfo,
    AppStatus,
    AppBackends,
    Diagnose(c::DiagnoseArgs<Resolved>),
    DeploymentScale(c::ScaleArgs<Resolved>),
    DeploymentRestart(c::RestartArgs<Resolved>),
    PodDelete(c::PodDeleteArgs<Resolved>),
    MysqlKillQuery(c::KillQueryArgs<Resolved>),
    MysqlBackup(c::BackupArgs<Resolved>),
    BackupVerify(c::BackupVerifyArgs<Resolved>),
    Manual(c::ManualArgs<Resolved>),
    Assert(c::AssertArgs<Resolved>),
}

/// Gives every argument its value (expressions are evaluated now).
pub fn resolve(action: &Action, r: &mut Resolver<'_>) -> Result<Call, String> {
    Ok(match action {
        Action::PodsList(a) => Call::PodsList(a.resolve(r)?),
        Action::PodsFailing(a) => Call::PodsFailing(a.resolve(r)?),
        Action::PodsDescribe(a) => Call::PodsDescribe(a.resolve(r)?),
        Action::PodsTop(a) => Call::PodsTop(a.resolve(r)?),
        Action::LogsFetch(a) => Call::LogsFetch(a.resolve(r)?),
        Action::NodesAllocation(_) => Call::NodesAllocation,
        Action::NodesConditions(_) => Call::NodesConditions,
        Action::ObjectsList(a) => Call::ObjectsList(a.resolve(r)?),
        Action::MysqlPing(_) => Call::MysqlPing,
        Action::MysqlStatus(_) => Call::MysqlStatus,
        Action::MysqlProcesslist(a) => Call::MysqlProcesslist(a.resolve(r)?),
        Action::MysqlTableSizes(a) => Call::MysqlTableSizes(a.resolve(r)?),
        Action::RedisPing(_) => Call::RedisPing,
        Action::RedisInfo(_) => Call::RedisInfo,
        Action::AppStatus(_) => Call::AppStatus,
        Action::AppBackends(_) => Call::AppBackends,
        Action::Diagnose(a) => Call::Diagnose(a.resolve(r)?),
        Action::DeploymentScale(a) => Call::DeploymentScale(a.resolve(r)?),
        Action::DeploymentRestart(a) => Call::DeploymentRestart(a.resolve(r)?),
        Action::PodDelete(a) => Call::PodDelete(a.resolve(r)?),
        Action::MysqlKillQuery(a) => Call::MysqlKillQuery(a.resolve(r)?),
        Action::MysqlBackup(a) => Call::MysqlBackup(a.resolve(r)?),
        Action::BackupVerify(a) => Call::BackupVerify(a.resolve(r)?),
        Action::Manual(a) => Call::Manual(a.resolve(r)?),
        Action::Assert(a) => Call::Assert(a.resolve(r)?),
    })
}

/// Runs a read-only action.
pub async fn read(ctx: &Ctx, call: &Call) -> Result<Done, String> {
    match call {
        Call::PodsList(a) => cluster::pods_list(ctx, a).await,
        Call::PodsFailing(a) => cluster::pods_failing(ctx, a).await,
        Call::PodsDescribe(a) => cluster::pods_describe(ctx, a).await,
        Call::PodsTop(a) => cluster::pods_top(ctx, a).await,
        Call::LogsFetch(a) => cluster::logs_fetch(ctx, a).await,
        Call::NodesAllocation => cluster::nodes_allocation(ctx).await,
        Call::NodesConditions => cluster::nodes_conditions(ctx).await,
        Call::ObjectsList(a) => cluster::objects_list(ctx, a).await,
        Call::AppStatus => cluster::app_status(ctx).await,
        Call::AppBackends => cluster::app_backends(ctx).await,
        Call::Diagnose(a) => cluster::diagnose(ctx, a).await,
        Call::MysqlPing => backends::mysql_ping(ctx).await,
        Call::MysqlStatus => backends::mysql_status(ctx).await,
        Call::MysqlProcesslist(a) => backends::mysql_processlist(ctx, a).await,
        Call::MysqlTableSizes(a) => backends::mysql_table_sizes(ctx, a).await,
        Call::RedisPing => backends::redis_ping(ctx).await,
        Call::RedisInfo => backends::redis_info(ctx).await,
        Call::BackupVerify(a) => backup::verify(a).await,
        Call::DeploymentScale(_)
        | Call::DeploymentRestart(_)
        | Call::PodDelete(_)
        | Call::MysqlKillQuery(_)
        | Call::MysqlBackup(_)
        | Call::Manual(_)
        | Call::Assert(_) => Err("internal error: not a read-only action".into()),
    }
}

/// Works out what a mutating action would change (reads only).
pub async fn plan(ctx: &Ctx, call: &Call) -> Result<Plan, String> {
    match call {
        Call::DeploymentScale(a) => change::plan_scale(ctx, a).await,
        Call::DeploymentRestart(a) => change::plan_restart(ctx, a).await,
        Call::PodDelete(a) => change::plan_delete(ctx, a).await,
        Call::MysqlKillQuery(a) => change::plan_kill(ctx, a).await,
        Call::MysqlBackup(a) => backup::plan(ctx, a).await,
        _ => Err("internal error: not a mutating action".into()),
    }
}

/// Applies a plan.
pub async fn apply(ctx: &Ctx, plan: Plan) -> Result<Done, String> {
    change::apply(ctx, plan).await
}

/// An error of ours as one line with its hint.
pub fn err_line(e: &crate::error::Error) -> String {
    match e.hint() {
        Some(h) => format!("{e} (hint: {h})"),
        None => e.to_string(),
    }
}
