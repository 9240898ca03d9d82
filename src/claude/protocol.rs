//! The stream-json line protocol of the Claude Code CLI, without any I/O: decoding stdout lines into
//! [`CliEvent`]s plus the answers Tavern's MCP server gives by itself, and encoding the lines written to
//! stdin.
//!
//! Everything here was observed with CLI 2.1.197 (see `claude-code-cli.md`). Decoding is lenient
//! where the CLI is known to vary (a tool result's content is a string or a list of blocks) and
//! ignores what Tavern does not use (thinking blocks, sub-agent lines, unknown line types), so a newer
//! CLI that adds fields or line types keeps working.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{CliEvent, McpCall, McpTool, TurnResult, MCP_SERVER};

/// How much of an unparseable line goes into a log message.
const LOG_EXCERPT: usize = 200;

/// Tavern's SDK MCP server as the reader answers it: its name, version and tool list.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// The `tools/list` result, built once.
    tools: Value,
}

impl McpServer {
    /// A server offering `tools`.
    pub fn new(tools: &[McpTool]) -> McpServer {
        let tools: Vec<Value> = tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": tool.input_schema,
                })
            })
            .collect();
        McpServer {
            tools: json!({ "tools": tools }),
        }
    }
}

/// What one stdout line means: events for the host, and lines the reader writes back at once.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Events, in order (an assistant line with several blocks gives several).
    pub events: Vec<CliEvent>,
    /// Answers to write to stdin without the host: the MCP handshake, refusals of unsupported
    /// control requests.
    pub replies: Vec<Value>,
}

impl Decoded {
    fn event(event: CliEvent) -> Decoded {
        Decoded {
            events: vec![event],
            replies: Vec::new(),
        }
    }

    fn reply(reply: Value) -> Decoded {
        Decoded {
            events: Vec::new(),
            replies: vec![reply],
        }
    }
}

/// Decodes one stdout line. Lines that are not JSON, or whose shape is not the expected one, are
/// logged and skipped: the CLI's output is not a documented contract, and one odd line must not end
/// the session.
pub fn decode(line: &str, server: &McpServer) -> Decoded {
    let line = line.trim();
    if line.is_empty() {
        return Decoded::default();
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(
                %error,
                line = excerpt(line),
                "the Claude Code CLI printed a line that is not JSON; skipping it"
            );
            return Decoded::default();
        }
    };
    let kind = value["type"].as_str().unwrap_or_default().to_owned();
    let decoded = match kind.as_str() {
        "system" => from_value(value, &kind).map(decode_system),
        "assistant" => from_value(value, &kind).map(decode_assistant),
        "user" => from_value(value, &kind).map(decode_user),
        "result" => from_value(value, &kind).map(decode_result),
        "control_request" => from_value(value, &kind).map(|r| decode_control(r, server)),
        "control_response" => {
            // Answers to Tavern's own requests (interrupts); an error one is worth a log line.
            if value["response"]["subtype"] == "error" {
                tracing::warn!(response = %value["response"], "the Claude Code CLI refused a control request");
            } else {
                tracing::debug!(response = %value["response"], "control response");
            }
            None
        }
        _ => {
            tracing::debug!(kind, "ignoring a Claude Code CLI line of an unhandled type");
            None
        }
    };
    decoded.unwrap_or_default()
}

/// Deserializes a line of a known type, logging and skipping it when its shape is unexpected.
fn from_value<T: for<'de> Deserialize<'de>>(value: Value, kind: &str) -> Option<T> {
    match T::deserialize(&value) {
        Ok(line) => Some(line),
        Err(error) => {
            tracing::warn!(
                %error,
                kind,
                line = excerpt(&value.to_string()),
                "a Claude Code CLI line has an unexpected shape; skipping it"
            );
            None
        }
    }
}

