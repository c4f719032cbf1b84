//! `newapi-ops scale N` / `scale --qps QPS` / `scale --undo`: sets the slave Deployment's replicas
//! through the `scale` subresource after a capacity preflight and a confirmation, follows the
//! rollout, and records the change for `--undo`. The work is in [`crate::scale`].

use clap::Args;

use crate::commands::GlobalArgs;
use crate::commands::flags::{RolloutWaitArgs, YesArg};
use crate::error::{Error, Result};
use crate::exit;
use crate::k8s;
use crate::printer::Printer;
use crate::scale::{
    DEFAULT_MAX_REPLICAS, DEFAULT_QPS_PER_POD, ScaleRequest, Target, check_replicas, execute_scale,
    slaves_for_qps,
};

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The number of slave replicas wanted, from 0 to --max-replicas.
    #[arg(
        value_name = "N",
        allow_hyphen_values = true,
        required_unless_present_any = ["qps", "undo"],
        conflicts_with_all = ["qps", "undo"]
    )]
    pub replicas: Option<String>,

    /// Pick N from a target throughput instead: N = QPS / --qps-per-pod, rounded up.
    #[arg(long, value_name = "QPS", conflicts_with = "undo")]
    pub qps: Option<u64>,

    /// Go back to the replica count before the last scale made by newapi-ops (recorded on the
    /// Deployment in the annotation newapi-ops.io/last-scale).
    #[arg(long)]
    pub undo: bool,

    #[command(flatten)]
    pub confirm: YesArg,

    /// Print the plan (capacity preflight, throughput, requests) and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub wait: RolloutWaitArgs,

    /// The largest replica count accepted.
    #[arg(long, value_name = "N", env = "NEWAPI_OPS_MAX_REPLICAS", default_value_t = DEFAULT_MAX_REPLICAS,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub max_replicas: i32,

    /// The throughput estimate per New-API pod, in QPS [default: `[capacity] qps_per_pod` of
    /// newapi-ops.toml (measured with `newapi-ops bench`), else the seed's figure, 1000].
    #[arg(long, value_name = "QPS", env = "NEWAPI_OPS_QPS_PER_POD",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub qps_per_pod: Option<u32>,
}

/// The target, validated before anything is asked of the cluster; `qps_per_pod` is the
/// resolved estimate (flag, config file, default).
fn target(args: &ScaleArgs, qps_per_pod: u32) -> Result<Target> {
    if args.undo {
        return Ok(Target::Undo);
    }
    if let Some(qps) = args.qps {
        let n = slaves_for_qps(qps, qps_per_pod);
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let what = format!("--qps {qps} (at ~{qps_per_pod} QPS per slave)");
        return check_replicas(n, args.max_replicas, &what).map(Target::Replicas);
    }
    let raw = args.replicas.as_deref().unwrap_or_default();
    let n: i64 = raw.trim().parse().map_err(|_| {
        Error::Usage(format!(
            "`{raw}` is not a replica count: give a whole number from 0 to {}",
            args.max_replicas
        ))
    })?;
    check_replicas(n, args.max_replicas, &format!("scale {n}")).map(Target::Replicas)
}

pub async fn run(global: &GlobalArgs, args: ScaleArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let (qps_per_pod, qps_source) = settings.qps_per_pod(args.qps_per_pod, DEFAULT_QPS_PER_POD);
    let target = target(&args, qps_per_pod)?;
    let kube = k8s::connect(&settings).await?;
    let req = ScaleRequest {
        deployment: settings.workloads.slave.name.clone(),
        target,
        qps_per_pod,
        qps_source,
        dry_run: args.dry_run,
        wait: args.wait.wait(),
        progress: true,
    };
    let confirm = crate::confirm::from_flags(args.confirm.yes);
    let mut report = execute_scale(
        &kube,
        &settings,
        &req,
        args.max_replicas,
        confirm.as_ref(),
        printer,
    )
    .await?;
    if printer.is_machine() {
        printer.data(&report, |_| String::new())?;
    }
    if let Some(e) = report.failure.take() {
        return Err(e);
    }
    Ok(if report.declined {
        exit::DECLINED
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> std::result::Result<ScaleArgs, clap::Error> {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: ScaleArgs,
        }
        let mut full = vec!["scale"];
        full.extend_from_slice(line);
        T::try_parse_from(full).map(|t| t.a)
    }

    /// The target as `run` resolves it with no config file.
    fn t(line: &[&str]) -> Result<Target> {
        let a = args(line).unwrap();
        target(&a, a.qps_per_pod.unwrap_or(DEFAULT_QPS_PER_POD))
    }

    #[test]
    fn replica_counts_are_validated_before_connecting() {
        assert_eq!(t(&["5"]).unwrap(), Target::Replicas(5));
        for bad in ["abc", "-1", "21", "2.5"] {
            let err = t(&[bad]).unwrap_err();
            assert_eq!(err.exit_code(), exit::USAGE, "{bad}: {err}");
        }
        assert_eq!(
            t(&["25", "--max-replicas", "30"]).unwrap(),
            Target::Replicas(25)
        );
    }

    #[test]
    fn qps_picks_the_count_as_the_seed_table() {
        assert_eq!(t(&["--qps", "5000"]).unwrap(), Target::Replicas(5));
        assert_eq!(
            t(&["--qps", "5000", "--qps-per-pod", "2000"]).unwrap(),
            Target::Replicas(3)
        );
        let err = t(&["--qps", "50000"]).unwrap_err();
        assert!(err.to_string().contains("--qps 50000"), "{err}");
    }

    #[test]
    fn exactly_one_target() {
        assert!(args(&[]).is_err());
        assert!(args(&["5", "--undo"]).is_err());
        assert!(args(&["5", "--qps", "100"]).is_err());
        assert_eq!(t(&["--undo"]).unwrap(), Target::Undo);
    }

    #[test]
    fn a_zero_timeout_is_refused_before_anything_happens() {
        let err = args(&["4", "--yes", "--timeout", "0"]).unwrap_err();
        assert!(err.to_string().contains("above zero"), "{err}");
        assert_eq!(
            args(&["4", "--timeout", "1h30m"]).unwrap().wait.timeout,
            std::time::Duration::from_secs(5400)
        );
    }
}
