//! Permission rules: whether an agent may use a tool, decided by Tavern in Claude Code's rule syntax.
//!
//! An agent runs inside the Claude Code CLI, and when it wants a tool the CLI asks Tavern
//! (`can_use_tool` with the tool's name and JSON input). Tavern, not the CLI, owns that decision: nobody
//! watches the CLI's terminal, so its own interactive prompts must never be the thing that answers. This
//! module is the pure core of the decision. It parses rules written in the Claude Code syntax
//! (`Bash(cargo test:*)`, `Write(src/**)`, `WebFetch(domain:docs.rs)`, `mcp__github`), matches them against
//! a tool call, and combines layers of rules (the agent type's defaults, the project's config, and the
//! "always" answers a person gave one agent) into a [`Decision`]. It performs no IO: paths are normalised
//! lexically and never looked up on disk, so a decision depends only on its arguments and can be replayed.
//!
//! # Semantics in brief
//!
//! - A deny rule anywhere beats every allow rule; otherwise any matching allow rule allows; otherwise a
//!   person is asked ([`Rules::decide`]).
//! - Allow rules must cover the *whole* call ([`Rule::matches`]); deny rules need only cover *some part*
//!   of it ([`Rule::matches_any_part`]). The difference matters for compound shell commands: a prefix allow
//!   rule such as `Bash(git status:*)` never matches `git status && rm -rf ~`, whereas a deny rule
//!   `Bash(rm:*)` does.
//! - A rule names one tool exactly: `Edit(src/**)` says nothing about `Write`, so each file tool gets its
//!   own rules. (Claude Code lets `Edit` rules stand for every editing tool; Tavern keeps the tool names
//!   apart so that a rule means exactly what it says.)
//! - Path patterns are anchored at the project root whether or not they start with `/`; `//` starts an
//!   absolute filesystem pattern; `~/` is rejected. To match at any depth, write `**/name`.
//!
//! Deny rules on Bash commands are string matches, not a sandbox: `sh -c 'rm -rf /'` or `env rm -rf /`
//! slip past `Bash(rm:*)`. They stop honest mistakes; isolation against a hostile agent lives elsewhere.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Component, Path};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use thiserror::Error;

mod glob;

#[cfg(test)]
mod tests;

use glob::{locate, Glob, Location};

/// Tools whose specifier is a path pattern matched against the file the call would touch.
const PATH_TOOLS: &[&str] = &["Read", "Write", "Edit", "MultiEdit", "NotebookEdit"];

/// Input fields that name the file of a path tool, in the order they are consulted.
const PATH_FIELDS: &[&str] = &["file_path", "notebook_path"];

/// Input fields a specifier for any other tool is matched against, in the order they are consulted.
const GENERIC_FIELDS: &[&str] = &["command", "file_path", "path", "url", "pattern"];

/// The fields of [`GENERIC_FIELDS`] that hold a file path and so are made project-relative first.
const GENERIC_PATH_FIELDS: &[&str] = &["file_path", "path"];

/// Every MCP tool name starts with this, followed by `<server>__<tool>`.
const MCP_PREFIX: &str = "mcp__";

/// Characters that end one simple shell command and start another, or redirect or substitute output.
///
/// Any of them makes a command compound. The list deliberately ignores quoting: `echo "a;b"` counts as
/// compound. That only ever costs a question to a person (a prefix allow rule stops matching) or a
/// spurious extra part for deny rules to inspect, never a silent allow. Parentheses are included because
/// they open subshells, and `&` alone because it runs the left side in the background.
const SHELL_OPERATORS: &[char] = &['&', '|', ';', '`', '\n', '\r', '>', '<', '(', ')'];

/// Characters a compound command is additionally split on when looking for parts that a deny rule
/// matches, so that `{ rm -rf /; }` and `! rm -rf /` still expose a part starting with `rm`.
const DENY_SPLIT_EXTRA: &[char] = &['{', '}', '!'];

