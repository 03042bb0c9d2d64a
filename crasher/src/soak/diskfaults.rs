//! Disk fault loops: `power-loss`, `power-loss-all`, `corrupt`, `truncate`
//! (see docs/disk.md).
//!
//! Glyphs: `PLn` power loss of worker n (its restart prints `rn`); `PLA`
//! power loss of every worker at once (restarts `rA`); `Xn` a bit flipped
//! in a data file of worker n while it is down; `Tn` a data file of worker
//! n cut short while it is down; `:PL`, `:X`, `:T` skipped (gate closed,
//! the node busy, or no data file). Each is a run-record event
//! (`power-loss`, `corrupt`, `truncate`, `restart`).

use super::loops::uniform;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::sleep;

use super::faults;
use super::harness::{Claim, Harness, Outcome};
use super::liveness::await_live;
use super::loops::{all_ready_by, tail_lines};
use super::schedule::Fault;
use super::schedule::Ticket;
use super::spec::worker_name;
use super::timings::secs;
use crate::run::disk;

/// The claim every disk fault holds while it acts: one at a time.
pub(super) const DISK: &str = "disk-faults";

/// SIGKILLs worker `i`; a worker that is not running died by itself.
async fn kill(h: &Harness, i: usize, check: &str) -> bool {
    if let Err(e) = faults::kill_worker(h, i).await {
        let log = h.run_dir().worker_log(&worker_name(i));
        h.violation(
            check,
            format!(
                "{check} of {} failed: {e}; last log lines:\n{}",
                worker_name(i),
                tail_lines(&log, 5)
            ),
        );
        return false;
    }
    true
}

/// Restarts workers `which` (in order), ends the fault, and waits until
/// the whole cluster is ready again (on the quiet clock); a cluster that
/// does not recover is a liveness violation.
async fn restart_and_check(
    h: &Harness,
    which: &[usize],
    check: &str,
    glyph: &str,
    ticket: Ticket,
) -> bool {
    for &i in which {
        if h.finished() {
            return false;
        }
        if let Err(e) = faults::start_again(h, i).await {
            h.finish(Outcome::Environment(e.to_string()));
            return false;
        }
    }
    h.out.event("restart", glyph);
    ticket.end();
    // A restarted node that exits (it cannot read its files) is reported
    // at once, with its last log lines, not at the readiness deadline.
    let died = async {
        loop {
            sleep(Duration::from_millis(100)).await;
            for &i in which {
                if !h.cluster(move |c| c.worker_running(i)).await {
                    return i;
                }
            }
        }
    };
    let budget = secs(h.timings.disk_fault_ready);
    let ready = tokio::select! {
        r = await_live(h, None, budget, |d| all_ready_by(h, d)) => r,
        i = died => {
            let log = h.run_dir().worker_log(&worker_name(i));
            let tail = tail_lines(&log, 5);
            h.out.line(&format!("{check}: {} died after its restart: pause the world", worker_name(i)));
            h.violation(
                check,
                format!("{} exited after its restart following {check}; last log lines of {}:\n{tail}", worker_name(i), log.display()),
            );
            return false;
        }
    };
    match ready {
        Ok(_) => true,
        Err(e) => {
            let names: Vec<String> = which.iter().map(|&i| worker_name(i)).collect();
            h.out.line(&format!(
                "{check}: {} did not recover: pause the world: {}",
                names.join(","),
                e.describe(budget)
            ));
            e.conclude(
                h,
                check,
                &format!(
                    "the cluster did not recover after {check} of {}",
                    names.join(",")
                ),
                budget,
            );
            false
        }
    }
}

/// Claims every member, or none.
async fn claim_all(h: &Harness) -> Option<(Vec<usize>, Vec<Claim<'_>>)> {
    let members: Vec<usize> = h.members().await;
    let mut claims = Vec::new();
    for &i in &members {
        claims.push(h.claim(&worker_name(i)).await?);
    }
    Some((members, claims))
}

