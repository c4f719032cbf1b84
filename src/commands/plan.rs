//! `newapi-ops plan [--qps 1000,3000,5000,10000]`: the seed's scaling table (扩展建议) computed
//! from the live Deployments' requests, with whether the cluster has room for each row now and
//! how many more nodes of the current size it would need. The work is in
//! [`crate::scale::table`].

use clap::Args;

use crate::commands::GlobalArgs;
use crate::error::Result;
use crate::exit;
use crate::k8s;
use crate::printer::Printer;
use crate::scale::table::{plan_table, render_plan_table};
use crate::scale::{ClusterView, DEFAULT_QPS_PER_POD};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Target throughputs, one row each (comma-separated).
    #[arg(
        long,
        value_name = "QPS,...",
        value_delimiter = ',',
        default_value = "1000,3000,5000,10000"
    )]
    pub qps: Vec<u64>,

    /// The throughput estimate per slave, in QPS [default: `[capacity] qps_per_pod` of
    /// newapi-ops.toml (measured with `newapi-ops bench`), else the seed's figure, 1000].
    #[arg(long, value_name = "QPS", env = "NEWAPI_OPS_QPS_PER_POD",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub qps_per_pod: Option<u32>,
}

pub async fn run(global: &GlobalArgs, args: PlanArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let view = ClusterView::load(&kube, &settings).await?;
    if let Some(why) = &view.capacity_unknown {
        printer.warn(&format!("room not checked: {why}"));
    }
    let (qps_per_pod, qps_source) = settings.qps_per_pod(args.qps_per_pod, DEFAULT_QPS_PER_POD);
    let mut report = plan_table(&view, &settings, &args.qps, qps_per_pod)?;
    report.qps_source = qps_source;
    printer.data(&report, |style| render_plan_table(&report, style, printer))?;
    Ok(exit::OK)
}
