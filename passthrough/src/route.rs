//! A worker's routing state: which member owns which key, the outbound
//! data links to the owners, the generation stamped on everything sent,
//! and the ingress's stream registry (last accepted message id per
//! stream).
//!
//! All of it sits behind one gate, a tokio `RwLock`: an ingress connection
//! holds it for reading while it dedups and routes a chunk of lines and
//! hands them to the links; a checkpoint barrier, a reset or an activation
//! holds it for writing. So a barrier cuts cleanly between chunks: every
//! line accepted before the snapshot of positions is on its owner's link
//! ahead of the barrier, and every line after it behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify, RwLock};

use crate::data::Item;

/// An owner's input queue: (source worker, item).
pub type OwnerInput = mpsc::Sender<(Arc<str>, Item)>;

/// A way to reach one owner.
#[derive(Debug, Clone)]
pub enum Out {
    /// This worker's own owner, in-process.
    Local {
        /// The owner's input.
        input: OwnerInput,
        /// This worker's name (the source of what is sent).
        me: Arc<str>,
    },
    /// Another worker, over its data link.
    Remote(mpsc::Sender<Item>),
}

impl Out {
    /// Sends `item`; an error means the link is gone.
    pub async fn send(&self, item: Item) -> Result<(), ()> {
        match self {
            Out::Local { input, me } => input.send((me.clone(), item)).await.map_err(|_| ()),
            Out::Remote(tx) => tx.send(item).await.map_err(|_| ()),
        }
    }
}

/// The owner of `key` among `members` (routing order): `members[key mod n]`.
pub fn owner_index(key: u8, members: usize) -> Option<usize> {
    (members > 0).then(|| key as usize % members)
}

/// What the gate protects.
#[derive(Debug, Default)]
pub struct Route {
    /// Generation stamped on outgoing items.
    pub gen: u64,
    /// Feeders' lines are accepted.
    pub active: bool,
    /// This worker left the routing (shrink): lines are refused until it exits.
    pub draining: bool,
    /// Members in routing order.
    pub members: Vec<String>,
    /// Links to `members`, same order.
    pub outs: Vec<Out>,
}

/// One stream as the ingress sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEntry {
    /// Feeder connection that owns it now.
    pub conn: Option<u64>,
    /// Last accepted message id (anything ≤ is a replay and dropped).
    pub last_seen: Option<u64>,
}

/// The ingress's stream registry and the bug hooks that act per key.
#[derive(Debug, Default)]
pub struct Streams {
    /// Generation the registry belongs to (grants of other generations are void).
    pub gen: u64,
    /// Streams by id.
    pub map: HashMap<u64, StreamEntry>,
    /// Bug hooks: keys whose next line is dropped.
    pub drop_next: HashSet<u8>,
    /// Bug hooks: keys whose next two lines are swapped (held line, if any).
    pub swap_next: HashMap<u8, Option<Bytes>>,
}

/// Routing state of one worker.
#[derive(Debug)]
pub struct Router {
    /// This worker's name.
    pub me: Arc<str>,
    /// The gate (see the module doc).
    pub gate: RwLock<Route>,
    /// Woken whenever [`Router::activate`] leaves the gate active (the TCP
    /// source waits on it while the cluster recovers).
    pub activated: Notify,
    streams: Mutex<Streams>,
    /// A copy of the gate's members, readable without waiting for the gate
    /// (for the external API).
    routing: Mutex<Vec<String>>,
}

/// Result of [`Router::barrier`].
#[derive(Debug)]
pub enum BarrierResult {
    /// Barrier sent; the positions to report.
    Sent(Vec<(u64, u64)>),
    /// Stale generation: nothing done.
    Stale,
    /// A link is gone: roll back.
    LinkLost(String),
}

impl Router {
    /// A router with no members, inactive.
    pub fn new(me: &str) -> Router {
        Router {
            me: Arc::from(me),
            gate: RwLock::new(Route::default()),
            activated: Notify::new(),
            streams: Mutex::new(Streams::default()),
            routing: Mutex::new(Vec::new()),
        }
    }

    fn set_routing(&self, members: &[String]) {
        *self.routing.lock().unwrap_or_else(|e| e.into_inner()) = members.to_vec();
    }

    /// The owner of every routing key that is an ASCII letter or digit
    /// under the current routing (empty before the first generation).
    pub fn key_owners(&self) -> BTreeMap<String, String> {
        let members = self.routing.lock().unwrap_or_else(|e| e.into_inner());
        (b'0'..=b'z')
            .filter(u8::is_ascii_alphanumeric)
            .filter_map(|k| {
                let i = owner_index(k, members.len())?;
                Some(((k as char).to_string(), members[i].clone()))
            })
            .collect()
    }

