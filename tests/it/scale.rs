//! `scale`, `plan` and `restart` against sandboxes of their own (they change the seed's slave
//! count): the real kube-apiserver, controller-manager and scheduler decide; nothing is mocked.
//!
//! `private_sandbox("scale")` is shared by the tests of this file that can run side by side: the
//! scale scenario (the only one that changes anything), `plan` (its assertions hold for every
//! slave count the scenario goes through) and the RBAC refusals (which change nothing).
//! `private_sandbox("scale-apidown")` loses its API server for good, so it has its own.
//!
//! The outputs worth reading (the preflight, the scheduler's reason, the error texts) are echoed
//! on stderr; `cargo test --test it scale:: -- --nocapture` shows them.
#![allow(clippy::print_stderr)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::support::{Done, Run, Sandbox, bin, private_sandbox, signal_process};

const SLAVE: &str = "new-api-slave";
const NS: &str = "new-api";

fn run(sb: &Sandbox, args: &[&str]) -> Done {
    Run::new(args).admin_of(sb).output()
}

/// Starts the binary in the background, as `Run` would run it (clean environment, no terminal).
fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &sb.dir)
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", &sb.kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn newapi-ops")
}

fn finish(child: Child) -> Done {
    Done::from(child.wait_with_output().expect("wait for newapi-ops"))
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

async fn slave(client: &kube::Client) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .get(SLAVE)
        .await
        .expect("get the slave Deployment")
}

async fn replicas(client: &kube::Client) -> i32 {
    slave(client).await.spec.replicas.unwrap_or(1)
}

fn record(d: &Deployment) -> Option<serde_json::Value> {
    let raw = d
        .metadata
        .annotations
        .as_ref()?
        .get("newapi-ops.io/last-scale")?;
    serde_json::from_str(raw).ok()
}

/// Polls until `ready` holds (a bounded wait for the cluster to converge; it times nothing).
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..240 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("never reached: {what}");
}

/// Waits for the seed's picture: 3 slaves available, 7000m of CPU requested on the nodes.
async fn settled(sb: &Sandbox, client: &kube::Client) {
    until("3 slaves available", async || {
        let d = slave(client).await;
        let s = d.status.unwrap_or_default();
        (d.spec.replicas == Some(3) && s.available_replicas == Some(3) && s.replicas == Some(3))
            .then_some(())
    })
    .await;
    until("7000m requested", async || {
        let done = Run::new(["nodes", "-o", "json"]).admin_of(sb).output();
        (done.code == 0 && done.json()["totals"]["requested"]["cpu_millis"] == 7000).then_some(())
    })
    .await;
}

async fn set_min_ready_seconds(client: &kube::Client, secs: i32) {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch(
            SLAVE,
            &PatchParams::default(),
            // progressDeadlineSeconds must stay above minReadySeconds.
            &Patch::Merge(
                json!({"spec": {"minReadySeconds": secs, "progressDeadlineSeconds": secs + 600}}),
            ),
        )
        .await
        .expect("patch minReadySeconds");
}

async fn slave_pod_names(client: &kube::Client) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app=new-api,role=slave"))
        .await
        .expect("list slave pods");
    let mut names: Vec<String> = pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// The whole life of a scale on the seed cluster (two 4-CPU nodes, 7000m of 8000m requested),
