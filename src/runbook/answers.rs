//! Scripted answers for tests and rehearsals: `runbook run --answers FILE` (hidden) answers each
//! confirmation with the next line of FILE (`yes`/`y` or `no`/`n`; `#` comments and blank lines
//! skipped), read one line at a time when the question comes — FILE may be a FIFO that a test
//! writes to. Running out of lines refuses, as a missing terminal does. Each question and its
//! scripted answer are echoed on stderr, through the printer (so masked like everything else).
//! [`AnswerLines`] is the reader, shared with `incident --answers`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::confirm::Confirm;
use crate::error::{Error, Result};
use crate::printer::Printer;

/// The meaningful lines of an answers file, read one at a time as questions come.
pub struct AnswerLines {
    path: PathBuf,
    reader: Mutex<Option<(BufReader<std::fs::File>, usize)>>,
}

impl AnswerLines {
    pub fn new(path: PathBuf) -> AnswerLines {
        AnswerLines {
            path,
            reader: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next line that is neither blank nor a `#` comment, trimmed, with its line number;
    /// None at the end of the file.
    pub fn next_line(&self) -> Result<Option<(String, usize)>> {
        let mut guard = self
            .reader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            // Opened at the first question: a FIFO's writer is then known to be waiting for it.
            let f = std::fs::File::open(&self.path).map_err(|e| {
                Error::io(
                    format!("opening the answers file {}", self.path.display()),
                    e,
                )
            })?;
            *guard = Some((BufReader::new(f), 0));
        }
        let Some((reader, number)) = guard.as_mut() else {
            return Err(Error::Internal("answers file not open".into()));
        };
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).map_err(|e| {
                Error::io(
                    format!("reading the answers file {}", self.path.display()),
                    e,
                )
            })?;
            if n == 0 {
                return Ok(None);
            }
            *number += 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            return Ok(Some((line.to_string(), *number)));
        }
    }
}

/// Confirmations answered from a file, echoed through `printer`.
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
}

impl Confirm for AnswersFile {
    fn confirm(&self, prompt: &str) -> Result<bool> {
        let Some((line, _)) = self.lines.next_line()? else {
            return Err(Error::ConfirmationRequired {
                prompt: prompt.to_string(),
            });
        };
        let yes = match line.to_ascii_lowercase().as_str() {
            "y" | "yes" => true,
            "n" | "no" => false,
            other => {
                return Err(Error::Usage(format!(
                    "answers file {}: `{other}` is not yes or no",
                    self.lines.path().display()
                )));
            }
        };
        self.printer.echo(&format!(
            "? {prompt} {} (scripted)",
            if yes { "yes" } else { "no" }
        ));
        Ok(yes)
    }
}
