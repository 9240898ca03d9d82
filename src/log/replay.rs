//! The replay stream: every visible record of a branch, in order, as fast as the machine allows.
//!
//! Parsing JSON dominates replay, so the file is cut into blocks of whole lines and parsing is
//! split across two threads: while this thread parses one block, a scoped helper thread parses
//! the next. Records are always handed to the callback on the calling thread and in file order,
//! and all checks (seq order, damage) happen in that order too, so the result is exactly what a
//! sequential pass would produce. A log that fits in one block never starts the helper.
//!
//! Block buffers are recycled, so a replay allocates a handful of buffers however long the log.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use super::codec::{self, LineError};
use super::lines;
use super::reader::Span;
use super::{LogError, Record, Schema, Seq};

/// Bytes per block: large enough that handing a block to the helper is cheap relative to
/// parsing it. Tests use small blocks so that small logs exercise the two-thread path.
#[cfg(not(test))]
const BLOCK: usize = 1 << 20;
#[cfg(test)]
const BLOCK: usize = 2 << 10;

/// Counts of what a replay delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Entry records passed to the callback.
    pub entries: u64,
    /// Update records passed to the callback.
    pub updates: u64,
    /// Bytes of the record lines passed to the callback, including their newlines.
    pub bytes: u64,
}

/// A run of whole lines from one span.
struct Block {
    span: usize,
    /// File offset of `bytes[0]`.
    start: u64,
    /// Complete lines, each ending in `'\n'`.
    bytes: Vec<u8>,
}

/// A parsed record with the offset and length of its line.
struct Parsed<S: Schema> {
    offset: u64,
    len: u64,
    /// Whether the line carries a checksum (it matched, or the line would not have parsed).
    sealed: bool,
    record: Record<S>,
}

/// The records of a block, up to the first line that failed to parse.
struct ParsedBlock<S: Schema> {
    records: Vec<Parsed<S>>,
    error: Option<(u64, LineError)>,
}

/// Parses every line of a block, stopping at the first bad one.
fn parse_block<S: Schema>(block: &Block) -> ParsedBlock<S> {
    let mut records = Vec::with_capacity(block.bytes.len() / 128 + 1);
    let mut rest = block.bytes.as_slice();
    let mut offset = block.start;
    while !rest.is_empty() {
        // Blocks end with '\n' by construction, so a line without one cannot occur; treating it
        // as the rest of the block keeps this total without a panic path.
        let len = lines::find_newline(rest).unwrap_or(rest.len());
        match codec::decode_record::<S>(&rest[..len]) {
            Ok(record) => records.push(Parsed {
                offset,
                len: len as u64,
                sealed: codec::has_checksum(&rest[..len]),
                record,
            }),
            Err(error) => {
                return ParsedBlock {
                    records,
                    error: Some((offset, error)),
                }
            }
        }
        offset += len as u64 + 1;
        rest = rest.get(len + 1..).unwrap_or_default();
    }
    ParsedBlock {
        records,
        error: None,
    }
}

/// Cuts the spans into blocks of whole lines, front to back.
struct Blocks<'s, 'a> {
    spans: &'s [Span<'a>],
    span: usize,
    pos: u64,
}

impl<'s, 'a> Blocks<'s, 'a> {
    fn new(spans: &'s [Span<'a>]) -> Self {
        Blocks {
            spans,
            span: 0,
            pos: spans.first().map_or(0, |s| s.seg.start),
        }
    }

    /// Reads the next block into `buf` (a recycled buffer).
    fn next(&mut self, mut buf: Vec<u8>) -> Result<Option<Block>, LogError> {
        loop {
            let Some(span) = self.spans.get(self.span) else {
                return Ok(None);
            };
            if self.pos >= span.end {
                self.span += 1;
                if let Some(next) = self.spans.get(self.span) {
                    self.pos = next.seg.start;
                }
                continue;
            }
            let (file, path) = (&*span.seg.file, span.seg.path.as_path());
            let mut want = BLOCK as u64;
            let len = loop {
                let len = want.min(span.end - self.pos);
                buf.resize(usize::try_from(len).unwrap_or(usize::MAX), 0);
                lines::read_exact_at(file, &mut buf, self.pos)
                    .map_err(|e| LogError::io(path, e))?;
                match buf.iter().rposition(|&b| b == b'\n') {
                    Some(i) => {
                        buf.truncate(i + 1);
                        break i as u64 + 1;
                    }
                    None if self.pos + len >= span.end => {
                        return Err(lines::damaged_at(
                            file,
                            path,
                            self.pos,
                            "the line has no terminating newline (an append was cut short)",
                        ));
                    }
                    // One line is longer than a block; read more until it ends.
                    None => want = want.saturating_mul(2),
                }
            };
            let block = Block {
                span: self.span,
                start: self.pos,
                bytes: buf,
            };
            self.pos += len;
            return Ok(Some(block));
        }
    }
}

/// Hands records to the callback in order, checking that entry seqs increase by one, that
/// updates follow their entry, and that every ancestor span ends exactly at its fork entry.
struct Delivery<'s, 'a, F> {
    spans: &'s [Span<'a>],
    upto: Option<Seq>,
    f: F,
    next_entry: Seq,
    /// The span of the last delivered block; spans before it are finished.
    span: usize,
    /// Whether a line with a checksum has been seen in each span's file. Tavern writes checksums on
    /// every line since it began to, so a line without one after that has had its checksum removed.
    sealed: Vec<bool>,
    stats: ReplayStats,
}

