//! Read-only actions against the API server: pods, logs, nodes, objects, the app, diagnose.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret};
use kube::Api;
use kube::api::{DynamicObject, ListParams, LogParams};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::{Ctx, Done, err_line};
use crate::capacity::{NodeCapacity, pod_is_active, pod_resources};
use crate::inventory::PodView;
use crate::inventory::{Role, Snapshot};
use crate::k8s::Call;
use crate::runbook::args::Resolved;
use crate::runbook::catalogue::{self as c, RoleSel};
use crate::units::plural;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

async fn snapshot(ctx: &Ctx) -> Result<Snapshot, String> {
    Snapshot::load(&ctx.kube, &ctx.settings)
        .await
        .map_err(|e| err_line(&e))
}

/// The pods of the namespace that play `sel`, with their role, sorted by role and name.
fn pods_of<'a>(snap: &'a Snapshot, ctx: &Ctx, sel: RoleSel) -> Vec<(&'a Pod, Role)> {
    let mut v: Vec<(&Pod, Role)> = snap
        .pods
        .iter()
        .filter_map(|p| Snapshot::role_of(p, &ctx.settings).map(|r| (p, r)))
        .filter(|(_, r)| sel.role().is_none_or(|want| want == *r))
        .collect();
    v.sort_by(|a, b| (a.1, &a.0.metadata.name).cmp(&(b.1, &b.0.metadata.name)));
    v
}

fn pod_json(v: &PodView) -> Json {
    json!({
        "name": v.name,
        "role": v.role,
        "status": v.status,
        "phase": v.phase,
        "ready": v.containers > 0 && v.ready_containers == v.containers,
        "restarts": v.restarts,
        "node": v.node,
        "last_termination": v.last_termination.as_ref().map(ToString::to_string),
        "age_secs": v.age_secs,
    })
}

pub async fn pods_list(ctx: &Ctx, a: &c::PodsListArgs<Resolved>) -> Result<Done, String> {
    let snap = snapshot(ctx).await?;
    let views: Vec<PodView> = pods_of(&snap, ctx, a.role)
        .into_iter()
        .map(|(p, r)| PodView::new(p, r))
        .collect();
    let ready = views.iter().filter(|v| v.healthy()).count();
    let restarts: i64 = views.iter().map(|v| i64::from(v.restarts)).sum();
    let out = json!({
        "count": views.len(),
        "ready": ready,
        "not_ready": views.len() - ready,
        "restarts": restarts,
        "pods": views.iter().map(pod_json).collect::<Vec<_>>(),
    });
    let summary = format!(
        "{} ({} ready), {}",
        plural(views.len(), "pod", "pods"),
        ready,
        plural(
            usize::try_from(restarts).unwrap_or(0),
            "restart",
            "restarts"
        )
    );
    Ok(Done::of("pods.list", &out, summary))
}

fn failing_views(snap: &Snapshot, ctx: &Ctx, sel: RoleSel, restarts_over: i64) -> Vec<PodView> {
    pods_of(snap, ctx, sel)
        .into_iter()
        .map(|(p, r)| PodView::new(p, r))
        .filter(|v| !v.healthy() || i64::from(v.restarts) > restarts_over)
        .collect()
}

