//! `newapi-ops incident`: guided incident response (the flow is [`crate::incident::flow`]). The
//! flags, their conversion into [`incident::Options`], and the final summary.
//!
//! Like `runbook run`, it works on a thread of its own with its own runtime, so that the binary's
//! Ctrl-C handling (which drops the command's future) waits for the state to be saved.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::commands::GlobalArgs;
use crate::commands::diagnose::DiagnoseArgs;
use crate::error::Result;
use crate::exit;
use crate::incident::{self, Outcome, Resume, prompt, state};
use crate::printer::Printer;
use crate::runbook::{engine, transcript};
use crate::units::parse_duration;

#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// Continue an interrupted incident: the newest one not closed, or the one with this id.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<String>,

    /// Answer the questions from this file, one line per question, read as each comes (for
    /// automation and tests; may be a FIFO). See the README for the format.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,

    /// Where incidents (state and report) are kept [default: $XDG_STATE_HOME/newapi-ops/incidents].
    #[arg(long, value_name = "DIR", env = "NEWAPI_OPS_INCIDENTS_DIR")]
    pub dir: Option<PathBuf>,

    /// Where the runbook transcripts are written [default: $XDG_STATE_HOME/newapi-ops/runs].
    #[arg(long, value_name = "DIR", env = "NEWAPI_OPS_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,

    /// Also load the runbooks (*.yaml) of this directory; repeatable.
    #[arg(
        long = "runbook-dir",
        value_name = "DIR",
        env = "NEWAPI_OPS_RUNBOOK_DIRS",
        value_delimiter = ':'
    )]
    pub runbook_dirs: Vec<PathBuf>,

    /// After a change, how long to watch for what it was meant to fix to go away.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub recheck_for: Duration,

    #[command(flatten)]
    pub diagnose: DiagnoseArgs,
}

impl IncidentArgs {
    /// The flags as the incident's own options (the directories' defaults filled in).
    pub fn options(&self) -> incident::Options {
        incident::Options {
            resume: self.resume.as_ref().map(|id| {
                if id.is_empty() {
                    Resume::Latest
                } else {
                    Resume::Id(id.clone())
                }
            }),
            dir: self.dir.clone().unwrap_or_else(state::default_dir),
            runs_dir: self
                .runs_dir
                .clone()
                .unwrap_or_else(transcript::default_runs_dir),
            runbook_dirs: self.runbook_dirs.clone(),
            recheck_for: self.recheck_for,
            diagnose: self.diagnose.options(),
        }
    }
}

pub async fn run(global: &GlobalArgs, args: IncidentArgs, printer: &Printer) -> Result<u8> {
    // Refuse before touching anything when nothing can be asked.
    let prompter = prompt::open(args.answers.clone(), printer)?;
    let opts = args.options();
    let global = global.clone();
    let printer = printer.clone();
    engine::on_own_thread("newapi-ops-incident", move |interrupt| async move {
        incident::listen_for_ctrl_c(interrupt.clone(), printer.clone());
        let settings = global.settings()?;
        let resumed = incident::resumable(&opts, &settings)?;
        let kube = crate::k8s::connect(&settings).await?;
        let ctx = crate::runbook::exec::Ctx { kube, settings };
        let outcome = incident::run(ctx, resumed, &opts, &printer, prompter, interrupt).await?;
        print(&outcome, &printer)?;
        Ok(exit::OK)
    })
    .await
}

/// The summary at the end: what is still open and where the report is.
fn print(outcome: &Outcome, printer: &Printer) -> Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        id: &'a str,
        status: &'a str,
        report: String,
        state: String,
        runbook: Option<&'a str>,
        still_open: usize,
    }
    let s = &outcome.incident;
    let out = Out {
        id: &s.id,
        status: s.status.as_str(),
        report: outcome.report.display().to_string(),
        state: outcome.state.display().to_string(),
        runbook: s.chosen.as_ref().map(|c| c.runbook.as_str()),
        still_open: s.still_open.as_ref().map_or(0, Vec::len),
    };
    let open = s.still_open.clone().unwrap_or_default();
    printer.data(&out, |st| {
        let mut o = String::from("\n");
        if open.is_empty() {
            o.push_str(&format!(
                "{}\n",
                st.green("nothing above info is still open")
            ));
        } else {
            o.push_str(&format!("{}\n", st.bold("Still open")));
            for f in &open {
                o.push_str(&format!(
                    "  {} {}: {}\n",
                    f.severity.as_str(),
                    f.label(),
                    f.summary
                ));
            }
        }
        o.push_str(&format!("\nreport: {}\n", out.report));
        o
    })
}
