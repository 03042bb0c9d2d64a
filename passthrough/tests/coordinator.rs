//! The coordinator alone, driven through its event channel by scripted
//! workers (no processes, no sink): the cases too narrow to hit from
//! outside, around a shrink whose leaver has voted but has not proven its
//! phase 2 when it (or the coordinator) is SIGKILLed.
//!
//! The leaver's output of the shrink checkpoint sits in a pending `1-ok`
//! at the sink until the leaver itself sends PHASE2. Until it has, no
//! later checkpoint may commit: the leaver's reset must still say its
//! shrink transaction is the last committed one (else it aborts it and
//! the committed lines of the keys it owned are lost), and the new owners'
//! lines of those keys must commit after the leaver's (else they are
//! reordered).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use passthrough::coord::{CoordConfig, CoordEvent, Coordinator};
use passthrough::ctl::{txn_id, ToCoord, ToWorker};
use passthrough::external::View;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(20);
/// How long the cluster is watched for a checkpoint that must not happen
/// (many checkpoint intervals).
const QUIET: Duration = Duration::from_millis(400);
const LIMIT: Duration = Duration::from_secs(10);

/// Everything the scripted workers received, in order, with the receiver.
type Log = Arc<Mutex<Vec<(String, ToWorker)>>>;

/// A scripted worker: answers resets, checkpoints and decisions like a
/// healthy one, except that with `silent_on_leave` it never proves its
/// phase 2 of the checkpoint that shrinks it away (it is about to be
/// killed).
struct Fake {
    task: JoinHandle<()>,
    conn: u64,
}

fn start_fake(
    events: &mpsc::Sender<CoordEvent>,
    log: &Log,
    name: &str,
    conn: u64,
    silent_on_leave: bool,
) -> Fake {
    let (tx, mut rx) = mpsc::unbounded_channel::<ToWorker>();
    let ev = events.clone();
    let log = log.clone();
    let me = name.to_string();
    let hello = CoordEvent::Hello {
        conn,
        tx,
        name: me.clone(),
        join: false,
        data: format!("127.0.0.1:{}", 9000 + conn),
        source: format!("127.0.0.1:{}", 8000 + conn),
        instance: conn,
    };
    let task = tokio::spawn(async move {
        if ev.send(hello).await.is_err() {
            return;
        }
        let mut leaving_at = None;
        while let Some(m) = rx.recv().await {
            log.lock().unwrap().push((me.clone(), m.clone()));
            if let ToWorker::Checkpoint { c, next, .. } = &m {
                if !next.contains(&me) {
                    leaving_at = Some(*c);
                }
            }
            let reply = match m {
                ToWorker::Reset { gen, .. } => vec![ToCoord::Ready { gen }],
                ToWorker::Checkpoint {
                    gen, c, members, ..
                } if members.contains(&me) => vec![
                    ToCoord::Report {
                        gen,
                        c,
                        positions: vec![(7, c)],
                    },
                    ToCoord::Vote {
                        gen,
                        c,
                        commit: true,
                    },
                ],
                ToWorker::Decide { c, .. } if silent_on_leave && leaving_at == Some(c) => vec![],
                ToWorker::Decide { gen, c } => vec![ToCoord::Done { gen, c }],
                _ => vec![],
            };
            for msg in reply {
                let m = CoordEvent::Msg {
                    name: me.clone(),
                    conn,
                    msg,
                };
                if ev.send(m).await.is_err() {
                    return;
                }
            }
        }
    });
    Fake { task, conn }
}

fn coordinator(dir: &std::path::Path) -> (mpsc::Sender<CoordEvent>, JoinHandle<()>) {
    let coord = Coordinator::new(
        CoordConfig {
            me: "initializer".into(),
            dir: dir.to_owned(),
            worker_count: 3,
            interval: INTERVAL,
            source: "127.0.0.1:8000".into(),
        },
        Arc::new(View::default()),
    )
    .expect("coordinator state");
    let (tx, rx) = mpsc::channel(1024);
    (tx, tokio::spawn(coord.run(rx)))
}