pub async fn pods_failing(ctx: &Ctx, a: &c::PodsFailingArgs<Resolved>) -> Result<Done, String> {
    let snap = snapshot(ctx).await?;
    let views = failing_views(&snap, ctx, a.role, a.restarts_over);
    let oom = views
        .iter()
        .filter(|v| {
            v.status.contains("OOMKilled")
                || v.last_termination
                    .as_ref()
                    .is_some_and(|t| t.reason == "OOMKilled")
        })
        .count();
    let pending = views.iter().filter(|v| v.phase == "Pending").count();
    let reasons: Vec<String> = views
        .iter()
        .map(|v| {
            let mut r = format!("{}: {}", v.name, v.status);
            if v.restarts > 0 {
                r.push_str(&format!(", {} restarts", v.restarts));
            }
            if let Some(t) = &v.last_termination {
                r.push_str(&format!(", last {t}"));
            }
            r
        })
        .collect();
    let out = json!({
        "count": views.len(),
        "oomkilled": oom,
        "pending": pending,
        "pods": views.iter().map(pod_json).collect::<Vec<_>>(),
        "reasons": reasons,
    });
    let summary = if views.is_empty() {
        "no failing pod".to_string()
    } else {
        format!(
            "{} failing: {}",
            views.len(),
            reasons
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Ok(Done::of("pods.failing", &out, summary))
}

pub async fn pods_describe(ctx: &Ctx, a: &c::PodsDescribeArgs<Resolved>) -> Result<Done, String> {
    let snap = snapshot(ctx).await?;
    let ns = ctx.settings.namespace.as_str();
    let pods: Vec<&Pod> = match &a.pod {
        Some(name) => {
            let p = snap
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| {
                    let mut names: Vec<String> = snap
                        .pods
                        .iter()
                        .filter_map(|p| p.metadata.name.clone())
                        .collect();
                    names.sort();
                    format!(
                        "no pod `{name}` in namespace {ns} (pods: {})",
                        names.join(", ")
                    )
                })?;
            vec![p]
        }
        None => pods_of(&snap, ctx, a.role)
            .into_iter()
            .filter(|(p, r)| {
                !a.only_failing || {
                    let v = PodView::new(p, *r);
                    !v.healthy() || v.restarts > 0
                }
            })
            .map(|(p, _)| p)
            .collect(),
    };
    let events = ctx
        .kube
        .list::<Event>(Some(ns), &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let by_pod = crate::diagnose::pods::events_by_pod(&events);
    let mut warnings = Vec::new();
    let mut described = Vec::new();
    for p in &pods {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let conditions: Vec<String> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| {
                let mut s = format!("{}={}", c.type_, c.status);
                if let Some(r) = &c.reason {
                    s.push_str(&format!(" ({r})"));
                }
                s
            })
            .collect();
        let containers: Vec<Json> = status
            .container_statuses
            .iter()
            .flatten()
            .map(|cs| {
                let (state, reason, message, exit_code) = match &cs.state {
                    Some(st) if st.waiting.is_some() => {
                        let w = st.waiting.as_ref().cloned().unwrap_or_default();
                        ("waiting", w.reason, w.message, None)
                    }
                    Some(st) if st.terminated.is_some() => {
                        let t = st.terminated.as_ref().cloned().unwrap_or_default();
                        ("terminated", t.reason, t.message, Some(t.exit_code))
                    }
                    Some(st) if st.running.is_some() => ("running", None, None, None),
                    _ => ("unknown", None, None, None),
                };
                let last = cs
                    .last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .map(|t| {
                        format!(
                            "{} (exit {})",
                            t.reason.clone().unwrap_or_else(|| "Terminated".into()),
                            t.exit_code
                        )
                    });
                json!({
                    "name": cs.name, "ready": cs.ready, "restarts": cs.restart_count,
                    "state": state, "reason": reason, "message": message,
                    "exit_code": exit_code, "last_termination": last,
                })
            })
            .collect();
        let mut evs: Vec<&&Event> = by_pod
            .get(&name)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        evs.sort_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
        });
        let keep = usize::try_from(a.events.max(0)).unwrap_or(0);
        let skip = evs.len().saturating_sub(keep);
        let ev_json: Vec<Json> = evs
            .iter()
            .skip(skip)
            .map(|e| {
                json!({"type": e.type_, "reason": e.reason, "message": e.message, "count": e.count})
            })
            .collect();
        for e in evs.iter().skip(skip) {
            if e.type_.as_deref() == Some("Warning") {
                warnings.push(format!(
                    "{name}: {}: {}",
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim()
                ));
            }
        }
        let view = PodView::new(
            p,
            Snapshot::role_of(p, &ctx.settings).unwrap_or(Role::Slave),
        );
        described.push(json!({
            "name": name, "status": view.status, "phase": view.phase, "node": view.node,
            "conditions": conditions, "containers": containers, "events": ev_json,
        }));
    }
    let summary = if described.is_empty() {
        "no pod to describe".to_string()
    } else {
        format!(
            "{} described, {}{}",
            plural(described.len(), "pod", "pods"),
            plural(warnings.len(), "warning event", "warning events"),
            warnings
                .first()
                .map(|w| format!(" (e.g. {w})"))
                .unwrap_or_default()
        )
    };
    let out = json!({"count": described.len(), "pods": described, "warnings": warnings});
    Ok(Done::of("pods.describe", &out, summary))
}

