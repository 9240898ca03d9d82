//! Real agents end to end: the real `tavern` binary runs mortals in the real Claude Code CLI, and Jake
//! on the Anthropic API, all against the fake Anthropic API on 127.0.0.1.

use serde_json::json;
use std::path::Path;

use crate::fakes::anthropic::FakeAnthropic;
use crate::fakes::{claude_bin, Recorded, Step};
use crate::support::{agents_in_log, agents_on_disk, Console, Project};

/// The environment of a tavern whose mortals run in the real CLI against `fake`. Jake has no model,
/// so only the agents under test talk to the fake.
fn cli_env(fake: &FakeAnthropic, home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            home.join(".config").display().to_string(),
        ),
        ("ANTHROPIC_BASE_URL".into(), fake.base_url()),
        ("ANTHROPIC_API_KEY".into(), "sk-fake-key-for-tests".into()),
        ("DISABLE_TELEMETRY".into(), "1".into()),
        (
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
            "1".into(),
        ),
        ("CLAUDE_CODE_MAX_RETRIES".into(), "0".into()),
        (
            "TAVERN_CLAUDE_BIN".into(),
            claude_bin().display().to_string(),
        ),
        ("TAVERN_MODEL__JAKE".into(), "none".into()),
        (
            "TAVERN_MODEL__MORTAL".into(),
            "claude-code:fake-model".into(),
        ),
    ]
}

fn start(project: &Project, env: &[(String, String)]) -> Console {
    Console::start_with_env(project.path(), &[], env)
}

