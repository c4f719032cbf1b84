//! The report for people: the results as wrk prints them (requests, rate, latency
//! percentiles, status codes, errors), then what the cluster did meanwhile (one row per pod:
//! CPU and memory against requests and limits, restarts, throughput), the signatures seen in
//! the logs, and the capacity verdict with the lines for newapi-ops.toml.

use super::Report;
use crate::printer::{Printer, Style, render_table};
use crate::units::{bytes, plural};

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The whole report as text.
pub fn render(r: &Report, style: Style, printer: &Printer) -> String {
    let mut o = String::new();
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate} requests/s"),
        None => "closed loop".into(),
    };
    o.push_str(&format!(
        "{} {} — {mode}, {}{}\n",
        style.bold("bench"),
        r.target,
        plural(r.connections, "connection", "connections"),
        if r.interrupted {
            " (interrupted: partial results)"
        } else {
            ""
        }
    ));
    o.push_str(&format!(
        "  requests   {} in {:.2} s = {:.0}/s\n",
        count(r.requests),
        r.elapsed_s,
        r.requests_per_second
    ));
    let statuses: Vec<String> = r
        .status
        .iter()
        .map(|(k, v)| {
            let t = format!("{k}: {}", count(*v));
            if k.starts_with('2') {
                t
            } else {
                style.yellow(&t)
            }
        })
        .collect();
    o.push_str(&format!(
        "  responses  {}\n",
        if statuses.is_empty() {
            "none".into()
        } else {
            statuses.join(", ")
        }
    ));
    let errors: Vec<String> = r
        .errors
        .iter()
        .map(|(k, v)| format!("{k}: {}", count(*v)))
        .collect();
    o.push_str(&format!(
        "  errors     {}\n",
        if errors.is_empty() {
            "none".into()
        } else {
            style.red(&errors.join(", "))
        }
    ));
    let l = &r.latency;
    o.push_str(&format!(
        "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {} ± {})\n",
        ms(l.p50_ms),
        ms(l.p90_ms),
        ms(l.p99_ms),
        ms(l.p99_9_ms),
        ms(l.max_ms),
        ms(l.mean_ms),
        ms(l.stdev_ms)
    ));
    if let Some(lag) = r.max_send_lag_ms {
        o.push_str(&format!(
            "  schedule   latency measured from each request's intended send time; the generator lagged its schedule by at most {}\n",
            ms(lag)
        ));
    }
    o.push_str(&format!(
        "  connections opened: {}\n",
        count(r.connections_opened)
    ));
    if r.endpoints.len() > 1 {
        let mut t = printer.table(&["ENDPOINT", "RESPONSES", "PER SECOND"]);
        for e in &r.endpoints {
            t.add_row(vec![
                e.endpoint.clone(),
                count(e.responses),
                format!("{:.0}", e.responses_per_second),
            ]);
        }
        o.push('\n');
        o.push_str(&render_table(&t));
    }
    if let Some(ic) = &r.in_cluster {
        o.push_str(&format!(
            "\n{} {} ({}) → {}\n",
            style.bold("Workers"),
            ic.jobs.join(", "),
            match ic.job_mode {
                super::cluster::JobMode::Indexed => "Indexed Job",
                super::cluster::JobMode::JobPerWorker => "one Job per worker",
            },
            ic.service_url
        ));
        let mut t = printer.table(&["WORKER", "POD", "PHASE", "RESPONSES", "PROBLEM"]);
        for w in &ic.workers {
            t.add_row(vec![
                w.index.to_string(),
                w.pod.clone().unwrap_or_else(|| "-".into()),
                w.phase.clone(),
                count(w.responses),
                w.problem.clone().unwrap_or_default(),
            ]);
        }
        o.push_str(&render_table(&t));
    }
    if let Some(c) = &r.cluster {
        o.push_str(&format!(
            "\n{} (namespace {})\n",
            style.bold("Cluster during the run"),
            c.namespace
        ));
        let mut t = printer.table(&[
            "POD",
            "ROLE",
            "CPU MEAN/MAX",
            "CPU REQ/LIM",
            "MEM MAX",
            "MEM REQ/LIM",
            "RESTARTS",
            "SERVED/S",
        ]);
        for p in &c.pods {
            let milli = |v: i64| if v > 0 { format!("{v}m") } else { "-".into() };
            let mem = |v: i64| {
                if v > 0 {
                    bytes(u64::try_from(v).unwrap_or(0))
                } else {
                    "-".into()
                }
            };
            let restarts = match (&p.terminated, p.restarts_during) {
                (_, 0) => "0".to_string(),
                (Some(why), n) => style.red(&format!("{n} ({why})")),
                (None, n) => style.red(&n.to_string()),
            };
            t.add_row(vec![
                p.pod.clone(),
                p.role.as_str().to_string(),
                match (p.cpu_mean_millis, p.cpu_max_millis) {
                    (Some(a), Some(b)) => format!("{a}m/{b}m{}", of_limit(b, p.cpu_limit_millis)),
                    _ => "-".into(),
                },
                format!(
                    "{}/{}",
                    milli(p.cpu_request_millis),
                    milli(p.cpu_limit_millis)
                ),
                p.memory_max_bytes.map_or("-".into(), |m| {
                    format!("{}{}", mem(m), of_limit(m, p.memory_limit_bytes))
                }),
                format!(
                    "{}/{}",
                    mem(p.memory_request_bytes),
                    mem(p.memory_limit_bytes)
                ),
                restarts,
                p.served_per_second
                    .map_or("-".into(), |v| format!("{v:.0}")),
            ]);
        }
        o.push_str(&render_table(&t));
        for p in &c.pods {
            let logged: u64 = p.served.values().sum();
            let bad: Vec<String> = p
                .served
                .iter()
                .filter(|(s, _)| !(200..300).contains(*s))
                .map(|(s, n)| format!("{s}: {}", count(*n)))
                .collect();
            if !bad.is_empty() {
                o.push_str(&format!(
                    "  {} pod/{} answered {} of the {} requests it logged\n",
                    style.yellow("log:"),
                    p.pod,
                    bad.join(", "),
                    count(logged)
                ));
            }
            if let Some(note) = &p.note {
                o.push_str(&format!("  pod/{}: {note}\n", p.pod));
            }
        }
        if let Some(why) = &c.metrics_unavailable {
            o.push_str(&format!("  usage not sampled: {why}\n"));
        }
        for s in &c.signatures {
            o.push_str(&format!(
                "  {} {} in pod/{} ({}×): {} — `newapi-ops runbook run {}`\n    {}\n",
                style.yellow("log:"),
                s.id,
                s.pod,
                s.count,
                s.cause,
                s.runbook,
                style.dim(&s.line)
            ));
        }
        for u in &c.logs_unreadable {
            o.push_str(&format!("  log not read: {u}\n"));
        }
    } else if let Some(why) = r
        .cluster_not_watched
        .as_ref()
        .filter(|w| *w != "--no-watch")
    {
        o.push_str(&format!("\ncluster not watched: {why}\n"));
    }
    if let Some(cap) = &r.capacity {
        o.push_str(&format!("\n{} {}\n", style.bold("Capacity:"), cap.verdict));
        if let Some(lines) = &cap.config {
            o.push_str("  put in newapi-ops.toml:\n");
            for l in lines.lines() {
                o.push_str(&format!("    {l}\n"));
            }
        }
    }
    o
}

/// ` (N% of limit)` for a usage against its limit, nothing without a limit.
fn of_limit(used: i64, limit: i64) -> String {
    if limit > 0 {
        #[allow(clippy::cast_precision_loss)]
        let pct = used as f64 * 100.0 / limit as f64;
        format!(" ({pct:.0}% of limit)")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_is_shown_against_the_limit() {
        assert_eq!(super::of_limit(2400, 3000), " (80% of limit)");
        assert_eq!(super::of_limit(5, 0), "");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(super::count(0), "0");
        assert_eq!(super::count(999), "999");
        assert_eq!(super::count(1000), "1,000");
        assert_eq!(super::count(1_234_567), "1,234,567");
    }
}
