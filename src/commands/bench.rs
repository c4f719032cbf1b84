//! `newapi-ops bench [--url URL | --target master|slaves|all | --in-cluster --workers K]
//! [--duration 30s | --requests N] [--connections C] [--rate R] [--path /api/status]`: the
//! deployment notes' load test with the cluster watched meanwhile; `bench merge FILE...` merges
//! workers' results; `bench worker` (hidden) is what an in-cluster worker pod runs. The work is
//! in [`crate::bench`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::bench::client::Url;
use crate::bench::load::Stop;
use crate::bench::{self, BenchError, InCluster, Load, Options, Source};
use crate::commands::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit;
use crate::inventory::Role;
use crate::printer::Printer;
use crate::scale::DEFAULT_QPS_PER_POD;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub sub: Option<BenchSub>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchSub {
    /// Merge the results of workers (`bench worker` output, pod logs) into one report.
    Merge(MergeArgs),
    /// Run one worker's share of a load and print its result line (what --in-cluster pods run).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Which pods `--target` sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    Master,
    Slaves,
    All,
}

impl TargetArg {
    fn role(self) -> Option<Role> {
        match self {
            TargetArg::Master => Some(Role::Master),
            TargetArg::Slaves => Some(Role::Slave),
            TargetArg::All => None,
        }
    }
}

/// How much load: shared by the run and the worker.
#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// Run this long (e.g. 30s, 2m; at most 1h) [default: 30s, or 10m with --requests].
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = crate::units::parse_timeout)]
    pub duration: Option<Duration>,

    /// Stop after this many requests (or at --duration, whichever comes first).
    #[arg(short = 'N', long, value_name = "N")]
    pub requests: Option<u64>,

    /// Connections kept open at once (in-cluster: in total, split between the workers).
    #[arg(short = 'c', long, value_name = "C", default_value_t = 50)]
    pub connections: usize,

    /// Open loop at this many requests per second, latency measured from each request's
    /// intended send time (coordinated omission corrected, as wrk2); without it, closed loop.
    #[arg(short = 'r', long, value_name = "R")]
    pub rate: Option<f64>,

    /// A request without a complete response after this long counts as a timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::units::parse_timeout)]
    pub timeout: Duration,

    /// Threads of the load generator, each with its share of the connections (wrk's -t)
    /// [default: the number of CPUs].
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,
}

impl LoadArgs {
    fn load(&self) -> Load {
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => d,
            (None, Some(_)) => Duration::from_secs(600),
            (None, None) => Duration::from_secs(30),
        };
        Load {
            connections: self.connections,
            duration,
            requests: self.requests,
            rate: self.rate,
            timeout: self.timeout,
            threads: self.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Send the load to this URL (the NodePort, e.g. http://NODE:30000/api/status, or an Ingress).
    #[arg(long, value_name = "URL", conflicts_with_all = ["target", "in_cluster"])]
    pub url: Option<String>,

    /// Send it to the deployment's pods through port-forwards (limited by the API server).
    #[arg(long, value_enum, value_name = "PODS")]
    pub target: Option<TargetArg>,

    /// The path requested of the pods or the Service (a --url brings its own).
    #[arg(long, value_name = "PATH", default_value = "/api/status")]
    pub path: String,

    #[command(flatten)]
    pub load: LoadArgs,

    /// Send it from worker pods inside the cluster (a Job of the tool's image) to New-API's
    /// Service; the workers' histograms are merged into one report.
    #[arg(long)]
    pub in_cluster: bool,

    /// How many worker pods (--in-cluster).
    #[arg(long, value_name = "K", default_value_t = 2, requires = "in_cluster")]
    pub workers: u32,

    /// The newapi-ops image the workers run (--in-cluster).
    #[arg(long, value_name = "IMAGE", default_value = concat!("newapi-ops:", env!("CARGO_PKG_VERSION")), requires = "in_cluster")]
    pub image: String,

    /// CPU each worker pod requests (--in-cluster).
    #[arg(
        long,
        value_name = "CPU",
        default_value = "500m",
        requires = "in_cluster"
    )]
    pub worker_cpu: String,

    /// How long to wait for the workers beyond --duration (image pulls, scheduling).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = crate::units::parse_timeout, requires = "in_cluster")]
    pub worker_start_timeout: Duration,

    /// Do not watch the cluster (usage, restarts, logs) during the run.
    #[arg(long)]
    pub no_watch: bool,

    /// The capacity model to compare with, in QPS per pod [default: `[capacity] qps_per_pod`
    /// of newapi-ops.toml, else the seed's 1000].
    #[arg(long, value_name = "QPS", env = "NEWAPI_OPS_QPS_PER_POD",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub qps_per_pod: Option<u32>,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The URL to load (the Service, from inside the cluster).
    #[arg(long, value_name = "URL")]
    pub url: String,

