//! Tests for the CLI driver: decoding recorded stream-json lines, the MCP handshake and the answers
//! written back (over in-memory pipes, no process), the command line, finding the executable, and a
//! few process lifecycles with a shell script standing in for the CLI.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{duplex, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, DuplexStream};
use tokio::time::timeout;
use tokio_util::task::TaskTracker;

use super::pipes::{next_line, LineRead};
use super::protocol::{decode, McpServer};
use super::*;

/// Upper bound for any single test step, so a regression fails the test instead of hanging the suite.
const STEP: Duration = Duration::from_secs(10);

// Lines recorded from CLI 2.1.197 against a fake API (long fields shortened).
const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/tmp/exp/c1","session_id":"11111111-2222-3333-4444-555555555555","tools":["Task","Bash","mcp__tavern__add_commitment"],"mcp_servers":[{"name":"tavern","status":"connected"}],"model":"fake-model","permissionMode":"default","apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.197","uuid":"0b1c"}"#;
const ASSISTANT_TOOL: &str = r#"{"type":"assistant","message":{"id":"msg_0","type":"message","role":"assistant","model":"fake-model","content":[{"type":"tool_use","id":"toolu_1111_0","name":"mcp__tavern__add_commitment","input":{"description":"d","assertion":"true"}}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"11111111-2222-3333-4444-555555555555","uuid":"6a416f13-7993-47c7-9101-757d8e35360b"}"#;
const TOOLS_CALL: &str = r#"{"type":"control_request","request_id":"b138bd7b-0481-473f-8996-90d3f2926e2a","request":{"subtype":"mcp_message","server_name":"tavern","message":{"method":"tools/call","params":{"name":"add_commitment","arguments":{"description":"d","assertion":"true"},"_meta":{"claudecode/toolUseId":"toolu_1111_0","progressToken":2}},"jsonrpc":"2.0","id":2}}}"#;
const USER_MCP_RESULT: &str = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1111_0","type":"tool_result","content":[{"type":"text","text":"commitment c1 recorded"}]}]},"parent_tool_use_id":null,"session_id":"11111111-2222-3333-4444-555555555555","uuid":"6b99bec9-eaf8-440a-b3b1-0fb3908cd017","timestamp":"2026-11-21T11:51:08.681Z","tool_use_result":[{"type":"text","text":"commitment c1 recorded"}]}"#;
const USER_BASH_DENIED: &str = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Denied by host policy","is_error":true,"tool_use_id":"toolu_fake_0003"}]},"parent_tool_use_id":null,"session_id":"7a64","uuid":"9d1e"}"#;
const ASSISTANT_TEXT: &str = r#"{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","model":"fake-model","content":[{"type":"text","text":"done"}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}},"parent_tool_use_id":null,"session_id":"11111111-2222-3333-4444-555555555555","uuid":"05ab56c5-ae91-49c5-9e99-7c6142a39a9e"}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":106,"duration_api_ms":59,"num_turns":2,"result":"done","stop_reason":"end_turn","session_id":"11111111-2222-3333-4444-555555555555","total_cost_usd":0.00035,"usage":{"input_tokens":20,"cache_creation_input_tokens":3,"cache_read_input_tokens":4,"output_tokens":10,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},"service_tier":"standard"},"permission_denials":[],"terminal_reason":"completed","uuid":"3ca35b84-f370-48db-bc81-d5c0dfaad810"}"#;
const RESULT_API_FAILURE: &str = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"duration_ms":900,"num_turns":1,"result":"API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}","stop_reason":"stop_sequence","session_id":"7a64","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0},"uuid":"e1"}"#;
const RESULT_NO_SESSION: &str = r#"{"type":"result","subtype":"error_during_execution","duration_ms":0,"duration_api_ms":0,"is_error":true,"num_turns":0,"stop_reason":null,"session_id":"17e8fd1c","total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"permission_denials":[],"uuid":"e2","errors":["No message found with message.uuid of: 3ca35b84"]}"#;
const RETRY: &str = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":514.96,"error_status":429,"error":"rate_limit","session_id":"7a64","uuid":"r1"}"#;
const CAN_USE_TOOL: &str = r#"{"type":"control_request","request_id":"c499","request":{"subtype":"can_use_tool","tool_name":"Bash","display_name":"Bash","input":{"command":"echo hi > bash.txt","description":"write"},"permission_suggestions":[],"blocked_path":"/tmp/p/bash.txt","tool_use_id":"toolu_fake_0003"}}"#;
const INITIALIZE: &str = r#"{"type":"control_request","request_id":"c75ca225","request":{"subtype":"mcp_message","server_name":"tavern","message":{"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"claude-code","title":"Claude Code","version":"2.1.197"}},"jsonrpc":"2.0","id":0}}}"#;
const INITIALIZED: &str = r#"{"type":"control_request","request_id":"57ebf307","request":{"subtype":"mcp_message","server_name":"tavern","message":{"method":"notifications/initialized","jsonrpc":"2.0"}}}"#;
const TOOLS_LIST: &str = r#"{"type":"control_request","request_id":"8ac8c3a3","request":{"subtype":"mcp_message","server_name":"tavern","message":{"method":"tools/list","jsonrpc":"2.0","id":1}}}"#;