impl<F> Delivery<'_, '_, F> {
    /// Checks the fork boundaries of every ancestor span before `span`.
    fn finish_spans_before(&mut self, span: usize) -> Result<(), LogError> {
        while self.span < span {
            let done = &self.spans[self.span];
            if let Some(child) = self.spans.get(self.span + 1) {
                if self.next_entry - 1 != done.last_seq {
                    return Err(LogError::damaged(
                        &child.seg.path,
                        1,
                        format!(
                            "the header forks after entry {}, but {} holds entries up to {} before the fork offset",
                            done.last_seq,
                            done.seg.path.display(),
                            self.next_entry - 1
                        ),
                    ));
                }
            }
            self.span += 1;
        }
        Ok(())
    }

    /// Delivers one parsed block; returns `true` once entry `upto` has been delivered.
    fn deliver<S: Schema>(&mut self, span: usize, parsed: ParsedBlock<S>) -> Result<bool, LogError>
    where
        F: FnMut(Record<S>),
    {
        self.finish_spans_before(span)?;
        let seg = self.spans[span].seg;
        for Parsed {
            offset,
            len,
            sealed,
            record,
        } in parsed.records
        {
            if sealed {
                self.sealed[span] = true;
            } else if self.sealed[span] {
                return Err(lines::damaged_at(
                    &seg.file,
                    &seg.path,
                    offset,
                    "the line has no checksum, though earlier lines of this file do: its checksum \
                     field was removed, or an older Tavern appended it. Restore the line as Tavern \
                     wrote it (from a backup), or run the Tavern that wrote the rest",
                ));
            }
            match &record {
                Record::Entry(entry) => {
                    if entry.seq != self.next_entry {
                        return Err(lines::damaged_at(
                            &seg.file,
                            &seg.path,
                            offset,
                            format!(
                                "entry seq {} where {} was expected; entry seqs must increase by one",
                                entry.seq, self.next_entry
                            ),
                        ));
                    }
                    self.next_entry += 1;
                    self.stats.entries += 1;
                }
                Record::Update(update) => {
                    if update.seq == 0 || update.seq >= self.next_entry {
                        return Err(lines::damaged_at(
                            &seg.file,
                            &seg.path,
                            offset,
                            format!(
                                "update for entry {} before that entry was recorded",
                                update.seq
                            ),
                        ));
                    }
                    self.stats.updates += 1;
                }
            }
            self.stats.bytes += len + 1;
            let stop = matches!(&record, Record::Entry(e) if Some(e.seq) == self.upto);
            (self.f)(record);
            if stop {
                return Ok(true);
            }
        }
        match parsed.error {
            Some((offset, error)) => Err(line_error::<S>(&seg.file, &seg.path, offset, error)),
            None => Ok(false),
        }
    }
}

/// Turns a line decoding error into a `LogError` for the line starting at `offset`.
pub(crate) fn line_error<S: Schema>(
    file: &std::fs::File,
    path: &Path,
    offset: u64,
    error: LineError,
) -> LogError {
    match error {
        LineError::Damaged(reason) => lines::damaged_at(file, path, offset, reason),
        LineError::Newer(version) => match lines::line_number(file, path, offset) {
            Ok(line) => LogError::NewerSchema {
                path: path.to_path_buf(),
                line,
                version,
                supported: S::VERSION,
            },
            Err(e) => e,
        },
    }
}

type Helper<S> = (SyncSender<Block>, Receiver<(Block, ParsedBlock<S>)>);

/// Streams every record of `spans` to `f`, stopping after entry `upto` if given.
pub(crate) fn run<S: Schema>(
    spans: &[Span<'_>],
    upto: Option<Seq>,
    f: impl FnMut(Record<S>),
) -> Result<ReplayStats, LogError> {
    let mut delivery = Delivery {
        spans,
        upto,
        f,
        next_entry: 1,
        span: 0,
        sealed: vec![false; spans.len()],
        stats: ReplayStats::default(),
    };
    let helper_stopped = || {
        LogError::io(
            spans
                .last()
                .map_or_else(Default::default, |s| s.seg.path.clone()),
            std::io::Error::other("the replay helper thread stopped unexpectedly"),
        )
    };
    std::thread::scope(|scope| {
        // The channels live inside the scope closure, so on every exit (including a panic in
        // the callback) they are dropped before the scope joins the helper, which then ends.
        let mut helper: Option<Helper<S>> = None;
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut blocks = Blocks::new(spans);
        let mut current = blocks.next(Vec::new())?;
        while let Some(block) = current.take() {
            let ahead = blocks.next(spare.pop().unwrap_or_default())?;
            let sent = match ahead {
                Some(next) => {
                    let (to_helper, _) = helper.get_or_insert_with(|| {
                        let (to_helper, inbox) = mpsc::sync_channel::<Block>(1);
                        let (outbox, from_helper) = mpsc::sync_channel(1);
                        scope.spawn(move || {
                            for block in inbox {
                                let parsed = parse_block::<S>(&block);
                                if outbox.send((block, parsed)).is_err() {
                                    break;
                                }
                            }
                        });
                        (to_helper, from_helper)
                    });
                    to_helper.send(next).map_err(|_| helper_stopped())?;
                    true
                }
                None => false,
            };
            let parsed = parse_block::<S>(&block);
            if delivery.deliver(block.span, parsed)? {
                return Ok(delivery.stats);
            }
            spare.push(block.bytes);
            if sent {
                let Some((_, from_helper)) = helper.as_ref() else {
                    return Err(helper_stopped());
                };
                let (block, parsed) = from_helper.recv().map_err(|_| helper_stopped())?;
                if delivery.deliver(block.span, parsed)? {
                    return Ok(delivery.stats);
                }
                current = blocks.next(block.bytes)?;
            }
        }
        delivery.finish_spans_before(spans.len().saturating_sub(1))?;
        Ok(delivery.stats)
    })
}
