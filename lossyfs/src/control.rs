//! The control socket of a running lossyfs (`control.sock` in its work
//! directory): one line in, one line out. `lose` → `ok <report>`;
//! `stats` → `ok <counters>`; anything else → `error ...`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::mount::{lossy_mounts, Lossy};
use crate::state::State;

/// The socket server; stops (and removes the socket) on drop.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves `lossy`'s control socket from a thread.
    pub fn start(lossy: &Lossy) -> anyhow::Result<Server> {
        let path = lossy.work().socket();
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
        let state = lossy.state();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(c) = conn {
                    let _ = serve_one(c, &state);
                }
            }
        });
        Ok(Server { path, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_one(c: UnixStream, state: &Mutex<State>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line)?;
    let answer = match line.trim() {
        "lose" => {
            let lost = state.lock().unwrap_or_else(|e| e.into_inner()).lose();
            match lost {
                Ok(r) => format!("ok {r}"),
                Err(e) => format!("error loss failed: {e}"),
            }
        }
        "stats" => {
            let s = state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .stats
                .clone();
            format!(
                "ok file_syncs {} dir_syncs {} bytes_synced {} losses {}",
                s.file_syncs, s.dir_syncs, s.bytes_synced, s.losses
            )
        }
        other => format!("error unknown command {other:?} (lose, stats)"),
    };
    let mut w = &c;
    writeln!(w, "{answer}")
}

fn socket_of(mountpoint: &Path) -> anyhow::Result<PathBuf> {
    let mp = std::fs::canonicalize(mountpoint)
        .with_context(|| format!("{}: no such mount point", mountpoint.display()))?;
    let Some((_, work)) = lossy_mounts().into_iter().find(|(m, _)| *m == mp) else {
        bail!("no lossyfs is mounted on {}", mp.display());
    };
    Ok(work.join("control.sock"))
}

fn ask(mountpoint: &Path, cmd: &str) -> anyhow::Result<String> {
    let sock = socket_of(mountpoint)?;
    let mut c = UnixStream::connect(&sock)
        .with_context(|| format!("cannot connect to {}", sock.display()))?;
    c.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(c, "{cmd}")?;
    let mut line = String::new();
    BufReader::new(&c)
        .read_line(&mut line)
        .with_context(|| format!("no answer from {}", sock.display()))?;
    match line.trim().strip_prefix("ok ") {
        Some(rest) => Ok(rest.to_owned()),
        None => bail!("{}: {}", sock.display(), line.trim()),
    }
}

/// Makes the lossyfs mounted on `mountpoint` lose everything not synced;
/// returns its report (`nodes before … after …`).
pub fn lose(mountpoint: &Path) -> anyhow::Result<String> {
    ask(mountpoint, "lose")
}

/// The durability counters of the lossyfs mounted on `mountpoint`.
pub fn stats(mountpoint: &Path) -> anyhow::Result<String> {
    ask(mountpoint, "stats")
}
