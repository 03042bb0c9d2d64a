//! The HTML report of a run (`crasher report`): one self-contained file,
//! inline CSS and SVG, no script, no network, no external asset, so it can
//! be mailed, attached to an issue, or opened years later.
//!
//! Sections, each with a stable `id` (tests and links rely on them):
//! `verdict`, `facts`, `violation` (only when there is one), `checks`,
//! `timeline` (faults per process over the run), `progress` (committed
//! bytes per key), `throughput` (committed bytes per second, all keys),
//! `resources` (CPU and memory per process), `signatures` (the triage).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::analysis::Triage;
use crate::record::{KeyPoint, RunRecord};
use crate::text::{bytes, describe_nearest, relative, when};
use crate::time::format_utc;
use crate::timeline::{subject, FAULT_KINDS};

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const W: f64 = 960.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 44.0;

const CSS: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1000px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:20px;margin:8px 0 12px}h2{font-size:16px;margin:0 0 8px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px;margin:14px 0}
#verdict{border-radius:6px;padding:14px 18px;color:#fff;font-size:18px;font-weight:600}
#verdict small{display:block;font-weight:400;font-size:14px;opacity:.95;margin-top:4px;white-space:pre-wrap}
.v-holds{background:#2e7d32}.v-violation{background:#c62828}.v-unknown,.v-interrupted{background:#6d6f73}
.v-running{background:#1565c0}.v-environment{background:#ef6c00}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{font-weight:600;color:#4a5160}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fbf3f3;border:1px solid #f0d0d0;padding:8px;white-space:pre-wrap;word-break:break-word;margin:6px 0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.muted{color:#6b7280}.failed{color:#c62828;font-weight:600}.passed{color:#2e7d32}
svg text{font:11px system-ui,sans-serif;fill:#4a5160}svg .grid{stroke:#eceff3}svg .axis{stroke:#9aa1ad}
";

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Round tick values covering `0..=max`, about `n` of them.
fn ticks(max: f64, n: usize) -> Vec<f64> {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return vec![0.0];
    }
    let raw = max / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Up to the first tick at or above `max`, so the data stays inside.
    let n = (max / step - 1e-9).ceil().max(1.0) as u32;
    (0..=n).map(|i| f64::from(i) * step).collect()
}

/// Round time ticks (seconds) for a run of `span` seconds.
fn time_ticks(span: f64) -> Vec<f64> {
    let steps = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        14_400.0, 21_600.0, 43_200.0, 86_400.0,
    ];
    let step = steps
        .iter()
        .copied()
        .find(|s| span / s <= 10.0)
        .unwrap_or(span / 10.0);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= span + 1e-9)
        .collect()
}

struct Frame {
    span: f64,
    top: f64,
    height: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.span).clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    fn time_axis(&self, o: &mut String) {
        for t in time_ticks(self.span) {
            let x = self.x(t);
            let _ = write!(
                o,
                r#"<line class="grid" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                self.top,
                self.bottom(),
                self.bottom() + 14.0,
                esc(&relative(t))
            );
        }
        let _ = write!(
            o,
            r#"<line class="axis" x1="{LEFT}" y1="{b:.1}" x2="{:.1}" y2="{b:.1}"/>"#,
            W - RIGHT,
            b = self.bottom()
        );
    }
}

/// A line chart of `series` (name, points of (seconds, value)) over the
/// run, with `fmt` for the y axis and faint vertical `marks` (crashes).
fn line_chart(
    id: &str,
    series: &[(String, Vec<(f64, f64)>)],
    span: f64,
    fmt: &dyn Fn(f64) -> String,
    marks: &[(f64, String)],
) -> String {
    let f = Frame {
        span,
        top: 10.0,
        height: 200.0,
    };
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max);
    let yt = ticks(ymax, 5);
    let ytop = yt
        .last()
        .copied()
        .filter(|v| *v > 0.0)
        .unwrap_or(1.0)
        .max(ymax);
    let y = |v: f64| f.bottom() - (v / ytop) * f.height;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg id="{id}-chart" viewBox="0 0 {W} {h}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">"#,
        h = f.bottom() + 24.0
    );
    for v in &yt {
        let yy = y(*v);
        let _ = write!(
            o,
            r#"<line class="grid" x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            esc(&fmt(*v))
        );
    }
    f.time_axis(&mut o);
    for (t, title) in marks {
        let x = f.x(*t);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#d62728" stroke-opacity=".25"><title>{}</title></line>"##,
            f.top,
            f.bottom(),
            esc(title)
        );
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", f.x(*t), y(*v)))
            .collect();
        let _ = write!(
            o,
            r#"<polyline class="series" fill="none" stroke="{color}" stroke-width="1.6" points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            esc(name)
        );
    }
    o.push_str("</svg>");
    o.push_str(r#"<div class="legend">"#);
    for (i, (name, _)) in series.iter().enumerate() {
        let _ = write!(
            o,
            r#"<span><i style="background:{}"></i>{}</span>"#,
            PALETTE[i % PALETTE.len()],
            esc(name)
        );
    }
    o.push_str("</div>");
    o
}

