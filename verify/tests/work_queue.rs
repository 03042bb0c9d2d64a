//! The work-queue modes on crafted sink directories: every input line once
//! (or at least once), in any order, nothing else; missing lines only after
//! the grace, or at the end.

use std::path::PathBuf;

use verify::check::{check_keys_with, CheckOptions, Class, KeyStatus, Mode};
use verify::fixture::FakeWorker;
use verify::incremental::IncrementalVerifier;
use verify::input::{write_input_files, InputSpec};
use verify::VerifyError;

/// Commit times of the crafted txnlogs (Unix seconds).
const T: f64 = 1_000_000.0;

struct Setup {
    _tmp: tempfile::TempDir,
    sink: PathBuf,
    input: PathBuf,
    input_b: PathBuf,
    /// Key A's input lines, with their newlines (200 rows + the final line).
    a: Vec<Vec<u8>>,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let sink = tmp.path().join("sink-out");
        std::fs::create_dir(&sink).unwrap();
        let spec = InputSpec {
            keys: b"AB".to_vec(),
            source_bytes: 200 * 16,
            seed: 9,
            tcp: false,
        };
        let mut paths = write_input_files(tmp.path(), &spec).unwrap();
        let input_b = paths.remove(1);
        let input = paths.remove(0);
        let a = std::fs::read(&input)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        Setup {
            _tmp: tmp,
            sink,
            input,
            input_b,
            a,
        }
    }

    fn worker(&self, name: &str) -> FakeWorker {
        FakeWorker::new(&self.sink, name).unwrap()
    }

    /// Key A's lines `idx`, concatenated.
    fn cat(&self, idx: impl IntoIterator<Item = usize>) -> Vec<u8> {
        idx.into_iter().flat_map(|i| self.a[i].clone()).collect()
    }

    /// Commits `out` as one transaction of `worker` at time `time`.
    fn commit(&self, worker: &str, out: &[u8], time: f64) {
        let mut w = self.worker(worker);
        w.write(out).unwrap();
        w.commit(time).unwrap();
    }

    fn check_at(&self, mode: Mode, complete: bool, now: f64) -> KeyStatus {
        let opts = CheckOptions {
            complete,
            mode,
            now: Some(now),
            ..CheckOptions::default()
        };
        check_keys_with(&self.sink, [(b'A', self.input.clone())], &opts)
            .unwrap()
            .remove(0)
    }

    fn check(&self, mode: Mode, complete: bool) -> KeyStatus {
        self.check_at(mode, complete, T + 1.0)
    }

    fn incremental(&self, mode: Mode) -> IncrementalVerifier {
        IncrementalVerifier::new(&self.sink, [(b'A', self.input.clone())])
            .unwrap()
            .with_mode(mode)
    }

    fn n(&self) -> usize {
        self.a.len()
    }
}

const WQ: Mode = Mode::WorkQueue;
const WQ_ALO: Mode = Mode::WorkQueueAtLeastOnce;

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into_owned()
}

#[test]
fn the_exact_input_holds_in_every_mode() {
    let s = Setup::new();
    // Key B's lines interleaved: they are not key A's.
    let b = std::fs::read(&s.input_b).unwrap();
    let mut w = s.worker("worker1");
    w.write(&s.cat(0..100)).unwrap();
    w.write(&b[..490]).unwrap();
    w.commit(T).unwrap();
    w.write(&s.cat(100..s.n())).unwrap();
    w.commit(T + 0.5).unwrap();
    for mode in [Mode::ExactlyOnce, Mode::AtLeastOnce, WQ, WQ_ALO] {
        let st = s.check(mode, true);
        assert!(st.holds(), "{mode:?}: {st:?}");
        assert_eq!(st.verified_bytes, st.input_bytes, "{mode:?}");
        assert_eq!(st.committed_lines, s.n() as u64, "{mode:?}");
    }
    let st = s.check(WQ, true);
    let wq = st.work_queue.unwrap();
    assert_eq!(
        (wq.input_lines, wq.distinct_lines, wq.holes, wq.missing),
        (s.n() as u64, s.n() as u64, 0, 0)
    );
    assert!(s.check(Mode::ExactlyOnce, false).work_queue.is_none());
}

