//! Connecting to a NATS cluster, the stream's settings, and the retry pace.
//!
//! Both tools list every node of the cluster (`--server` takes a
//! comma-separated list) so that a crashed or paused node only costs a
//! reconnect. A paused (SIGSTOPped) node keeps its TCP connections open, so
//! the client pings every second and gives up on a silent server after two
//! unanswered pings instead of the default two minutes.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use feeders::log::Logger;

use crate::error::NatsError;

/// Time between client pings: how fast a paused server is noticed.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// JetStream's largest replication factor.
pub const MAX_REPLICAS: usize = 5;

/// Parses `nats://127.0.0.1:4222,nats://127.0.0.1:4223` (scheme optional).
pub fn parse_servers(list: &str) -> Result<Vec<ServerAddr>, NatsError> {
    let urls: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(NatsError::Server {
            url: list.to_owned(),
            reason: "no server given".into(),
        });
    }
    urls.iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| NatsError::Server {
                url: (*u).to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Connects to any of `servers`, retrying forever in the background: the
/// returned client queues requests until a server answers. Connection
/// events are logged as warnings (never as errors: the soak's sanity loop
/// treats `ERROR` in the sink's log as a violation, and a lost connection
/// is the cluster's business, checked by the output).
pub async fn connect(
    servers: Vec<ServerAddr>,
    name: &str,
    log: &Logger,
) -> Result<Client, NatsError> {
    let events = log.clone();
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(2)))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((50 * attempts as u64).clamp(50, 1000))
        })
        .event_callback(move |e| {
            let log = events.clone();
            async move {
                match e {
                    Event::Connected => log.info(format_args!("NATS connection up")),
                    other => log.warn(format_args!("NATS connection event: {other}")),
                }
            }
        })
        .connect(servers)
        .await
        .map_err(|e| NatsError::Client(e.to_string()))
}

/// The stream every key's subject goes to: `subjects` (normally
/// `lines.>`), file storage, `replicas` copies, and a duplicate window
/// long enough to absorb a feeder's resends after its own restart.
pub fn stream_config(
    name: &str,
    subjects: &str,
    replicas: usize,
    duplicate_window: Duration,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: replicas.clamp(1, MAX_REPLICAS),
        duplicate_window,
        ..Default::default()
    }
}

/// Gets the stream, creating it if missing; retries (with back-off) while
/// the cluster cannot answer, e.g. before JetStream has a meta leader.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
    log: &Logger,
) -> stream::Stream {
    let mut backoff = Backoff::new();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => {
                if backoff.failures() > 0 {
                    log.info(format_args!(
                        "stream {} ready after {} failed attempt(s)",
                        config.name,
                        backoff.failures()
                    ));
                }
                return s;
            }
            Err(e) => {
                backoff
                    .fail(log, format_args!("stream {}: {e}", config.name))
                    .await
            }
        }
    }
}

pub use feeders::backoff::Backoff;

/// Runs `fut` to completion on a single-threaded runtime whose tracing
/// output (the NATS client's own messages) is filtered by `CRASHER_LOG`, or
/// by default keeps only this crate's info lines: the client logs every
/// failed reconnect at ERROR level, and the soak reads `ERROR` in a sink
/// log as a violation. Connection events reach the log through
/// [`connect`]'s callback instead.
pub fn block_on_quiet<F: Future>(fut: F) -> Result<F::Output, NatsError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRASHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=off"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NatsError::Client(format!("cannot start the async runtime: {e}")))?;
    Ok(tracing::subscriber::with_default(subscriber, || {
        rt.block_on(fut)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_and_bad_entries_are_named() {
        let v = parse_servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223,").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].port(), 4223);
        let e = parse_servers("nats://127.0.0.1:4222,http://x:y")
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://x:y"), "{e}");
        assert!(parse_servers(" , ").is_err());
    }

    #[test]
    fn replicas_are_clamped_to_what_jetstream_allows() {
        let c = stream_config("S", "lines.>", 9, Duration::from_secs(120));
        assert_eq!(c.num_replicas, MAX_REPLICAS);
        let c = stream_config("S", "lines.>", 0, Duration::from_secs(120));
        assert_eq!(c.num_replicas, 1);
        assert_eq!(c.subjects, vec!["lines.>".to_owned()]);
    }
}
