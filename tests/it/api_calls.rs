//! What newapi-ops asks of the API server, counted in the API server's own audit log: a constant
//! number of list calls whatever the number of pods, never a GET per pod.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{Run, apply_in, newapi_deployment, poll_json, sandbox};

/// Audit events of newapi-ops about namespace `ns`, as "verb resource" → count, from `offset`.
fn calls_about(ns: &str, offset: usize) -> BTreeMap<String, usize> {
    let log =
        std::fs::read_to_string(sandbox().dir.join("logs").join("audit.log")).expect("audit log");
    let mut out = BTreeMap::new();
    for line in log[offset.min(log.len())..].lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if !e["userAgent"]
            .as_str()
            .is_some_and(|u| u.starts_with("newapi-ops/"))
        {
            continue;
        }
        let obj = &e["objectRef"];
        let about =
            obj["namespace"] == ns || (obj["resource"] == "namespaces" && obj["name"] == ns);
        if !about {
            continue;
        }
        let sub = obj["subresource"]
            .as_str()
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        let key = format!(
            "{} {}{sub}",
            e["verb"].as_str().unwrap_or("?"),
            obj["resource"].as_str().unwrap_or("?")
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn audit_len() -> usize {
    std::fs::metadata(sandbox().dir.join("logs").join("audit.log"))
        .map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_and_diagnose_make_one_list_call_per_kind_whatever_the_pod_count() {
    let ns = apply_in(
        "t-calls",
        &[
            newapi_deployment("master", 1, json!({}), json!({})),
            newapi_deployment("slave", 30, json!({}), json!({})),
        ],
    )
    .await;
    let ns2 = ns.clone();
    tokio::task::spawn_blocking(move || {
        poll_json(&["pods", "-n", &ns2], |j| {
            j["pods"]
                .as_array()
                .is_some_and(|p| p.len() == 31 && p.iter().all(|p| p["status"] == "Running"))
        })
    })
    .await
    .unwrap();

    let before = audit_len();
    Run::new(["pods", "-n", &ns]).admin().output().code(0);
    let calls = calls_about(&ns, before);
    let expected: BTreeMap<String, usize> = [
        ("get namespaces", 1),
        ("list deployments", 1),
        ("list pods", 1),
        ("list statefulsets", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(calls, expected, "pods with 31 pods");

    let before = audit_len();
    let out = Run::new(["diagnose", "-n", &ns, "--only", "pods,config,logs"])
        .admin()
        .output();
    assert!(out.code <= 2, "{}", out.stderr);
    let calls = calls_about(&ns, before);
    for kind in [
        "pods",
        "deployments",
        "statefulsets",
        "events",
        "secrets",
        "configmaps",
    ] {
        assert_eq!(
            calls.get(&format!("list {kind}")),
            Some(&1),
            "list {kind}: {calls:?}"
        );
    }
    assert!(!calls.contains_key("get pods"), "a GET per pod: {calls:?}");
    // Log fetches only for unhealthy pods (none here) and slaves old enough to have synced twice
    // (none yet): zero.
    assert!(!calls.contains_key("get pods/log"), "{calls:?}");
}
