//! What newapi-ops asks of the API server, counted in the API server's own audit log: one list
//! per kind whatever the number of pods (one call per page of 500, or of
//! `NEWAPI_OPS_LIST_PAGE_SIZE`), never a GET per pod.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{Run, Sandbox, apply_in, newapi_deployment, poll_json, sandbox};

/// Audit events of newapi-ops about namespace `ns`, as "verb resource" → count, from `offset`.
pub fn calls_about(ns: &str, offset: usize) -> BTreeMap<String, usize> {
    calls_in(sandbox(), ns, offset)
}

/// [`calls_about`] in the audit log of `sb`. A paged list is one call per page.
pub fn calls_in(sb: &Sandbox, ns: &str, offset: usize) -> BTreeMap<String, usize> {
    let log = std::fs::read_to_string(sb.dir.join("logs").join("audit.log")).expect("audit log");
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
        // A long-running request (a log, a port-forward) is logged when its answer starts and
        // when it ends: count each request once, at its end.
        if e["stage"] != "ResponseComplete" {
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
        // metrics.k8s.io's pods are not the pods: named with their group.
        let group = match obj["apiGroup"].as_str() {
            Some(g @ "metrics.k8s.io") => format!(".{g}"),
            _ => String::new(),
        };
        let key = format!(
            "{} {}{group}{sub}",
            e["verb"].as_str().unwrap_or("?"),
            obj["resource"].as_str().unwrap_or("?")
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn audit_len() -> usize {
    audit_len_of(sandbox())
}

/// Where the audit log of `sb` ends now.
pub fn audit_len_of(sb: &Sandbox) -> usize {
    std::fs::metadata(sb.dir.join("logs").join("audit.log"))
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

    // The same lists split over pages of 10: 31 pods are 4 calls, and the same 31 pods.
    let before = audit_len();
    let paged = Run::new(["pods", "-n", &ns, "-o", "json"])
        .admin()
        .env("NEWAPI_OPS_LIST_PAGE_SIZE", "10")
        .output();
    paged.code(0);
    let calls = calls_about(&ns, before);
    assert_eq!(calls.get("list pods"), Some(&4), "{calls:?}");
    assert_eq!(calls.get("list deployments"), Some(&1), "{calls:?}");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let whole = Run::new(["pods", "-n", &ns, "-o", "json"]).admin().output();
    assert_eq!(names(&paged.json()), names(&whole.json()));
    assert_eq!(names(&paged.json()).len(), 31);
    let before = audit_len();
    let out = Run::new(["diagnose", "-n", &ns, "--only", "pods,config", "-o", "json"])
        .admin()
        .env("NEWAPI_OPS_LIST_PAGE_SIZE", "10")
        .output();
    assert!(out.code <= 2, "{}", out.stderr);
    let calls = calls_about(&ns, before);
    assert_eq!(calls.get("list pods"), Some(&4), "{calls:?}");
    let report = out.json();
    assert!(
        crate::support::findings(&report, "pods.healthy")[0]["summary"]
            .as_str()
            .unwrap()
            .contains("all 31 pods"),
        "{report:#}"
    );
}
