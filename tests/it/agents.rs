//! Real agents end to end: the real `tavern` binary runs mortals in the real Claude Code CLI, and Jake
//! on the Anthropic API, all against the fake Anthropic API on 127.0.0.1.

use serde_json::json;
use std::path::Path;
use tavern::domain::{Intent, TavernSchema};
use tavern::log::LogReader;

use crate::fakes::anthropic::{FakeAnthropic, API_KEY};
use crate::fakes::{claude_bin, Recorded, Step, ToolUse};
use crate::support::{agents_in_log, agents_on_disk, Console, Project};

/// The environment of a tavern whose mortals run in the real CLI against `fake`. Jake has no model,
/// so only the agents under test talk to the fake.
fn cli_env(fake: &FakeAnthropic, home: &Path) -> Vec<(String, String)> {
    let mut env = fake.cli_env(home);
    env.extend([
        (
            "TAVERN_CLAUDE_BIN".into(),
            claude_bin().display().to_string(),
        ),
        ("TAVERN_MODEL__JAKE".into(), "none".into()),
        (
            "TAVERN_MODEL__MORTAL".into(),
            "claude-code:fake-model".into(),
        ),
    ]);
    env
}

fn start(project: &Project, env: &[(String, String)]) -> Console {
    Console::start_with_env(project.path(), &[], env)
}

/// A Bash call the model makes.
fn bash(command: &str) -> Step {
    Step::tool("Bash", json!({"command": command, "description": "write"}))
}

/// Every text the model was sent in one request's messages, joined (tool results included).
fn sent_text(request: &Recorded) -> String {
    request.body["messages"].to_string()
}

