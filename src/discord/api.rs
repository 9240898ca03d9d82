//! The outbound queue's [`DiscordApi`] over serenity's HTTP client, and the reading of serenity's errors.

use std::sync::Arc;

use async_trait::async_trait;
use poise::serenity_prelude as serenity;

use super::outbound::{ApiError, DiscordApi, OutMessage};

/// Discord's API through serenity (ratelimiter off: the outbound queue paces and retries).
pub struct SerenityApi {
    http: Arc<serenity::Http>,
}

impl SerenityApi {
    /// Wraps a client.
    pub fn new(http: Arc<serenity::Http>) -> SerenityApi {
        SerenityApi { http }
    }
}

/// The HTTP status of a failed call, when Discord answered one.
pub fn status_of(error: &serenity::Error) -> Option<u16> {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => {
            Some(response.status_code.as_u16())
        }
        _ => None,
    }
}

/// A failed call in words: Discord's own message where it gave one.
pub fn describe(error: &serenity::Error) -> String {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => format!(
            "Discord answered {} ({})",
            response.status_code.as_u16(),
            response.error.message
        ),
        other => other.to_string(),
    }
}

fn api_error(error: serenity::Error) -> ApiError {
    match status_of(&error) {
        Some(status) => ApiError::from_status(status, describe(&error)),
        // No answer at all (a connection failure, a timeout): worth another try.
        None if matches!(
            error,
            serenity::Error::Http(serenity::HttpError::Request(_)) | serenity::Error::Io(_)
        ) =>
        {
            ApiError::Transport(describe(&error))
        }
        // Anything else (a reply serenity could not decode, a body it refused to build) would fail
        // the same way again, and retrying a send whose reply was unreadable would post it twice.
        None => ApiError::Other(describe(&error)),
    }
}

#[async_trait]
impl DiscordApi for SerenityApi {
    async fn send(&self, channel: u64, msg: &OutMessage) -> Result<u64, ApiError> {
        // Only the one person the message is for may be pinged; never @everyone, @here or roles.
        let mentions = serenity::CreateAllowedMentions::new()
            .everyone(false)
            .all_roles(false)
            .users(msg.mention_user.map(serenity::UserId::new));
        let mut builder = serenity::CreateMessage::new()
            .content(msg.content.clone())
            .allowed_mentions(mentions);
        for (name, bytes) in &msg.files {
            builder = builder.add_file(serenity::CreateAttachment::bytes(
                bytes.clone(),
                name.clone(),
            ));
        }
        // Exactly one request: the outbound queue adds reactions afterwards, each retried on its own, so
        // a failed reaction never resends the message.
        let sent = serenity::ChannelId::new(channel)
            .send_message(&*self.http, builder)
            .await
            .map_err(api_error)?;
        Ok(sent.id.get())
    }

    async fn edit(&self, channel: u64, message: u64, content: &str) -> Result<(), ApiError> {
        serenity::ChannelId::new(channel)
            .edit_message(
                &*self.http,
                serenity::MessageId::new(message),
                serenity::EditMessage::new().content(content),
            )
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    async fn create_thread(&self, channel: u64, name: &str) -> Result<u64, ApiError> {
        serenity::ChannelId::new(channel)
            .create_thread(
                &*self.http,
                serenity::CreateThread::new(name)
                    // Without a kind Discord makes a private thread, which the team could not see.
                    .kind(serenity::ChannelType::PublicThread)
                    .auto_archive_duration(serenity::AutoArchiveDuration::OneWeek),
            )
            .await
            .map(|thread| thread.id.get())
            .map_err(api_error)
    }

    async fn archive_thread(&self, thread: u64) -> Result<(), ApiError> {
        serenity::ChannelId::new(thread)
            .edit_thread(&*self.http, serenity::EditThread::new().archived(true))
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    async fn react(&self, channel: u64, message: u64, emoji: &str) -> Result<(), ApiError> {
        serenity::ChannelId::new(channel)
            .create_reaction(
                &*self.http,
                serenity::MessageId::new(message),
                serenity::ReactionType::Unicode(emoji.to_string()),
            )
            .await
            .map_err(api_error)
    }

    async fn typing(&self, channel: u64) -> Result<(), ApiError> {
        serenity::ChannelId::new(channel)
            .broadcast_typing(&*self.http)
            .await
            .map_err(api_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_without_an_answer_are_retried_as_transport_failures() {
        let io = serenity::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(matches!(api_error(io), ApiError::Transport(_)));
        // A reply serenity could not read: the request may well have worked, so it is not sent again.
        let json = serenity::Error::Json(serde_json::from_str::<u8>("x").unwrap_err());
        let error = api_error(json);
        assert!(matches!(error, ApiError::Other(_)), "{error:?}");
        assert!(!error.is_retryable());
    }
}
