//! The Claude Code CLI driver (`tavern::claude`) against the real CLI and the fake Anthropic API:
//! Tavern's tools over the SDK MCP server, permission prompts, resume, fork at a past message,
//! interrupt, and a missing executable.
//!
//! Each test starts its own fake and its own `HOME`, so they run in parallel. Every wait is bounded.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tavern::claude::{
    CliError, CliEvent, CliOptions, CliSession, McpTool, SessionStart, TurnResult,
};
use tempfile::TempDir;
use tokio::time::timeout;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::fakes::anthropic::inherited_cli_vars;
use crate::fakes::{claude_bin, FakeAnthropic, Step};

/// Upper bound for any single wait on the CLI or the fake.
const WAIT: Duration = Duration::from_secs(60);

/// More events than any turn here produces; a turn that goes on longer is a bug, not a slow test.
const MAX_EVENTS: usize = 200;

/// One agent's `HOME` (settings and sessions) and working directory, kept across its processes so
/// that sessions can be resumed.
struct Sandbox {
    home: TempDir,
    cwd: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            home: tempfile::tempdir().expect("create a temporary HOME"),
            cwd: tempfile::tempdir().expect("create a temporary project"),
        }
    }

    fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    /// Options for agent `name` (the fake finds its script by the identity line in the prompt).
    fn options(&self, fake: &FakeAnthropic, name: &str, session: SessionStart) -> CliOptions {
        CliOptions {
            program: claude_bin(),
            cwd: self.cwd().to_path_buf(),
            session,
            model: Some("claude-fake-1".to_owned()),
            append_system_prompt: format!("Your name is {name} (mortal)."),
            tools: vec![McpTool {
                name: "add_commitment".to_owned(),
                description: "Record a commitment and the shell assertion that proves it."
                    .to_owned(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "description": {"type": "string"},
                        "assertion": {"type": "string"},
                    },
                    "required": ["description", "assertion"],
                }),
            }],
            env: fake.cli_env(self.home.path()),
            env_remove: inherited_cli_vars(),
            disallowed_tools: Vec::new(),
        }
    }
}

/// How the test answers what the CLI asks during a turn.
#[derive(Clone, Copy)]
enum Permission {
    Allow,
    Deny(&'static str),
}

/// Everything one turn produced.
struct Turn {
    events: Vec<CliEvent>,
    result: TurnResult,
}

impl Turn {
    /// The uuid of the turn's last assistant line: the point to fork at to keep this turn.
    fn last_assistant_uuid(&self) -> String {
        self.events
            .iter()
            .rev()
            .find_map(|event| match event {
                CliEvent::Text { message_uuid, .. } | CliEvent::ToolUse { message_uuid, .. } => {
                    Some(message_uuid.clone())
                }
                _ => None,
            })
            .expect("the turn has an assistant line")
    }

