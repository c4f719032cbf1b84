//! `newapi-ops pods`: one table of the deployment's pods — role, status, readiness, restarts,
//! last termination, node, age — from one list call per kind.

use clap::Args;

use crate::commands::GlobalArgs;
use crate::error::Result;
use crate::exit;
use crate::inventory::{PodView, PodsReport, Role, Snapshot};
use crate::k8s;
use crate::printer::{Printer, Style, render_table};
use crate::units::age as human_age;

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

pub async fn run(global: &GlobalArgs, args: PodsArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    // Each pod is decoded into what the table shows and kept as its row (a PodView) as its
    // page arrives.
    let wanted: Option<Role> = args.role.map(Into::into);
    kube.ensure_namespace(&settings.namespace).await?;
    let mut views = Vec::new();
    let snap = Snapshot::load_each(&kube, &settings, |p| {
        if let Some(role) =
            Snapshot::role_of(&p, &settings).filter(|r| wanted.is_none_or(|w| w == *r))
        {
            views.push(PodView::new(&p, role));
        }
        Ok(())
    })
    .await?;
    // New-API itself must be there; MySQL and Redis may be managed services outside the cluster.
    snap.require(Role::Master, &settings)?;
    snap.require(Role::Slave, &settings)?;
    let report = PodsReport::from_views(&snap, &settings, wanted, views, kube.context.clone());
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
