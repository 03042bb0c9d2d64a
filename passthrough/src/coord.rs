//! The coordinator, run by the initializer: membership, the global stream
//! registry, aligned checkpoints with a durable commit decision, and
//! rollback of the whole cluster to the last committed checkpoint on any
//! failure. This is Wallaroo's own scheme (a global checkpoint every
//! interval; a rollback on any failure); see docs/passthrough.md for why it
//! is correct.
//!
//! A checkpoint `c`: every member's ingress sends a barrier to every owner
//! behind the lines it routed and reports its streams' last accepted ids;
//! every owner aligns the barriers and votes with the sink (PHASE1). When
//! all reports and commit votes are in, the decision (the committed ids,
//! the new membership) is written durably, *then* every owner sends PHASE2
//! commit, and once every owner has proved PHASE2 reached the sink, feeders
//! are acked. Membership changes (join, shrink) ride on a checkpoint: its
//! barrier is the point where routing switches. A worker that checkpoint
//! removes stays *departing* (durably) until it proves its PHASE2 of it:
//! until then the cluster waits for it as for a member, so no later
//! checkpoint commits before the old owner's last lines do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connector::POR_NONE;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::ctl::{Peer, Peers, ToCoord, ToWorker};
use crate::durable::CoordState;
use crate::external::View;

/// Where a shrink request's answer goes: removed names, or why not.
pub type ShrinkReply = oneshot::Sender<Result<Vec<String>, String>>;

/// What the coordinator reacts to.
#[derive(Debug)]
pub enum CoordEvent {
    /// A worker connected and said hello.
    Hello {
        /// Connection id (0 = the initializer's own worker).
        conn: u64,
        /// Its queue.
        tx: mpsc::UnboundedSender<ToWorker>,
        /// Name.
        name: String,
        /// `--join`.
        join: bool,
        /// Data listener.
        data: String,
        /// Source listener.
        source: String,
        /// Process instance.
        instance: u64,
    },
    /// A message from a connected worker.
    Msg {
        /// Name.
        name: String,
        /// Connection id.
        conn: u64,
        /// The message.
        msg: ToCoord,
    },
    /// A worker's connection ended.
    Gone {
        /// Name.
        name: String,
        /// Connection id.
        conn: u64,
    },
    /// Remove these workers.
    Shrink {
        /// Names.
        names: Vec<String>,
        /// Answer.
        reply: ShrinkReply,
    },
    /// Which workers could be removed?
    ShrinkQuery {
        /// Answer.
        reply: ShrinkReply,
    },
}

/// Settings of the coordinator.
#[derive(Debug, Clone)]
pub struct CoordConfig {
    /// The initializer's name.
    pub me: String,
    /// Resilience directory.
    pub dir: PathBuf,
    /// Members to form the cluster with.
    pub worker_count: u64,
    /// Checkpoint interval.
    pub interval: Duration,
    /// The initializer's source address (sent with RESTART on a shrink).
    pub source: String,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<ToWorker>,
    peer: Peer,
}

struct Ckpt {
    c: u64,
    members: Vec<String>,
    next: Vec<String>,
    reports: HashMap<String, Vec<(u64, u64)>>,
    votes: HashSet<String>,
    decided: bool,
    done: HashSet<String>,
    deadline: Instant,
    shrinks: Vec<(Vec<String>, ShrinkReply)>,
}

#[derive(Debug, Default)]
struct Reg {
    /// (worker, feeder connection) owning the stream.
    owner: Option<(String, u64)>,
    /// Who owned it last and its last accepted id then.
    released: Option<(String, Option<u64>)>,
}

/// The coordinator's state machine.
pub struct Coordinator {
    cfg: CoordConfig,
    st: CoordState,
    view: Arc<View>,
    gen: u64,
    conns: HashMap<String, Conn>,
    joiners: Vec<String>,
    leaving: Vec<String>,
    ready: HashSet<String>,
    running: bool,
    ckpt: Option<Ckpt>,
    next_c: u64,
    shrinks: Vec<(Vec<String>, ShrinkReply)>,
    registry: HashMap<u64, Reg>,
}

/// How long a checkpoint may take before it is aborted.
fn checkpoint_timeout(interval: Duration) -> Duration {
    (interval * 5).max(Duration::from_secs(5))
}

