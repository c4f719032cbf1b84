//! `newapi-ops diagnose`: every check fires on its real condition, caused in the sandbox (the real
//! scheduler, controller-manager and API server; the kubelet simulator plays the kubelet).

use serde_json::json;

use crate::support::{Run, apply_in, findings, newapi_deployment, poll_diagnose};

fn has(report: &serde_json::Value, check: &str) -> bool {
    !findings(report, check).is_empty()
}

fn text_of(f: &serde_json::Value) -> String {
    f.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn crashloop_oomkilled_with_too_many_connections_in_the_previous_log() {
    let ns = apply_in(
        "t-diag-crash",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment(
                "slave",
                1,
                json!({
                    "sandbox.newapi-ops.io/behavior": "crashloop-oom",
                    "sandbox.newapi-ops.io/previous-log": "[SYS] 2025/11/13 - 10:00:00 | New API started\n[ERR] 2025/11/13 - 10:00:01 | Error 1040: Too many connections"
                }),
                json!({}),
            ),
        ],
    )
    .await;
    let (report, code) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "pods,logs"], |r| {
            has(r, "pods.crashloop") && has(r, "logs.mysql-too-many-connections")
        })
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "critical findings exit 2");
    let crash = text_of(findings(&report, "pods.crashloop")[0]);
    assert!(
        crash.contains("OOMKilled") && crash.contains("137"),
        "{crash}"
    );
    assert!(crash.contains("runbook run oomkilled"), "{crash}");
    let log = text_of(findings(&report, "logs.mysql-too-many-connections")[0]);
    assert!(
        log.contains("Too many connections") && log.contains("db-connection"),
        "{log}"
    );
    assert!(has(&report, "deployments.unavailable"));
    assert_eq!(report["schema_version"], 2);
    assert_eq!(report["severity"], "critical");
}

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_failures_and_missing_secret_keys() {
    let ns = apply_in(
        "t-diag-image",
        &[
            newapi_deployment("master", 1, json!({}), json!({"image": "calciumion/new-api:does-not-exist"})),
            newapi_deployment(
                "slave",
                1,
                json!({}),
                json!({"env": [
                    {"name": "NODE_TYPE", "value": "slave"},
                    {"name": "SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "SESSION_SECRET"}}}
                ]}),
            ),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad-name"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "new-api", "role": "slave", "x": "y"}},
                            "template": {"metadata": {"labels": {"app": "new-api", "role": "slave", "x": "y"}},
                                         "spec": {"containers": [{"name": "c", "image": "CalciumIon/New-API:latest"}]}}}}),
        ],
    )
    .await;
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "pods"], |r| {
            let images = findings(r, "pods.image");
            images.iter().any(|f| {
                text_of(f).contains("ImagePullBackOff") || text_of(f).contains("ErrImagePull")
            }) && images
                .iter()
                .any(|f| text_of(f).contains("InvalidImageName"))
                && has(r, "pods.config-error")
        })
    })
    .await
    .unwrap();
    let cfg = text_of(findings(&report, "pods.config-error")[0]);
    assert!(
        cfg.contains("CreateContainerConfigError")
            && cfg.contains("secret \\\"new-api-secret\\\" not found"),
        "{cfg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_pods_carry_the_schedulers_reason() {
    let ns = apply_in(
        "t-diag-pending",
        &[
            newapi_deployment("master", 1, json!({}), json!({"resources": {"requests": {"cpu": "100", "memory": "1Gi"}}})),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "resources": {"requests": {"storage": "1Gi"}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "redis-0", "labels": {"app": "redis"}},
                   "spec": {"containers": [{"name": "redis", "image": "redis:7", "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mysql-0", "labels": {"app": "mysql"}},
                   "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "mysql", "image": "mysql:8.2"}]}}),
        ],
    )
    .await;
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "pods"], |r| {
            let t: Vec<String> = findings(r, "pods.pending")
                .iter()
                .map(|f| text_of(f))
                .collect();
            // The pod's PodScheduled condition can be seen before the scheduler's event is
            // listed: wait for the event on every finding, since it is the evidence asserted.
            t.iter().all(|f| f.contains("FailedScheduling"))
                && t.iter().any(|f| f.contains("Insufficient cpu"))
                && t.iter()
                    .any(|f| f.contains("unbound") && f.contains("PersistentVolumeClaim"))
                && t.iter()
                    .any(|f| f.contains("node selector") || f.contains("node affinity"))
        })
    })
    .await
    .unwrap();
    for f in findings(&report, "pods.pending") {
        assert_eq!(f["severity"], "critical", "{f}");
        assert!(
            text_of(f).contains("FailedScheduling"),
            "the scheduler's own event is the evidence: {f}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unready_oom_recovered_and_succeeded_pods() {
    let ns = apply_in(
        "t-diag-unready",
        &[
            newapi_deployment("master", 1, json!({"sandbox.newapi-ops.io/behavior": "oom-recovered"}), json!({})),
            newapi_deployment("slave", 1, json!({"sandbox.newapi-ops.io/behavior": "unready"}), json!({})),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "new-api-migrate", "labels": {"app": "new-api", "role": "master"},
                                "annotations": {"sandbox.newapi-ops.io/behavior": "succeed"}},
                   "spec": {"restartPolicy": "Never", "containers": [{"name": "migrate", "image": "calciumion/new-api:v0.9.0"}]}}),
        ],
    )
    .await;
    let ns2 = ns.clone();
    let (report, code) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns2, "--only", "pods"], |r| {
            has(r, "pods.oomkilled")
                && findings(r, "pods.unready")
                    .iter()
                    .any(|f| text_of(f).contains("Readiness probe failed"))
        })
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "no slave is available: critical\n{report:#}");
    let unavailable = findings(&report, "deployments.unavailable");
    assert!(
        unavailable
            .iter()
            .any(|f| text_of(f).contains("new-api-slave: 0 of 1")),
        "{report:#}"
    );
    assert!(text_of(findings(&report, "pods.oomkilled")[0]).contains("OOMKilled exit 137"));
    // The pod that ran to completion is not a failure.
    let all = report["findings"].to_string();
    assert!(
        !all.contains("new-api-migrate"),
        "a Succeeded pod must not be reported:\n{report:#}"
    );
    // Human output: summary first, then the findings with evidence and next steps.
    let human = Run::new(["diagnose", "-n", &ns, "--only", "pods"])
        .admin()
        .output();
    assert_eq!(human.code, 2);
    let summary_at = human.stdout.find("  pods ").expect("summary line");
    let detail_at = human.stdout.find("── pods ──").expect("details");
    assert!(summary_at < detail_at, "{}", human.stdout);
    assert!(
        human.stdout.contains("seen: event Unhealthy"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("next: "), "{}", human.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn differing_session_secrets_are_critical_and_never_printed() {
    let ns = apply_in(
        "t-diag-config",
        &[
            newapi_deployment("master", 2, json!({}), json!({"image": "calciumion/new-api:latest"})),
            newapi_deployment(
                "slave",
                1,
                json!({}),
                json!({"env": [{"name": "SESSION_SECRET", "value": "another-secret-value"}, {"name": "CRYPTO_SECRET", "value": "test-crypto-secret"}]}),
            ),
        ],
    )
    .await;
    let out = Run::new(["diagnose", "-n", &ns, "--only", "config", "-o", "json"])
        .admin()
        .output();
    assert_eq!(out.code, 2, "{}", out.stdout);
    let report = out.json();
    let f = text_of(findings(&report, "config.session-secret")[0]);
    assert!(f.contains("differs") && f.contains("fingerprint"), "{f}");
    assert!(has(&report, "config.master-replicas"));
    assert!(
        has(&report, "config.node-type"),
        "the slave lost NODE_TYPE=slave"
    );
    assert!(has(&report, "config.image-latest"));
    assert!(has(&report, "config.probes"));
    for secret in [
        "another-secret-value",
        "test-session-secret",
        "test-crypto-secret",
    ] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} was printed"
        );
    }
}

