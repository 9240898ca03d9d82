//! The fake Anthropic Messages API: `HEAD /`, `POST /v1/messages` (SSE when `stream` is true, one
//! JSON message otherwise) and `POST /v1/messages/count_tokens`, shaped like the real API as the
//! Claude Code CLI 2.1.197 consumes it (see `claude-code-cli.md`, sections 9 and 10).

use std::ops::Deref;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{head, post};
use axum::Router;
use serde_json::{json, Value};

use super::{
    agent_name, claude_bin, content_text, guarded_body, halves, FakeServer, InFlight, Incoming,
    Shared, Step,
};

/// A running fake Anthropic API; everything scriptable is on the [`FakeServer`] it derefs to.
pub struct FakeAnthropic {
    server: FakeServer,
}

impl FakeAnthropic {
    /// Starts the fake on 127.0.0.1 with a free port.
    pub fn start() -> FakeAnthropic {
        FakeAnthropic {
            server: FakeServer::start("anthropic", router),
        }
    }

    /// The environment of a Claude Code CLI wired to this fake and isolated from the machine it runs
    /// on, for `claude` run directly, through `tavern::claude`, or as a child of `tavern` (which
    /// passes its environment on, `TAVERN_*` aside).
    ///
    /// `home` holds the CLI's settings (`home/.claude/settings.json`) and sessions. The config
    /// directory is pinned too, so a developer's own `CLAUDE_CONFIG_DIR` cannot redirect them, and
    /// the CLI may not retry, so a broken fake or a scripted error fails at once instead of sitting
    /// through ten retries (a test that needs retries removes `CLAUDE_CODE_MAX_RETRIES`). The key is
    /// [`API_KEY`].
    pub fn cli_env(&self, home: &Path) -> Vec<(String, String)> {
        let under_home = |dir: &str| home.join(dir).display().to_string();
        [
            ("HOME", home.display().to_string()),
            ("CLAUDE_CONFIG_DIR", under_home(".claude")),
            ("XDG_CONFIG_HOME", under_home(".config")),
            ("ANTHROPIC_BASE_URL", self.base_url()),
            ("ANTHROPIC_API_KEY", API_KEY.to_owned()),
            ("DISABLE_TELEMETRY", "1".to_owned()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
            ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }

    /// The real Claude Code CLI with [`FakeAnthropic::cli_env`], working in `cwd`.
    ///
    /// Inherited `ANTHROPIC_*` and `CLAUDE_*` variables are removed first ([`inherited_cli_vars`]) so
    /// a developer's own key or settings can never leak into (or be reached from) a test. Add `-p`,
    /// `--output-format`, … as needed.
    pub fn claude_command(&self, home: &Path, cwd: &Path) -> Command {
        let mut command = Command::new(claude_bin());
        for key in inherited_cli_vars() {
            command.env_remove(key);
        }
        command.current_dir(cwd).envs(self.cli_env(home));
        command
    }
}

/// The API key every CLI environment of the tests carries ([`FakeAnthropic::cli_env`]): distinctive
/// enough that finding it anywhere but in a request's `x-api-key` header is a leak.
pub const API_KEY: &str = "sk-fake-key-for-tests";

/// The `ANTHROPIC_*` and `CLAUDE_*` variables of this process's environment, which a CLI run by a
/// test must not inherit.
pub fn inherited_cli_vars() -> Vec<String> {
    std::env::vars_os()
        .map(|(key, _)| key.to_string_lossy().into_owned())
        .filter(|key| key.starts_with("ANTHROPIC_") || key.starts_with("CLAUDE_"))
        .collect()
}

impl Deref for FakeAnthropic {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", head(root))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .fallback(unknown)
        .with_state(shared)
}

/// The CLI's connectivity probe at startup; any status would do, 200 is what the real host answers.
async fn root(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    shared.record_other(Incoming::new(&method, &uri, &headers, &body));
    StatusCode::OK
}

async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record_other(Incoming::new(&method, &uri, &headers, &body));
    json_response(StatusCode::OK, &json!({"input_tokens": 10}))
}

/// Anything else is recorded (so a test can see what a client tried) and refused the way the API
/// refuses unknown paths.
async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record_other(Incoming::new(&method, &uri, &headers, &body));
    let message = format!("{method} {} is not served by the fake", uri.path());
    json_response(StatusCode::NOT_FOUND, &error_body(404, &message))
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Incoming::new(&method, &uri, &headers, &body);
    let agent = agent_name(system_texts(&request.body));
    let last_user = last_user_text(&request.body);
    let stream = request.body["stream"].as_bool().unwrap_or(false);
    let model = request.body["model"]
        .as_str()
        .unwrap_or("claude-fake")
        .to_owned();
    // Stable, but growing with the conversation, so clients that sum usage see plausible numbers.
    let input_tokens = 10 + request.body["messages"].as_array().map_or(0, Vec::len);
    let (step, guard) = shared.serve_model(request, agent, &last_user).await;
    let request_id = format!("req_fake_{}", shared.next_id());
    let reply = match step {
        Step::Error {
            status,
            message,
            retry_after,
        } => {
            let mut builder = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .header("request-id", &request_id);
            if let Some(seconds) = retry_after {
                builder = builder.header("retry-after", seconds.to_string());
            }
            let body = error_body(status, &message).to_string();
            return builder
                .body(guarded_body(vec![body], guard))
                .expect("an error response from valid parts");
        }
        Step::Text(text) => Reply {
            text: Some(text),
            calls: Vec::new(),
            stop_reason: "end_turn",
        },
        Step::Tools { text, calls } => Reply {
            text,
            calls: calls
                .into_iter()
                .map(|call| (format!("toolu_fake_{}", shared.next_id()), call))
                .map(|(id, call)| (id, call.name, call.input))
                .collect(),
            stop_reason: "tool_use",
        },
    };
    let message_id = format!("msg_fake_{}", shared.next_id());
    if stream {
        let frames = sse_frames(&reply, &message_id, &model, input_tokens);
        ok_response("text/event-stream", &request_id, frames, guard)
    } else {
        let message = json_message(&reply, &message_id, &model, input_tokens);
        ok_response(
            "application/json",
            &request_id,
            vec![message.to_string()],
            guard,
        )
    }
}

