//! newapi-ops: an operator's tool for a New-API deployment on Kubernetes.
//!
//! `main` parses the command line, resolves settings, runs one command and maps its outcome to an
//! exit code in one place ([`error::Error::exit_code`]).

pub mod audit;
pub mod backends;
pub mod backup;
pub mod bench;
pub mod capacity;
pub mod commands;
pub mod config;
pub mod confirm;
pub mod diagnose;
pub mod envvars;
pub mod error;
pub mod exit;
pub mod incident;
pub mod inventory;
pub mod k8s;
pub mod logs;
pub mod portforward;
pub mod printer;
pub use newapi_ops_quantity as quantity;
pub mod redact;
pub mod runbook;
#[cfg(feature = "sandbox")]
pub use newapi_ops_sandbox as sandbox;
pub mod scale;
pub mod secrets;
pub mod signals;
pub mod units;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{Cli, Command};
use crate::error::Error;
use crate::printer::Printer;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let printer = Printer::new(
        cli.global.output.into(),
        cli.global.no_color,
        cli.global.quiet,
    );
    init_tracing(cli.global.verbose, cli.global.quiet, &printer);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&Error::io("starting the async runtime", e));
            return ExitCode::from(exit::INTERNAL);
        }
    };
    // SIGINT and SIGTERM alike: the command is dropped (its guards clean up what it leaves),
    // unless it handles the signal itself (a `signals::Handler`: restore says what it left).
    let outcome = runtime.block_on(async {
        if cli.command.handles_ctrl_c() {
            return run(cli, &printer).await;
        }
        tokio::select! {
            biased;
            r = run(cli, &printer) => r,
            s = signals::unhandled() => Err(Error::from(s)),
        }
    });
    // Background tasks (port-forwards, watchers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            printer.error(&err);
            ExitCode::from(err.exit_code())
        }
    }
}

/// Runs one command; returns the exit code for a successful run (commands that report findings
/// use 0, 1 and 2).
pub async fn run(cli: Cli, printer: &Printer) -> Result<u8, Error> {
    match cli.command {
        Command::Audit(args) => commands::audit::run(&cli.global, args, printer).await,
        Command::Diagnose(args) => commands::diagnose::run(&cli.global, args, printer).await,
        Command::Logs(args) => commands::logs::run(&cli.global, args, printer).await,
        Command::Pods(args) => commands::pods::run(&cli.global, args, printer).await,
        Command::Nodes(args) => commands::nodes::run(&cli.global, args, printer).await,
        Command::Scale(args) => commands::scale::run(&cli.global, args, printer).await,
        Command::Plan(args) => commands::plan::run(&cli.global, args, printer).await,
        Command::Restart(args) => commands::restart::run(&cli.global, args, printer).await,
        Command::Backup(args) => commands::backup::run(&cli.global, args, printer).await,
        Command::Restore(args) => commands::restore::run(&cli.global, args, printer).await,
        Command::Bench(args) => commands::bench::run(&cli.global, args, printer).await,
        Command::Runbook(args) => commands::runbook::run(&cli.global, args, printer).await,
        Command::Incident(args) => commands::incident::run(&cli.global, args, printer).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => commands::sandbox::run(&cli.global, args, printer).await,
        #[cfg(not(feature = "sandbox"))]
        Command::Sandbox(_) => Err(commands::no_sandbox()),
        Command::Completions(args) => commands::completions::completions(&args),
        Command::Man(args) => commands::completions::man(&args, printer),
    }
}

/// The log filter for `-q`/`-v` when NEWAPI_OPS_LOG does not set one. kube-rs logs an ERROR
/// for every failed request (`kube_client`), which repeats once per poll while the API server
/// is down; our own error already says so, once, so its events are off unless `-vv` or more.
fn default_filter(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error,kube_client=off",
        (false, 0) => "warn,kube_client=off",
        (false, 1) => "newapi_ops=info,warn,kube_client=off",
        (false, 2) => "newapi_ops=debug,info",
        _ => "trace",
    }
}

/// Log events go through the printer's redactor, as everything else the tool writes.
fn init_tracing(verbose: u8, quiet: bool, printer: &Printer) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("NEWAPI_OPS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, quiet)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(printer.log_writer())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