#[test]
fn reordered_lines_hold_in_work_queue_but_not_exactly_once() {
    let s = Setup::new();
    let mut idx: Vec<usize> = (0..s.n()).collect();
    // Reverse every block of 7, and swap two far-apart lines.
    for c in idx.chunks_mut(7) {
        c.reverse();
    }
    idx.swap(3, 150);
    // Spread over two workers.
    let (even, odd): (Vec<usize>, Vec<usize>) = idx.iter().partition(|&&i| i % 2 == 0);
    s.commit("worker1", &s.cat(odd), T);
    s.commit("worker2", &s.cat(even), T + 0.25);
    for mode in [WQ, WQ_ALO] {
        let st = s.check(mode, true);
        assert!(st.holds(), "{mode:?}: {st:?}");
        assert_eq!(st.verified_bytes, st.input_bytes);
        assert_eq!(st.duplicates, 0);
    }
    let v = s
        .check(Mode::ExactlyOnce, false)
        .violation
        .expect("order is promised in exactly-once");
    assert!(matches!(v.class, Class::Reordered | Class::Missing), "{v}");
}

#[test]
fn a_duplicate_is_a_violation_in_work_queue_and_counted_in_at_least_once() {
    let s = Setup::new();
    // 0..10, then 3 and 7 again (a redelivery), then 10..20.
    let first = s.cat(0..10);
    s.commit("worker1", &first, T);
    let again = s.cat([3, 7, 3]);
    s.commit("worker2", &again, T + 1.0);
    s.commit("worker1", &s.cat(10..20), T + 2.0);

    let st = s.check(WQ, false);
    let v = st.violation.clone().expect("duplicates");
    assert_eq!(v.class, Class::Duplicate);
    assert_eq!(v.input_line, 4);
    assert_eq!(v.output_offset, first.len() as u64);
    assert_eq!(v.found.as_deref(), Some(text(&s.a[3]).as_str()));
    let r = v.work_queue.as_ref().unwrap();
    assert_eq!(r.duplicates.count, 3);
    let d = &r.duplicates.first;
    assert_eq!(
        d.iter().map(|n| n.input_line).collect::<Vec<_>>(),
        vec![4, 8, 4]
    );
    assert_eq!(d[1].text, text(&s.a[7]));
    assert_eq!(d[1].input_byte, 7 * 49);
    assert_eq!(
        d[1].sink_file.as_ref().unwrap(),
        &s.sink.join("output.worker2")
    );
    assert_eq!(d[1].sink_offset, Some(49));
    let shown = format!("VIOLATION: {v}");
    assert!(
        shown.starts_with("VIOLATION: key A: duplicate (input line 4)\n"),
        "{shown}"
    );
    assert!(shown.contains("duplicate: 3 committed copies"), "{shown}");
    assert!(
        shown.contains(&format!(
            "input line 8 (input byte 343) at {} byte 49: {}",
            s.sink.join("output.worker2").display(),
            text(&s.a[7])
        )),
        "{shown}"
    );
    assert_eq!(st.duplicates, 3);
    assert_eq!(st.verified_bytes, 20 * 49);

    let st = s.check(WQ_ALO, false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.duplicates, 3);
    assert_eq!(st.verified_bytes, 20 * 49);
    assert_eq!(st.committed_lines, 23);
}

