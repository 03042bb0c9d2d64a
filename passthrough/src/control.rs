//! Control connections: the coordinator's listener (one connection per
//! non-initializer worker, turned into [`CoordEvent`]s) and a worker's
//! link to the coordinator (reconnected every 100 ms while the initializer
//! is down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::coord::CoordEvent;
use crate::ctl::{JsonCodec, ToCoord, ToWorker};

/// How often a worker retries the coordinator.
pub const RETRY: Duration = Duration::from_millis(100);

/// Accepts workers on the coordinator's control listener.
pub async fn serve(listener: TcpListener, events: mpsc::Sender<CoordEvent>) {
    let ids = AtomicU64::new(1);
    loop {
        let (stream, peer) = crate::accept(&listener, "control").await;
        let conn = ids.fetch_add(1, Ordering::Relaxed);
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(e) = worker_conn(stream, conn, events).await {
                info!("control connection from {peer}: {e}");
            }
        });
    }
}

async fn worker_conn(
    stream: TcpStream,
    conn: u64,
    events: mpsc::Sender<CoordEvent>,
) -> Result<(), String> {
    let io = Framed::new(stream, JsonCodec::<ToCoord, ToWorker>::default());
    let (mut wr, mut rd) = io.split();
    let hello = tokio::time::timeout(Duration::from_secs(10), rd.next())
        .await
        .map_err(|_| "no hello within 10 s".to_string())?;
    let (name, join, data, source, instance) = match hello {
        Some(Ok(ToCoord::Hello {
            name,
            join,
            data,
            source,
            instance,
        })) => (name, join, data, source, instance),
        Some(Ok(other)) => return Err(format!("expected Hello, got {other:?}")),
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("closed before hello".into()),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ToWorker>();
    let mut writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let refused = matches!(m, ToWorker::Refused { .. });
            if wr.send(m).await.is_err() || refused {
                break;
            }
        }
    });
    events
        .send(CoordEvent::Hello {
            conn,
            tx,
            name: name.clone(),
            join,
            data,
            source,
            instance,
        })
        .await
        .map_err(|_| "the coordinator stopped")?;
    let result = loop {
        tokio::select! {
            m = rd.next() => match m {
                Some(Ok(msg)) => {
                    if events.send(CoordEvent::Msg { name: name.clone(), conn, msg }).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Err(e)) => break Err(format!("{name}: {e}")),
                None => break Ok(()),
            },
            _ = &mut writer => break Ok(()),
        }
    };
    writer.abort();
    let _ = events.send(CoordEvent::Gone { name, conn }).await;
    result
}

/// A worker's link status, as its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// Connected and hello sent.
    Up,
    /// Lost the coordinator.
    Down,
}

/// Keeps a worker connected to the coordinator at `addr`: says `hello` on
/// every connection, sends `uplink` messages, and forwards the
/// coordinator's messages to `to_agent`.
pub async fn member_link(
    addr: String,
    hello: ToCoord,
    mut uplink: mpsc::UnboundedReceiver<ToCoord>,
    to_agent: mpsc::UnboundedSender<ToWorker>,
    status: mpsc::UnboundedSender<LinkStatus>,
) {
    let mut failures = 0u64;
    loop {
        let stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    info!("coordinator {addr} not reachable ({e}); retrying every 100 ms");
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        failures = 0;
        let _ = stream.set_nodelay(true);
        let mut io = Framed::new(stream, JsonCodec::<ToWorker, ToCoord>::default());
        // Whatever was queued while disconnected belongs to a dead session.
        while uplink.try_recv().is_ok() {}
        if io.send(hello.clone()).await.is_err() {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        info!("connected to the coordinator at {addr}");
        let _ = status.send(LinkStatus::Up);
        let why = loop {
            tokio::select! {
                m = uplink.recv() => {
                    let Some(m) = m else { return };
                    if let Err(e) = io.send(m).await {
                        break e.to_string();
                    }
                }
                m = io.next() => match m {
                    Some(Ok(ToWorker::Refused { reason })) => {
                        warn!("the coordinator refused me: {reason}");
                        break "refused".to_string();
                    }
                    Some(Ok(m)) => {
                        if to_agent.send(m).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "closed".to_string(),
                },
            }
        };
        warn!("lost the coordinator ({why}); reconnecting");
        debug!("link down");
        let _ = status.send(LinkStatus::Down);
        tokio::time::sleep(RETRY).await;
    }
}
