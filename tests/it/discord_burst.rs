//! A burst of agent output against Discord's rate limits: 20 agents each send 25 messages at once, and
//! every one of the 500 reaches its agent's thread, once and in order, without a single request sent
//! into an exhausted bucket.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::discord::{serve_script, stop, WAIT};
use crate::discord_fake::{FakeDiscord, World, MAIN_CHANNEL};
use crate::support::Project;

/// How many agents Jake summons.
const AGENTS: usize = 20;
/// How many chunks each agent sends.
const CHUNKS: u32 = 25;
/// The fake's per-channel budget: message posts per window (its default, set again so the timeout
/// below is computed from the numbers actually enforced).
const CHANNEL_LIMIT: u32 = 5;
const CHANNEL_WINDOW: Duration = Duration::from_secs(5);

fn agent_name(i: usize) -> String {
    format!("A{i:02}")
}

fn chunk_text(agent: &str, n: u32) -> String {
    format!("{agent} chunk {n:02}")
}

/// Jake summons every agent in one reply; each agent's first reply is 25 `message` calls to itself
/// (each one intent, each shown in its own thread as a separate Discord message, so nothing is split
/// or merged), and its second turn (woken by those messages) says nothing, so its thread holds only
/// its header and its chunks.
fn burst_script() -> String {
    let mut script = String::from(
        "[[reply]]\nagent = \"Jake\"\ntext = \"Calling in the burst crew.\"\ntools = [\n",
    );
    for i in 1..=AGENTS {
        let name = agent_name(i);
        writeln!(
            script,
            "  {{ summon = {{ assignment = \"Say your numbered lines\", name = \"{name}\" }} }},"
        )
        .unwrap();
    }
    script.push_str("]\n");
    for i in 1..=AGENTS {
        let name = agent_name(i);
        write!(script, "\n[[reply]]\nagent = \"{name}\"\ntools = [\n").unwrap();
        for n in 1..=CHUNKS {
            let text = chunk_text(&name, n);
            writeln!(
                script,
                "  {{ message = {{ to = \"{name}\", text = \"{text}\" }} }},"
            )
            .unwrap();
        }
        write!(script, "]\n\n[[reply]]\nagent = \"{name}\"\n").unwrap();
    }
    script
}

/// The chunk a message carries (`**A07 → A07:** A07 chunk 13` carries `("A07", 13)`), if any.
fn chunk_of(content: &str) -> Option<(String, u32)> {
    let words: Vec<&str> = content.split_whitespace().collect();
    words.windows(3).find_map(|w| match w {
        [agent, "chunk", n] => Some(((*agent).to_string(), n.parse().ok()?)),
        _ => None,
    })
}

/// Every chunk on Discord, by the channel it landed in, in the order the fake stored them.
fn chunks_by_channel(w: &World) -> BTreeMap<u64, Vec<(String, u32)>> {
    let mut by_channel: BTreeMap<u64, Vec<(String, u32)>> = BTreeMap::new();
    for message in w.all_messages() {
        if let Some(chunk) = chunk_of(&message.content) {
            by_channel.entry(message.channel).or_default().push(chunk);
        }
    }
    by_channel
}

/// What is wrong with the chunks on Discord, one line per agent whose thread is not exactly its own
/// chunks 1..=25 in order, plus chunks that landed outside any agent's thread; empty when all is well.
fn problems(w: &World) -> Vec<String> {
    let mut by_channel = chunks_by_channel(w);
    let mut problems = Vec::new();
    for i in 1..=AGENTS {
        let name = agent_name(i);
        let Some(thread) = w.thread_named(&name) else {
            problems.push(format!("{name}: no thread"));
            continue;
        };
        let expected: Vec<(String, u32)> = (1..=CHUNKS).map(|n| (name.clone(), n)).collect();
        let actual = by_channel.remove(&thread.id).unwrap_or_default();
        if actual != expected {
            let shown: Vec<String> = actual.iter().map(|(a, n)| format!("{a}#{n}")).collect();
            problems.push(format!(
                "{name} (thread {}): expected its chunks 1..={CHUNKS} in order, got {} chunk(s): {}",
                thread.id,
                actual.len(),
                shown.join(" ")
            ));
        }
    }
    for (channel, stray) in by_channel {
        problems.push(format!(
            "{} chunk(s) landed in channel {channel}, which is no agent's thread",
            stray.len()
        ));
    }
    problems
}

