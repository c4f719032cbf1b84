//! `newapi-ops bench` against local HTTP servers of the test's own (a fixed delay, one that
//! stalls, one answering 429/500, one closing connections), all on loopback and every load
//! bounded by a request count; `bench worker` + `bench merge` with the real binary; and the
//! sandbox: the pods through port-forwards with the cluster watched, and `--in-cluster`'s Jobs as
//! the real API server and Job controller take them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Done, Run, closed_port, private_sandbox, sandbox};

/// How a test server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 after this delay.
    Delay(Duration),
    /// 200 at once, but request number `at` (counted over all connections) stalls the whole
    /// server for `stall`, as a GC pause or a full connection pool would.
    Stall { at: u64, stall: Duration },
    /// 200, 429, 500 in turn (counted over all connections).
    Statuses,
    /// 200, then the connection is closed after every second response without saying so.
    Closing,
}

/// Starts a server on 127.0.0.1 on a thread of its own; returns its URL for /api/status. It
/// lives as long as the test process.
fn server(b: Behaviour) -> String {
    counted_server(b).0
}

/// [`server`], with the count of requests it has read so far.
fn counted_server(b: Behaviour) -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let count = counted;
            let gate = Arc::new(tokio::sync::Mutex::new(()));
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let (count, gate) = (count.clone(), gate.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut served_here = 0u64;
                    loop {
                        // One request: up to the blank line (GETs have no body).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        let status = match b {
                            Behaviour::Delay(d) => {
                                tokio::time::sleep(d).await;
                                "200 OK"
                            }
                            Behaviour::Stall { at, stall } => {
                                let _held = gate.lock().await;
                                if n == at {
                                    tokio::time::sleep(stall).await;
                                }
                                "200 OK"
                            }
                            Behaviour::Statuses => match n % 3 {
                                0 => "200 OK",
                                1 => "429 Too Many Requests",
                                _ => "500 Internal Server Error",
                            },
                            Behaviour::Closing => "200 OK",
                        };
                        let body = r#"{"success":true}"#;
                        let resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                        served_here += 1;
                        if matches!(b, Behaviour::Closing) && served_here.is_multiple_of(2) {
                            return;
                        }
                    }
                });
            }
        });
    });
    (format!("http://127.0.0.1:{port}/api/status"), count)
}

fn bench(args: &[&str]) -> (Value, i32, String) {
    let mut full = vec!["bench", "--no-watch", "-o", "json"];
    full.extend_from_slice(args);
    let done = Run::new(full).output();
    let v = serde_json::from_str(&done.stdout).unwrap_or(Value::Null);
    (v, done.code, done.stderr)
}

/// `bench ARGS -o json` on the sandbox, the cluster watched.
fn watched(args: &[&str]) -> Done {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.extend(["-o", "json"]);
    Run::new(full).admin().output()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// requests = responses + errors, and the responses are the status counts.
#[track_caller]
fn counts_add_up(r: &Value) {
    let statuses: u64 = r["status"].as_object().unwrap().values().map(n).sum();
    let errors: u64 = r["errors"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&r["responses"]), statuses, "{r:#}");
    assert_eq!(n(&r["requests"]), statuses + errors, "{r:#}");
}

