//! The prefix check and its diagnoses, on crafted sink directories.

use std::path::{Path, PathBuf};

use verify::check::{check_key, check_keys, Class, KeyStatus};
use verify::fixture::FakeWorker;
use verify::incremental::IncrementalVerifier;
use verify::input::{write_input_files, InputSpec};
use verify::VerifyError;

/// Lines per key in the test inputs (plus the final offset line).
const ROWS: u64 = 300;

struct Setup {
    _tmp: tempfile::TempDir,
    sink: PathBuf,
    inputs: Vec<(u8, PathBuf)>,
}

impl Setup {
    fn new(keys: &[u8]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let sink = tmp.path().join("sink-out");
        std::fs::create_dir(&sink).unwrap();
        let spec = InputSpec {
            keys: keys.to_vec(),
            source_bytes: ROWS * 16,
            seed: 3,
            tcp: false,
        };
        let paths = write_input_files(tmp.path(), &spec).unwrap();
        Setup {
            _tmp: tmp,
            sink,
            inputs: keys.iter().copied().zip(paths).collect(),
        }
    }

    fn input(&self, key: u8) -> &Path {
        &self.inputs.iter().find(|(k, _)| *k == key).unwrap().1
    }

    /// The input's lines, with their newlines.
    fn lines(&self, key: u8) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(self.input(key)).unwrap();
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn worker(&self, name: &str) -> FakeWorker {
        FakeWorker::new(&self.sink, name).unwrap()
    }

    fn check(&self, key: u8, complete: bool) -> KeyStatus {
        check_key(&self.sink, key, self.input(key), complete).unwrap()
    }

    fn check_all(&self) -> Vec<KeyStatus> {
        check_keys(&self.sink, self.inputs.clone(), false).unwrap()
    }
}

fn cat(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.concat()
}

#[test]
fn empty_output_passes() {
    let s = Setup::new(b"A");
    let st = s.check(b'A', false);
    assert!(st.holds(), "{st:?}");
    assert_eq!((st.committed_bytes, st.committed_lines), (0, 0));
    // Files with nothing committed are no different.
    let mut w = s.worker("worker1");
    w.write(&s.lines(b'A')[0]).unwrap();
    assert!(s.check(b'A', false).holds());
}

#[test]
fn a_correct_prefix_interleaved_with_other_keys_passes() {
    let s = Setup::new(b"AB");
    let (a, b) = (s.lines(b'A'), s.lines(b'B'));
    let mut w = s.worker("initializer");
    for i in 0..100 {
        w.write(&a[i]).unwrap();
        w.write(&b[i]).unwrap();
        if i % 7 == 6 {
            w.commit(1000.0 + i as f64).unwrap();
        }
    }
    let all = s.check_all();
    for st in &all {
        assert!(st.holds(), "{st:?}");
        assert_eq!(st.committed_lines, 98);
        assert_eq!(st.committed_bytes, 98 * 49);
    }
}

#[test]
fn the_whole_input_is_complete_and_a_prefix_is_incomplete() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut w = s.worker("worker1");
    w.write(&cat(&a[..a.len() - 1])).unwrap();
    w.commit(1.0).unwrap();
    let st = s.check(b'A', true);
    let v = st.violation.expect("incomplete");
    assert_eq!(v.class, Class::Incomplete);
    assert_eq!(v.input_line, a.len() as u64);
    assert_eq!(v.expected.as_deref(), Some("A0011300"));
    assert!(s.check(b'A', false).holds());
    w.write(a.last().unwrap()).unwrap();
    w.commit(2.0).unwrap();
    let st = s.check(b'A', true);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.committed_lines, ROWS + 1);
}

/// Commits `lines` in one worker and returns the key's status.
fn run(s: &Setup, lines: &[Vec<u8>]) -> KeyStatus {
    let mut w = s.worker("worker1");
    w.write(&cat(lines)).unwrap();
    w.commit(1.0).unwrap();
    s.check(b'A', false)
}

