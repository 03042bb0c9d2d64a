//! `crasher lossyfs --bench DIR`: the same workloads on a plain folder and
//! through a lossyfs mount, both under DIR, for docs/disk.md.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::mount::Lossy;

/// One workload's figures on both.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was measured.
    pub workload: &'static str,
    /// Unit of the rates.
    pub unit: &'static str,
    /// Rate on the plain folder.
    pub plain: f64,
    /// Rate through lossyfs.
    pub lossy: f64,
}

fn seq_write(dir: &Path) -> anyhow::Result<f64> {
    const TOTAL: usize = 64 << 20;
    let buf = vec![7u8; 64 << 10];
    let t = Instant::now();
    let mut f = File::create(dir.join("seq"))?;
    for _ in 0..TOTAL / buf.len() {
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    Ok(TOTAL as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64())
}

fn seq_read(dir: &Path) -> anyhow::Result<f64> {
    let t = Instant::now();
    let n = fs::read(dir.join("seq"))?.len();
    Ok(n as f64 / (1 << 20) as f64 / t.elapsed().as_secs_f64())
}

fn append_fsync(dir: &Path) -> anyhow::Result<f64> {
    const N: usize = 2000;
    let rec = vec![1u8; 4096];
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))?;
    let t = Instant::now();
    for _ in 0..N {
        f.write_all(&rec)?;
        f.sync_data()?;
    }
    Ok(N as f64 / t.elapsed().as_secs_f64())
}

fn atomic_replace(dir: &Path) -> anyhow::Result<f64> {
    const N: usize = 500;
    let t = Instant::now();
    for i in 0..N {
        let tmp = dir.join(".state.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{{\"n\":{i}}}").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join("state.json"))?;
        File::open(dir)?.sync_all()?;
    }
    Ok(N as f64 / t.elapsed().as_secs_f64())
}

/// Runs every workload on `DIR/plain` and through a lossyfs mounted on
/// `DIR/mnt` (work directory `DIR/work`); removes them afterwards.
pub fn run(dir: &Path) -> anyhow::Result<Vec<Figure>> {
    let plain = dir.join("plain");
    let _ = fs::remove_dir_all(&plain);
    let _ = fs::remove_dir_all(dir.join("work"));
    fs::create_dir_all(&plain)?;
    let lossy = Lossy::mount(&dir.join("work"), &dir.join("mnt"))?;
    let mnt = lossy.mountpoint().to_owned();
    type Workload = fn(&Path) -> anyhow::Result<f64>;
    let workloads: [(&'static str, &'static str, Workload); 4] = [
        (
            "sequential write, 64 KiB writes, one fsync",
            "MiB/s",
            seq_write,
        ),
        ("sequential read of that file", "MiB/s", seq_read),
        ("append 4 KiB + fdatasync", "ops/s", append_fsync),
        (
            "atomic replace (write, fsync, rename, fsync folder)",
            "ops/s",
            atomic_replace,
        ),
    ];
    let mut out = Vec::new();
    for (workload, unit, f) in workloads {
        out.push(Figure {
            workload,
            unit,
            plain: f(&plain)?,
            lossy: f(&mnt)?,
        });
    }
    drop(lossy);
    let _ = fs::remove_dir_all(&plain);
    let _ = fs::remove_dir_all(dir.join("work"));
    let _ = fs::remove_dir(dir.join("mnt"));
    Ok(out)
}
