//! Ctrl-C, SIGTERM and panics: the first interrupt ends the run with its
//! teardown; a second kills every registered process group at once.

use tokio::signal::unix::{signal, SignalKind};

use crate::exit;
use crate::run::cluster;

/// Counts SIGINT, SIGTERM, SIGHUP (a closed terminal or SSH session) and
/// SIGQUIT (Ctrl-\\), every catchable signal that would otherwise end
/// crasher and orphan the run's processes: the first asks for a graceful
/// teardown (seen through the returned receiver); a second kills every
/// process of the run at once and exits.
pub(super) fn watch_interrupts() -> tokio::sync::watch::Receiver<u32> {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    // Installed before returning, so no signal slips in before the task runs.
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = handlers else {
            return;
        };
        let mut n = 0u32;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
                _ = quit.recv() => {}
            }
            n += 1;
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

/// Resolves once Ctrl-C or SIGTERM has been received.
pub async fn interrupted(rx: &mut tokio::sync::watch::Receiver<u32>) {
    if rx.wait_for(|n| *n >= 1).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(super) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        cluster::kill_all_registered();
        prev(info);
    }));
}
