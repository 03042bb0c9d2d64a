//! TCP mode sink: accept connections and append every byte received to
//! one file, like Wallaroo's `data_receiver` redirected to a file.
//!
//! Each read (up to [`READ_CHUNK`] bytes) is appended with one write while
//! holding a lock, so the file never holds a torn chunk; bytes from two
//! concurrent connections can still interleave at chunk boundaries. Writes
//! go straight to the file (no user-space buffer), so everything received
//! is in the file at once and nothing is lost when the receiver is killed.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::atomic::write_atomic;
use crate::log::Logger;

/// Largest single read, and so the largest unit appended at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// Where to listen and what to write.
#[derive(Debug, Clone)]
pub struct ReceiveConfig {
    /// `host:port` to listen on (port 0 = any free port).
    pub listen: String,
    /// File every received byte is appended to.
    pub output: PathBuf,
    /// Where to write the bound address once listening.
    pub ready_file: Option<PathBuf>,
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The output or ready file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// A bound receiver, not yet accepting.
#[derive(Debug)]
pub struct Receiver {
    listener: TcpListener,
    output: Arc<Mutex<File>>,
    output_path: PathBuf,
    log: Logger,
}

impl Receiver {
    /// Opens the output, binds, logs `listening on ADDR` and writes the
    /// ready file.
    pub fn bind(cfg: &ReceiveConfig, log: Logger) -> Result<Receiver, ReceiveError> {
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.output)
            .map_err(|source| ReceiveError::File {
                path: cfg.output.clone(),
                source,
            })?;
        let listener = TcpListener::bind(&cfg.listen).map_err(|source| ReceiveError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ReceiveError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
        log.info(format_args!(
            "listening on {addr}; appending to {}",
            cfg.output.display()
        ));
        if let Some(p) = &cfg.ready_file {
            write_atomic(p, addr.to_string().as_bytes()).map_err(|source| ReceiveError::File {
                path: p.clone(),
                source,
            })?;
        }
        Ok(Receiver {
            listener,
            output: Arc::new(Mutex::new(output)),
            output_path: cfg.output.clone(),
            log,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever, one thread each.
    pub fn serve(self) -> ! {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let out = Arc::clone(&self.output);
                    let log = self.log.clone();
                    let path = self.output_path.clone();
                    log.info(format_args!("accepted a connection from {peer}"));
                    thread::spawn(move || {
                        let (bytes, end) = pump(stream, &out);
                        match end {
                            Ok(()) => log.info(format_args!(
                                "connection from {peer} closed after {bytes} bytes"
                            )),
                            Err(e) => log.error(format_args!(
                                "connection from {peer} ended after {bytes} bytes: {e} \
                                 (output {})",
                                path.display()
                            )),
                        }
                    });
                }
                Err(e) => {
                    self.log.error(format_args!("accept failed: {e}"));
                    // EMFILE and the like: give the system a moment.
                    thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
}

/// Copies one connection into the output; returns the bytes copied and
/// how it ended.
fn pump(mut stream: TcpStream, out: &Mutex<File>) -> (u64, io::Result<()>) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return (total, Ok(())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (total, Err(e)),
        };
        let mut f = match out.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = f.write_all(&buf[..n]) {
            return (total, Err(e));
        }
        total += n as u64;
    }
}
