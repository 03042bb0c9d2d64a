//! lossyfs: a FUSE passthrough file system over a backing directory that
//! tracks what is durable and, on command, loses everything that is not,
//! as a power cut would (see docs/disk.md for the durability model).
//!
//! - [`Lossy`] mounts one in this process (tests); dropping it unmounts.
//! - [`run`] is `crasher lossyfs`: mount, serve the control socket, and
//!   unmount at SIGTERM, SIGINT, SIGHUP or when the parent process dies.
//! - [`lose`] is the client: `crasher lossyfs --lose MOUNTPOINT`.

pub mod bench;
pub mod control;
pub mod fs;
pub mod mount;
pub mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use control::{lose, stats};
pub use mount::{is_mounted, lossy_mounts, unmount, Lossy, MountError, WorkDir};
pub use state::LossReport;

/// `crasher lossyfs`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where to mount (created if missing). With --lose or --stats: the
    /// mount point of a running lossyfs to act on.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Work directory: `backing/` holds the live files (what is already
    /// there counts as durable), `durable/` the synced copies,
    /// `control.sock` the control socket. Default: MOUNTPOINT.lossyfs
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Client: make the lossyfs mounted on MOUNTPOINT lose everything not
    /// synced (kill the processes using it first), then exit.
    #[arg(long, conflicts_with_all = ["dir", "stats"])]
    pub lose: bool,
    /// Client: print the durability counters of the lossyfs on MOUNTPOINT.
    #[arg(long, conflicts_with = "dir")]
    pub stats: bool,
    /// Names are durable at once: creates, renames and unlinks need no
    /// directory fsync; only file data waits for a sync (LazyFS's model).
    #[arg(long)]
    pub eager_names: bool,
    /// Measure: run the same workloads in MOUNTPOINT/plain and through a
    /// lossyfs on MOUNTPOINT/mnt, print both, remove them.
    #[arg(long, conflicts_with_all = ["dir", "stats", "lose"])]
    pub bench: bool,
}

/// Exit code: done.
const OK: u8 = 0;
/// Exit code: usage or environment error.
const USAGE: u8 = 2;

/// Runs `crasher lossyfs`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.bench {
        println!("| workload | plain folder | through lossyfs | ratio |");
        println!("|---|---|---|---|");
        for f in bench::run(&args.mountpoint)? {
            println!(
                "| {} | {:.0} {} | {:.0} {} | {:.2} |",
                f.workload,
                f.plain,
                f.unit,
                f.lossy,
                f.unit,
                f.lossy / f.plain
            );
        }
        return Ok(ExitCode::from(OK));
    }
    if args.lose || args.stats {
        let r = if args.lose {
            lose(&args.mountpoint)
        } else {
            stats(&args.mountpoint)
        };
        return Ok(match r {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::from(OK)
            }
            Err(e) => {
                eprintln!("crasher lossyfs: {e:#}");
                ExitCode::from(USAGE)
            }
        });
    }
    serve(&args)
}

fn serve(args: &Args) -> anyhow::Result<ExitCode> {
    use nix::sys::signal::{SigSet, Signal};
    // Block the stop signals in every thread; the main thread waits for them.
    let mut stop = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block()?;
    let parent = nix::unistd::getppid();
    // Components drop a trailing `/`: `mnt/` gets `mnt.lossyfs`, not `mnt/.lossyfs`.
    let mountpoint: PathBuf = args.mountpoint.components().collect();
    let dir = args.dir.clone().unwrap_or_else(|| {
        let mut p = mountpoint.clone().into_os_string();
        p.push(".lossyfs");
        PathBuf::from(p)
    });
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    if abs(&dir).starts_with(abs(&mountpoint)) {
        eprintln!(
            "crasher lossyfs: --dir {} lies inside the mount point {}: give a folder outside it",
            dir.display(),
            mountpoint.display()
        );
        return Ok(ExitCode::from(USAGE));
    }
    let lossy = match Lossy::mount_with(&dir, &mountpoint, args.eager_names) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("crasher lossyfs: {e}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let server = control::Server::start(&lossy)?;
    eprintln!(
        "lossyfs: mounted {} over {} (control socket {})",
        lossy.mountpoint().display(),
        lossy.work().backing().display(),
        lossy.work().socket().display()
    );
    // Dies with its parent: a watcher turns the parent's death into SIGTERM.
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if nix::unistd::getppid() != parent {
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGTERM);
            return;
        }
    });
    let sig = stop.wait()?;
    eprintln!(
        "lossyfs: {sig:?}: unmounting {}",
        lossy.mountpoint().display()
    );
    drop(server);
    let mp = lossy.mountpoint().to_owned();
    drop(lossy);
    if is_mounted(&mp) {
        eprintln!("lossyfs: {} is still mounted", mp.display());
        return Ok(ExitCode::from(USAGE));
    }
    Ok(ExitCode::from(OK))
}
