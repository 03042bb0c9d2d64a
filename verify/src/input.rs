//! Input files: one per routing key, every line unique because it embeds
//! its own offset, so that loss, duplication and reordering are all visible
//! as a byte difference.
//!
//! The original harness made them with
//! `dd bs=1000000 count=4 | od -x | sed s/^/K/`. We produce the same bytes
//! from a seeded random source instead of a market-data file:
//!
//! ```text
//! A0000000 b8a4 f82d a061 8b10 d399 f00e f938 ceaf
//! A0000020 ...
//! A17204400
//! ```
//!
//! - Each line is the key byte, the source offset in octal zero-padded to at
//!   least 7 digits, 8 groups of ` xxxx` (one little-endian 16-bit word of the
//!   source each, as `od -x` prints on a little-endian host) and `\n`: one
//!   line per 16 source bytes.
//! - A last partial row (source length not a multiple of 16) prints what GNU
//!   `od -x` prints: one group per started word, a trailing odd byte being the
//!   low byte of a word whose high byte is zero (`printf abc | od -x` gives
//!   `0000000 6261 0063`).
//! - The file ends with a line holding only the key and the final offset.
//! - There is no `*` line: consecutive identical rows are printed in full, as
//!   with `od -v` (with random data they never occur anyway).
//!
//! With the defaults (4,000,000 source bytes) a file is 12,368,938 bytes and
//! its last line starts at byte 12,368,928, the `point_of_ref` of the
//! original sanity loop.
//!
//! **TCP mode** (`tcp: true`) keeps only the lines of full 16-byte rows, each
//! prefixed with its length as a 4-byte big-endian integer (`00 00 00 31`
//! for a 49-byte line): the fixed 53-byte records of the original TCP mode.
//!
//! **Random source.** `ChaCha8Rng::seed_from_u64(seed)` with the stream set
//! to the key byte, so each key gets different, reproducible data.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Keys used when none are given: `A` to `J`, as in `MULTIPLE_KEYS_LIST`.
pub const DEFAULT_KEYS: &[u8] = b"ABCDEFGHIJ";

/// Source bytes per key used when none are given (`dd bs=1000000 count=4`).
pub const DEFAULT_SOURCE_BYTES: u64 = 4_000_000;

/// Source bytes per line.
const ROW: u64 = 16;

/// Minimum width of the octal offset.
const MIN_OFFSET_DIGITS: u64 = 7;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Routing keys, one file each (ASCII letters or digits).
    pub keys: Vec<u8>,
    /// Random source bytes per key (the `od` input length).
    pub source_bytes: u64,
    /// Seed of the random source.
    pub seed: u64,
    /// Write the length-framed TCP-mode variant.
    pub tcp: bool,
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            keys: DEFAULT_KEYS.to_vec(),
            source_bytes: DEFAULT_SOURCE_BYTES,
            seed: 0,
            tcp: false,
        }
    }
}

/// Why input files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A key is not usable in a file name and as a line's first byte.
    #[error("bad key {0:?}: keys are single ASCII letters or digits")]
    BadKey(char),
    /// The same key was given twice.
    #[error("key {0:?} given twice")]
    DuplicateKey(char),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// File being written.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The files would not fit on the disk.
    #[error(
        "not enough free space in {dir} for the input files: they need {need} bytes \
         (and {margin} bytes are kept free for the run), the disk has {free}; \
         give a smaller --input-bytes or free some space"
    )]
    NoSpace {
        /// The directory written to.
        dir: PathBuf,
        /// Bytes the files need.
        need: u64,
        /// Bytes kept free on top.
        margin: u64,
        /// Bytes free.
        free: u64,
    },
    /// Writing was interrupted (Ctrl-C, SIGTERM...); the partial file was removed.
    #[error("interrupted while writing {path}; the partial file was removed")]
    Interrupted {
        /// The file being written.
        path: PathBuf,
    },
}

/// Bytes kept free beyond the input files themselves: a run needs room
/// for its output (the soak stops below 64 MiB free).
pub const FREE_MARGIN: u64 = 64 * 1024 * 1024;

