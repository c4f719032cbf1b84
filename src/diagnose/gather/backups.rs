//! Gathering for the backup checks: the schedule's state as `backup status` reads it (API
//! discovery, the CronJob, its Jobs in one list, the newest failed Job's pod and log, the status
//! ConfigMap) — a few calls whatever the size of the deployment — judged by
//! [`crate::diagnose::backups`].

use super::{Ctx, cluster_finding};
use crate::diagnose::finding::{Component, Finding};

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
    // Without the listed cluster state there is no cluster to ask: the same finding as the
    // other components'.
    if let Err(f) = ctx.data(Component::Backups) {
        return vec![*f];
    }
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    ctx.progress(
        Component::Backups,
        "reading the backup CronJob and its Jobs".into(),
    );
    match crate::backup::schedule::status::gather(kube, &ctx.settings.namespace).await {
        Ok(st) => crate::diagnose::backups::check(&st, jiff::Timestamp::now()),
        Err(e) => vec![cluster_finding(Component::Backups, &e)],
    }
}
