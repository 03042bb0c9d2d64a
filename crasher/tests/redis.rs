//! Redis Streams with Sentinel as a real system under test: the
//! `redis-sentinel` profile's three nodes (redis-server + Sentinel each),
//! `crasher redis-feed` and `crasher redis-sink` as processes, the primary
//! crashed, and the committed output verified.
//!
//! The soak needs a `redis-server` binary (`.ci/install-deps` installs
//! Debian's; CI runs it). Without one it prints why it is skipped and
//! passes; nothing else makes it skip. The other tests need no server.

mod common;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The redis-server to use: `$CRASHER_REDIS_SERVER`, `PATH`, then
/// Debian's `/usr/bin` (the profile looks in the same places).
fn redis_server() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CRASHER_REDIS_SERVER") {
        candidates.push(p.into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("redis-server")));
    }
    candidates.push("/usr/bin/redis-server".into());
    candidates.into_iter().find(|p| p.is_file())
}

fn skip(test: &str) {
    let msg = format!(
        "SKIPPED {test}: no redis-server binary (looked at $CRASHER_REDIS_SERVER, PATH, \
         /usr/bin); run .ci/install-deps to run it"
    );
    println!("{msg}");
    eprintln!("{msg}");
}

/// The run directory a soak printed first (`Run ID in DIR`).
fn run_dir(stdout: &str) -> PathBuf {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split_once(" in ").map(|(_, d)| d))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no run directory in:\n{stdout}"))
}

/// The primaries a tool's log says it followed, in order (`primary of
/// crasher is HOST:PORT`), without repeats in a row.
fn primaries(log: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in log.lines() {
        if let Some(rest) = l.split("primary of crasher is ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
            if v.last() != Some(&addr) {
                v.push(addr);
            }
        }
    }
    v
}

