//! Network fault words (`--network lab` or `--hosts`): `partition`,
//! `isolate`, `one-way`, `bridge`, `flaky`. One loop picks one of the
//! requested faults at random every few seconds, puts it in force with
//! nftables rules inside the node namespaces ([`netlab::Lab::apply`]) or
//! on the hosts (`run::hosts::Hosts::apply_network`), holds it,
//! and heals it before the next one. While a fault is in force the loop's
//! flag is out of the stabilize gate, so crash loops wait; a fault starts
//! only when the gate is open, no worker is claimed by another loop, and
//! every member answers that it is processing.
//!
//! Glyphs (worker numbers, 0 = initializer): `{P:0,1|2}` partition
//! (majority | minority), `{I:2}` isolate, `{O:1>2}` one-way (1's packets
//! to 2 dropped), `{B:0|1|2}` bridge (half | bridge node | half),
//! `{F:1}` flaky, `{H}` healed, `:n` skipped (gate closed, a worker busy
//! or not ready, or too few workers). Each is a run-record event (`net-partition` ... `net-heal`).

use super::loops::uniform;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use netlab::{Cut, End, Faults};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::sleep;

use super::harness::{Harness, Outcome};
use super::schedule::Fault;
use super::spec::{worker_name, NetFault};
use super::timings::secs;

/// How long the loop waits for the whole cluster to be ready before a
/// fault; if it is not, the fault is skipped (`:n`).
const READY_PROBE: Duration = Duration::from_secs(1);

fn node(i: usize) -> End {
    End::Node(worker_name(i))
}

