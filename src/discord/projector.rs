//! Tavern's durable events, shown on Discord: Jake's words in the main channel, a public thread per
//! agent (opened when it is summoned, its id recorded in the agent's node so a restart re-attaches it),
//! the agent's work streamed into its thread, a header message edited in place with its state, questions
//! as an @mention of the person who asked for the work, approvals with reactions to answer them, and the
//! thread archived (never deleted) when the agent is gone.
//!
//! One task reads the events in log order and writes through the outbound queue, which keeps order per
//! channel; so a thread's posts appear in the order Tavern recorded them.

use std::collections::HashMap;
use std::sync::Arc;

use tavern_plugin_api::{AgentKind, Approval};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::outbound::{self, OutMessage};
use super::Surface;
use crate::domain::{
    input_summary, Activity, Actor, AgentNode, Intent, MessageKind, Outcome, Party, PendingItem,
    Settled, TavernState,
};
use crate::executor::{Event, Receipt};

/// What a reaction on one of Tavern's messages answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// A pending item: a tool approval (✅ allow, ❌ deny, ♾️ always) or a proposed commitment (✅
    /// approve, ❌ reject).
    Approval {
        /// The pending item's id.
        id: u32,
        /// The agent asking.
        agent: String,
    },
    /// A commitment that needs a person's sign-off: ✅ signs it off. (A proposed commitment is a
    /// pending item, answered through [`Link::Approval`].)
    Commitment {
        /// The agent.
        agent: String,
        /// The commitment's number, 1-based.
        number: usize,
    },
}

/// Emoji Tavern offers on approvals.
pub const ALLOW: &str = "✅";
/// Deny.
pub const DENY: &str = "❌";
/// Always allow.
pub const ALWAYS: &str = "♾️";

/// Shows Tavern's events on Discord.
pub struct Projector {
    surface: Surface,
    /// Agent (lowercased) → its thread.
    threads: HashMap<String, u64>,
    /// Agent (lowercased) → its thread's header message.
    headers: HashMap<String, u64>,
}

impl Projector {
    /// A projector for the surface.
    pub fn new(surface: Surface) -> Projector {
        Projector {
            surface,
            threads: HashMap::new(),
            headers: HashMap::new(),
        }
    }

    fn main(&self) -> u64 {
        self.surface.config.channel_id
    }

