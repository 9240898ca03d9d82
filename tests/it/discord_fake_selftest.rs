//! Tests of the fake Discord itself, driven by the real serenity 0.12.5 client and a small poise 0.7
//! framework wired as the bot wires them (proxy + ratelimiter disabled): READY and GUILD_CREATE,
//! users' messages and reactions, the bot's own sends, threads, edits, reactions and uploads with
//! their gateway echoes, slash commands answered by poise, op 7 and op 9, 429s, injected failures
//! and unknown routes. Every step is bounded by a timeout; nothing sleeps to synchronise.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poise::serenity_prelude as serenity;
use serde_json::json;
use serenity::{
    ChannelId, ChannelType, CreateAllowedMentions, CreateAttachment, CreateMessage, CreateThread,
    EditMessage, EditThread, GatewayIntents, GetMessages, GuildId, MessageId, UserId,
};

use crate::discord_fake::{
    FakeDiscord, InteractionResponse, World, BOT_ID, GUILD_ID, GUILD_NAME, MAIN_CHANNEL,
    MAIN_CHANNEL_NAME,
};
use crate::fakes::Watched;

/// The bound on each step.
const STEP: Duration = Duration::from_secs(5);
/// The bound on a re-Identify (serenity waits about 5 s before booting the shard again).
const REIDENTIFY: Duration = Duration::from_secs(9);

struct Data;
type Error = Box<dyn std::error::Error + Send + Sync>;
type Ctx<'a> = poise::Context<'a, Data, Error>;

/// Check that the bot is alive
#[poise::command(slash_command)]
async fn ping(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.say("pong").await?;
    Ok(())
}

/// Repeat typed options back
#[poise::command(slash_command)]
async fn echo(
    ctx: Ctx<'_>,
    #[description = "What to say"] text: String,
    #[description = "How many times"] count: i64,
    #[description = "For whom"] who: serenity::User,
) -> Result<(), Error> {
    ctx.say(format!("{text} x{count} for {}", who.name)).await?;
    ctx.say("follow-up").await?;
    Ok(())
}

/// Take a while: defer, then answer
#[poise::command(slash_command)]
async fn slow(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.defer().await?;
    ctx.say("done slowly").await?;
    Ok(())
}

/// What the bot's handlers saw, as short strings, plus any `Event::Unknown`.
#[derive(Default)]
struct Seen {
    events: Watched<Vec<String>>,
    unknown: Mutex<Vec<String>>,
    ctx: Mutex<Option<serenity::Context>>,
}

/// How many of `events` start with `prefix`.
fn count_in(events: &[String], prefix: &str) -> usize {
    events.iter().filter(|e| e.starts_with(prefix)).count()
}

impl Seen {
    fn push(&self, event: String) {
        self.events.lock().push(event);
        self.events.changed();
    }

    fn count(&self, prefix: &str) -> usize {
        count_in(&self.events.lock(), prefix)
    }

    /// Waits until `n` events start with `prefix`; panics with everything seen on timeout.
    async fn wait(&self, prefix: &str, n: usize, timeout: Duration) {
        let seen = self
            .events
            .wait_async(timeout, |events| count_in(events, prefix) >= n)
            .await;
        if !seen {
            panic!(
                "timed out after {timeout:?} waiting for {n} event(s) {prefix:?}; seen: {:#?}; \
                 undecodable (Event::Unknown): {:#?}",
                self.events.lock(),
                self.unknown.lock().unwrap()
            );
        }
    }
}

struct Handler(Arc<Seen>);

#[serenity::async_trait]
impl serenity::EventHandler for Handler {
    async fn ready(&self, ctx: serenity::Context, ready: serenity::Ready) {
        *self.0.ctx.lock().unwrap() = Some(ctx);
        self.0
            .push(format!("ready:{}:{}", ready.user.id, ready.session_id));
    }

    async fn guild_create(
        &self,
        _ctx: serenity::Context,
        guild: serenity::Guild,
        _is_new: Option<bool>,
    ) {
        let mut channels: Vec<String> = guild.channels.values().map(|c| c.name.clone()).collect();
        channels.sort();
        self.0.push(format!(
            "guild_create:{}:{}:{}",
            guild.name,
            channels.join(","),
            guild.members.len()
        ));
    }

