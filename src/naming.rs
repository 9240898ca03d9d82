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
/// Candidates are tried in this fixed order: the theme's names tier by tier, then
/// `{adjective}-{scientist}` pairs (adjective-major), then `regular-1`, `regular-2`, and so on. The
/// reserved coordinator name `jake` is never returned. `is_used` receives each candidate exactly as
/// spelled and must answer case-insensitively.
///
/// The `regular-{n}` sequence is unbounded, so this returns as long as `is_used` reports only finitely
/// many names as used, which always holds for a predicate backed by a real tavern's list of names.
pub fn next_name(theme: &Theme, is_used: impl Fn(&str) -> bool) -> String {
    let available = |name: &str| !is_reserved(name) && !is_used(name);

    if let Some(name) = theme
        .tiers
        .iter()
        .flat_map(|tier| tier.iter())
        .find(|name| available(name))
    {
        return (*name).to_owned();
    }

    // One buffer is reused for every generated candidate because the fallback space is a few hundred
    // names and the common case walks most of it once the theme is exhausted.
    let mut candidate = String::new();
    for adjective in themes::ADJECTIVES {
        for scientist in themes::SCIENTISTS {
            candidate.clear();
            candidate.push_str(adjective);
            candidate.push('-');
            candidate.push_str(scientist);
            if available(&candidate) {
                return candidate;
            }
        }
    }

    let mut n: u64 = 1;
    loop {
        candidate.clear();
        // Writing into a `String` cannot fail; the `Result` exists only to satisfy `fmt::Write`.
        let _ = write!(candidate, "regular-{n}");
        if available(&candidate) {
            return candidate;
        }
        // Saturation keeps release and debug builds identical; reaching `u64::MAX` would need more
        // used names than fit in memory, so the sequence never actually stalls.
        n = n.saturating_add(1);
    }
}

/// Reports whether `name` is withheld from agents regardless of what the caller has used.
fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}
