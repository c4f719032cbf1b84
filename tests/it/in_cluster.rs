//! Running inside a pod: no kubeconfig, the pod's service account. The token is a real
//! ServiceAccount token issued by the sandbox's controller-manager, mounted at the standard path
//! (/var/run/secrets/kubernetes.io/serviceaccount) inside a private mount namespace, so the host
//! is left untouched.

use std::process::Command;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};

use crate::support::{Done, admin_client, bin, sandbox};

#[tokio::test(flavor = "multi_thread")]
async fn service_account_in_a_pod() {
    assert!(
        nix_is_root(),
        "this test mounts a tmpfs in a private mount namespace and needs root (CI runs as root)"
    );
    let client = admin_client().await;
    let ns = "new-api";
    let name = format!("newapi-ops-incluster-{}", std::process::id());
    let name = name.as_str();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create service account");
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    let rb: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    }))
    .unwrap();
    rbs.create(&PostParams::default(), &rb)
        .await
        .expect("create role binding");

    // Kubernetes 1.20's token controller writes the token into a Secret of the account.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut token_secret = None;
    for _ in 0..120 {
        let sa = sas.get(name).await.unwrap();
        if let Some(s) = sa
            .secrets
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.name)
            .next()
        {
            token_secret = Some(secrets.get(&s).await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let data = token_secret
        .expect("service account token secret")
        .data
        .unwrap();
    let mount = tempfile::tempdir().unwrap();
    for key in ["token", "ca.crt", "namespace"] {
        std::fs::write(mount.path().join(key), &data[key].0).unwrap();
    }
    let port = sandbox().api_server.rsplit(':').next().unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let in_pod = |args: &str| -> Done {
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount \
             && cp '{src}'/* /run/secrets/kubernetes.io/serviceaccount/ && exec '{bin}' {args}",
            src = mount.path().display(),
            bin = bin()
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("NO_COLOR", "1")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &port)
            .output()
            .expect("run unshare")
            .into()
    };
    in_pod("pods").code(0).stdout_has("new-api-master");
    in_pod("nodes")
        .code(77)
        .stderr_has("RBAC denied list on nodes at cluster scope")
        .stderr_has(&format!("system:serviceaccount:new-api:{name}"));
    in_pod("pods --context x")
        .code(64)
        .stderr_has("running in-cluster");

    let _ = rbs.delete(name, &Default::default()).await;
    let _ = sas.delete(name, &Default::default()).await;
}

fn nix_is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