#[test]
fn a_skipped_line_is_missing() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut out = a[..10].to_vec();
    out.extend_from_slice(&a[13..20]);
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Missing);
    assert_eq!(v.output_offset, 10 * 49 + 5); // A0000240 vs A0000320
    assert_eq!(v.input_line, 11);
    assert_eq!(
        v.expected.as_deref(),
        Some(std::str::from_utf8(&a[10][..48]).unwrap())
    );
    assert_eq!(
        v.found.as_deref(),
        Some(std::str::from_utf8(&a[13][..48]).unwrap())
    );
    assert!(
        v.detail.contains("input line 14: 3 input line(s) skipped"),
        "{}",
        v.detail
    );
}

#[test]
fn a_line_that_comes_back_later_is_reordered() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut out = a[..10].to_vec();
    out.extend([a[11].clone(), a[10].clone(), a[12].clone()]);
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Reordered, "{v}");
    assert_eq!(v.input_line, 11);
}

#[test]
fn a_repeated_line_is_duplicate() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut out = a[..10].to_vec();
    out.push(a[4].clone());
    out.extend_from_slice(&a[10..12]);
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Duplicate);
    assert_eq!(v.input_line, 11);
    assert!(
        v.detail
            .contains("input line 5, which already appeared at output byte 196"),
        "{}",
        v.detail
    );
}

#[test]
fn garbled_bytes_are_corrupt() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut out = a[..10].to_vec();
    let mut bad = a[10].clone();
    bad[20] = if bad[20] == b'0' { b'1' } else { b'0' };
    out.push(bad);
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Corrupt);
    assert_eq!(v.output_offset, 10 * 49 + 20);
    // A line that parses as nothing at all.
    let s = Setup::new(b"A");
    let mut out = a[..3].to_vec();
    out.push(b"A hello\n".to_vec());
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Corrupt);
    assert_eq!(v.found.as_deref(), Some("A hello"));
}

#[test]
fn output_past_the_input_is_extra() {
    let s = Setup::new(b"A");
    let mut out = s.lines(b'A');
    out.push(b"A0011300 dead beef\n".to_vec());
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Extra);
    assert_eq!(v.expected, None);
    assert_eq!(v.input_line, ROWS + 2);
}

#[test]
fn bytes_past_the_last_commit_are_ignored() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut w = s.worker("worker1");
    w.write(&cat(&a[..5])).unwrap();
    w.commit(1.0).unwrap();
    // A rolled-back transaction whose bytes were never truncated away, and
    // an in-doubt one: neither counts.
    w.write(b"A garbage that was rolled back\n").unwrap();
    w.rollback(2.0, false).unwrap();
    w.write(&a[9]).unwrap();
    w.prepare(3.0).unwrap();
    let st = s.check(b'A', false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.committed_bytes, 5 * 49);
}

#[test]
fn a_departed_workers_renamed_output_is_merged_in_commit_order() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    // worker2 held key A first, then left; worker1 took over.
    let mut w2 = s.worker("worker2");
    w2.write(&cat(&a[..10])).unwrap();
    w2.commit(100.0).unwrap();
    w2.depart("1700000000.123").unwrap();
    let mut w1 = s.worker("worker1");
    w1.write(&cat(&a[10..20])).unwrap();
    w1.commit(200.0).unwrap();
    let st = s.check(b'A', false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.committed_lines, 20);
    // The same files with the times swapped are out of order.
    let s2 = Setup::new(b"A");
    let mut w2 = s2.worker("worker2");
    w2.write(&cat(&a[..10])).unwrap();
    w2.commit(300.0).unwrap();
    w2.depart("1700000000.123").unwrap();
    let mut w1 = s2.worker("worker1");
    w1.write(&cat(&a[10..20])).unwrap();
    w1.commit(200.0).unwrap();
    let v = s2.check(b'A', false).violation.expect("violation");
    assert_eq!(v.class, Class::Reordered, "{v}");
    assert_eq!(v.input_line, 1);
    assert!(v.detail.contains("input line 11"), "{v}");
}

