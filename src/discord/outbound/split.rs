//! Pure message shaping for Discord: splitting text at Discord's 2000-character limit without breaking
//! code fences, sending very long text as an attachment with a preview, and trimming thread names.
//! Nothing here does IO or knows about queues.

use super::OutMessage;

/// Discord's limit on a message's content, in characters (`chars()`, as serenity counts them).
pub const MESSAGE_LIMIT: usize = 2000;

/// Discord's limit on a thread's name, in characters.
pub const THREAD_NAME_LIMIT: usize = 100;

/// How many files Discord takes on one message.
pub const MAX_FILES_PER_MESSAGE: usize = 10;

/// Text longer than this many characters goes as a file attachment (see [`as_attachment`]).
pub const ATTACHMENT_OVER_CHARS: usize = 8000;

/// Text that would take more than this many messages goes as a file attachment.
pub const ATTACHMENT_OVER_PIECES: usize = 4;

/// The name of the file that carries text too long for messages.
pub const ATTACHMENT_NAME: &str = "message.md";

/// How much of a text sent as an attachment is shown in the message itself.
const PREVIEW_CHARS: usize = 1500;

/// Turns one message into what is sent: the text split into pieces (or, when very long, a preview
/// with the whole text attached), files at most [`MAX_FILES_PER_MESSAGE`] to a message (the first
/// ones on the last text piece, the rest on messages of their own), the mention allowed on every
/// piece (it pings only where the text names the user) and the reactions on the very last message.
pub(super) fn prepare(msg: OutMessage) -> Vec<OutMessage> {
    let OutMessage {
        content,
        mention_user,
        mut files,
        reactions,
    } = msg;
    let texts = if as_attachment(&content) {
        let chars = content.chars().count();
        let head: String = content.chars().take(PREVIEW_CHARS).collect();
        let mut preview = split_message(&head, PREVIEW_CHARS)
            .into_iter()
            .next()
            .unwrap_or_default();
        preview.push_str(&format!(
            "\n\n*(… {chars} characters in all; the whole text is attached as `{ATTACHMENT_NAME}`.)*"
        ));
        files.insert(0, (ATTACHMENT_NAME.to_owned(), content.into_bytes()));
        vec![preview]
    } else {
        split_message(&content, MESSAGE_LIMIT)
    };
    let mut pieces: Vec<OutMessage> = texts
        .into_iter()
        .map(|content| OutMessage {
            content,
            mention_user,
            ..OutMessage::default()
        })
        .collect();
    let mut files = files.into_iter().peekable();
    let mut first_group = true;
    while files.peek().is_some() {
        let group: Vec<_> = files.by_ref().take(MAX_FILES_PER_MESSAGE).collect();
        match pieces.last_mut() {
            Some(last) if first_group => last.files = group,
            _ => pieces.push(OutMessage {
                mention_user,
                files: group,
                ..OutMessage::default()
            }),
        }
        first_group = false;
    }
    if let Some(last) = pieces.last_mut() {
        last.reactions = reactions;
    }
    pieces
}

/// Whether `text` should go as a file attachment rather than as messages: more than
/// [`ATTACHMENT_OVER_CHARS`] characters, or more than [`ATTACHMENT_OVER_PIECES`] messages' worth.
pub fn as_attachment(text: &str) -> bool {
    let chars = text.chars().count();
    chars > ATTACHMENT_OVER_CHARS
        || (chars > MESSAGE_LIMIT
            && split_message(text, MESSAGE_LIMIT).len() > ATTACHMENT_OVER_PIECES)
}

/// A thread name Discord accepts: control characters (newlines included) become spaces, runs of
/// whitespace one space, trimmed, at most [`THREAD_NAME_LIMIT`] characters (cut with `…`), and
/// `thread` when nothing is left.
pub fn thread_name(name: &str) -> String {
    let words: Vec<&str> = name
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let name = words.join(" ");
    if name.is_empty() {
        return "thread".to_owned();
    }
    truncate(name, THREAD_NAME_LIMIT)
}

