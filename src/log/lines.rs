//! Byte-level line access to log files: forward streaming, backward scanning and positional
//! reads.
//!
//! Everything here works with explicit offsets (`pread`) instead of a file cursor, so one open
//! file can be shared by concurrent readers, and every scan is bounded by an end offset, so a
//! reader never looks past the bytes it is allowed to see (the durable length, or a fork point).

use std::fs::File;
use std::ops::ControlFlow;
use std::path::Path;

use super::LogError;

/// How much a streaming reader reads per system call when replaying.
pub(crate) const STREAM_CHUNK: usize = 1 << 20;
/// How much a random-access probe reads per system call; one page-cache page or a few.
pub(crate) const PROBE_CHUNK: usize = 4 << 10;
/// How much a backward scan reads per system call.
const BACKWARD_CHUNK: u64 = 16 << 10;

/// Reads at `offset` into `buf`, returning how many bytes were read (0 at end of file).
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }
}

/// Fills `buf` from `offset`, failing if the file ends first (it was truncated under us).
pub(crate) fn read_exact_at(
    file: &File,
    mut buf: &mut [u8],
    mut offset: u64,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match read_at(file, buf, offset) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than expected; was it truncated while Tavern read it?",
                ))
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Finds the first `'\n'` in `hay`.
///
/// This is a word-at-a-time search (eight bytes per step) because locating line ends is a
/// noticeable share of replay time and the crate may not depend on `memchr`. In the classic
/// "has zero byte" test the lowest flagged byte is always a true match (false positives can
/// only appear above a real zero, through the borrow), so `trailing_zeros` gives the exact index.
pub(crate) fn find_newline(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = LO * b'\n' as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0usize;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
}

/// Returns the 1-based number of the line starting at `offset`.
///
/// Random-access readers do not know line numbers, so they compute them only when reporting an
/// error; this is O(offset) and must stay off the normal path.
pub(crate) fn line_number(file: &File, path: &Path, offset: u64) -> Result<u64, LogError> {
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut pos = 0u64;
    let mut newlines = 0u64;
    while pos < offset {
        let want = usize::try_from(offset - pos).map_or(buf.len(), |left| left.min(buf.len()));
        let n = read_at(file, &mut buf[..want], pos).map_err(|e| LogError::io(path, e))?;
        if n == 0 {
            break;
        }
        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        pos += n as u64;
    }
    Ok(newlines + 1)
}

/// Builds a `Damaged` error for the line starting at `offset`, computing its line number.
pub(crate) fn damaged_at(
    file: &File,
    path: &Path,
    offset: u64,
    reason: impl Into<String>,
) -> LogError {
    match line_number(file, path, offset) {
        Ok(line) => LogError::damaged(path, line, reason),
        Err(e) => e,
    }
}

/// Returns the offset just after the last `'\n'` in `[floor, end)`, or `None` if there is none.
pub(crate) fn last_line_boundary(
    file: &File,
    path: &Path,
    floor: u64,
    end: u64,
) -> Result<Option<u64>, LogError> {
    let mut hi = end;
    let mut buf = vec![0u8; BACKWARD_CHUNK as usize];
    while hi > floor {
        let lo = hi.saturating_sub(BACKWARD_CHUNK).max(floor);
        let chunk = &mut buf[..(hi - lo) as usize];
        read_exact_at(file, chunk, lo).map_err(|e| LogError::io(path, e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64 + 1));
        }
        hi = lo;
    }
    Ok(None)
}

/// Streams the lines of `[start, end)` front to back with one reusable buffer.
///
/// `end` must be a line boundary; a final line without `'\n'` is reported as damage because
/// every caller passes a boundary it has already established (durable length, fork point, or
/// the last newline of a snapshot).
pub(crate) struct ForwardLines<'a> {
    file: &'a File,
    path: &'a Path,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Start of the unread part of `buf`.
    head: usize,
    /// End of the valid part of `buf`.
    len: usize,
    /// Next file offset to read from.
    next_read: u64,
    end: u64,
}

