//! `newapi-ops pods` against the sandbox's seed deployment and deliberately broken workloads.

use crate::support::{Run, delete_namespace, deploy_newapi, poll_json};

#[test]
fn seed_deployment_has_all_roles_running() {
    let json = poll_json(&["pods"], |j| {
        j["pods"]
            .as_array()
            .is_some_and(|p| p.len() == 6 && p.iter().all(|p| p["status"] == "Running"))
    });
    let roles: Vec<&str> = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["master", "slave", "slave", "slave", "mysql", "redis"]
    );
    for p in json["pods"].as_array().unwrap() {
        assert_eq!(p["ready_containers"], 1, "{p}");
        assert!(
            p["node"].as_str().unwrap().starts_with("sandbox-node-"),
            "{p}"
        );
    }
    let workloads = json["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 4);
    assert!(json["missing"].as_array().unwrap().is_empty());

    let human = Run::new(["pods"]).admin().output();
    human
        .code(0)
        .stdout_has("namespace new-api (context sandbox): new-api-master 1/1, new-api-slave 3/3, mysql 1/1, redis 1/1")
        .stdout_has("ROLE")
        .stdout_has("LAST TERMINATION");
    assert_eq!(
        human.stdout.matches(" Running ").count(),
        6,
        "{}",
        human.stdout
    );

    // `-o yaml` is the JSON document as YAML.
    let yaml = Run::new(["pods", "-o", "yaml"]).admin().output();
    yaml.code(0);
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml.stdout).expect("valid YAML");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&doc), names(&json), "{}", yaml.stdout);
    assert_eq!(doc["workloads"], json["workloads"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn crashloop_with_oomkilled_shows_reason_and_exit_code() {
    let ns = deploy_newapi("t-pods-oom", 2, "crashloop-oom").await;
    let ns = ns.as_str();
    let owned = ns.to_string();
    let json = tokio::task::spawn_blocking(move || {
        poll_json(&["pods", "-n", &owned], |j| {
            j["pods"].as_array().is_some_and(|p| {
                p.iter()
                    .filter(|p| p["status"] == "CrashLoopBackOff")
                    .count()
                    == 2
            })
        })
    })
    .await
    .unwrap();
    let slave = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "slave")
        .unwrap();
    assert_eq!(slave["last_termination"]["reason"], "OOMKilled", "{slave}");
    assert_eq!(slave["last_termination"]["exit_code"], 137, "{slave}");
    assert!(slave["restarts"].as_i64().unwrap() > 0, "{slave}");
    // MySQL and Redis are absent here (as with a managed database): listed, not an error.
    let missing: Vec<&str> = json["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["mysql", "redis"]);

    let human = Run::new(["pods", "-n", ns, "--role", "slave"])
        .admin()
        .output();
    human
        .code(0)
        .stdout_has("CrashLoopBackOff")
        .stdout_has("OOMKilled (exit 137)");
    assert!(
        !human.stdout.contains("master  "),
        "--role slave shows only slaves:\n{}",
        human.stdout
    );
    delete_namespace(ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn image_pull_failure_is_shown() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    let ns = deploy_newapi("t-pods-image", 1, "running").await;
    let ns = ns.as_str();
    let api: Api<Deployment> = Api::namespaced(crate::support::admin_client().await, ns);
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "new-api", "image": "calciumion/new-api:does-not-exist"}
    ]}}}});
    api.patch(
        "new-api-master",
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await
    .unwrap();
    let owned = ns.to_string();
    tokio::task::spawn_blocking(move || {
        poll_json(&["pods", "-n", &owned, "--role", "master"], |j| {
            j["pods"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|p| p["status"] == "ImagePullBackOff" || p["status"] == "ErrImagePull")
            })
        })
    })
    .await
    .unwrap();
    delete_namespace(ns).await;
}
