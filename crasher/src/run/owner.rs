//! The one owner of a run's cluster.
//!
//! A soak's loops (faults, checks, the monitor, the status line, the run
//! record) never share the [`Cluster`] through a lock. One thread owns it;
//! a loop sends it a command — a closure over `&mut Cluster` — and awaits
//! the reply. Commands run one at a time, in the order they were sent, so
//! the cluster (processes, membership, finished feeders, network faults,
//! disks) is only ever changed by its owner, and:
//!
//! - no guard of the cluster can outlive a statement, be held across an
//!   `.await`, or be taken twice by the same task (the deadlock that a
//!   `MutexGuard` living through an `if let` body once caused);
//! - the blocking parts of the cluster's work (a termination with a 2 s
//!   grace, unmounting a lossy disk, a round trip to a remote host) run on
//!   the owner's thread, never on one of the runtime's worker threads;
//! - pause-the-world needs no reply from the owner: it signals the process
//!   groups of the run through the registry (`run::cluster::registered`)
//!   directly, so a long command in progress never delays it.
//!
//! The owner thread ends when the last handle is dropped; it then drops the
//! cluster, which kills and reaps every process still running.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use super::cluster::Cluster;

type Command = Box<dyn FnOnce(&mut Cluster) + Send>;

/// A handle to the thread that owns a run's [`Cluster`]: the only way the
/// soak's loops reach it.
pub struct ClusterOwner {
    commands: mpsc::Sender<Command>,
}

impl ClusterOwner {
    /// Moves `cluster` to a thread of its own and returns the handle.
    pub fn spawn(mut cluster: Cluster) -> std::io::Result<ClusterOwner> {
        let (commands, inbox) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("cluster-owner".into())
            .spawn(move || {
                for command in inbox {
                    // A command that panics loses its reply (its caller
                    // panics in turn, with the message above), but the
                    // cluster stays owned, so the run's teardown still
                    // kills every process.
                    let _ = catch_unwind(AssertUnwindSafe(|| command(&mut cluster)));
                }
            })?;
        Ok(ClusterOwner { commands })
    }

    /// Runs `f` on the cluster, after every command sent before it, and
    /// returns its result.
    ///
    /// # Panics
    /// If `f` panicked (the panic's own message was printed first).
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster) -> R + Send + 'static,
    ) -> R {
        let answer = self.send(f);
        answer
            .await
            .expect("a cluster command panicked (see the message above)")
    }

    /// Sends `f` without waiting for it (a claim's release, say).
    pub fn post(&self, f: impl FnOnce(&mut Cluster) + Send + 'static) {
        // The owner only ends once every handle is gone, and this is one.
        let _ = self.commands.send(Box::new(f));
    }

    fn send<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster) -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.post(move |c| {
            let _ = reply.send(f(c));
        });
        answer
    }
}