pub async fn pods_top(ctx: &Ctx, a: &c::PodsTopArgs<Resolved>) -> Result<Done, String> {
    let ns = ctx.settings.namespace.as_str();
    let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))
        .body(Vec::new())
        .map_err(s)?;
    let metrics: Result<Json, kube::Error> = ctx.kube.client.request(req).await;
    let metrics = match metrics {
        Ok(m) => m,
        Err(e) => {
            let why = match &e {
                kube::Error::Api(st) if st.code == 404 || st.code == 503 => {
                    "metrics.k8s.io is not served: metrics-server is not installed".to_string()
                }
                _ => format!(
                    "metrics.k8s.io did not answer: {}",
                    ctx.kube
                        .error(&Call::new("list", "pods.metrics.k8s.io", Some(ns)), e)
                ),
            };
            let out = json!({"available": false, "reason": why, "pods": [], "max_cpu_percent": null, "max_memory_percent": null, "hot": []});
            return Ok(Done::of(
                "pods.top",
                &out,
                format!("no usage figures: {why}"),
            ));
        }
    };
    let snap = snapshot(ctx).await?;
    let mut pods = Vec::new();
    let mut hot = Vec::new();
    let (mut max_cpu, mut max_mem): (Option<i64>, Option<i64>) = (None, None);
    for (p, role) in pods_of(&snap, ctx, a.role) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let Some(m) = metrics["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|i| i["metadata"]["name"] == name.as_str())
        }) else {
            continue;
        };
        let (mut cpu, mut mem) = (0i64, 0i64);
        for cu in m["containers"].as_array().into_iter().flatten() {
            cpu += cu["usage"]["cpu"]
                .as_str()
                .and_then(|q| crate::quantity::parse_cpu_millis(q).ok())
                .unwrap_or(0);
            mem += cu["usage"]["memory"]
                .as_str()
                .and_then(|q| crate::quantity::parse_value(q).ok())
                .unwrap_or(0);
        }
        let limits = p
            .spec
            .as_ref()
            .map(|s| pod_resources(s).limits)
            .unwrap_or_default();
        let cpu_pct = crate::quantity::percent(cpu, limits.cpu_millis);
        let mem_pct = crate::quantity::percent(mem, limits.memory_bytes);
        max_cpu = max_cpu.max(cpu_pct);
        max_mem = max_mem.max(mem_pct);
        if cpu_pct.is_some_and(|p| p > 80) || mem_pct.is_some_and(|p| p > 85) {
            hot.push(name.clone());
        }
        pods.push(json!({
            "name": name, "role": role, "cpu_millis": cpu, "memory_bytes": mem,
            "cpu_limit_millis": limits.cpu_millis, "memory_limit_bytes": limits.memory_bytes,
            "cpu_percent_of_limit": cpu_pct, "memory_percent_of_limit": mem_pct,
        }));
    }
    let summary = format!(
        "{} measured; highest CPU {} and memory {} of limit; {} hot",
        plural(pods.len(), "pod", "pods"),
        max_cpu.map_or("-".into(), |p| format!("{p}%")),
        max_mem.map_or("-".into(), |p| format!("{p}%")),
        hot.len()
    );
    let out = json!({"available": true, "reason": null, "pods": pods, "max_cpu_percent": max_cpu, "max_memory_percent": max_mem, "hot": hot});
    Ok(Done::of("pods.top", &out, summary))
}

