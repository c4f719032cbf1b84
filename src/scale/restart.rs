//! `restart`: what `kubectl rollout restart` does (the pod template's
//! `kubectl.kubernetes.io/restartedAt` annotation), after a look at whether the rolling update
//! has room for its extra pods ([`crate::capacity::place`]), followed by [`super::rollout::wait`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use crate::capacity::{Placement, place};
use crate::config::Settings;
use crate::confirm::Confirm;
use crate::error::{Error, Result};
use crate::inventory::Role;
use crate::k8s::{Call, Kube};
use crate::printer::{Printer, Style};
use crate::quantity::{format_bytes, format_cpu};

use super::apply::now;
use super::{Actor, ClusterView, FIELD_MANAGER, RESTARTED_AT_ANNOTATION, rollout};
use crate::units::plural;

/// The rolling-update arithmetic of a Deployment: how many extra pods a rollout adds at a time
/// and how many may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Strategy {
    pub recreate: bool,
    pub max_surge: i32,
    pub max_unavailable: i32,
}

fn resolve_int_or_percent(v: Option<&IntOrString>, replicas: i32, round_up: bool) -> i32 {
    match v {
        None => {
            resolve_int_or_percent(Some(&IntOrString::String("25%".into())), replicas, round_up)
        }
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(25);
            let scaled = pct * i64::from(replicas);
            let n = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(n).unwrap_or(i32::MAX)
        }
    }
}

/// Kubernetes' `ResolveFenceposts`: surge rounds up, unavailable down; both 0 means 1 unavailable.
pub fn strategy(dep: &Deployment) -> Strategy {
    let replicas = dep.spec.replicas.unwrap_or(1);
    let s = dep.spec.strategy.clone().unwrap_or_default();
    if s.type_.as_deref() == Some("Recreate") {
        return Strategy {
            recreate: true,
            max_surge: 0,
            max_unavailable: replicas,
        };
    }
    let ru = s.rolling_update.unwrap_or_default();
    let surge = resolve_int_or_percent(ru.max_surge.as_ref(), replicas, true);
    let mut unavailable = resolve_int_or_percent(ru.max_unavailable.as_ref(), replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Strategy {
        recreate: false,
        max_surge: surge,
        max_unavailable: unavailable.min(replicas),
    }
}

/// What `restart` shows before it acts, for one Deployment.
#[derive(Debug, Clone, Serialize)]
pub struct RestartPlan {
    pub namespace: String,
    pub deployment: String,
    pub role: Role,
    pub replicas: i32,
    pub strategy: Strategy,
    /// Where the extra pods of the rolling update would go (None without capacity or surge).
    pub surge: Option<Placement>,
    /// Why the restart would stall or interrupt service, if it would.
    pub warning: Option<String>,
}

impl RestartPlan {
    pub fn what(&self) -> String {
        format!(
            "deployment/{} in namespace {}",
            self.deployment, self.namespace
        )
    }
}

/// Builds the restart plan of one role's Deployment (pure, from the view).
pub fn plan_restart(view: &ClusterView, settings: &Settings, role: Role) -> Result<RestartPlan> {
    let name = &role.workload(settings).name;
    let dep = view.deployment(name)?;
    let replicas = dep.spec.replicas.unwrap_or(1);
    let strategy = strategy(dep);
    let surge = match (&view.nodes, &dep.spec.template.spec) {
        (Some(nodes), Some(t)) if strategy.max_surge > 0 && replicas > 0 => {
            Some(place(nodes, t, i64::from(strategy.max_surge.min(replicas))))
        }
        _ => None,
    };
    let warning = if replicas == 0 {
        Some("it has 0 replicas: there is nothing to restart".into())
    } else if strategy.recreate {
        Some(format!(
            "its strategy is Recreate: all {replicas} pods stop before new ones start (an outage)"
        ))
    } else {
        match &surge {
            Some(p) if p.placed.is_empty() && strategy.max_unavailable == 0 => Some(format!(
                "no room for the extra pod of the rolling update ({}) and maxUnavailable is 0: the rollout will stall until capacity is freed",
                p.reason.as_deref().unwrap_or("no node fits")
            )),
            Some(p) if p.placed.is_empty() => Some(format!(
                "no room for an extra pod ({}): pods are replaced {} at a time, serving with fewer replicas meanwhile",
                p.reason.as_deref().unwrap_or("no node fits"),
                strategy.max_unavailable
            )),
            _ if replicas == 1 && strategy.max_surge == 0 => {
                Some("a single replica with no surge: it is unavailable while it restarts".into())
            }
            _ => None,
        }
    };
    Ok(RestartPlan {
        namespace: view.snapshot.namespace.clone(),
        deployment: name.clone(),
        role,
        replicas,
        strategy,
        surge,
        warning,
    })
}

/// The restart plan for people.
pub fn render_restart_plan(plan: &RestartPlan, style: Style) -> String {
    let mut out = style.bold(&format!(
        "{}: restart {} ({})",
        plan.what(),
        plural(i64::from(plan.replicas), "pod", "pods"),
        if plan.strategy.recreate {
            "Recreate: all at once".to_string()
        } else {
            format!(
                "rolling update: up to {} extra, up to {} unavailable at a time",
                plan.strategy.max_surge, plan.strategy.max_unavailable
            )
        }
    ));
    out.push('\n');
    if let Some(p) = &plan.surge {
        for placed in &p.placed {
            out.push_str(&format!(
                "  extra pod → {} (left there: cpu {}, memory {})\n",
                placed.node,
                format_cpu(placed.free_after.cpu_millis),
                format_bytes(placed.free_after.memory_bytes)
            ));
        }
    }
    if let Some(w) = &plan.warning {
        out.push_str(&style.yellow(&format!("  warning: {w}\n")));
    }
    out
}

/// What [`apply_restart`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Restarted {
    pub deployment: String,
    pub at: String,
    pub by: String,
    /// The Deployment's generation after the change: the controller must observe it.
    pub generation: i64,
}

