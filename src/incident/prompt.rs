//! The questions an incident asks, behind a small trait: on a terminal they are dialoguer
//! prompts on stderr; with `--answers FILE` each is answered by the next line of FILE (read when
//! the question comes, so FILE may be a FIFO a test writes to); without either nothing can be
//! asked and the incident refuses before it starts.
//!
//! Answers file lines: `#` comments and blank lines are skipped. A choice is answered by its key
//! (`restarting`, `oomkilled`, `run`, ...), its 1-based number, or the start of its label; a
//! multiple choice by such answers separated by commas (`none` for no item); a text by the line
//! itself (`-` for the default shown).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::printer::Printer;
use crate::runbook::answers::AnswerLines;

/// One item of a choice: a stable key (for answers files and the saved state) and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub key: String,
    pub label: String,
}

impl Choice {
    pub fn new(key: impl Into<String>, label: impl Into<String>) -> Choice {
        Choice {
            key: key.into(),
            label: label.into(),
        }
    }
}

/// Something that can ask the operator.
pub trait Prompter: Send + Sync {
    /// One of `items`; returns its index.
    fn select(&self, prompt: &str, items: &[Choice], default: usize) -> Result<usize>;
    /// Any of `items` (possibly none); returns their indexes in order.
    fn multi_select(&self, prompt: &str, items: &[Choice]) -> Result<Vec<usize>>;
    /// A line of text; `default` when the operator just presses Enter.
    fn input(&self, prompt: &str, default: &str) -> Result<String>;
    /// The incident stopped while a question was still waiting: undo what asking did to the
    /// terminal (raw mode, a hidden cursor). Nothing for an answers file.
    fn abandon(&self) {}
}

/// The prompter for `answers` (a file of answers), else the terminal; without either nothing
/// can be asked: [`Error::IncidentNeedsTerminal`].
pub fn open(answers: Option<PathBuf>, printer: &Printer) -> Result<Box<dyn Prompter>> {
    match answers {
        Some(path) => Ok(Box::new(AnswersFile::new(path, printer.clone()))),
        None => {
            use std::io::IsTerminal;
            if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
                return Err(Error::IncidentNeedsTerminal);
            }
            Ok(Box::new(Terminal {
                saved: nix::sys::termios::tcgetattr(std::io::stdin())
                    .ok()
                    .map(std::sync::Mutex::new),
            }))
        }
    }
}

/// Dialoguer prompts on the terminal (stderr).
#[derive(Debug, Default)]
pub struct Terminal {
    /// The terminal's settings before any question, put back by [`Prompter::abandon`].
    saved: Option<std::sync::Mutex<nix::sys::termios::Termios>>,
}

fn term_err(e: dialoguer::Error) -> Error {
    let dialoguer::Error::IO(e) = e;
    if e.kind() == std::io::ErrorKind::Interrupted {
        Error::Interrupted
    } else {
        Error::io("asking on the terminal", e)
    }
}

impl Prompter for Terminal {
    fn abandon(&self) {
        if let Some(saved) = self.saved.as_ref().and_then(|m| m.lock().ok()) {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
        let _ = dialoguer::console::Term::stderr().show_cursor();
    }

    fn select(&self, prompt: &str, items: &[Choice], default: usize) -> Result<usize> {
        let term = dialoguer::console::Term::stderr();
        let labels: Vec<&str> = items.iter().map(|c| c.label.as_str()).collect();
        let r = dialoguer::Select::new()
            .with_prompt(prompt)
            .items(&labels)
            .default(default.min(items.len().saturating_sub(1)))
            .interact_on(&term)
            .map_err(term_err);
        if r.is_err() {
            let _ = term.show_cursor();
        }
        r
    }

    fn multi_select(&self, prompt: &str, items: &[Choice]) -> Result<Vec<usize>> {
        let term = dialoguer::console::Term::stderr();
        let labels: Vec<&str> = items.iter().map(|c| c.label.as_str()).collect();
        let r = dialoguer::MultiSelect::new()
            .with_prompt(format!("{prompt} (space to choose, enter to go on)"))
            .items(&labels)
            .interact_on(&term)
            .map_err(term_err);
        if r.is_err() {
            let _ = term.show_cursor();
        }
        r
    }

    fn input(&self, prompt: &str, default: &str) -> Result<String> {
        let term = dialoguer::console::Term::stderr();
        let mut input = dialoguer::Input::<String>::new()
            .with_prompt(prompt)
            .allow_empty(true);
        if !default.is_empty() {
            input = input.default(default.to_string());
        }
        input.interact_text_on(&term).map_err(term_err)
    }
}

/// Answers from a file, one line per question, each echoed through `printer` (masked: an
/// answer may be a note that quotes a secret).
pub struct AnswersFile {
    lines: AnswerLines,
    printer: Printer,
}

impl AnswersFile {
    pub fn new(path: PathBuf, printer: Printer) -> AnswersFile {
        AnswersFile {
            lines: AnswerLines::new(path),
            printer,
        }
    }