    fn session_id(&self) -> &str {
        self.events
            .iter()
            .find_map(|event| match event {
                CliEvent::Init { session_id, .. } => Some(session_id.as_str()),
                _ => None,
            })
            .expect("the turn started with init")
    }
}

async fn spawn(opts: CliOptions, tracker: &TaskTracker) -> CliSession {
    timeout(WAIT, CliSession::spawn(opts, tracker))
        .await
        .expect("spawn in time")
        .expect("spawn the CLI")
}

async fn next(session: &mut CliSession) -> CliEvent {
    timeout(WAIT, session.next())
        .await
        .expect("an event in time")
        .expect("the CLI's events ended before the turn did")
}

/// Reads events until the turn ends, answering Tavern's tool calls with `mcp_text` and permission
/// prompts with `permission`.
async fn finish_turn(session: &mut CliSession, permission: Permission, mcp_text: &str) -> Turn {
    let mut events = Vec::new();
    for _ in 0..MAX_EVENTS {
        let event = next(session).await;
        match &event {
            CliEvent::McpCall(call) => session
                .tool_result(call, mcp_text, false)
                .await
                .expect("answer the tool call"),
            CliEvent::Permission {
                request_id, input, ..
            } => match permission {
                Permission::Allow => session.allow(request_id, input.clone()).await,
                Permission::Deny(message) => session.deny(request_id, message).await,
            }
            .expect("answer the permission prompt"),
            CliEvent::TurnEnd(result) => {
                let result = result.clone();
                events.push(event);
                return Turn { events, result };
            }
            CliEvent::Exited(info) => {
                panic!("the CLI exited mid-turn: {info:?}; events: {events:?}")
            }
            _ => {}
        }
        events.push(event);
    }
    panic!("no end of turn within {MAX_EVENTS} events: {events:?}");
}

/// One turn: sends `text` and waits for its end.
async fn turn(session: &mut CliSession, text: &str, permission: Permission) -> Turn {
    session.send_user(text).await.expect("send a user turn");
    finish_turn(session, permission, "(unused)").await
}

/// Shuts the session down and checks that the CLI exited cleanly.
async fn stop(session: CliSession) {
    let info = timeout(WAIT, session.shutdown())
        .await
        .expect("shutdown in time");
    assert_eq!(info.code, Some(0), "{info:?}");
}

async fn close(tracker: TaskTracker) {
    tracker.close();
    timeout(WAIT, tracker.wait())
        .await
        .expect("every session task ended");
}

/// The conversation a request carried, as JSON text, for `contains` checks.
fn messages(body: &Value) -> String {
    body["messages"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tavern_tool_call_is_answered_over_the_pipe() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let tracker = TaskTracker::new();
    let input = json!({"description": "tests pass", "assertion": "cargo test"});
    fake.script(
        "Ann",
        vec![
            Step::tool("mcp__tavern__add_commitment", input.clone()),
            Step::text("noted: {last_user}"),
        ],
    );
    let started = Instant::now();
    let mut session = spawn(
        sandbox.options(&fake, "Ann", SessionStart::New(Uuid::new_v4())),
        &tracker,
    )
    .await;
    session
        .send_user("commit to something")
        .await
        .expect("send");

    let mut seen = Vec::new();
    let call = loop {
        assert!(seen.len() < MAX_EVENTS, "no tool call: {seen:?}");
        match next(&mut session).await {
            CliEvent::McpCall(call) => break call,
            CliEvent::TurnEnd(result) => panic!("the turn ended without a call: {result:?}"),
            event => seen.push(event),
        }
    };
    assert_eq!(call.tool, "add_commitment");
    assert_eq!(call.arguments, input);
    let tool_use_id = seen.iter().find_map(|event| match event {
        CliEvent::ToolUse { id, name, .. } if name == "mcp__tavern__add_commitment" => Some(id),
        _ => None,
    });
    assert_eq!(call.tool_use_id.as_ref(), tool_use_id, "{seen:?}");
    session
        .tool_result(&call, "commitment c1 recorded", false)
        .await
        .expect("answer the call");

    let turn = finish_turn(&mut session, Permission::Deny("unexpected"), "unexpected").await;
    assert!(!turn.result.is_error, "{:?}", turn.result);
    assert_eq!(turn.result.text, "noted: commitment c1 recorded");
    assert!(turn.result.usage_input_tokens > 0 && turn.result.usage_output_tokens > 0);
    assert!(turn.result.cost_micros.is_some(), "{:?}", turn.result);
    assert_eq!(turn.result.num_turns, 2);
    assert!(turn.events.iter().any(|event| matches!(event,
        CliEvent::ToolResult { text, is_error: false, .. } if text == "commitment c1 recorded")));

    let requests = fake.requests_for("Ann");
    assert_eq!(requests.len(), 2);
    let tools = requests[0].body["tools"].to_string();
    assert!(
        tools.contains("mcp__tavern__add_commitment"),
        "offered tools: {tools}"
    );
    assert!(messages(&requests[1].body).contains("commitment c1 recorded"));

    stop(session).await;
    close(tracker).await;
    eprintln!("tool call test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_then_allowed() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let tracker = TaskTracker::new();
    let bash = json!({"command": "echo hi > out.txt", "description": "write a file"});
    let script = || {
        vec![
            Step::tool("Bash", bash.clone()),
            Step::text("after: {last_user}"),
        ]
    };
    let out = sandbox.cwd().join("out.txt");

    fake.script("Bo", script());
    let mut session = spawn(
        sandbox.options(&fake, "Bo", SessionStart::New(Uuid::new_v4())),
        &tracker,
    )
    .await;
    let denied = turn(&mut session, "write it", Permission::Deny("Tavern says no")).await;
    let permission = denied
        .events
        .iter()
        .find_map(|event| match event {
            CliEvent::Permission {
                tool_name,
                input,
                tool_use_id,
                ..
            } => Some((tool_name.clone(), input.clone(), tool_use_id.clone())),
            _ => None,
        })
        .expect("a permission prompt");
    assert_eq!(permission.0, "Bash");
    assert_eq!(permission.1, bash);
    assert!(permission.2.is_some_and(|id| id.starts_with("toolu_")));
    assert!(!denied.result.is_error, "a denial does not fail the turn");
    assert_eq!(denied.result.text, "after: Tavern says no");
    assert!(!out.exists(), "the denied command ran");
    let requests = fake.requests_for("Bo");
    assert!(messages(&requests[1].body).contains("Tavern says no"));
    stop(session).await;

    fake.script("Bo", script());
    let mut session = spawn(
        sandbox.options(&fake, "Bo", SessionStart::New(Uuid::new_v4())),
        &tracker,
    )
    .await;
    let allowed = turn(&mut session, "write it", Permission::Allow).await;
    assert!(!allowed.result.is_error, "{:?}", allowed.result);
    assert_eq!(
        std::fs::read_to_string(&out).expect("the allowed command wrote out.txt"),
        "hi\n"
    );
    stop(session).await;
    close(tracker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_continues_the_conversation_in_a_new_process() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let tracker = TaskTracker::new();
    let id = Uuid::new_v4();
    fake.script(
        "Cy",
        vec![
            Step::text("one: {last_user}"),
            Step::text("two: {last_user}"),
        ],
    );

    let mut session = spawn(
        sandbox.options(&fake, "Cy", SessionStart::New(id)),
        &tracker,
    )
    .await;
    let first = turn(&mut session, "remember the word pelican", Permission::Allow).await;
    assert_eq!(first.session_id(), id.to_string());
    assert_eq!(first.result.session_id, id.to_string());
    stop(session).await;

    let mut session = spawn(
        sandbox.options(&fake, "Cy", SessionStart::Resume(id)),
        &tracker,
    )
    .await;
    let second = turn(&mut session, "which word?", Permission::Allow).await;
    assert!(!second.result.is_error, "{:?}", second.result);
    assert_eq!(second.session_id(), id.to_string());
    assert_eq!(second.result.text, "two: which word?");
    let requests = fake.requests_for("Cy");
    assert_eq!(requests.len(), 2);
    let history = messages(&requests[1].body);
    assert!(history.contains("remember the word pelican"), "{history}");
    // The fake's reply to turn 1 echoed it, so the model's own answer came back too.
    assert!(
        history.contains(r#""role":"assistant""#) && history.contains("one: "),
        "{history}"
    );
    stop(session).await;
    close(tracker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_at_a_past_message_keeps_history_up_to_it() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let tracker = TaskTracker::new();
    let original = Uuid::new_v4();
    fake.script("Di", vec![Step::text("re: {last_user}")]);

    let mut session = spawn(
        sandbox.options(&fake, "Di", SessionStart::New(original)),
        &tracker,
    )
    .await;
    let alpha = turn(&mut session, "alpha turn", Permission::Allow).await;
    fake.script("Di", vec![Step::text("re: {last_user}")]);
    let bravo = turn(&mut session, "bravo turn", Permission::Allow).await;
    stop(session).await;
    let at_alpha = alpha.last_assistant_uuid();
    assert_ne!(at_alpha, bravo.last_assistant_uuid());

    let fork = Uuid::new_v4();
    fake.script("Di", vec![Step::text("re: {last_user}")]);
    let mut session = spawn(
        sandbox.options(
            &fake,
            "Di",
            SessionStart::ForkAt {
                from: original,
                at_message: at_alpha.clone(),
                new_id: fork,
            },
        ),
        &tracker,
    )
    .await;
    let charlie = turn(&mut session, "charlie turn", Permission::Allow).await;
    assert!(!charlie.result.is_error, "{:?}", charlie.result);
    assert_eq!(charlie.session_id(), fork.to_string());
    assert_eq!(charlie.result.session_id, fork.to_string());
    let request = fake.requests_for("Di").pop().expect("the fork's request");
    assert_eq!(
        request.header("x-claude-code-session-id"),
        Some(fork.to_string().as_str())
    );
    let history = messages(&request.body);
    assert!(
        history.contains("alpha turn") && history.contains("re: "),
        "{history}"
    );
    assert!(
        !history.contains("bravo turn"),
        "the fork kept a later turn: {history}"
    );
    assert!(history.contains("charlie turn"), "{history}");
    stop(session).await;

    // The fork left the original session whole: resuming it still sees both turns.
    fake.script("Di", vec![Step::text("re: {last_user}")]);
    let mut session = spawn(
        sandbox.options(&fake, "Di", SessionStart::Resume(original)),
        &tracker,
    )
    .await;
    let delta = turn(&mut session, "delta turn", Permission::Allow).await;
    assert_eq!(delta.session_id(), original.to_string());
    let history = messages(&fake.requests_for("Di").pop().expect("a request").body);
    assert!(
        history.contains("bravo turn") && !history.contains("charlie turn"),
        "{history}"
    );
    stop(session).await;

    // A message uuid the session does not have: the first turn fails and the CLI exits 1.
    let mut session = spawn(
        sandbox.options(
            &fake,
            "Di",
            SessionStart::ForkAt {
                from: original,
                at_message: Uuid::new_v4().to_string(),
                new_id: Uuid::new_v4(),
            },
        ),
        &tracker,
    )
    .await;
    let failed = turn(&mut session, "echo turn", Permission::Allow).await;
    assert!(failed.result.is_error, "{:?}", failed.result);
    assert!(
        failed
            .result
            .errors
            .iter()
            .any(|e| e.starts_with("No message found with message.uuid")),
        "{:?}",
        failed.result
    );
    let info = timeout(WAIT, session.shutdown())
        .await
        .expect("shutdown in time");
    assert_eq!(info.code, Some(1), "{info:?}");
    close(tracker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_ends_the_turn_and_the_process_takes_the_next() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let tracker = TaskTracker::new();
    fake.script(
        "Ed",
        vec![
            Step::text("slow: {last_user}"),
            Step::text("fast: {last_user}"),
        ],
    );
    fake.set_delay(Duration::from_secs(30));

    let mut session = spawn(
        sandbox.options(&fake, "Ed", SessionStart::New(Uuid::new_v4())),
        &tracker,
    )
    .await;
    session.send_user("a slow turn").await.expect("send");
    assert!(
        fake.wait_for_requests_async(1, WAIT).await,
        "the request reached the fake"
    );
    let interrupted_at = Instant::now();
    session.interrupt().await.expect("interrupt");
    let interrupted = finish_turn(&mut session, Permission::Allow, "unused").await;
    assert!(interrupted.result.is_error, "{:?}", interrupted.result);
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(20),
        "the interrupt did not cut the delayed request short"
    );
    assert!(
        fake.wait_for_idle_async(WAIT).await,
        "the aborted request ended"
    );

    fake.set_delay(Duration::ZERO);
    let next_turn = turn(&mut session, "the next turn", Permission::Allow).await;
    assert!(!next_turn.result.is_error, "{:?}", next_turn.result);
    // The interrupted turn got no answer, so the CLI merges its text, the interrupt notice and the
    // new text into one user message.
    assert!(
        next_turn.result.text.starts_with("fast: "),
        "{:?}",
        next_turn.result
    );
    assert!(
        next_turn
            .result
            .text
            .ends_with("a slow turn\n\n[Request interrupted by user]\n\nthe next turn"),
        "{:?}",
        next_turn.result
    );
    stop(session).await;
    close(tracker).await;
}

#[tokio::test]
async fn missing_executable_is_an_error_not_a_hang() {
    let fake = FakeAnthropic::start();
    let sandbox = Sandbox::new();
    let mut opts = sandbox.options(&fake, "Fay", SessionStart::New(Uuid::new_v4()));
    opts.program = sandbox.cwd().join("no-such-claude");
    let started = Instant::now();
    let error = timeout(
        Duration::from_secs(5),
        CliSession::spawn(opts, &TaskTracker::new()),
    )
    .await
    .expect("spawn returned quickly")
    .expect_err("spawn fails");
    assert!(matches!(error, CliError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("no-such-claude"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
