//! Scripted answers for tests and rehearsals: `runbook run --answers FILE` (hidden) answers each
//! confirmation with the next line of FILE (`yes`/`y` or `no`/`n`; `#` comments and blank lines
//! skipped), read one line at a time when the question comes — FILE may be a FIFO that a test
//! writes to. Running out of lines refuses, as a missing terminal does. Each question and its
//! scripted answer are echoed on stderr.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::confirm::Confirm;
use crate::error::{Error, Result};

pub struct AnswersFile {
    path: PathBuf,
    reader: Mutex<Option<BufReader<std::fs::File>>>,
}

impl AnswersFile {
    pub fn new(path: PathBuf) -> AnswersFile {
        AnswersFile {
            path,
            reader: Mutex::new(None),
        }
    }
}

impl Confirm for AnswersFile {
    #[allow(clippy::print_stderr)]
    fn confirm(&self, prompt: &str) -> Result<bool> {
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
            *guard = Some(BufReader::new(f));
        }
        let Some(reader) = guard.as_mut() else {
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
                return Err(Error::ConfirmationRequired {
                    prompt: prompt.to_string(),
                });
            }
            let answer = line.trim().to_ascii_lowercase();
            let yes = match answer.as_str() {
                "" => continue,
                a if a.starts_with('#') => continue,
                "y" | "yes" => true,
                "n" | "no" => false,
                other => {
                    return Err(Error::Usage(format!(
                        "answers file {}: `{other}` is not yes or no",
                        self.path.display()
                    )));
                }
            };
            eprintln!("? {prompt} {} (scripted)", if yes { "yes" } else { "no" });
            return Ok(yes);
        }
    }
}
