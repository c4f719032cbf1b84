//! Why `audit --fix` changed nothing, or had to undo what it did. The exit code of each is chosen
//! in [`crate::error`] (the code of the API error underneath: 77 for an RBAC denial).

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
    /// The API error underneath.
    pub fn source_error(&self) -> &crate::error::Error {
        match self {
            AuditError::Rejected { source, .. } | AuditError::ApplyFailed { source, .. } => source,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        let inner = self.source_error().hint();
        Some(match self {
            AuditError::Rejected { .. } => format!(
                "{}; `newapi-ops audit --fix --dry-run` prints the manifests to apply by other means",
                inner.unwrap_or_else(|| "fix the cause and run `newapi-ops audit --fix` again".into())
            ),
            AuditError::ApplyFailed {
                not_rolled_back, ..
            } if !not_rolled_back.is_empty() => {
                "delete the objects named NOT rolled back by hand (kubectl delete), then run `newapi-ops audit --fix` again".into()
            }
            AuditError::ApplyFailed { .. } => inner
                .unwrap_or_else(|| "run `newapi-ops audit --fix` again once the cause is fixed".into()),
        })
    }
}
