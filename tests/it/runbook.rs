//! `newapi-ops runbook`: validation errors (positions, allowed values, never a panic), the ten
//! built-in runbooks in dry-run on the shared sandbox and for real on a private one (mutating
//! steps answered through the hidden `--answers FILE`), transcripts without secrets, refusals
//! without a terminal, and Ctrl-C stopping after the current step.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{Done, Run, Sandbox, bin, private_sandbox_with, sandbox};

/// The sandbox's secrets: the MySQL root password and the Secret's session and crypto secrets.
const SECRETS: [&str; 3] = [
    "123456",
    "sandbox-session-secret-change-me",
    "sandbox-crypto-secret-change-me",
];

const ALL: [&str; 10] = [
    "pod-startup-failure",
    "resource-shortage",
    "db-connection",
    "high-cpu",
    "high-memory",
    "slow-response",
    "oomkilled",
    "scale-out",
    "backup",
    "production-readiness",
];

/// A valid runbook of one read-only step.
fn one_step(name: &str) -> Vec<u8> {
    format!("name: {name}\ntitle: T\nsymptoms: [x]\nsteps:\n  - {{id: a, title: A, action: nodes.conditions}}\n").into_bytes()
}

fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Every file under `dir` is free of the sandbox's secrets.
#[track_caller]
fn assert_no_secrets(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for s in SECRETS {
            assert!(!text.contains(s), "{} contains the secret {s}", p.display());
        }
        n += 1;
    }
    n
}

fn jsonl(path: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

#[test]
fn every_validation_error_has_its_place_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let head = "name: t\ntitle: T\nsteps:\n";
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "unknown-action.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.lst\n").into_bytes(),
            vec![":6:13: unknown action `pods.lst`", "did you mean `pods.list`?", "allowed: pods.list, pods.failing"],
        ),
        (
            "backup-arguments.yaml",
            format!("{head}  - id: a\n    title: A\n    action: mysql.backup\n    with: {{threads: many, table: [logs]}}\n").into_bytes(),
            vec![":7:21: argument `threads` of mysql.backup: expected int, got string \"many\"", "unknown argument `table` for mysql.backup", "did you mean `tables`?"],
        ),
        (
            "unknown-field.yaml",
            format!("{head}  - id: a\n    title: A\n    acton: pods.list\n").into_bytes(),
            vec![":6:5: unknown field `acton`", "expected one of", "action"],
        ),
        (
            "unknown-argument.yaml",
            format!("{head}  - id: a\n    title: A\n    action: deployment.scale\n    with: {{replica: 3}}\n").into_bytes(),
            vec![":7:21: unknown argument `replica` for deployment.scale", "did you mean `replicas`?", "allowed: role, replicas, by"],
        ),
        (
            "wrong-type.yaml",
            format!("{head}  - id: a\n    title: A\n    action: deployment.scale\n    with:\n      replicas: three\n      role: worker\n").into_bytes(),
            vec![":8:17: argument `replicas` of deployment.scale: expected int, got string \"three\"", ":9:13: argument `role` of deployment.scale: `worker` is not one of master, slave"],
        ),
        (
            "expression-type.yaml",
            b"name: t\ntitle: T\ninputs:\n  - {name: who, type: string, default: x}\nsteps:\n  - id: a\n    title: A\n    action: deployment.scale\n    with: {replicas: '${{ inputs.who }}'}\n".to_vec(),
            vec![":9:22: argument `replicas` of deployment.scale: `inputs.who` is a string, but `replicas` takes int"],
        ),
        (
            "forward-reference.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.list\n    when: steps.b.output.count > 0\n  - id: b\n    title: B\n    action: pods.list\n").into_bytes(),
            vec![":7:11: `when` of step `a`: step `b` (line 8) does not come before this point"],
        ),
        (
            "missing-reference.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.list\n  - id: b\n    title: B\n    action: pods.list\n    when: steps.c.output.count > 0 && inputs.n > 1 && steps.a.output.cnt > 0\n").into_bytes(),
            vec!["no step `c`", "steps before this one: a", "unknown input `n`", "the output of step `a` has no field `cnt`", "did you mean `count`?"],
        ),
        (
            "bad-expression.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.list\n    when: \"steps.a.output.count >\"\n").into_bytes(),
            vec![":7:11: `when` of step `a`: bad expression `steps.a.output.count >`: at column"],
        ),
        (
            "deep-expression.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.list\n    when: \"{}true{}\"\n", "(".repeat(5000), ")".repeat(5000)).into_bytes(),
            vec![":7:11:", "the expression is 10004 characters long"],
        ),
        (
            "duplicate-ids.yaml",
            format!("{head}  - id: a\n    title: A\n    action: pods.list\n  - id: a\n    title: B\n    action: pods.list\n").into_bytes(),
            vec![":7:9: duplicate step id `a` (first used at line 4)"],
        ),
        ("empty.yaml", b"# nothing here\n\n".to_vec(), vec![":1:1: the file is empty"]),
        ("binary.yaml", b"name: t\n\x00\x01\x02\xff\xfe".to_vec(), vec![":2:1: this is a binary file"]),
        ("latin1.yaml", b"name: caf\xe9\n".to_vec(), vec![":1:1: the file is not UTF-8 text"]),
        ("huge.yaml", vec![b'#'; 300 * 1024], vec![":1:1: the file is 307200 bytes; a runbook may be at most 256 KiB"]),
        ("not-a-mapping.yaml", b"- a\n- b\n".to_vec(), vec![":1:1:"]),
    ];
    for (name, text, wants) in &cases {
        let path = write(d, name, text);
        let out = Run::new(["runbook".as_ref(), "validate".as_ref(), path.as_os_str()]).output();
        out.code(65);
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
        for w in wants {
            out.stdout_has(w);
        }
        assert!(
            out.stdout.contains(&format!("{}:", path.display())),
            "{name}: {}",
            out.stdout
        );
    }
    // An invalid runbook never runs: the same errors, exit 65, before any cluster is needed.
    let dup = d.join("duplicate-ids.yaml");
    let out = Run::new(["runbook".as_ref(), "run".as_ref(), dup.as_os_str()]).output();
    out.code(65);
    out.stderr_has("duplicate step id `a`");
    out.stderr_has("hint: `newapi-ops runbook validate");
    // JSON: one entry per file, each error with line and column.
    let paths: Vec<PathBuf> = cases.iter().map(|(n, _, _)| d.join(n)).collect();
    let mut args: Vec<std::ffi::OsString> = vec![
        "runbook".into(),
        "validate".into(),
        "-o".into(),
        "json".into(),
    ];
    args.extend(paths.iter().map(|p| p.clone().into_os_string()));
    let out = Run::new(args).output();
    out.code(65);
    let v = out.json();
    assert_eq!(v.as_array().unwrap().len(), cases.len());
    for f in v.as_array().unwrap() {
        assert_eq!(f["valid"], false);
        assert!(f["errors"][0]["line"].as_u64().is_some(), "{f}");
    }
}