/// `text` cut to at most `limit` characters, ending in `…` when cut.
pub(crate) fn truncate(text: String, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text;
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The start of a text on one line, for logs.
pub(super) fn preview(text: &str) -> String {
    const PREVIEW: usize = 80;
    let mut line: String = text
        .chars()
        .take(PREVIEW)
        .map(|c| if c == '\n' { '⏎' } else { c })
        .collect();
    if text.chars().nth(PREVIEW).is_some() {
        line.push('…');
    }
    line
}

/// A code fence's opening backticks.
const FENCE: &str = "```";

/// What closes a fence at the end of a piece: a newline and the backticks.
const CLOSE: &str = "\n```";

/// `CLOSE`'s length in characters.
const CLOSE_LEN: usize = 4;

/// The longest language tag carried over when a fence is reopened.
const MAX_TAG: usize = 20;

/// The smallest limit at which fences can be closed and reopened while still making progress:
/// three backticks, a newline, one character, and the closing newline and backticks.
const MIN_FENCED_LIMIT: usize = 3 + 1 + 1 + CLOSE_LEN;

/// Splits `text` into pieces of at most `limit` characters (`chars()`, not bytes; a `limit` of 0
/// counts as 1), none empty or only whitespace, in order.
///
/// Pieces end at a newline where one is in reach, else at a space, else anywhere (a word longer than
/// a piece is cut hard). A code block that does not fit in what is left of a piece but fits in a
/// piece of its own starts a new piece. A piece that ends inside a code block closes it, and the next
/// piece reopens it with the same language tag, so every piece has whole fences (a fence the text
/// leaves open is closed in its last piece). Text that fits is returned unchanged, as one piece.
///
/// Fences are lines starting (after indentation) with three backticks, as Discord renders them; a
/// fence line too long to fit in a piece beside the closing or reopening backticks is kept as text.
/// The newline or space a piece ends at is dropped.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    if text.trim().is_empty() {
        return Vec::new();
    }
    if text.chars().count() <= limit {
        return vec![text.to_owned()];
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let kinds = classify(&lines, limit);
    let mut splitter = Splitter {
        limit,
        pieces: Vec::new(),
        cur: String::new(),
        cur_len: 0,
        body: false,
        ink: false,
        open: None,
    };
    for (line, kind) in lines.iter().zip(&kinds) {
        splitter.push_line(line, kind);
    }
    splitter.flush();
    splitter.pieces
}

/// What a line of the text is to the splitter.
enum Line {
    Text,
    /// Opens a code block: `tag` is the language tag to reopen it with, `block` the length of the
    /// whole block through its closing fence (`None` if it is never closed).
    Open {
        tag: String,
        block: Option<usize>,
    },
    Close,
}

/// Classifies every line in order. A fence line counts as one only if it fits in a fresh piece with
/// what the splitter adds around it; that is what lets [`Splitter::push_line`] always place it.
fn classify(lines: &[&str], limit: usize) -> Vec<Line> {
    let mut kinds = Vec::with_capacity(lines.len());
    let mut open_tag: Option<usize> = None;
    let mut opened_at = 0;
    for (index, line) in lines.iter().enumerate() {
        let len = line.chars().count();
        let fence = limit >= MIN_FENCED_LIMIT && line.trim_start().starts_with(FENCE);
        let kind = match open_tag {
            _ if !fence => Line::Text,
            None if len + CLOSE_LEN <= limit => {
                let tag = reopen_tag(line, limit);
                open_tag = Some(tag.chars().count());
                opened_at = index;
                Line::Open { tag, block: None }
            }
            Some(tag_len) if FENCE.len() + tag_len + 1 + len <= limit => {
                open_tag = None;
                let block = lines[opened_at..=index]
                    .iter()
                    .map(|line| line.chars().count() + 1)
                    .sum::<usize>()
                    - 1;
                if let Some(Line::Open { block: slot, .. }) = kinds.get_mut(opened_at) {
                    *slot = Some(block);
                }
                Line::Close
            }
            _ => Line::Text,
        };
        kinds.push(kind);
    }
    kinds
}

/// The language tag of an opening fence line, if it is short enough to carry over; else empty.
fn reopen_tag(line: &str, limit: usize) -> String {
    let info = line.trim_start()[FENCE.len()..].trim_start_matches('`');
    let tag = info.split_whitespace().next().unwrap_or("");
    let len = tag.chars().count();
    if len <= MAX_TAG && !tag.contains('`') && FENCE.len() + len + 2 + CLOSE_LEN <= limit {
        tag.to_owned()
    } else {
        String::new()
    }
}

/// Packs lines into pieces; see [`split_message`].
struct Splitter {
    limit: usize,
    pieces: Vec<String>,
    /// The piece being filled, starting with the reopened fence when it continues a code block.
    cur: String,
    /// `cur`'s length in characters.
    cur_len: usize,
    /// Whether `cur` holds any of the text (beyond a reopened fence).
    body: bool,
    /// Whether `cur` holds any of the text other than whitespace and fence lines: a piece without
    /// any is dropped (it would be blank, or an empty code block).
    ink: bool,
    /// The language tag of the code block open at the end of `cur`, if one is.
    open: Option<String>,
}

