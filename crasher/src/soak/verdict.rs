//! The verdict at the end of a run: the outcome printed, pause-the-world
//! or teardown, coverage in the verdict, the exit code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::exit;
use crate::run::profile::Mode;

use super::args::SoakArgs;
use super::harness::{Harness, OnFailure, Outcome};
use super::signals::interrupted;
use super::spec::SoakSpec;
use super::{freeze, record, sanity};

pub(super) fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Why the run's verdict cannot be "holds" for lack of fault coverage: a
/// requested fault kind observed fewer than `min` times (fired fewer
/// than `min` times where nothing can be observed).
pub(super) fn unobserved(h: &Harness, spec: &SoakSpec, min: u64) -> Option<String> {
    if min == 0 {
        return None;
    }
    let cov = h.schedule.coverage();
    let observable = h.schedule.observable();
    let short: Vec<String> = spec
        .fault_kinds()
        .into_iter()
        .filter_map(|kind| {
            let c = cov.get(&kind).cloned().unwrap_or_default();
            let seen = if observable { c.observed } else { c.fired };
            (seen < min).then(|| {
                if observable {
                    format!("{kind} (fired {}, observed {})", c.fired, c.observed)
                } else {
                    format!("{kind} (fired {})", c.fired)
                }
            })
        })
        .collect();
    (!short.is_empty()).then(|| {
        format!(
            "requested faults were not {} at least {min} time(s): {} (see --min-observed)",
            if observable { "observed" } else { "fired" },
            short.join(", ")
        )
    })
}

pub(super) async fn conclude(
    h: &Arc<Harness>,
    args: &SoakArgs,
    spec: &SoakSpec,
    inputs: &BTreeMap<String, PathBuf>,
    start: Instant,
    interrupts: &mut tokio::sync::watch::Receiver<u32>,
) -> ExitCode {
    let (outcome, decided) = h
        .outcome()
        .unwrap_or((Outcome::Interrupted, Instant::now()));
    let print_duration = || {
        h.out.line(&format!("End time: {}", unix_ms()));
        h.out
            .line(&format!("Duration: {}", start.elapsed().as_millis()));
    };
    let code = match &outcome {
        Outcome::Violation { check, diagnosis } => {
            h.out
                .line_as("violation", &format!("VIOLATION ({check}): {diagnosis}"));
            if h.on_failure == OnFailure::Pause {
                print_duration();
                freeze::report(h, args, check, diagnosis, decided).await;
                interrupted(interrupts).await;
            } else {
                print_duration();
            }
            exit::VIOLATION
        }
        Outcome::Success(msg) => {
            h.out.line(msg);
            print_duration();
            h.out.line(&h.schedule.summary_line());
            match unobserved(h, spec, args.min_observed) {
                Some(why) => {
                    h.out.line(&format!("Verdict unknown: {why}"));
                    exit::UNKNOWN
                }
                None => exit::HOLDS,
            }
        }
        Outcome::DurationReached => {
            let summary = sanity::final_summary(h, inputs).await;
            let mode = h.profile().mode;
            let tcp = match mode {
                Mode::Tcp => Some(sanity::tcp_receipt(h).await),
                _ => None,
            };
            match &tcp {
                Some(t) => h.out.line(&t.text),
                None => h.out.line(&summary.text),
            }
            print_duration();
            h.out.line(&h.schedule.summary_line());
            let never = unobserved(h, spec, args.min_observed);
            if let Some(v) = summary.violation {
                h.out
                    .line_as("violation", &format!("VIOLATION (sanity): {v}"));
                exit::VIOLATION
            } else if let Some(why) = never {
                h.out.line(&format!("Verdict unknown: {why}"));
                exit::UNKNOWN
            } else if let Some(t) = &tcp {
                if let Some(why) = &t.unknown {
                    h.out.line(&format!("Verdict unknown: {why}"));
                    exit::UNKNOWN
                } else {
                    h.out.line(
                        "Duration reached with no violation (TCP mode: no process died by \
                         itself and the receiver kept receiving; no data was verified).",
                    );
                    exit::HOLDS
                }
            } else if summary.verified_bytes == 0 && !spec.no_sanity {
                h.out
                    .line("Verdict unknown: nothing was committed, so nothing was verified");
                exit::UNKNOWN
            } else {
                h.out.line("Duration reached with no violation.");
                exit::HOLDS
            }
        }
        Outcome::Unknown(why) => {
            h.out.line(&format!("Verdict unknown: {why}"));
            print_duration();
            exit::UNKNOWN
        }
        Outcome::Environment(why) => {
            h.out.line(&format!("Environment error: {why}"));
            print_duration();
            exit::USAGE
        }
        Outcome::Interrupted => {
            h.out.line("Interrupted: tearing down (verdict unknown).");
            exit::UNKNOWN
        }
    };
    record::finish(h, code);
    h.cluster(|c| c.teardown(Duration::from_secs(2))).await;
    ExitCode::from(code)
}