    #[command(flatten)]
    pub load: LoadArgs,

    /// How many workers share the load.
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub workers: u32,

    /// This worker's index, 0 to K-1 (an Indexed Job sets it through the environment).
    #[arg(
        long,
        value_name = "I",
        env = "NEWAPI_OPS_WORKER_INDEX",
        default_value_t = 0
    )]
    pub index: u32,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Files holding a worker's output (its last NEWAPI-OPS-BENCH-RESULT line is read).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

impl RunArgs {
    /// Where the load goes, checked before anything is sent.
    fn source(&self) -> Result<Source> {
        if self.in_cluster {
            let usage = |m: String| Err(Error::from(BenchError::Usage(m)));
            if self.workers == 0 || self.workers > bench::MAX_WORKERS {
                return usage(format!(
                    "--workers {}: give 1 to {}",
                    self.workers,
                    bench::MAX_WORKERS
                ));
            }
            if self.load.connections < self.workers as usize {
                return usage(format!(
                    "--connections {} is fewer than --workers {}: each worker needs a connection",
                    self.load.connections, self.workers
                ));
            }
            if !crate::quantity::parse_cpu_millis(&self.worker_cpu).is_ok_and(|m| m > 0) {
                return usage(format!(
                    "--worker-cpu {:?}: give a CPU quantity above zero, e.g. 500m or 1",
                    self.worker_cpu
                ));
            }
            return Ok(Source::InCluster(InCluster {
                workers: self.workers,
                image: self.image.clone(),
                cpu: self.worker_cpu.clone(),
                start_timeout: self.worker_start_timeout,
                role: self.target.and_then(TargetArg::role),
            }));
        }
        if let Some(t) = self.target {
            return Ok(Source::PortForward(t.role()));
        }
        match &self.url {
            Some(u) => {
                let url = Url::parse(u).map_err(|e| BenchError::Usage(format!("--url {e}")))?;
                Ok(Source::Url(url))
            }
            None => Err(BenchError::Usage(
                "say where the load goes: --url URL (the NodePort, e.g. http://NODE:30000/api/status, or an Ingress), --target master|slaves|all (the pods, through port-forwards) or --in-cluster (worker pods hitting the Service)".into(),
            )
            .into()),
        }
    }

    fn options(&self, model: (u32, String), progress: bool) -> Result<Options> {
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            return Err(BenchError::Usage(format!(
                "--path {:?}: give a path starting with / and without spaces",
                self.path
            ))
            .into());
        }
        let opts = Options {
            source: self.source()?,
            path: self.path.clone(),
            load: self.load.load(),
            watch: !self.no_watch,
            progress,
            model_qps_per_pod: model.0,
            model_source: model.1,
        };
        opts.load.check()?;
        Ok(opts)
    }
}

/// Ctrl-C stops the load; the partial report is printed and the exit code is 130.
fn stop_on_ctrl_c(printer: &Printer) -> Arc<Stop> {
    let stop = Stop::new();
    let s = stop.clone();
    let p = printer.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            p.note("\ninterrupted: stopping the load, the report covers what ran");
            s.stop();
        }
        // A second Ctrl-C while cleaning up ends at once.
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(exit::INTERRUPTED));
        }
    });
    stop
}

pub async fn run(global: &GlobalArgs, args: BenchArgs, printer: &Printer) -> Result<u8> {
    match args.sub {
        Some(BenchSub::Worker(w)) => worker(w, printer).await,
        Some(BenchSub::Merge(m)) => merge(global, &m, printer),
        None => run_bench(global, &args.run, printer).await,
    }
}