impl<'a> ForwardLines<'a> {
    /// Starts streaming at `start` (which must be a line start) up to `end`.
    pub(crate) fn new(file: &'a File, path: &'a Path, start: u64, end: u64, chunk: usize) -> Self {
        ForwardLines {
            file,
            path,
            buf: vec![0u8; chunk.max(64)],
            buf_offset: start,
            head: 0,
            len: 0,
            next_read: start,
            end,
        }
    }

    /// Returns the next line (without its `'\n'`) and the offset where it starts.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, LogError> {
        loop {
            if let Some(i) = find_newline(&self.buf[self.head..self.len]) {
                let start = self.head;
                self.head += i + 1;
                let offset = self.buf_offset + start as u64;
                return Ok(Some((offset, &self.buf[start..start + i])));
            }
            if self.next_read >= self.end {
                if self.head < self.len {
                    let offset = self.buf_offset + self.head as u64;
                    return Err(damaged_at(
                        self.file,
                        self.path,
                        offset,
                        "the line has no terminating newline (an append was cut short)",
                    ));
                }
                return Ok(None);
            }
            self.refill()?;
        }
    }

    /// Moves the unread tail to the front of the buffer and reads more after it.
    fn refill(&mut self) -> Result<(), LogError> {
        if self.head > 0 {
            self.buf.copy_within(self.head..self.len, 0);
            self.buf_offset += self.head as u64;
            self.len -= self.head;
            self.head = 0;
        }
        if self.len == self.buf.len() {
            // A single line is longer than the buffer, so it has to grow to hold it.
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        let room = self.buf.len() - self.len;
        let want = usize::try_from(self.end - self.next_read).map_or(room, |left| left.min(room));
        let n = read_at(
            self.file,
            &mut self.buf[self.len..self.len + want],
            self.next_read,
        )
        .map_err(|e| LogError::io(self.path, e))?;
        if n == 0 {
            return Err(LogError::io(
                self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ended before the expected length; was it truncated while Tavern read it?",
                ),
            ));
        }
        self.len += n;
        self.next_read += n as u64;
        Ok(())
    }
}

/// Visits the lines of `[start, end)` from last to first, stopping when `visit` breaks.
///
/// `end` must be a line boundary. The cost is proportional to the bytes visited, not to the
/// file, which is what makes tails and "find the last entry" independent of log length. It is
/// also linear in the length of one line: every byte is read once and searched for `'\n'` once,
/// and the buffer grows by doubling at its front, so a multi-megabyte line costs a few copies of
/// itself rather than one copy per chunk read (which made a restart after a 10 MB line take
/// minutes).
pub(crate) fn scan_lines_backward<B>(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<B>, LogError>,
) -> Result<Option<B>, LogError> {
    scan_lines_backward_costed(file, path, start, end, visit).map(|(found, _)| found)
}

/// [`scan_lines_backward`], also saying what the scan cost.
pub(crate) fn scan_lines_backward_costed<B>(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    mut visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<B>, LogError>,
) -> Result<(Option<B>, ScanCost), LogError> {
    let mut scan = BackwardScan::new(end);
    loop {
        match scan.next_line(file, path, start)? {
            Some((offset, range)) => {
                if let ControlFlow::Break(b) = visit(offset, &scan.buf[range])? {
                    return Ok((Some(b), scan.cost));
                }
            }
            None => return Ok((None, scan.cost)),
        }
    }
}

/// The state of a backward scan: file bytes held at the *end* of a buffer that grows toward its
/// front, so reading an earlier chunk never moves what is already held (except when the buffer
/// doubles).
struct BackwardScan {
    /// `buf[lo..hi]` holds the file bytes `[file_lo, file_lo + (hi - lo))`; they are the lines not
    /// yet visited, and `hi` is a line boundary.
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
    file_lo: u64,
    /// `buf[searched..hi - 1]` is known to hold no `'\n'`, so each byte is searched once.
    searched: usize,
    /// Bytes read from the file and bytes moved when the buffer grew, so tests can check that the
    /// scan is linear.
    cost: ScanCost,
}