fn tools() -> Vec<McpTool> {
    vec![McpTool {
        name: "add_commitment".to_owned(),
        description: "Add a commitment".to_owned(),
        input_schema: json!({
            "type": "object",
            "properties": {"description": {"type": "string"}, "assertion": {"type": "string"}},
            "required": ["description", "assertion"],
        }),
    }]
}

fn events(line: &str) -> Vec<CliEvent> {
    let decoded = decode(line, &McpServer::new(&tools()));
    assert!(decoded.replies.is_empty(), "{decoded:?}");
    decoded.events
}

fn only_event(line: &str) -> CliEvent {
    let mut events = events(line);
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

fn turn_end(line: &str) -> TurnResult {
    match only_event(line) {
        CliEvent::TurnEnd(result) => result,
        other => panic!("expected TurnEnd, got {other:?}"),
    }
}

#[test]
fn init_line_becomes_init() {
    assert_eq!(
        only_event(INIT),
        CliEvent::Init {
            session_id: "11111111-2222-3333-4444-555555555555".to_owned(),
            model: "fake-model".to_owned(),
        }
    );
}

#[test]
fn assistant_tool_use_and_text() {
    assert_eq!(
        only_event(ASSISTANT_TOOL),
        CliEvent::ToolUse {
            id: "toolu_1111_0".to_owned(),
            name: "mcp__tavern__add_commitment".to_owned(),
            input: json!({"description": "d", "assertion": "true"}),
            message_uuid: "6a416f13-7993-47c7-9101-757d8e35360b".to_owned(),
        }
    );
    assert_eq!(
        only_event(ASSISTANT_TEXT),
        CliEvent::Text {
            text: "done".to_owned(),
            message_uuid: "05ab56c5-ae91-49c5-9e99-7c6142a39a9e".to_owned(),
        }
    );
}

#[test]
fn thinking_and_sub_agent_lines_are_ignored() {
    let thinking = r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm","signature":"s"}]},"parent_tool_use_id":null,"uuid":"t1"}"#;
    assert!(events(thinking).is_empty());
    let sub_agent = ASSISTANT_TEXT.replace(
        r#""parent_tool_use_id":null"#,
        r#""parent_tool_use_id":"toolu_task""#,
    );
    assert!(events(&sub_agent).is_empty());
}

#[test]
fn several_blocks_in_one_line_give_several_events() {
    let line = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"Bash","input":{}}]},"uuid":"u"}"#;
    let events = events(line);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], CliEvent::Text { text, .. } if text == "a"));
    assert!(matches!(&events[1], CliEvent::ToolUse { name, .. } if name == "Bash"));
}