/// in order: preflight and dry run, no-op, refusal without a terminal, 3 → 5 with one pod the
/// scheduler cannot place, undo, a concurrent change while waiting, and a restart.
#[tokio::test(flavor = "multi_thread")]
async fn scale_life_on_the_seed_cluster() {
    let sb = private_sandbox("scale");
    let client = client_of(&sb.kubeconfig).await;
    settled(&sb, &client).await;

    // The preflight, before acting: one of the two new slaves fits, CPU is the limit.
    let dry = run(&sb, &["scale", "5", "--dry-run"]);
    dry.code(0)
        .stdout_has("deployment/new-api-slave in namespace new-api: 3 → 5 replicas")
        .stdout_has("~3000-4000 QPS")
        .stdout_has("~5000-6000 QPS")
        .stdout_has("7000m / 8000m = 88%")
        .stdout_has("9000m / 8000m = 113%")
        .stdout_has("new slave 2 → Pending: 0/2 nodes are available: ")
        .stdout_has("2 Insufficient cpu.")
        .stdout_has("Only 1 of the 2 new slaves fits; CPU is the limit: 1 pod would stay Pending.")
        .stderr_has("--dry-run: nothing was changed.");
    eprintln!("--- scale 5 --dry-run on the seed cluster:\n{}", dry.stdout);
    let json = run(&sb, &["scale", "5", "--dry-run", "-o", "json"]);
    json.code(0);
    let plan = &json.json()["plan"];
    assert_eq!(plan["requests_before"]["cpu_millis"], 7000);
    assert_eq!(plan["requests_after"]["cpu_millis"], 9000);
    assert_eq!(plan["requests_after"]["memory_bytes"], 12_i64 << 30);
    assert_eq!(plan["capacity"]["new_pods"], 2);
    assert_eq!(plan["capacity"]["pending"], 1);
    assert_eq!(plan["capacity"]["limited_by"], json!(["cpu"]));
    assert_eq!(plan["capacity"]["placed"].as_array().unwrap().len(), 1);
    // --qps picks the same count from the throughput.
    run(&sb, &["scale", "--qps", "5000", "--dry-run"])
        .code(0)
        .stdout_has("3 → 5 replicas");
    assert_eq!(replicas(&client).await, 3, "--dry-run changed nothing");

    // The current count is a no-op, asked nothing and recorded nothing.
    run(&sb, &["scale", "3"])
        .code(0)
        .stderr_has("already has 3 replicas: nothing to do");
    assert!(record(&slave(&client).await).is_none());

    // No terminal and no --yes: refused, nothing changed.
    run(&sb, &["scale", "4"])
        .code(64)
        .stderr_has("no terminal to ask on: Scale deployment/new-api-slave in namespace new-api from 3 to 4?")
        .stderr_has("pass --yes");
    assert_eq!(replicas(&client).await, 3);

    // 3 → 5 for real: the scheduler places one, not the other; reported with its own words.
    let up = run(&sb, &["scale", "5", "--yes"]);
    up.code(75)
        .stderr_has("scale new-api/new-api-slave 3 -> 5 by ")
        .stderr_has("4 of 5 replicas available; the scheduler cannot place 1 pod:")
        .stderr_has("Pending (FailedScheduling): 0/2 nodes are available: ")
        .stderr_has("2 Insufficient cpu.")
        .stderr_has("spec.replicas stays at 5, as requested")
        .stderr_has("newapi-ops scale --undo");
    eprintln!("--- scale 5 --yes:\n{}", up.stderr);
    let d = slave(&client).await;
    assert_eq!(d.spec.replicas, Some(5));
    let rec = record(&d).expect("the scale is recorded on the Deployment");
    assert_eq!(
        (rec["from"].as_i64(), rec["to"].as_i64()),
        (Some(3), Some(5))
    );
    assert!(rec["at"].as_str().unwrap().ends_with('Z'));

    // --undo returns to 3 and waits until the extra pods are gone (-o json: one document).
    let undo = run(&sb, &["scale", "--undo", "--yes", "-o", "json"]);
    undo.code(0).stderr_has("3/3 replicas available");
    let report = undo.json();
    assert_eq!(report["changed"], true);
    assert_eq!(report["plan"]["undoes"]["to"], 5);
    assert_eq!(report["applied"]["record"]["from"], 5);
    assert_eq!(report["applied"]["record"]["undo"], true);
    assert_eq!(report["rollout"]["available"], 3);
    run(&sb, &["scale", "--undo", "--dry-run"])
        .code(0)
        .stdout_has("3 → 5 replicas (undoing 5 → 3 by ");
    let d = slave(&client).await;
    assert_eq!(d.spec.replicas, Some(3));
    let rec = record(&d).unwrap();
    assert_eq!(
        (rec["from"].as_i64(), rec["to"].as_i64()),
        (Some(5), Some(3))
    );
    assert_eq!(rec["undo"], true);

    // A concurrent change while waiting is reported, not overwritten. minReadySeconds keeps the
    // rollout from completing, so the change certainly lands during the wait.
    set_min_ready_seconds(&client, 3600).await;
    let waiting = spawn(&sb, &["scale", "4", "--yes", "--timeout", "1h"]);
    until("the tool has set 4 replicas", async || {
        let d = slave(&client).await;
        (record(&d).and_then(|r| r["to"].as_i64()) == Some(4)).then_some(())
    })
    .await;
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch_scale(
            SLAVE,
            &PatchParams {
                field_manager: Some("someone-else".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("the concurrent change");
    let done = finish(waiting);
    done.code(76)
        .stderr_has("the replicas of deployment/new-api-slave in namespace new-api are 2, not 4")
        .stderr_has("someone else set them to 2")
        .stderr_has("left them at 2");
    eprintln!("--- concurrent change:\n{}", done.stderr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replicas(&client).await, 2, "the concurrent change stays");
    // --undo would now overwrite that change: refused.
    run(&sb, &["scale", "--undo", "--yes"])
        .code(76)
        .stderr_has("are 2, not 4")
        .stderr_has("--undo would overwrite that change");
    set_min_ready_seconds(&client, 0).await;
    run(&sb, &["scale", "3", "--yes"]).code(0);
    settled(&sb, &client).await;

    // restart slaves: every pod replaced, one at a time through the one free slot.
    let before = slave_pod_names(&client).await;
    let restart = run(&sb, &["restart", "slaves", "--yes"]);
    restart
        .code(0)
        .stdout_has("restart 3 pods (rolling update: up to 1 extra, up to 0 unavailable at a time)")
        .stdout_has("extra pod → ")
        .stderr_has("3/3 replicas restarted and available");
    let d = slave(&client).await;
    let restarted_at = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt"))
        .cloned();
    assert!(restarted_at.is_some(), "the restart annotation is set");
    let after = slave_pod_names(&client).await;
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every slave pod was replaced: {before:?} → {after:?}"
    );
    assert_eq!(replicas(&client).await, 3);
}

/// `plan` reproduces the seed's 扩展建议 rows from the live requests, with room and nodes.
/// Runs beside the scale scenario: the slave count it sees varies between 2 and 5, and every
/// assertion here holds for each of them.
#[tokio::test(flavor = "multi_thread")]
async fn plan_reproduces_the_seed_table() {
    let sb = private_sandbox("scale");
    until("7000m requested", async || {
        let done = Run::new(["nodes", "-o", "json"]).admin_of(&sb).output();
        (done.code == 0 && done.json()["totals"]["requested"]["cpu_millis"].as_i64() >= Some(6000))
            .then_some(())
    })
    .await;
    let done = run(&sb, &["plan", "-o", "json"]);
    done.code(0);
    let report = done.json();
    let rows: Vec<(u64, i64, i64, i64, bool, i64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["target_qps"].as_u64().unwrap(),
                r["slaves"].as_i64().unwrap(),
                r["requests"]["cpu_millis"].as_i64().unwrap(),
                r["requests"]["memory_bytes"].as_i64().unwrap() >> 30,
                r["room"].as_bool().unwrap(),
                r["more_nodes"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1000, 1, 5000, 8, true, 0),
            (3000, 3, 7000, 10, true, 0),
            (5000, 5, 9000, 12, false, 1),
            (10000, 10, 14000, 17, false, 2),
        ]
    );
    assert_eq!(report["node_size"]["slaves_per_node"], 4);
    assert_eq!(report["node_size"]["allocatable"]["cpu_millis"], 4000);

    let human = run(&sb, &["plan"]);
    human
        .code(0)
        .stdout_has("TARGET QPS")
        .stdout_has("MORE NODES")
        .stdout_has("slave N×(1000m, 1Gi)")
        .stdout_has("holds 4 slaves when empty (cpu runs out first)");
    eprintln!("--- plan:\n{}", human.stdout);

    run(&sb, &["plan", "--qps", "2500", "-o", "json"]).code(0);
    let custom = run(
        &sb,
        &[
            "plan",
            "--qps",
            "2500,20000",
            "--qps-per-pod",
            "500",
            "-o",
            "json",
        ],
    );
    let rows = custom.json()["rows"].clone();
    assert_eq!(rows[0]["slaves"], 5);
    assert_eq!(rows[1]["slaves"], 40);
}

/// Bad values are refused before anything is asked of the cluster; users without the right to
/// patch `deployments/scale` get a 403 that names the verb, the resource and the namespace.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_bad_values_and_rbac() {
    for (args, needle) in [
        (vec!["scale", "abc"], "`abc` is not a replica count"),
        (vec!["scale", "--", "-1"], "the allowed range is 0 to 20"),
        (vec!["scale", "21"], "the allowed range is 0 to 20"),
        (
            vec!["scale", "--qps", "50000"],
            "--qps 50000 (at ~1000 QPS per slave) asks for 50 replicas",
        ),
        (vec!["scale", "5", "--undo"], "cannot be used with"),
        (vec!["scale"], "required"),
        (vec!["scale", "5", "--timeout", "soon"], "not a duration"),
    ] {
        Run::new(&args).output().code(64).stderr_has(needle);
    }

    let sb = private_sandbox("scale");
    // reader: may read Deployments in new-api, not patch deployments/scale, not list nodes.
    let denied = Run::new(["scale", "7", "--yes"])
        .env("KUBECONFIG", &sb.reader_kubeconfig)
        .output();
    denied
        .code(77)
        .stderr_has("capacity not checked: RBAC denied list on nodes at cluster scope")
        .stderr_has("RBAC denied patch on deployments/scale in namespace \"new-api\"")
        .stderr_has("ask a cluster admin for a Role granting `patch` on `deployments/scale`");
    eprintln!("--- reader: scale 7 --yes:\n{}", denied.stderr);
    // viewer: no rights at all.
    Run::new(["scale", "7", "--yes"])
        .env("KUBECONFIG", &sb.viewer_kubeconfig)
        .output()
        .code(77)
        .stderr_has("RBAC denied list on deployments.apps in namespace \"new-api\"");
    let client = client_of(&sb.kubeconfig).await;
    assert_ne!(replicas(&client).await, 7);
}

