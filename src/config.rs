//! Configuration: raw values from files and the environment, validated once into [`Config`].
//!
//! Sources, lowest priority first: the compiled-in `config/default.toml`, the file given with
//! `--config`, `TAVERN_<SECTION>__<KEY>` environment variables, then command-line flags. `RawConfig`
//! only mirrors the files (unknown keys are errors that name the key); `Config` is resolved (absolute
//! paths, parsed model spec) and is passed explicitly, never read from a global.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tavern_plugin_api::AgentKind;

use crate::model::{KindModels, ModelSpec};

const DEFAULTS: &str = include_str!("../config/default.toml");

/// The most model calls that may run at once. Far above what any provider's rate limits allow, and far
/// below the semaphore's own limit (2^61), which panics rather than refusing.
pub const MAX_CONCURRENT_CALLS: usize = 10_000;

/// A configuration that could not be loaded. Each names the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file did not parse, or a value had the wrong type (the message names the key).
    #[error("configuration error: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but is not usable.
    #[error("configuration error: `{key}` {message}")]
    Invalid {
        /// The dotted key, e.g. `model.max_concurrent_calls`.
        key: &'static str,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The config file given with --config does not exist.
    #[error("configuration error: the config file {0} does not exist")]
    MissingFile(PathBuf),
    /// The config file given with --config cannot be read.
    #[error("configuration error: cannot read the config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML (a number too large for TOML's 64-bit integers included).
    #[error(
        "configuration error in {}{}{}: {message}; fix that line (config/default.toml lists every key)",
        file.display(),
        line.map(|l| format!(" line {l}")).unwrap_or_default(),
        key.as_ref().map(|k| format!(" (`{k}`)")).unwrap_or_default()
    )]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The 1-based line of the problem, when the parser says where it is.
        line: Option<usize>,
        /// The dotted key being set on that line, when there is one.
        key: Option<String>,
        /// What the TOML parser said.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tavern: RawTavern,
    model: RawModel,
    permissions: RawPermissions,
    discord: RawDiscord,
    verify: RawVerify,
    console: RawConsole,
    supervisor: RawSupervisor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTavern {
    project: String,
    theme: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    default: String,
    jake: String,
    mortal: String,
    drone: String,
    monitor: String,
    max_concurrent_calls: i64,
    max_retries: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    allow: Vec<String>,
    deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermissions {
    allow: Vec<String>,
    deny: Vec<String>,
    jake: RawRules,
    mortal: RawRules,
    drone: RawRules,
    monitor: RawRules,
}

/// A Discord id as written in a file (a number or a string; TOML integers hold every snowflake) or in
/// the environment (a string).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawId {
    Number(u64),
    Text(String),
}

/// A list of Discord ids: a TOML array, or one string of ids separated by commas (the environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawIds {
    List(Vec<RawId>),
    // One id from the environment, which the config crate reads as a number.
    One(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscord {
    guild_id: RawId,
    channel_id: RawId,
    allowed_users: RawIds,
    allowed_roles: RawIds,
    agent_users: RawIds,
    agent_roles: RawIds,
    approvers: RawIds,
    approver_roles: RawIds,
    signoff_by_other: bool,
    api_base_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    timeout_secs: f64,
    output_limit: i64,
    approve_own_commitments: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    user: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    max_restarts: i64,
    restart_window_secs: f64,
}

/// Values given on the command line, which win over every other source.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--project DIR`.
    pub project: Option<PathBuf>,
    /// `--model SPEC`.
    pub model: Option<String>,
}

/// Tool permission rules from the configuration, in permission-rule syntax (validated at load).
#[derive(Debug, Clone, Default)]
pub struct PermissionConfig {
    /// The project's allow rules, for every agent.
    pub allow: Vec<String>,
    /// The project's deny rules, for every agent.
    pub deny: Vec<String>,
    /// Each agent type's own (allow, deny) rules.
    pub kinds: Vec<(AgentKind, Vec<String>, Vec<String>)>,
}