/// The soak on the Redis profile: node 0 (the first primary) crashed with
/// long down-times, so the Sentinels fail over; the sink and feeders must
/// follow the new primary, and the run must end with a verdict and leave
/// no process behind. Redis replicates asynchronously, so a failover may
/// lose acknowledged lines: the verdict may be a violation, but then with
/// a diagnosis.
#[test]
fn soak_with_primary_crashes_fails_over_and_ends_with_a_verdict() {
    let Some(server) = redis_server() else {
        return skip("soak_with_primary_crashes_fails_over_and_ends_with_a_verdict");
    };
    let t = tempfile::tempdir().unwrap();
    std::env::set_var("CRASHER_REDIS_SERVER", &server);
    let profile = root().join("env/redis-sentinel.toml");
    let profile = profile.to_str().unwrap();
    // Seed 7's first crash of node 0 keeps it down for more than 4 s
    // (down-times are U[0, 10 s) here): longer than the Sentinels' 1 s
    // down-after plus the ~2 s a promotion takes.
    let (out, stdout, id) = common::soak(
        &t.path().join("runs"),
        &[
            "3",
            "crash0",
            "--env",
            profile,
            "--keys",
            "A,B",
            "--input-bytes",
            "100000",
            "--rate",
            "20000",
            "--duration",
            "30s",
            "--seed",
            "7",
            "--timing",
            "crash_worker_down=10",
            "--min-observed",
            "0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir = run_dir(&stdout);
    let read =
        |name: &str| std::fs::read_to_string(dir.join("logs").join(name)).unwrap_or_default();
    let (sink, feed_a, feed_b) = (read("sink.log"), read("feeder.A.log"), read("feeder.B.log"));
    let followed = [
        ("sink", &sink),
        ("feeder A", &feed_a),
        ("feeder B", &feed_b),
    ]
    .map(|(who, log)| (who, primaries(log)));
    let switches = ["worker1.log", "worker2.log"]
        .iter()
        .map(|w| read(w).matches("+switch-master").count())
        .sum::<usize>();
    println!(
        "run {id}: exit {:?}; Sentinel +switch-master lines on nodes 1-2: {switches}; primaries followed: {followed:?}",
        out.status.code()
    );
    let verdict = stdout
        .lines()
        .filter(|l| {
            l.contains("SANITY LOOP") || l.starts_with("VIOLATION") || l.contains("Verified")
        })
        .collect::<Vec<_>>();
    println!("verdict lines: {verdict:#?}");
    match out.status.code() {
        Some(0) => assert!(
            stdout.contains("SANITY LOOP SUCCESS") || stdout.contains("Verified so far"),
            "{stdout}\n{stderr}"
        ),
        Some(1) => assert!(
            stdout.contains("VIOLATION (")
                && ["missing", "duplicate", "reordered", "corrupt", "extra"]
                    .iter()
                    .any(|c| stdout.contains(c)),
            "a violation without a diagnosis:\n{stdout}\n{stderr}"
        ),
        other => panic!("no verdict (exit {other:?}):\n{stdout}\n{stderr}"),
    }
    assert!(
        common::saw(&common::fault_glyphs(&stdout), "c0"),
        "node 0 was never crashed:\n{stdout}"
    );
    assert!(switches > 0, "the Sentinels never failed over:\n{stdout}");
    for (who, list) in &followed {
        assert!(
            list.len() >= 2,
            "{who} never followed a new primary (followed {list:?}):\n{stdout}"
        );
    }
}

/// `crasher 2 ... --env redis-sentinel` is refused before anything starts:
/// the three Sentinels live on nodes 0-2.
#[test]
fn fewer_than_three_nodes_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let out = common::crasher()
        .current_dir(t.path())
        .args(["2", "crash0", "--env"])
        .arg(root().join("env/redis-sentinel.toml"))
        .arg("--runs")
        .arg(t.path().join("runs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs at least 3 workers"), "{stderr}");
    assert!(
        !t.path().join("runs").exists()
            || std::fs::read_dir(t.path().join("runs"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// Bad arguments of the two tools are usage errors naming the problem.
#[test]
fn bad_arguments_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("A.txt");
    std::fs::write(&input, b"A0000000 x\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "redis-feed",
                "IN",
                "--sentinels",
                "127.0.0.1",
                "--stream",
                "lines:A",
            ],
            "not HOST:PORT",
        ),
        (
            &[
                "redis-feed",
                "IN",
                "--sentinels",
                "127.0.0.1:1",
                "--stream",
                "lines:A",
                "--wait",
                "0",
            ],
            "--wait 0",
        ),
        (
            &[
                "redis-feed",
                "IN",
                "--sentinels",
                "127.0.0.1:1",
                "--stream",
                "lines:A",
                "--wait",
                "1",
                "--wait-timeout",
                "5000",
            ],
            "shorter than --timeout",
        ),
        (
            &["redis-sink", "--sentinels", "h:x", "--output", "OUT"],
            "h:x",
        ),
        (
            &[
                "redis-sink",
                "--sentinels",
                "h:1",
                "--output",
                "OUT",
                "--batch",
                "0",
            ],
            "--batch",
        ),
    ];
    for (args, want) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "IN" => input.display().to_string(),
                "OUT" => t.path().join("out").display().to_string(),
                a => a.to_owned(),
            })
            .collect();
        let out = common::crasher().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

/// `crash-primary` follows the failover: once the Sentinels promote a
/// replica, the next crash hits that new primary, not node 0 again (a
/// fixed `crash0` hits a replica from then on).
#[test]
fn crash_primary_crashes_the_new_primary_after_a_failover() {
    let Some(server) = redis_server() else {
        return skip("crash_primary_crashes_the_new_primary_after_a_failover");
    };
    let t = tempfile::tempdir().unwrap();
    std::env::set_var("CRASHER_REDIS_SERVER", &server);
    let profile = root().join("env/redis-sentinel.toml");
    let (out, stdout, id) = common::soak(
        &t.path().join("runs"),
        &[
            "3",
            "crash-primary",
            "--env",
            profile.to_str().unwrap(),
            "--keys",
            "A,B",
            "--input-bytes",
            "1000000",
            "--rate",
            "20000",
            "--duration",
            "45s",
            "--seed",
            "7",
            "--timing",
            "crash_worker_start=2,crash_worker_down=15",
            "--min-observed",
            "0",
        ],
    );
    let crashed: Vec<String> = common::fault_glyphs(&stdout)
        .into_iter()
        .filter(|g| g.starts_with('c') && g[1..].parse::<usize>().is_ok())
        .collect();
    println!(
        "run {id}: exit {:?}; crashes {crashed:?}",
        out.status.code()
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "no verdict:\n{stdout}"
    );
    assert_eq!(crashed.first().map(String::as_str), Some("c0"), "{stdout}");
    assert!(
        crashed.iter().any(|c| c != "c0"),
        "every crash hit node 0: crash-primary did not follow the failover ({crashed:?}):\n{stdout}"
    );
}

/// `redis-sentinel-workqueue`: the sink runs three consumers of one group,
/// so each stream's entries are shared between them, and the run is
/// verified in `work-queue-at-least-once` mode. Sink crashes leave entries
/// pending with each consumer; the restarted sink reads them again by the
/// consumers' fixed names. The run must hold, and more than one consumer
/// must have committed lines.
#[test]
fn work_queue_sink_of_three_consumers_holds_under_sink_crashes() {
    let Some(server) = redis_server() else {
        return skip("work_queue_sink_of_three_consumers_holds_under_sink_crashes");
    };
    let t = tempfile::tempdir().unwrap();
    std::env::set_var("CRASHER_REDIS_SERVER", &server);
    let profile = root().join("env/redis-sentinel-workqueue.toml");
    let (out, stdout, id) = common::soak(
        &t.path().join("runs"),
        &[
            "3",
            "crash-sink",
            "--env",
            profile.to_str().unwrap(),
            "--keys",
            "A,B",
            "--input-bytes",
            "100000",
            "--rate",
            "20000",
            "--duration",
            "40s",
            "--seed",
            "3",
            "--min-observed",
            "0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "run {id}:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("Verify mode: work-queue-at-least-once"),
        "{stdout}"
    );
    let dir = run_dir(&stdout);
    let mut sink_logs = String::new();
    for e in std::fs::read_dir(dir.join("logs")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("sink") && name.ends_with(".log") {
            sink_logs.push_str(&std::fs::read_to_string(&p).unwrap());
        } else if name.starts_with("sink") && name.ends_with(".gz") {
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap()),
                &mut s,
            )
            .unwrap();
            sink_logs.push_str(&s);
        }
    }
    assert!(
        sink_logs.contains("3 consumers share the group checker"),
        "{sink_logs}"
    );
    let committers: std::collections::BTreeSet<&str> = ["sink-0:", "sink-1:", "sink-2:"]
        .into_iter()
        .filter(|c| sink_logs.contains(&format!("{c} committed")))
        .collect();
    assert!(
        committers.len() >= 2,
        "only {committers:?} committed anything:\n{sink_logs}"
    );
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `f` true within `budget` (polled: `procs::wait_until`).
fn poll(budget: std::time::Duration, f: impl FnMut() -> bool) -> bool {
    procs::wait_until(std::time::Instant::now() + budget, f)
}

/// Entries a consumer of the group took and never acknowledged (it died,
/// or a sink with more consumers no longer runs it) are claimed by the
/// sink (`XAUTOCLAIM` after `--claim-idle`) and committed.
#[test]
fn entries_left_pending_by_another_consumer_are_claimed_and_committed() {
    let Some(server) = redis_server() else {
        return skip("entries_left_pending_by_another_consumer_are_claimed_and_committed");
    };
    let t = tempfile::tempdir().unwrap();
    let block = crasher::run::ports::PortBlock::allocate(2).unwrap();
    let (port, sport) = (block.port(0), block.port(1));
    // Own process groups, killed and reaped on drop, output drained.
    let start = |name: &str, args: Vec<String>| {
        let mut cmd = std::process::Command::new(&server);
        cmd.args(args).current_dir(t.path());
        procs::Proc::spawn(name, cmd, &t.path().join(format!("{name}.log"))).unwrap()
    };
    let _primary = start(
        "redis-server",
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from)
        .to_vec(),
    );
    let sconf = t.path().join("sentinel.conf");
    std::fs::write(
        &sconf,
        format!(
            "bind 127.0.0.1\nport {sport}\nprotected-mode no\nsentinel monitor crasher 127.0.0.1 {port} 1\n"
        ),
    )
    .unwrap();
    let _sentinel = start(
        "sentinel",
        vec![sconf.display().to_string(), "--sentinel".into()],
    );
    let up = |p: u16| {
        std::process::Command::new("redis-cli")
            .args(["-p", &p.to_string(), "PING"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    };
    assert!(
        poll(std::time::Duration::from_secs(10), || up(port) && up(sport)),
        "redis-server or Sentinel never answered PING"
    );
    let lines = ["A0000000 a\n", "A0000011 b\n", "A0000022 c\n"];
    for (i, l) in lines.iter().enumerate() {
        redis_cli(
            port,
            &["XADD", "lines:A", "*", "o", &(i * 11).to_string(), "l", l],
        );
    }
    redis_cli(port, &["XGROUP", "CREATE", "lines:A", "checker", "0"]);
    // Consumer "gone" takes all three and never acknowledges them.
    let taken = redis_cli(
        port,
        &[
            "XREADGROUP",
            "GROUP",
            "checker",
            "gone",
            "COUNT",
            "10",
            "STREAMS",
            "lines:A",
            ">",
        ],
    );
    assert!(taken.contains("A0000022"), "{taken}");
    let prefix = t.path().join("output");
    let mut sink = common::crasher();
    sink.args([
        "redis-sink",
        "--sentinels",
        &format!("127.0.0.1:{sport}"),
        "--output",
        prefix.to_str().unwrap(),
        "--claim-idle",
        "0.2",
    ]);
    let _sink = procs::Proc::spawn("sink", sink, &t.path().join("sink.log")).unwrap();
    let data = t.path().join("output.redis");
    let want: String = lines.concat();
    let claimed = poll(std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&data).is_ok_and(|d| d == want)
    });
    let log = std::fs::read_to_string(t.path().join("sink.log")).unwrap_or_default();
    assert!(
        claimed,
        "the pending entries were not committed: output {:?}\n{log}",
        std::fs::read_to_string(&data).unwrap_or_default()
    );
    assert!(log.contains("claimed 3 entr(ies) of lines:A"), "{log}");
    // Acknowledged after the commit: nothing is pending any more.
    assert!(
        poll(std::time::Duration::from_secs(5), || {
            redis_cli(port, &["XPENDING", "lines:A", "checker"]).starts_with("0\n")
        }),
        "{}",
        redis_cli(port, &["XPENDING", "lines:A", "checker"])
    );
}