#[test]
fn rate_limited_and_mixed_versions_in_the_app_check() {
    let ns = tokio::runtime::Runtime::new().unwrap().block_on(apply_in(
        "t-diag-app",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 1, json!({"sandbox.newapi-ops.io/rate-limited": "true"}), json!({})),
            // A canary slave half-way through an upgrade: same labels, newer image.
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "new-api-slave-canary"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "new-api", "role": "slave", "track": "canary"}},
                            "template": {"metadata": {"labels": {"app": "new-api", "role": "slave", "track": "canary"}},
                                         "spec": {"containers": [{"name": "new-api", "image": "calciumion/new-api:v0.9.1",
                                                                  "env": [{"name": "NODE_TYPE", "value": "slave"}]}]}}}}),
        ],
    ));
    let (report, code) = poll_diagnose(&["-n", &ns, "--only", "app"], |r| {
        has(r, "app.rate-limited") && has(r, "app.versions")
    });
    assert_eq!(code, 1);
    let versions = text_of(findings(&report, "app.versions")[0]);
    assert!(
        versions.contains("v0.9.0") && versions.contains("v0.9.1"),
        "{versions}"
    );
}

#[test]
fn seed_deployment_report_is_whole_and_documented() {
    let out = Run::new(["diagnose", "-o", "json"]).admin().output();
    let report = out.json();
    let components: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        components,
        [
            "pods", "nodes", "logs", "mysql", "redis", "app", "config", "backups"
        ]
    );
    for f in report["findings"].as_array().unwrap() {
        for key in ["component", "check", "severity", "summary"] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }
    // The seed keeps MySQL's default password and max_connections: the report says so, once.
    assert!(has(&report, "config.default-password"));
    assert!(has(&report, "mysql.pool"));
    assert!(has(&report, "nodes.total-requests"));
    assert!(
        findings(&report, "mysql.connect")
            .iter()
            .any(|f| text_of(f).contains("port-forward")),
        "MySQL is reached through a port-forward:\n{report:#}"
    );
    assert!(!out.stdout.contains("123456"), "a password was printed");
    assert!([1, 2].contains(&out.code));
}

