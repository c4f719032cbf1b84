//! Asking "are you sure?" before changing something, behind a small trait so that commands and
//! the runbook engine can be tested with scripted answers.
//!
//! [`from_flags`] picks the implementation: `--yes` answers yes without asking; otherwise a
//! terminal prompt (dialoguer, on stderr) when stdin and stderr are terminals; otherwise nothing
//! can be asked, and [`Confirm::confirm`] fails with [`Error::ConfirmationRequired`] (exit 64) so
//! that a script never changes a cluster by accident.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Something that can answer a yes/no question.
pub trait Confirm: Send + Sync {
    /// Asks `prompt` (one line, a question); `Ok(true)` means go ahead.
    fn confirm(&self, prompt: &str) -> Result<bool>;
}

/// `--yes`: every question is answered yes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumeYes;

impl Confirm for AssumeYes {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        tracing::info!("{prompt} yes (--yes)");
        Ok(true)
    }
}

/// A prompt on the terminal (stderr); the default answer is no.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

impl Confirm for Terminal {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        let term = dialoguer::console::Term::stderr();
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .wait_for_newline(true)
            .interact_on_opt(&term)
            .map(|answer| answer.unwrap_or(false))
            .map_err(|dialoguer::Error::IO(e)| {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    Error::Interrupted
                } else {
                    Error::io("asking for confirmation on the terminal", e)
                }
            })
    }
}

/// No terminal and no `--yes`: refuse, naming the question that could not be asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTerminal;

impl Confirm for NoTerminal {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        Err(Error::ConfirmationRequired {
            prompt: prompt.to_string(),
        })
    }
}

/// Answers from a list, in order, recording the questions (for tests). Running out of answers
/// is an error, as a missing terminal would be.
#[derive(Debug, Default)]
pub struct Scripted {
    answers: Mutex<VecDeque<bool>>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    pub fn new(answers: impl IntoIterator<Item = bool>) -> Scripted {
        Scripted {
            answers: Mutex::new(answers.into_iter().collect()),
            asked: Mutex::new(Vec::new()),
        }
    }

    /// The questions asked so far.
    pub fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Confirm for Scripted {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(prompt.to_string());
        self.answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
            .ok_or_else(|| Error::ConfirmationRequired {
                prompt: prompt.to_string(),
            })
    }
}

/// The confirmation a command should use: `--yes`, else a terminal prompt when stdin and stderr
/// are terminals, else a refusal.
pub fn from_flags(yes: bool) -> Box<dyn Confirm> {
    use std::io::IsTerminal;
    if yes {
        Box::new(AssumeYes)
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        Box::new(Terminal)
    } else {
        Box::new(NoTerminal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_answers_in_order_then_refuses() {
        let c = Scripted::new([true, false]);
        assert!(c.confirm("first?").unwrap());
        assert!(!c.confirm("second?").unwrap());
        let err = c.confirm("third?").unwrap_err();
        assert!(matches!(err, Error::ConfirmationRequired { .. }));
        assert_eq!(c.asked(), ["first?", "second?", "third?"]);
    }

    #[test]
    fn without_a_terminal_the_refusal_names_the_question_and_the_way_out() {
        let err = NoTerminal
            .confirm("Scale new-api-slave from 3 to 5?")
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(err.to_string().contains("Scale new-api-slave from 3 to 5?"));
        assert!(err.hint().unwrap().contains("--yes"));
    }

    #[test]
    fn yes_means_yes() {
        assert!(AssumeYes.confirm("anything?").unwrap());
        assert!(from_flags(true).confirm("anything?").unwrap());
    }
}