#[test]
fn a_missing_line_is_only_reported_after_the_grace_or_at_the_end() {
    let s = Setup::new();
    // Line 4 (index) never comes; lines after it do, at T.
    let out = s.cat((0..30).filter(|&i| i != 4));
    s.commit("worker1", &out, T);
    for mode in [WQ, WQ_ALO] {
        // Within the grace (60 s by default, commit times rounded up to the
        // next second): a hole, not a loss.
        let st = s.check_at(mode, false, T + 59.0);
        assert!(st.holds(), "{mode:?}: {st:?}");
        let wq = st.work_queue.unwrap();
        assert_eq!((wq.holes, wq.missing), (1, 0));
        // After it: missing, named.
        let st = s.check_at(mode, false, T + 61.0);
        let v = st.violation.expect("missing after the grace");
        assert_eq!(v.class, Class::Missing);
        assert_eq!(v.input_line, 5);
        assert_eq!(v.expected.as_deref(), Some(text(&s.a[4]).as_str()));
        let r = v.work_queue.as_ref().unwrap();
        assert_eq!(r.missing.count, 1);
        assert!(!r.missing_final);
        assert_eq!(r.missing.first[0].input_byte, 4 * 49);
        let shown = v.to_string();
        assert!(
            shown.contains("missing: 1 input line(s) not committed although a later input line was committed more than 60s before:"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("input line 5 (input byte 196): {}", text(&s.a[4]))),
            "{shown}"
        );
        // The final check: every line not committed is missing, however
        // recent: the hole and the tail not yet committed.
        let st = s.check_at(mode, true, T + 1.0);
        let v = st.violation.expect("missing at the end");
        assert_eq!(v.class, Class::Missing, "a hole comes first");
        let r = v.work_queue.unwrap();
        assert!(r.missing_final);
        assert_eq!(r.missing.count, s.n() as u64 - 29);
        assert_eq!(
            r.missing
                .first
                .iter()
                .map(|n| n.input_line)
                .collect::<Vec<_>>(),
            vec![5, 31, 32, 33, 34]
        );
    }
    // A clean prefix that stops short is `incomplete` at the end, and never
    // missing before it, however old.
    let s = Setup::new();
    s.commit("worker1", &s.cat(0..30), T);
    assert!(s.check_at(WQ, false, T + 1e6).holds());
    let v = s.check_at(WQ, true, T).violation.unwrap();
    assert_eq!(v.class, Class::Incomplete);
    assert_eq!(v.input_line, 31);
}

#[test]
fn the_online_check_reports_a_line_missing_once_the_grace_has_passed() {
    let s = Setup::new();
    let mut inc = s.incremental(WQ).with_missing_grace(10.0);
    s.commit("worker1", &s.cat(0..5), T);
    assert!(inc.check_at(T).unwrap()[0].holds());
    // Line index 5 is skipped; 6..12 committed at T+2.2 (which counts as
    // T+3: commit times are rounded up to the second).
    s.commit("worker2", &s.cat(6..12), T + 2.2);
    for now in [T + 3.0, T + 8.0, T + 13.0] {
        let st = inc.check_at(now).unwrap().remove(0);
        assert!(st.holds(), "at +{}: {st:?}", now - T);
        assert_eq!(st.work_queue.unwrap().holes, 1);
    }
    // Lines after the hole keep coming; the hole is now older than 10 s.
    s.commit("worker2", &s.cat(12..14), T + 13.1);
    let st = inc.check_at(T + 13.1).unwrap().remove(0);
    let v = st.violation.expect("missing");
    assert_eq!((v.class, v.input_line), (Class::Missing, 6));
    assert_eq!(st.work_queue.unwrap().missing, 1);
    // It turns up late: still a violation, now counted as late.
    s.commit("worker1", &s.cat([5]), T + 20.0);
    let st = inc.check_at(T + 20.0).unwrap().remove(0);
    let v = st.violation.expect("stays");
    assert_eq!(v.class, Class::Missing);
    let r = v.work_queue.as_ref().unwrap();
    assert_eq!((r.missing.count, r.late.count), (0, 1));
    assert_eq!(
        r.late.first[0].sink_file.as_ref().unwrap(),
        &s.sink.join("output.worker1")
    );
    assert_eq!(r.late.first[0].sink_offset, Some(5 * 49));
    assert!(
        v.to_string()
            .contains("late: 1 input line(s) committed only after being reported missing"),
        "{v}"
    );
}