#[test]
fn unreachable_api_server_still_reports_mysql_and_redis() {
    let sb = crate::support::sandbox();
    let port = crate::support::closed_port();
    let run = Run::new(["diagnose", "-o", "json", "--timeout", "3s"]);
    let ca = std::fs::read_to_string(&sb.ca_cert).unwrap();
    let kc = crate::support::custom_kubeconfig(
        run.home(),
        &format!("https://127.0.0.1:{port}"),
        &ca,
        "x",
    );
    let out = run
        .env("KUBECONFIG", kc)
        .env(
            "NEWAPI_OPS_MYSQL_URL",
            format!("mysql://root:123456@127.0.0.1:{}/new-api", sb.mysql.port),
        )
        .env(
            "NEWAPI_OPS_REDIS_URL",
            format!("redis://127.0.0.1:{}", sb.redis.port),
        )
        .output();
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    for c in ["pods", "nodes", "logs", "app", "config"] {
        let f = findings(&report, &format!("{c}.cluster"));
        assert!(
            !f.is_empty() && text_of(f[0]).contains(&format!("127.0.0.1:{port}")),
            "{c}: {report:#}"
        );
    }
    assert_eq!(
        findings(&report, "mysql.connect")[0]["severity"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        findings(&report, "redis.connect")[0]["severity"],
        "ok",
        "{report:#}"
    );
    assert!(!out.stdout.contains("123456"));
}

#[test]
fn a_hanging_backend_is_cut_by_the_timeout() {
    // Accepts connections and never answers: the MySQL check must give up, the report come out.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = Run::new([
        "diagnose",
        "-o",
        "json",
        "--only",
        "mysql",
        "--timeout",
        "2s",
    ])
    .env(
        "NEWAPI_OPS_MYSQL_URL",
        format!("mysql://root@127.0.0.1:{port}/new-api"),
    )
    .output();
    drop(listener);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    let f = report["findings"].as_array().unwrap();
    assert!(f.iter().all(|f| f["component"] == "mysql"));
    assert!(f.iter().any(|f| f["severity"] == "critical"), "{report:#}");
}

#[test]
fn could_not_run_has_its_own_exit_code() {
    Run::new(["diagnose"])
        .output()
        .code(3)
        .stderr_has("diagnose could not run: no kubeconfig found");
    Run::new(["diagnose", "-n", "nowhere"])
        .admin()
        .output()
        .code(3)
        .stderr_has("namespace \"nowhere\" not found");
    Run::new(["diagnose", "--only", "pods,disks"])
        .admin()
        .output()
        .code(64);
    Run::new(["diagnose", "--timeout", "soon"])
        .admin()
        .output()
        .code(64)
        .stderr_has("not a duration");
}

