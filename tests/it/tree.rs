//! Supervision: failed agent tasks are restarted by their parent's strategy, then reaped at the limit.

use crate::support::{Console, Project};
use tavern::domain::{Intent, TavernSchema};
use tavern::log::LogReader;

const FLAKY: &str = r#"
[[reply]]
agent = "Jake"
text = "Two Regulars, coming up."
tools = [
  { summon = { assignment = "flaky work" } },
  { summon = { assignment = "steady work" } },
]

[[reply]]
agent = "Frodo"
error = "the model service is down"
"#;

fn start(project: &Project) -> Console {
    let script = project.write("flaky.toml", FLAKY);
    let config = project.write("tavern.toml", "[supervisor]\nmax_restarts = 2\n");
    Console::start(
        project.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--model",
            &format!("scripted:{}", script.display()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_one_retries_the_failed_agent_then_reaps_it_and_tells_the_parent() {
    let project = Project::new();
    let mut console = start(&project);
    console.send("two jobs please").await;
    console.expect_contains("the model service is down").await;
    console
        .expect_contains("! Frodo's task was restarted (restart 1)")
        .await;
    console
        .expect_contains("! Frodo's task was restarted (restart 2)")
        .await;
    let reaped = console
        .expect_contains("· Frodo: Working → FailedReaped")
        .await;
    assert!(
        reaped.contains("failed 3 times within 60 s (limit 2)")
            && reaped.contains("the model service is down"),
        "{reaped}"
    );
    console.expect_contains("! Jake ← Frodo was reaped").await;
    let tree = console.agents("Sam").await;
    assert!(
        tree[1].contains("Frodo (mortal) FailedReaped †"),
        "{tree:?}"
    );
    assert!(tree[2].contains("Sam (mortal) Working"), "{tree:?}");
    // Restart-one leaves the healthy sibling alone.
    assert!(!console
        .transcript
        .iter()
        .any(|l| l.contains("Sam's task was restarted")));
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_all_restarts_every_live_sibling() {
    let project = Project::new();
    let mut console = start(&project);
    console.send("/strategy Jake all").await;
    console
        .expect_contains("· Jake restart strategy: RestartAll")
        .await;
    console.send("two jobs please").await;
    console
        .expect_contains("! Frodo's task was restarted (restart 1)")
        .await;
    console
        .expect_contains("! Sam's task was restarted (restart 1)")
        .await;
    // Frodo keeps failing and is reaped at the limit; Sam, restarted alongside, ran no turn twice.
    console
        .expect_contains("· Frodo: Working → FailedReaped")
        .await;
    console.quit().await;
    let tavern = project.tavern();
    crate::support::assert_log_consistent(&tavern);

    // Restarts back off (0.1 s, then 0.2 s), however many siblings restart alongside.
    let reader = LogReader::<TavernSchema>::open(&tavern.join("log"), "main").unwrap();
    let entries = reader.read_range(1, reader.last_seq()).unwrap();
    let frodo_restarts: Vec<u64> = entries
        .iter()
        .filter(|e| matches!(&e.intent, Intent::RestartAgent { agent, .. } if agent == "Frodo"))
        .map(|e| e.ts)
        .collect();
    // Each restart is recorded when the task fails, and the next failure comes only after the
    // backoff: attempt 1 waits 0.1 s, attempt 2 waits 0.2 s (`tree::backoff`). The third record is
    // the reap. The margins allow for the log's whole milliseconds.
    assert_eq!(frodo_restarts.len(), 3, "{frodo_restarts:?}");
    let gaps: Vec<u64> = frodo_restarts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= 90 && gaps[1] >= 190,
        "restarts did not back off 0.1 s then 0.2 s: gaps {gaps:?} ms between {frodo_restarts:?}"
    );
    // Sam, restarted alongside, took its one turn once.
    let sam_turns = entries
        .iter()
        .filter(|e| matches!(&e.intent, Intent::TakeTurn { agent } if agent == "Sam"))
        .count();
    assert_eq!(sam_turns, 1);
}
