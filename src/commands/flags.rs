//! Flag groups that several commands share, declared once (one help text each) and flattened
//! into each command's arguments.

use std::path::PathBuf;

use clap::Args;

use crate::diagnose::{MYSQL_URL_ENV, REDIS_URL_ENV};

/// `--yes`: go ahead without a prompt.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct YesArg {
    /// Do not ask for confirmation (needed for changes when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `--no-wait` and `--timeout`: whether and how long to follow a rollout (scale, restart).
#[derive(Debug, Args, Clone, Copy)]
pub struct RolloutWaitArgs {
    /// Do not follow the rollout after the change.
    #[arg(long)]
    pub no_wait: bool,

    /// How long to follow each rollout before giving up (e.g. 90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "5m",
          value_parser = crate::units::parse_timeout)]
    pub timeout: std::time::Duration,
}

impl RolloutWaitArgs {
    /// How long to wait for the rollout, or None not to.
    pub fn wait(&self) -> Option<std::time::Duration> {
        (!self.no_wait).then_some(self.timeout)
    }
}

/// `--mysql-url`: reach MySQL directly instead of through the cluster.
#[derive(Debug, Args, Clone, Default)]
pub struct MysqlArgs {
    /// Reach MySQL here instead of through the cluster (mysql://user@host:port/db). Put the
    /// password in NEWAPI_OPS_MYSQL_URL rather than on the command line, where `ps` shows it.
    #[arg(
        long,
        env = MYSQL_URL_ENV,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub mysql_url: Option<String>,
}

/// `--mysql-url` and `--redis-url` of the commands that read both backends (diagnose, audit).
#[derive(Debug, Args, Clone, Default)]
pub struct BackendUrls {
    #[command(flatten)]
    pub mysql: MysqlArgs,

    /// Reach Redis here instead of through the cluster (redis://[:password@]host:port/db). Put
    /// the password in NEWAPI_OPS_REDIS_URL rather than on the command line, where `ps` shows it.
    #[arg(
        long,
        env = REDIS_URL_ENV,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
}

/// `--dir`: where backups live.
#[derive(Debug, Args, Clone, Default)]
pub struct DirArg {
    /// The directory holding backups [default: <data dir>/newapi-ops/backups].
    #[arg(long, env = "NEWAPI_OPS_BACKUP_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory named, else the default backup directory.
    pub fn resolve(&self) -> PathBuf {
        crate::backup::store::dir_or_default(self.dir.clone())
    }
}

/// The most connections a backup or restore opens: more only queue on the server.
pub const MAX_THREADS: usize = 64;

/// `--threads`: 1 to [`MAX_THREADS`], refused otherwise (never silently changed).
pub fn parse_threads(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of connections (1 to {MAX_THREADS})"))?;
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(format!("{n} connections: give 1 to {MAX_THREADS}"));
    }
    Ok(n)
}

/// `--chunk-rows`: at least 1000 rows per chunk file (fewer makes a file per handful of rows).
pub fn parse_chunk_rows(s: &str) -> Result<u64, String> {
    const MIN: u64 = 1000;
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of rows"))?;
    if n < MIN {
        return Err(format!(
            "{n} rows per chunk would write a file per {n} rows: give {MIN} or more"
        ));
    }
    Ok(n)
}

/// A MySQL database name as `--database` takes it: 1 to 64 characters, none of them NUL, `/`,
/// `\\` or `.`, and not ending in a space (MySQL's own rules for schema names).
pub fn parse_database(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the database name is empty".into());
    }
    if s.chars().count() > 64 {
        return Err(format!("`{s}` is longer than MySQL's 64 characters"));
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '\0' | '/' | '\\' | '.')) {
        return Err(format!(
            "`{s}` has {c:?}, which MySQL does not allow in a database name"
        ));
    }
    if s.ends_with(' ') {
        return Err(format!(
            "`{s}` ends with a space, which MySQL does not allow"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_not_changed() {
        assert_eq!(parse_threads("4"), Ok(4));
        for bad in ["0", "1000", "-1", "x"] {
            assert!(parse_threads(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_chunk_rows("100000"), Ok(100_000));
        assert!(parse_chunk_rows("0").unwrap_err().contains("1000 or more"));
        assert_eq!(parse_database("copy").as_deref(), Ok("copy"));
        for bad in ["", "a/b", "a.b", "x ", &"d".repeat(65)] {
            assert!(parse_database(bad).is_err(), "{bad:?}");
        }
    }
}
