//! TCP mode (`--source tcp --sink tcp`): two workers carry the records
//! `crasher blast` sends to `crasher receive`, routed by key over the data
//! links, and keep delivering when the receiver is crashed and restarted.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use procs::wait_until;

const PATIENCE: Duration = Duration::from_secs(20);

fn output(c: &Cluster) -> Vec<u8> {
    std::fs::read(c.path("sink/output")).unwrap_or_default()
}

fn output_len(c: &Cluster) -> u64 {
    std::fs::metadata(c.path("sink/output")).map_or(0, |m| m.len())
}

#[test]
fn two_workers_carry_blasted_records_to_the_receiver() {
    let mut c = Cluster::new_tcp("A,B", 16_000);
    c.start(2);
    let st = c.status("worker1").expect("worker1 answers");
    assert_eq!(st.worker_names, vec!["initializer", "worker1"]);
    let a = std::fs::read(c.input('A')).unwrap();
    let b = std::fs::read(c.input('B')).unwrap();
    // 1000 records of 53 bytes each.
    assert_eq!((a.len(), b.len()), (53_000, 53_000));

    // Key A (65) belongs to worker1 (65 mod 2 = 1): blasted at the
    // initializer, it crosses a data link and leaves through worker1's sink.
    let mut blast = c.blast('A', 0);
    let st = blast.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert!(st.success(), "blast A: {}", c.latest_log("blast.A"));
    let all_a = wait_until(Instant::now() + PATIENCE, || {
        output_len(&c) >= a.len() as u64
    });
    assert!(
        all_a,
        "the receiver got {} of {} bytes; logs in {}",
        output_len(&c),
        a.len(),
        c.root.display()
    );
    assert!(output(&c) == a, "key A's records arrived changed");
    assert!(c
        .latest_log("worker1")
        .contains("tcp sink: worker1 connected to the receiver"));
    assert!(
        !c.latest_log("initializer")
            .contains("connected to the receiver"),
        "the initializer owns no key A record, so it never needed the receiver"
    );

    // Key B (66) belongs to the initializer itself.
    let mut blast = c.blast('B', 0);
    let st = blast.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert!(st.success(), "blast B: {}", c.latest_log("blast.B"));
    let total = (a.len() + b.len()) as u64;
    assert!(
        wait_until(Instant::now() + PATIENCE, || output_len(&c) >= total),
        "the receiver got {} of {total} bytes; logs in {}",
        output_len(&c),
        c.root.display()
    );
    let out = output(&c);
    assert_eq!(out.len() as u64, total, "nothing more, nothing less");
    assert!(out[a.len()..] == b[..], "key B's records arrived changed");
    assert!(c
        .latest_log("initializer")
        .contains("tcp sink: initializer connected to the receiver"));
    c.wait_processing(&c.names(), 2, Duration::from_secs(5));
}

#[test]
fn delivery_resumes_after_the_receiver_restarts() {
    let mut c = Cluster::new_tcp("A", 200_000);
    c.start(2);
    let input = std::fs::metadata(c.input('A')).unwrap().len();
    // 12,500 records in batches of 6, one batch per millisecond: a couple
    // of seconds of sending.
    let mut blast = c.blast('A', 1);
    assert!(
        wait_until(Instant::now() + PATIENCE, || output_len(&c) > 0),
        "nothing arrived; logs in {}",
        c.root.display()
    );
    c.kill_sink();
    let before = output_len(&c);
    assert!(before < input, "the blast finished before the crash");
    c.start_sink();
    let st = blast.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert!(st.success(), "blast: {}", c.latest_log("blast.A"));
    assert!(
        wait_until(Instant::now() + PATIENCE, || output_len(&c) > before),
        "nothing arrived after the receiver restarted; logs in {}",
        c.root.display()
    );
    let log = c.latest_log("worker1");
    assert!(
        log.matches("tcp sink: worker1 connected to the receiver")
            .count()
            >= 2,
        "worker1 never reconnected:\n{log}"
    );
    c.wait_processing(&c.names(), 2, Duration::from_secs(5));
}