#[test]
fn tool_results_with_list_and_string_content() {
    assert_eq!(
        only_event(USER_MCP_RESULT),
        CliEvent::ToolResult {
            tool_use_id: "toolu_1111_0".to_owned(),
            text: "commitment c1 recorded".to_owned(),
            is_error: false,
            message_uuid: "6b99bec9-eaf8-440a-b3b1-0fb3908cd017".to_owned(),
        }
    );
    assert_eq!(
        only_event(USER_BASH_DENIED),
        CliEvent::ToolResult {
            tool_use_id: "toolu_fake_0003".to_owned(),
            text: "Denied by host policy".to_owned(),
            is_error: true,
            message_uuid: "9d1e".to_owned(),
        }
    );
}

#[test]
fn interrupt_notice_is_not_a_tool_result() {
    let line = r#"{"type":"user","message":{"role":"user","content":[{"type":"text","text":"[Request interrupted by user]"}]},"parent_tool_use_id":null,"uuid":"i1"}"#;
    assert!(events(line).is_empty());
}

#[test]
fn result_line_becomes_turn_end_with_usage_and_cost() {
    assert_eq!(
        turn_end(RESULT),
        TurnResult {
            is_error: false,
            text: "done".to_owned(),
            session_id: "11111111-2222-3333-4444-555555555555".to_owned(),
            uuid: "3ca35b84-f370-48db-bc81-d5c0dfaad810".to_owned(),
            // 20 plus the cache writes (3) and reads (4).
            usage_input_tokens: 27,
            usage_output_tokens: 10,
            cost_micros: Some(350),
            api_error_status: None,
            errors: Vec::new(),
            num_turns: 2,
        }
    );
}

#[test]
fn api_failure_with_success_subtype_is_an_error() {
    let result = turn_end(RESULT_API_FAILURE);
    assert!(result.is_error);
    assert_eq!(result.api_error_status, Some(529));
    assert!(result.text.starts_with("API Error: 529"), "{result:?}");
    assert_eq!(result.cost_micros, Some(0));
}

