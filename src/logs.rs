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

/// Each listed pod's name and role (None: not a pod of the deployment), what [`pods_of`] reads:
/// `logs` keeps only this of each pod while it lists them ([`named_pods`]).
pub type Named = (String, Option<Role>);

/// Lists the namespace's pods (and controllers), keeping only each pod's name and role.
pub async fn named_pods(kube: &Kube, settings: &Settings) -> Result<(Snapshot, Vec<Named>)> {
    kube.ensure_namespace(&settings.namespace).await?;
    let mut named = Vec::new();
    let snap = Snapshot::load_each(kube, settings, |p| {
        let role = Snapshot::role_of(&p, settings);
        if let Some(name) = p.metadata.name {
            named.push((name, role));
        }
        Ok(())
    })
    .await?;
    Ok((snap, named))
}

/// The pods `target` names: `master`, `slave(s)`, `mysql`, `redis`, `all` (every pod of the
/// deployment) or one pod's name (an error listing the pods when there is none of that name).
pub fn pods_of(pods: &[Named], settings: &Settings, target: &str) -> Result<Vec<String>> {
    let role = match target {
        "master" => Some(Some(Role::Master)),
        "slave" | "slaves" => Some(Some(Role::Slave)),
        "mysql" => Some(Some(Role::Mysql)),
        "redis" => Some(Some(Role::Redis)),
        "all" => Some(None),
        _ => None,
    };
    let pods: Vec<String> = match role {
        Some(role) => pods
            .iter()
            .filter(|(_, r)| r.is_some() && (role.is_none() || *r == role))
            .map(|(n, _)| n.clone())
            .collect(),
        None => {
            let name = target.to_string();
            if !pods.iter().any(|(n, _)| *n == name) {
                let mut there: Vec<String> = pods.iter().map(|(n, _)| n.clone()).collect();
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

/// Logs merged with bounded memory ([`read_merged`]): what the merge held and opened at most.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MergeStats {
    /// Pods whose log was read.
    pub pods: usize,
    /// Lines merged.
    pub lines: u64,
    /// Spill files written: one per pod with lines, plus one per intermediate merge.
    pub files: usize,
    /// k-way merges made (1 when every pod's file was merged at once; each intermediate file
    /// is one more).
    pub passes: usize,
    /// The most files open at once while merging (never above the fan-in).
    pub max_open: usize,
    /// The most lines held at once while merging (one per open file).
    pub max_held: usize,
}

/// How many spill files one merge pass reads at once: the bound on open files and held lines.
pub const FAN_IN: usize = 64;

/// The variable that changes [`FAN_IN`] (tests make several passes with few pods).
pub const FAN_IN_ENV: &str = "NEWAPI_OPS_LOGS_FAN_IN";

/// The bounds of [`read_merged`]: logs read at once, spill files merged at once.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub concurrency: usize,
    pub fan_in: usize,
}

/// [`FAN_IN`], or what [`FAN_IN_ENV`] says (at least 2).
pub fn fan_in() -> usize {
    std::env::var(FAN_IN_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(FAN_IN, |n| n.max(2))
}

/// Reads the logs of `pods` (at most `concurrency` at once) and hands `out` their lines (those
/// `keep` accepts) merged in time order, with memory bounded whatever the number of pods: each
/// log is cut into lines as it arrives and spilled to a file of its own in a private temporary
/// directory (0700, files 0600, removed at the end, also on error), then the files are merged
/// `fan_in` at a time — a k-way merge holding one line per open file; more files than that are
/// merged in passes through intermediate files. Returns what the merge held at most and the
/// error of each pod whose log could not be read.
pub async fn read_merged(
    kube: &Kube,
    namespace: &str,
    pods: &[String],
    params: &LogParams,
    bounds: Bounds,
    keep: &dyn Fn(&str) -> bool,
    out: &mut dyn FnMut(LogLine) -> Result<()>,
) -> Result<(MergeStats, Vec<(String, Error)>)> {
    let dir = spill::Dir::new()?;
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let mut fetched = futures::stream::iter(pods.iter().enumerate())
        .map(|(i, pod)| {
            let api = api.clone();
            let params = params.clone();
            async move { (i, api.logs(pod, &params).await) }
        })
        .buffer_unordered(bounds.concurrency.max(1));
    let mut runs: Vec<(usize, std::path::PathBuf)> = Vec::new();
    let mut failures = Vec::new();
    let mut stats = MergeStats::default();
    while let Some((i, r)) = fetched.next().await {
        match r {
            Ok(text) => {
                stats.pods += 1;
                let lines = text
                    .lines()
                    .map(|l| LogLine::parse(&pods[i], l))
                    .filter(|l| keep(&l.line));
                if let Some(path) = dir.spill(i, lines)? {
                    runs.push((i, path));
                }
            }
            Err(e) => {
                let e = kube.error(&Call::new("get", "pods/log", Some(namespace)), e);
                failures.push((pods[i].clone(), e));
            }
        }
    }
    drop(fetched);
    // In the order of `pods`: lines of one time keep the pods' order.
    runs.sort_by_key(|(i, _)| *i);
    stats.files = runs.len();
    let runs = runs.into_iter().map(|(_, p)| p).collect();
    dir.merge(runs, bounds.fan_in.max(2), &mut stats, &mut |rec| {
        out(LogLine {
            pod: pods.get(rec.pod).cloned().unwrap_or_default(),
            time: rec.time,
            line: rec.line,
        })
    })?;
    tracing::debug!(
        "logs: merged {} lines of {} pods through {} spill files in {} passes, at most {} files open and {} lines held at once",
        stats.lines,
        stats.pods,
        stats.files,
        stats.passes,
        stats.max_open,
        stats.max_held
    );
    Ok((stats, failures))
}

/// Spill files of log lines and their k-way merge.
mod spill {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::fs::File;
    use std::io::{BufRead, BufReader, BufWriter, Write};
    use std::path::{Path, PathBuf};

    use super::{LogLine, MergeStats};
    use crate::error::{Error, Result};

    /// One spilled line: its sort key (time, pod, position in the pod's log) and what is shown.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Rec {
        /// Nanoseconds since the epoch; None before the pod's first timestamped line.
        pub nanos: Option<i128>,
        pub pod: usize,
        pub seq: u64,
        pub time: Option<String>,
        pub line: String,
    }

    impl Rec {
        fn key(&self) -> (Option<i128>, usize, u64) {
            (self.nanos, self.pod, self.seq)
        }

        /// `nanos \t pod \t seq \t time \t line` (a log line has no newline; the first four
        /// fields no tab).
        fn write(&self, w: &mut impl Write) -> std::io::Result<()> {
            if let Some(n) = self.nanos {
                write!(w, "{n}")?;
            }
            writeln!(
                w,
                "\t{}\t{}\t{}\t{}",
                self.pod,
                self.seq,
                self.time.as_deref().unwrap_or(""),
                self.line
            )
        }

        fn parse(s: &str) -> Option<Rec> {
            let mut f = s.splitn(5, '\t');
            let nanos = f.next()?;
            let pod = f.next()?.parse().ok()?;
            let seq = f.next()?.parse().ok()?;
            let time = f.next()?;
            let line = f.next()?;
            Some(Rec {
                nanos: if nanos.is_empty() {
                    None
                } else {
                    Some(nanos.parse().ok()?)
                },
                pod,
                seq,
                time: (!time.is_empty()).then(|| time.to_string()),
                line: line.to_string(),
            })
        }
    }

    /// A private directory for the spill files, removed when dropped.
    pub struct Dir {
        dir: tempfile::TempDir,
        next: std::cell::Cell<usize>,
    }

    fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
        Error::io(
            format!("{what} {} (spilling logs to merge them)", path.display()),
            e,
        )
    }

    impl Dir {
        /// A fresh 0700 directory under the system's temporary directory.
        pub fn new() -> Result<Dir> {
            use std::os::unix::fs::PermissionsExt;
            // Created with this mode (not the umask's): no one else may list or read the lines.
            let dir = tempfile::Builder::new()
                .prefix("newapi-ops-logs-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(|e| io("creating a directory in", &std::env::temp_dir(), e))?;
            Ok(Dir {
                dir,
                next: std::cell::Cell::new(0),
            })
        }

        fn create(&self) -> Result<(PathBuf, BufWriter<File>)> {
            use std::os::unix::fs::OpenOptionsExt;
            let n = self.next.get();
            self.next.set(n + 1);
            let path = self.dir.path().join(format!("{n}.log"));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io("creating", &path, e))?;
            Ok((path, BufWriter::new(f)))
        }

        /// Writes pod `pod`'s lines (already in its log's order) to a file of their own; None
        /// when there are none. A line without a timestamp takes the time of the one before it.
        pub fn spill(
            &self,
            pod: usize,
            lines: impl Iterator<Item = LogLine>,
        ) -> Result<Option<PathBuf>> {
            let mut lines = lines.peekable();
            if lines.peek().is_none() {
                return Ok(None);
            }
            let (path, mut w) = self.create()?;
            let mut last = None;
            for (seq, l) in lines.enumerate() {
                let nanos = l
                    .time
                    .as_deref()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_nanosecond())
                    .or(last);
                last = nanos;
                let rec = Rec {
                    nanos,
                    pod,
                    seq: seq as u64,
                    time: l.time,
                    line: l.line,
                };
                rec.write(&mut w).map_err(|e| io("writing", &path, e))?;
            }
            w.flush().map_err(|e| io("writing", &path, e))?;
            Ok(Some(path))
        }

        /// Merges `runs` (each sorted) into `out`, at most `fan_in` open at once: while there
        /// are more, groups of `fan_in` are merged into intermediate files first.
        pub fn merge(
            &self,
            mut runs: Vec<PathBuf>,
            fan_in: usize,
            stats: &mut MergeStats,
            out: &mut dyn FnMut(Rec) -> Result<()>,
        ) -> Result<()> {
            while runs.len() > fan_in {
                let mut merged = Vec::new();
                for group in runs.chunks(fan_in) {
                    let (path, mut w) = self.create()?;
                    merge_into(group, stats, &mut |rec| {
                        rec.write(&mut w).map_err(|e| io("writing", &path, e))
                    })?;
                    w.flush().map_err(|e| io("writing", &path, e))?;
                    for done in group {
                        let _ = std::fs::remove_file(done);
                    }
                    merged.push(path);
                }
                stats.files += merged.len();
                runs = merged;
            }
            let mut lines = 0;
            merge_into(&runs, stats, &mut |rec| {
                lines += 1;
                out(rec)
            })?;
            stats.lines = lines;
            Ok(())
        }
    }

    /// One k-way merge pass: one line of each file is held, the smallest goes out next.
    fn merge_into(
        files: &[PathBuf],
        stats: &mut MergeStats,
        out: &mut dyn FnMut(Rec) -> Result<()>,
    ) -> Result<()> {
        stats.passes += 1;
        let mut readers = Vec::with_capacity(files.len());
        for path in files {
            let f = File::open(path).map_err(|e| io("opening", path, e))?;
            readers.push((path, BufReader::new(f).lines()));
        }
        stats.max_open = stats.max_open.max(readers.len());
        let next = |i: usize, readers: &mut Vec<(&PathBuf, std::io::Lines<BufReader<File>>)>| {
            let (path, r) = &mut readers[i];
            match r.next() {
                None => Ok(None),
                Some(Err(e)) => Err(io("reading", path, e)),
                Some(Ok(s)) => Rec::parse(&s).map(Some).ok_or_else(|| {
                    Error::Internal(format!(
                        "a spilled log line of {} is malformed",
                        path.display()
                    ))
                }),
            }
        };
        let mut heap = BinaryHeap::new();
        let mut held: Vec<Option<Rec>> = Vec::with_capacity(readers.len());
        for i in 0..readers.len() {
            let rec = next(i, &mut readers)?;
            if let Some(r) = &rec {
                heap.push(Reverse((r.key(), i)));
            }
            held.push(rec);
        }
        stats.max_held = stats.max_held.max(heap.len());
        while let Some(Reverse((_, i))) = heap.pop() {
            let rec = held[i]
                .take()
                .ok_or_else(|| Error::Internal("log merge out of step".into()))?;
            let following = next(i, &mut readers)?;
            if let Some(r) = &following {
                heap.push(Reverse((r.key(), i)));
            }
            held[i] = following;
            out(rec)?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn spilled_logs_merge_in_time_order_in_passes_of_the_fan_in() {
            let dir = Dir::new().unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.dir.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
            // Five pods, lines at t = pod + 5k: merged by time, then pod, then position.
            let mut runs = Vec::new();
            for pod in 0..5usize {
                let lines = (0..4).map(|k| {
                    LogLine::parse(
                        "p",
                        &format!("2025-11-13T10:00:{:02}Z p{pod} l{k}", pod + 5 * k),
                    )
                });
                let path = dir.spill(pod, lines).unwrap().unwrap();
                let fmode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(fmode & 0o777, 0o600);
                runs.push(path);
            }
            assert!(dir.spill(9, std::iter::empty()).unwrap().is_none());
            let mut stats = MergeStats::default();
            let mut got = Vec::new();
            dir.merge(runs, 2, &mut stats, &mut |r| {
                got.push(r.line);
                Ok(())
            })
            .unwrap();
            let want: Vec<String> = (0..4)
                .flat_map(|k| (0..5).map(move |pod| format!("p{pod} l{k}")))
                .collect();
            assert_eq!(got, want);
            assert_eq!(stats.lines, 20);
            assert_eq!(stats.max_open, 2);
            assert!(stats.max_held <= 2);
            // 5 files → 3 (three merges) → 2 (two) → the output (one): 6 merges.
            assert_eq!(stats.passes, 6);
        }
    }
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