#[test]
fn built_ins_validate_list_show_and_the_catalogue() {
    let out = Run::new(["runbook", "validate"]).output();
    out.code(0);
    for name in ALL {
        out.stdout_has(&format!("({name}, "));
    }
    let list = Run::new(["runbook", "list", "-o", "json"]).output();
    list.code(0);
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = ALL.iter().map(ToString::to_string).collect();
    want.sort();
    assert_eq!(names, want);
    let oom = Run::new(["runbook", "list", "--symptom", "OOMKilled", "-o", "json"]).output();
    assert_eq!(oom.json()[0]["name"], "oomkilled");
    let show = Run::new(["runbook", "show", "scale-out"]).output();
    show.code(0);
    show.stdout_has("4. Scale the slaves (scale) [mutating: asks before changing]");
    show.stdout_has("replicas: ${{ inputs.slaves }}");
    show.stdout_has("--input slaves=…  int, 1..20");
    let missing = Run::new(["runbook", "show", "no-such"]).output();
    missing.code(66);
    missing.stderr_has("scale-out");
    let actions = Run::new(["runbook", "actions", "-o", "json"]).output();
    actions.code(0);
    let a = actions.json();
    let scale = a
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "deployment.scale")
        .unwrap();
    assert_eq!(scale["effect"], "mutating");
    // A user directory adds runbooks and may replace a built-in.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "mine.yaml", &one_step("mine"));
    let out = Run::new([
        "runbook".as_ref(),
        "list".as_ref(),
        "--runbook-dir".as_ref(),
        dir.path().as_os_str(),
    ])
    .output();
    out.code(0);
    out.stdout_has("mine");
}

#[test]
fn runbook_dirs_of_the_config_file_are_read_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("team-runbooks");
    std::fs::create_dir(&mine).unwrap();
    write(&mine, "ours.yaml", &one_step("ours"));
    let config = write(
        dir.path(),
        "newapi-ops.toml",
        b"runbook_dirs = [\"team-runbooks\"]\n",
    );
    // The binary runs in another working directory: `team-runbooks` is the config file's.
    for sub in [
        &["list", "-o", "json"][..],
        &["show", "ours"],
        &["validate"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec!["runbook".as_ref()];
        args.extend(sub.iter().map(std::ffi::OsStr::new));
        args.extend(["--config".as_ref(), config.as_os_str()]);
        let out = Run::new(args).output();
        out.code(0);
        out.stdout_has("ours");
    }
    // Also through NEWAPI_OPS_CONFIG, next to a --runbook-dir.
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "theirs.yaml", &one_step("theirs"));
    let out = Run::new([
        "runbook".as_ref(),
        "list".as_ref(),
        "--runbook-dir".as_ref(),
        other.path().as_os_str(),
    ])
    .env("NEWAPI_OPS_CONFIG", &config)
    .output();
    out.code(0);
    out.stdout_has("ours").stdout_has("theirs");
    // A typo in the key is an error naming the file, not silently no runbooks.
    let bad = write(
        dir.path(),
        "bad.toml",
        b"runbook_dir = [\"team-runbooks\"]\n",
    );
    let out = Run::new([
        "runbook".as_ref(),
        "list".as_ref(),
        "--config".as_ref(),
        bad.as_os_str(),
    ])
    .output();
    out.code(78);
    out.stderr_has("unknown field `runbook_dir`");
}