pub async fn logs_fetch(ctx: &Ctx, a: &c::LogsFetchArgs<Resolved>) -> Result<Done, String> {
    let grep = a
        .grep
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| format!("bad grep pattern: {e}"))?;
    if a.tail < 0 {
        return Err(format!("tail must be 0 or more, not {}", a.tail));
    }
    let snap = snapshot(ctx).await?;
    let sel = match a.target.as_str() {
        "master" => Some(RoleSel::Master),
        "slave" | "slaves" => Some(RoleSel::Slave),
        "mysql" => Some(RoleSel::Mysql),
        "redis" => Some(RoleSel::Redis),
        "all" => Some(RoleSel::All),
        _ => None,
    };
    let pods: Vec<String> = match sel {
        Some(sel) => pods_of(&snap, ctx, sel)
            .into_iter()
            .filter_map(|(p, _)| p.metadata.name.clone())
            .collect(),
        None => {
            if !snap
                .pods
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(a.target.as_str()))
            {
                return Err(format!(
                    "no pod `{}` in namespace {} (targets: master, slaves, mysql, redis, all, or a pod name)",
                    a.target, ctx.settings.namespace
                ));
            }
            vec![a.target.clone()]
        }
    };
    let api: Api<Pod> = Api::namespaced(ctx.kube.client.clone(), &ctx.settings.namespace);
    let params = LogParams {
        previous: a.previous,
        tail_lines: Some(a.tail),
        since_seconds: a
            .since
            .map(|s| i64::try_from(s.0).unwrap_or(i64::MAX).max(1)),
        ..Default::default()
    };
    let fetched: Vec<(String, Result<String, kube::Error>)> = futures::stream::iter(pods.clone())
        .map(|pod| {
            let api = api.clone();
            let params = params.clone();
            async move {
                let r = api.logs(&pod, &params).await;
                (pod, r)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let (mut lines, mut matched) = (0usize, 0usize);
    let mut sample = Vec::new();
    let mut errors = Vec::new();
    let mut fetched = fetched;
    fetched.sort_by(|x, y| x.0.cmp(&y.0));
    for (pod, r) in fetched {
        match r {
            Ok(text) => {
                for l in text.lines() {
                    lines += 1;
                    if grep.as_ref().is_none_or(|g| g.is_match(l)) {
                        matched += 1;
                        if sample.len() < 20 {
                            let short: String = l.chars().take(300).collect();
                            sample.push(format!("{pod}: {short}"));
                        }
                    }
                }
            }
            Err(e) => {
                let e = ctx.kube.error(
                    &Call::new("get", "pods/log", Some(&ctx.settings.namespace)),
                    e,
                );
                errors.push(format!("{pod}: {e}"));
            }
        }
    }
    if !pods.is_empty() && errors.len() == pods.len() {
        return Err(format!("no log could be read: {}", errors.join("; ")));
    }
    let out = json!({"pods": pods.len(), "lines": lines, "matched": matched, "sample": sample, "errors": errors});
    let summary = match &a.grep {
        Some(g) => format!(
            "{} of {} lines from {} match `{g}`",
            matched,
            lines,
            plural(pods.len(), "pod", "pods")
        ),
        None => format!("{lines} lines from {}", plural(pods.len(), "pod", "pods")),
    };
    Ok(Done::of("logs.fetch", &out, summary))
}

pub async fn nodes_allocation(ctx: &Ctx) -> Result<Done, String> {
    let ns = ctx.settings.namespace.as_str();
    let all = ListParams::default();
    let active = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let (nodes, pods, deployments) = tokio::join!(
        ctx.kube.list_cluster::<Node>(&all),
        ctx.kube.list::<Pod>(None, &active),
        ctx.kube.list::<Deployment>(Some(ns), &all),
    );
    let (nodes, pods, deployments) = (
        nodes.map_err(|e| err_line(&e))?,
        pods.map_err(|e| err_line(&e))?,
        deployments.map_err(|e| err_line(&e))?,
    );
    let slave = &ctx.settings.workloads.slave.name;
    let template = deployments
        .items
        .iter()
        .find(|d| d.metadata.name.as_ref() == Some(slave))
        .and_then(|d| d.spec.template.spec.clone());
    let active: Vec<&Pod> = pods.items.iter().filter(|p| pod_is_active(p)).collect();
    let r = crate::capacity::nodes_report(&nodes.items, &active, &ctx.settings, template.as_ref());
    let t = &r.totals;
    let per_node: Vec<Json> = r
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.capacity.name,
                "cpu_requests_percent": n.cpu_requests_percent,
                "memory_requests_percent": n.memory_requests_percent,
                "slaves_fit": n.slaves_fit.as_ref().map(|f| f.count),
            })
        })
        .collect();
    let out = json!({
        "nodes": t.nodes,
        "cpu_requests_percent": t.cpu_requests_percent.unwrap_or(0),
        "memory_requests_percent": t.memory_requests_percent.unwrap_or(0),
        "cpu_requested_millis": t.requested.cpu_millis,
        "cpu_allocatable_millis": t.allocatable.cpu_millis,
        "memory_requested_bytes": t.requested.memory_bytes,
        "memory_allocatable_bytes": t.allocatable.memory_bytes,
        "slaves_fit": r.slaves_fit,
        "per_node": per_node,
    });
    let summary = format!(
        "CPU requests {} / {} = {}%, memory {} / {} = {}%; {} more slave{} fit",
        crate::quantity::format_cpu(t.requested.cpu_millis),
        crate::quantity::format_cpu(t.allocatable.cpu_millis),
        t.cpu_requests_percent.unwrap_or(0),
        crate::quantity::format_bytes(t.requested.memory_bytes),
        crate::quantity::format_bytes(t.allocatable.memory_bytes),
        t.memory_requests_percent.unwrap_or(0),
        r.slaves_fit.map_or("?".into(), |n| n.to_string()),
        if r.slaves_fit == Some(1) { "" } else { "s" }
    );
    Ok(Done::of("nodes.allocation", &out, summary))
}

