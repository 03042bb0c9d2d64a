//! The external query API as a client: cluster status and shrink.

use std::net::SocketAddr;
use std::time::Duration;

use connector::external::{
    ClusterStatus, ExternalCodec, ExternalMsg, ShrinkRequest, ShrinkResponse,
};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;

/// What a worker answered to a status query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Initialised: the JSON status.
    Cluster(ClusterStatus),
    /// "Cluster not yet initialized".
    NotInitialized,
}

impl Status {
    /// Whether this answer means "processing messages".
    pub fn ready(&self) -> bool {
        matches!(self, Status::Cluster(s) if s.processing_messages)
    }
}

/// A query failed: no connection, no answer in time, or a bad answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Could not connect or the connection failed.
    #[error("{addr}: {source}")]
    Io {
        /// Worker address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{0}: no answer within the deadline")]
    Timeout(SocketAddr),
    /// The answer was not a valid message or not the expected kind.
    #[error("{addr}: unexpected answer: {what}")]
    Protocol {
        /// Worker address.
        addr: SocketAddr,
        /// What came back.
        what: String,
    },
}

async fn exchange(
    addr: SocketAddr,
    msg: ExternalMsg,
    limit: Duration,
) -> Result<ExternalMsg, QueryError> {
    let io = |source| QueryError::Io { addr, source };
    let fut = async {
        let stream = TcpStream::connect(addr).await.map_err(io)?;
        let mut framed = Framed::new(stream, ExternalCodec);
        framed.send(msg).await.map_err(|e| QueryError::Protocol {
            addr,
            what: e.to_string(),
        })?;
        match framed.next().await {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => Err(QueryError::Protocol {
                addr,
                what: e.to_string(),
            }),
            None => Err(QueryError::Protocol {
                addr,
                what: "connection closed without an answer".into(),
            }),
        }
    };
    timeout(limit, fut)
        .await
        .map_err(|_| QueryError::Timeout(addr))?
}

/// Asks one worker for its cluster status.
pub async fn cluster_status(addr: SocketAddr, limit: Duration) -> Result<Status, QueryError> {
    match exchange(addr, ExternalMsg::ClusterStatusQuery, limit).await? {
        ExternalMsg::ClusterStatus(s) => Ok(Status::Cluster(s)),
        ExternalMsg::NotInitialized => Ok(Status::NotInitialized),
        other => Err(QueryError::Protocol {
            addr,
            what: format!("{other:?}"),
        }),
    }
}

/// Asks the initializer to remove `names` (or, with `query`, which could go).
pub async fn shrink(
    addr: SocketAddr,
    names: Vec<String>,
    query: bool,
    limit: Duration,
) -> Result<Result<ShrinkResponse, String>, QueryError> {
    let req = ShrinkRequest {
        query,
        node_count: names.len() as u64,
        node_names: names,
    };
    match exchange(addr, ExternalMsg::Shrink(req), limit).await? {
        ExternalMsg::ShrinkResponse(r) => Ok(Ok(r)),
        ExternalMsg::ShrinkError(e) => Ok(Err(e)),
        other => Err(QueryError::Protocol {
            addr,
            what: format!("{other:?}"),
        }),
    }
}

/// Polls `addr` until it reports processing messages, or `deadline` passes.
/// Returns the last answer (or error text) on failure.
pub async fn poll_ready(addr: SocketAddr, deadline: Instant) -> Result<ClusterStatus, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match cluster_status(
            addr,
            left.min(Duration::from_secs(2))
                .max(Duration::from_millis(50)),
        )
        .await
        {
            Ok(Status::Cluster(s)) if s.processing_messages => return Ok(s),
            Ok(Status::Cluster(s)) => format!(
                "{addr}: processing_messages=false, workers {:?}",
                s.worker_names
            ),
            Ok(Status::NotInitialized) => format!("{addr}: cluster not yet initialized"),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls worker `addr` until it is ready by the profile's readiness `kind`
/// (the external query says processing messages, or `/healthz` answers
/// 200), or `deadline` passes: then the last answer or error.
pub async fn poll_worker(
    kind: crate::run::profile::ReadinessKind,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(), String> {
    use crate::run::profile::ReadinessKind;
    match kind {
        ReadinessKind::External => poll_ready(addr, deadline).await.map(|_| ()),
        ReadinessKind::Healthz => poll_healthz(addr, deadline).await,
        ReadinessKind::Redis => poll_redis(addr, deadline).await,
    }
}

/// Asks the initializer at `init` to shrink worker `name` away (the answer
/// within `limit`), then waits up to `limit` again until `running()` says
/// it exited.
pub async fn shrink_and_wait(
    init: SocketAddr,
    name: &str,
    limit: Duration,
    mut running: impl FnMut() -> bool,
) -> Result<(), String> {
    match shrink(init, vec![name.to_owned()], false, limit).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("the initializer refused: {e}")),
        Err(e) => return Err(e.to_string()),
    }
    let deadline = Instant::now() + limit;
    while running() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} still running {}s after the shrink request",
                limit.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `GET /healthz` on `addr`: whether it answered HTTP 200.
pub async fn healthz(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.lines().next().unwrap_or("");
        if status.split_whitespace().nth(1) == Some("200") {
            Ok(())
        } else {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
            Err(format!("{addr}: /healthz answered {status:?} {body}"))
        }
    };
    timeout(limit, fut)
        .await
        .map_err(|_| format!("{addr}: /healthz: no answer"))?
}

