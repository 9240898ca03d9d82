//! Themed, tiered, unique and deterministic names for summoned agents.
//!
//! This module owns the naming policy: which theme a tavern draws from, the order in which a theme's
//! names are handed out (lower tiers first, in listed order), and the fallbacks used once a theme runs
//! dry (`{adjective}-{scientist}`, then `regular-{n}`). The static word lists live in `naming/themes.rs`
//! so that this file stays about behaviour rather than data.
//!
//! Uniqueness is the caller's job in one precise sense: [`next_name`] asks an `is_used` predicate about
//! each candidate, and the caller answers case-insensitively over every name the tavern has ever used,
//! including agents that have since died. Given the same answers, [`next_name`] always returns the same
//! name, which is what makes a summon sequence reproducible.

use std::fmt::Write as _;

use serde::Serialize;
use thiserror::Error;

mod themes;

#[cfg(test)]
mod tests;

/// Names no agent may ever receive, compared case-insensitively.
///
/// `jake` is the coordinator; handing the name to an agent would make addressing ambiguous.
const RESERVED: &[&str] = &["jake"];

/// A named family of agent names, split into tiers that are used up in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Theme {
    /// Stable identifier used in configuration, e.g. `"lotr"`.
    pub id: &'static str,
    /// Human-readable title, e.g. `"The Lord of the Rings"`.
    pub title: &'static str,
    /// Name tiers; every name of tier *n* is handed out before any name of tier *n + 1*.
    pub tiers: &'static [&'static [&'static str]],
}

/// Errors raised while choosing a naming theme.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// The requested theme id is not one of the built-in themes.
    #[error("unknown naming theme `{id}`; choose one of: {valid}")]
    UnknownTheme {
        /// The id that was asked for.
        id: String,
        /// Comma-separated list of the valid theme ids, in their canonical order.
        valid: String,
    },
}

/// Returns every built-in theme, in a fixed order.
pub fn themes() -> &'static [Theme] {
    themes::THEMES
}

/// Looks a theme up by its exact id.
///
/// # Errors
///
/// Returns [`NamingError::UnknownTheme`], whose message lists the valid ids, when `id` matches no theme.
pub fn theme(id: &str) -> Result<&'static Theme, NamingError> {
    themes::THEMES
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| NamingError::UnknownTheme {
            id: id.to_owned(),
            valid: themes::THEMES
                .iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Chooses the next agent name from `theme`, skipping every candidate for which `is_used` is true.
///
/// Candidates are tried in this fixed order (see [`candidate`]): the theme's names tier by tier, then
/// `{adjective}-{scientist}` pairs (adjective-major), then `regular-1`, `regular-2`, and so on. The
/// reserved coordinator name `jake` is never returned. `is_used` receives each candidate exactly as
/// spelled and must answer case-insensitively.
///
/// The `regular-{n}` sequence is unbounded, so this returns as long as `is_used` reports only finitely
/// many names as used, which always holds for a predicate backed by a real tavern's list of names.
pub fn next_name(theme: &Theme, is_used: impl Fn(&str) -> bool) -> String {
    next_name_from(theme, 0, is_used).0
}

/// Like [`next_name`], but starts at candidate `from`, and also returns the chosen candidate's index.
///
/// A tavern never gives a name back, so once every candidate before some index is taken it stays
/// taken; starting there makes choosing a name cost the same for the thousandth agent as for the
/// first, instead of walking every name already handed out.
pub fn next_name_from(
    theme: &Theme,
    from: usize,
    is_used: impl Fn(&str) -> bool,
) -> (String, usize) {
    let mut index = from;
    loop {
        let name = candidate(theme, index);
        if !is_reserved(&name) && !is_used(&name) {
            return (name, index);
        }
        // Saturation keeps release and debug builds identical; reaching `usize::MAX` would need more
        // used names than fit in memory, so the sequence never actually stalls.
        index = index.saturating_add(1);
    }
}

/// The `index`-th name [`next_name`] would try, whether or not it is taken.
pub fn candidate(theme: &Theme, index: usize) -> String {
    let mut rest = index;
    for tier in theme.tiers {
        match tier.get(rest) {
            Some(name) => return (*name).to_owned(),
            None => rest -= tier.len(),
        }
    }
    let pairs = themes::ADJECTIVES.len() * themes::SCIENTISTS.len();
    if rest < pairs {
        let adjective = themes::ADJECTIVES[rest / themes::SCIENTISTS.len()];
        let scientist = themes::SCIENTISTS[rest % themes::SCIENTISTS.len()];
        return format!("{adjective}-{scientist}");
    }
    let mut name = String::new();
    // Writing into a `String` cannot fail; the `Result` exists only to satisfy `fmt::Write`.
    let _ = write!(name, "regular-{}", rest - pairs + 1);
    name
}

/// Reports whether `name` is withheld from agents regardless of what the caller has used.
fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}