pub async fn nodes_conditions(ctx: &Ctx) -> Result<Done, String> {
    let nodes = ctx
        .kube
        .list_cluster::<Node>(&ListParams::default())
        .await
        .map_err(|e| err_line(&e))?;
    let caps: Vec<NodeCapacity> = nodes
        .items
        .iter()
        .map(|n| NodeCapacity::new(n, std::iter::empty()))
        .collect();
    let not_ready: Vec<String> = caps
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.clone())
        .collect();
    let pressure: Vec<String> = caps
        .iter()
        .flat_map(|c| c.pressure.iter().map(move |p| format!("{}: {p}", c.name)))
        .collect();
    let cordoned: Vec<String> = caps
        .iter()
        .filter(|c| c.unschedulable)
        .map(|c| c.name.clone())
        .collect();
    let ready = caps.len() - not_ready.len();
    let summary = format!(
        "{} of {} Ready{}{}{}",
        ready,
        plural(caps.len(), "node", "nodes"),
        if not_ready.is_empty() {
            String::new()
        } else {
            format!("; not ready: {}", not_ready.join(", "))
        },
        if pressure.is_empty() {
            String::new()
        } else {
            format!("; pressure: {}", pressure.join(", "))
        },
        if cordoned.is_empty() {
            String::new()
        } else {
            format!("; cordoned: {}", cordoned.join(", "))
        },
    );
    let out = json!({"nodes": caps.len(), "ready": ready, "not_ready": not_ready, "pressure": pressure, "unschedulable": cordoned});
    Ok(Done::of("nodes.conditions", &out, summary))
}

