//! The Discord surface (`tavern serve`): Jake in a team's main channel, a thread per agent, replies and
//! reactions from the people allowed to give them. The only module that names serenity.
//!
//! Three parts, each in its own file:
//! - [`inbound`] turns what people do on Discord (messages, reactions, slash commands) into intents,
//!   after the access check: text from anyone not allowed never reaches an agent or a model;
//! - [`projector`] turns Tavern's durable events into Discord writes: threads, posts, headers;
//! - [`outbound`] is the one path every write takes, with per-channel and global budgets, retries,
//!   coalesced header edits and order kept per channel (serenity's own ratelimiter is disabled, because
//!   it ignores the API base address proxies and tests need).
//!
//! [`api`] implements the outbound queue's [`outbound::DiscordApi`] over serenity's HTTP client.

pub mod api;
pub mod commands;
pub mod inbound;
pub mod outbound;
pub mod projector;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use poise::serenity_prelude as serenity;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::DiscordConfig;
use crate::executor::Tavern;
use crate::model::secret::Secret;

/// Why the Discord surface could not run. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// No token in the environment.
    #[error("DISCORD_TOKEN is not set: create a bot at https://discord.com/developers/applications, copy its token, and export DISCORD_TOKEN before `tavern serve`")]
    MissingToken,
    /// The token is not shaped like a bot token, so no request could carry it.
    #[error("DISCORD_TOKEN is malformed: a bot token is three parts separated by dots, in visible ASCII characters with no spaces; copy it again from the developer portal (Bot → Reset Token)")]
    MalformedToken,
    /// A required setting is missing.
    #[error("`discord.{0}` is not set: put the id (Developer Mode → Copy ID) in the [discord] table of your config file, or set TAVERN_DISCORD__{1}")]
    MissingSetting(&'static str, &'static str),
    /// Discord refused the token.
    #[error(
        "Discord refused the bot token (DISCORD_TOKEN): check that it is the bot's current token"
    )]
    BadToken,
    /// Discord refused the intents the bot asked for.
    #[error("Discord refused the bot's gateway intents: enable the Message Content intent for the bot in the developer portal (Bot → Privileged Gateway Intents)")]
    Intents,
    /// The main channel cannot be used.
    #[error("the main channel {channel} cannot be used: {reason}; check `discord.channel_id` and that the bot is in the server with View Channel, Send Messages, Create Public Threads and Add Reactions")]
    Channel {
        /// The channel id.
        channel: u64,
        /// What Discord said.
        reason: String,
    },
    /// The client failed.
    #[error("the Discord connection failed: {0}")]
    Client(String),
}

/// What every part of the surface shares: the tavern, the settings, the outbound queue, and the links
/// between Discord messages and what they stand for.
#[derive(Clone)]
pub struct Surface {
    /// The tavern.
    pub tavern: Tavern,
    /// The settings.
    pub config: Arc<DiscordConfig>,
    /// The one outbound path.
    pub outbound: outbound::Outbound,
    /// Discord message id → what a reaction on it answers.
    pub links: Arc<Mutex<std::collections::HashMap<u64, projector::Link>>>,
    /// When each channel last got an "you are not allowed" notice (at most one per hour).
    pub notices: Arc<Mutex<std::collections::HashMap<u64, std::time::Instant>>>,
    /// The latest interactions seen, so a redelivered slash command is not answered twice.
    pub interactions: Arc<Mutex<RecentIds>>,
}

/// The last [`RecentIds::CAPACITY`] ids seen, oldest first out.
#[derive(Default)]
pub struct RecentIds {
    order: std::collections::VecDeque<u64>,
    set: std::collections::HashSet<u64>,
}

impl RecentIds {
    /// How many ids are remembered; far more than a resume can redeliver.
    pub const CAPACITY: usize = 1000;

    /// Remembers `id`; false if it was already there.
    pub fn first_time(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

impl Surface {
    /// What a reaction on this message answers, if anything.
    pub fn link(&self, message: u64) -> Option<projector::Link> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&message)
            .cloned()
    }

    /// Whether this interaction is new (a resume can deliver one again).
    pub fn first_delivery(&self, interaction: u64) -> bool {
        self.interactions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first_time(interaction)
    }

    /// Remembers what a reaction on this message answers.
    pub fn set_link(&self, message: u64, link: projector::Link) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(message, link);
    }
}

