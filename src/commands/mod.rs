//! The top layer: the command line as clap sees it ([`Cli`], [`Command`], the global flags) and
//! one module per command. Each command module holds its clap arguments, their conversion into
//! the domain's options, and a `run` that resolves settings once, connects, calls the domain and
//! prints. Nothing below this module sees clap or imports it.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod completions;
pub mod diagnose;
pub mod flags;
pub mod incident;
pub mod logs;
pub mod nodes;
pub mod plan;
pub mod pods;
pub mod restart;
pub mod restore;
pub mod runbook;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod scale;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Overrides, Settings};
use crate::error::Result;
use crate::printer::Format;

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
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputArg::Human)]
    pub output: OutputArg,

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

/// How results are printed (`-o`); the printer's own [`Format`] below the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// Tables and text for people.
    Human,
    /// One JSON document on stdout, for tools.
    Json,
    /// The same document as YAML (`backup schedule --dry-run -o yaml` prints Kubernetes manifests).
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The production advice (生产环境建议), New-API's rules and Kubernetes hygiene as a graded
    /// report for people and CI, and with --fix the manifests that fix what is missing.
    Audit(audit::AuditArgs),
    /// One report on pods, nodes, logs, MySQL, Redis, the app and its configuration, with the next step.
    Diagnose(diagnose::DiagnoseArgs),
    /// The logs of every pod of a role, merged in time order (master, slaves, mysql, redis, all or a pod).
    Logs(logs::LogsArgs),
    /// One table of the deployment's pods: role, phase, readiness, restarts, last termination.
    Pods(pods::PodsArgs),
    /// Requests and limits against allocatable per node, cluster totals, and how many more slaves fit.
    Nodes(nodes::NodesArgs),
    /// Scale the slaves safely: capacity preflight, confirmation, rollout follow-up, undo.
    Scale(scale::ScaleArgs),
    /// The seed's scaling table (扩展建议) computed from the live deployment and cluster.
    Plan(plan::PlanArgs),
    /// Restart the master or the slaves (`kubectl rollout restart`), waiting for the rollout.
    Restart(restart::RestartArgs),
    /// Consistent, parallel, compressed backups of the New-API database; list, verify, prune, schedule.
    Backup(backup::BackupArgs),
    /// Restore a backup into a database.
    Restore(restore::RestoreArgs),
    /// Load-test New-API (the notes' 压力测试) while watching the pods; compares with the capacity model.
    Bench(bench::BenchArgs),
    /// Runbooks: files of typed steps against the cluster (list, show, validate, run, history).
    Runbook(runbook::RunbookArgs),
    /// Guided incident response: what is wrong, findings, a runbook step by step, a report.
    Incident(incident::IncidentArgs),
    /// A local Kubernetes control plane with the seed deployment, MariaDB and Redis, to rehearse on.
    #[cfg(feature = "sandbox")]
    Sandbox(sandbox::SandboxArgs),
    /// In a build without the sandbox (the container image): `sandbox …` says why it is not
    /// there instead of clap's "unrecognized subcommand".
    #[cfg(not(feature = "sandbox"))]
    #[command(hide = true, disable_help_flag = true)]
    Sandbox(NoSandboxArgs),
    /// A shell completion script (bash, zsh, fish, powershell) on stdout.
    Completions(completions::CompletionsArgs),
    /// The man page on stdout, or one page per command into a directory (--dir).
    Man(completions::ManArgs),
}

/// Whatever follows `sandbox` in a build without it.
#[cfg(not(feature = "sandbox"))]
#[derive(Debug, clap::Args)]
pub struct NoSandboxArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    _rest: Vec<String>,
}

/// The answer of `sandbox …` in a build without it.
#[cfg(not(feature = "sandbox"))]
pub fn no_sandbox() -> crate::error::Error {
    crate::error::Error::Usage(
        "this newapi-ops was built without the sandbox (--no-default-features, as the container \
         image is): `newapi-ops sandbox` is in the default build (`cargo build --release`), for a \
         developer's machine"
            .into(),
    )
}

impl Command {
    /// Whether the command handles Ctrl-C itself (`bench` stops its load and prints what it
    /// measured); for the others, `main` drops the command and exits 130.
    pub fn handles_ctrl_c(&self) -> bool {
        matches!(self, Command::Bench(_))
    }
}

impl From<OutputArg> for Format {
    fn from(o: OutputArg) -> Format {
        match o {
            OutputArg::Human => Format::Human,
            OutputArg::Json => Format::Json,
            OutputArg::Yaml => Format::Yaml,
        }
    }
}

impl GlobalArgs {
    /// What the command line overrides of the settings.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
            config: self.config.clone(),
            master: self.names.master.clone(),
            slave: self.names.slave.clone(),
            mysql: self.names.mysql.clone(),
            redis: self.names.redis.clone(),
        }
    }

    /// Resolves the settings: defaults, then the config file, then these flags. Each command
    /// calls this once, before it connects.
    pub fn settings(&self) -> Result<Settings> {
        Settings::resolve(&self.overrides())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The help lists `sandbox` exactly where it is built.
    #[test]
    fn the_help_lists_the_sandbox_where_it_is_built() {
        let help = Cli::command().render_help().to_string();
        assert_eq!(
            help.lines().any(|l| l.trim_start().starts_with("sandbox ")),
            cfg!(feature = "sandbox"),
            "{help}"
        );
    }

    /// Without the sandbox, `sandbox …` (whatever follows, `--help` included) is a usage error
    /// that says why, through the same dispatch every command takes.
    #[cfg(not(feature = "sandbox"))]
    #[tokio::test]
    async fn sandbox_in_a_build_without_it_says_why() {
        for args in [
            &["newapi-ops", "sandbox"][..],
            &[
                "newapi-ops",
                "sandbox",
                "up",
                "--dir",
                "/tmp/x",
                "--no-metrics",
            ],
            &["newapi-ops", "-n", "new-api", "sandbox", "--help"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let printer = crate::printer::Printer::new(Format::Human, true, true);
            let err = crate::run(cli, &printer).await.unwrap_err();
            assert_eq!(err.exit_code(), crate::exit::USAGE, "{args:?}");
            assert!(
                err.to_string().contains("built without the sandbox"),
                "{err}"
            );
        }
    }
}