async fn run_bench(global: &GlobalArgs, args: &RunArgs, printer: &Printer) -> Result<u8> {
    // Every value is checked before the settings are read or anything connects.
    args.source()?;
    args.load.load().check()?;
    let settings = global.settings()?;
    let model = settings.qps_per_pod(args.qps_per_pod, DEFAULT_QPS_PER_POD);
    let opts = args.options(model, !printer.quiet && !printer.is_machine())?;
    let kube = match crate::k8s::connect(&settings).await {
        Ok(k) => Some(k),
        Err(e) if matches!(opts.source, Source::Url(_)) => {
            if !args.no_watch {
                printer.note(&format!("the cluster is not watched: {e}"));
            }
            None
        }
        Err(e) => return Err(e),
    };
    let stop = stop_on_ctrl_c(printer);
    let mut report = bench::run(kube.as_ref(), &settings, &opts, stop, printer).await?;
    let failure = report.failure.take();
    printer.data(&report, |style| {
        bench::render::render(&report, style, printer)
    })?;
    if let Some(f) = failure {
        return Err(Error::from(f));
    }
    Ok(if report.interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

async fn worker(args: WorkerArgs, printer: &Printer) -> Result<u8> {
    let url = Url::parse(&args.url).map_err(|e| BenchError::Usage(format!("--url {e}")))?;
    let load = args.load.load();
    load.check()?;
    let stop = stop_on_ctrl_c(printer);
    printer.note(&format!(
        "bench worker {} of {}: {url}",
        args.index, args.workers
    ));
    let line = bench::run_worker(&url, &load, args.index, args.workers, stop).await?;
    printer.text(&format!("{line}\n"))?;
    Ok(exit::OK)
}

fn merge(global: &GlobalArgs, args: &MergeArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let (q, from) = settings.qps_per_pod(None, DEFAULT_QPS_PER_POD);
    let mut sources = Vec::new();
    for f in &args.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
        sources.push((f.display().to_string(), text));
    }
    let opts = Options {
        source: Source::PortForward(None),
        path: String::new(),
        load: Load {
            connections: 1,
            duration: Duration::from_secs(1),
            requests: None,
            rate: None,
            timeout: Duration::from_secs(1),
            threads: 1,
        },
        watch: false,
        progress: false,
        model_qps_per_pod: q,
        model_source: from,
    };
    let report = bench::merge_results(&sources, &opts)?;
    printer.data(&report, |style| {
        bench::render::render(&report, style, printer)
    })?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> std::result::Result<BenchArgs, clap::Error> {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: BenchArgs,
        }
        let mut full = vec!["bench"];
        full.extend_from_slice(line);
        T::try_parse_from(full).map(|t| t.a)
    }

    #[test]
    fn a_target_is_required_and_checked() {
        let a = args(&[]).unwrap();
        let e = a.run.source().unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("--url"), "{e}");
        let a = args(&["--url", "https://x/"]).unwrap();
        assert_eq!(a.run.source().unwrap_err().exit_code(), exit::USAGE);
        assert!(args(&["--url", "http://x/", "--target", "slaves"]).is_err());
        assert!(args(&["--url", "http://x/", "--in-cluster"]).is_err());
        assert!(
            args(&["--workers", "3"]).is_err(),
            "--workers needs --in-cluster"
        );
        let a = args(&["--in-cluster", "--workers", "3", "--target", "slaves"]).unwrap();
        assert!(
            matches!(a.run.source().unwrap(), Source::InCluster(ic) if ic.workers == 3 && ic.role == Some(Role::Slave))
        );
    }

    #[test]
    fn bounds_and_rates_are_validated_up_front() {
        for bad in [
            &["--url", "http://x/", "--connections", "0"][..],
            &["--url", "http://x/", "--rate", "0"],
            &["--url", "http://x/", "--rate=-3"],
            &["--url", "http://x/", "--requests", "0"],
            &["--url", "http://x/", "--duration", "2h"],
        ] {
            let a = args(bad).unwrap();
            let e = a.run.options((1000, "d".into()), false).unwrap_err();
            assert_eq!(e.exit_code(), exit::USAGE, "{bad:?}: {e}");
        }
        assert!(args(&["--url", "http://x/", "--duration", "0"]).is_err());
        let a = args(&["--url", "http://x/", "--requests", "100"]).unwrap();
        let o = a.run.options((1000, "d".into()), false).unwrap();
        assert_eq!(
            o.load.duration,
            Duration::from_secs(600),
            "a count is bounded in time too"
        );
        let a = args(&["--url", "http://x/"]).unwrap();
        assert_eq!(
            a.run
                .options((1000, "d".into()), false)
                .unwrap()
                .load
                .duration,
            Duration::from_secs(30)
        );
        let a = args(&["--target", "slaves", "--path", "api"]).unwrap();
        assert!(a.run.options((1000, "d".into()), false).is_err());
    }

    #[test]
    fn the_worker_and_merge_subcommands() {
        let a = args(&[
            "worker",
            "--url",
            "http://s:3000/",
            "--workers",
            "4",
            "--index",
            "2",
            "-c",
            "8",
        ])
        .unwrap();
        assert!(
            matches!(a.sub, Some(BenchSub::Worker(w)) if w.index == 2 && w.workers == 4 && w.load.connections == 8)
        );
        assert!(
            matches!(args(&["merge", "a", "b"]).unwrap().sub, Some(BenchSub::Merge(m)) if m.files.len() == 2)
        );
        assert!(args(&["merge"]).is_err());
    }
}