#[test]
fn closed_loop_counts_add_up_and_the_median_is_the_servers_delay() {
    let url = server(Behaviour::Delay(Duration::from_millis(20)));
    let (r, code, err) = bench(&["--url", &url, "--requests", "200", "-c", "4"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["mode"], "closed");
    assert_eq!(n(&r["requests"]), 200, "{r:#}");
    assert_eq!(n(&r["status"]["200"]), 200);
    assert!(r["errors"].as_object().unwrap().is_empty(), "{r:#}");
    counts_add_up(&r);
    assert_eq!(
        n(&r["connections_opened"]),
        4,
        "keep-alive: one connection each"
    );
    let p50 = r["latency"]["p50_ms"].as_f64().unwrap();
    let max = r["latency"]["max_ms"].as_f64().unwrap();
    // The delay is the floor; the slack above it is generous (a shared machine), not a limit
    // on how long the test takes.
    assert!((19.9..100.0).contains(&p50), "p50 {p50}");
    assert!(max >= p50);
    assert!(r["latency"]["p99.9_ms"].as_f64().unwrap() >= p50);
}

#[test]
fn statuses_of_every_kind_are_counted() {
    let url = server(Behaviour::Statuses);
    let (r, code, err) = bench(&["--url", &url, "--requests", "300", "-c", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["status"]["200"]), 100, "{r:#}");
    assert_eq!(n(&r["status"]["429"]), 100);
    assert_eq!(n(&r["status"]["500"]), 100);
    counts_add_up(&r);
    // Human output names them too.
    let done = Run::new([
        "bench",
        "--no-watch",
        "--url",
        &url,
        "--requests",
        "30",
        "-c",
        "1",
    ])
    .output();
    done.code(0).stdout_has("429: 10").stdout_has("500: 10");
}

#[test]
fn a_server_that_closes_connections_costs_errors_and_reconnects() {
    let url = server(Behaviour::Closing);
    let (r, code, err) = bench(&["--url", &url, "--requests", "200", "-c", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n(&r["requests"]), 200, "{r:#}");
    counts_add_up(&r);
    assert!(n(&r["errors"]["closed"]) > 0, "{r:#}");
    assert!(n(&r["status"]["200"]) > 100, "{r:#}");
    assert!(n(&r["connections_opened"]) > 2, "{r:#}");
}

#[test]
fn the_open_loop_records_a_stall_that_the_closed_loop_hides() {
    let stall = Duration::from_millis(500);
    // Open loop: 200 requests/s for 3 s; request 100 stalls the server for 500 ms, which
    // delays every request due meanwhile — their latency counts from when they were due.
    let url = server(Behaviour::Stall { at: 100, stall });
    let (open, code, err) = bench(&["--url", &url, "--rate", "200", "-d", "3s", "-c", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(open["mode"], "open");
    counts_add_up(&open);
    let (p99, max) = (
        open["latency"]["p99_ms"].as_f64().unwrap(),
        open["latency"]["max_ms"].as_f64().unwrap(),
    );
    assert!(max >= 500.0, "the stall itself: max {max}");
    assert!(
        p99 >= 250.0,
        "the requests it held back: p99 {p99}\n{open:#}"
    );
    assert!(
        n(&open["requests"]) >= 550,
        "the schedule was kept: {open:#}"
    );
    // Closed loop against the same kind of server: only the 2 requests in flight see it.
    let url = server(Behaviour::Stall { at: 100, stall });
    let (closed, code, err) = bench(&["--url", &url, "--requests", "600", "-c", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(closed["latency"]["max_ms"].as_f64().unwrap() >= 500.0);
    assert!(
        closed["latency"]["p99_ms"].as_f64().unwrap() < p99,
        "closed loop p99 {} vs open loop {p99}",
        closed["latency"]["p99_ms"]
    );
}

#[test]
fn nothing_listening_is_unavailable_and_bad_values_are_refused_first() {
    let url = format!("http://127.0.0.1:{}/api/status", closed_port());
    let (r, code, err) = bench(&["--url", &url, "--requests", "20", "-c", "2"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("nothing answered"), "{err}");
    assert_eq!(
        n(&r["errors"]["connect"]),
        20,
        "the report is printed too: {r:#}"
    );
    for bad in [
        &["--url", url.as_str(), "--rate", "0"][..],
        &["--url", url.as_str(), "-c", "0"],
        &["--url", url.as_str(), "-d", "2h"],
        &["--url", "https://example.com/"],
        &[],
        // --in-cluster's values too, before any cluster is asked (there is none here).
        &["--in-cluster", "--workers", "0"],
        &["--in-cluster", "--workers", "101"],
        &["--in-cluster", "--workers", "4", "-c", "2"],
        &["--in-cluster", "--worker-cpu", "lots"],
        &["--in-cluster", "--worker-cpu", "0"],
    ] {
        let (_, code, err) = bench(bad);
        assert_eq!(code, 64, "{bad:?}: {err}");
    }
}

#[test]
fn workers_results_from_the_real_binary_merge_into_one_report() {
    let url = server(Behaviour::Delay(Duration::from_millis(10)));
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..2 {
        let done = Run::new([
            "bench",
            "worker",
            "--url",
            &url,
            "--requests",
            "101",
            "-c",
            "4",
            "--workers",
            "2",
        ])
        .env("NEWAPI_OPS_WORKER_INDEX", i.to_string())
        .output();
        done.code(0).stdout_has("NEWAPI-OPS-BENCH-RESULT ");
        let f = dir.path().join(format!("worker-{i}.log"));
        // As in a pod's log: the worker's notes (stderr) before the result line.
        std::fs::write(&f, format!("{}{}", done.stderr, done.stdout)).unwrap();
        files.push(f);
    }
    let mut args = vec![
        "bench".to_string(),
        "merge".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let done = Run::new(args).output();
    done.code(0);
    let r = done.json();
    assert_eq!(n(&r["requests"]), 101, "51 + 50: {r:#}");
    assert_eq!(n(&r["status"]["200"]), 101);
    counts_add_up(&r);
    assert_eq!(n(&r["connections_opened"]), 4, "2 + 2");
    assert_eq!(r["endpoints"].as_array().unwrap().len(), 2, "{r:#}");
    let p50 = r["latency"]["p50_ms"].as_f64().unwrap();
    assert!(p50 >= 9.9, "{p50}");
    // A file without a result is refused, named.
    let bad = dir.path().join("bad.log");
    std::fs::write(&bad, "just a log\n").unwrap();
    let done = Run::new(["bench", "merge", bad.to_str().unwrap()]).output();
    done.code(65).stderr_has("bad.log");
}

#[test]
fn the_slaves_through_port_forwards_with_the_cluster_watched() {
    let sb = sandbox();
    let done = watched(&["--target", "slaves", "--requests", "60", "-c", "3"]);
    done.code(0).stderr_has("port-forwards");
    let r = done.json();
    counts_add_up(&r);
    assert_eq!(n(&r["requests"]), 60, "{r:#}");
    assert_eq!(n(&r["status"]["200"]), 60, "{r:#}");
    let endpoints = r["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3, "one per slave pod: {r:#}");
    let pods = r["cluster"]["pods"].as_array().unwrap();
    let slaves: Vec<&Value> = pods.iter().filter(|p| p["role"] == "slave").collect();
    assert_eq!(slaves.len(), 3, "{r:#}");
    // The stand-in logs a [GIN] line per request: the pods' own count of what they served
    // (the kubelet's probes of /api/status, every 10 s, count too, as with New-API itself).
    let served: u64 = slaves
        .iter()
        .map(|p| {
            p["served"]
                .as_object()
                .unwrap()
                .values()
                .map(n)
                .sum::<u64>()
        })
        .sum();
    assert!((60..=80).contains(&served), "{served}: {r:#}");
    // Each pod logged at least what its port-forward got answered, and only lines of this run
    // count: the probes during it, not the requests of an earlier run.
    for p in &slaves {
        let answered = endpoints
            .iter()
            .find(|e| {
                e["endpoint"].as_str() == Some(&format!("pod/{}", p["pod"].as_str().unwrap()))
            })
            .map_or(0, |e| n(&e["responses"]));
        let logged = n(&p["served"]["200"]);
        assert!(answered > 0, "{r:#}");
        assert!(
            (answered..=answered + 10).contains(&logged),
            "{} answered {answered}, logged {logged}: {r:#}",
            p["pod"]
        );
    }
    for p in &slaves {
        assert_eq!(p["restarts_during"], 0);
        assert!(n(&p["cpu_limit_millis"]) > 0, "the seed's limits: {p:#}");
    }
    if sb.metrics.is_some() {
        // Sampled under the load (the last sample is taken as it stops), against the limits.
        for p in &slaves {
            assert!(n(&p["samples"]) >= 1, "{p:#}");
            assert!(n(&p["cpu_max_millis"]) > 0, "{p:#}");
            assert!(n(&p["memory_max_bytes"]) > 0, "{p:#}");
            assert!(n(&p["memory_limit_bytes"]) > 0, "{p:#}");
        }
        let human = Run::new(["bench", "--target", "slaves", "--requests", "30", "-c", "3"])
            .admin()
            .output();
        human.code(0).stdout_has("% of limit)");
    }
    let cap = &r["capacity"];
    assert_eq!(
        cap["is_capacity"], false,
        "not through port-forwards: {cap:#}"
    );
    assert!(cap["verdict"].as_str().unwrap().contains("port-forward"));
    assert!(cap["config"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn in_cluster_workers_run_as_real_containers_merge_and_are_cleaned_up() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};

    // A sandbox of its own: the workers' pods request CPU and memory, which would move the
    // seed's totals that other tests read.
    let sb = private_sandbox("bench");
    let sb2 = sb.clone();
    let done = tokio::task::spawn_blocking(move || {
        Run::new([
            "bench",
            "--in-cluster",
            "--workers",
            "2",
            "-c",
            "4",
            "-d",
            "1s",
            "--worker-start-timeout",
            "5s",
            "--worker-cpu",
            "10m",
            "-o",
            "json",
        ])
        .admin_of(&sb2)
        .output()
    })
    .await
    .unwrap();
    // The sandbox runs the workers' pods as real containers of the tool's image: each worker
    // loads the Service from inside, reports its histogram, and the coordinator merges them.
    done.code(0);
    let r = done.json();
    let merged = r["requests"].as_u64().unwrap();
    assert!(merged > 0, "{r:#}");
    let ic = &r["in_cluster"];
    assert_eq!(
        ic["service_url"],
        "http://new-api.new-api.svc:3000/api/status"
    );
    // The 1.20 server drops completionMode from a dry-run create: one Job per worker.
    assert_eq!(ic["job_mode"], "job-per-worker", "{ic:#}");
    let jobs: Vec<&str> = ic["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 2);
    let workers = ic["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["index"], i);
        assert!(
            w["pod"].as_str().is_some_and(|p| p.starts_with(jobs[i])),
            "the Job controller made its pod: {w:#}"
        );
        assert_eq!(w["phase"], "Succeeded", "{w:#}");
    }
    let per_worker: u64 = workers
        .iter()
        .map(|w| w["responses"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_worker,
        r["responses"].as_u64().unwrap(),
        "the merged report is the sum of the workers"
    );
    // Nothing of the run is left: the Jobs are gone, and their pods follow.
    let kc = kube::config::Kubeconfig::read_from(&sb.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let run = jobs[0]
        .trim_start_matches("newapi-ops-bench-")
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let lp = ListParams::default().labels(&format!("newapi-ops.io/bench-run={run}"));
    let job_api: Api<Job> = Api::namespaced(client.clone(), "new-api");
    let pod_api: Api<Pod> = Api::namespaced(client, "new-api");
    let mut left = (usize::MAX, usize::MAX);
    for _ in 0..120 {
        left = (
            job_api.list(&lp).await.unwrap().items.len(),
            pod_api.list(&lp).await.unwrap().items.len(),
        );
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(left, (0, 0), "Jobs and pods of the run left behind");
}

/// Ctrl-C (a real SIGINT) in the middle of a long run stops the load and prints the report of
/// what ran, with exit 130; in JSON and for people.
#[test]
fn ctrl_c_prints_the_partial_report() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    for json in [true, false] {
        let (url, count) = counted_server(Behaviour::Delay(Duration::from_millis(5)));
        let mut args = vec!["bench", "--no-watch", "--url", &url, "-d", "10m", "-c", "2"];
        if json {
            args.extend(["-o", "json"]);
        }
        let mut child = Command::new(crate::support::bin())
            .args(&args)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Well into the run (the server has answered some), and the process still runs.
        while count.load(Ordering::SeqCst) < 50 {
            assert!(child.try_wait().unwrap().is_none(), "bench ended by itself");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The server counts a request when it reads it: with 2 connections, each with at most one
        // request in flight, all but 2 of those read before the signal had been answered.
        let answered_before = count.load(Ordering::SeqCst) - 2;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{err}\n{out}");
        assert!(err.contains("interrupted: stopping the load"), "{err}");
        if json {
            let r: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(r["interrupted"], true, "{r:#}");
            counts_add_up(&r);
            assert!(
                n(&r["responses"]) >= answered_before,
                "at least {answered_before} answered before the signal: {r:#}"
            );
            assert!(n(&r["responses"]) <= count.load(Ordering::SeqCst), "{r:#}");
            assert!(r["elapsed_s"].as_f64().unwrap() < 600.0, "{r:#}");
            assert!(r["latency"]["p50_ms"].as_f64().unwrap() >= 4.9, "{r:#}");
        } else {
            assert!(out.contains("interrupted: partial results"), "{out}");
            assert!(out.contains("p99"), "{out}");
        }
    }
}

/// The figure `bench` measures is the one `plan` and `scale --qps` plan with: the `[capacity]`
/// lines it prints, put in a config file as it says, change their slave counts, and they say
/// where the figure comes from.
#[test]
fn a_measured_capacity_goes_from_bench_to_plan_and_scale() {
    sandbox();
    // Two requests in three fail (429, 500): the server is the limit, so the figure is a
    // capacity and bench prints the lines to keep.
    let url = server(Behaviour::Statuses);
    let done = watched(&["--url", &url, "--requests", "300", "-c", "3"]);
    done.code(0);
    let r = done.json();
    let cap = &r["capacity"];
    assert_eq!(cap["saturated_by"], "errors", "{cap:#}");
    assert_eq!(cap["is_capacity"], true, "{cap:#}");
    let config = cap["config"].as_str().expect("the [capacity] lines");
    let measured = cap["measured_qps_per_pod"].as_f64().unwrap();
    let q: u64 = config
        .lines()
        .find_map(|l| l.strip_prefix("qps_per_pod = "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("qps_per_pod in {config}"));
    #[allow(clippy::cast_precision_loss)]
    let off = (q as f64 - measured.max(1.0)).abs();
    assert!(off <= 0.5, "{q} is the measured {measured}, rounded");
    // Human output says it too.
    let human = Run::new(["bench", "--url", &url, "--requests", "30", "-c", "1"])
        .admin()
        .output();
    human
        .code(0)
        .stdout_has("[capacity]")
        .stdout_has("qps_per_pod = ");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("newapi-ops.toml");
    std::fs::write(&file, format!("{config}\n")).unwrap();
    let file = file.to_str().unwrap();

    // plan: 5×q QPS takes 5 slaves at the measured figure (the notes' 1000 would say otherwise
    // for any q but 1000), and the source is named.
    let target = (5 * q).to_string();
    let plan = Run::new(["plan", "--qps", &target, "--config", file, "-o", "json"])
        .admin()
        .output();
    plan.code(0);
    let p = plan.json();
    assert_eq!(n(&p["qps_per_pod"]), q, "{p:#}");
    assert_eq!(n(&p["rows"][0]["slaves"]), 5, "{p:#}");
    let source = p["qps_source"].as_str().unwrap();
    assert!(
        source.contains("[capacity] in")
            && source.contains(file)
            && source.contains("by newapi-ops bench"),
        "{source}"
    );
    Run::new(["plan", "--qps", &target, "--config", file])
        .admin()
        .output()
        .code(0)
        .stdout_has(&format!(
            "~{q} QPS per slave ([capacity] in {file}, measured "
        ));
    // The flag still wins over the file.
    let flag = Run::new([
        "plan",
        "--qps",
        &target,
        "--config",
        file,
        "--qps-per-pod",
        "1",
        "-o",
        "json",
    ])
    .admin()
    .output()
    .json();
    assert_eq!(n(&flag["qps_per_pod"]), 1);
    assert_eq!(flag["qps_source"], "--qps-per-pod");

    // scale --qps: the same count, as a dry run (nothing changes on the shared sandbox).
    let scale = Run::new([
        "scale",
        "--qps",
        &target,
        "--dry-run",
        "--config",
        file,
        "-o",
        "json",
    ])
    .admin()
    .output();
    scale.code(0);
    let s = scale.json();
    assert_eq!(n(&s["plan"]["qps_per_pod"]), q, "{s:#}");
    assert_eq!(n(&s["plan"]["to"]), 5, "{s:#}");
    assert!(
        s["plan"]["qps_source"]
            .as_str()
            .unwrap()
            .contains("[capacity] in"),
        "{s:#}"
    );
    Run::new(["scale", "--qps", &target, "--dry-run", "--config", file])
        .admin()
        .output()
        .code(0)
        .stdout_has(&format!("~{q} QPS per New-API pod ([capacity] in {file}"));
}

/// `bench ARGS -o json` on `sb` again until some response has `status` (a fault takes a moment
/// to show), at most 50 times; the last report.
async fn bench_until(sb: &crate::support::Sandbox, args: &[&str], status: &str) -> Value {
    let mut full: Vec<String> = ["bench", "-o", "json"].map(String::from).to_vec();
    full.extend(args.iter().map(|a| (*a).to_string()));
    let mut r = Value::Null;
    for _ in 0..50 {
        let (sb, full) = (sb.clone(), full.clone());
        let done = tokio::task::spawn_blocking(move || Run::new(full).admin_of(&sb).output())
            .await
            .unwrap();
        done.code(0);
        r = done.json();
        if n(&r["status"][status]) > 0 {
            break;
        }
    }
    assert!(n(&r["status"][status]) > 0, "no {status} came: {r:#}");
    r
}

/// What the notes say to watch during a load test, caused for real on a sandbox of its own:
/// a slave that answers 429 (its [GIN] lines say so), Redis killed (the pods' `Redis ping test
/// failed` lines are the redis-ping-failed signature), and a slave OOMKilled during the run
/// (its restart, the termination reason, and `out of memory` from the log of the container
/// before the restart).
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_redis_down_and_oom_kills_during_the_run_are_reported() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, Patch, PatchParams};

    let sb = private_sandbox("bench-faults");
    let kc = kube::config::Kubeconfig::read_from(&sb.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), "new-api");
    let slaves = pods
        .list(&ListParams::default().labels("app=new-api,role=slave"))
        .await
        .unwrap();
    let limited = slaves.items[0].metadata.name.clone().unwrap();
    let annotate = |v: serde_json::Value| serde_json::json!({"metadata": {"annotations": {"sandbox.newapi-ops.io/rate-limited": v}}});
    pods.patch(
        &limited,
        &PatchParams::default(),
        &Patch::Merge(annotate("true".into())),
    )
    .await
    .unwrap();
    let sb2 = sb.clone();
    let run = move |args: Vec<String>| {
        let sb = sb2.clone();
        tokio::task::spawn_blocking(move || Run::new(args).admin_of(&sb).output())
    };
    let args = |s: &[&str]| s.iter().map(|a| (*a).to_string()).collect::<Vec<_>>();

    // 429: the rate-limited slave answers every request it gets with 429, and logs them so.
    let r = bench_until(
        &sb,
        &["--target", "slaves", "--requests", "60", "-c", "3"],
        "429",
    )
    .await;
    counts_add_up(&r);
    let answered_429 = n(&r["status"]["429"]);
    assert!(answered_429 > 0, "the annotation took: {r:#}");
    let pod_of = |r: &Value, name: &str| {
        r["cluster"]["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pod"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {r:#}"))
    };
    let p = pod_of(&r, &limited);
    assert_eq!(n(&p["served"]["429"]), answered_429, "{p:#}");
    let human = run(args(&[
        "bench",
        "--target",
        "slaves",
        "--requests",
        "30",
        "-c",
        "3",
    ]))
    .await
    .unwrap();
    human
        .code(0)
        .stdout_has(&format!("log: pod/{limited} answered 429: "));
    pods.patch(
        &limited,
        &PatchParams::default(),
        &Patch::Merge(annotate(Value::Null)),
    )
    .await
    .unwrap();

    // Redis down: New-API answers 500 and logs why; the signature names the runbook.
    let dir = sb.dir.to_str().unwrap().to_string();
    run(args(&["sandbox", "--dir", &dir, "fault", "redis-down"]))
        .await
        .unwrap()
        .code(0);
    // (The stand-in reuses its last PING of Redis for a second.)
    let r = bench_until(
        &sb,
        &["--target", "slaves", "--requests", "30", "-c", "3"],
        "500",
    )
    .await;
    let redis: Vec<&Value> = r["cluster"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["id"] == "redis-ping-failed")
        .collect();
    assert!(!redis.is_empty(), "{r:#}");
    for s in &redis {
        assert!(
            s["line"]
                .as_str()
                .unwrap()
                .contains("Redis ping test failed"),
            "{s:#}"
        );
        assert!(!s["runbook"].as_str().unwrap().is_empty(), "{s:#}");
    }
    run(args(&["sandbox", "--dir", &dir, "heal"]))
        .await
        .unwrap()
        .code(0);

    // OOMKilled during the run: a new slave crash-loops, killed every 30 s; a run of 35 s
    // sees one kill at least. The load goes elsewhere (a server of the test's own): only the
    // watch matters here.
    run(args(&["sandbox", "--dir", &dir, "fault", "oom"]))
        .await
        .unwrap()
        .code(0);
    let oom_pod = loop {
        let list = pods
            .list(&ListParams::default().labels("app=new-api,role=slave"))
            .await
            .unwrap();
        let crashing = list.items.iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.last_state
                            .as_ref()
                            .and_then(|l| l.terminated.as_ref())
                            .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
                    })
                })
        });
        if let Some(p) = crashing {
            break p.metadata.name.clone().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let url = server(Behaviour::Delay(Duration::from_millis(1)));
    let done = run(args(&[
        "bench", "--url", &url, "-d", "35s", "--rate", "4", "-c", "1", "-o", "json",
    ]))
    .await
    .unwrap();
    done.code(0);
    let r = done.json();
    let p = pod_of(&r, &oom_pod);
    assert!(n(&p["restarts_during"]) >= 1, "{p:#}");
    assert_eq!(p["terminated"], "OOMKilled", "{p:#}");
    assert!(
        r["cluster"]["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["pod"] == oom_pod.as_str() && s["id"] == "out-of-memory"),
        "the log before the restart was read: {r:#}"
    );
    run(args(&["sandbox", "--dir", &dir, "heal"]))
        .await
        .unwrap()
        .code(0);
}
