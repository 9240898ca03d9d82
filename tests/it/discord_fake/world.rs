//! The fake Discord's state: one guild, its users, roles, channels, threads, messages, reactions,
//! commands and interactions, plus the records tests assert on (REST calls, unexpected requests,
//! gateway counters) and the gateway session that turns changes into dispatches.
//!
//! Everything lives in one [`World`] behind the fake's mutex. REST handlers, the gateway and the
//! test-facing helpers all change it under that lock, so every change and the dispatch it causes
//! happen atomically and in sequence order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedSender;

/// The bot token the fake accepts (shaped like a real one: three dot-separated parts).
pub const TOKEN: &str = "MTAwMA.ZmFrZQ.dGF2ZXJuLXRlc3QtdG9rZW4";

/// The bot's user id (READY's `user`, the author of everything the bot posts).
pub const BOT_ID: u64 = 1000;
/// The bot's user name.
pub const BOT_NAME: &str = "tavern";
/// The guild owner: a user that exists only as `owner_id` and as the application's owner.
pub const OWNER_ID: u64 = 1001;
/// The one guild; `@everyone`'s role id equals it, as on Discord.
pub const GUILD_ID: u64 = 2000;
pub const GUILD_NAME: &str = "Test Guild";
/// The bot's managed role (Administrator), so the bot keeps its permissions when tests lower
/// `@everyone`'s.
pub const BOT_ROLE_ID: u64 = 2001;
/// The application (READY's `application.id`, the `{app}` in command and webhook routes).
pub const APP_ID: u64 = 3000;
/// The main text channel, `#agents`.
pub const MAIN_CHANNEL: u64 = 4000;
pub const MAIN_CHANNEL_NAME: &str = "agents";
/// Where generated snowflakes start, far above the fixed ids.
pub const FIRST_SNOWFLAKE: u64 = 100_000;
/// Discord's message content limit, in characters.
pub const CONTENT_LIMIT: usize = 2000;
/// Discord's limit on the characters of all embeds of one message together.
pub const EMBED_TOTAL_LIMIT: usize = 6000;
/// The upload limit the fake enforces and announces in interactions (`attachment_size_limit`).
pub const ATTACHMENT_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// How long after INTERACTION_CREATE the initial callback is accepted (then 10062 Unknown
/// interaction), as on Discord.
pub const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
/// The `joined_at` of every member.
pub const JOINED_AT: &str = "2024-01-01T00:00:00.000000+00:00";
/// Dispatches kept per session for Resume replays.
const REPLAY_BUFFER: usize = 10_000;

/// Gateway intent bits the fake honours when deciding what to dispatch.
pub mod intents {
    pub const GUILDS: u64 = 1 << 0;
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
}

/// A guild member (the bot included).
#[derive(Clone, Debug)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub bot: bool,
    /// Role ids besides `@everyone`.
    pub roles: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Role {
    pub id: u64,
    pub name: String,
    /// The permission bits (Discord's `permissions` string, parsed).
    pub permissions: u64,
    pub managed: bool,
}

/// A guild text channel (type 0).
#[derive(Clone, Debug)]
pub struct Channel {
    pub id: u64,
    pub name: String,
    pub position: u16,
    pub topic: Option<String>,
}

/// A thread (type 11 public, 12 private, 10 announcement).
#[derive(Clone, Debug)]
pub struct Thread {
    pub id: u64,
    pub parent: u64,
    pub name: String,
    /// The type Discord created: the requested one, or 12 (private) when the request had none,
    /// or 11 for a thread started from a message.
    pub kind: u8,
    /// The `type` the bot sent, `None` when it sent none.
    pub requested_kind: Option<u8>,
    pub archived: bool,
    pub locked: bool,
    pub auto_archive_duration: u32,
    pub owner: u64,
    /// The starter message when created with `POST /channels/{cid}/messages/{mid}/threads`.
    pub from_message: Option<u64>,
    /// Users who joined (the creator included).
    pub members: Vec<u64>,
}