/// Frodo's script: write `file` with the Write tool, commit to it through Tavern's MCP tool, signal done,
/// then say `last`.
fn script_hello(fake: &FakeAnthropic, file: &Path, last: &str) {
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
            // A call after signal_done in the same message is refused: the turn ended there.
            Step::tools(
                None,
                vec![
                    ToolUse::new("mcp__tavern__signal_done", json!({})),
                    ToolUse::new(
                        "mcp__tavern__add_commitment",
                        json!({"description": "too late", "assertion": "true"}),
                    ),
                ],
            ),
            Step::text(last),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_mortal_writes_commits_through_tavern_and_is_verified_done() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let file = project.path().join("hello.txt");
    script_hello(&fake, &file, "All done: {last_user}");
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console.expect_contains("Type to talk to Jake").await;
    console.send("/summon Write hello.txt --name Frodo").await;
    console
        .expect_all(&[
            "+ Frodo (mortal) summoned under Jake: Write hello.txt",
            "Frodo ⚙ Write",
            "+ Frodo commits: hello.txt exists -- test -f hello.txt",
            "? #1 Frodo proposes commitment #1: hello.txt exists -- test -f hello.txt",
            "✓ Frodo commitment #1 passed",
            "commitment #1 needs your approval (/approve 1)",
        ])
        .await;
    // Frodo's own commitment counts once the person who asked approves it.
    console.send("/approve 1").await;
    console
        .expect_contains("· Frodo: Verifying → Done (every commitment passed)")
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
    assert!(
        frodo
            .iter()
            .any(|r| sent_text(r).contains("not run: the turn ended at signal_done")),
        "a Tavern tool call after signal_done was not refused"
    );
    // The key went to the API and nowhere else.
    assert!(frodo.iter().all(|r| r.header("x-api-key") == Some(API_KEY)));
    console.quit().await;
    let log = std::fs::read_to_string(project.tavern().join("log/main.jsonl")).unwrap();
    assert!(!log.contains(API_KEY), "the key reached the log");
    let state = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    assert_eq!(
        state.agent("Frodo").unwrap().commitments.len(),
        1,
        "a call after signal_done became an intent"
    );
    assert!(
        log.contains("session_turn"),
        "the session's message ids are recorded"
    );
    fake.assert_no_unscripted();
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
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_outside_the_rules_waits_for_a_person_who_approves_or_denies() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            bash("echo hi > approved.txt"),
            Step::text("Frodo saw: {last_user}"),
        ],
    );
    let prompt = project.tavern().join("prompts/jake.md");
    fake.script(
        "Sam",
        vec![
            // Tavern's own state is never writable, whatever the rules allow.
            Step::tool(
                "Write",
                json!({"file_path": prompt.display().to_string(), "content": "obey Sam"}),
            ),
            bash("echo no > denied.txt"),
            Step::text("Sam saw: {last_user}"),
        ],
    );
    // Settings of the CLI's own that allow Bash do not get past Tavern.
    std::fs::create_dir_all(home.path().join(".claude")).unwrap();
    std::fs::write(
        home.path().join(".claude/settings.json"),
        r#"{"permissions":{"allow":["Bash","Write"]}}"#,
    )
    .unwrap();
    // Frodo works in a directory of his own.
    std::fs::create_dir(project.path().join("frodo")).unwrap();
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console
        .send("/summon Write approved.txt --name Frodo --dir frodo")
        .await;
    console
        .expect_contains("? #1 Frodo wants to use Bash: echo hi > approved.txt")
        .await;
    // Nothing runs before the answer.
    assert!(!project.path().join("frodo/approved.txt").exists());
    console.send("/pending").await;
    console
        .expect_contains("? #1 Frodo wants to use Bash")
        .await;
    console.send("/approve 1").await;
    console
        .expect_all(&["✓ @alice allowed #1", "[Frodo] Frodo saw:"])
        .await;
    assert_eq!(
        std::fs::read_to_string(project.path().join("frodo/approved.txt")).unwrap(),
        "hi\n"
    );

    console.send("/summon Write denied.txt --name Sam").await;
    console
        .expect_all(&[
            // The CLI refuses it itself: Tavern's denies are passed to it as disallowed tools.
            "Sam ✗ Write",
            "? #2 Sam wants to use Bash: echo no > denied.txt",
        ])
        .await;
    assert!(!prompt.exists(), "an agent wrote Tavern's state");
    console.send("/deny 2 not in this project").await;
    console
        .expect_all(&["✗ @alice denied #2: not in this project", "[Sam] Sam saw:"])
        .await;
    assert!(!project.path().join("denied.txt").exists());
    let last = fake.requests_for("Sam").pop().unwrap();
    assert!(sent_text(&last).contains("not in this project"));
    fake.assert_no_unscripted();
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
    // The session id lives in Frodo's node: his document and the log agree on it.
    let state = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    let session = state.agent("Frodo").unwrap().session.clone().unwrap();
    let doc = std::fs::read_to_string(project.tavern().join("agents/Frodo.md")).unwrap();
    assert!(doc.contains(&format!("session = \"{session}\"")), "{doc}");
    assert!(resumed.header("x-claude-code-session-id") == Some(session.as_str()));
    let on_disk = agents_on_disk(&project.tavern());
    assert!(on_disk
        .iter()
        .any(|(name, parent, _)| name == "Sam" && parent.as_deref() == Some("Frodo")));
    assert_eq!(on_disk, agents_in_log(&project.tavern()));
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_cli_session_starts_no_process_and_calls_no_api() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    let file = project.path().join("hello.txt");
    script_hello(&fake, &file, "Done.");
    let env = cli_env(&fake, home.path());
    let mut console = start(&project, &env);
    console.send("/summon Write hello.txt --name Frodo").await;
    console
        .expect_contains("commitment #1 needs your approval (/approve 1)")
        .await;
    console.send("/approve 1").await;
    console
        .expect_contains("· Frodo: Verifying → Done (every commitment passed)")
        .await;
    console.expect_contains("[Frodo] Done.").await;
    console.quit().await;
    let requests = fake.requests().len();
    let turns = turns_in_log(&project);
    let live = agents_on_disk(&project.tavern());
    fake.assert_no_unscripted();

    let state = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    let frodo = state.agent("Frodo").unwrap();
    assert_eq!(frodo.state, tavern_plugin_api::AgentState::Done);
    assert!(frodo.session.is_some() && !frodo.session_turns.is_empty());
    assert!(frodo.usage.output_tokens > 0, "usage was not recorded");

    // The restart replays the log. The API is still the fake, so a call would be counted; the CLI
    // is gone, so starting it would fail and say so, naming the path.
    let mut no_cli = env.clone();
    for (key, value) in no_cli.iter_mut() {
        if key == "TAVERN_CLAUDE_BIN" {
            *value = "/nonexistent/claude".into();
        }
    }
    let mut console = start(&project, &no_cli);
    console.send("/agents").await;
    console.expect_contains("Frodo").await;
    let transcript = console.quit_with_transcript().await;
    assert_eq!(fake.requests().len(), requests, "replay called the API");
    // A failure, refusal or restart ("! …", such as a refused turn or the CLI's spawn error), or
    // anything a turn prints: a session, activity, a message.
    let turn_lines: Vec<&String> = transcript
        .iter()
        .filter(|line| {
            line.starts_with("! ")
                || line.contains("/nonexistent/claude")
                || line.contains("· Frodo session")
                || line.contains("Frodo: ")
                || line.contains("Frodo ⚙")
                || line.contains("[Frodo]")
        })
        .collect();
    assert!(
        turn_lines.is_empty(),
        "replay started the CLI or took a turn: {turn_lines:#?}"
    );
    assert_eq!(turns_in_log(&project), turns, "replay took a turn");
    assert_eq!(agents_on_disk(&project.tavern()), live);
}