impl Splitter {
    fn push_line(&mut self, line: &str, kind: &Line) {
        let len = line.chars().count();
        let open_after = match kind {
            Line::Open { .. } => true,
            Line::Close => false,
            Line::Text => self.open.is_some(),
        };
        if let Line::Open {
            block: Some(block), ..
        } = kind
        {
            if self.ink && self.cur_len + 1 + block > self.limit && *block <= self.limit {
                self.flush();
            }
        }
        // At most two passes: the second starts a fresh piece, where a fence line always fits (a
        // piece holding only fence lines and whitespace is dropped rather than sent).
        for _ in 0..2 {
            let sep = usize::from(!self.cur.is_empty());
            let reserve = if open_after { CLOSE_LEN } else { 0 };
            if self.cur_len + sep + len + reserve <= self.limit {
                self.append(line, len, !matches!(kind, Line::Text));
                match kind {
                    Line::Open { tag, .. } => self.open = Some(tag.clone()),
                    Line::Close => self.open = None,
                    Line::Text => {}
                }
                return;
            }
            if !self.body {
                break;
            }
            self.flush();
            if matches!(kind, Line::Close) {
                // The flush closed the block already; reopening it only to close it again would
                // leave an empty code block at the top of the next piece.
                self.open = None;
                self.cur.clear();
                self.cur_len = 0;
                return;
            }
        }
        self.push_long(line);
    }

    /// Places a text line too long for a piece of its own, cutting it at spaces where it can.
    fn push_long(&mut self, line: &str) {
        let mut rest = line;
        let mut rest_len = line.chars().count();
        // Every pass either places all that is left, or places at least one character and starts a
        // new piece, or (room 0) starts a new piece, which always has room (see MIN_FENCED_LIMIT and
        // `reopen_tag`). So it ends within 2 × the line's length passes.
        for _ in 0..=2 * rest_len + 1 {
            let sep = usize::from(!self.cur.is_empty());
            let reserve = if self.open.is_some() { CLOSE_LEN } else { 0 };
            let room = self.limit.saturating_sub(self.cur_len + sep + reserve);
            if rest_len <= room {
                self.append(rest, rest_len, false);
                return;
            }
            if room == 0 {
                self.flush();
                continue;
            }
            let (head, head_len, tail, taken) = cut(rest, room);
            self.append(head, head_len, false);
            self.flush();
            rest = tail;
            rest_len -= taken;
        }
    }

    fn append(&mut self, text: &str, len: usize, fence: bool) {
        if !self.cur.is_empty() {
            self.cur.push('\n');
            self.cur_len += 1;
        }
        self.cur.push_str(text);
        self.cur_len += len;
        self.body = true;
        self.ink |= !fence && !text.trim().is_empty();
    }

    /// Ends the current piece (closing an open code block) and starts the next (reopening it). A
    /// piece without ink is dropped: only whitespace and fence lines are lost, and the state of the
    /// fences carries on.
    fn flush(&mut self) {
        if !self.body {
            return;
        }
        let mut piece = std::mem::take(&mut self.cur);
        if self.open.is_some() {
            piece.push_str(CLOSE);
        }
        if self.ink {
            self.pieces.push(piece);
        }
        self.cur = match &self.open {
            Some(tag) => format!("{FENCE}{tag}"),
            None => String::new(),
        };
        self.cur_len = self.cur.chars().count();
        self.body = false;
        self.ink = false;
    }
}

/// Cuts `rest` (longer than `room` characters) to a head of at most `room` characters: at the last
/// space in reach (the space dropped), else hard. Returns the head, its length in characters, the
/// tail, and how many characters the tail lacks of `rest` (the head's, and the space's if one).
fn cut(rest: &str, room: usize) -> (&str, usize, &str, usize) {
    let mut end = rest.len();
    let mut space = None;
    for (n, (at, c)) in rest.char_indices().enumerate() {
        if n == room {
            end = at;
            if c == ' ' {
                space = Some((at, n));
            }
            break;
        }
        if c == ' ' && n > 0 {
            space = Some((at, n));
        }
    }
    match space {
        Some((at, n)) => (&rest[..at], n, &rest[at + 1..], n + 1),
        None => (&rest[..end], room, &rest[end..], room),
    }
}
