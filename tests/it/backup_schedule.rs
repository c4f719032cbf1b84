//! Scheduled backups that really run, on the sandbox's Kubernetes 1.20 (a sandbox of their own,
//! `schedules`: they kill MariaDB and add a CronJob, which the other tests must not see).
//!
//! - `backup schedule` picks batch/v1beta1 by discovery there, `--dry-run` says so; `--run-now`
//!   makes a Job of the CronJob as `kubectl create job --from` does (owner, annotation), its pod
//!   runs the tool's image under runc (the files on the volume are the non-root user's), the
//!   Job completes, the id is printed, and `backup verify --restore-test` restores that backup
//!   from the volume; a second run leaves one backup (the retention ran inside the job);
//!   `backup status` and `diagnose --only backups` say it is fine.
//! - MariaDB killed: `--run-now` exits 75 with the pod's last log lines, `backup status` shows
//!   the failed Job with its log line, `diagnose --only backups` is critical.
//! - A service account without the rights the job needs: the Job fails, its log says which
//!   right is missing.
//! - No log of any of these pods holds the password.
//! - A Job that cannot finish (an image that does not exist): `--run-now --timeout` exits 75,
//!   says where it was and how to watch it, and the Job is left running.
//! - The API server frozen while `--run-now` follows (SIGSTOP: it accepts and never answers):
//!   exit 69 naming it and the Job, which keeps running and completes once it is back.
//! - SIGTERM while `--run-now` follows: exit 143, the message says the Job keeps running and
//!   how to watch it, and the Job completes.

use std::path::PathBuf;
use std::sync::OnceLock;

use tokio::sync::{Mutex, MutexGuard};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Run, Sandbox, admin_client_of, findings, private_sandbox};

const NS: &str = "new-api";
const NAME: &str = "newapi-ops-backup";
/// The seed's MySQL password.
const PASSWORD: &str = "123456";

/// The tests of this file one at a time: they share one CronJob and one MariaDB.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// Everything a test here starts with: its turn, the scheduled sandbox, a client; None when
/// real containers cannot run here (the test is skipped, or fails under CI).
async fn start(test: &str) -> Option<(MutexGuard<'static, ()>, &'static Scheduled, kube::Client)> {
    if crate::containers::skipped(test) {
        return None;
    }
    let turn = serial().await;
    let s = scheduled().await;
    Some((turn, s, admin_client_of(&s.sb).await))
}

struct Scheduled {
    sb: Sandbox,
    /// The PersistentVolume's directory here: the job's /backups.
    volume: PathBuf,
}

/// The sandbox with a PersistentVolume for the schedule's claim and the schedule applied (keep
/// the last backup only, so that the retention shows).
async fn scheduled() -> &'static Scheduled {
    static DONE: OnceLock<Scheduled> = OnceLock::new();
    if let Some(s) = DONE.get() {
        return s;
    }
    let sb = private_sandbox("schedules");
    let volume = sb.dir.join("schedule-volume");
    let client = admin_client_of(&sb).await;
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let pv = json!({
        "metadata": {"name": "schedules-backups"},
        "spec": {
            "capacity": {"storage": "20Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": volume, "type": "DirectoryOrCreate"},
            "claimRef": {"namespace": NS, "name": NAME}
        }
    });
    pvs.create(&PostParams::default(), &serde_json::from_value(pv).unwrap())
        .await
        .expect("create the PersistentVolume");
    let dry = schedule(&sb, &["--dry-run"]);
    dry.code(0)
        .stderr_has("CronJob as batch/v1beta1")
        .stderr_has("Kubernetes v1.20.2")
        .stdout_has("apiVersion: batch/v1beta1\nkind: CronJob")
        .stdout_has("- --keep-last\n");
    let applied = schedule(&sb, &["-o", "json"]);
    applied.code(0);
    let applied = applied.json();
    assert_eq!(applied["api_version"], "batch/v1beta1");
    assert!(
        applied["applied"]
            .as_array()
            .unwrap()
            .contains(&json!("CronJob/newapi-ops-backup")),
        "{applied}"
    );
    DONE.get_or_init(|| Scheduled { sb, volume })
}

/// `backup schedule` with the flags of this file's schedule (keep the last backup only) and
/// `extra`: applying again changes nothing.
fn schedule(sb: &Sandbox, extra: &[&str]) -> crate::support::Done {
    let args = [
        "backup",
        "schedule",
        "--keep-last",
        "1",
        "--keep-daily",
        "0",
    ];
    Run::new(args.iter().chain(extra)).admin_of(sb).output()
}

/// `backup schedule --run-now -o json`.
fn run_now(sb: &Sandbox) -> crate::support::Done {
    schedule(sb, &["--run-now", "-o", "json"])
}

