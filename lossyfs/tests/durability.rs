//! Each durability rule of docs/disk.md, through a real mount: open, write,
//! sync, rename, unlink, then a loss, then what is left.
//!
//! Needs /dev/fuse and fusermount3 (root); skipped, with the reason
//! printed, only when /dev/fuse is absent.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use lossyfs::{is_mounted, lossy_mounts, Lossy};

// Fields drop in order: the mount before the temporary folder under it.
struct Fixture {
    fs: Option<Lossy>,
    mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    fn p(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
    fn lose(&self) {
        self.fs.as_ref().unwrap().lose().unwrap();
    }
    fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.p(name)).ok()
    }
}

fn mounted_with(pre: &[(&str, &str)]) -> Option<Fixture> {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is absent: this machine cannot mount FUSE file systems");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(work.join("backing")).unwrap();
    for (name, content) in pre {
        fs::write(work.join("backing").join(name), content).unwrap();
    }
    let mnt = tmp.path().join("mnt");
    let fs = Lossy::mount(&work, &mnt).expect("mount lossyfs");
    let mnt = fs.mountpoint().to_owned();
    Some(Fixture {
        _tmp: tmp,
        mnt,
        fs: Some(fs),
    })
}

fn mounted() -> Option<Fixture> {
    mounted_with(&[])
}

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

fn write_new(p: &Path, content: &str) -> File {
    let mut f = File::create(p).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f
}

#[test]
fn fsync_keeps_data_and_unsynced_appends_are_lost() {
    let Some(t) = mounted() else { return };
    let mut f = write_new(&t.p("log"), "synced;");
    f.sync_all().unwrap();
    sync_dir(&t.mnt);
    f.write_all(b"not synced").unwrap();
    assert_eq!(t.read("log").unwrap(), "synced;not synced");
    drop(f);
    t.lose();
    assert_eq!(t.read("log").unwrap(), "synced;");
}

#[test]
fn fdatasync_counts_as_a_sync() {
    let Some(t) = mounted() else { return };
    let mut f = write_new(&t.p("data"), "one");
    f.sync_data().unwrap();
    sync_dir(&t.mnt);
    f.write_all(b"two").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"three").unwrap();
    drop(f);
    t.lose();
    assert_eq!(t.read("data").unwrap(), "onetwo");
}

#[test]
fn o_sync_and_o_dsync_writes_are_durable_as_written() {
    let Some(t) = mounted() else { return };
    for (name, flag) in [("s", libc::O_SYNC), ("d", libc::O_DSYNC)] {
        File::create(t.p(name)).unwrap();
        sync_dir(&t.mnt);
        let mut f = OpenOptions::new()
            .append(true)
            .custom_flags(flag)
            .open(t.p(name))
            .unwrap();
        f.write_all(b"each write syncs").unwrap();
    }
    t.lose();
    assert_eq!(t.read("s").unwrap(), "each write syncs");
    assert_eq!(t.read("d").unwrap(), "each write syncs");
}

#[test]
fn a_new_name_needs_a_directory_fsync() {
    let Some(t) = mounted() else { return };
    // Data synced, name not: the file is gone.
    write_new(&t.p("unnamed"), "data").sync_all().unwrap();
    t.lose();
    assert!(!t.p("unnamed").exists());
    // Name synced, data not: the file is there, empty.
    write_new(&t.p("empty"), "data");
    sync_dir(&t.mnt);
    t.lose();
    assert_eq!(t.read("empty").unwrap(), "");
    // Both: all there.
    write_new(&t.p("both"), "data").sync_all().unwrap();
    sync_dir(&t.mnt);
    t.lose();
    assert_eq!(t.read("both").unwrap(), "data");
}

#[test]
fn a_rename_needs_a_directory_fsync() {
    let Some(t) = mounted_with(&[("state", "old")]) else {
        return;
    };
    // The atomic-replace idiom without the final directory fsync.
    write_new(&t.p(".state.tmp"), "new").sync_all().unwrap();
    fs::rename(t.p(".state.tmp"), t.p("state")).unwrap();
    assert_eq!(t.read("state").unwrap(), "new");
    t.lose();
    assert_eq!(t.read("state").unwrap(), "old");
    assert!(!t.p(".state.tmp").exists());
    // With it: the new content survives.
    write_new(&t.p(".state.tmp"), "new").sync_all().unwrap();
    fs::rename(t.p(".state.tmp"), t.p("state")).unwrap();
    sync_dir(&t.mnt);
    t.lose();
    assert_eq!(t.read("state").unwrap(), "new");
    assert!(!t.p(".state.tmp").exists());
}

