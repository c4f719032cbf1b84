//! The `--fix` run: audit, plan, show, dry-run every change on the server, ask, apply all or
//! roll back (also on Ctrl-C or SIGTERM while applying), record a transcript, audit again. Every applied (or refused, or declined) fix is
//! recorded with the runbook engine's transcript writer ([`crate::runbook::transcript`]): the
//! same redaction, files 0600 in a 0700 directory.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::fix::{self, ChangeStatus, Fix, FixReport, KubeApplier};
use super::{Options, Report, facts, judge, score};
use crate::config::Settings;
use crate::confirm::Confirm;
use crate::error::{Error, Result};
use crate::k8s::Kube;
use crate::printer::Printer;
use crate::runbook::transcript::{EndRecord, Redactor, StartRecord, StepRecord, Transcript, now};

/// What `--fix` does.
#[derive(Debug, Clone)]
pub enum FixMode {
    /// Audit only.
    Off,
    /// Print the manifests, change nothing.
    DryRun,
    /// Apply (after a server-side dry run and the confirmation); transcripts go to `runs_dir`.
    Apply {
        runs_dir: PathBuf,
        confirmations: String,
    },
}

/// Audits, and with `--fix` plans (and applies) the fixes; returns the report to print.
pub async fn run(
    kube: &Kube,
    settings: &Settings,
    opts: &Options,
    mode: &FixMode,
    confirm: &dyn Confirm,
    printer: &Printer,
) -> Result<Report> {
    let started_at = now();
    let t0 = Instant::now();
    let facts = facts::gather(kube, settings, opts).await?;
    let mut report = judge(&facts, kube.context.clone(), started_at, t0, &opts.fix);
    let (runs_dir, confirmations) = match mode {
        FixMode::Off => return Ok(report),
        FixMode::DryRun => {
            let plan = fix::plan(&facts, &report.rules, &opts.fix);
            report.fixes = Some(FixReport {
                mode: "dry-run",
                fixes: plan.fixes,
                skipped: plan.skipped,
                transcript: None,
            });
            return Ok(report);
        }
        FixMode::Apply {
            runs_dir,
            confirmations,
        } => (runs_dir, confirmations),
    };
    let plan = fix::plan(&facts, &report.rules, &opts.fix);
    let mut fixes = plan.fixes;
    if fixes.is_empty() {
        report.fixes = Some(FixReport {
            mode: "nothing-to-fix",
            fixes,
            skipped: plan.skipped,
            transcript: None,
        });
        return Ok(report);
    }
    let human = !printer.is_machine();
    if human {
        printer.text(&super::render::render(&report, printer.style))?;
        let yaml =
            fix::to_yaml(&fixes).map_err(|e| Error::Internal(format!("writing YAML: {e}")))?;
        printer.text(&format!("\n{}\n{yaml}", printer.style.bold("the fixes")))?;
    }
    let n = fixes.iter().map(|f| f.changes.len()).sum::<usize>();
    printer.note(&format!(
        "checking {} with a server-side dry run…",
        crate::units::plural(n, "change", "changes")
    ));
    let applier = KubeApplier {
        kube,
        namespace: settings.namespace.clone(),
    };
    let redactor: Redactor = crate::secrets::learn(printer.redactor(), kube, settings).await;
    let record = |fixes: &[Fix], status: &'static str| {
        write_transcript(
            runs_dir,
            kube,
            settings,
            confirmations,
            redactor.clone(),
            fixes,
            status,
        )
    };
    if let Err(e) = fix::dry_run_all(&applier, &mut fixes).await {
        let path = record(&fixes, "refused")?;
        printer.note(&format!("transcript: {}", path.display()));
        return Err(e.into());
    }
    let to_apply = fixes
        .iter()
        .flat_map(|f| &f.changes)
        .filter(|c| c.status == ChangeStatus::DryRunOk)
        .count();
    let prompt = format!(
        "Apply {} ({}) to namespace {}?",
        crate::units::plural(to_apply, "change", "changes"),
        fixes.iter().map(|f| f.id).collect::<Vec<_>>().join(", "),
        settings.namespace
    );
    let yes = to_apply == 0 || confirm.confirm(&prompt)?;
    if !yes {
        for c in fixes.iter_mut().flat_map(|f| f.changes.iter_mut()) {
            c.status = ChangeStatus::NotApplied;
        }
        let path = record(&fixes, "declined")?;
        report.fixes = Some(FixReport {
            mode: "declined",
            fixes,
            skipped: plan.skipped,
            transcript: Some(path.display().to_string()),
        });
        return Ok(report);
    }
    // While applying, Ctrl-C and SIGTERM are ours: what this run applied is rolled back and the
    // transcript written before the process ends with the signal's code.
    let path = {
        let mut handler = crate::signals::Handler::new();
        let mut stop = std::pin::pin!(handler.recv());
        let notify = |line: &str| printer.note(line);
        if let Err(e) = fix::apply_all(&applier, &mut fixes, stop.as_mut(), &notify).await {
            let status = match e {
                super::AuditError::Interrupted { .. } => "interrupted",
                _ => "rolled-back",
            };
            let path = record(&fixes, status)?;
            printer.note(&format!("transcript: {}", path.display()));
            return Err(e.into());
        }
        let path = record(&fixes, "applied")?;
        // A signal after the last change was applied, before the handler is given up: the
        // fixes stay (recorded as applied); the re-audit is not run.
        if let std::task::Poll::Ready(signal) = futures::poll!(stop.as_mut()) {
            printer.note(&format!(
                "applied; {signal} before the re-audit: stopping (transcript: {})",
                path.display()
            ));
            return Err(signal.into());
        }
        path
    };
    printer.note("applied; auditing again…");
    let before = score::Before {
        score: report.score,
        grade: report.grade,
        counts: report.counts,
    };
    let started_at = now();
    let t0 = Instant::now();
    let facts = facts::gather(kube, settings, opts).await?;
    let mut after = judge(&facts, kube.context.clone(), started_at, t0, &opts.fix);
    after.before = Some(before);
    after.fixes = Some(FixReport {
        mode: "applied",
        fixes,
        skipped: plan.skipped,
        transcript: Some(path.display().to_string()),
    });
    Ok(after)
}