/// `diagnose --only backups -o json`, which must exit `code`.
fn diagnose_backups(sb: &Sandbox, code: i32) -> Value {
    let diag = Run::new(["diagnose", "--only", "backups", "-o", "json"])
        .admin_of(sb)
        .output();
    let report = diag.json();
    assert_eq!(diag.code, code, "{report:#}");
    report
}

/// `backup status -o json`.
fn status_json(sb: &Sandbox) -> Value {
    let st = Run::new(["backup", "status", "-o", "json"])
        .admin_of(sb)
        .output();
    st.code(0);
    st.json()
}

/// The condition (`Complete`, `Failed`) the Job ends with, once it has one.
async fn finished(jobs: &Api<Job>, job: &str) -> String {
    loop {
        let j = jobs.get(job).await.unwrap();
        let conditions = j.status.and_then(|s| s.conditions).unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c.status == "True") {
            return c.type_.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Every log line of every container of the Job's pods.
async fn logs_of(client: &kube::Client, job: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut all = String::new();
    for p in pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items
    {
        let name = p.metadata.name.clone().unwrap();
        let spec = p.spec.unwrap();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            let params = LogParams {
                container: Some(c.name.clone()),
                ..Default::default()
            };
            if let Ok(l) = pods.logs(&name, &params).await {
                all.push_str(&l);
            }
        }
    }
    all
}

fn backups_on(volume: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(volume)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_backup_runs_now_in_the_cluster_and_restores() {
    let Some((_turn, s, client)) =
        start("a_scheduled_backup_runs_now_in_the_cluster_and_restores").await
    else {
        return;
    };

    let out = run_now(&s.sb);
    out.code(0)
        .stderr_has("started job newapi-ops-backup-manual-");
    let report = out.json();
    let run = &report["run"];
    assert_eq!(run["succeeded"], true, "{report:#}");
    let job = run["job"].as_str().unwrap().to_string();
    let id = run["backup_id"].as_str().unwrap().to_string();
    assert_eq!(run["backup"]["tables"], 11, "{report:#}");

    // As `kubectl create job --from=cronjob/…` makes it.
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let j = jobs.get(&job).await.unwrap();
    let owner = &j.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.api_version.as_str()
        ),
        ("CronJob", NAME, "batch/v1beta1")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        j.metadata.annotations.clone().unwrap()["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    // Its pod ran the tool's image for real: the backup is on the volume, written by the
    // image's non-root user, with the manifest and the verification the job made.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod = &pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap()
        .items[0];
    let status = pod.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let images: Vec<String> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .map(|c| c.image.clone())
        .collect();
    assert_eq!(images.len(), 4, "backup, verify, prune, status: {images:?}");
    assert!(
        images.iter().all(|i| i.starts_with("newapi-ops:")),
        "{images:?}"
    );
    use std::os::unix::fs::MetadataExt as _;
    let on_volume = s.volume.join(&id);
    assert_eq!(std::fs::metadata(&on_volume).unwrap().uid(), 65532);
    assert!(on_volume.join("manifest.json").is_file());
    assert!(on_volume.join("verified.json").is_file());

    // Verified from outside, and restored into a scratch database.
    let dir = s.volume.display().to_string();
    Run::new(["backup", "verify", &id, "--dir", &dir, "--restore-test"])
        .admin_of(&s.sb)
        .output()
        .code(0)
        .stdout_has("every table's rows and CHECKSUM TABLE match");

    // Again: the retention in the job keeps the last one only.
    let again = run_now(&s.sb);
    again.code(0);
    let second = again.json()["run"]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, id);
    assert_eq!(backups_on(&s.volume), std::slice::from_ref(&second));

    // What status and diagnose say of it.
    let st = status_json(&s.sb);
    assert_eq!(st["cronjob"]["api_version"], "batch/v1beta1");
    assert_eq!(st["cronjob"]["schedule"], "0 3 * * *");
    assert_eq!(st["cronjob"]["suspended"], false);
    assert_eq!(st["cronjob"]["period_secs"], 86_400);
    assert_eq!(st["last_failed"], false, "{st:#}");
    assert!(
        st["last_success"]["name"]
            .as_str()
            .unwrap()
            .starts_with("newapi-ops-backup-manual-")
    );
    assert_eq!(st["last_success"]["manual"], true);
    assert_eq!(st["newest_in_volume"]["id"], second.as_str(), "{st:#}");
    assert_eq!(st["newest_in_volume"]["verified"], "files");
    assert_eq!(st["volume"]["backups"], 1);
    let human = Run::new(["backup", "status"]).admin_of(&s.sb).output();
    human
        .code(0)
        .stdout_has("CronJob newapi-ops-backup (batch/v1beta1) \"0 3 * * *\"")
        .stdout_has(&format!("newest backup in the volume: {second}"))
        .stdout_has("verified: files");
    let report = diagnose_backups(&s.sb, 0);
    assert_eq!(findings(&report, "backups.recent")[0]["severity"], "ok");
    assert_eq!(findings(&report, "backups.volume")[0]["severity"], "ok");

    // The password reached the job through the Secret, never its logs.
    for j in [&job, again.json()["run"]["job"].as_str().unwrap()] {
        let logs = logs_of(&client, j).await;
        assert!(logs.contains("backing up into /backups"), "{logs}");
        assert!(
            !logs.contains(PASSWORD),
            "the password in the log of {j}:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_backup_jobs_say_why_in_run_now_status_and_diagnose() {
    let Some((_turn, s, client)) =
        start("failing_backup_jobs_say_why_in_run_now_status_and_diagnose").await
    else {
        return;
    };
    // MariaDB down: the job's backup cannot connect; every attempt fails.
    Run::new([
        "sandbox",
        "--dir",
        s.sb.dir.to_str().unwrap(),
        "fault",
        "mysql-down",
    ])
    .output()
    .code(0);
    let failed = run_now(&s.sb);
    failed
        .code(75)
        .stderr_has("failed: Error (exit 69)")
        .stderr_has("last log lines of newapi-ops-backup-manual-")
        .stderr_has("error: cannot connect to MySQL at root@mysql:3306/new-api")
        .stderr_has("hint: fix what the log says");
    assert!(!failed.stderr.contains(PASSWORD));
    let report = failed.json();
    let job = report["run"]["job"].as_str().unwrap().to_string();
    assert_eq!(report["run"]["succeeded"], false);
    assert_eq!(report["run"]["failure"]["container"], "backup");
    assert_eq!(report["run"]["failure"]["exit_code"], 69);

    let st = status_json(&s.sb);
    assert_eq!(st["last_failed"], true, "{st:#}");
    assert_eq!(st["last_failure"]["name"], job.as_str());
    assert!(
        st["last_failure"]["failure"]["log_line"]
            .as_str()
            .unwrap()
            .starts_with("error: cannot connect to MySQL"),
        "{st:#}"
    );
    Run::new(["backup", "status"])
        .admin_of(&s.sb)
        .output()
        .code(0)
        .stdout_has(&format!("last failure:   job {job}"))
        .stdout_has("(the newest run)");
    let report = diagnose_backups(&s.sb, 2);
    let f = findings(&report, "backups.last-failed");
    assert_eq!(f[0]["severity"], "critical");
    let evidence = f[0]["evidence"].to_string();
    assert!(evidence.contains("cannot connect to MySQL"), "{evidence}");
    assert!(
        f[0]["next_step"]
            .as_str()
            .unwrap()
            .contains("newapi-ops logs newapi-ops-backup-manual-"),
        "{report:#}"
    );
    assert!(!logs_of(&client, &job).await.contains(PASSWORD));
    Run::new(["sandbox", "--dir", s.sb.dir.to_str().unwrap(), "heal"])
        .output()
        .code(0);

    // A service account without the job's rights: the schedule's own pod template, run by it.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NS);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "schedules-no-rights"}})).unwrap(),
    )
    .await
    .unwrap();
    let cronjobs: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("batch", "v1beta1", "CronJob"),
            "cronjobs",
        ),
    );
    let cj = cronjobs.get(NAME).await.unwrap();
    let mut template: Value = cj.data["spec"]["jobTemplate"].clone();
    template["spec"]["template"]["spec"]["serviceAccountName"] = json!("schedules-no-rights");
    template["spec"]["backoffLimit"] = json!(0);
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let name = "schedules-no-rights";
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": template["spec"]
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(finished(&jobs, name).await, "Failed");
    let logs = logs_of(&client, name).await;
    assert!(
        logs.contains("RBAC denied get on deployments.apps in namespace \"new-api\"")
            && logs.contains("system:serviceaccount:new-api:schedules-no-rights")
            && logs.contains(
                "hint: ask a cluster admin for a Role granting `get` on `deployments.apps`"
            ),
        "{logs}"
    );
    assert!(!logs.contains(PASSWORD));
    let st = status_json(&s.sb);
    assert_eq!(st["last_failure"]["name"], name, "{st:#}");
    assert!(
        st["last_failure"]["failure"]["log_line"]
            .as_str()
            .unwrap()
            .contains("RBAC denied"),
        "{st:#}"
    );
}