/// At most [`LOG_EXCERPT`] bytes of `text`, cut on a character boundary.
fn excerpt(text: &str) -> String {
    if text.len() <= LOG_EXCERPT {
        return text.to_owned();
    }
    let mut cut = LOG_EXCERPT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// `{"type":"system",…}`: `init` at the start of every turn, `api_retry` before each retry.
#[derive(Deserialize)]
struct SystemLine {
    #[serde(default)]
    subtype: String,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    max_retries: u32,
    #[serde(default)]
    error_status: Option<u16>,
    #[serde(default)]
    error: Value,
}

fn decode_system(line: SystemLine) -> Decoded {
    match line.subtype.as_str() {
        "init" => Decoded::event(CliEvent::Init {
            session_id: line.session_id,
            model: line.model,
        }),
        "api_retry" => Decoded::event(CliEvent::Retry {
            attempt: line.attempt,
            max_retries: line.max_retries,
            status: line.error_status,
            error: value_text(&line.error),
        }),
        other => {
            tracing::debug!(subtype = other, "ignoring a system line");
            Decoded::default()
        }
    }
}

/// `{"type":"assistant"|"user","message":{…},"uuid":…}`.
#[derive(Deserialize)]
struct MessageLine {
    message: Message,
    #[serde(default)]
    uuid: String,
    /// Set on the lines of a sub-agent (the `Task` tool), which are not the agent's own words.
    #[serde(default)]
    parent_tool_use_id: Option<String>,
    /// Set on echoes of Tavern's own user lines (`--replay-user-messages`).
    #[serde(default, rename = "isReplay")]
    is_replay: bool,
}

#[derive(Deserialize)]
struct Message {
    /// A string or a list of content blocks.
    #[serde(default)]
    content: Value,
}

/// Assistant lines carry one content block each in practice; a list is handled anyway.
fn decode_assistant(line: MessageLine) -> Decoded {
    if let Some(parent) = &line.parent_tool_use_id {
        tracing::debug!(parent, "ignoring a sub-agent's assistant line");
        return Decoded::default();
    }
    let mut decoded = Decoded::default();
    for block in blocks(&line.message.content) {
        match block["type"].as_str().unwrap_or_default() {
            "text" => decoded.events.push(CliEvent::Text {
                text: block["text"].as_str().unwrap_or_default().to_owned(),
                message_uuid: line.uuid.clone(),
            }),
            "tool_use" => decoded.events.push(CliEvent::ToolUse {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
                input: block["input"].clone(),
                message_uuid: line.uuid.clone(),
            }),
            // Thinking is the model's scratch work, not something the agent said.
            "thinking" | "redacted_thinking" => {}
            other => tracing::debug!(block = other, "ignoring an assistant content block"),
        }
    }
    decoded
}

/// User lines carry tool results (the CLI's own text lines, such as the interrupt notice, are skipped).
fn decode_user(line: MessageLine) -> Decoded {
    if line.is_replay {
        return Decoded::default();
    }
    if let Some(parent) = &line.parent_tool_use_id {
        tracing::debug!(parent, "ignoring a sub-agent's user line");
        return Decoded::default();
    }
    let events = blocks(&line.message.content)
        .iter()
        .filter(|block| block["type"] == "tool_result")
        .map(|block| CliEvent::ToolResult {
            tool_use_id: block["tool_use_id"].as_str().unwrap_or_default().to_owned(),
            text: content_text(&block["content"]),
            is_error: block["is_error"].as_bool().unwrap_or(false),
            message_uuid: line.uuid.clone(),
        })
        .collect();
    Decoded {
        events,
        replies: Vec::new(),
    }
}

/// The blocks of a message's content; a plain string content has none that matter here.
fn blocks(content: &Value) -> &[Value] {
    content.as_array().map_or(&[], Vec::as_slice)
}

/// The text of a tool result's content: a string, or text blocks joined by newlines, with other
/// blocks (images) named in brackets so their presence is not lost.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block["type"].as_str() {
                Some("text") => block["text"].as_str().unwrap_or_default().to_owned(),
                Some(other) => format!("[{other}]"),
                None => String::new(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A string value as is; anything else (null aside) as JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `{"type":"result",…}`: the end of a turn.
#[derive(Deserialize)]
struct ResultLine {
    #[serde(default)]
    subtype: String,
    #[serde(default)]
    is_error: bool,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    usage: Usage,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    api_error_status: Option<u16>,
    #[serde(default)]
    errors: Vec<Value>,
    #[serde(default)]
    num_turns: u32,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
}

fn decode_result(line: ResultLine) -> Decoded {
    let usage = &line.usage;
    Decoded::event(CliEvent::TurnEnd(TurnResult {
        // API failures come with subtype "success" and is_error true; other failures have an
        // "error_…" subtype. Either one means the turn failed.
        is_error: line.is_error || line.subtype.starts_with("error"),
        text: line.result.unwrap_or_default(),
        session_id: line.session_id,
        uuid: line.uuid,
        usage_input_tokens: usage
            .input_tokens
            .saturating_add(usage.cache_creation_input_tokens)
            .saturating_add(usage.cache_read_input_tokens),
        usage_output_tokens: usage.output_tokens,
        cost_micros: line.total_cost_usd.and_then(micros),
        api_error_status: line.api_error_status,
        errors: line.errors.iter().map(value_text).collect(),
        num_turns: line.num_turns,
    }))
}

/// Dollars to millionths of a dollar, rounded; `None` for values no cost can have.
fn micros(dollars: f64) -> Option<u64> {
    let micros = (dollars * 1e6).round();
    // The upper bound keeps the cast exact; no single turn costs a million dollars.
    (micros.is_finite() && (0.0..1e15).contains(&micros)).then_some(micros as u64)
}

/// `{"type":"control_request","request_id":…,"request":{"subtype":…}}`.
#[derive(Deserialize)]
struct ControlRequest {
    request_id: String,
    request: Value,
}

fn decode_control(line: ControlRequest, server: &McpServer) -> Decoded {
    let request = &line.request;
    match request["subtype"].as_str().unwrap_or_default() {
        "can_use_tool" => Decoded::event(CliEvent::Permission {
            request_id: line.request_id,
            tool_name: request["tool_name"].as_str().unwrap_or_default().to_owned(),
            input: request["input"].clone(),
            tool_use_id: request["tool_use_id"].as_str().map(str::to_owned),
        }),
        "mcp_message" => {
            let server_name = request["server_name"].as_str().unwrap_or_default();
            if server_name != MCP_SERVER {
                let message = format!("no MCP server named {server_name:?} is served by Tavern");
                return Decoded::reply(control_error(&line.request_id, &message));
            }
            decode_mcp(&line.request_id, &request["message"], server)
        }
        other => {
            // Unanswered control requests would stall the CLI, so refuse them explicitly.
            tracing::debug!(subtype = other, "refusing an unsupported control request");
            let message = format!("Tavern does not support the control request {other:?}");
            Decoded::reply(control_error(&line.request_id, &message))
        }
    }
}

/// One JSON-RPC message to Tavern's MCP server: the handshake is answered here, `tools/call` goes to
/// the host. The CLI sends `initialize`, `notifications/initialized` and `tools/list` twice at startup,
/// and each needs its own answer.
fn decode_mcp(request_id: &str, message: &Value, server: &McpServer) -> Decoded {
    let method = message["method"].as_str().unwrap_or_default();
    let Some(rpc_id) = message.get("id").filter(|id| !id.is_null()).cloned() else {
        // A notification has no JSON-RPC answer, but the control request still needs one.
        return Decoded::reply(mcp_response(
            request_id,
            json!({"jsonrpc": "2.0", "result": {}}),
        ));
    };
    let result = match method {
        "initialize" => json!({
            // Echoing the client's version is what a server that supports it answers.
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": MCP_SERVER, "version": env!("CARGO_PKG_VERSION")},
        }),
        "tools/list" => server.tools.clone(),
        "ping" => json!({}),
        "tools/call" => {
            let params = &message["params"];
            let arguments = match &params["arguments"] {
                Value::Null => json!({}),
                arguments => arguments.clone(),
            };
            return Decoded::event(CliEvent::McpCall(McpCall {
                request_id: request_id.to_owned(),
                rpc_id,
                tool: params["name"].as_str().unwrap_or_default().to_owned(),
                arguments,
                tool_use_id: params["_meta"]["claudecode/toolUseId"]
                    .as_str()
                    .map(str::to_owned),
            }));
        }
        other => {
            tracing::debug!(method = other, "unknown MCP method");
            return Decoded::reply(mcp_response(
                request_id,
                json!({
                    "jsonrpc": "2.0",
                    "id": rpc_id,
                    "error": {"code": -32601, "message": format!("Method not found: {other}")},
                }),
            ));
        }
    };
    Decoded::reply(mcp_response(
        request_id,
        json!({"jsonrpc": "2.0", "id": rpc_id, "result": result}),
    ))
}

/// A successful control response carrying a JSON-RPC message from Tavern's MCP server.
fn mcp_response(request_id: &str, message: Value) -> Value {
    control_success(request_id, json!({ "mcp_response": message }))
}

fn control_success(request_id: &str, response: Value) -> Value {
    json!({
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    })
}

fn control_error(request_id: &str, message: &str) -> Value {
    json!({
        "type": "control_response",
        "response": {"subtype": "error", "request_id": request_id, "error": message},
    })
}

/// One user turn.
pub fn user_turn(text: &str) -> Value {
    json!({"type": "user", "message": {"role": "user", "content": text}})
}

/// Lets a tool run with `updated_input`.
pub fn allow(request_id: &str, updated_input: Value) -> Value {
    control_success(
        request_id,
        json!({"behavior": "allow", "updatedInput": updated_input}),
    )
}

/// Refuses a tool with `message`.
pub fn deny(request_id: &str, message: &str) -> Value {
    control_success(request_id, json!({"behavior": "deny", "message": message}))
}

/// Answers a `tools/call` with one text block.
pub fn tool_result(call: &McpCall, text: &str, is_error: bool) -> Value {
    mcp_response(
        &call.request_id,
        json!({
            "jsonrpc": "2.0",
            "id": call.rpc_id,
            "result": {"content": [{"type": "text", "text": text}], "isError": is_error},
        }),
    )
}

/// Interrupts the running turn.
pub fn interrupt(request_id: &str) -> Value {
    json!({"type": "control_request", "request_id": request_id, "request": {"subtype": "interrupt"}})
}
