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

type Command<T> = Box<dyn FnOnce(&mut T) + Send>;

/// A handle to the thread that owns a run's [`Cluster`]: the only way the
/// soak's loops reach it.
pub type ClusterOwner = Owner<Cluster>;

/// A handle to a thread that owns a `T` and runs commands on it, one at a
/// time, in the order they were sent.
pub struct Owner<T> {
    commands: mpsc::Sender<Command<T>>,
}

impl<T: Send + 'static> Owner<T> {
    /// Moves `state` to a thread of its own, named `name`, and returns the
    /// handle.
    pub fn spawn(name: &str, mut state: T) -> std::io::Result<Owner<T>> {
        let (commands, inbox) = mpsc::channel::<Command<T>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for command in inbox {
                    // A command that panics loses its reply (its caller
                    // panics in turn, with the message above), but the
                    // state stays owned: for a cluster, the run's teardown
                    // still kills every process.
                    let _ = catch_unwind(AssertUnwindSafe(|| command(&mut state)));
                }
            })?;
        Ok(Owner { commands })
    }

    /// Runs `f` on the cluster, after every command sent before it, and
    /// returns its result.
    ///
    /// # Panics
    /// If `f` panicked (the panic's own message was printed first).
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut T) -> R + Send + 'static) -> R {
        let answer = self.send(f);
        answer
            .await
            .expect("a cluster command panicked (see the message above)")
    }

    /// Sends `f` without waiting for it (a claim's release, say).
    pub fn post(&self, f: impl FnOnce(&mut T) + Send + 'static) {
        // The owner only ends once every handle is gone, and this is one.
        let _ = self.commands.send(Box::new(f));
    }

    fn send<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> tokio::sync::oneshot::Receiver<R> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.post(move |c| {
            let _ = reply.send(f(c));
        });
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn commands_run_in_the_order_they_were_sent() {
        let owner = Owner::spawn("test-owner", Vec::new()).unwrap();
        for i in 0..100 {
            // Posted, not awaited: order is the channel's, not the caller's
            // luck.
            owner.post(move |v: &mut Vec<u32>| v.push(i));
        }
        let seen = owner.call(|v| v.clone()).await;
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_command_that_panics_leaves_the_state_owned() {
        let owner = Owner::spawn("test-owner", 7u32).unwrap();
        let o = Arc::new(owner);
        let o2 = o.clone();
        let failed =
            tokio::spawn(async move { o2.call(|_: &mut u32| -> u32 { panic!("boom") }).await })
                .await;
        assert!(failed.is_err(), "the caller of a panicking command panics");
        assert_eq!(o.call(|n| *n + 1).await, 8, "the owner still answers");
    }

    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_state_is_dropped_when_the_last_handle_goes() {
        let flag = Arc::new(AtomicBool::new(false));
        let owner = Owner::spawn("test-owner", Dropped(flag.clone())).unwrap();
        owner.call(|_| ()).await;
        assert!(!flag.load(Ordering::SeqCst));
        drop(owner);
        assert!(
            procs::wait_until(
                std::time::Instant::now() + std::time::Duration::from_secs(5),
                || flag.load(Ordering::SeqCst)
            ),
            "the owner thread did not drop its state"
        );
    }
}