#[test]
fn a_key_whose_owner_changed_between_workers_verifies() {
    let s = Setup::new(b"AB");
    let (a, b) = (s.lines(b'A'), s.lines(b'B'));
    let mut w1 = s.worker("worker1");
    let mut w2 = s.worker("worker2");
    // A: worker1, then worker2, then worker1 again; B: worker2 throughout.
    w1.write(&cat(&a[..5])).unwrap();
    w1.commit(1.0).unwrap();
    w2.write(&cat(&b[..5])).unwrap();
    w2.write(&cat(&a[5..9])).unwrap();
    w2.commit(2.0).unwrap();
    w1.write(&cat(&a[9..15])).unwrap();
    w2.write(&cat(&b[5..8])).unwrap();
    w1.commit(3.0).unwrap();
    w2.commit(3.5).unwrap();
    for st in s.check_all() {
        assert!(st.holds(), "{st:?}");
    }
    assert_eq!(s.check(b'A', false).committed_lines, 15);
    assert_eq!(s.check(b'B', false).committed_lines, 8);
}

#[test]
fn a_torn_last_txnlog_line_is_ignored() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut w = s.worker("worker1");
    w.write(&cat(&a[..5])).unwrap();
    w.commit(1.0).unwrap();
    w.write(&cat(&a[5..8])).unwrap();
    w.write_log_raw(b"[2.0,\"2-ok\",\"t\",3").unwrap();
    let st = s.check(b'A', false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.committed_lines, 5);
}

