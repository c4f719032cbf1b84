//! The command line, as clap sees it: a raw, I/O-free description that `lib.rs` resolves into
//! settings (config file + flags) before any work is done.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// newapi-ops: diagnose, scale, back up and repair a New-API deployment on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "newapi-ops", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace New-API runs in [default: new-api, or `namespace` in newapi-ops.toml].
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,

    /// Config file (default: ./newapi-ops.toml, then <config dir>/newapi-ops/newapi-ops.toml).
    #[arg(long, global = true, value_name = "PATH", env = "NEWAPI_OPS_CONFIG")]
    pub config: Option<PathBuf>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print only the data and errors, no progress or notes.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,

    /// Never colour the output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(flatten)]
    pub names: WorkloadNameArgs,
}

/// Overrides for the names of the deployment's workloads (defaults follow the seed deployment).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Workload names")]
pub struct WorkloadNameArgs {
    /// Name of the master Deployment [default: new-api-master].
    #[arg(long = "master", global = true, value_name = "NAME")]
    pub master: Option<String>,
    /// Name of the slave Deployment [default: new-api-slave].
    #[arg(long = "slave", global = true, value_name = "NAME")]
    pub slave: Option<String>,
    /// Name of the MySQL workload [default: mysql].
    #[arg(long = "mysql", global = true, value_name = "NAME")]
    pub mysql: Option<String>,
    /// Name of the Redis workload [default: redis].
    #[arg(long = "redis", global = true, value_name = "NAME")]
    pub redis: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and text for people.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
    /// The same document as YAML (`backup schedule --dry-run -o yaml` prints Kubernetes manifests).
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One report on pods, nodes, logs, MySQL, Redis, the app and its configuration, with the next step.
    Diagnose(crate::commands::diagnose::DiagnoseArgs),
    /// The logs of every pod of a role, merged in time order (master, slaves, mysql, redis, all or a pod).
    Logs(crate::commands::logs::LogsArgs),
    /// One table of the deployment's pods: role, phase, readiness, restarts, last termination.
    Pods(crate::commands::pods::PodsArgs),
    /// Requests and limits against allocatable per node, cluster totals, and how many more slaves fit.
    Nodes(crate::commands::nodes::NodesArgs),
    /// Scale the slaves safely: capacity preflight, confirmation, rollout follow-up, undo.
    Scale(crate::commands::scale::ScaleArgs),
    /// The seed's scaling table (扩展建议) computed from the live deployment and cluster.
    Plan(crate::commands::plan::PlanArgs),
    /// Restart the master or the slaves (`kubectl rollout restart`), waiting for the rollout.
    Restart(crate::commands::restart::RestartArgs),
    /// Consistent, parallel, compressed backups of the New-API database; list, verify, prune, schedule.
    Backup(crate::commands::backup::BackupArgs),
    /// Restore a backup into a database.
    Restore(crate::commands::restore::RestoreArgs),
    /// Runbooks: files of typed steps against the cluster (list, show, validate, run, history).
    Runbook(crate::commands::runbook::RunbookArgs),
    /// Guided incident response: what is wrong, findings, a runbook step by step, a report.
    Incident(crate::commands::incident::IncidentArgs),
    /// A local Kubernetes control plane with the seed deployment, MariaDB and Redis, to rehearse on.
    Sandbox(crate::commands::sandbox::SandboxArgs),
}