#[test]
fn every_runbook_dry_runs_and_changes_nothing() {
    let runs = tempfile::tempdir().unwrap();
    let before = Run::new(["pods", "--role", "slave", "-o", "json"])
        .admin()
        .output();
    before.code(0);
    for name in ALL {
        let out = Run::new([
            "runbook".as_ref(),
            "run".as_ref(),
            name.as_ref(),
            "--dry-run".as_ref(),
            "-o".as_ref(),
            "json".as_ref(),
            "--runs-dir".as_ref(),
            runs.path().as_os_str(),
        ])
        .admin()
        .output();
        assert!(
            matches!(out.code, 0 | 1),
            "{name}: exit {}\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        let r = out.json();
        assert!(
            r["status"] == "completed" || r["status"] == "completed-with-failures",
            "{name}: {r:#}"
        );
        assert_eq!(r["dry_run"], true);
        for s in r["steps"].as_array().unwrap() {
            if s["effect"] == "mutating" || s["effect"] == "manual" {
                assert!(
                    s["status"] == "dry-run" || s["status"] == "skipped",
                    "{name}: a {} step ran in a dry run: {s:#}",
                    s["effect"]
                );
            }
        }
        let recs = jsonl(r["transcript_jsonl"].as_str().unwrap());
        assert_eq!(recs[0]["type"], "start");
        assert_eq!(recs[0]["context"], "sandbox", "{:#}", recs[0]);
        assert_eq!(recs.last().unwrap()["type"], "end");
        assert!(Path::new(r["transcript_markdown"].as_str().unwrap()).is_file());
    }
    // The scale-out plan in a dry run names the change, with the capacity check.
    let out = Run::new([
        "runbook".as_ref(),
        "run".as_ref(),
        "scale-out".as_ref(),
        "--dry-run".as_ref(),
        "--runs-dir".as_ref(),
        runs.path().as_os_str(),
    ])
    .admin()
    .output();
    out.code(0);
    out.stdout_has("scale deployment/new-api-slave in namespace new-api 3 → 4");
    out.stdout_has("1 new pod: 1 fit");
    assert_eq!(assert_no_secrets(runs.path()), 2 * (ALL.len() + 1));
    let hist = Run::new([
        "runbook".as_ref(),
        "history".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        "--runs-dir".as_ref(),
        runs.path().as_os_str(),
        "--limit".as_ref(),
        "100".as_ref(),
    ])
    .output();
    hist.code(0);
    assert_eq!(hist.json().as_array().unwrap().len(), ALL.len() + 1);
    let after = Run::new(["pods", "--role", "slave", "-o", "json"])
        .admin()
        .output();
    assert_eq!(
        before.json()["pods"].as_array().unwrap().len(),
        after.json()["pods"].as_array().unwrap().len()
    );
}

#[test]
fn without_a_terminal_or_with_a_no_nothing_changes() {
    let runs = tempfile::tempdir().unwrap();
    // No terminal, no --yes: the mutating step refuses, the run aborts, nothing is scaled.
    let out = Run::new([
        "runbook".as_ref(),
        "run".as_ref(),
        "scale-out".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        "--runs-dir".as_ref(),
        runs.path().as_os_str(),
    ])
    .admin()
    .output();
    out.code(2);
    let r = out.json();
    assert_eq!(r["status"], "aborted");
    let scale = step(&r, "scale");
    assert_eq!(scale["status"], "failed");
    let err = scale["error"].as_str().unwrap();
    assert!(
        err.contains("no terminal") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(step(&r, "after")["status"], "not-run");
    // Answered no: declined, nothing changed.
    let answers = write(runs.path(), "answers", b"no\n");
    let out = Run::new([
        "runbook".as_ref(),
        "run".as_ref(),
        "scale-out".as_ref(),
        "--answers".as_ref(),
        answers.as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
        "--runs-dir".as_ref(),
        runs.path().as_os_str(),
    ])
    .admin()
    .output();
    out.code(2);
    out.stderr_has("scale deployment/new-api-slave in namespace new-api 3 → 4? no (scripted)");
    assert_eq!(step(&out.json(), "scale")["status"], "declined");
    // Inputs are checked before anything runs.
    let bad = Run::new(["runbook", "run", "scale-out", "--input", "slaves=many"])
        .admin()
        .output();
    bad.code(64);
    bad.stderr_has("--input slaves=many: `many` is not an integer");
    let bad = Run::new(["runbook", "run", "scale-out", "--input", "slave=4"])
        .admin()
        .output();
    bad.code(64);
    bad.stderr_has("did you mean `slaves`?");
}

fn run_real(
    sb: &Sandbox,
    runs: &Path,
    answers: &Path,
    name: &str,
    inputs: &[&str],
) -> (Done, Value) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "runbook".into(),
        "run".into(),
        name.into(),
        "--answers".into(),
        answers.as_os_str().into(),
        "--runs-dir".into(),
        runs.as_os_str().into(),
        "-o".into(),
        "json".into(),
    ];
    for i in inputs {
        args.push("--input".into());
        args.push((*i).into());
    }
    let out = Run::new(args).admin_of(sb).output();
    let r = out.json();
    (out, r)
}

