//! Document names: the validated [`DocName`] and the [`NameError`] explaining a rejection.
//!
//! A name becomes a file name on disk, and names may come from models or people, so the
//! rules here are what keeps a name from escaping its collection directory, colliding with the
//! temporary files of an in-flight write, or being silently altered by the file system.

use std::fmt;

use thiserror::Error;

/// The longest name accepted, in bytes.
///
/// Kept well below the usual 255-byte file-name limit so that the `.md` extension and the
/// temporary-file decoration (`.` prefix, `.md.tmp-` and a UUID) always fit.
pub const MAX_NAME_BYTES: usize = 64;

/// A validated document name: the file name of a document without its `.md` extension.
///
/// Rules: non-empty; at most [`MAX_NAME_BYTES`] bytes; no `..` anywhere; no `/` or `\`; no NUL
/// or other control characters; must not start with `.` (temporary files do) or end with a
/// space or `.`. Unicode letters are fine (agent names like `Éowyn`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocName(String);

impl DocName {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] naming the offending name and the first rule it breaks.
    pub fn new(name: impl Into<String>) -> Result<DocName, NameError> {
        let name = name.into();
        match broken_rule(&name) {
            Some(rule) => Err(NameError { name, rule }),
            None => Ok(DocName(name)),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for DocName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DocName {
    type Error = NameError;

    fn try_from(name: String) -> Result<DocName, NameError> {
        DocName::new(name)
    }
}

impl TryFrom<&str> for DocName {
    type Error = NameError;

    fn try_from(name: &str) -> Result<DocName, NameError> {
        DocName::new(name)
    }
}

impl From<DocName> for String {
    fn from(name: DocName) -> String {
        name.0
    }
}

/// Returns the first rule `name` breaks, or `None` if it is a valid name.
///
/// The order matters only for which rule an error reports: `..` is checked before the
/// separators and the leading dot so that a traversal attempt like `../etc` is reported as
/// what it is.
fn broken_rule(name: &str) -> Option<NameRule> {
    if name.is_empty() {
        return Some(NameRule::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(NameRule::TooLong { len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Some(NameRule::ControlCharacter);
    }
    if name.contains("..") {
        return Some(NameRule::DotDot);
    }
    if name.contains(['/', '\\']) {
        return Some(NameRule::Separator);
    }
    if name.starts_with('.') {
        return Some(NameRule::LeadingDot);
    }
    if name.ends_with([' ', '.']) {
        return Some(NameRule::TrailingSpaceOrDot);
    }
    None
}

/// The rule a rejected document name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`] bytes.
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name contains `..`, which could climb out of the collection directory.
    DotDot,
    /// The name contains a path separator.
    Separator,
    /// The name contains NUL or another control character.
    ControlCharacter,
    /// The name starts with `.`, which is reserved for temporary files.
    LeadingDot,
    /// The name ends with a space or `.`, which some file systems silently strip.
    TrailingSpaceOrDot,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameRule::Empty => f.write_str("names may not be empty"),
            NameRule::TooLong { len } => write!(
                f,
                "names may be at most {MAX_NAME_BYTES} bytes long (this one is {len})"
            ),
            NameRule::DotDot => f.write_str("names may not contain \"..\""),
            NameRule::Separator => f.write_str("names may not contain '/' or '\\'"),
            NameRule::ControlCharacter => {
                f.write_str("names may not contain NUL or other control characters")
            }
            NameRule::LeadingDot => {
                f.write_str("names may not start with '.' (reserved for temporary files)")
            }
            NameRule::TrailingSpaceOrDot => f.write_str("names may not end with a space or '.'"),
        }
    }
}

/// A document name was rejected.
///
/// The message names the offending name (escaped, so control characters are visible) and the
/// rule it breaks, for example: `invalid document name "../etc": names may not contain "..";
/// use letters, digits, '-', '_', '.', spaces`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid document name {name:?}: {rule}; use letters, digits, '-', '_', '.', spaces")]
pub struct NameError {
    name: String,
    rule: NameRule,
}

impl NameError {
    /// The rejected name, exactly as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule the name breaks.
    pub fn rule(&self) -> NameRule {
        self.rule
    }
}
