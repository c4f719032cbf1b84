//! `newapi-ops nodes` on the seed cluster: two 4-CPU nodes, 7000m of 8000m requested (88 %),
//! 10Gi of 12295Mi, and room for exactly one more slave, limited by CPU.

use crate::support::{Run, poll_json};

#[test]
fn seed_cluster_totals_and_headroom() {
    let _nodes = crate::support::nodes_lock();
    // Other tests only create pods without requests, so the seed's figures hold exactly.
    let json = poll_json(&["nodes"], |j| {
        j["totals"]["requested"]["cpu_millis"] == 7000
    });
    let totals = &json["totals"];
    assert_eq!(totals["nodes"], 2);
    assert_eq!(totals["allocatable"]["cpu_millis"], 8000);
    assert_eq!(totals["allocatable"]["memory_bytes"], 12295_i64 << 20);
    assert_eq!(totals["requested"]["memory_bytes"], 10_i64 << 30);
    assert_eq!(totals["limits"]["cpu_millis"], 15000);
    assert_eq!(totals["limits"]["memory_bytes"], 22_i64 << 30);
    assert_eq!(totals["cpu_requests_percent"], 88);
    assert_eq!(json["slaves_fit"], 1);
    let fits: Vec<_> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["slaves_fit"])
        .collect();
    assert!(
        fits.iter()
            .any(|f| f["count"] == 1 && f["limited_by"] == "cpu"),
        "{fits:?}"
    );
    let roles = json["roles"].as_array().unwrap();
    let slave = roles.iter().find(|r| r["role"] == "slave").unwrap();
    assert_eq!(slave["pods"], 3);
    assert_eq!(slave["requests"]["cpu_millis"], 3000);

    Run::new(["nodes"])
        .admin()
        .output()
        .code(0)
        .stdout_has("CPU requests:    7000m / 8000m = 88%")
        .stdout_has("Memory requests: 10Gi / 12295Mi = 83%")
        .stdout_has("CPU limits:      15000m")
        .stdout_has("Memory limits:   22Gi")
        .stdout_has("1 more slave fits (each requests cpu 1000m, memory 1Gi)");
}