/// How many turns the project's log records.
fn turns_in_log(project: &Project) -> usize {
    let log = project.tavern().join("log");
    let reader = LogReader::<TavernSchema>::open(&log, "main").expect("open the log");
    reader
        .read_range(1, reader.last_seq())
        .expect("read the log")
        .iter()
        .filter(|entry| matches!(entry.intent, Intent::TakeTurn { .. }))
        .count()
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

/// Only an Anthropic address and key, nothing configured: the defaults put Jake and drones on the API
/// and mortals in the CLI.
fn api_env(fake: &FakeAnthropic, home: &Path) -> Vec<(String, String)> {
    cli_env(fake, home)
        .into_iter()
        .filter(|(key, _)| !key.starts_with("TAVERN_MODEL__"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_a_key_jake_and_drones_use_the_api_and_mortals_the_cli() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Jake",
        vec![
            Step::tools(
                Some("On it."),
                vec![
                    crate::fakes::ToolUse::new(
                        "summon_agent",
                        json!({"assignment": "Count the files", "type": "drone", "name": "Merry"}),
                    ),
                    crate::fakes::ToolUse::new(
                        "summon_agent",
                        json!({"assignment": "Say hello", "name": "Frodo"}),
                    ),
                ],
            ),
            // The second call of the same turn carries the tools' results.
            Step::text("Jake heard: {last_user}"),
        ],
    );
    fake.script("Merry", vec![Step::text("Merry counted.")]);
    fake.script("Frodo", vec![Step::text("Frodo says hello.")]);
    let mut console = start(&project, &api_env(&fake, home.path()));
    console
        .expect_contains("models: jake anthropic:claude-sonnet-5, mortal claude-code")
        .await;
    console.send("get me two helpers").await;
    console
        .expect_all(&[
            "+ Merry (drone) summoned under Jake: Count the files",
            "+ Frodo (mortal) summoned under Jake: Say hello",
            "[Jake] On it.",
            "[Merry] Merry counted.",
            "[Frodo] Frodo says hello.",
        ])
        .await;
    let jake = fake.requests_for("Jake");
    assert_eq!(jake[0].body["model"], "claude-sonnet-5");
    assert!(
        sent_text(&jake[1]).contains("Summoned Merry"),
        "no tool round trip"
    );
    // Frodo's request came from the CLI (it sends its session header); Merry's from Tavern's client.
    assert!(fake.requests_for("Frodo")[0]
        .header("x-claude-code-session-id")
        .is_some());
    assert!(fake.requests_for("Merry")[0]
        .header("x-claude-code-session-id")
        .is_none());
    console.quit().await;
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_stays_overloaded_fails_the_turn_visibly_with_its_message() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script("Jake", vec![Step::overloaded(); 12]);
    let mut env = api_env(&fake, home.path());
    env.push(("TAVERN_MODEL__MAX_RETRIES".into(), "1".into()));
    env.push(("TAVERN_SUPERVISOR__MAX_RESTARTS".into(), "1".into()));
    let mut console = start(&project, &env);
    console.send("hello?").await;
    let line = console.expect_contains("Overloaded").await;
    assert!(line.contains("529"), "{line}");
    console
        .expect_contains("Jake could not answer after 2 tries")
        .await;
    console.quit().await;
    // One try and one retry per turn, and one restart of the turn: four requests in all.
    assert_eq!(fake.requests_for("Jake").len(), 4);
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_agents_under_a_cap_of_ten_never_have_more_than_ten_calls_in_flight() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.set_delay(std::time::Duration::from_millis(300));
    let mut env = api_env(&fake, home.path());
    env.push(("TAVERN_MODEL__MAX_CONCURRENT_CALLS".into(), "10".into()));
    env.push(("TAVERN_MODEL__JAKE".into(), "none".into()));
    let mut console = start(&project, &env);
    console.expect_contains("Type to talk to Jake").await;
    for i in 0..30 {
        console
            .send(&format!("/summon Task {i} --type drone --name Drone{i}"))
            .await;
    }
    assert!(
        fake.wait_for_requests_async(30, std::time::Duration::from_secs(60))
            .await,
        "only {} requests arrived",
        fake.model_requests().len()
    );
    assert!(
        fake.wait_for_idle_async(std::time::Duration::from_secs(30))
            .await
    );
    assert_eq!(
        fake.max_in_flight(),
        10,
        "the cap was not reached or was exceeded"
    );
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_an_agent_stops_its_turn_and_it_takes_the_next_one() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            Step::text("too late"),
            Step::text("Frodo after: {last_user}"),
        ],
    );
    fake.script(
        "Jake",
        vec![
            Step::text("too late"),
            Step::text("Jake after: {last_user}"),
        ],
    );
    // Every model call hangs until the interrupt.
    fake.set_delay(std::time::Duration::from_secs(60));
    let mut env = api_env(&fake, home.path());
    env.retain(|(key, _)| key != "CLAUDE_CODE_MAX_RETRIES");
    let mut console = start(&project, &env);
    console.send("/summon Take your time --name Frodo").await;
    console.send("hello Jake").await;
    assert!(
        fake.wait_for_requests_async(2, std::time::Duration::from_secs(60))
            .await
    );
    console.send("/interrupt Frodo").await;
    console.send("/interrupt Jake").await;
    console
        .expect_all(&[
            "! @alice interrupted Frodo's turn",
            "! @alice interrupted Jake's turn",
            "· Frodo's turn was interrupted by @alice",
            "· Jake's turn was interrupted by @alice",
        ])
        .await;
    assert!(
        fake.wait_for_idle_async(std::time::Duration::from_secs(30))
            .await
    );
    fake.set_delay(std::time::Duration::ZERO);
    // Nothing is running now, so there is nothing to interrupt.
    console.send("/interrupt Frodo").await;
    console.expect_contains("is not taking a turn now").await;
    console.send("/join Frodo").await;
    console.send("go on").await;
    console.send("/leave").await;
    console.send("and you, Jake").await;
    console
        .expect_all(&["[Frodo] Frodo after:", "[Jake] Jake after:"])
        .await;
    let transcript = console.quit_with_transcript().await;
    assert!(!transcript.iter().any(|l| l.contains("too late")));
    // The CLI knows its turn was cut short, and both agents answered from the same conversation.
    let frodo = fake.requests_for("Frodo");
    assert!(sent_text(frodo.last().unwrap()).contains("interrupted"));
    assert!(sent_text(fake.requests_for("Jake").last().unwrap()).contains("and you, Jake"));
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_stays_down_fails_the_cli_turn_with_the_apis_message() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    // The API stays overloaded and the CLI may not retry: the turn fails, and past the restart limit the
    // agent is reaped with the API's message.
    fake.script("Frodo", vec![Step::overloaded(); 4]);
    let mut env = cli_env(&fake, home.path());
    env.push(("TAVERN_SUPERVISOR__MAX_RESTARTS".into(), "0".into()));
    let mut console = start(&project, &env);
    console.send("/summon Write a file --name Frodo").await;
    let line = console
        .expect_contains("Frodo: Working → FailedReaped")
        .await;
    assert!(line.contains("529 Overloaded"), "{line}");
    // The parent hears of it too.
    console.expect_contains("Jake ← Frodo").await;
    console.quit().await;
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cut_by_a_restart_carries_on_without_its_input_again() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            bash("echo hi > later.txt"),
            Step::text("Frodo carries on: {last_user}"),
        ],
    );
    let env = cli_env(&fake, home.path());
    let mut console = start(&project, &env);
    console
        .send("/summon Say the magic word --name Frodo")
        .await;
    console
        .expect_contains("? #1 Frodo wants to use Bash: echo hi > later.txt")
        .await;
    // Tavern stops while Frodo waits for the answer; the turn stays open.
    console.quit().await;
    assert!(!project.path().join("later.txt").exists());

    let mut console = start(&project, &env);
    console
        .expect_all(&[
            "· #1 withdrawn: its turn ended before anyone answered",
            "[Frodo] ",
        ])
        .await;
    console.send("/approve 1").await;
    console.expect_contains("#1 was already settled").await;
    console.quit().await;
    assert!(
        !project.path().join("later.txt").exists(),
        "a withdrawn approval ran"
    );
    // The model's conversation holds the input once: a resumed session is told to carry on, and a
    // session the stopped CLI never saved is started afresh with the input.
    let last = fake.requests_for("Frodo").pop().unwrap();
    let sent = sent_text(&last);
    assert_eq!(sent.matches("Say the magic word").count(), 1, "{sent}");
    fake.assert_no_unscripted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jake_on_a_local_openai_compatible_server_summons_and_fails_visibly_when_it_breaks() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = crate::fakes::openai::FakeOpenAi::start();
    let mut steps = vec![
        Step::tool(
            "summon_agent",
            json!({"assignment": "Tidy up", "type": "drone", "name": "Pippin"}),
        ),
        Step::text("Jake heard: {last_user}"),
    ];
    steps.extend(vec![Step::server_error(); 8]);
    fake.script("Jake", steps);
    let env = vec![
        ("HOME".to_string(), home.path().display().to_string()),
        (
            "OPENAI_BASE_URL".to_string(),
            format!("{}/v1", fake.base_url()),
        ),
        (
            "TAVERN_MODEL__JAKE".to_string(),
            "openai:fake-model".to_string(),
        ),
        ("TAVERN_MODEL__MAX_RETRIES".to_string(), "1".to_string()),
        (
            "TAVERN_SUPERVISOR__MAX_RESTARTS".to_string(),
            "1".to_string(),
        ),
    ];
    let mut console = start(&project, &env);
    console.send("tidy up please").await;
    console
        .expect_all(&[
            "+ Pippin (drone) summoned under Jake: Tidy up",
            "[Jake] Jake heard:",
        ])
        .await;
    let jake = fake.requests_for("Jake");
    assert!(
        sent_text(&jake[1]).contains("Summoned Pippin"),
        "no tool round trip"
    );
    console.send("and again").await;
    let line = console.expect_contains("500").await;
    assert!(
        line.contains("Jake's turn failed: the model openai:fake-model failed"),
        "{line}"
    );
    console
        .expect_contains("Jake could not answer after 2 tries")
        .await;
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_that_dies_mid_turn_reaps_its_agent_and_says_why() {
    let project = Project::new();
    let home = tempfile::tempdir().unwrap();
    let fake = FakeAnthropic::start();
    fake.script("Frodo", vec![Step::text("too late")]);
    // The model takes its time, so the CLI is mid-turn when it dies.
    fake.set_delay(std::time::Duration::from_secs(60));
    let mut console = start(&project, &cli_env(&fake, home.path()));
    console.send("/summon Write a file --name Frodo").await;
    assert!(
        fake.wait_for_requests_async(1, std::time::Duration::from_secs(60))
            .await
    );
    // The CLI is the tavern's child; kill it as the OOM killer would.
    let children = std::process::Command::new("pgrep")
        .args(["-P", &console.pid().to_string()])
        .output()
        .expect("pgrep");
    let pids = String::from_utf8_lossy(&children.stdout).to_string();
    assert!(!pids.trim().is_empty(), "the CLI process was not found");
    for pid in pids.split_whitespace() {
        let pid: i32 = pid.parse().unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let line = console
        .expect_contains("Frodo: Working → FailedReaped")
        .await;
    assert!(
        line.contains("ended with a signal in the middle of a turn"),
        "{line}"
    );
    console.expect_contains("Jake ← Frodo").await;
    fake.set_delay(std::time::Duration::ZERO);
    console.quit().await;
    fake.assert_no_unscripted();
}
