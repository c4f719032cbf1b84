//! What can go wrong with a backup, a restore or a verification, typed, with its exit code and
//! what to do next. No message ever quotes a password: endpoints print as `user@host:port/db`.

use std::path::PathBuf;

use crate::signals::Signal;

/// The backup engine's result type.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),

    #[error("cannot connect to MySQL at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },

    #[error("MySQL at {endpoint} refused {what}: {detail}")]
    Denied {
        endpoint: String,
        what: String,
        detail: String,
    },

    #[error(
        "MySQL at {endpoint} refused the lock that makes the workers' snapshots consistent: {detail}"
    )]
    LockRefused { endpoint: String, detail: String },

    #[error(
        "lost the API server at {server} while {during}: the port-forward to MySQL went through it, and it no longer answers ({detail})"
    )]
    ForwardLost {
        server: String,
        during: String,
        detail: String,
    },

    #[error("lost the connection to MySQL at {endpoint} while {during}: {detail}")]
    Lost {
        endpoint: String,
        during: String,
        detail: String,
    },

    #[error("MySQL at {endpoint} failed while {during}: {detail}")]
    Query {
        endpoint: String,
        during: String,
        detail: String,
    },

    #[error("database `{database}` does not exist on {endpoint}")]
    NoDatabase {
        endpoint: String,
        database: String,
        available: Vec<String>,
    },

    #[error("no database named: the connection ({endpoint}) names none")]
    DatabaseUnknown { endpoint: String },

    #[error("table `{table}` is not a table of `{database}`")]
    NoTable {
        database: String,
        table: String,
        available: Vec<String>,
    },

    #[error("{context} {path}: {source}")]
    File {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("backup `{id}` not found in {dir}")]
    NotFound {
        id: String,
        dir: PathBuf,
        available: Vec<String>,
    },

    #[error("backup {id} is damaged: {}", problems.join("; "))]
    Corrupt { id: String, problems: Vec<String> },

    #[error("{path} is not a backup manifest this version can read: {detail}")]
    BadManifest { path: PathBuf, detail: String },

    #[error("backup {id} is encrypted (age, to {recipients}); reading its data needs the identity")]
    NeedIdentity { id: String, recipients: String },

    #[error("no identity in {file} can decrypt backup {id}: it is encrypted to {recipients}")]
    WrongIdentity {
        id: String,
        file: PathBuf,
        recipients: String,
    },

    #[error("cannot use identity file {file}: {detail}")]
    BadIdentity { file: PathBuf, detail: String },

    #[error("--encrypt-to {value}: not an age recipient ({detail})")]
    BadRecipient { value: String, detail: String },

    #[error("database `{database}` on {endpoint} is not empty: it has {}", tables.join(", "))]
    TargetNotEmpty {
        endpoint: String,
        database: String,
        tables: Vec<String>,
    },

    #[error("restored data does not match backup {id}: {}", problems.join("; "))]
    Mismatch { id: String, problems: Vec<String> },

    #[error("{what} cancelled: not confirmed")]
    Declined { what: String },

    #[error(
        "this cluster (Kubernetes {version}) serves no CronJob API (neither batch/v1 nor batch/v1beta1 lists cronjobs)"
    )]
    CronJobUnsupported { version: String },

    /// `backup schedule --run-now`: the Job failed.
    #[error("backup job {job} in namespace {namespace} failed: {}{}", .failure.reason, log_block(.failure))]
    JobFailed {
        job: String,
        namespace: String,
        failure: Box<crate::backup::schedule::status::Failure>,
    },

    /// `backup schedule --run-now`: the Job had not finished within `--timeout`; it goes on.
    #[error(
        "backup job {job} in namespace {namespace} had not finished after {}{}: stopped following it; the Job keeps running",
        crate::units::duration(*.waited),
        if .last.is_empty() { String::new() } else { format!(" ({})", .last) }
    )]
    StillRunning {
        job: String,
        namespace: String,
        waited: std::time::Duration,
        /// Where it was at the last poll (`pod Y running backup (58 s)`).
        last: String,
    },

    /// `backup schedule --run-now`: the API server stopped answering while the Job was
    /// followed; the Job goes on in the cluster.
    #[error(
        "lost the API server at {server} while following backup job {job} in namespace {namespace}: {detail} (unreachable for {}); the Job keeps running in the cluster",
        crate::units::duration(*.lost_for)
    )]
    LostWhileFollowing {
        job: String,
        namespace: String,
        server: String,
        detail: String,
        lost_for: std::time::Duration,
    },

    /// `backup schedule --run-now`: Ctrl-C or SIGTERM while following; the Job goes on.
    #[error(
        "stopped following backup job {job} ({signal}): the Job keeps running in namespace {namespace}"
    )]
    StoppedFollowing {
        job: String,
        namespace: String,
        signal: Signal,
    },

    /// Ctrl-C or SIGTERM stopped a backup (its temporary directory is removed), a restore
    /// before it changed anything, or a restore test (its scratch database is dropped).
    #[error("{what} interrupted by {signal}")]
    Interrupted { what: String, signal: Signal },

    /// `restore --fast-load` on a server that other clients use.
    #[error(
        "--fast-load: {} connected to {endpoint}: {}; relaxing durability would put their writes at risk too",
        crate::units::plural(sessions.len(), "other client is", "other clients are"),
        sessions.join(", ")
    )]
    OtherClients {
        endpoint: String,
        sessions: Vec<String>,
    },

    /// `restore --fast-load` by an account that may not set globals.
    #[error("--fast-load: the account on {endpoint} may not change global variables: {detail}")]
    FastLoadDenied {
        endpoint: String,
        mariadb: bool,
        detail: String,
    },

    /// Globals relaxed by `--fast-load` that could not be put back.
    #[error(
        "--fast-load: GLOBAL VARIABLES OF {endpoint} ARE LEFT CHANGED ({detail}); put them back with: {}{}",
        left.join(" "),
        cause.as_ref().map(|c| format!(" — the restore itself failed first: {c}")).unwrap_or_default()
    )]
    GlobalsLeft {
        endpoint: String,
        /// The statements still to run, in order.
        left: Vec<String>,
        detail: String,
        /// What failed before (the load, or a change of the globals).
        cause: Option<Box<BackupError>>,
    },

    /// A restore stopped after it had begun changing the target: by a signal or an error.
    #[error(
        "restore of backup {id} into `{database}` on {endpoint} {}: `{database}` is left half-loaded",
        stopped_how(.cause)
    )]
    RestoreIncomplete {
        id: String,
        database: String,
        endpoint: String,
        /// The target existed before the restore.
        existed: bool,
        /// Tables the target had before that are not the backup's (left alone by the restore).
        other_tables: Vec<String>,
        /// The backup is encrypted: loading it again needs `--identity`.
        encrypted: bool,
        cause: Box<BackupError>,
    },
}

