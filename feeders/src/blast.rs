//! TCP mode source: fixed-size records sent in paced batches over a plain
//! TCP connection, like Wallaroo's `fixed_length_message_blaster`.
//!
//! There is no protocol and no acknowledgement: a batch whose write fails
//! is resent in full on a new connection (so a batch may arrive twice, or
//! partly then fully), and everything the peer had not read when a
//! connection broke is lost. That is the nature of TCP mode, where only
//! crash-survival, not exactly-once delivery, can be checked.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::log::Logger;
use crate::rate::TokenBucket;

/// Pause between failed connection attempts.
pub const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// Limit on one connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to send, where, and at what pace.
#[derive(Debug, Clone)]
pub struct BlastConfig {
    /// `host:port` to connect to.
    pub target: String,
    /// The file of fixed-size records.
    pub file: PathBuf,
    /// Bytes per record (53 for the harness's framed 49-byte lines).
    pub msg_size: usize,
    /// Records per write.
    pub batch_size: usize,
    /// Pause between batches; zero = back to back.
    pub interval: Duration,
    /// Extra cap in bytes per second; 0 = none.
    pub rate: u64,
    /// Log a progress line every this many records; 0 = never.
    pub report_interval: u64,
}

/// Why blasting could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum BlastError {
    /// The input file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The arguments or the file do not make sense together.
    #[error("{0}")]
    Config(String),
}

/// What a finished blast sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlastSummary {
    /// Records sent (a resent batch counts once).
    pub records: u64,
    /// Bytes sent (likewise).
    pub bytes: u64,
    /// Connections that broke and were replaced.
    pub reconnects: u64,
}

/// Sends the whole file, reconnecting as needed; returns at its end.
pub fn run(cfg: &BlastConfig, log: &Logger) -> Result<BlastSummary, BlastError> {
    if cfg.msg_size == 0 || cfg.batch_size == 0 {
        return Err(BlastError::Config(
            "--msg-size and --batch-size must be at least 1".into(),
        ));
    }
    let io_err = |source| BlastError::Io {
        path: cfg.file.clone(),
        source,
    };
    let file = File::open(&cfg.file).map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    if size % cfg.msg_size as u64 != 0 {
        return Err(BlastError::Config(format!(
            "{}: {size} bytes is not a whole number of {}-byte records",
            cfg.file.display(),
            cfg.msg_size
        )));
    }
    let mut reader = BufReader::with_capacity(1024 * 1024, file);
    let mut batch = vec![0u8; cfg.msg_size * cfg.batch_size];
    let mut bucket = (cfg.rate > 0).then(|| TokenBucket::new(cfg.rate, Instant::now()));
    let mut conn: Option<TcpStream> = None;
    let mut sum = BlastSummary {
        records: 0,
        bytes: 0,
        reconnects: 0,
    };
    let mut next_report = cfg.report_interval;
    let mut next_batch = Instant::now();
    log.info(format_args!(
        "blasting {} ({size} bytes, {} records of {} bytes) to {} in batches of {} every {} ms",
        cfg.file.display(),
        size / cfg.msg_size as u64,
        cfg.msg_size,
        cfg.target,
        cfg.batch_size,
        cfg.interval.as_millis()
    ));
    loop {
        let n = read_full(&mut reader, &mut batch).map_err(io_err)?;
        if n == 0 {
            break;
        }
        if sum.records == 0 {
            check_framing(&batch[..n], cfg.msg_size, log);
        }
        if let Some(b) = &mut bucket {
            b.refill(Instant::now());
            while !b.may_send() {
                sleep(b.ready_at().saturating_duration_since(Instant::now()));
                b.refill(Instant::now());
            }
            b.consume(n);
        }
        loop {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(connect(&cfg.target, log)),
            };
            match c.write_all(&batch[..n]) {
                Ok(()) => break,
                Err(e) => {
                    log.error(format_args!(
                        "write to {} failed: {e}; reconnecting and resending the batch",
                        cfg.target
                    ));
                    conn = None;
                    sum.reconnects += 1;
                    sleep(CONNECT_RETRY);
                }
            }
        }
        sum.records += (n / cfg.msg_size) as u64;
        sum.bytes += n as u64;
        if cfg.report_interval > 0 && sum.records >= next_report {
            log.info(format_args!("sent {} records", sum.records));
            next_report += cfg.report_interval;
        }
        if !cfg.interval.is_zero() {
            next_batch += cfg.interval;
            let now = Instant::now();
            if next_batch > now {
                sleep(next_batch - now);
            } else if now - next_batch > Duration::from_secs(1) {
                // Far behind (a long reconnect): do not burst to catch up.
                next_batch = now;
            }
        }
    }
    if let Some(c) = &mut conn {
        let _ = c.flush();
        let _ = c.shutdown(Shutdown::Write);
    }
    log.info(format_args!(
        "end of file: sent {} records ({} bytes) to {}, {} reconnect(s)",
        sum.records, sum.bytes, cfg.target, sum.reconnects
    ));
    Ok(sum)
}

/// Warns when the first record does not start with a 4-byte big-endian
/// length of the rest of the record, the framing the harness's TCP input
/// files use; the blaster itself sends any fixed-size records.
fn check_framing(data: &[u8], msg_size: usize, log: &Logger) {
    if msg_size < 4 || data.len() < 4 {
        return;
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if len != msg_size - 4 {
        log.warn(format_args!(
            "the first record's 4-byte length header says {len}, not {} (--msg-size {msg_size} \
             minus 4): is this the TCP form of the input file?",
            msg_size - 4
        ));
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Connects to `target`, retrying every [`CONNECT_RETRY`] forever.
fn connect(target: &str, log: &Logger) -> TcpStream {
    loop {
        let err = match target.to_socket_addrs() {
            Ok(addrs) => {
                let mut last = String::from("no address");
                for a in addrs {
                    match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            log.info(format_args!("connected to {target} ({a})"));
                            return s;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                last
            }
            Err(e) => e.to_string(),
        };
        log.warn(format_args!(
            "Failed to connect to {target}: {err}; retrying in {} s",
            CONNECT_RETRY.as_secs()
        ));
        sleep(CONNECT_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_partial_records_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, [0u8; 10]).unwrap();
        let cfg = BlastConfig {
            target: "127.0.0.1:1".into(),
            file: p,
            msg_size: 3,
            batch_size: 1,
            interval: Duration::ZERO,
            rate: 0,
            report_interval: 0,
        };
        let e = run(&cfg, &Logger::stderr("blast")).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a whole number of 3-byte records"),
            "{e}"
        );
    }

    #[test]
    fn read_full_stops_at_the_end() {
        let mut r: &[u8] = b"abcde";
        let mut buf = [0u8; 3];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 3);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 2);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 0);
    }
}
