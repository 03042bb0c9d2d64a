//! Property tests (a fixed number of cases each): triage's chunker finds
//! every alarm word on its line whatever the line lengths (chunk
//! boundaries included), its time parser takes any bytes, and run records
//! and event logs of any content are read or refused, never a panic.

use proptest::prelude::*;
use triage::scan::{scan_file, Kind, Needles};
use triage::timeline::FaultWindows;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const MIB: usize = 1 << 20;

proptest! {
    #![proptest_config(config(16))]

    /// Lines of lengths around the 1 MiB chunk size, one alarm word put at
    /// any position of any line: found once, on that line; lines counted.
    #[test]
    fn an_alarm_word_is_found_on_its_line_whatever_the_line_lengths(
        lens in prop::collection::vec(prop_oneof![0usize..200, (MIB - 40)..(MIB + 40), (2 * MIB - 20)..(2 * MIB + 20)], 1..4),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        word in prop::sample::select(vec!["FATAL boom", "ERROR bad", "CRITICAL x"]),
        final_newline in any::<bool>(),
    ) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("w.log");
        let line = which.index(lens.len());
        let mut text = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let mut l = vec![b'x'; len];
            if i == line {
                let pos = at.index(len + 1);
                l.splice(pos..pos, word.bytes());
            }
            text.extend(l);
            if i + 1 < lens.len() || final_newline {
                text.push(b'\n');
            }
        }
        std::fs::write(&p, &text).unwrap();
        let s = scan_file(&p, "w.log", &Needles::default(), &FaultWindows::default());
        prop_assert_eq!(s.damaged, None);
        // An empty last line without a newline after it is no line.
        let empty_last = !final_newline && lens.last() == Some(&0) && line + 1 != lens.len();
        prop_assert_eq!(s.lines, lens.len() as u64 - u64::from(empty_last));
        prop_assert_eq!(s.bytes, text.len() as u64);
        let found: Vec<(u64, Kind, u64)> = s.signatures.values().map(|o| (o.example.line, o.kind, o.count)).collect();
        prop_assert_eq!(found.len(), 1, "{:?}", found);
        prop_assert_eq!(found[0].0, line as u64 + 1);
        prop_assert_eq!(found[0].2, 1);
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn the_time_parser_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = triage::time::parse_prefix(&bytes);
        let _ = triage::time::line_time(&bytes);
    }

    #[test]
    fn the_time_parser_takes_anything_that_looks_like_a_time(s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}([.,][0-9]{0,9})?(Z|[+-][0-9]{2}:?[0-9]{2})? .{0,5}") {
        if let Some((t, n)) = triage::time::parse_prefix(s.as_bytes()) {
            prop_assert!(t.is_finite());
            prop_assert!(n <= s.len());
        }
    }

    #[test]
    fn formatted_times_parse_back(ms in 0i64..8_000_000_000_000) {
        let t = ms as f64 / 1000.0;
        let text = triage::time::format_utc(t);
        let (back, _) = triage::time::parse_prefix(text.as_bytes()).unwrap();
        prop_assert!((back - t).abs() < 0.002, "{} -> {} -> {}", t, text, back);
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn a_run_record_of_any_bytes_is_read_or_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        events in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(triage::record::FILE);
        std::fs::write(&p, &bytes).unwrap();
        std::fs::write(t.path().join(triage::record::EVENTS_FILE), &events).unwrap();
        let _ = triage::record::RunRecord::read(&p);
        let _ = triage::record::read_events(&t.path().join(triage::record::EVENTS_FILE));
    }

    #[test]
    fn a_run_record_with_any_field_values_round_trips(
        run_id in "\\PC{0,20}",
        seed in any::<u64>(),
        args in prop::collection::vec("\\PC{0,10}", 0..4),
        verdict in "\\PC{0,10}",
        exit in proptest::option::of(any::<u8>()),
        texts in prop::collection::vec(("[a-z]{1,8}", "\\PC{0,20}"), 0..5),
    ) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(triage::record::FILE);
        let rec = triage::record::RunRecord {
            run_id,
            seed,
            args,
            verdict,
            exit_code: exit,
            events: texts
                .into_iter()
                .enumerate()
                .map(|(i, (kind, text))| triage::record::Event { t: i as f64, kind, text })
                .collect(),
            ..triage::record::RunRecord::default()
        };
        rec.write_atomic(&p).unwrap();
        prop_assert_eq!(triage::record::RunRecord::read(&p).unwrap(), rec);
    }
}