    async fn message(&self, _ctx: serenity::Context, msg: serenity::Message) {
        let mentions_bot = msg.mentions.iter().any(|u| u.id == BOT_ID);
        let extra = match (&msg.referenced_message, msg.attachments.first()) {
            (Some(replied), _) => format!(" (reply to {})", replied.id),
            (None, Some(file)) => format!(" (file {} {})", file.filename, file.url),
            (None, None) => String::new(),
        };
        self.0.push(format!(
            "message:{}:{}:{}:{}:{}{extra}",
            msg.author.id,
            msg.id,
            msg.guild_id.map_or(0, |g| g.get()),
            mentions_bot,
            msg.content
        ));
    }

    async fn message_update(
        &self,
        _ctx: serenity::Context,
        _old: Option<serenity::Message>,
        _new: Option<serenity::Message>,
        event: serenity::MessageUpdateEvent,
    ) {
        self.0.push(format!(
            "message_update:{}:{}",
            event.id,
            event.content.unwrap_or_default()
        ));
    }

    async fn thread_create(&self, _ctx: serenity::Context, thread: serenity::GuildChannel) {
        self.0.push(format!(
            "thread_create:{}:{}:{:?}",
            thread.name, thread.guild_id, thread.kind
        ));
    }

    async fn thread_update(
        &self,
        _ctx: serenity::Context,
        _old: Option<serenity::GuildChannel>,
        new: serenity::GuildChannel,
    ) {
        let archived = new.thread_metadata.is_some_and(|m| m.archived);
        self.0
            .push(format!("thread_update:{}:{archived}", new.name));
    }

    async fn reaction_add(&self, _ctx: serenity::Context, reaction: serenity::Reaction) {
        self.0.push(format!(
            "reaction_add:{}:{}:{}",
            reaction.user_id.map_or(0, |u| u.get()),
            reaction.message_id,
            reaction.emoji
        ));
    }

    async fn message_delete(
        &self,
        _ctx: serenity::Context,
        channel: ChannelId,
        message: MessageId,
        _guild: Option<GuildId>,
    ) {
        self.0.push(format!("message_delete:{channel}:{message}"));
    }

    async fn channel_create(&self, _ctx: serenity::Context, channel: serenity::GuildChannel) {
        self.0.push(format!("channel_create:{}", channel.name));
    }

    async fn guild_role_create(&self, _ctx: serenity::Context, role: serenity::Role) {
        self.0.push(format!("role_create:{}", role.name));
    }

    async fn guild_member_addition(&self, _ctx: serenity::Context, member: serenity::Member) {
        let roles: Vec<String> = member.roles.iter().map(|r| r.to_string()).collect();
        self.0.push(format!(
            "member_add:{}:{}",
            member.user.name,
            roles.join(",")
        ));
    }

    async fn resume(&self, _ctx: serenity::Context, _event: serenity::ResumedEvent) {
        self.0.push("resumed".to_owned());
    }
}

/// Records `Event::Unknown`: a payload serenity could not decode, which no handler would see.
struct Raw(Arc<Seen>);

#[serenity::async_trait]
impl serenity::RawEventHandler for Raw {
    async fn raw_event(&self, _ctx: serenity::Context, event: serenity::Event) {
        if let serenity::Event::Unknown(unknown) = &event {
            self.0.unknown.lock().unwrap().push(format!("{unknown:?}"));
        }
    }
}

/// serenity's `Http` pointed at the fake, as the notes' section 1 wires it.
fn fake_http(fake: &FakeDiscord) -> serenity::Http {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("build a reqwest client");
    serenity::HttpBuilder::new(crate::discord_fake::TOKEN)
        .client(client)
        .proxy(fake.base_url())
        .ratelimiter_disabled(true)
        .build()
}

/// A running serenity client with a poise framework (`/ping`, `/echo`, `/slow`, registered in the
/// guild).
struct Bot {
    seen: Arc<Seen>,
    shards: Arc<serenity::ShardManager>,
    task: tokio::task::JoinHandle<Result<(), serenity::Error>>,
}

