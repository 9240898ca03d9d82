//! A fake Discord (REST under `/api/v10` and the gateway at `/ws`) on 127.0.0.1, for driving the
//! real serenity 0.12.5 / poise 0.7 client, in-process or in the `tavern` binary as a child.
//!
//! It follows `/work/shared/notes/discord-offline-testing.md`: the bot points serenity's
//! `HttpBuilder::proxy` at [`FakeDiscord::base_url`] (with serenity's ratelimiter disabled), builds
//! its client (`GET /gateway` answers `ws://127.0.0.1:PORT/ws`) and connects. The fake keeps one
//! guild with users, roles, channels, threads, messages, reactions, commands and interactions in a
//! [`World`] behind a mutex. REST mutations echo the gateway events Discord would send (the bot's
//! own MESSAGE_CREATE, THREAD_CREATE, THREAD_UPDATE, MESSAGE_REACTION_ADD, ...); tests act as users
//! with [`FakeDiscord::user_says`], [`FakeDiscord::react`] and [`FakeDiscord::slash`], read the
//! world back, and wait for changes with [`FakeDiscord::wait_for`] / [`FakeDiscord::wait_for_async`]
//! instead of sleeping. Unknown routes answer 404 and are recorded;
//! [`FakeDiscord::assert_no_unexpected`] fails the test on them.
//!
//! Like the fake model servers in `crate::fakes`, it runs on its own OS thread with its own tokio
//! runtime, so sync tests (driving the real binary) and async tests can both use it; dropping the
//! handle stops it.
//!
//! Rate limits: every channel has a message-send budget (default 5 per 5 s) and all requests share
//! a global one (50 per s); a request into an exhausted bucket gets Discord's 429 and counts in
//! [`FakeDiscord::violations`]. Successful responses carry numeric `X-RateLimit-*` headers.
//!
//! Things the fake does as Discord does, which a bot may trip over: `POST .../threads` without a
//! `type` creates a private thread (12); a thread started from a message takes the message's id;
//! messages in REST responses have no `guild_id`/`member` (gateway ones do); without the
//! MESSAGE_CONTENT intent, others' messages arrive with empty content unless they mention the bot;
//! the first interaction callback must come within 3 s (else 10062), a second one is 40060, and the
//! first follow-up after a deferral replaces the "thinking" message; events pushed while no session
//! exists (before the first Identify, after a non-resumable invalidation) are lost, while events
//! pushed between a disconnect and a successful Resume are replayed.

// Each test module uses only some of these helpers.
#![allow(dead_code)]

mod gateway;
mod rest;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

#[allow(unused_imports)]
pub use world::{
    intents, Attachment, Channel, Command, FilePart, GatewayFrame, Interaction,
    InteractionResponse, Msg, Reaction, RestCall, Role, Thread, User, World, APP_ID,
    ATTACHMENT_SIZE_LIMIT, BOT_ID, BOT_NAME, BOT_ROLE_ID, CONTENT_LIMIT, EMBED_TOTAL_LIMIT,
    GUILD_ID, GUILD_NAME, INTERACTION_DEADLINE, MAIN_CHANNEL, MAIN_CHANNEL_NAME, OWNER_ID, TOKEN,
};

use crate::fakes::Watched;
use world::{value_id, DelayRule, FailRule, Out};

/// How long a dropped fake lets in-flight responses finish before its runtime cancels them.
const DRAIN: Duration = Duration::from_millis(500);

/// The state shared by the server's handlers and the test's [`FakeDiscord`] handle.
///
/// No handler holds the lock across an `.await`, so sync test code can use it too. Waiters
/// ([`FakeDiscord::wait_for`], [`FakeDiscord::wait_for_async`]) are woken after every change.
pub(crate) struct Shared {
    world: Watched<World>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock()
    }

    /// Reads the world without waking anyone.
    fn read<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the world, then wakes every waiter so it re-checks its condition.
    ///
    /// Waiters check and start waiting under the lock, so a change made here is either seen by
    /// their check or finds them waiting when the notification goes out.
    fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let result = f(&mut self.lock());
        self.world.changed();
        result
    }
}