/// Polls `GET /healthz` until it answers 200 or `deadline` passes.
pub async fn poll_healthz(addr: SocketAddr, deadline: Instant) -> Result<(), String> {
    poll_check(deadline, |limit| healthz(addr, limit)).await
}

/// Runs `check` (given the time it may take: what is left, 50 ms to 2 s)
/// every 100 ms until it succeeds or `deadline` passes; the last error
/// otherwise.
async fn poll_check<F, Fut>(deadline: Instant, mut check: F) -> Result<(), String>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match check(left.clamp(Duration::from_millis(50), Duration::from_secs(2))).await
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads one RESP reply that is a simple string, an error or a bulk
/// string (all a readiness check needs); errors come back as `Err`.
async fn resp_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    r.read_line(&mut line).await.map_err(|e| e.to_string())?;
    let line = line.trim_end_matches(['\r', '\n']);
    match line.as_bytes().first() {
        Some(b'+') => Ok(line[1..].to_owned()),
        Some(b'-') => Err(line[1..].to_owned()),
        Some(b'$') => {
            let n: usize = line[1..]
                .parse()
                .map_err(|_| format!("bad bulk length {line:?}"))?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(n);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        None => Err("connection closed without an answer".into()),
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// Whether an `INFO replication` text says the node can serve: a master
/// always, a replica once its link to the master is up.
pub fn redis_replication_ready(info: &str) -> Result<(), String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
    };
    match field("role") {
        Some("master") => Ok(()),
        Some("slave") => match field("master_link_status") {
            Some("up") => Ok(()),
            other => Err(format!(
                "replica of {}:{}, master_link_status:{}",
                field("master_host").unwrap_or("?"),
                field("master_port").unwrap_or("?"),
                other.unwrap_or("missing")
            )),
        },
        other => Err(format!("INFO replication has role {other:?}")),
    }
}

/// One readiness check of the Redis server at `addr`: `PING` answers
/// `PONG` (not `-LOADING`), and [`redis_replication_ready`].
pub async fn redis_ready(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let fut = async {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut s = tokio::io::BufReader::new(s);
        s.get_mut()
            .write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        match resp_reply(&mut s).await {
            Ok(p) if p == "PONG" => {}
            Ok(p) => return Err(format!("{addr}: PING answered {p:?}")),
            Err(e) => return Err(format!("{addr}: PING: {e}")),
        }
        let info = resp_reply(&mut s)
            .await
            .map_err(|e| format!("{addr}: INFO replication: {e}"))?;
        redis_replication_ready(&info).map_err(|e| format!("{addr}: {e}"))
    };
    timeout(limit, fut)
        .await
        .map_err(|_| format!("{addr}: PING: no answer"))?
}

/// The replication role the Redis server at `addr` reports (`master` or
/// `slave`) and, for a master, how many replicas are connected to it, from
/// `INFO replication`.
pub async fn redis_role(addr: SocketAddr, limit: Duration) -> Result<(String, u32), String> {
    use tokio::io::AsyncWriteExt;
    let fut = async {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut s = tokio::io::BufReader::new(s);
        s.get_mut()
            .write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let info = resp_reply(&mut s)
            .await
            .map_err(|e| format!("{addr}: INFO replication: {e}"))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
        };
        let role = field("role")
            .map(str::to_owned)
            .ok_or_else(|| format!("{addr}: INFO replication has no role"))?;
        let replicas = field("connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok((role, replicas))
    };
    timeout(limit, fut)
        .await
        .map_err(|_| format!("{addr}: INFO replication: no answer"))?
}

/// Polls [`redis_ready`] until it holds or `deadline` passes.
pub async fn poll_redis(addr: SocketAddr, deadline: Instant) -> Result<(), String> {
    poll_check(deadline, |limit| redis_ready(addr, limit)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_info_decides_redis_readiness() {
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        assert_eq!(redis_replication_ready(master), Ok(()));
        let up = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7100\r\nmaster_link_status:up\r\n";
        assert_eq!(redis_replication_ready(up), Ok(()));
        let down = up.replace("status:up", "status:down");
        let e = redis_replication_ready(&down).unwrap_err();
        assert!(e.contains("127.0.0.1:7100") && e.contains("down"), "{e}");
        assert!(redis_replication_ready("").is_err());
    }

    /// A fake server that answers PING and INFO as scripted.
    async fn fake(answer: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn the_redis_role_is_read_from_info_replication() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        let reply = format!("${}\r\n{info}\r\n", info.len());
        let addr = fake(Box::leak(reply.into_bytes().into_boxed_slice())).await;
        assert_eq!(
            redis_role(addr, Duration::from_secs(2)).await.unwrap(),
            ("master".to_owned(), 2)
        );
        let addr = fake(b"-LOADING Redis is loading the dataset in memory\r\n").await;
        let e = redis_role(addr, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("LOADING"), "{e}");
    }

    #[tokio::test]
    async fn redis_readiness_speaks_resp() {
        let ok = fake(b"+PONG\r\n$11\r\nrole:master\r\n").await;
        assert_eq!(redis_ready(ok, Duration::from_secs(2)).await, Ok(()));
        let loading = fake(b"-LOADING Redis is loading the dataset in memory\r\n").await;
        let e = redis_ready(loading, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.contains("LOADING"), "{e}");
        let replica = fake(b"+PONG\r\n$37\r\nrole:slave\r\nmaster_link_status:down\r\n\r\n").await;
        let e = redis_ready(replica, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.contains("master_link_status:down"), "{e}");
    }
}