/// An attachment of a message, with its bytes.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub id: u64,
    pub filename: String,
    pub size: usize,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A message as the fake stores it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub id: u64,
    pub channel: u64,
    pub author: u64,
    pub content: String,
    pub attachments: Vec<Attachment>,
    /// The embeds as sent (a JSON array).
    pub embeds: Value,
    /// The components as sent (a JSON array).
    pub components: Value,
    /// `allowed_mentions` exactly as the bot sent it; `Null` when absent (and for users' messages).
    pub allowed_mentions: Value,
    /// Users this message actually pings (content mentions filtered by `allowed_mentions`).
    pub mentions: Vec<u64>,
    pub mention_roles: Vec<u64>,
    pub mention_everyone: bool,
    /// The message this one replies to (`message_reference`).
    pub reply_to: Option<u64>,
    pub edited: bool,
    /// Discord's message type: 0 default, 19 reply, 20 slash-command response.
    pub kind: u8,
    /// Message flags (64 ephemeral, 128 loading, 4 suppress embeds, ...).
    pub flags: u64,
    /// The interaction this message answers, for interaction responses and follow-ups.
    pub interaction: Option<u64>,
    pub timestamp: String,
    pub edited_timestamp: Option<String>,
}

impl Msg {
    pub fn is_ephemeral(&self) -> bool {
        self.flags & 64 != 0
    }
}

/// One reaction by one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub channel: u64,
    pub message: u64,
    pub user: u64,
    /// A unicode emoji, or `name:id` for a custom one.
    pub emoji: String,
}

/// A registered application command.
#[derive(Clone, Debug)]
pub struct Command {
    pub id: u64,
    pub name: String,
    /// `Some(guild)` for guild commands, `None` for global ones.
    pub guild: Option<u64>,
    /// 1 chat input, 2 user, 3 message.
    pub kind: u8,
    /// The command as the bot sent it.
    pub json: Value,
}

impl Command {
    /// The declared type of option `name` (top level only).
    pub fn option_type(&self, name: &str) -> Option<u64> {
        self.json["options"]
            .as_array()?
            .iter()
            .find(|option| option["name"] == name)?["type"]
            .as_u64()
    }
}

/// One answer of the bot to an interaction, in arrival order.
#[derive(Clone, Debug)]
pub enum InteractionResponse {
    /// `POST /interactions/{id}/{token}/callback`: `kind` 4 message, 5 deferred, 6/7 component
    /// updates, 9 modal; `data` as sent (`Null` when absent).
    Callback { kind: u64, data: Value },
    /// `PATCH /webhooks/{app}/{token}/messages/@original`.
    EditOriginal(Value),
    /// `POST /webhooks/{app}/{token}`.
    Followup(Value),
    /// `PATCH /webhooks/{app}/{token}/messages/{id}` for a follow-up.
    EditFollowup { message: u64, body: Value },
}

impl InteractionResponse {
    /// The callback type, `None` for webhook calls.
    pub fn callback_kind(&self) -> Option<u64> {
        match self {
            InteractionResponse::Callback { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// The message content this response sets, if any.
    pub fn content(&self) -> Option<&str> {
        match self {
            InteractionResponse::Callback { data, .. } => data["content"].as_str(),
            InteractionResponse::EditOriginal(body)
            | InteractionResponse::Followup(body)
            | InteractionResponse::EditFollowup { body, .. } => body["content"].as_str(),
        }
    }
}

/// A slash command invocation made with [`crate::discord_fake::FakeDiscord::slash`].
#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
    pub user: u64,
    pub channel: u64,
    pub name: String,
    /// The options as sent in INTERACTION_CREATE.
    pub options: Value,
    pub responses: Vec<InteractionResponse>,
    /// The message created by the initial response (type 4 or 5).
    pub original: Option<u64>,
    pub acknowledged: bool,
    pub created: Instant,
}

/// One file part of a multipart request.
#[derive(Clone, Debug)]
pub struct FilePart {
    /// The form field, `files[0]` and so on.
    pub field: String,
    pub filename: String,
    pub size: usize,
    pub content_type: Option<String>,
}

/// One REST request as the fake received it.
#[derive(Clone, Debug)]
pub struct RestCall {
    pub method: String,
    /// The path without `/api/v10` and without the query, percent-encoding kept.
    pub path: String,
    /// The query pairs in order; empty pairs (serenity's `?&limit=50`) are skipped.
    pub query: Vec<(String, String)>,
    /// The JSON body, or the multipart `payload_json`; `Null` when there was none.
    pub body: Value,
    pub files: Vec<FilePart>,
    /// Header names lower-case.
    pub headers: BTreeMap<String, String>,
    /// The status the fake answered.
    pub status: u16,
}

impl RestCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One payload the bot sent over the gateway.
#[derive(Clone, Debug)]
pub struct GatewayFrame {
    /// Which connection (1 for the first).
    pub connection: u64,
    pub op: u64,
    pub d: Value,
}

/// What a connection task is told to do.
pub(super) enum Out {
    Text(String),
    /// Send a close frame with this code, then end.
    Close(u16),
    /// End without a close frame (the TCP connection just goes away).
    Drop,
}

/// A gateway session: its id, sequence counter, intents and the dispatches a Resume can replay.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) seq: u64,
    pub(super) intents: u64,
    /// `(seq, replayable, frame)`; READY and RESUMED are not replayed.
    pub(super) buffer: VecDeque<(u64, bool, String)>,
}

pub(super) struct Gateway {
    pub(super) conns: BTreeMap<u64, UnboundedSender<Out>>,
    pub(super) next_conn: u64,
    /// The connection that receives dispatches (identified or resumed, not told to go away).
    pub(super) live: Option<u64>,
    pub(super) session: Option<Session>,
    pub(super) sessions_started: u64,
    pub(super) heartbeat_ms: u64,
    pub(super) no_ack: bool,
    /// How many already-delivered dispatches a Resume replays again (Discord's delivery is at least
    /// once; this makes the "again" happen on demand).
    pub(super) redeliver: u64,
}

/// A fixed-window request budget.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    pub(super) start: Instant,
    pub(super) count: u32,
}

