//! TCP mode tools as real processes: `crasher blast` into `crasher receive`
//! (and into an in-test listener that drops the connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use procs::{wait_until, Proc};

const PATIENCE: Duration = Duration::from_secs(10);
const MSG: usize = 53;

/// Writes `n` records in the TCP form of the input: a 4-byte big-endian
/// length (49) then a 49-byte line.
fn write_framed(path: &Path, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * MSG);
    for i in 0..n {
        let line = format!(
            "A{:07o} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x}\n",
            i * 16,
            i & 0xffff,
            (i * 7) & 0xffff,
            (i * 13) & 0xffff,
            (i * 31) & 0xffff,
            (i * 37) & 0xffff,
            (i * 41) & 0xffff,
            (i * 43) & 0xffff,
            (i * 47) & 0xffff
        );
        assert_eq!(line.len(), 49);
        out.extend_from_slice(&49u32.to_be_bytes());
        out.extend_from_slice(line.as_bytes());
    }
    std::fs::write(path, &out).unwrap();
    out
}

fn crasher(args: &[&str], dir: &Path, name: &str) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crasher"));
    cmd.args(args);
    Proc::spawn(name, cmd, &dir.join(format!("{name}.log"))).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts `crasher receive` on a free port; returns it and its address.
fn receive(dir: &Path, output: &Path) -> (Proc, SocketAddr) {
    let ready = dir.join("receive.ready");
    let p = crasher(
        &[
            "receive",
            "--listen",
            "127.0.0.1:0",
            "--output",
            s(output),
            "--ready-file",
            s(&ready),
        ],
        dir,
        "receive",
    );
    assert!(
        wait_until(Instant::now() + PATIENCE, || ready.exists()),
        "receive never became ready"
    );
    let addr = std::fs::read_to_string(&ready).unwrap().parse().unwrap();
    (p, addr)
}

fn blast(dir: &Path, target: SocketAddr, file: &Path, interval_ms: &str) -> Proc {
    crasher(
        &[
            "blast",
            "--target",
            &target.to_string(),
            "--file",
            s(file),
            "--msg-size",
            "53",
            "--batch-size",
            "6",
            "--interval-ms",
            interval_ms,
        ],
        dir,
        "blast",
    )
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[test]
fn blasted_records_arrive_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input-file.A.tcp");
    let data = write_framed(&input, 2000);
    let output: PathBuf = dir.path().join("output");
    let (_recv, addr) = receive(dir.path(), &output);
    assert!(log(dir.path(), "receive").contains(&format!("listening on {addr}")));

    let t = Instant::now();
    let mut b = blast(dir.path(), addr, &input, "1");
    let st = b.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert_eq!(st.code(), Some(0), "{}", log(dir.path(), "blast"));
    // 334 batches one millisecond apart.
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    assert!(wait_until(Instant::now() + PATIENCE, || {
        std::fs::metadata(&output).is_ok_and(|m| m.len() >= data.len() as u64)
    }));
    assert!(
        std::fs::read(&output).unwrap() == data,
        "output differs from input"
    );
    assert!(log(dir.path(), "blast").contains("sent 2000 records"));
}

#[test]
fn blast_reconnects_and_resends_the_failed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input-file.A.tcp");
    let data = write_framed(&input, 2000);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut b = blast(dir.path(), addr, &input, "2");

    // First connection: read a little, then drop it with data unread.
    let (mut first, _) = l.accept().unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut some = [0u8; 10 * MSG];
    first.read_exact(&mut some).unwrap();
    assert_eq!(&some[..], &data[..some.len()]);
    drop(first);

    // Second connection: everything from some batch boundary to the end.
    let (mut second, _) = l.accept().unwrap();
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    second.read_to_end(&mut rest).unwrap();
    let st = b.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert_eq!(st.code(), Some(0), "{}", log(dir.path(), "blast"));
    assert!(!rest.is_empty());
    assert_eq!(
        rest.len() % (6 * MSG),
        data.len() % (6 * MSG),
        "starts at a batch"
    );
    assert!(
        data.ends_with(&rest),
        "the second connection carries the file's tail"
    );
    assert!(log(dir.path(), "blast").contains("reconnecting and resending the batch"));
}

#[test]
fn receive_appends_every_connection_to_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    std::fs::write(&output, b"old|").unwrap();
    let (_recv, addr) = receive(dir.path(), &output);
    for chunk in [&b"first|"[..], b"second"] {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(chunk).unwrap();
        drop(c);
        // Wait for this connection's bytes before opening the next, so the
        // order is defined.
        assert!(wait_until(Instant::now() + PATIENCE, || {
            std::fs::read(&output).is_ok_and(|b| b.ends_with(chunk))
        }));
    }
    assert_eq!(std::fs::read(&output).unwrap(), b"old|first|second");
}

#[test]
fn blast_refuses_a_file_of_partial_records() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad");
    std::fs::write(&input, vec![0u8; 100]).unwrap();
    let mut b = blast(dir.path(), "127.0.0.1:1".parse().unwrap(), &input, "5");
    let st = b.wait_deadline(Instant::now() + PATIENCE).unwrap();
    assert_eq!(st.code(), Some(2));
    assert!(log(dir.path(), "blast").contains("not a whole number of 53-byte records"));
}
