//! `newapi-ops scale N` (being written).

use clap::Args;

use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct ScaleArgs {}

pub async fn run(_global: &GlobalArgs, _args: ScaleArgs, _printer: &Printer) -> Result<u8> {
    Err(Error::Internal("scale is not built yet".into()))
}
