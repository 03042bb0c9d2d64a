//! The external API (Wallaroo's external channel, reference §2.1):
//! cluster-status queries on every worker, shrink requests on the
//! initializer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use connector::external::{ClusterStatus, ExternalCodec, ExternalMsg, ShrinkResponse};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tracing::debug;

use crate::coord::CoordEvent;
use crate::route::Router;

/// What a worker says about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewState {
    /// Members in routing order, as this worker last heard.
    pub members: Vec<String>,
    /// Joined (member) or formed (initializer): otherwise "not initialized".
    pub initialized: bool,
    /// Recovered and accepting lines.
    pub processing: bool,
}

/// The view, shared between the worker's tasks and the external API.
#[derive(Debug, Default)]
pub struct View(Mutex<ViewState>);

impl View {
    /// Locks it.
    pub fn lock(&self) -> MutexGuard<'_, ViewState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a shrink may take before the request gets an error.
const SHRINK_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves queries on `listener`; `coord` is set on the initializer. A
/// status answer carries the key owners of `router`'s current routing.
pub async fn serve(
    listener: TcpListener,
    view: Arc<View>,
    router: Arc<Router>,
    coord: Option<mpsc::Sender<CoordEvent>>,
) {
    loop {
        let (stream, peer) = crate::accept(&listener, "external").await;
        let view = view.clone();
        let router = router.clone();
        let coord = coord.clone();
        tokio::spawn(async move {
            let mut io = Framed::new(stream, ExternalCodec);
            while let Some(msg) = io.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        debug!("external {peer}: {e}; closing");
                        return;
                    }
                };
                let reply = answer(&view, &router, coord.as_ref(), msg).await;
                if io.send(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn answer(
    view: &View,
    router: &Router,
    coord: Option<&mpsc::Sender<CoordEvent>>,
    msg: ExternalMsg,
) -> ExternalMsg {
    match msg {
        ExternalMsg::ClusterStatusQuery => {
            let v = view.lock().clone();
            if !v.initialized {
                return ExternalMsg::NotInitialized;
            }
            let owners = router.key_owners();
            ExternalMsg::ClusterStatus(ClusterStatus {
                worker_count: v.members.len() as u64,
                worker_names: v.members,
                processing_messages: v.processing,
                key_owners: (!owners.is_empty()).then_some(owners),
            })
        }
        ExternalMsg::Shrink(req) => {
            let Some(coord) = coord else {
                return ExternalMsg::ShrinkError(
                    "shrink requests go to the initializer's external address".into(),
                );
            };
            let (tx, rx) = oneshot::channel();
            let ev = if req.query {
                CoordEvent::ShrinkQuery { reply: tx }
            } else {
                let mut names = req.node_names.clone();
                if names.is_empty() && req.node_count > 0 {
                    // Wallaroo's count form: the most recently added
                    // workers, never the initializer (this worker, whatever
                    // its --name).
                    let members = view.lock().members.clone();
                    names = members
                        .iter()
                        .rev()
                        .filter(|m| **m != *router.me)
                        .take(req.node_count as usize)
                        .cloned()
                        .collect();
                }
                CoordEvent::Shrink { names, reply: tx }
            };
            if coord.send(ev).await.is_err() {
                return ExternalMsg::ShrinkError("the coordinator stopped".into());
            }
            match tokio::time::timeout(SHRINK_TIMEOUT, rx).await {
                Ok(Ok(Ok(names))) => ExternalMsg::ShrinkResponse(ShrinkResponse {
                    node_count: names.len() as u64,
                    node_names: names,
                }),
                Ok(Ok(Err(e))) => ExternalMsg::ShrinkError(e),
                Ok(Err(_)) => ExternalMsg::ShrinkError("the coordinator stopped".into()),
                Err(_) => ExternalMsg::ShrinkError(format!(
                    "the shrink did not complete within {} s",
                    SHRINK_TIMEOUT.as_secs()
                )),
            }
        }
        other => ExternalMsg::ShrinkError(format!("unsupported request {other:?}")),
    }
}
