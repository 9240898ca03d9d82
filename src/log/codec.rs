//! The on-disk line format: encoding records and headers, and decoding them (with schema-version
//! handling).
//!
//! A record is one flat JSON object per line. Decoding goes through a single struct with
//! optional fields rather than `#[serde(untagged)]`, because untagged enums buffer every line
//! into an intermediate tree and replay speed is the point of this format.
//!
//! # Checksums
//!
//! Every record line ends with its checksum, `,"ck":"xxxxxxxx"}`: the CRC-32 (IEEE) of the line's
//! bytes before `,"ck":`, in eight lowercase hex digits. It stays valid JSON (so `jq` still reads
//! the log) and is checked with plain byte operations before the line is parsed, so an edit or a
//! flipped bit that leaves the JSON valid is still reported as damage rather than silently
//! changing the replayed state. Lines written before checksums existed have no `ck` and are read
//! as they are. A line whose checksum field itself is damaged is caught too: record lines reject
//! unknown keys (so a damaged key name is an error), and a `ck` that does not have the exact
//! form above is an error.

use serde::de::{Deserializer, IgnoredAny};
use serde::{Deserialize, Serialize};

use super::branch::Fork;
use super::{Cause, Entry, EntryDraft, Millis, Record, Schema, Seq, Status, Update};

/// The first line of every branch file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The schema version of the writer that created the file.
    pub v: u32,
    /// The branch name; must match the file name.
    pub branch: String,
    /// Where the branch forks from (`null` for a root branch); always written explicitly.
    pub fork: Option<Fork>,
    /// When the branch was created.
    pub created: Millis,
}

/// Encodes a header as one line including its `'\n'`.
pub(crate) fn encode_header(header: &Header) -> Result<Vec<u8>, String> {
    let mut line = serde_json::to_vec(header).map_err(|e| e.to_string())?;
    line.push(b'\n');
    Ok(line)
}

/// Whether a slice is empty; used to omit empty outcome lists from lines.
fn is_empty_slice<T>(items: &&[T]) -> bool {
    items.is_empty()
}

/// The borrowed shape of an entry line. Field order is the on-disk key order; `v` and `seq`
/// come first so that `fast_seq` can read a line's seq without parsing the rest.
#[derive(Serialize)]
struct EntryLine<'a, A, I, O> {
    v: u32,
    seq: Seq,
    branch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<Seq>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a str>,
    ts: Millis,
    actor: &'a A,
    intent: &'a I,
    status: Status,
    #[serde(skip_serializing_if = "is_empty_slice")]
    outcomes: &'a [O],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The borrowed shape of an update line.
#[derive(Serialize)]
struct UpdateLine<'a, O> {
    v: u32,
    seq: Seq,
    ts: Millis,
    status: Status,
    #[serde(skip_serializing_if = "is_empty_slice")]
    outcomes: &'a [O],
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The start of the checksum field that ends every record line.
const CK_PREFIX: &[u8] = b",\"ck\":\"";
/// The length of the whole checksum field: prefix, eight hex digits, closing quote and brace.
const CK_LEN: usize = CK_PREFIX.len() + 8 + 2;

/// The checksum of a line's content (its bytes before the checksum field).
fn crc(content: &[u8]) -> u32 {
    crc32fast::hash(content)
}

/// Ends a serialized JSON object (`{...}`) with its checksum field and a `'\n'`.
fn seal_line(mut bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.last() != Some(&b'}') {
        return Err("a record did not serialize to a JSON object".into());
    }
    bytes.pop();
    let sum = crc(&bytes);
    bytes.extend_from_slice(CK_PREFIX);
    bytes.extend_from_slice(format!("{sum:08x}").as_bytes());
    bytes.extend_from_slice(b"\"}\n");
    Ok(bytes)
}

/// Whether a record line ends with a checksum field (not whether the checksum matches).
pub(crate) fn has_checksum(line: &[u8]) -> bool {
    line.len()
        .checked_sub(CK_LEN)
        .is_some_and(|split| line[split..].starts_with(CK_PREFIX) && line.ends_with(b"\"}"))
}