    fn echo(&self, prompt: &str, answer: &str) {
        self.printer
            .echo(&format!("? {prompt} {answer} (scripted)"));
    }

    fn answer(&self, prompt: &str) -> Result<(String, usize)> {
        self.lines.next_line()?.ok_or_else(|| {
            Error::Usage(format!(
                "the answers file {} ended before the question `{prompt}`",
                self.lines.path().display()
            ))
        })
    }

    fn bad(&self, line: usize, answer: &str, prompt: &str, items: &[Choice]) -> Error {
        let keys: Vec<&str> = items.iter().map(|c| c.key.as_str()).collect();
        Error::Usage(format!(
            "answers file {}:{line}: `{answer}` answers none of the choices of `{prompt}` (one of: {})",
            self.lines.path().display(),
            keys.join(", ")
        ))
    }
}

/// The item an answer names: its key, its 1-based number, or the start of its label.
pub fn pick(answer: &str, items: &[Choice]) -> Option<usize> {
    let a = answer.trim().to_lowercase();
    if a.is_empty() {
        return None;
    }
    if let Some(i) = items.iter().position(|c| c.key.to_lowercase() == a) {
        return Some(i);
    }
    if let Ok(n) = a.parse::<usize>() {
        return (1..=items.len()).contains(&n).then(|| n - 1);
    }
    let starts: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].label.to_lowercase().starts_with(&a))
        .collect();
    (starts.len() == 1).then(|| starts[0])
}

impl Prompter for AnswersFile {
    fn select(&self, prompt: &str, items: &[Choice], _default: usize) -> Result<usize> {
        let (answer, line) = self.answer(prompt)?;
        let i = pick(&answer, items).ok_or_else(|| self.bad(line, &answer, prompt, items))?;
        self.echo(prompt, &items[i].label);
        Ok(i)
    }

    fn multi_select(&self, prompt: &str, items: &[Choice]) -> Result<Vec<usize>> {
        let (answer, line) = self.answer(prompt)?;
        let mut out = Vec::new();
        if answer.trim().to_lowercase() != "none" {
            for part in answer.split(',').filter(|p| !p.trim().is_empty()) {
                let i = pick(part, items).ok_or_else(|| self.bad(line, part, prompt, items))?;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        let labels: Vec<&str> = out.iter().map(|&i| items[i].label.as_str()).collect();
        self.echo(prompt, &labels.join(", "));
        Ok(out)
    }

    fn input(&self, prompt: &str, default: &str) -> Result<String> {
        let (answer, _) = self.answer(prompt)?;
        let value = if answer == "-" {
            default.to_string()
        } else {
            answer
        };
        self.echo(prompt, &value);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Choice> {
        vec![
            Choice::new("run", "Run this step"),
            Choice::new("skip", "Skip it"),
            Choice::new("note", "Add a note first"),
            Choice::new("stop", "Stop the runbook here"),
        ]
    }

    #[test]
    fn an_answer_names_a_choice_by_key_number_or_label_start() {
        let it = items();
        assert_eq!(pick("skip", &it), Some(1));
        assert_eq!(pick("SKIP", &it), Some(1));
        assert_eq!(pick("3", &it), Some(2));
        assert_eq!(pick("Stop the", &it), Some(3));
        assert_eq!(pick("0", &it), None);
        assert_eq!(pick("9", &it), None);
        assert_eq!(pick("s", &it), None, "ambiguous: Skip and Stop");
        assert_eq!(pick("", &it), None);
    }

    #[test]
    fn the_answers_file_is_read_a_line_per_question_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("answers");
        std::fs::write(
            &path,
            "# symptoms\nrestarting, database\n\nnote\nthe pager went off\n-\nbogus\n",
        )
        .unwrap();
        let a = AnswersFile::new(
            path,
            Printer::new(crate::printer::Format::Human, true, false),
        );
        let symptoms = vec![
            Choice::new("restarting", "Pods restarting"),
            Choice::new("5xx", "5xx errors"),
            Choice::new("database", "Database errors"),
        ];
        assert_eq!(a.multi_select("what?", &symptoms).unwrap(), vec![0, 2]);
        assert_eq!(a.select("step?", &items(), 0).unwrap(), 2);
        assert_eq!(a.input("note?", "").unwrap(), "the pager went off");
        assert_eq!(
            a.input("pod?", "new-api-slave-1").unwrap(),
            "new-api-slave-1"
        );
        let err = a.select("step?", &items(), 0).unwrap_err().to_string();
        assert!(
            err.contains(":7: `bogus`") && err.contains("run, skip, note, stop"),
            "{err}"
        );
        let err = a.select("again?", &items(), 0).unwrap_err().to_string();
        assert!(err.contains("ended before the question `again?`"), "{err}");
    }
}