/// Checks that `need` bytes (plus [`FREE_MARGIN`]) fit on the disk
/// holding `dir`. A disk whose free space cannot be read passes.
pub fn check_free_space(dir: &Path, need: u64) -> Result<(), InputError> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    let free = st.blocks_available().saturating_mul(st.fragment_size());
    if need.saturating_add(FREE_MARGIN) > free {
        return Err(InputError::NoSpace {
            dir: dir.to_owned(),
            need,
            margin: FREE_MARGIN,
            free,
        });
    }
    Ok(())
}

/// A temporary name beside `path` that no other writer (thread or
/// process) uses: `.NAME.<pid>.<n>.tmp`.
fn unique_tmp(dir: &Path, name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// A writer that fails once `cancel` is set.
struct Cancellable<'a, W> {
    inner: W,
    cancel: &'a AtomicBool,
}

impl<W: Write> Write for Cancellable<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            // Not ErrorKind::Interrupted: write_all retries that forever.
            return Err(io::Error::other("cancelled"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The file name of a key's input file: `input-file.K.txt`.
pub fn input_file_name(key: u8) -> String {
    format!("input-file.{}.txt", char::from(key))
}

/// Whether `key` may be used as a routing key.
pub fn valid_key(key: u8) -> bool {
    key.is_ascii_alphanumeric()
}

/// Width of the octal offset printed for `offset`.
fn offset_width(offset: u64) -> u64 {
    let digits = if offset == 0 {
        1
    } else {
        u64::from(64 - offset.leading_zeros()).div_ceil(3)
    };
    digits.max(MIN_OFFSET_DIGITS)
}

/// Sum of the octal offset widths of the first `rows` full rows.
fn widths_of_rows(rows: u64) -> u64 {
    let mut total = rows.saturating_mul(MIN_OFFSET_DIGITS);
    // Every row whose offset is at least 8^d has at least d+1 digits.
    let mut threshold: u64 = 1 << (3 * MIN_OFFSET_DIGITS);
    loop {
        let first_row = threshold.div_ceil(ROW);
        if first_row >= rows {
            break;
        }
        total = total.saturating_add(rows - first_row);
        match threshold.checked_mul(8) {
            Some(t) => threshold = t,
            None => break,
        }
    }
    total
}

/// Byte length of the line of a full row: key, offset, 8 groups, newline.
const fn full_row_fixed_len() -> u64 {
    1 + 8 * 5 + 1
}

/// Byte position of the line of row `row` (all earlier rows being full).
/// Saturates instead of overflowing for absurd offsets (a garbled line can
/// claim any offset).
fn row_line_start(row: u64) -> u64 {
    row.saturating_mul(full_row_fixed_len())
        .saturating_add(widths_of_rows(row))
}

/// Length of the line of a partial row of `rem` bytes (1..15) at row `row`.
fn partial_row_len(row: u64, rem: u64) -> u64 {
    1 + offset_width(row * ROW) + 5 * rem.div_ceil(2) + 1
}

/// Byte position, in a (non-TCP) input file, of the line whose offset field
/// is `offset`, assuming the file was made from at least `offset` source
/// bytes: the inverse of the offset embedded in each line.
pub fn line_start_of_offset(offset: u64) -> u64 {
    let row = offset / ROW;
    let rem = offset % ROW;
    let start = row_line_start(row);
    if rem == 0 {
        start
    } else {
        start.saturating_add(partial_row_len(row, rem))
    }
}

/// 1-based line number of the line whose offset field is `offset`.
pub fn line_number_of_offset(offset: u64) -> u64 {
    offset / ROW + 1 + u64::from(offset % ROW != 0)
}

/// Byte position of the last line (the lone final offset) of a (non-TCP)
/// input file made from `source_bytes` bytes: 12,368,928 for 4,000,000.
pub fn last_line_offset(source_bytes: u64) -> u64 {
    line_start_of_offset(source_bytes)
}

/// Size in bytes of a (non-TCP) input file made from `source_bytes` bytes:
/// 12,368,938 for 4,000,000.
pub fn file_len(source_bytes: u64) -> u64 {
    last_line_offset(source_bytes).saturating_add(2 + offset_width(source_bytes))
}

/// Size in bytes of a TCP-mode input file made from `source_bytes` bytes.
pub fn tcp_file_len(source_bytes: u64) -> u64 {
    let rows = source_bytes / ROW;
    row_line_start(rows).saturating_add(4 * rows)
}

/// Number of lines of a (non-TCP) input file made from `source_bytes` bytes.
pub fn line_count(source_bytes: u64) -> u64 {
    line_number_of_offset(source_bytes)
}

/// Parses the key and the offset at the start of an input line (with or
/// without its trailing newline): `A0000020 ...` gives `(b'A', 16)`.
///
/// The key must be an ASCII letter or digit, followed by at least 7 octal
/// digits and then a space, a newline or the end of `line`. This is what lets
/// the verifier tell in O(1) where a line it found belongs in the input.
pub fn parse_line_offset(line: &[u8]) -> Option<(u8, u64)> {
    let (&key, rest) = line.split_first()?;
    if !valid_key(key) {
        return None;
    }
    let digits = rest
        .iter()
        .position(|b| !(b'0'..=b'7').contains(b))
        .unwrap_or(rest.len());
    if digits < MIN_OFFSET_DIGITS as usize || digits > 22 {
        return None;
    }
    if digits > MIN_OFFSET_DIGITS as usize && rest[0] == b'0' {
        return None;
    }
    match rest.get(digits) {
        None | Some(b' ') | Some(b'\n') => {}
        Some(_) => return None,
    }
    let mut offset: u64 = 0;
    for &d in &rest[..digits] {
        offset = offset.checked_mul(8)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((key, offset))
}

/// The random source of a key: reproducible from `seed`, different per key.
pub fn source_rng(seed: u64, key: u8) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(key));
    rng
}

/// The first `n` source bytes of a key, exactly as the file is made from.
pub fn source_bytes(seed: u64, key: u8, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    fill_source(&mut source_rng(seed, key), &mut out);
    out
}

/// Fills `buf` from the source. Chunks must be a multiple of 4 bytes except
/// the last one, so that chunked and one-shot generation agree.
fn fill_source(rng: &mut ChaCha8Rng, buf: &mut [u8]) {
    rng.fill_bytes(buf);
}

/// Lowercase hex digit pairs of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    t
};

