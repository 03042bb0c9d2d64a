//! Property tests (a fixed number of cases each): the feeder status file
//! of any content is read or refused, a written one reads back, and any
//! `--target` text is accepted or refused without a panic.

use proptest::prelude::*;

use feeders::status::FeedStatus;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_status_file_of_any_bytes_is_read_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("feeder.A.status");
        std::fs::write(&p, &bytes).unwrap();
        let _ = FeedStatus::read(&p);
    }

    #[test]
    fn a_written_status_reads_back(
        file in "\\PC{0,20}",
        stream_id in any::<u64>(),
        flags in any::<(bool, bool, bool)>(),
        acked in proptest::option::of(any::<u64>()),
        counts in any::<(u64, u64, u64, u64)>(),
        updated_ms in 0u64..10_000_000_000_000,
    ) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("feeder.A.status");
        let s = FeedStatus {
            file,
            stream_id,
            connected: flags.0,
            is_open: flags.1,
            acked,
            sent: counts.0,
            sent_bytes: counts.1 / 2,
            last_line_offset: counts.1,
            done: flags.2,
            notify_rejections: counts.2,
            restarts: counts.3,
            updated_unix: updated_ms as f64 / 1000.0,
        };
        s.write_atomic(&p).unwrap();
        prop_assert_eq!(FeedStatus::read(&p).unwrap(), s);
    }

    #[test]
    fn any_target_text_is_accepted_or_refused(s in "\\PC{0,30}") {
        let _ = feeders::cli::parse_target(&s);
    }
}
