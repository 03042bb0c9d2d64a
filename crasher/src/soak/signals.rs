//! Ctrl-C, SIGTERM and panics: the first interrupt ends the run with its
//! teardown; a second kills every registered process group at once.

use tokio::signal::unix::{signal, SignalKind};

use crate::exit;
use crate::run::cluster;

/// Every catchable signal whose default action would end crasher and
/// orphan the run's processes: SIGINT, SIGTERM, SIGHUP (a closed terminal
/// or SSH session), SIGQUIT (Ctrl-\\), the user and timer signals, the
/// resource-limit signals, SIGIO, SIGPWR, SIGSTKFLT and the real-time
/// signals. Left out: SIGPIPE (Rust ignores it), the synchronous faults
/// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS: the panic
/// hook and the children's parent-death signal cover a crashing crasher)
/// and SIGKILL/SIGSTOP, which nothing can catch.
pub fn terminating_signals() -> Vec<i32> {
    let mut sigs = vec![
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGIO,
        libc::SIGPWR,
        libc::SIGSTKFLT,
    ];
    sigs.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    sigs
}

/// Counts the [`terminating_signals`]: the first asks for a graceful
/// teardown (seen through the returned receiver); a second kills every
/// process of the run at once and exits.
pub fn watch_interrupts() -> tokio::sync::watch::Receiver<u32> {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    let (hit_tx, mut hit_rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    // Installed before returning, so no signal slips in before the tasks run.
    for sig in terminating_signals() {
        match signal(SignalKind::from_raw(sig)) {
            Ok(mut stream) => {
                let hit_tx = hit_tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if hit_tx.send(sig).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => tracing::debug!("cannot handle signal {sig}: {e}"),
        }
    }
    tokio::spawn(async move {
        let mut n = 0u32;
        while let Some(sig) = hit_rx.recv().await {
            n += 1;
            tracing::info!("signal {sig}: interrupt {n}");
            let _ = tx.send(n);
            if n >= 2 {
                cluster::kill_all_registered();
                eprintln!("crasher: second interrupt: killed every process of the run");
                std::process::exit(i32::from(exit::UNKNOWN));
            }
        }
    });
    rx
}

/// Resolves once any of the [`terminating_signals`] has been received.
pub async fn interrupted(rx: &mut tokio::sync::watch::Receiver<u32>) {
    if rx.wait_for(|n| *n >= 1).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Set by the panic hook: crasher itself panicked during this run.
static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether crasher itself panicked during this run (its hook then killed
/// every process of the run, so what the loops see afterwards is
/// crasher's doing: see `Harness::finish`).
pub fn panicked() -> bool {
    PANICKED.load(std::sync::atomic::Ordering::SeqCst)
}

pub(super) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        cluster::kill_all_registered();
        prev(info);
    }));
}
