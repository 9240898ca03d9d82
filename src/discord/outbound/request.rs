//! What the outbound queue asks of Discord: the [`DiscordApi`] trait (one REST request per call), the
//! message it sends, and the errors a request can end with.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::split::preview;

/// What Discord can be asked to do: implemented over serenity's `Http` in `src/discord/api.rs`, and by a
/// recording fake in this module's tests. Every call is one REST request; Tavern's [`Outbound`] decides
/// when to make it and whether to try again, so an implementation neither waits nor retries.
#[async_trait]
pub trait DiscordApi: Send + Sync + 'static {
    /// Posts one message (content at most [`MESSAGE_LIMIT`] characters, at most
    /// [`MAX_FILES_PER_MESSAGE`] files) and returns its id: one request, nothing more. [`Outbound`]
    /// always passes `msg.reactions` empty and adds them afterwards with [`DiscordApi::react`], so
    /// that a failed reaction is retried on its own instead of the whole message being resent.
    async fn send(&self, channel: u64, msg: &OutMessage) -> Result<u64, ApiError>;
    /// Replaces the content of one of the bot's messages.
    async fn edit(&self, channel: u64, message: u64, content: &str) -> Result<(), ApiError>;
    /// Creates a public thread in `channel` (not from a message) and returns its id.
    async fn create_thread(&self, channel: u64, name: &str) -> Result<u64, ApiError>;
    /// Archives a thread (an implementation may lock it too).
    async fn archive_thread(&self, thread: u64) -> Result<(), ApiError>;
    /// Adds the bot's reaction `emoji` (a unicode emoji, or `name:id` for a custom one) to a message.
    async fn react(&self, channel: u64, message: u64, emoji: &str) -> Result<(), ApiError>;
    /// Shows the bot as typing in `channel`.
    async fn typing(&self, channel: u64) -> Result<(), ApiError>;
}

/// One message as Tavern means it; [`Outbound::send`] may turn it into several Discord messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutMessage {
    /// The text, of any length: it is split at [`MESSAGE_LIMIT`] characters, or sent as a file when
    /// it is very long (see [`as_attachment`]).
    pub content: String,
    /// The one user this message may ping; every other mention in the content stays silent.
    pub mention_user: Option<u64>,
    /// Files to attach, as (file name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Reactions the bot adds to the message after sending it, in order (for instance the choices of
    /// an approval). On a message sent in pieces they go on the last piece.
    pub reactions: Vec<String>,
}

impl OutMessage {
    /// A plain text message.
    pub fn text(content: impl Into<String>) -> OutMessage {
        OutMessage {
            content: content.into(),
            ..OutMessage::default()
        }
    }

    /// Lets this message ping `user`.
    pub fn mentioning(mut self, user: u64) -> OutMessage {
        self.mention_user = Some(user);
        self
    }

    /// Attaches a file.
    pub fn with_file(mut self, name: impl Into<String>, bytes: Vec<u8>) -> OutMessage {
        self.files.push((name.into(), bytes));
        self
    }

    /// Adds a reaction the bot puts on the message once it is sent.
    pub fn with_reaction(mut self, emoji: impl Into<String>) -> OutMessage {
        self.reactions.push(emoji.into());
        self
    }
}

// Written out so that a log line never dumps a file's bytes or a whole agent's reply.
impl fmt::Debug for OutMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<(&str, usize)> = self
            .files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.len()))
            .collect();
        f.debug_struct("OutMessage")
            .field("content", &preview(&self.content))
            .field("chars", &self.content.chars().count())
            .field("mention_user", &self.mention_user)
            .field("files", &files)
            .field("reactions", &self.reactions)
            .finish()
    }
}

/// Why a Discord request failed. 429, 5xx and transport errors are worth another attempt
/// ([`ApiError::is_retryable`]); the rest are final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 429: Discord's rate limit. Retried after `retry_after` when Discord said (serenity with its
    /// ratelimiter disabled does not show it, so usually `None`), else after the backoff.
    #[error("Discord rate-limited the request (429{})", retry_note(.retry_after))]
    RateLimited {
        /// How long Discord asked us to wait.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer: Discord or Cloudflare had trouble. Retried with backoff.
    #[error("Discord answered {0} (a server error)")]
    Server(u16),
    /// Any other 4xx: the request itself is wrong (missing permission, unknown channel, bad body).
    /// Never retried; the message says what Discord objected to.
    #[error("Discord refused the request ({status}): {message}")]
    Client {
        /// The HTTP status.
        status: u16,
        /// Discord's error message, e.g. `Missing Permissions`.
        message: String,
    },
    /// No answer: the connection failed, or the request took longer than [`Limits::request_timeout`].
    /// Retried with backoff (a message that did arrive may then show twice, which beats losing it).
    #[error("could not reach Discord: {0}")]
    Transport(String),
    /// Anything else the Discord client reported (a body serenity refused to build, say). Final.
    #[error("{0}")]
    Other(String),
    /// Tavern shut down before the request could be made (past [`Limits::shutdown_grace`]). Never
    /// returned by a [`DiscordApi`]; only by [`Outbound`].
    #[error("Tavern stopped before the request could be made")]
    Stopped,
}

impl ApiError {
    /// Classifies an HTTP error status: 429 is [`ApiError::RateLimited`], 5xx [`ApiError::Server`],
    /// anything else [`ApiError::Client`].
    pub fn from_status(status: u16, message: impl Into<String>) -> ApiError {
        match status {
            429 => ApiError::RateLimited { retry_after: None },
            500..=599 => ApiError::Server(status),
            _ => ApiError::Client {
                status,
                message: message.into(),
            },
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::RateLimited { .. } | ApiError::Server(_) | ApiError::Transport(_) => true,
            ApiError::Client { .. } | ApiError::Other(_) | ApiError::Stopped => false,
        }
    }

    /// How long Discord asked us to wait before the next attempt, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// The part of a 429's message that says how long Discord asked us to wait.
fn retry_note(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {:.3} s", wait.as_secs_f64()),
        None => String::new(),
    }
}
