//! The live status line's text: what a person watching a soak in a
//! terminal wants to know at a glance, refreshed every second (the glyph
//! stream keeps scrolling above it; `glyphs.rs` draws it, and only on a
//! terminal).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::harness::Harness;
use super::sanity::SanityState;

/// How far back the committed rate looks.
const RATE_WINDOW_S: f64 = 5.0;

/// Everything the line shows, gathered at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Seconds since the run started.
    pub elapsed: f64,
    /// The run's `--duration`, in seconds.
    pub duration: Option<f64>,
    /// Per key: verified bytes and input size.
    pub keys: Vec<(u64, u64)>,
    /// Verified bytes per second over the last few seconds.
    pub rate: Option<f64>,
    /// Faults fired so far, per kind.
    pub faults: Vec<(String, u64)>,
    /// Members running, and members expected.
    pub members: (usize, usize),
    /// The stabilize gate (`Schedule::gate_state`).
    pub gate: String,
    /// The last event: how long ago, and its text.
    pub last: Option<(f64, String)>,
}

/// `12m03s`, `1h02m03s`, `42s`.
fn clock(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// `1.2 MB`, `340 kB`, `12 B` (powers of ten, as the benchmarks).
fn bytes(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n:.0} B")
    }
}

/// The status line for `s`.
pub fn render(s: &Snapshot) -> String {
    let mut parts = Vec::new();
    parts.push(match s.duration {
        Some(d) => format!(
            "{} of {} ({} left)",
            clock(s.elapsed),
            clock(d),
            clock(d - s.elapsed)
        ),
        None => clock(s.elapsed),
    });
    if s.keys.is_empty() {
        parts.push("verified: no check yet".to_owned());
    } else {
        let pct = |(v, n): &(u64, u64)| {
            if *n == 0 {
                100.0
            } else {
                100.0 * *v as f64 / *n as f64
            }
        };
        let min = s.keys.iter().map(pct).fold(f64::INFINITY, f64::min);
        let total: u64 = s.keys.iter().map(|k| k.0).sum();
        let input: u64 = s.keys.iter().map(|k| k.1).sum();
        let all = if input == 0 {
            100.0
        } else {
            100.0 * total as f64 / input as f64
        };
        let mut v = format!(
            "verified {all:.1}% (min key {min:.1}%) {}",
            bytes(total as f64)
        );
        if let Some(r) = s.rate {
            v.push_str(&format!(", {}/s", bytes(r)));
        }
        parts.push(v);
    }
    let fired: u64 = s.faults.iter().map(|f| f.1).sum();
    if fired == 0 {
        parts.push("faults 0".to_owned());
    } else {
        let mut kinds = s.faults.clone();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        parts.push(format!("faults {fired}: {}", list.join(" ")));
    }
    parts.push(format!("members {}/{}", s.members.0, s.members.1));
    parts.push(format!("gate {}", s.gate));
    if let Some((ago, text)) = &s.last {
        parts.push(format!("last {} {} ago", text.trim(), clock(*ago)));
    }
    parts.join(" | ")
}

/// Verified bytes over time, for the rate.
#[derive(Debug, Default)]
struct RateWindow(VecDeque<(f64, u64)>);

impl RateWindow {
    fn push(&mut self, t: f64, total: u64) -> Option<f64> {
        self.0.push_back((t, total));
        while self.0.len() > 2 && t - self.0[1].0 >= RATE_WINDOW_S {
            self.0.pop_front();
        }
        let (t0, v0) = *self.0.front()?;
        (t > t0).then(|| total.saturating_sub(v0) as f64 / (t - t0))
    }
}

/// Refreshes the status line every second until the run has an outcome.
pub async fn run(h: Arc<Harness>, progress: Option<SanityState>, duration: Option<Duration>) {
    let mut window = RateWindow::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if h.finished() {
            return;
        }
        let elapsed = h.out.elapsed();
        let keys: Vec<(u64, u64)> = progress
            .as_ref()
            .map(|p| {
                p.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .map(|k| (k.verified, k.input_len))
                    .collect()
            })
            .unwrap_or_default();
        let rate = if keys.is_empty() {
            None
        } else {
            window.push(elapsed, keys.iter().map(|k| k.0).sum())
        };
        let members = h
            .cluster(|c| {
                let expected: Vec<usize> = c.members().iter().copied().collect();
                let up = expected.iter().filter(|&&i| c.worker_running(i)).count();
                (up, expected.len())
            })
            .await;
        let snap = Snapshot {
            elapsed,
            duration: duration.map(|d| d.as_secs_f64()),
            keys,
            rate,
            faults: h
                .schedule
                .coverage()
                .into_iter()
                .map(|(k, c)| (k, c.fired))
                .collect(),
            members,
            gate: h.schedule.gate_state(),
            last: h.out.last_event().map(|(t, text)| (elapsed - t, text)),
        };
        h.out.set_status(&render(&snap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_time_progress_faults_members_gate_and_last_event() {
        let s = Snapshot {
            elapsed: 723.4,
            duration: Some(3300.0),
            keys: vec![(1_000_000, 4_000_000), (3_000_000, 4_000_000)],
            rate: Some(250_000.0),
            faults: vec![
                ("crash1".into(), 12),
                ("crash-sink".into(), 3),
                ("join".into(), 3),
            ],
            members: (3, 4),
            gate: "observing: crash1".into(),
            last: Some((2.2, "c1".into())),
        };
        assert_eq!(
            render(&s),
            "12m03s of 55m00s (42m56s left) | verified 50.0% (min key 25.0%) 4.0 MB, 250 kB/s \
             | faults 18: crash1 12 crash-sink 3 join 3 | members 3/4 | gate observing: crash1 \
             | last c1 2s ago"
        );
        let quiet = Snapshot {
            elapsed: 5.0,
            gate: "open".into(),
            ..Snapshot::default()
        };
        assert_eq!(
            render(&quiet),
            "5s | verified: no check yet | faults 0 | members 0/0 | gate open"
        );
    }

    #[test]
    fn the_rate_covers_the_last_few_seconds() {
        let mut w = RateWindow::default();
        assert_eq!(w.push(0.0, 0), None);
        assert_eq!(w.push(1.0, 100), Some(100.0));
        for t in 2..=10 {
            w.push(t as f64, 100 * t);
        }
        // Only the last ~5 s count: a burst long ago does not.
        assert_eq!(w.push(11.0, 1700), Some((1700.0 - 600.0) / 5.0));
    }
}