#[test]
fn lines_committed_long_ago_are_judged_by_their_commit_time() {
    // The full check of an old sink directory: the holes are long past the
    // grace even though the check just started.
    let s = Setup::new();
    s.commit("worker1", &s.cat((0..20).filter(|&i| i != 2 && i != 9)), T);
    let mut inc = s.incremental(WQ);
    let st = inc.check_at(T + 3600.0).unwrap().remove(0);
    let v = st.violation.expect("missing");
    let r = v.work_queue.unwrap();
    assert_eq!(r.missing.count, 2);
    assert_eq!(
        r.missing
            .first
            .iter()
            .map(|n| n.input_line)
            .collect::<Vec<_>>(),
        vec![3, 10]
    );
    // The incremental and the full check agree.
    assert_eq!(
        s.check_at(WQ, false, T + 3600.0)
            .violation
            .unwrap()
            .work_queue,
        inc.statuses()[0].violation.clone().unwrap().work_queue
    );
}

#[test]
fn extraneous_lines_name_the_sink_file_and_byte() {
    let s = Setup::new();
    let mut garbled = s.a[6].clone();
    garbled[20] = b'?';
    let mut wrong_offset = s.a[6].clone();
    wrong_offset[7] = b'1'; // A0000141: no input line has that offset
    let past_end = b"A0177777 0000 0000 0000 0000 0000 0000 0000 0000\n".to_vec();
    let mut out = s.cat(0..6);
    let garbled_at = out.len() as u64;
    out.extend_from_slice(&garbled);
    out.extend_from_slice(&wrong_offset);
    out.extend_from_slice(b"A hello\n");
    out.extend_from_slice(&past_end);
    out.extend(s.cat(6..10));
    let mut w = s.worker("worker3");
    w.write(&s.cat(50..52)).unwrap();
    w.commit(T).unwrap();
    w.write(&out).unwrap();
    w.commit(T).unwrap();
    for mode in [WQ, WQ_ALO] {
        let st = s.check(mode, false);
        let v = st.violation.expect("extraneous");
        assert_eq!(v.class, Class::Corrupt, "{mode:?}");
        assert_eq!(v.input_line, 7);
        let r = v.work_queue.as_ref().unwrap();
        assert_eq!(r.extraneous.count, 4);
        let e = &r.extraneous.first;
        assert_eq!(
            e[0].sink_file.as_ref().unwrap(),
            &s.sink.join("output.worker3")
        );
        assert_eq!(e[0].sink_offset, Some(2 * 49 + garbled_at));
        assert_eq!(e[0].output_offset, 2 * 49 + garbled_at);
        assert!(e[0].why.contains("bytes differ"), "{:?}", e[0]);
        assert!(e[1].why.contains("which no input line has"), "{:?}", e[1]);
        assert_eq!(e[2].why, "not a line of the input");
        assert_eq!(e[3].class, Class::Extra);
        assert!(e[3].why.contains("past the end of the input"), "{:?}", e[3]);
        let shown = v.to_string();
        assert!(
            shown.contains(&format!(
                "extraneous: 4 committed line(s) that are not lines of the input:\n    {} byte {} (output byte {}): corrupt: ",
                s.sink.join("output.worker3").display(),
                2 * 49 + garbled_at,
                2 * 49 + garbled_at
            )),
            "{shown}"
        );
        // The real lines are still counted.
        assert_eq!(st.work_queue.unwrap().distinct_lines, 12);
    }
}

#[test]
fn a_torn_txnlog_line_and_a_partial_last_line_are_ignored() {
    let s = Setup::new();
    let mut w = s.worker("worker1");
    w.write(&s.cat([1, 0, 2])).unwrap();
    w.commit(T).unwrap();
    // The sink was killed while writing a record: its torn line is ignored.
    w.write(&s.cat([4, 3])).unwrap();
    w.write_log_raw(b"[1000001.0,\"2-ok\",\"Passthrough-w-worker1-id-1:c_")
        .unwrap();
    for mode in [WQ, WQ_ALO] {
        let st = s.check(mode, false);
        assert!(st.holds(), "{st:?}");
        assert_eq!(st.committed_lines, 3);
        let mut inc = s.incremental(mode);
        let st = inc.check_at(T + 1.0).unwrap().remove(0);
        assert!(st.holds(), "{st:?}");
        assert_eq!(st.committed_lines, 3);
    }
    // A commit that ends inside a line: the full check hands the partial
    // line over last; it is the start of an input line, so it is ignored.
    let s = Setup::new();
    let mut out = s.cat([1, 0]);
    out.extend_from_slice(&s.a[2][..20]);
    s.commit("worker1", &out, T);
    let st = s.check(WQ, false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.work_queue.unwrap().distinct_lines, 2);
    assert_eq!(st.committed_bytes, 98 + 20);
    // One that is not the start of its line is corrupt.
    let s = Setup::new();
    let mut out = s.cat([1, 0]);
    let mut bad = s.a[2][..20].to_vec();
    bad[15] = b'#';
    out.extend_from_slice(&bad);
    s.commit("worker1", &out, T);
    let v = s.check(WQ, false).violation.expect("corrupt partial line");
    assert_eq!(v.class, Class::Corrupt);
}

