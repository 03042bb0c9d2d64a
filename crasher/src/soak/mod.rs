//! The soak: `crasher NUM [options...]`.
//!
//! Starts a sink, a cluster and one feeder per key in ordered stages, runs
//! the fault and check loops side by side, and stops at the first outcome:
//! every key committed and acked (exit 0), the duration reached (exit 0), a
//! violation (the world is paused, or torn down with `--on-failure kill`;
//! exit 1), an environment error (exit 2), or nothing concluded (exit 3).

pub mod args;
pub mod diskfaults;
pub mod diskfull;
pub mod faults;
pub mod freeze;
pub mod glyphs;
pub mod harness;
pub mod inputs;
pub mod liveness;
pub mod loops;
pub mod memory;
pub mod netfaults;
pub mod record;
pub mod sanity;
pub mod schedule;
pub mod scripted;
pub mod signals;
pub mod spec;
pub mod startup;
pub mod status_line;
pub mod supervise;
pub mod targeted;
pub mod timings;
pub mod triggers;
pub mod verdict;

pub use args::{parse_duration, SoakArgs};
pub use inputs::{ensure_input_files, ensure_input_files_cancellable, input_dir};
pub use signals::{interrupted, watch_interrupts};
pub use startup::start_up;
pub use supervise::{disk_mode, prepare, run, Prepared};
