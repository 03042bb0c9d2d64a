//! Crafted sink directories for tests and benchmarks: writes the files
//! `crasher sink` writes (`output.W` data, `output.W.txnlog` records) so that
//! the verifier can be exercised without a cluster.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::txnlog::{Entry, Record};

/// One worker's output files in a crafted sink directory.
#[derive(Debug)]
pub struct FakeWorker {
    name: String,
    data: PathBuf,
    log: PathBuf,
    written: u64,
    committed: u64,
    c_id: u64,
}

impl FakeWorker {
    /// Starts (or continues) the files `dir/output.NAME` and
    /// `dir/output.NAME.txnlog`.
    pub fn new(dir: &Path, name: &str) -> io::Result<FakeWorker> {
        let data = dir.join(format!("output.{name}"));
        let log = dir.join(format!("output.{name}.txnlog"));
        let written = match fs::metadata(&data) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                File::create(&data)?;
                0
            }
            Err(e) => return Err(e),
        };
        OpenOptions::new().create(true).append(true).open(&log)?;
        Ok(FakeWorker {
            name: name.to_owned(),
            data,
            log,
            written,
            committed: written,
            c_id: 0,
        })
    }

    /// Data file path.
    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// Txnlog path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Bytes written to the data file so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends output bytes (not committed yet).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .open(&self.data)?
            .write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends raw bytes to the txnlog (to tear or garble it).
    pub fn write_log_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .open(&self.log)?
            .write_all(bytes)
    }

    fn record(&mut self, time: f64, record: Record) -> io::Result<()> {
        let line = Entry { time, record }.to_line() + "\n";
        self.write_log_raw(line.as_bytes())
    }

    fn next_txn(&mut self) -> String {
        self.c_id += 1;
        format!("Passthrough-w-{}-id-1:c_id={}", self.name, self.c_id)
    }

    /// Commits everything written: a `1-ok` then a `2-ok` record at `time`.
    pub fn commit(&mut self, time: f64) -> io::Result<()> {
        let txn_id = self.next_txn();
        let where_list = vec![(1, self.committed, self.written)];
        self.record(
            time,
            Record::Phase1Ok {
                txn_id: txn_id.clone(),
                where_list,
            },
        )?;
        self.record(
            time,
            Record::Phase2Ok {
                txn_id,
                offset: self.written,
            },
        )?;
        self.committed = self.written;
        Ok(())
    }

    /// Votes `1-ok` on everything written without a phase 2 (in doubt).
    pub fn prepare(&mut self, time: f64) -> io::Result<()> {
        let txn_id = self.next_txn();
        let where_list = vec![(1, self.committed, self.written)];
        self.record(time, Record::Phase1Ok { txn_id, where_list })
    }

    /// Aborts what was written since the last commit: `1-rollback` and
    /// `2-rollback` records, and the data file truncated back when
    /// `truncate` (leaving the bytes there models a sink killed between the
    /// record and the truncation).
    pub fn rollback(&mut self, time: f64, truncate: bool) -> io::Result<()> {
        let txn_id = self.next_txn();
        let where_list = vec![(1, self.committed, self.written)];
        self.record(
            time,
            Record::Phase1Rollback {
                txn_id: txn_id.clone(),
                where_list,
            },
        )?;
        self.record(
            time,
            Record::Phase2Rollback {
                txn_id,
                offset: self.committed,
            },
        )?;
        if truncate {
            OpenOptions::new()
                .write(true)
                .open(&self.data)?
                .set_len(self.committed)?;
            self.written = self.committed;
        }
        Ok(())
    }

    /// Renames both files as the sink does when the worker leaves:
    /// `output.NAME.SUFFIX` and `output.NAME.SUFFIX.txnlog`.
    pub fn depart(self, suffix: &str) -> io::Result<(PathBuf, PathBuf)> {
        let dir = self.data.parent().unwrap_or(Path::new("."));
        let data = dir.join(format!("output.{}.{suffix}", self.name));
        let log = dir.join(format!("output.{}.{suffix}.txnlog", self.name));
        fs::rename(&self.data, &data)?;
        fs::rename(&self.log, &log)?;
        Ok((data, log))
    }
}

/// How [`write_full_sink`] orders the committed lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Each key's lines in input order: worker `w` holds keys `w`, `w + W`,
    /// ... (W workers), their lines alternating one by one.
    InOrder,
    /// Every line of every key in one random permutation (seeded), dealt
    /// to the workers in turn: what a work queue with many consumers could
    /// commit at worst.
    Shuffled {
        /// Seed of the permutation.
        seed: u64,
    },
}

/// Commits about this many bytes per transaction in [`write_full_sink`].
pub const FULL_SINK_TXN_BYTES: u64 = 64 * 1024;

/// Writes a sink directory `sink` holding the whole of every input file in
/// `inputs`, spread over `workers` workers (`output.workerN` and its
/// txnlog), in `order`, committed in transactions of about
/// [`FULL_SINK_TXN_BYTES`] at times `t0`, `t0 + 0.001`, ... Returns the
/// bytes written. Holds all inputs in memory while writing (this is a
/// fixture, not the verifier).
pub fn write_full_sink(
    sink: &Path,
    inputs: &[(u8, PathBuf)],
    workers: usize,
    order: Order,
    t0: f64,
) -> io::Result<u64> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    let workers = workers.max(1);
    fs::create_dir_all(sink)?;
    let texts: Vec<Vec<u8>> = inputs
        .iter()
        .map(|(_, p)| fs::read(p))
        .collect::<io::Result<_>>()?;
    let lines: Vec<Vec<&[u8]>> = texts
        .iter()
        .map(|t| t.split_inclusive(|&b| b == b'\n').collect())
        .collect();
    // Each worker's lines, in commit order.
    let mut per_worker: Vec<Vec<&[u8]>> = vec![Vec::new(); workers];
    match order {
        Order::InOrder => {
            for (w, out) in per_worker.iter_mut().enumerate() {
                let keys: Vec<&Vec<&[u8]>> = lines.iter().skip(w).step_by(workers).collect();
                let longest = keys.iter().map(|k| k.len()).max().unwrap_or(0);
                for i in 0..longest {
                    out.extend(keys.iter().filter_map(|k| k.get(i).copied()));
                }
            }
        }
        Order::Shuffled { seed } => {
            let mut all: Vec<&[u8]> = lines.iter().flatten().copied().collect();
            all.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            for (i, l) in all.into_iter().enumerate() {
                per_worker[i % workers].push(l);
            }
        }
    }
    let mut total = 0;
    let mut txn = 0u64;
    for (w, out) in per_worker.iter().enumerate() {
        let name = format!("worker{w}");
        let mut data = io::BufWriter::new(File::create(sink.join(format!("output.{name}")))?);
        let mut log = String::new();
        let mut written = 0u64;
        let mut committed = 0u64;
        for (i, l) in out.iter().enumerate() {
            data.write_all(l)?;
            written += l.len() as u64;
            if written - committed >= FULL_SINK_TXN_BYTES || i + 1 == out.len() {
                let entry = Entry {
                    time: t0 + txn as f64 * 0.001,
                    record: Record::Phase2Ok {
                        txn_id: format!("Passthrough-w-{name}-id-1:c_id={txn}"),
                        offset: written,
                    },
                };
                log.push_str(&entry.to_line());
                log.push('\n');
                txn += 1;
                committed = written;
            }
        }
        data.into_inner().map_err(io::IntoInnerError::into_error)?;
        fs::write(sink.join(format!("output.{name}.txnlog")), log)?;
        total += written;
    }
    Ok(total)
}