/// One permission rule in the Claude Code syntax, parsed once so matching never re-reads the text.
///
/// [`Display`](fmt::Display) prints the rule back in the same syntax, and serde stores it as that string,
/// so configuration files and the log hold the text a person would write. Parsing the printed form gives
/// back an equal rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The tool name as written: `Bash`, `Write`, `mcp__github`, `mcp__github__*`, `mcp__github__get_issue`.
    tool: String,
    /// What the parenthesised specifier says, interpreted for this tool.
    spec: Spec,
}

/// The meaning of a rule's specifier, decided by the tool it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Spec {
    /// No specifier: every use of the tool (for an MCP server rule, of every tool on that server).
    Any,
    /// `Bash(cmd)`: exactly this command, compared after trimming.
    BashExact(String),
    /// `Bash(prefix:*)`: commands whose first words are exactly `prefix`.
    BashPrefix(String),
    /// `Write(glob)` and the other [`PATH_TOOLS`]: the touched file matches the glob.
    Path(Glob),
    /// `WebFetch(domain:host)`, stored lower-cased: the URL's host is `host` or a subdomain of it.
    Domain(String),
    /// `Name(glob)` for a tool whose input this module does not know: some [`GENERIC_FIELDS`] matches.
    Field(Glob),
}

/// How much of a call a rule has to cover to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The rule covers everything the call does; used for allow rules.
    Whole,
    /// The rule covers something the call does; used for deny rules.
    AnyPart,
}

/// A rule that could not be parsed, naming the text and what is wrong with it.
///
/// Handling: rules come from configuration and from people, so the error is shown to whoever wrote the
/// rule, and the rule is not used. It is never a reason to allow anything.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid permission rule `{rule}`: {problem}")]
pub struct RuleError {
    /// The rule text exactly as it was given.
    pub rule: String,
    /// What is wrong with it.
    pub problem: RuleProblem,
}

/// The ways a rule's text can be wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleProblem {
    /// The text is empty or only whitespace.
    #[error("the rule is empty")]
    Empty,
    /// The text starts with `(`, so no tool is named.
    #[error("the tool name is empty")]
    EmptyToolName,
    /// The tool name contains characters no tool name has.
    #[error("`{0}` is not a tool name (tool names use letters, digits, `_` and `-`)")]
    InvalidToolName(String),
    /// A `(` opens the specifier but no `)` closes it.
    #[error("unbalanced parenthesis: the specifier is opened with `(` but never closed with `)`")]
    UnclosedParenthesis,
    /// A `)` appears without a `(` before it.
    #[error("unbalanced parenthesis: `)` without a matching `(`")]
    UnopenedParenthesis,
    /// Something follows the `)` that closes the specifier.
    #[error("unexpected text `{0}` after the closing parenthesis")]
    TrailingText(String),
    /// The parentheses are empty; the bare tool name is how to cover every use.
    #[error("`{0}()` has an empty specifier; write `{0}` to cover every use of the tool")]
    EmptySpecifier(String),
    /// `Bash(:*)` names no command prefix.
    #[error("`:*` needs a command prefix before it, as in `Bash(cargo test:*)`")]
    EmptyPrefix,
    /// A path pattern starts with `~/`; the home directory is not known to this pure module.
    #[error("home-directory patterns (`~/`) are not supported; use an absolute pattern starting with `//`")]
    HomeDirUnsupported,
    /// A path pattern contains a `..` segment, which could only ever point outside the project.
    #[error("`..` is not allowed in a path pattern; use an absolute pattern starting with `//` for paths outside the project")]
    ParentDirInPattern,
    /// A pattern has no segments left once slashes and `.` are removed, as in `Write(/)`.
    #[error("the path pattern names no path")]
    EmptyPattern,
    /// A pattern ends with a `\` that escapes nothing.
    #[error("the pattern ends with a lone `\\` that escapes nothing")]
    DanglingEscape,
    /// A `WebFetch` specifier is not of the form `domain:<host>`.
    #[error("`WebFetch` rules take `domain:<host>`, as in `WebFetch(domain:docs.rs)`")]
    WebFetchSpecifier,
    /// The host of a `WebFetch(domain:…)` rule is empty or contains characters no host has.
    #[error("`{0}` is not a domain name")]
    InvalidDomain(String),
    /// An MCP rule has a specifier; MCP rules select by name only.
    #[error("MCP rules name a server or a tool and take no specifier")]
    McpSpecifier,
    /// An MCP tool name is malformed.
    #[error("MCP rules look like `mcp__server`, `mcp__server__*` or `mcp__server__tool`")]
    InvalidMcpName,
}

