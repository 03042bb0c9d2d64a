//! Property tests (a fixed number of cases each, run with the normal test
//! suite): the txnlog parser and the verifier take whatever a crash or a
//! corrupt file can leave without panicking, and a torn tail never changes
//! what the complete lines say.

use std::path::Path;

use proptest::prelude::*;
use verify::txnlog::{parse_all_bytes, Entry, Record};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    // Quotes, backslashes, commas, brackets and non-ASCII: what JSON-ish
    // encoders get wrong.
    "[a-zA-Z0-9 \"\\\\,\\[\\]:=é\u{1F600}\t]{0,12}"
}

fn arb_record() -> impl Strategy<Value = Record> {
    let range = (0u64..4, any::<u64>(), any::<u64>());
    prop_oneof![
        (arb_string(), prop::collection::vec(range.clone(), 0..3))
            .prop_map(|(txn_id, where_list)| Record::Phase1Ok { txn_id, where_list }),
        (arb_string(), prop::collection::vec(range, 0..3))
            .prop_map(|(txn_id, where_list)| Record::Phase1Rollback { txn_id, where_list }),
        (arb_string(), any::<u64>())
            .prop_map(|(txn_id, offset)| Record::Phase2Ok { txn_id, offset }),
        (arb_string(), any::<u64>())
            .prop_map(|(txn_id, offset)| Record::Phase2Rollback { txn_id, offset }),
        (arb_string(), arb_string())
            .prop_map(|(txn_id, reason)| Record::Phase2Error { txn_id, reason }),
        prop::collection::vec(arb_string(), 0..3)
            .prop_map(|txn_ids| Record::ListUncommitted { txn_ids }),
        arb_string().prop_map(|reason| Record::NextTxnForceAbort { reason }),
        prop::collection::vec(arb_string(), 0..3)
            .prop_map(|workers| Record::WorkersLeft { workers }),
        arb_string().prop_map(|when| Record::Close { when }),
        Just(Record::ConnectionClosed),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn a_txnlog_line_of_any_text_parses_or_is_refused(line in "\\PC{0,80}") {
        let _ = Entry::parse(&line);
    }

    #[test]
    fn a_txnlog_of_any_bytes_parses_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_all_bytes(&bytes, Path::new("t.txnlog"));
    }

    #[test]
    fn every_record_round_trips(record in arb_record(), ms in 0u64..4_000_000_000_000) {
        let e = Entry { time: ms as f64 / 1000.0, record };
        let back = Entry::parse(&e.to_line()).unwrap();
        prop_assert_eq!(back.record, e.record);
    }

    #[test]
    fn a_torn_tail_never_changes_the_complete_lines(
        records in prop::collection::vec(arb_record(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let lines: Vec<String> = records
            .iter()
            .map(|r| Entry { time: 1.5, record: r.clone() }.to_line() + "\n")
            .collect();
        let text = lines.concat().into_bytes();
        let cut = cut.index(text.len() + 1);
        let got = parse_all_bytes(&text[..cut], Path::new("t.txnlog")).unwrap();
        let complete = text[..cut].iter().filter(|&&b| b == b'\n').count();
        prop_assert!(got.len() == complete || got.len() == complete + 1);
        for (g, r) in got.iter().zip(&records) {
            prop_assert_eq!(&g.record, r);
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The verifier over a valid txnlog and output of any bytes: a verdict
    /// or an error, never a panic.
    #[test]
    fn the_verifier_judges_any_output(
        output in prop::collection::vec(any::<u8>(), 0..600),
        ends in prop::collection::vec(0u64..700, 1..4),
        extra in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let t = tempfile::tempdir().unwrap();
        let spec = verify::input::InputSpec { keys: b"A".to_vec(), source_bytes: 400, seed: 1, tcp: false };
        let input = verify::input::write_input_files(t.path(), &spec).unwrap().remove(0);
        let sink = t.path().join("sink");
        std::fs::create_dir(&sink).unwrap();
        let mut log = String::new();
        let mut start = 0;
        for (i, end) in ends.iter().enumerate() {
            let txn_id = format!("t{i}");
            log += &(Entry { time: 1.0 + i as f64, record: Record::Phase1Ok { txn_id: txn_id.clone(), where_list: vec![(1, start, *end)] } }.to_line() + "\n");
            log += &(Entry { time: 1.5 + i as f64, record: Record::Phase2Ok { txn_id, offset: *end } }.to_line() + "\n");
            start = *end;
        }
        let mut log = log.into_bytes();
        log.extend(&extra);
        std::fs::write(sink.join("output.w.txnlog"), log).unwrap();
        std::fs::write(sink.join("output.w"), &output).unwrap();
        let _ = verify::check::check_keys(&sink, [(b'A', input)], false);
    }
}
