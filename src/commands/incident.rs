//! `newapi-ops incident`: guided incident response. Asks what is wrong, runs the matching parts
//! of diagnose, ranks the findings, proposes the runbooks that fit (saying why), runs the one
//! chosen step by step — the operator can run, skip, note or stop at every step, and sees
//! exactly what a change will do before it is applied — re-checks after each change whether
//! what it was meant to fix is gone, and writes a report. The state is saved after every event:
//! Ctrl-C (or a lost connection) leaves an incident that `--resume` continues.
//!
//! Like `runbook run`, it works on a thread of its own with its own runtime, so that the binary's
//! Ctrl-C handling (which drops the command's future) waits for the state to be saved.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::commands::GlobalArgs;
use crate::commands::diagnose::{ComponentArg, DiagnoseArgs, collect, parse_duration};
use crate::config::Settings;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::diagnose::report::Report;
use crate::error::{Error, Result};
use crate::exit;
use crate::incident::prompt::{AnswersFile, Choice, Prompter, Terminal};
use crate::incident::state::{self, Action, Chosen, Incident, Note, Status, StepDone};
use crate::incident::{self as inc, FindingRef, SYMPTOMS, Verdict};
use crate::k8s::Kube;
use crate::printer::{Printer, Style};
use crate::runbook::catalogue::Effect;
use crate::runbook::engine::{self, Decision, Interrupt, Replay, RunOptions, StepHooks, StepView};
use crate::runbook::library::{self, Library};
use crate::runbook::model::{Runbook, Step};
use crate::runbook::transcript::{self, Redactor, StepRecord, now};

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

pub async fn run(global: &GlobalArgs, args: IncidentArgs, printer: &Printer) -> Result<u8> {
    // Refuse before touching anything when nothing can be asked.
    let prompter: Box<dyn Prompter> = match &args.answers {
        Some(path) => Box::new(AnswersFile::new(path.clone(), printer.clone())),
        None => {
            use std::io::IsTerminal;
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(Error::IncidentNeedsTerminal);
            }
            Box::new(Terminal)
        }
    };
    let global = global.clone();
    let printer = printer.clone();
    engine::on_own_thread("newapi-ops-incident", move |interrupt| async move {
        listen_for_ctrl_c(interrupt.clone(), printer.clone());
        let flow = Flow::start(global, args, &printer, prompter, interrupt).await?;
        flow.run().await
    })
    .await
}

/// Ctrl-C: the flow stops at the next point where it can (a runbook after its current step).
fn listen_for_ctrl_c(interrupt: Arc<Interrupt>, printer: Printer) {
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            let n = interrupt.count.fetch_add(1, Ordering::SeqCst) + 1;
            interrupt.requested.store(true, Ordering::SeqCst);
            if n == 1 {
                printer.note(
                    "\ninterrupt: saving the incident (Ctrl-C again to cancel a running step)",
                );
            }
            interrupt.now.notify_waiters();
        }
    });
}

/// Everything the flow works with.
struct Flow<'p> {
    printer: &'p Printer,
    prompter: Box<dyn Prompter>,
    kube: Kube,
    settings: Settings,
    args: IncidentArgs,
    root: PathBuf,
    redactor: Redactor,
    state: Mutex<Incident>,
    interrupt: Arc<Interrupt>,
    library: Library,
}

/// Passes `value` through the redactor.
fn redacted<T: Serialize + DeserializeOwned + Clone>(r: &Redactor, value: &T) -> T {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| serde_json::from_value(r.json(&v)).ok())
        .unwrap_or_else(|| value.clone())
}

fn arg_of(c: Component) -> ComponentArg {
    match c {
        Component::Pods => ComponentArg::Pods,
        Component::Nodes => ComponentArg::Nodes,
        Component::Logs => ComponentArg::Logs,
        Component::Mysql => ComponentArg::Mysql,
        Component::Redis => ComponentArg::Redis,
        Component::App => ComponentArg::App,
        Component::Config => ComponentArg::Config,
    }
}