/// The API server dies while `scale` follows the rollout: a clear error (exit 69) that says the
/// Deployment is as requested, since the API server had accepted the new count.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_going_away_mid_wait() {
    let sb = private_sandbox("scale-apidown");
    let client = client_of(&sb.kubeconfig).await;
    settled(&sb, &client).await;
    set_min_ready_seconds(&client, 3600).await;
    let waiting = spawn(&sb, &["scale", "4", "--yes", "--timeout", "1h"]);
    until("the tool has set and recorded 4 replicas", async || {
        let d = slave(&client).await;
        (d.spec.replicas == Some(4) && record(&d).and_then(|r| r["to"].as_i64()) == Some(4))
            .then_some(())
    })
    .await;
    signal_process(&sb, "kube-apiserver", nix::sys::signal::Signal::SIGKILL);
    let done = finish(waiting);
    done.code(69)
        .stderr_has(&format!(
            "lost the API server at {}",
            sb.api_server.trim_end_matches('/')
        ))
        .stderr_has(
            "the deployment is as requested: spec.replicas = 4 was accepted by the API server at",
        )
        .stderr_has("newapi-ops scale --undo");
    eprintln!("--- API server killed mid-wait:\n{}", done.stderr);
}

/// The API server freezes (SIGSTOP: connections accepted, nothing answered) while `scale` follows
/// the rollout: each poll is bounded, so the wait ends with exit 69 naming the API server and the
/// call that got no answer — it does not hang on the frozen connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_api_server_ends_the_wait_with_a_clear_error() {
    use nix::sys::signal::Signal;
    let sb = private_sandbox("scale-frozen");
    let client = client_of(&sb.kubeconfig).await;
    settled(&sb, &client).await;
    set_min_ready_seconds(&client, 3600).await;
    let waiting = spawn(&sb, &["scale", "4", "--yes", "--timeout", "1h"]);
    until("the tool has set and recorded 4 replicas", async || {
        let d = slave(&client).await;
        (d.spec.replicas == Some(4) && record(&d).and_then(|r| r["to"].as_i64()) == Some(4))
            .then_some(())
    })
    .await;
    signal_process(&sb, "kube-apiserver", Signal::SIGSTOP);
    let done = tokio::task::spawn_blocking(move || finish(waiting))
        .await
        .unwrap();
    signal_process(&sb, "kube-apiserver", Signal::SIGCONT);
    done.code(69)
        .stderr_has(&format!(
            "lost the API server at {}",
            sb.api_server.trim_end_matches('/')
        ))
        .stderr_has("no answer")
        .stderr_has("spec.replicas = 4 was accepted");
}
