//! What people do on Discord, turned into intents after the access check. This is the prompt-injection
//! boundary: text from anyone not allowed never reaches an agent or a model; they get at most one short
//! notice per channel per hour, and their reactions are ignored (and logged).

use std::time::{Duration, Instant};

use poise::serenity_prelude as serenity;

use super::projector::{Link, ALLOW, ALWAYS, DENY};
use super::Surface;
use crate::config::DiscordConfig;
use crate::domain::{Actor, Answer, Intent};
use crate::executor::Receipt;

/// How often one channel may be told that someone is not allowed.
const NOTICE_EVERY: Duration = Duration::from_secs(3600);

fn listed(user: u64, roles: &[u64], users: &[u64], allowed_roles: &[u64]) -> bool {
    users.contains(&user) || roles.iter().any(|r| allowed_roles.contains(r))
}

/// Whether this person may talk to Jake.
pub fn may_talk_to_jake(config: &DiscordConfig, user: u64, roles: &[u64]) -> bool {
    listed(user, roles, &config.allowed_users, &config.allowed_roles)
}

/// Whether this person may talk to agents in their threads.
pub fn may_talk_to_agents(config: &DiscordConfig, user: u64, roles: &[u64]) -> bool {
    if config.agent_users.is_empty() && config.agent_roles.is_empty() {
        may_talk_to_jake(config, user, roles)
    } else {
        listed(user, roles, &config.agent_users, &config.agent_roles)
    }
}

/// Whether this person is a configured approver.
pub fn is_approver(config: &DiscordConfig, user: u64, roles: &[u64]) -> bool {
    listed(user, roles, &config.approvers, &config.approver_roles)
}

/// A person's name as Tavern records it: their Discord user id, which is also how they are mentioned.
pub fn person(user: u64) -> String {
    user.to_string()
}

/// Handles a message someone posted.
pub async fn message(surface: &Surface, bot: u64, msg: &serenity::Message) {
    if msg.author.bot || msg.author.id.get() == bot {
        return;
    }
    if msg.guild_id.map(|g| g.get()) != Some(surface.config.guild_id) {
        return;
    }
    let user = msg.author.id.get();
    let roles: Vec<u64> = msg
        .member
        .as_ref()
        .map(|m| m.roles.iter().map(|r| r.get()).collect())
        .unwrap_or_default();
    let channel = msg.channel_id.get();
    let mentioned = msg.mentions.iter().any(|u| u.id.get() == bot);
    let thread_agent = surface.tavern.read(|s| {
        s.agent_by_thread(&channel.to_string())
            .map(|n| n.name.clone())
    });
    let (to, allowed) = match thread_agent {
        Some(agent) => (agent, may_talk_to_agents(&surface.config, user, &roles)),
        None if channel == surface.config.channel_id || mentioned => {
            let jake = surface.tavern.read(|s| s.jake.clone());
            let Some(jake) = jake else {
                return;
            };
            (jake, may_talk_to_jake(&surface.config, user, &roles))
        }
        None => return,
    };
    if !allowed {
        refuse(surface, channel, user);
        return;
    }
    let text = strip_mention(&msg.content, bot);
    if text.trim().is_empty() {
        return;
    }
    let intent = Intent::SendMessage {
        to,
        text: text.trim().to_string(),
    };
    // A message Tavern refuses (its agent is gone, say) is answered where it was written, so the person
    // knows it went nowhere.
    if let Some(refusal) = submit(surface, user, intent).await {
        surface.outbound.post(
            channel,
            super::outbound::OutMessage::text(format!("⚠️ Not passed on: {refusal}")),
        );
    }
}

fn strip_mention(content: &str, bot: u64) -> String {
    content
        .replace(&format!("<@{bot}>"), "")
        .replace(&format!("<@!{bot}>"), "")
}

/// Tells a channel, at most once an hour, that its last writer is not allowed; the text goes nowhere.
fn refuse(surface: &Surface, channel: u64, user: u64) {
    tracing::info!("ignored a message from Discord user {user} in channel {channel}: not allowed");
    let now = Instant::now();
    let due = {
        let mut notices = surface
            .notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match notices.get(&channel) {
            Some(last) if now.duration_since(*last) < NOTICE_EVERY => false,
            _ => {
                notices.insert(channel, now);
                true
            }
        }
    };
    if due {
        surface.outbound.post(
            channel,
            super::outbound::OutMessage::text(
                "Only the people this tavern is set up for can talk to its agents; your message was not passed on.",
            ),
        );
    }
}

/// Handles a reaction someone added.
pub async fn reaction(surface: &Surface, bot: u64, reaction: &serenity::Reaction) {
    let Some(user) = reaction.user_id.map(|u| u.get()) else {
        return;
    };
    if user == bot {
        return;
    }
    let Some(link) = surface.link(reaction.message_id.get()) else {
        return;
    };
    let emoji = match &reaction.emoji {
        serenity::ReactionType::Unicode(e) => e.clone(),
        _ => return,
    };
    let roles: Vec<u64> = reaction
        .member
        .as_ref()
        .map(|m| m.roles.iter().map(|r| r.get()).collect())
        .unwrap_or_default();
    let config = &surface.config;
    let approver = is_approver(config, user, &roles);
    match link {
        Link::Approval { id, agent } => {
            let requester = surface
                .tavern
                .read(|s| s.agent(&agent).and_then(|n| n.requester.clone()));
            let entitled = approver || requester.as_deref() == Some(person(user).as_str());
            if !entitled {
                tracing::info!("ignored {emoji} on approval #{id} from Discord user {user}: not the requester or an approver");
                return;
            }
            let answer = match emoji.as_str() {
                e if e == ALLOW => Answer::Allow,
                e if e == DENY => Answer::Deny { reason: None },
                e if e.trim_end_matches('\u{fe0f}') == ALWAYS.trim_end_matches('\u{fe0f}') => {
                    Answer::Always
                }
                _ => return,
            };
            submit(surface, user, Intent::Answer { id, answer }).await;
        }
        Link::Commitment { agent, number } => {
            if emoji != ALLOW {
                return;
            }
            let requester = surface
                .tavern
                .read(|s| s.agent(&agent).and_then(|n| n.requester.clone()));
            let is_requester = requester.as_deref() == Some(person(user).as_str());
            let entitled = if config.signoff_by_other {
                approver && !is_requester
            } else {
                approver || is_requester
            };
            if !entitled {
                tracing::info!("ignored a sign-off of {agent} #{number} from Discord user {user}: not entitled");
                return;
            }
            submit(
                surface,
                user,
                Intent::Approve {
                    agent,
                    commitment: number,
                },
            )
            .await;
        }
    }
}

/// Submits a person's intent; says why when it was refused or could not be recorded.
async fn submit(surface: &Surface, user: u64, intent: Intent) -> Option<String> {
    match surface
        .tavern
        .submit(Actor::User(person(user)), intent, None)
        .await
    {
        Ok(Receipt::Accepted { .. }) => None,
        Ok(Receipt::Rejected { error, .. }) => {
            tracing::info!("a Discord request was refused: {error}");
            Some(error.to_string())
        }
        Err(e) => {
            tracing::error!("could not record a Discord request: {e}");
            Some(e.to_string())
        }
    }
}