/// Waits until the namespace has `slaves` ready slaves and no pod Terminating (a convergence
/// wait after a change, bounded by a number of polls, not a time limit).
fn settle(sb: &Sandbox, slaves: usize) {
    let mut last = Value::Null;
    for _ in 0..600 {
        let out = Run::new(["pods", "-o", "json"]).admin_of(sb).output();
        if out.code == 0 {
            last = out.json();
            let pods = last["pods"].as_array().unwrap();
            let terminating = pods.iter().any(|p| p["status"] == "Terminating");
            let ready = pods
                .iter()
                .filter(|p| p["role"] == "slave" && p["status"] == "Running")
                .filter(|p| p["ready_containers"] == p["containers"])
                .count();
            let all_slaves = pods.iter().filter(|p| p["role"] == "slave").count();
            if !terminating && ready == slaves && all_slaves == slaves {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the sandbox did not settle: {last:#}");
}

fn slave_names(sb: &Sandbox) -> Vec<String> {
    let out = Run::new(["pods", "--role", "slave", "-o", "json"])
        .admin_of(sb)
        .output();
    out.code(0);
    out.json()["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_runbook_runs_for_real_on_a_private_sandbox() {
    use mysql_async::prelude::Queryable;
    // Without metrics.k8s.io: high-cpu's "no metrics-server" path is the one tested here (the
    // served path is in `metrics`).
    let sb = tokio::task::spawn_blocking(|| private_sandbox_with("runbook", &["--no-metrics"]))
        .await
        .unwrap();
    let runs = tempfile::tempdir().unwrap();
    let answers = write(runs.path(), "answers", "yes\n".repeat(50).as_bytes());
    let real = |name: &'static str, inputs: Vec<String>| {
        let sb = sb.clone();
        let settled = sb.clone();
        let runs = runs.path().to_path_buf();
        let answers = answers.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let done = run_real(&sb, &runs, &answers, name, &inputs);
                // Let deleted and replaced pods go before the next runbook plans capacity.
                let slaves = Run::new(["pods", "--role", "slave", "-o", "json"])
                    .admin_of(&settled)
                    .output()
                    .json()["workloads"]
                    .as_array()
                    .and_then(|w| w.iter().find(|w| w["role"] == "slave"))
                    .and_then(|w| w["desired"].as_u64())
                    .unwrap_or(3);
                settle(&settled, usize::try_from(slaves).unwrap());
                done
            })
            .await
            .unwrap()
        }
    };
    let sb2 = sb.clone();
    let slaves = tokio::task::spawn_blocking(move || slave_names(&sb2))
        .await
        .unwrap();
    assert_eq!(slaves.len(), 3);

    // Pod 启动失败: nothing fails here; the named pod is deleted and replaced.
    let (out, r) = real(
        "pod-startup-failure",
        vec![format!("delete_pod={}", slaves[0])],
    )
    .await;
    out.code(0);
    let retry = step(&r, "retry");
    assert_eq!(retry["status"], "ok", "{r:#}");
    assert_eq!(retry["output"]["applied"], true);
    assert!(
        retry["output"]["owner"]
            .as_str()
            .unwrap()
            .starts_with("ReplicaSet/")
    );

    let (out, r) = real("resource-shortage", vec![]).await;
    out.code(0);
    assert_eq!(step(&r, "allocation")["output"]["cpu_requests_percent"], 88);

    let (out, r) = real("db-connection", vec![]).await;
    out.code(0);
    assert_eq!(step(&r, "ping")["status"], "ok");
    assert_eq!(step(&r, "restart")["status"], "skipped");

    // A rolling restart of the slaves (the surge pod fits: 7000m + 1000m of 8000m).
    let (out, r) = real("high-memory", vec!["restart=true".into()]).await;
    out.code(0);
    let restart = step(&r, "restart_slaves");
    assert_eq!(restart["status"], "ok", "{r:#}");
    assert_eq!(restart["output"]["ready"], 3);
    assert_eq!(step(&r, "leak")["output"]["acknowledged"], true);

    // No metrics-server: the runbook says so and scales out by one (3 → 4, which fits).
    let (out, r) = real("high-cpu", vec![]).await;
    out.code(0);
    assert_eq!(step(&r, "top")["output"]["available"], false);
    let scale = step(&r, "scale");
    assert_eq!(scale["status"], "ok", "{r:#}");
    assert_eq!(
        (
            scale["output"]["from"].as_i64(),
            scale["output"]["to"].as_i64()
        ),
        (Some(3), Some(4))
    );
    assert_eq!(scale["output"]["ready"], 4);
    assert!(scale["change"].as_str().unwrap().contains("3 → 4"));

    // 水平扩展 beyond the room: the capacity assert stops it before anything changes.
    let (out, r) = real("scale-out", vec!["slaves=6".into()]).await;
    out.code(2);
    assert_eq!(step(&r, "fits")["status"], "failed");
    assert_eq!(step(&r, "scale")["status"], "not-run");
    // Back to 3.
    let (out, r) = real("scale-out", vec!["slaves=3".into()]).await;
    out.code(0);
    assert_eq!(step(&r, "scale")["output"]["to"], 3);
    assert_eq!(step(&r, "after")["output"]["count"], 3);

    // 响应时间变长: a statement that runs long is found and killed.
    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(sb.mysql.port)
        .user(Some("root"))
        .pass(Some(SECRETS[0]))
        .prefer_socket(false)
        .into();
    let mut conn = mysql_async::Conn::new(opts.clone())
        .await
        .expect("connect to the private MariaDB");
    let conn_id = conn.id();
    let sleeper = tokio::spawn(async move {
        conn.query_drop("SELECT SLEEP(600) AS `slow_response_test`")
            .await
    });
    // Wait until MariaDB reports it running for 2 s (a convergence wait, not a time limit).
    let mut probe = mysql_async::Conn::new(opts).await.unwrap();
    loop {
        let t: Option<u64> = probe
            .exec_first(
                "SELECT TIME FROM information_schema.PROCESSLIST WHERE ID = ?",
                (conn_id,),
            )
            .await
            .unwrap();
        if t.is_some_and(|t| t >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (out, r) = real(
        "slow-response",
        vec!["long_query_secs=1".into(), "kill_after_secs=2".into()],
    )
    .await;
    assert_eq!(out.code, 1, "slow log off is a failed check: {r:#}");
    assert!(step(&r, "running")["output"]["count"].as_i64().unwrap() >= 1);
    let kill = step(&r, "kill");
    assert_eq!(kill["status"], "ok", "{r:#}");
    assert!(
        kill["output"]["killed"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(conn_id)),
        "{kill:#}"
    );
    // KILL QUERY ends the statement early: SLEEP returns 1 (interrupted) instead of waiting.
    let _ = sleeper.await.unwrap();
    assert_eq!(step(&r, "slow_log")["status"], "failed");

    let sb3 = sb.clone();
    let slaves = tokio::task::spawn_blocking(move || slave_names(&sb3))
        .await
        .unwrap();
    let (out, r) = real("oomkilled", vec![format!("delete_pod={}", slaves[0])]).await;
    out.code(0);
    assert_eq!(step(&r, "fresh_pod")["output"]["applied"], true);

    let backups = runs.path().join("backups");
    let (out, r) = real("backup", vec![format!("dir={}", backups.display())]).await;
    out.code(1);
    assert_eq!(step(&r, "scheduled")["status"], "failed");
    assert_eq!(step(&r, "take")["output"]["applied"], true, "{r:#}");
    assert_eq!(step(&r, "verify")["output"]["ok"], true, "{r:#}");
    assert_eq!(step(&r, "offsite")["output"]["acknowledged"], true);

    let (out, r) = real("production-readiness", vec![]).await;
    out.code(1);
    for (id, status) in [
        ("r1_database", "failed"),
        ("r3_hpa", "failed"),
        ("r9_secrets", "failed"),
        ("r10_logging", "failed"),
    ] {
        assert_eq!(step(&r, id)["status"], status, "{id}");
    }

    // Ten runbooks, eleven runs, each with a markdown and a JSON lines transcript, no secret.
    std::fs::remove_dir_all(&backups).unwrap();
    assert_eq!(assert_no_secrets(runs.path()), 2 * 11 + 1);
}

/// `runbook run backup` on the shared sandbox (a backup only reads the database) with the
/// backups written under `backups` and the transcripts under `runs`.
fn run_backup(runs: &Path, backups: &Path, extra: &[&std::ffi::OsStr]) -> Done {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "runbook".as_ref(),
        "run".as_ref(),
        "backup".as_ref(),
        "--runs-dir".as_ref(),
        runs.as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
    ];
    let input = format!("dir={}", backups.display());
    let input: &std::ffi::OsStr = input.as_ref();
    args.extend(["--input".as_ref(), input]);
    args.extend_from_slice(extra);
    Run::new(args).admin().output()
}

/// Every entry under `dir` (recursively), with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let mode = modes_of(&p);
        if p.is_dir() {
            out.extend(modes(&p));
        }
        out.push((p, mode));
    }
    out
}

