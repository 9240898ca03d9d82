//! Tests of the outbound path against a recording fake Discord, in paused time: every wait is
//! virtual, so budgets and backoffs of minutes run in milliseconds and always the same way.

use async_trait::async_trait;

use super::*;
use proptest::prelude::*;
use std::sync::Mutex as StdMutex;

/// A request the fake Discord carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Send {
        channel: u64,
        id: u64,
        content: String,
        mention: Option<u64>,
        files: Vec<String>,
    },
    Edit {
        channel: u64,
        message: u64,
        content: String,
    },
    Thread {
        parent: u64,
        name: String,
        id: u64,
    },
    Archive {
        thread: u64,
    },
    React {
        channel: u64,
        message: u64,
        emoji: String,
    },
    Typing {
        channel: u64,
    },
}

/// How the fake answers one request instead of succeeding.
enum Reply {
    Fail(ApiError),
    /// Never answers (the request times out).
    Hang,
    /// Panics, as a buggy `DiscordApi` might.
    Panic,
}

/// Discord as the outbound path sees it: it records every request with its arrival time, keeps
/// Discord-like buckets (a window opens at the first request and allows `per_channel` requests per
/// channel, `global` over all channels) and records every request sent into an exhausted one as a
/// violation, answered with a 429.
struct Fake {
    latency: Duration,
    world: StdMutex<World>,
}

#[derive(Default)]
struct World {
    next_id: u64,
    /// Every request that arrived: when, in which channel, and its key.
    arrivals: Vec<(Instant, u64, String)>,
    /// Every request that succeeded, in order.
    done: Vec<Call>,
    /// Answers other than success, by request key, taken in order.
    script: HashMap<String, VecDeque<Reply>>,
    buckets: HashMap<u64, Option<(Instant, u32)>>,
    global: Option<(Instant, u32)>,
    violations: Vec<String>,
}

/// The budget the fake enforces: Discord's, as [`Limits::default`] has it.
const PER_CHANNEL: u32 = 5;
const CHANNEL_WINDOW: Duration = Duration::from_secs(5);
const GLOBAL: u32 = 50;

/// Spends one request of a Discord-like bucket; false if it was exhausted.
fn spend(bucket: &mut Option<(Instant, u32)>, now: Instant, limit: u32, window: Duration) -> bool {
    match bucket {
        Some((reset, used)) if now < *reset => {
            if *used >= limit {
                return false;
            }
            *used += 1;
            true
        }
        _ => {
            *bucket = Some((now + window, 1));
            true
        }
    }
}

