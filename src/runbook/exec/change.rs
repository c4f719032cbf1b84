//! Mutating actions: each is planned first (read-only: what exactly will change, in one line
//! such as `scale deployment/new-api-slave in namespace new-api 3 → 4`), then applied. The
//! scale and restart go through the `scale` module's library functions (the same capacity
//! preflight, replica guard, record annotation and rollout follow-up as `newapi-ops scale` and
//! `newapi-ops restart`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value as Json, json};

use super::backends::{mysql, processlist};
use super::{Ctx, Done, err_line};
use crate::k8s::Call;
use crate::runbook::args::Resolved;
use crate::runbook::catalogue as c;
use crate::scale::{self, Actor, ClusterView, RestartPlan, ScalePlan, rollout};

/// What a mutating step would do.
#[derive(Debug)]
pub struct Plan {
    /// One line: exactly what changes (shown at the prompt and in a dry run).
    pub change: String,
    /// Further lines (capacity, warnings).
    pub details: Vec<String>,
    /// Nothing would change: the step succeeds without asking.
    pub noop: bool,
    /// The step's output when it is not applied (dry run, nothing to do).
    pub planned_output: Json,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Scale {
        plan: Box<ScalePlan>,
        wait: Option<Duration>,
    },
    Restart {
        plan: Box<RestartPlan>,
        wait: Option<Duration>,
    },
    Delete {
        pod: String,
        owner: String,
    },
    Kill {
        ids: Vec<i64>,
    },
    Backup(Box<super::backup::Job>),
}

async fn view(ctx: &Ctx) -> Result<ClusterView, String> {
    ClusterView::load(&ctx.kube, &ctx.settings)
        .await
        .map_err(|e| err_line(&e))
}

pub async fn plan_scale(ctx: &Ctx, a: &c::ScaleArgs<Resolved>) -> Result<Plan, String> {
    let name = a.role.role().workload(&ctx.settings).name.clone();
    let view = view(ctx).await?;
    let dep = view.deployment(&name).map_err(|e| err_line(&e))?;
    let from = dep.spec.replicas.unwrap_or(1);
    let to = match (a.replicas, a.by) {
        (Some(n), None) => n,
        (None, Some(by)) => i64::from(from) + by,
        (Some(_), Some(_)) => return Err("give `replicas` or `by`, not both".into()),
        (None, None) => {
            return Err("give `replicas` (the count wanted) or `by` (how many more)".into());
        }
    };
    let to = scale::check_replicas(
        to,
        scale::DEFAULT_MAX_REPLICAS,
        &format!("deployment/{name}"),
    )
    .map_err(|e| e.to_string())?;
    // The capacity model as `plan` and `scale` use it: a measured `[capacity]` value when the
    // config file has one.
    let (qps_per_pod, _) = ctx.settings.qps_per_pod(None, scale::DEFAULT_QPS_PER_POD);
    let plan = scale::plan_scale(&view, &ctx.settings, &name, to, qps_per_pod)
        .map_err(|e| err_line(&e))?;
    let mut details = Vec::new();
    let fits = plan.capacity.as_ref().map(|c| c.placement.placed.len());
    if let Some(c) = &plan.capacity {
        details.push(format!(
            "{} new pod{}: {} fit{}",
            c.new_pods,
            if c.new_pods == 1 { "" } else { "s" },
            c.placement.placed.len(),
            c.placement
                .reason
                .as_ref()
                .map(|r| format!(", the rest stay Pending ({r})"))
                .unwrap_or_default()
        ));
    }
    if let Some(why) = &plan.capacity_unknown {
        details.push(format!("capacity not checked: {why}"));
    }
    if a.check_capacity && plan.pending() > 0 {
        return Err(format!(
            "scaling deployment/{name} {from} → {to} would leave {} pod{} Pending: {}; free capacity first (runbook resource-shortage), or pass check_capacity: false",
            plan.pending(),
            if plan.pending() == 1 { "" } else { "s" },
            details.join("; ")
        ));
    }
    let change = format!("scale {} {from} → {to}", plan.what());
    let planned_output = json!({
        "deployment": name, "from": from, "to": to, "fits": fits,
        "ready": dep.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0), "applied": false,
    });
    Ok(Plan {
        noop: from == to,
        change,
        details,
        planned_output,
        kind: Kind::Scale {
            plan: Box::new(plan),
            wait: a.wait.then(|| a.timeout.duration()),
        },
    })
}