#[test]
fn the_backup_runbook_takes_a_real_backup_and_a_dry_run_or_a_no_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let runs = work.path().join("runs");
    let backups = work.path().join("backups");

    // Dry run: the checks run, the backup is described exactly, nothing is written.
    let out = run_backup(&runs, &backups, &["--dry-run".as_ref()]);
    out.code(1); // no CronJob: the `scheduled` check fails and says continue
    let r = out.json();
    let take = step(&r, "take");
    assert_eq!(take["status"], "dry-run", "{r:#}");
    let tables = take["output"]["tables"].as_u64().unwrap();
    assert!(tables > 0, "{take:#}");
    assert_eq!(
        take["change"],
        format!(
            "back up database new-api ({tables} tables) to {}",
            backups.display()
        )
    );
    let details = take["details"].to_string();
    assert!(
        details.contains("manifest.json") && details.contains("0600") && details.contains("0700"),
        "{details}"
    );
    assert_eq!(step(&r, "verify")["status"], "skipped");
    assert_eq!(step(&r, "offsite")["status"], "skipped");
    assert!(!backups.exists(), "a dry run wrote {}", backups.display());

    // Answered no: declined, the run stops, nothing is written.
    let answers = write(work.path(), "no", b"no\n");
    let out = run_backup(
        &runs,
        &backups,
        &["--answers".as_ref(), answers.as_os_str()],
    );
    out.code(2);
    out.stderr_has("Take a backup now: back up database new-api (");
    let r = out.json();
    assert_eq!(step(&r, "take")["status"], "declined");
    assert_eq!(step(&r, "verify")["status"], "not-run");
    assert!(
        !backups.exists(),
        "a declined backup wrote {}",
        backups.display()
    );

    // Answered yes (the backup, then the copy outside the cluster): a complete backup.
    let answers = write(work.path(), "yes", b"yes\nyes\n");
    let out = run_backup(
        &runs,
        &backups,
        &["--answers".as_ref(), answers.as_os_str()],
    );
    out.code(1);
    let r = out.json();
    let take = step(&r, "take");
    assert_eq!(take["status"], "ok", "{r:#}");
    let o = &take["output"];
    assert_eq!(o["applied"], true);
    assert_eq!(o["tables"].as_u64(), Some(tables));
    assert!(o["rows"].as_u64().unwrap() > 0, "{o:#}");
    assert!(o["bytes"].as_u64().unwrap() > 0, "{o:#}");
    assert_eq!(o["encrypted"], false);
    let id = o["id"].as_str().unwrap();
    let path = backups.join(id);
    assert_eq!(o["path"], path.display().to_string());
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["id"], id);
    let all = modes(&backups);
    assert!(all.len() > 2, "{all:?}");
    for (p, mode) in std::iter::once((backups.clone(), modes_of(&backups))).chain(all) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
    }
    let verify = step(&r, "verify");
    assert_eq!(verify["status"], "ok", "{r:#}");
    assert_eq!(verify["output"]["id"], id);
    assert!(verify["output"]["files"].as_u64().unwrap() > 0);
    // The same backup as `newapi-ops backup` makes: its own `backup verify` accepts it.
    Run::new([
        "backup".as_ref(),
        "verify".as_ref(),
        id.as_ref(),
        "--dir".as_ref(),
        backups.as_os_str(),
    ])
    .output()
    .code(0);
    // No password in the transcripts, the output, or the backup's manifest.
    assert_eq!(assert_no_secrets(&runs), 2 * 3);
    for s in SECRETS {
        assert!(!out.stdout.contains(s) && !out.stderr.contains(s));
    }
    assert!(
        !std::fs::read_to_string(path.join("manifest.json"))
            .unwrap()
            .contains(SECRETS[0])
    );
}

