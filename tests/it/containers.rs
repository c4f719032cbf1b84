//! The tool's own image, and pods of it run for real by the sandbox's kubelet simulator.
//!
//! - `scripts/image.sh` builds an OCI image whose config is what the Containerfile says, and
//!   `runc` runs it as the non-root user; the sandbox's image (built by `sandbox up` from the
//!   same binary) has the same digest.
//! - On a sandbox of their own (these tests create Jobs, Pods, a PV): Jobs whose pod runs the
//!   image complete or fail by its exit code, with its output as the pod's log; the in-cluster
//!   service account reaches the API server through the `kubernetes` Service; environment from
//!   ConfigMaps, Secrets and the downward API reaches the process; the Service name `mysql`
//!   reaches the real MariaDB, and a backup lands on the PersistentVolume, written by the
//!   non-root user through fsGroup; restarts back off; a deleted pod's process is stopped.
//!
//! Real containers need root, runc and umoci (`scripts/setup.sh` installs them; CI has them):
//! without them the tests say why and pass, except under CI (`CI` set), where they fail.

#![allow(clippy::print_stderr)] // a skipped test says so where cargo test shows it

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Run, Sandbox, bin, private_sandbox};

const NS: &str = "new-api";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `Some(reason)` when real containers cannot run here (the test is skipped, or fails under CI).
pub(crate) fn skipped(test: &str) -> bool {
    let Some(why) = newapi_ops::sandbox::image::unavailable() else {
        return false;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: real containers cannot run here ({why}), and CI must run them"
    );
    eprintln!("skipped {test}: {why}");
    true
}

/// The sandbox these tests share (they create objects the other tests do not expect).
fn sandbox() -> Sandbox {
    private_sandbox("containers")
}

async fn client(sb: &Sandbox) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&sb.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// A unique name for this test run.
fn name(base: &str) -> String {
    format!("{base}-{}", std::process::id())
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v.clone()).expect("test object");
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {v}: {e}"))
}

/// Creates a ServiceAccount `sa` with a Role of `rules` bound to it.
async fn service_account(client: &kube::Client, sa: &str, rules: Value) {
    let api = |kind: &str| {
        kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            if kind == "ServiceAccount" {
                ""
            } else {
                "rbac.authorization.k8s.io"
            },
            "v1",
            kind,
        ))
    };
    for (kind, body) in [
        ("ServiceAccount", json!({})),
        ("Role", json!({"rules": rules})),
        (
            "RoleBinding",
            json!({
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]
            }),
        ),
    ] {
        let ar = api(kind);
        let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
        let mut v = body;
        v["apiVersion"] = json!(ar.api_version);
        v["kind"] = json!(kind);
        v["metadata"] = json!({"name": sa});
        create(&dynamic, v).await;
    }
    // 1.20's token controller gives the account a token Secret; a pod created before it is
    // refused ("No API token found for service account").
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), NS);
    for _ in 0..120 {
        let account = accounts.get(sa).await.expect("get service account");
        if account.secrets.is_some_and(|s| !s.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("service account {sa} got no token");
}

/// A Job of one pod running the tool's image with `args` (restartPolicy Never, backoffLimit 0).
fn job(name: &str, sa: Option<&str>, container: Value, extra_spec: Value) -> Value {
    let mut c = container;
    c["name"] = json!("tool");
    c["image"] = json!(newapi_ops::sandbox::image::IMAGE);
    let mut spec = json!({"restartPolicy": "Never", "containers": [c]});
    if let Some(sa) = sa {
        spec["serviceAccountName"] = json!(sa);
    }
    if let Some(extra) = extra_spec.as_object() {
        for (k, v) in extra {
            spec[k] = v.clone();
        }
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}}
    })
}