    /// The stream registry (hold it only without awaiting).
    pub fn streams(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters generation `gen` inactive, routing over `members` (links
    /// follow with [`Router::set_outs`]), with an empty stream registry
    /// (every feeder is being restarted).
    pub async fn reset(&self, gen: u64, members: Vec<String>) {
        let mut g = self.gate.write().await;
        g.gen = gen;
        g.active = false;
        g.draining = false;
        self.set_routing(&members);
        g.members = members;
        g.outs.clear();
        let mut s = self.streams();
        s.gen = gen;
        s.map.clear();
        s.drop_next.clear();
        s.swap_next.clear();
    }

    /// Installs the links to the members, if still in `gen`.
    pub async fn set_outs(&self, gen: u64, outs: Vec<Out>) -> bool {
        let mut g = self.gate.write().await;
        if g.gen != gen || outs.len() != g.members.len() {
            return false;
        }
        g.outs = outs;
        true
    }

    /// Stops accepting lines and forgets the streams (the coordinator is
    /// gone; a new one starts a new generation).
    pub async fn orphan(&self) {
        let mut g = self.gate.write().await;
        g.active = false;
        let mut s = self.streams();
        s.map.clear();
    }

    /// Starts accepting lines, if still in `gen`.
    pub async fn activate(&self, gen: u64) -> bool {
        let mut g = self.gate.write().await;
        if g.gen == gen && !g.draining && g.outs.len() == g.members.len() {
            g.active = true;
        }
        if g.active {
            self.activated.notify_waiters();
        }
        g.active
    }

    /// Barrier `c`: sends it to every current owner behind the lines
    /// already routed, snapshots the stream positions, and switches the
    /// routing to `next` (reached via `next_outs`). A worker not in `next`
    /// starts draining. With `send_barrier` false (a joiner that is not a
    /// member of `c`), only the routing switches.
    #[allow(clippy::too_many_arguments)]
    pub async fn barrier(
        &self,
        gen: u64,
        c: u64,
        members: &[String],
        send_barrier: bool,
        next: Vec<String>,
        next_outs: Vec<Out>,
        moves_bug: Option<MoveBug>,
    ) -> BarrierResult {
        let mut g = self.gate.write().await;
        if g.gen != gen {
            return BarrierResult::Stale;
        }
        let mut positions = Vec::new();
        if send_barrier {
            if g.members != members {
                return BarrierResult::LinkLost(format!(
                    "routing out of step: routing over {:?}, checkpoint {c} is over {members:?}",
                    g.members
                ));
            }
            for (name, out) in g.members.iter().zip(&g.outs) {
                if out.send(Item::Barrier { gen, c }).await.is_err() {
                    return BarrierResult::LinkLost(format!("data link to {name} closed"));
                }
            }
            let mut s = self.streams();
            s.map.retain(|sid, e| {
                if let Some(ls) = e.last_seen {
                    positions.push((*sid, ls));
                }
                // A released stream is reported once, then forgotten.
                e.conn.is_some()
            });
        }
        if next != g.members {
            if let Some(bug) = moves_bug {
                let mut s = self.streams();
                for k in 0..=255u8 {
                    let before = owner_index(k, g.members.len()).map(|i| &g.members[i]);
                    let after = owner_index(k, next.len()).map(|i| &next[i]);
                    if before.is_some() && before != after {
                        match bug {
                            MoveBug::Swap => {
                                s.swap_next.insert(k, None);
                            }
                            MoveBug::DropOnShrink if next.len() < g.members.len() => {
                                s.drop_next.insert(k);
                            }
                            MoveBug::DropOnShrink => {}
                        }
                    }
                }
            }
        }
        g.draining = !next.iter().any(|m| **m == *self.me);
        if g.draining {
            g.active = false;
        }
        self.set_routing(&next);
        g.members = next;
        g.outs = next_outs;
        BarrierResult::Sent(positions)
    }
}

/// Which migration bug the barrier arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveBug {
    /// reorder-on-migrate.
    Swap,
    /// lose-on-shrink.
    DropOnShrink,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(me: &str) -> (Out, mpsc::Receiver<(Arc<str>, Item)>) {
        let (tx, rx) = mpsc::channel(16);
        (
            Out::Local {
                input: tx,
                me: Arc::from(me),
            },
            rx,
        )
    }

    #[test]
    fn owners_are_deterministic() {
        assert_eq!(owner_index(b'A', 4), Some(1));
        assert_eq!(owner_index(b'A', 1), Some(0));
        assert_eq!(owner_index(b'A', 0), None);
    }

    #[tokio::test]
    async fn barrier_snapshots_and_switches() {
        let r = Router::new("initializer");
        let (out, mut rx) = local("initializer");
        assert!(r.key_owners().is_empty());
        r.reset(5, vec!["initializer".into()]).await;
        assert_eq!(r.key_owners()["z"], "initializer");
        assert!(r.set_outs(5, vec![out.clone()]).await);
        assert!(r.activate(5).await);
        {
            let mut s = r.streams();
            s.map.insert(
                1,
                StreamEntry {
                    conn: Some(9),
                    last_seen: Some(490),
                },
            );
            s.map.insert(
                2,
                StreamEntry {
                    conn: None,
                    last_seen: Some(49),
                },
            );
        }
        let res = r
            .barrier(
                5,
                1,
                &["initializer".into()],
                true,
                vec!["initializer".into()],
                vec![out],
                None,
            )
            .await;
        let BarrierResult::Sent(mut p) = res else {
            panic!("{res:?}")
        };
        p.sort();
        assert_eq!(p, vec![(1, 490), (2, 49)]);
        assert_eq!(rx.recv().await.unwrap().1, Item::Barrier { gen: 5, c: 1 });
        assert!(
            !r.streams().map.contains_key(&2),
            "released stream reported once"
        );
        assert!(matches!(
            r.barrier(4, 2, &[], true, vec![], vec![], None).await,
            BarrierResult::Stale
        ));
        let _ = r
            .barrier(
                5,
                2,
                &["initializer".into()],
                true,
                vec!["worker1".into()],
                vec![],
                None,
            )
            .await;
        assert!(r.gate.read().await.draining);
        assert!(!r.activate(5).await);
        let owners = r.key_owners();
        assert_eq!(owners.len(), 62);
        assert_eq!(owners["A"], "worker1");
    }
}