/// The Discord surface's settings. Ids are Discord snowflakes; `0` means unset. The token is not here:
/// it is read from `DISCORD_TOKEN` only, so it never sits in a file Tavern reads or writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscordConfig {
    /// The guild (server) Tavern serves.
    pub guild_id: u64,
    /// Jake's main channel.
    pub channel_id: u64,
    /// Users who may talk to Jake (and, unless `agent_users`/`agent_roles` are set, to agents).
    pub allowed_users: Vec<u64>,
    /// Roles whose members may talk to Jake (and to agents, likewise).
    pub allowed_roles: Vec<u64>,
    /// Users who may talk to agents in their threads; empty means the `allowed_*` lists.
    pub agent_users: Vec<u64>,
    /// Roles whose members may talk to agents; empty means the `allowed_*` lists.
    pub agent_roles: Vec<u64>,
    /// Users whose reactions approve tool calls and sign commitments off, besides the requester.
    pub approvers: Vec<u64>,
    /// Roles whose members approve likewise.
    pub approver_roles: Vec<u64>,
    /// Whether a commitment's sign-off must come from someone other than the agent's requester.
    pub signoff_by_other: bool,
    /// The Discord HTTP API base (a proxy such as twilight-http-proxy or nirn-proxy); `None` for
    /// discord.com. Its `/gateway` answer decides the gateway address.
    pub api_base_url: Option<String>,
}

/// The model an agent type gets when nothing is configured: with an Anthropic key or base URL in the
/// environment, Jake, drones and monitors talk to the Anthropic API and mortals run in the Claude Code
/// CLI; without either, there is no model.
pub const DEFAULT_API_MODEL: &str = "claude-sonnet-5";

fn environment_default(kind: AgentKind) -> Option<String> {
    let set = |key: &str| std::env::var(key).is_ok_and(|v| !v.trim().is_empty());
    if !(set("ANTHROPIC_API_KEY") || set("ANTHROPIC_BASE_URL") || set("ANTHROPIC_AUTH_TOKEN")) {
        return None;
    }
    Some(match kind {
        AgentKind::Mortal => "claude-code".to_string(),
        AgentKind::Jake | AgentKind::Drone | AgentKind::Monitor => {
            format!("anthropic:{DEFAULT_API_MODEL}")
        }
    })
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The project directory (absolute).
    pub project: PathBuf,
    /// `<project>/.tavern`.
    pub tavern_dir: PathBuf,
    /// The naming theme id.
    pub theme: String,
    /// The model of each agent type, for agents summoned without one.
    pub models: KindModels,
    /// How many times a model API call is retried on 429, 529 and 5xx answers.
    pub max_retries: u32,
    /// Tool permission rules: the project's, then each agent type's.
    pub permissions: PermissionConfig,
    /// The Discord surface's settings (`tavern serve`).
    pub discord: DiscordConfig,
    /// The global cap on concurrent model calls.
    pub max_concurrent_calls: usize,
    /// The timeout of one assertion.
    pub verify_timeout: Duration,
    /// Bytes of assertion output kept.
    pub output_limit: usize,
    /// Whether an agent's own commitments wait for a person's approval before they count.
    pub approve_own_commitments: bool,
    /// The console user's name.
    pub console_user: String,
    /// Task restarts within `restart_window` before an agent is reaped.
    pub max_restarts: u32,
    /// The window in which restarts count toward the limit.
    pub restart_window: Duration,
}

