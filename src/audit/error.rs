//! Why `audit --fix` changed nothing, or had to undo what it did. The exit code of each is chosen
//! in [`crate::error`] (the code of the API error underneath: 77 for an RBAC denial; 130 or 143
//! for a signal).

/// A failed fix run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The server-side dry run refused a fix: nothing was applied.
    #[error(
        "the server refused {what} in a dry run, so no fix was applied (nothing changed): {source}"
    )]
    Rejected {
        /// `create horizontalpodautoscaler/new-api-slave (fix hpa)`.
        what: String,
        #[source]
        source: Box<crate::error::Error>,
    },
    /// A real apply failed after others had succeeded; what this run created was deleted again.
    #[error(
        "applying {what} failed: {source}; {}",
        rollback_words(.rolled_back, .not_rolled_back)
    )]
    ApplyFailed {
        what: String,
        #[source]
        source: Box<crate::error::Error>,
        /// `Kind/name` undone (deleted, or patched back).
        rolled_back: Vec<String>,
        /// `Kind/name: why` that could not be undone.
        not_rolled_back: Vec<String>,
    },
    /// Ctrl-C or SIGTERM while the fixes were applied: the change in flight was let finish, then
    /// what this run applied was undone.
    #[error(
        "{signal} while applying the fixes{}; {}",
        in_flight_words(.in_flight),
        rollback_words(.rolled_back, .not_rolled_back)
    )]
    Interrupted {
        signal: crate::signals::Signal,
        /// The change that was being applied when the signal came, if one was.
        in_flight: Option<String>,
        rolled_back: Vec<String>,
        not_rolled_back: Vec<String>,
    },
}

fn in_flight_words(in_flight: &Option<String>) -> String {
    in_flight
        .as_ref()
        .map(|w| format!(" ({w} was in flight: it was let finish)"))
        .unwrap_or_default()
}

fn rollback_words(done: &[String], failed: &[String]) -> String {
    let mut s = if done.is_empty() {
        "nothing had been applied before it".to_string()
    } else {
        format!("rolled back what this run had applied: {}", done.join(", "))
    };
    if !failed.is_empty() {
        s.push_str(&format!("; NOT rolled back: {}", failed.join("; ")));
    }
    s
}

impl AuditError {
    /// The API error underneath (none for a signal).
    pub fn source_error(&self) -> Option<&crate::error::Error> {
        match self {
            AuditError::Rejected { source, .. } | AuditError::ApplyFailed { source, .. } => {
                Some(source)
            }
            AuditError::Interrupted { .. } => None,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        let inner = self.source_error().and_then(crate::error::Error::hint);
        Some(match self {
            AuditError::Rejected { .. } => format!(
                "{}; `newapi-ops audit --fix --dry-run` prints the manifests to apply by other means",
                inner.unwrap_or_else(|| "fix the cause and run `newapi-ops audit --fix` again".into())
            ),
            AuditError::ApplyFailed {
                not_rolled_back, ..
            }
            | AuditError::Interrupted {
                not_rolled_back, ..
            } if !not_rolled_back.is_empty() => {
                "delete the objects named NOT rolled back by hand (kubectl delete), then run `newapi-ops audit --fix` again".into()
            }
            AuditError::ApplyFailed { .. } => inner
                .unwrap_or_else(|| "run `newapi-ops audit --fix` again once the cause is fixed".into()),
            AuditError::Interrupted { .. } => {
                "nothing this run applied is left in the cluster; run `newapi-ops audit --fix` again when you are ready (the transcript records what was done)".into()
            }
        })
    }
}
