//! The app check group: `GET /api/status` on New-API pods, each through a port-forward to its
//! port 3000 (the request written on the forward's own stream: one connection per probe, no local
//! listener). With more than a few pods, a sample is probed ([`super::sample`]): every master,
//! every pod not ready or restarted recently, a few healthy pods per ReplicaSet and image (more of
//! a group whose sample fails); the rest are judged by their readiness (the kubelet's own probe of
//! the same endpoint). The probes stop starting at a deadline inside the time limit, so the check
//! ends in time and says what it probed and what it did not.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::Ctx;
use super::sample::{self, Candidate, Pick, Plan, Why};
use crate::diagnose::app;
use crate::diagnose::finding::{Component, Finding, Severity};
use crate::inventory::Snapshot;
use crate::k8s::{Call, Kube};
use crate::units::plural;

/// The port New-API listens on in its pods.
const NEW_API_PORT: u16 = 3000;

/// Probes start until this share of the time limit has passed…
const START_UNTIL: f32 = 0.6;
/// …and each may take this share of it (so the last ones end by 0.9 of the limit).
const PER_PROBE: f32 = 0.3;

pub(super) async fn check(ctx: &Ctx) -> Vec<Finding> {
    let t0 = Instant::now();
    let d = match ctx.data(Component::App) {
        Ok(d) => d,
        Err(f) => return vec![*f],
    };
    let Some(kube) = &ctx.kube else {
        return Vec::new();
    };
    let cands: Vec<Candidate> = d
        .new_api_pods(&ctx.settings)
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let role = Snapshot::role_of(p, &ctx.settings)?;
            Some(Candidate::of(p, role))
        })
        .chain(
            d.pods
                .healthy_slaves
                .iter()
                .map(super::slim::HealthySlave::candidate),
        )
        .collect();
    if cands.is_empty() {
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
    let limit = ctx.opts.timeout;
    let start_until = tokio::time::Instant::from_std(t0 + limit.mul_f32(START_UNTIL));
    let per_probe = limit.mul_f32(PER_PROBE);
    let ns = ctx.settings.namespace.as_str();
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let mut plan = sample::plan(&cands);
    let probe = |pick: Pick| {
        let api = api.clone();
        async move {
            let outcome = probe_one(kube, &api, ns, &pick.name, per_probe).await;
            (
                pick,
                app::StatusProbe {
                    pod: String::new(),
                    outcome,
                },
            )
        }
    };
    let conc = ctx.opts.concurrency.max(1);
    ctx.progress(
        Component::App,
        format!("probing {}", plan.describe("New-API pods")),
    );
    let (mut done, mut skipped) =
        sample::within(plan.picks.clone(), conc, start_until, &probe).await;
    // A group whose sample failed: probe more of it, while there is time.
    let failed_groups: Vec<usize> = {
        let mut g: Vec<usize> = done
            .iter()
            .filter(|(p, r)| p.why == Why::Sample && !answered(r))
            .map(|(p, _)| p.group)
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    };
    if skipped.is_empty() {
        let mut more = Vec::new();
        for g in failed_groups {
            more.extend(sample::more_of(&mut plan, &cands, g, sample::ESCALATE));
        }
        if !more.is_empty() {
            let (d2, s2) = sample::within(more, conc, start_until, &probe).await;
            done.extend(d2);
            skipped.extend(s2);
        }
    }
    ctx.progress(
        Component::App,
        format!("probed {} of {} New-API pods", done.len(), cands.len()),
    );
    let probes: Vec<app::StatusProbe> = done
        .into_iter()
        .map(|(pick, mut p)| {
            p.pod = pick.name;
            p
        })
        .collect();
    let mut out = app::check_app_of(
        &probes,
        cands.len(),
        jiff::Timestamp::now().as_second(),
        Duration::from_secs(1),
    );
    out.extend(coverage(&plan, &probes, &skipped, limit));
    out
}

/// Whether a probe got New-API's answer (any HTTP answer counts: the findings judge it).
fn answered(p: &app::StatusProbe) -> bool {
    p.outcome.as_ref().is_ok_and(|a| a.status == 200)
}

/// What was probed and how the rest were judged (info), and what the deadline cut off
/// (warning).
fn coverage(
    plan: &Plan,
    probes: &[app::StatusProbe],
    skipped: &[Pick],
    limit: Duration,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if !plan.is_all() {
        let rest = plan.total - plan.picks.len();
        out.push(
            Finding::new(
                Component::App,
                "app.sampled",
                Severity::Info,
                format!(
                    "probed {}; the other {} were judged by their readiness (the kubelet's probe of /api/status) and their group's sample",
                    plan.describe("New-API pods"),
                    plural(rest as u64, "pod", "pods")
                ),
            )
            .evidence(format!(
                "groups (owner and image): {}",
                plan.groups.join("; ")
            )),
        );
    }
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|p| p.name.clone()).collect();
        out.push(sample::incomplete(
            Component::App,
            &format!(
                "probed {} of the {} pods chosen",
                probes.len(),
                probes.len() + skipped.len()
            ),
            &names,
            limit,
        ));
    }
    out
}

/// One probe: a port-forward to the pod's port 3000 and `GET /api/status` on its stream.
async fn probe_one(
    kube: &Kube,
    api: &Api<Pod>,
    namespace: &str,
    pod: &str,
    limit: Duration,
) -> Result<app::HttpAnswer, String> {
    let start = Instant::now();
    let call = Call::new("create", "pods/portforward", Some(namespace));
    let opened = tokio::time::timeout(limit, api.portforward(pod, &[NEW_API_PORT])).await;
    let mut pf = match opened {
        Ok(Ok(pf)) => pf,
        Ok(Err(e)) => return Err(format!("port-forward: {}", kube.error(&call, e))),
        Err(_) => {
            return Err(format!(
                "no port-forward within {}",
                crate::units::duration(limit)
            ));
        }
    };
    let Some(stream) = pf.take_stream(NEW_API_PORT) else {
        pf.abort();
        return Err("the port-forward gave no stream".into());
    };
    let left = limit.saturating_sub(start.elapsed());
    let answer = app::http_get_on(stream, "/api/status", left, start).await;
    pf.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_was_probed_and_what_was_cut_off() {
        let cands: Vec<Candidate> = (0..100)
            .map(|i| Candidate {
                name: format!("s-{i:02}"),
                group: "ReplicaSet/rs img".into(),
                master: false,
                suspect: false,
                node: None,
            })
            .collect();
        let plan = sample::plan(&cands);
        let skipped = vec![plan.picks[2].clone()];
        let probes: Vec<app::StatusProbe> = plan.picks[..2]
            .iter()
            .map(|p| app::StatusProbe {
                pod: p.name.clone(),
                outcome: Err("x".into()),
            })
            .collect();
        let out = coverage(&plan, &probes, &skipped, Duration::from_secs(5));
        assert_eq!(out[0].check, "app.sampled");
        assert!(
            out[0]
                .summary
                .contains("the other 97 pods were judged by their readiness"),
            "{}",
            out[0].summary
        );
        assert_eq!(out[1].check, "app.incomplete");
        assert!(
            out[1].summary.starts_with(
                "probed 2 of the 3 pods chosen before the time limit (5 s); 1 pod was not reached"
            ),
            "{}",
            out[1].summary
        );
    }
}
