//! Reading a branch: random access by seq, tails, and the replay stream.
//!
//! Readers never parse more than they must. `read_range` binary-searches entry lines (entry seqs
//! strictly increase within a file) and `tail` scans backward from the end, so both cost the
//! size of the answer rather than the size of the log; `replay` (see the `replay` module)
//! streams every line with a single typed parse per line.

use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use super::branch::BranchInfo;
use super::chain::{Bound, Chain, Segment};
use super::codec;
use super::lines::{self, ForwardLines, PROBE_CHUNK};
use super::replay::{self, ReplayStats};
use super::{Entry, LogError, Record, Schema, Seq};

/// Below this many bytes the binary search switches to a linear scan: a few pages are cheaper
/// to read in one go than to bisect.
const LINEAR_WINDOW: u64 = 16 << 10;
/// Buffer size for range reads, which usually cover a modest number of lines.
const RANGE_CHUNK: usize = 64 << 10;

/// One segment of a chain with the bound in force for a single read call.
pub(crate) struct Span<'a> {
    pub seg: &'a Segment,
    pub end: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
}

/// Lists the spans of `chain` with the own segment bounded by `(end, last)`.
pub(crate) fn spans(chain: &Chain, end: u64, last: Seq) -> Vec<Span<'_>> {
    let mut out: Vec<Span<'_>> = chain
        .ancestors
        .iter()
        .map(|seg| Span {
            seg,
            end: seg.end,
            first_seq: seg.first_seq,
            last_seq: seg.last_seq,
        })
        .collect();
    out.push(Span {
        seg: &chain.own,
        end,
        first_seq: chain.own.first_seq,
        last_seq: last,
    });
    out
}

/// Finds the span whose file holds the line of entry `seq`.
pub(crate) fn span_of(spans: &[Span<'_>], seq: Seq) -> Option<usize> {
    spans
        .iter()
        .position(|s| s.first_seq <= seq && seq <= s.last_seq)
}

/// Returns the start and end (just after its `'\n'`) of entry `target`'s line within `span`.
///
/// This is a binary search over byte offsets: each probe jumps to the middle of the window,
/// skips to the next line start, and reads forward to the first entry line (update lines have
/// unordered seqs, so they are stepped over). The window always contains the start of the target
/// line if it exists, and shrinks strictly each round.
pub(crate) fn locate_entry(span: &Span<'_>, target: Seq) -> Result<(u64, u64), LogError> {
    let file = &*span.seg.file;
    let path = span.seg.path.as_path();
    let mut lo = span.seg.start;
    let mut hi = span.end;
    while hi.saturating_sub(lo) > LINEAR_WINDOW {
        let mid = lo + (hi - lo) / 2;
        let mut lines = ForwardLines::new(file, path, mid - 1, span.end, PROBE_CHUNK);
        // The first line read is the tail of the line containing byte `mid - 1`; the line after
        // it is the first one starting at or after `mid`.
        if lines.next_line()?.is_none() {
            hi = mid;
            continue;
        }
        let mut first_start = None;
        let mut found = None;
        while let Some((offset, line)) = lines.next_line()? {
            if offset >= hi {
                break;
            }
            first_start.get_or_insert(offset);
            let kind = codec::probe(line).map_err(|r| lines::damaged_at(file, path, offset, r))?;
            if kind.is_entry {
                found = Some((kind.seq, offset, offset + line.len() as u64 + 1));
                break;
            }
        }
        match (first_start, found) {
            (None, _) => hi = mid,
            (Some(_), Some((seq, offset, end))) if seq == target => return Ok((offset, end)),
            (Some(_), Some((seq, _, end))) if seq < target => lo = end,
            (Some(line_start), _) => hi = line_start,
        }
    }
    let mut lines = ForwardLines::new(file, path, lo, span.end, PROBE_CHUNK * 4);
    while let Some((offset, line)) = lines.next_line()? {
        if offset >= hi {
            break;
        }
        let kind = codec::probe(line).map_err(|r| lines::damaged_at(file, path, offset, r))?;
        if kind.is_entry {
            if kind.seq == target {
                return Ok((offset, offset + line.len() as u64 + 1));
            }
            if kind.seq > target {
                break;
            }
        }
    }
    Err(lines::damaged_at(
        file,
        path,
        lo.min(span.end),
        format!("entry {target} should be near this line but is missing"),
    ))
}

/// A read-only view of one branch, following its fork chain.
///
/// A reader opened with [`LogReader::open`] is a snapshot: it sees the records that were
/// complete when it was opened. A reader from [`super::Log::reader`] follows the writer and sees
/// exactly the bytes that have been synced to disk.
pub struct LogReader<S: Schema> {
    chain: Arc<Chain>,
    bound: Bound,
    _schema: PhantomData<fn() -> S>,
}

impl<S: Schema> Clone for LogReader<S> {
    fn clone(&self) -> Self {
        LogReader {
            chain: Arc::clone(&self.chain),
            bound: self.bound.clone(),
            _schema: PhantomData,
        }
    }
}

impl<S: Schema> std::fmt::Debug for LogReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("branch", &self.chain.info.name)
            .field("path", &self.chain.own.path)
            .field("last_seq", &self.last_seq())
            .finish()
    }
}