/// What a backward scan did, for tests of its linearity.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanCost {
    /// Bytes read from the file.
    pub read: u64,
    /// Bytes moved to make room at the front of the buffer.
    pub moved: u64,
    /// The largest the buffer was, in bytes.
    pub peak: u64,
}

impl BackwardScan {
    fn new(end: u64) -> Self {
        BackwardScan {
            buf: Vec::new(),
            lo: 0,
            hi: 0,
            file_lo: end,
            searched: 0,
            cost: ScanCost::default(),
        }
    }

    /// The next line back: its file offset and its range in `self.buf` (without the `'\n'`).
    fn next_line(
        &mut self,
        file: &File,
        path: &Path,
        start: u64,
    ) -> Result<Option<(u64, std::ops::Range<usize>)>, LogError> {
        loop {
            if self.hi > self.lo && self.buf[self.hi - 1] != b'\n' {
                let line_end = self.file_lo + (self.hi - self.lo) as u64;
                return Err(damaged_at(
                    file,
                    path,
                    line_end,
                    "internal error: a backward scan did not start at a line boundary",
                ));
            }
            let body_end = self.hi.saturating_sub(1).max(self.lo);
            let search_end = self.searched.min(body_end).max(self.lo);
            if let Some(i) = self.buf[self.lo..search_end]
                .iter()
                .rposition(|&b| b == b'\n')
            {
                let line_start = self.lo + i + 1;
                let line = line_start..body_end;
                self.hi = line_start;
                self.searched = self.lo + i;
                let offset = self.file_lo + (line_start - self.lo) as u64;
                return Ok(Some((offset, line)));
            }
            self.searched = self.lo;
            if self.file_lo > start {
                self.read_before(file, path, start)?;
                continue;
            }
            if self.hi > self.lo {
                // What is left is the first line of the range.
                let line = self.lo..body_end;
                self.hi = self.lo;
                return Ok(Some((start, line)));
            }
            return Ok(None);
        }
    }

    /// Reads the chunk just before what is held: at least `BACKWARD_CHUNK`, and as much as is
    /// already held (up to 1 MiB), so a long line takes a logarithmic number of reads.
    fn read_before(&mut self, file: &File, path: &Path, start: u64) -> Result<(), LogError> {
        let held = (self.hi - self.lo) as u64;
        let want = held
            .clamp(BACKWARD_CHUNK, 1 << 20)
            .min(self.file_lo - start);
        let want = usize::try_from(want).unwrap_or(usize::MAX);
        if self.lo < want {
            // Make room at the front. Only the held bytes (the lines not yet visited) are kept: lines
            // already visited are dropped, so memory follows the longest line, not the range scanned.
            let held = self.hi - self.lo;
            let need = 2 * (held + want);
            let new_lo = if self.buf.len() >= need {
                let end = self.buf.len();
                self.buf.copy_within(self.lo..self.hi, end - held);
                end - held
            } else {
                // Growing to twice what is needed keeps the number of moves logarithmic in a long
                // line's length, and each move is paid for by at least as many bytes read.
                let cap = need.max(BACKWARD_CHUNK as usize);
                let mut grown = vec![0u8; cap];
                grown[cap - held..].copy_from_slice(&self.buf[self.lo..self.hi]);
                self.buf = grown;
                self.cost.peak = self.cost.peak.max(cap as u64);
                cap - held
            };
            self.cost.moved += held as u64;
            self.searched = self.searched - self.lo + new_lo;
            self.lo = new_lo;
            self.hi = new_lo + held;
        }
        let new_lo = self.lo - want;
        let new_file_lo = self.file_lo - want as u64;
        read_exact_at(file, &mut self.buf[new_lo..self.lo], new_file_lo)
            .map_err(|e| LogError::io(path, e))?;
        self.lo = new_lo;
        self.file_lo = new_file_lo;
        self.cost.read += want as u64;
        Ok(())
    }
}