impl<'p> Flow<'p> {
    async fn start(
        global: GlobalArgs,
        args: IncidentArgs,
        printer: &'p Printer,
        prompter: Box<dyn Prompter>,
        interrupt: Arc<Interrupt>,
    ) -> Result<Flow<'p>> {
        let settings = global.settings()?;
        let root = args.dir.clone().unwrap_or_else(state::default_dir);
        // A resume that has nothing to resume says so before connecting anywhere.
        let resumed = match &args.resume {
            None => None,
            Some(id) if id.is_empty() => Some(state::latest_unfinished(&root)?.ok_or_else(
                || Error::NoIncidentToResume {
                    dir: root.clone(),
                    id: None,
                },
            )?),
            Some(id) => {
                if !root.join(id).join("state.json").is_file() {
                    return Err(Error::NoIncidentToResume {
                        dir: root.clone(),
                        id: Some(id.clone()),
                    });
                }
                Some(Incident::load(&root, id)?)
            }
        };
        if let Some(i) = &resumed {
            if i.status == Status::Closed {
                return Err(Error::Usage(format!(
                    "incident {} is closed; its report is {}",
                    i.id,
                    i.dir(&root).join("report.md").display()
                )));
            }
            if i.namespace != settings.namespace {
                return Err(Error::Usage(format!(
                    "incident {} is about namespace {}, not {}: resume it with -n {}",
                    i.id, i.namespace, settings.namespace, i.namespace
                )));
            }
        }
        let kube = crate::k8s::connect(&settings).await?;
        kube.ensure_namespace(&settings.namespace).await?;
        let redactor = crate::secrets::learn(printer.redactor(), &kube, &settings).await;
        let library = library::load(&library::dirs_for(&args.runbook_dirs, &settings));
        let incident = match resumed {
            Some(mut i) => {
                i.status = Status::Open;
                i.event(now(), "resumed");
                i
            }
            None => {
                let mut i = Incident::new(
                    state::new_id(),
                    settings.namespace.clone(),
                    kube.context.clone(),
                    now(),
                );
                i.event(now(), "incident opened");
                i
            }
        };
        let flow = Flow {
            printer,
            prompter,
            kube,
            settings,
            args,
            root,
            redactor,
            state: Mutex::new(incident),
            interrupt,
            library,
        };
        flow.save()?;
        Ok(flow)
    }

    fn state(&self) -> MutexGuard<'_, Incident> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self) -> Result<()> {
        let s = self.state().clone();
        s.save(&self.root).map(|_| ())
    }

    /// Adds a timeline line (redacted) and saves.
    fn event(&self, what: &str) -> Result<()> {
        let what = self.redactor.text(what);
        self.state().event(now(), what);
        self.save()
    }

    fn style(&self) -> Style {
        self.printer.style
    }

    fn human(&self) -> bool {
        !self.printer.is_machine()
    }

    fn say(&self, text: &str) -> Result<()> {
        if self.human() {
            self.printer.text(text)?;
        }
        Ok(())
    }

    /// Asks something (on a blocking thread); Ctrl-C at the prompt interrupts the incident.
    fn ask<T>(&self, f: impl FnOnce(&dyn Prompter) -> Result<T>) -> Result<T> {
        let r = tokio::task::block_in_place(|| f(self.prompter.as_ref()));
        if matches!(r, Err(Error::Interrupted)) {
            self.interrupt.requested.store(true, Ordering::SeqCst);
        }
        r
    }

    fn note(&self, at_what: &str) -> Result<()> {
        let text = self.ask(|p| p.input(&format!("Note ({at_what})"), ""))?;
        let text = self.redactor.text(text.trim());
        if !text.is_empty() {
            self.state().notes.push(Note { at: now(), text });
            self.save()?;
            self.say("  noted.\n")?;
        }
        Ok(())
    }

    async fn run(&self) -> Result<u8> {
        let outcome = self.drive().await;
        match outcome {
            Ok(()) => self.finish(),
            Err(e) => {
                let interrupted = matches!(e, Error::Interrupted) || self.interrupt.requested();
                {
                    let mut s = self.state();
                    if interrupted {
                        s.status = Status::Interrupted;
                        s.event(now(), "interrupted (Ctrl-C)");
                    } else {
                        let line = self.redactor.text(&crate::runbook::exec::err_line(&e));
                        s.event(now(), format!("stopped by an error: {line}"));
                    }
                }
                self.save()?;
                let report = self.write_report()?;
                let id = self.state().id.clone();
                self.printer.note(&format!(
                    "incident {id} saved; the report so far: {}\ncontinue with: newapi-ops incident --resume {id}",
                    report.display()
                ));
                Err(if interrupted { Error::Interrupted } else { e })
            }
        }
    }

    async fn drive(&self) -> Result<()> {
        let id = self.state().id.clone();
        self.say(&format!(
            "{} {id} — namespace {}\n",
            self.style().bold("incident"),
            self.settings.namespace
        ))?;
        if self.state().symptoms.is_none() {
            self.ask_symptoms()?;
        }
        if self.state().findings.is_none() {
            self.first_diagnosis().await?;
        } else {
            self.show_findings();
        }
        let (chosen, done) = {
            let s = self.state();
            (s.chosen.clone(), s.runbook_done)
        };
        if !done {
            let chosen = match chosen {
                Some(c) => Some(c),
                None => self.choose_runbook()?,
            };
            if let Some(c) = chosen {
                self.run_runbook(&c).await?;
            }
        }
        self.close().await
    }

    fn ask_symptoms(&self) -> Result<()> {
        let items: Vec<Choice> = SYMPTOMS
            .iter()
            .map(|s| Choice::new(s.key, s.label))
            .collect();
        let picked = self.ask(|p| p.multi_select("What is wrong?", &items))?;
        let keys: Vec<String> = picked.iter().map(|&i| items[i].key.clone()).collect();
        let labels: Vec<&str> = picked.iter().map(|&i| items[i].label.as_str()).collect();
        self.state().symptoms = Some(keys);
        self.event(&format!(
            "symptoms: {}",
            if labels.is_empty() {
                "none chosen (checking everything)".to_string()
            } else {
                labels.join("; ")
            }
        ))
    }

    /// The diagnose checks for these components, with a spinner; Ctrl-C stops it.
    async fn diagnose(&self, components: &[Component], what: &str) -> Result<Report> {
        let mut args = self.args.diagnose.clone();
        if args.only.is_empty() {
            args.only = components.iter().map(|c| arg_of(*c)).collect();
        }
        let spinner = spinner(what);
        let work = collect(Some(self.kube.clone()), self.settings.clone(), args);
        let r = tokio::select! {
            r = work => r,
            () = self.interrupted() => Err(Error::Interrupted),
        };
        spinner.finish_and_clear();
        r
    }

    async fn interrupted(&self) {
        loop {
            let notified = self.interrupt.now.notified();
            if self.interrupt.requested() {
                return;
            }
            notified.await;
        }
    }

    async fn first_diagnosis(&self) -> Result<()> {
        let keys = self.state().symptoms.clone().unwrap_or_default();
        let components = inc::components_for(&keys);
        let names: Vec<&str> = components.iter().map(|c| c.as_str()).collect();
        let report = self
            .diagnose(&components, &format!("checking {}", names.join(", ")))
            .await?;
        let findings: Vec<Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity > Severity::Ok)
            .map(|f| redacted(&self.redactor, f))
            .collect();
        let c = &report.counts;
        self.state().findings = Some(findings);
        self.event(&format!(
            "diagnosed ({}): {} critical, {} warning, {} info",
            names.join(", "),
            c.critical,
            c.warning,
            c.info
        ))?;
        self.show_findings();
        Ok(())
    }

    fn show_findings(&self) {
        if !self.human() {
            return;
        }
        let findings = self.state().findings.clone().unwrap_or_default();
        let st = self.style();
        let shown = inc::ranked(&findings);
        let mut o = format!("\n{}\n", st.bold("Findings, worst first"));
        if shown.is_empty() {
            o.push_str("  nothing above ok\n");
        }
        for f in shown {
            let sev = match f.severity {
                Severity::Critical => st.red("critical"),
                Severity::Warning => st.yellow("warning "),
                _ => "info    ".to_string(),
            };
            o.push_str(&format!(
                "  {sev} {}{}\n           {}\n",
                f.check,
                f.subject
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default(),
                f.summary
            ));
            for e in f.evidence.iter().take(3) {
                o.push_str(&format!("           {} {e}\n", st.dim("seen:")));
            }
        }
        let _ = self.printer.text(&o);
    }

    /// Proposes the runbooks that fit and asks which to run; None when the operator runs none.
    fn choose_runbook(&self) -> Result<Option<Chosen>> {
        let (keys, findings) = {
            let s = self.state();
            (
                s.symptoms.clone().unwrap_or_default(),
                s.findings.clone().unwrap_or_default(),
            )
        };
        let proposals = inc::propose(&self.library.runbooks, &keys, &findings);
        self.state().proposals = proposals.clone();
        self.save()?;
        let st = self.style();
        let mut o = format!("\n{}\n", st.bold("Runbooks that fit"));
        if proposals.is_empty() {
            o.push_str("  none matches what you saw or what was found\n");
        }
        for p in &proposals {
            o.push_str(&format!(
                "  {} — {}\n      {}\n",
                st.bold(&p.runbook),
                p.title,
                p.why
            ));
        }
        self.say(&o)?;
        loop {
            let mut items: Vec<Choice> = proposals
                .iter()
                .map(|p| Choice::new(&p.runbook, format!("Run {} — {}", p.runbook, p.title)))
                .collect();
            items.push(Choice::new("other", "Another runbook…"));
            items.push(Choice::new("note", "Add a note"));
            items.push(Choice::new("none", "None — write the report now"));
            let i = self.ask(|p| p.select("Which runbook?", &items, 0))?;
            let rb = match items[i].key.as_str() {
                "note" => {
                    self.note("before choosing a runbook")?;
                    continue;
                }
                "none" => {
                    self.state().runbook_done = true;
                    self.event("no runbook run")?;
                    return Ok(None);
                }
                "other" => {
                    let mut all: Vec<Choice> = self
                        .library
                        .runbooks
                        .iter()
                        .map(|r| Choice::new(&r.name, format!("{} — {}", r.name, r.title)))
                        .collect();
                    all.push(Choice::new("back", "Back"));
                    let j = self.ask(|p| p.select("Which runbook?", &all, 0))?;
                    if all[j].key == "back" {
                        continue;
                    }
                    all[j].key.clone()
                }
                name => name.to_string(),
            };
            let Some(runbook) = self.library.get(&rb) else {
                continue;
            };
            let findings = proposals
                .iter()
                .find(|p| p.runbook == rb)
                .map(|p| p.findings.clone())
                .unwrap_or_default();
            let inputs = self.ask_inputs(runbook, &findings)?;
            let chosen = Chosen {
                runbook: runbook.name.clone(),
                title: runbook.title.clone(),
                inputs,
                findings,
            };
            let why = proposals
                .iter()
                .find(|p| p.runbook == rb)
                .map(|p| format!(" ({})", p.why))
                .unwrap_or_default();
            self.state().chosen = Some(redacted(&self.redactor, &chosen));
            self.event(&format!("chose runbook {}{why}", chosen.runbook))?;
            return Ok(Some(chosen));
        }
    }

    /// Asks the runbook's inputs, defaulting a pod input to the pod the worst finding is about.
    fn ask_inputs(&self, rb: &Runbook, findings: &[FindingRef]) -> Result<Vec<(String, String)>> {
        let pod = findings
            .iter()
            .filter_map(|f| f.subject.as_deref())
            .find_map(|s| s.strip_prefix("pod/"))
            .map(str::to_string);
        loop {
            let mut given = Vec::new();
            for input in &rb.inputs {
                let mut default = match &input.default {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                if default.is_empty()
                    && input.name.contains("pod")
                    && let Some(p) = &pod
                {
                    default = p.clone();
                }
                let prompt = format!("{} — {}", input.name, engine::describe_input(input));
                let value = self.ask(|p| p.input(&prompt, &default))?;
                given.push((input.name.clone(), value.trim().to_string()));
            }
            match engine::bind_inputs(rb, &given) {
                Ok(_) => return Ok(given),
                Err(e) => self.printer.error(&e),
            }
        }
    }

    async fn run_runbook(&self, chosen: &Chosen) -> Result<()> {
        let rb =
            self.library
                .get(&chosen.runbook)
                .cloned()
                .ok_or_else(|| Error::RunbookNotFound {
                    name: chosen.runbook.clone(),
                    available: self
                        .library
                        .names()
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                })?;
        let replays: HashMap<String, Replay> = self
            .state()
            .steps
            .iter()
            .filter(|s| s.effect != Effect::ReadOnly.as_str())
            .filter(|s| matches!(s.status.as_str(), "ok" | "skipped" | "declined"))
            .map(|s| {
                (
                    s.id.clone(),
                    Replay {
                        status: s.status.clone(),
                        output: s.output.clone(),
                        summary: s.summary.clone(),
                    },
                )
            })
            .collect();
        self.event(&format!("runbook {} started", rb.name))?;
        let ctx = crate::runbook::exec::Ctx {
            kube: self.kube.clone(),
            settings: self.settings.clone(),
        };
        let opts = RunOptions {
            inputs: chosen.inputs.clone(),
            dry_run: false,
            confirmations: "incident (each step asked)".into(),
            runs_dir: self
                .args
                .runs_dir
                .clone()
                .unwrap_or_else(transcript::default_runs_dir),
        };
        let guide = Guide {
            flow: self,
            replays,
            findings: chosen.findings.clone(),
            failed: Mutex::new(None),
        };
        let report = engine::run(
            &ctx,
            &rb,
            &opts,
            &crate::confirm::NoTerminal,
            self.printer,
            self.interrupt.clone(),
            &guide,
        )
        .await?;
        {
            let mut s = self.state();
            s.transcripts.push(report.transcript_markdown.clone());
            s.runbook_status = Some(report.status.clone());
        }
        let failed = guide
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(e) = failed {
            return Err(e);
        }
        if report.status == "interrupted" {
            return Err(Error::Interrupted);
        }
        self.state().runbook_done = true;
        self.event(&format!("runbook {} ended: {}", rb.name, report.status))
    }

    /// Watches, after a change, whether the findings it was meant to fix go away: until all are
    /// gone for a while, or the same problem shows on another subject twice, or time is up.
    async fn recheck(
        &self,
        change: &str,
        findings: &[FindingRef],
    ) -> (Vec<(FindingRef, Verdict)>, String) {
        let targets = inc::targets_of(change, findings);
        if targets.is_empty() {
            return (
                Vec::new(),
                "nothing to re-check: this runbook was chosen by symptoms, not by a finding".into(),
            );
        }
        let mut components: Vec<Component> = targets.iter().map(|t| t.component).collect();
        components.sort();
        components.dedup();
        let window = self.args.recheck_for;
        let settle = window.min(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut gone_since: Option<Instant> = None;
        let mut moved_twice = 0;
        let labels: Vec<String> = targets.iter().map(FindingRef::label).collect();
        loop {
            let report = match self
                .diagnose(&components, &format!("re-checking {}", labels.join(", ")))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    return (
                        Vec::new(),
                        format!(
                            "the re-check could not run: {}",
                            crate::runbook::exec::err_line(&e)
                        ),
                    );
                }
            };
            let verdicts: Vec<(FindingRef, Verdict)> = targets
                .iter()
                .map(|t| (t.clone(), inc::verdict(t, &report.findings)))
                .map(|(t, v)| (t, redacted(&self.redactor, &v)))
                .collect();
            let elapsed = t0.elapsed();
            let all_gone = verdicts.iter().all(|(_, v)| v.is_gone());
            let moved = verdicts
                .iter()
                .any(|(_, v)| matches!(v, Verdict::Moved { .. }))
                && !verdicts
                    .iter()
                    .any(|(_, v)| matches!(v, Verdict::Still { .. }));
            if all_gone {
                let since = *gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= settle || elapsed >= window {
                    return (
                        verdicts,
                        format!(
                            "gone, and still gone {}s later (watched {}s)",
                            since.elapsed().as_secs(),
                            elapsed.as_secs()
                        ),
                    );
                }
            } else {
                gone_since = None;
            }
            moved_twice = if moved { moved_twice + 1 } else { 0 };
            if moved_twice >= 2 {
                return (
                    verdicts,
                    format!(
                        "the same problem came back on another subject (watched {}s)",
                        elapsed.as_secs()
                    ),
                );
            }
            if elapsed >= window {
                return (
                    verdicts,
                    format!("watched {}s (--recheck-for)", elapsed.as_secs()),
                );
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = self.interrupted() => {
                    return (verdicts, format!("interrupted after {}s", elapsed.as_secs()));
                }
            }
        }
    }

    async fn close(&self) -> Result<()> {
        let extra =
            self.ask(|p| p.input("Anything to add to the report? (Enter for nothing)", ""))?;
        let extra = self.redactor.text(extra.trim());
        if !extra.is_empty() {
            self.state().notes.push(Note {
                at: now(),
                text: extra,
            });
        }
        let keys = self.state().symptoms.clone().unwrap_or_default();
        let components = inc::components_for(&keys);
        match self.diagnose(&components, "final check").await {
            Ok(report) => {
                let open: Vec<FindingRef> = inc::ranked(&report.findings)
                    .into_iter()
                    .filter(|f| f.severity >= Severity::Warning)
                    .map(FindingRef::of)
                    .map(|f| redacted(&self.redactor, &f))
                    .collect();
                let n = open.len();
                self.state().still_open = Some(open);
                self.event(&format!(
                    "final check: {n} finding{} still open",
                    if n == 1 { "" } else { "s" }
                ))?;
            }
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(e) => {
                let line = self.redactor.text(&crate::runbook::exec::err_line(&e));
                self.state().final_check = Some(line.clone());
                self.event(&format!("final check could not run: {line}"))?;
            }
        }
        {
            let mut s = self.state();
            s.status = Status::Closed;
            s.ended_at = Some(now());
            s.event(now(), "incident closed");
        }
        self.save()
    }

    fn write_report(&self) -> Result<PathBuf> {
        let s = self.state().clone();
        let md = self.redactor.text(&crate::incident::report::render(&s));
        let path = s.dir(&self.root).join("report.md");
        state::write_private(&path, md.as_bytes())?;
        Ok(path)
    }

    fn finish(&self) -> Result<u8> {
        let path = self.write_report()?;
        let s = self.state().clone();
        #[derive(Serialize)]
        struct Out<'a> {
            id: &'a str,
            status: &'a str,
            report: String,
            state: String,
            runbook: Option<&'a str>,
            still_open: usize,
        }
        let out = Out {
            id: &s.id,
            status: s.status.as_str(),
            report: path.display().to_string(),
            state: s.dir(&self.root).join("state.json").display().to_string(),
            runbook: s.chosen.as_ref().map(|c| c.runbook.as_str()),
            still_open: s.still_open.as_ref().map_or(0, Vec::len),
        };
        let open = s.still_open.clone().unwrap_or_default();
        self.printer.data(&out, |st| {
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
        })?;
        Ok(exit::OK)
    }
}