#[test]
fn a_malformed_middle_line_names_file_and_line() {
    let s = Setup::new(b"A");
    let mut w = s.worker("worker1");
    w.write(&s.lines(b'A')[0]).unwrap();
    w.commit(1.0).unwrap();
    w.write_log_raw(b"[2.0, \"2-ok\"]\n").unwrap();
    w.commit(3.0).unwrap();
    let err = check_key(&s.sink, b'A', s.input(b'A'), false).unwrap_err();
    assert!(matches!(err, VerifyError::Txnlog(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("output.worker1.txnlog:3: 2-ok: missing element 2"),
        "{msg}"
    );
}

#[test]
fn committed_bytes_absent_from_the_data_file_are_missing() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut w = s.worker("worker1");
    w.write(&cat(&a[..5])).unwrap();
    w.commit(1.0).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(w.data_path())
        .unwrap()
        .set_len(100)
        .unwrap();
    let v = s.check(b'A', false).violation.expect("violation");
    assert_eq!(v.class, Class::Missing);
    let m = v.missing_data.as_ref().expect("missing data");
    assert_eq!((m.file_len, m.committed_end), (100, 245));
    assert!(v.to_string().contains("is 100 bytes long"), "{v}");
}

#[test]
fn unusable_input_is_an_error() {
    let s = Setup::new(b"A");
    let err = check_key(&s.sink.join("nope"), b'A', s.input(b'A'), false).unwrap_err();
    assert!(matches!(err, VerifyError::SinkDir { .. }), "{err:?}");
    let err = check_key(&s.sink, b'A', &s.sink.join("nope.txt"), false).unwrap_err();
    assert!(matches!(err, VerifyError::Input { .. }), "{err:?}");
}

/// The incremental verifier and the full check agree after every step.
fn assert_agree(s: &Setup, inc: &mut IncrementalVerifier) -> Vec<KeyStatus> {
    let got = inc.check().unwrap();
    let want = s.check_all();
    assert_eq!(got, want);
    got
}

#[test]
fn the_incremental_verifier_agrees_with_the_full_check() {
    let s = Setup::new(b"AB");
    let (a, b) = (s.lines(b'A'), s.lines(b'B'));
    let mut inc = IncrementalVerifier::new(&s.sink, s.inputs.clone()).unwrap();
    assert_agree(&s, &mut inc);
    let mut w1 = s.worker("worker1");
    let mut w2 = s.worker("worker2");
    let mut t = 10.0;
    let mut next_a = 0;
    let mut next_b = 0;
    for round in 0..12 {
        if round == 4 {
            // A rolled-back transaction, truncated away.
            w2.write(b"B junk\n").unwrap();
            assert_agree(&s, &mut inc);
            w2.rollback(t, true).unwrap();
        }
        // Uncommitted bytes at the moment of the check are never read.
        w1.write(&cat(&a[next_a..next_a + 3])).unwrap();
        w2.write(&cat(&b[next_b..next_b + 2])).unwrap();
        next_a += 3;
        next_b += 2;
        let st = assert_agree(&s, &mut inc);
        assert!(st.iter().all(KeyStatus::holds));
        t += 1.0;
        w1.commit(t).unwrap();
        if round % 3 == 0 {
            // A torn record, completed next round.
            w2.write_log_raw(b"[").unwrap();
            assert_agree(&s, &mut inc);
            w2.write_log_raw(b"1.0,\"connection-closed\",1]\n").unwrap();
        }
        w2.commit(t + 0.5).unwrap();
        if round == 6 {
            // worker2 leaves; key B moves to worker3.
            w2.depart(&format!("{t}")).unwrap();
            let st = assert_agree(&s, &mut inc);
            assert_eq!(st[1].committed_lines, next_b as u64);
            w2 = s.worker("worker3");
        }
        let st = assert_agree(&s, &mut inc);
        assert!(st.iter().all(KeyStatus::holds), "{st:?}");
        assert_eq!(st[0].committed_lines, next_a as u64);
        assert_eq!(st[1].committed_lines, next_b as u64);
    }
    // A line of A skipped, then delivered later: missing, then reordered.
    w1.write(&cat(&a[next_a + 1..next_a + 3])).unwrap();
    w1.commit(t + 2.0).unwrap();
    let st = assert_agree(&s, &mut inc);
    assert_eq!(st[0].violation.as_ref().unwrap().class, Class::Missing);
    assert!(st[1].holds());
    w1.write(&a[next_a]).unwrap();
    w1.commit(t + 3.0).unwrap();
    let st = assert_agree(&s, &mut inc);
    assert_eq!(st[0].violation.as_ref().unwrap().class, Class::Reordered);
    // B gets a duplicate.
    w2.write(&b[0]).unwrap();
    w2.commit(t + 4.0).unwrap();
    let st = assert_agree(&s, &mut inc);
    assert_eq!(st[1].violation.as_ref().unwrap().class, Class::Duplicate);
}

#[test]
fn the_incremental_verifier_reads_only_new_bytes() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut inc = IncrementalVerifier::new(&s.sink, s.inputs.clone()).unwrap();
    let mut w = s.worker("worker1");
    w.write(&cat(&a[..10])).unwrap();
    w.commit(1.0).unwrap();
    assert!(inc.check().unwrap()[0].holds());
    // Rewrite the already-checked bytes: a verifier that re-read them would
    // now see garbage, one that reads only new bytes does not.
    let mut bytes = std::fs::read(w.data_path()).unwrap();
    bytes[..10].copy_from_slice(b"XXXXXXXXXX");
    std::fs::write(w.data_path(), &bytes).unwrap();
    w.write(&a[10]).unwrap();
    w.commit(2.0).unwrap();
    let st = inc.check().unwrap();
    assert!(st[0].holds(), "{st:?}");
    assert_eq!(st[0].committed_lines, 11);
    assert!(!s.check(b'A', false).holds());
}

#[test]
fn absurd_offsets_and_foreign_inputs_are_corrupt_not_panics() {
    let s = Setup::new(b"A");
    let a = s.lines(b'A');
    let mut out = a[..3].to_vec();
    out.push(b"A7777777777777777777777 0000\n".to_vec());
    let v = run(&s, &out).violation.expect("violation");
    assert_eq!(v.class, Class::Corrupt);
    // An input that is not an od-style file: a difference is still found,
    // and classed as corrupt since it cannot be placed.
    let s = Setup::new(b"A");
    std::fs::write(s.input(b'A'), b"A one\nA two\nA three\n").unwrap();
    let v = run(&s, &[b"A one\n".to_vec(), b"A three\n".to_vec()])
        .violation
        .expect("violation");
    assert_eq!(v.class, Class::Corrupt);
    assert_eq!((v.input_line, v.output_offset), (2, 9));
    assert!(v.detail.contains("carries no offset"), "{}", v.detail);
}
