//! Running a runbook: inputs checked, then each step in order — its `when`, its arguments
//! resolved, then one single point where the effect decides (just's lesson: confirmation and
//! dry-run checked in one place, right before acting): read-only steps run; mutating steps are
//! planned, then described (`--dry-run`) or confirmed and applied; manual steps are shown and
//! acknowledged. A failed step stops the run unless it says `on_failure: continue`. Ctrl-C stops
//! after the current step (a second Ctrl-C cancels it); the transcript is written either way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::args::Resolver;
use super::catalogue::Effect;
use super::exec::{self, Call, Ctx, Done};
use super::expr::{Bindings, Cancel};
use super::model::{Input, OnFailure, Runbook, Step};
use super::transcript::{EndRecord, Redactor, StartRecord, StepRecord, Transcript, now};
use crate::confirm::Confirm;
use crate::error::{Error, Result};
use crate::printer::Printer;

/// How a run is asked for.
pub struct RunOptions {
    /// `--input name=value`, in order.
    pub inputs: Vec<(String, String)>,
    pub dry_run: bool,
    /// How confirmations are answered: `prompt`, `--yes`, `scripted`, `refused`.
    pub confirmations: String,
    pub runs_dir: std::path::PathBuf,
}

/// Interrupt state shared with the signal listener and the command's drop guard.
#[derive(Debug, Default)]
pub struct Interrupt {
    pub requested: AtomicBool,
    pub count: AtomicU32,
    pub now: tokio::sync::Notify,
}

impl Interrupt {
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// What a guide standing beside the engine (the `incident` flow) decided about a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No opinion: the engine asks its [`Confirm`] as usual (mutating and manual steps).
    Default,
    /// Go ahead: the change (for a mutating step) was shown and accepted, a manual step was
    /// done; the engine does not ask again.
    Go,
    /// Skip the step; the reason goes into the transcript.
    Skip(String),
    /// Stop the run here; the remaining steps are recorded as not run.
    Stop,
}

/// A step's result from an earlier, interrupted run of the same runbook, replayed instead of
/// acting again (a change is never applied twice).
#[derive(Debug, Clone)]
pub struct Replay {
    pub status: String,
    pub output: Json,
    pub summary: String,
}

/// Hooks around each step, for a guide that drives the run interactively. The plain `runbook
/// run` uses [`NoHooks`].
pub trait StepHooks {
    /// Before anything else about step `index` (1-based): a result to replay, if any.
    fn replay(&self, _step: &Step) -> Option<Replay> {
        None
    }
    /// Once the step is about to act (its `when` held, its arguments resolved): `change` is what
    /// a mutating step would change and `details` more lines about it (a manual step's
    /// instructions are already printed).
    fn decide(&self, _view: &StepView<'_>) -> Result<Decision> {
        Ok(Decision::Default)
    }
    /// After the step was recorded.
    fn after<'a>(
        &'a self,
        _step: &'a Step,
        _record: &'a StepRecord,
    ) -> futures::future::LocalBoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// What [`StepHooks::decide`] is shown of a step.
#[derive(Debug)]
pub struct StepView<'a> {
    pub step: &'a Step,
    pub index: usize,
    pub total: usize,
    pub effect: Effect,
    pub change: Option<&'a str>,
    pub details: &'a [String],
}

/// The hooks of a plain run: none.
#[derive(Debug, Default)]
pub struct NoHooks;

impl StepHooks for NoHooks {}

