//! `newapi-ops audit`: the deployment notes' production advice (生产环境建议), New-API's own rules
//! and Kubernetes hygiene as a graded report, and the manifests that fix what is missing.
//!
//! The steps, each its own module:
//! 1. [`facts::gather`]: everything the rules read, listed once (the namespace's workloads, pods,
//!    Services, PVCs, Secrets, ConfigMaps, HPAs, PDBs, NetworkPolicies, Ingresses, CronJobs and
//!    Jobs; DaemonSets of every namespace; Prometheus Operator objects when served; nodes for the
//!    capacity arithmetic; MySQL's `max_connections` and Redis' `maxmemory` as New-API reaches
//!    them; the local backup store). What cannot be read (RBAC, an API not served, a backend not
//!    reached) is kept with the reason, so that a rule says "not checked" rather than pass.
//! 2. [`rules::evaluate`]: pure functions of the facts, one [`Outcome`] per rule of
//!    [`rules::RULES`] (stable id, severity, section, the evidence read).
//! 3. [`score::score`]: a score per section and overall, and an A–F grade.
//! 4. [`fix::plan`]: for each failing rule a manifest can fix, the manifest computed from the live
//!    deployment, at the API versions the server serves ([`discovery`]); [`fix::apply`] checks
//!    every one with a server-side dry run before applying any, and rolls back what it created
//!    when a real apply fails midway.
//!
//! Output: [`render`] for people, [`junit`] for CI; JSON and YAML serialize [`Report`].

pub mod apply;
pub mod discovery;
pub mod error;
pub mod facts;
pub mod fix;
pub mod junit;
pub mod render;
pub mod rules;
pub mod score;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use apply::{FixMode, run};
pub use error::AuditError;

use crate::config::Settings;
use crate::error::Result;
use crate::k8s::Kube;

/// The current version of the JSON/YAML report.
pub const SCHEMA_VERSION: u32 = 1;

/// How much a rule matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// The rule could not be judged (RBAC, an API not served, a backend not reached): never a pass.
    NotChecked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotChecked => "not-checked",
        }
    }
}

/// The sections of the report, each scored on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    /// The ten recommendations of the deployment notes (生产环境建议).
    Advice,
    /// New-API's own rules (one master, secrets, Redis, the pool arithmetic, env names).
    Newapi,
    /// Kubernetes hygiene (probes, resources, tags, non-root, storage, replicas, spread).
    Kubernetes,
    /// Backups: recent, verified, copied off the cluster (scheduled is advice 7).
    Backups,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Advice,
        Section::Newapi,
        Section::Kubernetes,
        Section::Backups,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Advice => "advice",
            Section::Newapi => "newapi",
            Section::Kubernetes => "kubernetes",
            Section::Backups => "backups",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Section::Advice => "Production advice (生产环境建议)",
            Section::Newapi => "New-API",
            Section::Kubernetes => "Kubernetes hygiene",
            Section::Backups => "Backups",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Stable id, e.g. `advice.hpa`.
    pub id: &'static str,
    pub section: Section,
    pub severity: Severity,
    /// The number of the recommendation in the notes' 生产环境建议 (1–10), for the advice rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<u8>,
    pub title: &'static str,
    pub status: Status,
    /// One line: what was found.
    pub summary: String,
    /// What was read, one fact per line (never a secret: values are named or fingerprinted).
    pub evidence: Vec<String>,
    /// The id of the fix `--fix` would apply, when a manifest can fix this rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<&'static str>,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub namespace: String,
    pub context: Option<String>,
    pub server_version: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    /// 0–100 over every rule that could be judged.
    pub score: Option<u32>,
    pub grade: char,
    pub counts: score::Counts,
    pub sections: Vec<score::SectionScore>,
    pub rules: Vec<Outcome>,
    /// `--fix`: what was planned and what happened to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixes: Option<fix::FixReport>,
    /// After `--fix --yes`: the score and grade before the fixes (this report is the audit after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<score::Before>,
}

impl Report {
    /// Each section that has rules: its rules (in the order of [`rules::RULES`]) and its score.
    pub fn by_section(&self) -> Vec<(Section, Vec<&Outcome>, Option<&score::SectionScore>)> {
        Section::ALL
            .into_iter()
            .map(|section| {
                let rules: Vec<&Outcome> =
                    self.rules.iter().filter(|r| r.section == section).collect();
                let score = self.sections.iter().find(|s| s.section == section);
                (section, rules, score)
            })
            .filter(|(_, rules, _)| !rules.is_empty())
            .collect()
    }

    /// The worst severity among failing rules.
    pub fn worst_failure(&self) -> Option<Severity> {
        self.rules
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.severity)
            .max()
    }
}

/// What the command line asks of the audit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound of each backend read (MySQL, Redis) and of the port-forwards to them.
    pub timeout: Duration,
    pub mysql_url: Option<String>,
    pub redis_url: Option<String>,
    /// The local backup store (`backup --dir`).
    pub backup_dir: PathBuf,
    /// The newest backup must be younger than this.
    pub backup_max_age: Duration,
    /// The inputs of the fixes (used by `--fix`, shown as the fix of each rule otherwise).
    pub fix: fix::FixInputs,
}

/// Gathers the facts and judges every rule once.
pub async fn audit(kube: &Kube, settings: &Settings, opts: &Options) -> Result<Report> {
    let started_at = crate::runbook::transcript::now();
    let t0 = std::time::Instant::now();
    let facts = facts::gather(kube, settings, opts).await?;
    Ok(judge(
        &facts,
        kube.context.clone(),
        started_at,
        t0,
        &opts.fix,
    ))
}

/// The report of already gathered facts.
pub fn judge(
    facts: &facts::Facts,
    context: Option<String>,
    started_at: String,
    t0: std::time::Instant,
    inputs: &fix::FixInputs,
) -> Report {
    let mut rules = rules::evaluate(facts);
    let planned = fix::plan(facts, &rules, inputs);
    for r in &mut rules {
        if r.status == Status::Fail {
            r.fix = planned.fix_for(r.id);
        }
    }
    let scored = score::score(&rules);
    Report {
        schema_version: SCHEMA_VERSION,
        namespace: facts.namespace.clone(),
        context,
        server_version: facts.apis.server_version.clone(),
        started_at,
        duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        score: scored.score,
        grade: scored.grade,
        counts: scored.counts,
        sections: scored.sections,
        rules,
        fixes: None,
        before: None,
    }
}