impl Fake {
    fn new(latency: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            latency,
            world: StdMutex::new(World {
                next_id: 1000,
                ..World::default()
            }),
        })
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Makes the next requests with `key` (a message's content, `edit:<content>`, an emoji, a thread
    /// name, `archive`, `typing`) answer `replies`, in order.
    fn script(&self, key: &str, replies: impl IntoIterator<Item = Reply>) {
        self.world()
            .script
            .entry(key.to_owned())
            .or_default()
            .extend(replies);
    }

    /// One request arriving: recorded, checked against the buckets, answered after the latency.
    async fn arrive(&self, channel: u64, key: String) -> Result<(), ApiError> {
        let reply = {
            let mut world = self.world();
            let now = Instant::now();
            world.arrivals.push((now, channel, key.clone()));
            let in_channel = spend(
                world.buckets.entry(channel).or_default(),
                now,
                PER_CHANNEL,
                CHANNEL_WINDOW,
            );
            let in_global = spend(&mut world.global, now, GLOBAL, Duration::from_secs(1));
            if !in_channel || !in_global {
                let which = if in_channel { "global" } else { "channel" };
                world.violations.push(format!(
                    "{key:?} in channel {channel} into an exhausted {which} bucket"
                ));
                Some(Reply::Fail(ApiError::RateLimited {
                    retry_after: Some(Duration::from_secs(1)),
                }))
            } else {
                world.script.get_mut(&key).and_then(VecDeque::pop_front)
            }
        };
        time::sleep(self.latency).await;
        match reply {
            None => Ok(()),
            Some(Reply::Fail(error)) => Err(error),
            Some(Reply::Hang) => {
                time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
            Some(Reply::Panic) => panic!("the fake Discord was told to panic"),
        }
    }

    fn done(&self, call: Call) {
        self.world().done.push(call);
    }

    fn next_id(&self) -> u64 {
        let mut world = self.world();
        world.next_id += 1;
        world.next_id
    }

    fn calls(&self) -> Vec<Call> {
        self.world().done.clone()
    }

    /// The contents of the messages sent in `channel`, in order.
    fn sent_in(&self, channel: u64) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Send {
                    channel: c,
                    content,
                    ..
                } if c == channel => Some(content),
                _ => None,
            })
            .collect()
    }

    /// How many requests with `key` arrived.
    fn attempts(&self, key: &str) -> usize {
        self.world()
            .arrivals
            .iter()
            .filter(|(_, _, k)| k == key)
            .count()
    }

    /// When the requests with `key` arrived.
    fn arrivals_of(&self, key: &str) -> Vec<Instant> {
        self.world()
            .arrivals
            .iter()
            .filter(|(_, _, k)| k == key)
            .map(|(at, _, _)| *at)
            .collect()
    }

    /// Asserts that no request went into an exhausted bucket, and, stricter, that no sliding window
    /// (of any alignment) held more requests than the budget, per channel and over all channels.
    fn assert_within_budget(&self) {
        let world = self.world();
        assert!(
            world.violations.is_empty(),
            "violations: {:?}",
            world.violations
        );
        let mut per_channel: HashMap<u64, Vec<Instant>> = HashMap::new();
        for (at, channel, _) in &world.arrivals {
            per_channel.entry(*channel).or_default().push(*at);
        }
        for (channel, times) in per_channel {
            assert_sparse(
                &times,
                PER_CHANNEL as usize,
                CHANNEL_WINDOW,
                &format!("channel {channel}"),
            );
        }
        let all: Vec<Instant> = world.arrivals.iter().map(|(at, _, _)| *at).collect();
        assert_sparse(
            &all,
            GLOBAL as usize,
            Duration::from_secs(1),
            "all channels",
        );
    }
}

/// Asserts that no interval shorter than `window` holds more than `limit` of `times` (in order).
fn assert_sparse(times: &[Instant], limit: usize, window: Duration, what: &str) {
    for (i, pair) in times.windows(limit + 1).enumerate() {
        let span = pair[limit] - pair[0];
        assert!(
            span >= window,
            "{what}: requests {i}..={} arrived within {span:?}",
            i + limit
        );
    }
}

#[async_trait]
impl DiscordApi for Fake {
    async fn send(&self, channel: u64, msg: &OutMessage) -> Result<u64, ApiError> {
        assert!(
            msg.content.chars().count() <= MESSAGE_LIMIT,
            "a message over the limit"
        );
        assert!(msg.files.len() <= MAX_FILES_PER_MESSAGE, "too many files");
        assert!(
            !msg.content.trim().is_empty() || !msg.files.is_empty(),
            "an empty message"
        );
        self.arrive(channel, msg.content.clone()).await?;
        let id = self.next_id();
        self.done(Call::Send {
            channel,
            id,
            content: msg.content.clone(),
            mention: msg.mention_user,
            files: msg.files.iter().map(|(name, _)| name.clone()).collect(),
        });
        Ok(id)
    }

    async fn edit(&self, channel: u64, message: u64, content: &str) -> Result<(), ApiError> {
        self.arrive(channel, format!("edit:{content}")).await?;
        self.done(Call::Edit {
            channel,
            message,
            content: content.to_owned(),
        });
        Ok(())
    }