impl Rule {
    /// Parses one rule written in the Claude Code permission syntax.
    ///
    /// # Errors
    ///
    /// Returns a [`RuleError`] naming the text when the parentheses are unbalanced, the tool name is
    /// missing or malformed, the specifier is empty, or the specifier does not fit the tool (see
    /// [`RuleProblem`]).
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        parse_rule(text).map_err(|problem| RuleError {
            rule: text.to_owned(),
            problem,
        })
    }

    /// The tool name the rule was written with, e.g. `Bash` or `mcp__github__*`.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// Whether this rule covers the whole call, which is what an allow rule must do.
    ///
    /// `project` is the project root the agent works in; file paths in `input` are made relative to it.
    /// A compound Bash command (one containing shell operators) matches only a bare `Bash` rule or an
    /// exact rule with the very same text, never a prefix rule, because a prefix approves the start of a
    /// command and not whatever is chained after it.
    pub fn matches(&self, tool: &str, input: &Value, project: &Path) -> bool {
        self.matches_reach(tool, input, project, Reach::Whole)
    }

    /// Whether this rule covers some part of the call, which is all a deny rule needs.
    ///
    /// Compound Bash commands are split at shell operators and the rule is tried against every part (and
    /// the whole), with runs of whitespace collapsed. Tools with several candidate input fields match if
    /// any of them does.
    pub fn matches_any_part(&self, tool: &str, input: &Value, project: &Path) -> bool {
        self.matches_reach(tool, input, project, Reach::AnyPart)
    }

    fn matches_reach(&self, tool: &str, input: &Value, project: &Path, reach: Reach) -> bool {
        if !self.covers_tool(tool) {
            return false;
        }
        match &self.spec {
            Spec::Any => true,
            Spec::BashExact(exact) => string_field(input, "command")
                .is_some_and(|command| bash_exact_matches(exact, command, reach)),
            Spec::BashPrefix(prefix) => string_field(input, "command")
                .is_some_and(|command| bash_prefix_matches(prefix, command, reach)),
            Spec::Path(glob) => candidate_fields(input, PATH_FIELDS, reach)
                .any(|(_, path)| glob.matches_location(&locate(path, project))),
            Spec::Domain(domain) => string_field(input, "url")
                .and_then(url_host)
                .is_some_and(|host| host_in_domain(&host, domain)),
            Spec::Field(glob) => {
                candidate_fields(input, GENERIC_FIELDS, reach).any(|(field, value)| {
                    if GENERIC_PATH_FIELDS.contains(&field) {
                        glob.matches_location(&locate(value, project))
                    } else {
                        glob.matches_raw(value)
                    }
                })
            }
        }
    }

    /// Whether the rule's tool name selects `tool`, including MCP server-wide rules.
    fn covers_tool(&self, tool: &str) -> bool {
        if let Some(rest) = self.tool.strip_prefix(MCP_PREFIX) {
            // `mcp__server__*` covers the server's tools; `mcp__server` does too, and is the form
            // Claude Code documents. A rule with a tool part (`mcp__server__tool`) is an exact name.
            let server_wide = match rest.strip_suffix("__*") {
                Some(server) => Some(server),
                None if !rest.contains("__") => Some(rest),
                None => None,
            };
            if let Some(server) = server_wide {
                let on_server = tool
                    .strip_prefix(MCP_PREFIX)
                    .and_then(|t| t.strip_prefix(server))
                    .is_some_and(|t| t.starts_with("__"));
                return on_server || tool == self.tool;
            }
        }
        tool == self.tool
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tool = &self.tool;
        match &self.spec {
            Spec::Any => write!(f, "{tool}"),
            Spec::BashExact(command) => write!(f, "{tool}({command})"),
            Spec::BashPrefix(prefix) => write!(f, "{tool}({prefix}:*)"),
            Spec::Path(glob) | Spec::Field(glob) => write!(f, "{tool}({})", glob.text),
            Spec::Domain(domain) => write!(f, "{tool}(domain:{domain})"),
        }
    }
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Rule, RuleError> {
        Rule::parse(text)
    }
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rule, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rule::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One layer of rules, or several merged: the allow list and the deny list.
///
/// In configuration this is `allow = ["Bash(cargo test:*)", …]` and `deny = […]`; either may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rules {
    /// Rules that let a call through when no deny rule matches it.
    pub allow: Vec<Rule>,
    /// Rules that refuse a call, whatever any allow rule says.
    pub deny: Vec<Rule>,
}

