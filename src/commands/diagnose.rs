//! `newapi-ops diagnose`: every check at once, each bounded by a timeout, one report. The flags
//! and their conversion into [`diagnose::Options`]; the checks run in [`crate::diagnose::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::commands::GlobalArgs;
use crate::commands::flags::BackendUrls;
use crate::diagnose::{self, could_not_run, finding::Component};
use crate::error::Result;
use crate::k8s;
use crate::printer::Printer;
use crate::units::{parse_duration, parse_timeout};

#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// Run only these checks (comma-separated).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<ComponentArg>,

    /// Time limit of each check, e.g. 5s, 1500ms, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    #[command(flatten)]
    pub backends: BackendUrls,

    /// Restarts above this are a warning.
    #[arg(long, default_value_t = 5)]
    pub restart_threshold: i32,

    /// A pod still Terminating this long after its deletion time is stuck.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub stuck_after: Duration,

    /// MySQL queries running longer than this are reported.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub long_query: Duration,

    /// Extra log signatures (TOML, same format as the built-in list; same id replaces).
    #[arg(long, value_name = "FILE")]
    pub signatures: Option<PathBuf>,

    /// How many log fetches and port-forwards run at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,

    /// List every subject of a grouped finding (the report shows the worst and a few more).
    #[arg(long)]
    pub expand: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ComponentArg {
    Pods,
    Nodes,
    Logs,
    Mysql,
    Redis,
    App,
    Config,
    Backups,
}

impl From<ComponentArg> for Component {
    fn from(c: ComponentArg) -> Component {
        match c {
            ComponentArg::Pods => Component::Pods,
            ComponentArg::Nodes => Component::Nodes,
            ComponentArg::Logs => Component::Logs,
            ComponentArg::Mysql => Component::Mysql,
            ComponentArg::Redis => Component::Redis,
            ComponentArg::App => Component::App,
            ComponentArg::Config => Component::Config,
            ComponentArg::Backups => Component::Backups,
        }
    }
}

impl DiagnoseArgs {
    /// The flags as diagnose's own options (`--expand` is the printing's; `--only` left out: every
    /// check).
    pub fn options(&self) -> diagnose::Options {
        diagnose::Options {
            components: self.only.iter().map(|c| (*c).into()).collect(),
            timeout: self.timeout,
            mysql_url: self.backends.mysql.mysql_url.clone(),
            redis_url: self.backends.redis_url.clone(),
            restart_threshold: self.restart_threshold,
            stuck_after: self.stuck_after,
            long_query: self.long_query,
            signatures: self.signatures.clone(),
            concurrency: self.concurrency,
        }
    }
}

pub async fn run(global: &GlobalArgs, args: DiagnoseArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings().map_err(could_not_run)?;
    let opts = args.options();
    let kube = if opts.needs_cluster() {
        Some(k8s::connect(&settings).await.map_err(could_not_run)?)
    } else {
        None
    };
    if !printer.is_machine() {
        printer.note(&format!("diagnosing namespace {} ...", settings.namespace));
    }
    let report =
        diagnose::run_learning(kube.as_ref(), &settings, &opts, Some(printer.redactor())).await?;
    printer.data(&report, |style| report.render(style, args.expand))?;
    Ok(report.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: DiagnoseArgs,
    }

    fn parse(argv: &[&str]) -> std::result::Result<DiagnoseArgs, clap::Error> {
        <Wrap as clap::Parser>::try_parse_from(
            std::iter::once("diagnose").chain(argv.iter().copied()),
        )
        .map(|w| w.args)
    }

    #[test]
    fn the_flags_defaults_are_the_options_defaults() {
        // The URLs may come from the environment of whoever runs the tests.
        let mut opts = parse(&[]).unwrap().options();
        opts.mysql_url = None;
        opts.redis_url = None;
        assert_eq!(opts, diagnose::Options::default());
    }

    #[test]
    fn flags_become_options() {
        let opts = parse(&[
            "--only",
            "mysql,redis",
            "--timeout",
            "1m30s",
            "--mysql-url",
            "mysql://u@h/db",
        ])
        .unwrap()
        .options();
        assert_eq!(opts.components, vec![Component::Mysql, Component::Redis]);
        assert_eq!(opts.timeout, Duration::from_secs(90));
        assert_eq!(opts.mysql_url.as_deref(), Some("mysql://u@h/db"));
        assert!(
            parse(&["--timeout", "0s"]).is_err(),
            "no time at all is refused"
        );
    }
}