/// The one `.jsonl` transcript of `runs` and its records.
fn transcript_in(runs: &Path) -> (PathBuf, Vec<Value>) {
    let file = std::fs::read_dir(runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap_or_else(|| panic!("no transcript in {}", runs.display()));
    let recs = jsonl(file.to_str().unwrap());
    (file, recs)
}

fn modes_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ctrl_c_stops_after_the_current_step_and_writes_the_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "three.yaml",
        b"name: three\ntitle: Three steps\nsymptoms: [test]\nsteps:\n  - {id: first, title: First, action: pods.list}\n  - id: second\n    title: Second\n    action: manual\n    with: {instructions: wait for the test}\n  - {id: third, title: Third, action: nodes.conditions}\n",
    );
    let fifo = dir.path().join("answers");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    let runs = dir.path().join("runs");
    let home = tempfile::tempdir().unwrap();
    let (mut child, out, err) = spawn_run(
        &[
            rb.as_os_str(),
            "--answers".as_ref(),
            fifo.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
        ],
        home.path(),
    );
    // Opening the FIFO returns once the run opened it: at the manual step's question.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut seen_err = Vec::new();
    wait_line(&err, "stopping after the current step", &mut seen_err);
    // Now the current step may finish: it is acknowledged.
    w.write_all(b"yes\n").unwrap();
    drop(w);
    let status = child.wait().unwrap();
    seen_err.extend(err.iter());
    assert_eq!(status.code(), Some(130), "{}", seen_err.join("\n"));
    let stdout = out.iter().collect::<Vec<_>>().join("\n");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let (file, recs) = transcript_in(&runs);
    let status: Vec<(&str, &str)> = recs
        .iter()
        .filter(|r| r["type"] == "step")
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [("first", "ok"), ("second", "ok"), ("third", "not-run")]
    );
    assert_eq!(recs.last().unwrap()["status"], "interrupted");
    let md = std::fs::read_to_string(file.with_extension("md")).unwrap();
    assert!(
        md.contains("**interrupted**") && md.contains("not run: the run was interrupted"),
        "{md}"
    );
}