/// A running fake Discord. See the module documentation.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDiscord {
    /// Binds 127.0.0.1:0 (a bind failure fails the test at once) and serves REST and the gateway
    /// on a new thread with its own two-worker runtime.
    pub fn start() -> FakeDiscord {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a loopback port for the fake Discord");
        listener
            .set_nonblocking(true)
            .expect("tokio needs the listener in non-blocking mode");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let shared = Arc::new(Shared {
            world: Watched::new(World::new(format!("http://{addr}"))),
        });
        let router = Router::new()
            .route("/ws", get(gateway::upgrade))
            .fallback(rest::handle)
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("fake-discord".to_owned())
            .spawn(move || {
                crate::fakes::serve_until_stopped("fake-discord", listener, router, stopped, DRAIN)
            })
            .expect("spawn the fake Discord's thread");
        FakeDiscord {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: what the bot gives `HttpBuilder::proxy` (REST then arrives under
    /// `/api/v10/...`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/ws`, what `GET /api/v10/gateway` answers.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Runs `f` on the world under the lock (keep it short; do not call the fake from inside).
    pub fn with_world<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        self.shared.read(f)
    }

    // ------------------------------------------------------------ setting up the guild

    /// Adds a text channel (type 0); echoes CHANNEL_CREATE when a session exists.
    pub fn add_channel(&self, name: &str) -> u64 {
        self.shared.mutate(|w| {
            let id = w.next_id();
            let position = w.channels.len() as u16;
            w.channels.insert(
                id,
                Channel {
                    id,
                    name: name.to_owned(),
                    position,
                    topic: None,
                },
            );
            let d = w.channel_json(&w.channels[&id]);
            w.dispatch("CHANNEL_CREATE", d);
            id
        })
    }

    /// Adds a role with these permission bits; echoes GUILD_ROLE_CREATE when a session exists.
    pub fn add_role(&self, name: &str, permissions: u64) -> u64 {
        self.shared.mutate(|w| {
            let id = w.next_id();
            let role = Role {
                id,
                name: name.to_owned(),
                permissions,
                managed: false,
            };
            let d = json!({"guild_id": GUILD_ID.to_string(),
                           "role": w.role_json(&role, w.roles.len())});
            w.roles.insert(id, role);
            w.dispatch("GUILD_ROLE_CREATE", d);
            id
        })
    }

    /// Adds a (human) guild member with no roles besides `@everyone`.
    pub fn add_user(&self, name: &str) -> u64 {
        self.add_user_with_roles(name, &[])
    }

    /// Adds a guild member with these roles (ids from [`FakeDiscord::add_role`]); listed in
    /// GUILD_CREATE, echoed as GUILD_MEMBER_ADD when a session exists.
    pub fn add_user_with_roles(&self, name: &str, roles: &[u64]) -> u64 {
        self.shared.mutate(|w| {
            for role in roles {
                assert!(
                    w.roles.contains_key(role),
                    "add_user_with_roles({name}): role {role} does not exist (use add_role)"
                );
            }
            let id = w.next_id();
            w.users.insert(
                id,
                User {
                    id,
                    name: name.to_owned(),
                    bot: false,
                    roles: roles.to_vec(),
                },
            );
            let mut d = w.member_json(id);
            d["guild_id"] = json!(GUILD_ID.to_string());
            w.dispatch("GUILD_MEMBER_ADD", d);
            id
        })
    }

    /// Sets `@everyone`'s permission bits (default 8, Administrator). The bot keeps
    /// Administrator through its managed role.
    pub fn set_everyone_permissions(&self, bits: u64) {
        self.shared.mutate(|w| {
            if let Some(role) = w.roles.get_mut(&GUILD_ID) {
                role.permissions = bits;
            }
        });
    }

    /// The heartbeat interval announced in later Hellos (default 45 000 ms).
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.shared
            .mutate(|w| w.gw.heartbeat_ms = interval.as_millis().max(1) as u64);
    }

    // ------------------------------------------------------------ acting as users

    /// `user` posts `text` in a channel or thread; MESSAGE_CREATE goes out with `guild_id` and
    /// `member`, and `<@1000>` in the text lists the bot in `mentions`. Returns the message id.
    pub fn user_says(&self, user: u64, channel: u64, text: &str) -> u64 {
        self.user_message(user, channel, text, None, &[])
    }

    /// `user` replies to `reply_to` (a type 19 message with `message_reference` and
    /// `referenced_message`; the replied-to author is pinged).
    pub fn user_replies(&self, user: u64, channel: u64, reply_to: u64, text: &str) -> u64 {
        self.user_message(user, channel, text, Some(reply_to), &[])
    }

    /// `user` posts `text` with files `(filename, bytes)`; the attachments' URLs point at the fake,
    /// which serves the bytes.
    pub fn user_uploads(
        &self,
        user: u64,
        channel: u64,
        text: &str,
        files: &[(&str, &[u8])],
    ) -> u64 {
        self.user_message(user, channel, text, None, files)
    }

    fn user_message(
        &self,
        user: u64,
        channel: u64,
        text: &str,
        reply_to: Option<u64>,
        files: &[(&str, &[u8])],
    ) -> u64 {
        self.shared.mutate(|w| {
            check_actor(w, user, channel);
            if let Some(reply) = reply_to {
                assert!(
                    w.message(reply).is_some(),
                    "user_replies: no message {reply}"
                );
            }
            let attachments = files
                .iter()
                .map(|(name, data)| Attachment {
                    id: w.next_id(),
                    filename: (*name).to_owned(),
                    size: data.len(),
                    content_type: Some(guess_content_type(name).to_owned()),
                    data: data.to_vec(),
                })
                .collect();
            let id = w.store_message(
                channel,
                user,
                text.to_owned(),
                attachments,
                json!([]),
                json!([]),
                Value::Null,
                reply_to,
                0,
                None,
            );
            w.dispatch_message_create(id);
            id
        })
    }

    /// `user` reacts to `message` with `emoji` (unicode, or `name:id` for a custom emoji);
    /// MESSAGE_REACTION_ADD goes out with `member`.
    pub fn react(&self, user: u64, channel: u64, message: u64, emoji: &str) {
        self.shared.mutate(|w| {
            check_actor(w, user, channel);
            assert!(
                w.message(message).is_some_and(|m| m.channel == channel),
                "react: no message {message} in channel {channel}"
            );
            let reaction = Reaction {
                channel,
                message,
                user,
                emoji: emoji.to_owned(),
            };
            if !w.reactions.contains(&reaction) {
                let d = w.reaction_event_json(&reaction, true);
                w.reactions.push(reaction);
                w.dispatch("MESSAGE_REACTION_ADD", d);
            }
        })
    }

    /// `user` runs slash command `/name` in `channel`; INTERACTION_CREATE goes out with `member`,
    /// `entitlements` and `attachment_size_limit`. Returns the interaction id.
    ///
    /// `options` is `null`/`{}` for none, an object `{"task": "fix", "count": 3, "who": alice}`
    /// whose types come from the registered command (else: string 3, integer 4, bool 5, float 10),
    /// or an array of raw option objects passed through as-is. User (6), role (8), channel (7) and
    /// mentionable (9) values are ids and are added to `data.resolved`. A command the bot never
    /// registered is sent anyway and recorded as unexpected.
    pub fn slash(&self, user: u64, channel: u64, name: &str, options: Value) -> u64 {
        self.shared.mutate(|w| {
            check_actor(w, user, channel);
            let command = w
                .commands
                .iter()
                .find(|c| c.name == name && c.kind == 1 && c.guild == Some(GUILD_ID))
                .or_else(|| {
                    w.commands
                        .iter()
                        .find(|c| c.name == name && c.kind == 1 && c.guild.is_none())
                })
                .cloned();
            if command.is_none() {
                w.note_unexpected(format!(
                    "slash: /{name} was never registered by the bot (registered: {:?})",
                    w.commands.iter().map(|c| &c.name).collect::<Vec<_>>()
                ));
            }
            let command_id = match &command {
                Some(c) => c.id,
                None => w.next_id(),
            };
            let (options, resolved) = build_options(w, command.as_ref(), options);
            let id = w.next_id();
            let token = format!("fake-interaction-token-{id}");
            let mut data = json!({"id": command_id.to_string(), "name": name, "type": 1,
                                  "options": options, "resolved": resolved});
            if let Some(guild) = command.as_ref().and_then(|c| c.guild) {
                data["guild_id"] = json!(guild.to_string());
            }
            let mut member = w.member_json(user);
            member["permissions"] = json!(w.permissions_of(user).to_string());
            let d = json!({
                "id": id.to_string(), "application_id": APP_ID.to_string(), "type": 2,
                "token": token, "version": 1, "channel_id": channel.to_string(),
                "channel": partial_channel_json(w, channel, user), "guild_id": GUILD_ID.to_string(),
                "guild_locale": "en-US", "locale": "en-US", "data": data, "member": member,
                "app_permissions": w.permissions_of(BOT_ID).to_string(), "entitlements": [],
                "authorizing_integration_owners": {"0": GUILD_ID.to_string()}, "context": 0,
                "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            });
            w.interactions.insert(
                id,
                Interaction {
                    id,
                    token,
                    user,
                    channel,
                    name: name.to_owned(),
                    options: d["data"]["options"].clone(),
                    responses: Vec::new(),
                    original: None,
                    acknowledged: false,
                    created: Instant::now(),
                },
            );
            w.dispatch("INTERACTION_CREATE", d);
            id
        })
    }

    // ------------------------------------------------------------ inspection

    /// The messages of a channel or thread, oldest first.
    pub fn messages(&self, channel: u64) -> Vec<Msg> {
        self.shared
            .read(|w| w.messages(channel).into_iter().cloned().collect())
    }

    pub fn message(&self, id: u64) -> Option<Msg> {
        self.shared.read(|w| w.message(id).cloned())
    }

    /// The threads in creation order.
    pub fn threads(&self) -> Vec<Thread> {
        self.shared
            .read(|w| w.threads().into_iter().cloned().collect())
    }

    pub fn thread_named(&self, name: &str) -> Option<Thread> {
        self.shared.read(|w| w.thread_named(name).cloned())
    }

    pub fn reactions(&self, message: u64) -> Vec<Reaction> {
        self.shared
            .read(|w| w.reactions(message).into_iter().cloned().collect())
    }

    /// The registered commands (global and guild).
    pub fn commands(&self) -> Vec<Command> {
        self.shared.read(|w| w.commands().to_vec())
    }

    pub fn interaction_responses(&self, interaction: u64) -> Vec<InteractionResponse> {
        self.shared
            .read(|w| w.interaction_responses(interaction).to_vec())
    }

    /// Every REST call so far, in arrival order.
    pub fn rest_log(&self) -> Vec<RestCall> {
        self.shared.read(|w| w.rest_log().to_vec())
    }

    /// REST calls with this method (`*` for any) whose path starts with `prefix`.
    pub fn rest_calls(&self, method: &str, prefix: &str) -> Vec<RestCall> {
        self.shared
            .read(|w| w.rest_calls(method, prefix).into_iter().cloned().collect())
    }

    pub fn gateway_frames(&self) -> Vec<GatewayFrame> {
        self.shared.read(|w| w.gateway_frames().to_vec())
    }

    /// Requests the fake does not implement or that Discord would refuse outright.
    pub fn unexpected(&self) -> Vec<String> {
        self.shared.read(|w| w.unexpected().to_vec())
    }

    /// Panics listing every unexpected request, if any.
    pub fn assert_no_unexpected(&self) {
        let unexpected = self.unexpected();
        assert!(
            unexpected.is_empty(),
            "the fake Discord got {} unexpected request(s):\n  {}",
            unexpected.len(),
            unexpected.join("\n  ")
        );
    }

    /// Requests sent into an exhausted rate-limit bucket.
    pub fn violations(&self) -> usize {
        self.shared.read(World::violations)
    }

    pub fn identifies(&self) -> usize {
        self.shared.read(World::identifies)
    }

    /// Resume payloads received (accepted or not; see [`World::rejected_resumes`]).
    pub fn resumes(&self) -> usize {
        self.shared.read(World::resumes)
    }

    pub fn connections(&self) -> usize {
        self.shared.read(World::connections)
    }

    /// Blocks until `done(world)` holds; false if `timeout` passed first.
    ///
    /// For sync tests, or tests whose bot is another process. An async test whose bot runs on the
    /// test's own runtime must use [`FakeDiscord::wait_for_async`], or it would block the bot.
    pub fn wait_for(&self, done: impl Fn(&World) -> bool, timeout: Duration) -> bool {
        self.shared.world.wait(timeout, done)
    }

    /// Waits until `done(world)` holds; false if `timeout` passed first.
    pub async fn wait_for_async(&self, done: impl Fn(&World) -> bool, timeout: Duration) -> bool {
        self.shared.world.wait_async(timeout, done).await
    }

    // ------------------------------------------------------------ rate limits

    /// Each channel may take `n` message POSTs per `window` (default 5 per 5 s); re-enables limits.
    pub fn set_channel_limit(&self, n: u32, window: Duration) {
        self.shared.mutate(|w| {
            w.limits.enabled = true;
            w.limits.channel_limit = n;
            w.limits.channel_window = window;
            w.limits.channels.clear();
        });
    }

    /// All requests together may number `n` per `window` (default 50 per s); re-enables limits.
    pub fn set_global_limit(&self, n: u32, window: Duration) {
        self.shared.mutate(|w| {
            w.limits.enabled = true;
            w.limits.global_limit = n;
            w.limits.global_window = window;
            w.limits.global = None;
        });
    }

    /// Turns the fake's rate limits off (headers are still sent, always full).
    pub fn disable_limits(&self) {
        self.shared.mutate(|w| w.limits.enabled = false);
    }

    // ------------------------------------------------------------ faults

    /// Sends op 7 Reconnect on the live connection; later events are buffered for the Resume.
    pub fn reconnect(&self) {
        self.on_live("reconnect", |w, tx| {
            let _ = tx.send(Out::Text(
                json!({"op": 7, "d": null, "s": null, "t": null}).to_string(),
            ));
            w.gw.live = None;
        });
    }

    /// Sends op 9 Invalid Session. With `resumable` false the session is dropped, so the bot must
    /// Identify again (serenity takes about 5 s); events until then are lost.
    pub fn invalidate(&self, resumable: bool) {
        self.on_live("invalidate", |w, tx| {
            let _ = tx.send(Out::Text(
                json!({"op": 9, "d": resumable, "s": null, "t": null}).to_string(),
            ));
            w.gw.live = None;
            if !resumable {
                w.gw.session = None;
            }
        });
    }

    /// Closes the live connection's TCP without a close frame.
    pub fn drop_socket(&self) {
        self.on_live("drop_socket", |w, tx| {
            let _ = tx.send(Out::Drop);
            w.gw.live = None;
        });
    }

    /// Closes the live connection with a close frame of `code`. 4006 and 4009 also end the
    /// session (the bot must Identify again).
    pub fn close(&self, code: u16) {
        self.on_live("close", |w, tx| {
            let _ = tx.send(Out::Close(code));
            w.gw.live = None;
            if matches!(code, 4006 | 4009) {
                w.gw.session = None;
            }
        });
    }

    /// Every later Resume also replays the last `n` dispatches the bot had already received, as
    /// Discord's at-least-once delivery may: a bot must recognise them and not act twice.
    pub fn redeliver_on_resume(&self, n: u64) {
        self.shared.mutate(|w| w.gw.redeliver = n);
    }

    /// Stops (true) or resumes (false) answering heartbeats with op 11.
    pub fn no_ack(&self, on: bool) {
        self.shared.mutate(|w| w.gw.no_ack = on);
    }

    /// The next `times` requests with `method` (`*` for any) whose path (without `/api/v10`)
    /// starts with `path_prefix` fail with `status`: 429 as Discord's rate limit answer (with
    /// `Retry-After`, see [`FakeDiscord::set_injected_retry_after`]), 500/502/503 as server errors,
    /// anything else with a generic error body. These do not count as violations.
    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, times: usize) {
        self.shared.mutate(|w| {
            w.fails.push(FailRule {
                method: method.to_owned(),
                prefix: path_prefix.to_owned(),
                status,
                times,
            })
        });
    }

    /// The `retry_after` of injected 429s (default 0.5 s).
    pub fn set_injected_retry_after(&self, retry_after: Duration) {
        self.shared.mutate(|w| w.injected_retry_after = retry_after);
    }

    /// Requests matching `method`/`path_prefix` wait `delay` before being handled (zero removes
    /// the rule). Rules are checked in the order they were added.
    pub fn delay(&self, method: &str, path_prefix: &str, delay: Duration) {
        self.shared.mutate(|w| {
            w.delays
                .retain(|d| !(d.method == method && d.prefix == path_prefix));
            if !delay.is_zero() {
                w.delays.push(DelayRule {
                    method: method.to_owned(),
                    prefix: path_prefix.to_owned(),
                    delay,
                });
            }
        });
    }

    /// Runs `f` with the live connection's sender; panics when no connection is live.
    fn on_live(
        &self,
        what: &str,
        f: impl FnOnce(&mut World, &tokio::sync::mpsc::UnboundedSender<Out>),
    ) {
        self.shared.mutate(|w| {
            let tx =
                w.gw.live
                    .and_then(|live| w.gw.conns.get(&live))
                    .cloned()
                    .unwrap_or_else(|| {
                        panic!("{what}: no live gateway connection (wait for gateway_live() first)")
                    });
            f(w, &tx);
        });
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.shared.mutate(|w| {
            for tx in w.gw.conns.values() {
                let _ = tx.send(Out::Drop);
            }
            w.gw.live = None;
        });
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the fake Discord's thread panicked");
            }
        }
    }
}

