//! Front matter: the TOML header of a blackboard document, between `+++` lines (Hugo style).
//!
//! A document with front matter looks like this:
//!
//! ```text
//! +++
//! name = "Éowyn"
//! role = "reviewer"
//! +++
//! The body, free text, which may itself contain lines of +++.
//! ```
//!
//! [`render`] and [`parse`] are exact inverses: `parse(&render(&front, body)?)?` gives back
//! `front` and `body` unchanged (for front-matter types whose values TOML can represent). Two
//! rules make that hold for any text:
//!
//! - The body is written verbatim after the closing line, so it may contain anything,
//!   including `+++` lines; only the first closing line ends the front matter.
//! - The TOML writer puts strings containing newlines into multi-line strings, so a front-matter
//!   value may itself contain a `+++` line. Such a line is not a closing line: the front matter
//!   ends at the first `+++` line that is not inside a TOML multi-line string, which is found
//!   as the first `+++` line before which the header is well-formed TOML (a `+++` line can only
//!   be well-formed TOML inside a multi-line string, so this is unambiguous).
//!
//! When reading, a delimiter line may carry trailing whitespace or a `\r` (files edited on
//! Windows), and a leading UTF-8 byte-order mark is skipped, because people edit these files
//! by hand.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// The line that opens and closes the front matter.
const DELIMITER: &str = "+++";

/// The front matter of a document could not be rendered or parsed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The document does not start with a `+++` line.
    #[error("front matter is missing: the document must start with a \"+++\" line")]
    MissingOpening,

    /// The opening `+++` line is never followed by a closing one.
    #[error("front matter is not closed: no \"+++\" line follows the opening \"+++\" on line 1")]
    MissingClosing,

    /// The TOML between the `+++` lines is malformed or does not fit the expected type.
    #[error("front matter TOML error{}: {message}", describe_location(*.line, *.column))]
    Toml {
        /// The 1-based line of the whole document where the error is, when TOML knows it.
        line: Option<usize>,
        /// The 1-based column (in characters) on that line, when TOML knows it.
        column: Option<usize>,
        /// TOML's description of the problem, without its own (header-relative) location.
        message: String,
        /// The underlying TOML error (boxed because it is large and errors should be cheap to
        /// move on the success path).
        #[source]
        source: Box<toml::de::Error>,
    },

    /// The front-matter value cannot be written as a TOML table (for example, it is a bare
    /// number or list rather than a struct or map).
    #[error("front matter cannot be rendered as TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

/// Formats the location part of a TOML error message.
fn describe_location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" at line {line}, column {column}"),
        (Some(line), None) => format!(" at line {line}"),
        _ => String::new(),
    }
}

/// Renders a document: `"+++\n<toml>+++\n<body>"`.
///
/// The body is written verbatim. By convention it ends with `'\n'`, as text files do, but no
/// newline is added when it does not, because that would break the exact round trip with
/// [`parse`].
///
/// # Errors
///
/// Returns [`FormatError::Render`] if `front` cannot be written as a TOML table.
pub fn render<F: Serialize>(front: &F, body: &str) -> Result<String, FormatError> {
    let toml_text = toml::to_string(front)?;
    let mut document =
        String::with_capacity(2 * (DELIMITER.len() + 1) + toml_text.len() + 1 + body.len());
    document.push_str(DELIMITER);
    document.push('\n');
    document.push_str(&toml_text);
    if !toml_text.is_empty() && !toml_text.ends_with('\n') {
        document.push('\n');
    }
    document.push_str(DELIMITER);
    document.push('\n');
    document.push_str(body);
    Ok(document)
}

/// Parses a document into its front matter and its body.
///
/// # Errors
///
/// Returns [`FormatError::MissingOpening`] or [`FormatError::MissingClosing`] if the `+++`
/// lines are missing, and [`FormatError::Toml`] (with the line in the whole document) if the
/// header is not valid TOML or does not deserialize into `F`.
pub fn parse<F: DeserializeOwned>(text: &str) -> Result<(F, String), FormatError> {
    let split = split(text)?;
    let front = toml::from_str(split.header)
        .map_err(|source| toml_error(split.header, split.first_header_line, source))?;
    Ok((front, split.body.to_owned()))
}

/// A document cut into its TOML header and its body.
struct Split<'a> {
    header: &'a str,
    /// The 1-based line of the document on which the header starts, for error locations.
    first_header_line: usize,
    body: &'a str,
}

/// Finds the front matter's delimiters (see the module documentation for the rules).
fn split(text: &str) -> Result<Split<'_>, FormatError> {
    // Editors on Windows may prepend a byte-order mark; it is not part of the content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = lines_with_offsets(text);
    match lines.next() {
        Some((_, line)) if is_delimiter(line) => {}
        _ => return Err(FormatError::MissingOpening),
    }
    let header_start = text.find('\n').map_or(text.len(), |newline| newline + 1);
    let first_header_line = 2;

    let mut first_error = None;
    for (line_start, line) in lines.filter(|(_, line)| is_delimiter(line)) {
        let header = &text[header_start..line_start];
        // Checking syntax only (into a generic table) keeps a type mismatch in `F` from being
        // mistaken for "this `+++` line is inside a string"; type errors are reported later
        // against the header that was chosen.
        match header.parse::<toml::Table>() {
            Ok(_) => {
                return Ok(Split {
                    header,
                    first_header_line,
                    body: &text[line_start + line.len()..],
                })
            }
            Err(source) => {
                // The first candidate is the closing line the author most likely meant, so its
                // error is the one worth reporting if no candidate works.
                first_error.get_or_insert_with(|| toml_error(header, first_header_line, source));
            }
        }
    }
    Err(first_error.unwrap_or(FormatError::MissingClosing))
}

/// Iterates over the lines of `text`, each with its terminating `'\n'` (if any) and the byte
/// offset at which it starts.
fn lines_with_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let start = *offset;
        *offset += line.len();
        Some((start, line))
    })
}

/// Whether `line` (possibly with its line terminator) is a `+++` delimiter line.
fn is_delimiter(line: &str) -> bool {
    line.trim_end() == DELIMITER
}

/// Converts a TOML error in `header` into a [`FormatError`] located in the whole document.
///
/// TOML's own message locates the error relative to the header, which would point a person
/// at the wrong line of the file, so the location is recomputed from the error's byte span.
fn toml_error(header: &str, first_header_line: usize, source: toml::de::Error) -> FormatError {
    let (line, column) = match source.span() {
        Some(span) => {
            // Clamped because a span may end at (or, defensively, past) the header's end.
            let offset = floor_char_boundary(header, span.start.min(header.len()));
            let before = &header[..offset];
            let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
            (
                Some(first_header_line + before.matches('\n').count()),
                Some(before[line_start..].chars().count() + 1),
            )
        }
        None => (None, None),
    };
    FormatError::Toml {
        line,
        column,
        message: source.message().trim_end().to_owned(),
        source: Box::new(source),
    }
}

/// The largest char boundary of `text` at or before `index`, so slicing never panics even if a
/// span lands inside a multi-byte character.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    (0..=index)
        .rev()
        .find(|&candidate| text.is_char_boundary(candidate))
        .unwrap_or(0)
}
