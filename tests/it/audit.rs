//! `audit`: the real binary against the sandbox's Kubernetes 1.20.2, MariaDB and Redis.
//!
//! - On the shared seed (read only): the rules the seed fails and passes, the JUnit file parsed
//!   (one test case per rule, a failure per failing rule), `--fail-on`, and an RBAC denial of a
//!   fix (the `reader` user) reported with nothing applied.
//! - In namespaces of their own: New-API rules firing, then the Deployments changed until they
//!   pass; the backup rules before and after a verified backup.
//! - On `private_sandbox("audit")` (the fixes change the seed): a fix refused half-way by RBAC
//!   (reader may create HPAs only) leaves nothing behind; `--fix --yes` applied by the real API
//!   server at the versions it serves, the re-audit better, a log shipper DaemonSet noticed.
#![allow(clippy::print_stderr)]

use std::path::Path;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::support::{Done, Run, Sandbox, apply_in, newapi_deployment, private_sandbox, sandbox};

fn rule<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no rule {id} in {report:#}"))
}

#[track_caller]
fn assert_status(report: &Value, id: &str, want: &str) {
    let r = rule(report, id);
    assert_eq!(r["status"], want, "{id}: {r:#}");
}

/// One XML element: its name, attributes and children (text is skipped).
#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn all<'a>(&'a self, name: &str, out: &mut Vec<&'a Element>) {
        if self.name == name {
            out.push(self);
        }
        for c in &self.children {
            c.all(name, out);
        }
    }
}

/// A small XML parser (elements, attributes, the declaration; enough for JUnit): panics on
/// anything malformed, such as a close tag that does not match.
fn parse_xml(s: &str) -> Element {
    let mut stack: Vec<Element> = vec![Element {
        name: "#document".into(),
        attrs: Vec::new(),
        children: Vec::new(),
    }];
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("unclosed tag");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let done = stack.pop().expect("close without open");
            assert_eq!(done.name, name.trim(), "mismatched close tag");
            stack.last_mut().expect("document").children.push(done);
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs_text) = tag.split_once(' ').unwrap_or((tag, ""));
        let mut attrs = Vec::new();
        while let Some(eq) = attrs_text.find("=\"") {
            let key = attrs_text[..eq].trim().to_string();
            let after = &attrs_text[eq + 2..];
            let close = after.find('"').expect("unclosed attribute");
            let value = after[..close]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            attrs.push((key, value));
            attrs_text = &after[close + 1..];
        }
        let el = Element {
            name: name.to_string(),
            attrs,
            children: Vec::new(),
        };
        if self_closing {
            stack.last_mut().expect("document").children.push(el);
        } else {
            stack.push(el);
        }
    }
    assert_eq!(
        stack.len(),
        1,
        "unclosed elements: {:?}",
        stack.last().map(|e| &e.name)
    );
    stack.pop().expect("document")
}

fn audit(args: &[&str]) -> (Value, Done) {
    let mut full = vec!["audit", "-o", "json"];
    full.extend_from_slice(args);
    let done = Run::new(full).admin().output();
    (done.json(), done)
}

