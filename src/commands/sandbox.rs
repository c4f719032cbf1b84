//! `newapi-ops sandbox up|status|down|fault|heal`: a local Kubernetes 1.20 control plane with the
//! seed deployment, a kubelet simulator, MariaDB and Redis, to rehearse on. The work is in
//! [`crate::sandbox`]; this module parses the arguments and prints.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::commands::GlobalArgs;
use crate::error::Result;
use crate::exit;
use crate::printer::{Printer, Style};
use crate::sandbox::{self, Fault, SandboxError, SandboxState, UpOptions};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The sandbox directory [default: $NEWAPI_OPS_SANDBOX_DIR, else
    /// ${XDG_STATE_HOME:-~/.local/state}/newapi-ops/sandbox].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: SandboxCommand,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Start the sandbox (or say it is already running) and print how to use it.
    Up(UpArgs),
    /// Show each process, the API server, the nodes and the rollout; exit 1 if anything is wrong.
    Status,
    /// Stop every process of the sandbox and remove its directory. Safe to run twice.
    Down {
        /// Keep the directory (logs, etcd and MariaDB data) for inspection; the next `up` starts
        /// afresh and removes it.
        #[arg(long)]
        keep_data: bool,
    },
    /// Break the sandbox on purpose, to rehearse an incident; `heal` undoes it.
    Fault {
        /// What to break.
        #[arg(value_enum)]
        fault: FaultArg,
    },
    /// Undo every fault: restore the slave Deployment and restart MariaDB / Redis if they are down.
    Heal,
    /// Run the kubelet simulator (started by `up`; not for people).
    #[command(hide = true)]
    Kubelet {
        /// The simulator's configuration, written by `up` as DIR/kubelet.json.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Run the metrics server behind metrics.k8s.io (started by `up`; not for people).
    #[command(hide = true)]
    MetricsServer {
        /// Its configuration, written by `up` as DIR/metrics.json.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of simulated nodes (4 CPUs and about 6Gi each; 2 make the seed's 8 CPU / 12295Mi).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,

    /// How long to wait for the seed deployment to roll out, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,

    /// Do not serve metrics.k8s.io (no network namespace, no metrics server): `diagnose` then
    /// says usage is not checked, as on a cluster without metrics-server. Without root or `ip`
    /// (iproute2) the sandbox starts this way anyway, and says so.
    #[arg(long)]
    pub no_metrics: bool,
}

pub async fn run(_global: &GlobalArgs, args: SandboxArgs, printer: &Printer) -> Result<u8> {
    let dir = args.dir.clone().unwrap_or_else(sandbox::default_dir);
    match args.command {
        SandboxCommand::Up(up) => run_up(&dir, args.dir.is_some(), &up, printer).await,
        SandboxCommand::Status => run_status(&dir, printer).await,
        SandboxCommand::Down { keep_data } => run_down(&dir, keep_data, printer).await,
        SandboxCommand::Fault { fault } => run_fault(&dir, fault.into(), printer).await,
        SandboxCommand::Heal => run_heal(&dir, printer).await,
        SandboxCommand::Kubelet { config } => {
            let config = sandbox::kubelet::load_config(&config).map_err(SandboxError::from)?;
            sandbox::kubelet::run(config)
                .await
                .map_err(SandboxError::from)?;
            Ok(exit::OK)
        }
        SandboxCommand::MetricsServer { config } => {
            let config = sandbox::metrics::load_config(&config).map_err(SandboxError::from)?;
            sandbox::metrics::run(config)
                .await
                .map_err(SandboxError::from)?;
            Ok(exit::OK)
        }
    }
}

async fn run_up(dir: &Path, dir_given: bool, args: &UpArgs, printer: &Printer) -> Result<u8> {
    let mut opts = UpOptions::new(dir.to_path_buf());
    opts.nodes = usize::from(args.nodes);
    opts.rollout_timeout = std::time::Duration::from_secs(args.timeout);
    opts.metrics = !args.no_metrics;
    let progress = |msg: &str| printer.note(&format!("sandbox: {msg}"));
    let outcome = sandbox::up(&opts, &progress).await?;
    for w in &outcome.warnings {
        printer.warn(w);
    }
    let s = &outcome.state;
    if outcome.already_running {
        printer.note(&format!(
            "sandbox: already running in {} (started {}); nothing to do",
            s.dir.display(),
            s.started_at
        ));
    } else {
        printer.note(&format!(
            "sandbox: up in {:.1}s",
            outcome.elapsed.as_secs_f64()
        ));
    }
    printer.data(s, |style| up_text(s, dir_given, style))?;
    Ok(exit::OK)
}

fn up_text(s: &SandboxState, dir_given: bool, style: Style) -> String {
    let nodes: Vec<String> = s
        .nodes
        .iter()
        .map(|n| format!("{} (cpu {}, memory {})", n.name, n.cpu, n.memory))
        .collect();
    let dir_flag = if dir_given {
        format!(" --dir {}", s.dir.display())
    } else {
        String::new()
    };
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", style.bold("Sandbox"), s.dir.display()));
    out.push_str(&format!("  API server  {}\n", s.api_server));
    out.push_str(&format!("  nodes       {}\n", nodes.join(", ")));
    out.push_str(&format!(
        "  MariaDB     127.0.0.1:{} (user {}, database {}; password in Secret {}/{} key {})\n",
        s.mysql.port,
        s.mysql.user,
        s.mysql.database,
        s.namespace,
        sandbox::manifests::SECRET_NAME,
        s.mysql.password_env
    ));
    out.push_str(&format!("  Redis       127.0.0.1:{}\n", s.redis.port));
    match (&s.metrics, &s.metrics_off) {
        (Some(m), _) => out.push_str(&format!(
            "  metrics     metrics.k8s.io served by {} in network namespace {}\n",
            m.listen, m.netns.name
        )),
        (None, Some(why)) => out.push_str(&format!("  metrics     not served ({why})\n")),
        (None, None) => {}
    }
    match (&s.image, &s.image_off) {
        (Some(i), _) => out.push_str(&format!(
            "  image       {} ({}), run for real by the kubelet simulator (runc)\n",
            i.reference, i.digest
        )),
        (None, Some(why)) => out.push_str(&format!(
            "  image       {} not runnable ({why})\n",
            sandbox::image::IMAGE
        )),
        (None, None) => {}
    }
    out.push_str(&format!("  logs        {}\n", s.dir.join("logs").display()));
    out.push('\n');
    out.push_str(&format!("{}\n", style.bold("Try it:")));
    out.push_str(&format!("  export KUBECONFIG={}\n", s.kubeconfig.display()));
    out.push_str("  newapi-ops pods\n");
    out.push_str("  newapi-ops nodes\n");
    out.push('\n');
    out.push_str(&format!(
        "Other users: {} (no permissions: 403s), {} (view in namespace {})\n",
        s.viewer_kubeconfig.display(),
        s.reader_kubeconfig.display(),
        s.namespace
    ));
    out.push_str(&format!(
        "Rehearse:    newapi-ops sandbox{dir_flag} fault crashloop|oom|imagepull|unready|mysql-down|redis-down, then `sandbox heal`\n"
    ));
    out.push_str(&format!("Stop it:     newapi-ops sandbox{dir_flag} down\n"));
    out
}

async fn run_status(dir: &Path, printer: &Printer) -> Result<u8> {
    let report = sandbox::status(dir).await?;
    printer.data(&report, |style| {
        let mut out = format!("{} {}\n", style.bold("Sandbox"), report.dir.display());
        out.push_str(&format!(
            "  API server {} {}\n\n",
            report.api_server,
            if report.api_ready {
                style.green("ready")
            } else {
                style.red("not ready")
            }
        ));
        let mut t = printer.table(&["PROCESS", "PID", "STATE", "LOG"]);
        for p in &report.processes {
            let state = match (p.alive, p.answering) {
                (false, _) => style.red("dead"),
                (true, Some(false)) => style.yellow("not answering"),
                (true, _) => style.green("running"),
            };
            t.add_row(vec![
                p.name.clone(),
                p.pid.to_string(),
                state,
                p.log.display().to_string(),
            ]);
        }
        out.push_str(&crate::printer::render_table(&t));
        if !report.nodes.is_empty() {
            out.push('\n');
            let mut t = printer.table(&["NODE", "READY"]);
            for n in &report.nodes {
                t.add_row(vec![
                    n.name.clone(),
                    if n.ready {
                        style.green("True")
                    } else {
                        style.red("False")
                    },
                ]);
            }
            out.push_str(&crate::printer::render_table(&t));
        }
        if !report.deployments.is_empty() {
            out.push('\n');
            let mut t = printer.table(&["DEPLOYMENT", "READY", "UP-TO-DATE", "AVAILABLE"]);
            for d in &report.deployments {
                let ready = format!("{}/{}", d.ready, d.desired);
                t.add_row(vec![
                    d.name.clone(),
                    if d.complete {
                        ready
                    } else {
                        style.yellow(&ready)
                    },
                    d.updated.to_string(),
                    d.available.to_string(),
                ]);
            }
            out.push_str(&crate::printer::render_table(&t));
        }
        out.push('\n');
        if report.healthy {
            out.push_str(&format!("{}\n", style.green("healthy")));
        } else {
            out.push_str(&format!("{}\n", style.red("problems:")));
            for p in &report.problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    })?;
    Ok(if report.healthy { exit::OK } else { 1 })
}

async fn run_down(dir: &Path, keep_data: bool, printer: &Printer) -> Result<u8> {
    let report = sandbox::down(dir, keep_data).await?;
    printer.data(&report, |_| {
        if !report.found {
            let left = report
                .netns_removed
                .as_ref()
                .map(|ns| format!(" (its network namespace {ns} was left behind: removed)"))
                .unwrap_or_default();
            return format!(
                "No sandbox in {}: nothing to stop{left}.\n",
                report.dir.display()
            );
        }
        let mut out = String::new();
        for s in &report.stopped {
            let how = match s.outcome {
                sandbox::process::StopOutcome::NotRunning => "was not running",
                sandbox::process::StopOutcome::Terminated => "stopped",
                sandbox::process::StopOutcome::Killed => "killed after the grace period",
                sandbox::process::StopOutcome::Stuck => "still running",
            };
            out.push_str(&format!("{} (pid {}): {how}\n", s.name, s.pid));
        }
        if let Some(ns) = &report.netns_removed {
            out.push_str(&format!("network namespace {ns}: removed\n"));
        }
        if report.removed {
            out.push_str(&format!(
                "Removed {} ({:.1}s).\n",
                report.dir.display(),
                report.elapsed.as_secs_f64()
            ));
        } else {
            out.push_str(&format!(
                "Kept {} (logs and data); the next `sandbox up` there starts afresh.\n",
                report.dir.display()
            ));
        }
        out
    })?;
    Ok(exit::OK)
}

async fn run_fault(dir: &Path, fault: Fault, printer: &Printer) -> Result<u8> {
    let dir = std::path::absolute(dir)
        .map_err(|e| crate::error::Error::io(format!("resolving {}", dir.display()), e))?;
    let state = SandboxState::require(&dir)?;
    let report = sandbox::fault::inject(&state, fault).await?;
    printer.data(&report, |_| {
        let verb = if report.changed { "injected" } else { "already in place" };
        format!(
            "Fault {} {verb} on {}: {}.\nWatch it with `newapi-ops pods` (KUBECONFIG={}); undo with `newapi-ops sandbox heal`.\n",
            fault.name(),
            report.target,
            report.detail,
            state.kubeconfig.display()
        )
    })?;
    Ok(exit::OK)
}

async fn run_heal(dir: &Path, printer: &Printer) -> Result<u8> {
    let dir = std::path::absolute(dir)
        .map_err(|e| crate::error::Error::io(format!("resolving {}", dir.display()), e))?;
    SandboxState::require(&dir)?;
    let _lock = sandbox::lifecycle::lock(&dir).await?;
    let mut state = SandboxState::require(&dir)?;
    let report = sandbox::fault::heal(&mut state).await?;
    printer.data(&report, |_| {
        if report.repaired.is_empty() {
            "Nothing to heal: no fault was in place.\n".to_string()
        } else {
            let mut out = String::from("Healed:\n");
            for r in &report.repaired {
                out.push_str(&format!("  - {r}\n"));
            }
            out
        }
    })?;
    Ok(exit::OK)
}

/// `sandbox fault NAME` ([`Fault`] below the commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultArg {
    /// New slave pods crash at start (`Error 1040: Too many connections`) and back off.
    Crashloop,
    /// New slave pods are OOMKilled (exit 137) and back off.
    Oom,
    /// New slave pods use an image tag that does not exist (ImagePullBackOff).
    Imagepull,
    /// New slave pods run but fail their readiness probe.
    Unready,
    /// MariaDB (behind the mysql pod) is killed.
    MysqlDown,
    /// Redis (behind the redis pod) is killed.
    RedisDown,
}

impl From<FaultArg> for Fault {
    fn from(f: FaultArg) -> Fault {
        match f {
            FaultArg::Crashloop => Fault::Crashloop,
            FaultArg::Oom => Fault::Oom,
            FaultArg::Imagepull => Fault::Imagepull,
            FaultArg::Unready => Fault::Unready,
            FaultArg::MysqlDown => Fault::MysqlDown,
            FaultArg::RedisDown => Fault::RedisDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_match_the_cli() {
        use clap::ValueEnum;
        for f in FaultArg::value_variants() {
            let name = f.to_possible_value().map(|v| v.get_name().to_string());
            assert_eq!(name.as_deref(), Some(Fault::from(*f).name()));
        }
        assert_eq!(FaultArg::value_variants().len(), Fault::ALL.len());
    }
}
