//! Ingest benchmark: how many MB/s the sink takes in over loopback with a
//! 2PC round every second.
//!
//! ```text
//! cargo run --release -p sink --example ingest_bench -- [--seconds 5] [--chunk 4096]
//!     [--round-ms 1000] [--connections 1] [--dir DIR]
//! ```
//!
//! The sink runs in this process (the same `Server` as `crasher sink`, on a
//! 2-thread runtime) writing to a fresh temporary directory in DIR (default:
//! $TMPDIR), removed at the end; each connection is a blocking client thread that streams
//! `--chunk`-byte stream-1 messages and runs PHASE1 / REPLY / PHASE2 every
//! `--round-ms`. At the end it checks that each output file holds exactly
//! the committed bytes, then prints the figures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use connector::codec::encode_to_bytes;
use connector::{Frame, TwoPc, DEFAULT_COOKIE, SINK_VERSION};
use sink::rules::Rules;
use sink::{Config, Server};

struct Opts {
    seconds: f64,
    chunk: usize,
    round_ms: u64,
    connections: usize,
    dir: Option<PathBuf>,
}

fn parse() -> Opts {
    let mut o = Opts {
        seconds: 5.0,
        chunk: 4096,
        round_ms: 1000,
        connections: 1,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = v.parse().expect("--seconds"),
            "--chunk" => o.chunk = v.parse().expect("--chunk"),
            "--round-ms" => o.round_ms = v.parse().expect("--round-ms"),
            "--connections" => o.connections = v.parse().expect("--connections"),
            "--dir" => o.dir = Some(PathBuf::from(v)),
            _ => panic!("unknown option {a}"),
        }
    }
    o
}

fn read_frame(s: &mut TcpStream) -> Frame {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("read");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("read");
    Frame::decode_body(body.into()).expect("frame")
}

fn send(s: &mut TcpStream, f: &Frame) {
    s.write_all(&encode_to_bytes(f).unwrap()).expect("write");
}

fn two_pc(s: &mut TcpStream, m: &TwoPc) {
    send(s, &Frame::two_pc(m).unwrap());
}

/// Streams for `seconds`; returns (bytes committed, rounds, worst round).
fn client(addr: SocketAddr, name: String, o: &Opts) -> (u64, u64, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    send(
        &mut s,
        &Frame::Hello {
            version: SINK_VERSION.into(),
            cookie: DEFAULT_COOKIE.into(),
            program_name: "bench".into(),
            instance_name: name.clone(),
        },
    );
    assert!(matches!(read_frame(&mut s), Frame::Ok { .. }));
    // One MESSAGE frame header: tag, stream 1, message_id, event_time, no key.
    let frame_len = (1 + 8 + 8 + 8 + 2 + o.chunk) as u32;
    let payload = vec![b'x'; o.chunk];
    let batch = (256 * 1024 / (o.chunk + 31)).max(1);
    let mut buf = Vec::with_capacity(batch * (o.chunk + 31));
    let (mut offset, mut committed, mut rounds) = (0u64, 0u64, 0u64);
    let mut worst = Duration::ZERO;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(o.seconds);
    let mut next_round = start + Duration::from_millis(o.round_ms);
    loop {
        buf.clear();
        for _ in 0..batch {
            buf.extend_from_slice(&frame_len.to_be_bytes());
            buf.push(5);
            buf.extend_from_slice(&1u64.to_be_bytes());
            buf.extend_from_slice(&offset.to_be_bytes());
            buf.extend_from_slice(&0i64.to_be_bytes());
            buf.extend_from_slice(&0u16.to_be_bytes());
            buf.extend_from_slice(&payload);
            offset += o.chunk as u64;
        }
        s.write_all(&buf).expect("write");
        let now = Instant::now();
        if now >= next_round || now >= end {
            rounds += 1;
            let txn_id = format!("bench-w-{name}-id-1:c_id={rounds}");
            let t0 = Instant::now();
            two_pc(
                &mut s,
                &TwoPc::Phase1 {
                    txn_id: txn_id.clone(),
                    where_list: vec![(1, committed, offset)],
                },
            );
            match read_frame(&mut s) {
                Frame::Message(m) => match TwoPc::decode(m.payload).unwrap() {
                    TwoPc::Reply { commit: true, .. } => {}
                    other => panic!("vote: {other:?}"),
                },
                other => panic!("expected the vote, got {other:?}"),
            }
            two_pc(
                &mut s,
                &TwoPc::Phase2 {
                    txn_id,
                    commit: true,
                },
            );
            worst = worst.max(t0.elapsed());
            committed = offset;
            next_round += Duration::from_millis(o.round_ms);
            if now >= end {
                break;
            }
        }
    }
    (committed, rounds, worst)
}

fn main() {
    let o = parse();
    // The sink's own log format, to stderr: a failure says why.
    let _ = tracing::dispatcher::set_global_default(sink::logging::dispatch(None).unwrap());
    let tmp = match &o.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let prefix = tmp.path().join("bench-output");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            Config {
                prefix: prefix.clone(),
                cookie: DEFAULT_COOKIE.into(),
                rules: Rules::none(),
                por: Default::default(),
            },
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    rt.spawn(server.run());
    let t0 = Instant::now();
    let results: Vec<(String, (u64, u64, Duration))> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..o.connections)
            .map(|i| {
                let name = format!("worker{i}");
                let o = &o;
                sc.spawn(move || (name.clone(), client(addr, name, o)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    // The last PHASE2 is fire-and-forget: wait for the sink to apply it.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, (committed, ..)) in &results {
        let tl = PathBuf::from(format!("{}.{name}.txnlog", prefix.display()));
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&tl).unwrap_or_default();
            if text.contains("\"2-ok\",") && text.trim_end().ends_with(&format!(",{committed}]")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let len = std::fs::metadata(format!("{}.{name}", prefix.display()))
            .unwrap()
            .len();
        assert_eq!(len, *committed, "{name}: output size != committed bytes");
    }
    let total: u64 = results.iter().map(|(_, (c, ..))| c).sum();
    let rounds: u64 = results.iter().map(|(_, (_, r, _))| r).sum();
    let worst = results
        .iter()
        .map(|(_, (.., w))| *w)
        .max()
        .unwrap_or_default();
    println!(
        "connections {} chunk {} B round every {} ms: {:.1} MB committed in {:.2} s = {:.0} MB/s ({} rounds, slowest round {:.1} ms)",
        o.connections,
        o.chunk,
        o.round_ms,
        total as f64 / 1e6,
        elapsed,
        total as f64 / 1e6 / elapsed,
        rounds,
        worst.as_secs_f64() * 1e3
    );
    rt.shutdown_background();
}