/// `power-loss`: every so often SIGKILL a random worker, drop its
/// un-synced writes, restart it. `all`: every worker at the same moment.
pub async fn power_loss(h: Arc<Harness>, all: bool) {
    let t = h.timings.clone();
    let mut rng = h.rng(if all { "power-loss-all" } else { "power-loss" });
    sleep(secs(t.disk_fault_start)).await;
    loop {
        if h.finished() {
            return;
        }
        let kind = if all { "power-loss-all" } else { "power-loss" };
        let ticket = h.schedule.acquire(kind, || h.out.glyph(":PL")).await;
        if h.finished() {
            return;
        }
        let picked = if all {
            claim_all(&h).await
        } else {
            h.claim_any_member(rng.gen(), secs(t.member_claim_wait))
                .await
                .map(|(i, c)| (vec![i], vec![c]))
        };
        let disk_claim = match &picked {
            Some(_) => h.claim(DISK).await,
            None => None,
        };
        let (Some((which, claims)), Some(disk_claim)) = (picked, disk_claim) else {
            ticket.cancel();
            h.out.glyph(":PL");
            sleep(Duration::from_secs(1)).await;
            continue;
        };
        let names: Vec<String> = which.iter().map(|&i| worker_name(i)).collect();
        let down = uniform(&mut rng, 0.0, t.disk_fault_down);
        h.schedule.decide(
            kind,
            format!("power loss of {}", names.join(",")),
            Fault::new(kind, names.join(",")).down(down),
        );
        if !power_loss_once(&h, &which, all, kind, down, ticket, || ()).await {
            return;
        }
        drop(claims);
        drop(disk_claim);
        sleep(uniform(
            &mut rng,
            t.power_loss_gap_min,
            t.power_loss_gap_max,
        ))
        .await;
    }
}

/// One power loss of workers `which` (`all`: every worker, glyph `PLA`),
/// counted as fault `kind`: SIGKILL, drop their un-synced writes, restart
/// them after `down`, wait for the cluster to recover (`killed` runs right
/// after the SIGKILLs). The caller holds each worker's claim, the [`DISK`]
/// claim and `ticket`. False when the run must stop (reported). The one
/// copy of a power loss, for the loop, replay and log triggers.
pub async fn power_loss_once(
    h: &Harness,
    which: &[usize],
    all: bool,
    kind: &str,
    down: Duration,
    ticket: Ticket,
    killed: impl FnOnce(),
) -> bool {
    let glyph = if all {
        "PLA".to_owned()
    } else {
        format!("PL{}", which[0])
    };
    h.out.event("power-loss", &glyph);
    for &i in which {
        if !kill(h, i, "power-loss").await {
            return false;
        }
    }
    killed();
    for &i in which {
        // On the owner's thread: it unmounts and remounts the disk.
        let lost = h.cluster(move |c| c.lose_disk(i)).await;
        match lost {
            Ok(report) => h.out.line(&format!(
                "power-loss: {}: un-synced writes dropped ({report})",
                worker_name(i)
            )),
            Err(e) => {
                h.finish(Outcome::Environment(e.to_string()));
                return false;
            }
        }
    }
    h.counters.disk_faults.fetch_add(1, Ordering::Relaxed);
    sleep(down).await;
    if h.finished() {
        return false;
    }
    // The initializer first: the others rejoin it.
    let glyph = if all {
        "rA".to_owned()
    } else {
        format!("r{}", which[0])
    };
    restart_and_check(h, which, kind, &glyph, ticket).await
}

/// Claims every member and the disk, or nothing (replay of
/// `power-loss-all`).
pub async fn claim_all_and_disk(h: &Harness) -> Option<(Vec<usize>, Vec<Claim<'_>>, Claim<'_>)> {
    let (which, claims) = claim_all(h).await?;
    let disk = h.claim(DISK).await?;
    Some((which, claims, disk))
}

/// Claims the disk (replay of `power-loss`).
pub async fn claim_disk(h: &Harness) -> Option<Claim<'_>> {
    h.claim(DISK).await
}

/// Which file surgery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surgery {
    /// `corrupt`: flip one bit.
    Corrupt,
    /// `truncate`: cut the file short.
    Truncate,
}

