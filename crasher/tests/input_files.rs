//! `crasher create-input-files` and `crasher delete-input-files`, through
//! the binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use verify::input::{file_len, last_line_offset, parse_line_offset, source_bytes};

/// A scratch directory removed on drop (the crasher package has no
/// tempfile dev-dependency).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "crasher-input-files-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn crasher(args: &[&str], dir: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_crasher"))
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crasher {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(dir: &Path, key: char) -> Vec<u8> {
    std::fs::read(dir.join(format!("input-file.{key}.txt"))).unwrap()
}

#[test]
fn default_size_matches_the_original_harness() {
    let d = Scratch::new();
    let out = crasher(&["create-input-files", "--keys", "A"], d.path());
    // Not a terminal: no progress bar, no noise.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = read(d.path(), 'A');
    assert_eq!(a.len(), 12_368_938);
    assert_eq!(a.len() as u64, file_len(4_000_000));
    assert_eq!(last_line_offset(4_000_000), 12_368_928);
    assert_eq!(&a[12_368_928..], b"A17204400\n");
    assert_eq!(&a[..9], b"A0000000 ");
    assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 250_001);
    // The line before the 8-digit offsets, and the first after.
    let at = 131_071 * 49;
    assert_eq!(&a[at..at + 9], b"A7777760 ");
    assert_eq!(&a[at + 49..at + 59], b"A10000000 ");
}

#[test]
fn default_keys_are_a_to_j_and_deletion_is_by_pattern() {
    let d = Scratch::new();
    crasher(&["create-input-files", "--source-bytes", "160"], d.path());
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let want: Vec<String> = "ABCDEFGHIJ"
        .chars()
        .map(|k| format!("input-file.{k}.txt"))
        .collect();
    assert_eq!(names, want);
    for keep in ["input-file.A.txt.bak", "other.txt", "input-file.txt"] {
        std::fs::write(d.path().join(keep), b"x").unwrap();
    }
    crasher(&["delete-input-files", "--keys", "A,B"], d.path());
    assert!(!d.path().join("input-file.A.txt").exists());
    assert!(!d.path().join("input-file.B.txt").exists());
    assert!(d.path().join("input-file.C.txt").exists());
    crasher(&["delete-input-files"], d.path());
    let mut left: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["input-file.A.txt.bak", "input-file.txt", "other.txt"]
    );
}

#[test]
fn files_are_reproducible_from_the_seed_and_differ_per_key() {
    let (d1, d2, d3) = (Scratch::new(), Scratch::new(), Scratch::new());
    let args = [
        "create-input-files",
        "--keys",
        "A,B",
        "--source-bytes",
        "4096",
    ];
    crasher(&[&args[..], &["--seed", "9"]].concat(), d1.path());
    crasher(&[&args[..], &["--seed", "9"]].concat(), d2.path());
    crasher(&[&args[..], &["--seed", "10"]].concat(), d3.path());
    assert_eq!(read(d1.path(), 'A'), read(d2.path(), 'A'));
    assert_eq!(read(d1.path(), 'B'), read(d2.path(), 'B'));
    assert_ne!(read(d1.path(), 'A'), read(d3.path(), 'A'));
    // Keys get different data, not just a different first byte.
    let a = read(d1.path(), 'A');
    let b = read(d1.path(), 'B');
    assert_ne!(a[1..], b[1..]);
    assert_eq!(a, od_x(b'A', 9, 4096));
}

/// Rebuilds a file from the library's source bytes, as
/// `od -x | sed s/^/K/` prints them (n a multiple of 16).
fn od_x(key: u8, seed: u64, n: usize) -> Vec<u8> {
    let src = source_bytes(seed, key, n);
    let mut out = Vec::new();
    for (i, row) in src.chunks(16).enumerate() {
        out.push(key);
        out.extend_from_slice(format!("{:07o}", i * 16).as_bytes());
        for w in row.chunks(2) {
            out.extend_from_slice(
                format!(" {:02x}{:02x}", w.get(1).unwrap_or(&0), w[0]).as_bytes(),
            );
        }
        out.push(b'\n');
    }
    out.push(key);
    out.extend_from_slice(format!("{n:07o}\n").as_bytes());
    out
}

#[test]
fn every_line_is_unique_and_carries_its_offset() {
    let d = Scratch::new();
    crasher(
        &[
            "create-input-files",
            "--keys",
            "Z",
            "--source-bytes",
            "160000",
        ],
        d.path(),
    );
    let z = read(d.path(), 'Z');
    let mut seen = HashSet::new();
    for (i, line) in z.split_inclusive(|&b| b == b'\n').enumerate() {
        assert!(seen.insert(line), "line {} repeats", i + 1);
        let (key, off) = parse_line_offset(line).unwrap();
        assert_eq!((key, off), (b'Z', (i as u64 * 16).min(160_000)));
    }
    assert_eq!(seen.len(), 10_001);
}

#[test]
fn tcp_mode_frames_full_rows_with_a_big_endian_length() {
    let d = Scratch::new();
    let plain = Scratch::new();
    crasher(
        &[
            "create-input-files",
            "--keys",
            "A",
            "--source-bytes",
            "1000",
            "--tcp",
        ],
        d.path(),
    );
    crasher(
        &[
            "create-input-files",
            "--keys",
            "A",
            "--source-bytes",
            "1000",
        ],
        plain.path(),
    );
    let framed = read(d.path(), 'A');
    let lines = read(plain.path(), 'A');
    // 62 full rows of 16 bytes; the partial row and the final offset line are dropped.
    assert_eq!(framed.len(), 62 * 53);
    let mut unframed = Vec::new();
    for rec in framed.chunks(53) {
        assert_eq!(&rec[..4], &[0, 0, 0, 0x31]);
        assert_eq!(rec[52], b'\n');
        unframed.extend_from_slice(&rec[4..]);
    }
    assert_eq!(unframed, lines[..62 * 49]);
}

#[test]
fn bad_keys_are_usage_errors() {
    let d = Scratch::new();
    for keys in ["AB", "A,A", "-", ""] {
        let out = Command::new(env!("CARGO_BIN_EXE_crasher"))
            .args(["create-input-files", "--keys", keys, "--dir"])
            .arg(d.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "keys {keys:?}");
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}
