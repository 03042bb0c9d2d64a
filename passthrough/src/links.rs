//! Data links between workers: this worker's data listener (lines routed
//! to it by other ingresses, forwarded to its owner tagged with the
//! sender's name) and its outbound links (one TCP connection per owner,
//! each drained by a writer task that coalesces items into large writes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::ctl::{Peer, Peers};
use crate::data::{encode_into, DataCodec, DataFrame, Item};
use crate::route::{Out, OwnerInput};

/// Items queued per outbound link before the router waits.
const LINK_QUEUE: usize = 256;
/// How long a connect to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct RemoteLink {
    peer: Peer,
    tx: mpsc::Sender<Item>,
    alive: Arc<AtomicBool>,
}

/// This worker's outbound data links.
pub struct Links {
    me: Arc<str>,
    owner: OwnerInput,
    remote: Mutex<HashMap<String, RemoteLink>>,
    faults: mpsc::UnboundedSender<String>,
}

impl Links {
    /// Links of worker `me`, whose own owner reads `owner`; a broken link
    /// is reported on `faults`.
    pub fn new(me: &str, owner: OwnerInput, faults: mpsc::UnboundedSender<String>) -> Links {
        Links {
            me: Arc::from(me),
            owner,
            remote: Mutex::new(HashMap::new()),
            faults,
        }
    }

    /// The way to reach each of `members` (connecting where needed).
    pub async fn outs(&self, members: &[String], peers: &Peers) -> Result<Vec<Out>, String> {
        let mut v = Vec::with_capacity(members.len());
        for m in members {
            v.push(self.out_for(m, peers).await?);
        }
        Ok(v)
    }

    /// The way to reach `name`: in-process for this worker, else a live
    /// link to its current address (reused, or connected now).
    pub async fn out_for(&self, name: &str, peers: &Peers) -> Result<Out, String> {
        if *name == *self.me {
            return Ok(Out::Local {
                input: self.owner.clone(),
                me: self.me.clone(),
            });
        }
        let peer = peers
            .get(name)
            .ok_or_else(|| format!("no data address for {name}"))?
            .clone();
        let addr = peer.addr.clone();
        {
            let links = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = links.get(name) {
                if l.peer == peer && l.alive.load(Ordering::SeqCst) {
                    return Ok(Out::Remote(l.tx.clone()));
                }
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("data link to {name} at {addr}: connect timed out"))?
            .map_err(|e| format!("data link to {name} at {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(writer(
            stream,
            self.me.to_string(),
            name.to_owned(),
            rx,
            alive.clone(),
            self.faults.clone(),
        ));
        debug!("data link to {name} at {addr} up");
        let mut links = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        links.insert(
            name.to_owned(),
            RemoteLink {
                peer,
                tx: tx.clone(),
                alive,
            },
        );
        Ok(Out::Remote(tx))
    }

    /// Forgets the links of workers no longer in `keep` (their writer
    /// tasks end when the last sender is dropped).
    pub fn retain(&self, keep: &[String]) {
        let mut links = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|n, _| keep.contains(n));
    }
}

async fn writer(
    stream: TcpStream,
    me: String,
    peer: String,
    mut rx: mpsc::Receiver<Item>,
    alive: Arc<AtomicBool>,
    faults: mpsc::UnboundedSender<String>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    encode_into(&DataFrame::Hello(me), &mut buf);
    let sending = async {
        wr.write_all(&buf).await?;
        buf.clear();
        while let Some(item) = rx.recv().await {
            encode_into(&DataFrame::Item(item), &mut buf);
            while buf.len() < 1024 * 1024 {
                match rx.try_recv() {
                    Ok(more) => encode_into(&DataFrame::Item(more), &mut buf),
                    Err(_) => break,
                }
            }
            wr.write_all(&buf).await?;
            buf.clear();
        }
        Ok::<(), std::io::Error>(())
    };
    // The peer never sends anything: a readable end means it is gone. The
    // link then dies quietly; the next send to it fails and reports.
    let mut scratch = [0u8; 64];
    let closed = async {
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        r = sending => {
            alive.store(false, Ordering::SeqCst);
            if let Err(e) = r {
                warn!("data link to {peer} failed: {e}");
                let _ = faults.send(format!("data link to {peer} failed: {e}"));
            }
        }
        _ = closed => {
            alive.store(false, Ordering::SeqCst);
            debug!("data link to {peer}: closed by the peer");
        }
    }
}

/// Accepts data links on `listener` and forwards their items to `owner`.
pub async fn serve(listener: TcpListener, owner: OwnerInput) {
    loop {
        let (stream, peer) = crate::accept(&listener, "data").await;
        let owner = owner.clone();
        tokio::spawn(async move {
            let mut rd = FramedRead::with_capacity(stream, DataCodec, 256 * 1024);
            let name: Arc<str> = match rd.next().await {
                Some(Ok(DataFrame::Hello(n))) => Arc::from(n.as_str()),
                other => {
                    warn!("data link from {peer}: expected HELLO, got {other:?}; closing");
                    return;
                }
            };
            info!("data link from {name} ({peer}) up");
            while let Some(f) = rd.next().await {
                match f {
                    Ok(DataFrame::Item(item)) => {
                        if owner.send((name.clone(), item)).await.is_err() {
                            return;
                        }
                    }
                    Ok(DataFrame::Hello(_)) => {
                        warn!("data link from {name}: second HELLO; closing");
                        return;
                    }
                    Err(e) => {
                        warn!("data link from {name}: {e}; closing");
                        return;
                    }
                }
            }
            debug!("data link from {name} closed");
        });
    }
}
