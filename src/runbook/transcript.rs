//! Transcripts: every run writes `<runs dir>/<run id>.jsonl` (one JSON record per line, written
//! as the run goes: `start`, one `step` per step, `end`) and `<run id>.md` (the same for people,
//! rewritten after every step). Everything written passes through the [`Redactor`] first, so no
//! secret of the namespace reaches a transcript, the terminal or an error. Both files are 0600,
//! in a directory made 0700: they hold the same evidence as an incident.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
pub use crate::redact::{MASK, Redactor};

/// A step as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub id: String,
    pub title: String,
    pub action: String,
    pub effect: String,
    /// ok, failed, skipped, dry-run, declined, not-run, cancelled.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub arguments: Json,
    /// What a mutating step changes (or would change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub output: Json,
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
}

/// The start of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRecord {
    pub run_id: String,
    pub runbook: String,
    pub title: String,
    pub source: String,
    pub started_at: String,
    pub context: Option<String>,
    pub server: String,
    pub namespace: String,
    pub inputs: Json,
    pub dry_run: bool,
    /// How mutating steps were confirmed: prompt, --yes, scripted, refused (no terminal).
    pub confirmations: String,
    pub version: String,
}

/// The end of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndRecord {
    pub run_id: String,
    /// completed, completed-with-failures, aborted, interrupted.
    pub status: String,
    pub ended_at: String,
    pub duration_ms: u64,
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// The files of one run, written as it goes.
pub struct Transcript {
    pub jsonl: PathBuf,
    pub markdown: PathBuf,
    redactor: Redactor,
    start: StartRecord,
    steps: Vec<StepRecord>,
    end: Option<EndRecord>,
}

/// Now, to the millisecond, as RFC 3339.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// The default runs directory: `$XDG_STATE_HOME/newapi-ops/runs` (`~/.local/state/...`).
pub fn default_runs_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("newapi-ops")
        .join("runs")
}

impl Transcript {
    /// Creates the files and writes the start record.
    pub fn create(dir: &Path, start: StartRecord, redactor: Redactor) -> Result<Transcript> {
        create_private_dir(dir)?;
        let start = StartRecord {
            inputs: redactor.json(&start.inputs),
            ..start
        };
        let t = Transcript {
            jsonl: dir.join(format!("{}.jsonl", start.run_id)),
            markdown: dir.join(format!("{}.md", start.run_id)),
            redactor,
            start,
            steps: Vec::new(),
            end: None,
        };
        let mut rec = serde_json::to_value(&t.start).unwrap_or(Json::Null);
        rec["type"] = json!("start");
        t.append(&rec)?;
        t.write_markdown()?;
        Ok(t)
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn append(&self, rec: &Json) -> Result<()> {
        let line = serde_json::to_string(&self.redactor.json(rec))
            .map_err(|e| Error::Internal(format!("serializing a transcript record: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&self.jsonl)
            .map_err(|e| Error::io(format!("writing {}", self.jsonl.display()), e))?;
        writeln!(f, "{line}")
            .and_then(|()| f.flush())
            .map_err(|e| Error::io(format!("writing {}", self.jsonl.display()), e))
    }

    /// Records a step (redacted) and rewrites the markdown.
    pub fn step(&mut self, rec: StepRecord) -> Result<StepRecord> {
        let redacted: StepRecord = serde_json::from_value(
            self.redactor
                .json(&serde_json::to_value(&rec).unwrap_or(Json::Null)),
        )
        .unwrap_or(rec);
        let mut v = serde_json::to_value(&redacted).unwrap_or(Json::Null);
        v["type"] = json!("step");
        self.append(&v)?;
        self.steps.push(redacted.clone());
        self.write_markdown()?;
        Ok(redacted)
    }

    /// Records the end of the run.
    pub fn end(&mut self, rec: EndRecord) -> Result<()> {
        let mut v = serde_json::to_value(&rec).unwrap_or(Json::Null);
        v["type"] = json!("end");
        self.append(&v)?;
        self.end = Some(rec);
        self.write_markdown()
    }

    fn write_markdown(&self) -> Result<()> {
        let text = self.redactor.text(&render_markdown(
            &self.start,
            &self.steps,
            self.end.as_ref(),
        ));
        write_private(&self.markdown, text.as_bytes())
    }
}

/// The mode of every transcript file.
pub const FILE_MODE: u32 = 0o600;
/// The mode of the runs directory (and of the parents it creates).
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (parents too, 0700) and makes it 0700 if it existed.
fn create_private_dir(dir: &Path) -> Result<()> {
    let context = || format!("creating the runs directory {}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io(context(), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| Error::io(context(), e))
}

/// Replaces `path` with `bytes`, atomically, mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("md.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing {}", path.display()), e)
    })
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The markdown transcript.
pub fn render_markdown(
    start: &StartRecord,
    steps: &[StepRecord],
    end: Option<&EndRecord>,
) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "# Runbook run: {} — {}\n\n",
        start.runbook, start.title
    ));
    o.push_str(&format!("- Run: `{}`\n", start.run_id));
    o.push_str(&format!(
        "- Runbook: {} ({})\n",
        start.runbook, start.source
    ));
    o.push_str(&format!("- Started: {}\n", start.started_at));
    match end {
        Some(e) => {
            o.push_str(&format!("- Ended: {} ({} ms)\n", e.ended_at, e.duration_ms));
            let counts: Vec<String> = e.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            o.push_str(&format!(
                "- Status: **{}** ({})\n",
                e.status,
                counts.join(", ")
            ));
        }
        None => o.push_str("- Status: running (or stopped without an end record)\n"),
    }
    o.push_str(&format!(
        "- Cluster: context `{}`, server {}, namespace `{}`\n",
        start.context.as_deref().unwrap_or("in-cluster"),
        start.server,
        start.namespace
    ));
    o.push_str(&format!(
        "- Mode: {}; confirmations: {}; newapi-ops {}\n\n",
        if start.dry_run {
            "dry run (mutating steps only described)"
        } else {
            "for real"
        },
        start.confirmations,
        start.version
    ));
    o.push_str("## Inputs\n\n");
    match start.inputs.as_object() {
        Some(m) if !m.is_empty() => {
            o.push_str("| input | value |\n|---|---|\n");
            for (k, v) in m {
                o.push_str(&format!("| {k} | `{}` |\n", md_escape(&v.to_string())));
            }
        }
        _ => o.push_str("(none)\n"),
    }
    o.push_str("\n## Steps\n");
    for s in steps {
        o.push_str(&format!(
            "\n### {}. `{}` — {}\n\n- Action: `{}` ({})\n- Status: **{}** in {} ms ({} → {})\n",
            s.index,
            s.id,
            s.title,
            s.action,
            s.effect,
            s.status,
            s.duration_ms,
            s.started_at,
            s.ended_at
        ));
        if let Some(w) = &s.when {
            o.push_str(&format!("- When: `{w}`\n"));
        }
        if let Some(args) = s.arguments.as_object().filter(|m| !m.is_empty()) {
            let shown: Vec<String> = args
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        match v {
                            Json::String(s) => s.clone(),
                            v => v.to_string(),
                        }
                    )
                })
                .collect();
            o.push_str(&format!(
                "- Arguments: `{}`\n",
                md_escape(&shown.join(", "))
            ));
        }
        if let Some(c) = &s.change {
            o.push_str(&format!("- Change: {c}\n"));
        }
        for d in &s.details {
            o.push_str(&format!("  - {d}\n"));
        }
        if !s.summary.is_empty() {
            o.push_str(&format!("- Result: {}\n", s.summary));
        }
        if let Some(e) = &s.error {
            o.push_str(&format!("- Error: {e}\n"));
        }
        if !s.output.is_null() {
            let mut text = serde_json::to_string_pretty(&s.output).unwrap_or_default();
            if text.len() > 4000 {
                let cut = (0..=4000)
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.truncate(cut);
                text.push_str("\n... (cut; the .jsonl transcript has it all)");
            }
            o.push_str(&format!(
                "\n<details><summary>output</summary>\n\n```json\n{text}\n```\n</details>\n"
            ));
        }
    }
    o
}