/// What the rules say about one tool call, with the rule that decided so people can see why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// An allow rule covers the whole call and no deny rule touches it.
    Allow(Rule),
    /// A deny rule touches some part of the call.
    Deny(Rule),
    /// No rule covers the call; a person must answer.
    Ask,
}

impl Decision {
    /// The rule that decided, or `None` when a person has to be asked.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Decision::Allow(rule) | Decision::Deny(rule) => Some(rule),
            Decision::Ask => None,
        }
    }
}

impl Rules {
    /// Decides one call: the first matching deny rule wins, then the first matching allow rule, else ask.
    ///
    /// Deny rules are tried with [`Rule::matches_any_part`] and allow rules with [`Rule::matches`]. To
    /// let a deny rule in one layer beat an allow rule in another, decide on [`Rules::merged`] layers
    /// rather than layer by layer.
    pub fn decide(&self, tool: &str, input: &Value, project: &Path) -> Decision {
        if let Some(rule) = self
            .deny
            .iter()
            .find(|rule| rule.matches_any_part(tool, input, project))
        {
            return Decision::Deny(rule.clone());
        }
        if let Some(rule) = self
            .allow
            .iter()
            .find(|rule| rule.matches(tool, input, project))
        {
            return Decision::Allow(rule.clone());
        }
        Decision::Ask
    }

    /// Concatenates layers in order (earlier layers' rules first), dropping rules already present.
    ///
    /// Order only affects which rule is reported when several match; precedence is the same whatever the
    /// order, because every deny rule is tried before any allow rule.
    pub fn merged(layers: &[&Rules]) -> Rules {
        let mut merged = Rules::default();
        for layer in layers {
            push_new(&mut merged.allow, &layer.allow);
            push_new(&mut merged.deny, &layer.deny);
        }
        merged
    }
}

/// Appends the rules of `from` that `into` does not hold yet.
fn push_new(into: &mut Vec<Rule>, from: &[Rule]) {
    for rule in from {
        if !into.contains(rule) {
            into.push(rule.clone());
        }
    }
}