#[test]
fn error_subtype_is_an_error_with_its_messages() {
    let result = turn_end(RESULT_NO_SESSION);
    assert!(result.is_error);
    assert_eq!(result.text, "");
    assert_eq!(
        result.errors,
        vec!["No message found with message.uuid of: 3ca35b84".to_owned()]
    );
    // Even a line claiming success is an error when its subtype says so.
    let result = turn_end(&RESULT_NO_SESSION.replace(r#""is_error":true"#, r#""is_error":false"#));
    assert!(result.is_error);
}

#[test]
fn api_retry_becomes_retry() {
    assert_eq!(
        only_event(RETRY),
        CliEvent::Retry {
            attempt: 1,
            max_retries: 10,
            status: Some(429),
            error: "rate_limit".to_owned(),
        }
    );
}

#[test]
fn can_use_tool_becomes_permission() {
    assert_eq!(
        only_event(CAN_USE_TOOL),
        CliEvent::Permission {
            request_id: "c499".to_owned(),
            tool_name: "Bash".to_owned(),
            input: json!({"command": "echo hi > bash.txt", "description": "write"}),
            tool_use_id: Some("toolu_fake_0003".to_owned()),
        }
    );
}

#[test]
fn odd_lines_are_skipped() {
    for line in [
        "",
        "   ",
        "this is not json",
        "{\"type\":\"assistant\"",
        r#"{"type":"stream_event","event":{}}"#,
        r#"{"type":"system","subtype":"status","status":"compacting"}"#,
        r#"{"type":"brand_new_kind","x":1}"#,
        r#"{"type":"control_response","response":{"subtype":"success","request_id":"int-1"}}"#,
        // A known type with a shape that does not fit.
        r#"{"type":"assistant","message":"not an object"}"#,
        r#"[1,2,3]"#,
    ] {
        let decoded = decode(line, &McpServer::new(&[]));
        assert_eq!(decoded, protocol::Decoded::default(), "{line}");
    }
}

#[test]
fn unsupported_control_requests_and_servers_are_refused() {
    let server = McpServer::new(&[]);
    let hook = r#"{"type":"control_request","request_id":"h1","request":{"subtype":"hook_callback","callback_id":"x"}}"#;
    let decoded = decode(hook, &server);
    assert!(decoded.events.is_empty());
    assert_eq!(decoded.replies.len(), 1);
    assert_eq!(decoded.replies[0]["response"]["subtype"], "error");
    assert_eq!(decoded.replies[0]["response"]["request_id"], "h1");

    let other_server = TOOLS_LIST.replace(r#""server_name":"tavern""#, r#""server_name":"other""#);
    let decoded = decode(&other_server, &server);
    assert_eq!(decoded.replies[0]["response"]["subtype"], "error");
}

#[test]
fn mcp_handshake_answers() {
    let server = McpServer::new(&tools());
    let reply = |line: &str| {
        let decoded = decode(line, &server);
        assert!(decoded.events.is_empty(), "{decoded:?}");
        assert_eq!(decoded.replies.len(), 1, "{decoded:?}");
        decoded.replies[0].clone()
    };
    assert_eq!(
        reply(INITIALIZE),
        json!({"type": "control_response", "response": {"subtype": "success", "request_id": "c75ca225",
        "response": {"mcp_response": {"jsonrpc": "2.0", "id": 0, "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "tavern", "version": env!("CARGO_PKG_VERSION")},
        }}}}})
    );
    assert_eq!(
        reply(INITIALIZED),
        json!({"type": "control_response", "response": {"subtype": "success", "request_id": "57ebf307",
            "response": {"mcp_response": {"jsonrpc": "2.0", "result": {}}}}})
    );
    assert_eq!(
        reply(TOOLS_LIST)["response"]["response"]["mcp_response"],
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{
            "name": "add_commitment",
            "description": "Add a commitment",
            "inputSchema": tools()[0].input_schema,
        }]}})
    );
    let ping = TOOLS_LIST.replace("tools/list", "ping");
    assert_eq!(
        reply(&ping)["response"]["response"]["mcp_response"],
        json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    );
    let unknown = TOOLS_LIST.replace("tools/list", "resources/list");
    let answer = reply(&unknown);
    assert_eq!(
        answer["response"]["response"]["mcp_response"]["error"]["code"],
        -32601
    );
    assert_eq!(answer["response"]["response"]["mcp_response"]["id"], 1);
    let other_notification =
        INITIALIZED.replace("notifications/initialized", "notifications/cancelled");
    assert_eq!(
        reply(&other_notification)["response"]["response"]["mcp_response"],
        json!({"jsonrpc": "2.0", "result": {}})
    );
}

#[test]
fn tools_call_becomes_mcp_call() {
    assert_eq!(
        only_event(TOOLS_CALL),
        CliEvent::McpCall(McpCall {
            request_id: "b138bd7b-0481-473f-8996-90d3f2926e2a".to_owned(),
            rpc_id: json!(2),
            tool: "add_commitment".to_owned(),
            arguments: json!({"description": "d", "assertion": "true"}),
            tool_use_id: Some("toolu_1111_0".to_owned()),
        })
    );
}

