//! `newapi-ops logs`: every pod of a role merged in time order, prefixed with its pod; --previous,
//! --grep, --tail, --since, --follow; unknown pods and bad patterns are clear errors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{
    Run, apply_in, bin, newapi_deployment, poll_json, private_sandbox, sandbox, signal_process,
};

#[test]
fn slaves_logs_are_merged_in_time_order_with_pod_prefixes() {
    let out = Run::new(["logs", "slaves", "--tail", "20", "-o", "json"])
        .admin()
        .output();
    out.code(0);
    let lines = out.json();
    let lines = lines.as_array().unwrap();
    let pods: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["pod"].as_str().unwrap()).collect();
    assert_eq!(pods.len(), 3, "the three slaves: {pods:?}");
    assert!(pods.iter().all(|p| p.starts_with("new-api-slave-")));
    let times: Vec<jiff::Timestamp> = lines
        .iter()
        .filter_map(|l| l["time"].as_str()?.parse().ok())
        .collect();
    assert_eq!(
        times.len(),
        lines.len(),
        "every line carries the kubelet's timestamp"
    );
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "merged in time order"
    );

    let human = Run::new(["logs", "slaves", "--tail", "5", "--grep", "GIN"])
        .admin()
        .output();
    human.code(0);
    for line in human.stdout.lines() {
        let (pod, rest) = line.split_once(' ').unwrap();
        assert!(pod.starts_with("new-api-slave-"), "{line}");
        assert!(
            rest.contains("GIN"),
            "--grep keeps matching lines only: {line}"
        );
    }
    let with_ts = Run::new(["logs", "master", "--tail", "1", "--timestamps"])
        .admin()
        .output();
    with_ts.code(0);
    assert!(
        with_ts
            .stdout
            .split_whitespace()
            .nth(1)
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok()),
        "{}",
        with_ts.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn previous_log_of_a_crashing_pod_and_errors() {
    let ns = apply_in(
        "t-logs",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment(
                "slave",
                1,
                json!({"sandbox.newapi-ops.io/behavior": "crashloop",
                       "sandbox.newapi-ops.io/previous-log": "[FATAL] 2025/11/13 - 10:00:01 | failed to initialize database: Error 1045"}),
                json!({}),
            ),
        ],
    )
    .await;
    let ns2 = ns.clone();
    tokio::task::spawn_blocking(move || {
        poll_json(&["pods", "-n", &ns2, "--role", "slave"], |j| {
            j["pods"][0]["status"] == "CrashLoopBackOff"
        })
    })
    .await
    .unwrap();
    let out = Run::new(["logs", "slaves", "-n", &ns, "--previous", "--tail", "5"])
        .admin()
        .output();
    out.code(0).stdout_has("failed to initialize database");
    // The master never restarted: its previous log does not exist, which is said, not hidden.
    let all = Run::new(["logs", "all", "-n", &ns, "--previous"])
        .admin()
        .output();
    all.code(0)
        .stdout_has("failed to initialize database")
        .stderr_has("previous terminated container");
    Run::new(["logs", "master", "-n", &ns, "--previous"])
        .admin()
        .output()
        .code(66)
        .stderr_has("no previous container to read: new-api-master-")
        .stderr_has("drop --previous");
    Run::new(["logs", "new-api-slave-nope", "-n", &ns])
        .admin()
        .output()
        .code(66)
        .stderr_has("pods here: new-api-master-");
    Run::new(["logs", "--grep", "(unclosed"])
        .admin()
        .output()
        .code(64)
        .stderr_has("--grep");
}

#[test]
fn follow_streams_new_lines() {
    let _ = sandbox();
    let mut child = Command::new(bin())
        .args(["logs", "master", "--follow", "--tail", "1"])
        .env("KUBECONFIG", &sandbox().kubeconfig)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The existing last line comes first (--tail 1), then what is logged while following:
    // New-API's probes log a [GIN] line every 10 s, so one must arrive (the master's channel
    // sync lines may come in between).
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.len() < 20 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let gin = line.contains("[GIN]");
        lines.push(line);
        if gin && lines.len() >= 2 {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines.last().unwrap().contains("[GIN]"), "{lines:?}");
    assert!(
        lines.iter().all(|l| l.starts_with("new-api-master-")),
        "{lines:?}"
    );
}

/// Follows the master's log until the first streamed line, then does `fault` to the API server
/// and returns how `logs --follow` ended (it must end by itself: the test waits for it).
fn follow_then(sb: &crate::support::Sandbox, fault: impl FnOnce()) -> crate::support::Done {
    let mut child = Command::new(bin())
        .args(["logs", "master", "--follow", "--tail", "1"])
        .env("KUBECONFIG", &sb.kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("new-api-master-"), "{first}");
    fault();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    crate::support::Done::from(std::process::Output {
        stdout: rest.into_bytes(),
        ..out
    })
}

/// `logs --follow` when the API server freezes (SIGSTOP: connections open, no answers) and when
/// it dies (SIGKILL): an error naming the API server, exit 69 — never a silent 0 or a hang.
#[test]
fn follow_ends_with_an_error_when_the_api_server_freezes_or_dies() {
    use nix::sys::signal::Signal;
    let sb = private_sandbox("logs-apigone");
    let server = sb.api_server.trim_end_matches('/').to_string();
    let frozen = follow_then(&sb, || {
        signal_process(&sb, "kube-apiserver", Signal::SIGSTOP)
    });
    signal_process(&sb, "kube-apiserver", Signal::SIGCONT);
    frozen
        .code(69)
        .stderr_has(&format!(
            "cannot reach the Kubernetes API server at {server}"
        ))
        .stderr_has("no answer to GET /version within 10 s");
    let killed = follow_then(&sb, || {
        signal_process(&sb, "kube-apiserver", Signal::SIGKILL)
    });
    killed.code(69).stderr_has(&format!(
        "cannot reach the Kubernetes API server at {server}"
    ));
}
