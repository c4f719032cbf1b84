//! metrics.k8s.io served for real: the sandbox's metrics server in its own network namespace,
//! behind the API server's aggregation layer, with the usage a pod annotation asks for
//! (`sandbox.newapi-ops.io/usage`). And the sandbox without it (`--no-metrics`), as a cluster
//! without metrics-server looks.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{
    Run, Sandbox, findings, private_sandbox, private_sandbox_dir, private_sandbox_with, sandbox,
    subjects_of,
};

/// Whether this machine can serve metrics.k8s.io (root and `ip`); tests of the served path say
/// so and stop when it cannot.
#[allow(clippy::print_stderr)] // a skipped test says so where cargo test shows it
fn can_serve(sb: &Sandbox) -> bool {
    if sb.metrics.is_none() {
        eprintln!(
            "skipped: the sandbox does not serve metrics.k8s.io ({})",
            sb.metrics_off.as_deref().unwrap_or("unknown reason")
        );
        return false;
    }
    true
}

fn diagnose_nodes(sb: &Sandbox) -> (Value, i32) {
    let out = Run::new(["diagnose", "--only", "nodes", "-o", "json"])
        .admin_of(sb)
        .output();
    let code = out.code;
    (out.json(), code)
}

/// Runs `cmd`, which must succeed, and returns its standard output.
fn succeed(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `f` to its end, for the synchronous tests here.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A GET of `path` through the API server as the user of `kubeconfig` (what `kubectl get --raw`
/// does): the JSON it answered, or the API server's error.
fn try_get_raw(kubeconfig: &std::path::Path, path: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    block_on(async {
        crate::support::client_of(kubeconfig)
            .await
            .request(request)
            .await
    })
}

fn get_raw(sb: &Sandbox, path: &str) -> Value {
    try_get_raw(&sb.kubeconfig, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The HTTP status of the API server's answer to a GET of `path` that must fail.
fn refused_code(kubeconfig: &std::path::Path, path: &str) -> u16 {
    match try_get_raw(kubeconfig, path) {
        Ok(v) => panic!("GET {path} answered: {v:#}"),
        Err(kube::Error::Api(status)) => status.code,
        Err(e) => panic!("GET {path}: not an answer of the API server: {e}"),
    }
}

#[test]
fn metrics_are_served_through_the_aggregation_layer() {
    let sb = sandbox();
    if !can_serve(sb) {
        return;
    }
    // Discovery, nodes and pods, through the API server (which proxies to the namespace).
    let discovery = get_raw(sb, "/apis/metrics.k8s.io/v1beta1");
    assert_eq!(discovery["kind"], "APIResourceList");
    let nodes = get_raw(sb, "/apis/metrics.k8s.io/v1beta1/nodes");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    let names: BTreeSet<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains("sandbox-node-1") && names.contains("sandbox-node-2"),
        "{nodes:#}"
    );
    for n in nodes["items"].as_array().unwrap() {
        assert!(n["usage"]["cpu"].as_str().unwrap().ends_with(['m', 'n']));
        assert!(n["usage"]["memory"].as_str().unwrap().ends_with('i'));
    }
    let pods = get_raw(sb, "/apis/metrics.k8s.io/v1beta1/namespaces/new-api/pods");
    assert_eq!(pods["kind"], "PodMetricsList");
    assert!(pods["items"].as_array().unwrap().len() >= 6, "{pods:#}");
    let all = get_raw(sb, "/apis/metrics.k8s.io/v1beta1/pods");
    assert!(all["items"].as_array().unwrap().len() >= pods["items"].as_array().unwrap().len());

    // A user without RBAC rights gets the API server's 403, not figures.
    assert_eq!(
        refused_code(&sb.viewer_kubeconfig, "/apis/metrics.k8s.io/v1beta1/nodes"),
        403
    );

    // diagnose no longer says usage is unchecked.
    let (report, _) = diagnose_nodes(sb);
    assert!(
        findings(&report, "nodes.metrics").is_empty(),
        "metrics.k8s.io is served:\n{report:#}"
    );
}

/// A veth pair on the host (this kernel has no dummy links), removed when dropped.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

fn ip(args: &[&str]) {
    succeed(std::process::Command::new("ip").args(args));
}

/// Whether this machine cannot make network namespaces (not root, or no `ip`); a test that
/// needs them says it is skipped.
#[allow(clippy::print_stderr)] // a skipped test says so where cargo test shows it
fn no_network_namespaces() -> bool {
    let Some(why) = newapi_ops_sandbox::netns::unavailable() else {
        return false;
    };
    eprintln!("skipped: no network namespaces here ({why})");
    true
}

/// Two sandboxes whose directories hash to the same /30, or one and the leftover of a killed
/// run (a CI run lost its metrics.k8s.io this way): the address is already on another link of
/// the host. `up` takes the next free /30, and the API server reaches its own metrics server.
#[test]
fn a_link_already_on_the_sandboxes_addresses_is_stepped_round() {
    if no_network_namespaces() {
        return;
    }
    let name = "netns-clash";
    let preferred = newapi_ops_sandbox::netns::NetnsPlan::for_dir(&private_sandbox_dir(name));
    let link = Link(format!("naoc{}", std::process::id()));
    let peer = format!("{}p", link.0);
    ip(&[
        "link", "add", &link.0, "type", "veth", "peer", "name", &peer,
    ]);
    ip(&[
        "addr",
        "add",
        &format!("{}/30", preferred.host_addr),
        "dev",
        &link.0,
    ]);
    ip(&["link", "set", &link.0, "up"]);

    let sb = private_sandbox(name);
    let got = sb.metrics.as_ref().expect("metrics.k8s.io is served");
    let host = got["host_addr"].as_str().unwrap();
    assert_ne!(host, preferred.host_addr.to_string(), "{got:#}");
    assert_eq!(got["name"], preferred.name.as_str());
    let nodes = get_raw(&sb, "/apis/metrics.k8s.io/v1beta1/nodes");
    assert_eq!(nodes["kind"], "NodeMetricsList");
    drop(link);
}

/// The directory of a crashed sandbox removed by hand: `down` there still removes the network
/// namespace named after it, and says so.
#[test]
fn down_where_the_directory_is_gone_removes_its_namespace() {
    if no_network_namespaces() {
        return;
    }
    let dir = private_sandbox_dir("gone");
    let plan = newapi_ops_sandbox::netns::NetnsPlan::for_dir(&dir);
    ip(&["netns", "add", &plan.name]);
    let down = Run::new(["sandbox", "down", "--dir", dir.to_str().unwrap()]).output();
    down.code(0).stdout_has(&format!(
        "nothing to stop (its network namespace {} was left behind: removed)",
        plan.name
    ));
    let left = succeed(std::process::Command::new("ip").args(["netns", "list"]));
    assert!(
        !String::from_utf8_lossy(&left).contains(&plan.name),
        "{}",
        String::from_utf8_lossy(&left)
    );
    // Nothing there at all: nothing said about a namespace.
    Run::new(["sandbox", "down", "--dir", dir.to_str().unwrap()])
        .output()
        .code(0)
        .stdout_has("nothing to stop.");
}

/// Annotates a pod of namespace new-api in `sb` with the usage the metrics server reports.
fn annotate(sb: &Sandbox, pod: &str, usage: &str) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, Patch, PatchParams};
    let patch = json!({"metadata": {"annotations": {"sandbox.newapi-ops.io/usage": usage}}});
    block_on(async {
        let pods: Api<Pod> = Api::namespaced(crate::support::admin_client_of(sb).await, "new-api");
        pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
    })
    .unwrap_or_else(|e| panic!("annotating pod {pod}: {e}"));
}

#[test]
fn hot_slaves_give_the_usage_findings_and_pods_top_figures() {
    let sb = private_sandbox("metrics");
    if !can_serve(&sb) {
        return;
    }
    let pods = Run::new(["pods", "--role", "slave", "-o", "json"])
        .admin_of(&sb)
        .output()
        .json();
    let slaves: Vec<(String, String)> = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(slaves.len(), 3, "{pods:#}");
    // Every slave near its limits (2000m CPU, 2Gi memory): 95 % CPU, 93 % memory.
    for (name, _) in &slaves {
        annotate(&sb, name, "cpu=1900m,memory=1900Mi");
    }
    // The metrics server learns of the annotation through its watch: poll until it shows.
    let mut last = (Value::Null, 0);
    for _ in 0..60 {
        last = diagnose_nodes(&sb);
        if subjects_of(&last.0, "nodes.pod-cpu-usage").len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (report, code) = last;
    assert_eq!(code, 1, "usage warnings:\n{report:#}");
    for check in ["nodes.pod-cpu-usage", "nodes.pod-memory-usage"] {
        // One finding per check (the three slaves share the cause), naming all three.
        assert_eq!(findings(&report, check).len(), 1, "{check}:\n{report:#}");
        let subjects = subjects_of(&report, check);
        let want: BTreeSet<String> = slaves.iter().map(|(n, _)| format!("pod/{n}")).collect();
        assert_eq!(subjects, want, "{check}:\n{report:#}");
    }
    let cpu = findings(&report, "nodes.pod-cpu-usage")[0];
    assert!(
        cpu["subjects"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("95% of its CPU limit"),
        "{cpu}"
    );
    assert!(
        cpu["evidence"][0]
            .as_str()
            .unwrap()
            .contains("usage 1900m of limit 2000m")
    );
    let mem = findings(&report, "nodes.pod-memory-usage")[0];
    assert!(
        mem["subjects"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("93% of its memory limit"),
        "{mem}"
    );
    // Three slaves on two nodes: one node holds two, 3800m + the rest of its 4000m > 80 %.
    let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
    for (_, node) in &slaves {
        *per_node.entry(node.as_str()).or_default() += 1;
    }
    let busy: BTreeSet<String> = per_node
        .iter()
        .filter(|(_, c)| **c >= 2)
        .map(|(n, _)| format!("node/{n}"))
        .collect();
    let hot_nodes: BTreeSet<String> = subjects_of(&report, "nodes.cpu-usage");
    assert!(
        !busy.is_empty() && busy.is_subset(&hot_nodes),
        "nodes with two hot slaves {busy:?} use > 80 % CPU:\n{report:#}"
    );
    assert!(findings(&report, "nodes.metrics").is_empty());

    // The runbook action pods.top (kubectl top pods) returns the same figures.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("top.yaml");
    std::fs::write(
        &file,
        "name: top-only\ntitle: Top\ndescription: pods.top alone.\nsymptoms: [cpu]\nsteps:\n  - id: top\n    title: Top\n    action: pods.top\n",
    )
    .unwrap();
    let args: Vec<&std::ffi::OsStr> = vec![
        "runbook".as_ref(),
        "run".as_ref(),
        file.as_os_str(),
        "--yes".as_ref(),
        "--runs-dir".as_ref(),
        dir.path().as_os_str(),
        "-o".as_ref(),
        "json".as_ref(),
    ];
    let out = Run::new(args).admin_of(&sb).output();
    let r = out.json();
    let top = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "top")
        .unwrap()["output"]
        .clone();
    assert_eq!(top["available"], true, "{r:#}");
    assert_eq!(top["max_cpu_percent"], 95, "{top:#}");
    assert_eq!(top["max_memory_percent"], 93, "{top:#}");
    let hot: BTreeSet<&str> = top["hot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = slaves.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(hot, want, "{top:#}");
    let slave = top["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == slaves[0].0.as_str())
        .unwrap();
    assert_eq!(
        (slave["cpu_millis"].clone(), slave["memory_bytes"].clone()),
        (json!(1900), json!(1900_i64 << 20))
    );
    let master = top["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "master")
        .unwrap();
    assert_eq!(
        master["cpu_millis"], 15,
        "a pod without the annotation uses a little"
    );
}

#[test]
fn without_metrics_usage_is_not_checked() {
    let sb = private_sandbox_with("no-metrics", &["--no-metrics"]);
    assert!(sb.metrics.is_none());
    assert_eq!(sb.metrics_off.as_deref(), Some("started with --no-metrics"));
    let (report, code) = diagnose_nodes(&sb);
    let info = findings(&report, "nodes.metrics");
    assert_eq!(info.len(), 1, "{report:#}");
    assert_eq!(info[0]["severity"], "info");
    assert!(
        info[0]["summary"]
            .as_str()
            .unwrap()
            .contains("metrics.k8s.io is not served")
    );
    assert!(code <= 1, "{report:#}");
    // Nothing serves metrics.k8s.io: the API server does not know the group.
    assert_eq!(
        refused_code(&sb.kubeconfig, "/apis/metrics.k8s.io/v1beta1/nodes"),
        404,
        "nothing serves metrics.k8s.io"
    );
}