#[test]
fn command_line_per_session_start() {
    let id = Uuid::from_u128(1);
    let other = Uuid::from_u128(2);
    let opts = |session| CliOptions {
        program: PathBuf::from("claude"),
        cwd: PathBuf::from("/tmp"),
        session,
        model: Some("sonnet".to_owned()),
        append_system_prompt: "Your name is Ann (mortal).".to_owned(),
        tools: tools(),
        env: vec![("ANTHROPIC_API_KEY".to_owned(), "sk-secret".to_owned())],
        env_remove: Vec::new(),
        disallowed_tools: Vec::new(),
    };
    let new = cli_args(&opts(SessionStart::New(id)));
    let joined = new.join(" ");
    for expected in [
        "-p --input-format stream-json --output-format stream-json --verbose",
        "--permission-prompt-tool stdio --permission-mode default",
        r#"--mcp-config {"mcpServers":{"tavern":{"name":"tavern","type":"sdk"}}} --strict-mcp-config"#,
        "--allowedTools mcp__tavern --model sonnet",
        &format!("--session-id {id}"),
    ] {
        assert!(joined.contains(expected), "{expected:?} not in {joined}");
    }
    assert_eq!(
        new[new.len() - 2..],
        ["--append-system-prompt", "Your name is Ann (mortal)."]
    );
    let resume = cli_args(&opts(SessionStart::Resume(id))).join(" ");
    assert!(resume.contains(&format!("--resume {id}")), "{resume}");
    assert!(!resume.contains("--session-id"), "{resume}");
    let fork = cli_args(&opts(SessionStart::ForkAt {
        from: id,
        at_message: "05ab".to_owned(),
        new_id: other,
    }))
    .join(" ");
    assert!(
        fork.contains(&format!(
            "--resume {id} --resume-session-at 05ab --fork-session --session-id {other}"
        )),
        "{fork}"
    );
    // The options' debug output names the variables but never shows their values.
    let debug = format!("{:?}", opts(SessionStart::New(id)));
    assert!(
        debug.contains("ANTHROPIC_API_KEY") && !debug.contains("sk-secret"),
        "{debug}"
    );
}

#[test]
fn empty_system_prompt_and_no_model_add_no_flags() {
    let args = cli_args(&CliOptions {
        program: PathBuf::from("claude"),
        cwd: PathBuf::from("/tmp"),
        session: SessionStart::New(Uuid::from_u128(1)),
        model: None,
        append_system_prompt: String::new(),
        tools: Vec::new(),
        env: Vec::new(),
        env_remove: Vec::new(),
        disallowed_tools: Vec::new(),
    });
    assert!(
        !args
            .iter()
            .any(|a| a == "--append-system-prompt" || a == "--model"),
        "{args:?}"
    );
}

/// Writes an executable (or not) file named `claude` into `dir`.
fn write_program(dir: &Path, body: &str, mode: u32) -> PathBuf {
    let path = dir.join("claude");
    std::fs::write(&path, body).expect("write the stand-in program");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn find_cli_env_pointing_nowhere_names_the_path() {
    let error = find_cli_in(Some("/nonexistent/bin/claude"), Some("/usr/bin")).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, CliError::NotFound { .. }), "{error:?}");
    assert!(
        message.contains("TAVERN_CLAUDE_BIN=/nonexistent/bin/claude does not exist"),
        "{message}"
    );
    assert!(
        message.contains("npm install -g @anthropic-ai/claude-code"),
        "{message}"
    );
}

#[test]
fn find_cli_env_must_be_an_executable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = write_program(dir.path(), "#!/bin/sh\n", 0o644);
    let message = find_cli_in(plain.to_str(), None).unwrap_err().to_string();
    assert!(message.contains("is not executable"), "{message}");
    let message = find_cli_in(dir.path().to_str(), None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("is not a file"), "{message}");
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(find_cli_in(plain.to_str(), None).expect("found"), plain);
}

#[test]
fn find_cli_searches_path_in_order() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    // Not executable in the first directory, so the second one's wins.
    write_program(first.path(), "", 0o644);
    let wanted = write_program(second.path(), "", 0o755);
    let path_var = format!("{}::{}", first.path().display(), second.path().display());
    assert_eq!(find_cli_in(None, Some(&path_var)).expect("found"), wanted);
    // An empty TAVERN_CLAUDE_BIN counts as unset.
    assert_eq!(
        find_cli_in(Some(""), Some(&path_var)).expect("found"),
        wanted
    );
    let message = find_cli_in(None, Some(first.path().to_str().expect("utf-8")))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("TAVERN_CLAUDE_BIN is not set"),
        "{message}"
    );
    assert!(find_cli_in(None, None).is_err());
}

#[tokio::test]
async fn bounded_line_reader() {
    let input = b"short\n0123456789abcdef\n\nlast without newline".as_slice();
    let mut reader = tokio::io::BufReader::with_capacity(4, input);
    let mut line = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let read = next_line(&mut reader, &mut line, 10).await.expect("read");
        if read == LineRead::Eof {
            break;
        }
        seen.push((read, String::from_utf8_lossy(&line).into_owned()));
    }
    assert_eq!(
        seen,
        vec![
            (LineRead::Line, "short".to_owned()),
            (LineRead::TooLong, String::new()),
            (LineRead::Line, String::new()),
            (LineRead::TooLong, String::new()),
        ]
    );
}

