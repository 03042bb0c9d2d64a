//! What a worker's txnlog says its files should look like.
//!
//! When a worker (re)connects, and so after every sink restart, the sink
//! rebuilds that worker's 2PC state from the txnlog alone: which
//! transaction (if any) is waiting for its phase 2, whether the next vote
//! is already forced to abort, the last committed offset, and therefore
//! where the output file must be cut. This module is that analysis, kept
//! free of I/O so every rule is unit-tested.

use verify::txnlog::{Entry, Range3, Record};

/// A transaction that got its phase-1 vote but no phase 2 yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Transaction id.
    pub txn_id: String,
    /// The vote given: `true` = `1-ok`, `false` = `1-rollback`.
    pub vote: bool,
    /// The ranges the transaction covers.
    pub where_list: Vec<Range3>,
}

impl Pending {
    /// End of the single stream-1 range of a `1-ok` transaction.
    pub fn end_por(&self) -> Option<u64> {
        match self.where_list.as_slice() {
            [(1, _, end)] => Some(*end),
            _ => None,
        }
    }
}

/// The 2PC state of one worker as its txnlog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Transactions voted on but not decided, in txnlog order (at most one).
    pub pending: Vec<Pending>,
    /// A trailing `next-txn-force-abort`: the next vote must be abort.
    pub force_abort: bool,
    /// Offset of the last `2-ok` (0 if none): committed bytes end here.
    pub last_committed: u64,
    /// Where the output file must be cut: the pending `1-ok`'s end (its
    /// bytes may still be committed) if it is not behind the last committed
    /// offset, else the last committed offset.
    pub truncate_to: u64,
}

/// A txnlog that no correct sink could have written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoveryError {
    /// Two or more transactions are waiting for phase 2 at once.
    #[error("more than one transaction is waiting for phase 2: {0:?}")]
    SeveralPending(Vec<String>),
    /// A `1-ok` vote was recorded while the next vote was forced to abort.
    #[error("next-txn-force-abort at record {forced_at} is followed by 1-ok for {txn_id} at record {ok_at}")]
    CommitAfterForcedAbort {
        /// 1-based record number of the `next-txn-force-abort`.
        forced_at: usize,
        /// 1-based record number of the `1-ok`.
        ok_at: usize,
        /// The transaction voted commit.
        txn_id: String,
    },
    /// The pending `1-ok` does not cover exactly one stream-1 range.
    #[error("pending 1-ok {txn_id} has where_list {where_list:?}, expected one stream-1 range")]
    BadWhereList {
        /// Transaction id.
        txn_id: String,
        /// What was recorded.
        where_list: Vec<Range3>,
    },
}

