//! Flag groups that several commands share, declared once (one help text each) and flattened
//! into each command's arguments.

use std::path::PathBuf;

use clap::Args;

/// `--yes`: go ahead without a prompt.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct YesArg {
    /// Do not ask for confirmation (needed for changes when there is no terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `--mysql-url`: reach MySQL directly instead of through the cluster.
#[derive(Debug, Args, Clone, Default)]
pub struct MysqlArgs {
    /// Reach MySQL here instead of through the cluster (mysql://user@host:port/db). Put the
    /// password in NEWAPI_OPS_MYSQL_URL rather than on the command line, where `ps` shows it.
    #[arg(
        long,
        env = "NEWAPI_OPS_MYSQL_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub mysql_url: Option<String>,
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