#[test]
fn the_seed_graded_with_junit_and_fail_on() {
    let junit = tempfile::tempdir().unwrap();
    let file = junit.path().join("audit.xml");
    let file_arg = file.display().to_string();
    let (report, done) = audit(&["--junit", &file_arg, "--backup-dir", "/nonexistent-audit"]);
    done.code(0);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["server_version"], "v1.20.2");
    for id in [
        "advice.hpa",
        "advice.pdb",
        "advice.ingress",
        "advice.network-policy",
        "advice.default-secrets",
        "advice.external-database",
        "newapi.sql-pool",
        "kube.image-tags",
        "kube.redis-maxmemory",
        "backup.verified",
    ] {
        assert_status(&report, id, "fail");
    }
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.secrets-set",
        "newapi.secrets-identical",
        "newapi.redis-when-scaled",
        "kube.mysql-pvc",
        "kube.resources",
    ] {
        assert_status(&report, id, "pass");
    }
    // No Prometheus Operator in the sandbox: not checked, with why.
    assert_status(&report, "advice.monitoring", "not-checked");
    assert!(
        rule(&report, "advice.monitoring")["summary"]
            .as_str()
            .unwrap()
            .contains("monitoring.coreos.com")
    );
    // The pool arithmetic against the live MariaDB, reached through a port-forward.
    let pool = rule(&report, "newapi.sql-pool");
    assert!(
        pool["evidence"].to_string().contains("port-forward"),
        "{pool:#}"
    );
    assert_eq!(pool["fix"], "mysql-max-connections");
    // Never a secret: the seed's MySQL password and session secret.
    for s in ["123456", "sandbox-session-secret-change-me"] {
        assert!(!done.stdout.contains(s), "{s} in the report");
    }
    // The JUnit file: one test case per rule, a failure per failing rule, skipped = not checked.
    let xml = std::fs::read_to_string(&file).expect("the JUnit file");
    let doc = parse_xml(&xml);
    let mut cases = Vec::new();
    doc.all("testcase", &mut cases);
    let rules = report["rules"].as_array().unwrap();
    assert_eq!(cases.len(), rules.len());
    for r in rules {
        let case = cases
            .iter()
            .find(|c| c.attr("name") == r["id"].as_str())
            .unwrap_or_else(|| panic!("no test case for {}", r["id"]));
        let kinds: Vec<&str> = case.children.iter().map(|c| c.name.as_str()).collect();
        match r["status"].as_str().unwrap() {
            "fail" => {
                assert_eq!(kinds, ["failure"], "{}", r["id"]);
                assert_eq!(case.children[0].attr("type"), r["severity"].as_str());
            }
            "not-checked" => assert_eq!(kinds, ["skipped"], "{}", r["id"]),
            _ => assert_eq!(kinds, ["system-out"], "{}", r["id"]),
        }
    }
    let mut suites = Vec::new();
    doc.all("testsuites", &mut suites);
    assert_eq!(
        suites[0].attr("failures").unwrap(),
        report["counts"]["fail"].to_string()
    );
    // --junit - prints the XML instead of the report.
    let done = Run::new(["audit", "--junit", "-"]).admin().output();
    done.code(0);
    parse_xml(&done.stdout);
    // --fail-on: the seed fails critical rules (its default passwords).
    Run::new(["audit", "--fail-on", "critical", "-q"])
        .admin()
        .output()
        .code(2);
    Run::new(["audit", "--fail-on", "warning", "-q"])
        .admin()
        .output()
        .code(2);
    // --fix --dry-run prints the manifests at the versions 1.20 serves, and changes nothing.
    let done = Run::new(["audit", "--fix", "--dry-run", "--ingress-host", "api.test"])
        .admin()
        .output();
    done.code(0)
        .stdout_has("apiVersion: autoscaling/v2beta2")
        .stdout_has("apiVersion: policy/v1beta1")
        .stdout_has("apiVersion: batch/v1beta1")
        .stdout_has("apiVersion: networking.k8s.io/v1")
        .stdout_has("--max-connections=");
    let (report, _) = audit(&[]);
    assert_status(&report, "advice.hpa", "fail");
}

#[test]
fn an_rbac_denial_of_a_fix_applies_nothing() {
    let sb = sandbox();
    let runs = tempfile::tempdir().unwrap();
    let done = Run::new(["audit", "--fix", "--yes"])
        .env("KUBECONFIG", &sb.reader_kubeconfig)
        .env("NEWAPI_OPS_RUNS_DIR", runs.path())
        .output();
    eprintln!("{}", done.stderr);
    done.code(77)
        .stderr_has("nothing changed")
        .stderr_has("RBAC denied create on horizontalpodautoscalers.autoscaling")
        .stderr_has("hint:");
    // What reader could not read is not checked, not passed.
    let (report, _) = {
        let d = Run::new(["audit", "-o", "json"])
            .env("KUBECONFIG", &sb.reader_kubeconfig)
            .output();
        (d.json(), d)
    };
    assert_status(&report, "newapi.secrets-identical", "not-checked");
    assert_status(&report, "advice.log-aggregation", "not-checked");
    // The refusal is in a transcript (0600), without secrets.
    let files: Vec<_> = std::fs::read_dir(runs.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("refused"), "{text}");
        assert!(!text.contains("123456"));
    }
}

