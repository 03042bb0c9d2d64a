//! A small multi-process cluster for the end-to-end tests: the real
//! `crasher sink`, `crasher feed` and `crasher verify`, and `passthrough`
//! workers, all on loopback with port 0 and ready files, logs in a
//! temporary folder (kept and printed when a test fails).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use connector::external::{ClusterStatus, ExternalMsg, ShrinkRequest};
use procs::{wait_until, Proc};

/// The `crasher` binary (sink, feed, verify), built by `cargo build --workspace`.
pub fn crasher() -> PathBuf {
    procs::sibling_binary("crasher").expect(
        "the crasher binary is not built next to the tests: run `cargo build --workspace` first",
    )
}

/// This crate's worker binary: cargo's for the tests; beside the running
/// executable for the examples (`cargo build --release -p passthrough`).
pub fn passthrough() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_passthrough") {
        Some(p) => PathBuf::from(p),
        None => procs::sibling_binary("passthrough").expect(
            "the passthrough binary is not built next to this program: \
             run `cargo build -p passthrough` (with --release for a release build) first",
        ),
    }
}

/// Addresses a worker reports in its ready file.
#[derive(Debug, Clone, Default)]
pub struct Addrs {
    /// Source (feeders).
    pub source: String,
    /// External API.
    pub external: String,
    /// Data listener.
    pub data: String,
    /// Control listener (initializer).
    pub control: String,
}

/// One worker process.
pub struct Worker {
    /// The process.
    pub proc: Proc,
    /// Its bound addresses.
    pub addrs: Addrs,
}

/// A cluster under test.
pub struct Cluster {
    /// Everything lives here (kept when the test fails).
    tmp: Option<tempfile::TempDir>,
    /// Its path.
    pub root: PathBuf,
    /// Routing keys, one input file and feeder each.
    pub keys: Vec<char>,
    /// The sink.
    pub sink: Option<Proc>,
    /// Its address.
    pub sink_addr: String,
    /// Workers by name.
    pub workers: BTreeMap<String, Worker>,
    /// The initializer's first addresses (reused when it restarts).
    pub init: Addrs,
    /// Feeders by key.
    pub feeders: BTreeMap<char, Proc>,
    /// `--checkpoint-interval`.
    pub interval: String,
    /// Bug switched on in every worker started from now on.
    pub inject: Option<String>,
    /// TCP mode: workers run `--source tcp --sink tcp`, the sink is
    /// `crasher receive` and the input files are length-framed records.
    pub tcp: bool,
    /// `PASSTHROUGH_LOG` of every worker started from now on.
    pub log_filter: String,
    /// Keep the files at the end even when nothing failed.
    pub keep: bool,
    /// Extra arguments of `crasher sink` (e.g. `--por original`).
    pub sink_args: Vec<String>,
    starts: u64,
}