impl Bot {
    /// Builds the client against `fake`, starts it and waits for READY and GUILD_CREATE.
    async fn start(fake: &FakeDiscord) -> Bot {
        let seen = Arc::new(Seen::default());
        let framework = poise::Framework::builder()
            .options(poise::FrameworkOptions {
                commands: vec![ping(), echo(), slow()],
                ..Default::default()
            })
            .setup(|ctx, _ready, framework| {
                Box::pin(async move {
                    poise::builtins::register_in_guild(
                        ctx,
                        &framework.options().commands,
                        GuildId::new(GUILD_ID),
                    )
                    .await?;
                    Ok(Data)
                })
            })
            .build();
        let intents = GatewayIntents::GUILDS
            | GatewayIntents::GUILD_MEMBERS
            | GatewayIntents::GUILD_MESSAGES
            | GatewayIntents::GUILD_MESSAGE_REACTIONS
            | GatewayIntents::MESSAGE_CONTENT;
        let builder = serenity::ClientBuilder::new_with_http(fake_http(fake), intents)
            .framework(framework)
            .event_handler(Handler(Arc::clone(&seen)))
            .raw_event_handler(Raw(Arc::clone(&seen)));
        let mut client = tokio::time::timeout(STEP, builder)
            .await
            .expect("building the client timed out")
            .expect("build the serenity client");
        let shards = Arc::clone(&client.shard_manager);
        let task = tokio::spawn(async move { client.start().await });
        let bot = Bot { seen, shards, task };
        bot.seen.wait("ready:", 1, STEP).await;
        bot.seen
            .wait(&format!("guild_create:{GUILD_NAME}"), 1, STEP)
            .await;
        bot
    }

    fn ctx(&self) -> serenity::Context {
        self.seen
            .ctx
            .lock()
            .unwrap()
            .clone()
            .expect("ready stored the context")
    }

    /// Shuts the shards down, checks `start()` returned cleanly and that no payload was
    /// `Event::Unknown`.
    async fn stop(self) {
        tokio::time::timeout(STEP, self.shards.shutdown_all())
            .await
            .expect("shutting the shards down timed out");
        let result = tokio::time::timeout(STEP, self.task)
            .await
            .expect("client.start() did not return after shutdown")
            .expect("the client task panicked");
        assert!(result.is_ok(), "client.start() failed: {result:?}");
        let unknown = self.seen.unknown.lock().unwrap().clone();
        assert!(
            unknown.is_empty(),
            "serenity could not decode these dispatches: {unknown:#?}"
        );
    }
}