pub(super) struct Limits {
    pub(super) enabled: bool,
    pub(super) channel_limit: u32,
    pub(super) channel_window: Duration,
    pub(super) global_limit: u32,
    pub(super) global_window: Duration,
    pub(super) channels: HashMap<u64, Bucket>,
    pub(super) global: Option<Bucket>,
}

pub(super) struct FailRule {
    pub(super) method: String,
    pub(super) prefix: String,
    pub(super) status: u16,
    pub(super) times: usize,
}

pub(super) struct DelayRule {
    pub(super) method: String,
    pub(super) prefix: String,
    pub(super) delay: Duration,
}

/// Whether a fault rule's method and path prefix match a request (`*` matches any method).
pub(super) fn rule_matches(rule_method: &str, prefix: &str, method: &str, path: &str) -> bool {
    (rule_method == "*" || rule_method.eq_ignore_ascii_case(method)) && path.starts_with(prefix)
}

/// The fake's whole state. Tests read it through `FakeDiscord::with_world` and the `wait_for`
/// closures; only the fake changes it.
pub struct World {
    pub(super) users: BTreeMap<u64, User>,
    pub(super) roles: BTreeMap<u64, Role>,
    pub(super) channels: BTreeMap<u64, Channel>,
    pub(super) threads: BTreeMap<u64, Thread>,
    pub(super) messages: Vec<Msg>,
    pub(super) reactions: Vec<Reaction>,
    pub(super) commands: Vec<Command>,
    pub(super) interactions: BTreeMap<u64, Interaction>,
    pub(super) rest: Vec<RestCall>,
    pub(super) unexpected: Vec<String>,
    pub(super) frames: Vec<GatewayFrame>,
    pub(super) identifies: usize,
    pub(super) resumes: usize,
    pub(super) rejected_resumes: usize,
    pub(super) connections: usize,
    pub(super) heartbeats: usize,
    pub(super) last_identify: Value,
    pub(super) violations: usize,
    pub(super) gw: Gateway,
    pub(super) limits: Limits,
    pub(super) fails: Vec<FailRule>,
    pub(super) delays: Vec<DelayRule>,
    pub(super) injected_retry_after: Duration,
    pub(super) next_id: u64,
    pub(super) base_url: String,
}