fn read_ready(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

impl Cluster {
    /// A cluster with input files for `keys` (`source_bytes` random bytes
    /// each, about 3.06 times larger as lines).
    pub fn new(keys: &str, source_bytes: u64) -> Cluster {
        Cluster::with_inputs(keys, source_bytes, false)
    }

    /// A TCP mode cluster (see [`Cluster::tcp`]) with input files of
    /// 53-byte framed records for `keys`.
    pub fn new_tcp(keys: &str, source_bytes: u64) -> Cluster {
        Cluster::with_inputs(keys, source_bytes, true)
    }

    fn with_inputs(keys: &str, source_bytes: u64, tcp: bool) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("passthrough-test-")
            .tempdir()
            .unwrap();
        let mut cmd = Command::new(crasher());
        cmd.args(["create-input-files", "--keys", keys, "--seed", "1"])
            .arg("--source-bytes")
            .arg(source_bytes.to_string())
            .arg("--dir")
            .arg(dir.path().join("in"));
        if tcp {
            cmd.arg("--tcp");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "create-input-files: {out:?}");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        Cluster {
            root: dir.path().to_owned(),
            tmp: Some(dir),
            keys: keys.split(',').map(|k| k.chars().next().unwrap()).collect(),
            sink: None,
            sink_addr: String::new(),
            workers: BTreeMap::new(),
            init: Addrs::default(),
            feeders: BTreeMap::new(),
            interval: "250ms".into(),
            inject: None,
            tcp,
            log_filter: "info,passthrough=debug".into(),
            keep: false,
            sink_args: Vec::new(),
            starts: 0,
        }
    }

    /// A path in the test folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn log(&mut self, what: &str) -> PathBuf {
        self.starts += 1;
        self.path(&format!("logs/{what}.{}.log", self.starts))
    }

    /// The input file of `key`.
    pub fn input(&self, key: char) -> PathBuf {
        self.path(&format!("in/input-file.{key}.txt"))
    }

    /// Starts the sink (on its previous port when restarting): `crasher
    /// sink`, or in TCP mode `crasher receive` appending to `sink/output`.
    pub fn start_sink(&mut self) {
        let ready = self.path("sink.ready");
        let _ = std::fs::remove_file(&ready);
        let listen = if self.sink_addr.is_empty() {
            "127.0.0.1:0".to_string()
        } else {
            self.sink_addr.clone()
        };
        let log = self.log("sink");
        let mut cmd = Command::new(crasher());
        if self.tcp {
            std::fs::create_dir_all(self.path("sink")).unwrap();
            cmd.args(["receive", "--listen", &listen, "--output"])
                .arg(self.path("sink/output"))
                .arg("--ready-file")
                .arg(&ready);
        } else {
            cmd.args(["sink", "--listen", &listen, "--output"])
                .arg(self.path("sink/output"))
                .arg("--ready-file")
                .arg(&ready)
                .arg("--log")
                .arg(&log)
                .args(&self.sink_args);
        }
        self.sink = Some(Proc::spawn("sink", cmd, &log).unwrap());
        let mut addr = None;
        assert!(
            wait_until(Instant::now() + Duration::from_secs(10), || {
                addr = std::fs::read_to_string(&ready).ok();
                addr.is_some()
            }),
            "the sink did not start; see {}",
            log.display()
        );
        self.sink_addr = addr.unwrap().trim().to_string();
    }

    fn spawn_worker(&mut self, name: &str, args: Vec<String>) -> Addrs {
        self.launch(name, args);
        let ok = wait_until(Instant::now() + Duration::from_secs(10), || {
            self.ready(name) || !self.workers.get_mut(name).unwrap().proc.is_running()
        });
        let w = &self.workers[name];
        assert!(
            ok && !w.addrs.source.is_empty(),
            "{name} did not start; see {}",
            w.proc.log_path().display()
        );
        w.addrs.clone()
    }

    /// Starts a worker process without waiting for it to listen (its
    /// addresses stay empty until [`Cluster::ready`] says so).
    fn launch(&mut self, name: &str, mut args: Vec<String>) {
        let ready = self.path(&format!("{name}.ready"));
        let _ = std::fs::remove_file(&ready);
        args.extend([
            "--out".into(),
            self.sink_addr.clone(),
            "--name".into(),
            name.into(),
            "--resilience-dir".into(),
            self.path(&format!("state/{name}")).display().to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
            "--checkpoint-interval".into(),
            self.interval.clone(),
        ]);
        if let Some(bug) = &self.inject {
            args.extend(["--inject".into(), bug.clone()]);
        }
        if self.tcp {
            args.extend(["--source", "tcp", "--sink", "tcp"].map(String::from));
        }
        let log = self.log(name);
        let mut cmd = Command::new(passthrough());
        cmd.args(&args).env("PASSTHROUGH_LOG", &self.log_filter);
        let proc = Proc::spawn(name, cmd, &log).unwrap();
        self.workers.insert(
            name.to_string(),
            Worker {
                proc,
                addrs: Addrs::default(),
            },
        );
    }

    /// Whether worker `name` is listening: once its ready file is written,
    /// its addresses are filled in.
    pub fn ready(&mut self, name: &str) -> bool {
        let ready = self.path(&format!("{name}.ready"));
        let Some(w) = self.workers.get_mut(name) else {
            return false;
        };
        if !w.addrs.source.is_empty() {
            return true;
        }
        let Some(v) = read_ready(&ready) else {
            return false;
        };
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        w.addrs = Addrs {
            source: s("source"),
            external: s("external"),
            data: s("data"),
            control: s("control"),
        };
        true
    }

    /// Starts the initializer (on its first addresses when restarting).
    pub fn start_initializer(&mut self, worker_count: u64) {
        let pick = |a: &str| {
            if a.is_empty() {
                "127.0.0.1:0".to_string()
            } else {
                a.to_string()
            }
        };
        let args = vec![
            "--cluster-initializer".to_string(),
            "--worker-count".into(),
            worker_count.to_string(),
            "--in".into(),
            pick(&self.init.source),
            "--control".into(),
            pick(&self.init.control),
            "--data".into(),
            pick(&self.init.data),
            "--external".into(),
            pick(&self.init.external),
        ];
        let addrs = self.spawn_worker("initializer", args);
        if self.init.control.is_empty() {
            self.init = addrs;
        }
    }

    /// Starts (or restarts) a non-initializer worker; `join` adds `--join`.
    pub fn start_worker(&mut self, name: &str, join: bool) {
        let args = self.member_args(join, &Addrs::default());
        self.spawn_worker(name, args);
    }

    /// Restarts worker `name` on the addresses it had (as the soak does),
    /// without waiting for it to listen: feeders sent to it find it again.
    pub fn relaunch_worker(&mut self, name: &str) {
        let prev = self
            .workers
            .get(name)
            .map(|w| w.addrs.clone())
            .unwrap_or_default();
        let args = self.member_args(false, &prev);
        self.launch(name, args);
    }

    /// Arguments of a non-initializer on the addresses in `at` (port 0 for
    /// those empty).
    fn member_args(&self, join: bool, at: &Addrs) -> Vec<String> {
        let pick = |a: &str| {
            if a.is_empty() {
                "127.0.0.1:0".to_string()
            } else {
                a.to_string()
            }
        };
        let mut args = vec![
            "--in".to_string(),
            format!("InputBlobs@{}:Dragons-Love-Tacos:500:50", pick(&at.source)),
            "--my-data".into(),
            pick(&at.data),
            "--my-control".into(),
            "127.0.0.1:0".into(),
            "--external".into(),
            pick(&at.external),
        ];
        if join {
            args.extend(["--join".into(), self.init.control.clone()]);
        } else {
            args.extend(["--control".into(), self.init.control.clone()]);
        }
        args
    }

    /// Starts a sink, an initializer and `n - 1` workers, and waits until
    /// all of them process.
    pub fn start(&mut self, n: usize) {
        self.start_sink();
        self.start_initializer(n as u64);
        for i in 1..n {
            self.start_worker(&format!("worker{i}"), false);
        }
        let names = self.names();
        self.wait_processing(&names, n, Duration::from_secs(20));
    }

    /// Worker names, initializer first.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.workers.keys().cloned().collect();
        v.sort_by_key(|n| (n != "initializer", n.clone()));
        v
    }

    /// SIGKILLs a worker.
    pub fn kill(&mut self, name: &str) {
        let w = self.workers.get_mut(name).expect("no such worker");
        w.proc.kill().unwrap();
    }

    /// SIGKILLs the sink.
    pub fn kill_sink(&mut self) {
        self.sink.as_mut().unwrap().kill().unwrap();
    }

    /// Starts the feeder of `key` (rate 0 = unthrottled) at the initializer.
    pub fn feed(&mut self, key: char, rate: u64) {
        let target = self.init.source.clone();
        self.feed_to(key, rate, &target);
    }

    /// Starts the feeder of `key` at `target`.
    pub fn feed_to(&mut self, key: char, rate: u64, target: &str) {
        let status = self.path(&format!("feed.{key}.status"));
        let log = self.log(&format!("feed.{key}"));
        let mut cmd = Command::new(crasher());
        cmd.arg("feed")
            .arg(self.input(key))
            .args(["--target", target, "--rate", &rate.to_string()])
            .arg("--status-file")
            .arg(&status)
            .arg("--log")
            .arg(&log);
        self.feeders
            .insert(key, Proc::spawn(&format!("feed.{key}"), cmd, &log).unwrap());
    }

    /// TCP mode: starts `crasher blast` of `key`'s input file at the
    /// initializer, `interval_ms` between batches of 6 records.
    pub fn blast(&mut self, key: char, interval_ms: u64) -> Proc {
        let log = self.log(&format!("blast.{key}"));
        let mut cmd = Command::new(crasher());
        cmd.args(["blast", "--target", &self.init.source, "--file"])
            .arg(self.input(key))
            .args(["--msg-size", "53", "--batch-size", "6", "--interval-ms"])
            .arg(interval_ms.to_string());
        Proc::spawn(&format!("blast.{key}"), cmd, &log).unwrap()
    }

    /// The log of the latest start of `what` (a worker name, `sink`, ...).
    pub fn latest_log(&self, what: &str) -> String {
        let prefix = format!("{what}.");
        let mut best: Option<(u64, PathBuf)> = None;
        for e in std::fs::read_dir(self.path("logs")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if best.as_ref().map_or(true, |(b, _)| n > *b) {
                best = Some((n, e.path()));
            }
        }
        best.and_then(|(_, p)| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Starts every key's feeder.
    pub fn feed_all(&mut self, rate: u64) {
        for k in self.keys.clone() {
            self.feed(k, rate);
        }
    }

    /// The feeder status of `key` (JSON), if written yet.
    pub fn feed_status(&self, key: char) -> Option<serde_json::Value> {
        read_ready(&self.path(&format!("feed.{key}.status")))
    }

    /// The acked position of `key`'s feeder.
    pub fn acked(&self, key: char) -> Option<u64> {
        self.feed_status(key).and_then(|v| v["acked"].as_u64())
    }

    /// Whether `key`'s feeder finished.
    pub fn done(&self, key: char) -> bool {
        self.feed_status(key)
            .is_some_and(|v| v["done"].as_bool() == Some(true))
    }

    /// Waits until every feeder is done.
    pub fn wait_all_done(&self, limit: Duration) -> bool {
        wait_until(Instant::now() + limit, || {
            self.keys.iter().all(|k| self.done(*k))
        })
    }

    /// Waits until some feeder has an acked position (the stream is flowing
    /// and committing) but not every feeder is done.
    pub fn wait_mid_stream(&self, limit: Duration) {
        let ok = wait_until(Instant::now() + limit, || {
            self.keys
                .iter()
                .any(|k| self.acked(*k).is_some_and(|a| a > 0))
        });
        assert!(
            ok,
            "no feeder was ever acked; logs in {}",
            self.root.display()
        );
        assert!(
            !self.keys.iter().all(|k| self.done(*k)),
            "the feeders finished before the fault: slow them down"
        );
    }

    /// `crasher verify KEY INPUT --sink-dir DIR --complete`: exit code and output.
    pub fn verify(&self, key: char) -> (i32, String) {
        let out = Command::new(crasher())
            .args(["verify", &key.to_string()])
            .arg(self.input(key))
            .arg("--sink-dir")
            .arg(self.path("sink"))
            .arg("--complete")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// Asserts every key's committed output equals its input.
    pub fn assert_complete(&self) {
        for k in &self.keys {
            let (code, text) = self.verify(*k);
            assert_eq!(code, 0, "key {k}: {text}\nlogs in {}", self.root.display());
        }
    }

    /// Keys whose verification fails.
    pub fn failing_keys(&self) -> Vec<(char, String)> {
        self.keys
            .iter()
            .filter_map(|k| {
                let (code, text) = self.verify(*k);
                (code != 0).then_some((*k, text))
            })
            .collect()
    }

    /// Sends one external request to `name` and returns the reply.
    pub fn external(&self, name: &str, msg: &ExternalMsg) -> Option<ExternalMsg> {
        let addr = &self.workers.get(name)?.addrs.external;
        external_request(addr, msg)
    }

    /// The cluster status `name` reports (None: not initialized / no answer).
    pub fn status(&self, name: &str) -> Option<ClusterStatus> {
        match self.external(name, &ExternalMsg::ClusterStatusQuery)? {
            ExternalMsg::ClusterStatus(s) => Some(s),
            _ => None,
        }
    }

    /// Waits until every one of `names` reports processing with `count` members.
    pub fn wait_processing(&self, names: &[String], count: usize, limit: Duration) {
        let ok = wait_until(Instant::now() + limit, || {
            names.iter().all(|n| {
                self.status(n)
                    .is_some_and(|s| s.processing_messages && s.worker_count == count as u64)
            })
        });
        assert!(
            ok,
            "not every worker of {names:?} processes with {count} members: {:?}; logs in {}",
            names.iter().map(|n| self.status(n)).collect::<Vec<_>>(),
            self.root.display()
        );
    }

    /// Asks the initializer to remove `names`.
    pub fn shrink(&self, names: &[&str]) -> Option<ExternalMsg> {
        self.external(
            "initializer",
            &ExternalMsg::Shrink(ShrinkRequest {
                query: false,
                node_names: names.iter().map(|s| s.to_string()).collect(),
                node_count: 0,
            }),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for f in self.feeders.values_mut() {
            let _ = f.kill();
        }
        for w in self.workers.values_mut() {
            let _ = w.proc.kill();
        }
        if let Some(s) = self.sink.as_mut() {
            let _ = s.kill();
        }
        if self.keep || std::thread::panicking() || std::env::var_os("PASSTHROUGH_KEEP").is_some() {
            if let Some(t) = self.tmp.take() {
                eprintln!("test files kept in {}", t.keep().display());
            }
        }
    }
}

/// One request/reply on the external API at `addr`.
pub fn external_request(addr: &str, msg: &ExternalMsg) -> Option<ExternalMsg> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(35))).ok()?;
    let mut buf = BytesMut::new();
    msg.encode(&mut buf).ok()?;
    s.write_all(&buf).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    ExternalMsg::decode_body(Bytes::from(body)).ok()
}
