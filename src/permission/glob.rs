//! Paths and path patterns for file tools: lexical normalisation (never a lookup on disk), where a path
//! lies relative to the project, and the glob patterns of rules such as `Write(src/**)`.

use super::*;

/// Where a file path points, as lexically normalised segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    /// Segments relative to the project root, or `None` when the path leaves the project.
    pub(super) relative: Option<Vec<String>>,
    /// Segments from the filesystem root, or `None` when neither the path nor the project is absolute.
    pub(super) absolute: Option<Vec<String>>,
}

/// A path with `.` removed and `..` resolved against the preceding segment, without touching the disk.
pub(super) struct Normalized {
    absolute: bool,
    /// For a relative path, leading `..` segments are kept because there is nothing to resolve them in.
    segments: Vec<String>,
}

pub(super) fn normalize(path: &Path) -> Normalized {
    let mut absolute = false;
    let mut segments: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => {
                absolute = true;
                segments.push(prefix.as_os_str().to_string_lossy().into_owned());
            }
            Component::RootDir => absolute = true,
            Component::CurDir => {}
            Component::ParentDir => {
                if segments.last().is_some_and(|last| last != "..") {
                    segments.pop();
                } else if !absolute {
                    segments.push("..".to_owned());
                }
                // `/..` is `/`, so an absolute path simply stays at the root.
            }
            Component::Normal(name) => segments.push(name.to_string_lossy().into_owned()),
        }
    }
    Normalized { absolute, segments }
}

/// Resolves a tool's path argument (absolute, or relative to the project root) into a [`Location`].
pub(super) fn locate(path: &str, project: &Path) -> Location {
    // `Path::join` with an absolute argument replaces the base, which is what an absolute `file_path`
    // means; a relative one is relative to the agent's working directory, the project root.
    let joined = normalize(&project.join(path));
    let project = normalize(project);
    let relative = (joined.absolute == project.absolute)
        .then(|| joined.segments.strip_prefix(project.segments.as_slice()))
        .flatten()
        .filter(|rest| !rest.iter().any(|segment| segment == ".."))
        .map(<[String]>::to_vec);
    let absolute = joined.absolute.then_some(joined.segments);
    Location { relative, absolute }
}

// ---------------------------------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------------------------------