/// Waits until the log holds, at `from` or later, a message matching `f`;
/// returns its index.
async fn wait_for(
    log: &Log,
    from: usize,
    what: &str,
    f: impl Fn(&str, &ToWorker) -> bool,
) -> usize {
    let deadline = Instant::now() + LIMIT;
    loop {
        let found = log.lock().unwrap()[from..]
            .iter()
            .position(|(n, m)| f(n, m));
        if let Some(i) = found {
            return from + i;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log: {:#?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A cluster of initializer, worker1, worker2 processing, then a shrink of
/// worker2 whose decision is sent but whose phase 2 worker2 never proves.
/// Returns the shrink checkpoint and epoch.
async fn shrink_until_decided(
    events: &mpsc::Sender<CoordEvent>,
    log: &Log,
    fakes: &mut Vec<(String, Fake)>,
) -> (u64, u64) {
    for (i, n) in ["initializer", "worker1", "worker2"].iter().enumerate() {
        let f = start_fake(events, log, n, i as u64, *n == "worker2");
        fakes.push((n.to_string(), f));
    }
    for n in ["initializer", "worker1", "worker2"] {
        wait_for(log, 0, &format!("{n} processing"), |w, m| {
            w == n && matches!(m, ToWorker::Resume { .. })
        })
        .await;
    }
    let (reply, _answer) = oneshot::channel();
    events
        .send(CoordEvent::Shrink {
            names: vec!["worker2".into()],
            reply,
        })
        .await
        .unwrap();
    let i = wait_for(log, 0, "the shrink checkpoint", |w, m| {
        w == "worker2"
            && matches!(m, ToWorker::Checkpoint { next, .. } if !next.contains(&"worker2".to_string()))
    })
    .await;
    let ToWorker::Checkpoint { c, epoch, next, .. } = log.lock().unwrap()[i].1.clone() else {
        unreachable!()
    };
    assert_eq!(next, vec!["initializer".to_string(), "worker1".into()]);
    wait_for(log, i, "the shrink decision", |w, m| {
        w == "worker2" && matches!(m, ToWorker::Decide { c: cc, .. } if *cc == c)
    })
    .await;
    (c, epoch)
}

/// Checkpoints decided after log index `from`.
fn decides_after(log: &Log, from: usize) -> Vec<(String, u64)> {
    log.lock().unwrap()[from..]
        .iter()
        .filter_map(|(n, m)| match m {
            ToWorker::Decide { c, .. } => Some((n.clone(), *c)),
            _ => None,
        })
        .collect()
}

/// What worker2 must be told when it comes back: its shrink transaction
/// is the last committed one, then leave; and it is never routed to again.
async fn leaver_resolves_then_leaves(log: &Log, from: usize, c: u64, epoch: u64) {
    let i = wait_for(log, from, "worker2's reset", |w, m| {
        w == "worker2" && matches!(m, ToWorker::Reset { .. })
    })
    .await;
    let ToWorker::Reset { last_txn, .. } = log.lock().unwrap()[i].1.clone() else {
        unreachable!()
    };
    assert_eq!(
        last_txn.as_deref(),
        Some(txn_id("worker2", epoch, c).as_str()),
        "worker2 must commit its pending shrink transaction, not abort it"
    );
    wait_for(log, i, "worker2 told to leave", |w, m| {
        w == "worker2" && matches!(m, ToWorker::Leave { .. })
    })
    .await;
    // The cluster goes on without it.
    let later = wait_for(log, i, "a checkpoint after the shrink", |w, m| {
        w == "initializer" && matches!(m, ToWorker::Decide { c: cc, .. } if *cc > c)
    })
    .await;
    for (n, m) in log.lock().unwrap()[from..=later].iter() {
        if let ToWorker::Checkpoint { next, members, .. } = m {
            assert!(
                !next.contains(&"worker2".to_string()) && !members.contains(&"worker2".into()),
                "worker2 was shrunk away but is routed to again (sent to {n}): {m:?}"
            );
        }
    }
}

#[tokio::test]
async fn leaver_killed_before_its_phase2_holds_back_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let (events, coord) = coordinator(dir.path());
    let mut fakes = Vec::new();
    let (c, epoch) = shrink_until_decided(&events, &log, &mut fakes).await;

    // SIGKILL worker2: its connection ends.
    let (_, w2) = fakes.pop().unwrap();
    w2.task.abort();
    let lost_at = log.lock().unwrap().len();
    events
        .send(CoordEvent::Gone {
            name: "worker2".into(),
            conn: w2.conn,
        })
        .await
        .unwrap();
    wait_for(&log, lost_at, "the rollback", |w, m| {
        w == "worker1" && matches!(m, ToWorker::Reset { .. })
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let early = decides_after(&log, lost_at);
    assert!(
        early.is_empty(),
        "checkpoints committed while worker2's shrink transaction was unresolved: {early:?}"
    );

    // worker2 restarts (same name, new connection).
    let back_at = log.lock().unwrap().len();
    let f = start_fake(&events, &log, "worker2", 7, false);
    fakes.push(("worker2".into(), f));
    leaver_resolves_then_leaves(&log, back_at, c, epoch).await;
    coord.abort();
}

#[tokio::test]
async fn coordinator_restarted_after_a_shrink_decision_still_waits_for_the_leaver() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let (events, coord) = coordinator(dir.path());
    let mut fakes = Vec::new();
    let (c, epoch) = shrink_until_decided(&events, &log, &mut fakes).await;

    // SIGKILL the initializer: the coordinator and every connection go.
    coord.abort();
    let _ = coord.await;
    for (_, f) in fakes.drain(..) {
        f.task.abort();
    }
    let restart_at = log.lock().unwrap().len();
    let (events, coord) = coordinator(dir.path());
    // Connection 0 is the initializer's own worker.
    for (conn, n) in [(0, "initializer"), (11, "worker1")] {
        let f = start_fake(&events, &log, n, conn, false);
        fakes.push((n.to_string(), f));
    }
    wait_for(
        &log,
        restart_at,
        "worker1 reset by the new coordinator",
        |w, m| w == "worker1" && matches!(m, ToWorker::Reset { .. }),
    )
    .await;
    tokio::time::sleep(QUIET).await;
    let early: HashSet<_> = log.lock().unwrap()[restart_at..]
        .iter()
        .filter(|(_, m)| matches!(m, ToWorker::Resume { .. } | ToWorker::Decide { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        early.is_empty(),
        "the new coordinator resumed before worker2 resolved its shrink transaction: {early:?}"
    );

    // worker2 reconnects (it was never told to leave).
    let back_at = log.lock().unwrap().len();
    let f = start_fake(&events, &log, "worker2", 20, false);
    fakes.push(("worker2".into(), f));
    leaver_resolves_then_leaves(&log, back_at, c, epoch).await;
    coord.abort();
}