/// Whether every agent's thread holds at least its number of chunks.
fn all_counted(w: &World) -> bool {
    let by_channel = chunks_by_channel(w);
    (1..=AGENTS).all(|i| {
        w.thread_named(&agent_name(i)).is_some_and(|t| {
            by_channel
                .get(&t.id)
                .is_some_and(|chunks| chunks.len() >= CHUNKS as usize)
        })
    })
}

/// How long the whole burst may take. Tavern paces itself below the fake's budget, so the time is set
/// by the budget, not by the machine: the main channel takes Jake's typing, his words and one thread
/// creation per agent; a thread takes its header, its chunks and a few header edits (Tavern counts
/// every request against the channel, the fake only posts, so this is an upper bound). In the worst
/// case a thread starts only once the main channel is through, so the two add up. Twice that leaves
/// room for a slow, loaded machine; a lost chunk still fails the test, only later.
fn burst_timeout() -> Duration {
    let windows = |requests: u32| requests.div_ceil(CHANNEL_LIMIT);
    let main = windows(AGENTS as u32 + 2);
    let header_edits = 6;
    let thread = windows(1 + CHUNKS + header_edits);
    2 * (main + thread) * CHANNEL_WINDOW
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_chunks_from_20_agents_arrives_whole_and_in_order_within_the_limits() {
    let project = Project::new();
    let fake = FakeDiscord::start();
    fake.set_channel_limit(CHANNEL_LIMIT, CHANNEL_WINDOW);
    let alice = fake.add_user("alice");
    let mut bot = serve_script(&project, &fake, &[alice], &burst_script()).await;
    // Keep reading the bot's stderr: a full pipe would stall it, and its tail explains a failure.
    let stderr = Arc::new(Mutex::new(String::new()));
    let reader = bot.stderr.take().map(|mut pipe| {
        let stderr = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                stderr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    });

    fake.user_says(alice, MAIN_CHANNEL, "everyone, say your lines");
    assert!(
        fake.wait_for_async(
            |w| w
                .messages(MAIN_CHANNEL)
                .iter()
                .any(|m| m.content.contains("Calling in the burst crew")),
            WAIT
        )
        .await,
        "Jake never answered in the main channel"
    );
    let timeout = burst_timeout();
    let started = std::time::Instant::now();
    // Wait for the count, then check the content: a reordered or misplaced chunk fails at once, a lost
    // one when the time is up.
    let arrived = fake.wait_for_async(all_counted, timeout).await;
    let took = started.elapsed();
    let mid_burst_problems = fake.with_world(problems);
    let violations_before_stop = fake.violations();
    stop(bot).await;
    if let Some(reader) = reader {
        let _ = tokio::time::timeout(WAIT, reader).await;
    }
    let stderr = stderr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let tail: String = {
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    assert!(
        arrived && mid_burst_problems.is_empty(),
        "the burst did not arrive whole and in order{}:\n  {}\nbot stderr (tail):\n{tail}",
        if arrived {
            String::new()
        } else {
            format!(" within {timeout:?}")
        },
        mid_burst_problems.join("\n  ")
    );
    eprintln!(
        "the burst of {} chunks arrived in {took:?}",
        AGENTS as u32 * CHUNKS
    );
    // After the stop everything queued has gone out: nothing arrived twice or late out of order.
    let after_stop = fake.with_world(problems);
    assert!(
        after_stop.is_empty(),
        "after the stop:\n  {}",
        after_stop.join("\n  ")
    );
    assert_eq!(
        violations_before_stop, 0,
        "requests went into an exhausted bucket during the burst"
    );
    assert_eq!(
        fake.violations(),
        0,
        "a request went into an exhausted bucket"
    );
    fake.assert_no_unexpected();
}
