//! `newapi-ops backup` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct BackupArgs {}

pub async fn run(_global: &GlobalArgs, _args: BackupArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("backup is not built yet".into()))
}
