//! `newapi-ops logs [master|slaves|mysql|redis|POD]`: the logs of every pod of a role merged into
//! one stream, each line prefixed with its pod (coloured per pod on a terminal), in time order
//! (the kubelet's timestamps), filtered with `--grep`, or followed live with `--follow`.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use kube::api::LogParams;

use crate::commands::GlobalArgs;
use crate::error::{Error, Result};
use crate::exit;
use crate::k8s;
use crate::logs::{self, Followed, LogLine};
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
    // Only each pod's name and role are kept as the pages of pods arrive.
    let (snap, named) = logs::named_pods(&kube, &settings).await?;
    crate::secrets::learn_with(printer.redactor(), &kube, &settings, &snap).await;
    let mut pods = logs::pods_of(&named, &settings, &args.target)?;
    drop(named);
    pods.sort();
    if pods.is_empty() {
        printer.warn(&format!(
            "no {} pods in namespace {}",
            args.target, settings.namespace
        ));
        return Ok(exit::OK);
    }
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
    let index: std::collections::HashMap<&str, usize> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let colour_of = |pod: &str| COLOURS[index.get(pod).copied().unwrap_or(0) % COLOURS.len()];
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
        // Lines are printed as they arrive, from every pod at once; a pod whose stream ends is
        // said once; losing the API server ends the command with its error.
        let mut followed = std::pin::pin!(logs::follow(&kube, &ns, &pods, &params));
        let mut ended = 0;
        while let Some(item) = followed.next().await {
            match item? {
                Followed::Line(l) if keep(&l.line) => printer.record(&l, |_| render(&l))?,
                Followed::Line(_) => {}
                Followed::PodEnded { pod, error } => {
                    ended += 1;
                    match error {
                        Some(e) => printer.warn(&format!("{pod}: {e}")),
                        None => printer.note(&format!(
                            "{pod}: the log stream ended (the container exited or the pod is gone)"
                        )),
                    }
                }
            }
        }
        if ended == pods.len() {
            printer.note("every log stream has ended; the API server still answers");
        }
        return Ok(exit::OK);
    }
    // The logs are spilled to private files and merged from them (logs::read_merged): the
    // human output is written a chunk at a time as the merge produces it, so memory does not
    // follow the number of lines; JSON and YAML are one document, so they hold the lines.
    let machine = printer.is_machine();
    let mut lines: Vec<LogLine> = Vec::new();
    let mut chunk = String::new();
    let (_, failures) = logs::read_merged(
        &kube,
        &ns,
        &pods,
        &params,
        logs::Bounds {
            concurrency: args.concurrency,
            fan_in: logs::fan_in(),
        },
        &keep,
        &mut |l| {
            if machine {
                lines.push(l);
            } else {
                chunk.push_str(&render(&l));
                if chunk.len() >= 64 * 1024 {
                    printer.text(&chunk)?;
                    chunk.clear();
                }
            }
            Ok(())
        },
    )
    .await?;
    for (pod, e) in &failures {
        printer.warn(&format!("{pod}: {e}"));
    }
    if failures.len() == pods.len() {
        return Err(logs::nothing_read(failures, args.previous));
    }
    if machine {
        printer.data(&lines, |_| String::new())?;
    } else {
        printer.text(&chunk)?;
    }
    Ok(exit::OK)
}