#[test]
fn committed_bytes_gone_from_a_data_file_are_missing() {
    let s = Setup::new();
    let mut w = s.worker("worker1");
    w.write(&s.cat([2, 1, 0])).unwrap();
    w.commit(T).unwrap();
    std::fs::remove_file(w.data_path()).unwrap();
    let v = s.check(WQ, false).violation.expect("data loss");
    assert_eq!(v.class, Class::Missing);
    let m = v.missing_data.as_ref().expect("named");
    assert_eq!(m.data_file, s.sink.join("output.worker1"));
    assert!(
        v.to_string()
            .contains("missing data: committed bytes missing:"),
        "{v}"
    );
}

#[test]
fn the_incremental_verifier_agrees_with_the_full_check() {
    let s = Setup::new();
    let mut inc = s.incremental(WQ);
    let mut idx: Vec<usize> = (0..s.n()).rev().collect();
    idx.insert(40, 17); // one duplicate
    let mut w1 = s.worker("worker1");
    let mut w2 = s.worker("worker2");
    for (round, chunk) in idx.chunks(23).enumerate() {
        let t = T + round as f64;
        let (a, b) = chunk.split_at(chunk.len() / 2);
        w1.write(&s.cat(a.iter().copied())).unwrap();
        w1.commit(t).unwrap();
        w2.write(&s.cat(b.iter().copied())).unwrap();
        w2.commit(t + 0.5).unwrap();
        let st = inc.check_at(t + 1.0).unwrap().remove(0);
        assert_eq!(st, s.check_at(WQ, false, t + 1.0), "round {round}");
    }
    let st = inc.statuses().remove(0);
    assert_eq!(st.duplicates, 1);
    assert_eq!(st.verified_bytes, st.input_bytes);
    assert_eq!(st.violation.unwrap().class, Class::Duplicate);
    // Read only once: nothing new, nothing changes.
    assert_eq!(
        inc.check_at(T + 100.0).unwrap().remove(0).committed_lines,
        idx.len() as u64
    );
}

#[test]
fn switching_to_work_queue_keeps_the_verified_prefix() {
    let s = Setup::new();
    let mut inc = s.incremental(Mode::ExactlyOnce);
    s.commit("worker1", &s.cat(0..10), T);
    assert!(inc.check_at(T).unwrap()[0].holds());
    inc.set_mode(WQ);
    s.commit("worker1", &s.cat([12, 11, 10]), T + 1.0);
    let st = inc.check_at(T + 1.0).unwrap().remove(0);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.work_queue.as_ref().unwrap().distinct_lines, 13);
    // A repeat of a line of the verified prefix is a duplicate.
    s.commit("worker1", &s.cat([3]), T + 2.0);
    let v = inc.check_at(T + 2.0).unwrap().remove(0).violation.unwrap();
    assert_eq!((v.class, v.input_line), (Class::Duplicate, 4));
}

