//! Throughput of the unthrottled feeder against a discarding peer on loopback.
//!
//! ```text
//! cargo run --release -p feeders --example feed_bench -- [LINES] [PASSES] [CREDITS] [ACK_EVERY]
//! ```
//!
//! Writes a LINES-line file (default 1,000,000 lines of 49/50 bytes, the
//! harness's input format) to a temp dir, then runs PASSES (default 20)
//! complete feeds of it, each a fresh feeder session, against an in-process
//! peer that grants OK(CREDITS) (default 100,000), answers NOTIFY with
//! "start of file", counts and checks message ids, and refills credits with
//! an ACK every ACK_EVERY messages (default 20,000) and at EOS. Prints
//! lines/s and MB/s per pass. `-- 1000000 3 500 450` approximates Wallaroo's
//! credit policy (500 credits, refill when 50 are left).

use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use bytes::BytesMut;
use connector::codec::encode_to_bytes;
use connector::frame::{TAG_EOS, TAG_HELLO, TAG_MESSAGE, TAG_NOTIFY};
use connector::{ConnectorCodec, Frame, POR_NONE};
use feeders::feed::{self, FeedConfig};
use feeders::log::Logger;

fn main() {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("LINES"));
    let passes: u32 = args.next().map_or(20, |a| a.parse().expect("PASSES"));
    let credits: u32 = args.next().map_or(100_000, |a| a.parse().expect("CREDITS"));
    let ack_every: u64 = args
        .next()
        .map_or(20_000, |a| a.parse().expect("ACK_EVERY"));
    assert!(
        ack_every <= u64::from(credits),
        "ACK_EVERY must not exceed CREDITS"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("input-file.A.txt");
    let size = write_input(&path, lines);
    println!("input: {lines} lines, {size} bytes; peer grants {credits} credits, acks every {ack_every} messages");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let conn = conn.expect("accept");
            thread::spawn(move || peer(conn, credits, ack_every));
        }
    });

    let mut total_lines = 0u64;
    let mut total_secs = 0.0;
    for pass in 1..=passes {
        let cfg = FeedConfig::new(path.clone(), addr.to_string());
        let log = Logger::open("feed", Some(&dir.path().join("feed.log"))).expect("log");
        let t0 = Instant::now();
        let summary = feed::run_blocking(cfg, log).expect("feed");
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(summary.status.sent, lines, "every line sent once");
        total_lines += lines;
        total_secs += secs;
        println!(
            "pass {pass}: {lines} lines in {secs:.3} s = {:.0} lines/s, {:.1} MB/s of payload",
            lines as f64 / secs,
            size as f64 / secs / 1e6
        );
    }
    println!(
        "overall: {total_lines} lines in {total_secs:.3} s = {:.0} lines/s",
        total_lines as f64 / total_secs
    );
}

/// Writes `n` lines like `A0000000 b8a4 f82d a061 8b10 d399 f00e f938 ceaf`.
fn write_input(path: &std::path::Path, n: u64) -> u64 {
    let mut w = BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut size = 0u64;
    for i in 0..n {
        let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let line = format!(
            "A{:07o} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x} {:04x}\n",
            i * 16,
            x & 0xffff,
            (x >> 16) & 0xffff,
            (x >> 32) & 0xffff,
            x >> 48,
            (x >> 8) & 0xffff,
            (x >> 24) & 0xffff,
            (x >> 40) & 0xffff,
            (x >> 4) & 0xffff
        );
        size += line.len() as u64;
        w.write_all(line.as_bytes()).expect("write");
    }
    w.flush().expect("flush");
    size
}

fn send(conn: &mut TcpStream, f: &Frame) {
    let _ = conn.write_all(&encode_to_bytes(f).expect("encode"));
}

/// A worker that discards data: handshake, then count MESSAGEs and ACK.
fn peer(mut conn: TcpStream, credits: u32, ack_every: u64) {
    let codec = ConnectorCodec::default();
    let mut buf = vec![0u8; 4 << 20];
    let (mut start, mut end) = (0usize, 0usize);
    let mut sid = 0u64;
    let mut last_id = POR_NONE;
    let mut since_ack = 0u64;
    loop {
        // Handle every complete frame in buf[start..end].
        while end - start >= 4 {
            let len = u32::from_be_bytes(buf[start..start + 4].try_into().unwrap()) as usize;
            if end - start < 4 + len {
                break;
            }
            let body = &buf[start + 4..start + 4 + len];
            match body[0] {
                TAG_MESSAGE => {
                    let id = u64::from_be_bytes(body[9..17].try_into().unwrap());
                    assert!(last_id == POR_NONE || id > last_id, "ids must increase");
                    last_id = id;
                    since_ack += 1;
                }
                TAG_EOS => {
                    send(&mut conn, &ack(since_ack, sid, last_id));
                    since_ack = 0;
                }
                TAG_HELLO | TAG_NOTIFY => {
                    let mut b = BytesMut::from(&buf[start..start + 4 + len]);
                    match codec.decode_frame(&mut b).expect("frame") {
                        Some(Frame::Hello { .. }) => send(
                            &mut conn,
                            &Frame::Ok {
                                initial_credits: credits,
                            },
                        ),
                        Some(Frame::Notify { stream_id, .. }) => {
                            sid = stream_id;
                            send(
                                &mut conn,
                                &Frame::NotifyAck {
                                    success: true,
                                    stream_id,
                                    point_of_ref: POR_NONE,
                                },
                            );
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                t => panic!("unexpected tag {t}"),
            }
            start += 4 + len;
        }
        if since_ack >= ack_every {
            send(&mut conn, &ack(since_ack, sid, last_id));
            since_ack = 0;
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        match conn.read(&mut buf[end..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

fn ack(credits: u64, sid: u64, por: u64) -> Frame {
    Frame::Ack {
        credits: credits as u32,
        acks: vec![(sid, por)],
    }
}
