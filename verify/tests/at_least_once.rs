//! The at-least-once mode: repeats of verified lines are counted, not
//! violations; loss, reordering and corruption still are.

use std::path::PathBuf;

use verify::check::{check_keys_with_mode, Class, KeyStatus, Mode};
use verify::fixture::FakeWorker;
use verify::incremental::IncrementalVerifier;
use verify::input::{write_input_files, InputSpec};

struct Setup {
    _tmp: tempfile::TempDir,
    sink: PathBuf,
    input: PathBuf,
    lines: Vec<Vec<u8>>,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let sink = tmp.path().join("sink-out");
        std::fs::create_dir(&sink).unwrap();
        let spec = InputSpec {
            keys: vec![b'A'],
            source_bytes: 200 * 16,
            seed: 5,
            tcp: false,
        };
        let input = write_input_files(tmp.path(), &spec).unwrap().remove(0);
        let lines = std::fs::read(&input)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        Setup {
            _tmp: tmp,
            sink,
            input,
            lines,
        }
    }

    /// Commits `out` as one transaction of one worker.
    fn commit(&self, out: &[u8]) {
        let mut w = FakeWorker::new(&self.sink, "worker1").unwrap();
        w.write(out).unwrap();
        w.commit(1.0).unwrap();
    }

    fn check(&self, mode: Mode, complete: bool) -> KeyStatus {
        check_keys_with_mode(&self.sink, [(b'A', self.input.clone())], complete, mode)
            .unwrap()
            .remove(0)
    }

    fn cat(&self, idx: &[usize]) -> Vec<u8> {
        idx.iter().flat_map(|&i| self.lines[i].clone()).collect()
    }
}

#[test]
fn repeats_are_counted_in_at_least_once_and_violations_in_exactly_once() {
    let s = Setup::new();
    // 0 1 2 | 1 2 (a resend) | 3 4 | 0 (an old one) | 5
    s.commit(&s.cat(&[0, 1, 2, 1, 2, 3, 4, 0, 5]));
    let st = s.check(Mode::AtLeastOnce, false);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.duplicates, 3);
    assert_eq!(st.committed_lines, 9);
    assert_eq!(st.verified_bytes, 6 * 49);
    assert_eq!(st.committed_bytes, 9 * 49);

    let st = s.check(Mode::ExactlyOnce, false);
    let v = st.violation.expect("a duplicate is a violation here");
    assert_eq!(v.class, Class::Duplicate);
    assert_eq!(v.output_offset, 3 * 49 + 6); // A0000020 vs A0000060
    assert_eq!(st.duplicates, 0);
}

#[test]
fn loss_reorder_and_corruption_still_fail_in_at_least_once() {
    // Loss: line 2 never comes.
    let s = Setup::new();
    s.commit(&s.cat(&[0, 1, 0, 3, 4]));
    let v = s.check(Mode::AtLeastOnce, false).violation.expect("loss");
    assert_eq!(v.class, Class::Missing);
    // The offset is the place in the output, repeats included.
    assert_eq!(v.output_offset, 3 * 49 + 6); // A0000060 vs A0000040
    assert_eq!(v.input_line, 3);

    // Reorder: 3 before 2.
    let s = Setup::new();
    s.commit(&s.cat(&[0, 1, 3, 2, 4]));
    let v = s
        .check(Mode::AtLeastOnce, false)
        .violation
        .expect("reorder");
    assert_eq!(v.class, Class::Reordered);

    // A repeat whose bytes differ from the input line is corrupt, not a repeat.
    let s = Setup::new();
    let mut out = s.cat(&[0, 1, 2]);
    let mut bad = s.lines[1].clone();
    bad[20] ^= 1;
    out.extend_from_slice(&bad);
    s.commit(&out);
    let v = s
        .check(Mode::AtLeastOnce, false)
        .violation
        .expect("corrupt");
    assert_eq!(v.class, Class::Corrupt);

    // A line of another key's shape (wrong key byte) is corrupt too.
    let s = Setup::new();
    let mut out = s.cat(&[0, 1]);
    let mut other = s.lines[0].clone();
    other[0] = b'B';
    out.extend_from_slice(&other);
    s.commit(&out);
    let st = s.check(Mode::AtLeastOnce, false);
    assert!(
        st.holds(),
        "lines of another key are not this key's: {st:?}"
    );
}

#[test]
fn complete_counts_verified_bytes_not_repeats() {
    let s = Setup::new();
    let n = s.lines.len();
    let mut idx: Vec<usize> = (0..n - 1).collect();
    idx.extend([n - 3, n - 2]);
    s.commit(&s.cat(&idx));
    // The whole input but its last line, with repeats: still incomplete.
    let v = s
        .check(Mode::AtLeastOnce, true)
        .violation
        .expect("incomplete");
    assert_eq!(v.class, Class::Incomplete);
    let mut w = FakeWorker::new(&s.sink, "worker2").unwrap();
    w.write(&s.lines[n - 1]).unwrap();
    w.commit(2.0).unwrap();
    let st = s.check(Mode::AtLeastOnce, true);
    assert!(st.holds(), "{st:?}");
    assert_eq!(st.duplicates, 2);
    assert_eq!(
        st.verified_bytes,
        std::fs::metadata(&s.input).unwrap().len()
    );
}

#[test]
fn the_incremental_verifier_takes_the_mode() {
    let s = Setup::new();
    let mut inc = IncrementalVerifier::new(&s.sink, [(b'A', s.input.clone())])
        .unwrap()
        .with_mode(Mode::AtLeastOnce);
    let mut w = FakeWorker::new(&s.sink, "worker1").unwrap();
    w.write(&s.cat(&[0, 1, 2])).unwrap();
    w.commit(1.0).unwrap();
    assert!(inc.check().unwrap()[0].holds());
    // Redelivery across commits: 1 2 again, then on.
    w.write(&s.cat(&[1, 2, 3])).unwrap();
    w.commit(2.0).unwrap();
    let st = inc.check().unwrap().remove(0);
    assert!(st.holds(), "{st:?}");
    assert_eq!((st.duplicates, st.verified_bytes), (2, 4 * 49));
    assert_eq!(
        st,
        s.check(Mode::AtLeastOnce, false),
        "incremental and full checks agree"
    );
    // Loss is still caught.
    w.write(&s.cat(&[5])).unwrap();
    w.commit(3.0).unwrap();
    let st = inc.check().unwrap().remove(0);
    assert_eq!(st.violation.expect("loss").class, Class::Missing);
}
