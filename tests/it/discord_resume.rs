//! The gateway going away in the middle of a conversation: op 7 Reconnect, op 9 Invalid Session
//! (resumable or not) and a dropped socket. Discord delivers at least once, so a resume may deliver a
//! message, reaction or slash command again; and a session that ends without a resume never delivers
//! what was said in between. Either way, every request becomes exactly one intent.

use std::collections::HashMap;

use serde_json::json;

use crate::discord::{serve_script, stop, WAIT};
use crate::discord_fake::{FakeDiscord, World, MAIN_CHANNEL};
use crate::support::{assert_log_consistent, Project};

/// Jake answers each message with the next numbered reply; a sixth reply before Frodo exists would mean
/// a message became two intents. Frodo proposes a commitment that needs a sign-off and signals done.
const SCRIPT: &str = r#"
[[reply]]
agent = "Jake"
text = "Reply one."

[[reply]]
agent = "Jake"
text = "Reply two."

[[reply]]
agent = "Jake"
text = "Reply three."

[[reply]]
agent = "Jake"
text = "Reply four."

[[reply]]
agent = "Jake"
text = "Reply five."

[[reply]]
agent = "Jake"
text = "CANARY: a message was acted on twice (or Jake heard of Frodo)."

[[reply]]
agent = "Frodo"
text = "On it."
tools = [{ commit = { description = "it is fine", assertion = "true", needs_signoff = true } }, { done = {} }]
"#;

/// Jake's replies in the main channel, in order.
fn jake_replies(w: &World) -> Vec<String> {
    w.messages(MAIN_CHANNEL)
        .iter()
        .filter(|m| m.content.starts_with("Reply") || m.content.contains("CANARY"))
        .map(|m| m.content.clone())
        .collect()
}

async fn wait_for_reply(fake: &FakeDiscord, n: usize, what: &str) {
    assert!(
        fake.wait_for_async(|w| jake_replies(w).len() >= n, WAIT)
            .await,
        "after {what}, Jake's reply #{n} never came: {:?}",
        fake.with_world(jake_replies)
    );
}

/// Entries in the log by intent kind, from a person. A line still being written is skipped.
fn user_intents(project: &Project) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(project.tavern().join("log/main.jsonl")).expect("the log");
    let mut counts = HashMap::new();
    for line in text.lines().skip(1) {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if record["actor"].get("user").is_none() {
            continue;
        }
        if let Some(kind) = record["intent"]
            .as_object()
            .and_then(|o| o.keys().next().cloned())
        {
            *counts.entry(kind).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_resumes_and_lost_sessions_neither_lose_nor_duplicate_intents() {
    let project = Project::new();
    let fake = FakeDiscord::start();
    let alice = fake.add_user("alice");
    let bot = serve_script(&project, &fake, &[alice], SCRIPT).await;
    // Every resume from now on also replays the last 50 events the bot already had.
    fake.redeliver_on_resume(50);

    fake.user_says(alice, MAIN_CHANNEL, "one");
    wait_for_reply(&fake, 1, "the first message").await;

    // op 7: the bot reconnects and resumes; "two" is said while it is away.
    let resumes = fake.resumes();
    fake.reconnect();
    fake.user_says(alice, MAIN_CHANNEL, "two");
    wait_for_reply(&fake, 2, "op 7").await;

    // A dropped socket: the same, without a goodbye.
    fake.drop_socket();
    fake.user_says(alice, MAIN_CHANNEL, "three");
    wait_for_reply(&fake, 3, "a dropped socket").await;

    // op 9, resumable.
    fake.invalidate(true);
    fake.user_says(alice, MAIN_CHANNEL, "four");
    wait_for_reply(&fake, 4, "a resumable op 9").await;
    assert!(
        fake.resumes() >= resumes + 3,
        "the bot did not resume after each fault"
    );

    // op 9, not resumable: Discord never delivers "five"; the bot reads it back after identifying.
    let identifies = fake.identifies();
    fake.invalidate(false);
    fake.user_says(alice, MAIN_CHANNEL, "five");
    wait_for_reply(&fake, 5, "a session lost without a resume").await;
    assert!(
        fake.identifies() > identifies,
        "the bot never identified again"
    );
    // Every message so far became one intent and one reply, in order.
    assert_eq!(
        fake.with_world(jake_replies),
        [
            "Reply one.",
            "Reply two.",
            "Reply three.",
            "Reply four.",
            "Reply five."
        ]
    );

    // A slash command and a reaction, then one more resume that delivers both again.
    let summon = fake.slash(
        alice,
        MAIN_CHANNEL,
        "summon",
        json!({"assignment": "check that it is fine", "name": "Frodo"}),
    );
    // Frodo's commitment is his own proposal: ✅ approves it; once it passes, ✅ signs it off.
    let offered = |w: &World, what: &str| {
        let thread = w.thread_named("Frodo")?;
        w.messages(thread.id)
            .into_iter()
            .find(|m| m.content.contains(what) && !w.reactions(m.id).is_empty())
            .map(|m| (thread.id, m.id))
    };
    assert!(
        fake.wait_for_async(|w| offered(w, "proposes commitment #1").is_some(), WAIT)
            .await,
        "Frodo's commitment was never proposed: {:?}",
        fake.interaction_responses(summon)
    );
    let (thread, proposal) = fake
        .with_world(|w| offered(w, "proposes commitment #1"))
        .expect("the proposal is there");
    fake.react(alice, thread, proposal, "✅");
    assert!(
        fake.wait_for_async(|w| offered(w, "needs a sign-off").is_some(), WAIT)
            .await,
        "Frodo's passed commitment was never offered for sign-off"
    );
    let (_, signoff) = fake
        .with_world(|w| offered(w, "needs a sign-off"))
        .expect("the sign-off is there");
    fake.react(alice, thread, signoff, "✅");
    let done = |w: &World| {
        w.messages(thread)
            .first()
            .is_some_and(|m| m.content.contains("Done"))
    };
    assert!(
        fake.wait_for_async(done, WAIT).await,
        "the sign-off did not make Frodo Done"
    );
    let resumes = fake.resumes();
    fake.reconnect();
    fake.user_says(alice, thread, "thanks");
    assert!(
        fake.wait_for_async(|w| w.resumes() > resumes && w.gateway_live(), WAIT)
            .await,
        "the bot did not resume"
    );
    // The log is another process's file, with nothing to wait on but itself: polled, bounded.
    let mut recorded = false;
    for _ in 0..(WAIT.as_millis() / 50) {
        if user_intents(&project).get("send_message") == Some(&6) {
            recorded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        recorded,
        "six messages should be six intents, the one said in a thread while the bot was away included: {:?}",
        user_intents(&project)
    );
    stop(bot).await;

    // Nothing was recorded twice: each message, reaction and command is one entry.
    assert_log_consistent(&project.tavern());
    let intents = user_intents(&project);
    assert_eq!(intents.get("send_message"), Some(&6), "{intents:?}");
    assert_eq!(intents.get("summon"), Some(&1), "{intents:?}");
    assert_eq!(intents.get("answer"), Some(&1), "{intents:?}");
    assert_eq!(intents.get("approve"), Some(&1), "{intents:?}");
    // The command was answered once: one deferral, one reply.
    let responses = fake.interaction_responses(summon);
    assert_eq!(
        responses
            .iter()
            .filter(|r| r.callback_kind().is_some())
            .count(),
        1,
        "{responses:?}"
    );
    assert_eq!(
        responses.iter().filter(|r| r.content().is_some()).count(),
        1,
        "{responses:?}"
    );
    fake.assert_no_unexpected();
}
