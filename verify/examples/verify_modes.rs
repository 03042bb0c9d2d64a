//! Time and peak memory of one full verification of the default corpus
//! (10 keys × 12.4 MB) in the prefix mode and the work-queue mode.
//!
//! ```text
//! cargo run --release -p verify --example verify_modes [-- DIR [REPEATS]]
//! ```
//!
//! Writes the default input files (as `crasher create-input-files`) and two
//! sink directories holding their whole content in the sink's txnlog
//! format, over three workers in ~64 KiB transactions: `sink-in-order`
//! (each key's lines in input order) and `sink-shuffled` (every line of
//! every key in one random permutation). DIR defaults to a temporary
//! directory, removed at the end; an existing DIR is reused.
//!
//! Each measurement runs in a child process of its own (this program
//! again), so that its peak resident set is its own: the child notes
//! `VmHWM` before and after one verification round over everything
//! committed (`IncrementalVerifier::check`, then the whole input required
//! of every key) and the heap the work-queue state holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use verify::check::{KeyStatus, Mode};
use verify::fixture::{write_full_sink, Order};
use verify::incremental::IncrementalVerifier;
use verify::input::{input_file_name, write_input_files, InputSpec};

/// A field of `/proc/self/status` in KiB (`VmHWM:` is the peak resident set).
fn vm(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The default keys' input files in `dir`.
fn inputs(dir: &Path) -> Vec<(u8, PathBuf)> {
    InputSpec::default()
        .keys
        .iter()
        .map(|&k| (k, dir.join(input_file_name(k))))
        .collect()
}

/// The child: one verification, then prints
/// `seconds hwm_before_kib hwm_after_kib state_bytes committed_bytes`.
fn child(mode: &str, sink: &Path, dir: &Path) -> anyhow::Result<()> {
    let mode = match mode {
        "exactly-once" => Mode::ExactlyOnce,
        "work-queue" => Mode::WorkQueue,
        other => anyhow::bail!("unknown mode {other}"),
    };
    let inputs = inputs(dir);
    let before = vm("VmHWM:");
    let t = Instant::now();
    let mut v = IncrementalVerifier::new(sink, inputs.clone())?.with_mode(mode);
    v.check()?;
    let mut st: Vec<KeyStatus> = Vec::new();
    for (k, _) in &inputs {
        st.extend(v.require_complete(*k)?);
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(st.iter().all(KeyStatus::holds), "{st:?}");
    let bytes: u64 = st.iter().map(|s| s.committed_bytes).sum();
    println!(
        "{secs} {before} {} {} {bytes}",
        vm("VmHWM:"),
        v.work_queue_heap_bytes()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        anyhow::ensure!(args.len() == 5, "--child MODE SINK DIR");
        return child(&args[2], Path::new(&args[3]), Path::new(&args[4]));
    }
    let tmp;
    let dir = match args.get(1) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let repeats: usize = args.get(2).map_or(Ok(3), |r| r.parse())?;
    std::fs::create_dir_all(&dir)?;
    let inputs = inputs(&dir);
    if !inputs.iter().all(|(_, p)| p.is_file()) {
        write_input_files(&dir, &InputSpec::default())?;
    }
    for (name, order) in [
        ("sink-in-order", Order::InOrder),
        ("sink-shuffled", Order::Shuffled { seed: 1 }),
    ] {
        let sink = dir.join(name);
        if !sink.is_dir() {
            let n = write_full_sink(&sink, &inputs, 3, order, 1.7e9)?;
            eprintln!("wrote {name}: {n} bytes");
        }
    }
    println!(
        "| mode | sink | time (s), {repeats} runs | peak RSS before → after (MiB) | work-queue state (KiB) |"
    );
    println!("|---|---|---|---|---|");
    for (mode, sink) in [
        ("exactly-once", "sink-in-order"),
        ("work-queue", "sink-in-order"),
        ("work-queue", "sink-shuffled"),
    ] {
        let mut times = Vec::new();
        let mut peak = (0u64, 0u64);
        let mut state = 0u64;
        let mut bytes = 0u64;
        for _ in 0..repeats {
            let out = Command::new(std::env::current_exe()?)
                .args(["--child", mode])
                .arg(dir.join(sink))
                .arg(&dir)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{mode} on {sink}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout)?;
            let f: Vec<f64> = text
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            anyhow::ensure!(f.len() == 5, "child said {text:?}");
            times.push(f[0]);
            peak = peak.max((f[2] as u64, f[1] as u64));
            state = f[3] as u64;
            bytes = f[4] as u64;
        }
        let shown: Vec<String> = times.iter().map(|t| format!("{t:.3}")).collect();
        println!(
            "| {mode} | {sink} ({:.1} MB) | {} | {:.1} → {:.1} | {:.0} |",
            bytes as f64 / 1e6,
            shown.join(", "),
            peak.1 as f64 / 1024.0,
            peak.0 as f64 / 1024.0,
            state as f64 / 1024.0
        );
    }
    Ok(())
}
