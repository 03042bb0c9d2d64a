//! The scripted fault executor of `crasher replay` / `crasher shrink`:
//! instead of the random fault loops, it fires recorded faults
//! ([`Decision`]s with a [`Fault`]) at their recorded offsets from the
//! run's start, with the same fault actions (and so the same glyphs) as
//! the loops. Each fault is recorded again (schedule, coverage, decision),
//! so a replayed run can itself be replayed or shrunk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};

use super::harness::{Claim, Harness};
use super::loops;
use super::schedule::{Decision, Fault};
use super::spec::{worker_index, worker_name};
use super::timings::secs;

/// The fault kinds replay can carry out.
pub const REPLAYABLE: &[&str] = &[
    "crash-worker",
    "crash-primary",
    "pause-primary",
    "crash-at-prepare",
    "pause-at-prepare",
    "crash-sink-at-prepare",
    "crash-at-commit",
    "crash-sink",
    "crash-feeder",
    "pause",
    "join",
    "shrink",
    "power-loss",
    "power-loss-all",
    "partition",
    "isolate",
    "one-way",
    "bridge",
    "flaky",
];

/// The network fault words (their `target` is the fault's glyph).
const NETWORK: &[&str] = &["partition", "isolate", "one-way", "bridge", "flaky"];

/// Reads a fault schedule: a JSON array of decisions, or a recipe file
/// (`.toml`) with a `[replay]` table. Every decision must carry a
/// replayable fault; errors name the file and the decision.
pub fn load(path: &Path) -> anyhow::Result<Vec<Decision>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let decisions = if path.extension().is_some_and(|e| e == "toml") {
        let origin = path.display().to_string();
        let r = crate::recipe::Recipe::parse(&text, &origin)?;
        match r.replay {
            Some(rp) => rp.decisions,
            None => anyhow::bail!("{origin}: no [replay] table: not a replay recipe"),
        }
    } else {
        serde_json::from_str::<Vec<Decision>>(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {} column {}: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?
    };
    check(&decisions).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(decisions)
}

/// Checks that every decision can be replayed: it has a structured fault
/// (runs recorded before replayable schedules have none) of a kind replay
/// knows, with the parameters that kind needs.
pub fn check(decisions: &[Decision]) -> Result<(), String> {
    for (n, d) in decisions.iter().enumerate() {
        let Some(f) = &d.fault else {
            return Err(format!(
                "decision {n} ({:?}) has no `fault`: this run predates replayable schedules",
                d.what
            ));
        };
        if !REPLAYABLE.contains(&f.kind.as_str()) {
            return Err(format!(
                "decision {n} ({:?}): fault kind {:?} cannot be replayed yet (replayable: {})",
                d.what,
                f.kind,
                REPLAYABLE.join(", ")
            ));
        }
        let worker = matches!(
            f.kind.as_str(),
            "crash-worker"
                | "pause"
                | "join"
                | "shrink"
                | "power-loss"
                | "crash-at-prepare"
                | "pause-at-prepare"
                | "crash-at-commit"
        );
        if worker && worker_index(&f.target).is_none() {
            return Err(format!(
                "decision {n}: target {:?} is not a worker name (workerN)",
                f.target
            ));
        }
        let all: Vec<usize> = (0..super::spec::MAX_WORKERS).collect();
        if NETWORK.contains(&f.kind.as_str())
            && super::netfaults::from_glyph(&f.target, &all, 0).is_none()
        {
            return Err(format!(
                "decision {n}: target {:?} is not a network fault glyph ({{P:0,1|2}}, {{I:2}}, {{O:1>2}}, {{B:0|1|2}}, {{F:1}})",
                f.target
            ));
        }
        if f.kind == "crash-feeder" && !f.target.starts_with("feeder.") {
            return Err(format!(
                "decision {n}: target {:?} is not a feeder (feeder.K)",
                f.target
            ));
        }
        if !d.t.is_finite() || d.t < 0.0 {
            return Err(format!("decision {n}: field t: {} is not a time", d.t));
        }
    }
    Ok(())
}

