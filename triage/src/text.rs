//! The triage as text for a terminal: a header about the run, damaged
//! files, the ranked table of signatures, and the verdict.

use std::fmt::Write;

use crate::analysis::{Nearest, Triage};
use crate::time::format_utc;
use crate::timeline::Source;

/// `+12.3s`, `+4m05s`, `+2h03m04s` for seconds since the start.
pub fn relative(secs: f64) -> String {
    let sign = if secs < 0.0 { "-" } else { "+" };
    let s = secs.abs();
    if s < 60.0 {
        format!("{sign}{s:.1}s")
    } else if s < 3600.0 {
        let s = s.round() as u64;
        format!("{sign}{}m{:02}s", s / 60, s % 60)
    } else {
        let s = s.round() as u64;
        format!("{sign}{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    }
}

/// A time as `+rel` from `start` when known, else as UTC `HH:MM:SS.mmm`.
pub fn when(t: Option<f64>, start: Option<f64>) -> String {
    match (t, start) {
        (None, _) => "-".to_owned(),
        (Some(t), Some(s)) => relative(t - s),
        (Some(t), None) => format_utc(t)[11..].to_owned(),
    }
}

/// Bytes as `12.3 MB`.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} KB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

fn processes(p: &[String]) -> String {
    let mut s = String::new();
    for (i, name) in p.iter().enumerate() {
        let more = format!("+{}", p.len() - i);
        if !s.is_empty() && s.len() + name.len() + 1 > 22 - more.len() {
            s.push(',');
            s.push_str(&more);
            return s;
        }
        if !s.is_empty() {
            s.push(',');
        }
        s.push_str(name);
    }
    s
}

/// How the harness event before a signature is described.
pub fn describe_nearest(n: &Nearest, start: Option<f64>) -> String {
    let what = match &n.subject {
        _ if n.text.to_lowercase().starts_with(&n.kind) => n.text.clone(),
        Some(s) if !n.text.contains(s.as_str()) => format!("{} {} ({s})", n.kind, n.text),
        _ => format!("{} {}", n.kind, n.text),
    };
    let at = match (n.at, n.not_after) {
        (Some(t), _) if n.approx => format!("at ≈{}", when(Some(t), start)),
        (Some(t), _) => format!("at {}", when(Some(t), start)),
        (None, Some(t)) => format!("no later than {}", when(Some(t), start)),
        (None, None) => String::new(),
    };
    let gap = match n.before_by {
        Some(d) if n.at.is_some() => format!(", {} before", relative(d).trim_start_matches('+')),
        Some(d) => format!(", at least {} before", relative(d).trim_start_matches('+')),
        None => String::new(),
    };
    format!("{what} {at}{gap}")
}

/// The triage as text.
pub fn render(t: &Triage) -> String {
    let mut o = String::new();
    let r = &t.run;
    let start = r.start;
    let mut who = Vec::new();
    if let Some(id) = &r.run_id {
        who.push(format!("run {id}"));
    }
    if let Some(p) = &r.profile {
        who.push(format!("profile {p}"));
    }
    if let Some(s) = r.seed {
        who.push(format!("seed {s}"));
    }
    let _ = write!(o, "Triage of {}", t.path.display());
    if !who.is_empty() {
        let _ = write!(o, " ({})", who.join(", "));
    }
    o.push('\n');
    if let Some(s) = start {
        let _ = write!(o, "Started {} UTC", format_utc(s));
        if let Some(e) = r.end {
            let _ = write!(
                o,
                ", ended {} later",
                relative(e - s).trim_start_matches('+')
            );
        }
        if !r.args.is_empty() {
            let _ = write!(o, "; args: {}", r.args.join(" "));
        }
        o.push('\n');
    }
    if let Some(v) = &r.verdict {
        let _ = write!(o, "The run's own verdict: {v}");
        if let Some(c) = r.exit_code {
            let _ = write!(o, " (exit {c})");
        }
        if let Some(why) = &r.reason {
            let _ = write!(o, ": {}", why.lines().next().unwrap_or(""));
        }
        o.push('\n');
    }
    let gz = t.files.iter().filter(|f| f.gzipped).count();
    let rate = if t.elapsed > 0.0 {
        format!(" ({}/s)", bytes((t.bytes as f64 / t.elapsed) as u64))
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "Read {} log file(s) ({gz} gzipped): {} in {:.2}s{rate}; harness timeline: {}",
        t.files.len(),
        bytes(t.bytes),
        t.elapsed,
        match t.timeline_source {
            Source::RunJson => format!("run.json, {} events", t.timeline_events),
            Source::RunLog => format!("run.log glyphs, {} events (few clocks)", t.timeline_events),
            Source::None => "none".to_owned(),
        }
    );
    for f in t.files.iter().filter(|f| f.damaged.is_some()) {
        let _ = writeln!(
            o,
            "DAMAGED {}: {} (read {} lines, {} before it)",
            f.file,
            f.damaged.as_deref().unwrap_or(""),
            f.lines,
            bytes(f.bytes)
        );
    }
    for n in &t.notes {
        let _ = writeln!(o, "Note: {n}");
    }
    if !t.signatures.is_empty() {
        o.push('\n');
        let _ = writeln!(
            o,
            "{:>3}  {:<9} {:>7}  {:<10} {:<10} {:<22} SIGNATURE",
            "#", "KIND", "COUNT", "FIRST", "LAST", "PROCESSES"
        );
        let mut echoes = false;
        for s in &t.signatures {
            if s.expected && !echoes {
                echoes = true;
                let _ = writeln!(
                    o,
                    "     -- seen only within {}s of faults the harness injected (expected, not counted) --",
                    crate::timeline::FAULT_WINDOW
                );
            }
            let _ = writeln!(
                o,
                "{:>3}  {:<9} {:>7}  {:<10} {:<10} {:<22} {}",
                s.rank,
                s.kind.label(),
                s.count,
                when(s.first, start),
                when(s.last, start),
                processes(&s.processes),
                s.signature
            );
            let line = if s.example.line > 0 {
                format!("{}:{}", s.example.file, s.example.line)
            } else {
                s.example.file.clone()
            };
            let _ = writeln!(o, "     e.g. {line}: {}", s.example.text.trim_end());
            match &s.after {
                Some(n) => {
                    let _ = writeln!(o, "     after {}", describe_nearest(n, start));
                }
                None if s.first.is_some() && t.timeline_source != Source::None => {
                    let _ = writeln!(o, "     after no harness fault (before the first one)");
                }
                None => {}
            }
        }
    }
    o.push('\n');
    let _ = writeln!(o, "Verdict: {} (exit {})", t.summary, t.exit_code);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_well() {
        assert_eq!(relative(12.34), "+12.3s");
        assert_eq!(relative(245.0), "+4m05s");
        assert_eq!(relative(7384.0), "+2h03m04s");
        assert_eq!(relative(-2.0), "-2.0s");
    }

    #[test]
    fn long_process_lists_are_cut() {
        let p: Vec<String> = (1..=9).map(|i| format!("worker{i}")).collect();
        let s = processes(&p);
        assert!(s.len() <= 24, "{s}");
        assert!(s.starts_with("worker1,worker2"), "{s}");
        assert!(s.ends_with("+7") || s.ends_with("+6"), "{s}");
    }
}