impl<S: Schema> LogReader<S> {
    /// Opens a snapshot of `branch` in `dir`.
    ///
    /// It reads the headers of the branch and its ancestors and scans back from the end for the
    /// last entry; bytes after the last complete line (an append in progress) are not part of
    /// the snapshot. Bytes a writer has written but not yet synced are visible here; use
    /// [`super::Log::reader`] to see only durable records.
    pub fn open(dir: &Path, branch: &str) -> Result<Self, LogError> {
        let chain = Chain::resolve(dir, branch, Some(S::VERSION))?;
        let bound = Bound::Fixed {
            end: chain.own.end,
            last_seq: chain.own.last_seq,
        };
        Ok(Self::from_chain(Arc::new(chain), bound))
    }

    pub(crate) fn from_chain(chain: Arc<Chain>, bound: Bound) -> Self {
        LogReader {
            chain,
            bound,
            _schema: PhantomData,
        }
    }

    pub(crate) fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The branch this reader reads.
    pub fn branch(&self) -> &BranchInfo {
        &self.chain.info
    }

    /// The seq of the last visible entry (0 if there is none).
    pub fn last_seq(&self) -> Seq {
        self.bound.load().1
    }

    fn spans(&self) -> (Vec<Span<'_>>, Seq) {
        let (end, last) = self.bound.load();
        (spans(&self.chain, end, last), last)
    }

    /// Entries with seq in `[from, to]`, in order, each merged with the later updates visible in
    /// the branch (status and error from the latest record, outcomes appended in order).
    ///
    /// `to` is clamped to the last entry, so `read_range(n, Seq::MAX)` reads from `n` to the end.
    /// Finding `from` is a binary search (O(log n)) and the entries are parsed as one forward
    /// run. Because an update may be recorded long after its entry (for example when recovery
    /// marks an interrupted intent failed), the records after `to` are still skimmed for late
    /// updates; that skim reads only each line's leading `seq` and parses just the updates that
    /// belong to the range.
    pub fn read_range(&self, from: Seq, to: Seq) -> Result<Vec<Entry<S>>, LogError> {
        let (spans, last) = self.spans();
        let from = from.max(1);
        let to = to.min(last);
        if from > to {
            return Ok(Vec::new());
        }
        let index = self.span_index(&spans, from)?;
        let (offset, _) = locate_entry(&spans[index], from)?;
        self.collect(&spans, index, offset, from, to)
    }

    /// Entry `seq` exactly as first recorded, without its updates (O(log n)).
    pub(crate) fn read_entry_line(&self, seq: Seq) -> Result<Entry<S>, LogError> {
        let (spans, _) = self.spans();
        let index = self.span_index(&spans, seq)?;
        let span = &spans[index];
        let (offset, end) = locate_entry(span, seq)?;
        let mut lines = ForwardLines::new(&span.seg.file, &span.seg.path, offset, end, PROBE_CHUNK);
        let line = match lines.next_line()? {
            Some((_, line)) => line,
            None => {
                return Err(lines::damaged_at(
                    &span.seg.file,
                    &span.seg.path,
                    offset,
                    format!("entry {seq} should be on this line but is missing"),
                ))
            }
        };
        match codec::decode_record::<S>(line) {
            Ok(Record::Entry(entry)) if entry.seq == seq => Ok(entry),
            Ok(_) => Err(lines::damaged_at(
                &span.seg.file,
                &span.seg.path,
                offset,
                format!("expected entry {seq} on this line"),
            )),
            Err(e) => Err(replay::line_error::<S>(
                &span.seg.file,
                &span.seg.path,
                offset,
                e,
            )),
        }
    }

    /// The last `n` entries (fewer if the branch is shorter), ascending, merged as in
    /// [`LogReader::read_range`].
    ///
    /// The start is found by scanning backward from the end in chunks (crossing into the
    /// parent's segment when the branch's own file holds fewer than `n` entries), so the cost
    /// depends on `n` and on how many updates follow those entries, not on the log's length.
    pub fn tail(&self, n: usize) -> Result<Vec<Entry<S>>, LogError> {
        let (spans, last) = self.spans();
        let n = Seq::try_from(n).unwrap_or(Seq::MAX);
        if n == 0 || last == 0 {
            return Ok(Vec::new());
        }
        let from = last.saturating_sub(n - 1).max(1);
        let index = self.span_index(&spans, from)?;
        let span = &spans[index];
        let file = &*span.seg.file;
        let path = span.seg.path.as_path();
        let found =
            lines::scan_lines_backward(file, path, span.seg.start, span.end, |offset, line| {
                let kind =
                    codec::probe(line).map_err(|r| lines::damaged_at(file, path, offset, r))?;
                if kind.is_entry && kind.seq <= from {
                    return Ok(ControlFlow::Break((kind.seq, offset)));
                }
                Ok(ControlFlow::Continue(()))
            })?;
        match found {
            Some((seq, offset)) if seq == from => self.collect(&spans, index, offset, from, last),
            Some((_, offset)) => Err(lines::damaged_at(
                file,
                path,
                offset,
                format!("entry {from} is missing after this line"),
            )),
            None => Err(lines::damaged_at(
                file,
                path,
                span.seg.start,
                format!("entry {from} is missing from this file"),
            )),
        }
    }