fn spinner(what: &str) -> indicatif::ProgressBar {
    let pb =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// The incident's hooks into the runbook engine: a choice before each step, a record and a
/// re-check after it.
struct Guide<'f, 'p> {
    flow: &'f Flow<'p>,
    replays: HashMap<String, Replay>,
    findings: Vec<FindingRef>,
    /// Why a question could not be asked, when that stopped the runbook.
    failed: Mutex<Option<Error>>,
}

impl Guide<'_, '_> {
    /// Stops the runbook because of `e` (Ctrl-C goes on as an interrupt).
    fn stop_with(&self, e: Error) -> Result<Decision> {
        if matches!(e, Error::Interrupted) {
            return Err(e);
        }
        *self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
        Ok(Decision::Stop)
    }
}

impl StepHooks for Guide<'_, '_> {
    fn replay(&self, step: &Step) -> Option<Replay> {
        self.replays.get(&step.id).cloned()
    }

    fn decide(&self, view: &StepView<'_>) -> Result<Decision> {
        let flow = self.flow;
        let st = flow.style();
        let go = match view.effect {
            Effect::ReadOnly => Choice::new("run", "Run it (reads only)"),
            Effect::Mutating => Choice::new(
                "apply",
                format!("Apply: {}", view.change.unwrap_or("the change")),
            ),
            Effect::Manual => Choice::new("done", "Done — I did it"),
        };
        if view.effect == Effect::Mutating {
            let mut o = format!(
                "  {} {}\n",
                st.yellow("will change:"),
                view.change.unwrap_or("(nothing said)")
            );
            for d in view.details {
                o.push_str(&format!("    {d}\n"));
            }
            flow.say(&o)?;
        }
        let items = [
            go,
            Choice::new("skip", "Skip this step"),
            Choice::new("note", "Add a note first"),
            Choice::new("stop", "Stop the runbook here"),
        ];
        let prompt = format!("[{}/{}] {}", view.index, view.total, view.step.title);
        loop {
            let i = match flow.ask(|p| p.select(&prompt, &items, 0)) {
                Ok(i) => i,
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                // A question that cannot be answered (a bad answers file, a broken terminal)
                // stops the runbook and then the incident, with that error.
                Err(e) => return self.stop_with(e),
            };
            match items[i].key.as_str() {
                "note" => {
                    if let Err(e) = flow.note(&format!("at step {}", view.step.id)) {
                        return self.stop_with(e);
                    }
                }
                "skip" => {
                    let why = match flow.ask(|p| p.input("Why skip it? (Enter for no reason)", ""))
                    {
                        Ok(w) => w,
                        Err(e) => return self.stop_with(e),
                    };
                    let why = flow.redactor.text(why.trim());
                    flow.event(&format!(
                        "step {} skipped{}",
                        view.step.id,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {why}")
                        }
                    ))?;
                    return Ok(Decision::Skip(why));
                }
                "stop" => {
                    flow.event(&format!("runbook stopped before step {}", view.step.id))?;
                    return Ok(Decision::Stop);
                }
                _ => {
                    if view.effect == Effect::Mutating {
                        flow.event(&format!(
                            "confirmed step {}: {}",
                            view.step.id,
                            view.change.unwrap_or("")
                        ))?;
                    }
                    return Ok(Decision::Go);
                }
            }
        }
    }

    fn after<'a>(
        &'a self,
        step: &'a Step,
        rec: &'a StepRecord,
    ) -> futures::future::LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let flow = self.flow;
            let done = StepDone {
                id: rec.id.clone(),
                title: rec.title.clone(),
                action: rec.action.clone(),
                effect: rec.effect.clone(),
                status: rec.status.clone(),
                summary: rec.summary.clone(),
                change: rec.change.clone(),
                error: rec.error.clone(),
                output: rec.output.clone(),
                at: rec.ended_at.clone(),
            };
            {
                let mut s = flow.state();
                match s.steps.iter_mut().find(|d| d.id == done.id) {
                    Some(old) => *old = done,
                    None => s.steps.push(done),
                }
            }
            let applied = step.action.effect() == Effect::Mutating
                && rec.status == "ok"
                && rec.change.is_some()
                && !rec.summary.starts_with("nothing to change");
            let _ = flow.event(&format!(
                "step {} ({}): {}{}",
                rec.id,
                rec.action,
                rec.status,
                if rec.summary.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", rec.summary)
                }
            ));
            if !applied {
                return;
            }
            let change = rec.change.clone().unwrap_or_default();
            let (rechecks, note) = flow.recheck(&change, &self.findings).await;
            let st = flow.style();
            let mut o = String::new();
            for (t, v) in &rechecks {
                let line = v.describe(t);
                o.push_str(&format!(
                    "  {} {}\n",
                    if v.is_gone() {
                        st.green("re-check:")
                    } else {
                        st.yellow("re-check:")
                    },
                    line
                ));
            }
            o.push_str(&format!("  {}\n", st.dim(&format!("({note})"))));
            let _ = flow.say(&o);
            let summary: Vec<String> = rechecks.iter().map(|(t, v)| v.describe(t)).collect();
            flow.state().actions.push(Action {
                step: rec.id.clone(),
                change: change.clone(),
                status: rec.status.clone(),
                at: rec.ended_at.clone(),
                rechecks,
                recheck_note: note.clone(),
            });
            let _ = flow.event(&format!(
                "re-checked after `{change}`: {} ({note})",
                if summary.is_empty() {
                    "nothing to re-check".to_string()
                } else {
                    summary.join("; ")
                }
            ));
        })
    }
}