pub async fn objects_list(ctx: &Ctx, a: &c::ObjectsListArgs<Resolved>) -> Result<Done, String> {
    use kube::discovery::{Discovery, Scope};
    let discovery = Discovery::new(ctx.kube.client.clone())
        .run()
        .await
        .map_err(|e| {
            format!(
                "API discovery failed: {}",
                ctx.kube.error(&Call::new("get", "API discovery", None), e)
            )
        })?;
    let ns = ctx.settings.namespace.as_str();
    let mut counts = BTreeMap::new();
    let mut names = BTreeMap::new();
    let mut unserved = Vec::new();
    for kind in &a.kinds {
        let found = discovery.groups().find_map(|g| {
            g.resources_by_stability()
                .into_iter()
                .find(|(ar, _)| ar.kind.eq_ignore_ascii_case(kind))
        });
        let Some((ar, caps)) = found else {
            unserved.push(kind.clone());
            counts.insert(kind.clone(), Json::from(0));
            names.insert(kind.clone(), json!([]));
            continue;
        };
        let namespaced = caps.scope == Scope::Namespaced;
        let api: Api<DynamicObject> = if namespaced && !a.all_namespaces {
            Api::namespaced_with(ctx.kube.client.clone(), ns, &ar)
        } else {
            Api::all_with(ctx.kube.client.clone(), &ar)
        };
        let list = api.list(&ListParams::default()).await.map_err(|e| {
            err_line(&ctx.kube.error(
                &Call::new(
                    "list",
                    ar.plural.clone(),
                    (namespaced && !a.all_namespaces).then_some(ns),
                ),
                e,
            ))
        })?;
        let mut ns_names: Vec<String> = list
            .items
            .iter()
            .filter_map(|o| {
                let n = o.metadata.name.clone()?;
                Some(match (&o.metadata.namespace, a.all_namespaces) {
                    (Some(ons), true) => format!("{ons}/{n}"),
                    _ => n,
                })
            })
            .collect();
        ns_names.sort();
        counts.insert(kind.clone(), Json::from(ns_names.len()));
        names.insert(kind.clone(), json!(ns_names));
    }
    let summary = counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
        + &if unserved.is_empty() {
            String::new()
        } else {
            format!(" (not served: {})", unserved.join(", "))
        };
    let out = json!({"counts": counts, "names": names, "unserved": unserved});
    Ok(Done::of("objects.list", &out, summary))
}

