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

/// The ids of a member's roles.
pub fn role_ids(roles: &[serenity::RoleId]) -> Vec<u64> {
    roles.iter().map(|r| r.get()).collect()
}

/// A person's name as Tavern records it: their Discord user id, which is also how they are mentioned.
pub fn person(user: u64) -> String {
    user.to_string()
}

/// The origin recorded with a message's intent.
fn message_origin(id: u64) -> String {
    format!("{MESSAGE_ORIGIN}{id}")
}

const MESSAGE_ORIGIN: &str = "discord:message:";

/// How many pages of 100 messages a catch-up reads per channel, at most.
const CATCH_UP_PAGES: usize = 10;

/// Handles a message someone posted, as the gateway delivered it.
pub async fn message(surface: &Surface, bot: u64, msg: &serenity::Message) {
    if msg.guild_id.map(|g| g.get()) != Some(surface.config.guild_id) {
        return;
    }
    let roles = msg
        .member
        .as_ref()
        .map(|m| role_ids(&m.roles))
        .unwrap_or_default();
    handle_message(surface, bot, msg, &roles).await;
}

/// Reads what people wrote while the bot had no gateway session (it was down, or Discord ended the
/// session without a resume, so those events are never delivered) and handles it as if it had just
/// arrived. It reads the main channel and every live agent's thread after the newest message Tavern
/// recorded; messages already recorded are recognised by their origin and skipped.
pub async fn catch_up(surface: &Surface, http: &serenity::Http, bot: u64) {
    let newest = surface.tavern.read(|s| {
        s.origins
            .iter()
            .filter_map(|o| o.strip_prefix(MESSAGE_ORIGIN)?.parse::<u64>().ok())
            .max()
    });
    // Nothing recorded yet: a new tavern does not answer a channel's old history.
    let Some(newest) = newest else {
        return;
    };
    let mut channels = vec![surface.config.channel_id];
    channels.extend(surface.tavern.read(|s| {
        s.agents_in_order()
            .filter(|n| !n.state.is_dead())
            .filter_map(|n| n.thread.as_deref()?.parse::<u64>().ok())
            .collect::<Vec<_>>()
    }));
    let guild = serenity::GuildId::new(surface.config.guild_id);
    let needs_roles =
        !(surface.config.allowed_roles.is_empty() && surface.config.agent_roles.is_empty());
    // Each author's roles, looked up once per catch-up.
    let mut roles_of: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
    for channel in channels {
        let mut after = newest;
        for _ in 0..CATCH_UP_PAGES {
            let page = serenity::ChannelId::new(channel)
                .messages(
                    http,
                    serenity::GetMessages::new()
                        .after(serenity::MessageId::new(after))
                        .limit(100),
                )
                .await;
            let mut page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!("could not read channel {channel} to catch up: {e}");
                    break;
                }
            };
            page.sort_by_key(|m| m.id);
            for msg in &page {
                // Messages read over REST carry no member, so roles are looked up when they matter.
                let author = msg.author.id.get();
                if needs_roles && !msg.author.bot && !roles_of.contains_key(&author) {
                    match guild.member(http, msg.author.id).await {
                        Ok(member) => {
                            roles_of.insert(author, role_ids(&member.roles));
                        }
                        Err(e) => {
                            // Refusing an allowed person for want of their roles would be wrong;
                            // their message stays unread, and says so in the log.
                            tracing::error!(
                                "could not read the roles of Discord user {author}, so their message {} was not caught up: {e}",
                                msg.id
                            );
                            continue;
                        }
                    }
                }
                let roles = roles_of.get(&author).cloned().unwrap_or_default();
                handle_message(surface, bot, msg, &roles).await;
            }
            match page.last() {
                Some(last) if page.len() == 100 => after = last.id.get(),
                _ => break,
            }
        }
    }
}

/// Handles a message in the configured guild, from a person with `roles`.
async fn handle_message(surface: &Surface, bot: u64, msg: &serenity::Message, roles: &[u64]) {
    if msg.author.bot || msg.author.id.get() == bot {
        return;
    }
    let user = msg.author.id.get();
    let channel = msg.channel_id.get();
    let mentioned = msg.mentions.iter().any(|u| u.id.get() == bot);
    let thread_agent = surface.tavern.read(|s| {
        s.agent_by_thread(&channel.to_string())
            .map(|n| n.name.clone())
    });
    let (to, allowed) = match thread_agent {
        Some(agent) => (agent, may_talk_to_agents(&surface.config, user, roles)),
        None if channel == surface.config.channel_id || mentioned => {
            let jake = surface.tavern.read(|s| s.jake.clone());
            let Some(jake) = jake else {
                return;
            };
            (jake, may_talk_to_jake(&surface.config, user, roles))
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
    if let Some(refusal) = submit(surface, user, intent, message_origin(msg.id.get())).await {
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
    let roles = reaction
        .member
        .as_ref()
        .map(|m| role_ids(&m.roles))
        .unwrap_or_default();
    let config = &surface.config;
    let approver = is_approver(config, user, &roles);
    let agent = match &link {
        Link::Approval { agent, .. } | Link::Commitment { agent, .. } => agent,
    };
    let is_requester = surface.tavern.read(|s| {
        s.agent(agent)
            .and_then(|n| n.requester.as_deref())
            .is_some_and(|r| r == person(user))
    });
    let intent = match link {
        Link::Approval { id, .. } => {
            if !(approver || is_requester) {
                tracing::info!("ignored {emoji} on #{id} from Discord user {user}: not the requester or an approver");
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
            Intent::Answer { id, answer }
        }
        Link::Commitment { agent, number } => {
            if emoji != ALLOW {
                return;
            }
            let entitled = if config.signoff_by_other {
                approver && !is_requester
            } else {
                approver || is_requester
            };
            if !entitled {
                tracing::info!("ignored a sign-off of {agent} #{number} from Discord user {user}: not entitled");
                return;
            }
            Intent::Approve {
                agent,
                commitment: number,
            }
        }
    };
    // Someone entitled whose answer Tavern refuses (it was settled already, the agent is gone) is told
    // where they reacted.
    let origin = reaction_origin(reaction, user, &emoji);
    if let Some(refusal) = submit(surface, user, intent, origin).await {
        surface.outbound.post(
            reaction.channel_id.get(),
            super::outbound::OutMessage::text(format!(
                "⚠️ <@{user}>'s {emoji} was not passed on: {refusal}"
            )),
        );
    }
}

/// The origin recorded with a reaction's intent. A reaction has no id of its own; the same person's
/// same emoji on the same message is the same answer, whenever it is delivered.
fn reaction_origin(reaction: &serenity::Reaction, user: u64, emoji: &str) -> String {
    format!("discord:reaction:{}:{user}:{emoji}", reaction.message_id)
}

/// Submits a person's intent with the Discord id it came from; says why when it was refused or could
/// not be recorded. A redelivery of something already recorded is skipped quietly.
async fn submit(surface: &Surface, user: u64, intent: Intent, origin: String) -> Option<String> {
    match surface
        .tavern
        .submit_from(Actor::User(person(user)), intent, origin.clone())
        .await
    {
        Ok(None) => {
            tracing::debug!("{origin} was delivered again; it is already recorded");
            None
        }
        Ok(Some(Receipt::Accepted { .. })) => None,
        Ok(Some(Receipt::Rejected { error, .. })) => {
            tracing::info!("a Discord request was refused: {error}");
            Some(error.to_string())
        }
        Err(e) => {
            tracing::error!("could not record a Discord request: {e}");
            Some(e.to_string())
        }
    }
}
