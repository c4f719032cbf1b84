//! What every check produces: findings with a severity, the evidence seen, and the next step.
//! This is also the `-o json` schema of `diagnose` (documented in README.md).

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Ok < Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The part of the deployment a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Pods,
    Nodes,
    Logs,
    Mysql,
    Redis,
    App,
    Config,
}

impl Component {
    pub const ALL: [Component; 7] = [
        Component::Pods,
        Component::Nodes,
        Component::Logs,
        Component::Mysql,
        Component::Redis,
        Component::App,
        Component::Config,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Pods => "pods",
            Component::Nodes => "nodes",
            Component::Logs => "logs",
            Component::Mysql => "mysql",
            Component::Redis => "redis",
            Component::App => "app",
            Component::Config => "config",
        }
    }
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub component: Component,
    /// A stable identifier of the check, e.g. `mysql.connections`, `pods.crashloop`.
    pub check: String,
    pub severity: Severity,
    /// What the object is (pod, node, table, ...), when the finding is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line for people: what is wrong (or fine).
    pub summary: String,
    /// What was seen: fields, events, log lines, measured values. Never a secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// What to do next: a command or `runbook run NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

impl Finding {
    pub fn new(
        component: Component,
        check: &str,
        severity: Severity,
        summary: impl Into<String>,
    ) -> Self {
        Finding {
            component,
            check: check.to_string(),
            severity,
            subject: None,
            summary: summary.into(),
            evidence: Vec::new(),
            next_step: None,
        }
    }

    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    #[must_use]
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }

    #[must_use]
    pub fn next(mut self, step: impl Into<String>) -> Self {
        self.next_step = Some(step.into());
        self
    }
}