/// Every text the model was sent in one request's messages, joined (tool results included).
fn sent_text(request: &Recorded) -> String {
    request.body["messages"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_mortal_writes_commits_through_tavern_and_is_verified_done() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let file = project.path().join("hello.txt");
    fake.script(
        "Frodo",
        vec![
            Step::tool(
                "Write",
                json!({"file_path": file.display().to_string(), "content": "hello\n"}),
            ),
            Step::tool(
                "mcp__tavern__add_commitment",
                json!({"description": "hello.txt exists", "assertion": "test -f hello.txt"}),
            ),
            Step::tool("mcp__tavern__signal_done", json!({})),
            Step::text("All done: {last_user}"),
        ],
    );
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console.expect_contains("Type to talk to Jake").await;
    console.send("/summon Write hello.txt --name Frodo").await;
    console
        .expect_all(&[
            "+ Frodo (mortal) summoned under Jake: Write hello.txt",
            "Frodo ⚙ Write",
            "+ Frodo commits: hello.txt exists -- test -f hello.txt",
            "✓ Frodo commitment #1 passed",
            "· Frodo: Verifying → Done (every commitment passed)",
        ])
        .await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");
    // Tavern's tools went through its MCP server: the model saw their results.
    console.expect_contains("[Frodo] All done").await;
    let frodo = fake.requests_for("Frodo");
    assert!(
        frodo
            .iter()
            .any(|r| sent_text(r).contains("Verification started")),
        "the model never saw signal_done's result"
    );
    // The key went to the API and nowhere else.
    assert!(frodo
        .iter()
        .all(|r| r.header("x-api-key") == Some("sk-fake-key-for-tests")));
    console.quit().await;
    let log = std::fs::read_to_string(project.tavern().join("log/main.jsonl")).unwrap();
    assert!(
        !log.contains("sk-fake-key-for-tests"),
        "the key reached the log"
    );
    assert!(
        log.contains("session_turn"),
        "the session's message ids are recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_assertion_reaches_the_cli_agent_as_its_next_turn() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            Step::tool(
                "mcp__tavern__add_commitment",
                json!({"description": "missing.txt exists", "assertion": "test -f missing.txt"}),
            ),
            Step::tool("mcp__tavern__signal_done", json!({})),
            Step::text("Checking."),
            Step::text("Got it: {last_user}"),
        ],
    );
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console.send("/summon Make missing.txt --name Frodo").await;
    console
        .expect_all(&[
            "✗ Frodo commitment #1 failed with exit code 1",
            "· Frodo: Verifying → Working",
            "[Frodo] Got it:",
        ])
        .await;
    let last = fake.requests_for("Frodo").pop().unwrap();
    assert!(
        sent_text(&last).contains("missing.txt"),
        "the gap report was not the next turn: {}",
        sent_text(&last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_outside_the_rules_waits_for_a_person_who_approves_or_denies() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            Step::tool(
                "Bash",
                json!({"command": "echo hi > approved.txt", "description": "write"}),
            ),
            Step::text("Frodo saw: {last_user}"),
        ],
    );
    fake.script(
        "Sam",
        vec![
            Step::tool(
                "Bash",
                json!({"command": "echo no > denied.txt", "description": "write"}),
            ),
            Step::text("Sam saw: {last_user}"),
        ],
    );
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console
        .send("/summon Write approved.txt --name Frodo")
        .await;
    console
        .expect_contains("? #1 Frodo wants to use Bash: echo hi > approved.txt")
        .await;
    // Nothing runs before the answer.
    assert!(!project.path().join("approved.txt").exists());
    console.send("/pending").await;
    console
        .expect_contains("? #1 Frodo wants to use Bash")
        .await;
    console.send("/approve 1").await;
    console
        .expect_all(&["✓ @alice allowed #1", "[Frodo] Frodo saw:"])
        .await;
    assert_eq!(
        std::fs::read_to_string(project.path().join("approved.txt")).unwrap(),
        "hi\n"
    );

    console.send("/summon Write denied.txt --name Sam").await;
    console
        .expect_contains("? #2 Sam wants to use Bash: echo no > denied.txt")
        .await;
    console.send("/deny 2 not in this project").await;
    console
        .expect_all(&["✗ @alice denied #2: not in this project", "[Sam] Sam saw:"])
        .await;
    assert!(!project.path().join("denied.txt").exists());
    let last = fake.requests_for("Sam").pop().unwrap();
    assert!(sent_text(&last).contains("not in this project"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_agent_resumes_its_session_and_a_mortal_can_summon() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let file = project.path().join("greeting.txt");
    fake.script(
        "Frodo",
        vec![
            Step::tool(
                "mcp__tavern__ask_user",
                json!({"question": "Which greeting?", "class": "quick"}),
            ),
            Step::text("I'll wait for the answer."),
            Step::tool(
                "mcp__tavern__summon_agent",
                json!({"assignment": "Check the greeting", "name": "Sam"}),
            ),
            Step::tool(
                "Write",
                json!({"file_path": file.display().to_string(), "content": "hello\n"}),
            ),
            Step::text("Wrote {last_user}"),
        ],
    );
    fake.script("Sam", vec![Step::text("Sam here.")]);
    let env = cli_env(&fake, home.path());
    let mut console = start(&project, &env);
    console.send("/summon Write a greeting --name Frodo").await;
    console
        .expect_all(&[
            "? #1 Frodo asks [QUICK]: Which greeting?",
            "[Frodo] I'll wait",
        ])
        .await;
    console.quit().await;
    let before = fake.requests_for("Frodo").len();

    let mut console = start(&project, &env);
    console.send("/pending").await;
    console
        .expect_contains("? #1 Frodo asks [QUICK]: Which greeting?")
        .await;
    console.send("/answer 1 hello").await;
    console
        .expect_all(&[
            "+ Sam (mortal) summoned under Frodo: Check the greeting",
            "[Sam] Sam here.",
            "[Frodo] Wrote",
        ])
        .await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n");
    // The resumed session carried the earlier turns to the API.
    let after = fake.requests_for("Frodo");
    let resumed = &after[before];
    let sent = sent_text(resumed);
    assert!(
        sent.contains("Which greeting?") && sent.contains("hello"),
        "the resumed session lost its history: {sent}"
    );
    console.send("/agents").await;
    console.expect_contains("Sam").await;
    console.quit().await;
    let on_disk = agents_on_disk(&project.tavern());
    assert!(on_disk
        .iter()
        .any(|(name, parent, _)| name == "Sam" && parent.as_deref() == Some("Frodo")));
    assert_eq!(on_disk, agents_in_log(&project.tavern()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_cli_session_starts_no_process_and_calls_no_api() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let file = project.path().join("hello.txt");
    fake.script(
        "Frodo",
        vec![
            Step::tool(
                "Write",
                json!({"file_path": file.display().to_string(), "content": "hello\n"}),
            ),
            Step::tool(
                "mcp__tavern__add_commitment",
                json!({"description": "hello.txt exists", "assertion": "test -f hello.txt"}),
            ),
            Step::tool("mcp__tavern__signal_done", json!({})),
            Step::text("Done."),
        ],
    );
    let env = cli_env(&fake, home.path());
    let mut console = start(&project, &env);
    console.send("/summon Write hello.txt --name Frodo").await;
    console
        .expect_contains("· Frodo: Verifying → Done (every commitment passed)")
        .await;
    console.expect_contains("[Frodo] Done.").await;
    console.quit().await;
    let requests = fake.requests().len();
    let live = agents_on_disk(&project.tavern());

    // The replay: no CLI (the path is gone) and no API (the fake is not reachable from the address).
    let mut offline = env.clone();
    for (key, value) in offline.iter_mut() {
        match key.as_str() {
            "TAVERN_CLAUDE_BIN" => *value = "/nonexistent/claude".into(),
            "ANTHROPIC_BASE_URL" => *value = "http://127.0.0.1:9".into(),
            _ => {}
        }
    }
    let state = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    let frodo = state.agent("Frodo").unwrap();
    assert_eq!(frodo.state, tavern_plugin_api::AgentState::Done);
    assert!(frodo.session.is_some() && !frodo.session_turns.is_empty());
    assert!(frodo.usage.output_tokens > 0, "usage was not recorded");
    let mut console = start(&project, &offline);
    console.send("/agents").await;
    console.expect_contains("Frodo").await;
    console.quit().await;
    assert_eq!(fake.requests().len(), requests, "replay called the API");
    assert_eq!(agents_on_disk(&project.tavern()), live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_cli_is_a_clear_error_at_summon_time() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let mut env = cli_env(&fake, home.path());
    for (key, value) in env.iter_mut() {
        if key == "TAVERN_CLAUDE_BIN" {
            *value = "/nonexistent/claude".into();
        }
    }
    let mut console = start(&project, &env);
    console.send("/summon Write hello.txt --name Frodo").await;
    console.expect_contains("/nonexistent/claude").await;
    assert!(fake.requests().is_empty());
}
