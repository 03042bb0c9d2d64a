//! Bug switches (`--inject NAME`): each breaks the cluster in one known
//! way, so tests can prove that crasher catches it. All are off by default
//! and cost one branch per batch when off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which bug is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bug {
    /// After a restart or a rollback, an owner silently drops one line (loss).
    DropAfterRecovery,
    /// After a rollback (rewind) or a restart, an owner writes one replayed
    /// line twice (duplicate).
    DuplicateOnReplay,
    /// When a key moves to another owner, its first two lines there are
    /// swapped (reorder).
    ReorderOnMigrate,
    /// On a shrink, the first line routed to each key's new owner is
    /// dropped (loss of in-flight lines).
    LoseOnShrink,
    /// After a restart, the worker never votes again: nothing commits and
    /// feeders are never acked again.
    StallAfterRestart,
    /// Exit(1) on its own 5–20 s after start.
    DieRandomly,
    /// Ack feeders as soon as lines are forwarded, and trust their acked
    /// position on reconnection (loss after a crash).
    AckBeforeCommit,
    /// On a sink reconnect the owner resumes from an in-memory cursor past
    /// the lines that were in flight (sent, not committed) at the
    /// disconnect: it drops as many bytes of whole lines after the reset
    /// that the sink loss caused (loss). Any later reset rebuilds the
    /// cursor from the checkpoint, and a restart wipes it, so the loss
    /// shows only if the worker stays up, with no other rollback, until its
    /// next commit.
    LoseOnSinkReconnect,
    /// Take the sink's NOTIFY_ACK point of reference as the output offset
    /// to resume from (Wallaroo ignores it): against a sink that answers
    /// from a per-process table (`crasher sink --por original`), a sink
    /// restart makes it resend from offset 0 (duplicate).
    TrustSinkPor,
    /// The durable state (`coordinator.json`) is written and renamed into
    /// place but never fsynced, nor its folder: a SIGKILL loses nothing
    /// (the page cache keeps it), a power loss (`crasher ... power-loss
    /// --disk lossy`) loses the commit decisions.
    SkipFsync,
    /// Split brain: a member whose coordinator goes silent for
    /// [`PRESUME_AFTER`] while the link to it stays up commits the lines
    /// it holds on its own, as if it were the cluster. A crash closes the
    /// link (no presumption) and a rollback leaves nothing pending; only a
    /// network cut (or a stopped coordinator) leaves it silent with lines
    /// in hand, which the coordinator then rolls back and replays:
    /// duplicates.
    CommitWhenCutOff,
    /// Presumed commit: a restarted worker that finds its own transaction
    /// still pending at the sink (it voted, the sink said yes, and it died
    /// before PHASE2) commits it and resumes after it, without waiting for
    /// the coordinator's word. Correct when the coordinator had decided
    /// that checkpoint; when it had not (the usual case: a worker killed
    /// between the sink's vote and the decision), the cluster rolls back
    /// and replays those lines: duplicates. Reachable only by a crash in
    /// the few milliseconds between the sink's vote and PHASE2.
    CommitPendingAfterRestart,
}

/// How long the coordinator of a member with [`Bug::CommitWhenCutOff`]
/// may stay silent before the member commits on its own.
pub const PRESUME_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// What an owner does with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAction {
    /// Normal.
    Keep,
    /// Lose it.
    Drop,
    /// Write it twice.
    Twice,
}

/// Which line after a reset the line bugs hit.
pub const NTH_LINE: u64 = 100;

/// The switched-on bug and what it needs to know.
#[derive(Debug, Clone)]
pub struct Bugs {
    bug: Option<Bug>,
    restarted: bool,
    resets: Arc<AtomicU64>,
}

impl Bugs {
    /// Bugs of a process; `restarted` when this worker ran before.
    pub fn new(bug: Option<Bug>, restarted: bool) -> Bugs {
        Bugs {
            bug,
            restarted,
            resets: Arc::new(AtomicU64::new(0)),
        }
    }

    /// No bug.
    pub fn none() -> Bugs {
        Bugs::new(None, false)
    }

    /// Whether `bug` is on.
    pub fn is(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// Whether any bug is on.
    pub fn any(&self) -> bool {
        self.bug.is_some()
    }

    /// Notes a reset (the first one is the normal start).
    pub fn reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Recovering: restarted, or rolled back at least once.
    pub fn recovering(&self) -> bool {
        self.restarted || self.resets.load(Ordering::Relaxed) > 1
    }

    /// What to do with the `n`-th line (from 1) an owner got since its last reset.
    pub fn on_line(&self, n: u64) -> LineAction {
        if n != NTH_LINE || !self.recovering() {
            return LineAction::Keep;
        }
        match self.bug {
            Some(Bug::DropAfterRecovery) => LineAction::Drop,
            Some(Bug::DuplicateOnReplay) => LineAction::Twice,
            _ => LineAction::Keep,
        }
    }

    /// Whether this process is a restart of the worker.
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// Whether the owner has stopped voting.
    pub fn stalled(&self) -> bool {
        self.is(Bug::StallAfterRestart) && self.restarted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_bugs_fire_once_after_recovery_only() {
        let b = Bugs::new(Some(Bug::DropAfterRecovery), false);
        b.reset();
        assert_eq!(b.on_line(NTH_LINE), LineAction::Keep);
        b.reset();
        assert_eq!(b.on_line(NTH_LINE), LineAction::Drop);
        assert_eq!(b.on_line(NTH_LINE + 1), LineAction::Keep);
        let d = Bugs::new(Some(Bug::DuplicateOnReplay), true);
        assert_eq!(d.on_line(NTH_LINE), LineAction::Twice);
        assert!(!d.stalled());
        assert!(Bugs::new(Some(Bug::StallAfterRestart), true).stalled());
        assert!(!Bugs::none().any());
    }
}
