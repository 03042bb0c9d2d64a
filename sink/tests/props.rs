//! Property tests (a fixed number of cases each): the sink's recovery and
//! its abort-rules parser take anything without panicking, and recovery's
//! answers are self-consistent.

use std::path::Path;

use proptest::prelude::*;
use sink::recovery::analyze;
use verify::txnlog::{Entry, Record};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_record() -> impl Strategy<Value = Record> {
    let txn = "t[0-3]";
    let range = (0u64..3, 0u64..100, 0u64..100);
    prop_oneof![
        (txn, prop::collection::vec(range.clone(), 0..3))
            .prop_map(|(txn_id, where_list)| Record::Phase1Ok { txn_id, where_list }),
        (txn, prop::collection::vec(range, 0..3))
            .prop_map(|(txn_id, where_list)| Record::Phase1Rollback { txn_id, where_list }),
        (txn, 0u64..100).prop_map(|(txn_id, offset)| Record::Phase2Ok { txn_id, offset }),
        (txn, 0u64..100).prop_map(|(txn_id, offset)| Record::Phase2Rollback { txn_id, offset }),
        Just(Record::NextTxnForceAbort {
            reason: "gap".into()
        }),
        Just(Record::ConnectionClosed),
    ]
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn recovery_of_any_record_sequence_is_an_answer_or_a_named_inconsistency(
        records in prop::collection::vec(arb_record(), 0..12)
    ) {
        let entries: Vec<Entry> = records.into_iter().map(|record| Entry { time: 1.0, record }).collect();
        if let Ok(r) = analyze(&entries) {
            prop_assert!(r.pending.len() <= 1);
            match r.pending.first() {
                Some(p) if p.vote => {
                    prop_assert_eq!(Some(r.truncate_to), p.end_por().map(|e| e.max(r.last_committed)))
                }
                _ => prop_assert_eq!(r.truncate_to, r.last_committed),
            }
        }
    }

    #[test]
    fn abort_rules_of_any_text_parse_or_are_refused(text in "\\PC{0,200}") {
        let _ = sink::rules::Rules::parse(&text, Path::new("rules.txt"));
    }

    #[test]
    fn abort_rules_of_rule_like_text_parse_or_are_refused(
        lines in prop::collection::vec("(#.*|[a-z_ =0-9\\-.\"*]{0,30})", 0..8)
    ) {
        let _ = sink::rules::Rules::parse(&lines.join("\n"), Path::new("rules.txt"));
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Reopening a worker's files over any txnlog bytes: entries, or a
    /// txnlog error (CRITICAL, exit 66), never a panic or an I/O error; a
    /// torn tail is cut and reopening again finds a clean file.
    #[test]
    fn reopening_over_any_txnlog_bytes_recovers_or_names_the_line(
        good in prop::collection::vec(arb_record(), 0..4),
        tail in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let t = tempfile::tempdir().unwrap();
        let prefix = t.path().join("output");
        let mut bytes: Vec<u8> = good
            .iter()
            .flat_map(|r| (Entry { time: 2.0, record: r.clone() }.to_line() + "\n").into_bytes())
            .collect();
        bytes.extend(&tail);
        std::fs::write(sink::store::txnlog_path(&prefix, "w"), &bytes).unwrap();
        match sink::store::WorkerFiles::open(&prefix, "w") {
            Ok(o) => {
                prop_assert!(o.entries.len() >= good.len());
                drop(o);
                let again = sink::store::WorkerFiles::open(&prefix, "w").unwrap();
                prop_assert_eq!(again.torn_bytes, 0);
            }
            Err(e) => prop_assert!(matches!(e, sink::store::StoreError::Txnlog(_)), "{}", e),
        }
    }
}

/// A sink served in this process for the session property below.
struct LiveSink {
    addr: std::net::SocketAddr,
    shared: std::sync::Arc<sink::server::Shared>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn live_sink() -> &'static LiveSink {
    static SINK: std::sync::OnceLock<LiveSink> = std::sync::OnceLock::new();
    SINK.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config = sink::server::Config {
            prefix: dir.path().join("output"),
            cookie: connector::DEFAULT_COOKIE.into(),
            rules: sink::rules::Rules::none(),
            por: sink::server::PorMode::default(),
        };
        let server = rt
            .block_on(sink::server::Server::bind(
                "127.0.0.1:0".parse().unwrap(),
                config,
            ))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shared = server.shared().clone();
        rt.spawn(server.run());
        LiveSink {
            addr,
            shared,
            _rt: rt,
            _dir: dir,
        }
    })
}

fn hello(name: &str) -> Vec<u8> {
    connector::codec::encode_to_bytes(&connector::Frame::Hello {
        version: connector::SINK_VERSION.into(),
        cookie: connector::DEFAULT_COOKIE.into(),
        program_name: "Passthrough".into(),
        instance_name: name.into(),
    })
    .unwrap()
    .to_vec()
}

proptest! {
    #![proptest_config(config(128))]

    /// The session state machine against garbage, before or after a valid
    /// HELLO: the connection ends (the sink closes it), and the sink is
    /// neither halted nor unable to serve the next worker.
    #[test]
    fn garbage_from_a_peer_ends_its_session_never_the_sink(
        after_hello in any::<bool>(),
        garbage in prop::collection::vec(any::<u8>(), 1..200),
        n in any::<u32>(),
    ) {
        use std::io::{Read, Write};
        let s = live_sink();
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        if after_hello {
            c.write_all(&hello(&format!("g{n}"))).unwrap();
        }
        let _ = c.write_all(&garbage);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut sink_said = Vec::new();
        // Ends with EOF or a reset: a read timeout would be a hung session.
        if let Err(e) = c.read_to_end(&mut sink_said) {
            prop_assert!(e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut, "{}", e);
        }
        prop_assert!(!s.shared.halted());
        // The next worker is still served.
        let mut next = std::net::TcpStream::connect(s.addr).unwrap();
        next.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        next.write_all(&hello(&format!("ok{n}"))).unwrap();
        let mut first = [0u8; 4];
        next.read_exact(&mut first).unwrap();
    }
}
