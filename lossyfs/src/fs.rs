//! The FUSE side: every operation is done on the backing directory and
//! noted in the [`State`]; fsync, fdatasync, O_SYNC/O_DSYNC writes and
//! directory fsyncs update the durable image.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::state::{enoent, Kind, State};

/// Nothing is cached by the kernel: after a loss every name and attribute
/// is looked up again.
const TTL: Duration = Duration::ZERO;

/// The file system served by FUSE; the state is shared with the control
/// socket, which runs losses.
pub struct LossyFs {
    state: Arc<Mutex<State>>,
}

impl LossyFs {
    /// A file system over `state`.
    pub fn new(state: Arc<Mutex<State>>) -> LossyFs {
        LossyFs { state }
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, md: &fs::Metadata) -> FileAttr {
    FileAttr {
        ino,
        size: md.len(),
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: time(md.ctime(), md.ctime_nsec()),
        kind: if md.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: (md.mode() & 0o7777) as u16,
        nlink: if md.is_dir() { md.nlink() as u32 } else { 1 },
        uid: md.uid(),
        gid: md.gid(),
        rdev: 0,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

fn sync_flags(flags: i32) -> bool {
    flags & (libc::O_SYNC | libc::O_DSYNC) != 0
}

fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        // Write-only files are opened read-write: a sync reads them back.
        libc::O_WRONLY | libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    // Appends are positioned by the kernel (it sends the offset), and
    // syncs are done by lossyfs: neither flag goes to the backing file.
    o.custom_flags(flags & !(libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC | libc::O_ACCMODE));
    o
}

impl State {
    fn getattr_ino(&self, ino: u64) -> io::Result<FileAttr> {
        let md = fs::symlink_metadata(self.abs(ino).ok_or_else(enoent)?)?;
        Ok(attr(ino, &md))
    }

    fn handle_file(&self, fh: u64) -> io::Result<&File> {
        self.handles
            .get(&fh)
            .and_then(|h| h.file.as_ref())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }
}

impl Filesystem for LossyFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut st = self.st();
        match st.child(parent, name) {
            Ok(Some((ino, _))) => match st.getattr_ino(ino) {
                Ok(a) => reply.entry(&TTL, &a, 0),
                Err(e) => reply.error(errno(&e)),
            },
            Ok(None) => reply.error(libc::ENOENT),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let st = self.st();
        let md = match fh.and_then(|fh| st.handle_file(fh).ok()) {
            Some(f) => f.metadata(),
            None => match st.abs(ino) {
                Some(p) => fs::symlink_metadata(p),
                None => Err(enoent()),
            },
        };
        match md {
            Ok(md) => reply.attr(&TTL, &attr(ino, &md)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<FileAttr> {
            let path = st.abs(ino).ok_or_else(enoent)?;
            if let Some(m) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(m & 0o7777))?;
                st.set_mode(ino, m);
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&path, uid, gid)?;
            }
            if let Some(len) = size {
                let old = fs::metadata(&path)?.len();
                match fh.and_then(|fh| st.handle_file(fh).ok()) {
                    Some(f) => f.set_len(len)?,
                    None => OpenOptions::new().write(true).open(&path)?.set_len(len)?,
                }
                st.dirty(ino, old.min(len));
            }
            if atime.is_some() || mtime.is_some() {
                let conv = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let mut times = fs::FileTimes::new();
                if let Some(a) = atime {
                    times = times.set_accessed(conv(a));
                }
                if let Some(m) = mtime {
                    times = times.set_modified(conv(m));
                }
                File::open(&path)?.set_times(times)?;
            }
            st.getattr_ino(ino)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<FileAttr> {
            let rel = st.rel(parent).ok_or_else(enoent)?.join(name);
            let mode = mode & !umask & 0o7777;
            fs::DirBuilder::new()
                .mode(mode)
                .create(st.backing().join(&rel))?;
            let ino = st.insert(rel, Kind::Dir, mode);
            st.name_changed(parent)?;
            st.getattr_ino(ino)
        })();
        match r {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let r = (|| -> io::Result<()> {
            let rel = st.rel(parent).ok_or_else(enoent)?.join(name);
            fs::remove_file(st.backing().join(&rel))?;
            st.unlinked(&rel);
            st.name_changed(parent)
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut st = self.st();
        let r = (|| -> io::Result<()> {
            let rel = st.rel(parent).ok_or_else(enoent)?.join(name);
            fs::remove_dir(st.backing().join(&rel))?;
            st.unlinked(&rel);
            st.name_changed(parent)
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<()> {
            let from = st.rel(parent).ok_or_else(enoent)?.join(name);
            let to = st.rel(newparent).ok_or_else(enoent)?.join(newname);
            let (afrom, ato) = (st.backing().join(&from), st.backing().join(&to));
            if flags & libc::RENAME_EXCHANGE != 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            if flags & libc::RENAME_NOREPLACE != 0 && fs::symlink_metadata(&ato).is_ok() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            // Both ends get a node before the rename, so durable entries
            // that name them stay meaningful.
            st.ino_for(&from)?;
            fs::rename(&afrom, &ato)?;
            st.renamed(&from, &to);
            st.name_changed(parent)?;
            if newparent != parent {
                st.name_changed(newparent)?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut st = self.st();
        let r = (|| -> io::Result<u64> {
            let path = st.abs(ino).ok_or_else(enoent)?;
            let f = open_options(flags).open(path)?;
            if flags & libc::O_TRUNC != 0 {
                st.dirty(ino, 0);
            }
            Ok(st.open_handle(ino, Some(f), sync_flags(flags)))
        })();
        match r {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<(FileAttr, u64)> {
            let rel = st.rel(parent).ok_or_else(enoent)?.join(name);
            let mode = mode & !umask & 0o7777;
            let f = open_options(flags)
                .create(true)
                .mode(mode)
                .open(st.backing().join(&rel))?;
            let ino = st.ino_for(&rel)?;
            st.set_mode(ino, mode);
            st.name_changed(parent)?;
            let a = attr(ino, &f.metadata()?);
            Ok((a, st.open_handle(ino, Some(f), sync_flags(flags))))
        })();
        match r {
            Ok((a, fh)) => reply.created(&TTL, &a, 0, fh, 0),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let st = self.st();
        let r = (|| -> io::Result<Vec<u8>> {
            let f = st.handle_file(fh)?;
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let n = f.read_at(&mut buf[got..], offset as u64 + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        })();
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<()> {
            let sync = st.handles.get(&fh).is_some_and(|h| h.sync_writes) || sync_flags(flags);
            st.handle_file(fh)?.write_all_at(data, offset as u64)?;
            st.dirty(ino, offset as u64);
            if sync {
                let h = st.handles.remove(&fh).expect("checked");
                let r = st.sync_file(ino, h.file.as_ref());
                st.handles.insert(fh, h);
                r?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.st().handles.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut st = self.st();
        let h = st.handles.remove(&fh);
        let r = st.sync_file(ino, h.as_ref().and_then(|h| h.file.as_ref()));
        if let Some(h) = h {
            st.handles.insert(fh, h);
        }
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let mut st = self.st();
        if st.rel(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        let fh = st.open_handle(ino, None, false);
        reply.opened(fh, 0);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut st = self.st();
        let r = (|| -> io::Result<Vec<(u64, FileType, std::ffi::OsString)>> {
            let rel = st.rel(ino).ok_or_else(enoent)?;
            let mut names: Vec<std::ffi::OsString> = fs::read_dir(st.backing().join(&rel))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            let mut out = vec![
                (ino, FileType::Directory, ".".into()),
                (ino, FileType::Directory, "..".into()),
            ];
            for n in names {
                let Ok(child) = st.ino_for(&rel.join(&n)) else {
                    continue;
                };
                let kind = match st.node(child).map(|n| n.kind) {
                    Some(Kind::Dir) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                out.push((child, kind, n));
            }
            Ok(out)
        })();
        match r {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(ino, (i + 1) as i64, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.st().handles.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let synced = self.st().sync_dir(ino);
        match synced {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let st = self.st();
        match nix::sys::statvfs::statvfs(st.backing()) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e as i32),
        }
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        if self.st().rel(ino).is_some() {
            reply.ok();
        } else {
            reply.error(libc::ENOENT);
        }
    }
}
