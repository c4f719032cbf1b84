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

/// Checks a JUnit document with a real XML parser (roxmltree: well-formedness, entities, the
/// declaration): one `<testcase>` per rule, named by its id, whose only child says its status —
/// `<failure type="SEVERITY">` for a failing rule, `<skipped>` for one not checked,
/// `<system-out>` for a pass — and `failures` on `<testsuites>` the number of failing rules.
fn assert_junit_matches(xml: &str, report: &Value) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("JUnit XML: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        root.attribute("failures"),
        Some(report["counts"]["fail"].to_string().as_str())
    );
    let cases: Vec<roxmltree::Node> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let rules = report["rules"].as_array().unwrap();
    assert_eq!(cases.len(), rules.len());
    for r in rules {
        let id = r["id"].as_str().unwrap();
        let case = cases
            .iter()
            .find(|c| c.attribute("name") == Some(id))
            .unwrap_or_else(|| panic!("no test case for {id}"));
        let children: Vec<roxmltree::Node> = case.children().filter(|c| c.is_element()).collect();
        let kinds: Vec<&str> = children.iter().map(|c| c.tag_name().name()).collect();
        match r["status"].as_str().unwrap() {
            "fail" => {
                assert_eq!(kinds, ["failure"], "{id}");
                assert_eq!(children[0].attribute("type"), r["severity"].as_str());
                // The evidence is the failure's text, unescaped by the parser.
                let text = children[0].text().unwrap_or_default();
                assert!(
                    text.starts_with(r["summary"].as_str().unwrap()),
                    "{id}: {text}"
                );
            }
            "not-checked" => assert_eq!(kinds, ["skipped"], "{id}"),
            _ => assert_eq!(kinds, ["system-out"], "{id}"),
        }
    }
}

fn audit(args: &[&str]) -> (Value, Done) {
    let mut full = vec!["audit", "-o", "json"];
    full.extend_from_slice(args);
    let done = Run::new(full).admin().output();
    (done.json(), done)
}

