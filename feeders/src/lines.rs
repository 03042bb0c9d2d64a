//! Reading a line file by byte offset, in large chunks.
//!
//! A feeder's message ids are byte offsets of line starts, and a worker can
//! tell it to resume at any of them, so the reader is seekable and reports
//! each line's offset. It reads [`CHUNK`] bytes at a time and hands out
//! lines as slices of its buffer: no allocation and no syscall per line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How much is read from the file at a time.
pub const CHUNK: usize = 1024 * 1024;

/// Why a line file cannot be fed.
#[derive(Debug, thiserror::Error)]
pub enum LinesError {
    /// The file could not be opened, read or sought.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A line does not fit in one frame.
    #[error(
        "{path}: the line at byte offset {offset} is longer than {max} bytes, \
         the most one MESSAGE frame can carry"
    )]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// Byte offset of the line's start.
        offset: u64,
        /// The largest payload a frame can carry.
        max: usize,
    },
}

/// A line file read forward from a seekable position.
#[derive(Debug)]
pub struct LineFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_line: usize,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Next unread byte in `buf`.
    start: usize,
    /// End of valid bytes in `buf`.
    end: usize,
    eof: bool,
}

impl LineFile {
    /// Opens `path`; lines (newline included) longer than `max_line` bytes
    /// are refused when reached.
    pub fn open(path: &Path, max_line: usize) -> Result<LineFile, LinesError> {
        let io_err = |source| LinesError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        Ok(LineFile {
            path: path.to_owned(),
            file,
            size,
            max_line,
            buf: vec![0; CHUNK],
            base: 0,
            start: 0,
            end: 0,
            eof: false,
        })
    }