/// Sets the pod template's `kubectl.kubernetes.io/restartedAt` annotation (what `kubectl rollout
/// restart` does), which replaces every pod through a rolling update.
pub async fn apply_restart(kube: &Kube, plan: &RestartPlan, actor: &Actor) -> Result<Restarted> {
    let ns = plan.namespace.as_str();
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    let at = now();
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}
    });
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let dep = api
        .patch(&plan.deployment, &pp, &Patch::Merge(&patch))
        .await
        .map_err(|e| kube.error(&Call::new("patch", "deployments.apps", Some(ns)), e))?;
    let by = match &actor.context {
        Some(c) => format!("{} (context {c})", actor.user),
        None => actor.user.clone(),
    };
    tracing::info!("{at} restart {ns}/{} by {by}", plan.deployment);
    Ok(Restarted {
        deployment: plan.deployment.clone(),
        at,
        by,
        generation: dep.metadata.generation.unwrap_or(0),
    })
}

/// A restart, as the command line or a runbook step asks for it.
#[derive(Debug, Clone)]
pub struct RestartRequest {
    /// In order.
    pub roles: Vec<Role>,
    pub dry_run: bool,
    pub wait: Option<Duration>,
    pub progress: bool,
}

/// What a restart did.
#[derive(Debug, Serialize)]
pub struct RestartReport {
    pub plans: Vec<RestartPlan>,
    pub changed: bool,
    pub dry_run: bool,
    pub declined: bool,
    pub restarted: Vec<Restarted>,
    pub rollouts: Vec<rollout::RolloutReport>,
    pub error: Option<String>,
    #[serde(skip)]
    pub failure: Option<Error>,
}

