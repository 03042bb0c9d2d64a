//! The lab mechanism end to end: a lab in a private namespace, two nodes
//! that reach each other and the lab over TCP, cuts that block exactly what
//! they say, heals that restore it, and nothing left behind on the host.
//!
//! Needs root and iproute2, nftables and util-linux: without them each test
//! says it is skipped (in CI, `.ci/install-deps` installs nftables and the
//! tests must run).

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use netlab::{all_netns_inodes, End, Faults, Lab, LAB_ADDR};

fn available() -> bool {
    match netlab::preflight() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the lab tests: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// The host namespace's interfaces, routes and ruleset, as text.
fn host_snapshot() -> String {
    netlab::network_snapshot().unwrap()
}

/// Runs `f` on a thread in a fresh network namespace of its own; returns
/// its result and the inodes of every namespace it used.
fn in_private_ns<T: Send>(f: impl FnOnce(&mut BTreeSet<u64>) -> T + Send) -> (T, BTreeSet<u64>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut used = BTreeSet::new();
            used.insert(netlab::netns_inode("thread-self").unwrap());
            let t = f(&mut used);
            (t, used)
        })
        .join()
        .unwrap()
    })
}

/// Whether a TCP connection from `from` (a node, or the lab) to `to` is
/// made within `limit`.
fn connects_within(lab: &Lab, from: Option<&str>, to: SocketAddr, limit: Duration) -> bool {
    let go = move || TcpStream::connect_timeout(&to, limit).is_ok();
    match from {
        None => go(),
        Some(n) => lab.in_node(n, go).unwrap(),
    }
}

/// Whether the connection is made, waiting long enough that a loaded
/// machine does not turn a slow "yes" into a "no".
fn connects(lab: &Lab, from: Option<&str>, to: SocketAddr) -> bool {
    connects_within(lab, from, to, Duration::from_secs(5))
}

/// Whether no connection is made in 500 ms: a cut drops the SYN, so it
/// times out (a real cut stays a "no" however long one waits).
fn blocked(lab: &Lab, from: Option<&str>, to: SocketAddr) -> bool {
    !connects_within(lab, from, to, Duration::from_millis(500))
}

#[test]
fn nodes_talk_cuts_block_heals_restore_and_nothing_is_left() {
    if !available() {
        return;
    }
    let before = host_snapshot();
    let ((), used) = in_private_ns(|used| {
        let mut lab = Lab::create(&[("CRASHER_RUN_ID", "netlab-test")]).unwrap();
        let a = lab.add_node("a", 0).unwrap().addr;
        let b = lab.add_node("b", 1).unwrap().addr;
        for n in lab.nodes() {
            used.insert(netlab::netns_inode(&n.holder_pid().to_string()).unwrap());
        }
        // A listener in each node and one in the lab, all kept open.
        let la = lab
            .in_node("a", || TcpListener::bind((a, 0)).unwrap())
            .unwrap();
        let lb = lab
            .in_node("b", || TcpListener::bind((b, 0)).unwrap())
            .unwrap();
        let ll = TcpListener::bind((LAB_ADDR, 0)).unwrap();
        let (pa, pb, pl) = (
            la.local_addr().unwrap(),
            lb.local_addr().unwrap(),
            ll.local_addr().unwrap(),
        );
        assert!(connects(&lab, Some("a"), pb), "a -> b");
        assert!(connects(&lab, Some("b"), pa), "b -> a");
        assert!(connects(&lab, None, pa), "lab -> a");
        assert!(connects(&lab, Some("b"), pl), "b -> lab");

        // Both ways between a and b: each is blocked, the lab still reaches both.
        let mut f = Faults::default();
        f.cut_both(&End::Node("a".into()), &End::Node("b".into()));
        lab.apply(&f).unwrap();
        assert!(blocked(&lab, Some("a"), pb), "a -> b cut");
        assert!(blocked(&lab, Some("b"), pa), "b -> a cut");
        assert!(connects(&lab, None, pa) && connects(&lab, None, pb));

        // One way: a's packets to b are dropped (so no handshake either way),
        // the lab still reaches both.
        let mut f = Faults::default();
        f.cuts.insert(netlab::Cut {
            from: End::Node("a".into()),
            to: End::Node("b".into()),
        });
        lab.apply(&f).unwrap();
        assert!(blocked(&lab, Some("a"), pb), "a -> b one-way cut");
        assert!(connects(&lab, Some("a"), pl), "a -> lab");

        // Isolation from the lab.
        let mut f = Faults::default();
        f.cut_both(&End::Node("b".into()), &End::Lab);
        lab.apply(&f).unwrap();
        assert!(blocked(&lab, None, pb), "lab -> b cut");
        assert!(blocked(&lab, Some("b"), pl), "b -> lab cut");
        assert!(connects(&lab, Some("a"), pb), "a -> b still up");

        // Flaky at 100%: nothing passes; at 0 after heal everything does.
        let mut f = Faults::default();
        f.flaky.insert("a".into(), 100);
        lab.apply(&f).unwrap();
        assert!(blocked(&lab, None, pa), "flaky 100% drops all");

        lab.heal().unwrap();
        assert!(lab.faults().is_healed());
        assert!(connects(&lab, Some("a"), pb) && connects(&lab, Some("b"), pa));
        assert!(connects(&lab, None, pa) && connects(&lab, Some("b"), pl));
        drop((la, lb, ll));
    });
    let now = all_netns_inodes();
    let left: Vec<_> = used.intersection(&now).collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert_eq!(before, host_snapshot(), "the host's network changed");
}

#[test]
fn a_namespace_with_interfaces_is_refused() {
    if !available() {
        return;
    }
    let ((), _) = in_private_ns(|_| {
        let out = Command::new(netlab::which("ip").unwrap())
            .args(["link", "add", "x0", "type", "veth", "peer", "name", "x1"])
            .status()
            .unwrap();
        assert!(out.success());
        let err = Lab::create(&[]).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
    });
}

/// A namespace kept only by an open file (no process in it) is still
/// found, with the process holding the file; once the file is closed it
/// is gone.
#[test]
fn a_namespace_kept_by_an_open_file_is_found() {
    if !available() {
        return;
    }
    let me = std::process::id();
    let ours = netlab::netns_inode("self").unwrap();
    assert!(netlab::netns_holders()[&ours].contains(&me));
    let (file, used) = in_private_ns(|_| std::fs::File::open("/proc/thread-self/ns/net").unwrap());
    let ino = *used.first().unwrap();
    // The thread that was in it has ended: only the file keeps it.
    let holders = netlab::netns_holders();
    assert_eq!(
        holders.get(&ino),
        Some(&BTreeSet::from([me])),
        "{holders:?}"
    );
    assert!(all_netns_inodes().contains(&ino));
    drop(file);
    assert!(!all_netns_inodes().contains(&ino));
}