/// The CLI's side of the in-memory pipes.
struct FakeCli {
    stdout: DuplexStream,
    stdin: BufReader<DuplexStream>,
}

impl FakeCli {
    async fn say(&mut self, line: &str) {
        self.stdout
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the session's stdout");
    }

    /// The next line the session wrote, parsed: each must be exactly one JSON object.
    async fn heard(&mut self) -> Value {
        let mut line = String::new();
        let n = timeout(STEP, self.stdin.read_line(&mut line))
            .await
            .expect("the session wrote nothing in time")
            .expect("read the session's stdin");
        assert!(n > 0, "the session closed stdin");
        assert!(line.ends_with('\n'), "{line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

fn session_over_pipes(tracker: &TaskTracker) -> (CliSession, FakeCli) {
    let (stdout, session_stdout) = duplex(1 << 16);
    let (session_stdin, stdin) = duplex(1 << 16);
    let session = CliSession::start(
        session_stdout,
        session_stdin,
        tokio::io::empty(),
        None,
        McpServer::new(&tools()),
        tracker,
    );
    let cli = FakeCli {
        stdout,
        stdin: BufReader::new(stdin),
    };
    (session, cli)
}

async fn next_event(session: &mut CliSession) -> CliEvent {
    timeout(STEP, session.next())
        .await
        .expect("no event in time")
        .expect("the events ended")
}

#[tokio::test]
async fn handshake_sent_twice_is_answered_twice_without_events() {
    let tracker = TaskTracker::new();
    let (mut session, mut cli) = session_over_pipes(&tracker);
    let requests = [
        INITIALIZE,
        INITIALIZE,
        INITIALIZED,
        INITIALIZED,
        TOOLS_LIST,
        TOOLS_LIST,
    ];
    for (n, line) in requests.iter().enumerate() {
        // Distinct request ids, as the CLI sends them.
        cli.say(&line.replacen(r#""request_id":""#, &format!(r#""request_id":"{n}-"#), 1))
            .await;
    }
    for (n, _) in requests.iter().enumerate() {
        let answer = cli.heard().await;
        assert_eq!(answer["type"], "control_response");
        assert_eq!(answer["response"]["subtype"], "success");
        let request_id = answer["response"]["request_id"].as_str().expect("an id");
        assert!(request_id.starts_with(&format!("{n}-")), "{answer}");
    }
    // The handshake produced no events: the first one the host sees is the init line.
    cli.say(INIT).await;
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::Init { .. }
    ));
}

#[tokio::test]
async fn a_turn_over_pipes_with_mcp_call_and_answers() {
    let tracker = TaskTracker::new();
    let (mut session, mut cli) = session_over_pipes(&tracker);

    session.send_user("turn one").await.expect("send");
    assert_eq!(
        cli.heard().await,
        json!({"type": "user", "message": {"role": "user", "content": "turn one"}})
    );

    cli.say(INIT).await;
    cli.say(ASSISTANT_TOOL).await;
    cli.say(TOOLS_CALL).await;
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::Init { .. }
    ));
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::ToolUse { .. }
    ));
    let CliEvent::McpCall(call) = next_event(&mut session).await else {
        panic!("expected an MCP call");
    };
    session
        .tool_result(&call, "commitment c1 recorded", false)
        .await
        .expect("answer");
    assert_eq!(
        cli.heard().await,
        json!({"type": "control_response", "response": {"subtype": "success",
            "request_id": "b138bd7b-0481-473f-8996-90d3f2926e2a",
            "response": {"mcp_response": {"jsonrpc": "2.0", "id": 2, "result": {
                "content": [{"type": "text", "text": "commitment c1 recorded"}], "isError": false}}}}})
    );

    cli.say(CAN_USE_TOOL).await;
    let CliEvent::Permission {
        request_id, input, ..
    } = next_event(&mut session).await
    else {
        panic!("expected a permission request");
    };
    session.allow(&request_id, input).await.expect("allow");
    // Exactly the lines of the notes (section 6).
    assert_eq!(
        cli.heard().await,
        serde_json::from_str::<Value>(r#"{"type":"control_response","response":{"subtype":"success","request_id":"c499","response":{"behavior":"allow","updatedInput":{"command":"echo hi > bash.txt","description":"write"}}}}"#).expect("json")
    );
    session
        .deny("c499", "Denied by host policy")
        .await
        .expect("deny");
    assert_eq!(
        cli.heard().await,
        serde_json::from_str::<Value>(r#"{"type":"control_response","response":{"subtype":"success","request_id":"c499","response":{"behavior":"deny","message":"Denied by host policy"}}}"#).expect("json")
    );

    session.interrupt().await.expect("interrupt");
    let interrupt = cli.heard().await;
    assert_eq!(interrupt["type"], "control_request");
    assert_eq!(interrupt["request"], json!({"subtype": "interrupt"}));
    assert!(interrupt["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    // A line that is not JSON is skipped and the stream goes on.
    cli.say("Warning: something the CLI printed by mistake")
        .await;
    cli.say(USER_MCP_RESULT).await;
    cli.say(ASSISTANT_TEXT).await;
    cli.say(RESULT).await;
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::ToolResult { .. }
    ));
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::Text { .. }
    ));
    let CliEvent::TurnEnd(result) = next_event(&mut session).await else {
        panic!("expected the turn's end");
    };
    assert_eq!(
        (result.usage_input_tokens, result.usage_output_tokens),
        (27, 10)
    );

    // Closing stdout ends the events with Exited (no process here, so no code), then None.
    drop(cli.stdout);
    assert_eq!(
        next_event(&mut session).await,
        CliEvent::Exited(ExitInfo {
            code: None,
            stderr_tail: String::new(),
        })
    );
    assert_eq!(timeout(STEP, session.next()).await.expect("in time"), None);
    assert!(matches!(
        session.send_user("late").await,
        Err(CliError::Closed)
    ));
    let info = timeout(STEP, session.shutdown()).await.expect("in time");
    assert_eq!(info.code, None);
    tracker.close();
    timeout(STEP, tracker.wait())
        .await
        .expect("every task ended");
}