    fn span_index(&self, spans: &[Span<'_>], seq: Seq) -> Result<usize, LogError> {
        span_of(spans, seq).ok_or_else(|| {
            LogError::damaged(
                &self.chain.own.path,
                1,
                format!("no file of the branch's fork chain holds entry {seq}"),
            )
        })
    }

    /// Parses entries `from..=to` starting at the line of `from` (at `offset` in span `index`),
    /// merging every visible update for them.
    fn collect(
        &self,
        spans: &[Span<'_>],
        index: usize,
        offset: u64,
        from: Seq,
        to: Seq,
    ) -> Result<Vec<Entry<S>>, LogError> {
        let count = to - from + 1;
        let mut out: Vec<Entry<S>> =
            Vec::with_capacity(usize::try_from(count.min(1 << 16)).unwrap_or(0));
        for (i, span) in spans[index..].iter().enumerate() {
            let seg = span.seg;
            let start = if i == 0 { offset } else { seg.start };
            let mut lines = ForwardLines::new(&seg.file, &seg.path, start, span.end, RANGE_CHUNK);
            while let Some((line_start, line)) = lines.next_line()? {
                let have = out.len() as Seq;
                if have == count {
                    // Every entry is in hand; only late updates for them still matter.
                    let seq = match codec::fast_seq(line) {
                        Some(seq) => seq,
                        None => {
                            codec::probe(line)
                                .map_err(|r| {
                                    lines::damaged_at(&seg.file, &seg.path, line_start, r)
                                })?
                                .seq
                        }
                    };
                    if seq < from || seq > to {
                        continue;
                    }
                }
                let record = codec::decode_record::<S>(line)
                    .map_err(|e| replay::line_error::<S>(&seg.file, &seg.path, line_start, e))?;
                match record {
                    Record::Entry(entry) => {
                        let expected = from + have;
                        if have == count || entry.seq != expected {
                            return Err(lines::damaged_at(
                                &seg.file,
                                &seg.path,
                                line_start,
                                format!(
                                    "entry seq {} where {expected} was expected; entry seqs must increase by one",
                                    entry.seq
                                ),
                            ));
                        }
                        out.push(entry);
                    }
                    Record::Update(update) => {
                        if update.seq < from {
                            continue;
                        }
                        let slot = usize::try_from(update.seq - from)
                            .ok()
                            .and_then(|i| out.get_mut(i));
                        match slot {
                            Some(entry) => entry.apply(update),
                            None => {
                                return Err(lines::damaged_at(
                                    &seg.file,
                                    &seg.path,
                                    line_start,
                                    format!(
                                        "update for entry {} before that entry was recorded",
                                        update.seq
                                    ),
                                ))
                            }
                        }
                    }
                }
            }
        }
        if (out.len() as Seq) < count {
            let own = &self.chain.own;
            return Err(lines::damaged_at(
                &own.file,
                &own.path,
                spans.last().map_or(own.start, |s| s.end),
                format!(
                    "the log ends after entry {} but runs to entry {to}",
                    from + out.len() as Seq - 1
                ),
            ));
        }
        Ok(out)
    }

    /// Streams every visible record in order to `f`; this is the replay primitive.
    ///
    /// With `upto = Some(n)` it streams "the log as of entry n": every record up to and
    /// including entry n's own line, so updates for entries `<= n` written after that line are
    /// not included. `n` beyond the last entry is an error rather than a silent full replay.
    ///
    /// Entry seqs are checked to increase by one and updates to follow their entry, so a log
    /// that was edited inconsistently fails here instead of producing a wrong state. Records
    /// delivered before a damaged line stay delivered; the error comes right after them.
    ///
    /// Large logs are parsed on two threads (see the `replay` module); `f` always runs on the
    /// calling thread, in order.
    pub fn replay(
        &self,
        upto: Option<Seq>,
        f: impl FnMut(Record<S>),
    ) -> Result<ReplayStats, LogError> {
        let (spans, last) = self.spans();
        if let Some(n) = upto {
            if n > last {
                return Err(LogError::SeqOutOfRange {
                    path: self.chain.own.path.clone(),
                    seq: n,
                    last,
                });
            }
            if n == 0 {
                return Ok(ReplayStats::default());
            }
        }
        replay::run::<S>(&spans, upto, f)
    }
}