fn marker(kind: &str, x: f64, y: f64) -> String {
    match kind {
        "crash" => format!(
            r##"<path d="M{a:.1},{b:.1}L{c:.1},{d:.1}M{a:.1},{d:.1}L{c:.1},{b:.1}" stroke="#d62728" stroke-width="2"/>"##,
            a = x - 4.0,
            b = y - 4.0,
            c = x + 4.0,
            d = y + 4.0
        ),
        "restart" => format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#2ca02c"/>"##),
        "join" => format!(
            r##"<path d="M{x:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z" fill="#1f77b4"/>"##,
            y - 5.0,
            x + 5.0,
            y + 4.0,
            x - 5.0,
            y + 4.0
        ),
        "shrink" => format!(
            r##"<path d="M{x:.1},{:.1}L{:.1},{:.1}L{:.1},{:.1}Z" fill="#ff7f0e"/>"##,
            y + 5.0,
            x + 5.0,
            y - 4.0,
            x - 5.0,
            y - 4.0
        ),
        _ => format!(
            r##"<rect x="{:.1}" y="{:.1}" width="3" height="10" fill="#7f7f7f"/>"##,
            x - 1.5,
            y - 5.0
        ),
    }
}

fn lane_order(name: &str) -> (u8, u32, String) {
    if name == "sink" {
        (0, 0, String::new())
    } else if name == "initializer" {
        (1, 0, String::new())
    } else if let Some(n) = name.strip_prefix("worker").and_then(|n| n.parse().ok()) {
        (2, n, String::new())
    } else if name == "run" {
        (9, 0, String::new())
    } else {
        (3, 0, name.to_owned())
    }
}

/// The fault timeline: one lane per process, a mark per fault.
fn timeline_svg(rec: &RunRecord, span: f64) -> String {
    let mut lanes: BTreeMap<(u8, u32, String), String> = BTreeMap::new();
    let mut faults = Vec::new();
    for e in &rec.events {
        let who = if FAULT_KINDS.contains(&e.kind.as_str()) {
            subject(&e.kind, &e.text).unwrap_or_else(|| "run".into())
        } else if e.kind == "violation" {
            "run".into()
        } else {
            continue;
        };
        lanes.insert(lane_order(&who), who.clone());
        faults.push((who, e));
    }
    for name in rec.processes.keys() {
        if name != "supervisor" {
            lanes.insert(lane_order(name), name.clone());
        }
    }
    let names: Vec<String> = lanes.into_values().collect();
    let row = 22.0;
    let f = Frame {
        span,
        top: 6.0,
        height: row * names.len().max(1) as f64,
    };
    let lane_y = |who: &str| {
        let i = names.iter().position(|n| n == who).unwrap_or(0);
        f.top + row * (i as f64 + 0.5)
    };
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg id="timeline-chart" viewBox="0 0 {W} {h:.0}" width="100%" role="img" xmlns="http://www.w3.org/2000/svg">"#,
        h = f.bottom() + 24.0
    );
    for n in &names {
        let y = lane_y(n);
        let _ = write!(
            o,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(n)
        );
    }
    f.time_axis(&mut o);
    // Pauses: a band from pN to uN.
    let mut paused: BTreeMap<String, f64> = BTreeMap::new();
    for (who, e) in &faults {
        match e.kind.as_str() {
            "pause" if who != "run" => {
                paused.insert(who.clone(), e.t);
            }
            "resume" => {
                if let Some(t0) = paused.remove(who) {
                    let (x0, x1) = (f.x(t0), f.x(e.t));
                    let _ = write!(
                        o,
                        r##"<rect class="pause" x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" fill="#9e9e9e" fill-opacity=".45"><title>{} paused {} to {}</title></rect>"##,
                        lane_y(who) - 6.0,
                        (x1 - x0).max(2.0),
                        esc(who),
                        relative(t0),
                        relative(e.t)
                    );
                }
            }
            _ => {}
        }
    }
    for (who, e) in &faults {
        let x = f.x(e.t);
        if e.kind == "violation" || (e.kind == "pause" && who == "run") {
            let _ = write!(
                o,
                r##"<line class="violation" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#c62828" stroke-width="2"><title>{} {}</title></line>"##,
                f.top,
                f.bottom(),
                esc(&relative(e.t)),
                esc(e.text.lines().next().unwrap_or(""))
            );
            continue;
        }
        if e.kind == "pause" || e.kind == "resume" {
            continue;
        }
        let _ = write!(
            o,
            r#"<g class="fault {}"><title>{} {} {}</title>{}</g>"#,
            esc(&e.kind),
            esc(&relative(e.t)),
            esc(&e.kind),
            esc(&e.text),
            marker(&e.kind, x, lane_y(who))
        );
    }
    o.push_str("</svg>");
    o.push_str(concat!(
        r#"<div class="legend"><span><i style="background:#d62728"></i>crash</span>"#,
        r#"<span><i style="background:#2ca02c"></i>restart</span><span><i style="background:#1f77b4"></i>join</span>"#,
        r#"<span><i style="background:#ff7f0e"></i>shrink</span><span><i style="background:#9e9e9e"></i>paused</span>"#,
        r#"<span><i style="background:#c62828"></i>violation</span></div>"#
    ));
    o
}