#[test]
fn an_input_file_not_made_by_create_input_files_is_an_error() {
    let s = Setup::new();
    s.commit("worker1", &s.cat([0]), T);
    let bad = s.sink.parent().unwrap().join("input-file.X.txt");
    for (content, why) in [
        (&b"A0000000 1234\nA0000003\n"[..], "make a 28-byte file"),
        (
            b"A0000000 1234\nA0000002 ab\n",
            "not key A's final offset line",
        ),
        (b"A0000000 1234", "does not end with a newline"),
        (b"", "does not end with a newline"),
    ] {
        std::fs::write(&bad, content).unwrap();
        let opts = CheckOptions {
            mode: WQ,
            ..CheckOptions::default()
        };
        let e = check_keys_with(&s.sink, [(b'A', bad.clone())], &opts).unwrap_err();
        assert!(matches!(e, VerifyError::InputFormat { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("input-file.X.txt") && msg.contains(why),
            "{msg}"
        );
    }
}

#[test]
fn memory_is_a_bit_per_input_line_plus_a_window() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = tmp.path().join("sink-out");
    std::fs::create_dir(&sink).unwrap();
    let spec = InputSpec {
        keys: vec![b'A'],
        ..InputSpec::default()
    };
    let input = write_input_files(tmp.path(), &spec).unwrap().remove(0);
    let text = std::fs::read(&input).unwrap();
    // Every other line, in reverse: out of order all the way.
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 250_001);
    let mut w = FakeWorker::new(&sink, "worker1").unwrap();
    let out: Vec<u8> = lines
        .iter()
        .rev()
        .step_by(2)
        .flat_map(|l| l.to_vec())
        .collect();
    w.write(&out).unwrap();
    w.commit(T).unwrap();
    let mut inc = IncrementalVerifier::new(&sink, [(b'A', input)])
        .unwrap()
        .with_mode(WQ);
    let st = inc.check_at(T + 1.0).unwrap().remove(0);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.work_queue.as_ref().unwrap().holes, 125_000);
    let heap = inc.work_queue_heap_bytes();
    // 250,001 bits = 31,256 bytes of bitmap, the 64 KiB window, a few marks.
    assert!(heap >= 31_256, "{heap}");
    assert!(heap <= 31_256 + 65_536 + 4096, "{heap}");
}

#[test]
fn requiring_the_whole_input_of_one_key_names_every_line_not_committed() {
    let s = Setup::new();
    let mut inc = IncrementalVerifier::new(
        &s.sink,
        [(b'A', s.input.clone()), (b'B', s.input_b.clone())],
    )
    .unwrap()
    .with_mode(WQ);
    // Key A's first 195 lines in any order; its last 6 never come.
    s.commit("worker1", &s.cat((0..195).rev()), T);
    assert!(inc.check_at(T + 1e6).unwrap().iter().all(KeyStatus::holds));
    let st = inc
        .require_complete(b'A')
        .unwrap()
        .expect("key A is checked");
    let v = st.violation.expect("the tail is missing");
    assert_eq!((v.class, v.input_line), (Class::Incomplete, 196));
    let r = v.work_queue.unwrap();
    assert!(r.missing_final);
    assert_eq!(r.missing.count, 6);
    assert_eq!(r.missing.first[4].text, text(&s.a[199]));
    // Key B is untouched; an unknown key has no status.
    assert!(inc.statuses()[1].holds());
    assert!(inc.require_complete(b'Z').unwrap().is_none());
}

#[test]
fn a_shuffled_full_sink_holds_in_work_queue_only() {
    use verify::fixture::{write_full_sink, Order};
    let s = Setup::new();
    let inputs = vec![(b'A', s.input.clone()), (b'B', s.input_b.clone())];
    let sink = s.sink.parent().unwrap().join("shuffled");
    let n = write_full_sink(&sink, &inputs, 3, Order::Shuffled { seed: 4 }, T).unwrap();
    let sizes: u64 = inputs
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(n, sizes);
    let check = |mode| {
        let opts = CheckOptions {
            complete: true,
            mode,
            ..CheckOptions::default()
        };
        check_keys_with(&sink, inputs.clone(), &opts).unwrap()
    };
    assert!(check(WQ).iter().all(KeyStatus::holds));
    assert!(!check(Mode::ExactlyOnce).iter().any(KeyStatus::holds));
    let in_order = s.sink.parent().unwrap().join("in-order");
    write_full_sink(&in_order, &inputs, 2, Order::InOrder, T).unwrap();
    let opts = CheckOptions {
        complete: true,
        ..CheckOptions::default()
    };
    let st = check_keys_with(&in_order, inputs.clone(), &opts).unwrap();
    assert!(st.iter().all(KeyStatus::holds), "{st:?}");
}