impl Config {
    /// Loads the configuration from the defaults, an optional file, the environment and the overrides.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            check_syntax(file)?;
            builder = builder.add_source(config::File::from(file).required(true));
        }
        // Only TAVERN_<SECTION>__<KEY> variables are configuration; others that happen to start with
        // TAVERN_ (a secret such as TAVERN_DISCORD_TOKEN) are not, and must not be taken for unknown keys.
        let settings: config::Map<String, String> = std::env::vars()
            .filter(|(key, _)| {
                key.strip_prefix("TAVERN_")
                    .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("TAVERN")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(settings)),
        );
        let raw: RawConfig = builder.build()?.try_deserialize()?;
        Config::resolve(raw, overrides)
    }

    fn resolve(raw: RawConfig, overrides: &Overrides) -> Result<Config, ConfigError> {
        let cwd = std::env::current_dir().map_err(|e| ConfigError::Invalid {
            key: "tavern.project",
            message: format!("cannot be resolved: the current directory is unreadable ({e})"),
        })?;
        let project = match &overrides.project {
            Some(dir) => dir.clone(),
            None if raw.tavern.project.trim().is_empty() => cwd.clone(),
            None => PathBuf::from(raw.tavern.project.trim()),
        };
        let project = if project.is_absolute() {
            project
        } else {
            cwd.join(project)
        };
        if !project.is_dir() {
            return Err(ConfigError::Invalid {
                key: "tavern.project",
                message: format!(
                    "is {}, which is not a directory; give an existing project directory",
                    project.display()
                ),
            });
        }
        crate::naming::theme(&raw.tavern.theme).map_err(|e| ConfigError::Invalid {
            key: "tavern.theme",
            message: format!("is invalid: {e}"),
        })?;
        let models = resolve_models(&raw.model, overrides, &cwd)?;
        let max_retries =
            u32::try_from(raw.model.max_retries).map_err(|_| ConfigError::Invalid {
                key: "model.max_retries",
                message: format!("is {}; it must be zero or more", raw.model.max_retries),
            })?;
        let permissions = resolve_permissions(&raw.permissions)?;
        let discord = resolve_discord(&raw.discord)?;
        let max_concurrent_calls =
            positive(raw.model.max_concurrent_calls, "model.max_concurrent_calls")?;
        if max_concurrent_calls > MAX_CONCURRENT_CALLS {
            return Err(ConfigError::Invalid {
                key: "model.max_concurrent_calls",
                message: format!(
                    "is {max_concurrent_calls}; it must be from 1 to {MAX_CONCURRENT_CALLS}"
                ),
            });
        }
        let verify_timeout = seconds(raw.verify.timeout_secs, "verify.timeout_secs")?;
        let restart_window = seconds(
            raw.supervisor.restart_window_secs,
            "supervisor.restart_window_secs",
        )?;
        let output_limit = positive(raw.verify.output_limit, "verify.output_limit")?;
        let limit = crate::domain::state::MAX_RESTART_LIMIT;
        let max_restarts = u32::try_from(raw.supervisor.max_restarts)
            .ok()
            .filter(|n| *n <= limit)
            .ok_or_else(|| ConfigError::Invalid {
                key: "supervisor.max_restarts",
                message: format!(
                    "is {}; it must be from 0 to {limit}",
                    raw.supervisor.max_restarts
                ),
            })?;
        let console_user = if raw.console.user.trim().is_empty() {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| "you".to_string())
        } else {
            raw.console.user.trim().to_string()
        };
        Ok(Config {
            tavern_dir: project.join(".tavern"),
            project,
            theme: raw.tavern.theme,
            models,
            max_retries,
            permissions,
            discord,
            max_concurrent_calls,
            verify_timeout,
            output_limit,
            approve_own_commitments: raw.verify.approve_own_commitments,
            console_user,
            max_restarts,
            restart_window,
        })
    }
}

/// Each agent type's model: `--model` for all, else `model.<type>`, else `model.default`, else what the
/// environment makes available (see [`environment_default`]).
fn resolve_models(
    raw: &RawModel,
    overrides: &Overrides,
    cwd: &Path,
) -> Result<KindModels, ConfigError> {
    let parse = |text: &str, key: &'static str| {
        ModelSpec::parse(text, cwd)
            .map(|spec| spec.map(|s| s.to_string()))
            .map_err(|message| ConfigError::Invalid { key, message })
    };
    if let Some(spec) = &overrides.model {
        return Ok(KindModels::all(parse(spec, "--model")?));
    }
    // `none` as the default says "no model" for every type left empty, with no environment default.
    let no_default = raw.default.trim().eq_ignore_ascii_case("none");
    let default = parse(&raw.default, "model.default")?;
    // `none` says "no model" outright; empty says "not set here", and falls through.
    let kind =
        |text: &str, key: &'static str, kind: AgentKind| -> Result<Option<String>, ConfigError> {
            if text.trim().eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            Ok(parse(text, key)?
                .or_else(|| default.clone())
                .or_else(|| (!no_default).then(|| environment_default(kind)).flatten()))
        };
    Ok(KindModels {
        jake: kind(&raw.jake, "model.jake", AgentKind::Jake)?,
        mortal: kind(&raw.mortal, "model.mortal", AgentKind::Mortal)?,
        drone: kind(&raw.drone, "model.drone", AgentKind::Drone)?,
        monitor: kind(&raw.monitor, "model.monitor", AgentKind::Monitor)?,
    })
}

fn id(raw: &RawId, key: &'static str) -> Result<u64, ConfigError> {
    match raw {
        RawId::Number(n) => Ok(*n),
        RawId::Text(t) if t.trim().is_empty() => Ok(0),
        RawId::Text(t) => t.trim().parse().map_err(|_| ConfigError::Invalid {
            key,
            message: format!(
                "is {t:?}, which is not a Discord id (a number, as Discord's \"Copy ID\" gives)"
            ),
        }),
    }
}

fn ids(raw: &RawIds, key: &'static str) -> Result<Vec<u64>, ConfigError> {
    match raw {
        RawIds::List(list) => list.iter().map(|r| id(r, key)).collect(),
        RawIds::One(n) => Ok(vec![*n]),
        RawIds::Text(text) => text
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| id(&RawId::Text(t.to_string()), key))
            .collect(),
    }
}