    async fn create_thread(&self, channel: u64, name: &str) -> Result<u64, ApiError> {
        self.arrive(channel, name.to_owned()).await?;
        let id = self.next_id();
        self.done(Call::Thread {
            parent: channel,
            name: name.to_owned(),
            id,
        });
        Ok(id)
    }

    async fn archive_thread(&self, thread: u64) -> Result<(), ApiError> {
        self.arrive(thread, "archive".to_owned()).await?;
        self.done(Call::Archive { thread });
        Ok(())
    }

    async fn react(&self, channel: u64, message: u64, emoji: &str) -> Result<(), ApiError> {
        self.arrive(channel, emoji.to_owned()).await?;
        self.done(Call::React {
            channel,
            message,
            emoji: emoji.to_owned(),
        });
        Ok(())
    }

    async fn typing(&self, channel: u64) -> Result<(), ApiError> {
        self.arrive(channel, "typing".to_owned()).await?;
        self.done(Call::Typing { channel });
        Ok(())
    }
}

/// A fake Discord answering after 5 ms, and the outbound path over it with the default limits.
fn setup() -> (Arc<Fake>, Outbound, TaskTracker, CancellationToken) {
    setup_with(Duration::from_millis(5), Limits::default())
}

fn setup_with(
    latency: Duration,
    limits: Limits,
) -> (Arc<Fake>, Outbound, TaskTracker, CancellationToken) {
    let fake = Fake::new(latency);
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let api: Arc<dyn DiscordApi> = fake.clone();
    let outbound = Outbound::start(api, limits, &tracker, cancel.clone());
    (fake, outbound, tracker, cancel)
}

fn text(content: &str) -> OutMessage {
    OutMessage::text(content)
}

/// Lines starting with a code fence, as Discord sees them.
fn fence_lines(piece: &str) -> usize {
    piece
        .lines()
        .filter(|line| line.trim_start().starts_with("```"))
        .count()
}

/// The text's characters other than whitespace and fence lines: what must survive splitting.
fn ink(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("```"))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn assert_pieces(text: &str, pieces: &[String], limit: usize) {
    for piece in pieces {
        assert!(
            piece.chars().count() <= limit,
            "piece over {limit}: {piece:?}"
        );
        assert!(!piece.trim().is_empty(), "empty piece in {pieces:?}");
        assert_eq!(fence_lines(piece) % 2, 0, "unbalanced fences in {piece:?}");
    }
    assert_eq!(ink(&pieces.join("\n")), ink(text), "text lost or added");
}

// ---------------------------------------------------------------------------------------------
// split_message and as_attachment

#[test]
fn split_returns_text_that_fits_unchanged_and_nothing_for_blank_text() {
    let text = "hello\n\n```rust\nfn main() {}\n```\nbye";
    assert_eq!(split_message(text, 2000), vec![text.to_owned()]);
    assert!(split_message("", 2000).is_empty());
    assert!(split_message(" \n\n \t", 2000).is_empty());
}

#[test]
fn split_keeps_fences_balanced_and_reopens_the_language_tag() {
    let code: Vec<String> = (0..400).map(|i| format!("    let x{i} = {i};")).collect();
    let text = format!(
        "Here is the fix:\n```rust\n{}\n```\nAnd a shell line:\n```sh\ncargo test\n```\nDone.",
        code.join("\n")
    );
    let pieces = split_message(&text, 2000);
    assert!(pieces.len() >= 4, "{} pieces", pieces.len());
    assert_pieces(&text, &pieces, 2000);
    // Every piece after the first that continues the rust block reopens it with its tag.
    for piece in &pieces[1..] {
        if piece.contains("let x") {
            assert!(
                piece.starts_with("```rust\n"),
                "not reopened: {:?}",
                &piece[..40]
            );
        }
    }
    assert!(pieces
        .last()
        .unwrap()
        .contains("```sh\ncargo test\n```\nDone."));
}

