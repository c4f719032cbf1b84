//! The app check group: `GET /api/status` on every running New-API pod, each through a
//! port-forward to its port 3000, capped in number at once.

use std::time::Duration;

use futures::StreamExt;

use super::Ctx;
use crate::diagnose::app;
use crate::diagnose::finding::{Component, Finding, Severity};

/// The port New-API listens on in its pods.
const NEW_API_PORT: u16 = 3000;

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
    let d = match ctx.data(Component::App) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let pods: Vec<String> = d
        .new_api_pods(&ctx.settings)
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if pods.is_empty() {
        return vec![
            Finding::new(
                Component::App,
                "app.no-pods",
                Severity::Critical,
                "no New-API pod is running: the API is down",
            )
            .next("see the pods findings; newapi-ops runbook run pod-startup-failure"),
        ];
    }
    let ns = ctx.settings.namespace.as_str();
    let per_call = ctx.opts.timeout.mul_f32(0.8);
    let probes: Vec<app::StatusProbe> = futures::stream::iter(pods)
        .map(|pod| async move {
            let outcome = match crate::portforward::forward(kube, ns, &pod, NEW_API_PORT).await {
                Ok(fwd) => app::http_get(fwd.local, "/api/status", per_call).await,
                Err(e) => Err(e.to_string()),
            };
            app::StatusProbe { pod, outcome }
        })
        .buffer_unordered(ctx.opts.concurrency.max(1))
        .collect()
        .await;
    app::check_app(
        &probes,
        jiff::Timestamp::now().as_second(),
        Duration::from_secs(1),
    )
}
