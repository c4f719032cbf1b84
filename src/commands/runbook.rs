//! `newapi-ops runbook`: list, show, validate, run and look back at runbooks (YAML files of typed
//! steps; see `src/runbook/`).
//!
//! `run` works on a thread of its own with its own runtime. The binary's `main` answers Ctrl-C
//! by dropping the command's future; here that drop only tells the run to stop after the current
//! step and waits for it, so the transcript is always complete when the process exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::commands::GlobalArgs;
use crate::commands::flags::YesArg;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::exit;
use crate::printer::{Printer, Style, render_table};
use crate::runbook::catalogue::{self, CATALOGUE};
use crate::runbook::diag::Diagnostic;
use crate::runbook::engine::{self, Interrupt, RunOptions, RunStatus};
use crate::runbook::library::{self, Library};
use crate::runbook::model::Runbook;
use crate::runbook::transcript;

#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub command: RunbookCommand,

    /// Also load the runbooks (*.yaml) of this directory; repeatable (also NEWAPI_OPS_RUNBOOK_DIRS,
    /// colon-separated). Then come `runbook_dirs` of newapi-ops.toml, and
    /// <config dir>/newapi-ops/runbooks when it exists.
    #[arg(
        long = "runbook-dir",
        value_name = "DIR",
        global = true,
        env = "NEWAPI_OPS_RUNBOOK_DIRS",
        value_delimiter = ':'
    )]
    pub runbook_dirs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// The runbooks there are (built-in and yours), optionally those matching symptom words.
    List {
        /// Only runbooks whose symptoms, name or title contain one of these words.
        #[arg(long = "symptom", value_name = "WORD")]
        symptoms: Vec<String>,
    },
    /// A runbook's inputs and steps, as a person reads them.
    Show {
        /// A runbook name, or a path to a runbook file.
        name: String,
    },
    /// Checks runbook files (all known runbooks when none is named); every error with
    /// file:line:column.
    Validate {
        /// Runbook files.
        files: Vec<PathBuf>,
    },
    /// Runs a runbook: read-only steps run, mutating steps ask first.
    Run(RunArgs),
    /// Past runs, newest first, with their transcripts.
    History {
        /// Show at most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs of this runbook.
        #[arg(long, value_name = "NAME")]
        runbook: Option<String>,
        /// Where transcripts are kept [default: $XDG_STATE_HOME/newapi-ops/runs].
        #[arg(long, value_name = "DIR", env = "NEWAPI_OPS_RUNS_DIR")]
        runs_dir: Option<PathBuf>,
    },
    /// The actions a step can use, with their arguments and outputs.
    Actions {
        /// Only this action.
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A runbook name, or a path to a runbook file.
    pub name: String,
    /// An input value; repeatable.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Run the read-only steps, and only describe what each mutating step would do.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub confirm: YesArg,
    /// Answer confirmations from this file, one `yes`/`no` line per question, read as each
    /// question comes (for tests and rehearsals; may be a FIFO).
    #[arg(long, value_name = "FILE", hide = true, conflicts_with = "yes")]
    pub answers: Option<PathBuf>,
    /// Where transcripts are written [default: $XDG_STATE_HOME/newapi-ops/runs].
    #[arg(long, value_name = "DIR", env = "NEWAPI_OPS_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,
}

/// The exit code of `validate` when a file is invalid (EX_DATAERR).
pub const INVALID: u8 = 65;

pub async fn run(global: &GlobalArgs, args: RunbookArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let dirs = library::dirs_for(&args.runbook_dirs, &settings);
    match args.command {
        RunbookCommand::List { symptoms } => list(&dirs, &symptoms, printer),
        RunbookCommand::Show { name } => show(&dirs, &name, printer),
        RunbookCommand::Validate { files } => validate(&dirs, &files, printer),
        RunbookCommand::History {
            limit,
            runbook,
            runs_dir,
        } => history(runs_dir, limit, runbook.as_deref(), printer),
        RunbookCommand::Actions { name } => actions(name.as_deref(), printer),
        RunbookCommand::Run(r) => run_detached(settings, dirs, r, printer.clone()).await,
    }
}