/// Committed bytes per second, all keys together, in about 120 buckets.
/// Bytes per second over the run, all keys of `series` together (the
/// committed `rec.keys` or the offered `rec.offered`).
fn throughput(series: &BTreeMap<String, Vec<KeyPoint>>, span: f64) -> Vec<(f64, f64)> {
    let n = 120usize;
    let width = (span / n as f64).max(1e-3);
    let mut buckets = vec![0.0f64; n];
    for pts in series.values() {
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let gained = b.bytes.saturating_sub(a.bytes) as f64;
            if gained == 0.0 {
                continue;
            }
            // Spread the gain evenly over the interval it was made in.
            let dt = (b.t - a.t).max(1e-6);
            let (mut t, end) = (a.t, b.t);
            while t < end {
                let i = ((t / width) as usize).min(n - 1);
                let edge = ((i + 1) as f64 * width).min(end).max(t + 1e-9);
                buckets[i] += gained * (edge - t) / dt;
                t = edge;
            }
        }
    }
    buckets
        .iter()
        .enumerate()
        .map(|(i, b)| ((i as f64 + 0.5) * width, b / width))
        .collect()
}

/// The report for a run record and (optionally) its triage.
pub fn render(rec: &RunRecord, triage: Option<&Triage>) -> String {
    let span = rec
        .duration()
        .unwrap_or(0.0)
        .max(rec.events.last().map_or(0.0, |e| e.t))
        .max(
            rec.keys
                .values()
                .flat_map(|v| v.last().map(|p| p.t))
                .fold(0.0, f64::max),
        )
        .max(1.0);
    let verdict_class = rec.verdict.split_whitespace().next().unwrap_or("unknown");
    let title = if rec.run_id.is_empty() {
        "crasher run".to_owned()
    } else {
        format!("crasher run {}", rec.run_id)
    };
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&title)
    );
    let _ = write!(o, "<h1>{}</h1>", esc(&title));
    let exit = rec
        .exit_code
        .map_or(String::new(), |c| format!(" (exit {c})"));
    let _ = write!(
        o,
        r#"<div id="verdict" class="v-{}">Verdict: {}{}{}"#,
        esc(verdict_class),
        esc(&rec.verdict),
        exit,
        if rec.paused { ", world paused" } else { "" }
    );
    if let Some(r) = &rec.reason {
        let _ = write!(o, "<small>{}</small>", esc(r.lines().next().unwrap_or("")));
    }
    o.push_str("</div>");

    // Facts.
    o.push_str(r#"<section id="facts"><h2>Run</h2><table>"#);
    let mut fact = |k: &str, v: String| {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
    };
    fact("profile", esc(&rec.profile));
    fact("seed", format!("<code>{}</code>", rec.seed));
    fact(
        "arguments",
        format!("<code>{}</code>", esc(&rec.args.join(" "))),
    );
    fact("start", format!("{} UTC", format_utc(rec.start)));
    fact(
        "end",
        rec.end
            .map_or("—".to_owned(), |e| format!("{} UTC", format_utc(e))),
    );
    fact("duration", esc(relative(span).trim_start_matches('+')));
    if !rec.faults.is_empty() {
        let f: Vec<String> = rec
            .faults
            .iter()
            .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
            .collect();
        fact("faults injected", esc(&f.join(", ")));
    }
    if !rec.coverage.is_empty() {
        let rows: Vec<String> = rec
            .coverage
            .iter()
            .map(|(k, c)| format!("<b>{}</b>: {}", esc(k), esc(&c.describe())))
            .collect();
        fact(
            &format!(
                "fault coverage ({} schedule)",
                rec.schedule.as_deref().unwrap_or("?")
            ),
            rows.join("<br>"),
        );
    }
    let committed: u64 = rec
        .keys
        .values()
        .filter_map(|v| v.last())
        .map(|p| p.bytes)
        .sum();
    fact(
        "committed",
        esc(&format!(
            "{} over {} key(s)",
            bytes(committed),
            rec.keys.len()
        )),
    );
    o.push_str("</table></section>");

    // Violation.
    let failed: Vec<_> = rec.checks.iter().filter(|c| c.status == "failed").collect();
    if rec.verdict == "violation" || !failed.is_empty() {
        o.push_str(r#"<section id="violation"><h2>Violation</h2>"#);
        for c in &failed {
            let _ = write!(
                o,
                "<p>Check <b>{}</b> failed:</p><pre>{}</pre>",
                esc(&c.name),
                esc(&c.detail)
            );
        }
        if failed.is_empty() {
            let _ = write!(
                o,
                "<pre>{}</pre>",
                esc(rec.reason.as_deref().unwrap_or("(no diagnosis recorded)"))
            );
        }
        let logs_say = triage.and_then(|t| {
            t.signatures
                .iter()
                .find(|s| s.kind != crate::scan::Kind::Violation && !s.expected)
        });
        if let Some(t) = logs_say {
            let _ = write!(
                o,
                "<p>Most severe evidence in the logs: <code>{}</code> ({} × in {})",
                esc(&t.signature),
                t.count,
                esc(&t.processes.join(", "))
            );
            if let Some(n) = &t.after {
                let _ = write!(o, ", after {}", esc(&describe_nearest(n, Some(rec.start))));
            }
            o.push_str(".</p>");
        }
        o.push_str("</section>");
    }

    // Checks.
    o.push_str(r#"<section id="checks"><h2>Checks</h2>"#);
    if rec.checks.is_empty() {
        o.push_str(r#"<p class="muted">No check results recorded.</p>"#);
    } else {
        o.push_str("<table><tr><th>check</th><th>result</th><th>detail</th></tr>");
        for c in &rec.checks {
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td class="{}">{}</td><td>{}</td></tr>"#,
                esc(&c.name),
                esc(&c.status),
                esc(&c.status),
                esc(c.detail.lines().next().unwrap_or(""))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    // Timeline.
    o.push_str(r#"<section id="timeline"><h2>Fault timeline</h2>"#);
    o.push_str(&timeline_svg(rec, span));
    o.push_str("</section>");

    let crash_marks: Vec<(f64, String)> = rec
        .events
        .iter()
        .filter(|e| e.kind == "crash")
        .map(|e| (e.t, format!("{} {}", relative(e.t), e.text)))
        .collect();

    // Progress.
    o.push_str(r#"<section id="progress"><h2>Committed bytes per key</h2>"#);
    if rec.keys.is_empty() {
        o.push_str(r#"<p class="muted">No progress recorded (sanity off, or the run ended before its first round).</p>"#);
    } else {
        let series: Vec<(String, Vec<(f64, f64)>)> = rec
            .keys
            .iter()
            .map(|(k, v)| {
                (
                    format!("key {k}"),
                    v.iter().map(|p| (p.t, p.bytes as f64)).collect(),
                )
            })
            .collect();
        o.push_str(&line_chart(
            "progress",
            &series,
            span,
            &|v| bytes(v as u64),
            &crash_marks,
        ));
    }
    o.push_str("</section>");

    // Throughput.
    o.push_str(r#"<section id="throughput"><h2>Throughput (offered and committed, all keys)</h2>"#);
    if rec.keys.is_empty() && rec.offered.is_empty() {
        o.push_str(r#"<p class="muted">No progress recorded.</p>"#);
    } else {
        let mut series = Vec::new();
        if !rec.offered.is_empty() {
            series.push(("offered bytes/s".to_owned(), throughput(&rec.offered, span)));
        }
        series.push(("committed bytes/s".to_owned(), throughput(&rec.keys, span)));
        o.push_str(&line_chart(
            "throughput",
            &series,
            span,
            &|v| format!("{}/s", bytes(v as u64)),
            &crash_marks,
        ));
    }
    o.push_str("</section>");

    // Resources.
    o.push_str(r#"<section id="resources"><h2>CPU and memory per process</h2>"#);
    if rec.processes.is_empty() {
        o.push_str(r#"<p class="muted">No samples recorded.</p>"#);
    } else {
        let mut names: Vec<&String> = rec.processes.keys().collect();
        names.sort_by_key(|n| lane_order(n));
        let cpu: Vec<(String, Vec<(f64, f64)>)> = names
            .iter()
            .map(|n| {
                (
                    (*n).clone(),
                    rec.processes[*n]
                        .points
                        .iter()
                        .map(|p| (p.t, f64::from(p.cpu)))
                        .collect(),
                )
            })
            .collect();
        let rss: Vec<(String, Vec<(f64, f64)>)> = names
            .iter()
            .map(|n| {
                (
                    (*n).clone(),
                    rec.processes[*n]
                        .points
                        .iter()
                        .map(|p| (p.t, p.rss as f64))
                        .collect(),
                )
            })
            .collect();
        o.push_str("<h2 class=\"muted\">CPU, % of one core</h2>");
        o.push_str(&line_chart("cpu", &cpu, span, &|v| format!("{v:.0}%"), &[]));
        o.push_str("<h2 class=\"muted\">Resident memory</h2>");
        o.push_str(&line_chart("rss", &rss, span, &|v| bytes(v as u64), &[]));
    }
    o.push_str("</section>");

    // Signatures.
    if let Some(t) = triage {
        o.push_str(r#"<section id="signatures"><h2>Failure evidence in the logs</h2>"#);
        let _ = write!(o, "<p>{} (exit {}).</p>", esc(&t.summary), t.exit_code);
        if !t.signatures.is_empty() {
            o.push_str("<table><tr><th>#</th><th>kind</th><th>count</th><th>first</th><th>processes</th><th>signature and example</th></tr>");
            for s in t.signatures.iter().take(30) {
                let _ = write!(
                    o,
                    r#"<tr><td class="n">{}</td><td>{}</td><td class="n">{}</td><td>{}</td><td>{}</td><td><code>{}</code><br><span class="muted">{}:{}: {}</span>{}</td></tr>"#,
                    s.rank,
                    s.kind.label(),
                    s.count,
                    esc(&when(s.first, Some(rec.start))),
                    esc(&s.processes.join(", ")),
                    esc(&s.signature),
                    esc(&s.example.file),
                    s.example.line,
                    esc(&s.example.text),
                    s.after.as_ref().map_or(String::new(), |n| format!(
                        "<br><span class=\"muted\">after {}</span>",
                        esc(&describe_nearest(n, Some(rec.start)))
                    ))
                );
            }
            o.push_str("</table>");
        }
        for f in t.files.iter().filter(|f| f.damaged.is_some()) {
            let _ = write!(
                o,
                r#"<p class="failed">Damaged: {}: {}</p>"#,
                esc(&f.file),
                esc(f.damaged.as_deref().unwrap_or(""))
            );
        }
        o.push_str("</section>");
    }
    let _ = write!(
        o,
        r#"<p class="muted">Written by crasher report at {} UTC.</p></main></body></html>"#,
        format_utc(crate::time::now())
    );
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(100.0, 5), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(190.0, 5), vec![0.0, 50.0, 100.0, 150.0, 200.0]);
        assert_eq!(ticks(0.0, 5), vec![0.0]);
        assert_eq!(time_ticks(95.0).len(), 10);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn fault_coverage_is_shown_per_kind() {
        let mut rec = RunRecord {
            schedule: Some("isolated".into()),
            ..RunRecord::default()
        };
        rec.coverage.insert(
            "crash1".into(),
            crate::record::FaultCoverage {
                fired: 3,
                observed: 2,
                overlapped: 1,
                recovery_s: vec![2.0, 0.5, 1.0],
            },
        );
        let html = render(&rec, None);
        assert!(
            html.contains("fault coverage (isolated schedule)")
                && html.contains(
                    "<b>crash1</b>: 3 fired, 2 observed, 1 overlapped, recovery 0.5/1.0/2.0 s"
                ),
            "{html}"
        );
    }
}