    /// Re-attaches every live agent's thread, opens threads for live agents that have none (summoned
    /// while the bot was away), then follows the events until `cancel` fires or Tavern closes.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<Arc<Event>>,
        cancel: CancellationToken,
    ) {
        let nodes: Vec<AgentNode> = self
            .surface
            .tavern
            .read(|s| s.agents_in_order().cloned().collect());
        for node in nodes {
            let key = node.name.to_lowercase();
            if let Some(thread) = node.thread.as_deref().and_then(|t| t.parse().ok()) {
                self.threads.insert(key.clone(), thread);
                if let Some(header) = node.thread_header.as_deref().and_then(|h| h.parse().ok()) {
                    self.headers.insert(key, header);
                }
            } else if node.kind != AgentKind::Jake && !node.state.is_dead() {
                self.open_thread(&node.name).await;
            }
        }
        self.offer_waiting(false).await;
        // Bounded by Tavern's events: each iteration handles one, and the loop ends with Tavern.
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => self.show(&event).await,
                Err(RecvError::Lagged(missed)) => {
                    // Only a projector far behind a burst lags; what it missed stays in the log and the
                    // documents, and the headers catch up with the next change. What waits for a
                    // person is offered again, so nothing is left unanswerable.
                    tracing::warn!("the Discord projector missed {missed} events");
                    self.offer_waiting(true).await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// The channel an agent's words go to: Jake's main channel, or the agent's thread.
    fn channel_of(&self, agent: &str) -> Option<u64> {
        let is_jake = self.surface.tavern.read(|s| {
            s.jake
                .as_deref()
                .is_some_and(|j| j.eq_ignore_ascii_case(agent))
        });
        if is_jake {
            return Some(self.main());
        }
        self.threads.get(&agent.to_lowercase()).copied()
    }

    fn post(&self, channel: u64, content: String) {
        post_text(&self.surface.outbound, channel, content, None);
    }

    async fn open_thread(&mut self, agent: &str) {
        let name: String = agent.chars().take(100).collect();
        let thread = match self
            .surface
            .outbound
            .create_thread(self.main(), &name)
            .await
        {
            Ok(thread) => thread,
            Err(e) => {
                // Without a thread the agent's work has nowhere to show: say so where people look.
                tracing::error!("could not open a Discord thread for {agent}: {e}");
                self.post(
                    self.main(),
                    format!(
                        "⚠️ Could not open a thread for {agent} ({e}), so its work and questions do not show here; \
                         /agents and /log still see it. Give the bot Create Public Threads in this channel and \
                         restart it to open the thread."
                    ),
                );
                return;
            }
        };
        let header_text = self.surface.tavern.read(|s| header_text_of(s, agent));
        let header = self
            .surface
            .outbound
            .send(thread, OutMessage::text(header_text))
            .await
            .ok()
            .and_then(|ids| ids.first().copied());
        self.threads.insert(agent.to_lowercase(), thread);
        if let Some(header) = header {
            self.headers.insert(agent.to_lowercase(), header);
        }
        let recorded = self
            .surface
            .tavern
            .submit(
                Actor::Tavern,
                Intent::AttachThread {
                    agent: agent.to_string(),
                    thread: thread.to_string(),
                    header: header.map(|h| h.to_string()),
                },
                None,
            )
            .await;
        match recorded {
            Ok(Receipt::Accepted { .. }) => {}
            Ok(Receipt::Rejected { error, .. }) => {
                tracing::error!("could not record {agent}'s Discord thread: {error}")
            }
            Err(e) => tracing::error!("could not record {agent}'s Discord thread: {e}"),
        }
    }

    fn refresh_header(&self, agent: &str) {
        let key = agent.to_lowercase();
        if let (Some(&thread), Some(&header)) = (self.threads.get(&key), self.headers.get(&key)) {
            let text = self.surface.tavern.read(|s| header_text_of(s, agent));
            self.surface.outbound.edit_header(thread, header, text);
        }
    }

    async fn show(&mut self, event: &Event) {
        // Jake thinks: the main channel shows him typing.
        if let Some(Intent::TakeTurn { agent }) = &event.intent {
            if self.channel_of(agent) == Some(self.main()) {
                self.surface.outbound.typing(self.main());
            }
        }
        for outcome in &event.outcomes {
            match outcome {
                // At start-up, `run` may already have opened the thread of an agent whose summon is
                // among the events buffered before it.
                Outcome::AgentSummoned(new)
                    if new.kind != AgentKind::Jake
                        && !self.threads.contains_key(&new.name.to_lowercase()) =>
                {
                    self.open_thread(&new.name).await;
                }
                Outcome::MessagePosted(message) => self.show_message(message),
                Outcome::Activity { agent, activity } => {
                    if let Some(thread) = self.channel_of(agent) {
                        self.show_activity(thread, activity);
                    }
                }
                Outcome::StateChanged {
                    agent, to, reason, ..
                } => {
                    self.refresh_header(agent);
                    if to.is_dead() {
                        if let Some(&thread) = self.threads.get(&agent.to_lowercase()) {
                            let why = reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default();
                            self.post(
                                thread,
                                format!("**{agent} is {to}**{why}. This thread is archived."),
                            );
                            self.surface.outbound.archive(thread);
                        }
                    }
                }
                Outcome::CommitmentAdded {
                    agent,
                    index,
                    commitment,
                } => {
                    self.refresh_header(agent);
                    // A proposal is posted with its pending item (below), where ✅ and ❌ answer it.
                    if commitment.awaits_approval() {
                        continue;
                    }
                    if let Some(thread) = self.channel_of(agent) {
                        let number = index + 1;
                        let content = format!(
                            "📋 Commitment #{number}: {} — `{}`",
                            commitment.description, commitment.assertion
                        );
                        if commitment.needs_signoff {
                            self.post_signoff(thread, agent, number, content).await;
                        } else {
                            self.post(thread, content);
                        }
                    }
                }
                Outcome::CommitmentChecked {
                    agent,
                    index,
                    check,
                } => {
                    self.refresh_header(agent);
                    if let Some(thread) = self.channel_of(agent) {
                        let verdict = if check.passed {
                            format!("✅ Commitment #{} passed", index + 1)
                        } else if check.timed_out {
                            format!("❌ Commitment #{} timed out", index + 1)
                        } else {
                            format!(
                                "❌ Commitment #{} failed (exit {})",
                                index + 1,
                                check
                                    .exit_code
                                    .map_or("by a signal".to_string(), |c| c.to_string())
                            )
                        };
                        let tail = check.output_tail.trim();
                        let content = if tail.is_empty() || check.passed {
                            verdict
                        } else {
                            format!("{verdict}\n```\n{tail}\n```")
                        };
                        let unsigned = self.surface.tavern.read(|s| {
                            s.agent(agent)
                                .and_then(|n| n.commitments.get(*index))
                                .is_some_and(|c| c.needs_signoff && c.signed_off_by.is_none())
                        });
                        if check.passed && unsigned {
                            self.post_signoff(thread, agent, index + 1, content).await;
                        } else {
                            self.post(thread, content);
                        }
                    }
                }
                Outcome::PendingOpened {
                    id,
                    agent,
                    item:
                        PendingItem::Commitment {
                            index,
                            description,
                            assertion,
                        },
                } => {
                    self.offer_proposal(*id, agent, *index, description, assertion)
                        .await;
                }
                Outcome::PendingOpened {
                    id,
                    agent,
                    item: PendingItem::Approval { tool, input },
                } => self.offer_approval(*id, agent, tool, input).await,
                Outcome::PendingSettled { id, by, settled } => {
                    let pending = self.surface.tavern.read(|s| s.pending.get(id).cloned());
                    let Some(pending) = pending else { continue };
                    if let Some(thread) = self.channel_of(&pending.agent) {
                        let who = person(by);
                        if let PendingItem::Commitment { index, .. } = pending.item {
                            // A rejection reaches the thread as the notice the agent gets.
                            if *settled == Settled::Allowed {
                                self.post(
                                    thread,
                                    format!("✅ {who} approved commitment #{}.", index + 1),
                                );
                            }
                            continue;
                        }
                        let line = match settled {
                            Settled::Allowed => format!("✅ {who} allowed it."),
                            Settled::AllowedAlways { rule } => {
                                format!("♾️ {who} allowed it, and from now on `{rule}`.")
                            }
                            Settled::Denied { reason } => format!("❌ {who} denied it: {reason}"),
                            Settled::Answered => continue,
                            Settled::Withdrawn { reason } => format!("· Withdrawn: {reason}"),
                        };
                        self.post(thread, line);
                    }
                }
                Outcome::ModelReplied { agent, .. }
                | Outcome::DescriptionChanged { agent, .. }
                | Outcome::CommitmentSignedOff { agent, .. }
                | Outcome::CommitmentReviewed { agent, .. } => self.refresh_header(agent),
                _ => {}
            }
        }
    }

    /// Posts a proposed commitment, which ✅ accepts and ❌ rejects.
    async fn offer_proposal(
        &self,
        id: u32,
        agent: &str,
        index: usize,
        description: &str,
        assertion: &str,
    ) {
        if let Some(thread) = self.channel_of(agent) {
            let content = format!(
                "📋 **{agent} proposes commitment #{}:** {description} — `{assertion}`\nReact {ALLOW} to accept it as part of done, {DENY} to reject it.",
                index + 1
            );
            let link = Link::Approval {
                id,
                agent: agent.to_string(),
            };
            let choices = vec![ALLOW.to_string(), DENY.to_string()];
            self.post_linked(thread, content, choices, link).await;
        }
    }

    /// Posts a tool call waiting for approval, which ✅ allows, ❌ denies and ♾️ always allows.
    async fn offer_approval(&self, id: u32, agent: &str, tool: &str, input: &serde_json::Value) {
        if let Some(thread) = self.channel_of(agent) {
            let content = format!(
                "🔐 **{agent} wants to use {tool}:** `{}`\nReact {ALLOW} to allow, {DENY} to deny, {ALWAYS} to always allow calls like it.",
                input_summary(input)
            );
            let link = Link::Approval {
                id,
                agent: agent.to_string(),
            };
            let choices = vec![ALLOW.to_string(), DENY.to_string(), ALWAYS.to_string()];
            self.post_linked(thread, content, choices, link).await;
        }
    }

    /// Offers again everything that waits for a reaction: proposed commitments, passed commitments
    /// still needing a sign-off and (with `approvals`) tool approvals. The links from messages to what
    /// they answer live in memory, so after a restart the old messages' reactions mean nothing, and
    /// after a lag some were never posted. At start-up tool approvals are left out: the turn that asked
    /// withdraws them when it resumes, and asks again.
    async fn offer_waiting(&self, approvals: bool) {
        let (pending, signoffs) = self.surface.tavern.read(|s| {
            let pending: Vec<crate::domain::Pending> = s.open_pending().cloned().collect();
            let signoffs: Vec<(String, usize, String, String)> = s
                .agents_in_order()
                .filter(|n| !n.state.is_dead())
                .flat_map(|n| {
                    n.commitments
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| {
                            c.counts()
                                && c.needs_signoff
                                && c.signed_off_by.is_none()
                                && c.last_check.as_ref().is_some_and(|k| k.passed)
                        })
                        .map(|(i, c)| {
                            (
                                n.name.clone(),
                                i,
                                c.description.clone(),
                                c.assertion.clone(),
                            )
                        })
                })
                .collect();
            (pending, signoffs)
        });
        for p in pending {
            match &p.item {
                PendingItem::Commitment {
                    index,
                    description,
                    assertion,
                } => {
                    self.offer_proposal(p.id, &p.agent, *index, description, assertion)
                        .await
                }
                PendingItem::Approval { tool, input } if approvals => {
                    self.offer_approval(p.id, &p.agent, tool, input).await
                }
                PendingItem::Approval { .. } | PendingItem::Question { .. } => {}
            }
        }
        for (agent, index, description, assertion) in signoffs {
            if let Some(thread) = self.channel_of(&agent) {
                let content = format!(
                    "✅ Commitment #{} passed: {description} — `{assertion}`",
                    index + 1
                );
                self.post_signoff(thread, &agent, index + 1, content).await;
            }
        }
    }

    /// Posts a commitment that needs a person's sign-off, which ✅ gives.
    async fn post_signoff(&self, thread: u64, agent: &str, number: usize, content: String) {
        self.post_linked(
            thread,
            format!("{content}\nIt needs a sign-off: react {ALLOW} once you are satisfied."),
            vec![ALLOW.to_string()],
            Link::Commitment {
                agent: agent.to_string(),
                number,
            },
        )
        .await;
    }

    /// Posts a message whose reactions answer something: the link is in place before the reactions
    /// are offered, so no one can react before Tavern knows what the reaction means.
    async fn post_linked(&self, channel: u64, content: String, reactions: Vec<String>, link: Link) {
        match self
            .surface
            .outbound
            .send(channel, OutMessage::text(content))
            .await
        {
            Ok(ids) => {
                if let Some(&id) = ids.last() {
                    self.surface.set_link(id, link);
                    for emoji in &reactions {
                        self.surface.outbound.react(channel, id, emoji);
                    }
                }
            }
            Err(e) => tracing::error!("could not post to Discord channel {channel}: {e}"),
        }
    }

    fn show_message(&self, message: &crate::domain::Message) {
        let text = message.text.trim_end();
        match (&message.kind, &message.from, &message.to) {
            (MessageKind::Presence, _, _) => {}
            // What a person wrote is already on Discord, where they wrote it.
            (_, Party::User(_), _) => {}
            (MessageKind::Question { class }, Party::Agent(asker), to) => {
                let Some(thread) = self.channel_of(asker) else {
                    return;
                };
                let (mention, user) = match to {
                    Party::User(id) => match id.parse::<u64>() {
                        Ok(n) => (format!("<@{n}> "), Some(n)),
                        Err(_) => (format!("@{id} "), None),
                    },
                    _ => (String::new(), None),
                };
                let via = if message.via.is_empty() {
                    String::new()
                } else {
                    format!(" (via {})", message.via.join(" → "))
                };
                post_text(
                    &self.surface.outbound,
                    thread,
                    format!("{mention}{} {text}{via}", class.tag()),
                    user,
                );
                if thread != self.main() {
                    // A pointer in the main channel, pinging nobody.
                    self.post(
                        self.main(),
                        format!(
                            "❓ {asker} has a {} question for {} in <#{thread}>",
                            class.tag(),
                            person_plain(to)
                        ),
                    );
                }
            }
            (_, Party::Agent(from), Party::Agent(to)) => {
                if let Some(thread) = self.channel_of(to) {
                    if thread != self.main() {
                        self.post(thread, format!("**{from} → {to}:** {text}"));
                    }
                }
            }
            (_, Party::Agent(from), _) => {
                if let Some(channel) = self.channel_of(from) {
                    let prefix = if channel == self.main() {
                        String::new()
                    } else {
                        format!("**{from}:** ")
                    };
                    self.post(channel, format!("{prefix}{text}"));
                }
            }
            (_, Party::Tavern, Party::Agent(to)) => {
                if let Some(thread) = self.channel_of(to) {
                    self.post(thread, format!("🛎️ {text}"));
                }
            }
            (_, Party::Tavern, _) => self.post(self.main(), format!("🛎️ {text}")),
        }
    }

    fn show_activity(&self, thread: u64, activity: &Activity) {
        let content = match activity {
            Activity::Text { text } => text.clone(),
            Activity::ToolUse { tool, input } => format!("⚙️ `{tool}` {input}"),
            Activity::ToolResult { tool, ok, text } => {
                let mark = if *ok { "↩️" } else { "⚠️" };
                format!("{mark} `{tool}`: {text}")
            }
            Activity::RuleDecided {
                tool,
                input,
                allowed,
                rule,
            } => format!(
                "{} `{tool}` {input} (rule `{rule}`)",
                if *allowed {
                    "☑️ allowed"
                } else {
                    "🚫 denied"
                }
            ),
        };
        self.post(thread, content);
    }
}