fn resolve_discord(raw: &RawDiscord) -> Result<DiscordConfig, ConfigError> {
    let api_base_url = raw.api_base_url.trim().trim_end_matches('/').to_string();
    let web = api_base_url.starts_with("http://") || api_base_url.starts_with("https://");
    if !api_base_url.is_empty() && !web {
        return Err(ConfigError::Invalid {
            key: "discord.api_base_url",
            message: format!(
                "is {api_base_url:?}; it must be an http:// or https:// address (or empty for discord.com)"
            ),
        });
    }
    Ok(DiscordConfig {
        guild_id: id(&raw.guild_id, "discord.guild_id")?,
        channel_id: id(&raw.channel_id, "discord.channel_id")?,
        allowed_users: ids(&raw.allowed_users, "discord.allowed_users")?,
        allowed_roles: ids(&raw.allowed_roles, "discord.allowed_roles")?,
        agent_users: ids(&raw.agent_users, "discord.agent_users")?,
        agent_roles: ids(&raw.agent_roles, "discord.agent_roles")?,
        approvers: ids(&raw.approvers, "discord.approvers")?,
        approver_roles: ids(&raw.approver_roles, "discord.approver_roles")?,
        signoff_by_other: raw.signoff_by_other,
        api_base_url: (!api_base_url.is_empty()).then_some(api_base_url),
    })
}

fn resolve_permissions(raw: &RawPermissions) -> Result<PermissionConfig, ConfigError> {
    let check = |rules: &[String], key: &'static str| -> Result<Vec<String>, ConfigError> {
        rules
            .iter()
            .map(|text| {
                crate::permission::Rule::parse(text)
                    .map(|rule| rule.to_string())
                    .map_err(|e| ConfigError::Invalid {
                        key,
                        message: format!("has a bad rule: {e}"),
                    })
            })
            .collect()
    };
    Ok(PermissionConfig {
        allow: check(&raw.allow, "permissions.allow")?,
        deny: check(&raw.deny, "permissions.deny")?,
        kinds: vec![
            (
                AgentKind::Jake,
                check(&raw.jake.allow, "permissions.jake.allow")?,
                check(&raw.jake.deny, "permissions.jake.deny")?,
            ),
            (
                AgentKind::Mortal,
                check(&raw.mortal.allow, "permissions.mortal.allow")?,
                check(&raw.mortal.deny, "permissions.mortal.deny")?,
            ),
            (
                AgentKind::Drone,
                check(&raw.drone.allow, "permissions.drone.allow")?,
                check(&raw.drone.deny, "permissions.drone.deny")?,
            ),
            (
                AgentKind::Monitor,
                check(&raw.monitor.allow, "permissions.monitor.allow")?,
                check(&raw.monitor.deny, "permissions.monitor.deny")?,
            ),
        ],
    })
}

/// Parses the file as TOML first, so a syntax error names the line and the key being set there (the
/// `config` crate's own message for, say, an integer too large for TOML names neither).
fn check_syntax(file: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let Err(e) = toml::from_str::<toml::Table>(&text) else {
        return Ok(());
    };
    let at = e.span().map(|span| span.start.min(text.len()));
    Err(ConfigError::Syntax {
        file: file.to_path_buf(),
        line: at.map(|at| text[..at].matches('\n').count() + 1),
        key: at.and_then(|at| key_at(&text, at)),
        message: e.message().trim().to_string(),
    })
}

/// The dotted key assigned on the line holding byte `at`: the nearest `[table]` header above it and the
/// bare key before `=` on that line.
fn key_at(text: &str, at: usize) -> Option<String> {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        // `[table]` or `[[array]]`, maybe followed by a comment.
        .and_then(|header| {
            let inner = header.trim_start_matches('[');
            inner.find(']').map(|end| inner[..end].trim().to_string())
        });
    Some(match table {
        Some(table) if !table.is_empty() => format!("{table}.{key}"),
        _ => key.to_string(),
    })
}

/// A positive, finite number of seconds that fits a `Duration`.
fn seconds(value: f64, key: &'static str) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            // Rust prints every digit of a large float; 1e300 is how a person wrote it.
            let shown = if value.abs() >= 1e15 {
                format!("{value:e}")
            } else {
                value.to_string()
            };
            ConfigError::Invalid {
                key,
                message: format!(
                    "is {shown}; it must be a positive number of seconds (at most about 10^19)"
                ),
            }
        })
}

fn positive(value: i64, key: &'static str) -> Result<usize, ConfigError> {
    usize::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ConfigError::Invalid {
            key,
            message: format!("is {value}; it must be a whole number of at least 1"),
        })
}

#[cfg(test)]
mod tests;