fn warn_problems(lib: &Library, printer: &Printer) {
    for p in &lib.problems {
        printer.warn(&format!(
            "{p}\n  (skipped; `newapi-ops runbook validate {}` shows every error)",
            p.file
        ));
    }
}

/// A runbook by name, or from a file path.
fn find(dirs: &[PathBuf], name: &str) -> Result<Runbook> {
    let path = PathBuf::from(name);
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        if !path.exists() {
            // A path that is not there: say so, and which runbooks there are by name.
            let lib = library::load(dirs);
            return Err(Error::RunbookFileNotFound {
                path: name.to_string(),
                available: lib.names().iter().map(ToString::to_string).collect(),
            });
        }
        return library::load_file(&path).map_err(|ds| invalid(name, ds));
    }
    let lib = library::load(dirs);
    match lib.get(name) {
        Some(rb) => Ok(rb.clone()),
        None => Err(Error::RunbookNotFound {
            name: name.to_string(),
            available: lib.names().iter().map(ToString::to_string).collect(),
        }),
    }
}

fn invalid(file: &str, ds: Vec<Diagnostic>) -> Error {
    Error::RunbookInvalid {
        file: file.to_string(),
        errors: ds.iter().map(ToString::to_string).collect(),
    }
}

#[derive(Serialize)]
struct ListRow<'a> {
    name: &'a str,
    title: &'a str,
    steps: usize,
    mutating_steps: usize,
    symptoms: &'a [String],
    source: &'a str,
}

fn list(dirs: &[PathBuf], symptoms: &[String], printer: &Printer) -> Result<u8> {
    let lib = library::load(dirs);
    warn_problems(&lib, printer);
    let mut rows: Vec<(&Runbook, usize)> = lib
        .runbooks
        .iter()
        .map(|r| (r, r.score(symptoms)))
        .filter(|(_, s)| symptoms.is_empty() || *s > 0)
        .collect();
    if !symptoms.is_empty() {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.name.cmp(&b.0.name)));
    }
    let data: Vec<ListRow<'_>> = rows
        .iter()
        .map(|(r, _)| ListRow {
            name: &r.name,
            title: &r.title,
            steps: r.steps.len(),
            mutating_steps: r.mutating_steps(),
            symptoms: &r.symptoms,
            source: &r.source,
        })
        .collect();
    printer.data(&data, |style| {
        let mut t = printer.table(&["NAME", "TITLE", "STEPS", "MUTATING", "SOURCE"]);
        for r in &data {
            t.add_row(vec![
                style.bold(r.name),
                r.title.to_string(),
                r.steps.to_string(),
                if r.mutating_steps == 0 {
                    "-".into()
                } else {
                    r.mutating_steps.to_string()
                },
                r.source.to_string(),
            ]);
        }
        render_table(&t)
    })?;
    Ok(exit::OK)
}

#[derive(Serialize)]
struct ShownStep {
    id: String,
    title: String,
    description: Option<String>,
    action: &'static str,
    effect: &'static str,
    arguments: std::collections::BTreeMap<&'static str, String>,
    when: Option<String>,
    on_failure: crate::runbook::model::OnFailure,
}

#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    title: &'a str,
    description: &'a str,
    symptoms: &'a [String],
    source: &'a str,
    inputs: &'a [crate::runbook::model::Input],
    steps: Vec<ShownStep>,
}

