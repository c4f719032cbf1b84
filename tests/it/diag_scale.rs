//! diagnose on a deployment of a size CI can afford, in a sandbox of its own: 200 slaves that
//! share one problem are one finding naming all 200, the app check probes a sample (chosen from
//! the compact records of the healthy slaves), the lists are paged, and `logs` merges many pods
//! through spill files with a bound on open files and held lines — asserted by counting
//! findings, pages, records and merge passes (`-vv`) and the API server's audit log, never by
//! time.

use serde_json::json;

use crate::api_calls::{audit_len_of, calls_in};
use crate::support::{Run, apply_in_of, findings, newapi_deployment, private_sandbox_with};

/// Slaves that cannot be scheduled (each asks for 100 CPUs): they share one cause.
const PENDING: usize = 200;
/// Slaves that run: more than diagnose probes one by one, so the app check samples them.
const RUNNING: usize = 30;

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_slaves_with_one_problem_are_one_finding_and_the_app_is_sampled() {
    let sb = private_sandbox_with("diag-scale", &["--nodes", "3"]);
    let pending = {
        let mut d = newapi_deployment(
            "slave",
            i32::try_from(PENDING).unwrap(),
            json!({}),
            json!({"resources": {"requests": {"cpu": "100"}}}),
        );
        d["metadata"]["name"] = json!("new-api-slave-big");
        d["spec"]["selector"]["matchLabels"]["size"] = json!("big");
        d["spec"]["template"]["metadata"]["labels"]["size"] = json!("big");
        d
    };
    // Two Deployments of slaves whose selectors do not overlap.
    let running = {
        let mut d = newapi_deployment(
            "slave",
            i32::try_from(RUNNING).unwrap(),
            json!({}),
            json!({}),
        );
        d["spec"]["selector"]["matchLabels"]["size"] = json!("small");
        d["spec"]["template"]["metadata"]["labels"]["size"] = json!("small");
        d
    };
    let ns = apply_in_of(
        &sb,
        "t-scale",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            running,
            pending,
        ],
    )
    .await;
    // Wait until every pod is there, the running ones ready and every pending one refused by
    // the scheduler (its event is the evidence); a bounded wait for the cluster, not a timing.
    let sb2 = sb.clone();
    let ns2 = ns.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut last = serde_json::Value::Null;
        for _ in 0..240 {
            let out = Run::new(["diagnose", "-n", &ns2, "--only", "pods", "-o", "json"])
                .admin_of(&sb2)
                .output();
            if let Ok(r) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
                let pending = findings(&r, "pods.pending");
                let settled = pending.len() == 1
                    && pending[0]["count"] == PENDING
                    && pending[0]["severity"] == "critical"
                    && findings(&r, "pods.unready").is_empty()
                    && r["pods_affected"]["critical"] == PENDING;
                if settled {
                    return r;
                }
                last = r;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("the namespace never settled; last report:\n{last:#}");
    })
    .await
    .unwrap();
    let pending = findings(&report, "pods.pending")[0];
    assert_eq!(pending["subjects"].as_array().unwrap().len(), PENDING);
    assert!(
        pending["cause"]
            .as_str()
            .unwrap()
            .contains("Insufficient cpu"),
        "{pending:#}"
    );
    assert!(
        pending["summary"]
            .as_str()
            .unwrap()
            .starts_with("200 pods: slave pod Pending: "),
        "{pending:#}"
    );

    // Every component, pages of 50 objects. The findings: one Pending group, the Deployment with
    // no replica available, and a handful of info/ok ones, whatever the number of pods.
    let before = audit_len_of(&sb);
    let out = Run::new(["-vv", "diagnose", "-n", &ns, "-o", "json"])
        .admin_of(&sb)
        .env("NEWAPI_OPS_LIST_PAGE_SIZE", "50")
        .output();
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    let calls = calls_in(&sb, &ns, before);
    // The list of pods came in pages of 50 (4 full pages and one of the last 31), and the 30
    // running slaves — healthy, never restarted — were kept as compact records, the others as
    // reduced pods; the sampling below was made from those records.
    let pages: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(&format!("list pods in namespace \"{ns}\": a page of")))
        .collect();
    assert_eq!(pages.len(), 5, "{}", out.stderr);
    assert_eq!(
        pages
            .iter()
            .filter(|l| l.ends_with("a page of 50 objects"))
            .count(),
        4,
        "{pages:#?}"
    );
    assert!(
        pages.iter().any(|l| l.ends_with("a page of 31 objects")),
        "{pages:#?}"
    );
    let kept = format!(
        "diagnose: {} pods listed, {RUNNING} kept as compact records (healthy slaves), {} as reduced pods",
        PENDING + RUNNING + 1,
        PENDING + 1
    );
    assert!(out.stderr.contains(&kept), "{kept}\n{}", out.stderr);
    let all = report["findings"].as_array().unwrap();
    assert!(all.len() <= 30, "{} findings:\n{report:#}", all.len());
    assert_eq!(findings(&report, "pods.pending").len(), 1, "{report:#}");
    assert_eq!(findings(&report, "pods.pending")[0]["count"], PENDING);
    assert!(
        findings(&report, "app.timeout").is_empty()
            && findings(&report, "app.incomplete").is_empty(),
        "{report:#}"
    );
    // 231 pods in pages of 50: 5 calls; one list per other kind.
    assert_eq!(calls.get("list pods"), Some(&5), "{calls:?}");
    for kind in ["deployments", "statefulsets", "secrets", "configmaps"] {
        assert_eq!(
            calls.get(&format!("list {kind}")),
            Some(&1),
            "{kind}: {calls:?}"
        );
    }
    let events = calls.get("list events").copied().unwrap_or(0);
    assert!((1..=10).contains(&events), "{calls:?}");
    assert!(!calls.contains_key("get pods"), "a GET per pod: {calls:?}");
    // The app check: the master and 3 of the 30 running slaves, one port-forward each.
    let forwards = calls.get("get pods/portforward").copied().unwrap_or(0);
    assert_eq!(forwards, 4, "{calls:?}");
    let sampled = findings(&report, "app.sampled");
    assert_eq!(sampled.len(), 1, "{report:#}");
    assert!(
        sampled[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("probed 4 of 31 New-API pods: every master (1)"),
        "{sampled:#?}"
    );
    assert!(
        findings(&report, "app.ok")[0]["summary"]
            .as_str()
            .unwrap()
            .contains("the other 27 are ready"),
        "{report:#}"
    );
    // Log reads: none of the pending pods (nothing to read) and at most a sample of the slaves.
    assert!(
        calls.get("get pods/log").copied().unwrap_or(0) <= 3 + 10,
        "{calls:?}"
    );

    // The human report names the worst pod and three more; --expand names all 200.
    let human = Run::new(["diagnose", "-n", &ns, "--only", "pods"])
        .admin_of(&sb)
        .output();
    assert!(
        human.stdout.contains("and 196 more (--expand lists them)"),
        "{}",
        human.stdout
    );
    let expanded = Run::new(["diagnose", "-n", &ns, "--only", "pods", "--expand"])
        .admin_of(&sb)
        .output();
    let named = expanded
        .stdout
        .lines()
        .filter(|l| l.contains("pod/new-api-slave-big-"))
        .count();
    assert_eq!(named, PENDING, "{}", expanded.stdout);

    // `logs` of the slaves merged through spill files, 4 at a time: 30 files (one per running
    // pod) → 8 → 2 → the output, in 8 + 2 + 1 merge passes, never more than 4 files open or 4
    // lines held, and every line merged is printed, in time order.
    let logs = Run::new([
        "-vv",
        "logs",
        "slaves",
        "-n",
        &ns,
        "--tail",
        "5",
        "--timestamps",
    ])
    .admin_of(&sb)
    .env("NEWAPI_OPS_LOGS_FAN_IN", "4")
    .output();
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    let stats = logs
        .stderr
        .lines()
        .find_map(|l| Some(l.split_once("logs: merged ")?.1))
        .unwrap_or_else(|| panic!("no merge statistics:\n{}", logs.stderr));
    let numbers: Vec<u64> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // lines, pods, files, passes, open, held
    assert_eq!(numbers.len(), 6, "{stats}");
    let (lines, pods, files, passes, open, held) = (
        numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5],
    );
    // Every slave's log was asked for; the 200 pending ones are empty and spill no file.
    assert_eq!(pods, (PENDING + RUNNING) as u64, "{stats}");
    assert_eq!((files, passes, open), (40, 11, 4), "{stats}");
    assert!((1..=4).contains(&held), "{stats}");
    let printed: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(printed.len() as u64, lines, "{stats}\n{}", logs.stdout);
    assert!(
        lines >= RUNNING as u64,
        "every running slave logged: {stats}"
    );
    let times: Vec<jiff::Timestamp> = printed
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no timestamp: {l}"))
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", logs.stdout);
}