/// "interrupted by SIGTERM", or "failed part-way: lost the connection ...".
fn stopped_how(cause: &BackupError) -> String {
    match cause {
        BackupError::Interrupted { signal, .. } => format!("interrupted by {signal}"),
        other => format!("failed part-way: {other}"),
    }
}

/// `word` as one shell word: as it is when that is safe, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// How to clean up after [`BackupError::RestoreIncomplete`].
fn restore_cleanup(
    id: &str,
    database: &str,
    existed: bool,
    other_tables: &[String],
    encrypted: bool,
) -> String {
    let again = format!(
        "`newapi-ops restore {id} --database {} --force --yes{}`",
        shell_word(database),
        if encrypted { " --identity FILE" } else { "" }
    );
    let quoted = super::sql::ident(database);
    if other_tables.is_empty() {
        let before = if existed {
            "had no tables before this restore"
        } else {
            "did not exist before this restore"
        };
        format!(
            "`{database}` {before}: drop it (SQL: DROP DATABASE {quoted};) or load it again with {again}"
        )
    } else {
        format!(
            "`{database}` also holds tables that are not the backup's ({}): do not drop the database; load the backup's tables again with {again} (it drops and replaces them)",
            other_tables.join(", ")
        )
    }
}

impl BackupError {
    /// An I/O error on a backup file or directory.
    pub fn file(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BackupError::File {
            context,
            path: path.into(),
            source,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            BackupError::Usage(_) => "see `newapi-ops backup --help`".into(),
            BackupError::Connect { .. } => "check that MySQL is running (`newapi-ops diagnose --only mysql`), or pass --mysql-url".into(),
            BackupError::Denied { .. } => "use a MySQL account with SELECT, SHOW VIEW, RELOAD (or BACKUP_ADMIN) and, for restores, CREATE, DROP, INSERT, ALTER, INDEX on the database".into(),
            BackupError::LockRefused { .. } => "grant RELOAD to the account, or pass --single-connection (one connection, consistent by its own snapshot; slower on large tables)".into(),
            BackupError::ForwardLost { .. } => "nothing incomplete was kept; check the API server (`kubectl get --raw /readyz`) and run it again, or reach MySQL directly with --mysql-url (password in NEWAPI_OPS_MYSQL_URL)".into(),
            BackupError::Lost { .. } => "the server went away or restarted; nothing incomplete was kept: check the server (`newapi-ops diagnose --only mysql`) and run it again".into(),
            BackupError::Query { .. } => "run again with -vv for details; if it persists, this is a bug".into(),
            BackupError::NoDatabase { available, .. } => {
                if available.is_empty() {
                    "pass --database NAME".into()
                } else {
                    format!("databases there: {}; pass --database NAME", available.join(", "))
                }
            }
            BackupError::DatabaseUnknown { .. } => "pass --database NAME".into(),
            BackupError::NoTable { available, .. } => format!("tables there: {}", available.join(", ")),
            BackupError::File { source, path, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => format!(
                    "the disk holding {} is full: free space or choose another --dir; nothing incomplete was kept",
                    path.display()
                ),
                std::io::ErrorKind::PermissionDenied => "check the directory's owner and permissions, or choose another --dir".into(),
                _ => "check the path and the disk".into(),
            },
            BackupError::NotFound { available, .. } => {
                if available.is_empty() {
                    "there are no complete backups there: check --dir (or NEWAPI_OPS_BACKUP_DIR)".into()
                } else {
                    format!("backups there: {} (or `latest`)", available.join(", "))
                }
            }
            BackupError::Corrupt { .. } => "do not restore this backup; restore an older one (`newapi-ops backup list`) and take a new backup".into(),
            BackupError::BadManifest { .. } => "the directory is not a complete backup made by newapi-ops; use `newapi-ops backup list`".into(),
            BackupError::NeedIdentity { .. } => "pass --identity FILE (the age identity matching the recipient)".into(),
            BackupError::WrongIdentity { .. } => "pass the identity file whose public key is the recipient shown (`age-keygen -y FILE` prints it)".into(),
            BackupError::BadIdentity { .. } => "an identity file has lines `AGE-SECRET-KEY-1...` (from `age-keygen`)".into(),
            BackupError::BadRecipient { .. } => "pass an age X25519 recipient, `age1...` (`age-keygen -y IDENTITY` prints it)".into(),
            BackupError::TargetNotEmpty { .. } => "restore into a new --database NAME, or pass --force to drop and replace the backup's tables there".into(),
            BackupError::Mismatch { .. } => "the server changed the data while loading, or the backup is inconsistent: check the server's log, and do not use the restored copy".into(),
            BackupError::Declined { .. } => return None,
            BackupError::CronJobUnsupported { .. } => "upgrade the cluster, or run backups from a host outside it with cron: see `newapi-ops backup schedule --crontab`".into(),
            BackupError::Interrupted { .. } => "nothing incomplete was kept: run it again".into(),
            BackupError::JobFailed {
                namespace, failure, ..
            } => format!(
                "fix what the log says, then run it again: `newapi-ops backup schedule --run-now`; the whole log: {}; the history: `newapi-ops backup status`",
                failure.pod.as_ref().map_or_else(
                    || format!("`kubectl -n {namespace} get pods -l job-name`"),
                    |p| format!("`newapi-ops logs {p} -n {namespace}`")
                )
            ),
            BackupError::LostWhileFollowing { job, namespace, .. } => format!(
                "once the API server answers again (`kubectl cluster-info`), see how it ended: `newapi-ops backup status -n {namespace}` or `kubectl -n {namespace} get job {job}`"
            ),
            BackupError::StoppedFollowing { job, namespace, .. }
            | BackupError::StillRunning { job, namespace, .. } => format!(
                "watch it with `kubectl -n {namespace} get job {job} -w` or `newapi-ops backup status -n {namespace}`; stop it with `kubectl -n {namespace} delete job {job}`"
            ),
            BackupError::OtherClients { .. } => "--fast-load is for a dedicated or scratch server: stop the other clients (or restore without --fast-load); --allow-other-clients proceeds all the same".into(),
            BackupError::FastLoadDenied { mariadb, .. } => format!(
                "grant {} to the account, or restore without --fast-load",
                if *mariadb { "SUPER" } else { "SYSTEM_VARIABLES_ADMIN (and INNODB_REDO_LOG_ENABLE for the redo log)" }
            ),
            BackupError::GlobalsLeft { .. } => "run the statements above as an account with SUPER (MariaDB) or SYSTEM_VARIABLES_ADMIN (MySQL) as soon as the server answers: until then it runs with relaxed durability".into(),
            BackupError::RestoreIncomplete {
                id,
                database,
                existed,
                other_tables,
                encrypted,
                ..
            } => restore_cleanup(id, database, *existed, other_tables, *encrypted),
        })
    }

    /// Classifies a MySQL error for `endpoint` that happened while doing `during`.
    pub fn mysql(endpoint: &str, during: &str, e: &mysql_async::Error) -> Self {
        use mysql_async::{DriverError, Error as E, IoError};
        let endpoint = endpoint.to_string();
        let during = during.to_string();
        match e {
            E::Server(s) => {
                let detail = format!("{} ({})", s.message, s.code);
                match s.code {
                    // Access denied (user, database, table, command, privilege).
                    1044 | 1045 | 1142 | 1143 | 1227 | 1370 | 1698 => BackupError::Denied {
                        endpoint,
                        what: during,
                        detail,
                    },
                    // Server shutdown in progress, query interrupted, killed connection.
                    1053 | 1317 | 1927 | 4031 => BackupError::Lost {
                        endpoint,
                        during,
                        detail,
                    },
                    _ => BackupError::Query {
                        endpoint,
                        during,
                        detail,
                    },
                }
            }
            E::Io(IoError::Io(io)) => {
                let detail = match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused (nothing listens there)".to_string()
                    }
                    _ => io.to_string(),
                };
                BackupError::Lost {
                    endpoint,
                    during,
                    detail,
                }
            }
            E::Driver(DriverError::ConnectionClosed) => BackupError::Lost {
                endpoint,
                during,
                detail: "the server closed the connection".into(),
            },
            other => BackupError::Query {
                endpoint,
                during,
                detail: other.to_string(),
            },
        }
    }
}

