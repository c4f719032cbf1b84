//! `newapi-ops logs [master|slaves|mysql|redis|POD]`: the logs of every pod of a role merged into
//! one stream, each line prefixed with its pod (coloured per pod on a terminal), in time order
//! (the kubelet's timestamps), filtered with `--grep`, or followed live with `--follow`.

use std::time::Duration;

use clap::Args;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

use crate::commands::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit;
use crate::inventory::Snapshot;
use crate::k8s::{self, Call};
use crate::logs::{self, LogLine};
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// master, slaves, mysql, redis, all, or a pod name.
    #[arg(default_value = "all")]
    pub target: String,
    /// The previous (crashed) container's log.
    #[arg(long, short = 'p')]
    pub previous: bool,
    /// Only lines newer than this (e.g. 10m, 1h).
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub since: Option<Duration>,
    /// The last N lines of each pod.
    #[arg(long, default_value_t = 100)]
    pub tail: i64,
    /// Only lines matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub grep: Option<String>,
    /// Keep streaming new lines.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Keep the kubelet's timestamp at the start of each line.
    #[arg(long)]
    pub timestamps: bool,
    /// How many pods are read at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

const COLOURS: [&str; 6] = ["36", "35", "32", "33", "34", "91"];

pub async fn run(global: &GlobalArgs, args: LogsArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let grep = args
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| Error::Usage(format!("--grep: {e}")))?;
    let kube = k8s::connect(&settings).await?;
    let snap = Snapshot::load(&kube, &settings).await?;
    crate::secrets::learn_with(printer.redactor(), &kube, &settings, &snap).await;
    let mut pods = logs::pods_of(&snap, &settings, &args.target)?;
    pods.sort();
    if pods.is_empty() {
        printer.warn(&format!(
            "no {} pods in namespace {}",
            args.target, settings.namespace
        ));
        return Ok(exit::OK);
    }
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), &settings.namespace);
    let params = LogParams {
        previous: args.previous,
        since_seconds: args
            .since
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)),
        tail_lines: (args.tail >= 0).then_some(args.tail),
        timestamps: true,
        follow: args.follow,
        ..Default::default()
    };
    let width = pods.iter().map(String::len).max().unwrap_or(0);
    let style = printer.style;
    let colour_of =
        |pod: &str| COLOURS[pods.iter().position(|p| p == pod).unwrap_or(0) % COLOURS.len()];
    let render = |l: &LogLine| -> String {
        let prefix = format!("{:<width$}", l.pod);
        let prefix = if style.color {
            format!("\x1b[{}m{prefix}\x1b[0m", colour_of(&l.pod))
        } else {
            prefix
        };
        match (&l.time, args.timestamps) {
            (Some(t), true) => format!("{prefix} {t} {}\n", l.line),
            _ => format!("{prefix} {}\n", l.line),
        }
    };
    let keep = |line: &str| grep.as_ref().is_none_or(|g| g.is_match(line));
    let ns = settings.namespace.clone();
    if args.follow {
        // Lines are printed as they arrive, from every pod at once.
        let streams = pods.iter().map(|pod| {
            let api = api.clone();
            let params = params.clone();
            let pod = pod.clone();
            let kube = kube.clone();
            let ns = ns.clone();
            async move {
                match api.log_stream(&pod, &params).await {
                    Ok(s) => s
                        .lines()
                        .filter_map(move |l| {
                            let pod = pod.clone();
                            async move { l.ok().map(|l| LogLine::parse(&pod, &l)) }
                        })
                        .boxed(),
                    Err(e) => {
                        let err = kube.error(&Call::new("get", "pods/log", Some(&ns)), e);
                        futures::stream::once(async move {
                            LogLine {
                                pod: "newapi-ops".into(),
                                time: None,
                                line: format!("error: {err}"),
                            }
                        })
                        .boxed()
                    }
                }
            }
        });
        let mut merged = futures::stream::iter(streams)
            .buffer_unordered(pods.len().max(1))
            .flatten_unordered(None);
        while let Some(l) = merged.next().await {
            if keep(&l.line) {
                printer.record(&l, |_| render(&l))?;
            }
        }
        return Ok(exit::OK);
    }
    let (per_pod, failures) = logs::read(&kube, &ns, &pods, &params, args.concurrency, &keep).await;
    for (pod, e) in &failures {
        printer.warn(&format!("{pod}: {e}"));
    }
    if failures.len() == pods.len() {
        return Err(Error::Api {
            call: format!("get pods/log in namespace \"{ns}\""),
            code: 0,
            message: "no pod's log could be read (see the warnings above)".into(),
        });
    }
    let lines = logs::merge(per_pod);
    printer.data(&lines, |_| lines.iter().map(&render).collect())?;
    Ok(exit::OK)
}
