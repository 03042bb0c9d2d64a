//! Triage throughput on a generated corpus of worker logs.
//!
//! ```text
//! cargo run --release -p triage --example triage_bench [-- MEGABYTES [DIR]]
//! ```
//!
//! Writes MEGABYTES (default 240) of tracing-style log lines, with a
//! failure line about every 20,000 lines, as 8 rotated `.gz` files (fast
//! compression, like the harness's rotation) and 2 plain `.log` files into
//! DIR (default: a temporary directory, removed afterwards). Then it
//! measures, best of 3:
//! - one core: every file read one after the other on one thread;
//! - all cores: the `triage` of the whole directory, files in parallel.
//!
//! Figures are megabytes (10^6 bytes) of decompressed log per second.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::write::GzEncoder;
use triage::scan::{scan_file, Needles};
use triage::timeline::FaultWindows;

const GZ_FILES: usize = 8;
const PLAIN_FILES: usize = 2;

/// A deterministic pseudo-random sequence (xorshift), so every run of the
/// benchmark reads the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn line(out: &mut Vec<u8>, rng: &mut Rng, t: u64, worker: usize) {
    let r = rng.next();
    let (secs, micros) = (t / 1_000_000, t % 1_000_000);
    let day = triage::time::format_utc(secs as f64);
    let stamp = format!("{}T{}.{micros:06}Z", &day[..10], &day[11..19]);
    let _ = match r % 20_000 {
        0 => writeln!(out, "{stamp} ERROR passthrough::owner: sink connection failed: Connection reset by peer (os error 104) offset {}", r >> 20),
        1 => writeln!(out, "thread 'tokio-runtime-worker' panicked at passthrough/src/owner.rs:212:9:\noffset {} beyond end {} of stream 0x{:x}", r >> 40, r >> 44, r >> 16),
        2 => writeln!(out, "{stamp} FATAL duplicate data: output offset {} > message_id {} worker worker{worker}", r >> 30, r >> 31),
        3..=2000 => writeln!(out, "{stamp}  WARN passthrough::ingress: feeder connection {}: slow consumer, {} frames queued", r % 97, r >> 50),
        _ => writeln!(
            out,
            "{stamp}  INFO passthrough::owner: key {} committed checkpoint {} at offset {} ({} bytes, {} messages) worker{worker}",
            (b'A' + (r % 10) as u8) as char,
            (r >> 8) % 100_000,
            (r >> 12) % 1_000_000_000,
            (r >> 20) % 65_536,
            (r >> 36) % 512
        ),
    };
}

fn generate(dir: &Path, total: u64) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir.join("logs"))?;
    let per_file = total / (GZ_FILES + PLAIN_FILES) as u64;
    let mut files = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut t = 1_700_000_000_000_000u64;
    for i in 0..GZ_FILES + PLAIN_FILES {
        let worker = i % 5;
        let gz = i < GZ_FILES;
        let name = if gz {
            format!(
                "worker{worker}.{}.gz",
                1_700_000_000_000u64 + i as u64 * 1000
            )
        } else {
            format!("worker{worker}.log")
        };
        let path = dir.join("logs").join(name);
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut sink: Box<dyn Write> = if gz {
            Box::new(GzEncoder::new(file, flate2::Compression::fast()))
        } else {
            Box::new(file)
        };
        let mut buf = Vec::with_capacity(1 << 20);
        let mut written = 0u64;
        while written < per_file {
            buf.clear();
            while buf.len() < (1 << 20) - 512 {
                t += 1 + rng.next() % 2000;
                line(&mut buf, &mut rng, t, worker);
            }
            sink.write_all(&buf)?;
            written += buf.len() as u64;
        }
        sink.flush()?;
        drop(sink);
        files.push(path);
    }
    Ok(files)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let megabytes: u64 = args.first().map_or(Ok(240), |s| s.parse())?;
    let tmp;
    let dir = match args.get(1) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_owned()
        }
    };
    let began = Instant::now();
    let files = generate(&dir, megabytes * 1_000_000)?;
    let on_disk: u64 = files
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "corpus: {} files ({GZ_FILES} .gz, {PLAIN_FILES} plain) in {}, {:.1} MB on disk, generated in {:.1}s",
        files.len(),
        dir.display(),
        on_disk as f64 / 1e6,
        began.elapsed().as_secs_f64()
    );

    let needles = Needles::default();
    let mut best_one = f64::MAX;
    let mut bytes = 0;
    let mut gz_bytes = 0;
    let mut best_gz = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut b = 0;
        let mut gzb = 0;
        let mut gz_time = 0.0;
        for f in &files {
            let ft = Instant::now();
            let s = scan_file(
                f,
                &f.display().to_string(),
                &needles,
                &FaultWindows::default(),
            );
            assert!(s.damaged.is_none(), "{:?}", s.damaged);
            b += s.bytes;
            if s.gzipped {
                gzb += s.bytes;
                gz_time += ft.elapsed().as_secs_f64();
            }
        }
        best_one = best_one.min(t.elapsed().as_secs_f64());
        best_gz = best_gz.min(gz_time);
        bytes = b;
        gz_bytes = gzb;
    }
    println!(
        "one core:  {:.1} MB of log in {:.3}s = {:.0} MB/s (gzipped files alone: {:.0} MB/s; plain alone: {:.0} MB/s)",
        bytes as f64 / 1e6,
        best_one,
        bytes as f64 / 1e6 / best_one,
        gz_bytes as f64 / 1e6 / best_gz,
        (bytes - gz_bytes) as f64 / 1e6 / (best_one - best_gz)
    );

    let mut best_all = f64::MAX;
    let mut found = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = triage::triage(&dir)?;
        best_all = best_all.min(t.elapsed().as_secs_f64());
        assert_eq!(r.bytes, bytes);
        found = r.signatures.iter().map(|s| s.count).sum::<u64>();
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "all cores ({cores}): triage of the directory in {:.3}s = {:.0} MB/s ({} evidence lines)",
        best_all,
        bytes as f64 / 1e6 / best_all,
        found
    );
    Ok(())
}
