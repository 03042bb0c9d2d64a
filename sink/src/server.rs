//! The accept loop and the state every connection shares.
//!
//! [`Server::bind`] listens; [`Server::run`] accepts connections, each
//! served by its own task ([`crate::session`]), until some session finds a
//! reason for the whole sink to stop (an invariant violation: exit 66, or a
//! file it cannot write: exit 2), and returns that exit code.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::events::Events;
use crate::rules::Rules;

/// Exit code of an invariant violation (a duplicate, a bad commit, an
/// inconsistent txnlog): aloc_sink's `sys.exit(66)`.
pub const EXIT_VIOLATION: u8 = 66;
/// Exit code of an environment error (a file the sink cannot write).
pub const EXIT_ENVIRONMENT: u8 = 2;

/// What NOTIFY_ACK (and the EOS ACK) say as the point of reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PorMode {
    /// The worker's current output offset (after the sink's recovery cut):
    /// what the sink really holds.
    #[default]
    Offset,
    /// As the original aloc_sink: the offset this sink process last saw
    /// for the worker (its last append or abort cut, also on an earlier
    /// connection), from a per-process table: 0 after a sink restart,
    /// stale after a recovery cut. A worker must not trust it.
    Original,
}

/// What the sink is told at startup.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output prefix: files are `PREFIX.<worker>` and `PREFIX.<worker>.txnlog`.
    pub prefix: PathBuf,
    /// The cookie workers must present in HELLO.
    pub cookie: String,
    /// Fault-injection rules (usually none).
    pub rules: Rules,
    /// How NOTIFY_ACK's point of reference is answered.
    pub por: PorMode,
}

/// State shared by every connection of one sink process.
#[derive(Debug)]
pub struct Shared {
    /// Startup configuration.
    pub config: Config,
    /// Worker name → id of the connection that owns it. A worker has at
    /// most one live connection; a second HELLO for the name is refused.
    live: Mutex<HashMap<String, u64>>,
    /// Serialises file-namespace changes: opening a worker's pair of files
    /// and renaming a departed worker's pair never interleave.
    files: Mutex<()>,
    /// PHASE1 frames received by this process, over all workers
    /// (`local-txn` rules count these).
    phase1_count: AtomicU64,
    next_conn: AtomicU64,
    halted: AtomicBool,
    halt: watch::Sender<Option<u8>>,
    /// `--por original`: worker name → the offset this process last saw.
    por_table: Mutex<HashMap<String, u64>>,
    /// `--events`: phase events for the supervisor (none by default).
    events: std::sync::OnceLock<Arc<Events>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Fresh state for `config`.
    pub fn new(config: Config) -> Shared {
        Shared {
            config,
            live: Mutex::new(HashMap::new()),
            files: Mutex::new(()),
            phase1_count: AtomicU64::new(0),
            next_conn: AtomicU64::new(1),
            halted: AtomicBool::new(false),
            halt: watch::channel(None).0,
            por_table: Mutex::new(HashMap::new()),
            events: std::sync::OnceLock::new(),
        }
    }

    /// The phase-event channel (a no-op one unless [`Server::set_events`] was called).
    pub fn events(&self) -> &Events {
        static NONE: std::sync::OnceLock<Events> = std::sync::OnceLock::new();
        match self.events.get() {
            Some(e) => e,
            None => NONE.get_or_init(Events::none),
        }
    }

    /// The offset this process last noted for `worker` (`--por original`).
    pub fn remembered_por(&self, worker: &str) -> Option<u64> {
        lock(&self.por_table).get(worker).copied()
    }

    /// Notes `offset` as the last one seen for `worker`.
    pub fn remember_por(&self, worker: &str, offset: u64) {
        lock(&self.por_table).insert(worker.to_owned(), offset);
    }

    /// Forgets `worker` (it left the cluster).
    pub fn forget_por(&self, worker: &str) {
        lock(&self.por_table).remove(worker);
    }

    /// A new connection id (for logs and the live registry).
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts one PHASE1 and returns its 1-based number.
    pub fn count_phase1(&self) -> u64 {
        self.phase1_count.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Registers `conn` as `worker`'s live connection, or returns the id of
    /// the connection that already is.
    pub fn claim(self: &Arc<Self>, worker: &str, conn: u64) -> Result<Claim, u64> {
        let mut live = lock(&self.live);
        if let Some(&holder) = live.get(worker) {
            return Err(holder);
        }
        live.insert(worker.to_owned(), conn);
        Ok(Claim {
            shared: Arc::clone(self),
            worker: worker.to_owned(),
            conn,
        })
    }

    /// Whether `worker` has a live connection.
    pub fn is_live(&self, worker: &str) -> bool {
        lock(&self.live).contains_key(worker)
    }

    /// Holds the file-namespace lock for the duration of `f`.
    pub fn with_files_locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let _guard = lock(&self.files);
        f()
    }

    /// Asks the whole sink to stop with `code` (the first request wins).
    pub fn halt(&self, code: u8) {
        self.halted.store(true, Ordering::SeqCst);
        self.halt.send_if_modified(|c| {
            if c.is_none() {
                *c = Some(code);
                true
            } else {
                false
            }
        });
    }

    /// Whether the sink is stopping: sessions must not touch files anymore.
    pub fn halted(&self) -> bool {
        self.halted.load(Ordering::Relaxed)
    }
}

/// A worker's registration as live; dropping it unregisters.
#[derive(Debug)]
pub struct Claim {
    shared: Arc<Shared>,
    worker: String,
    conn: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = lock(&self.shared.live);
        if live.get(&self.worker) == Some(&self.conn) {
            live.remove(&self.worker);
        }
    }
}

/// A bound, not yet serving, sink.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Sends phase events to `events` (`--events`) and serves its commands.
    pub fn set_events(&self, events: Arc<Events>) {
        if self.shared.events.set(Arc::clone(&events)).is_ok() {
            tokio::spawn(crate::events::serve_commands(events));
        }
    }

    /// The shared state (tests and benchmarks inspect it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until a session halts the sink; returns the exit code.
    pub async fn run(self) -> u8 {
        let mut halt = self.shared.halt.subscribe();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = Arc::clone(&self.shared);
                        tokio::spawn(crate::session::serve(stream, peer, shared));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                code = async { halt.wait_for(Option::is_some).await.ok().and_then(|c| *c) } => {
                    return code.unwrap_or(EXIT_VIOLATION);
                }
            }
        }
    }
}