#[tokio::test]
async fn next_is_cancellation_safe() {
    let tracker = TaskTracker::new();
    let (mut session, mut cli) = session_over_pipes(&tracker);
    // A next() abandoned before anything arrived must not lose the line that comes after.
    let abandoned = timeout(Duration::from_millis(20), session.next()).await;
    assert!(abandoned.is_err());
    cli.say(INIT).await;
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::Init { .. }
    ));
}

#[tokio::test]
async fn shutdown_closes_stdin() {
    let tracker = TaskTracker::new();
    let (session, mut cli) = session_over_pipes(&tracker);
    let play = async move {
        // Like the CLI: exit (close stdout) when stdin closes.
        let mut rest = String::new();
        let n = timeout(STEP, cli.stdin.read_line(&mut rest))
            .await
            .expect("stdin closed in time")
            .expect("read");
        assert_eq!(n, 0, "unexpected line {rest:?}");
        drop(cli.stdout);
    };
    let (info, ()) = tokio::join!(timeout(STEP, session.shutdown()), play);
    assert_eq!(info.expect("in time").code, None);
    tracker.close();
    timeout(STEP, tracker.wait())
        .await
        .expect("every task ended");
}

/// Options running `program` (a shell script standing in for the CLI) in `cwd`.
fn script_options(program: PathBuf, cwd: &Path) -> CliOptions {
    CliOptions {
        program,
        cwd: cwd.to_path_buf(),
        session: SessionStart::New(Uuid::new_v4()),
        model: None,
        append_system_prompt: String::new(),
        tools: Vec::new(),
        env: vec![("TAVERN_TEST_VALUE".to_owned(), "from-opts".to_owned())],
        env_remove: Vec::new(),
        disallowed_tools: Vec::new(),
    }
}

