//! Grow and shrink mid-stream: keys migrate between owners without loss,
//! duplicate or reorder; a shrunk worker hands its feeders to the
//! initializer, has its sink files renamed, and exits 0.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use connector::external::ExternalMsg;

#[test]
fn join_then_shrink_mid_stream() {
    let mut c = Cluster::new("A,B,C,D,E,F", 48_000);
    c.start(2);
    // Key F's feeder talks to worker1, which is shrunk away later.
    let w1 = c.workers["worker1"].addrs.source.clone();
    for k in ['A', 'B', 'C', 'D', 'E'] {
        c.feed(k, 40_000);
    }
    c.feed_to('F', 40_000, &w1);
    c.wait_mid_stream(Duration::from_secs(20));

    c.start_worker("worker2", true);
    let names = c.names();
    c.wait_processing(&names, 3, Duration::from_secs(20));
    let st = c.status("initializer").unwrap();
    assert_eq!(st.worker_names, vec!["initializer", "worker1", "worker2"]);
    // Wait for a commit after the join, so the shrink moves keys again mid-stream.
    let before = c.acked('A');
    assert!(procs::wait_until(
        Instant::now() + Duration::from_secs(10),
        || c.acked('A') > before || c.done('A')
    ));

    let reply = c.shrink(&["worker1"]);
    let Some(ExternalMsg::ShrinkResponse(r)) = reply else {
        panic!("shrink: {reply:?}; logs in {}", c.root.display())
    };
    assert_eq!(r.node_names, vec!["worker1"]);
    let status = c
        .workers
        .get_mut("worker1")
        .unwrap()
        .proc
        .wait_deadline(Instant::now() + Duration::from_secs(10))
        .expect("worker1 exits after the shrink");
    assert_eq!(status.code(), Some(0), "worker1 exit status");
    c.workers.remove("worker1");
    let names = c.names();
    c.wait_processing(&names, 2, Duration::from_secs(20));
    assert!(
        c.wait_all_done(Duration::from_secs(40)),
        "feeders not done; logs in {}",
        c.root.display()
    );
    c.assert_complete();
    // The sink renamed the departed worker's files.
    let renamed = std::fs::read_dir(c.path("sink"))
        .unwrap()
        .flatten()
        .any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("output.worker1.") && n.ends_with(".txnlog")
        });
    assert!(
        renamed,
        "no renamed txnlog of worker1 in {}",
        c.root.display()
    );
}

#[test]
fn shrunk_worker_can_join_again() {
    let mut c = Cluster::new("A,B,C", 16_000);
    c.start(3);
    c.feed_all(20_000);
    c.wait_mid_stream(Duration::from_secs(20));
    assert!(matches!(
        c.shrink(&["worker2"]),
        Some(ExternalMsg::ShrinkResponse(_))
    ));
    let w = c.workers.get_mut("worker2").unwrap();
    let status = w
        .proc
        .wait_deadline(Instant::now() + Duration::from_secs(10))
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Back with the same name and resilience dir.
    c.start_worker("worker2", true);
    let names = c.names();
    c.wait_processing(&names, 3, Duration::from_secs(20));
    assert!(c.wait_all_done(Duration::from_secs(40)), "feeders not done");
    c.assert_complete();
}