/// `corrupt` / `truncate`: every so often SIGKILL a random worker (a
/// minority: one node), flip a random bit in one of its data files or cut
/// one short (durably), and restart it.
pub async fn surgery(h: Arc<Harness>, what: Surgery) {
    let t = h.timings.clone();
    let (word, letter) = match what {
        Surgery::Corrupt => ("corrupt", "X"),
        Surgery::Truncate => ("truncate", "T"),
    };
    let globs: Vec<regex::Regex> = h
        .profile()
        .disk
        .data_files
        .iter()
        .filter_map(|g| disk::glob_regex(g).ok())
        .collect();
    let mut rng = h.rng(word);
    sleep(secs(t.disk_fault_start)).await;
    loop {
        sleep(uniform(&mut rng, t.corrupt_gap_min, t.corrupt_gap_max)).await;
        if h.finished() {
            return;
        }
        let ticket = h
            .schedule
            .acquire(word, || h.out.glyph(&format!(":{letter}")))
            .await;
        if h.finished() {
            ticket.cancel();
            return;
        }
        // A member no other loop holds (see `Harness::claim_any_member`).
        let Some((i, claim)) = h
            .claim_any_member(rng.gen(), secs(t.member_claim_wait))
            .await
        else {
            ticket.cancel();
            h.out.glyph(&format!(":{letter}"));
            continue;
        };
        let name = worker_name(i);
        // Here, or on the worker's host (`--hosts`), on the owner's thread.
        let listed = h
            .cluster({
                let g = globs.clone();
                move |c| c.data_files(i, &g)
            })
            .await;
        if listed.map_or(true, |f| f.is_empty()) {
            ticket.cancel();
            h.out.glyph(&format!(":{letter}"));
            continue;
        }
        let Some(disk_claim) = h.claim(DISK).await else {
            ticket.cancel();
            h.out.glyph(&format!(":{letter}"));
            continue;
        };
        h.schedule.decide(
            word,
            format!("{word} a data file of {name}"),
            Fault::new(word, &name),
        );
        if !kill(&h, i, word).await {
            return;
        }
        // The node is down: its files are final now.
        let files = h
            .cluster({
                let g = globs.clone();
                move |c| c.data_files(i, &g)
            })
            .await;
        let done = match files {
            Err(e) => Err(format!("cannot list the data files: {e}")),
            Ok(files) if files.is_empty() => Err("no data file left".to_owned()),
            Ok(files) => {
                let (rel, len) = files[rng.gen_range(0..files.len())].clone();
                match what {
                    Surgery::Corrupt if len > 0 => {
                        let (off, bit) = (rng.gen_range(0..len), rng.gen_range(0..8u8));
                        h.cluster({
                            let rel = rel.clone();
                            move |c| c.flip_bit(i, &rel, off, bit)
                        })
                        .await
                            .map(|(old, new)| {
                                format!(
                                    "{name}: {rel}: bit {bit} of byte {off} of {len} flipped ({old:#04x} -> {new:#04x})"
                                )
                            })
                            .map_err(|e| format!("{rel}: {e}"))
                    }
                    Surgery::Truncate if len > 0 => {
                        let cut = rng.gen_range(0..len);
                        h.cluster({
                            let rel = rel.clone();
                            move |c| c.truncate_file(i, &rel, cut)
                        })
                        .await
                        .map(|()| format!("{name}: {rel}: cut from {len} to {cut} bytes"))
                        .map_err(|e| format!("{rel}: {e}"))
                    }
                    _ => Err(format!("{rel} is empty")),
                }
            }
        };
        match done {
            Ok(what_done) => {
                h.out.event(word, &format!("{letter}{i}"));
                h.out.line(&format!("{word}: {what_done}"));
                h.counters.disk_faults.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => h.out.line(&format!("{word}: skipped: {e}")),
        }
        sleep(uniform(&mut rng, 0.0, t.disk_fault_down)).await;
        if h.finished() {
            return;
        }
        let ok = restart_and_check(&h, &[i], word, &format!("r{i}"), ticket).await;
        drop(claim);
        drop(disk_claim);
        if !ok {
            return;
        }
    }
}