#[tokio::test(flavor = "multi_thread")]
async fn evicted_flaky_stuck_terminating_and_stalled_rollouts() {
    use k8s_openapi::api::core::v1::Pod;
    let stalled = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "new-api-slave"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 1,
                 "selector": {"matchLabels": {"app": "new-api", "role": "slave"}},
                 "template": {"metadata": {"labels": {"app": "new-api", "role": "slave"}},
                              "spec": {"containers": [{"name": "new-api", "image": "calciumion/new-api:does-not-exist",
                                                       "env": [{"name": "NODE_TYPE", "value": "slave"}]}]}}}});
    let pod = |name: &str, behavior: &str, extra: serde_json::Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "new-api", "role": "master"},
                         "annotations": {"sandbox.newapi-ops.io/behavior": behavior}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "new-api", "image": "calciumion/new-api:v0.9.0"}]}});
        if let (Some(m), Some(e)) = (
            p["metadata"]["annotations"].as_object_mut(),
            extra.as_object(),
        ) {
            m.extend(e.clone());
        }
        p
    };
    let ns = apply_in(
        "t-diag-evict",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            stalled,
            pod("evicted-0", "evicted", json!({})),
            pod("flaky-0", "flaky", json!({})),
            pod(
                "stuck-0",
                "running",
                json!({"sandbox.newapi-ops.io/stuck-terminating": "true"}),
            ),
        ],
    )
    .await;
    // Delete the stuck pod: the (simulated) kubelet never confirms, so it stays Terminating.
    let pods: kube::Api<Pod> = kube::Api::namespaced(crate::support::admin_client().await, &ns);
    for _ in 0..100 {
        let running = pods
            .get("stuck-0")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .is_some_and(|p| p == "Running");
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    pods.delete("stuck-0", &Default::default())
        .await
        .expect("delete");
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "pods", "--stuck-after", "2s"], |r| {
            has(r, "pods.evicted")
                && has(r, "pods.restarts")
                && has(r, "pods.terminating")
                && has(r, "deployments.stalled")
        })
    })
    .await
    .unwrap();
    assert!(text_of(findings(&report, "pods.evicted")[0]).contains("low on resource: memory"));
    let restarts = text_of(findings(&report, "pods.restarts")[0]);
    assert!(
        restarts.contains("7 times") && restarts.contains("Error exit 1"),
        "{restarts}"
    );
    assert!(
        text_of(findings(&report, "deployments.stalled")[0]).contains("ProgressDeadlineExceeded")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slave_whose_channel_sync_stopped_is_out_of_sync() {
    let sync = json!({"env": [
        {"name": "NODE_TYPE", "value": "slave"}, {"name": "SYNC_FREQUENCY", "value": "2"},
        {"name": "SESSION_SECRET", "value": "s"}, {"name": "CRYPTO_SECRET", "value": "c"}
    ]});
    let ns = apply_in(
        "t-diag-sync",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 1, json!({"sandbox.newapi-ops.io/sync-stalled": "true"}), sync.clone()),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "new-api-slave-b"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "new-api", "role": "slave", "b": "1"}},
                            "template": {"metadata": {"labels": {"app": "new-api", "role": "slave", "b": "1"}},
                                         "spec": {"containers": [{"name": "new-api", "image": "calciumion/new-api:v0.9.0",
                                                                  "env": sync["env"].clone()}]}}}}),
        ],
    )
    .await;
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "logs"], |r| {
            has(r, "logs.slave-out-of-sync")
        })
    })
    .await
    .unwrap();
    let out = findings(&report, "logs.slave-out-of-sync");
    assert_eq!(out.len(), 1, "only the stalled slave: {report:#}");
    assert!(
        out[0]["subject"]
            .as_str()
            .unwrap()
            .contains("new-api-slave-"),
        "{report:#}"
    );
    assert!(
        !out[0]["subject"]
            .as_str()
            .unwrap()
            .contains("new-api-slave-b"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_signatures_extend_and_replace_the_built_in_ones() {
    let ns = apply_in(
        "t-diag-sigs",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment(
                "slave",
                1,
                json!({"sandbox.newapi-ops.io/behavior": "crashloop",
                       "sandbox.newapi-ops.io/previous-log": "[ERR] 2025/11/13 - 10:00:01 | upstream quota cache exploded (code Q-42)"}),
                json!({}),
            ),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(
        &file,
        "[[signature]]\nid = \"quota-cache\"\npattern = 'quota cache exploded'\nseverity = \"critical\"\ncause = \"the quota cache blew up\"\nrunbook = \"slow-response\"\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(
            &["-n", &ns, "--only", "logs", "--signatures", &file_arg],
            |r| has(r, "logs.quota-cache"),
        )
    })
    .await
    .unwrap();
    assert!(
        text_of(findings(&report, "logs.quota-cache")[0]).contains("runbook run slow-response")
    );
    // A broken file is refused with its line, and diagnose does not run.
    std::fs::write(&file, "[[signature]]\nid = \"x\"\npattern = '(unclosed'\nseverity = \"critical\"\ncause = \"c\"\nrunbook = \"backup\"\n").unwrap();
    let out = Run::new([
        "diagnose",
        "--only",
        "logs",
        "--signatures",
        file.to_str().unwrap(),
    ])
    .admin()
    .output();
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("mine.toml:3"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
// The lock serializes whole tests (this one and the seed-totals test), so it spans the awaits.
#[allow(clippy::await_holding_lock)]
async fn broken_nodes_are_reported() {
    use k8s_openapi::api::core::v1::Node;
    let _nodes = crate::support::nodes_lock();
    let name = format!("t-node-broken-{}", std::process::id());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"unschedulable": true},
        "status": {
            "capacity": {"cpu": "0", "memory": "0", "pods": "0"},
            "allocatable": {"cpu": "0", "memory": "0", "pods": "0"},
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "container runtime is down"},
                {"type": "MemoryPressure", "status": "True", "reason": "KubeletHasInsufficientMemory", "message": "low"}
            ]
        }
    }))
    .unwrap();
    let api: kube::Api<Node> = kube::Api::all(crate::support::admin_client().await);
    api.create(&Default::default(), &node)
        .await
        .expect("create node");
    let n2 = name.clone();
    let (report, code) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["--only", "nodes"], |r| {
            findings(r, "nodes.not-ready")
                .iter()
                .any(|f| text_of(f).contains(&n2))
        })
    })
    .await
    .unwrap();
    let _ = api.delete(&name, &Default::default()).await;
    assert_eq!(code, 2);
    assert!(
        findings(&report, "nodes.pressure")
            .iter()
            .any(|f| text_of(f).contains("MemoryPressure"))
    );
    assert!(
        findings(&report, "nodes.cordoned")
            .iter()
            .any(|f| text_of(f).contains(&name))
    );
    // The info finding "not served" appears exactly when the sandbox has no metrics.k8s.io
    // (`metrics::without_metrics_usage_is_not_checked` tests that path on its own sandbox).
    assert_eq!(
        has(&report, "nodes.metrics"),
        crate::support::sandbox().metrics.is_none(),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
// The lock serializes whole tests that add nodes (they change the cluster's totals).
#[allow(clippy::await_holding_lock)]
async fn pending_because_of_a_taint_names_the_taint() {
    use k8s_openapi::api::core::v1::Node;
    let _nodes = crate::support::nodes_lock();
    let name = format!("t-node-tainted-{}", std::process::id());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"newapi-ops-test": name}},
        "spec": {"taints": [{"key": "dedicated", "value": "database", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]
        }
    }))
    .unwrap();
    let api: kube::Api<Node> = kube::Api::all(crate::support::admin_client().await);
    api.create(&Default::default(), &node)
        .await
        .expect("create node");
    // Only the tainted node matches the pod's node selector: the taint alone keeps it Pending.
    let ns = apply_in(
        "t-diag-taint",
        &[json!({"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "mysql-0", "labels": {"app": "mysql"}},
                 "spec": {"nodeSelector": {"newapi-ops-test": name},
                          "containers": [{"name": "mysql", "image": "mysql:8.2"}]}})],
    )
    .await;
    let result = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns, "--only", "pods"], |r| {
            findings(r, "pods.pending")
                .iter()
                .any(|f| text_of(f).contains("taint"))
        })
    })
    .await;
    let _ = api.delete(&name, &Default::default()).await;
    let (report, code) = result.unwrap();
    assert_eq!(code, 2);
    let f = findings(&report, "pods.pending")[0];
    let text = text_of(f);
    assert_eq!(f["severity"], "critical");
    assert!(text.contains("FailedScheduling"), "{text}");
    assert!(
        text.contains("{dedicated: database}") && text.contains("didn't tolerate"),
        "the scheduler's words name the taint: {text}"
    );
}