/// Checks a record line's checksum, if it carries one; returns whether it did.
fn check_line(line: &[u8]) -> Result<bool, LineError> {
    if !has_checksum(line) {
        return Ok(false);
    }
    let (content, field) = line.split_at(line.len() - CK_LEN);
    let digits = &field[CK_PREFIX.len()..CK_PREFIX.len() + 8];
    let recorded = std::str::from_utf8(digits)
        .ok()
        .filter(|d| d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|d| u32::from_str_radix(d, 16).ok())
        .ok_or_else(|| {
            LineError::Damaged(format!(
                "the checksum {:?} is not eight lowercase hex digits",
                String::from_utf8_lossy(digits)
            ))
        })?;
    let actual = crc(content);
    if actual != recorded {
        return Err(LineError::Damaged(format!(
            "the line's checksum does not match its content (recorded {recorded:08x}, content \
             gives {actual:08x}): it was changed after Tavern wrote it. Put the line back as \
             Tavern wrote it (from a backup or version control): Tavern replays only what it \
             recorded"
        )));
    }
    Ok(true)
}

/// Encodes a new entry as one line including its `'\n'`.
pub(crate) fn encode_entry<S: Schema>(
    seq: Seq,
    parent: Option<Seq>,
    branch: &str,
    draft: &EntryDraft<S>,
) -> Result<Vec<u8>, String> {
    let line = EntryLine {
        v: S::VERSION,
        seq,
        branch,
        parent,
        cause: draft.cause.as_ref(),
        origin: draft.origin.as_deref(),
        ts: draft.ts,
        actor: &draft.actor,
        intent: &draft.intent,
        status: draft.status,
        outcomes: &draft.outcomes,
        error: draft.error.as_deref(),
    };
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, &line).map_err(|e| e.to_string())?;
    seal_line(bytes)
}

/// Encodes an update as one line including its `'\n'`.
pub(crate) fn encode_update<S: Schema>(update: &Update<S>) -> Result<Vec<u8>, String> {
    let line = UpdateLine {
        v: S::VERSION,
        seq: update.seq,
        ts: update.ts,
        status: update.status,
        outcomes: &update.outcomes,
        error: update.error.as_deref(),
    };
    let mut bytes = Vec::with_capacity(128);
    serde_json::to_writer(&mut bytes, &line).map_err(|e| e.to_string())?;
    seal_line(bytes)
}

/// Deserializes a present field as `Some`, so that a payload which itself serializes to `null`
/// is still recognised as present (presence of `intent` is what makes a line an entry).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Records only whether a field is present, whatever its value.
fn present_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The single decoding shape for record lines: an entry line is one with `intent` present.
///
/// Unknown keys are refused: Tavern writes exactly these, so an unknown one is damage (a key
/// whose name was altered, such as a damaged `ck`), and an upcaster must leave only these.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "A: Deserialize<'de>, I: Deserialize<'de>, O: Deserialize<'de>")
)]
struct RawLine<A, I, O> {
    v: u32,
    seq: Seq,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    parent: Option<Seq>,
    #[serde(default)]
    cause: Option<Cause>,
    #[serde(default)]
    origin: Option<String>,
    ts: Millis,
    #[serde(default, deserialize_with = "present")]
    actor: Option<A>,
    #[serde(default, deserialize_with = "present")]
    intent: Option<I>,
    status: Status,
    #[serde(default)]
    outcomes: Vec<O>,
    #[serde(default)]
    error: Option<String>,
    /// Whether the line has a checksum field; its value was checked before parsing.
    #[serde(default, deserialize_with = "present_any")]
    ck: bool,
}

type RawFor<S> = RawLine<<S as Schema>::Actor, <S as Schema>::Intent, <S as Schema>::Outcome>;

/// Why a line could not be decoded, before the caller adds the file and line number.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The line is not a valid record; the string says why.
    Damaged(String),
    /// The line was written by a newer schema version.
    Newer(u32),
}

/// Formats a serde_json error for a single line: the line is always 1, so only the column is
/// worth reporting.
pub(crate) fn json_reason(error: &serde_json::Error) -> String {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match full.strip_suffix(&suffix) {
        Some(message) if error.line() > 0 => format!("{message} at column {}", error.column()),
        _ => full,
    }
}