/// Appends the octal offset, zero-padded to 7 digits.
fn push_octal(out: &mut Vec<u8>, offset: u64) {
    let width = offset_width(offset) as usize;
    let mut digits = [b'0'; 22];
    let mut v = offset;
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Appends the line of one row of up to 16 source bytes.
fn push_row(out: &mut Vec<u8>, key: u8, offset: u64, bytes: &[u8]) {
    out.push(key);
    push_octal(out, offset);
    for word in bytes.chunks(2) {
        let lo = word[0];
        let hi = word.get(1).copied().unwrap_or(0);
        out.push(b' ');
        out.extend_from_slice(&HEX_PAIRS[usize::from(hi)]);
        out.extend_from_slice(&HEX_PAIRS[usize::from(lo)]);
    }
    out.push(b'\n');
}

/// Source bytes generated per batch (a multiple of 16).
const CHUNK: usize = 64 * 1024;

/// Writes one key's file content to `w`, calling `progress` with the number
/// of bytes written after each batch.
pub fn write_input<W: Write>(
    w: &mut W,
    key: u8,
    spec: &InputSpec,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut rng = source_rng(spec.seed, key);
    let mut src = vec![0u8; CHUNK];
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK / 16 * 56 + 64);
    let total = if spec.tcp {
        spec.source_bytes / ROW * ROW
    } else {
        spec.source_bytes
    };
    let mut offset: u64 = 0;
    while offset < total {
        let n = (total - offset).min(CHUNK as u64) as usize;
        let batch = &mut src[..n];
        fill_source(&mut rng, batch);
        out.clear();
        for row in batch.chunks(ROW as usize) {
            if spec.tcp {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                push_row(&mut out, key, offset, row);
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            } else {
                push_row(&mut out, key, offset, row);
            }
            offset += row.len() as u64;
        }
        w.write_all(&out)?;
        progress(out.len() as u64);
    }
    if !spec.tcp {
        out.clear();
        out.push(key);
        push_octal(&mut out, total);
        out.push(b'\n');
        w.write_all(&out)?;
        progress(out.len() as u64);
    }
    Ok(())
}

/// Checks that keys are usable and distinct.
pub fn validate_keys(keys: &[u8]) -> Result<(), InputError> {
    for (i, &k) in keys.iter().enumerate() {
        if !valid_key(k) {
            return Err(InputError::BadKey(char::from(k)));
        }
        if keys[..i].contains(&k) {
            return Err(InputError::DuplicateKey(char::from(k)));
        }
    }
    Ok(())
}

