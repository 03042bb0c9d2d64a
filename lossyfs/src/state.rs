//! The two images of a lossyfs: the live tree (the backing directory, what
//! every process sees) and the durable image (what a power cut keeps).
//!
//! The durable image is a shadow kept on disk beside the backing directory:
//! - for each file that was ever synced, a copy of its content as of its last
//!   sync, in `durable/<id>` (copy-on-sync: only the range written since the
//!   previous sync is copied, so an append-only log costs what it appends);
//! - for each directory whose entries were ever synced (or that existed at
//!   mount), its entries as of that sync, in memory: name → node id.
//!
//! [`State::lose`] rebuilds the backing directory from the durable image and
//! gives every surviving node a fresh inode number, so the kernel drops what
//! it cached about the old ones.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The root directory's inode number, fixed by FUSE.
pub const ROOT: u64 = 1;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One file or directory, live or only durable.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its path relative to the backing directory; `None` once it has no
    /// live name (unlinked, or replaced by a rename).
    pub path: Option<PathBuf>,
    /// File or directory.
    pub kind: Kind,
    /// Permission bits restored after a loss.
    pub mode: u32,
    /// Files: the lowest offset written or truncated since the last sync
    /// (`None`: the durable copy is up to date).
    pub dirty_from: Option<u64>,
    /// Files: whether `durable/<ino>` holds a synced copy.
    pub synced: bool,
}

/// What a loss did, for the control socket and the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Files and directories in the live tree before the loss.
    pub before: usize,
    /// Files and directories after it.
    pub after: usize,
    /// Files whose un-synced writes were dropped.
    pub files_reverted: usize,
}

impl std::fmt::Display for LossReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "nodes before {} after {}, files reverted {}",
            self.before, self.after, self.files_reverted
        )
    }
}

/// Counters of durability events.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// File syncs (fsync, fdatasync, O_SYNC/O_DSYNC writes).
    pub file_syncs: u64,
    /// Directory syncs.
    pub dir_syncs: u64,
    /// Bytes copied into the durable image.
    pub bytes_synced: u64,
    /// Losses.
    pub losses: u64,
}

/// The live tree, the durable image and the open files.
#[derive(Debug)]
pub struct State {
    backing: PathBuf,
    store: PathBuf,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    durable_dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    next_ino: u64,
    /// Open files by handle: node and the backing file.
    pub handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Durability counters.
    pub stats: Stats,
    /// Names are durable at once (LazyFS's model): every create, mkdir,
    /// rename, unlink and rmdir syncs the directories it changes.
    pub eager_names: bool,
}

/// An open file or directory.
#[derive(Debug)]
pub struct Handle {
    /// Its node.
    pub ino: u64,
    /// The backing file (`None` for directories).
    pub file: Option<File>,
    /// Opened with O_SYNC or O_DSYNC: every write is a sync.
    pub sync_writes: bool,
}

fn copy_range(from: &File, to: &File, start: u64, end: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = start;
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = from.read_at(&mut buf[..want], off)?;
        if n == 0 {
            break;
        }
        to.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(off - start)
}

impl State {
    /// A state over `backing` (created if missing), with its durable image in
    /// `store` (emptied). Everything already in `backing` counts as durable.
    pub fn new(backing: &Path, store: &Path) -> io::Result<State> {
        fs::create_dir_all(backing)?;
        if store.exists() {
            fs::remove_dir_all(store)?;
        }
        fs::create_dir_all(store)?;
        let mode = fs::metadata(backing)?.permissions().mode() & 0o7777;
        let mut st = State {
            backing: backing.to_owned(),
            store: store.to_owned(),
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            durable_dirs: HashMap::new(),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            stats: Stats::default(),
            eager_names: false,
        };
        st.nodes.insert(
            ROOT,
            Node {
                path: Some(PathBuf::new()),
                kind: Kind::Dir,
                mode,
                dirty_from: None,
                synced: false,
            },
        );
        st.by_path.insert(PathBuf::new(), ROOT);
        st.adopt_tree(ROOT)?;
        Ok(st)
    }