/// Decodes one record line (without its `'\n'`).
///
/// The fast path is a single typed parse. Only when that fails, or the version differs, is the
/// line parsed into a `Value` to tell a newer schema (an error), an older one (upcast, then a
/// typed parse) and plain damage apart.
pub(crate) fn decode_record<S: Schema>(line: &[u8]) -> Result<Record<S>, LineError> {
    // Validating UTF-8 once for the whole line (std has an ASCII fast path) is cheaper than
    // serde_json's per-string validation, which `from_str` skips.
    let text = std::str::from_utf8(line).map_err(|e| {
        LineError::Damaged(format!(
            "the line is not valid UTF-8 (at column {})",
            e.valid_up_to() + 1
        ))
    })?;
    let sealed = check_line(line)?;
    let typed_error = match serde_json::from_str::<RawFor<S>>(text) {
        Ok(raw) if raw.ck && !sealed => {
            return Err(LineError::Damaged(
                "the checksum field \"ck\" is not in its place at the end of the line, in the \
                 form ,\"ck\":\"xxxxxxxx\"}"
                    .into(),
            ))
        }
        Ok(raw) if raw.v == S::VERSION => return raw_into_record::<S>(raw),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LineError::Damaged(json_reason(&e)))?;
    let version = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            LineError::Damaged("the record has no numeric schema version \"v\"".into())
        })?;
    let version = u32::try_from(version).map_err(|_| {
        LineError::Damaged(format!("schema version {version} is not a valid version"))
    })?;
    if version > S::VERSION {
        return Err(LineError::Newer(version));
    }
    if version == S::VERSION {
        let reason = typed_error.map_or_else(
            || "the record does not match the current schema".to_string(),
            |e| json_reason(&e),
        );
        // A line whose checksum matches is as Tavern wrote it, so a field this build does not know
        // comes from a newer Tavern, not from damage.
        if sealed && reason.contains("unknown field") {
            return Err(LineError::Damaged(format!(
                "{reason}: the line's checksum matches, so a newer Tavern wrote it; run that \
                 version (or a later one) on this log"
            )));
        }
        return Err(LineError::Damaged(reason));
    }
    let upcast = S::upcast(version, value).map_err(|message| {
        LineError::Damaged(format!(
            "the record has schema version {version} and could not be upcast to {}: {message}",
            S::VERSION
        ))
    })?;
    let raw: RawFor<S> = serde_json::from_value(upcast).map_err(|e| {
        LineError::Damaged(format!(
            "the record upcast from schema version {version} does not match the current schema: {e}"
        ))
    })?;
    if raw.ck && !sealed {
        return Err(LineError::Damaged(
            "the checksum field \"ck\" is not in its place at the end of the line".into(),
        ));
    }
    raw_into_record::<S>(raw)
}

fn raw_into_record<S: Schema>(raw: RawFor<S>) -> Result<Record<S>, LineError> {
    match raw.intent {
        Some(intent) => {
            let actor = raw
                .actor
                .ok_or_else(|| LineError::Damaged("the entry record has no \"actor\"".into()))?;
            let branch = raw
                .branch
                .ok_or_else(|| LineError::Damaged("the entry record has no \"branch\"".into()))?;
            Ok(Record::Entry(Entry {
                seq: raw.seq,
                branch,
                parent: raw.parent,
                cause: raw.cause,
                origin: raw.origin,
                ts: raw.ts,
                actor,
                intent,
                status: raw.status,
                outcomes: raw.outcomes,
                error: raw.error,
            }))
        }
        None => Ok(Record::Update(Update {
            seq: raw.seq,
            ts: raw.ts,
            status: raw.status,
            outcomes: raw.outcomes,
            error: raw.error,
        })),
    }
}

/// The minimum needed to navigate a file without knowing its schema.
#[derive(Deserialize)]
struct Probe {
    seq: Seq,
    #[serde(default, deserialize_with = "present_any")]
    intent: bool,
}

/// What a probe learns about a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LineKind {
    /// The record's seq (the entry it belongs to, for an update).
    pub seq: Seq,
    /// Whether the line is an entry (has `intent`).
    pub is_entry: bool,
}

/// Reads a line's seq and whether it is an entry, ignoring the payload.
pub(crate) fn probe(line: &[u8]) -> Result<LineKind, String> {
    serde_json::from_slice::<Probe>(line)
        .map(|p| LineKind {
            seq: p.seq,
            is_entry: p.intent,
        })
        .map_err(|e| json_reason(&e))
}

/// Reads the seq of a line in the canonical key order (`{"v":N,"seq":N,...`) without a parser.
///
/// This lets a range read skim the rest of a log for late updates at close to memory speed.
/// Lines in any other shape return `None` and must be probed properly.
pub(crate) fn fast_seq(line: &[u8]) -> Option<Seq> {
    let rest = line.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].strip_prefix(b",\"seq\":")?;
    let mut seq: Seq = 0;
    let mut len = 0usize;
    for &b in rest {
        if !b.is_ascii_digit() {
            break;
        }
        seq = seq.checked_mul(10)?.checked_add(Seq::from(b - b'0'))?;
        len += 1;
    }
    if len == 0 || rest.get(len) != Some(&b',') {
        return None;
    }
    Some(seq)
}
