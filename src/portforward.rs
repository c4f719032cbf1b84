//! `kubectl port-forward` in-process: a listener on 127.0.0.1 whose every connection is carried
//! to a pod's port through the API server's `pods/portforward` subresource. Used to reach MySQL,
//! Redis and New-API pods from outside the cluster without exposing them.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::k8s::{Call, Kube};

/// A running forward; stops when dropped.
#[derive(Debug)]
pub struct Forward {
    /// Where to connect locally.
    pub local: SocketAddr,
    pub pod: String,
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a forward to `pod:port` in `namespace`. The first connection is tried right away, so
/// a denied or impossible forward fails here with a clear error rather than later.
pub async fn forward(kube: &Kube, namespace: &str, pod: &str, port: u16) -> Result<Forward> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
    let call = Call::new("create", "pods/portforward", Some(namespace));
    // Probe: opening a stream proves RBAC and the kubelet path work.
    let mut probe = api
        .portforward(pod, &[port])
        .await
        .map_err(|e| kube.error(&call, e))?;
    if probe.take_stream(port).is_none() {
        return Err(Error::Internal(format!(
            "port-forward to {pod}:{port} gave no stream"
        )));
    }
    probe.abort();
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::io("listening on 127.0.0.1 for a port-forward", e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the port-forward's local address", e))?;
    let pod_name = pod.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            let api = api.clone();
            let pod = pod_name.clone();
            tokio::spawn(async move {
                let mut pf = match api.portforward(&pod, &[port]).await {
                    Ok(pf) => pf,
                    Err(e) => {
                        tracing::warn!("port-forward to {pod}:{port} failed: {e}");
                        return;
                    }
                };
                let Some(mut upstream) = pf.take_stream(port) else {
                    return;
                };
                let error = pf.take_error(port);
                if let Err(e) = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await {
                    tracing::debug!("port-forward to {pod}:{port} closed: {e}");
                }
                drop(upstream);
                if let Some(error) = error
                    && let Ok(Some(msg)) =
                        tokio::time::timeout(std::time::Duration::from_millis(100), error).await
                {
                    tracing::warn!("port-forward to {pod}:{port}: {msg}");
                }
                pf.abort();
            });
        }
    });
    tracing::debug!("forwarding {local} to {pod}:{port}");
    Ok(Forward {
        local,
        pod: pod.to_string(),
        port,
        task,
    })
}