/// `backup schedule --run-now` started with the file's schedule, its stderr read up to the
/// `started job NAME` line: the child, the rest of its stderr and the job's name.
fn spawn_run_now(
    sb: &Sandbox,
    home: &std::path::Path,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(crate::support::bin())
        .args([
            "backup",
            "schedule",
            "--keep-last",
            "1",
            "--keep-daily",
            "0",
            "--run-now",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("KUBECONFIG", &sb.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let job = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no job started");
        if let Some(rest) = line.trim().strip_prefix("started job ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, stderr, job)
}

/// The rest of a spawned `--run-now`'s stderr, and its exit code.
fn rest_and_code(
    mut child: std::process::Child,
    mut stderr: std::io::BufReader<std::process::ChildStderr>,
) -> (String, Option<i32>) {
    use std::io::Read as _;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    (rest, child.wait().unwrap().code())
}

/// The API server frozen while `--run-now` follows the Job: each look is bounded, and after the
/// grace the command ends with 69 naming the API server and the Job, which goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_api_server_while_following_ends_with_69_and_the_job_goes_on() {
    use nix::sys::signal::Signal;
    let Some((_turn, s, client)) =
        start("a_frozen_api_server_while_following_ends_with_69_and_the_job_goes_on").await
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (child, stderr, job) = spawn_run_now(&s.sb, home.path());
    crate::support::signal_process(&s.sb, "kube-apiserver", Signal::SIGSTOP);
    let (rest, code) = tokio::task::spawn_blocking(move || rest_and_code(child, stderr))
        .await
        .unwrap();
    crate::support::signal_process(&s.sb, "kube-apiserver", Signal::SIGCONT);
    assert_eq!(code, Some(69), "{rest}");
    assert!(
        rest.contains(&format!(
            "lost the API server at {}",
            s.sb.api_server.trim_end_matches('/')
        )) && rest.contains(&format!("while following backup job {job}"))
            && rest.contains("no answer")
            && rest.contains("the Job keeps running in the cluster")
            && rest.contains(&format!("kubectl -n new-api get job {job}")),
        "{rest}"
    );
    assert!(!rest.contains(PASSWORD), "{rest}");
    // And it does: once the API server is back, the Job completes without anyone following it.
    let jobs: Api<Job> = Api::namespaced(client, NS);
    assert_eq!(finished(&jobs, &job).await, "Complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_following_leaves_the_job_running_and_says_how_to_watch_it() {
    let Some((_turn, s, client)) =
        start("sigterm_while_following_leaves_the_job_running_and_says_how_to_watch_it").await
    else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (child, stderr, job) = spawn_run_now(&s.sb, home.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (rest, code) = rest_and_code(child, stderr);
    assert_eq!(code, Some(143), "{rest}");
    assert!(
        rest.contains(&format!("stopped following backup job {job} (SIGTERM)"))
            && rest.contains("the Job keeps running in namespace new-api")
            && rest.contains(&format!("kubectl -n new-api get job {job} -w")),
        "{rest}"
    );
    // And it does: the Job completes without anyone following it.
    let jobs: Api<Job> = Api::namespaced(client, NS);
    assert_eq!(finished(&jobs, &job).await, "Complete");
}

#[tokio::test]
async fn a_job_not_finished_within_the_timeout_is_left_running_with_exit_75() {
    // Refused before anything happens: a timeout without --run-now, or of no time at all.
    Run::new(["backup", "schedule", "--timeout", "5m"])
        .output()
        .code(64)
        .stderr_has("--run-now");
    Run::new(["backup", "schedule", "--run-now", "--timeout", "0"])
        .output()
        .code(64)
        .stderr_has("no time at all");
    let Some((_turn, s, client)) =
        start("a_job_not_finished_within_the_timeout_is_left_running_with_exit_75").await
    else {
        return;
    };
    // The sandbox never pulls another tag than the one it built: the pod waits for its image
    // for good, as on a cluster without that tag.
    let out = schedule(
        &s.sb,
        &[
            "--image",
            "newapi-ops:0.0.0-missing",
            "--run-now",
            "--timeout",
            "3s",
        ],
    );
    let restored = schedule(&s.sb, &[]);
    out.code(75)
        .stderr_has("had not finished after 3 s")
        .stderr_has("the Job keeps running")
        .stderr_has("kubectl -n new-api get job newapi-ops-backup-");
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    restored.code(0);
    let job = out
        .stderr
        .split("backup job ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the job's name")
        .to_string();
    // It is still there, not finished, and this test removes it.
    let jobs: Api<Job> = Api::namespaced(client, NS);
    let j = jobs.get(&job).await.expect("the job keeps running");
    let conditions = j.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        !conditions.iter().any(|c| c.status == "True"),
        "{conditions:?}"
    );
    jobs.delete(&job, &kube::api::DeleteParams::background())
        .await
        .expect("delete the job");
}