/// `audit -n NS -o json` with MySQL and Redis pointed at closed loopback ports: the namespace's
/// DSN and Redis URL name hosts outside the cluster (what the rules judge), which this test must
/// not try to reach.
fn audit_offline(ns: &str) -> (Value, Done) {
    let closed = |scheme: &str| format!("{scheme}://127.0.0.1:{}", crate::support::closed_port());
    let done = Run::new(["audit", "-n", ns, "-o", "json"])
        .admin()
        .env("NEWAPI_OPS_MYSQL_URL", closed("mysql"))
        .env("NEWAPI_OPS_REDIS_URL", closed("redis"))
        .output();
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
    assert_junit_matches(&xml, &report);
    // --junit - prints the XML instead of the report.
    let done = Run::new([
        "audit",
        "--junit",
        "-",
        "--backup-dir",
        "/nonexistent-audit",
    ])
    .admin()
    .output();
    done.code(0);
    assert_junit_matches(&done.stdout, &report);
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
    for f in &transcript_files(runs.path()) {
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
    // The master: New-API's placeholder secrets, no SQL_DSN (SQLite in the pod), no Redis.
    let master_env = json!({"env": [
        {"name": "NODE_TYPE", "value": "master"},
        {"name": "SESSION_SECRET", "value": "random_string"},
        {"name": "CRYPTO_SECRET", "value": "random_string"}
    ]});
    // The DSN the operator will add, from a Secret, naming a database outside the cluster.
    let db_secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"SQL_DSN": "newapi:Wq8-unique-db-password@tcp(db.managed.invalid:3306)/newapi"}});
    let ns = apply_in(
        "audit-rules",
        &[
            db_secret,
            newapi_deployment("master", 1, json!({}), master_env),
            newapi_deployment("slave", 2, json!({}), slave_env),
        ],
    )
    .await;
    let (report, done) = audit_offline(&ns);
    done.code(0);
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.env-names",
        "newapi.secrets-set",
        "newapi.secrets-identical",
        "newapi.redis-when-scaled",
        "newapi.sql-lifetime",
        "advice.external-database",
        "advice.redis-ha",
        "advice.default-secrets",
    ] {
        assert_status(&report, id, "fail");
    }
    assert!(
        rule(&report, "advice.default-secrets")["evidence"]
            .to_string()
            .contains("random_string"),
        "{:#}",
        rule(&report, "advice.default-secrets")
    );
    assert!(
        rule(&report, "newapi.env-names")["evidence"]
            .to_string()
            .contains("did you mean SYNC_FREQUENCY")
    );
    assert!(!done.stdout.contains("another-session-secret"));
    // Change the Deployments the way an operator would.
    let client = crate::support::admin_client().await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client, &ns);
    let redis = json!({"name": "REDIS_CONN_STRING", "value": "redis://cache.managed.invalid:6379"});
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
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "new-api", "env": [
                redis,
                {"name": "SESSION_SECRET", "value": "test-session-secret"},
                {"name": "CRYPTO_SECRET", "value": "test-crypto-secret"},
                {"name": "SQL_DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "SQL_DSN"}}}
            ]}]}}}})),
        )
        .await
        .expect("patch the master");
    let (report, done) = audit_offline(&ns);
    done.code(0);
    assert!(!done.stdout.contains("Wq8-unique-db-password"));
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.env-names",
        "newapi.secrets-set",
        "newapi.redis-when-scaled",
        "newapi.sql-lifetime",
        "advice.redis-ha",
        "advice.external-database",
        "advice.default-secrets",
    ] {
        assert_status(&report, id, "pass");
    }
    // Pods of the old template may still run: secrets are compared on every pod, so wait for the
    // rollout to replace them (a bound on convergence, not a time limit).
    let mut last = Value::Null;
    for _ in 0..120 {
        let (r, _) = audit_offline(&ns);
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

/// The Kubernetes hygiene rules on workloads of their own (New-API master and slaves, MySQL and
/// Redis as Deployments): each fails, then passes once the workloads are changed as an operator
/// would change them.
#[tokio::test]
async fn kube_rules_fire_then_pass_once_the_workloads_are_fixed() {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let backend = |name: &str, image: &str, mounts: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": name, "image": image, "volumeMounts": mounts}],
                        "volumes": [{"name": "data", "emptyDir": {}}]}}}})
    };
    let ns = apply_in(
        "audit-kube",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 2, json!({}), json!({})),
            backend(
                "mysql",
                "mariadb:latest",
                json!([{"name": "data", "mountPath": "/var/lib/mysql"}]),
            ),
            backend("redis", "redis", json!([])),
        ],
    )
    .await;
    let kube_rules = [
        "kube.probes",
        "kube.resources",
        "kube.image-tags",
        "kube.run-as-non-root",
        "kube.mysql-pvc",
        "kube.backend-replicas",
        "kube.slave-spread",
    ];
    let (report, done) = audit_offline(&ns);
    done.code(0);
    for id in kube_rules {
        assert_status(&report, id, "fail");
    }
    let evidence = |report: &Value, id: &str| rule(report, id)["evidence"].to_string();
    assert!(evidence(&report, "kube.image-tags").contains("mariadb:latest is not pinned"));
    assert!(evidence(&report, "kube.image-tags").contains("redis is not pinned"));
    assert!(
        rule(&report, "kube.mysql-pvc")["summary"]
            .as_str()
            .unwrap()
            .contains("emptyDir")
    );
    assert!(evidence(&report, "kube.backend-replicas").contains("deployment/redis: 1 replica"));
    // The operator's changes: probes, a non-root user, pinned images, the slaves spread over
    // nodes, two Redis replicas, MySQL as a StatefulSet keeping its data on a claim template.
    let client = crate::support::admin_client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let probe = |port: i32| json!({"tcpSocket": {"port": port}});
    let hardened = |container: &str, port: i32, image: Option<&str>, extra: Value| {
        let mut c =
            json!({"name": container, "readinessProbe": probe(port), "livenessProbe": probe(port)});
        if let Some(image) = image {
            c["image"] = json!(image);
        }
        let mut spec = json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 10001},
            "containers": [c]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        json!({"spec": {"template": {"spec": spec}}})
    };
    let patch = |name: &'static str, p: Value| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(name, &PatchParams::default(), &Patch::Strategic(p))
                .await
                .unwrap_or_else(|e| panic!("patch {name}: {e}"));
        }
    };
    patch("new-api-master", hardened("new-api", 3000, None, json!({}))).await;
    patch(
        "new-api-slave",
        hardened(
            "new-api",
            3000,
            None,
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "new-api", "role": "slave"}}}]}),
        ),
    )
    .await;
    let mut redis = hardened("redis", 6379, Some("redis:7.2.4"), json!({}));
    redis["spec"]["replicas"] = json!(2);
    patch("redis", redis).await;
    deployments
        .delete("mysql", &Default::default())
        .await
        .expect("delete the MySQL Deployment");
    let mut mysql = hardened("mysql", 3306, Some("mariadb:10.11.6"), json!({}));
    mysql["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/var/lib/mysql"}]);
    let mysql: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "mysql"},
        "spec": {"replicas": 2, "serviceName": "mysql",
            "selector": {"matchLabels": {"app": "mysql"}},
            "template": {"metadata": {"labels": {"app": "mysql"}}, "spec": mysql["spec"]["template"]["spec"]},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}
    }))
    .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    statefulsets
        .create(&PostParams::default(), &mysql)
        .await
        .expect("create the MySQL StatefulSet");
    let (report, _) = audit_offline(&ns);
    for id in kube_rules.iter().filter(|id| **id != "kube.resources") {
        assert_status(&report, id, "pass");
    }
    assert_status(&report, "kube.resources", "fail");
    // Requests and limits, with every workload scaled to 0 first: the pods of this namespace
    // then take nothing from the nodes (the seed's totals, 7000m of 8000m, stay as other tests
    // expect them), and the rule judges the pod templates all the same.
    let resources = json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
    let sized = |container: &str| {
        json!({"spec": {"replicas": 0, "template": {"spec": {"containers": [
            {"name": container, "resources": resources}]}}}})
    };
    for (name, container) in [
        ("new-api-master", "new-api"),
        ("new-api-slave", "new-api"),
        ("redis", "redis"),
    ] {
        patch(name, sized(container)).await;
    }
    statefulsets
        .patch(
            "mysql",
            &PatchParams::default(),
            &Patch::Strategic(sized("mysql")),
        )
        .await
        .expect("patch the MySQL StatefulSet");
    let (report, _) = audit_offline(&ns);
    assert_status(&report, "kube.resources", "pass");
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
    count_in(client, "new-api", api_version, kind, plural).await
}