fn list(v: &[usize]) -> String {
    v.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The faults, glyph and event kind of one `kind` among `members`, or
/// `None` when there are too few workers for it.
pub fn plan(
    kind: NetFault,
    members: &[usize],
    rng: &mut ChaCha8Rng,
    flaky_percent: u8,
) -> Option<(Faults, String)> {
    let mut m = members.to_vec();
    m.shuffle(rng);
    let mut f = Faults::default();
    let glyph = match kind {
        NetFault::Partition => {
            if m.len() < 2 {
                return None;
            }
            let minority = rng.gen_range(1..=m.len() / 2);
            let (small, big) = m.split_at(minority);
            for &a in small {
                for &b in big {
                    f.cut_both(&node(a), &node(b));
                }
            }
            let (mut big, mut small) = (big.to_vec(), small.to_vec());
            big.sort();
            small.sort();
            format!("{{P:{}|{}}}", list(&big), list(&small))
        }
        NetFault::Isolate => {
            let a = *m.first()?;
            let (cut, glyph) = isolate(a, &m);
            f = cut;
            glyph
        }
        NetFault::OneWay => {
            if m.len() < 2 {
                return None;
            }
            f.cuts.insert(Cut {
                from: node(m[0]),
                to: node(m[1]),
            });
            format!("{{O:{}>{}}}", m[0], m[1])
        }
        NetFault::Bridge => {
            if m.len() < 3 {
                return None;
            }
            let bridge = m[0];
            let rest = &m[1..];
            let cut = rng.gen_range(1..rest.len());
            let (a, b) = rest.split_at(cut);
            for &x in a {
                for &y in b {
                    f.cut_both(&node(x), &node(y));
                }
            }
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort();
            b.sort();
            format!("{{B:{}|{bridge}|{}}}", list(&a), list(&b))
        }
        NetFault::Flaky => {
            let a = *m.first()?;
            f.flaky.insert(worker_name(a), flaky_percent);
            format!("{{F:{a}}}")
        }
    };
    Some((f, glyph))
}

/// The cuts and glyph that isolate node `a` from the other `members`
/// and from the lab.
pub fn isolate(a: usize, members: &[usize]) -> (Faults, String) {
    let mut f = Faults::default();
    for &b in members.iter().filter(|&&b| b != a) {
        f.cut_both(&node(a), &node(b));
    }
    f.cut_both(&node(a), &End::Lab);
    (f, format!("{{I:{a}}}"))
}

/// Puts `faults` (of the fault word `word`, glyph `glyph`) in force for
/// `hold` (`applied` runs once they are), then heals them and ends
/// `ticket`. False when the loop must stop (the run ended, or nftables
/// failed: reported). The one copy of a network fault, for the loop,
/// replay and log triggers.
#[allow(clippy::too_many_arguments)]
pub async fn net_fault_once(
    h: &Harness,
    word: &str,
    faults: &Faults,
    glyph: &str,
    hold: Duration,
    ticket: super::schedule::Ticket,
    applied: impl FnOnce(),
) -> bool {
    let wanted = faults.clone();
    let applied_now = h.cluster(move |c| c.apply_network(&wanted)).await;
    if let Err(e) = applied_now {
        h.finish(Outcome::Environment(format!(
            "cannot put network fault {word} in force: {e}"
        )));
        return false;
    }
    applied();
    h.out.event(&format!("net-{word}"), glyph);
    h.counters.net_faults.fetch_add(1, Ordering::Relaxed);
    sleep(hold).await;
    if h.finished() {
        return false;
    }
    if let Err(e) = heal(h).await {
        h.finish(Outcome::Environment(format!(
            "cannot heal the network: {e}"
        )));
        return false;
    }
    ticket.end();
    true
}

/// The faults a recorded glyph stands for (`{P:0,2|1}`, `{I:2}`,
/// `{O:1>2}`, `{B:0|1|2}`, `{F:1}`), among `members` (an isolated node is
/// cut from every other member now), for replay. `None` if the glyph is
/// not one of these, or names a worker that is not a member.
pub fn from_glyph(glyph: &str, members: &[usize], flaky_percent: u8) -> Option<Faults> {
    let inner = glyph.strip_prefix('{')?.strip_suffix('}')?;
    let (tag, rest) = inner.split_once(':')?;
    let nums =
        |s: &str| -> Option<Vec<usize>> { s.split(',').map(|x| x.trim().parse().ok()).collect() };
    let mut f = Faults::default();
    let cut_groups = |f: &mut Faults, a: &[usize], b: &[usize]| {
        for &x in a {
            for &y in b {
                f.cut_both(&node(x), &node(y));
            }
        }
    };
    let named: Vec<usize> = match tag {
        "P" => {
            let (big, small) = rest.split_once('|')?;
            let (big, small) = (nums(big)?, nums(small)?);
            cut_groups(&mut f, &small, &big);
            big.into_iter().chain(small).collect()
        }
        "I" => {
            let a: usize = rest.parse().ok()?;
            f = isolate(a, members).0;
            vec![a]
        }
        "O" => {
            let (a, b) = rest.split_once('>')?;
            let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
            f.cuts.insert(Cut {
                from: node(a),
                to: node(b),
            });
            vec![a, b]
        }
        "B" => {
            let mut parts = rest.split('|');
            let (a, bridge, b) = (parts.next()?, parts.next()?, parts.next()?);
            let (a, bridge, b) = (nums(a)?, nums(bridge)?, nums(b)?);
            cut_groups(&mut f, &a, &b);
            a.into_iter().chain(bridge).chain(b).collect()
        }
        "F" => {
            let a: usize = rest.parse().ok()?;
            f.flaky.insert(worker_name(a), flaky_percent);
            vec![a]
        }
        _ => return None,
    };
    named.iter().all(|i| members.contains(i)).then_some(f)
}

/// The network fault loop: one of `kinds` at a time, each healed before
/// the next.
pub async fn run(h: Arc<Harness>, kinds: Vec<NetFault>) {
    let t = h.timings.clone();
    let mut rng = h.rng("net-faults");
    let percent = t.net_flaky_percent.clamp(0.0, 100.0) as u8;
    sleep(secs(t.net_start)).await;
    loop {
        if h.finished() || kinds.is_empty() {
            return;
        }
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let ticket = h.schedule.acquire(kind.word(), || h.out.glyph(":n")).await;
        if h.finished() {
            return;
        }
        let members: Vec<usize> = h.members().await;
        // Only on a cluster that is whole again: every member processing
        // (a crash loop may still be waiting for its worker to recover).
        let claimed = h
            .cluster({
                let members = members.clone();
                move |c| members.iter().any(|&i| c.is_claimed(&worker_name(i)))
            })
            .await;
        let busy = claimed || super::loops::poll_all_ready(&h, READY_PROBE).await.is_err();
        let planned = match plan(kind, &members, &mut rng, percent) {
            // With --hosts, a fault the hosts' rules cannot make exactly
            // (workers sharing a host) is skipped.
            Some((faults, glyph)) => can_make(&h, &faults)
                .await
                .is_ok()
                .then_some((faults, glyph)),
            None => None,
        };
        match planned {
            Some((faults, glyph)) if !busy => {
                let hold = uniform(&mut rng, t.net_hold_min, t.net_hold_max);
                h.schedule.decide(
                    "net-faults",
                    format!("{} {glyph}", kind.word()),
                    Fault::new(kind.word(), glyph.clone()).hold(hold),
                );
                if !net_fault_once(&h, kind.word(), &faults, &glyph, hold, ticket, || ()).await {
                    return;
                }
            }
            _ => {
                ticket.cancel();
                h.out.glyph(":n");
            }
        }
        sleep(uniform(&mut rng, t.net_gap_min, t.net_gap_max)).await;
    }
}

/// Whether the run can put `faults` in force exactly: always in a lab;
/// with `--hosts`, not when workers sharing a host would have to be cut
/// apart (Err says why). The one check of the loop, triggers and replay.
pub async fn can_make(h: &Harness, faults: &Faults) -> Result<(), String> {
    let faults = faults.clone();
    h.cluster(move |c| c.network_fits(&faults)).await
}

/// Heals every network fault in force (glyph `{H}`).
async fn heal(h: &Harness) -> Result<(), String> {
    h.cluster(|c| c.apply_network(&Faults::default())).await?;
    h.out.event("net-heal", "{H}");
    Ok(())
}

/// Heals the lab's network if anything is cut (after the loops stop, before
/// the final verdict). A failure to heal is an environment error.
pub async fn heal_all(h: &Harness) {
    let cut = h
        .cluster(|c| c.network_faults().is_some_and(|f| !f.is_healed()))
        .await;
    if cut {
        if let Err(e) = heal(h).await {
            h.finish(Outcome::Environment(format!(
                "cannot heal the network: {e}"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plans_cut_what_they_say() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let m = [0, 1, 2, 3];
        let (f, g) = plan(NetFault::Partition, &m, &mut rng, 30).unwrap();
        assert!(g.starts_with("{P:"), "{g}");
        // Every cut is between the halves, both ways; the lab is never cut.
        assert!(!f.cuts.is_empty() && f.cuts.iter().all(|c| c.from != End::Lab));
        let (f, g) = plan(NetFault::Isolate, &m, &mut rng, 30).unwrap();
        assert_eq!(f.cuts.len(), 2 * 4, "{g}");
        let (f, _) = plan(NetFault::OneWay, &m, &mut rng, 30).unwrap();
        assert_eq!(f.cuts.len(), 1);
        let (f, g) = plan(NetFault::Bridge, &m, &mut rng, 30).unwrap();
        let bridge: usize = g.split('|').nth(1).unwrap().parse().unwrap();
        assert!(f
            .cuts
            .iter()
            .all(|c| c.from != node(bridge) && c.to != node(bridge)));
        let (f, _) = plan(NetFault::Flaky, &m, &mut rng, 30).unwrap();
        assert_eq!(f.flaky.values().copied().collect::<Vec<_>>(), vec![30]);
        assert!(plan(NetFault::Partition, &[0], &mut rng, 30).is_none());
        assert!(plan(NetFault::Bridge, &[0, 1], &mut rng, 30).is_none());
    }
}