impl World {
    pub(super) fn new(base_url: String) -> World {
        let mut users = BTreeMap::new();
        users.insert(
            BOT_ID,
            User {
                id: BOT_ID,
                name: BOT_NAME.to_owned(),
                bot: true,
                roles: vec![BOT_ROLE_ID],
            },
        );
        let mut roles = BTreeMap::new();
        roles.insert(
            GUILD_ID,
            Role {
                id: GUILD_ID,
                name: "@everyone".to_owned(),
                permissions: 8,
                managed: false,
            },
        );
        roles.insert(
            BOT_ROLE_ID,
            Role {
                id: BOT_ROLE_ID,
                name: BOT_NAME.to_owned(),
                permissions: 8,
                managed: true,
            },
        );
        let mut channels = BTreeMap::new();
        channels.insert(
            MAIN_CHANNEL,
            Channel {
                id: MAIN_CHANNEL,
                name: MAIN_CHANNEL_NAME.to_owned(),
                position: 0,
                topic: None,
            },
        );
        World {
            users,
            roles,
            channels,
            threads: BTreeMap::new(),
            messages: Vec::new(),
            reactions: Vec::new(),
            commands: Vec::new(),
            interactions: BTreeMap::new(),
            rest: Vec::new(),
            unexpected: Vec::new(),
            frames: Vec::new(),
            identifies: 0,
            resumes: 0,
            rejected_resumes: 0,
            connections: 0,
            heartbeats: 0,
            last_identify: Value::Null,
            violations: 0,
            gw: Gateway {
                conns: BTreeMap::new(),
                next_conn: 0,
                live: None,
                session: None,
                sessions_started: 0,
                heartbeat_ms: 45_000,
                no_ack: false,
                redeliver: 0,
            },
            limits: Limits {
                enabled: true,
                channel_limit: 5,
                channel_window: Duration::from_secs(5),
                global_limit: 50,
                global_window: Duration::from_secs(1),
                channels: HashMap::new(),
                global: None,
            },
            fails: Vec::new(),
            delays: Vec::new(),
            injected_retry_after: Duration::from_millis(500),
            next_id: FIRST_SNOWFLAKE,
            base_url,
        }
    }

    // ---- reading (for tests and wait_for closures) ----