/// Posts text; the queue splits it to Discord's limit, or attaches it when it is very long.
pub fn post_text(out: &outbound::Outbound, channel: u64, content: String, mention: Option<u64>) {
    out.post(
        channel,
        OutMessage {
            mention_user: mention,
            ..OutMessage::text(content)
        },
    );
}

/// A person as Discord shows them: a mention for Discord users (ids), their name otherwise.
fn person(name: &str) -> String {
    match name.parse::<u64>() {
        Ok(id) => format!("<@{id}>"),
        Err(_) => format!("@{name}"),
    }
}

/// A person named without pinging them (for pointers in the main channel).
fn person_plain(party: &Party) -> String {
    match party {
        Party::User(name) => match name.parse::<u64>() {
            Ok(_) => "the person who asked".to_string(),
            Err(_) => format!("@{name}"),
        },
        other => other.to_string(),
    }
}

/// The header of an agent's thread: state, assignment, requester, commitments, tokens and cost.
pub fn header_text_of(state: &TavernState, agent: &str) -> String {
    let Some(node) = state.agent(agent) else {
        return format!("**{agent}**");
    };
    let mut out = format!(
        "**{}** ({}) — **{}**",
        node.name,
        node.kind_label(),
        node.state
    );
    if let Some(parent) = &node.parent {
        out.push_str(&format!(", under {parent}"));
    }
    if let Some(requester) = &node.requester {
        out.push_str(&format!(
            ", for {}",
            person_plain(&Party::User(requester.clone()))
        ));
    }
    out.push('\n');
    if let Some(assignment) = &node.assignment {
        let short: String = assignment.chars().take(300).collect();
        out.push_str(&format!("> {short}\n"));
    }
    for (i, c) in node.commitments.iter().enumerate() {
        let mark = match &c.last_check {
            Some(check) if check.passed => "✅",
            Some(_) => "❌",
            None => "⏳",
        };
        let line = format!("#{} {} — `{}`", i + 1, c.description, c.assertion);
        match &c.approval {
            Approval::Rejected { .. } => out.push_str(&format!("🚫 ~~{line}~~ (rejected)\n")),
            Approval::Proposed => out.push_str(&format!("{mark} {line} (proposed)\n")),
            Approval::Accepted | Approval::Approved { .. } => {
                out.push_str(&format!("{mark} {line}\n"))
            }
        }
    }
    let usage = node.usage;
    if usage.input_tokens + usage.output_tokens > 0 {
        out.push_str(&format!(
            "tokens: {} in, {} out",
            usage.input_tokens, usage.output_tokens
        ));
        if let Some(cost) = usage.cost_micros {
            out.push_str(&format!(", ${:.4}", cost as f64 / 1e6));
        }
        out.push('\n');
    }
    out
}