    /// Registers what is under directory `dir` as durable (at mount).
    fn adopt_tree(&mut self, dir: u64) -> io::Result<()> {
        let rel = self.rel(dir).ok_or_else(enoent)?;
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(self.backing.join(&rel))? {
            let e = e?;
            let path = rel.join(e.file_name());
            let ino = self.ino_for(&path)?;
            entries.insert(e.file_name(), ino);
            match self.nodes[&ino].kind {
                Kind::Dir => self.adopt_tree(ino)?,
                Kind::File => {
                    let src = File::open(self.backing.join(&path))?;
                    let dst = File::create(self.store.join(ino.to_string()))?;
                    copy_range(&src, &dst, 0, src.metadata()?.len())?;
                    self.nodes.get_mut(&ino).expect("just made").synced = true;
                }
            }
        }
        self.durable_dirs.insert(dir, entries);
        Ok(())
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// A node.
    pub fn node(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// A node's live path relative to the backing directory.
    pub fn rel(&self, ino: u64) -> Option<PathBuf> {
        self.nodes.get(&ino)?.path.clone()
    }

    /// A node's live absolute path in the backing directory.
    pub fn abs(&self, ino: u64) -> Option<PathBuf> {
        Some(self.backing.join(self.rel(ino)?))
    }

    /// The node of the live entry `name` in directory `parent`, if any.
    pub fn child(&mut self, parent: u64, name: &OsStr) -> io::Result<Option<(u64, PathBuf)>> {
        let rel = self.rel(parent).ok_or_else(enoent)?.join(name);
        match fs::symlink_metadata(self.backing.join(&rel)) {
            Ok(_) => Ok(Some((self.ino_for(&rel)?, rel))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The node of an existing live path, registering one found in the
    /// backing directory that lossyfs has not seen yet.
    pub fn ino_for(&mut self, rel: &Path) -> io::Result<u64> {
        if let Some(&ino) = self.by_path.get(rel) {
            return Ok(ino);
        }
        let md = fs::symlink_metadata(self.backing.join(rel))?;
        let kind = if md.is_dir() {
            Kind::Dir
        } else if md.is_file() {
            Kind::File
        } else {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        };
        Ok(self.insert(rel.to_owned(), kind, md.permissions().mode() & 0o7777))
    }

    /// Registers a new live node at `rel`.
    pub fn insert(&mut self, rel: PathBuf, kind: Kind, mode: u32) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_path.insert(rel.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                path: Some(rel),
                kind,
                mode,
                dirty_from: None,
                synced: false,
            },
        );
        ino
    }

    /// A new handle for `ino`.
    pub fn open_handle(&mut self, ino: u64, file: Option<File>, sync_writes: bool) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(
            fh,
            Handle {
                ino,
                file,
                sync_writes,
            },
        );
        fh
    }

    /// Notes that file `ino` changed from `offset` on.
    pub fn dirty(&mut self, ino: u64, offset: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.dirty_from = Some(n.dirty_from.map_or(offset, |d| d.min(offset)));
        }
    }

    /// Sets the mode restored after a loss.
    pub fn set_mode(&mut self, ino: u64, mode: u32) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.mode = mode & 0o7777;
        }
    }

    /// The live name `rel` is gone (unlink, rmdir): forget it.
    pub fn unlinked(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.path = None;
            }
        }
    }

    /// A live rename of `from` to `to` (already done in the backing
    /// directory): the node and, for a directory, everything under it move.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        self.unlinked(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (p, ino) in moved {
            self.by_path.remove(&p);
            let suffix = p.strip_prefix(from).expect("filtered").to_owned();
            let np = if suffix.as_os_str().is_empty() {
                to.to_owned()
            } else {
                to.join(suffix)
            };
            self.by_path.insert(np.clone(), ino);
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.path = Some(np);
            }
        }
    }

    /// fsync / fdatasync / an O_SYNC write of file `ino`: its content as
    /// read through `file` (or its live path) becomes its durable content.
    pub fn sync_file(&mut self, ino: u64, file: Option<&File>) -> io::Result<()> {
        let node = self.nodes.get(&ino).ok_or_else(enoent)?.clone();
        self.stats.file_syncs += 1;
        if node.kind != Kind::File {
            return Ok(());
        }
        let Some(from) = node.dirty_from else {
            if node.synced {
                return Ok(());
            }
            // Never written since creation or the last loss: durable as
            // it is (possibly empty).
            return self.copy_whole(ino, file);
        };
        if !node.synced {
            return self.copy_whole(ino, file);
        }
        let opened;
        let src = match file {
            Some(f) => f,
            None => {
                opened = File::open(self.abs(ino).ok_or_else(enoent)?)?;
                &opened
            }
        };
        let len = src.metadata()?.len();
        let dst = OpenOptions::new()
            .write(true)
            .open(self.store.join(ino.to_string()))?;
        dst.set_len(len)?;
        let n = copy_range(src, &dst, from.min(len), len)?;
        self.stats.bytes_synced += n;
        let node = self.nodes.get_mut(&ino).expect("checked");
        node.dirty_from = None;
        Ok(())
    }

    fn copy_whole(&mut self, ino: u64, file: Option<&File>) -> io::Result<()> {
        let opened;
        let src = match file {
            Some(f) => f,
            None => {
                opened = File::open(self.abs(ino).ok_or_else(enoent)?)?;
                &opened
            }
        };
        let len = src.metadata()?.len();
        let dst = File::create(self.store.join(ino.to_string()))?;
        let n = copy_range(src, &dst, 0, len)?;
        self.stats.bytes_synced += n;
        let node = self.nodes.get_mut(&ino).expect("checked");
        node.dirty_from = None;
        node.synced = true;
        Ok(())
    }

    /// With eager names, the directory `ino` just changed: sync it.
    pub fn name_changed(&mut self, ino: u64) -> io::Result<()> {
        if self.eager_names {
            self.sync_dir(ino)?;
            self.stats.dir_syncs -= 1;
        }
        Ok(())
    }

    /// fsync of directory `ino`: its live entries become its durable ones.
    pub fn sync_dir(&mut self, ino: u64) -> io::Result<()> {
        let rel = self.rel(ino).ok_or_else(enoent)?;
        self.stats.dir_syncs += 1;
        let mut entries = BTreeMap::new();
        for e in fs::read_dir(self.backing.join(&rel))? {
            let e = e?;
            let child = self.ino_for(&rel.join(e.file_name()))?;
            entries.insert(e.file_name(), child);
        }
        self.durable_dirs.insert(ino, entries);
        self.collect_garbage();
        Ok(())
    }

    /// Drops durable copies of files that no durable directory and no live
    /// name refers to any more.
    fn collect_garbage(&mut self) {
        let referenced: std::collections::HashSet<u64> = self
            .durable_dirs
            .values()
            .flat_map(|m| m.values().copied())
            .collect();
        let open: std::collections::HashSet<u64> = self.handles.values().map(|h| h.ino).collect();
        let dead: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(i, n)| {
                **i != ROOT && n.path.is_none() && !referenced.contains(i) && !open.contains(i)
            })
            .map(|(i, _)| *i)
            .collect();
        for ino in dead {
            if let Some(n) = self.nodes.remove(&ino) {
                if n.synced {
                    let _ = fs::remove_file(self.store.join(ino.to_string()));
                }
            }
            self.durable_dirs.remove(&ino);
        }
    }

    /// Loses everything not synced: the backing directory is rebuilt from
    /// the durable image, open handles are closed, and every surviving
    /// node gets a new inode number.
    pub fn lose(&mut self) -> io::Result<LossReport> {
        let mut report = LossReport {
            before: self.by_path.len(),
            files_reverted: self
                .nodes
                .values()
                .filter(|n| n.kind == Kind::File && n.path.is_some() && n.dirty_from.is_some())
                .count(),
            ..LossReport::default()
        };
        self.handles.clear();
        for e in fs::read_dir(&self.backing)? {
            let p = e?.path();
            if p.is_dir() && !p.is_symlink() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
        let old_nodes = std::mem::take(&mut self.nodes);
        let old_dirs = std::mem::take(&mut self.durable_dirs);
        self.by_path.clear();
        let root = old_nodes.get(&ROOT).cloned().expect("root");
        self.nodes.insert(
            ROOT,
            Node {
                path: Some(PathBuf::new()),
                dirty_from: None,
                ..root
            },
        );
        self.by_path.insert(PathBuf::new(), ROOT);
        // Old store files are renamed to their node's new number.
        let old_store = self.store.with_extension("old");
        if old_store.exists() {
            fs::remove_dir_all(&old_store)?;
        }
        fs::rename(&self.store, &old_store)?;
        fs::create_dir_all(&self.store)?;
        let mut moved: HashMap<u64, u64> = HashMap::new();
        let mut stack = vec![(ROOT, ROOT, PathBuf::new())];
        while let Some((old_dir, new_dir, rel)) = stack.pop() {
            let mut entries = BTreeMap::new();
            for (name, old) in old_dirs.get(&old_dir).into_iter().flatten() {
                let Some(n) = old_nodes.get(old) else {
                    continue;
                };
                let path = rel.join(name);
                let abs = self.backing.join(&path);
                let ino = self.insert(path.clone(), n.kind, n.mode);
                match n.kind {
                    Kind::Dir => {
                        fs::create_dir(&abs)?;
                        stack.push((*old, ino, path));
                    }
                    Kind::File => {
                        let dst = self.store.join(ino.to_string());
                        // A file renamed into a second synced directory
                        // comes back under both names, as two copies.
                        let src = match moved.get(old) {
                            Some(first) => self.store.join(first.to_string()),
                            None => old_store.join(old.to_string()),
                        };
                        if n.synced && src.exists() {
                            if moved.contains_key(old) {
                                fs::copy(&src, &dst)?;
                            } else {
                                fs::rename(&src, &dst)?;
                                moved.insert(*old, ino);
                            }
                            fs::copy(&dst, &abs)?;
                            self.nodes.get_mut(&ino).expect("inserted").synced = true;
                        } else {
                            File::create(&abs)?;
                        }
                    }
                }
                fs::set_permissions(&abs, fs::Permissions::from_mode(n.mode))?;
                entries.insert(name.clone(), ino);
            }
            self.durable_dirs.insert(new_dir, entries);
        }
        fs::remove_dir_all(&old_store)?;
        report.after = self.by_path.len();
        self.stats.losses += 1;
        Ok(report)
    }
}

/// ENOENT as an `io::Error`.
pub fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}