/// Waits (at most 120 s) until the Job has a Complete or Failed condition; returns its type.
async fn finished(client: &kube::Client, job: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    for _ in 0..240 {
        let j = jobs.get(job).await.expect("get job");
        if let Some(c) = j
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))
        {
            return c.type_;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pods = job_pods(client, job).await;
    panic!(
        "job {job} did not finish; its pods: {}",
        serde_json::to_string_pretty(&pods.iter().map(|p| &p.status).collect::<Vec<_>>())
            .unwrap_or_default()
    );
}

async fn job_pods(client: &kube::Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list pods")
        .items
}

/// The Job's (only) pod, its container's terminated state and its log through the API server.
async fn outcome(client: &kube::Client, job: &str) -> (String, Value, String) {
    let pods = job_pods(client, job).await;
    assert_eq!(pods.len(), 1, "backoffLimit 0: one pod");
    let pod = &pods[0];
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = serde_json::to_value(pod.status.as_ref().unwrap()).unwrap();
    let terminated = status["containerStatuses"][0]["state"]["terminated"].clone();
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let log = api
        .logs(&name, &LogParams::default())
        .await
        .expect("pod log through the API server");
    (name, terminated, log)
}

/// Polls a pod until `ready` holds for its status (at most 120 s).
async fn pod_until(client: &kube::Client, pod: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut last = Value::Null;
    for _ in 0..240 {
        if let Ok(p) = api.get(pod).await {
            last = serde_json::to_value(p.status).unwrap_or_default();
            if ready(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("pod {pod}: condition not reached; last status:\n{last:#}");
}

fn image_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh")
}

fn run_quiet(cmd: &mut Command) -> std::process::Output {
    cmd.stdin(Stdio::null()).output().expect("run")
}

#[test]
fn the_image_is_built_from_scratch_and_runs_as_non_root() {
    if skipped("the_image_is_built_from_scratch_and_runs_as_non_root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let out = run_quiet(
        Command::new("bash")
            .arg(image_script())
            .arg("--binary")
            .arg(bin())
            .arg("--out")
            .arg(&layout),
    );
    assert!(
        out.status.success(),
        "scripts/image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");

    // The config: non-root user, the entrypoint, PATH and the CA bundle; no command.
    let config = newapi_ops::sandbox::image::inspect(&layout, VERSION).expect("inspect");
    assert_eq!(config.digest, digest);
    assert_eq!(config.user.as_deref(), Some("65532:65532"));
    assert_eq!(config.entrypoint, ["/usr/local/bin/newapi-ops"]);
    assert!(config.cmd.is_empty());
    assert_eq!(config.working_dir.as_deref(), Some("/home/nonroot"));
    assert!(config.env.contains(&"PATH=/usr/local/bin".to_string()));
    assert!(
        config
            .env
            .contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string())
    );
    // The Containerfile says the same.
    let containerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile"))
            .unwrap();
    for line in [
        "FROM scratch",
        "USER 65532:65532",
        "WORKDIR /home/nonroot",
        "ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "ENTRYPOINT [\"/usr/local/bin/newapi-ops\"]",
    ] {
        assert!(
            containerfile.lines().any(|l| l == line),
            "Containerfile lacks {line:?}"
        );
    }

    // Unpacked: the binary, its libraries, CA certificates, passwd; no shell.
    let bundle = tmp.path().join("bundle");
    let out = run_quiet(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{VERSION}", layout.display()))
            .arg(&bundle),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    for f in [
        "usr/local/bin/newapi-ops",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
        "etc/nsswitch.conf",
    ] {
        assert!(rootfs.join(f).is_file(), "{f} missing from the image");
    }
    assert!(!rootfs.join("bin/sh").exists(), "no shell in the image");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"));

    // runc runs it (no terminal, the host's network) as the image's user.
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(base["process"]["user"]["uid"], 65532);
    let runc_root = tmp.path().join("runc");
    let run = |id: &str, args: &[&str]| {
        let mut c = base.clone();
        c["process"]["terminal"] = json!(false);
        let mut argv = vec!["/usr/local/bin/newapi-ops"];
        argv.extend_from_slice(args);
        c["process"]["args"] = json!(argv);
        if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
        std::fs::write(bundle.join("config.json"), c.to_string()).unwrap();
        run_quiet(
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(id),
        )
    };
    let version = run("ct-version", &["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("newapi-ops {VERSION}")
    );
    // Not root: root-owned directories are closed to it, its own home is not.
    let denied = run("ct-denied", &["man", "--dir", "/usr/local/share/man"]);
    assert!(!denied.status.success(), "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    let allowed = run("ct-home", &["man", "--dir", "/home/nonroot/man"]);
    assert!(allowed.status.success(), "{allowed:?}");

    // The sandbox's image, built by `sandbox up` from this same binary, is this image.
    let sb = sandbox();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(sb.dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["image"]["reference"], format!("newapi-ops:{VERSION}"));
    assert_eq!(
        state["image"]["digest"], digest,
        "reproducible: same binary, same digest"
    );
    assert_eq!(
        newapi_ops::sandbox::image::IMAGE,
        format!("newapi-ops:{VERSION}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_the_image_complete_or_fail_by_its_exit_code() {
    if skipped("jobs_of_the_image_complete_or_fail_by_its_exit_code") {
        return;
    }
    let sb = sandbox();
    let client = client(&sb).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let sa = name("ct-reader");
    service_account(
        &client,
        &sa,
        json!([
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ["get", "list"]}
        ]),
    )
    .await;

    let version = name("ct-version");
    let pods = name("ct-pods");
    let fail = name("ct-fail");
    create(
        &jobs,
        job(&version, None, json!({"args": ["--version"]}), json!({})),
    )
    .await;
    create(
        &jobs,
        job(
            &pods,
            Some(&sa),
            json!({"args": ["pods", "-n", NS, "-o", "json"]}),
            json!({}),
        ),
    )
    .await;
    create(
        &jobs,
        job(&fail, None, json!({"args": ["no-such-command"]}), json!({})),
    )
    .await;

    // `newapi-ops --version`: Complete, exit 0, the version in the log.
    assert_eq!(finished(&client, &version).await, "Complete");
    let (pod, terminated, log) = outcome(&client, &version).await;
    assert_eq!(terminated["exitCode"], 0);
    assert_eq!(terminated["reason"], "Completed");
    assert_eq!(log.trim(), format!("newapi-ops {VERSION}"));
    Run::new(["logs", &pod, "-n", NS])
        .admin_of(&sb)
        .output()
        .code(0)
        .stdout_has(&format!("newapi-ops {VERSION}"));

    // A real command of the tool, in-cluster with the service account: the pods of new-api.
    assert_eq!(finished(&client, &pods).await, "Complete");
    let (_, terminated, log) = outcome(&client, &pods).await;
    assert_eq!(terminated["exitCode"], 0);
    let report: Value = serde_json::from_str(&log).unwrap_or_else(|e| panic!("{e}: {log}"));
    let names: Vec<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(names.contains(&"new-api-master"), "{names:?}");
    assert!(names.contains(&"mysql"), "{names:?}");

    // A failing command: Error with its exit code (64, a usage error), the Job Failed.
    assert_eq!(finished(&client, &fail).await, "Failed");
    let (pod, terminated, log) = outcome(&client, &fail).await;
    assert_eq!(terminated["exitCode"], 64);
    assert_eq!(terminated["reason"], "Error");
    assert!(log.contains("unrecognized subcommand"), "{log}");
    Run::new(["logs", &pod, "-n", NS])
        .admin_of(&sb)
        .output()
        .code(0)
        .stdout_has("unrecognized subcommand");
    let j = jobs.get(&fail).await.unwrap();
    let failed = j
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));

    for j in [&version, &pods, &fail] {
        let _ = jobs.delete(j, &DeleteParams::background()).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_services_and_volumes_reach_the_process() {
    if skipped("environment_services_and_volumes_reach_the_process") {
        return;
    }
    let sb = sandbox();
    let client = client(&sb).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);

    // Environment: a ConfigMap key, envFrom with a prefix, the downward API, `$(VAR)`. The tool
    // prints its backup directory (NEWAPI_OPS_BACKUP_DIR), made of them.
    let cm = name("ct-env");
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), NS);
    create(
        &maps,
        json!({"metadata": {"name": cm}, "data": {"part": "from-configmap"}}),
    )
    .await;
    let env_job = name("ct-env");
    create(
        &jobs,
        job(
            &env_job,
            None,
            json!({
                "args": ["backup", "list", "-o", "json"],
                "envFrom": [{"configMapRef": {"name": cm}, "prefix": "CFG_"}],
                "env": [
                    {"name": "PART", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "part"}}},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "NEWAPI_OPS_BACKUP_DIR", "value": "/tmp/$(PART)/$(CFG_part)/$(POD_NS)/$(POD)"}
                ]
            }),
            json!({}),
        ),
    )
    .await;

    // A Service name and a Secret: `newapi-ops backup` reaches the real MariaDB as `mysql:3306`
    // with the password from the seed's Secret (in the environment, never on a command line),
    // as the non-root user with a read-only root filesystem, into a PersistentVolumeClaim whose
    // PersistentVolume is a directory here, made writable by fsGroup.
    let pv_dir = tempfile::tempdir().unwrap();
    let pv_path = pv_dir.path().join("backups");
    let claim = name("ct-backups");
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    create(
        &pvs,
        json!({
            "metadata": {"name": claim},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": pv_path, "type": "DirectoryOrCreate"},
                "claimRef": {"namespace": NS, "name": claim}
            }
        }),
    )
    .await;
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), NS);
    create(
        &pvcs,
        json!({
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }),
    )
    .await;
    let backup = name("ct-backup");
    create(
        &jobs,
        job(
            &backup,
            None,
            json!({
                "args": ["backup", "--dir", "/backups", "--threads", "2", "-o", "json"],
                "env": [
                    {"name": "MYSQL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "MYSQL_ROOT_PASSWORD"}}},
                    {"name": "NEWAPI_OPS_MYSQL_URL", "value": "mysql://root:$(MYSQL_PASSWORD)@mysql:3306/new-api"}
                ],
                "volumeMounts": [{"name": "backups", "mountPath": "/backups"}],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                }
            }),
            json!({
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
                "volumes": [{"name": "backups", "persistentVolumeClaim": {"claimName": claim}}]
            }),
        ),
    )
    .await;

    assert_eq!(finished(&client, &env_job).await, "Complete");
    let (pod, _, log) = outcome(&client, &env_job).await;
    let listed: Value = serde_json::from_str(&log).unwrap_or_else(|e| panic!("{e}: {log}"));
    assert_eq!(
        listed["dir"],
        format!("/tmp/from-configmap/from-configmap/{NS}/{pod}")
    );

    let result = finished(&client, &backup).await;
    let (backup_pod_name, terminated, log) = outcome(&client, &backup).await;
    assert_eq!(result, "Complete", "exit {terminated}; log:\n{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in the log:\n{log}"));
    let done: Value = serde_json::from_str(line).unwrap();
    assert_eq!(done["database"], "new-api");
    assert!(
        done["source"]
            .as_str()
            .unwrap()
            .starts_with("root@mysql:3306"),
        "{done}"
    );
    assert_eq!(done["tables"], 11);
    // On the volume, written by the non-root user.
    use std::os::unix::fs::MetadataExt;
    let id = done["id"].as_str().unwrap();
    let written = std::fs::metadata(pv_path.join(id)).expect("the backup on the volume");
    assert_eq!(written.uid(), 65532);
    assert!(pv_path.join(id).join("manifest.json").is_file());
    // No secret in the pod's log or the simulator's log, and no bundle (config.json holds the
    // environment) left once the containers are gone.
    let kubelet_log = std::fs::read_to_string(sb.dir.join("logs/kubelet.log")).unwrap();
    for text in [&log, &kubelet_log] {
        assert!(!text.contains("root:123456@"), "a password in a log");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let backup_pod = pods.get(&backup_pod_name).await.expect("get pod");
    let id = backup_pod.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap();
    let bundle = sb
        .dir
        .join("kubelet/containers")
        .join(id.trim_start_matches("containerd://"));
    assert!(!bundle.exists(), "{} left behind", bundle.display());

    for j in [&env_job, &backup] {
        let _ = jobs.delete(j, &DeleteParams::background()).await;
    }
    let _ = maps.delete(&cm, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_back_off_deletion_stops_the_process_and_other_tags_never_pull() {
    if skipped("restarts_back_off_deletion_stops_the_process_and_other_tags_never_pull") {
        return;
    }
    let sb = sandbox();
    let client = client(&sb).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let image = newapi_ops::sandbox::image::IMAGE;

    // restartPolicy OnFailure: restarted after the kubelet's back-off, the last exit kept.
    let crashing = name("ct-crash");
    create(
        &pods,
        json!({
            "metadata": {"name": crashing},
            "spec": {"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "tool", "image": image, "args": ["no-such-command"]}]}
        }),
    )
    .await;
    // Another tag of the image is not there: ErrImageNeverPull, saying what is.
    let missing = name("ct-missing");
    create(
        &pods,
        json!({
            "metadata": {"name": missing},
            "spec": {"containers": [{"name": "tool", "image": "newapi-ops:0.0.0-missing"}]}
        }),
    )
    .await;
    // A long-running command (following the master's log), then deleted.
    let sa = name("ct-follower");
    service_account(
        &client,
        &sa,
        json!([
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ["get", "list"]}
        ]),
    )
    .await;
    let follower = name("ct-follow");
    create(
        &pods,
        json!({
            "metadata": {"name": follower},
            "spec": {"serviceAccountName": sa, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "tool", "image": image,
                                     "args": ["logs", "master", "-n", NS, "--follow"]}]}
        }),
    )
    .await;

    let status = pod_until(&client, &crashing, |s| {
        s["containerStatuses"][0]["restartCount"].as_i64() >= Some(1)
            && s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let c = &status["containerStatuses"][0];
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 64);
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off "),
        "{c}"
    );
    Run::new(["logs", &crashing, "-n", NS, "--previous"])
        .admin_of(&sb)
        .output()
        .code(0)
        .stdout_has("unrecognized subcommand");

    let status = pod_until(&client, &missing, |s| {
        s["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    })
    .await;
    let message = status["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("the sandbox has {image} only")),
        "{message}"
    );

    pod_until(&client, &follower, |s| {
        s["containerStatuses"][0]["state"]["running"].is_object()
    })
    .await;
    // It follows: the master's lines arrive in its log.
    let mut followed = String::new();
    for _ in 0..60 {
        followed = pods
            .logs(&follower, &LogParams::default())
            .await
            .unwrap_or_default();
        if followed.contains("new-api-master") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(followed.contains("new-api-master"), "{followed}");
    // Its container, as runc knows it (the simulator's runc state directory).
    let id = pods
        .get(&follower)
        .await
        .expect("get")
        .status
        .unwrap()
        .container_statuses
        .unwrap()[0]
        .container_id
        .clone()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let runc_list = || {
        let out = run_quiet(
            Command::new("runc")
                .arg("--root")
                .arg(sb.dir.join("kubelet/runc"))
                .args(["list", "-q"]),
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        runc_list().lines().any(|l| l == id),
        "runc does not list {id}"
    );
    pods.delete(&follower, &DeleteParams::default())
        .await
        .expect("delete");
    let mut gone = false;
    for _ in 0..60 {
        if pods.get_opt(&follower).await.expect("get").is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(gone, "the deleted pod is still there");
    assert!(
        !runc_list().lines().any(|l| l == id),
        "the deleted pod's container still runs"
    );

    for p in [&crashing, &missing] {
        let _ = pods.delete(p, &DeleteParams::default()).await;
    }
}