/// Panics unless `user` is a member and `channel` a channel or thread.
fn check_actor(w: &World, user: u64, channel: u64) {
    assert!(
        w.users.contains_key(&user),
        "no user {user} in the fake guild (use add_user)"
    );
    assert!(
        w.is_channel_or_thread(channel),
        "no channel or thread {channel} in the fake guild"
    );
}

fn guess_content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "txt" | "log" | "md" | "rs" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// The `channel` object of an interaction, with the invoking user's permissions.
fn partial_channel_json(w: &World, channel: u64, user: u64) -> Value {
    let permissions = w.permissions_of(user).to_string();
    match w.thread(channel) {
        Some(t) => json!({"id": t.id.to_string(), "name": t.name, "type": t.kind,
                          "parent_id": t.parent.to_string(), "guild_id": GUILD_ID.to_string(),
                          "permissions": permissions,
                          "thread_metadata": {"archived": t.archived, "locked": t.locked,
                                              "auto_archive_duration": t.auto_archive_duration}}),
        None => {
            let name = w.channels.get(&channel).map(|c| c.name.clone());
            json!({"id": channel.to_string(), "name": name, "type": 0,
                   "guild_id": GUILD_ID.to_string(), "permissions": permissions})
        }
    }
}

/// The interaction's `options` and `resolved` from what the test passed to `slash`.
fn build_options(w: &World, command: Option<&Command>, options: Value) -> (Value, Value) {
    let list: Vec<Value> = match options {
        Value::Null => Vec::new(),
        Value::Array(list) => list,
        Value::Object(map) => map
            .into_iter()
            .map(|(name, value)| {
                let declared = command.and_then(|c| c.option_type(&name));
                let kind = declared.unwrap_or(match &value {
                    Value::Bool(_) => 5,
                    Value::Number(n) if n.is_i64() || n.is_u64() => 4,
                    Value::Number(_) => 10,
                    _ => 3,
                });
                let value = match (kind, value) {
                    (6..=9, v) => {
                        json!(value_id(&v).map_or_else(|| v.to_string(), |id| id.to_string()))
                    }
                    (3, Value::String(s)) => Value::String(s),
                    (3, v) => Value::String(v.to_string()),
                    (_, v) => v,
                };
                json!({"name": name, "type": kind, "value": value})
            })
            .collect(),
        other => panic!("slash options must be null, an object or an array, not {other}"),
    };
    let mut resolved = Map::new();
    for option in &list {
        resolve(w, option, &mut resolved);
    }
    (Value::Array(list), Value::Object(resolved))
}

/// Adds the users, members, roles and channels that an option (or its sub-options) names.
fn resolve(w: &World, option: &Value, resolved: &mut Map<String, Value>) {
    let mut add = |section: &str, id: u64, value: Value| {
        resolved
            .entry(section.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("sections are objects")
            .insert(id.to_string(), value);
    };
    let kind = option["type"].as_u64().unwrap_or(0);
    let id = value_id(&option["value"]);
    match (kind, id) {
        (6 | 9, Some(id)) if w.users.contains_key(&id) => {
            add("users", id, w.user_json(id));
            let mut member = w.partial_member_json(id);
            member["permissions"] = json!(w.permissions_of(id).to_string());
            add("members", id, member);
        }
        (8 | 9, Some(id)) if w.roles.contains_key(&id) => {
            add("roles", id, w.role_json(&w.roles[&id], 0));
        }
        (7, Some(id)) if w.is_channel_or_thread(id) => {
            let user = BOT_ID;
            add("channels", id, partial_channel_json(w, id, user));
        }
        _ => {}
    }
    if let Some(sub) = option["options"].as_array() {
        for option in sub {
            resolve(w, option, resolved);
        }
    }
}