/// The rule a person's "always" answer adds for one agent, narrow enough to mean what they approved.
///
/// - Bash: `Bash(<first words>:*)`, using the first two words when the second looks like a subcommand
///   (letters, digits and `-`, not starting with `-`) and the first word alone otherwise, so
///   `cargo test --all` gives `Bash(cargo test:*)` and `ls -la` gives `Bash(ls:*)`. A compound command,
///   or one whose leading words contain quoting, expansion or glob characters, gives the exact command
///   instead, because a prefix of such a command does not say what will run.
/// - Read, Write, Edit, MultiEdit, NotebookEdit: the exact file, relative to the project
///   (`Write(src/main.rs)`), or absolute (`Write(//etc/hosts)`) when it lies outside the project. Glob
///   characters in the name are escaped. A directory-wide rule would approve files nobody looked at.
/// - WebFetch: `WebFetch(domain:<host>)` for the URL's host (which also covers its subdomains).
/// - MCP tools: the exact tool, `mcp__server__tool`, never the whole server.
/// - Any other tool: the bare tool name.
///
/// Returns `None` when no narrow rule exists: the input lacks the field the rule would be built from
/// (a Bash call without `command`, a file tool without a path, a URL without a host), the tool name
/// cannot be written as a rule, or the rule's text would not parse back to the same rule (for instance
/// an exact command ending in `:*`). The caller then treats the answer as "yes, this once".
pub fn always_rule(tool: &str, input: &Value, project: &Path) -> Option<Rule> {
    let spec = if tool == "Bash" {
        bash_always_spec(string_field(input, "command")?)?
    } else if PATH_TOOLS.contains(&tool) {
        let (_, path) = candidate_fields(input, PATH_FIELDS, Reach::Whole).next()?;
        Spec::Path(exact_path_glob(&locate(path, project))?)
    } else if tool == "WebFetch" {
        Spec::Domain(url_host(string_field(input, "url")?)?)
    } else {
        // An MCP tool name without a tool part, or ending in `__*`, would read as a server-wide rule.
        if let Some(rest) = tool.strip_prefix(MCP_PREFIX) {
            if !rest.contains("__") || rest.ends_with("__*") {
                return None;
            }
        }
        Spec::Any
    };
    let rule = Rule {
        tool: tool.to_owned(),
        spec,
    };
    // The log and the agent's rule list store the text, so only a rule that survives the trip through
    // its text is offered; anything else would mean something different once read back.
    match Rule::parse(&rule.to_string()) {
        Ok(parsed) if parsed == rule => Some(rule),
        _ => None,
    }
}

/// Builds the Bash specifier for an "always" answer to `command`.
fn bash_always_spec(command: &str) -> Option<Spec> {
    let command = command.trim();
    if command.is_empty() {
        return None;
    }
    if is_compound(command) {
        return Some(Spec::BashExact(command.to_owned()));
    }
    let mut words = command.split_whitespace();
    let first = words.next()?;
    // A prefix of a command that runs arbitrary code, deletes, or walks the file system approves far
    // more than the call a person looked at (`Bash(rm:*)`, `Bash(python:*)`, `Bash(find:*)`): those
    // get the exact command.
    if WIDE_COMMANDS.contains(&first.rsplit('/').next().unwrap_or(first)) {
        return Some(Spec::BashExact(command.to_owned()));
    }
    let prefix = match words.next() {
        Some(second) if is_subcommand_like(second) => format!("{first} {second}"),
        _ => first.to_owned(),
    };
    if !prefix.split(' ').all(is_plain_word) {
        return Some(Spec::BashExact(command.to_owned()));
    }
    Some(Spec::BashPrefix(prefix))
}

/// Commands whose arguments decide everything they do: interpreters, shells, deleters and walkers.
const WIDE_COMMANDS: [&str; 27] = [
    "sh", "bash", "zsh", "dash", "fish", "python", "python3", "node", "deno", "bun", "perl",
    "ruby", "php", "rm", "rmdir", "mv", "dd", "find", "xargs", "env", "sudo", "su", "eval", "exec",
    "chmod", "chown", "curl",
];