/// The failed container's last log lines, indented under the message.
fn log_block(f: &crate::backup::schedule::status::Failure) -> String {
    if f.log_tail.is_empty() {
        return String::new();
    }
    let from = match (&f.pod, &f.container) {
        (Some(p), Some(c)) => format!(" of {p} ({c})"),
        (Some(p), None) => format!(" of {p}"),
        _ => String::new(),
    };
    let mut s = format!("\n  last log lines{from}:");
    for l in &f.log_tail {
        s.push_str("\n    ");
        s.push_str(l);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incomplete(existed: bool, other: &[&str], cause: BackupError) -> BackupError {
        BackupError::RestoreIncomplete {
            id: "20261125T030000Z".into(),
            database: "copy".into(),
            endpoint: "ops@127.0.0.1:3306/new-api".into(),
            existed,
            other_tables: other.iter().map(|t| t.to_string()).collect(),
            encrypted: false,
            cause: Box::new(cause),
        }
    }

    #[test]
    fn an_incomplete_restore_says_what_it_left_and_how_to_clean_it() {
        let e = incomplete(
            false,
            &[],
            BackupError::Interrupted {
                what: "restore".into(),
                signal: Signal::Terminate,
            },
        );
        assert_eq!(
            e.to_string(),
            "restore of backup 20261125T030000Z into `copy` on ops@127.0.0.1:3306/new-api interrupted by SIGTERM: `copy` is left half-loaded"
        );
        let hint = e.hint().unwrap();
        assert!(hint.contains("did not exist before"), "{hint}");
        assert!(hint.contains("DROP DATABASE `copy`;"), "{hint}");
        assert!(
            hint.contains("newapi-ops restore 20261125T030000Z --database copy --force --yes"),
            "{hint}"
        );
        // A database that has other tables must not be dropped.
        let lost = BackupError::Lost {
            endpoint: "ops@127.0.0.1:3306/new-api".into(),
            during: "loading logs.00002.sql.zst".into(),
            detail: "the server closed the connection".into(),
        };
        let e = incomplete(true, &["mine"], lost);
        assert!(
            e.to_string()
                .contains("failed part-way: lost the connection")
        );
        let hint = e.hint().unwrap();
        assert!(hint.contains("do not drop the database") && hint.contains("mine"));
        assert!(!hint.contains("DROP DATABASE"), "{hint}");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("copy"), "copy");
        assert_eq!(shell_word("new-api"), "new-api");
        assert_eq!(shell_word("it's mine"), r"'it'\''s mine'");
        assert_eq!(shell_word(""), "''");
    }
}