/// A gitignore-style pattern: `*` and `?` within one segment, `**` across any number of segments.
///
/// Matching works on `/`-separated segments with a dynamic programme over (pattern, path) positions,
/// so patterns with many `**` stay linear in the product of their lengths instead of backtracking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Glob {
    /// The specifier exactly as written (trimmed), printed back by `Display`.
    pub(super) text: String,
    /// True for `//…` patterns, which match absolute paths rather than project-relative ones.
    pub(super) absolute: bool,
    pub(super) segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    /// `**`: zero or more segments, or one or more when it ends the pattern (gitignore's `foo/**`
    /// matches what is inside `foo`, not `foo` itself).
    AnyDepth,
    /// One segment matched token by token.
    Name(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Token {
    Char(char),
    /// `*`: any run of characters within the segment, including none.
    Star,
    /// `?`: exactly one character.
    AnyChar,
}

impl Glob {
    pub(super) fn compile(text: &str) -> Result<Glob, RuleProblem> {
        if text == "~" || text.starts_with("~/") {
            return Err(RuleProblem::HomeDirUnsupported);
        }
        // A leading `/` anchors at the project root, which every relative pattern already is; `//`
        // follows Claude Code in meaning the filesystem root.
        let (absolute, body) = match text.strip_prefix("//") {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('/').unwrap_or(text)),
        };

        let mut raw_segments: Vec<Vec<Token>> = vec![Vec::new()];
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '\\' => Token::Char(chars.next().ok_or(RuleProblem::DanglingEscape)?),
                '*' => Token::Star,
                '?' => Token::AnyChar,
                '/' => {
                    raw_segments.push(Vec::new());
                    continue;
                }
                other => Token::Char(other),
            };
            if let Some(current) = raw_segments.last_mut() {
                current.push(token);
            }
        }
        // A trailing `/` names a directory; for files that means everything inside it.
        let trailing_slash =
            raw_segments.len() > 1 && raw_segments.last().is_some_and(Vec::is_empty);

        let mut segments = Vec::new();
        for tokens in raw_segments {
            let segment = match tokens.as_slice() {
                [] | [Token::Char('.')] => continue,
                [Token::Char('.'), Token::Char('.')] => {
                    return Err(RuleProblem::ParentDirInPattern)
                }
                [Token::Star, Token::Star] => Segment::AnyDepth,
                _ => {
                    // `a**b` within a segment is just `a*b`.
                    let mut merged: Vec<Token> = Vec::with_capacity(tokens.len());
                    for token in tokens {
                        if !(token == Token::Star && merged.last() == Some(&Token::Star)) {
                            merged.push(token);
                        }
                    }
                    Segment::Name(merged)
                }
            };
            push_segment(&mut segments, segment);
        }
        if trailing_slash && !segments.is_empty() {
            push_segment(&mut segments, Segment::AnyDepth);
        }
        if segments.is_empty() {
            return Err(RuleProblem::EmptyPattern);
        }
        Ok(Glob {
            text: text.to_owned(),
            absolute,
            segments,
        })
    }

    /// Matches a located file path; relative patterns never match a path outside the project.
    pub(super) fn matches_location(&self, location: &Location) -> bool {
        let segments = if self.absolute {
            &location.absolute
        } else {
            &location.relative
        };
        segments
            .as_deref()
            .is_some_and(|segments| match_segments(&self.segments, segments))
    }

    /// Matches a string that is not a file path (a command, a URL, a search pattern) segment by segment,
    /// ignoring empty segments and the pattern's anchor.
    pub(super) fn matches_raw(&self, value: &str) -> bool {
        let segments: Vec<&str> = value.split('/').filter(|s| !s.is_empty()).collect();
        match_segments(&self.segments, &segments)
    }
}

/// Appends a segment, folding `**/**` into one `**` since they mean the same.
pub(super) fn push_segment(segments: &mut Vec<Segment>, segment: Segment) {
    if !(segment == Segment::AnyDepth && segments.last() == Some(&Segment::AnyDepth)) {
        segments.push(segment);
    }
}

pub(super) fn match_segments<S: AsRef<str>>(pattern: &[Segment], path: &[S]) -> bool {
    let n = path.len();
    // `next[j]` says whether `pattern[i + 1..]` matches `path[j..]`; rows are built from the end.
    let mut next = vec![false; n + 1];
    next[n] = true;
    for (i, segment) in pattern.iter().enumerate().rev() {
        let mut current = vec![false; n + 1];
        for j in (0..=n).rev() {
            current[j] = match segment {
                Segment::AnyDepth if i + 1 == pattern.len() => j < n,
                Segment::AnyDepth => next[j] || (j < n && current[j + 1]),
                Segment::Name(tokens) => {
                    j < n && next[j + 1] && match_name(tokens, path[j].as_ref())
                }
            };
        }
        next = current;
    }
    next[0]
}

/// Matches one path segment against one pattern segment, backtracking only to the most recent `*`.
pub(super) fn match_name(tokens: &[Token], name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    let (mut t, mut c) = (0, 0);
    // Where the last `*` was, and how many characters it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while c < chars.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, c));
                t += 1;
            }
            Some(Token::AnyChar) => {
                t += 1;
                c += 1;
            }
            Some(Token::Char(expected)) if *expected == chars[c] => {
                t += 1;
                c += 1;
            }
            _ => match star {
                Some((star_t, star_c)) => {
                    t = star_t + 1;
                    c = star_c + 1;
                    star = Some((star_t, star_c + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

// ---------------------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------------------