/// Whether a word reads like a subcommand (`test`, `run-tests`) rather than a flag or an argument.
fn is_subcommand_like(word: &str) -> bool {
    !word.starts_with('-') && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether a word means the same to the shell whatever the environment: no quoting, expansion or globs.
fn is_plain_word(word: &str) -> bool {
    word.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./+:@%,".contains(c))
}

/// Builds a glob that matches exactly the located file, preferring the project-relative form.
fn exact_path_glob(location: &Location) -> Option<Glob> {
    let text = match (&location.relative, &location.absolute) {
        // The project root itself is not a file anyone approved writing.
        (Some(relative), _) if relative.is_empty() => return None,
        (Some(relative), _) => escape_segments(relative),
        (None, Some(absolute)) if !absolute.is_empty() => {
            format!("//{}", escape_segments(absolute))
        }
        (None, _) => return None,
    };
    Glob::compile(&text).ok()
}

/// Joins path segments with `/`, escaping the characters the glob syntax gives meaning to.
fn escape_segments(segments: &[String]) -> String {
    let mut text = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            text.push('/');
        }
        for (j, c) in segment.chars().enumerate() {
            // A leading `~` would read as the home directory; elsewhere it is an ordinary character.
            if matches!(c, '*' | '?' | '\\') || (i == 0 && j == 0 && c == '~') {
                text.push('\\');
            }
            text.push(c);
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------------

fn parse_rule(text: &str) -> Result<Rule, RuleProblem> {
    let text = text.trim();
    if text.is_empty() {
        return Err(RuleProblem::Empty);
    }
    // The specifier runs from the first `(` to the final `)`, so it may itself contain parentheses
    // (`Bash(echo (hi))`), as in Claude Code.
    let (tool, inner) = match text.find('(') {
        None => (text, None),
        Some(open) => {
            let Some(close) = text.rfind(')').filter(|&close| close > open) else {
                return Err(RuleProblem::UnclosedParenthesis);
            };
            let trailing = &text[close + 1..];
            if !trailing.is_empty() {
                return Err(RuleProblem::TrailingText(trailing.to_owned()));
            }
            (&text[..open], Some(&text[open + 1..close]))
        }
    };
    if tool.contains(')') {
        return Err(RuleProblem::UnopenedParenthesis);
    }
    validate_tool_name(tool)?;
    let Some(inner) = inner else {
        return Ok(Rule {
            tool: tool.to_owned(),
            spec: Spec::Any,
        });
    };
    let inner = inner.trim();
    if inner.is_empty() {
        return Err(RuleProblem::EmptySpecifier(tool.to_owned()));
    }
    let spec = if tool.starts_with(MCP_PREFIX) {
        return Err(RuleProblem::McpSpecifier);
    } else if tool == "Bash" {
        match inner.strip_suffix(":*") {
            Some(prefix) if prefix.trim().is_empty() => return Err(RuleProblem::EmptyPrefix),
            Some(prefix) => Spec::BashPrefix(prefix.trim().to_owned()),
            None => Spec::BashExact(inner.to_owned()),
        }
    } else if PATH_TOOLS.contains(&tool) {
        Spec::Path(Glob::compile(inner)?)
    } else if tool == "WebFetch" {
        let domain = inner
            .strip_prefix("domain:")
            .ok_or(RuleProblem::WebFetchSpecifier)?;
        Spec::Domain(parse_domain(domain.trim())?)
    } else {
        Spec::Field(Glob::compile(inner)?)
    };
    Ok(Rule {
        tool: tool.to_owned(),
        spec,
    })
}

fn validate_tool_name(tool: &str) -> Result<(), RuleProblem> {
    if tool.is_empty() {
        return Err(RuleProblem::EmptyToolName);
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if let Some(rest) = tool.strip_prefix(MCP_PREFIX) {
        // Split into server and tool parts; `*` may only stand alone as the last part, after a server.
        let parts: Vec<&str> = rest.split("__").collect();
        let last = parts.len() - 1;
        let valid = parts.iter().enumerate().all(|(i, part)| {
            (i == last && i > 0 && *part == "*")
                || (!part.is_empty() && part.chars().all(name_char))
        });
        return if valid {
            Ok(())
        } else {
            Err(RuleProblem::InvalidMcpName)
        };
    }
    if tool.chars().all(name_char) {
        Ok(())
    } else {
        Err(RuleProblem::InvalidToolName(tool.to_owned()))
    }
}

/// Checks a `WebFetch` domain and returns it in the form hosts are compared in.
fn parse_domain(domain: &str) -> Result<String, RuleProblem> {
    let canonical = domain.trim_end_matches('.').to_ascii_lowercase();
    let host_char = |c: char| c.is_ascii_alphanumeric() || "-_.[]:".contains(c);
    if canonical.is_empty() || canonical.starts_with('.') || !canonical.chars().all(host_char) {
        return Err(RuleProblem::InvalidDomain(domain.to_owned()));
    }
    Ok(canonical)
}

// ---------------------------------------------------------------------------------------------------
// Bash commands
// ---------------------------------------------------------------------------------------------------

/// Whether the command chains, pipes, redirects or substitutes anything (see [`SHELL_OPERATORS`]).
fn is_compound(command: &str) -> bool {
    command.contains(SHELL_OPERATORS)
}

/// The command with every run of whitespace replaced by one space, for lenient deny comparisons.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The whole command and each simple command in it, whitespace collapsed, for deny rules to inspect.
///
/// Splitting also happens for commands that are not compound, because [`DENY_SPLIT_EXTRA`] characters
/// such as the leading `!` of `! rm -rf /` hide a command's start without chaining anything.
fn deny_candidates(command: &str) -> Vec<String> {
    let mut candidates = vec![collapse_whitespace(command)];
    candidates.extend(
        command
            .split(|c| SHELL_OPERATORS.contains(&c) || DENY_SPLIT_EXTRA.contains(&c))
            .map(collapse_whitespace)
            .filter(|part| !part.is_empty()),
    );
    candidates
}

fn bash_exact_matches(exact: &str, command: &str, reach: Reach) -> bool {
    match reach {
        // Exact equality is safe even for a compound command: nothing can be appended to it.
        Reach::Whole => command.trim() == exact,
        Reach::AnyPart => {
            let exact = collapse_whitespace(exact);
            deny_candidates(command).contains(&exact)
        }
    }
}

fn bash_prefix_matches(prefix: &str, command: &str, reach: Reach) -> bool {
    match reach {
        Reach::Whole => !is_compound(command) && starts_with_words(command.trim(), prefix),
        Reach::AnyPart => {
            let prefix = collapse_whitespace(prefix);
            deny_candidates(command)
                .iter()
                .any(|part| starts_with_words(part, &prefix))
        }
    }
}

/// Whether `command` is `prefix` or `prefix` followed by whitespace, so `cargo test` does not cover
/// `cargo testx`.
fn starts_with_words(command: &str, prefix: &str) -> bool {
    command
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

// ---------------------------------------------------------------------------------------------------
// Tool input
// ---------------------------------------------------------------------------------------------------

fn string_field<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

/// The string fields of `input` among `fields` that a rule is tried against, with their names.
///
/// An allow rule sees only the first field present, the one that says what the call acts on, so that a
/// harmless secondary field cannot vouch for it. A deny rule sees every field present.
fn candidate_fields<'a>(
    input: &'a Value,
    fields: &'a [&'a str],
    reach: Reach,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let present = fields
        .iter()
        .filter_map(move |&field| string_field(input, field).map(|value| (field, value)));
    let limit = match reach {
        Reach::Whole => 1,
        Reach::AnyPart => fields.len(),
    };
    present.take(limit)
}

// ---------------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------------

/// The lower-cased host of a URL, without user information, port or trailing dot.
///
/// This is deliberately small rather than a full URL parser, and errs toward the host a client would
/// really contact: the authority ends at `/`, `?`, `#` or `\` (browsers treat `\` as `/`), and user
/// information up to the last `@` is dropped, so `https://docs.rs@evil.com/` has the host `evil.com`.
fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => rest,
        _ => url,
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_and_port.starts_with('[') {
        // An IPv6 literal keeps its brackets; the port, if any, follows the `]`.
        let end = host_and_port.find(']')?;
        &host_and_port[..=end]
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn is_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Whether `host` is `domain` or one of its subdomains; IP addresses have no subdomains.
fn host_in_domain(host: &str, domain: &str) -> bool {
    if host == domain {
        return true;
    }
    let is_ip = host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok();
    !is_ip
        && host
            .strip_suffix(domain)
            .is_some_and(|label| label.ends_with('.'))
}