/// A run id like the runbook engine's: `20261125T040918Z-audit-fix-1a2b3c`.
fn run_id() -> String {
    let t = jiff::Timestamp::now();
    let stamp = t.strftime("%Y%m%dT%H%M%SZ").to_string();
    let salt = (u64::from(t.subsec_nanosecond().unsigned_abs()) ^ u64::from(std::process::id()))
        % 0x100_0000;
    format!("{stamp}-audit-fix-{salt:06x}")
}

/// The runs directory (0700) and the transcript's two files (0600), created before the writer
/// opens them, so that they are never readable by others, not even for a moment.
fn prepare_private(dir: &Path, id: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::io(format!("creating the runs directory {}", dir.display()), e))?;
    for ext in ["jsonl", "md"] {
        let path = dir.join(format!("{id}.{ext}"));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    }
    Ok(())
}

/// One transcript of the run: a step per change, with the manifest as its arguments.
fn write_transcript(
    dir: &Path,
    kube: &Kube,
    settings: &Settings,
    confirmations: &str,
    redactor: Redactor,
    fixes: &[Fix],
    status: &'static str,
) -> Result<PathBuf> {
    let id = run_id();
    prepare_private(dir, &id)?;
    let started = now();
    let mut t = Transcript::create(
        dir,
        StartRecord {
            run_id: id.clone(),
            runbook: "audit-fix".into(),
            title: "newapi-ops audit --fix".into(),
            source: "built-in (newapi-ops audit)".into(),
            started_at: started.clone(),
            context: kube.context.clone(),
            server: kube.server.clone(),
            namespace: settings.namespace.clone(),
            inputs: json!({"fixes": fixes.iter().map(|f| f.id).collect::<Vec<_>>()}),
            dry_run: false,
            confirmations: confirmations.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
        redactor,
    )?;
    let mut counts = std::collections::BTreeMap::new();
    let mut index = 0;
    for f in fixes {
        for c in &f.changes {
            index += 1;
            let st = serde_json::to_value(c.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *counts.entry(st.clone()).or_insert(0) += 1;
            let ended = now();
            t.step(StepRecord {
                index,
                id: format!("{}_{index}", f.id.replace('-', "_")),
                title: f.summary.clone(),
                action: format!("audit.fix.{}", f.id),
                effect: "mutating".into(),
                status: st,
                when: None,
                arguments: json!({"rule": f.rule, "api_version": c.api_version, "kind": c.kind, "name": c.name}),
                change: Some(c.what()),
                details: f.notes.clone(),
                summary: format!("{} ({})", c.what(), c.api_version),
                error: None,
                output: json!({"manifest": c.manifest}),
                started_at: started.clone(),
                ended_at: ended,
                duration_ms: 0,
            })?;
        }
    }
    t.end(EndRecord {
        run_id: id,
        status: status.to_string(),
        ended_at: now(),
        duration_ms: 0,
        counts,
    })?;
    Ok(t.jsonl.clone())
}