/// A list literal of `n` integers.
fn int_list(n: usize) -> String {
    format!(
        "[{}]",
        (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    )
}

/// `all()` nested `depth` deep over a list of `n` elements, true everywhere.
fn nested_all(depth: usize, n: usize) -> String {
    let vars = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut s = String::new();
    for v in &vars[..depth] {
        s.push_str(&format!("{}.all({v}, ", int_list(n)));
    }
    s.push_str(&format!("{} >= 0", vars[..depth].join(" + ")));
    s.push_str(&")".repeat(depth));
    s
}

/// A runbook of `steps` read-only steps, each `when` given.
fn runbook_with_whens(name: &str, whens: &[String]) -> Vec<u8> {
    let mut s = format!("name: {name}\ntitle: T\nsymptoms: [test]\nsteps:\n");
    for (i, w) in whens.iter().enumerate() {
        s.push_str(&format!(
            "  - id: s{i}\n    title: Step {i}\n    action: nodes.conditions\n    when: \"{w}\"\n"
        ));
    }
    s.into_bytes()
}

#[test]
fn expressions_are_bounded_at_validation_and_at_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Issue 12: seven all() nested over 30 elements, 636 characters (under the length limit),
    // about 2·10^10 iterations. Validation refuses it where it is written; so does run, before
    // connecting to anything.
    let hostile = nested_all(7, 30);
    assert!(hostile.len() < 1000, "{}", hostile.len());
    let path = write(
        d,
        "hostile.yaml",
        &runbook_with_whens("hostile", &[hostile]),
    );
    let out = Run::new(["runbook".as_ref(), "validate".as_ref(), path.as_os_str()]).output();
    out.code(65);
    out.stdout_has(&format!(
        "{}:8:11: `when` of step `s0`: macros (all, exists, map, ...) are nested 7 deep",
        path.display()
    ));
    let out = Run::new([
        "runbook".as_ref(),
        "run".as_ref(),
        path.as_os_str(),
        "--dry-run".as_ref(),
    ])
    .output();
    out.code(65);
    out.stderr_has("nested 7 deep");
    // Four deep over 30 is within the nesting limit, not within the work limit.
    let path = write(
        d,
        "costly.yaml",
        &runbook_with_whens("costly", &[nested_all(4, 30)]),
    );
    let out = Run::new(["runbook".as_ref(), "validate".as_ref(), path.as_os_str()]).output();
    out.code(65);
    out.stdout_has(":8:11: `when` of step `s0`: evaluating it may take about");
    out.stdout_has("the limit is 10^6 steps");
    // Unknown functions and conditions that cannot be true or false.
    let path = write(
        d,
        "functions.yaml",
        b"name: functions\ntitle: T\nsteps:\n  - id: a\n    title: A\n    action: nodes.conditions\n    when: exec('id')\n  - id: b\n    title: B\n    action: nodes.conditions\n    when: steps.a.output.nodes\n  - id: c\n    title: C\n    action: assert\n    with: {fail_if: \"steps.a.output.nodes + 1\", message: m}\n  - id: d\n    title: D\n    action: nodes.conditions\n    when: \"'x'.sise() > 0\"\n",
    );
    let out = Run::new(["runbook".as_ref(), "validate".as_ref(), path.as_os_str()]).output();
    out.code(65);
    out.stdout_has(":7:11: `when` of step `a`: unknown function `exec()`");
    out.stdout_has(
        ":11:11: `when` of step `b`: `steps.a.output.nodes` gives an int, not true or false",
    );
    out.stdout_has(":15:21: argument `fail_if` of assert: `steps.a.output.nodes + 1` gives an int, not true or false");
    out.stdout_has("unknown function `.sise()`");
    out.stdout_has("did you mean `size`?");
    // Bounded but expensive (three deep over 30: 27000 iterations) runs, and ends.
    let path = write(
        d,
        "busy.yaml",
        &runbook_with_whens(
            "busy",
            &[nested_all(3, 30), format!("!({})", nested_all(3, 30))],
        ),
    );
    Run::new(["runbook".as_ref(), "validate".as_ref(), path.as_os_str()])
        .output()
        .code(0);
    let runs = d.join("runs");
    let out = Run::new([
        "runbook".as_ref(),
        "run".as_ref(),
        path.as_os_str(),
        "--dry-run".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        "--runs-dir".as_ref(),
        runs.as_os_str(),
    ])
    .admin()
    .output();
    out.code(0);
    let r = out.json();
    assert_eq!(step(&r, "s0")["status"], "ok", "{r:#}");
    assert_eq!(step(&r, "s1")["status"], "skipped", "{r:#}");
}

