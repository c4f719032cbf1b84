//! What can go wrong with a load test, typed; [`crate::error`] maps each to its exit code.

/// A load test that could not run, or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A bad combination or value of options, caught before any request.
    #[error("{0}")]
    Usage(String),

    /// Not one request got a response: the target is down or wrong.
    #[error("nothing answered at {target}: {attempts} requests, every one failed ({detail})")]
    Unreachable {
        target: String,
        attempts: u64,
        detail: String,
    },

    /// The deployment has no running pod of the role to send the load to.
    #[error("no running {role} pod in namespace \"{namespace}\" to send the load to")]
    NoPods { role: String, namespace: String },

    /// No Service selects the New-API pods (for `--in-cluster`).
    #[error("no Service in namespace \"{namespace}\" selects the {role} pods ({selector})")]
    NoService {
        namespace: String,
        role: String,
        selector: String,
        available: Vec<String>,
    },

    /// Some in-cluster workers did not report (not started, failed, or no result line); the
    /// report covers the others.
    #[error("{finished} of {total} workers reported{}", lines(.missing))]
    WorkersIncomplete {
        finished: usize,
        total: usize,
        /// One line per missing worker: `worker 2 (pod …): why`.
        missing: Vec<String>,
    },

    /// A worker's result (a pod log, a file given to `bench merge`) does not parse.
    #[error("{source_name}: {detail}")]
    BadWorkerResult { source_name: String, detail: String },
}

fn lines(items: &[String]) -> String {
    items.iter().map(|m| format!("\n  {m}")).collect()
}

impl BenchError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            BenchError::Usage(_) => "see `newapi-ops bench --help`".into(),
            BenchError::Unreachable { .. } => "check the URL (the NodePort is on every node's address, e.g. http://NODE:30000/api/status), or use --target slaves to go through the API server".into(),
            BenchError::NoPods { .. } => "`newapi-ops pods` shows what runs; the pods must be Running and Ready".into(),
            BenchError::NoService { available, .. } => format!(
                "create a Service for New-API (the seed's is `new-api`, port 3000){}",
                if available.is_empty() { String::new() } else { format!("; Services here: {}", available.join(", ")) }
            ),
            BenchError::WorkersIncomplete { .. } => "`kubectl get pods -l app.kubernetes.io/component=bench` and their events say why (image not pullable, not schedulable); the Jobs were deleted".into(),
            BenchError::BadWorkerResult { .. } => "a worker's result is the last line starting with NEWAPI-OPS-BENCH-RESULT of `newapi-ops bench worker`'s output".into(),
        })
    }
}
