//! `newapi-ops restore` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct RestoreArgs {}

pub async fn run(_global: &GlobalArgs, _args: RestoreArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("restore is not built yet".into()))
}