/// The settings `serve` needs, checked before anything connects.
pub fn check(config: &DiscordConfig) -> Result<(), DiscordError> {
    if config.guild_id == 0 {
        return Err(DiscordError::MissingSetting("guild_id", "GUILD_ID"));
    }
    if config.channel_id == 0 {
        return Err(DiscordError::MissingSetting("channel_id", "CHANNEL_ID"));
    }
    Ok(())
}

/// The token, from the environment only.
pub fn token_from_env() -> Result<Secret, DiscordError> {
    match std::env::var("DISCORD_TOKEN") {
        Ok(token) if !token.trim().is_empty() => {
            let token = token.trim();
            // Checked here, because a token that cannot go into an HTTP header fails later as what looks
            // like a channel or permission problem.
            let bare = token.strip_prefix("Bot ").unwrap_or(token);
            let printable = bare.bytes().all(|b| b.is_ascii_graphic());
            if !printable || serenity::utils::validate_token(token).is_err() {
                return Err(DiscordError::MalformedToken);
            }
            Ok(Secret::new(token))
        }
        _ => Err(DiscordError::MissingToken),
    }
}

/// A serenity HTTP client for the configured API base. Proxies and the tests' fake Discord need the
/// base; serenity honours it only with its own ratelimiter off, and Tavern's outbound queue does that
/// job instead.
fn http(config: &DiscordConfig, token: &Secret) -> Result<serenity::Http, DiscordError> {
    let mut builder = serenity::HttpBuilder::new(token.expose()).ratelimiter_disabled(true);
    if let Some(base) = &config.api_base_url {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| DiscordError::Client(e.to_string()))?;
        builder = builder.client(client).proxy(base.clone());
    }
    Ok(builder.build())
}

/// Serves the tavern on Discord until `shutdown` resolves or the connection fails for good.
pub async fn serve(
    app: &mut App,
    token: Secret,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DiscordError> {
    let config = Arc::new(app.config.discord.clone());
    check(&config)?;
    let http = Arc::new(http(&config, &token)?);
    // The main channel is checked before anything else, so a wrong id or missing access is said now.
    serenity::ChannelId::new(config.channel_id)
        .to_channel(&*http)
        .await
        .map_err(|e| match api::status_of(&e) {
            Some(401) => DiscordError::BadToken,
            _ => DiscordError::Channel {
                channel: config.channel_id,
                reason: api::describe(&e),
            },
        })?;
    let cancel = CancellationToken::new();
    let outbound = outbound::Outbound::start(
        Arc::new(api::SerenityApi::new(http.clone())),
        outbound::Limits::default(),
        app.tavern.tracker(),
        cancel.clone(),
    );
    let surface = Surface {
        tavern: app.tavern.clone(),
        config: config.clone(),
        outbound: outbound.clone(),
        links: Arc::default(),
        notices: Arc::default(),
        interactions: Arc::default(),
    };
    // The projector subscribes before anything resumes (App keeps the first subscription), so nothing
    // Tavern does is missed.
    let events = app.take_events();
    let projecting = projector::Projector::new(surface.clone()).run(events, cancel.clone());
    let framework = commands::framework(surface.clone());
    let intents = serenity::GatewayIntents::GUILDS
        | serenity::GatewayIntents::GUILD_MESSAGES
        | serenity::GatewayIntents::MESSAGE_CONTENT
        | serenity::GatewayIntents::GUILD_MESSAGE_REACTIONS;
    let mut client = serenity::ClientBuilder::new_with_http(self::http(&config, &token)?, intents)
        .framework(framework)
        .await
        .map_err(|e| DiscordError::Client(e.to_string()))?;
    let shards = client.shard_manager.clone();
    let result = tokio::select! {
        result = client.start() => result.map_err(|e| match e {
            serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication) => DiscordError::BadToken,
            serenity::Error::Gateway(
                serenity::GatewayError::InvalidGatewayIntents
                | serenity::GatewayError::DisallowedGatewayIntents,
            ) => DiscordError::Intents,
            other => DiscordError::Client(other.to_string()),
        }),
        () = shutdown => {
            shards.shutdown_all().await;
            Ok(())
        }
        () = projecting => Ok(()),
    };
    // Cancelled first, so the flush is bounded by the queue's shutdown grace even if Discord is failing.
    cancel.cancel();
    outbound.flush().await;
    result
}
