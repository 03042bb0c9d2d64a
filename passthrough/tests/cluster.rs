//! Ten keys through one worker and through four: every key's committed
//! output must equal its input, and the external API must describe the
//! cluster.

mod common;

use std::time::Duration;

use common::Cluster;
use connector::external::ExternalMsg;

const KEYS: &str = "A,B,C,D,E,F,G,H,I,J";

#[test]
fn ten_keys_through_one_worker() {
    let mut c = Cluster::new(KEYS, 16_000);
    c.start(1);
    c.feed_all(0);
    assert!(c.wait_all_done(Duration::from_secs(30)), "feeders not done");
    c.assert_complete();
}

#[test]
fn ten_keys_through_four_workers() {
    let mut c = Cluster::new(KEYS, 16_000);
    c.start(4);
    let st = c.status("worker2").expect("worker2 answers");
    assert_eq!(
        st.worker_names,
        vec!["initializer", "worker1", "worker2", "worker3"]
    );
    c.feed_all(0);
    assert!(c.wait_all_done(Duration::from_secs(30)), "feeders not done");
    c.assert_complete();
    // Every worker owned some keys: each has committed output.
    for w in c.names() {
        let out = std::fs::metadata(c.path(&format!("sink/output.{w}"))).unwrap();
        assert!(out.len() > 0, "{w} wrote nothing");
    }
    // Shrink queries: everybody but the initializer is eligible.
    let q = c.external(
        "initializer",
        &ExternalMsg::Shrink(connector::external::ShrinkRequest {
            query: true,
            node_names: vec![],
            node_count: 0,
        }),
    );
    let Some(ExternalMsg::ShrinkResponse(r)) = q else {
        panic!("{q:?}")
    };
    assert_eq!(r.node_names, vec!["worker1", "worker2", "worker3"]);
    // The initializer cannot be shrunk; a stranger is not a member.
    assert!(matches!(
        c.shrink(&["initializer"]),
        Some(ExternalMsg::ShrinkError(_))
    ));
    assert!(matches!(
        c.shrink(&["worker9"]),
        Some(ExternalMsg::ShrinkError(_))
    ));
    // Shrink requests go to the initializer.
    assert!(matches!(
        c.external(
            "worker1",
            &ExternalMsg::Shrink(connector::external::ShrinkRequest {
                query: true,
                node_names: vec![],
                node_count: 0,
            })
        ),
        Some(ExternalMsg::ShrinkError(_))
    ));
    // Wallaroo's count form removes the most recently added worker.
    let by_count = c.external(
        "initializer",
        &ExternalMsg::Shrink(connector::external::ShrinkRequest {
            query: false,
            node_names: vec![],
            node_count: 1,
        }),
    );
    let Some(ExternalMsg::ShrinkResponse(r)) = by_count else {
        panic!("{by_count:?}")
    };
    assert_eq!(r.node_names, vec!["worker3"]);
}

#[test]
fn not_initialized_until_the_cluster_forms() {
    let mut c = Cluster::new("A", 1_000);
    c.start_sink();
    c.start_initializer(2);
    // One of two workers: not initialized yet.
    assert_eq!(
        c.external("initializer", &ExternalMsg::ClusterStatusQuery),
        Some(ExternalMsg::NotInitialized)
    );
    c.start_worker("worker1", false);
    let names = c.names();
    c.wait_processing(&names, 2, Duration::from_secs(20));
}