#[tokio::test]
async fn spawn_missing_program_fails_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = script_options(dir.path().join("no-such-claude"), dir.path());
    let error = timeout(STEP, CliSession::spawn(opts, &TaskTracker::new()))
        .await
        .expect("in time")
        .unwrap_err();
    assert!(matches!(error, CliError::NotFound { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no-such-claude does not exist"),
        "{error}"
    );
}

#[tokio::test]
async fn spawn_missing_cwd_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = write_program(dir.path(), "#!/bin/sh\n", 0o755);
    let opts = script_options(program, &dir.path().join("missing"));
    let error = CliSession::spawn(opts, &TaskTracker::new())
        .await
        .unwrap_err();
    assert!(matches!(error, CliError::Cwd { .. }), "{error:?}");
}

#[tokio::test]
async fn script_process_lifecycle_exit_code_and_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Prints an init line naming its environment and arguments' session id, then echoes stdin until
    // it closes, then exits 3 with a message on stderr.
    let program = write_program(
        dir.path(),
        r#"#!/bin/sh
printf '{"type":"system","subtype":"init","session_id":"%s","model":"%s"}\n' "$(pwd)" "$TAVERN_TEST_VALUE"
while read -r line; do
  printf '{"type":"assistant","message":{"content":[{"type":"text","text":"got a line"}]},"uuid":"u"}\n'
done
echo "fatal: stdin closed" >&2
exit 3
"#,
        0o755,
    );
    let tracker = TaskTracker::new();
    let mut session = CliSession::spawn(script_options(program, dir.path()), &tracker)
        .await
        .expect("spawn");
    let CliEvent::Init { session_id, model } = next_event(&mut session).await else {
        panic!("expected init");
    };
    let cwd = std::fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(Path::new(&session_id), cwd);
    assert_eq!(model, "from-opts");
    session.send_user("hello").await.expect("send");
    assert!(matches!(
        next_event(&mut session).await,
        CliEvent::Text { .. }
    ));
    let info = timeout(STEP, session.shutdown()).await.expect("in time");
    assert_eq!(info.code, Some(3));
    assert_eq!(info.stderr_tail, "fatal: stdin closed\n");
    tracker.close();
    timeout(STEP, tracker.wait())
        .await
        .expect("every task ended");
}

#[tokio::test]
async fn a_process_that_ignores_stdin_is_killed_with_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A background child in the same group, and a parent that never reads stdin.
    let program = write_program(
        dir.path(),
        "#!/bin/sh\nsleep 300 &\necho $! > child.pid\nexec sleep 300\n",
        0o755,
    );
    let tracker = TaskTracker::new();
    let session = CliSession::spawn(script_options(program, dir.path()), &tracker)
        .await
        .expect("spawn");
    let pid_file = dir.path().join("child.pid");
    let child_pid = timeout(STEP, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                if let Ok(pid) = text.trim().parse::<i32>() {
                    return pid;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the script wrote its child's pid");
    let info = timeout(EXIT_GRACE + STEP, session.shutdown())
        .await
        .expect("in time");
    assert_eq!(info.code, None, "killed by a signal");
    tracker.close();
    timeout(STEP, tracker.wait())
        .await
        .expect("every task ended");
    let gone = timeout(STEP, async {
        while std::fs::read_to_string(format!("/proc/{child_pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, s)| s.trim_start().starts_with('Z'))
        }) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the group's background child survived");
}

#[tokio::test]
async fn dropping_the_session_kills_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = write_program(dir.path(), "#!/bin/sh\nexec sleep 300\n", 0o755);
    let tracker = TaskTracker::new();
    let session = CliSession::spawn(script_options(program, dir.path()), &tracker)
        .await
        .expect("spawn");
    assert!(session.pid().is_some());
    drop(session);
    tracker.close();
    // The tasks end only once the process is gone.
    timeout(STEP, tracker.wait())
        .await
        .expect("every task ended");
}
