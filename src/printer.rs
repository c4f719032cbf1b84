//! The one printer: data goes to stdout as tables (human) or one JSON document (json); notes,
//! warnings and errors go to stderr. Nothing else in the crate prints.
//!
//! Everything it writes passes through its [`redact::Shared`] redactor first: text as text, and
//! JSON and YAML documents value by value (every string and map key masked before it is
//! serialized, so the document stays valid). A command teaches the redactor the deployment's
//! secrets once it has read them (`crate::secrets::learn`); the password-bearing patterns apply
//! from the start.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::redact::{self, Redacted};

/// What the printer writes: tables and text for people, or one document for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tables and text for people.
    Human,
    /// One JSON document on stdout.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Colours for human output; all no-ops when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Chosen once from the global flags and handed to every command. Clones share the redactor.
#[derive(Debug, Clone)]
pub struct Printer {
    pub format: Format,
    pub style: Style,
    pub quiet: bool,
    redactor: redact::Shared,
}

impl Printer {
    /// `no_color` is the flag; colour is also off for NO_COLOR, TERM=dumb and non-TTY stdout.
    pub fn new(format: Format, no_color: bool, quiet: bool) -> Self {
        use std::io::IsTerminal;
        let color = !no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
            && std::io::stdout().is_terminal();
        Printer {
            format,
            style: Style { color },
            quiet,
            redactor: redact::Shared::new(),
        }
    }

    /// The redactor everything printed passes through; teach it the deployment's secrets.
    pub fn redactor(&self) -> &redact::Shared {
        &self.redactor
    }

    /// Where the tool's log events (`tracing`, `-v`) go: stderr, masked as everything else.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter(self.redactor.clone())
    }

    fn masked(&self, text: &str) -> String {
        self.redactor.text(text)
    }

    /// Output for tools (JSON or YAML) rather than for people: progress, notes and tables stay
    /// off stdout.
    pub fn is_machine(&self) -> bool {
        self.format != Format::Human
    }

    /// Prints a result: `human` renders it for people; JSON and YAML output serialize `value`.
    pub fn data<T: Serialize>(&self, value: &T, human: impl FnOnce(Style) -> String) -> Result<()> {
        let text = match self.format {
            Format::Json => {
                let r = self.redactor.read();
                let mut s = serde_json::to_string_pretty(&Redacted::new(value, &r))
                    .map_err(|e| Error::Internal(format!("serializing output: {e}")))?;
                s.push('\n');
                s
            }
            Format::Yaml => to_yaml(&Redacted::new(value, &self.redactor.read()))?,
            Format::Human => self.masked(&human(self.style)),
        };
        write_stdout(&text)
    }

    /// Prints one record of a stream (`logs --follow`): a line of JSON, or a YAML document.
    pub fn record<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(Style) -> String,
    ) -> Result<()> {
        let text = match self.format {
            Format::Json => {
                let r = self.redactor.read();
                let mut s = serde_json::to_string(&Redacted::new(value, &r))
                    .map_err(|e| Error::Internal(format!("serializing output: {e}")))?;
                s.push('\n');
                s
            }
            Format::Yaml => format!(
                "---\n{}",
                to_yaml(&Redacted::new(value, &self.redactor.read()))?
            ),
            Format::Human => self.masked(&human(self.style)),
        };
        write_stdout(&text)
    }

    /// Prints plain text to stdout (human mode only).
    pub fn text(&self, text: &str) -> Result<()> {
        write_stdout(&self.masked(text))
    }

    /// A progress note on stderr, silenced by `-q`.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{}", self.masked(msg));
        }
    }

    /// A line on stderr that `-q` does not silence (the echo of a scripted answer).
    pub fn echo(&self, msg: &str) {
        eprintln!("{}", self.masked(msg));
    }

    /// A warning on stderr; shown even with `-q`.
    pub fn warn(&self, msg: &str) {
        eprintln!("{} {}", self.style.yellow("warning:"), self.masked(msg));
    }

    /// Prints an error with its hint, the one way errors reach the user.
    pub fn error(&self, err: &Error) {
        let mut msg = format!("{} {err}", self.style.red("error:"));
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            let s_text = s.to_string();
            if !msg.contains(&s_text) {
                msg.push_str(&format!("\n  caused by: {s_text}"));
            }
            source = s.source();
        }
        if let Some(hint) = err.hint() {
            msg.push_str(&format!("\n  {} {hint}", self.style.bold("hint:")));
        }
        eprintln!("{}", self.masked(&msg));
    }

    /// A table in the house style.
    pub fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(header.iter().map(|h| self.style.bold(h)));
        t
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to stdout", e)),
    }
}

/// Renders a table with its left padding trimmed and a trailing newline.
pub fn render_table(t: &Table) -> String {
    let mut s: String = t
        .lines()
        .map(|l| {
            l.trim_end()
                .strip_prefix(' ')
                .unwrap_or(&l)
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

/// `value` as YAML, ending with a newline.
fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    let mut s = serde_saphyr::to_string(value)
        .map_err(|e| Error::Internal(format!("serializing output as YAML: {e}")))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// The writer of log events: one [`LogEvent`] per event, masked and written whole when the event
/// is complete (a secret split over two writes would otherwise escape the redactor).
#[derive(Debug, Clone)]
pub struct LogWriter(redact::Shared);

/// One log event being formatted.
pub struct LogEvent {
    buf: Vec<u8>,
    redactor: redact::Shared,
}

impl Write for LogEvent {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogEvent {
    /// The event as it is written: masked.
    fn masked(&self) -> String {
        self.redactor.text(&String::from_utf8_lossy(&self.buf))
    }
}

impl Drop for LogEvent {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(self.masked().as_bytes());
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogEvent;

    fn make_writer(&'a self) -> LogEvent {
        LogEvent {
            buf: Vec::new(),
            redactor: self.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tracing_subscriber::fmt::MakeWriter;

    use super::{Format, Printer};

    #[test]
    fn a_log_event_is_masked_whole_even_when_a_secret_spans_two_writes() {
        let printer = Printer::new(Format::Human, true, false);
        printer
            .redactor()
            .learn(["Hunter2-log-secret"], std::iter::empty());
        let writer = printer.log_writer();
        let mut event = writer.make_writer();
        event.write_all(b"DEBUG connecting with Hunter2-").unwrap();
        event
            .write_all(b"log-secret and mysql://root:pw0rd9@db/x\n")
            .unwrap();
        let out = event.masked();
        assert_eq!(out, "DEBUG connecting with *** and mysql://root:***@db/x\n");
        // A secret learned after the writer was made is masked too (the command learns the
        // deployment's secrets once it has connected; tracing was set up before).
        printer
            .redactor()
            .learn(["late-s3cret-value"], std::iter::empty());
        let mut event = writer.make_writer();
        event.write_all(b"token late-s3cret-value\n").unwrap();
        assert_eq!(event.masked(), "token ***\n");
    }
}