/// The fault kind a decision counts under in the coverage (the random
/// loops' names: `crash1`, `crash-sink`, `crash-source`...).
fn coverage_kind(f: &Fault) -> String {
    match f.kind.as_str() {
        "crash-worker" => format!("crash{}", worker_index(&f.target).unwrap_or(0)),
        "crash-feeder" => "crash-source".to_owned(),
        k => k.to_owned(),
    }
}

/// Fires `script` at its recorded offsets until the run ends. Faults that
/// overlapped in the recorded run overlap here too (each its own task);
/// a fault whose target is still busy with the previous one waits for it.
/// Targeted faults (`crash-at-prepare`...) need the sink's event socket:
/// `sink_events` is the run's, when its arguments name a targeted word.
pub async fn execute(
    h: Arc<Harness>,
    script: Vec<Decision>,
    sink_events: Option<Arc<super::targeted::SinkEvents>>,
) {
    let start = Instant::from_std(h.schedule.started());
    h.out.line(&format!(
        "Replay: {} recorded faults at their recorded times (the random fault loops are off)",
        script.len()
    ));
    let mut tasks = JoinSet::new();
    for d in script {
        sleep_until(start + secs(d.t)).await;
        if h.finished() {
            return;
        }
        tasks.spawn(fire(h.clone(), d, sink_events.clone()));
    }
    while tasks.join_next().await.is_some() {}
    h.out.line("Replay: every recorded fault fired");
}

