//! Port allocation: a block of loopback ports no other crasher run is using.
//!
//! A block is claimed by an exclusive `flock` on a lock file named after its
//! base port (in a machine-wide folder under the system temp dir), held for
//! the life of the run, so two runs at once never collide; the lock dies
//! with the process, so a crashed run never leaks its claim. Every port of a
//! claimed block is also checked free by binding it before it is handed out.
//!
//! A run driven by the low-level commands (`crasher start-sink` ...) has no
//! process alive for its whole life to hold the claim: it records its
//! block in `state.json`, re-takes the claim for the length of each command
//! ([`PortBlock::reclaim`]) and checks a process's ports free before it
//! starts it. Between commands another run could claim the same block; the
//! check then fails with a clear error instead of starting on a taken port.

use std::fs::{self, File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

/// Lowest base port tried: below Linux's ephemeral range (32768–60999), so
/// outgoing connections do not steal ports from a block mid-run.
const FIRST_BASE: u16 = 10_000;
/// Bases are tried up to here.
const LAST_BASE: u16 = 32_000;

/// A claimed block of `len` consecutive ports starting at `base`.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    len: u16,
    _lock: Option<Flock<File>>,
}

/// No block could be claimed.
#[derive(Debug, thiserror::Error)]
#[error("no free block of {len} loopback ports between {FIRST_BASE} and {LAST_BASE}: {why}")]
pub struct PortError {
    len: u16,
    why: String,
}

impl PortBlock {
    /// Claims a free block of `len` ports (aligned to `len`).
    pub fn allocate(len: u16) -> Result<PortBlock, PortError> {
        let err = |why: String| PortError { len, why };
        let dir = lock_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let slots = (LAST_BASE - FIRST_BASE) / len;
        let start = rand::thread_rng().gen_range(0..slots);
        for i in 0..slots {
            let base = FIRST_BASE + ((start + i) % slots) * len;
            let path = dir.join(format!("{base}.lock"));
            let Ok(file) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            if (base..base + len).all(port_is_free) {
                return Ok(PortBlock {
                    base,
                    len,
                    _lock: Some(lock),
                });
            }
        }
        Err(err("every block is claimed or has a port in use".into()))
    }

    /// Claims the recorded block `base..base+len` again (a run driven by
    /// low-level commands, see the module doc). Fails if another crasher
    /// process holds its claim now. Its ports are not checked: the run's
    /// own processes may be listening on them.
    pub fn reclaim(base: u16, len: u16) -> Result<PortBlock, PortError> {
        let err = |why: String| PortError { len, why };
        let dir = lock_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(format!("{base}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            err(format!(
                "the block at {base} is claimed by another crasher run right now \
                 ({} is locked)",
                path.display()
            ))
        })?;
        Ok(PortBlock {
            base,
            len,
            _lock: Some(lock),
        })
    }

    /// The recorded block `base..base+len`, without claiming it: only to
    /// compute addresses (queries), never to start a process.
    pub fn recorded(base: u16, len: u16) -> PortBlock {
        PortBlock {
            base,
            len,
            _lock: None,
        }
    }

    /// Number of ports in the block.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Whether the block has no ports (never, for a block from a profile).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// First port of the block.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// The `offset`-th port of the block.
    ///
    /// # Panics
    /// If `offset` is outside the block: a programming error in the caller.
    pub fn port(&self, offset: u16) -> u16 {
        assert!(
            offset < self.len,
            "port offset {offset} outside a block of {}",
            self.len
        );
        self.base + offset
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("crasher-port-locks")
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blocks_never_overlap_and_their_ports_are_free() {
        let a = PortBlock::allocate(110).unwrap();
        let b = PortBlock::allocate(110).unwrap();
        let (ra, rb) = (a.base()..a.base() + 110, b.base()..b.base() + 110);
        assert!(
            ra.end <= rb.start || rb.end <= ra.start,
            "{ra:?} overlaps {rb:?}"
        );
        assert!(port_is_free(a.port(109)));
    }

    #[test]
    fn a_held_block_cannot_be_reclaimed_until_released() {
        let a = PortBlock::allocate(110).unwrap();
        let base = a.base();
        let err = PortBlock::reclaim(base, 110).unwrap_err().to_string();
        assert!(err.contains("claimed by another crasher run"), "{err}");
        drop(a);
        let b = PortBlock::reclaim(base, 110).unwrap();
        assert_eq!((b.base(), b.len(), b.port(3)), (base, 110, base + 3));
    }
}
