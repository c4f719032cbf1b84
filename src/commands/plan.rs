//! `newapi-ops plan` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct PlanArgs {}

pub async fn run(_global: &GlobalArgs, _args: PlanArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("plan is not built yet".into()))
}
