//! A worker's agent: it carries out the coordinator's orders on this
//! worker's parts (router, ingress, owner, data links) and reports back
//! (ready, positions, votes, faults).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bugs::{Bug, Bugs};
use crate::control::LinkStatus;
use crate::ctl::{txn_id, Peers, ToCoord, ToWorker};
use crate::external::View;
use crate::ingress::Ingress;
use crate::links::Links;
use crate::owner::{OwnerCmd, OwnerEvent};
use crate::route::{BarrierResult, MoveBug, Router};

/// The parts of a worker the agent drives.
pub struct Parts {
    /// Worker name.
    pub name: String,
    /// Whether this is the initializer (its view comes from the coordinator).
    pub initializer: bool,
    /// Routing state.
    pub router: Arc<Router>,
    /// Source side.
    pub ingress: Arc<Ingress>,
    /// Outbound data links.
    pub links: Arc<Links>,
    /// The owner's command queue.
    pub owner: mpsc::UnboundedSender<OwnerCmd>,
    /// To the coordinator.
    pub uplink: mpsc::UnboundedSender<ToCoord>,
    /// What the external API reports.
    pub view: Arc<View>,
    /// Bug switches.
    pub bugs: Bugs,
}

/// The agent's inputs.
pub struct Inputs {
    /// From the coordinator.
    pub coord: mpsc::UnboundedReceiver<ToWorker>,
    /// Link up/down (members only).
    pub status: mpsc::UnboundedReceiver<LinkStatus>,
    /// From the owner.
    pub owner: mpsc::UnboundedReceiver<OwnerEvent>,
    /// Broken data links.
    pub faults: mpsc::UnboundedReceiver<String>,
}

struct Agent {
    p: Parts,
    gen: u64,
    members: Vec<String>,
    peers: Peers,
    links_ready: Option<u64>,
    owner_ready: Option<u64>,
    reported: Option<u64>,
    links_retry: Option<Instant>,
    leaving: bool,
    /// [`Bug::CommitWhenCutOff`]: when this member commits on its own
    /// unless the coordinator speaks first.
    presume: Option<Instant>,
}

/// Runs the agent until the worker leaves the cluster (shrink).
pub async fn run(p: Parts, mut inp: Inputs) {
    let mut a = Agent {
        p,
        gen: 0,
        members: Vec::new(),
        peers: Peers::new(),
        links_ready: None,
        owner_ready: None,
        reported: None,
        links_retry: None,
        leaving: false,
        presume: None,
    };
    let split_brain = !a.p.initializer && a.p.bugs.is(Bug::CommitWhenCutOff);
    loop {
        let retry_at = a.links_retry;
        let presume_at = a.presume;
        tokio::select! {
            m = inp.coord.recv() => match m {
                Some(m) => {
                    if split_brain {
                        a.presume = Some(Instant::now() + crate::bugs::PRESUME_AFTER);
                    }
                    a.on_coord(m).await
                }
                None => return,
            },
            Some(s) = inp.status.recv() => {
                if split_brain {
                    a.presume = (s == LinkStatus::Up)
                        .then(|| Instant::now() + crate::bugs::PRESUME_AFTER);
                }
                a.on_status(s).await
            }
            _ = async {
                match presume_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                a.presume = None;
                warn!("injected bug commit-when-cut-off: the coordinator is silent; committing what I hold on my own");
                let _ = a.p.owner.send(OwnerCmd::CommitAlone { gen: a.gen });
            }
            Some(e) = inp.owner.recv() => {
                if a.on_owner(e).await {
                    return;
                }
            }
            Some(f) = inp.faults.recv() => {
                let _ = a.p.uplink.send(ToCoord::Fault { gen: a.gen, why: f });
            }
            _ = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                a.links_retry = None;
                a.connect_links().await;
            }
        }
    }
}

impl Agent {
    fn up(&self, m: ToCoord) {
        let _ = self.p.uplink.send(m);
    }

    fn set_processing(&self, on: bool) {
        self.p.view.lock().processing = on;
    }