#[test]
fn split_counts_characters_not_bytes() {
    // 3000 two-byte and four-byte characters: 9000 bytes, yet two pieces of at most 2000 characters.
    let text: String = "é🦀é".repeat(1000);
    let pieces = split_message(&text, 2000);
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].chars().count(), 2000);
    assert!(pieces[0].len() > 2000);
    assert_eq!(pieces.concat(), text);
}

#[test]
fn split_cuts_a_word_longer_than_the_limit_hard() {
    let word = "x".repeat(2000);
    assert_eq!(split_message(&word, 2000), vec![word.clone()]);
    let long = "y".repeat(4500);
    let pieces = split_message(&long, 2000);
    let lengths: Vec<usize> = pieces.iter().map(|p| p.chars().count()).collect();
    assert_eq!(lengths, vec![2000, 2000, 500]);
    // Inside a code block the cut pieces stay code.
    let fenced = format!("```\n{}\n```", "z".repeat(4500));
    let pieces = split_message(&fenced, 2000);
    assert_pieces(&fenced, &pieces, 2000);
    assert!(pieces
        .iter()
        .all(|p| p.starts_with("```\n") && p.ends_with("\n```")));
}

#[test]
fn split_prefers_newlines_then_spaces() {
    // Lines of 30 characters: pieces end at line ends, never inside a line.
    let line = "abcdefghi abcdefghi abcdefghi";
    let text = [line; 10].join("\n");
    for piece in split_message(&text, 100) {
        assert!(piece.split('\n').all(|l| l == line), "{piece:?}");
    }
    // One long line of words: pieces end at spaces, never inside a word.
    let words = vec!["word"; 100].join(" ");
    for piece in split_message(&words, 42) {
        assert!(piece.split(' ').all(|w| w == "word"), "{piece:?}");
    }
}

#[test]
fn split_starts_a_code_block_that_fits_a_piece_on_a_piece_of_its_own() {
    let prose = "p".repeat(1500);
    let block = format!("```py\n{}\n```", "print(1)\n".repeat(100).trim_end());
    let text = format!("{prose}\n{block}");
    let pieces = split_message(&text, 2000);
    assert_eq!(pieces, vec![prose, block]);
}

#[test]
fn split_closes_a_fence_the_text_left_open() {
    let text = format!("```js\n{}", "a();\n".repeat(600));
    let pieces = split_message(&text, 2000);
    assert_pieces(&text, &pieces, 2000);
    assert!(pieces.last().unwrap().ends_with("\n```"));
}

#[test]
fn split_works_with_tiny_limits() {
    let text = "```rust\nfn main() { println!(\"hi\"); }\n```";
    for limit in 0..40 {
        let pieces = split_message(text, limit);
        for piece in &pieces {
            assert!(piece.chars().count() <= limit.max(1), "{limit}: {piece:?}");
            assert!(!piece.trim().is_empty());
        }
        if limit >= 12 && limit < text.chars().count() {
            assert_pieces(text, &pieces, limit);
        }
    }
}

#[test]
fn long_text_goes_as_an_attachment() {
    assert!(!as_attachment("short"));
    assert!(!as_attachment(&"word ".repeat(1500))); // 7500 characters, 4 pieces
    assert!(as_attachment(&"word ".repeat(1700))); // 8500 characters
                                                   // Few characters but many pieces: lines that each fill most of a piece.
    let line = "z".repeat(1900);
    assert!(!as_attachment(&[line.as_str(); 4].join("\n")));
    assert!(as_attachment(&[line.as_str(); 5].join("\n")));
}

#[test]
fn thread_names_are_made_fit_for_discord() {
    assert_eq!(thread_name("  fix\nthe \t bug\u{7} "), "fix the bug");
    assert_eq!(thread_name(" \n "), "thread");
    let long = thread_name(&"é".repeat(300));
    assert_eq!(long.chars().count(), THREAD_NAME_LIMIT);
    assert!(long.ends_with('…'));
}