#[tokio::test]
async fn newapi_rules_fire_then_pass_once_the_deployment_is_fixed() {
    let slave_env = json!({"env": [
        {"name": "NODE_TYPE", "value": "Slave"},
        {"name": "SYNC_FREQENCY", "value": "60"},
        {"name": "SESSION_SECRET", "value": "another-session-secret-0123456789"},
        {"name": "CRYPTO_SECRET", "value": "test-crypto-secret"},
        {"name": "SQL_MAX_LIFETIME", "value": "60s"}
    ]});
    let ns = apply_in(
        "audit-rules",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 2, json!({}), slave_env),
        ],
    )
    .await;
    let (report, done) = audit(&["-n", &ns]);
    done.code(0);
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.env-names",
        "newapi.secrets-identical",
        "newapi.redis-when-scaled",
        "newapi.sql-lifetime",
    ] {
        assert_status(&report, id, "fail");
    }
    assert!(
        rule(&report, "newapi.env-names")["evidence"]
            .to_string()
            .contains("did you mean SYNC_FREQUENCY")
    );
    assert!(!done.stdout.contains("another-session-secret"));
    // Change the Deployments the way an operator would.
    let client = crate::support::admin_client().await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, &ns);
    let redis = json!({"name": "REDIS_CONN_STRING", "value": "redis://cache.example.net:6379"});
    deployments
        .patch(
            "new-api-slave",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "new-api", "env": [
                    {"name": "NODE_TYPE", "value": "slave"},
                    {"name": "SYNC_FREQENCY", "$patch": "delete"},
                    {"name": "SYNC_FREQUENCY", "value": "60"},
                    {"name": "SESSION_SECRET", "value": "test-session-secret"},
                    {"name": "SQL_MAX_LIFETIME", "value": "55"},
                    redis
                ]}]}}}}),
            ),
        )
        .await
        .expect("patch the slaves");
    deployments
        .patch(
            "new-api-master",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "new-api", "env": [redis]}]}}}})),
        )
        .await
        .expect("patch the master");
    let (report, done) = audit(&["-n", &ns]);
    done.code(0);
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.env-names",
        "newapi.redis-when-scaled",
        "newapi.sql-lifetime",
        "advice.redis-ha",
    ] {
        assert_status(&report, id, "pass");
    }
    // Pods of the old template may still run: secrets are compared on every pod, so wait for the
    // rollout to replace them (a bound on convergence, not a time limit).
    let mut last = Value::Null;
    for _ in 0..120 {
        let (r, _) = audit(&["-n", &ns]);
        if rule(&r, "newapi.secrets-identical")["status"] == "pass" {
            last = Value::Null;
            break;
        }
        last = r;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(last.is_null(), "secrets still differ: {last:#}");
    crate::support::delete_namespace(&ns).await;
}

#[test]
fn backup_rules_see_a_verified_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let (report, _) = audit(&["--backup-dir", &d]);
    for id in ["backup.recent", "backup.verified", "backup.offsite"] {
        assert_status(&report, id, "fail");
    }
    let done = Run::new(["backup", "--dir", &d, "-o", "json"])
        .admin()
        .output();
    done.code(0);
    let id = done.json()["id"].as_str().expect("backup id").to_string();
    let (report, _) = audit(&["--backup-dir", &d]);
    assert_status(&report, "backup.recent", "pass");
    assert_status(&report, "backup.offsite", "pass");
    assert_status(&report, "backup.verified", "fail");
    Run::new(["backup", "verify", &id, "--dir", &d])
        .admin()
        .output()
        .code(0);
    let (report, _) = audit(&["--backup-dir", &d]);
    assert_status(&report, "backup.verified", "pass");
    // Too old for a one-second maximum age.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (report, _) = audit(&["--backup-dir", &d, "--backup-max-age", "1s"]);
    assert_status(&report, "backup.recent", "fail");
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// Creates any object (as JSON) with the admin client, by its apiVersion and kind.
async fn create(client: &kube::Client, ns: Option<&str>, v: Value, plural: &str) {
    let (group, version) = v["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit_once('/')
        .map_or(("", v["apiVersion"].as_str().unwrap()), |(g, v)| (g, v));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, v["kind"].as_str().unwrap());
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {v}: {e}"));
}

async fn count(client: &kube::Client, api_version: &str, kind: &str, plural: &str) -> usize {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "new-api", &ar);
    api.list(&ListParams::default()).await.unwrap().items.len()
}

fn run_in(sb: &Sandbox, args: &[&str]) -> Done {
    Run::new(args).admin_of(sb).output()
}

