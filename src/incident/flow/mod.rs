//! The incident flow: asks what is wrong, runs the matching parts of diagnose, ranks the
//! findings, proposes the runbooks that fit (saying why), runs the one chosen step by step — the
//! operator can run, skip, note or stop at every step, and sees exactly what a change will do
//! before it is applied — re-checks after each change whether what it was meant to fix is gone,
//! and writes a report. The state is saved after every event: Ctrl-C (or a lost connection)
//! leaves an incident that a resume continues.
//!
//! [`resumable`] finds the incident to continue before anything is connected; [`run`] then
//! drives the flow against the cluster and returns the [`Outcome`] for the caller to print. The
//! questions go through a [`Prompter`]; the engine's hooks of a runbook run are in [`guide`].

mod guide;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::prompt::{Choice, Prompter};
use super::state::{self, Chosen, Incident, Note, Status};
use super::{self as inc, FindingRef, SYMPTOMS, Verdict};
use crate::config::Settings;
use crate::diagnose::{
    self, finding::Component, finding::Finding, finding::Severity, report::Report,
};
use crate::error::{Error, Result};
use crate::printer::{Printer, Style};
use crate::runbook::catalogue::Effect;
use crate::runbook::engine::{self, Interrupt, Replay, RunOptions, RunStatus};
use crate::runbook::exec::Ctx;
use crate::runbook::library::{self, Library};
use crate::runbook::model::Runbook;
use crate::runbook::transcript::{Redactor, now};
use crate::units::plural;
use guide::Guide;

/// What an incident run needs besides the cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Continue an incident instead of opening a new one.
    pub resume: Option<Resume>,
    /// Where incidents (state and report) are kept.
    pub dir: PathBuf,
    /// Where the runbook transcripts are written.
    pub runs_dir: PathBuf,
    /// The user's runbook directories, before the config file's.
    pub runbook_dirs: Vec<PathBuf>,
    /// After a change, how long to watch for what it was meant to fix to go away.
    pub recheck_for: Duration,
    /// How the checks run; with no components given, each check runs those of the symptoms.
    pub diagnose: diagnose::Options,
}

/// Which incident to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The newest one not closed.
    Latest,
    /// The one with this id.
    Id(String),
}

/// How an incident ended: its saved state and where its files are.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub incident: Incident,
    pub report: PathBuf,
    pub state: PathBuf,
}

/// The incident `opts` asks to continue, checked against the namespace: None for a new one.
/// Reads files only, so a resume that has nothing to resume says so before connecting anywhere.
pub fn resumable(opts: &Options, settings: &Settings) -> Result<Option<Incident>> {
    let root = &opts.dir;
    let resumed = match &opts.resume {
        None => None,
        Some(Resume::Latest) => {
            Some(
                state::latest_unfinished(root)?.ok_or_else(|| Error::NoIncidentToResume {
                    dir: root.clone(),
                    id: None,
                })?,
            )
        }
        Some(Resume::Id(id)) => {
            if !root.join(id).join("state.json").is_file() {
                return Err(Error::NoIncidentToResume {
                    dir: root.clone(),
                    id: Some(id.clone()),
                });
            }
            Some(Incident::load(root, id)?)
        }
    };
    if let Some(i) = &resumed {
        if i.status == Status::Closed {
            return Err(Error::Usage(format!(
                "incident {} is closed; its report is {}",
                i.id,
                i.dir(root).join("report.md").display()
            )));
        }
        if i.namespace != settings.namespace {
            return Err(Error::Usage(format!(
                "incident {} is about namespace {}, not {}: resume it with -n {}",
                i.id, i.namespace, settings.namespace, i.namespace
            )));
        }
    }
    Ok(resumed)
}

/// Runs the incident: `resumed` (from [`resumable`]) or a new one, in the namespace of `ctx`.
/// Interrupted or stopped by an error, the incident is saved with the report so far (the error
/// is returned; [`Error::Interrupted`] for Ctrl-C).
pub async fn run(
    ctx: Ctx,
    resumed: Option<Incident>,
    opts: &Options,
    printer: &Printer,
    prompter: Box<dyn Prompter>,
    interrupt: Arc<Interrupt>,
) -> Result<Outcome> {
    let flow = Flow::start(ctx, resumed, opts, printer, prompter, interrupt).await?;
    flow.run().await
}

/// Ctrl-C: the flow stops at the next point where it can (a runbook after its current step).
pub fn listen_for_ctrl_c(interrupt: Arc<Interrupt>, printer: Printer) {
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
    prompter: Arc<dyn Prompter>,
    ctx: Ctx,
    opts: &'p Options,
    redactor: Redactor,
    state: Mutex<Incident>,
    interrupt: Arc<Interrupt>,
    library: Library,
    /// Held for as long as the flow works on the incident.
    _lock: Option<state::Lock>,
}

/// Passes `value` through the redactor.
fn redacted<T: Serialize + DeserializeOwned + Clone>(r: &Redactor, value: &T) -> T {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| serde_json::from_value(r.json(&v)).ok())
        .unwrap_or_else(|| value.clone())
}