    /// The messages of a channel or thread, oldest first (deleted ones are gone).
    pub fn messages(&self, channel: u64) -> Vec<&Msg> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel)
            .collect()
    }

    /// Every message in every channel, oldest first.
    pub fn all_messages(&self) -> &[Msg] {
        &self.messages
    }

    pub fn message(&self, id: u64) -> Option<&Msg> {
        self.messages.iter().find(|m| m.id == id)
    }

    /// The threads in creation order.
    pub fn threads(&self) -> Vec<&Thread> {
        self.threads.values().collect()
    }

    pub fn thread(&self, id: u64) -> Option<&Thread> {
        self.threads.get(&id)
    }

    /// The first thread with this name.
    pub fn thread_named(&self, name: &str) -> Option<&Thread> {
        self.threads.values().find(|t| t.name == name)
    }

    pub fn channels(&self) -> Vec<&Channel> {
        self.channels.values().collect()
    }

    pub fn channel_named(&self, name: &str) -> Option<&Channel> {
        self.channels.values().find(|c| c.name == name)
    }

    pub fn users(&self) -> Vec<&User> {
        self.users.values().collect()
    }

    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.get(&id)
    }

    pub fn roles(&self) -> Vec<&Role> {
        self.roles.values().collect()
    }

    /// The reactions on a message, in the order they were added.
    pub fn reactions(&self, message: u64) -> Vec<&Reaction> {
        self.reactions
            .iter()
            .filter(|r| r.message == message)
            .collect()
    }

    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub fn interaction(&self, id: u64) -> Option<&Interaction> {
        self.interactions.get(&id)
    }

    /// The bot's answers to an interaction, in order (empty for an unknown id).
    pub fn interaction_responses(&self, id: u64) -> &[InteractionResponse] {
        self.interactions
            .get(&id)
            .map(|i| i.responses.as_slice())
            .unwrap_or(&[])
    }

    pub fn rest_log(&self) -> &[RestCall] {
        &self.rest
    }

    /// REST calls with this method whose path starts with `prefix` (path without `/api/v10`).
    pub fn rest_calls(&self, method: &str, prefix: &str) -> Vec<&RestCall> {
        self.rest
            .iter()
            .filter(|c| rule_matches(method, prefix, &c.method, &c.path))
            .collect()
    }

    /// Requests the fake does not implement (REST routes, gateway opcodes), described.
    pub fn unexpected(&self) -> &[String] {
        &self.unexpected
    }

    /// Every payload the bot sent over the gateway, in order.
    pub fn gateway_frames(&self) -> &[GatewayFrame] {
        &self.frames
    }

    pub fn identifies(&self) -> usize {
        self.identifies
    }

    /// Resume (op 6) payloads received, accepted or not.
    pub fn resumes(&self) -> usize {
        self.resumes
    }

    /// Resumes answered with op 9 (unknown or invalidated session).
    pub fn rejected_resumes(&self) -> usize {
        self.rejected_resumes
    }

    /// WebSocket connections opened so far.
    pub fn connections(&self) -> usize {
        self.connections
    }

    pub fn heartbeats(&self) -> usize {
        self.heartbeats
    }

    /// The `d` of the last Identify (token, intents, properties...).
    pub fn last_identify(&self) -> &Value {
        &self.last_identify
    }

    /// Requests sent into an exhausted rate-limit bucket (answered 429 by the fake's limits, not
    /// by `fail_next`).
    pub fn violations(&self) -> usize {
        self.violations
    }

    /// Whether a connection is identified or resumed and receiving dispatches.
    pub fn gateway_live(&self) -> bool {
        self.gw.live.is_some()
    }

    /// The current session's last sequence number (0 before the first Identify).
    pub fn seq(&self) -> u64 {
        self.gw.session.as_ref().map_or(0, |s| s.seq)
    }

    // ---- helpers for the fake ----

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn note_unexpected(&mut self, what: String) {
        eprintln!("fake discord: unexpected: {what}");
        self.unexpected.push(what);
    }

    /// Whether `id` is a text channel or thread the bot can post in.
    pub(super) fn is_channel_or_thread(&self, id: u64) -> bool {
        self.channels.contains_key(&id) || self.threads.contains_key(&id)
    }

    /// The permission bits of a member: `@everyone` ORed with each role (Administrator = all).
    pub(super) fn permissions_of(&self, user: u64) -> u64 {
        let mut bits = self.roles.get(&GUILD_ID).map_or(0, |r| r.permissions);
        if let Some(u) = self.users.get(&user) {
            for role in &u.roles {
                bits |= self.roles.get(role).map_or(0, |r| r.permissions);
            }
        }
        if bits & 8 != 0 {
            // Administrator implies every permission; Discord reports all bits.
            bits = (1u64 << 51) - 1;
        }
        bits
    }

    // ---- JSON ----

    pub(super) fn user_json(&self, id: u64) -> Value {
        match self.users.get(&id) {
            Some(u) => {
                let mut user = json!({"id": id.to_string(), "username": u.name, "global_name": null,
                                      "avatar": null});
                if u.bot {
                    user["bot"] = json!(true);
                }
                user
            }
            None => json!({"id": id.to_string(), "username": format!("user{id}"), "avatar": null}),
        }
    }

    fn role_ids(&self, user: u64) -> Vec<String> {
        self.users
            .get(&user)
            .map(|u| u.roles.iter().map(u64::to_string).collect())
            .unwrap_or_default()
    }

    /// A full member (with `user`), as in GUILD_CREATE, reactions and interactions.
    pub(super) fn member_json(&self, id: u64) -> Value {
        json!({"user": self.user_json(id), "roles": self.role_ids(id), "joined_at": JOINED_AT,
               "nick": null, "deaf": false, "mute": false, "flags": 0, "pending": false})
    }

    /// The partial member (no `user`) that MESSAGE_CREATE carries.
    pub(super) fn partial_member_json(&self, id: u64) -> Value {
        json!({"roles": self.role_ids(id), "joined_at": JOINED_AT, "nick": null, "deaf": false,
               "mute": false, "flags": 0})
    }

    pub(super) fn role_json(&self, role: &Role, position: usize) -> Value {
        json!({"id": role.id.to_string(), "name": role.name, "permissions": role.permissions.to_string(),
               "position": position, "color": 0, "colors": {"primary_color": 0}, "hoist": false,
               "managed": role.managed, "mentionable": false, "flags": 0})
    }

    pub(super) fn channel_json(&self, channel: &Channel) -> Value {
        json!({"id": channel.id.to_string(), "type": 0, "name": channel.name,
               "guild_id": GUILD_ID.to_string(), "position": channel.position,
               "permission_overwrites": [], "nsfw": false, "parent_id": null, "topic": channel.topic,
               "rate_limit_per_user": 0, "last_message_id": self.last_message_id(channel.id),
               "flags": 0})
    }

    fn last_message_id(&self, channel: u64) -> Value {
        self.messages
            .iter()
            .rev()
            .find(|m| m.channel == channel)
            .map_or(Value::Null, |m| json!(m.id.to_string()))
    }

    pub(super) fn thread_json(&self, thread: &Thread) -> Value {
        let count = self
            .messages
            .iter()
            .filter(|m| m.channel == thread.id)
            .count();
        let mut metadata = json!({"archived": thread.archived, "locked": thread.locked,
                                  "auto_archive_duration": thread.auto_archive_duration,
                                  "archive_timestamp": JOINED_AT});
        if thread.kind == 12 {
            metadata["invitable"] = json!(true);
        }
        json!({"id": thread.id.to_string(), "type": thread.kind, "name": thread.name,
               "guild_id": GUILD_ID.to_string(), "parent_id": thread.parent.to_string(),
               "owner_id": thread.owner.to_string(), "last_message_id": self.last_message_id(thread.id),
               "member_count": thread.members.len().min(50), "message_count": count,
               "total_message_sent": count, "rate_limit_per_user": 0, "flags": 0,
               "thread_metadata": metadata})
    }

    /// The channel or thread object `GET /channels/{id}` returns.
    pub(super) fn any_channel_json(&self, id: u64) -> Option<Value> {
        if let Some(c) = self.channels.get(&id) {
            return Some(self.channel_json(c));
        }
        self.threads.get(&id).map(|t| self.thread_json(t))
    }

    fn attachment_json(&self, channel: u64, a: &Attachment) -> Value {
        let url = format!(
            "{}/attachments/{channel}/{}/{}",
            self.base_url, a.id, a.filename
        );
        json!({"id": a.id.to_string(), "filename": a.filename, "size": a.size, "url": url,
               "proxy_url": url, "content_type": a.content_type})
    }

    /// A message object. `gateway` adds `guild_id` and `member`, which Discord sends on gateway
    /// events but not in REST responses.
    pub(super) fn message_json(&self, m: &Msg, gateway: bool) -> Value {
        let mentions: Vec<Value> = m.mentions.iter().map(|id| self.user_json(*id)).collect();
        let mut value = json!({
            "id": m.id.to_string(), "channel_id": m.channel.to_string(),
            "author": self.user_json(m.author), "content": m.content, "timestamp": m.timestamp,
            "edited_timestamp": m.edited_timestamp, "tts": false,
            "mention_everyone": m.mention_everyone, "mentions": mentions,
            "mention_roles": m.mention_roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "attachments": m.attachments.iter().map(|a| self.attachment_json(m.channel, a))
                .collect::<Vec<_>>(),
            "embeds": m.embeds, "components": m.components, "pinned": false, "type": m.kind,
            "flags": m.flags,
        });
        if let Some(reply) = m.reply_to {
            let channel = self.message(reply).map_or(m.channel, |r| r.channel);
            value["message_reference"] = json!({"type": 0, "message_id": reply.to_string(),
                "channel_id": channel.to_string(), "guild_id": GUILD_ID.to_string()});
            if let Some(referenced) = self.message(reply) {
                let mut referenced = self.message_json(
                    &Msg {
                        reply_to: None,
                        ..referenced.clone()
                    },
                    false,
                );
                if let Some(map) = referenced.as_object_mut() {
                    map.remove("message_reference");
                }
                value["referenced_message"] = referenced;
            }
        }
        if m.interaction.is_some() {
            value["webhook_id"] = json!(APP_ID.to_string());
            value["application_id"] = json!(APP_ID.to_string());
        }
        if gateway {
            value["guild_id"] = json!(GUILD_ID.to_string());
            value["member"] = self.partial_member_json(m.author);
        }
        value
    }

    pub(super) fn guild_json(&self) -> Value {
        let roles: Vec<Value> = self
            .roles
            .values()
            .enumerate()
            .map(|(i, r)| self.role_json(r, i))
            .collect();
        let members: Vec<Value> = self.users.keys().map(|id| self.member_json(*id)).collect();
        let channels: Vec<Value> = self
            .channels
            .values()
            .map(|c| self.channel_json(c))
            .collect();
        let threads: Vec<Value> = self
            .threads
            .values()
            .filter(|t| !t.archived)
            .map(|t| self.thread_json(t))
            .collect();
        json!({
            "id": GUILD_ID.to_string(), "name": GUILD_NAME, "icon": null,
            "owner_id": OWNER_ID.to_string(), "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0, "roles": roles,
            "emojis": [], "features": [], "mfa_level": 0, "system_channel_id": null,
            "system_channel_flags": 0, "premium_tier": 0, "preferred_locale": "en-US",
            "nsfw_level": 0, "stickers": [], "premium_progress_bar_enabled": false,
            "joined_at": JOINED_AT, "large": false, "unavailable": false,
            "member_count": members.len(), "voice_states": [], "members": members,
            "channels": channels, "threads": threads, "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "afk_timeout": 300,
        })
    }

    pub(super) fn ready_json(&self, session_id: &str) -> Value {
        let ws = format!("{}/ws", self.base_url.replacen("http://", "ws://", 1));
        json!({"v": 10, "user": {"id": BOT_ID.to_string(), "username": BOT_NAME, "bot": true,
                                  "verified": true, "mfa_enabled": false, "avatar": null},
               "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
               "session_id": session_id, "resume_gateway_url": ws, "shard": [0, 1],
               "application": {"id": APP_ID.to_string(), "flags": 0},
               "private_channels": [], "relationships": []})
    }

    // ---- gateway dispatch ----

    /// The intent a dispatch needs, or 0 when it is always sent.
    fn intent_for(event: &str) -> u64 {
        match event {
            "GUILD_CREATE" | "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "CHANNEL_DELETE"
            | "THREAD_CREATE" | "THREAD_UPDATE" | "THREAD_DELETE" | "GUILD_ROLE_CREATE" => {
                intents::GUILDS
            }
            "GUILD_MEMBER_ADD" => intents::GUILD_MEMBERS,
            "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" => intents::GUILD_MESSAGES,
            "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => intents::GUILD_MESSAGE_REACTIONS,
            _ => 0,
        }
    }

    /// Sends a dispatch in the current session: assigns the next sequence number, keeps it for
    /// Resume, and writes it to the live connection if there is one. Without a session (before
    /// the first Identify, or after a non-resumable invalidation) the event is lost, as on
    /// Discord; events outside the session's intents are never sent.
    ///
    /// Without the MESSAGE_CONTENT intent, messages not by the bot and not mentioning it arrive
    /// with empty content, embeds, attachments and components, as on Discord.
    pub(super) fn dispatch(&mut self, event: &str, mut d: Value) {
        let Some(session) = self.gw.session.as_mut() else {
            return;
        };
        let needed = World::intent_for(event);
        if needed != 0 && session.intents & needed == 0 {
            return;
        }
        if (event == "MESSAGE_CREATE" || event == "MESSAGE_UPDATE")
            && session.intents & intents::MESSAGE_CONTENT == 0
        {
            let bot = BOT_ID.to_string();
            let by_bot = d["author"]["id"].as_str() == Some(bot.as_str());
            let mentions_bot = d["mentions"]
                .as_array()
                .is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(bot.as_str())));
            if !by_bot && !mentions_bot {
                d["content"] = json!("");
                d["embeds"] = json!([]);
                d["attachments"] = json!([]);
                d["components"] = json!([]);
            }
        }
        session.seq += 1;
        let seq = session.seq;
        let frame = json!({"op": 0, "s": seq, "t": event, "d": d}).to_string();
        let replayable = event != "READY" && event != "RESUMED";
        session.buffer.push_back((seq, replayable, frame.clone()));
        if session.buffer.len() > REPLAY_BUFFER {
            session.buffer.pop_front();
        }
        if let Some(tx) = self.gw.live.and_then(|live| self.gw.conns.get(&live)) {
            let _ = tx.send(Out::Text(frame));
        }
    }

    pub(super) fn dispatch_message_create(&mut self, id: u64) {
        if let Some(m) = self.message(id) {
            if m.is_ephemeral() {
                return;
            }
            let d = self.message_json(m, true);
            self.dispatch("MESSAGE_CREATE", d);
        }
    }

    pub(super) fn dispatch_message_update(&mut self, id: u64) {
        if let Some(m) = self.message(id) {
            if m.is_ephemeral() {
                return;
            }
            let d = self.message_json(m, true);
            self.dispatch("MESSAGE_UPDATE", d);
        }
    }

    pub(super) fn dispatch_thread(&mut self, event: &str, id: u64, newly_created: bool) {
        if let Some(t) = self.threads.get(&id) {
            let mut d = self.thread_json(t);
            if newly_created {
                d["newly_created"] = json!(true);
            }
            self.dispatch(event, d);
        }
    }

    pub(super) fn reaction_event_json(&self, r: &Reaction, add: bool) -> Value {
        let emoji = emoji_json(&r.emoji);
        let mut d = json!({"user_id": r.user.to_string(), "channel_id": r.channel.to_string(),
                           "message_id": r.message.to_string(), "guild_id": GUILD_ID.to_string(),
                           "emoji": emoji, "burst": false, "type": 0});
        if add {
            d["member"] = self.member_json(r.user);
            d["burst_colors"] = json!([]);
            if let Some(m) = self.message(r.message) {
                d["message_author_id"] = json!(m.author.to_string());
            }
        }
        d
    }

    // ---- building messages ----

    /// The users, roles and `@everyone` that `content` mentions, filtered by `allowed_mentions`
    /// (`Null` = everything parsed, as Discord does without the field).
    pub(super) fn mentions_in(&self, content: &str, allowed: &Value) -> (Vec<u64>, Vec<u64>, bool) {
        let (users, roles) = parse_mentions(content);
        let everyone = content.contains("@everyone") || content.contains("@here");
        if allowed.is_null() {
            let users = users
                .into_iter()
                .filter(|u| self.users.contains_key(u))
                .collect();
            return (users, roles, everyone);
        }
        let parse: Vec<&str> = allowed["parse"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let listed = |key: &str, id: u64| {
            allowed[key]
                .as_array()
                .is_some_and(|l| l.iter().any(|v| value_id(v) == Some(id)))
        };
        let users = users
            .into_iter()
            .filter(|u| self.users.contains_key(u))
            .filter(|u| parse.contains(&"users") || listed("users", *u))
            .collect();
        let roles = roles
            .into_iter()
            .filter(|r| parse.contains(&"roles") || listed("roles", *r))
            .collect();
        (users, roles, everyone && parse.contains(&"everyone"))
    }

    /// Stores a new message and returns its id (no dispatch).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_message(
        &mut self,
        channel: u64,
        author: u64,
        content: String,
        attachments: Vec<Attachment>,
        embeds: Value,
        components: Value,
        allowed_mentions: Value,
        reply_to: Option<u64>,
        flags: u64,
        interaction: Option<u64>,
    ) -> u64 {
        let id = self.next_id();
        let (mentions, mention_roles, mention_everyone) =
            self.mentions_in(&content, &allowed_mentions);
        let mut mentions = mentions;
        if let Some(reply) = reply_to.and_then(|r| self.message(r)) {
            // A reply pings the replied-to author unless allowed_mentions.replied_user is false.
            let ping = allowed_mentions.is_null() || allowed_mentions["replied_user"] == true;
            if ping && !mentions.contains(&reply.author) {
                mentions.push(reply.author);
            }
        }
        let kind = if interaction.is_some() {
            20
        } else if reply_to.is_some() {
            19
        } else {
            0
        };
        self.messages.push(Msg {
            id,
            channel,
            author,
            content,
            attachments,
            embeds: if embeds.is_array() { embeds } else { json!([]) },
            components: if components.is_array() {
                components
            } else {
                json!([])
            },
            allowed_mentions,
            mentions,
            mention_roles,
            mention_everyone,
            reply_to,
            edited: false,
            kind,
            flags,
            interaction,
            timestamp: now_timestamp(),
            edited_timestamp: None,
        });
        id
    }
}

