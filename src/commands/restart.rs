//! `newapi-ops restart` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct RestartArgs {}

pub async fn run(_global: &GlobalArgs, _args: RestartArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("restart is not built yet".into()))
}