/// How many objects of a kind the API server has in `ns`.
async fn count_in(
    client: &kube::Client,
    ns: &str,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> usize {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
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
    assert_status(&before, "advice.scheduled-backups", "fail");
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
    // The Prometheus Operator's API (its CRDs): advice 6 is judged — nothing scrapes New-API
    // yet — then passes with a PodMonitor selecting the New-API pods and a PrometheusRule.
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PodMonitor", "podmonitors"),
        ("PrometheusRule", "prometheusrules"),
    ] {
        create(
            &admin,
            None,
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
                "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                    "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
            "customresourcedefinitions",
        )
        .await;
    }
    // The CRDs are served once established (a bound on convergence, not a time limit).
    let mut monitoring = Value::Null;
    for _ in 0..120 {
        let report = run_in(&sb, &["audit", "-o", "json"]).json();
        monitoring = rule(&report, "advice.monitoring").clone();
        if monitoring["status"] != "not-checked" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(monitoring["status"], "fail", "{monitoring:#}");
    assert!(
        monitoring["summary"]
            .as_str()
            .unwrap()
            .contains("nothing scrapes New-API"),
        "{monitoring:#}"
    );
    create(
        &admin,
        Some("new-api"),
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "new-api"},
            "spec": {"selector": {"matchLabels": {"app": "new-api"}},
                "podMetricsEndpoints": [{"port": "http", "path": "/metrics"}]}}),
        "podmonitors",
    )
    .await;
    let scraped = run_in(&sb, &["audit", "-o", "json"]).json();
    let r = rule(&scraped, "advice.monitoring");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["summary"].as_str().unwrap().contains("no PrometheusRule"),
        "{r:#}"
    );
    create(
        &admin,
        Some("new-api"),
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "new-api"},
            "spec": {"groups": [{"name": "new-api", "rules": [{"alert": "NewApiDown",
                "expr": "up{job=\"new-api\"} == 0", "for": "5m"}]}]}}),
        "prometheusrules",
    )
    .await;
    let last = run_in(&sb, &["audit", "-o", "json"]).json();
    assert_status(&last, "advice.monitoring", "pass");
    assert!(
        rule(&last, "advice.monitoring")["evidence"]
            .to_string()
            .contains("podmonitor/new-api")
    );
}

