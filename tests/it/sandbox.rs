//! The sandbox a user rehearses on: `up` is idempotent, `status` tells the truth, each `fault`
//! breaks it for real and shows up in `pods` and `diagnose`, `heal` repairs, `down` leaves
//! nothing behind. Runs on a sandbox of its own, since it kills MariaDB and Redis.

use crate::support::{Done, Run, Sandbox, private_sandbox};

fn sb_cmd(sb: &Sandbox, args: &[&str]) -> Done {
    let mut full = vec!["sandbox", "--dir", sb.dir.to_str().unwrap()];
    full.extend_from_slice(args);
    Run::new(full).output()
}

/// Runs `newapi-ops ARGS -o json` against `sb` until `ready` holds (bounded wait for the
/// cluster to converge; it times nothing).
fn poll(
    sb: &Sandbox,
    args: &[&str],
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, i32) {
    let mut last = serde_json::Value::Null;
    for _ in 0..240 {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        let done = Run::new(full).admin_of(sb).output();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&done.stdout) {
            if ready(&v) {
                return (v, done.code);
            }
            last = v;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("condition not reached for {args:?}; last:\n{last:#}");
}

fn check<'a>(r: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    r["findings"].as_array()?.iter().find(|f| f["check"] == id)
}

fn slaves_with(j: &serde_json::Value, status: &str) -> usize {
    j["pods"].as_array().map_or(0, |p| {
        p.iter()
            .filter(|p| p["role"] == "slave" && p["status"] == status)
            .count()
    })
}

#[test]
fn lifecycle_faults_and_heal() {
    let sb = private_sandbox("faults");

    // A second `up` is a no-op that reports the same sandbox.
    let again = Run::new([
        "sandbox",
        "up",
        "--dir",
        sb.dir.to_str().unwrap(),
        "-o",
        "json",
    ])
    .output();
    again.code(0);
    assert_eq!(again.json()["api_server"], sb.api_server.as_str());
    let status = sb_cmd(&sb, &["status", "-o", "json"]);
    status.code(0);
    assert_eq!(status.json()["healthy"], true);
    let state = std::fs::metadata(sb.dir.join("state.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&state.permissions()) & 0o777,
        0o600
    );

    // oom: the new slave crashes with OOMKilled (exit 137) and its previous log says why. The
    // rollout stalls there, as a real one does (maxUnavailable rounds down to 0 for 3 replicas).
    sb_cmd(&sb, &["fault", "oom"]).code(0);
    poll(&sb, &["pods"], |j| {
        slaves_with(j, "CrashLoopBackOff") >= 1 && slaves_with(j, "Running") == 3
    });
    let (r, code) = poll(&sb, &["diagnose", "--only", "pods,logs"], |r| {
        check(r, "pods.crashloop").is_some() && check(r, "logs.out-of-memory").is_some()
    });
    assert_eq!(code, 2);
    assert!(
        check(&r, "pods.crashloop")
            .unwrap()
            .to_string()
            .contains("OOMKilled")
    );

    // crashloop: the database refuses connections in the previous log.
    sb_cmd(&sb, &["fault", "crashloop"]).code(0);
    poll(&sb, &["diagnose", "--only", "pods,logs"], |r| {
        check(r, "logs.mysql-too-many-connections").is_some()
    });

    // imagepull and unready.
    sb_cmd(&sb, &["fault", "imagepull"]).code(0);
    poll(&sb, &["diagnose", "--only", "pods"], |r| {
        check(r, "pods.image").is_some()
    });
    sb_cmd(&sb, &["fault", "unready"]).code(0);
    poll(&sb, &["diagnose", "--only", "pods"], |r| {
        check(r, "pods.unready").is_some_and(|f| f.to_string().contains("Readiness probe failed"))
    });

    sb_cmd(&sb, &["heal"]).code(0);
    poll(&sb, &["pods"], |j| {
        slaves_with(j, "Running") == 3 && j["pods"].as_array().unwrap().len() == 6
    });

    // redis-down: Redis is really killed. The report still comes out whole; Redis is critical,
    // and New-API answers the empty 500 it gives when Redis is gone.
    sb_cmd(&sb, &["fault", "redis-down"]).code(0);
    assert_ne!(
        sb_cmd(&sb, &["status"]).code,
        0,
        "status must notice Redis is down"
    );
    let (r, code) = poll(&sb, &["diagnose"], |r| check(r, "app.redis-down").is_some());
    assert_eq!(code, 2);
    assert_eq!(
        check(&r, "redis.connect").unwrap()["severity"],
        "critical",
        "{r:#}"
    );
    let components: Vec<&str> = r["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["component"].as_str())
        .collect();
    assert_eq!(
        components,
        [
            "pods", "nodes", "logs", "mysql", "redis", "app", "config", "backups"
        ],
        "every component still reported"
    );
    assert!(
        check(&r, "mysql.connect").is_some_and(|f| f["severity"] == "ok"),
        "{r:#}"
    );

    // mysql-down: MariaDB is really killed; MySQL is critical, the rest still reported.
    sb_cmd(&sb, &["fault", "mysql-down"]).code(0);
    let (r, _) = poll(&sb, &["diagnose"], |r| {
        check(r, "mysql.connect").is_some_and(|f| f["severity"] == "critical")
    });
    assert!(
        check(&r, "pods.healthy").is_some(),
        "the pods are still fine: {r:#}"
    );

    sb_cmd(&sb, &["heal"]).code(0);
    let (r, _) = poll(&sb, &["diagnose", "--only", "mysql,redis,app"], |r| {
        check(r, "mysql.connect").is_some_and(|f| f["severity"] == "ok")
            && check(r, "app.ok").is_some()
    });
    assert!(
        check(&r, "redis.connect").is_some_and(|f| f["severity"] == "ok"),
        "{r:#}"
    );
    sb_cmd(&sb, &["status"]).code(0);

    // down twice: everything stops, the directory goes.
    let pids: Vec<i32> = {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sb.dir.join("state.json")).unwrap())
                .unwrap();
        state["processes"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| i32::try_from(p["pid"].as_i64().unwrap()).unwrap())
            .collect()
    };
    sb_cmd(&sb, &["down"]).code(0);
    sb_cmd(&sb, &["down"]).code(0);
    assert!(!sb.dir.exists());
    for pid in pids {
        assert!(!running(pid), "process {pid} survived `sandbox down`");
    }
    sb_cmd(&sb, &["status"]).code(66);
}

/// Whether a process runs: a zombie (dead, not yet reaped by init) does not.
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
    }
}