pub async fn plan_restart(ctx: &Ctx, a: &c::RestartArgs<Resolved>) -> Result<Plan, String> {
    let view = view(ctx).await?;
    let plan =
        scale::plan_restart(&view, &ctx.settings, a.role.role()).map_err(|e| err_line(&e))?;
    let mut details = Vec::new();
    if let Some(w) = &plan.warning {
        details.push(format!("warning: {w}"));
    }
    let change = format!(
        "restart {} ({} pod{} replaced, as `kubectl rollout restart`)",
        plan.what(),
        plan.replicas,
        if plan.replicas == 1 { "" } else { "s" }
    );
    let planned_output =
        json!({"deployment": plan.deployment, "restarted_at": "", "ready": 0, "applied": false});
    Ok(Plan {
        noop: plan.replicas == 0,
        change,
        details,
        planned_output,
        kind: Kind::Restart {
            plan: Box::new(plan),
            wait: a.wait.then(|| a.timeout.duration()),
        },
    })
}

pub async fn plan_delete(ctx: &Ctx, a: &c::PodDeleteArgs<Resolved>) -> Result<Plan, String> {
    let ns = ctx.settings.namespace.as_str();
    let api: Api<Pod> = Api::namespaced(ctx.kube.client.clone(), ns);
    let pod = api
        .get_opt(&a.pod)
        .await
        .map_err(|e| err_line(&ctx.kube.error(&Call::new("get", "pods", Some(ns)), e)))?
        .ok_or_else(|| format!("no pod `{}` in namespace {ns}", a.pod))?;
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map_or_else(|| "none".to_string(), |o| format!("{}/{}", o.kind, o.name));
    let mut details = Vec::new();
    if owner == "none" {
        details.push("warning: it has no controller: nothing will recreate it".into());
    } else {
        details.push(format!("{owner} creates a replacement"));
    }
    Ok(Plan {
        change: format!("delete pod {} in namespace {ns} (owner {owner})", a.pod),
        details,
        noop: false,
        planned_output: json!({"pod": a.pod, "owner": owner, "applied": false}),
        kind: Kind::Delete {
            pod: a.pod.clone(),
            owner,
        },
    })
}