#[tokio::test]
async fn fixes_applied_by_the_real_api_server_raise_the_grade() {
    let sb = private_sandbox("audit");
    let admin = client_of(&sb.kubeconfig).await;
    // Reader may create HPAs (but nothing else the fixes need): the HPA passes its dry run, the
    // PDB does not, and nothing at all is applied.
    create(
        &admin,
        Some("new-api"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader-hpa"},
            "rules": [{"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create"]}]}),
        "roles",
    )
    .await;
    create(
        &admin,
        Some("new-api"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader-hpa"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader-hpa"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader"}]}),
        "rolebindings",
    )
    .await;
    let runs = tempfile::tempdir().unwrap();
    let done = Run::new(["audit", "--fix", "--yes", "--fixes", "hpa,pdb"])
        .env("KUBECONFIG", &sb.reader_kubeconfig)
        .env("NEWAPI_OPS_RUNS_DIR", runs.path())
        .output();
    eprintln!("{}", done.stderr);
    done.code(77)
        .stderr_has("poddisruptionbudget/new-api-slave-pdb")
        .stderr_has("nothing changed");
    assert_eq!(
        count(
            &admin,
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers"
        )
        .await,
        0,
        "the HPA that passed its dry run was not created"
    );
    // Before: the grade of the seed.
    let before = run_in(&sb, &["audit", "-o", "json"]);
    let before = before.json();
    assert_status(&before, "advice.log-aggregation", "fail");
    // --fix --yes as admin: every fix, applied by the real API server.
    let done = Run::new([
        "audit",
        "--fix",
        "--yes",
        "--ingress-host",
        "api.example.com",
        "-o",
        "json",
    ])
    .admin_of(&sb)
    .env("NEWAPI_OPS_RUNS_DIR", runs.path())
    .output();
    eprintln!("{}", done.stderr);
    done.code(0);
    let after = done.json();
    assert_eq!(after["fixes"]["mode"], "applied");
    let statuses: Vec<&str> = after["fixes"]["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["changes"].as_array().unwrap())
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.len() >= 10 && statuses.iter().all(|s| *s == "applied"),
        "{statuses:?}"
    );
    for id in [
        "advice.hpa",
        "advice.pdb",
        "advice.ingress",
        "advice.scheduled-backups",
        "advice.network-policy",
        "newapi.sql-pool",
        "kube.redis-maxmemory",
    ] {
        assert_status(&after, id, "pass");
    }
    assert!(
        after["score"].as_u64() > before["score"].as_u64(),
        "score {} → {}",
        before["score"],
        after["score"]
    );
    assert!(
        after["grade"].as_str().unwrap() < before["grade"].as_str().unwrap(),
        "grade {} → {}",
        before["grade"],
        after["grade"]
    );
    assert_eq!(after["before"]["score"], before["score"]);
    // The objects are there, at the versions this server serves.
    assert_eq!(
        count(
            &admin,
            "autoscaling/v2beta2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &admin,
            "policy/v1beta1",
            "PodDisruptionBudget",
            "poddisruptionbudgets"
        )
        .await,
        2
    );
    assert_eq!(
        count(&admin, "batch/v1beta1", "CronJob", "cronjobs").await,
        1
    );
    // The transcript names every change (0600, no secret).
    let transcript = after["fixes"]["transcript"].as_str().unwrap();
    let text = std::fs::read_to_string(transcript).unwrap();
    assert!(text.contains("create horizontalpodautoscaler/new-api-slave"));
    assert!(!text.contains("123456") && !text.contains("sandbox-session-secret"));
    // Nothing left to fix; a log shipper anywhere in the cluster passes advice 10.
    run_in(
        &sb,
        &[
            "audit",
            "--fix",
            "--yes",
            "--ingress-host",
            "api.example.com",
        ],
    )
    .code(0)
    .stdout_has("nothing to fix");
    create(
        &admin,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "logging"}}),
        "namespaces",
    )
    .await;
    create(
        &admin,
        Some("logging"),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "fluent-bit"},
            "spec": {"selector": {"matchLabels": {"app": "fluent-bit"}},
                "template": {"metadata": {"labels": {"app": "fluent-bit"}},
                    "spec": {"containers": [{"name": "fluent-bit", "image": "fluent/fluent-bit:3.0"}]}}}}),
        "daemonsets",
    )
    .await;
    let last = run_in(&sb, &["audit", "-o", "json"]).json();
    assert_status(&last, "advice.log-aggregation", "pass");
}