    async fn on_coord(&mut self, m: ToWorker) {
        match m {
            ToWorker::Welcome { members, source } => {
                debug!("welcomed; members {members:?}; initializer source {source}");
                if !self.p.initializer {
                    let mut v = self.p.view.lock();
                    v.initialized = true;
                    v.members = members;
                }
            }
            ToWorker::Refused { reason } => warn!("refused by the coordinator: {reason}"),
            ToWorker::Reset {
                gen,
                members,
                peers,
                last_txn,
            } => {
                debug!("reset to generation {gen:#x}: members {members:?}");
                self.gen = gen;
                self.links_ready = None;
                self.owner_ready = None;
                self.reported = None;
                self.links_retry = None;
                {
                    let mut v = self.p.view.lock();
                    v.processing = false;
                    if !self.p.initializer {
                        v.members = members.clone();
                    }
                }
                self.p.router.reset(gen, members.clone()).await;
                self.p.ingress.kick_all(None);
                let _ = self.p.owner.send(OwnerCmd::Reset { gen, last_txn });
                let known: Vec<String> = peers.keys().cloned().collect();
                self.p.links.retain(&known);
                self.members = members;
                self.peers = peers;
                self.connect_links().await;
            }
            ToWorker::Resume { gen } => {
                if gen == self.gen && self.p.router.activate(gen).await {
                    info!("processing (generation {gen:#x})");
                    self.set_processing(true);
                    self.p.ingress.poke();
                }
            }
            ToWorker::Checkpoint {
                gen,
                c,
                epoch,
                members,
                next,
                peers,
            } => {
                if gen != self.gen {
                    return;
                }
                self.checkpoint(gen, c, epoch, members, next, peers).await;
            }
            ToWorker::Decide { gen, c } => {
                let _ = self.p.owner.send(OwnerCmd::Decide { gen, c });
            }
            ToWorker::Acks { gen, positions } => self.p.ingress.ack(gen, &positions),
            ToWorker::Granted {
                gen,
                req,
                ok,
                por,
                last_seen,
            } => self.p.ingress.granted(gen, req, ok, por, last_seen),
            ToWorker::View { members } => {
                if !self.p.initializer {
                    self.p.view.lock().members = members;
                }
            }
            ToWorker::Leave { source } => {
                if !self.leaving {
                    info!("shrunk away: sending feeders to {source}, then leaving");
                    self.leaving = true;
                    self.set_processing(false);
                    self.p.ingress.kick_all(Some(source));
                    let _ = self.p.owner.send(OwnerCmd::Leave);
                }
            }
        }
    }

    async fn checkpoint(
        &mut self,
        gen: u64,
        c: u64,
        epoch: u64,
        members: Vec<String>,
        next: Vec<String>,
        peers: Peers,
    ) {
        let me = &self.p.name;
        let member = members.contains(me);
        if member {
            let _ = self.p.owner.send(OwnerCmd::Checkpoint {
                gen,
                c,
                txn: txn_id(me, epoch, c),
                sources: members.clone(),
                participate: true,
            });
        }
        self.peers.extend(peers);
        let outs = match self.p.links.outs(&next, &self.peers).await {
            Ok(o) => o,
            Err(e) => {
                self.up(ToCoord::Fault { gen, why: e });
                return;
            }
        };
        let bug = if self.p.bugs.is(Bug::ReorderOnMigrate) {
            Some(MoveBug::Swap)
        } else if self.p.bugs.is(Bug::LoseOnShrink) {
            Some(MoveBug::DropOnShrink)
        } else {
            None
        };
        match self
            .p
            .router
            .barrier(gen, c, &members, member, next.clone(), outs, bug)
            .await
        {
            BarrierResult::Sent(positions) => {
                if member {
                    self.up(ToCoord::Report { gen, c, positions });
                }
            }
            BarrierResult::Stale => {}
            BarrierResult::LinkLost(why) => self.up(ToCoord::Fault { gen, why }),
        }
        if member && !next.contains(me) {
            info!("checkpoint {c}: leaving the routing");
            self.set_processing(false);
        }
        self.members = next;
    }

    async fn connect_links(&mut self) {
        let gen = self.gen;
        match self.p.links.outs(&self.members, &self.peers).await {
            Ok(outs) => {
                if self.p.router.set_outs(gen, outs).await {
                    self.links_ready = Some(gen);
                    self.maybe_ready();
                }
            }
            Err(e) => {
                debug!("data links not ready: {e}; retrying");
                self.links_retry = Some(Instant::now() + Duration::from_millis(100));
            }
        }
    }

    fn maybe_ready(&mut self) {
        if self.links_ready == Some(self.gen)
            && self.owner_ready == Some(self.gen)
            && self.reported != Some(self.gen)
        {
            self.reported = Some(self.gen);
            self.up(ToCoord::Ready { gen: self.gen });
        }
    }

    async fn on_status(&mut self, s: LinkStatus) {
        if s == LinkStatus::Down {
            self.set_processing(false);
            self.reported = None;
            self.links_ready = None;
            self.owner_ready = None;
            self.p.router.orphan().await;
            self.p.ingress.kick_all(None);
        }
    }

    /// Returns true when the worker is done (left the cluster).
    async fn on_owner(&mut self, e: OwnerEvent) -> bool {
        match e {
            OwnerEvent::Ready { gen } => {
                self.owner_ready = Some(gen);
                self.maybe_ready();
            }
            OwnerEvent::Vote { gen, c, commit } => self.up(ToCoord::Vote { gen, c, commit }),
            OwnerEvent::Done { gen, c } => self.up(ToCoord::Done { gen, c }),
            OwnerEvent::Fault { gen, why } => self.up(ToCoord::Fault { gen, why }),
            OwnerEvent::Left => {
                if !self.leaving {
                    return false;
                }
                let deadline = Instant::now() + Duration::from_secs(1);
                while self.p.ingress.connections() > 0 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                info!("left the cluster");
                return true;
            }
        }
        false
    }
}