/// A successful reply, with ids already assigned to its tool calls.
struct Reply {
    text: Option<String>,
    /// `(id, name, input)` per tool call.
    calls: Vec<(String, String, Value)>,
    stop_reason: &'static str,
}

fn ok_response(
    content_type: &str,
    request_id: &str,
    chunks: Vec<String>,
    guard: InFlight,
) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .header("request-id", request_id)
        .body(guarded_body(chunks, guard))
        .expect("a reply from valid parts")
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a JSON response from valid parts")
}

/// The API's error body; its `type` is what the real API uses for that status.
fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The final usage; `message_start` reports the same input with one output token, as the API does.
fn usage(input_tokens: usize, output_tokens: usize) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

fn json_message(reply: &Reply, id: &str, model: &str, input_tokens: usize) -> Value {
    let mut content = Vec::new();
    if let Some(text) = &reply.text {
        content.push(json!({"type": "text", "text": text}));
    }
    for (tool_id, name, input) in &reply.calls {
        content.push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": null,
        "usage": usage(input_tokens, 5),
    })
}

/// The SSE frames of a streamed reply: `message_start`, then start / delta… / stop per content block
/// (text first, then each tool call), `message_delta` with the stop reason, and `message_stop`.
///
/// Text and tool inputs are each sent in two deltas so that clients must concatenate them.
fn sse_frames(reply: &Reply, id: &str, model: &str, input_tokens: usize) -> Vec<String> {
    let frame = |event: &str, data: Value| format!("event: {event}\ndata: {data}\n\n");
    let mut frames = vec![frame(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(input_tokens, 1),
        }}),
    )];
    let mut index = 0;
    if let Some(text) = &reply.text {
        frames.push(frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in halves(text) {
            frames.push(frame(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        frames.push(frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (tool_id, name, input) in &reply.calls {
        frames.push(frame(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
        ));
        for piece in halves(&input.to_string()) {
            frames.push(frame(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        frames.push(frame(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    frames.push(frame(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    ));
    frames.push(frame("message_stop", json!({"type": "message_stop"})));
    frames
}

/// Every text of the request's `system`, which is a string or an array of text blocks.
fn system_texts(body: &Value) -> Vec<&str> {
    match &body["system"] {
        Value::String(text) => vec![text.as_str()],
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| block["text"].as_str())
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of the last `user` message: its string content, or its text blocks and tool results'
/// content joined. `system` entries in `messages` (a beta the CLI uses) are skipped by the role test.
fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|message| message["role"] == "user")
        })
        .map(|message| content_text(&message["content"]))
        .unwrap_or_default()
}