fn show(dirs: &[PathBuf], name: &str, printer: &Printer) -> Result<u8> {
    let rb = find(dirs, name)?;
    let shown = Shown {
        name: &rb.name,
        title: &rb.title,
        description: &rb.description,
        symptoms: &rb.symptoms,
        source: &rb.source,
        inputs: &rb.inputs,
        steps: rb
            .steps
            .iter()
            .map(|s| ShownStep {
                id: s.id.clone(),
                title: s.title.clone(),
                description: s.description.clone(),
                action: s.action.name(),
                effect: s.action.effect().as_str(),
                arguments: s.action.shown_args().into_iter().collect(),
                when: s.when.as_ref().map(|w| w.source.clone()),
                on_failure: s.on_failure,
            })
            .collect(),
    };
    printer.data(&shown, |style| render_show(&rb, &shown, style))?;
    Ok(exit::OK)
}

fn render_show(rb: &Runbook, s: &Shown<'_>, style: Style) -> String {
    let mut o = format!("{} — {}\n", style.bold(&rb.name), rb.title);
    o.push_str(&style.dim(&format!("{}\n", rb.source)));
    if !rb.description.is_empty() {
        o.push_str(&format!("\n{}\n", rb.description.trim_end()));
    }
    o.push_str(&format!("\nSymptoms: {}\n", rb.symptoms.join(", ")));
    if !rb.inputs.is_empty() {
        o.push_str(&format!("\n{}\n", style.bold("Inputs")));
        for i in &rb.inputs {
            o.push_str(&format!(
                "  --input {}=…  {}{}\n",
                i.name,
                engine::describe_input(i),
                i.default
                    .as_ref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_else(|| " (required)".into())
            ));
        }
    }
    o.push_str(&format!("\n{}\n", style.bold("Steps")));
    for (i, st) in s.steps.iter().enumerate() {
        let mark = match st.effect {
            "mutating" => style.yellow(" [mutating: asks before changing]"),
            "manual" => style.yellow(" [by hand: asks for an acknowledgement]"),
            _ => String::new(),
        };
        o.push_str(&format!(
            "\n{}. {} {}{mark}\n   {} `{}`\n",
            i + 1,
            style.bold(&st.title),
            style.dim(&format!("({})", st.id)),
            st.action,
            st.effect,
        ));
        if let Some(d) = &st.description {
            for l in d.trim_end().lines() {
                o.push_str(&format!("   {l}\n"));
            }
        }
        for (k, v) in &st.arguments {
            let v = if v.contains('\n') {
                format!(
                    "\n{}",
                    v.trim_end()
                        .lines()
                        .map(|l| format!("       {l}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            } else {
                v.clone()
            };
            let sep = if v.starts_with('\n') { ":" } else { ": " };
            o.push_str(&format!("   {k}{sep}{v}\n"));
        }
        if let Some(w) = &st.when {
            o.push_str(&format!("   only when: {w}\n"));
        }
        if st.on_failure == crate::runbook::model::OnFailure::Continue {
            o.push_str("   on failure: continue with the next step\n");
        }
    }
    o
}

#[derive(Serialize)]
struct Validated {
    file: String,
    valid: bool,
    name: Option<String>,
    steps: Option<usize>,
    errors: Vec<Diagnostic>,
}

fn validate(dirs: &[PathBuf], files: &[PathBuf], printer: &Printer) -> Result<u8> {
    let mut results = Vec::new();
    if files.is_empty() {
        let lib = library::load(dirs);
        let mut by_file: std::collections::BTreeMap<String, Vec<Diagnostic>> = Default::default();
        for p in lib.problems {
            by_file.entry(p.file.clone()).or_default().push(p);
        }
        for rb in &lib.runbooks {
            results.push(Validated {
                file: rb.source.clone(),
                valid: true,
                name: Some(rb.name.clone()),
                steps: Some(rb.steps.len()),
                errors: Vec::new(),
            });
        }
        for (file, errors) in by_file {
            results.push(Validated {
                file,
                valid: false,
                name: None,
                steps: None,
                errors,
            });
        }
    } else {
        for f in files {
            match library::load_file(f) {
                Ok(rb) => results.push(Validated {
                    file: f.display().to_string(),
                    valid: true,
                    name: Some(rb.name.clone()),
                    steps: Some(rb.steps.len()),
                    errors: Vec::new(),
                }),
                Err(errors) => results.push(Validated {
                    file: f.display().to_string(),
                    valid: false,
                    name: None,
                    steps: None,
                    errors,
                }),
            }
        }
    }
    let bad = results.iter().filter(|r| !r.valid).count();
    printer.data(&results, |style| {
        let mut o = String::new();
        for r in &results {
            if r.valid {
                o.push_str(&format!(
                    "{} {} ({}, {} steps)\n",
                    style.green("ok"),
                    r.file,
                    r.name.as_deref().unwrap_or(""),
                    r.steps.unwrap_or(0)
                ));
            }
        }
        for r in &results {
            for e in &r.errors {
                let text = e.to_string();
                let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
                o.push_str(&format!("{} {first}\n", style.red("error:")));
                if !rest.is_empty() {
                    o.push_str(&format!("{rest}\n"));
                }
            }
        }
        if bad > 0 {
            o.push_str(&format!(
                "{bad} of {} file{} invalid\n",
                results.len(),
                if results.len() == 1 { "" } else { "s" }
            ));
        }
        o
    })?;
    Ok(if bad > 0 { INVALID } else { exit::OK })
}

fn history(
    dir: Option<PathBuf>,
    limit: usize,
    runbook: Option<&str>,
    printer: &Printer,
) -> Result<u8> {
    let dir = dir.unwrap_or_else(transcript::default_runs_dir);
    let runs: Vec<_> = transcript::history(&dir)?
        .into_iter()
        .filter(|r| runbook.is_none_or(|n| r.runbook == n))
        .take(limit)
        .collect();
    printer.data(&runs, |style| {
        if runs.is_empty() {
            return format!("no runs recorded in {}\n", dir.display());
        }
        let mut t = printer.table(&[
            "STARTED",
            "RUNBOOK",
            "STATUS",
            "MODE",
            "STEPS",
            "DURATION",
            "TRANSCRIPT",
        ]);
        for r in &runs {
            let status = match r.status.as_str() {
                "completed" => style.green(&r.status),
                "completed-with-failures" | "unfinished" => style.yellow(&r.status),
                _ => style.red(&r.status),
            };
            t.add_row(vec![
                r.started_at.clone(),
                r.runbook.clone(),
                status,
                if r.dry_run {
                    "dry-run".into()
                } else {
                    "real".into()
                },
                r.steps.to_string(),
                r.duration_ms
                    .map_or("-".into(), |d| format!("{:.1}s", d as f64 / 1000.0)),
                r.markdown.display().to_string(),
            ]);
        }
        render_table(&t)
    })?;
    Ok(exit::OK)
}

fn actions(name: Option<&str>, printer: &Printer) -> Result<u8> {
    let specs: Vec<&catalogue::ActionSpec> = match name {
        Some(n) => vec![catalogue::spec(n).ok_or_else(|| {
            Error::Usage(format!(
                "no action `{n}` ({})",
                crate::runbook::diag::allowed_help(n, &catalogue::names())
            ))
        })?],
        None => CATALOGUE.iter().collect(),
    };
    #[derive(Serialize)]
    struct P {
        name: &'static str,
        #[serde(rename = "type")]
        ty: String,
        required: bool,
        default: Option<serde_json::Value>,
        doc: &'static str,
    }
    #[derive(Serialize)]
    struct A<'a> {
        #[serde(flatten)]
        spec: &'a catalogue::ActionSpec,
        params: Vec<P>,
    }
    let data: Vec<A<'_>> = specs
        .iter()
        .map(|s| A {
            spec: s,
            params: s
                .params
                .iter()
                .map(|p| P {
                    name: p.name,
                    ty: p.ty.describe(),
                    required: p.required,
                    default: p.default.map(|f| f()),
                    doc: p.doc,
                })
                .collect(),
        })
        .collect();
    printer.data(&data, |style| {
        let mut o = String::new();
        for a in &data {
            o.push_str(&format!(
                "{} ({})\n  {}\n",
                style.bold(a.spec.name),
                a.spec.effect.as_str(),
                a.spec.summary
            ));
            for p in &a.params {
                o.push_str(&format!(
                    "  with {}: {}{} — {}\n",
                    p.name,
                    p.ty,
                    match (&p.default, p.required) {
                        (_, true) => " (required)".to_string(),
                        (Some(d), _) => format!(" = {d}"),
                        _ => String::new(),
                    },
                    p.doc
                ));
            }
            let outs: Vec<&str> = a.spec.outputs.iter().map(|f| f.name).collect();
            o.push_str(&format!("  output: {}\n\n", outs.join(", ")));
        }
        o
    })?;
    Ok(exit::OK)
}

/// Runs the runbook on a thread with its own runtime (and a stack large enough for CEL); see the
/// module doc for why.
async fn run_detached(
    settings: Settings,
    dirs: Vec<PathBuf>,
    r: RunArgs,
    printer: Printer,
) -> Result<u8> {
    engine::on_own_thread("newapi-ops-runbook", move |interrupt| async move {
        run_here(settings, &dirs, r, &printer, interrupt).await
    })
    .await
}

async fn run_here(
    settings: Settings,
    dirs: &[PathBuf],
    r: RunArgs,
    printer: &Printer,
    interrupt: Arc<Interrupt>,
) -> Result<u8> {
    // Ctrl-C: the first stops after the current step, the second cancels it.
    let listener = interrupt.clone();
    let quiet_printer = printer.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let n = listener.count.fetch_add(1, Ordering::SeqCst) + 1;
            listener.requested.store(true, Ordering::SeqCst);
            if n == 1 {
                quiet_printer
                    .note("interrupt: stopping after the current step (Ctrl-C again to cancel it)");
            } else {
                quiet_printer.note("second interrupt: cancelling the current step");
            }
            listener.now.notify_waiters();
        }
    });
    let rb = find(dirs, &r.name)?;
    let mut inputs = Vec::new();
    for kv in &r.inputs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--input {kv}: expected NAME=VALUE")))?;
        inputs.push((k.trim().to_string(), v.to_string()));
    }
    // Inputs are checked before anything touches the cluster.
    engine::bind_inputs(&rb, &inputs)?;
    let kube = crate::k8s::connect(&settings).await?;
    kube.ensure_namespace(&settings.namespace).await?;
    let (confirm, how): (Box<dyn crate::confirm::Confirm>, &str) = match &r.answers {
        Some(path) => (
            Box::new(crate::runbook::answers::AnswersFile::new(
                path.clone(),
                printer.clone(),
            )),
            "scripted",
        ),
        None => {
            use std::io::IsTerminal;
            let how = if r.confirm.yes {
                "--yes"
            } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                "prompt"
            } else {
                "none (no terminal, no --yes: mutating steps refuse)"
            };
            (crate::confirm::from_flags(r.confirm.yes), how)
        }
    };
    let ctx = crate::runbook::exec::Ctx { kube, settings };
    let opts = RunOptions {
        inputs,
        dry_run: r.dry_run,
        confirmations: how.to_string(),
        runs_dir: r.runs_dir.unwrap_or_else(transcript::default_runs_dir),
    };
    let report = engine::run(
        &ctx,
        &rb,
        &opts,
        confirm.as_ref(),
        printer,
        interrupt.clone(),
        &engine::NoHooks,
    )
    .await?;
    if printer.is_machine() {
        printer.data(&report, |_| String::new())?;
    }
    if report.status == RunStatus::Interrupted {
        return Err(Error::Interrupted);
    }
    Ok(crate::error::run_exit_code(report.status))
}
