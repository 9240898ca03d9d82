//! The fake OpenAI-compatible API: `POST /v1/chat/completions` (a `chat.completion.chunk` SSE stream
//! when `stream` is true, one `chat.completion` otherwise) and `GET /v1/models`, shaped like OpenAI's
//! own API so that Tavern's client is exercised against the common denominator of compatible servers.

use std::ops::Deref;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{agent_name, content_text, guarded_body, halves, FakeServer, Incoming, Shared, Step};

/// The one model `GET /v1/models` lists; requests may name any model and get it echoed back.
pub const MODEL: &str = "fake-model";

/// A fixed creation time keeps replies byte-for-byte reproducible.
const CREATED: u64 = 1_700_000_000;

/// A running fake OpenAI-compatible API; everything scriptable is on the [`FakeServer`] it derefs to.
pub struct FakeOpenAi {
    server: FakeServer,
}

impl FakeOpenAi {
    /// Starts the fake on 127.0.0.1 with a free port.
    pub fn start() -> FakeOpenAi {
        FakeOpenAi {
            server: FakeServer::start("openai", router),
        }
    }
}

impl Deref for FakeOpenAi {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .fallback(unknown)
        .with_state(shared)
}

async fn models(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.record_other(Incoming::new(&method, &uri, &headers, &body));
    let list = json!({"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "tavern-fake"},
    ]});
    json_response(StatusCode::OK, &list)
}

/// Anything else is recorded (so a test can see what a client tried) and refused with a 404.
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

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = Incoming::new(&method, &uri, &headers, &body);
    let agent = agent_name(system_texts(&request.body).iter().map(String::as_str));
    let last_user = last_user_text(&request.body);
    let stream = request.body["stream"].as_bool().unwrap_or(false);
    let include_usage = request.body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let model = request.body["model"].as_str().unwrap_or(MODEL).to_owned();
    // Stable, but growing with the conversation, so clients that sum usage see plausible numbers.
    let prompt_tokens = 10 + request.body["messages"].as_array().map_or(0, Vec::len);
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
                .header("x-request-id", &request_id);
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
            finish_reason: "stop",
        },
        Step::Tools { text, calls } => Reply {
            text,
            calls: calls
                .into_iter()
                .map(|call| {
                    let id = format!("call_fake_{}", shared.next_id());
                    (id, call.name, call.input.to_string())
                })
                .collect(),
            finish_reason: "tool_calls",
        },
    };
    let id = format!("chatcmpl-fake-{}", shared.next_id());
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 5,
        "total_tokens": prompt_tokens + 5,
    });
    let (content_type, chunks) = if stream {
        let usage = include_usage.then_some(usage);
        ("text/event-stream", sse_chunks(&reply, &id, &model, usage))
    } else {
        let completion = completion(&reply, &id, &model, usage);
        ("application/json", vec![completion.to_string()])
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .header("x-request-id", &request_id)
        .body(guarded_body(chunks, guard))
        .expect("a reply from valid parts")
}

/// A successful reply, with ids assigned and arguments serialized as OpenAI sends them (a string).
struct Reply {
    text: Option<String>,
    /// `(id, name, arguments)` per tool call.
    calls: Vec<(String, String, String)>,
    finish_reason: &'static str,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a JSON response from valid parts")
}

/// OpenAI's error body; `type` follows the status, `code` is null as many compatible servers send.
fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

fn completion(reply: &Reply, id: &str, model: &str, usage: Value) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.text});
    if !reply.calls.is_empty() {
        // OpenAI leaves `tool_calls` out entirely when there are none, so the fake does too.
        message["tool_calls"] = reply
            .calls
            .iter()
            .map(|(call_id, name, arguments)| {
                json!({"id": call_id, "type": "function",
                       "function": {"name": name, "arguments": arguments}})
            })
            .collect();
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": usage,
    })
}

/// The SSE events of a streamed reply: a role chunk, the text in two content deltas, each tool call
/// in two chunks (the first with id and name, both with half the arguments string), a chunk with the
/// finish reason, the usage chunk when asked for, then `[DONE]`.
fn sse_chunks(reply: &Reply, id: &str, model: &str, usage: Option<Value>) -> Vec<String> {
    let chunk = |delta: Value, finish_reason: Option<&str>| {
        let data = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        });
        format!("data: {data}\n\n")
    };
    // OpenAI opens with the role and an empty content when text follows, a null content otherwise.
    let opening = if reply.text.is_some() {
        json!("")
    } else {
        Value::Null
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": opening}),
        None,
    )];
    if let Some(text) = &reply.text {
        for piece in halves(text) {
            chunks.push(chunk(json!({"content": piece}), None));
        }
    }
    for (index, (call_id, name, arguments)) in reply.calls.iter().enumerate() {
        for (part, piece) in halves(arguments).into_iter().enumerate() {
            let call = if part == 0 {
                json!({"index": index, "id": call_id, "type": "function",
                       "function": {"name": name, "arguments": piece}})
            } else {
                json!({"index": index, "function": {"arguments": piece}})
            };
            chunks.push(chunk(json!({"tool_calls": [call]}), None));
        }
    }
    chunks.push(chunk(json!({}), Some(reply.finish_reason)));
    if let Some(usage) = usage {
        let data = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "choices": [], "usage": usage,
        });
        chunks.push(format!("data: {data}\n\n"));
    }
    chunks.push("data: [DONE]\n\n".to_owned());
    chunks
}

/// The texts of the system (and newer `developer`) messages, where Tavern's identity line lives.
fn system_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|message| message["role"] == "system" || message["role"] == "developer")
                .map(|message| content_text(&message["content"]))
                .collect()
        })
        .unwrap_or_default()
}

/// The content of the last `user` or `tool` message (a string, or text parts joined).
fn last_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|message| message["role"] == "user" || message["role"] == "tool")
        })
        .map(|message| content_text(&message["content"]))
        .unwrap_or_default()
}
