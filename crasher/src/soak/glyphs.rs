//! The run's voice: terse progress glyphs on stdout, the same plus full
//! messages in `run.log`, and a timeline of events for the run record.
//!
//! Each event is also appended to `run.events` (one JSON object per line,
//! one `write` each, sanity-round glyphs left out) the moment it happens:
//! `run.json` is rewritten only every few seconds, so after a SIGKILL of
//! the supervisor the event log is what still has every event (a torn last
//! line is skipped by its reader, `triage::record::read_events`).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// How many trailing glyph characters the pause manifest keeps.
const TAIL: usize = 400;

/// One thing that happened, at a time relative to the start of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    /// Seconds since the run started.
    pub t: f64,
    /// What kind: `glyph`, `message`, `crash`, `restart`, `join`, `shrink`, `pause`, `violation`...
    pub kind: String,
    /// The text printed or a short description.
    pub text: String,
}

struct Inner {
    /// The live status line, when stdout is a terminal (see [`Live`]).
    live: Option<Live>,
    /// The last event other than a sanity round: when, and its text.
    last: Option<(f64, String)>,
    log: Option<File>,
    /// The append-only event log (`run.events`).
    events_log: Option<File>,
    tail: String,
    events: Vec<Event>,
    at_line_start: bool,
}

/// The output of a run; shared by every loop.
pub struct Glyphs {
    start: Instant,
    inner: Mutex<Inner>,
    quiet: bool,
}

impl Glyphs {
    /// Output to stdout (unless `quiet`) and to `run_log`.
    pub fn new(run_log: &Path, quiet: bool) -> io::Result<Glyphs> {
        Ok(Glyphs {
            start: Instant::now(),
            inner: Mutex::new(Inner {
                log: Some(File::create(run_log)?),
                events_log: Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .write(true)
                        .open(run_log.with_file_name(triage::record::EVENTS_FILE))?,
                ),
                tail: String::new(),
                events: Vec::new(),
                at_line_start: true,
                live: None,
                last: None,
            }),
            quiet,
        })
    }

    /// Shows a live status line under the glyphs if stdout is a terminal
    /// (and this output is not quiet); piped output stays plain.
    pub fn start_live(&self) {
        if self.quiet || !Live::wanted() {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.live.is_none() {
            g.live = Some(Live::new());
        }
    }

    /// Whether the live status line is shown.
    pub fn is_live(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .is_some()
    }

    /// Replaces the status line's text (no-op without a live line).
    pub fn set_status(&self, text: &str) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = &g.live {
            live.set_status(text);
        }
    }

    /// Removes the status line, leaving the glyphs as plain output would.
    pub fn end_live(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = g.live.take() {
            live.end();
        }
    }

    /// The last event other than a sanity round: seconds since the start
    /// of the run, and what was printed.
    pub fn last_event(&self) -> Option<(f64, String)> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
            .clone()
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn emit(&self, text: &str, kind: &str, newline: bool) {
        let t = self.elapsed();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = String::new();
        if newline && !g.at_line_start {
            s.push('\n');
        }
        s.push_str(text);
        if newline {
            s.push('\n');
        }
        g.at_line_start = s.ends_with('\n');
        if let Some(live) = g.live.as_mut() {
            live.print(&s);
        } else if !self.quiet {
            let mut out = io::stdout().lock();
            let _ = out.write_all(s.as_bytes());
            let _ = out.flush();
        }
        if let Some(f) = g.log.as_mut() {
            let _ = f.write_all(s.as_bytes());
        }
        // The tail keeps exactly what was printed, line breaks included.
        g.tail.push_str(&s);
        if g.tail.len() > TAIL {
            let cut = g.tail.len() - TAIL;
            let cut = (cut..g.tail.len())
                .find(|&i| g.tail.is_char_boundary(i))
                .unwrap_or(0);
            g.tail.drain(..cut);
        }
        let event = Event {
            t,
            kind: kind.to_owned(),
            text: text.to_owned(),
        };
        // Sanity rounds (`,`, one a second) are a heartbeat, not an event:
        // neither logged nor kept (an hour's worth would only grow memory).
        if kind == "glyph" && text == "," {
            return;
        }
        g.last = Some((t, text.to_owned()));
        if let (Some(f), Ok(mut line)) = (g.events_log.as_mut(), serde_json::to_vec(&event)) {
            line.push(b'\n');
            // One write per event: a kill leaves at most a torn last line.
            let _ = f.write_all(&line);
        }
        g.events.push(event);
    }

    /// A glyph: printed with no newline, like the original's `echo -n`.
    pub fn glyph(&self, g: &str) {
        self.emit(g, "glyph", false);
    }

    /// A glyph that also marks a fault event of `kind` in the timeline.
    pub fn event(&self, kind: &str, g: &str) {
        self.emit(g, kind, false);
    }

    /// A whole line (starting on a fresh line).
    pub fn line(&self, text: &str) {
        self.emit(text, "message", true);
    }

    /// A whole line recorded with an event kind (e.g. `violation`).
    pub fn line_as(&self, kind: &str, text: &str) {
        self.emit(text, kind, true);
    }

    /// The last glyphs and lines printed, as printed, for the pause manifest.
    pub fn tail(&self) -> String {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tail
            .clone()
    }

    /// A copy of the timeline.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .clone()
    }
}

