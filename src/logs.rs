//! Pods' logs: which pods a target names (a role, `all`, or a pod), reading their logs with
//! bounded concurrency, and merging them into one stream in time order (the kubelet's
//! timestamps).

use std::time::Duration;

use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use serde::Serialize;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::inventory::{Role, Snapshot};
use crate::k8s::{Call, Kube};

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

/// Merges per-pod logs into time order; lines without a timestamp keep their pod's order (they
/// take the time of the line before them). Each pod's lines are consumed as they are moved, so
/// the lines are held once, not twice.
pub fn merge(per_pod: Vec<Vec<LogLine>>) -> Vec<LogLine> {
    let total: usize = per_pod.iter().map(Vec::len).sum();
    let mut all: Vec<(Option<jiff::Timestamp>, usize, usize, LogLine)> = Vec::with_capacity(total);
    for (p, lines) in per_pod.into_iter().enumerate() {
        let mut last = None;
        for (i, l) in lines.into_iter().enumerate() {
            let t = l
                .time
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .or(last);
            last = t;
            all.push((t, p, i, l));
        }
    }
    all.sort_unstable_by_key(|a| (a.0, a.1, a.2));
    all.into_iter().map(|x| x.3).collect()
}

impl LogLine {
    /// One raw line of `pod`'s log, its kubelet timestamp split off.
    pub fn parse(pod: &str, raw: &str) -> LogLine {
        let (time, line) = split_timestamp(raw);
        LogLine {
            pod: pod.to_string(),
            time: time.map(str::to_string),
            line: line.to_string(),
        }
    }
}