    /// The file's size when opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset of the next line [`LineFile::next_line`] returns.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Continues reading at byte `pos` (clamped to the file size).
    pub fn seek(&mut self, pos: u64) -> Result<(), LinesError> {
        let pos = pos.min(self.size);
        self.file
            .seek(SeekFrom::Start(pos))
            .map_err(|source| LinesError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.base = pos;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        Ok(())
    }

    /// Whether `pos` is the start of a line: 0, or just after a newline.
    pub fn is_line_start(&self, pos: u64) -> Result<bool, LinesError> {
        if pos == 0 {
            return Ok(true);
        }
        if pos > self.size {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        self.file
            .read_exact_at(&mut b, pos - 1)
            .map_err(|source| LinesError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(b[0] == b'\n')
    }

    /// The next line (with its newline, if it has one) and its offset, or
    /// `None` at the end of the file. A last line without a newline is
    /// still a line.
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, LinesError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = memchr::memchr(b'\n', avail) {
                let offset = self.base + self.start as u64;
                if i + 1 > self.max_line {
                    return Err(self.too_long(offset));
                }
                let s = self.start;
                self.start += i + 1;
                return Ok(Some((offset, &self.buf[s..s + i + 1])));
            }
            if avail.len() > self.max_line {
                return Err(self.too_long(self.position()));
            }
            if self.eof {
                if avail.is_empty() {
                    return Ok(None);
                }
                let offset = self.position();
                let s = self.start;
                self.start = self.end;
                return Ok(Some((offset, &self.buf[s..self.end])));
            }
            self.refill()?;
        }
    }

    /// Moves the unread tail to the front and reads more after it, growing
    /// the buffer when a single line fills it.
    fn refill(&mut self) -> Result<(), LinesError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max_line + CHUNK);
            self.buf.resize(grown.max(self.buf.len() + 1), 0);
        }
        let n = loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LinesError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    fn too_long(&self, offset: u64) -> LinesError {
        LinesError::LineTooLong {
            path: self.path.clone(),
            offset,
            max: self.max_line,
        }
    }

    /// Start offset of the file's last line (a final line without newline
    /// counts), or `None` for an empty file. Reads only the file's tail.
    pub fn last_line_offset(&self) -> Result<Option<u64>, LinesError> {
        if self.size == 0 {
            return Ok(None);
        }
        let io_err = |source| LinesError::Io {
            path: self.path.clone(),
            source,
        };
        let mut last = [0u8; 1];
        self.file
            .read_exact_at(&mut last, self.size - 1)
            .map_err(io_err)?;
        // Search [0, end) backwards for the newline ending the previous line.
        let mut end = if last[0] == b'\n' {
            self.size - 1
        } else {
            self.size
        };
        let mut chunk = vec![0u8; 64 * 1024];
        while end > 0 {
            let from = end.saturating_sub(chunk.len() as u64);
            let piece = &mut chunk[..(end - from) as usize];
            self.file.read_exact_at(piece, from).map_err(io_err)?;
            if let Some(i) = memchr::memrchr(b'\n', piece) {
                return Ok(Some(from + i as u64 + 1));
            }
            end = from;
        }
        Ok(Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.txt");
        std::fs::write(&p, content).unwrap();
        (dir, p)
    }

    fn all(f: &mut LineFile) -> Vec<(u64, Vec<u8>)> {
        let mut v = Vec::new();
        while let Some((o, l)) = f.next_line().unwrap() {
            v.push((o, l.to_vec()));
        }
        v
    }

    #[test]
    fn lines_come_with_their_start_offsets() {
        let (_d, p) = file_with(b"ab\ncde\n\nf\n");
        let mut f = LineFile::open(&p, 100).unwrap();
        assert_eq!(
            all(&mut f),
            vec![
                (0, b"ab\n".to_vec()),
                (3, b"cde\n".to_vec()),
                (7, b"\n".to_vec()),
                (8, b"f\n".to_vec())
            ]
        );
        assert_eq!(f.last_line_offset().unwrap(), Some(8));
        assert_eq!(f.position(), 10);
    }

    #[test]
    fn a_last_line_without_newline_is_still_a_line() {
        let (_d, p) = file_with(b"ab\ncd");
        let mut f = LineFile::open(&p, 100).unwrap();
        assert_eq!(
            all(&mut f),
            vec![(0, b"ab\n".to_vec()), (3, b"cd".to_vec())]
        );
        assert_eq!(f.last_line_offset().unwrap(), Some(3));
    }

    #[test]
    fn empty_and_single_line_files() {
        let (_d, p) = file_with(b"");
        let mut f = LineFile::open(&p, 100).unwrap();
        assert!(all(&mut f).is_empty());
        assert_eq!(f.last_line_offset().unwrap(), None);
        let (_d, p) = file_with(b"only\n");
        let f = LineFile::open(&p, 100).unwrap();
        assert_eq!(f.last_line_offset().unwrap(), Some(0));
    }

    #[test]
    fn seeking_resumes_at_the_given_offset_inclusive() {
        let (_d, p) = file_with(b"ab\ncde\nf\n");
        let mut f = LineFile::open(&p, 100).unwrap();
        f.next_line().unwrap();
        f.seek(3).unwrap();
        assert!(f.is_line_start(3).unwrap());
        assert!(!f.is_line_start(4).unwrap());
        assert_eq!(
            all(&mut f),
            vec![(3, b"cde\n".to_vec()), (7, b"f\n".to_vec())]
        );
        f.seek(0).unwrap();
        assert_eq!(all(&mut f).len(), 3);
        f.seek(1000).unwrap();
        assert!(all(&mut f).is_empty());
    }

    #[test]
    fn lines_spanning_many_chunks_are_read_whole() {
        let mut content = Vec::new();
        let long = vec![b'x'; CHUNK * 2 + 17];
        content.extend_from_slice(b"s\n");
        content.extend_from_slice(&long);
        content.push(b'\n');
        content.extend_from_slice(b"t\n");
        let (_d, p) = file_with(&content);
        let mut f = LineFile::open(&p, CHUNK * 3).unwrap();
        let v = all(&mut f);
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].0, 2);
        assert_eq!(v[1].1.len(), long.len() + 1);
        assert_eq!(v[2], ((long.len() + 3) as u64, b"t\n".to_vec()));
        assert_eq!(f.last_line_offset().unwrap(), Some(v[2].0));
    }

    #[test]
    fn many_lines_across_chunk_boundaries_keep_exact_offsets() {
        let mut content = Vec::new();
        let mut expect = Vec::new();
        let mut i = 0u64;
        while content.len() < CHUNK * 2 + 1000 {
            expect.push(content.len() as u64);
            content.extend_from_slice(format!("A{i:07o} b8a4 f82d a061\n").as_bytes());
            i += 1;
        }
        let (_d, p) = file_with(&content);
        let mut f = LineFile::open(&p, 100).unwrap();
        let got: Vec<u64> = all(&mut f).into_iter().map(|(o, _)| o).collect();
        assert_eq!(got, expect);
        assert_eq!(f.last_line_offset().unwrap(), expect.last().copied());
    }

    #[test]
    fn a_line_longer_than_the_limit_is_an_error_naming_its_offset() {
        let (_d, p) = file_with(b"ok\n0123456789\nok\n");
        let mut f = LineFile::open(&p, 5).unwrap();
        assert_eq!(f.next_line().unwrap().unwrap().0, 0);
        let e = f.next_line().unwrap_err();
        assert!(matches!(
            e,
            LinesError::LineTooLong {
                offset: 3,
                max: 5,
                ..
            }
        ));
        assert!(e.to_string().contains("in.txt"));
        // Also without any newline in sight.
        let (_d, p) = file_with(&vec![b'y'; CHUNK * 2]);
        let mut f = LineFile::open(&p, CHUNK).unwrap();
        assert!(matches!(
            f.next_line(),
            Err(LinesError::LineTooLong { offset: 0, .. })
        ));
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let e = LineFile::open(Path::new("/nonexistent/in.txt"), 10).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/in.txt"));
    }
}