/// A status line kept at the bottom of the terminal while glyphs scroll
/// above it: the glyph line being written is shown just above the status
/// line and moves into the scrollback once it ends or fills the width.
struct Live {
    bar: indicatif::ProgressBar,
    /// The glyph line not yet ended.
    partial: String,
    /// Terminal columns.
    width: usize,
}

impl Live {
    /// Whether stdout is a terminal that can redraw a line.
    fn wanted() -> bool {
        use std::io::IsTerminal;
        io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
    }

    fn new() -> Live {
        let bar = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stdout_with_hz(4),
        );
        let style = indicatif::ProgressStyle::with_template("{prefix}\n{msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        let width = console_width();
        Live {
            bar,
            partial: String::new(),
            width,
        }
    }

    /// Prints `s` (glyphs, or whole lines) above the status line.
    fn print(&mut self, s: &str) {
        let mut rest = s;
        while let Some(nl) = rest.find('\n') {
            self.partial.push_str(&rest[..nl]);
            self.bar.println(std::mem::take(&mut self.partial));
            rest = &rest[nl + 1..];
        }
        self.partial.push_str(rest);
        while self.partial.chars().count() >= self.width {
            let cut = self
                .partial
                .char_indices()
                .nth(self.width)
                .map_or(self.partial.len(), |(i, _)| i);
            let tail = self.partial.split_off(cut);
            self.bar.println(std::mem::replace(&mut self.partial, tail));
        }
        self.bar.set_prefix(self.partial.clone());
    }

    fn set_status(&self, text: &str) {
        let text: String = text.chars().take(self.width).collect();
        self.bar.set_message(text);
    }

    /// Clears the status line and leaves the unfinished glyph line on
    /// screen, as plain output would have it.
    fn end(self) {
        self.bar.finish_and_clear();
        let mut out = io::stdout().lock();
        let _ = out.write_all(self.partial.as_bytes());
        let _ = out.flush();
    }
}

/// The terminal's width in columns (80 when it cannot be told), less one
/// so that a full line never wraps.
fn console_width() -> usize {
    let (_, cols) = console::Term::stdout().size();
    usize::from(cols).saturating_sub(1).max(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let g = Glyphs::new(&dir.path().join("run.log"), true).unwrap();
        g.glyph(",");
        g.glyph("c1");
        g.line("Join worker4.");
        g.glyph("r1");
        assert_eq!(g.tail(), ",c1\nJoin worker4.\nr1");
        let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
        assert_eq!(log, g.tail());
    }

    #[test]
    fn every_event_but_sanity_rounds_is_in_the_event_log_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = Glyphs::new(&dir.path().join("run.log"), true).unwrap();
        g.glyph(",");
        g.event("crash", "c1");
        g.line("Join worker4.");
        // Not dropped, not flushed by anyone: what a SIGKILL leaves.
        let events =
            triage::record::read_events(&dir.path().join(triage::record::EVENTS_FILE)).unwrap();
        let got: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(got, [("crash", "c1"), ("message", "Join worker4.")]);
        drop(g);
    }
}