fn http_status(error: &serenity::Error) -> Option<(u16, isize)> {
    match error {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(response)) => {
            Some((response.status_code.as_u16(), response.error.code))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_sees_users_and_its_own_actions_echo() {
    let fake = FakeDiscord::start();
    let alice = fake.add_user("alice");
    let bot = Bot::start(&fake).await;
    let ctx = bot.ctx();
    let main = ChannelId::new(MAIN_CHANNEL);

    // READY and GUILD_CREATE filled the cache: the bot, the guild, #agents, both members.
    assert_eq!(ctx.cache.current_user().id, BOT_ID);
    assert_eq!(
        bot.seen
            .count(&format!("guild_create:{GUILD_NAME}:{MAIN_CHANNEL_NAME}:2")),
        1
    );

    // A user's message reaches the message handler, with the guild and the mention of the bot.
    let said = fake.user_says(alice, MAIN_CHANNEL, "hello <@1000>");
    bot.seen
        .wait(
            &format!("message:{alice}:{said}:{GUILD_ID}:true:hello <@1000>"),
            1,
            STEP,
        )
        .await;

    // The bot sends (through the cache's permission check) and the send echoes back.
    let sent = main
        .send_message(
            &ctx,
            CreateMessage::new()
                .content(format!("hi <@{alice}>"))
                .allowed_mentions(CreateAllowedMentions::new().users([UserId::new(alice)])),
        )
        .await
        .expect("send a message");
    assert_eq!(sent.author.id, BOT_ID);
    bot.seen
        .wait(&format!("message:{BOT_ID}:{}:", sent.id), 1, STEP)
        .await;
    let stored = fake.message(sent.id.get()).expect("the fake stored it");
    assert_eq!(stored.author, BOT_ID);
    assert_eq!(stored.mentions, vec![alice]);
    assert_eq!(stored.allowed_mentions["users"], json!([alice.to_string()]));

    // A public thread, as the bot asks for it.
    let thread = main
        .create_thread(
            &ctx,
            CreateThread::new("agent-1").kind(ChannelType::PublicThread),
        )
        .await
        .expect("create a thread");
    bot.seen
        .wait(
            &format!("thread_create:agent-1:{GUILD_ID}:PublicThread"),
            1,
            STEP,
        )
        .await;
    let fake_thread = fake
        .thread_named("agent-1")
        .expect("the fake has the thread");
    assert_eq!(
        (fake_thread.id, fake_thread.parent, fake_thread.kind),
        (thread.id.get(), MAIN_CHANNEL, 11)
    );
    assert_eq!(fake_thread.requested_kind, Some(11));

    // Post in it, with a file (multipart), then edit and react.
    let mut in_thread = thread
        .id
        .send_message(
            &ctx,
            CreateMessage::new()
                .content("working on it")
                .add_file(CreateAttachment::bytes(b"hello".to_vec(), "out.txt")),
        )
        .await
        .expect("send into the thread with a file");
    assert_eq!(in_thread.attachments[0].filename, "out.txt");
    bot.seen
        .wait(&format!("message:{BOT_ID}:{}:", in_thread.id), 1, STEP)
        .await;
    in_thread
        .edit(&ctx, EditMessage::new().content("done"))
        .await
        .expect("edit the bot's message");
    bot.seen
        .wait(&format!("message_update:{}:done", in_thread.id), 1, STEP)
        .await;
    in_thread.react(&ctx, '✅').await.expect("react");
    bot.seen
        .wait(
            &format!("reaction_add:{BOT_ID}:{}:✅", in_thread.id),
            1,
            STEP,
        )
        .await;
    let stored = fake.message(in_thread.id.get()).expect("stored");
    assert!(stored.edited);
    assert_eq!(stored.content, "done");
    assert_eq!(
        (
            stored.attachments[0].filename.as_str(),
            stored.attachments[0].size
        ),
        ("out.txt", 5)
    );
    assert_eq!(fake.reactions(in_thread.id.get())[0].emoji, "✅");
    let upload = fake.rest_calls("POST", &format!("/channels/{}/messages", thread.id));
    assert_eq!(upload[0].files[0].field, "files[0]");
    assert_eq!(upload[0].body["content"], "working on it");

    // A user reacts; the bot archives and locks the thread.
    fake.react(alice, thread.id.get(), in_thread.id.get(), "👍");
    bot.seen
        .wait(
            &format!("reaction_add:{alice}:{}:👍", in_thread.id),
            1,
            STEP,
        )
        .await;
    thread
        .id
        .edit_thread(&ctx, EditThread::new().archived(true).locked(true))
        .await
        .expect("archive the thread");
    bot.seen.wait("thread_update:agent-1:true", 1, STEP).await;
    let fake_thread = fake.thread_named("agent-1").expect("still there");
    assert!(fake_thread.archived && fake_thread.locked);

    // History comes back newest first, from serenity's `?&limit=50` query.
    let history = main
        .messages(&ctx, GetMessages::new().limit(50))
        .await
        .expect("read the history");
    assert_eq!(
        history.iter().map(|m| m.id).collect::<Vec<MessageId>>(),
        vec![sent.id, MessageId::new(said)]
    );
    let read = fake.rest_calls("GET", &format!("/channels/{MAIN_CHANNEL}/messages"));
    assert_eq!(read[0].query_value("limit"), Some("50"));
    main.broadcast_typing(&ctx.http).await.expect("typing");

    // A user's reply and upload; the upload's URL serves the bytes.
    let reply = fake.user_replies(alice, MAIN_CHANNEL, sent.id.get(), "thanks");
    bot.seen
        .wait(
            &format!(
                "message:{alice}:{reply}:{GUILD_ID}:true:thanks (reply to {})",
                sent.id
            ),
            1,
            STEP,
        )
        .await;
    let upload = fake.user_uploads(alice, MAIN_CHANNEL, "log", &[("run.log", b"line 1\n")]);
    bot.seen
        .wait(
            &format!("message:{alice}:{upload}:{GUILD_ID}:false:log (file run.log "),
            1,
            STEP,
        )
        .await;
    let url = fake.message(upload).unwrap().attachments[0].id;
    let url = format!(
        "{}/attachments/{MAIN_CHANNEL}/{url}/run.log",
        fake.base_url()
    );
    let bytes = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .expect("fetch the attachment")
        .bytes()
        .await
        .expect("read it");
    assert_eq!(&bytes[..], b"line 1\n");

    // The guild changes while the bot is connected: a channel, a role, a member.
    fake.add_channel("late");
    let role = fake.add_role("ops", 0);
    fake.add_user_with_roles("carol", &[role]);
    bot.seen.wait("channel_create:late", 1, STEP).await;
    bot.seen.wait("role_create:ops", 1, STEP).await;
    bot.seen
        .wait(&format!("member_add:carol:{role}"), 1, STEP)
        .await;

    // The bot deletes its message.
    sent.delete(&ctx).await.expect("delete");
    bot.seen
        .wait(
            &format!("message_delete:{MAIN_CHANNEL}:{}", sent.id),
            1,
            STEP,
        )
        .await;
    assert!(fake.message(sent.id.get()).is_none());

    // Content over 2000 characters (sent raw, past serenity's own check) is Discord's 50035.
    let error = ctx
        .http
        .send_message(main, vec![], &json!({"content": "x".repeat(2001)}))
        .await
        .expect_err("2001 characters are refused");
    assert_eq!(http_status(&error), Some((400, 50035)));

    bot.stop().await;
    fake.assert_no_unexpected();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poise_answers_slash_commands() {
    let fake = FakeDiscord::start();
    let alice = fake.add_user("alice");
    let bob = fake.add_user("bob");
    let bot = Bot::start(&fake).await;
    assert!(
        fake.wait_for_async(|w: &World| w.commands().len() == 3, STEP)
            .await,
        "poise's setup registers /ping, /echo and /slow in the guild; commands: {:?}",
        fake.commands()
    );
    assert!(fake.commands().iter().all(|c| c.guild == Some(GUILD_ID)));

    let ping = fake.slash(alice, MAIN_CHANNEL, "ping", json!({}));
    assert!(
        fake.wait_for_async(|w| !w.interaction_responses(ping).is_empty(), STEP)
            .await,
        "poise answers /ping"
    );
    let responses = fake.interaction_responses(ping);
    assert_eq!(responses[0].callback_kind(), Some(4));
    assert_eq!(responses[0].content(), Some("pong"));

    // Typed options: a string, an integer and a user (resolved), then a follow-up.
    let echo = fake.slash(
        alice,
        MAIN_CHANNEL,
        "echo",
        json!({"text": "hi", "count": 3, "who": bob}),
    );
    assert!(
        fake.wait_for_async(|w| w.interaction_responses(echo).len() == 2, STEP)
            .await,
        "poise answers /echo and follows up; got {:?}",
        fake.interaction_responses(echo)
    );
    let responses = fake.interaction_responses(echo);
    assert_eq!(responses[0].content(), Some("hi x3 for bob"));
    assert!(matches!(&responses[1], InteractionResponse::Followup(body)
        if body["content"] == "follow-up"));
    let contents: Vec<String> = fake
        .messages(MAIN_CHANNEL)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(contents, ["pong", "hi x3 for bob", "follow-up"]);

    // Deferred: callback type 5 (a "thinking" message), then the answer replaces it.
    let slow = fake.slash(alice, MAIN_CHANNEL, "slow", json!(null));
    assert!(
        fake.wait_for_async(
            |w| w
                .interaction(slow)
                .and_then(|i| i.original)
                .and_then(|id| w.message(id))
                .is_some_and(|m| m.content == "done slowly"),
            STEP
        )
        .await,
        "poise defers /slow then answers; got {:?}",
        fake.interaction_responses(slow)
    );
    assert_eq!(fake.interaction_responses(slow)[0].callback_kind(), Some(5));

    bot.stop().await;
    fake.assert_no_unexpected();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_dropped_socket_resume_without_losing_events() {
    let fake = FakeDiscord::start();
    let alice = fake.add_user("alice");
    let bot = Bot::start(&fake).await;

    // op 7: events pushed while the bot reconnects are replayed after its Resume.
    fake.reconnect();
    let ids: Vec<u64> = (0..3)
        .map(|i| fake.user_says(alice, MAIN_CHANNEL, &format!("during reconnect {i}")))
        .collect();
    bot.seen.wait("resumed", 1, STEP).await;
    for id in &ids {
        bot.seen
            .wait(&format!("message:{alice}:{id}:"), 1, STEP)
            .await;
    }

    // A TCP drop without a close frame: the same.
    fake.drop_socket();
    let after_drop = fake.user_says(alice, MAIN_CHANNEL, "after the drop");
    bot.seen.wait("resumed", 2, STEP).await;
    bot.seen
        .wait(&format!("message:{alice}:{after_drop}:"), 1, STEP)
        .await;

    // A close frame with a resumable code: the same.
    fake.close(4000);
    let after_close = fake.user_says(alice, MAIN_CHANNEL, "after the close");
    bot.seen.wait("resumed", 3, STEP).await;
    bot.seen
        .wait(&format!("message:{alice}:{after_close}:"), 1, STEP)
        .await;

    // Nothing twice, no second Identify.
    assert_eq!(bot.seen.count(&format!("message:{alice}:")), 5);
    assert_eq!(fake.identifies(), 1);
    assert_eq!(fake.resumes(), 3);
    assert_eq!(fake.with_world(World::rejected_resumes), 0);
    assert_eq!(bot.seen.count("ready:"), 1);

    bot.stop().await;
    fake.assert_no_unexpected();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_session_makes_serenity_identify_again() {
    let fake = FakeDiscord::start();
    let alice = fake.add_user("alice");
    let bot = Bot::start(&fake).await;

    fake.invalidate(false);
    assert!(
        fake.wait_for_async(|w| w.identifies() == 2 && w.gateway_live(), REIDENTIFY)
            .await,
        "serenity identifies again after op 9 false (identifies: {})",
        fake.identifies()
    );
    bot.seen.wait("ready:", 2, STEP).await;
    let said = fake.user_says(alice, MAIN_CHANNEL, "after the new session");
    bot.seen
        .wait(&format!("message:{alice}:{said}:"), 1, STEP)
        .await;

    bot.stop().await;
    fake.assert_no_unexpected();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_heartbeat_acks_make_serenity_identify_again() {
    let fake = FakeDiscord::start();
    fake.set_heartbeat_interval(Duration::from_secs(1));
    let bot = Bot::start(&fake).await;

    fake.no_ack(true);
    assert!(
        fake.wait_for_async(|w| w.identifies() == 2, REIDENTIFY)
            .await,
        "serenity restarts the shard when heartbeats go unanswered (identifies: {})",
        fake.identifies()
    );
    fake.no_ack(false);
    bot.seen.wait("ready:", 2, STEP).await;
    assert!(fake.with_world(|w| w.heartbeats()) >= 1);

    bot.stop().await;
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn rate_limits_failures_and_unknown_routes_surface_as_http_errors() {
    let fake = FakeDiscord::start();
    let http = fake_http(&fake);
    let main = ChannelId::new(MAIN_CHANNEL);
    fake.set_channel_limit(2, Duration::from_secs(5));

    // Two sends fit the budget; the third is Discord's 429, an UnsuccessfulRequest to serenity.
    for i in 0..2 {
        let sent = tokio::time::timeout(
            STEP,
            http.send_message(main, vec![], &json!({"content": format!("m{i}")})),
        )
        .await
        .expect("send timed out");
        sent.expect("within the budget");
    }
    let error = tokio::time::timeout(
        STEP,
        http.send_message(main, vec![], &json!({"content": "m2"})),
    )
    .await
    .expect("send timed out")
    .expect_err("over the budget");
    assert_eq!(http_status(&error).map(|(status, _)| status), Some(429));
    assert_eq!(fake.violations(), 1);

    // The raw 429 and success headers, as Discord sends them.
    let raw = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!(
        "{}/api/v10/channels/{MAIN_CHANNEL}/messages",
        fake.base_url()
    );
    let response = raw
        .post(&url)
        .header(
            "authorization",
            format!("Bot {}", crate::discord_fake::TOKEN),
        )
        .json(&json!({"content": "m3"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: f64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("numeric Retry-After");
    assert!(retry_after > 0.0 && retry_after <= 5.0);
    assert_eq!(response.headers()["x-ratelimit-scope"], "user");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["global"], false);
    assert!(body["retry_after"].as_f64().is_some());
    assert_eq!(fake.violations(), 2);

    let other = fake.add_channel("other");
    let response = raw
        .post(format!(
            "{}/api/v10/channels/{other}/messages",
            fake.base_url()
        ))
        .header(
            "authorization",
            format!("Bot {}", crate::discord_fake::TOKEN),
        )
        .json(&json!({"content": "fresh bucket"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 200);
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset-after",
    ] {
        let value = response.headers()[header].to_str().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{header}: {value:?}");
    }
    assert_eq!(response.headers()["x-ratelimit-remaining"], "1");

    // An injected 500 fails once, then the route works again.
    fake.fail_next("POST", &format!("/channels/{other}/messages"), 500, 1);
    let error = http
        .send_message(ChannelId::new(other), vec![], &json!({"content": "x"}))
        .await
        .expect_err("injected 500");
    assert_eq!(http_status(&error).map(|(status, _)| status), Some(500));
    fake.disable_limits();
    http.send_message(ChannelId::new(other), vec![], &json!({"content": "y"}))
        .await
        .expect("the failure was used up");

    // Threads: without `.kind(..)` Discord makes a private one; from a message it takes the
    // message's id; names over 100 characters are refused.
    let private = ChannelId::new(other)
        .create_thread(&http, CreateThread::new("no-kind"))
        .await
        .expect("create a thread without a kind");
    assert_eq!(private.kind, ChannelType::PrivateThread);
    assert_eq!(fake.thread_named("no-kind").unwrap().requested_kind, None);
    let starter = http
        .send_message(
            ChannelId::new(other),
            vec![],
            &json!({"content": "start here"}),
        )
        .await
        .expect("send");
    let from_message = ChannelId::new(other)
        .create_thread_from_message(&http, starter.id, CreateThread::new("from-message"))
        .await
        .expect("create a thread from a message");
    assert_eq!(from_message.id.get(), starter.id.get());
    assert_eq!(from_message.kind, ChannelType::PublicThread);
    let error = ChannelId::new(other)
        .create_thread(
            &http,
            CreateThread::new("n".repeat(101)).kind(ChannelType::PublicThread),
        )
        .await
        .expect_err("a 101-character name is refused");
    assert_eq!(http_status(&error), Some((400, 50035)));

    // A route the fake does not implement: 404 for serenity, recorded for the test.
    let error = http
        .get_guild_webhooks(GuildId::new(GUILD_ID))
        .await
        .expect_err("not implemented");
    assert_eq!(http_status(&error), Some((404, 0)));
    let unexpected = fake.unexpected();
    assert_eq!(unexpected.len(), 1, "{unexpected:?}");
    assert!(
        unexpected[0].contains("GET /guilds/2000/webhooks"),
        "{unexpected:?}"
    );
    let panic =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_no_unexpected()));
    assert!(panic.is_err(), "assert_no_unexpected panics on it");
}

/// The sync `wait_for` (for tests whose bot is a child process) sees changes made on other threads.
#[test]
fn sync_wait_for_sees_requests_from_another_thread() {
    let fake = FakeDiscord::start();
    let http = fake_http(&fake);
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a runtime");
        runtime.block_on(async {
            http.send_message(
                ChannelId::new(MAIN_CHANNEL),
                vec![],
                &json!({"content": "from another thread"}),
            )
            .await
            .map_err(|error| error.to_string())
        })
    });
    assert!(fake.wait_for(
        |w| w.messages(MAIN_CHANNEL).len() == 1 && w.rest_log().len() == 1,
        STEP
    ));
    let sent = worker.join().expect("the worker panicked").expect("send");
    assert_eq!(fake.messages(MAIN_CHANNEL)[0].id, sent.id.get());
    assert!(!fake.wait_for(
        |w| w.messages(MAIN_CHANNEL).len() == 2,
        Duration::from_millis(50)
    ));
    fake.assert_no_unexpected();
}
