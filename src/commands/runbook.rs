//! `newapi-ops runbook` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct RunbookArgs {}

pub async fn run(_global: &GlobalArgs, _args: RunbookArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("runbook is not built yet".into()))
}