/// Runs `work` on a thread of its own with its own runtime (and a stack large enough for CEL).
/// When the caller's future is dropped (the binary's Ctrl-C), the work is told to stop through
/// its [`Interrupt`] and waited for, so that what it writes (transcripts, state) is complete
/// when the process exits.
pub async fn on_own_thread<F, Fut>(name: &str, work: F) -> Result<u8>
where
    F: FnOnce(Arc<Interrupt>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<u8>>,
{
    let interrupt = Arc::new(Interrupt::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread_interrupt = interrupt.clone();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .stack_size(super::expr::COMPILE_STACK)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_stack_size(64 * 1024 * 1024)
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => {
                    let r = rt.block_on(work(thread_interrupt));
                    rt.shutdown_timeout(std::time::Duration::from_millis(200));
                    r
                }
                Err(e) => Err(Error::io("starting a runtime", e)),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| Error::io(format!("starting the thread {name}"), e))?;
    let guard = JoinOnDrop {
        handle: Some(handle),
        interrupt,
    };
    let result = rx
        .await
        .unwrap_or_else(|_| Err(Error::Internal(format!("{name} stopped without a result"))));
    drop(guard);
    result
}

/// Dropped when `main` gives up on the command (Ctrl-C): asks the work to stop, then waits for
/// it to finish writing.
struct JoinOnDrop {
    handle: Option<std::thread::JoinHandle<()>>,
    interrupt: Arc<Interrupt>,
}

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if !h.is_finished() {
                self.interrupt.requested.store(true, Ordering::SeqCst);
                self.interrupt.now.notify_waiters();
            }
            let _ = h.join();
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Every step ran (or was skipped by its `when:`) and none failed.
    Completed,
    /// It ran to the end, but steps that say `on_failure: continue` failed.
    CompletedWithFailures,
    /// A step failed, was declined or refused; the rest did not run.
    Aborted,
    /// The operator stopped it (incident: "stop here").
    Stopped,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl RunStatus {
    /// As in the transcript and the summary line: `completed-with-failures`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::CompletedWithFailures => "completed-with-failures",
            RunStatus::Aborted => "aborted",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub runbook: String,
    pub status: RunStatus,
    pub dry_run: bool,
    pub inputs: Json,
    pub steps: Vec<StepRecord>,
    pub transcript_markdown: String,
    pub transcript_jsonl: String,
}

/// Checks `--input` values against the declared inputs; fills defaults.
pub fn bind_inputs(
    rb: &Runbook,
    given: &[(String, String)],
) -> Result<serde_json::Map<String, Json>> {
    let mut out = serde_json::Map::new();
    for (k, v) in given {
        let Some(input) = rb.inputs.iter().find(|i| &i.name == k) else {
            let names: Vec<&str> = rb.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "runbook {} has no input `{k}` ({})",
                rb.name,
                if names.is_empty() {
                    "it takes no inputs".to_string()
                } else {
                    super::diag::allowed_help(k, &names)
                }
            )));
        };
        let value = input
            .check(&Json::String(v.clone()))
            .map_err(|m| Error::Usage(format!("--input {k}={v}: {m}")))?;
        out.insert(k.clone(), value);
    }
    for input in &rb.inputs {
        if !out.contains_key(&input.name) {
            match &input.default {
                Some(d) => {
                    out.insert(input.name.clone(), d.clone());
                }
                None => {
                    return Err(Error::Usage(format!(
                        "runbook {} needs --input {}=VALUE ({})",
                        rb.name,
                        input.name,
                        describe_input(input)
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// `int, 1..20: the number of slaves`.
pub fn describe_input(i: &Input) -> String {
    let mut s = serde_json::to_value(i.ty)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if !i.values.is_empty() {
        s = format!("one of {}", i.values.join("|"));
    }
    match (i.min, i.max) {
        (Some(a), Some(b)) => s.push_str(&format!(", {a}..{b}")),
        (Some(a), None) => s.push_str(&format!(", ≥ {a}")),
        (None, Some(b)) => s.push_str(&format!(", ≤ {b}")),
        _ => {}
    }
    if !i.description.is_empty() {
        s.push_str(&format!(": {}", i.description));
    }
    s
}

fn run_id(name: &str) -> String {
    let t = jiff::Timestamp::now();
    let stamp = t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let salt = (u64::from(t.subsec_nanosecond().unsigned_abs()) ^ u64::from(std::process::id()))
        % 0x100_0000;
    format!("{stamp}-{name}-{salt:06x}")
}

/// Ends a step's record.
struct Clock {
    started_at: String,
    t0: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            started_at: now(),
            t0: Instant::now(),
        }
    }
}

/// Outcome of one step before it is recorded.
struct Outcome {
    status: &'static str,
    done: Option<Done>,
    error: Option<String>,
    change: Option<String>,
    details: Vec<String>,
    arguments: Json,
}

impl Outcome {
    fn failed(error: String, arguments: Json) -> Outcome {
        Outcome {
            status: "failed",
            done: None,
            error: Some(error),
            change: None,
            details: Vec::new(),
            arguments,
        }
    }
}

/// Runs `rb`. Printing goes through `printer` (progress in human mode; the report is returned).
pub async fn run(
    ctx: &Ctx,
    rb: &Runbook,
    opts: &RunOptions,
    confirm: &dyn Confirm,
    printer: &Printer,
    interrupt: Arc<Interrupt>,
    hooks: &dyn StepHooks,
) -> Result<RunReport> {
    let inputs = bind_inputs(rb, &opts.inputs)?;
    // The printer masks what it shows with the same secrets as the transcript.
    let redactor = crate::secrets::learn(printer.redactor(), &ctx.kube, &ctx.settings).await;
    let id = run_id(&rb.name);
    let t_run = Instant::now();
    let mut transcript = Transcript::create(
        &opts.runs_dir,
        StartRecord {
            run_id: id.clone(),
            runbook: rb.name.clone(),
            title: rb.title.clone(),
            source: rb.source.clone(),
            started_at: now(),
            context: ctx.kube.context.clone(),
            server: ctx.kube.server.clone(),
            namespace: ctx.settings.namespace.clone(),
            inputs: Json::Object(inputs.clone()),
            dry_run: opts.dry_run,
            confirmations: opts.confirmations.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        redactor,
    )?;
    let human = !printer.is_machine();
    let style = printer.style;
    if human {
        printer.text(&format!(
            "{} {} — {}{}\n",
            style.bold("runbook"),
            rb.name,
            rb.title,
            if opts.dry_run { " (dry run)" } else { "" }
        ))?;
    }
    // A second Ctrl-C also stops an expression being evaluated (it runs on a thread of its own,
    // within its own bounds, see `expr::guard`).
    let cancel = Cancel::new();
    let _watcher = AbortOnDrop(tokio::spawn({
        let interrupt = interrupt.clone();
        let cancel = cancel.clone();
        async move {
            wait_second_interrupt(&interrupt).await;
            cancel.cancel();
        }
    }));
    let mut bindings = Bindings {
        inputs: inputs.clone(),
        steps: serde_json::Map::new(),
        cancel: Some(cancel.clone()),
    };
    let n = rb.steps.len();
    let mut records: Vec<StepRecord> = Vec::new();
    let mut stop: Option<&'static str> = None;
    for (i, step) in rb.steps.iter().enumerate() {
        let index = i + 1;
        let spec = step.action.spec();
        if stop.is_none() && interrupt.requested() {
            stop = Some("interrupted");
        }
        if let Some(why) = stop {
            let rec = instant_record(
                index,
                step,
                "not-run",
                format!("not run: the run was {why}"),
                Json::Null,
            );
            records.push(transcript.step(rec)?);
            continue;
        }
        if human {
            printer.text(&format!(
                "\n{} {} {} ({}, {})\n",
                style.bold(&format!("[{index}/{n}]")),
                step.id,
                step.title,
                spec.name,
                spec.effect.as_str()
            ))?;
        }
        let clock = Clock::start();
        if let Some(replay) = hooks.replay(step) {
            let rec = transcript.step(instant_record(
                index,
                step,
                &replay.status,
                format!("before the interruption: {}", replay.summary),
                replay.output.clone(),
            ))?;
            if human {
                printer.text(&format!("  {} {}\n", style.dim(&rec.status), rec.summary))?;
            }
            bindings.steps.insert(
                step.id.clone(),
                json!({"status": rec.status, "output": rec.output, "error": Json::Null, "summary": rec.summary}),
            );
            records.push(rec);
            continue;
        }
        let view = StepContext {
            index,
            total: n,
            hooks,
        };
        let work = run_step(
            ctx,
            step,
            &bindings,
            opts,
            confirm,
            printer,
            transcript.redactor(),
            &view,
        );
        let mut outcome = tokio::select! {
            o = work => o,
            () = wait_second_interrupt(&interrupt) => Outcome {
                status: "cancelled",
                done: None,
                error: Some("cancelled by a second Ctrl-C while it ran: its effect is unknown".into()),
                change: None,
                details: Vec::new(),
                arguments: Json::Null,
            },
        };
        // An expression stopped by the second Ctrl-C failed because of it.
        if outcome.status == "failed" && cancel.is_cancelled() {
            outcome.status = "cancelled";
        }
        let duration_ms = u64::try_from(clock.t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (output, summary) = match &outcome.done {
            Some(d) => (d.output.clone(), d.summary.clone()),
            None => (Json::Null, String::new()),
        };
        let rec = transcript.step(StepRecord {
            index,
            id: step.id.clone(),
            title: step.title.clone(),
            action: spec.name.into(),
            effect: spec.effect.as_str().into(),
            status: outcome.status.into(),
            when: step.when.as_ref().map(|w| w.source.clone()),
            arguments: outcome.arguments,
            change: outcome.change,
            details: outcome.details,
            summary,
            error: outcome.error,
            output,
            started_at: clock.started_at,
            ended_at: now(),
            duration_ms,
        })?;
        if human {
            let status = match rec.status.as_str() {
                "ok" => style.green("ok"),
                "skipped" | "dry-run" => style.dim(&rec.status),
                "failed" | "cancelled" => style.red(&rec.status),
                other => style.yellow(other),
            };
            let mut line = format!("  {status} ({} ms)", rec.duration_ms);
            if let Some(c) = &rec.change {
                line.push_str(&format!(" — {c}"));
            }
            if !rec.summary.is_empty() {
                line.push_str(&format!(": {}", rec.summary));
            }
            if let Some(e) = &rec.error {
                line.push_str(&format!("\n  {} {e}", style.red("error:")));
            }
            for d in &rec.details {
                line.push_str(&format!("\n    {d}"));
            }
            printer.text(&format!("{line}\n"))?;
        }
        bindings.steps.insert(
            step.id.clone(),
            json!({"status": rec.status, "output": rec.output, "error": rec.error, "summary": rec.summary}),
        );
        let bad = matches!(rec.status.as_str(), "failed" | "declined" | "cancelled");
        hooks.after(step, &rec).await;
        records.push(rec);
        if records.last().is_some_and(|r| r.status == "cancelled") {
            stop = Some("interrupted");
        } else if records.last().is_some_and(|r| r.status == "stopped") {
            stop = Some("stopped");
        } else if bad && step.on_failure == OnFailure::Abort {
            stop = Some("aborted");
        }
        if stop.is_none() && interrupt.requested() {
            stop = Some("interrupted");
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *counts.entry(r.status.clone()).or_default() += 1;
    }
    let any_bad = records
        .iter()
        .any(|r| matches!(r.status.as_str(), "failed" | "declined" | "cancelled"));
    let status = match stop {
        Some("interrupted") => RunStatus::Interrupted,
        Some("stopped") => RunStatus::Stopped,
        Some(_) => RunStatus::Aborted,
        None if any_bad => RunStatus::CompletedWithFailures,
        None => RunStatus::Completed,
    };
    transcript.end(EndRecord {
        run_id: id.clone(),
        status: status.as_str().into(),
        ended_at: now(),
        duration_ms: u64::try_from(t_run.elapsed().as_millis()).unwrap_or(u64::MAX),
        counts: counts.clone(),
    })?;
    let report = RunReport {
        run_id: id,
        runbook: rb.name.clone(),
        status,
        dry_run: opts.dry_run,
        inputs: transcript.redactor().json(&Json::Object(inputs)),
        steps: records,
        transcript_markdown: transcript.markdown.display().to_string(),
        transcript_jsonl: transcript.jsonl.display().to_string(),
    };
    if human {
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let painted = match status {
            RunStatus::Completed => style.green(status.as_str()),
            RunStatus::CompletedWithFailures => style.yellow(status.as_str()),
            _ => style.red(status.as_str()),
        };
        printer.text(&format!(
            "\n{painted}: {}\ntranscript: {}\n            {}\n",
            counts.join(", "),
            report.transcript_markdown,
            report.transcript_jsonl
        ))?;
    }
    Ok(report)
}

async fn wait_second_interrupt(i: &Interrupt) {
    loop {
        // Registered before the count is read, so that a notification in between is not lost.
        let notified = i.now.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if i.count.load(Ordering::SeqCst) >= 2 {
            return;
        }
        notified.await;
    }
}

/// Stops a background task when the run is over, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    ctx: &Ctx,
    step: &super::model::Step,
    bindings: &Bindings,
    opts: &RunOptions,
    confirm: &dyn Confirm,
    printer: &Printer,
    redactor: &Redactor,
    view: &StepContext<'_>,
) -> Outcome {
    let shown = || {
        json!(
            step.action
                .shown_args()
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        )
    };
    if let Some(when) = &step.when {
        match when.eval_bool(bindings) {
            Ok(true) => {}
            Ok(false) => {
                return Outcome {
                    status: "skipped",
                    done: Some(Done {
                        output: Json::Null,
                        summary: format!("skipped: `{}` is false", when.source),
                    }),
                    error: None,
                    change: None,
                    details: Vec::new(),
                    arguments: shown(),
                };
            }
            Err(e) => return Outcome::failed(format!("`when`: {e}"), shown()),
        }
    }
    let mut resolver = Resolver::new(bindings);
    let call = match exec::resolve(&step.action, &mut resolver) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e, shown()),
    };
    let arguments = Json::Object(resolver.record.clone());
    let ok = |done: Done, arguments: Json| Outcome {
        status: "ok",
        done: Some(done),
        error: None,
        change: None,
        details: Vec::new(),
        arguments,
    };
    if step.action.effect() == Effect::ReadOnly
        && let Some(o) = decided(&view.decide(step, None, &[]), &arguments, None)
    {
        return o;
    }
    // The one place where the effect decides what happens.
    match (step.action.effect(), &call) {
        (Effect::ReadOnly, Call::Assert(a)) => match a.fail_if.0.eval_bool(bindings) {
            Ok(true) => Outcome {
                status: "failed",
                done: Some(Done {
                    output: json!({"failed": true, "message": a.message}),
                    summary: String::new(),
                }),
                error: Some(a.message.clone()),
                change: None,
                details: vec![format!("condition held: {}", a.fail_if.0.source)],
                arguments,
            },
            Ok(false) => ok(
                Done::of(
                    "assert",
                    &json!({"failed": false, "message": a.message}),
                    format!("condition does not hold: {}", a.fail_if.0.source),
                ),
                arguments,
            ),
            Err(e) => Outcome::failed(e, arguments),
        },
        (Effect::ReadOnly, _) => match exec::read(ctx, &call).await {
            Ok(done) => ok(done, arguments),
            Err(e) => Outcome::failed(e, arguments),
        },
        (Effect::Manual, Call::Manual(m)) => {
            let text = redactor.text(&m.instructions);
            if !printer.is_machine() {
                let indented: String = text.lines().map(|l| format!("    {l}\n")).collect();
                let _ = printer.text(&format!("  to do by hand:\n{indented}"));
            }
            if opts.dry_run {
                return Outcome {
                    status: "dry-run",
                    done: Some(Done {
                        output: json!({"acknowledged": false}),
                        summary: "dry run: would ask for an acknowledgement".into(),
                    }),
                    error: None,
                    change: Some(format!("by hand: {}", step.title)),
                    details: Vec::new(),
                    arguments,
                };
            }
            let decision = view.decide(step, None, &[]);
            if let Some(o) = decided(&decision, &arguments, None) {
                return o;
            }
            let answer = if matches!(decision, Ok(Decision::Go)) {
                Ok(true)
            } else {
                ask(confirm, &format!("Done by hand: {}?", step.title)).await
            };
            match answer {
                Ok(true) => ok(
                    Done::of("manual", &json!({"acknowledged": true}), "acknowledged"),
                    arguments,
                ),
                Ok(false) => Outcome {
                    status: "declined",
                    done: Some(Done {
                        output: json!({"acknowledged": false}),
                        summary: "not acknowledged".into(),
                    }),
                    error: Some("the manual step was not acknowledged".into()),
                    change: None,
                    details: Vec::new(),
                    arguments,
                },
                Err(e) => Outcome::failed(exec::err_line(&e), arguments),
            }
        }
        (Effect::Mutating, _) => {
            let plan = match exec::plan(ctx, &call).await {
                Ok(p) => p,
                Err(e) => return Outcome::failed(e, arguments),
            };
            let change = Some(plan.change.clone());
            let details = plan.details.clone();
            if plan.noop {
                return Outcome {
                    status: "ok",
                    done: Some(Done {
                        output: plan.planned_output.clone(),
                        summary: format!("nothing to change ({})", plan.change),
                    }),
                    error: None,
                    change,
                    details,
                    arguments,
                };
            }
            if opts.dry_run {
                return Outcome {
                    status: "dry-run",
                    done: Some(Done {
                        output: plan.planned_output.clone(),
                        summary: "dry run: nothing changed".into(),
                    }),
                    error: None,
                    change,
                    details,
                    arguments,
                };
            }
            let shown_change = redactor.text(&plan.change);
            let decision = view.decide(step, Some(&shown_change), &details);
            if let Some(o) = decided(&decision, &arguments, Some(&plan.change)) {
                return o;
            }
            let prompt = redactor.text(&format!("{}: {}?", step.title, plan.change));
            let answer = if matches!(decision, Ok(Decision::Go)) {
                Ok(true)
            } else {
                ask(confirm, &prompt).await
            };
            match answer {
                Ok(true) => match exec::apply(ctx, plan).await {
                    Ok(done) => Outcome {
                        status: "ok",
                        done: Some(done),
                        error: None,
                        change,
                        details,
                        arguments,
                    },
                    Err(e) => Outcome {
                        status: "failed",
                        done: None,
                        error: Some(e),
                        change,
                        details,
                        arguments,
                    },
                },
                Ok(false) => Outcome {
                    status: "declined",
                    done: Some(Done {
                        output: plan.planned_output.clone(),
                        summary: "declined at the prompt: nothing was changed".into(),
                    }),
                    error: Some("declined".into()),
                    change,
                    details,
                    arguments,
                },
                Err(e) => Outcome {
                    status: "failed",
                    done: None,
                    error: Some(format!(
                        "refused to change anything without a confirmation: {}",
                        exec::err_line(&e)
                    )),
                    change,
                    details,
                    arguments,
                },
            }
        }
        (effect, _) => Outcome::failed(
            format!(
                "internal error: {} is {}",
                step.action.name(),
                effect.as_str()
            ),
            arguments,
        ),
    }
}

/// The record of a step that did not act now (not run, or replayed), stamped now.
fn instant_record(
    index: usize,
    step: &Step,
    status: &str,
    summary: String,
    output: Json,
) -> StepRecord {
    let at = now();
    StepRecord {
        index,
        id: step.id.clone(),
        title: step.title.clone(),
        action: step.action.name().into(),
        effect: step.action.effect().as_str().into(),
        status: status.into(),
        when: step.when.as_ref().map(|w| w.source.clone()),
        arguments: json!(
            step.action
                .shown_args()
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        ),
        change: None,
        details: Vec::new(),
        summary,
        error: None,
        output,
        started_at: at.clone(),
        ended_at: at,
        duration_ms: 0,
    }
}

/// Where a step stands in its run, and who decides about it.
struct StepContext<'a> {
    index: usize,
    total: usize,
    hooks: &'a dyn StepHooks,
}

impl StepContext<'_> {
    /// Asks the hooks (on a blocking thread: a guide may prompt).
    fn decide(&self, step: &Step, change: Option<&str>, details: &[String]) -> Result<Decision> {
        let view = StepView {
            step,
            index: self.index,
            total: self.total,
            effect: step.action.effect(),
            change,
            details,
        };
        tokio::task::block_in_place(|| self.hooks.decide(&view))
    }
}

/// What a decision other than go means for the step, if anything.
fn decided(decision: &Result<Decision>, arguments: &Json, change: Option<&str>) -> Option<Outcome> {
    let of = |status: &'static str, summary: String, error: Option<String>| Outcome {
        status,
        done: Some(Done {
            output: Json::Null,
            summary,
        }),
        error,
        change: change.map(str::to_string),
        details: Vec::new(),
        arguments: arguments.clone(),
    };
    match decision {
        Ok(Decision::Default | Decision::Go) => None,
        Ok(Decision::Skip(why)) => Some(of(
            "skipped",
            format!(
                "skipped by the operator{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ),
            None,
        )),
        Ok(Decision::Stop) => Some(of("stopped", "stopped by the operator".into(), None)),
        Err(Error::Interrupted) => Some(of(
            "not-run",
            "not run: interrupted at the prompt".into(),
            None,
        )),
        Err(e) => Some(of("failed", String::new(), Some(exec::err_line(e)))),
    }
}

/// Asks on a blocking thread (dialoguer and the answers file block).
async fn ask(confirm: &dyn Confirm, prompt: &str) -> Result<bool> {
    tokio::task::block_in_place(|| confirm.confirm(prompt))
}