/// One past run, as `runbook history` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct PastRun {
    pub run_id: String,
    pub runbook: String,
    pub started_at: String,
    pub status: String,
    pub dry_run: bool,
    pub steps: usize,
    pub duration_ms: Option<u64>,
    pub context: Option<String>,
    pub jsonl: PathBuf,
    pub markdown: PathBuf,
}

/// The runs recorded in `dir`, newest first.
pub fn history(dir: &Path) -> Result<Vec<PastRun>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let recs: Vec<Json> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let Some(start) = recs
            .iter()
            .find(|r| r["type"] == "start")
            .and_then(|r| serde_json::from_value::<StartRecord>(r.clone()).ok())
        else {
            continue;
        };
        let end = recs
            .iter()
            .find(|r| r["type"] == "end")
            .and_then(|r| serde_json::from_value::<EndRecord>(r.clone()).ok());
        runs.push(PastRun {
            run_id: start.run_id.clone(),
            runbook: start.runbook.clone(),
            started_at: start.started_at.clone(),
            status: end
                .as_ref()
                .map_or_else(|| "unfinished".into(), |e| e.status.clone()),
            dry_run: start.dry_run,
            steps: recs.iter().filter(|r| r["type"] == "step").count(),
            duration_ms: end.map(|e| e.duration_ms),
            context: start.context,
            markdown: path.with_extension("md"),
            jsonl: path,
        });
    }
    runs.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then(b.run_id.cmp(&a.run_id))
    });
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn start(id: &str) -> StartRecord {
        StartRecord {
            run_id: id.into(),
            runbook: "t".into(),
            title: "T".into(),
            source: "test".into(),
            started_at: now(),
            context: None,
            server: "https://127.0.0.1:6443".into(),
            namespace: "new-api".into(),
            inputs: json!({"pod": "new-api-slave-x", "dsn": "root:pw@tcp(mysql:3306)/x"}),
            dry_run: true,
            confirmations: "--yes".into(),
            version: "0".into(),
        }
    }

    #[test]
    fn transcripts_are_private_whatever_the_umask_and_the_directory() {
        let root = tempfile::tempdir().unwrap();
        // An existing, world-readable directory is restricted; new parents are created 0700.
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut t = Transcript::create(&open, start("run-1"), Redactor::new()).unwrap();
        t.end(EndRecord {
            run_id: "run-1".into(),
            status: "completed".into(),
            ended_at: now(),
            duration_ms: 1,
            counts: Default::default(),
        })
        .unwrap();
        assert_eq!(mode(&open), 0o700);
        assert_eq!(mode(&t.jsonl), 0o600);
        assert_eq!(mode(&t.markdown), 0o600);
        let nested = root.path().join("a").join("b");
        let t = Transcript::create(&nested, start("run-2"), Redactor::new()).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&t.markdown), 0o600);
        // Secrets in the inputs are masked in both files.
        for p in [&t.jsonl, &t.markdown] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text.contains("root:***@tcp(") && !text.contains("pw@"),
                "{text}"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(&nested)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