pub async fn app_status(ctx: &Ctx) -> Result<Done, String> {
    let snap = snapshot(ctx).await?;
    let pods: Vec<String> = snap
        .pods
        .iter()
        .filter(|p| {
            matches!(
                Snapshot::role_of(p, &ctx.settings),
                Some(Role::Master | Role::Slave)
            )
        })
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let ns = ctx.settings.namespace.clone();
    let mut probes: Vec<Json> = futures::stream::iter(pods)
        .map(|pod| {
            let ns = ns.clone();
            async move {
                match crate::portforward::forward(&ctx.kube, &ns, &pod, 3000).await {
                    Ok(fwd) => {
                        match crate::diagnose::app::http_get(fwd.local, "/api/status", Duration::from_secs(5)).await {
                            Ok(ans) => json!({"pod": pod, "ok": ans.status == 200, "status": ans.status,
                                "latency_ms": u64::try_from(ans.latency.as_millis()).unwrap_or(u64::MAX), "error": null}),
                            Err(e) => json!({"pod": pod, "ok": false, "status": null, "latency_ms": null, "error": e}),
                        }
                    }
                    Err(e) => json!({"pod": pod, "ok": false, "status": null, "latency_ms": null, "error": e.to_string()}),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    probes.sort_by(|a, b| a["pod"].as_str().cmp(&b["pod"].as_str()));
    let ok = probes.iter().filter(|p| p["ok"] == true).count();
    let failing = probes.len() - ok;
    let summary = if probes.is_empty() {
        "no New-API pod is running: the API is down".to_string()
    } else {
        format!(
            "{ok} of {} answer 200 on /api/status{}",
            plural(probes.len(), "pod", "pods"),
            probes
                .iter()
                .filter(|p| p["ok"] != true)
                .map(|p| format!(
                    "; {}: {}",
                    p["pod"].as_str().unwrap_or("?"),
                    if p["error"].is_null() {
                        p["status"].to_string()
                    } else {
                        p["error"].as_str().unwrap_or("").to_string()
                    }
                ))
                .collect::<String>()
        )
    };
    let out = json!({"pods": probes, "ok": ok, "failing": failing});
    Ok(Done::of("app.status", &out, summary))
}

pub async fn app_backends(ctx: &Ctx) -> Result<Done, String> {
    use crate::backends::{Backend, endpoint_from_env};
    let snap = snapshot(ctx).await?;
    let ns = ctx.settings.namespace.as_str();
    let lp = ListParams::default();
    let (secrets, configmaps) = tokio::join!(
        ctx.kube.list::<Secret>(Some(ns), &lp),
        ctx.kube.list::<ConfigMap>(Some(ns), &lp)
    );
    let secrets = secrets.ok().map(|l| l.items);
    let configmaps = configmaps.ok().map(|l| l.items);
    let src = crate::envvars::Sources {
        secrets: secrets.as_deref(),
        configmaps: configmaps.as_deref(),
    };
    let master = snap
        .require(Role::Master, &ctx.settings)
        .map_err(|e| err_line(&e))?;
    let env = master
        .template
        .as_ref()
        .and_then(|t| t.containers.first())
        .map(|c| crate::envvars::resolve(c, &src))
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    let mut parts = Vec::new();
    for (b, key) in [(Backend::Mysql, "mysql"), (Backend::Redis, "redis")] {
        match endpoint_from_env(b, &env, &master.name) {
            Ok(r) => {
                let inside = r.endpoint.in_cluster_host();
                parts.push(format!(
                    "{key} at {}:{} ({})",
                    r.endpoint.host,
                    r.endpoint.port,
                    if inside {
                        "in this cluster"
                    } else {
                        "outside the cluster"
                    }
                ));
                out.insert(format!("{key}_host"), Json::from(r.endpoint.host.clone()));
                out.insert(format!("{key}_in_cluster"), Json::from(inside));
            }
            Err(e) => {
                parts.push(format!("{key}: {e}"));
                out.insert(format!("{key}_host"), Json::Null);
                out.insert(format!("{key}_in_cluster"), Json::from(false));
            }
        }
    }
    Ok(Done::of(
        "app.backends",
        &Json::Object(out),
        parts.join("; "),
    ))
}

#[derive(Serialize)]
struct DiagOut<'a> {
    severity: &'static str,
    critical: usize,
    warning: usize,
    checks: Vec<&'a str>,
    findings: Vec<DiagFinding<'a>>,
}

/// A finding as the action's output lists it: grouped as in diagnose's report (one per check
/// and cause; `subject` the worst, `subjects` all of them, `count` how many).
#[derive(Serialize)]
struct DiagFinding<'a> {
    check: &'a str,
    severity: &'static str,
    subject: Option<&'a str>,
    summary: &'a str,
    next: Option<&'a str>,
    count: usize,
    subjects: Vec<&'a str>,
}

pub async fn diagnose(ctx: &Ctx, a: &c::DiagnoseArgs<Resolved>) -> Result<Done, String> {
    use crate::diagnose::{self, MYSQL_URL_ENV, REDIS_URL_ENV, finding::Severity};
    // `all` among the groups, or none named: every check.
    let components = if a.checks.contains(&c::CheckSel::All) {
        Vec::new()
    } else {
        a.checks.iter().filter_map(|sel| sel.component()).collect()
    };
    // What `newapi-ops diagnose` would do with these two flags, the URLs from its variables.
    let opts = diagnose::Options {
        components,
        timeout: Duration::from_secs(a.timeout.0.max(1)),
        mysql_url: diagnose::url_from_env(MYSQL_URL_ENV),
        redis_url: diagnose::url_from_env(REDIS_URL_ENV),
        ..diagnose::Options::default()
    };
    let report = diagnose::run(Some(&ctx.kube), &ctx.settings, &opts)
        .await
        .map_err(|e| err_line(&e))?;
    let out = DiagOut {
        severity: report.severity.as_str(),
        critical: report.counts.critical,
        warning: report.counts.warning,
        checks: report
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Ok)
            .map(|f| f.check.as_str())
            .collect(),
        findings: report
            .findings
            .iter()
            .map(|f| DiagFinding {
                check: &f.check,
                severity: f.severity.as_str(),
                subject: f.subject.as_deref(),
                summary: &f.summary,
                next: f.next_step.as_deref(),
                count: f.count,
                subjects: f.subject_names(),
            })
            .collect(),
    };
    let summary = format!(
        "{}: {} critical, {} warning{}",
        out.severity,
        out.critical,
        out.warning,
        if out.checks.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                out.checks
                    .iter()
                    .take(6)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    Ok(Done::of("diagnose", &out, summary))
}