/// The pods `target` names: `master`, `slave(s)`, `mysql`, `redis`, `all` (every pod of the
/// deployment) or one pod's name (an error listing the pods when there is none of that name).
pub fn pods_of(snap: &Snapshot, settings: &Settings, target: &str) -> Result<Vec<String>> {
    let role = match target {
        "master" => Some(Some(Role::Master)),
        "slave" | "slaves" => Some(Some(Role::Slave)),
        "mysql" => Some(Some(Role::Mysql)),
        "redis" => Some(Some(Role::Redis)),
        "all" => Some(None),
        _ => None,
    };
    let pods: Vec<String> = match role {
        Some(role) => snap
            .pods
            .iter()
            .filter(|p| {
                let r = Snapshot::role_of(p, settings);
                r.is_some() && (role.is_none() || r == role)
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect(),
        None => {
            let name = target.to_string();
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
    Ok(pods)
}

/// Reads the logs of `pods` (at most `concurrency` at once), keeping the lines `keep` accepts;
/// returns the lines of each pod that could be read and the error of each that could not.
pub async fn read(
    kube: &Kube,
    namespace: &str,
    pods: &[String],
    params: &LogParams,
    concurrency: usize,
    keep: &dyn Fn(&str) -> bool,
) -> (Vec<Vec<LogLine>>, Vec<(String, Error)>) {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    // Each log is cut into lines (those `keep` accepts) as it arrives and its text dropped: at
    // most `concurrency` whole logs are held at once, whatever the number of pods.
    let mut fetched = futures::stream::iter(pods.iter().enumerate())
        .map(|(i, pod)| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let r = api.logs(pod, &params).await.map(|text| {
                    text.lines()
                        .map(|l| LogLine::parse(pod, l))
                        .filter(|l| keep(&l.line))
                        .collect::<Vec<_>>()
                });
                (i, r)
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut read: Vec<(usize, Vec<LogLine>)> = Vec::new();
    let mut failures = Vec::new();
    while let Some((i, r)) = fetched.next().await {
        match r {
            Ok(lines) => read.push((i, lines)),
            Err(e) => {
                let e = kube.error(&Call::new("get", "pods/log", Some(namespace)), e);
                failures.push((pods[i].clone(), e));
            }
        }
    }
    // In the order of `pods`, so that lines of one time keep the pods' order.
    read.sort_by_key(|(i, _)| *i);
    (read.into_iter().map(|(_, l)| l).collect(), failures)
}

/// The error when no pod's log could be read: that no pod has a previous container (for
/// `--previous`), else the first pod's error as it is (unreachable, RBAC, ...).
pub fn nothing_read(failures: Vec<(String, Error)>, previous: bool) -> Error {
    let no_previous = |e: &Error| {
        matches!(e, Error::Api { code: 400, message, .. }
            if message.contains("previous terminated container"))
    };
    if previous && !failures.is_empty() && failures.iter().all(|(_, e)| no_previous(e)) {
        return Error::NoPreviousLog {
            pods: failures.into_iter().map(|(p, _)| p).collect(),
        };
    }
    match failures.into_iter().next() {
        Some((_, e)) => e,
        None => Error::Internal("no pod to read a log from".into()),
    }
}

/// `logs --follow` asks the API server for its version this often while streaming…
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// …and gives up when one probe has no answer within this (a frozen or vanished server).
pub const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// What following produces: lines, then how it ended.
#[derive(Debug)]
pub enum Followed {
    Line(LogLine),
    /// One pod's stream could not be opened or broke off (`kubectl logs -f` ends the same way
    /// when a container exits).
    PodEnded {
        pod: String,
        error: Option<Error>,
    },
}

/// Follows the logs of `pods` at once, lines in arrival order. The stream ends with `Err` when
/// the API server stops answering (a probe every [`PROBE_EVERY`], each bounded by
/// [`PROBE_LIMIT`], and one more when every pod's stream has ended), so a vanished or frozen
/// server is an error, never a silent end or a hang.
pub fn follow(
    kube: &Kube,
    namespace: &str,
    pods: &[String],
    params: &LogParams,
) -> impl Stream<Item = Result<Followed>> + use<> {
    let api: Api<Pod> = Api::namespaced(kube.streaming.clone(), namespace);
    let (params, ns, for_pods) = (params.clone(), namespace.to_string(), kube.clone());
    let owned: Vec<String> = pods.to_vec();
    let per_pod = owned.into_iter().map(move |pod| {
        let (api, params, kube, ns) = (api.clone(), params.clone(), for_pods.clone(), ns.clone());
        async move {
            let call = Call::new("get", "pods/log", Some(&ns));
            match api.log_stream(&pod, &params).await {
                Ok(s) => {
                    let end_pod = pod.clone();
                    let lines = s.lines().map(move |l| match l {
                        Ok(l) => Ok(Followed::Line(LogLine::parse(&pod, &l))),
                        Err(e) => Err(Error::io(format!("reading the log of {pod}"), e)),
                    });
                    // A read error ends this pod's stream with that error; a clean end says so.
                    let ended = futures::stream::once(async move {
                        Ok(Followed::PodEnded {
                            pod: end_pod,
                            error: None,
                        })
                    });
                    lines
                        .take_while(|r| std::future::ready(r.is_ok()))
                        .chain(ended)
                        .boxed()
                }
                Err(e) => futures::stream::once(async move {
                    Ok(Followed::PodEnded {
                        pod,
                        error: Some(kube.error(&call, e)),
                    })
                })
                .boxed(),
            }
        }
    });
    let n = pods.len().max(1);
    let merged = futures::stream::iter(per_pod)
        .buffer_unordered(n)
        .flatten_unordered(None)
        .map(Some)
        .chain(futures::stream::once(async { None }));
    let probe = {
        let kube = kube.clone();
        futures::stream::unfold(kube, |kube| async move {
            tokio::time::sleep(PROBE_EVERY).await;
            let r = kube.alive(PROBE_LIMIT).await;
            Some((r, kube))
        })
        .filter_map(|r| std::future::ready(r.err()))
    };
    let last_check = kube.clone();
    // Lines and pod ends pass through; a failed probe ends everything with its error; when every
    // pod's stream has ended, one last probe says whether that was the server going away.
    futures::stream::select(merged.map(Ok), probe.map(Err))
        .scan(false, |done, item| {
            if *done {
                return std::future::ready(None);
            }
            let out = match item {
                Ok(Some(f)) => Some(Step::Item(f)),
                Ok(None) => {
                    *done = true;
                    Some(Step::AllEnded)
                }
                Err(e) => {
                    *done = true;
                    Some(Step::Lost(e))
                }
            };
            std::future::ready(out)
        })
        .then(move |step| {
            let kube = last_check.clone();
            async move {
                match step {
                    Step::Item(f) => Some(f),
                    Step::Lost(e) => Some(Err(e)),
                    Step::AllEnded => kube.alive(PROBE_LIMIT).await.err().map(Err),
                }
            }
        })
        .filter_map(std::future::ready)
}

enum Step {
    Item(Result<Followed>),
    AllEnded,
    Lost(Error),
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
            LogLine::parse("a", "2025-11-13T10:00:02Z a2"),
            LogLine::parse("a", "2025-11-13T10:00:04Z a4"),
        ];
        let b = vec![
            LogLine::parse("b", "2025-11-13T10:00:01Z b1"),
            LogLine::parse("b", "2025-11-13T10:00:03Z b3"),
            LogLine::parse("b", "no time b"),
        ];
        let merged: Vec<String> = merge(vec![a, b]).into_iter().map(|l| l.line).collect();
        assert_eq!(merged, ["b1", "a2", "b3", "no time b", "a4"]);
    }
}