#[test]
fn statuses_are_classified() {
    assert_eq!(
        ApiError::from_status(429, ""),
        ApiError::RateLimited { retry_after: None }
    );
    assert_eq!(ApiError::from_status(502, ""), ApiError::Server(502));
    assert!(ApiError::from_status(503, "").is_retryable());
    assert!(!ApiError::from_status(403, "Missing Permissions").is_retryable());
    assert!(ApiError::Transport("reset".into()).is_retryable());
    assert!(!ApiError::Stopped.is_retryable());
}

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,10}( [a-zé🦀]{1,10}){0,12}",
        1 => Just(String::new()),
        1 => "```(rust|sh|)",
        1 => Just("```".to_owned()),
        1 => "[a-z🦀]{30,400}",
        1 => "    [a-z]{1,8} = [a-z]{1,8};",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn split_keeps_every_promise(
        lines in prop::collection::vec(line_strategy(), 0..80),
        limit in 30usize..400,
    ) {
        let text = lines.join("\n");
        let pieces = split_message(&text, limit);
        if text.trim().is_empty() {
            prop_assert!(pieces.is_empty());
        } else if text.chars().count() <= limit {
            prop_assert_eq!(pieces, vec![text]);
        } else {
            assert_pieces(&text, &pieces, limit);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The outbound path

#[tokio::test(start_paused = true)]
async fn order_is_kept_per_channel_under_interleaved_posts_to_twenty_channels() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let start = Instant::now();
    for i in 0..25 {
        for channel in 1..=20u64 {
            outbound.post(channel, text(&format!("c{channel} m{i}")));
        }
    }
    outbound.flush().await;
    for channel in 1..=20u64 {
        let expected: Vec<String> = (0..25).map(|i| format!("c{channel} m{i}")).collect();
        assert_eq!(fake.sent_in(channel), expected, "channel {channel}");
    }
    assert_eq!(fake.calls().len(), 500);
    fake.assert_within_budget();
    // 25 messages a channel at 5 per 5 s: the last five go out once four windows have passed.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(22),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_request_counts_against_the_channel_budget() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let start = Instant::now();
    let ids = outbound
        .send(7, text("approve?").with_reaction("✅").with_reaction("❌"))
        .await
        .unwrap();
    for i in 0..8 {
        outbound.post(7, text(&format!("m{i}")));
        outbound.edit_header(7, ids[0], format!("state {i}"));
        outbound.react(7, ids[0], "👀");
    }
    outbound.typing(7);
    outbound.flush().await;
    fake.assert_within_budget();
    let requests = fake.world().arrivals.len();
    assert!(requests >= 3 + 8 + 1 + 8, "{requests} requests");
    // Paced, not slower than the budget: n requests take (n - 1) / 5 windows.
    let windows = (requests as u32 - 1) / PER_CHANNEL;
    let took = start.elapsed();
    assert!(took >= CHANNEL_WINDOW * windows, "{took:?}");
    assert!(
        took < CHANNEL_WINDOW * windows + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_global_budget_is_never_exceeded() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let start = Instant::now();
    for round in 0..2 {
        for channel in 1..=200u64 {
            outbound.post(channel, text(&format!("{channel}/{round}")));
        }
    }
    outbound.flush().await;
    assert_eq!(fake.calls().len(), 400);
    fake.assert_within_budget();
    // 400 requests at 50 a second: the last 50 go out once seven seconds have passed.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(9),
        "{took:?}"
    );
    for channel in 1..=200u64 {
        assert_eq!(
            fake.sent_in(channel),
            vec![format!("{channel}/0"), format!("{channel}/1")]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_message_waits_retry_after_and_goes_once_in_order() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script(
        "m1",
        [Reply::Fail(ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        })],
    );
    outbound.post(1, text("m0"));
    let (m1, m2) = tokio::join!(outbound.send(1, text("m1")), outbound.send(1, text("m2")));
    assert!(m1.is_ok() && m2.is_ok());
    outbound.post(1, text("m3"));
    outbound.flush().await;
    assert_eq!(fake.sent_in(1), vec!["m0", "m1", "m2", "m3"]);
    let tries = fake.arrivals_of("m1");
    assert_eq!(tries.len(), 2);
    assert!(
        tries[1] - tries[0] >= Duration::from_secs(3),
        "{:?}",
        tries[1] - tries[0]
    );
    fake.assert_within_budget();
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_then_given_up_and_later_messages_still_go() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script("m1", (0..10).map(|_| Reply::Fail(ApiError::Server(502))));
    let start = Instant::now();
    outbound.post(1, text("m0"));
    let (m1, m2) = tokio::join!(outbound.send(1, text("m1")), outbound.send(1, text("m2")));
    assert_eq!(m1, Err(ApiError::Server(502)));
    assert!(m2.is_ok());
    outbound.post(1, text("m3"));
    outbound.flush().await;
    assert_eq!(fake.attempts("m1"), 6);
    assert_eq!(fake.sent_in(1), vec!["m0", "m2", "m3"]);
    // Backoff 1 + 2 + 4 + 8 + 16 s before m2 could go.
    let m2_at = fake.arrivals_of("m2")[0];
    assert!(
        m2_at - start >= Duration::from_secs(31),
        "{:?}",
        m2_at - start
    );
    fake.assert_within_budget();
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_retried() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let refused = ApiError::Client {
        status: 403,
        message: "Missing Permissions".into(),
    };
    fake.script("m0", [Reply::Fail(refused.clone())]);
    assert_eq!(outbound.send(1, text("m0")).await, Err(refused));
    assert_eq!(
        outbound.send(1, text("m1")).await.map(|ids| ids.len()),
        Ok(1)
    );
    assert_eq!(fake.attempts("m0"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_an_answer_times_out_and_is_retried() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script("m0", [Reply::Hang]);
    let start = Instant::now();
    assert!(outbound.send(1, text("m0")).await.is_ok());
    assert_eq!(fake.attempts("m0"), 2);
    let took = start.elapsed();
    // The 60 s timeout, then the 1 s backoff.
    assert!(
        took >= Duration::from_secs(61) && took < Duration::from_secs(62),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn header_edits_queued_while_the_channel_is_busy_are_coalesced() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script(
        "busy",
        [Reply::Fail(ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(5)),
        })],
    );
    outbound.post(3, text("busy"));
    for i in 0..10 {
        outbound.edit_header(3, 99, format!("state {i}"));
        time::sleep(Duration::from_millis(100)).await;
    }
    outbound.flush().await;
    let edits: Vec<Call> = fake
        .calls()
        .into_iter()
        .filter(|call| matches!(call, Call::Edit { .. }))
        .collect();
    assert_eq!(
        edits,
        vec![Call::Edit {
            channel: 3,
            message: 99,
            content: "state 9".into()
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn header_edits_during_an_edit_in_flight_end_with_the_latest() {
    let (fake, outbound, _tracker, _cancel) = setup_with(Duration::from_secs(1), Limits::default());
    outbound.edit_header(3, 99, "state 0".into());
    time::sleep(Duration::from_millis(10)).await;
    for i in 1..10 {
        outbound.edit_header(3, 99, format!("state {i}"));
    }
    outbound.flush().await;
    let contents: Vec<String> = fake
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            Call::Edit { content, .. } => Some(content),
            _ => None,
        })
        .collect();
    assert_eq!(contents, vec!["state 0", "state 9"]);
}

#[tokio::test(start_paused = true)]
async fn a_retried_header_edit_sends_the_newest_state() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script("edit:state 0", [Reply::Fail(ApiError::Server(500))]);
    outbound.edit_header(3, 99, "state 0".into());
    time::sleep(Duration::from_millis(100)).await;
    for i in 1..10 {
        outbound.edit_header(3, 99, format!("state {i}"));
    }
    outbound.flush().await;
    let world = fake.world();
    let keys: Vec<&str> = world
        .arrivals
        .iter()
        .map(|(_, _, key)| key.as_str())
        .collect();
    assert_eq!(keys, vec!["edit:state 0", "edit:state 9"]);
}

#[tokio::test(start_paused = true)]
async fn flush_waits_for_everything_queued_before_it() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let start = Instant::now();
    outbound.flush().await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "flushing nothing waits for nothing"
    );
    for i in 0..12 {
        outbound.post(1, text(&format!("m{i}")));
    }
    outbound.post(2, text("other"));
    outbound.flush().await;
    assert_eq!(fake.sent_in(1).len(), 12);
    assert_eq!(fake.sent_in(2), vec!["other"]);
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn typing_is_best_effort() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let typings = |fake: &Fake| {
        fake.calls()
            .iter()
            .filter(|call| matches!(call, Call::Typing { .. }))
            .count()
    };
    outbound.typing(4);
    outbound.flush().await;
    assert_eq!(typings(&fake), 1);
    // Still showing: not asked again.
    outbound.typing(4);
    outbound.flush().await;
    assert_eq!(typings(&fake), 1);
    // The channel is busy: dropped.
    outbound.post(4, text("hello"));
    outbound.typing(4);
    outbound.flush().await;
    assert_eq!(typings(&fake), 1);
    // The message ended the indicator, and the window has room: sent.
    outbound.typing(4);
    outbound.flush().await;
    assert_eq!(typings(&fake), 2);
    // Now the window has one slot left after a message: kept for messages.
    outbound.post(4, text("again"));
    outbound.flush().await;
    outbound.typing(4);
    outbound.flush().await;
    assert_eq!(typings(&fake), 2);
    fake.assert_within_budget();
}

#[tokio::test(start_paused = true)]
async fn a_long_message_goes_in_pieces_with_its_reactions_on_the_last() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let line = "All work and no play makes Jack a dull boy.";
    let content = format!("<@42> {}", vec![line; 100].join("\n"));
    let msg = OutMessage::text(content.clone())
        .mentioning(42)
        .with_reaction("✅")
        .with_reaction("❌");
    let ids = outbound.send(5, msg).await.unwrap();
    assert_eq!(ids.len(), 3);
    let calls = fake.calls();
    let sends: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::Send { .. }))
        .collect();
    let mut joined = String::new();
    for (send, id) in sends.iter().zip(&ids) {
        let Call::Send {
            id: sent_id,
            content,
            mention,
            ..
        } = send
        else {
            unreachable!()
        };
        assert_eq!(sent_id, id);
        assert_eq!(*mention, Some(42));
        joined.push_str(content);
        joined.push('\n');
    }
    assert_eq!(joined.trim_end(), content);
    let reactions: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::React { .. }))
        .collect();
    assert_eq!(
        reactions,
        vec![
            &Call::React {
                channel: 5,
                message: ids[2],
                emoji: "✅".into()
            },
            &Call::React {
                channel: 5,
                message: ids[2],
                emoji: "❌".into()
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn very_long_text_goes_as_a_file() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let content = "log line\n".repeat(3000);
    let ids = outbound
        .send(
            6,
            OutMessage::text(content.clone()).with_file("diff.patch", b"+x".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    let Call::Send {
        content: sent,
        files,
        ..
    } = &fake.calls()[0]
    else {
        panic!("not a send");
    };
    assert!(sent.starts_with("log line\n"));
    assert!(sent.contains("27000 characters in all"));
    assert_eq!(
        files,
        &vec![ATTACHMENT_NAME.to_owned(), "diff.patch".to_owned()]
    );
}

#[tokio::test(start_paused = true)]
async fn files_beyond_ten_go_on_further_messages() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let mut msg = OutMessage::text("twelve files");
    for i in 0..12 {
        msg = msg.with_file(format!("f{i}"), vec![]);
    }
    assert_eq!(outbound.send(6, msg).await.unwrap().len(), 2);
    let files: Vec<usize> = fake
        .calls()
        .iter()
        .map(|call| match call {
            Call::Send { files, .. } => files.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(files, vec![10, 2]);
    assert!(outbound
        .send(6, OutMessage::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn threads_are_created_with_a_fit_name_and_archived_after_their_messages() {
    let (fake, outbound, _tracker, _cancel) = setup();
    let thread = outbound
        .create_thread(1, &format!("Fix\nthe {}", "bug ".repeat(40)))
        .await
        .unwrap();
    outbound.post(thread, text("working"));
    outbound.post(thread, text("done"));
    outbound.archive(thread);
    outbound.flush().await;
    let calls = fake.calls();
    let Call::Thread {
        parent: 1,
        name,
        id,
    } = &calls[0]
    else {
        panic!("{calls:?}");
    };
    assert_eq!(*id, thread);
    assert!(name.starts_with("Fix the bug bug") && name.chars().count() == THREAD_NAME_LIMIT);
    assert!(matches!(&calls[1], Call::Send { content, .. } if content == "working"));
    assert!(matches!(&calls[2], Call::Send { content, .. } if content == "done"));
    assert_eq!(calls[3], Call::Archive { thread });
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_what_it_can_within_the_grace_then_fails_the_rest() {
    let (fake, outbound, tracker, cancel) = setup();
    let start = Instant::now();
    for i in 0..19 {
        outbound.post(1, text(&format!("m{i}")));
    }
    let (last, ()) = tokio::join!(outbound.send(1, text("m19")), async {
        time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
        // Within the grace new work is still taken.
        outbound.post(2, text("last words"));
    });
    assert_eq!(last, Err(ApiError::Stopped));
    tracker.close();
    tracker.wait().await;
    // Three windows' worth went out before the deadline (11 s); the fourth could not.
    assert_eq!(fake.sent_in(1).len(), 15);
    assert_eq!(fake.sent_in(2), vec!["last words"]);
    assert!(
        start.elapsed() <= Duration::from_secs(11),
        "{:?}",
        start.elapsed()
    );
    // Past the deadline nothing is taken.
    time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        outbound.send(2, text("too late")).await,
        Err(ApiError::Stopped)
    );
    assert_eq!(
        outbound.create_thread(2, "late").await,
        Err(ApiError::Stopped)
    );
    outbound.flush().await;
    fake.assert_within_budget();
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_while_discord_keeps_failing() {
    let (fake, outbound, tracker, cancel) = setup();
    fake.script("m0", (0..100).map(|_| Reply::Fail(ApiError::Server(500))));
    let (m0, ()) = tokio::join!(outbound.send(1, text("m0")), async {
        outbound.post(1, text("m1"));
        time::sleep(Duration::from_secs(2)).await;
        cancel.cancel();
        outbound.flush().await;
    });
    // Attempts at 0, 1, 3 and 7 s; the next would come at 15 s, past the deadline (12 s), so m0
    // fails at once and m1 still goes.
    assert_eq!(m0, Err(ApiError::Stopped));
    assert_eq!(fake.attempts("m0"), 4);
    assert_eq!(fake.sent_in(1), vec!["m1"]);
    tracker.close();
    tracker.wait().await;
    let took = Instant::now() - fake.arrivals_of("m0")[0];
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_api_fails_what_was_queued_and_the_channel_recovers() {
    let (fake, outbound, _tracker, _cancel) = setup();
    fake.script("boom", [Reply::Panic]);
    let (boom, after) = tokio::join!(
        outbound.send(1, text("boom")),
        outbound.send(1, text("after"))
    );
    assert_eq!(boom, Err(ApiError::Stopped));
    assert_eq!(after, Err(ApiError::Stopped));
    assert!(outbound.send(1, text("recovered")).await.is_ok());
    outbound.flush().await;
    assert_eq!(fake.sent_in(1), vec!["recovered"]);
}