impl<'p> Flow<'p> {
    async fn start(
        ctx: Ctx,
        resumed: Option<Incident>,
        opts: &'p Options,
        printer: &'p Printer,
        prompter: Box<dyn Prompter>,
        interrupt: Arc<Interrupt>,
    ) -> Result<Flow<'p>> {
        ctx.kube.ensure_namespace(&ctx.settings.namespace).await?;
        let redactor = crate::secrets::learn(printer.redactor(), &ctx.kube, &ctx.settings).await;
        let library = library::load(&library::dirs_for(&opts.runbook_dirs, &ctx.settings));
        let mut lock = None;
        let incident = match resumed {
            Some(mut i) => {
                // Before anything is written: a second resume of the same incident is refused.
                lock = Some(state::Lock::take(&i.dir(&opts.dir), &i.id)?);
                i.status = Status::Open;
                i.event(now(), "resumed");
                i
            }
            None => {
                let mut i = Incident::new(
                    state::new_id(),
                    ctx.settings.namespace.clone(),
                    ctx.kube.context.clone(),
                    now(),
                );
                i.event(now(), "incident opened");
                i
            }
        };
        let flow = Flow {
            printer,
            prompter: prompter.into(),
            ctx,
            opts,
            redactor,
            state: Mutex::new(incident),
            interrupt,
            library,
            _lock: None,
        };
        flow.save()?;
        let lock = match lock {
            Some(l) => l,
            None => {
                let s = flow.state().clone();
                state::Lock::take(&s.dir(&opts.dir), &s.id)?
            }
        };
        Ok(Flow {
            _lock: Some(lock),
            ..flow
        })
    }

    fn state(&self) -> MutexGuard<'_, Incident> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self) -> Result<()> {
        let s = self.state().clone();
        s.save(&self.opts.dir).map(|_| ())
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

    /// Asks something on a thread of its own, and waits for the answer or a stop: Ctrl-C at the
    /// prompt, or SIGINT/SIGTERM from outside while the question waits (a blocked terminal or
    /// answers-file read must not keep the incident from being saved as interrupted).
    fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Prompter) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let prompter = self.prompter.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("newapi-ops-prompt".into())
            .spawn(move || {
                let _ = tx.send(f(prompter.as_ref()));
            })
            .map_err(|e| Error::io("starting the prompt thread", e))?;
        let interrupt = self.interrupt.clone();
        let r = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let stop = interrupt.now.notified();
                tokio::pin!(stop);
                stop.as_mut().enable();
                if interrupt.requested() {
                    return Err(Error::Interrupted);
                }
                tokio::select! {
                    answer = rx => answer.unwrap_or_else(|_| {
                        Err(Error::Internal("the prompt thread ended without an answer".into()))
                    }),
                    () = stop => Err(Error::Interrupted),
                }
            })
        });
        if matches!(r, Err(Error::Interrupted)) {
            self.interrupt.requested.store(true, Ordering::SeqCst);
            // The question may still be waiting on the terminal: put it back as it was.
            self.prompter.abandon();
        }
        r
    }

    fn note(&self, at_what: &str) -> Result<()> {
        let prompt = format!("Note ({at_what})");
        let text = self.ask(move |p| p.input(&prompt, ""))?;
        let text = self.redactor.text(text.trim());
        if !text.is_empty() {
            self.state().notes.push(Note { at: now(), text });
            self.save()?;
            self.say("  noted.\n")?;
        }
        Ok(())
    }

    async fn run(&self) -> Result<Outcome> {
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
            self.ctx.settings.namespace
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
        let asked = items.clone();
        let picked = self.ask(move |p| p.multi_select("What is wrong?", &asked))?;
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
        let mut opts = self.opts.diagnose.clone();
        if opts.components.is_empty() {
            opts.components = components.to_vec();
        }
        let spinner = spinner(what);
        let work = diagnose::run(Some(&self.ctx.kube), &self.ctx.settings, &opts);
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
            if let Some(others) = f.others(3) {
                o.push_str(&format!("           {} {others}\n", st.dim("also:")));
            }
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
            let asked = items.clone();
            let i = self.ask(move |p| p.select("Which runbook?", &asked, 0))?;
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
                    let asked = all.clone();
                    let j = self.ask(move |p| p.select("Which runbook?", &asked, 0))?;
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
                let (asked, default) = (prompt.clone(), default.clone());
                let value = self.ask(move |p| p.input(&asked, &default))?;
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
        let opts = RunOptions {
            inputs: chosen.inputs.clone(),
            dry_run: false,
            confirmations: "incident (each step asked)".into(),
            runs_dir: self.opts.runs_dir.clone(),
        };
        let guide = Guide {
            flow: self,
            replays,
            findings: chosen.findings.clone(),
            failed: Mutex::new(None),
        };
        let report = engine::run(
            &self.ctx,
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
            s.runbook_status = Some(report.status.to_string());
        }
        let failed = guide
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(e) = failed {
            return Err(e);
        }
        if report.status == RunStatus::Interrupted {
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
        let window = self.opts.recheck_for;
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
                    "final check: {} still open",
                    plural(n as u64, "finding", "findings")
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
        let path = s.dir(&self.opts.dir).join("report.md");
        state::write_private(&path, md.as_bytes())?;
        Ok(path)
    }

    fn finish(&self) -> Result<Outcome> {
        let report = self.write_report()?;
        let incident = self.state().clone();
        let state = incident.dir(&self.opts.dir).join("state.json");
        Ok(Outcome {
            incident,
            report,
            state,
        })
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
