//! `newapi-ops restart [master|slaves|all]`: what `kubectl rollout restart` does (the pod
//! template's `kubectl.kubernetes.io/restartedAt` annotation), after a look at whether the
//! rolling update has room, a confirmation, and followed until every pod is replaced and
//! available. The work is in [`crate::scale`].

use clap::{Args, ValueEnum};

use crate::commands::GlobalArgs;
use crate::commands::flags::{RolloutWaitArgs, YesArg};
use crate::error::Result;
use crate::exit;
use crate::inventory::Role;
use crate::k8s;
use crate::printer::Printer;
use crate::scale::{RestartRequest, execute_restart};

/// What to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartTarget {
    /// The master Deployment.
    Master,
    /// The slave Deployment.
    #[value(alias = "slave")]
    Slaves,
    /// The slaves, then (once they are all available again) the master.
    All,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// What to restart.
    #[arg(value_enum, default_value_t = RestartTarget::All)]
    pub target: RestartTarget,

    #[command(flatten)]
    pub confirm: YesArg,

    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub wait: RolloutWaitArgs,
}

pub async fn run(global: &GlobalArgs, args: RestartArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let roles = match args.target {
        RestartTarget::Master => vec![Role::Master],
        RestartTarget::Slaves => vec![Role::Slave],
        RestartTarget::All => vec![Role::Slave, Role::Master],
    };
    let req = RestartRequest {
        roles,
        dry_run: args.dry_run,
        wait: args.wait.wait(),
        progress: true,
    };
    let confirm = crate::confirm::from_flags(args.confirm.yes);
    let mut report = execute_restart(&kube, &settings, &req, confirm.as_ref(), printer).await?;
    if printer.is_machine() {
        printer.data(&report, |_| String::new())?;
    }
    if let Some(e) = report.failure.take() {
        return Err(e);
    }
    Ok(if report.declined {
        exit::DECLINED
    } else {
        exit::OK
    })
}