/// Waits until `who` can be claimed, or the run ends.
async fn claim<'a>(h: &'a Harness, who: &str) -> Option<Claim<'a>> {
    loop {
        if h.finished() {
            return None;
        }
        if let Some(c) = h.claim(who).await {
            return Some(c);
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `take` gets its claims, or the run ends.
async fn claim_with<'a, T, F>(h: &'a Harness, take: impl Fn(&'a Harness) -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    loop {
        if h.finished() {
            return None;
        }
        if let Some(c) = take(h).await {
            return Some(c);
        }
        sleep(Duration::from_millis(20)).await;
    }
}

fn skip(h: &Harness, d: &Decision, why: &str) {
    h.out.line(&format!("Replay: skipped {:?}: {why}", d.what));
}

/// Carries out one recorded fault with the loops' own actions.
async fn fire(h: Arc<Harness>, d: Decision, sink_events: Option<Arc<super::targeted::SinkEvents>>) {
    let Some(f) = d.fault.clone() else {
        return skip(&h, &d, "no fault recorded");
    };
    let h = &*h;
    let kind = coverage_kind(&f);
    let down = secs(f.down_s.unwrap_or(0.0));
    let hold = secs(f.hold_s.unwrap_or(0.0));
    let index = worker_index(&f.target);
    let record = |f: &Fault| h.schedule.decide(&d.source, d.what.clone(), f.clone());
    match f.kind.as_str() {
        "crash-worker" | "pause" => {
            let Some(i) = index else { return };
            let Some(c) = claim(h, &f.target).await else {
                return;
            };
            if !h.is_member(i).await {
                return skip(h, &d, "not a member now");
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            if f.kind == "pause" {
                loops::pause_for(h, i, hold, ticket, c).await;
            } else {
                loops::crash_and_restart(h, i, down, ticket, c, || ()).await;
            }
        }
        "crash-primary" | "pause-primary" => {
            let deadline = Instant::now() + Duration::from_secs(30);
            let picked = loop {
                if h.finished() {
                    return;
                }
                if let Some(p) = loops::claim_primary(h).await {
                    break p;
                }
                if Instant::now() >= deadline {
                    return skip(h, &d, "no primary found within 30 s");
                }
                sleep(Duration::from_millis(200)).await;
            };
            let (i, c) = picked;
            let ticket = h.schedule.force(&kind);
            record(&f);
            if f.kind == "pause-primary" {
                loops::pause_for(h, i, hold, ticket, c).await;
            } else {
                loops::crash_and_restart(h, i, down, ticket, c, || ()).await;
            }
        }
        "crash-sink" => {
            let Some(c) = claim(h, "sink").await else {
                return;
            };
            let ticket = h.schedule.force(&kind);
            record(&f);
            loops::sink_crash(h, down, ticket, c).await;
        }
        "crash-feeder" => {
            let k = f.target.trim_start_matches("feeder.").to_owned();
            let Some(c) = claim(h, &f.target).await else {
                return;
            };
            if h.done_feeders().await.contains(&k) {
                return skip(h, &d, "the feeder is done");
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            loops::feeder_crash(h, &k, down, ticket, c).await;
        }
        "join" => {
            let Some(i) = index else { return };
            let Some(c) = claim(h, &f.target).await else {
                return;
            };
            if h.is_member(i).await {
                return skip(h, &d, "already a member");
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            loops::join_index(h, i, ticket, c).await;
        }
        "shrink" => {
            let Some(i) = index else { return };
            let Some(a) = claim(h, &f.target).await else {
                return;
            };
            let Some(b) = claim(h, &worker_name(0)).await else {
                return;
            };
            if !h.is_member(i).await {
                return skip(h, &d, "not a member now");
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            loops::shrink_index(h, i, ticket, (a, b)).await;
        }
        "power-loss" => {
            let Some(i) = index else { return };
            let Some(c) = claim(h, &f.target).await else {
                return;
            };
            let Some(disk) = claim_with(h, super::diskfaults::claim_disk).await else {
                return;
            };
            if !h.is_member(i).await {
                return skip(h, &d, "not a member now");
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            super::diskfaults::power_loss_once(h, &[i], false, "power-loss", down, ticket, || ())
                .await;
            drop((c, disk));
        }
        "power-loss-all" => {
            // Every member at replay time (the recorded list is for people).
            let Some((which, claims, disk)) =
                claim_with(h, super::diskfaults::claim_all_and_disk).await
            else {
                return;
            };
            let ticket = h.schedule.force(&kind);
            record(&f);
            super::diskfaults::power_loss_once(
                h,
                &which,
                true,
                "power-loss-all",
                down,
                ticket,
                || (),
            )
            .await;
            drop((claims, disk));
        }
        k if NETWORK.contains(&k) => {
            let members: Vec<usize> = h.members().await;
            let percent = h.timings.net_flaky_percent.clamp(0.0, 100.0) as u8;
            let Some(faults) = super::netfaults::from_glyph(&f.target, &members, percent) else {
                return skip(h, &d, "its nodes are not all members now");
            };
            // With --hosts, workers that share a host now cannot be cut
            // apart: the recorded cut is skipped, as the loop would have.
            if let Err(why) = super::netfaults::can_make(h, &faults).await {
                return skip(h, &d, &format!("the hosts cannot make it now: {why}"));
            }
            let ticket = h.schedule.force(&kind);
            record(&f);
            super::netfaults::net_fault_once(h, k, &faults, &f.target, hold, ticket, || ()).await;
        }
        k if super::spec::Targeted::ALL.iter().any(|w| w.word() == k) => {
            // At its recorded time, armed again at the target's next
            // phase event: the same kind of instant, not the same instant.
            let word = super::spec::Targeted::ALL
                .into_iter()
                .find(|w| w.word() == k)
                .unwrap_or(super::spec::Targeted::CrashAtPrepare);
            let Some(ev) = sink_events.as_ref() else {
                return skip(h, &d, "the run has no sink event socket");
            };
            let who = if word == super::spec::Targeted::CrashSinkAtPrepare {
                "sink".to_owned()
            } else {
                f.target.clone()
            };
            let Some(c) = claim(h, &who).await else {
                return;
            };
            if let Some(i) = index.filter(|_| who != "sink") {
                if !h.is_member(i).await {
                    return skip(h, &d, "not a member now");
                }
            }
            let ticket = h.schedule.force(&kind);
            let for_ = if word == super::spec::Targeted::PauseAtPrepare {
                hold
            } else {
                down
            };
            let target = if who == "sink" { None } else { index };
            let struck =
                super::targeted::strike(h, word, target, for_, d.what.clone(), ticket, c, ev).await;
            if let super::targeted::Strike::NoEvent = struck {
                skip(h, &d, "no phase event of its target within the arm time");
            }
        }
        other => skip(h, &d, &format!("fault kind {other:?} cannot be replayed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(json: &str) -> Vec<Decision> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn old_records_read_and_are_refused_by_name() {
        // A run.json of before replayable schedules: no `fault`.
        let old =
            decisions(r#"[{"t": 1.5, "source": "crash1", "what": "crash worker1 down=0.5"}]"#);
        assert_eq!(old[0].fault, None);
        let e = check(&old).unwrap_err();
        assert!(e.contains("predates replayable schedules"), "{e}");
    }

    #[test]
    fn faults_round_trip_and_bad_ones_are_named() {
        let d = decisions(
            r#"[{"t": 1.5, "source": "crash1", "what": "crash worker1 down=0.5",
                 "fault": {"kind": "crash-worker", "target": "worker1", "down_s": 0.5}},
                {"t": 2.0, "source": "pause", "what": "pause worker2 for=1.000",
                 "fault": {"kind": "pause", "target": "worker2", "hold_s": 1.0,
                           "on_event": "phase1 worker2"}}]"#,
        );
        assert!(check(&d).is_ok());
        assert_eq!(
            d[1].fault.as_ref().unwrap().on_event.as_deref(),
            Some("phase1 worker2")
        );
        let json = serde_json::to_string(&d[0]).unwrap();
        assert!(
            !json.contains("hold_s") && !json.contains("on_event"),
            "{json}"
        );
        assert_eq!(coverage_kind(d[0].fault.as_ref().unwrap()), "crash1");

        let mut bad = d.clone();
        bad[0].fault.as_mut().unwrap().kind = "corrupt".into();
        let e = check(&bad).unwrap_err();
        assert!(
            e.contains("decision 0") && e.contains("cannot be replayed"),
            "{e}"
        );
        let mut bad = d.clone();
        bad[1].fault.as_mut().unwrap().target = "sink".into();
        assert!(check(&bad).unwrap_err().contains("decision 1"));
        let mut bad = d.clone();
        let f = bad[0].fault.as_mut().unwrap();
        f.kind = "partition".into();
        f.target = "{P:0,1|2}".into();
        assert!(check(&bad).is_ok());
        bad[0].fault.as_mut().unwrap().target = "{Q:1}".into();
        assert!(check(&bad).unwrap_err().contains("network fault glyph"));
        let mut bad = d;
        bad[0].t = -1.0;
        assert!(check(&bad).unwrap_err().contains("field t"));
    }

    #[test]
    fn network_glyphs_become_the_same_cuts() {
        use crate::soak::netfaults::from_glyph;
        let p = from_glyph("{P:0,2|1}", &[0, 1, 2], 30).unwrap();
        assert_eq!(p.cuts.len(), 4, "1 cut from 0 and 2, both ways");
        let i = from_glyph("{I:2}", &[0, 1, 2], 30).unwrap();
        assert_eq!(i.cuts.len(), 6, "2 cut from 0, 1 and the lab, both ways");
        assert_eq!(from_glyph("{O:1>2}", &[0, 1, 2], 30).unwrap().cuts.len(), 1);
        assert_eq!(
            from_glyph("{B:0|1|2}", &[0, 1, 2], 30).unwrap().cuts.len(),
            2
        );
        assert_eq!(
            from_glyph("{F:1}", &[0, 1], 30).unwrap().flaky["worker1"],
            30
        );
        assert!(
            from_glyph("{I:5}", &[0, 1, 2], 30).is_none(),
            "not a member"
        );
        assert!(from_glyph("{H}", &[0, 1], 30).is_none());
    }
}
