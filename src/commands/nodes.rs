//! `newapi-ops nodes`: per node, CPU and memory requests and limits against allocatable (as
//! `kubectl describe node` shows under "Allocated resources"), cluster totals as the seed's
//! 资源总计 section shows them, the New-API roles' share, and how many more slaves fit.

use clap::Args;

use crate::capacity::NodesReport;
use crate::commands::GlobalArgs;
use crate::error::Result;
use crate::exit;
use crate::k8s;
use crate::printer::{Printer, Style, render_table};
use crate::quantity::{format_bytes, format_cpu, percent};

#[derive(Debug, Args)]
pub struct NodesArgs {}

pub async fn run(global: &GlobalArgs, _args: NodesArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let (report, note) = NodesReport::load(&kube, &settings).await?;
    if let Some(note) = note {
        printer.warn(&note);
    }
    printer.data(&report, |style| render(&report, style, printer))?;
    Ok(exit::OK)
}

fn pct(p: Option<i64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p}%"))
}

fn paint_pct(style: Style, p: Option<i64>, warn_at: i64) -> String {
    let s = pct(p);
    match p {
        Some(p) if p > 100 => style.red(&s),
        Some(p) if p > warn_at => style.yellow(&s),
        _ => s,
    }
}

fn render(r: &NodesReport, style: Style, printer: &Printer) -> String {
    let mut t = printer.table(&[
        "NODE", "STATUS", "PODS", "CPU REQ", "", "CPU LIM", "", "MEM REQ", "", "MEM LIM", "",
        "CPU", "MEMORY", "+SLAVES",
    ]);
    for row in &r.nodes {
        let c = &row.capacity;
        let mut status = vec![if c.ready {
            "Ready".to_string()
        } else {
            style.red("NotReady")
        }];
        if c.unschedulable {
            status.push(style.yellow("SchedulingDisabled"));
        }
        status.extend(c.pressure.iter().map(|p| style.red(p)));
        let fit = match &row.slaves_fit {
            None => "-".to_string(),
            Some(f) => match (&f.excluded, &f.limited_by) {
                (Some(why), _) => format!("0 ({why})"),
                (None, Some(limit)) => format!("{} ({limit})", f.count),
                (None, None) => f.count.to_string(),
            },
        };
        t.add_row(vec![
            c.name.clone(),
            status.join(","),
            format!("{}/{}", c.pods, c.allocatable_pods),
            format_cpu(c.requested.cpu_millis),
            paint_pct(style, row.cpu_requests_percent, 80),
            format_cpu(c.limits.cpu_millis),
            pct(row.cpu_limits_percent),
            format_bytes(c.requested.memory_bytes),
            paint_pct(style, row.memory_requests_percent, 85),
            format_bytes(c.limits.memory_bytes),
            pct(row.memory_limits_percent),
            format_cpu(c.allocatable.cpu_millis),
            format_bytes(c.allocatable.memory_bytes),
            fit,
        ]);
    }
    let mut out = render_table(&t);
    let tot = &r.totals;
    out.push_str(&format!(
        "\n{}\n  CPU requests:    {} / {} = {}\n  Memory requests: {} / {} = {}\n  CPU limits:      {} ({} of allocatable)\n  Memory limits:   {} ({} of allocatable)\n",
        style.bold(&format!("Cluster totals ({} nodes)", tot.nodes)),
        format_cpu(tot.requested.cpu_millis),
        format_cpu(tot.allocatable.cpu_millis),
        paint_pct(style, tot.cpu_requests_percent, 80),
        format_bytes(tot.requested.memory_bytes),
        format_bytes(tot.allocatable.memory_bytes),
        paint_pct(style, tot.memory_requests_percent, 85),
        format_cpu(tot.limits.cpu_millis),
        pct(percent(tot.limits.cpu_millis, tot.allocatable.cpu_millis)),
        format_bytes(tot.limits.memory_bytes),
        pct(percent(tot.limits.memory_bytes, tot.allocatable.memory_bytes)),
    ));
    out.push_str(&format!(
        "\n{}\n",
        style.bold(&format!("Requests by role (namespace {})", r.namespace))
    ));
    for share in &r.roles {
        out.push_str(&format!(
            "  {:<7} {:>3} pod{}  cpu {:>7}  memory {:>8}   (limits cpu {}, memory {})\n",
            share.role,
            share.pods,
            if share.pods == 1 { " " } else { "s" },
            format_cpu(share.requests.cpu_millis),
            format_bytes(share.requests.memory_bytes),
            format_cpu(share.limits.cpu_millis),
            format_bytes(share.limits.memory_bytes),
        ));
    }
    if let (Some(n), Some(req)) = (r.slaves_fit, r.slave_requests) {
        let per_node: Vec<String> = r
            .nodes
            .iter()
            .filter_map(|row| {
                row.slaves_fit
                    .as_ref()
                    .map(|f| format!("{} {}", row.capacity.name, f.count))
            })
            .collect();
        let line = format!(
            "\n{} more slave{} fit{} (each requests cpu {}, memory {}): {}\n",
            n,
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" },
            format_cpu(req.cpu_millis),
            format_bytes(req.memory_bytes),
            per_node.join(", ")
        );
        out.push_str(&if n == 0 { style.red(&line) } else { line });
    }
    out
}