pub async fn plan_kill(ctx: &Ctx, a: &c::KillQueryArgs<Resolved>) -> Result<Plan, String> {
    if a.id.is_none() == a.min_seconds.is_none() {
        return Err("give `id` (one statement) or `min_seconds` (every statement running that long), one of them".into());
    }
    let mut m = mysql(ctx).await?;
    let list = processlist(&mut m, a.min_seconds.unwrap_or(0), a.id, a.limit).await?;
    if let Some(id) = a.id
        && list.is_empty()
    {
        return Err(format!("no user statement with id {id} is running"));
    }
    let ids: Vec<i64> = list.iter().filter_map(|q| q["id"].as_i64()).collect();
    let details: Vec<String> = list
        .iter()
        .map(|q| {
            format!(
                "KILL QUERY {} ({}@{}, {} s: {})",
                q["id"],
                q["user"].as_str().unwrap_or("?"),
                q["host"].as_str().unwrap_or("?"),
                q["time"],
                q["info"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect::<String>()
            )
        })
        .collect();
    let change = if ids.is_empty() {
        "no statement to kill".to_string()
    } else {
        format!(
            "KILL QUERY {} on MySQL ({})",
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            m.via
        )
    };
    Ok(Plan {
        noop: ids.is_empty(),
        change,
        details,
        planned_output: json!({"count": ids.len(), "killed": ids, "applied": false}),
        kind: Kind::Kill { ids },
    })
}

fn story(what: String, state: String) -> rollout::Story {
    rollout::Story {
        accepted: format!("the change to {what} was accepted by the API server"),
        next: "newapi-ops runbook run resource-shortage (or look at `newapi-ops pods`)".into(),
        what,
        state,
    }
}

pub async fn apply(ctx: &Ctx, plan: Plan) -> Result<Done, String> {
    let actor = Actor::current(&ctx.kube);
    match plan.kind {
        Kind::Scale { plan: sp, wait } => {
            scale::apply_scale(&ctx.kube, &sp, &actor, false)
                .await
                .map_err(|e| err_line(&e))?;
            let mut ready = None;
            if let Some(timeout) = wait {
                let w = rollout::Watch {
                    namespace: sp.namespace.clone(),
                    name: sp.deployment.clone(),
                    replicas: sp.to,
                    min_generation: 0,
                    timeout,
                    progress: false,
                    story: story(
                        sp.what(),
                        format!("spec.replicas stays at {}, as requested", sp.to),
                    ),
                };
                let report = rollout::wait(&ctx.kube, &w).await.map_err(|e| {
                    format!("scaled {} → {}, but: {}", sp.from, sp.to, err_line(&e))
                })?;
                ready = Some(report.available);
            }
            let out = json!({
                "deployment": sp.deployment, "from": sp.from, "to": sp.to,
                "fits": sp.capacity.as_ref().map(|c| c.placement.placed.len()),
                "ready": ready.unwrap_or(0), "applied": true,
            });
            let summary = match ready {
                Some(r) => format!(
                    "scaled {} {} → {}; {r} available",
                    sp.what(),
                    sp.from,
                    sp.to
                ),
                None => format!("scaled {} {} → {} (not waiting)", sp.what(), sp.from, sp.to),
            };
            Ok(Done::of("deployment.scale", &out, summary))
        }
        Kind::Restart { plan: rp, wait } => {
            let done = scale::apply_restart(&ctx.kube, &rp, &actor)
                .await
                .map_err(|e| err_line(&e))?;
            let mut ready = None;
            if let Some(timeout) = wait {
                let w = rollout::Watch {
                    namespace: rp.namespace.clone(),
                    name: rp.deployment.clone(),
                    replicas: rp.replicas,
                    min_generation: done.generation,
                    timeout,
                    progress: false,
                    story: story(
                        rp.what(),
                        "the restart annotation stays; the rollout goes on".into(),
                    ),
                };
                let report = rollout::wait(&ctx.kube, &w).await.map_err(|e| {
                    format!("restart requested at {}, but: {}", done.at, err_line(&e))
                })?;
                ready = Some(report.available);
            }
            let out = json!({"deployment": rp.deployment, "restarted_at": done.at,
                "ready": ready.unwrap_or(0), "applied": true});
            let summary = format!(
                "restarted {} at {}{}",
                rp.what(),
                done.at,
                ready
                    .map(|r| format!("; {r} available"))
                    .unwrap_or_default()
            );
            Ok(Done::of("deployment.restart", &out, summary))
        }
        Kind::Delete { pod, owner } => {
            let ns = ctx.settings.namespace.as_str();
            let api: Api<Pod> = Api::namespaced(ctx.kube.client.clone(), ns);
            api.delete(&pod, &DeleteParams::default())
                .await
                .map_err(|e| {
                    err_line(&ctx.kube.error(&Call::new("delete", "pods", Some(ns)), e))
                })?;
            let out = json!({"pod": pod, "owner": owner, "applied": true});
            Ok(Done::of(
                "pod.delete",
                &out,
                format!("deleted pod {pod} ({owner} replaces it)"),
            ))
        }
        Kind::Backup(job) => super::backup::apply(ctx, *job).await,
        Kind::Kill { ids } => {
            let mut m = mysql(ctx).await?;
            let mut killed = Vec::new();
            let mut gone = Vec::new();
            for id in ids {
                use mysql_async::prelude::Queryable;
                match m.conn.query_drop(format!("KILL QUERY {id}")).await {
                    Ok(()) => killed.push(id),
                    // 1094: unknown thread id — it finished meanwhile.
                    Err(mysql_async::Error::Server(e)) if e.code == 1094 => gone.push(id),
                    Err(e) => return Err(format!("KILL QUERY {id} failed ({}): {e}", m.via)),
                }
            }
            let summary = format!(
                "killed {} statement{}{}",
                killed.len(),
                if killed.len() == 1 { "" } else { "s" },
                if gone.is_empty() {
                    String::new()
                } else {
                    format!(" ({} had finished already)", gone.len())
                }
            );
            let out = json!({"count": killed.len(), "killed": killed, "applied": true});
            Ok(Done::of("mysql.kill_query", &out, summary))
        }
    }
}