/// `<@id>`/`<@!id>` user mentions and `<@&id>` role mentions in `content`.
pub(super) fn parse_mentions(content: &str) -> (Vec<u64>, Vec<u64>) {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let (is_role, body) = match rest.as_bytes().first() {
            Some(b'&') => (true, &rest[1..]),
            Some(b'!') => (false, &rest[1..]),
            _ => (false, rest),
        };
        let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && body[digits.len()..].starts_with('>') {
            if let Ok(id) = digits.parse::<u64>() {
                let list = if is_role { &mut roles } else { &mut users };
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
    }
    (users, roles)
}

/// A snowflake from a JSON string or number.
pub(super) fn value_id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The gateway `emoji` object for a unicode emoji or a custom `name:id`.
pub(super) fn emoji_json(emoji: &str) -> Value {
    match emoji.rsplit_once(':') {
        Some((name, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            let (animated, name) = match name.strip_prefix("a:") {
                Some(name) => (true, name),
                None => (false, name),
            };
            json!({"id": id, "name": name, "animated": animated})
        }
        _ => json!({"id": null, "name": emoji}),
    }
}

/// Now, as Discord's RFC 3339 timestamps.
pub(super) fn now_timestamp() -> String {
    serenity::model::Timestamp::now().to_string()
}

/// Discord's error body.
pub(super) fn error_body(code: u64, message: &str) -> Value {
    json!({"code": code, "message": message})
}

/// Discord's "Invalid Form Body" (50035) with an `errors` tree naming the field.
pub(super) fn form_error(field: &str, code: &str, message: &str) -> Value {
    let mut errors = Map::new();
    errors.insert(
        field.to_owned(),
        json!({"_errors": [{"code": code, "message": message}]}),
    );
    json!({"code": 50035, "message": "Invalid Form Body", "errors": errors})
}