/// Starts `runbook run ARGS` as admin; returns the child and the lines of its stdout and
/// stderr as they come.
fn spawn_run(
    args: &[&std::ffi::OsStr],
    home: &Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(bin())
        .args(["runbook", "run"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", &sandbox().kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = |r: Box<dyn std::io::Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        rx
    };
    let out = lines(Box::new(child.stdout.take().unwrap()));
    let err = lines(Box::new(child.stderr.take().unwrap()));
    (child, out, err)
}

/// Reads lines until one contains `needle`; every line read is kept in `seen`.
#[track_caller]
fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); seen:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn ctrl_c_ends_a_run_busy_with_expressions_with_130_and_a_finished_transcript() {
    use nix::sys::signal::{Signal, kill};
    let dir = tempfile::tempdir().unwrap();
    // Eight steps, each deciding with an expression near the work limit.
    let whens: Vec<String> = (0..8).map(|_| nested_all(3, 30)).collect();
    let rb = write(dir.path(), "busy.yaml", &runbook_with_whens("busy", &whens));
    for presses in [1, 2] {
        let home = tempfile::tempdir().unwrap();
        // A runs directory that does not exist yet, under a parent that does not either.
        let runs = dir.path().join(format!("state-{presses}")).join("runs");
        let (mut child, out, err) = spawn_run(
            &[rb.as_os_str(), "--runs-dir".as_ref(), runs.as_os_str()],
            home.path(),
        );
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let (mut seen_out, mut seen_err) = (Vec::new(), Vec::new());
        wait_line(&out, "[1/8]", &mut seen_out);
        kill(pid, Signal::SIGINT).unwrap();
        if presses == 2 {
            wait_line(&err, "stopping after the current step", &mut seen_err);
            kill(pid, Signal::SIGINT).unwrap();
        }
        let status = child.wait().unwrap();
        seen_out.extend(out.iter());
        seen_err.extend(err.iter());
        assert_eq!(
            status.code(),
            Some(130),
            "{presses} Ctrl-C\n--- stdout\n{}\n--- stderr\n{}",
            seen_out.join("\n"),
            seen_err.join("\n")
        );
        assert!(
            seen_out.iter().any(|l| l.contains("interrupted")),
            "{}",
            seen_out.join("\n")
        );
        let (file, recs) = transcript_in(&runs);
        let end = recs.last().unwrap();
        assert_eq!(end["type"], "end", "{recs:#?}");
        assert_eq!(end["status"], "interrupted", "{end:#}");
        let steps: Vec<&Value> = recs.iter().filter(|r| r["type"] == "step").collect();
        assert_eq!(steps.len(), 8, "every step is recorded, run or not");
        assert_eq!(steps.last().unwrap()["status"], "not-run", "{recs:#?}");
        let md = std::fs::read_to_string(file.with_extension("md")).unwrap();
        assert!(md.contains("**interrupted**"), "{md}");
        // Transcripts hold evidence: 0600 files in 0700 directories, whatever the umask.
        assert_eq!(modes_of(&runs), 0o700);
        assert_eq!(modes_of(runs.parent().unwrap()), 0o700);
        assert_eq!(modes_of(&file), 0o600);
        assert_eq!(modes_of(&file.with_extension("md")), 0o600);
    }
}
