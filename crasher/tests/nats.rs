//! NATS JetStream as a real system under test: a 3-node cluster of real
//! `nats-server` processes, `crasher nats-feed` and `crasher nats-sink` as
//! processes, faults injected, and the committed output verified.
//!
//! The cluster tests need a `nats-server` binary (`.ci/install-nats`
//! installs one; CI runs it). Without one they print why they are skipped
//! and pass; nothing else makes them skip.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crasher::run::ports::PortBlock;
use feeders::status::FeedStatus;
use nix::sys::signal::Signal;
use procs::{wait_until, Proc};

const NODES: usize = 3;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn crasher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crasher"))
}

/// The nats-server to use: `$CRASHER_NATS_SERVER`, the project's
/// `.venv-nats`, Debian's `/usr/sbin`, then `PATH`.
fn nats_server() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CRASHER_NATS_SERVER") {
        candidates.push(p.into());
    }
    candidates.push(root().join(".venv-nats/bin/nats-server"));
    candidates.push("/usr/sbin/nats-server".into());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn skip(test: &str) {
    let msg = format!(
        "SKIPPED {test}: no nats-server binary (looked at $CRASHER_NATS_SERVER, \
         .venv-nats/bin, /usr/sbin, PATH); run .ci/install-nats to run it"
    );
    println!("{msg}");
    eprintln!("{msg}");
}

/// `GET path` on 127.0.0.1:`port`: the status code and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// Three nodes: node i has its client port at base+i, its cluster port at
/// base+3+i and its monitor port at base+6+i.
struct Cluster {
    server: PathBuf,
    ports: PortBlock,
    dir: PathBuf,
    nodes: Vec<Option<Proc>>,
}

impl Cluster {
    fn start(server: PathBuf, dir: &Path) -> Cluster {
        let ports = PortBlock::allocate(10).expect("a block of ports");
        let mut c = Cluster {
            server,
            ports,
            dir: dir.to_owned(),
            nodes: (0..NODES).map(|_| None).collect(),
        };
        for i in 0..NODES {
            c.start_node(i);
        }
        for i in 0..NODES {
            c.wait_healthy(i);
        }
        c
    }

    fn client_port(&self, i: usize) -> u16 {
        self.ports.port(i as u16)
    }

    fn monitor_port(&self, i: usize) -> u16 {
        self.ports.port(6 + i as u16)
    }

