//! Every way connecting to the cluster can fail gives an error a user can act on, with its own
//! exit code (README "Exit codes").

use crate::support::{Run, admin_token, closed_port, custom_kubeconfig, sandbox};

const USAGE: i32 = 64;
const NOT_FOUND: i32 = 66;
const UNAVAILABLE: i32 = 69;
const PERMISSION: i32 = 77;
const CONFIG: i32 = 78;

#[test]
fn no_kubeconfig_anywhere() {
    Run::new(["pods"])
        .output()
        .code(CONFIG)
        .stderr_has("no kubeconfig found")
        .stderr_has("$KUBECONFIG (not set)")
        .stderr_has("hint: pass --kubeconfig PATH or set KUBECONFIG");
}

#[test]
fn kubeconfig_flag_naming_a_missing_file() {
    Run::new(["pods", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .code(CONFIG)
        .stderr_has("cannot use kubeconfig /nonexistent/kubeconfig: no such file");
}

#[test]
fn kubeconfig_that_is_not_yaml() {
    let run = Run::new(["pods", "--kubeconfig", "garbage.yaml"]);
    std::fs::write(run.home().join("garbage.yaml"), "\u{0}\u{1}not: [yaml").unwrap();
    run.output()
        .code(CONFIG)
        .stderr_has("cannot use kubeconfig garbage.yaml");
}

#[test]
fn unknown_context_lists_the_known_ones() {
    Run::new(["pods", "--context", "prod-eu"])
        .admin()
        .output()
        .code(NOT_FOUND)
        .stderr_has("context \"prod-eu\" is not in kubeconfig")
        .stderr_has("use one of: sandbox");
}

#[test]
fn api_server_unreachable_names_the_address() {
    let port = closed_port();
    let run = Run::new(["pods", "--kubeconfig", "k"]);
    let ca = std::fs::read_to_string(&sandbox().ca_cert).unwrap();
    let path = custom_kubeconfig(
        run.home(),
        &format!("https://127.0.0.1:{port}"),
        &ca,
        &admin_token(),
    );
    std::fs::rename(path, run.home().join("k")).unwrap();
    let keep = tempfile::tempdir().unwrap();
    let kubeconfig = keep.path().join("k");
    std::fs::copy(run.home().join("k"), &kubeconfig).unwrap();
    let out = run.output();
    out.code(UNAVAILABLE)
        .stderr_has(&format!(
            "cannot reach the Kubernetes API server at https://127.0.0.1:{port}"
        ))
        .stderr_has("connection refused");
    // Our error says it once; kube-rs' own ERROR per failed request is off by default...
    assert!(!out.stderr.contains("failed with error"), "{}", out.stderr);
    // ...and NEWAPI_OPS_LOG still turns it on.
    Run::new([
        "pods".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
    ])
    .env("NEWAPI_OPS_LOG", "kube_client=error")
    .output()
    .code(UNAVAILABLE)
    .stderr_has("failed with error");
}

#[test]
fn tls_failure_with_a_foreign_ca() {
    let other_ca = rcgen::generate_simple_self_signed(vec!["not-the-sandbox".to_string()])
        .unwrap()
        .cert
        .pem();
    let run = Run::new(["nodes"]);
    let path = custom_kubeconfig(run.home(), &sandbox().api_server, &other_ca, &admin_token());
    run.env("KUBECONFIG", path)
        .output()
        .code(UNAVAILABLE)
        .stderr_has(&format!(
            "TLS handshake with the Kubernetes API server at {}",
            sandbox().api_server
        ))
        .stderr_has("certificate");
}

#[test]
fn wrong_token_is_401() {
    let run = Run::new(["pods"]);
    let ca = std::fs::read_to_string(&sandbox().ca_cert).unwrap();
    let path = custom_kubeconfig(run.home(), &sandbox().api_server, &ca, "not-a-valid-token");
    run.env("KUBECONFIG", path)
        .output()
        .code(PERMISSION)
        .stderr_has("rejected our credentials (401 Unauthorized)");
}

#[test]
fn rbac_denial_names_verb_resource_and_namespace() {
    let done = Run::new(["pods"])
        .env("KUBECONFIG", &sandbox().viewer_kubeconfig)
        .output();
    done.code(PERMISSION)
        .stderr_has("RBAC denied list on ")
        .stderr_has(" in namespace \"new-api\"")
        .stderr_has("User \"viewer\" cannot list resource");
}

#[test]
fn partial_rbac_allows_pods_but_not_nodes() {
    Run::new(["pods"])
        .env("KUBECONFIG", &sandbox().reader_kubeconfig)
        .output()
        .code(0)
        .stdout_has("new-api-master");
    Run::new(["nodes"])
        .env("KUBECONFIG", &sandbox().reader_kubeconfig)
        .output()
        .code(PERMISSION)
        .stderr_has("RBAC denied list on nodes at cluster scope")
        .stderr_has("hint: ask a cluster admin for a Role granting `list` on `nodes`");
}

#[test]
fn namespace_not_found_lists_namespaces() {
    Run::new(["pods", "-n", "newapi"])
        .admin()
        .output()
        .code(NOT_FOUND)
        .stderr_has("namespace \"newapi\" not found")
        .stderr_has("new-api");
}

#[test]
fn workload_not_found_lists_what_exists() {
    Run::new(["pods", "--slave", "new-api-replica"])
        .admin()
        .output()
        .code(NOT_FOUND)
        .stderr_has("Deployment \"new-api-replica\" not found in namespace \"new-api\"")
        .stderr_has("new-api-master, new-api-slave");
}

#[test]
fn config_file_with_an_unknown_field() {
    let run = Run::new(["pods"]).admin();
    std::fs::write(
        run.home().join("newapi-ops.toml"),
        "namespace = \"new-api\"\nnamspace = \"x\"\n",
    )
    .unwrap();
    run.output()
        .code(CONFIG)
        .stderr_has("invalid configuration in newapi-ops.toml")
        .stderr_has("unknown field `namspace`");
}

#[test]
fn config_file_renames_workloads() {
    let run = Run::new(["pods", "-o", "json"]).admin();
    std::fs::write(
        run.home().join("newapi-ops.toml"),
        "[workloads]\nslave = \"new-api-slave\"\nmysql = \"mariadb\"\n",
    )
    .unwrap();
    let json = run.output().code(0).json();
    assert_eq!(json["missing"][0]["name"], "mariadb", "{json}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    Run::new(["pods", "--role", "leader"])
        .output()
        .code(USAGE)
        .stderr_has("invalid value 'leader'");
    Run::new(["frobnicate"]).output().code(USAGE);
    Run::new(["pods", "-o", "xml"]).output().code(USAGE);
}
