//! Input files against GNU `od -x`, the tool the original harness used.

use std::process::Command;

use verify::input::{file_len, source_bytes, write_input, InputSpec};

fn generate(key: u8, seed: u64, n: u64) -> Vec<u8> {
    let spec = InputSpec {
        keys: vec![key],
        source_bytes: n,
        seed,
        tcp: false,
    };
    let mut out = Vec::new();
    write_input(&mut out, key, &spec, &mut |_| {}).unwrap();
    out
}

#[test]
fn files_equal_od_x_with_the_key_prepended() {
    if Command::new("od").arg("--version").output().is_err() {
        eprintln!("od not installed: comparison skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Partial last rows, odd lengths, and offsets past 0o10000000.
    for n in [0u64, 1, 5, 16, 33, 1001, 2_097_152 + 37] {
        let src = source_bytes(5, b'K', n as usize);
        let path = dir.path().join("src");
        std::fs::write(&path, &src).unwrap();
        let od = Command::new("od")
            .arg("-v")
            .arg("-x")
            .arg(&path)
            .output()
            .unwrap();
        assert!(od.status.success());
        let mut want = Vec::new();
        for line in od.stdout.split_inclusive(|&b| b == b'\n') {
            want.push(b'K');
            want.extend_from_slice(line);
        }
        let got = generate(b'K', 5, n);
        assert_eq!(got.len() as u64, file_len(n), "n={n}");
        assert!(got == want, "n={n}: differs from od -x");
    }
}

#[test]
fn chunked_generation_equals_the_source() {
    // More than one generation batch, not a multiple of the batch size.
    let n = 200_000u64;
    let got = generate(b'A', 1, n);
    let src = source_bytes(1, b'A', n as usize);
    let last_row = &got[got.len() - 49 - 9..];
    let tail = &src[(n as usize - 16)..];
    let words: String = tail
        .chunks(2)
        .map(|w| format!(" {:02x}{:02x}", w[1], w[0]))
        .collect();
    let expected = format!("A0606460{words}\nA0606500\n");
    assert_eq!(std::str::from_utf8(last_row).unwrap(), expected);
}