impl Coordinator {
    /// Loads the durable state (bumping the epoch) from `cfg.dir`.
    pub fn new(
        cfg: CoordConfig,
        view: Arc<View>,
    ) -> Result<Coordinator, crate::durable::DurableError> {
        let mut st = CoordState::load(&cfg.dir)?;
        st.epoch += 1;
        st.save(&cfg.dir)?;
        info!(
            "coordinator epoch {}: members {:?}, last committed checkpoint {:?}, {} stream(s)",
            st.epoch,
            st.members,
            st.last,
            st.committed.len()
        );
        let gen = st.epoch << 32;
        Ok(Coordinator {
            cfg,
            st,
            view,
            gen,
            conns: HashMap::new(),
            joiners: Vec::new(),
            leaving: Vec::new(),
            ready: HashSet::new(),
            running: false,
            ckpt: None,
            next_c: 1,
            shrinks: Vec::new(),
            registry: HashMap::new(),
        })
    }

    /// Runs until the event channel closes.
    pub async fn run(mut self, mut events: mpsc::Receiver<CoordEvent>) {
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(Duration::from_millis(50));
        self.publish();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    self.on_event(ev);
                }
                _ = tick.tick() => self.start_checkpoint(),
                _ = check.tick() => self.check_deadline(),
            }
            self.publish();
        }
    }

    fn publish(&self) {
        let mut v = self.view.lock();
        v.members = self.st.members.clone();
        v.initialized = self.st.formed;
    }

    fn send(&self, name: &str, msg: ToWorker) {
        if let Some(c) = self.conns.get(name) {
            let _ = c.tx.send(msg);
        }
    }

    fn peers(&self) -> Peers {
        self.conns
            .iter()
            .map(|(n, c)| (n.clone(), c.peer.clone()))
            .collect::<BTreeMap<_, _>>()
    }

    fn reset_msg(&self, name: &str) -> ToWorker {
        ToWorker::Reset {
            gen: self.gen,
            members: self.st.members.clone(),
            peers: self.peers(),
            last_txn: self.st.last_txn(name),
        }
    }

    fn save(&self) -> bool {
        match self.st.save(&self.cfg.dir) {
            Ok(()) => true,
            Err(e) => {
                error!("cannot save the coordinator state: {e}");
                false
            }
        }
    }

    /// `name` proved its PHASE2 of the checkpoint that removed it: it
    /// need not be waited for any more. Saved before it is told to leave
    /// (it exits then), so a restarted coordinator never waits for a
    /// worker that is gone for good.
    fn settle_departure(&mut self, name: &str) {
        if self.st.departing.remove(name) {
            info!("{name} proved its last phase 2");
            self.save();
        }
    }

    fn on_event(&mut self, ev: CoordEvent) {
        match ev {
            CoordEvent::Hello {
                conn,
                tx,
                name,
                join,
                data,
                source: _,
                instance,
            } => self.on_hello(
                conn,
                tx,
                name,
                join,
                Peer {
                    addr: data,
                    instance,
                },
            ),
            CoordEvent::Gone { name, conn } => self.on_gone(name, conn),
            CoordEvent::Msg { name, conn, msg } => {
                if self.conns.get(&name).is_some_and(|c| c.id == conn) {
                    self.on_msg(name, msg);
                }
            }
            CoordEvent::Shrink { names, reply } => self.on_shrink(names, reply),
            CoordEvent::ShrinkQuery { reply } => {
                let eligible = self
                    .st
                    .members
                    .iter()
                    .filter(|m| **m != self.cfg.me && !self.leaving.contains(m))
                    .cloned()
                    .collect();
                let _ = reply.send(Ok(eligible));
            }
        }
    }

    fn on_hello(
        &mut self,
        conn: u64,
        tx: mpsc::UnboundedSender<ToWorker>,
        name: String,
        join: bool,
        peer: Peer,
    ) {
        if name == self.cfg.me && conn != 0 {
            let _ = tx.send(ToWorker::Refused {
                reason: format!("{name} is the initializer's name"),
            });
            return;
        }
        info!("{name} says hello (join: {join}, data at {})", peer.addr);
        self.conns.insert(name.clone(), Conn { id: conn, tx, peer });
        self.ready.remove(&name);
        self.send(
            &name,
            ToWorker::Welcome {
                members: self.st.members.clone(),
                source: self.cfg.source.clone(),
            },
        );
        if self.st.departing.contains(&name) && !self.leaving.contains(&name) {
            // Shrunk away by a checkpoint whose PHASE2 it has not proven
            // (this coordinator may have restarted since): resolve, then leave.
            self.leaving.push(name.clone());
        }
        if self.st.members.contains(&name) || self.leaving.contains(&name) {
            self.rollback(&format!("{name} (re)connected"));
        } else if !self.st.formed && !join {
            self.st.members.push(name.clone());
            if self.st.members.len() as u64 >= self.cfg.worker_count {
                self.st.formed = true;
                info!("cluster formed: {:?}", self.st.members);
            }
            self.save();
            self.rollback(&format!("{name} is one of the initial workers"));
        } else {
            if !self.joiners.contains(&name) {
                self.joiners.push(name.clone());
            }
            let m = self.reset_msg(&name);
            self.send(&name, m);
        }
    }

    fn on_gone(&mut self, name: String, conn: u64) {
        if !self.conns.get(&name).is_some_and(|c| c.id == conn) {
            return;
        }
        self.conns.remove(&name);
        self.ready.remove(&name);
        for reg in self.registry.values_mut() {
            if reg.owner.as_ref().is_some_and(|(w, _)| *w == name) {
                reg.owner = None;
                reg.released = Some((name.clone(), None));
            }
        }
        let in_ckpt = self
            .ckpt
            .as_ref()
            .is_some_and(|ck| ck.members.contains(&name) || ck.next.contains(&name));
        if self.st.members.contains(&name) || self.st.departing.contains(&name) || in_ckpt {
            self.rollback(&format!("lost {name}"));
        } else if self.leaving.contains(&name) {
            info!("{name} left");
            self.leaving.retain(|l| *l != name);
            self.try_resume();
        } else {
            self.joiners.retain(|j| *j != name);
        }
    }

    fn on_msg(&mut self, name: String, msg: ToCoord) {
        match msg {
            ToCoord::Hello { .. } => warn!("{name}: second hello ignored"),
            ToCoord::Ready { gen } => {
                if gen == self.gen {
                    // Its reset named the last committed checkpoint (the one
                    // that removed it: none commits while it departs), so
                    // its pending transaction is resolved.
                    self.settle_departure(&name);
                    self.ready.insert(name.clone());
                    if self.running && self.leaving.contains(&name) {
                        self.send(
                            &name,
                            ToWorker::Leave {
                                source: self.cfg.source.clone(),
                            },
                        );
                    }
                    self.try_resume();
                }
            }
            ToCoord::Report { gen, c, positions } => {
                if gen != self.gen {
                    return;
                }
                if let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.c == c && !ck.decided) {
                    if ck.members.contains(&name) {
                        ck.reports.insert(name, positions);
                        self.maybe_decide();
                    }
                }
            }
            ToCoord::Vote { gen, c, commit } => {
                if gen != self.gen {
                    return;
                }
                let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.c == c && !ck.decided) else {
                    return;
                };
                if !ck.members.contains(&name) {
                    return;
                }
                if !commit {
                    self.rollback(&format!("{name} voted abort on checkpoint {c}"));
                    return;
                }
                ck.votes.insert(name);
                self.maybe_decide();
            }
            ToCoord::Done { gen, c } => {
                if gen != self.gen {
                    return;
                }
                if let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.c == c && ck.decided) {
                    ck.done.insert(name.clone());
                    self.settle_departure(&name);
                    self.maybe_finish();
                }
            }
            ToCoord::Fault { gen, why } => {
                if gen == self.gen {
                    self.rollback(&format!("{name}: {why}"));
                }
            }
            ToCoord::Grant {
                gen,
                req,
                stream,
                conn,
            } => {
                let reply = self.grant(&name, gen, stream, conn);
                let (ok, por, last_seen) = reply.unwrap_or((false, POR_NONE, None));
                self.send(
                    &name,
                    ToWorker::Granted {
                        gen,
                        req,
                        ok,
                        por,
                        last_seen,
                    },
                );
            }
            ToCoord::Release {
                gen,
                stream,
                conn,
                last_seen,
            } => {
                if gen != self.gen {
                    return;
                }
                if let Some(reg) = self.registry.get_mut(&stream) {
                    if reg.owner.as_ref() == Some(&(name.clone(), conn)) {
                        reg.owner = None;
                        reg.released = Some((name, last_seen));
                    }
                }
            }
        }
    }

    /// Decides a NOTIFY: `(granted, resume position, dedup position)`.
    fn grant(
        &mut self,
        name: &str,
        gen: u64,
        stream: u64,
        conn: u64,
    ) -> Option<(bool, u64, Option<u64>)> {
        if gen != self.gen || !self.running {
            return None;
        }
        let committed = self.st.committed.get(&stream).copied();
        let reg = self.registry.entry(stream).or_default();
        match &reg.owner {
            Some((w, c)) if w == name && *c == conn => {}
            Some(_) => return None,
            None => {
                if let Some((w, ls)) = &reg.released {
                    let uncommitted = ls.is_some_and(|ls| committed.map_or(true, |c| ls > c));
                    if w != name && uncommitted {
                        // Its lines accepted at another worker are not
                        // committed yet: wait for the next checkpoint.
                        debug!("stream {stream}: move from {w} to {name} waits for a commit");
                        return None;
                    }
                }
            }
        }
        let released = reg.released.as_ref().and_then(|(_, ls)| *ls);
        reg.owner = Some((name.to_owned(), conn));
        Some((true, committed.unwrap_or(POR_NONE), committed.max(released)))
    }

    fn on_shrink(&mut self, names: Vec<String>, reply: ShrinkReply) {
        let pending: Vec<&String> = self.shrinks.iter().flat_map(|(n, _)| n).collect();
        let mut seen = HashSet::new();
        let why = if names.is_empty() {
            Some("no worker named".to_string())
        } else {
            names.iter().find_map(|n| {
                if *n == self.cfg.me {
                    Some(format!("cannot shrink the initializer ({n})"))
                } else if !self.st.members.contains(n) {
                    Some(format!("{n} is not a member"))
                } else if self.leaving.contains(n) || pending.contains(&n) || !seen.insert(n) {
                    Some(format!("{n} is already leaving"))
                } else {
                    None
                }
            })
        };
        match why {
            Some(why) => {
                let _ = reply.send(Err(why));
            }
            None => {
                info!("shrink requested: {names:?}");
                self.shrinks.push((names, reply));
            }
        }
    }

    fn rollback(&mut self, why: &str) {
        self.gen += 1;
        info!(
            "rollback to checkpoint {:?} (generation {:#x}): {why}",
            self.st.last, self.gen
        );
        self.running = false;
        self.ready.clear();
        if let Some(ck) = self.ckpt.take() {
            if !ck.decided {
                self.shrinks.extend(ck.shrinks);
            } else {
                for (names, reply) in ck.shrinks {
                    let _ = reply.send(Ok(names));
                }
            }
        }
        for reg in self.registry.values_mut() {
            reg.owner = None;
            reg.released = None;
        }
        let names: Vec<String> = self.conns.keys().cloned().collect();
        for n in names {
            let m = self.reset_msg(&n);
            self.send(&n, m);
        }
    }

    fn try_resume(&mut self) {
        if self.running || !self.st.formed {
            return;
        }
        let all = self
            .st
            .members
            .iter()
            .chain(self.st.departing.iter())
            .chain(self.leaving.iter().filter(|l| self.conns.contains_key(*l)))
            .all(|m| self.conns.contains_key(m) && self.ready.contains(m));
        if !all {
            return;
        }
        self.running = true;
        info!(
            "processing (generation {:#x}): {:?}",
            self.gen, self.st.members
        );
        for m in self.st.members.clone() {
            self.send(&m, ToWorker::Resume { gen: self.gen });
        }
        for l in self.leaving.clone() {
            self.send(
                &l,
                ToWorker::Leave {
                    source: self.cfg.source.clone(),
                },
            );
        }
    }

    fn start_checkpoint(&mut self) {
        if !self.running || self.ckpt.is_some() || !self.st.formed || !self.st.departing.is_empty()
        {
            return;
        }
        let c = self.next_c;
        self.next_c += 1;
        let shrinks = std::mem::take(&mut self.shrinks);
        let removed: HashSet<&String> = shrinks.iter().flat_map(|(n, _)| n).collect();
        let mut next: Vec<String> = self
            .st
            .members
            .iter()
            .filter(|m| !removed.contains(m))
            .cloned()
            .collect();
        for j in &self.joiners {
            if self.ready.contains(j) && self.conns.contains_key(j) {
                next.push(j.clone());
            }
        }
        let members = self.st.members.clone();
        if next != members {
            info!("checkpoint {c} changes the membership: {members:?} -> {next:?}");
        }
        let mut peers = self.peers();
        peers.retain(|n, _| members.contains(n) || next.contains(n));
        let everyone: Vec<String> = {
            let mut v = members.clone();
            v.extend(next.iter().filter(|n| !members.contains(n)).cloned());
            v
        };
        for n in &everyone {
            self.send(
                n,
                ToWorker::Checkpoint {
                    gen: self.gen,
                    c,
                    epoch: self.st.epoch,
                    members: members.clone(),
                    next: next.clone(),
                    peers: peers.clone(),
                },
            );
        }
        debug!("checkpoint {c} started");
        self.ckpt = Some(Ckpt {
            c,
            members,
            next,
            reports: HashMap::new(),
            votes: HashSet::new(),
            decided: false,
            done: HashSet::new(),
            deadline: Instant::now() + checkpoint_timeout(self.cfg.interval),
            shrinks,
        });
    }

    fn maybe_decide(&mut self) {
        let Some(ck) = self.ckpt.as_mut() else {
            return;
        };
        if ck.decided
            || !ck
                .members
                .iter()
                .all(|m| ck.reports.contains_key(m) && ck.votes.contains(m))
        {
            return;
        }
        let before = self.st.clone();
        for positions in ck.reports.values() {
            for &(s, p) in positions {
                let e = self.st.committed.entry(s).or_insert(p);
                *e = (*e).max(p);
            }
        }
        self.st.last = Some((self.st.epoch, ck.c));
        self.st.members = ck.next.clone();
        self.st
            .departing
            .extend(ck.members.iter().filter(|m| !ck.next.contains(m)).cloned());
        let c = ck.c;
        if !self.save() {
            self.st = before;
            self.rollback(&format!(
                "checkpoint {c}: the commit decision could not be saved"
            ));
            return;
        }
        let Some(ck) = self.ckpt.as_mut() else {
            return;
        };
        ck.decided = true;
        debug!("checkpoint {c} committed (decision saved)");
        for m in ck.members.clone() {
            self.send(&m, ToWorker::Decide { gen: self.gen, c });
        }
        let Some(ck) = self.ckpt.as_ref() else {
            return;
        };
        let joined: Vec<String> = ck
            .next
            .iter()
            .filter(|n| !ck.members.contains(n))
            .cloned()
            .collect();
        let left: Vec<String> = ck
            .members
            .iter()
            .filter(|n| !ck.next.contains(n))
            .cloned()
            .collect();
        self.joiners.retain(|j| !joined.contains(j));
        for l in left {
            if !self.leaving.contains(&l) {
                self.leaving.push(l);
            }
        }
    }

    fn maybe_finish(&mut self) {
        let Some(ck) = self.ckpt.as_ref() else {
            return;
        };
        if !ck.members.iter().all(|m| ck.done.contains(m)) {
            return;
        }
        let Some(ck) = self.ckpt.take() else {
            return;
        };
        let positions: Vec<(u64, u64)> = self.st.committed.iter().map(|(s, p)| (*s, *p)).collect();
        for m in &ck.next {
            self.send(
                m,
                ToWorker::Acks {
                    gen: self.gen,
                    positions: positions.clone(),
                },
            );
        }
        for j in ck.next.iter().filter(|n| !ck.members.contains(n)) {
            info!("{j} joined");
            self.send(j, ToWorker::Resume { gen: self.gen });
        }
        for l in ck.members.iter().filter(|n| !ck.next.contains(n)) {
            info!("{l} leaves");
            self.send(
                l,
                ToWorker::Leave {
                    source: self.cfg.source.clone(),
                },
            );
        }
        if ck.next != ck.members {
            let names: Vec<String> = self.conns.keys().cloned().collect();
            for n in names {
                self.send(
                    &n,
                    ToWorker::View {
                        members: self.st.members.clone(),
                    },
                );
            }
        }
        for (names, reply) in ck.shrinks {
            let _ = reply.send(Ok(names));
        }
    }

    fn check_deadline(&mut self) {
        if let Some(ck) = &self.ckpt {
            if Instant::now() >= ck.deadline {
                let what = if ck.decided { "phase 2" } else { "votes" };
                let c = ck.c;
                self.rollback(&format!("checkpoint {c}: {what} not complete in time"));
            }
        }
    }
}