    fn servers(&self) -> String {
        (0..NODES)
            .map(|i| format!("nats://127.0.0.1:{}", self.client_port(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_node(&mut self, i: usize) {
        let routes: Vec<String> = (0..NODES)
            .map(|j| format!("nats-route://127.0.0.1:{}", self.ports.port(3 + j as u16)))
            .collect();
        let mut cmd = Command::new(&self.server);
        cmd.args(["-n", &format!("n{i}"), "-a", "127.0.0.1"])
            .args(["-p", &self.client_port(i).to_string()])
            .args(["-m", &self.monitor_port(i).to_string()])
            .args(["-js", "-sd"])
            .arg(self.dir.join(format!("store-n{i}")))
            .args(["--cluster_name", "crasher-test"])
            .arg("--cluster")
            .arg(format!(
                "nats://127.0.0.1:{}",
                self.ports.port(3 + i as u16)
            ))
            .args(["--routes", &routes.join(",")]);
        let log = self.dir.join(format!("n{i}.log"));
        self.nodes[i] = Some(Proc::spawn(&format!("n{i}"), cmd, &log).expect("start nats-server"));
    }

    fn wait_healthy(&self, i: usize) {
        let port = self.monitor_port(i);
        let ok = wait_until(Instant::now() + Duration::from_secs(30), || {
            http_get(port, "/healthz").is_some_and(|(code, _)| code == 200)
        });
        assert!(ok, "node n{i} never answered /healthz with 200");
    }

    fn node(&self, i: usize) -> &Proc {
        self.nodes[i].as_ref().expect("node running")
    }

    /// The node leading stream LINES, as some live node sees it.
    fn stream_leader(&self, except: Option<usize>) -> Option<usize> {
        (0..NODES).filter(|&i| Some(i) != except).find_map(|i| {
            let (_, body) = http_get(self.monitor_port(i), "/jsz?streams=true")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["account_details"].as_array()?.iter().find_map(|a| {
                a["stream_detail"].as_array()?.iter().find_map(|s| {
                    (s["name"] == "LINES")
                        .then(|| s["cluster"]["leader"].as_str())
                        .flatten()
                        .and_then(|n| n.strip_prefix('n')?.parse().ok())
                })
            })
        })
    }

    /// Messages in stream LINES on node `i`.
    fn stream_messages(&self, i: usize) -> Option<u64> {
        let (_, body) = http_get(self.monitor_port(i), "/jsz?streams=true")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["account_details"].as_array()?.iter().find_map(|a| {
            a["stream_detail"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "LINES")?["state"]["messages"]
                .as_u64()
        })
    }
}

fn acked(status: &Path) -> Option<u64> {
    FeedStatus::read(status).ok().and_then(|s| s.acked)
}

fn start_feeder(servers: &str, dir: &Path, key: char) -> Proc {
    let mut cmd = crasher();
    cmd.current_dir(dir)
        .arg("nats-feed")
        .arg(format!("input-file.{key}.txt"))
        .args(["--server", servers, "--subject", &format!("lines.{key}")])
        .arg("--status-file")
        .arg(dir.join(format!("feeder.{key}.status")));
    Proc::spawn(
        &format!("feeder.{key}"),
        cmd,
        &dir.join(format!("feeder.{key}.log")),
    )
    .expect("start nats-feed")
}

fn start_sink(servers: &str, dir: &Path) -> Proc {
    let ready = dir.join("sink.ready");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = crasher();
    cmd.arg("nats-sink")
        .args(["--server", servers, "--output"])
        .arg(dir.join("sink/output"))
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready);
    let p = Proc::spawn("sink", cmd, &dir.join("sink.log")).expect("start nats-sink");
    assert!(
        wait_until(Instant::now() + Duration::from_secs(10), || ready.exists()),
        "nats-sink never wrote its ready file"
    );
    p
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Kill -9 of the stream leader, SIGSTOP of another node, kill -9 of the
/// sink and of a feeder, each restarted: every key's output is still its
/// whole input, exactly once and in order.
#[test]
fn two_keys_survive_leader_kill_pause_and_restarts() {
    let Some(server) = nats_server() else {
        return skip("two_keys_survive_leader_kill_pause_and_restarts");
    };
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    std::fs::create_dir(dir.join("sink")).unwrap();
    let st = crasher()
        .args([
            "create-input-files",
            "--keys",
            "A,B",
            "--source-bytes",
            "96000",
        ])
        .arg("--dir")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let mut c = Cluster::start(server, dir);
    let servers = c.servers();
    let mut sink = start_sink(&servers, dir);
    let mut feeders: Vec<(char, Proc)> = ['A', 'B']
        .into_iter()
        .map(|k| (k, start_feeder(&servers, dir, k)))
        .collect();
    let status = |k: char| dir.join(format!("feeder.{k}.status"));
    let long = || Instant::now() + Duration::from_secs(30);

    // 1. SIGKILL the stream's leader once lines are flowing.
    assert!(
        wait_until(long(), || acked(&status('A')).is_some_and(|a| a > 0)),
        "no line acknowledged: {}",
        tail(&dir.join("feeder.A.log"))
    );
    let mut leader = None;
    wait_until(long(), || {
        leader = c.stream_leader(None);
        leader.is_some()
    });
    let killed = leader.expect("stream LINES has a leader");
    let at_kill = acked(&status('A'));
    let t0 = Instant::now();
    c.nodes[killed].as_mut().unwrap().kill().unwrap();
    eprintln!("killed the stream leader n{killed} at acked offset {at_kill:?}");
    // The survivors elect a new leader and publishing goes on.
    assert!(
        wait_until(long(), || acked(&status('A')) > at_kill),
        "no progress after killing leader n{killed}: {}",
        tail(&dir.join("feeder.A.log"))
    );
    eprintln!("publishing resumed {:?} after the kill", t0.elapsed());
    c.start_node(killed);
    c.wait_healthy(killed);

    // 2. SIGSTOP the current leader (or another node) for 3 s.
    let paused = c
        .stream_leader(None)
        .filter(|&l| l != killed)
        .unwrap_or((killed + 1) % NODES);
    c.node(paused).signal(Signal::SIGSTOP).unwrap();
    eprintln!("paused n{paused} for 3 s");
    std::thread::sleep(Duration::from_secs(3));
    c.node(paused).signal(Signal::SIGCONT).unwrap();

    // 3. SIGKILL the sink and a feeder; restart both.
    sink.kill().unwrap();
    sink = start_sink(&servers, dir);
    if feeders[0].1.is_running() {
        feeders[0].1.kill().unwrap();
        feeders[0].1 = start_feeder(&servers, dir, 'A');
        eprintln!("killed and restarted the sink and feeder A");
    }

    for (k, f) in &mut feeders {
        let s = f
            .wait_deadline(Instant::now() + Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("feeder {k}: {e}: {}", tail(f.log_path())));
        assert!(s.success(), "feeder {k}: {s:?}: {}", tail(f.log_path()));
        let st = FeedStatus::read(&status(*k)).unwrap();
        assert!(st.done && st.acked == Some(st.last_line_offset), "{st:?}");
    }

    // Every line reaches the sink's committed output.
    let inputs: Vec<(u8, PathBuf)> = [b'A', b'B']
        .into_iter()
        .map(|k| (k, dir.join(format!("input-file.{}.txt", k as char))))
        .collect();
    let complete = wait_until(long(), || {
        verify::check::check_keys(&dir.join("sink"), inputs.clone(), true)
            .is_ok_and(|v| v.iter().all(|s| s.holds()))
    });
    for (k, input) in &inputs {
        let out = crasher()
            .args(["verify", &(*k as char).to_string()])
            .arg(input)
            .arg("--sink-dir")
            .arg(dir.join("sink"))
            .arg("--complete")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && complete,
            "key {}: {text}\nsink log:\n{}",
            *k as char,
            tail(&dir.join("sink.log"))
        );
        assert!(text.starts_with("OK: "), "{text}");
    }
    // Dedup held at the stream itself: each line is stored once.
    let lines: u64 = inputs
        .iter()
        .map(|(_, p)| {
            std::fs::read(p)
                .unwrap()
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64
        })
        .sum();
    let leader = c.stream_leader(None).expect("a leader at the end");
    assert_eq!(c.stream_messages(leader), Some(lines));
    let sink_log = std::fs::read_to_string(dir.join("sink.log")).unwrap();
    assert!(!sink_log.contains("ERROR"), "{sink_log}");
    drop(sink);
}

/// The soak itself on the NATS profile: three nodes, node 1 crashed and
/// restarted, random pauses; it must end with exit 0 (EOF success or the
/// duration reached with every committed byte verified).
#[test]
fn soak_with_crashes_and_pauses_holds() {
    let Some(server) = nats_server() else {
        return skip("soak_with_crashes_and_pauses_holds");
    };
    let t = tempfile::tempdir().unwrap();
    let mut cmd = crasher();
    cmd.current_dir(t.path())
        .env("CRASHER_NATS_SERVER", &server)
        .args(["3", "crash1", "pause", "--env"])
        .arg(root().join("env/nats-jetstream.toml"))
        // 200 kB per key at 5 kB/s outlasts the 30 s the soak must run.
        .args(["--keys", "A,B", "--input-bytes", "200000", "--rate", "5000"])
        .args(["--duration", "30s", "--on-failure", "kill", "--runs"])
        .arg(t.path().join("runs"))
        // A pause may fire in the last seconds, too late to be observed by
        // a commit before 30 s; the verdict would then rightly be unknown
        // (exit 3). This test is about holding, not coverage; coverage has
        // its own tests in schedule.rs.
        .args(["--min-observed", "0"])
        // The first pause asks for its turn 5–8 s in rather than 8–18 s,
        // so it has several chances before faults stop at 25 s even when
        // a slow machine takes long to observe a crash.
        .args(["--timing", "pause_gap_min=2,pause_gap_max=5"]);
    let log = t.path().join("soak.log");
    let started = Instant::now();
    let mut p = Proc::spawn("soak", cmd, &log).unwrap();
    let st = p
        .wait_deadline(Instant::now() + Duration::from_secs(80))
        .unwrap_or_else(|e| panic!("{e}: {}", tail(&log)));
    let text = std::fs::read_to_string(&log).unwrap();
    let glyphs = common::fault_glyphs(&text);
    assert!(st.success(), "{st:?}\n{text}");
    assert!(
        text.contains("SANITY LOOP SUCCESS") || text.contains("Verified so far"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "the soak ended before 30 s: {text}"
    );
    assert!(
        common::saw(&glyphs, "c1") && common::saw(&glyphs, "r1"),
        "node 1 was never crashed: {text}"
    );
    // Any of the three nodes (glyphs p0, p1, p2) may be paused; the run's
    // own count is on its coverage line (a glyph search would also match a
    // temporary path such as `.tmp0…`).
    let paused = regex::Regex::new(r"Fault coverage.*\bpause [1-9][0-9]* fired").unwrap();
    assert!(paused.is_match(&text), "no node was ever paused: {text}");
}

/// `crasher verify --mode at-least-once` counts a repeat instead of failing.
#[test]
fn verify_mode_at_least_once_on_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let spec = verify::input::InputSpec {
        keys: vec![b'A'],
        source_bytes: 100 * 16,
        seed: 1,
        tcp: false,
    };
    let input = verify::input::write_input_files(dir, &spec)
        .unwrap()
        .remove(0);
    let sink = dir.join("sink");
    std::fs::create_dir(&sink).unwrap();
    let text = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let mut w = verify::fixture::FakeWorker::new(&sink, "worker1").unwrap();
    for i in [0, 1, 2, 1, 2, 3] {
        w.write(lines[i]).unwrap();
    }
    w.commit(1.0).unwrap();
    let run = |mode: &str| {
        let out = crasher()
            .args(["verify", "A"])
            .arg(&input)
            .arg("--sink-dir")
            .arg(&sink)
            .args(["--mode", mode])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run("at-least-once");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 repeated line(s) are skipped"), "{text}");
    let (code, text) = run("exactly-once");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("duplicate"), "{text}");
    let (code, _) = run("sometimes");
    assert_eq!(code, Some(2));
}
