//! Secrets that pods write to their logs never reach the terminal: a crashed slave's previous
//! log holds New-API's DSN with its password, the password alone, and the SESSION_SECRET; every
//! output format of `diagnose` (and `logs`) masks them, while the report stays useful.

use serde_json::json;

use crate::support::{Done, Run, apply_in, findings, newapi_deployment, poll_diagnose};

/// The SESSION_SECRET of the test namespace (in its Secret).
const SESSION: &str = "t3st-session-s3cret-for-redaction";
/// The MySQL password inside New-API's SQL_DSN (in its ConfigMap).
const PASSWORD: &str = "Hunter2-dsn-pass";

#[track_caller]
fn assert_clean(out: &Done, what: &str) {
    for secret in [SESSION, PASSWORD] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{what} printed {secret}:\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_a_crashed_pods_previous_log_are_masked_in_every_format() {
    let env = json!({"env": [
        {"name": "NODE_TYPE", "value": "slave"},
        {"name": "SQL_DSN", "valueFrom": {"configMapKeyRef": {"name": "new-api-config", "key": "SQL_DSN"}}},
        {"name": "SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "SESSION_SECRET"}}}
    ]});
    let log = format!(
        "[SYS] 2025/11/13 - 10:00:00 | New API started, session secret {SESSION}\n\
         [SYS] 2025/11/13 - 10:00:00 | SESSION_SECRET={SESSION}\n\
         [FATAL] 2025/11/13 - 10:00:01 | failed to initialize database: Error 1045: Access denied (using password {PASSWORD}) dsn root:{PASSWORD}@tcp(mysql:3306)/new-api"
    );
    let ns = apply_in(
        "t-redact",
        &[
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "new-api-secret"},
                "stringData": {"SESSION_SECRET": SESSION}
            }),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "new-api-config"},
                "data": {"SQL_DSN": format!("root:{PASSWORD}@tcp(mysql:3306)/new-api")}
            }),
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment(
                "slave",
                1,
                json!({
                    "sandbox.newapi-ops.io/behavior": "crashloop",
                    "sandbox.newapi-ops.io/previous-log": log
                }),
                env,
            ),
        ],
    )
    .await;
    let ns2 = ns.clone();
    let (report, _) = tokio::task::spawn_blocking(move || {
        poll_diagnose(&["-n", &ns2, "--only", "pods,logs,config"], |r| {
            !findings(r, "logs.database-init-failed").is_empty()
        })
    })
    .await
    .unwrap();
    // The finding is there, its evidence masked but readable.
    let text = report.to_string();
    assert!(
        !text.contains(SESSION) && !text.contains(PASSWORD),
        "{report:#}"
    );
    let f = findings(&report, "logs.database-init-failed")[0].to_string();
    assert!(
        f.contains("failed to initialize database")
            && f.contains("root:***@tcp(mysql:3306)")
            // The password alone is a known value: learned from the ConfigMap's SQL_DSN.
            && f.contains("(using password ***)"),
        "{f}"
    );
    for format in ["human", "json", "yaml"] {
        let out = Run::new([
            "diagnose",
            "-n",
            &ns,
            "--only",
            "pods,logs,config",
            "-o",
            format,
        ])
        .admin()
        .output();
        assert_eq!(out.code, 2, "{format}: {}\n{}", out.stdout, out.stderr);
        assert_clean(&out, &format!("diagnose -o {format}"));
        assert!(out.stdout.contains("***"), "{format}: {}", out.stdout);
    }
    // Log events (`-vv`, and everything at NEWAPI_OPS_LOG=trace: the libraries' own) pass
    // through the same redactor (the masking of an event is unit-tested in printer.rs).
    let out = Run::new(["-vv", "diagnose", "-n", &ns, "--only", "pods,logs,config"])
        .env("NEWAPI_OPS_LOG", "trace")
        .admin()
        .output();
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert_clean(&out, "diagnose with NEWAPI_OPS_LOG=trace");
    // The documents stay valid.
    let out = Run::new(["diagnose", "-n", &ns, "--only", "logs", "-o", "yaml"])
        .admin()
        .output();
    let doc: serde_json::Value = serde_saphyr::from_str(&out.stdout).expect("valid YAML");
    assert_eq!(doc["schema_version"], 2);
    // `logs` shows the same log, masked the same way.
    for format in ["human", "json"] {
        let out = Run::new(["logs", "slaves", "-n", &ns, "--previous", "-o", format])
            .admin()
            .output();
        out.code(0).stdout_has("failed to initialize database");
        assert_clean(&out, &format!("logs -o {format}"));
        out.stdout_has("root:***@tcp(mysql:3306)/new-api");
    }
}