/// Size of the file written for one key under `spec`.
pub fn spec_file_len(spec: &InputSpec) -> u64 {
    if spec.tcp {
        tcp_file_len(spec.source_bytes)
    } else {
        file_len(spec.source_bytes)
    }
}

/// Writes `dir/input-file.K.txt` for every key of `spec` and returns their
/// paths. Each file is written to a temporary name and renamed into place,
/// so an existing input file is always complete.
pub fn write_input_files(dir: &Path, spec: &InputSpec) -> Result<Vec<PathBuf>, InputError> {
    write_input_files_with_progress(dir, spec, &mut |_| {})
}

/// [`write_input_files`], calling `progress` with each batch's byte count.
pub fn write_input_files_with_progress(
    dir: &Path,
    spec: &InputSpec,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<PathBuf>, InputError> {
    write_input_files_cancellable(dir, spec, progress, &AtomicBool::new(false))
}

/// [`write_input_files_with_progress`] that first checks the files fit on
/// the disk ([`check_free_space`]) and stops, removing the partial file,
/// once `cancel` is set ([`InputError::Interrupted`]). Each file is written
/// to a temporary name of its own and renamed into place, so writers of the
/// same files at once never collide (the last rename wins; the contents are
/// the same).
pub fn write_input_files_cancellable(
    dir: &Path,
    spec: &InputSpec,
    progress: &mut dyn FnMut(u64),
    cancel: &AtomicBool,
) -> Result<Vec<PathBuf>, InputError> {
    validate_keys(&spec.keys)?;
    check_free_space(
        dir,
        spec_file_len(spec).saturating_mul(spec.keys.len() as u64),
    )?;
    let mut paths = Vec::with_capacity(spec.keys.len());
    for &key in &spec.keys {
        let path = dir.join(input_file_name(key));
        let tmp = unique_tmp(dir, &input_file_name(key));
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut w = io::BufWriter::with_capacity(
                1 << 20,
                Cancellable {
                    inner: file,
                    cancel,
                },
            );
            write_input(&mut w, key, spec, progress)?;
            w.into_inner().map_err(io::IntoInnerError::into_error)?;
            fs::rename(&tmp, &path)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            if cancel.load(Ordering::Relaxed) {
                return Err(InputError::Interrupted { path });
            }
            return Err(InputError::Io { path, source });
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Whether `name` matches `input-file.*.txt`.
pub fn is_input_file_name(name: &str) -> bool {
    name.len() > "input-file..txt".len()
        && name.starts_with("input-file.")
        && name.ends_with(".txt")
}

/// Removes the input files in `dir`: those of `keys` if given, otherwise
/// every `input-file.*.txt`. Returns the removed paths; a missing file is
/// not an error (`rm -f`).
pub fn delete_input_files(dir: &Path, keys: Option<&[u8]>) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let names: Vec<String> = match keys {
        Some(keys) => keys.iter().map(|&k| input_file_name(k)).collect(),
        None => {
            let mut names = Vec::new();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    if is_input_file_name(name) && entry.file_type()?.is_file() {
                        names.push(name.to_owned());
                    }
                }
            }
            names.sort();
            names
        }
    };
    for name in names {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_of_the_same_files_at_once_never_collide() {
        let t = tempfile::tempdir().unwrap();
        let spec = InputSpec {
            keys: b"AB".to_vec(),
            source_bytes: 400_000,
            seed: 3,
            tcp: false,
        };
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| write_input_files(t.path(), &spec)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in results {
            r.unwrap();
        }
        let names: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            fs::read(t.path().join("input-file.A.txt")).unwrap(),
            generate(b'A', &spec)
        );
    }

    #[test]
    fn files_that_cannot_fit_are_refused_before_anything_is_written() {
        let t = tempfile::tempdir().unwrap();
        let spec = InputSpec {
            keys: b"A".to_vec(),
            source_bytes: 99_999_999_999_999,
            seed: 0,
            tcp: false,
        };
        let e = write_input_files(t.path(), &spec).unwrap_err();
        assert!(matches!(e, InputError::NoSpace { .. }), "{e}");
        assert!(e.to_string().contains("--input-bytes"), "{e}");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_cancelled_write_leaves_no_file() {
        let t = tempfile::tempdir().unwrap();
        let spec = InputSpec {
            keys: b"A".to_vec(),
            source_bytes: 4_000_000,
            seed: 0,
            tcp: false,
        };
        let cancel = AtomicBool::new(false);
        let mut seen = 0u64;
        let mut progress = |n: u64| {
            seen += n;
            if seen > 3_000_000 {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let e = write_input_files_cancellable(t.path(), &spec, &mut progress, &cancel).unwrap_err();
        assert!(matches!(e, InputError::Interrupted { .. }), "{e}");
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 0);
    }

    fn generate(key: u8, spec: &InputSpec) -> Vec<u8> {
        let mut out = Vec::new();
        write_input(&mut out, key, spec, &mut |_| {}).unwrap();
        out
    }

    #[test]
    fn the_default_arithmetic_matches_the_original_files() {
        assert_eq!(file_len(4_000_000), 12_368_938);
        assert_eq!(last_line_offset(4_000_000), 12_368_928);
        assert_eq!(line_count(4_000_000), 250_001);
        // The TCP variant of the original: 1,000,000 bytes, the rows up to offset
        // 0o3641060 = 999,984, i.e. 62,500 records of 53 bytes.
        assert_eq!(tcp_file_len(1_000_000), 62_500 * 53);
    }

    #[test]
    fn small_files_match_the_arithmetic_byte_for_byte() {
        for n in [0u64, 1, 2, 15, 16, 17, 31, 32, 33, 100, 1000] {
            let spec = InputSpec {
                keys: vec![b'A'],
                source_bytes: n,
                seed: 7,
                tcp: false,
            };
            let out = generate(b'A', &spec);
            assert_eq!(out.len() as u64, file_len(n), "n={n}");
            let last = last_line_offset(n) as usize;
            assert_eq!(parse_line_offset(&out[last..]), Some((b'A', n)), "n={n}");
            let lines = out.split(|&b| b == b'\n').count() as u64 - 1;
            assert_eq!(lines, line_count(n), "n={n}");
            // Every line sits where its embedded offset says.
            let mut at = 0usize;
            for line in out.split_inclusive(|&b| b == b'\n') {
                let (_, off) = parse_line_offset(line).unwrap();
                assert_eq!(line_start_of_offset(off), at as u64, "n={n} off={off}");
                at += line.len();
            }
        }
    }

    #[test]
    fn golden_sample() {
        let spec = InputSpec {
            keys: vec![b'Q'],
            source_bytes: 21,
            seed: 0,
            tcp: false,
        };
        let src = source_bytes(0, b'Q', 21);
        let w = |i: usize| format!("{:02x}{:02x}", src.get(i + 1).copied().unwrap_or(0), src[i]);
        let mut expected = String::from("Q0000000");
        for i in (0..16).step_by(2) {
            expected += &format!(" {}", w(i));
        }
        expected += "\nQ0000020";
        for i in (16..21).step_by(2) {
            expected += &format!(" {}", w(i));
        }
        expected += "\nQ0000025\n";
        assert_eq!(String::from_utf8(generate(b'Q', &spec)).unwrap(), expected);
    }

    #[test]
    fn offsets_parse_and_reject_garbage() {
        assert_eq!(parse_line_offset(b"A0000020 1234"), Some((b'A', 16)));
        assert_eq!(parse_line_offset(b"A17204400\n"), Some((b'A', 4_000_000)));
        assert_eq!(parse_line_offset(b"A17204400"), Some((b'A', 4_000_000)));
        assert_eq!(parse_line_offset(b"A000002 1234"), None);
        assert_eq!(parse_line_offset(b"A00000208 1234"), None);
        assert_eq!(parse_line_offset(b"A00000020 1234"), None);
        assert_eq!(parse_line_offset(b"-0000020 1234"), None);
        assert_eq!(parse_line_offset(b"A000x020 1234"), None);
        assert_eq!(parse_line_offset(b""), None);
    }

    #[test]
    fn line_positions_cross_the_eight_digit_boundary() {
        let boundary = 1u64 << 21; // 0o10000000
        let row = boundary / 16;
        assert_eq!(row_line_start(row), row * 49);
        assert_eq!(row_line_start(row + 1), row * 49 + 50);
        assert_eq!(line_number_of_offset(boundary), row + 1);
    }
}
