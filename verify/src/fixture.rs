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
