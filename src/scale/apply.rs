//! Applying a scale: one write through the `scale` subresource, the record of what was done
//! (from → to, who, when) in [`super::LAST_SCALE_ANNOTATION`] for `scale --undo`, and
//! [`execute_scale`], which chains view → plan → confirmation → apply → rollout for the command and
//! the runbook engine.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::{
    ClusterView, FIELD_MANAGER, LAST_SCALE_ANNOTATION, ScalePlan, plan_scale, render_scale_plan,
    rollout,
};
use crate::config::Settings;
use crate::confirm::Confirm;
use crate::error::{Error, Result};
use crate::k8s::{Call, Kube};
use crate::printer::Printer;

/// Who made a change: the local user and the kubeconfig context.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user: String,
    pub context: Option<String>,
}

impl Actor {
    /// The user running this process, with the context of `kube`.
    pub fn current(kube: &Kube) -> Actor {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
        Actor {
            user,
            context: kube.context.clone(),
        }
    }
}

/// What `scale` did, as recorded on the Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRecord {
    pub from: i32,
    pub to: i32,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undo: bool,
}

impl ScaleRecord {
    /// The record on a Deployment, if any (an unreadable one is ignored with a warning).
    pub fn of(dep: &Deployment) -> Option<ScaleRecord> {
        let raw = dep
            .metadata
            .annotations
            .as_ref()?
            .get(LAST_SCALE_ANNOTATION)?;
        match serde_json::from_str(raw) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    "ignoring unreadable annotation {LAST_SCALE_ANNOTATION}={raw:?}: {e}"
                );
                None
            }
        }
    }

    /// The log line: `2026-11-25T10:00:00Z scale new-api/new-api-slave 3 -> 5 by alice (context x)`.
    pub fn log_line(&self, namespace: &str, name: &str) -> String {
        format!(
            "{} scale{} {namespace}/{name} {} -> {} by {}{}",
            self.at,
            if self.undo { " (undo)" } else { "" },
            self.from,
            self.to,
            self.by,
            self.context
                .as_deref()
                .map(|c| format!(" (context {c})"))
                .unwrap_or_default()
        )
    }
}

/// The time now, RFC 3339 in UTC to the second.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What [`apply_scale`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub record: ScaleRecord,
    /// Whether the record could be written on the Deployment.
    pub annotated: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Sets the replicas through the `scale` subresource — only if they still are `plan.from` (a
/// change since the plan is a [`Error::ReplicasChanged`], nothing written) — then records the
/// change on the Deployment.
pub async fn apply_scale(
    kube: &Kube,
    plan: &ScalePlan,
    actor: &Actor,
    undo: bool,
) -> Result<Applied> {
    let ns = plan.namespace.as_str();
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    let get_call = Call::new("get", "deployments/scale", Some(ns));
    let patch_call = Call::new("patch", "deployments/scale", Some(ns));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let scale: Scale = api
            .get_scale(&plan.deployment)
            .await
            .map_err(|e| kube.error(&get_call, e))?;
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if current != plan.from {
            return Err(Error::ReplicasChanged {
                what: plan.what(),
                expected: plan.from,
                found: current,
                detail: "someone changed them after the plan was made; nothing was changed — look at the plan again".into(),
            });
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": scale.metadata.resource_version},
            "spec": {"replicas": plan.to},
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api
            .patch_scale(&plan.deployment, &pp, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => break,
            // The Deployment changed between our read and write (its status, most often): read
            // again; the replicas are compared again.
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => {}
            Err(e) => return Err(kube.error(&patch_call, e)),
        }
    }
    let record = ScaleRecord {
        from: plan.from,
        to: plan.to,
        by: actor.user.clone(),
        context: actor.context.clone(),
        at: now(),
        undo,
    };
    tracing::info!("{}", record.log_line(ns, &plan.deployment));
    let mut warnings = Vec::new();
    let value = serde_json::to_string(&record)
        .map_err(|e| Error::Internal(format!("serializing the scale record: {e}")))?;
    let patch = serde_json::json!({"metadata": {"annotations": {LAST_SCALE_ANNOTATION: value}}});
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let annotated = match api
        .patch(&plan.deployment, &pp, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            let err = kube.error(&Call::new("patch", "deployments.apps", Some(ns)), e);
            warnings.push(format!(
                "the replicas were changed, but recording it in the annotation {LAST_SCALE_ANNOTATION} failed ({err}): `scale --undo` will not know about this change"
            ));
            false
        }
    };
    Ok(Applied {
        record,
        annotated,
        warnings,
    })
}

/// How `scale` picks its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Replicas(i32),
    /// The count before the last recorded scale.
    Undo,
}

/// A scale, as the command line or a runbook step asks for it.
#[derive(Debug, Clone)]
pub struct ScaleRequest {
    /// The Deployment (the slaves, for the `scale` command).
    pub deployment: String,
    pub target: Target,
    pub qps_per_pod: u32,
    /// Where `qps_per_pod` comes from, shown with it.
    pub qps_source: String,
    pub dry_run: bool,
    /// Follow the rollout for at most this long; None: do not wait.
    pub wait: Option<Duration>,
    /// Draw a progress bar while waiting (on a terminal only).
    pub progress: bool,
}