/// Replays `entries` (a whole txnlog, oldest first).
pub fn analyze(entries: &[Entry]) -> Result<Recovered, RecoveryError> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut forced_at: Option<usize> = None;
    let mut last_committed = 0;
    for (i, e) in entries.iter().enumerate() {
        match &e.record {
            Record::Phase1Ok { txn_id, where_list }
            | Record::Phase1Rollback { txn_id, where_list } => {
                let vote = matches!(e.record, Record::Phase1Ok { .. });
                if vote {
                    if let Some(f) = forced_at {
                        return Err(RecoveryError::CommitAfterForcedAbort {
                            forced_at: f + 1,
                            ok_at: i + 1,
                            txn_id: txn_id.clone(),
                        });
                    }
                }
                forced_at = None;
                pending.retain(|p| &p.txn_id != txn_id);
                pending.push(Pending {
                    txn_id: txn_id.clone(),
                    vote,
                    where_list: where_list.clone(),
                });
            }
            Record::Phase2Ok { txn_id, offset } => {
                pending.retain(|p| &p.txn_id != txn_id);
                last_committed = *offset;
            }
            Record::Phase2Rollback { txn_id, .. } => pending.retain(|p| &p.txn_id != txn_id),
            Record::NextTxnForceAbort { .. } => forced_at = Some(i),
            Record::Phase2Error { .. }
            | Record::ListUncommitted { .. }
            | Record::WorkersLeft { .. }
            | Record::Close { .. }
            | Record::ConnectionClosed => {}
        }
    }
    if pending.len() > 1 {
        return Err(RecoveryError::SeveralPending(
            pending.into_iter().map(|p| p.txn_id).collect(),
        ));
    }
    // A pending 1-ok keeps its bytes (the cluster may still commit them),
    // but never at the expense of committed ones: a 1-ok left pending while
    // a later transaction committed ends behind the last commit.
    let truncate_to = match pending.first() {
        Some(p) if p.vote => p
            .end_por()
            .ok_or_else(|| RecoveryError::BadWhereList {
                txn_id: p.txn_id.clone(),
                where_list: p.where_list.clone(),
            })?
            .max(last_committed),
        _ => last_committed,
    };
    Ok(Recovered {
        pending,
        force_abort: forced_at.is_some(),
        last_committed,
        truncate_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(record: Record) -> Entry {
        Entry { time: 1.0, record }
    }
    fn p1(txn: &str, ok: bool, start: u64, end: u64) -> Entry {
        let txn_id = txn.to_owned();
        let where_list = vec![(1, start, end)];
        e(if ok {
            Record::Phase1Ok { txn_id, where_list }
        } else {
            Record::Phase1Rollback { txn_id, where_list }
        })
    }
    fn p2(txn: &str, ok: bool, offset: u64) -> Entry {
        let txn_id = txn.to_owned();
        e(if ok {
            Record::Phase2Ok { txn_id, offset }
        } else {
            Record::Phase2Rollback { txn_id, offset }
        })
    }
    fn force() -> Entry {
        e(Record::NextTxnForceAbort {
            reason: "gap".into(),
        })
    }

    #[test]
    fn an_empty_txnlog_means_nothing_committed() {
        let r = analyze(&[]).unwrap();
        assert_eq!(
            (r.last_committed, r.truncate_to, r.force_abort),
            (0, 0, false)
        );
        assert!(r.pending.is_empty());
    }

    #[test]
    fn the_last_2ok_is_the_commit_point() {
        let r = analyze(&[
            p1("a", true, 0, 10),
            p2("a", true, 10),
            p1("b", true, 10, 30),
            p2("b", true, 30),
        ])
        .unwrap();
        assert_eq!((r.last_committed, r.truncate_to), (30, 30));
        assert!(r.pending.is_empty());
    }

    #[test]
    fn a_pending_1ok_keeps_its_bytes_and_a_pending_1rollback_does_not() {
        let r = analyze(&[
            p1("a", true, 0, 10),
            p2("a", true, 10),
            p1("b", true, 10, 30),
        ])
        .unwrap();
        assert_eq!((r.last_committed, r.truncate_to), (10, 30));
        assert_eq!(r.pending[0].txn_id, "b");
        let r = analyze(&[
            p1("a", true, 0, 10),
            p2("a", true, 10),
            p1("b", false, 10, 30),
        ])
        .unwrap();
        assert_eq!((r.last_committed, r.truncate_to), (10, 10));
        assert!(!r.pending[0].vote);
    }

    /// Found by `sink/tests/session_props.rs`: `a` voted commit and left
    /// pending, `b` voted and committed past it; the cut at `a`'s end
    /// destroyed `b`'s committed bytes.
    #[test]
    fn a_stale_pending_1ok_never_cuts_committed_bytes() {
        let r = analyze(&[p1("a", true, 0, 0), p1("b", true, 0, 1), p2("b", true, 1)]).unwrap();
        assert_eq!(r.pending[0].txn_id, "a");
        assert_eq!((r.last_committed, r.truncate_to), (1, 1));
    }

    #[test]
    fn two_pending_transactions_are_an_invariant_violation() {
        let err = analyze(&[p1("a", true, 0, 10), p1("b", false, 10, 20)]).unwrap_err();
        assert_eq!(
            err,
            RecoveryError::SeveralPending(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_trailing_force_abort_survives_and_a_1rollback_consumes_it() {
        assert!(
            analyze(&[p1("a", true, 0, 10), p2("a", true, 10), force()])
                .unwrap()
                .force_abort
        );
        let r = analyze(&[force(), p1("a", false, 0, 10), p2("a", false, 0)]).unwrap();
        assert!(!r.force_abort);
    }

    #[test]
    fn a_1ok_after_a_force_abort_is_an_invariant_violation() {
        let err = analyze(&[force(), p1("a", true, 0, 10)]).unwrap_err();
        assert!(matches!(
            err,
            RecoveryError::CommitAfterForcedAbort {
                forced_at: 1,
                ok_at: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_pending_1ok_with_a_bad_where_list_is_refused() {
        let bad = e(Record::Phase1Ok {
            txn_id: "a".into(),
            where_list: vec![(2, 0, 10)],
        });
        assert!(matches!(
            analyze(&[bad]).unwrap_err(),
            RecoveryError::BadWhereList { .. }
        ));
        // A pending 1-rollback needs no range: it is cut back to the commit point.
        let odd = e(Record::Phase1Rollback {
            txn_id: "a".into(),
            where_list: vec![],
        });
        assert_eq!(analyze(&[odd]).unwrap().truncate_to, 0);
    }
}