// ---------------------------------------------------------------------------------------------
// Mid-apply: a fix run stopped (a signal) or refused (RBAC) after it has applied something.
//
// RBAC is judged the same for a server-side dry run as for the write (`dryRun` is only a query
// parameter; the authorizer sees the same verb, resource and namespace), so a Role that forbids a
// fix is caught by the dry run before anything is applied (`an_rbac_denial_of_a_fix_applies_nothing`).
// A denial can only come mid-apply when the permissions change between the dry run and the write —
// as when an admin revokes a RoleBinding while the run is going. To make that moment (and the
// moment of a signal) deterministic, the API server is held in the middle of a real write: a
// validating admission webhook served by this test (TLS on loopback, registered with the real
// API server for one namespace) answers every dry run at once and holds the first real write of a
// PodDisruptionBudget until the test releases it. Nothing in the product knows about it.
// ---------------------------------------------------------------------------------------------

/// What the webhook was asked.
#[derive(Debug)]
struct Review {
    dry_run: bool,
    name: String,
}

/// A validating admission webhook for CREATE of one resource in one namespace: dry runs are
/// allowed at once, the first real write is held until [`HoldingWebhook::release`].
struct HoldingWebhook {
    config_name: String,
    reviews: std::sync::mpsc::Receiver<Review>,
    release: tokio::sync::mpsc::UnboundedSender<()>,
}

/// How long a test waits for something the cluster or the binary is bound to do; only a guard
/// against a hang (a failure is reported rather than the test never ending), it times nothing.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

impl HoldingWebhook {
    async fn start(admin: &kube::Client, ns: &str, group: &str, resource: &str) -> HoldingWebhook {
        use std::sync::Arc;
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (reviews_tx, reviews) = std::sync::mpsc::channel();
        let (release, release_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve_webhook(listener, acceptor, reviews_tx, release_rx));
        });
        // The namespace is labelled so that the webhook sees nothing of any other.
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
        namespaces
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"newapi-ops-test-hold": ns}}})),
            )
            .await
            .expect("label the namespace");
        use base64::Engine as _;
        let config_name = format!("hold-{ns}");
        create(
            admin,
            None,
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": config_name},
                "webhooks": [{
                    "name": "hold.newapi-ops.test",
                    "clientConfig": {
                        "url": format!("https://127.0.0.1:{port}/hold"),
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(cert.cert.pem())
                    },
                    "rules": [{"apiGroups": [group], "apiVersions": ["*"], "operations": ["CREATE"], "resources": [resource]}],
                    "namespaceSelector": {"matchLabels": {"newapi-ops-test-hold": ns}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 30,
                    "failurePolicy": "Fail"
                }]}),
            "validatingwebhookconfigurations",
        )
        .await;
        let hook = HoldingWebhook {
            config_name,
            reviews,
            release,
        };
        // The API server takes the configuration up from a watch: probe with dry runs until the
        // webhook is called.
        let pdbs = Api::<DynamicObject>::namespaced_with(
            admin.clone(),
            ns,
            &ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
                "poddisruptionbudgets",
            ),
        );
        let probe: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "webhook-probe"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "none"}}}}))
        .unwrap();
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        for _ in 0..600 {
            let _ = pdbs.create(&dry, &probe).await;
            if let Ok(r) = hook
                .reviews
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                assert!(r.dry_run, "{r:?}");
                while hook.reviews.try_recv().is_ok() {}
                return hook;
            }
        }
        panic!("the API server never called the webhook");
    }

    /// Waits until the webhook holds a real write (dry runs pass by); returns its object's name.
    fn held_write(&self) -> String {
        loop {
            let r = self
                .reviews
                .recv_timeout(HANG_GUARD)
                .expect("the fix run never made a real write");
            if !r.dry_run {
                return r.name;
            }
        }
    }

    /// Lets the held write through (allowed).
    fn release(&self) {
        self.release.send(()).expect("the webhook is serving");
    }

    /// The writes it saw since (real ones only).
    fn real_writes(&self) -> Vec<String> {
        self.reviews
            .try_iter()
            .filter(|r| !r.dry_run)
            .map(|r| r.name)
            .collect()
    }

    async fn remove(&self, admin: &kube::Client) {
        let api: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
            Api::all(admin.clone());
        let _ = api.delete(&self.config_name, &Default::default()).await;
    }
}

