//! The incident's hooks into the runbook engine: before each step a choice (run, skip, note,
//! stop; a change shown exactly first), after it a record and, for an applied change, a re-check
//! of the findings it was meant to fix.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Flow;
use crate::error::{Error, Result};
use crate::incident::FindingRef;
use crate::incident::prompt::Choice;
use crate::incident::state::{Action, StepDone};
use crate::runbook::catalogue::Effect;
use crate::runbook::engine::{Decision, Replay, StepHooks, StepView};
use crate::runbook::model::Step;
use crate::runbook::transcript::StepRecord;

/// The incident's hooks into the runbook engine: a choice before each step, a record and a
/// re-check after it.
pub(super) struct Guide<'f, 'p> {
    pub(super) flow: &'f Flow<'p>,
    pub(super) replays: HashMap<String, Replay>,
    pub(super) findings: Vec<FindingRef>,
    /// Why a question could not be asked, when that stopped the runbook.
    pub(super) failed: Mutex<Option<Error>>,
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
            let asked = (prompt.clone(), items.clone());
            let i = match flow.ask(move |p| p.select(&asked.0, &asked.1, 0)) {
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
