//! `newapi-ops pods`: one table of the deployment's pods — role, status, readiness, restarts,
//! last termination, node, age — from one list call per kind.

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::commands::GlobalArgs;
use crate::error::Result;
use crate::exit;
use crate::inventory::{Controller, Role, Snapshot};
use crate::k8s;
use crate::printer::{Printer, Style, render_table};
use crate::units::{age as human_age, seconds_since};

#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Only pods of this role.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Master,
    Slave,
    Mysql,
    Redis,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Master => Role::Master,
            RoleArg::Slave => Role::Slave,
            RoleArg::Mysql => Role::Mysql,
            RoleArg::Redis => Role::Redis,
        }
    }
}

/// How a container last ended.
#[derive(Debug, Clone, Serialize)]
pub struct Termination {
    pub container: String,
    pub reason: String,
    pub exit_code: i32,
    pub finished_secs_ago: Option<i64>,
}

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (exit {})", self.reason, self.exit_code)?;
        if let Some(ago) = self.finished_secs_ago {
            write!(f, " {} ago", human_age(ago))?;
        }
        Ok(())
    }
}

/// One pod as an operator wants to see it.
#[derive(Debug, Clone, Serialize)]
pub struct PodView {
    pub role: Role,
    pub name: String,
    /// kubectl's STATUS column: a waiting or terminated reason when there is one, else the phase.
    pub status: String,
    pub phase: String,
    pub ready_containers: usize,
    pub containers: usize,
    pub restarts: i32,
    pub last_termination: Option<Termination>,
    pub node: Option<String>,
    pub age_secs: Option<i64>,
}

impl PodView {
    pub fn new(pod: &Pod, role: Role) -> PodView {
        let status = pod.status.clone().unwrap_or_default();
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
        let mut shown = status.reason.clone().unwrap_or_else(|| phase.clone());
        for cs in &statuses {
            let state = cs.state.clone().unwrap_or_default();
            if let Some(reason) = state.waiting.and_then(|w| w.reason) {
                shown = reason;
                break;
            }
            if let Some(reason) = state.terminated.and_then(|t| t.reason) {
                shown = reason;
                break;
            }
        }
        if pod.metadata.deletion_timestamp.is_some() {
            shown = "Terminating".into();
        }
        let last_termination = statuses
            .iter()
            .filter_map(|cs| {
                let t = cs.last_state.as_ref()?.terminated.as_ref()?;
                Some(Termination {
                    container: cs.name.clone(),
                    reason: t.reason.clone().unwrap_or_else(|| "Terminated".into()),
                    exit_code: t.exit_code,
                    finished_secs_ago: t.finished_at.as_ref().map(|f| seconds_since(&f.0)),
                })
            })
            .min_by_key(|t| t.finished_secs_ago.unwrap_or(i64::MAX));
        PodView {
            role,
            name: pod.metadata.name.clone().unwrap_or_default(),
            status: shown,
            phase,
            ready_containers: statuses.iter().filter(|c| c.ready).count(),
            containers: pod
                .spec
                .as_ref()
                .map_or(statuses.len(), |s| s.containers.len()),
            restarts: statuses.iter().map(|c| c.restart_count).sum(),
            last_termination,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            age_secs: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| seconds_since(&t.0)),
        }
    }

    /// Whether the pod is as it should be: running and ready (or finished successfully).
    pub fn healthy(&self) -> bool {
        (self.phase == "Running"
            && self.ready_containers == self.containers
            && self.status == "Running")
            || self.phase == "Succeeded"
    }
}

/// What `pods` prints.
#[derive(Debug, Serialize)]
pub struct PodsReport {
    pub namespace: String,
    pub context: Option<String>,
    pub workloads: Vec<Controller>,
    /// Roles whose controller was not found (MySQL or Redis may run outside the cluster).
    pub missing: Vec<MissingWorkload>,
    pub pods: Vec<PodView>,
}

#[derive(Debug, Serialize)]
pub struct MissingWorkload {
    pub role: Role,
    pub name: String,
}

pub async fn run(global: &GlobalArgs, args: PodsArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let snap = Snapshot::load(&kube, &settings).await?;
    // New-API itself must be there; MySQL and Redis may be managed services outside the cluster.
    snap.require(Role::Master, &settings)?;
    snap.require(Role::Slave, &settings)?;
    let wanted: Option<Role> = args.role.map(Into::into);
    let mut workloads = Vec::new();
    let mut missing = Vec::new();
    for role in Role::ALL
        .into_iter()
        .filter(|r| wanted.is_none_or(|w| w == *r))
    {
        match snap.controller(role, &settings) {
            Some(c) => workloads.push(c),
            None => missing.push(MissingWorkload {
                role,
                name: role.workload(&settings).name.clone(),
            }),
        }
    }
    let mut pods: Vec<PodView> = snap
        .pods
        .iter()
        .filter_map(|p| Snapshot::role_of(p, &settings).map(|r| PodView::new(p, r)))
        .filter(|v| wanted.is_none_or(|w| w == v.role))
        .collect();
    pods.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
    let report = PodsReport {
        namespace: snap.namespace.clone(),
        context: kube.context.clone(),
        workloads,
        missing,
        pods,
    };
    printer.data(&report, |style| render(&report, style, printer))?;
    Ok(exit::OK)
}

fn render(report: &PodsReport, style: Style, printer: &Printer) -> String {
    let mut t = printer.table(&[
        "ROLE",
        "POD",
        "STATUS",
        "READY",
        "RESTARTS",
        "LAST TERMINATION",
        "NODE",
        "AGE",
    ]);
    for p in &report.pods {
        let status = if p.healthy() {
            style.green(&p.status)
        } else if p.status == "Running" || p.status == "Pending" || p.status == "ContainerCreating"
        {
            style.yellow(&p.status)
        } else {
            style.red(&p.status)
        };
        let last = p.last_termination.as_ref().map_or_else(
            || "-".to_string(),
            |t| {
                let s = t.to_string();
                if t.reason == "OOMKilled" || t.exit_code == 137 {
                    style.red(&s)
                } else {
                    s
                }
            },
        );
        t.add_row(vec![
            p.role.as_str().to_string(),
            p.name.clone(),
            status,
            format!("{}/{}", p.ready_containers, p.containers),
            p.restarts.to_string(),
            last,
            p.node.clone().unwrap_or_else(|| "<none>".into()),
            p.age_secs.map_or_else(|| "-".into(), human_age),
        ]);
    }
    let mut out = String::new();
    let ctx = report
        .context
        .as_deref()
        .map(|c| format!(" (context {c})"))
        .unwrap_or_default();
    let summary: Vec<String> = report
        .workloads
        .iter()
        .map(|w| {
            let s = format!("{} {}/{}", w.name, w.ready, w.desired);
            if w.ready < w.desired {
                style.yellow(&s)
            } else {
                s
            }
        })
        .chain(
            report
                .missing
                .iter()
                .map(|m| style.dim(&format!("{} not found", m.name))),
        )
        .collect();
    out.push_str(&format!(
        "{}{ctx}: {}\n\n",
        style.bold(&format!("namespace {}", report.namespace)),
        summary.join(", ")
    ));
    if report.pods.is_empty() {
        out.push_str("no pods\n");
    } else {
        out.push_str(&render_table(&t));
    }
    out
}
