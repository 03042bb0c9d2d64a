//! A sink (re)started over txnlogs a crash left behind: a torn last line
//! that ends inside a UTF-8 character is cut off and the worker is served;
//! a malformed middle line halts the sink with 66, as documented (issue 12,
//! item 9).

use std::io::{Read, Write};
use std::time::Duration;

use verify::txnlog::{Entry, Record};

struct Sink {
    addr: std::net::SocketAddr,
    shared: std::sync::Arc<sink::server::Shared>,
    code: tokio::task::JoinHandle<u8>,
    rt: tokio::runtime::Runtime,
}

fn sink_over(prefix: &std::path::Path) -> Sink {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = sink::server::Config {
        prefix: prefix.to_owned(),
        cookie: connector::DEFAULT_COOKIE.into(),
        rules: sink::rules::Rules::none(),
        por: sink::server::PorMode::default(),
    };
    let server = rt
        .block_on(sink::server::Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            config,
        ))
        .unwrap();
    let addr = server.local_addr().unwrap();
    let shared = server.shared().clone();
    let code = rt.spawn(server.run());
    Sink {
        addr,
        shared,
        code,
        rt,
    }
}

/// Sends HELLO for `name`; returns what the sink answered before it closed
/// the connection or 2 s passed.
fn hello(s: &Sink, name: &str) -> Vec<u8> {
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let frame = connector::codec::encode_to_bytes(&connector::Frame::Hello {
        version: connector::SINK_VERSION.into(),
        cookie: connector::DEFAULT_COOKIE.into(),
        program_name: "Passthrough".into(),
        instance_name: name.into(),
    })
    .unwrap();
    c.write_all(&frame).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend(&buf[..n]);
    }
    got
}

fn good_line() -> String {
    Entry::now(Record::Phase1Ok {
        txn_id: "t1".into(),
        where_list: vec![(1, 0, 0)],
    })
    .to_line()
        + "\n"
        + &Entry::now(Record::Phase2Ok {
            txn_id: "t1".into(),
            offset: 0,
        })
        .to_line()
        + "\n"
}

#[test]
fn a_torn_last_line_inside_a_utf8_character_is_cut_and_the_worker_served() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("output");
    let good = good_line();
    let mut bytes = good.clone().into_bytes();
    bytes.extend(b"[1.5, \"2-error\", \"t2\", \"caf");
    bytes.push(0xC3);
    std::fs::write(sink::store::txnlog_path(&prefix, "w"), &bytes).unwrap();
    let s = sink_over(&prefix);
    let answer = hello(&s, "w");
    assert!(!answer.is_empty(), "the sink answered nothing");
    assert!(!s.shared.halted(), "the sink halted");
    let left = std::fs::read(sink::store::txnlog_path(&prefix, "w")).unwrap();
    assert!(left.starts_with(good.as_bytes()));
    assert!(!left.contains(&0xC3));
    drop(s.rt);
}

#[test]
fn a_malformed_middle_line_halts_the_sink_with_66() {
    let t = tempfile::tempdir().unwrap();
    let prefix = t.path().join("output");
    let mut bytes = b"[1.5, \"close\", \"\xff\"]\n".to_vec();
    bytes.extend(good_line().as_bytes());
    std::fs::write(sink::store::txnlog_path(&prefix, "w"), &bytes).unwrap();
    let s = sink_over(&prefix);
    let _ = hello(&s, "w");
    let code =
        s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), s.code).await })
            .expect("the sink did not halt")
            .unwrap();
    assert_eq!(code, sink::server::EXIT_VIOLATION);
}
