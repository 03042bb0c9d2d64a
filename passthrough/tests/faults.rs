//! Crashes mid-stream (SIGKILL of a worker, the initializer, the sink, a
//! feeder), each followed by a restart: every key's committed output must
//! still equal its input exactly: no loss, no duplicate, no reorder.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

const KEYS: &str = "A,B,C,D,E,F";
/// Source bytes per key: about 3,000 lines, 150 kB.
const SOURCE: u64 = 48_000;
/// Feeder rate: each key takes about 3 s, so faults land mid-stream.
const RATE: u64 = 50_000;

fn flowing(n: usize) -> Cluster {
    let mut c = Cluster::new(KEYS, SOURCE);
    c.start(n);
    c.feed_all(RATE);
    c.wait_mid_stream(Duration::from_secs(20));
    c
}

fn finish(c: &Cluster) {
    assert!(
        c.wait_all_done(Duration::from_secs(40)),
        "feeders not done; logs in {}",
        c.root.display()
    );
    c.assert_complete();
}

#[test]
fn worker_killed_and_restarted_one_worker_cluster() {
    let mut c = flowing(1);
    c.kill("initializer");
    c.start_initializer(1);
    finish(&c);
}

#[test]
fn worker_killed_and_restarted_four_workers() {
    let mut c = flowing(4);
    c.kill("worker2");
    c.start_worker("worker2", false);
    let names = c.names();
    c.wait_processing(&names, 4, Duration::from_secs(20));
    finish(&c);
}

#[test]
fn initializer_killed_and_restarted_four_workers() {
    let mut c = flowing(4);
    c.kill("initializer");
    // The harness restarts it as master-crasher did: --worker-count 1; the
    // membership comes from its resilience dir.
    c.start_initializer(1);
    let names = c.names();
    c.wait_processing(&names, 4, Duration::from_secs(20));
    finish(&c);
}

#[test]
fn sink_killed_and_restarted() {
    let mut c = flowing(2);
    c.kill_sink();
    c.start_sink();
    finish(&c);
}

/// A sink that answers NOTIFY as the original aloc_sink (0 after its
/// restart): the workers resume from their own record, not from it.
#[test]
fn sink_answering_like_the_original_killed_and_restarted() {
    let mut c = Cluster::new(KEYS, SOURCE);
    c.sink_args = vec!["--por".into(), "original".into()];
    c.start(2);
    c.feed_all(RATE);
    c.wait_mid_stream(Duration::from_secs(20));
    c.kill_sink();
    c.start_sink();
    c.kill("worker1");
    c.start_worker("worker1", false);
    finish(&c);
}

#[test]
fn feeder_killed_and_restarted() {
    let mut c = flowing(2);
    for k in ['A', 'C'] {
        c.feeders.get_mut(&k).unwrap().kill().unwrap();
    }
    for k in ['A', 'C'] {
        c.feed(k, RATE);
    }
    finish(&c);
}

#[test]
fn repeated_worker_crashes() {
    let mut c = flowing(3);
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0..3 {
        let victim = ["worker1", "initializer", "worker2"][round];
        c.kill(victim);
        if victim == "initializer" {
            c.start_initializer(1);
        } else {
            c.start_worker(victim, false);
        }
        let names = c.names();
        c.wait_processing(&names, 3, Duration::from_secs(20));
        assert!(Instant::now() < deadline);
    }
    finish(&c);
}