/// What a scale did, printed as JSON by the command.
#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub plan: ScalePlan,
    /// Whether anything was written.
    pub changed: bool,
    pub dry_run: bool,
    /// The answer at the prompt was no.
    pub declined: bool,
    pub applied: Option<Applied>,
    pub rollout: Option<rollout::RolloutReport>,
    /// The error the rollout ended with, if any (also returned as [`ScaleReport::failure`]).
    pub error: Option<String>,
    #[serde(skip)]
    pub failure: Option<Error>,
}

/// Validates a replica count against `0..=max`.
pub fn check_replicas(n: i64, max: i32, what: &str) -> Result<i32> {
    if n < 0 || n > i64::from(max) {
        return Err(Error::Usage(format!(
            "{what} asks for {n} replicas; the allowed range is 0 to {max} (raise the maximum with --max-replicas or NEWAPI_OPS_MAX_REPLICAS)"
        )));
    }
    i32::try_from(n).map_err(|_| Error::Usage(format!("{n} replicas is out of range")))
}

/// The whole `scale`: plan, show, confirm, apply, record, follow. Printing goes through
/// `printer` (the plan in human mode before asking; nothing in JSON mode, where the caller prints
/// the returned report). The rollout's failure is in [`ScaleReport::failure`].
pub async fn execute_scale(
    kube: &Kube,
    settings: &Settings,
    req: &ScaleRequest,
    max_replicas: i32,
    confirm: &dyn Confirm,
    printer: &Printer,
) -> Result<ScaleReport> {
    let view = ClusterView::load(kube, settings).await?;
    let dep = view.deployment(&req.deployment)?;
    let (to, undoes) = match req.target {
        Target::Replicas(n) => (n, None),
        Target::Undo => {
            let what = format!(
                "deployment/{} in namespace {}",
                req.deployment, settings.namespace
            );
            let record = ScaleRecord::of(dep).ok_or_else(|| Error::NothingToUndo {
                what: what.clone(),
                annotation: LAST_SCALE_ANNOTATION.into(),
            })?;
            let now = dep.spec.replicas.unwrap_or(1);
            if now != record.to {
                return Err(Error::ReplicasChanged {
                    what,
                    expected: record.to,
                    found: now,
                    detail: format!(
                        "newapi-ops left them at {} ({} → {} by {} at {}) and someone changed them since; --undo would overwrite that change, so nothing was changed",
                        record.to, record.from, record.to, record.by, record.at
                    ),
                });
            }
            let to = check_replicas(i64::from(record.from), max_replicas, "--undo")?;
            (to, Some(record))
        }
    };
    let mut plan = plan_scale(&view, settings, &req.deployment, to, req.qps_per_pod)?;
    plan.qps_source.clone_from(&req.qps_source);
    plan.undoes = undoes;
    let mut report = ScaleReport {
        plan,
        changed: false,
        dry_run: req.dry_run,
        declined: false,
        applied: None,
        rollout: None,
        error: None,
        failure: None,
    };
    let plan = &report.plan;
    if plan.from == plan.to {
        printer.note(&format!(
            "{} already has {} replicas: nothing to do.",
            plan.what(),
            plan.to
        ));
        return Ok(report);
    }
    if !printer.is_machine() {
        printer.text(&render_scale_plan(plan, printer.style, printer))?;
    }
    if let Some(why) = &plan.capacity_unknown {
        printer.warn(&format!("capacity not checked: {why}"));
    }
    if req.dry_run {
        printer.note("--dry-run: nothing was changed.");
        return Ok(report);
    }
    if !confirm.confirm(&plan.prompt())? {
        printer.note("Cancelled: nothing was changed.");
        report.declined = true;
        return Ok(report);
    }
    let actor = Actor::current(kube);
    let applied = apply_scale(kube, plan, &actor, report.plan.undoes.is_some()).await?;
    report.changed = true;
    for w in &applied.warnings {
        printer.warn(w);
    }
    printer.note(&applied.record.log_line(&plan.namespace, &plan.deployment));
    let record = applied.record.clone();
    report.applied = Some(applied);
    let Some(timeout) = req.wait else {
        return Ok(report);
    };
    let plan = &report.plan;
    let watch = rollout::Watch {
        namespace: plan.namespace.clone(),
        name: plan.deployment.clone(),
        replicas: plan.to,
        min_generation: 0,
        timeout,
        progress: req.progress && !printer.is_machine() && !printer.quiet,
        story: rollout::Story {
            what: plan.what(),
            state: format!(
                "spec.replicas stays at {}, as requested (newapi-ops never scales back by itself)",
                plan.to
            ),
            accepted: format!(
                "the deployment is as requested: spec.replicas = {} was accepted by the API server at {}, before the connection was lost; whether its pods are up could not be checked",
                plan.to, record.at
            ),
            next: if plan.to > plan.from {
                format!(
                    "free or add capacity (`newapi-ops nodes`), or go back to {} with `newapi-ops scale --undo`",
                    plan.from
                )
            } else {
                format!(
                    "look at the pods with `newapi-ops pods`; `newapi-ops scale --undo` goes back to {}",
                    plan.from
                )
            },
        },
    };
    match rollout::wait(kube, &watch).await {
        Ok(r) => {
            printer.note(&format!(
                "{}: {}/{} replicas available after {}s.",
                plan.what(),
                r.available,
                plan.to,
                r.waited_seconds
            ));
            report.rollout = Some(r);
        }
        Err(e) => {
            report.error = Some(e.to_string());
            report.failure = Some(e);
        }
    }
    Ok(report)
}
