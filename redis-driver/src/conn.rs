//! Finding the current primary through the Sentinels, connecting to it,
//! and the retry pace.
//!
//! Both tools are given every Sentinel's `HOST:PORT` (`--sentinels`). The
//! primary is never configured: it is asked for (`SENTINEL
//! get-master-addr-by-name NAME`) from **all** Sentinels at once, each
//! within [`SENTINEL_TIMEOUT`], and the address named by a **majority of
//! all the Sentinels given** (2 of 3) wins; with no such majority the
//! attempt fails and the next one begins. One Sentinel's word is not
//! enough: a Sentinel restarted with its node names the primary of its
//! saved configuration, which can be its own node, until it hears of the
//! failovers it missed; and that node, restarted with a configuration
//! Sentinel rewrote when it promoted it, really says `master` for a few
//! seconds. A client that took "1 of 3" then wrote to and read from a
//! stale primary (docs/findings.md, Redis). The chosen server must then
//! also say `ROLE` → `master`, or the next attempt begins.
//!
//! Every connection has a connect and a response timeout, so a paused
//! (SIGSTOPped) server, which keeps accepting TCP connections but never
//! answers, costs one timeout and a new resolution, never a hang.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use feeders::log::Logger;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::error::DriverError;

/// How long one Sentinel may take to answer (connect included).
pub const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting to a Redis server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Parses `HOST:PORT[,HOST:PORT...]` (blank entries ignored).
pub fn parse_addrs(list: &str) -> Result<Vec<String>, DriverError> {
    let addrs: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if addrs.is_empty() {
        return Err(DriverError::Addr {
            addr: list.to_owned(),
            reason: "no address given".into(),
        });
    }
    addrs
        .iter()
        .map(|a| {
            let bad = |reason: &str| DriverError::Addr {
                addr: (*a).to_owned(),
                reason: reason.to_owned(),
            };
            let (host, port) = a.rsplit_once(':').ok_or_else(|| bad("not HOST:PORT"))?;
            if host.is_empty() || host.contains('/') {
                return Err(bad("no host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok((*a).to_owned()),
                _ => Err(bad("the port is not a number in 1..65535")),
            }
        })
        .collect()
}

/// The redis crate's connection URL for `HOST:PORT`.
pub fn url(addr: &str) -> String {
    format!("redis://{addr}/")
}

/// Opens a multiplexed connection to `addr`; every command on it fails
/// after `response_timeout` without an answer.
pub async fn connect(
    addr: &str,
    response_timeout: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let client = redis::Client::open(url(addr))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Asks the Sentinel at `sentinel` where the primary of `master` is.
/// `Ok(None)`: the Sentinel does not know the name.
pub async fn ask_sentinel(sentinel: &str, master: &str) -> Result<Option<String>, String> {
    let fut = async {
        let mut con = connect(sentinel, SENTINEL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let reply: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut con)
            .await
            .map_err(|e| e.to_string())?;
        Ok(reply.map(|(host, port)| format!("{host}:{port}")))
    };
    tokio::time::timeout(SENTINEL_TIMEOUT * 2, fut)
        .await
        .map_err(|_| "no answer".to_owned())?
}

/// The answer most Sentinels gave (ties: the earliest in `answers`), and
/// how many gave it.
pub fn majority(answers: &[String]) -> Option<(String, usize)> {
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        counts.entry(a).or_insert((0, i)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|(_, (na, ia)), (_, (nb, ib))| na.cmp(nb).then(ib.cmp(ia)))
        .map(|(a, (n, _))| (a.to_owned(), n))
}

/// How many of `sentinels` Sentinels must name the same primary: a strict
/// majority of all of them, answering or not.
pub fn quorum(sentinels: usize) -> usize {
    sentinels / 2 + 1
}

/// Asks every Sentinel at once; the address a majority of all of them
/// ([`quorum`]) name.
pub async fn resolve_primary(
    sentinels: &[String],
    master: &str,
) -> Result<(String, usize), String> {
    let replies =
        futures::future::join_all(sentinels.iter().map(|s| ask_sentinel(s, master))).await;
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    for (s, r) in sentinels.iter().zip(replies) {
        match r {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => errors.push(format!("{s}: does not know {master:?}")),
            Err(e) => errors.push(format!("{s}: {e}")),
        }
    }
    match elect(&answers, sentinels.len()) {
        Elected::Nobody => Err(format!(
            "no Sentinel named a primary ({})",
            errors.join("; ")
        )),
        Elected::TooFew(addr, votes) => Err(format!(
            "only {votes} of {} Sentinel(s) name {addr} (answers {answers:?}; {} needed{}{})",
            sentinels.len(),
            quorum(sentinels.len()),
            if errors.is_empty() { "" } else { "; " },
            errors.join("; ")
        )),
        Elected::Primary(addr, votes) => Ok((addr, votes)),
    }
}

/// What the Sentinels' answers elect.
#[derive(Debug, PartialEq, Eq)]
pub enum Elected {
    /// No Sentinel named any primary.
    Nobody,
    /// The most named address, but named by fewer than [`quorum`].
    TooFew(String, usize),
    /// The address a majority of all Sentinels name, and their number.
    Primary(String, usize),
}

/// Elects the primary from the answers of `configured` Sentinels (the
/// unanswered ones count as not agreeing).
pub fn elect(answers: &[String], configured: usize) -> Elected {
    match majority(answers) {
        None => Elected::Nobody,
        Some((addr, votes)) if votes < quorum(configured) => Elected::TooFew(addr, votes),
        Some((addr, votes)) => Elected::Primary(addr, votes),
    }
}

/// Whether a `ROLE` reply says `master`.
pub fn is_master_role(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => {
            matches!(
                items.first(),
                Some(Value::BulkString(b)) if b == b"master"
            ) || matches!(items.first(), Some(Value::SimpleString(s)) if s == "master")
        }
        _ => false,
    }
}

/// A connection to the server the Sentinels named primary.
pub struct Primary {
    /// Its `HOST:PORT`.
    pub addr: String,
    /// The connection.
    pub con: MultiplexedConnection,
}

/// Resolves the primary and connects to it, retrying (with back-off) until
/// a server the Sentinels name answers `ROLE` with `master`.
pub async fn connect_primary(
    sentinels: &[String],
    master: &str,
    response_timeout: Duration,
    log: &Logger,
) -> Primary {
    let mut backoff = Backoff::new();
    loop {
        let attempt = async {
            let (addr, votes) = resolve_primary(sentinels, master).await?;
            let mut con = connect(&addr, response_timeout)
                .await
                .map_err(|e| format!("primary {addr}: {e}"))?;
            let role: Value = redis::cmd("ROLE")
                .query_async(&mut con)
                .await
                .map_err(|e| format!("primary {addr}: ROLE: {e}"))?;
            if !is_master_role(&role) {
                return Err(format!(
                    "{addr}, named primary by {votes} Sentinel(s), is not a master yet"
                ));
            }
            Ok((addr, votes, con))
        };
        match attempt.await {
            Ok((addr, votes, con)) => {
                log.info(format_args!(
                    "primary of {master} is {addr} ({votes} of {} Sentinel(s) agree){}",
                    sentinels.len(),
                    if backoff.failures() > 0 {
                        format!(" after {} failed attempt(s)", backoff.failures())
                    } else {
                        String::new()
                    }
                ));
                return Primary { addr, con };
            }
            Err(e) => {
                backoff
                    .fail(log, format_args!("finding the primary: {e}"))
                    .await
            }
        }
    }
}

pub use feeders::backoff::Backoff;

/// Runs `fut` to completion on a single-threaded runtime.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output, DriverError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DriverError::Runtime)?;
    Ok(rt.block_on(fut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_parse_and_bad_entries_are_named() {
        let v = parse_addrs("127.0.0.1:26379, 127.0.0.1:26380,").unwrap();
        assert_eq!(v, ["127.0.0.1:26379", "127.0.0.1:26380"]);
        for bad in ["127.0.0.1", "127.0.0.1:x", ":80", "h:0", "redis://h:1"] {
            let e = parse_addrs(&format!("127.0.0.1:1,{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert!(parse_addrs(" , ").is_err());
    }

    #[test]
    fn a_primary_needs_a_majority_of_all_sentinels() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(elect(&[], 3), Elected::Nobody);
        // One Sentinel dead, the two others disagree (one restarted with a
        // stale configuration): nobody is elected.
        assert_eq!(
            elect(&s(&["b:2", "a:1"]), 3),
            Elected::TooFew("b:2".into(), 1)
        );
        // Only one of three answering: not enough, even unopposed.
        assert_eq!(elect(&s(&["a:1"]), 3), Elected::TooFew("a:1".into(), 1));
        assert_eq!(
            elect(&s(&["a:1", "a:1"]), 3),
            Elected::Primary("a:1".into(), 2)
        );
        assert_eq!(elect(&s(&["a:1"]), 1), Elected::Primary("a:1".into(), 1));
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn the_address_most_sentinels_name_wins() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(majority(&[]), None);
        assert_eq!(
            majority(&s(&["a:1", "b:2", "b:2"])),
            Some(("b:2".into(), 2))
        );
        // A tie goes to the earliest answer.
        assert_eq!(majority(&s(&["b:2", "a:1"])), Some(("b:2".into(), 1)));
        assert_eq!(majority(&s(&["a:1", "b:2"])), Some(("a:1".into(), 1)));
    }

    #[test]
    fn role_replies_are_read() {
        let master = Value::Array(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(10),
            Value::Array(vec![]),
        ]);
        assert!(is_master_role(&master));
        let replica = Value::Array(vec![
            Value::BulkString(b"slave".to_vec()),
            Value::BulkString(b"127.0.0.1".to_vec()),
        ]);
        assert!(!is_master_role(&replica));
        assert!(!is_master_role(&Value::Nil));
    }
}