#[test]
fn an_unlink_needs_a_directory_fsync() {
    let Some(t) = mounted_with(&[("a", "A"), ("b", "B")]) else {
        return;
    };
    fs::remove_file(t.p("a")).unwrap();
    t.lose();
    assert_eq!(t.read("a").unwrap(), "A");
    fs::remove_file(t.p("b")).unwrap();
    sync_dir(&t.mnt);
    t.lose();
    assert!(!t.p("b").exists());
}

#[test]
fn files_present_at_mount_are_durable_and_truncation_is_not() {
    let Some(t) = mounted_with(&[("pre", "0123456789")]) else {
        return;
    };
    OpenOptions::new()
        .write(true)
        .open(t.p("pre"))
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(t.read("pre").unwrap(), "012");
    t.lose();
    assert_eq!(t.read("pre").unwrap(), "0123456789");
    // An overwrite in the middle after a sync of the end.
    let f = OpenOptions::new().write(true).open(t.p("pre")).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"xx", 2).unwrap();
    f.sync_all().unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"yy", 6).unwrap();
    drop(f);
    t.lose();
    assert_eq!(t.read("pre").unwrap(), "01xx456789");
}

#[test]
fn directories_follow_the_same_rules() {
    let Some(t) = mounted() else { return };
    fs::create_dir(t.p("sub")).unwrap();
    write_new(&t.p("sub/f"), "in sub").sync_all().unwrap();
    sync_dir(&t.p("sub"));
    // `sub` itself is not in the root's durable entries yet.
    t.lose();
    assert!(!t.p("sub").exists());
    fs::create_dir(t.p("sub")).unwrap();
    write_new(&t.p("sub/f"), "in sub").sync_all().unwrap();
    sync_dir(&t.p("sub"));
    sync_dir(&t.mnt);
    // A rename of the directory, not synced, is undone.
    fs::rename(t.p("sub"), t.p("moved")).unwrap();
    assert_eq!(t.read("moved/f").unwrap(), "in sub");
    t.lose();
    assert_eq!(t.read("sub/f").unwrap(), "in sub");
    assert!(!t.p("moved").exists());
}

#[test]
fn the_mount_keeps_working_after_losses() {
    let Some(t) = mounted() else { return };
    for round in 0..3 {
        let name = format!("f{round}");
        let mut f = write_new(&t.p(&name), "x");
        f.sync_all().unwrap();
        sync_dir(&t.mnt);
        f.write_all(b"lost").unwrap();
        drop(f);
        t.lose();
        assert_eq!(t.read(&name).unwrap(), "x", "round {round}");
    }
    let names: Vec<String> = fs::read_dir(&t.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let s = t.fs.as_ref().unwrap().stats();
    assert_eq!(s.losses, 3);
}

#[test]
fn dropping_the_mount_unmounts_it() {
    let Some(mut t) = mounted() else { return };
    let mnt = t.mnt.clone();
    assert!(is_mounted(&mnt));
    assert!(lossy_mounts().iter().any(|(m, _)| *m == mnt));
    // Busy: a file is open on it when the guard drops.
    let _open = write_new(&t.p("busy"), "x");
    drop(t.fs.take());
    assert!(!is_mounted(&mnt), "{} still in /proc/mounts", mnt.display());
}

#[test]
fn with_eager_names_only_file_data_waits_for_a_sync() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is absent: this machine cannot mount FUSE file systems");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fs = Lossy::mount_with(&tmp.path().join("work"), &tmp.path().join("mnt"), true).unwrap();
    let mnt = fs.mountpoint().to_owned();
    write_new(&mnt.join("synced"), "data").sync_all().unwrap();
    write_new(&mnt.join("unsynced"), "data");
    fs::create_dir(mnt.join("dir")).unwrap();
    fs::write(mnt.join("gone"), "x").unwrap();
    fs::remove_file(mnt.join("gone")).unwrap();
    fs.lose().unwrap();
    assert_eq!(fs::read_to_string(mnt.join("synced")).unwrap(), "data");
    assert_eq!(fs::read_to_string(mnt.join("unsynced")).unwrap(), "");
    assert!(mnt.join("dir").is_dir());
    assert!(!mnt.join("gone").exists());
    drop(fs);
}
