//! `newapi-ops logs [master|slaves|mysql|redis|POD]`: the logs of every pod of a role merged into
//! one stream, each line prefixed with its pod (coloured per pod on a terminal), in time order
//! (the kubelet's timestamps), filtered with `--grep`, or followed live with `--follow`.

use std::time::Duration;

use clap::Args;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::config::Settings;
use crate::error::{Error, Result, exit};
use crate::inventory::{Role, Snapshot};
use crate::k8s::{self, Call};
use crate::printer::Printer;
use crate::units::parse_duration;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// master, slaves, mysql, redis, all, or a pod name.
    #[arg(default_value = "all")]
    pub target: String,
    /// The previous (crashed) container's log.
    #[arg(long, short = 'p')]
    pub previous: bool,
    /// Only lines newer than this (e.g. 10m, 1h).
    #[arg(long, value_parser = parse_duration)]
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

/// One log line of one pod.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub pod: String,
    /// The kubelet's RFC 3339 timestamp, when it sent one.
    pub time: Option<String>,
    pub line: String,
}

/// Splits the kubelet's `2025-11-13T10:00:00.123456789Z rest` prefix.
pub fn split_timestamp(raw: &str) -> (Option<&str>, &str) {
    match raw.split_once(' ') {
        Some((ts, rest))
            if ts.len() >= 20
                && ts.as_bytes()[4] == b'-'
                && ts.contains('T')
                && ts.parse::<jiff::Timestamp>().is_ok() =>
        {
            (Some(ts), rest)
        }
        _ => (None, raw),
    }
}

/// Merges per-pod logs into time order; lines without a timestamp keep their pod's order.
pub fn merge(mut per_pod: Vec<Vec<LogLine>>) -> Vec<LogLine> {
    let mut all: Vec<(Option<jiff::Timestamp>, usize, usize, LogLine)> = Vec::new();
    for (p, lines) in per_pod.iter_mut().enumerate() {
        let mut last = None;
        for (i, l) in lines.drain(..).enumerate() {
            let t = l
                .time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .or(last);
            last = t;
            all.push((t, p, i, l));
        }
    }
    all.sort_by_key(|a| (a.0, a.1, a.2));
    all.into_iter().map(|x| x.3).collect()
}

const COLOURS: [&str; 6] = ["36", "35", "32", "33", "34", "91"];

pub async fn run(global: &GlobalArgs, args: LogsArgs, printer: &Printer) -> Result<u8> {
    let settings = Settings::resolve(global)?;
    let grep = args
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| Error::Usage(format!("--grep: {e}")))?;
    let kube = k8s::connect(global).await?;
    let snap = Snapshot::load(&kube, &settings).await?;
    let role = match args.target.as_str() {
        "master" => Some(Some(Role::Master)),
        "slave" | "slaves" => Some(Some(Role::Slave)),
        "mysql" => Some(Some(Role::Mysql)),
        "redis" => Some(Some(Role::Redis)),
        "all" => Some(None),
        _ => None,
    };
    let mut pods: Vec<String> = match role {
        Some(role) => snap
            .pods
            .iter()
            .filter(|p| {
                let r = Snapshot::role_of(p, &settings);
                r.is_some() && (role.is_none() || r == role)
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect(),
        None => {
            let name = args.target.clone();
            if !snap
                .pods
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            {
                let mut there: Vec<String> = snap
                    .pods
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                there.sort();
                return Err(Error::WorkloadNotFound {
                    kind: "pod".into(),
                    name,
                    namespace: settings.namespace.clone(),
                    available: there,
                });
            }
            vec![name]
        }
    };
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
                            async move { l.ok().map(|l| to_line(&pod, &l)) }
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
    let fetched: Vec<(String, std::result::Result<String, kube::Error>)> =
        futures::stream::iter(pods.clone())
            .map(|pod| {
                let api = api.clone();
                let params = params.clone();
                async move {
                    let r = api.logs(&pod, &params).await;
                    (pod, r)
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
    let mut per_pod = Vec::new();
    let mut failures = 0;
    for (pod, r) in fetched {
        match r {
            Ok(text) => per_pod.push(
                text.lines()
                    .map(|l| to_line(&pod, l))
                    .filter(|l| keep(&l.line))
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                failures += 1;
                let e = kube.error(&Call::new("get", "pods/log", Some(&ns)), e);
                printer.warn(&format!("{pod}: {e}"));
            }
        }
    }
    if failures == pods.len() {
        return Err(Error::Api {
            call: format!("get pods/log in namespace \"{ns}\""),
            code: 0,
            message: "no pod's log could be read (see the warnings above)".into(),
        });
    }
    let lines = merge(per_pod);
    printer.data(&lines, |_| lines.iter().map(&render).collect())?;
    Ok(exit::OK)
}

fn to_line(pod: &str, raw: &str) -> LogLine {
    let (time, line) = split_timestamp(raw);
    LogLine {
        pod: pod.to_string(),
        time: time.map(str::to_string),
        line: line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_and_lines_merged_in_time_order() {
        assert_eq!(
            split_timestamp("2025-11-13T10:00:00.123456789Z [SYS] started"),
            (Some("2025-11-13T10:00:00.123456789Z"), "[SYS] started")
        );
        assert_eq!(
            split_timestamp("[GIN] 2025/11/13 - 10:00:00 | 200"),
            (None, "[GIN] 2025/11/13 - 10:00:00 | 200")
        );
        let a = vec![
            to_line("a", "2025-11-13T10:00:02Z a2"),
            to_line("a", "2025-11-13T10:00:04Z a4"),
        ];
        let b = vec![
            to_line("b", "2025-11-13T10:00:01Z b1"),
            to_line("b", "2025-11-13T10:00:03Z b3"),
            to_line("b", "no time b"),
        ];
        let merged: Vec<String> = merge(vec![a, b]).into_iter().map(|l| l.line).collect();
        assert_eq!(merged, ["b1", "a2", "b3", "no time b", "a4"]);
    }
}