/// The webhook's HTTP/1.1 server (the API server sends one AdmissionReview per POST).
async fn serve_webhook(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    reviews: std::sync::mpsc::Sender<Review>,
    release: tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let release = Arc::new(tokio::sync::Mutex::new(release));
    let held = Arc::new(AtomicBool::new(false));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, reviews, release, held) = (
            acceptor.clone(),
            reviews.clone(),
            release.clone(),
            held.clone(),
        );
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            loop {
                let mut chunk = [0u8; 16384];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body: Value =
                    serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
                buf.drain(..head_end + length);
                let request = &body["request"];
                let dry_run = request["dryRun"] == true;
                let name = request["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let hold = !dry_run && !held.swap(true, Ordering::SeqCst);
                let _ = reviews.send(Review { dry_run, name });
                if hold {
                    release.lock().await.recv().await;
                }
                let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": request["uid"], "allowed": true}})
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if tls.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// `newapi-ops ARGS` started in the background with the given kubeconfig and runs directory; its
/// stderr comes line by line on the receiver (and is kept whole by the reader thread's result).
fn spawn_audit(
    args: &[&str],
    kubeconfig: &Path,
    runs: &Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
    tempfile::TempDir,
) {
    use std::io::BufRead as _;
    let home = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::support::bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", kubeconfig)
        .env("NEWAPI_OPS_RUNS_DIR", runs)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start newapi-ops");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (child, lines, reader, home)
}

/// The API server's count of HPAs and PDBs in `ns` (at the versions 1.20 serves).
async fn hpas_and_pdbs(admin: &kube::Client, ns: &str) -> (usize, usize) {
    (
        count_in(
            admin,
            ns,
            "autoscaling/v2beta2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        )
        .await,
        count_in(
            admin,
            ns,
            "policy/v1beta1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        )
        .await,
    )
}

/// The two files (JSONL, markdown) of the one fix run in `runs`, each checked to be 0600.
fn transcript_files(runs: &Path) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let files: Vec<_> = std::fs::read_dir(runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    files
}

/// The transcript of the one fix run in `runs`: (end status, each step's status).
fn transcript_of(runs: &Path) -> (String, Vec<String>) {
    let files = transcript_files(runs);
    let jsonl = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .expect("a .jsonl transcript");
    let records: Vec<Value> = std::fs::read_to_string(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let end = records
        .iter()
        .find(|r| r["type"] == "end")
        .expect("an end record");
    let steps = records
        .iter()
        .filter(|r| r["type"] == "step")
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    (end["status"].as_str().unwrap().to_string(), steps)
}

/// Waits for a line of the child's stderr that contains `needle`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(HANG_GUARD)
            .unwrap_or_else(|_| panic!("no line with {needle:?} on stderr"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// A namespace of its own with a master and two slaves, and a [`HoldingWebhook`] for its
/// PodDisruptionBudgets; with the admin client.
async fn held_namespace(base: &str) -> (String, kube::Client, HoldingWebhook) {
    let ns = apply_in(
        base,
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 2, json!({}), json!({})),
        ],
    )
    .await;
    let admin = crate::support::admin_client().await;
    let hook = HoldingWebhook::start(&admin, &ns, "policy", "poddisruptionbudgets").await;
    (ns, admin, hook)
}

/// A signal while the fix run is mid-apply (the HPA created, the slaves' PDB in flight, held in
/// the API server): the write in flight is let finish, both are deleted again, the master's PDB
/// is never sent, the transcript says `interrupted`, and the exit code is the signal's.
async fn a_signal_mid_apply(base: &str, signal: nix::sys::signal::Signal, name: &str, code: i32) {
    let (ns, admin, hook) = held_namespace(base).await;
    let runs = tempfile::tempdir().unwrap();
    let (mut child, lines, stderr, _home) = spawn_audit(
        &["audit", "-n", &ns, "--fix", "--yes", "--fixes", "hpa,pdb"],
        &crate::support::sandbox().kubeconfig,
        runs.path(),
    );
    assert_eq!(hook.held_write(), "new-api-slave-pdb");
    assert_eq!(
        hpas_and_pdbs(&admin, &ns).await,
        (1, 0),
        "mid-apply: the HPA is created, the PDB in flight"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        signal,
    )
    .unwrap();
    wait_for_line(
        &lines,
        &format!("{name}: letting create poddisruptionbudget/new-api-slave-pdb (fix pdb) finish"),
    );
    hook.release();
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    eprintln!("{stderr}");
    assert_eq!(status.code(), Some(code), "{stderr}");
    for needle in [
        &format!(
            "{name} while applying the fixes (create poddisruptionbudget/new-api-slave-pdb (fix pdb) was in flight"
        ),
        "rolled back what this run had applied: PodDisruptionBudget/new-api-slave-pdb, HorizontalPodAutoscaler/new-api-slave",
        "hint: nothing this run applied is left in the cluster",
        "transcript: ",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert_eq!(hpas_and_pdbs(&admin, &ns).await, (0, 0), "nothing left");
    assert_eq!(
        hook.real_writes(),
        Vec::<String>::new(),
        "the master's PDB was never sent"
    );
    let (end, steps) = transcript_of(runs.path());
    assert_eq!(end, "interrupted");
    assert_eq!(steps, ["rolled-back", "rolled-back", "not-applied"]);
    hook.remove(&admin).await;
    crate::support::delete_namespace(&ns).await;
}

#[tokio::test]
async fn sigterm_mid_apply_rolls_back_what_was_applied_and_exits_143() {
    a_signal_mid_apply("audit-sigterm", nix::sys::signal::SIGTERM, "SIGTERM", 143).await;
}

#[tokio::test]
async fn ctrl_c_mid_apply_rolls_back_what_was_applied_and_exits_130() {
    a_signal_mid_apply(
        "audit-sigint",
        nix::sys::signal::SIGINT,
        "SIGINT (Ctrl-C)",
        130,
    )
    .await;
}

/// A ServiceAccount that may read everything audit reads and create the HPA and the PDBs (and
/// delete them, to roll back): its dry runs all pass. While its first PDB is held in the API
/// server, the RoleBinding that lets it create PDBs is deleted — so the master's PDB is denied by
/// RBAC for real, mid-apply: exit 77, the denial named (verb, resource, namespace) with what to
/// ask for, the HPA and the slaves' PDB deleted again (the API server has neither), and the
/// transcript says so.
#[tokio::test]
async fn an_rbac_denial_mid_apply_rolls_back_what_was_applied() {
    use k8s_openapi::api::authorization::v1::SubjectAccessReview;
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let (ns, admin, hook) = held_namespace("audit-rbac-mid").await;
    // The ServiceAccount, its token (1.20: a Secret made by the token controller) and its RBAC.
    let sa = "fixer";
    create(
        &admin,
        Some(&ns),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        "serviceaccounts",
    )
    .await;
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let subject = json!([{"kind": "ServiceAccount", "name": sa, "namespace": ns}]);
    let reader = format!("audit-read-{ns}");
    create(
        &admin,
        None,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": reader},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
        "clusterroles",
    )
    .await;
    create(
        &admin,
        None,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": reader},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
            "subjects": subject}),
        "clusterrolebindings",
    )
    .await;
    for (name, rules) in [
        (
            "fixer",
            json!([{"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create", "delete"]},
                   {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["delete"]}]),
        ),
        (
            "create-pdbs",
            json!([{"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["create"]}]),
        ),
    ] {
        create(
            &admin,
            Some(&ns),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name}, "rules": rules}),
            "roles",
        )
        .await;
        create(
            &admin,
            Some(&ns),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": subject}),
            "rolebindings",
        )
        .await;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let mut token = None;
    for _ in 0..600 {
        let secret_name = sas
            .get(sa)
            .await
            .ok()
            .and_then(|s| s.secrets)
            .and_then(|s| s.first().and_then(|r| r.name.clone()));
        if let Some(name) = secret_name
            && let Ok(s) = secrets.get(&name).await
            && let Some(t) = s.data.as_ref().and_then(|d| d.get("token"))
        {
            token = Some(String::from_utf8(t.0.clone()).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let token = token.expect("the ServiceAccount's token");
    let dir = tempfile::tempdir().unwrap();
    let sb = crate::support::sandbox();
    let ca = std::fs::read_to_string(&sb.ca_cert).unwrap();
    let kubeconfig = crate::support::custom_kubeconfig(dir.path(), &sb.api_server, &ca, &token);
    let runs = tempfile::tempdir().unwrap();
    let (mut child, _lines, stderr, _home) = spawn_audit(
        &["audit", "-n", &ns, "--fix", "--yes", "--fixes", "hpa,pdb"],
        &kubeconfig,
        runs.path(),
    );
    // Every dry run passed (RBAC allowed them all); the first real PDB is held.
    assert_eq!(hook.held_write(), "new-api-slave-pdb");
    assert_eq!(hpas_and_pdbs(&admin, &ns).await, (1, 0));
    // The admin revokes the permission meanwhile; the API server's authorizer has taken it in
    // once a SubjectAccessReview (the same authorizer) says no.
    let bindings: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    bindings
        .delete("create-pdbs", &Default::default())
        .await
        .expect("revoke");
    let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
        "user": user,
        "resourceAttributes": {"namespace": ns, "verb": "create", "group": "policy", "resource": "poddisruptionbudgets"}}}))
    .unwrap();
    let reviews: Api<SubjectAccessReview> = Api::all(admin.clone());
    let mut revoked = false;
    for _ in 0..600 {
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        if !answer.status.is_some_and(|s| s.allowed) {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(revoked, "the RoleBinding's deletion never took effect");
    hook.release();
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    eprintln!("{stderr}");
    assert_eq!(status.code(), Some(77), "{stderr}");
    for needle in [
        "applying create poddisruptionbudget/new-api-master-pdb (fix pdb) failed: RBAC denied create on poddisruptionbudgets.policy",
        &format!("in namespace \"{ns}\""),
        "rolled back what this run had applied: PodDisruptionBudget/new-api-slave-pdb, HorizontalPodAutoscaler/new-api-slave",
        "hint: ask a cluster admin for a Role granting `create` on `poddisruptionbudgets.policy`",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("NOT rolled back"), "{stderr}");
    assert_eq!(hpas_and_pdbs(&admin, &ns).await, (0, 0), "nothing left");
    let (end, steps) = transcript_of(runs.path());
    assert_eq!(end, "rolled-back");
    assert_eq!(steps, ["rolled-back", "rolled-back", "failed"]);
    hook.remove(&admin).await;
    let api: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRoleBinding",
            ),
            "clusterrolebindings",
        ),
    );
    let _ = api.delete(&reader, &Default::default()).await;
    let api: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            "clusterroles",
        ),
    );
    let _ = api.delete(&reader, &Default::default()).await;
    crate::support::delete_namespace(&ns).await;
}