/// The whole `restart`: plan each Deployment, show, confirm once, then restart and follow each
/// in turn (the next only once the previous one completed).
pub async fn execute_restart(
    kube: &Kube,
    settings: &Settings,
    req: &RestartRequest,
    confirm: &dyn Confirm,
    printer: &Printer,
) -> Result<RestartReport> {
    let view = ClusterView::load(kube, settings).await?;
    let plans = req
        .roles
        .iter()
        .map(|r| plan_restart(&view, settings, *r))
        .collect::<Result<Vec<_>>>()?;
    let mut report = RestartReport {
        plans,
        changed: false,
        dry_run: req.dry_run,
        declined: false,
        restarted: Vec::new(),
        rollouts: Vec::new(),
        error: None,
        failure: None,
    };
    if !printer.is_machine() {
        let text: String = report
            .plans
            .iter()
            .map(|p| render_restart_plan(p, printer.style))
            .collect();
        printer.text(&text)?;
    }
    if let Some(why) = &view.capacity_unknown {
        printer.warn(&format!("capacity not checked: {why}"));
    }
    if req.dry_run {
        printer.note("--dry-run: nothing was changed.");
        return Ok(report);
    }
    let names: Vec<String> = report
        .plans
        .iter()
        .map(|p| {
            format!(
                "deployment/{} ({})",
                p.deployment,
                plural(i64::from(p.replicas), "pod", "pods")
            )
        })
        .collect();
    let prompt = format!(
        "Restart {} in namespace {}{}?",
        names.join(", then "),
        settings.namespace,
        if report.plans.iter().any(|p| p.warning.is_some()) {
            " despite the warning"
        } else {
            ""
        }
    );
    if !confirm.confirm(&prompt)? {
        printer.note("Cancelled: nothing was changed.");
        report.declined = true;
        return Ok(report);
    }
    let actor = Actor::current(kube);
    for plan in report.plans.clone() {
        let done = apply_restart(kube, &plan, &actor).await?;
        report.changed = true;
        printer.note(&format!(
            "{} restart {}/{} by {}",
            done.at, plan.namespace, plan.deployment, done.by
        ));
        let generation = done.generation;
        let at = done.at.clone();
        report.restarted.push(done);
        let Some(timeout) = req.wait else {
            continue;
        };
        let watch = rollout::Watch {
            namespace: plan.namespace.clone(),
            name: plan.deployment.clone(),
            replicas: plan.replicas,
            min_generation: generation,
            timeout,
            progress: req.progress && !printer.is_machine() && !printer.quiet,
            story: rollout::Story {
                what: plan.what(),
                state: format!(
                    "the restart stays requested ({RESTARTED_AT_ANNOTATION}={at}); old pods keep serving until new ones are ready"
                ),
                accepted: format!(
                    "the deployment is as requested: the restart ({RESTARTED_AT_ANNOTATION}={at}) was accepted by the API server before the connection was lost; how far the rollout got could not be checked"
                ),
                next: "free or add capacity (`newapi-ops nodes`), or look at the new pods with `newapi-ops pods`".into(),
            },
        };
        match rollout::wait(kube, &watch).await {
            Ok(r) => {
                printer.note(&format!(
                    "{}: {}/{} replicas restarted and available after {}s.",
                    plan.what(),
                    r.available,
                    plan.replicas,
                    r.waited_seconds
                ));
                report.rollouts.push(r);
            }
            Err(e) => {
                report.error = Some(e.to_string());
                report.failure = Some(e);
                break;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::tests::{seed_dep, seed_view};
    use serde_json::json;

    #[test]
    fn rolling_update_fenceposts() {
        let d = seed_dep("x", "slave", 3, "1", "1Gi");
        assert_eq!(
            strategy(&d),
            Strategy {
                recreate: false,
                max_surge: 1,
                max_unavailable: 0
            }
        );
        let mut d = seed_dep("x", "slave", 1, "1", "1Gi");
        d.spec.strategy = Some(
            serde_json::from_value(json!({
                "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}
            }))
            .unwrap(),
        );
        assert_eq!(strategy(&d).max_unavailable, 1);
    }

    #[test]
    fn restarting_the_slaves_of_the_seed_uses_the_one_free_slot() {
        let (view, settings) = seed_view();
        let plan = plan_restart(&view, &settings, Role::Slave).unwrap();
        assert_eq!(plan.replicas, 3);
        let surge = plan.surge.as_ref().unwrap();
        assert_eq!(surge.placed[0].node, "node-a");
        assert!(plan.warning.is_none());
    }

    #[test]
    fn a_restart_with_no_room_and_no_unavailability_warns_it_would_stall() {
        let (mut view, settings) = seed_view();
        if let Some(nodes) = view.nodes.as_mut() {
            for n in nodes {
                n.requested.cpu_millis = n.allocatable.cpu_millis;
            }
        }
        let plan = plan_restart(&view, &settings, Role::Slave).unwrap();
        assert!(plan.warning.unwrap().contains("stall"));
    }
}
