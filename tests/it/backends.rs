//! The HTTP model backends against the fake APIs: streaming, tool-call round trips, retries and their
//! limits, errors that are not retried, and keys that go out in headers but never into errors.
//!
//! Every case runs against both backends (`backends::anthropic::*`, `backends::openai::*`), with the
//! same expectations wherever the APIs agree.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tavern::model::anthropic::{AnthropicConfig, AnthropicModel};
use tavern::model::openai::{OpenAiConfig, OpenAiModel};
use tavern::model::secret::Secret;
use tavern_plugin_api::{
    ChatMessage, Model, ModelError, ModelReply, ModelRequest, StopReason, ToolCall, ToolName,
    ToolResult,
};

use crate::fakes::{FakeAnthropic, FakeOpenAi, FakeServer, Step};

/// The bound on every model call in these tests.
const STEP: Duration = Duration::from_secs(20);

/// The first backoff of tests that do not look at it: short, so retries do not slow them down.
const QUICK: Duration = Duration::from_millis(1);

/// The key the tests configure; it must show up in request headers and nowhere else.
const KEY: &str = "sk-tavern-test-5ecret";

/// The line the fakes route requests by.
const SYSTEM: &str = "You are a careful worker.\nYour name is Frodo (mortal).\nBe brief.";

#[derive(Clone, Copy, Debug)]
enum Api {
    Anthropic,
    OpenAi,
}

/// A running fake of one API.
enum Fake {
    Anthropic(FakeAnthropic),
    OpenAi(FakeOpenAi),
}

impl Fake {
    fn start(api: Api) -> Fake {
        match api {
            Api::Anthropic => Fake::Anthropic(FakeAnthropic::start()),
            Api::OpenAi => Fake::OpenAi(FakeOpenAi::start()),
        }
    }

    fn server(&self) -> &FakeServer {
        match self {
            Fake::Anthropic(fake) => fake,
            Fake::OpenAi(fake) => fake,
        }
    }

    /// The base URL as each backend's configuration wants it (OpenAI's includes `/v1`).
    fn base_url(&self) -> String {
        match self {
            Fake::Anthropic(fake) => fake.base_url(),
            Fake::OpenAi(fake) => format!("{}/v1", fake.base_url()),
        }
    }

    /// A model talking to this fake with [`KEY`], `max_retries` retries and `backoff` before the
    /// first retry, and its `Debug` output.
    fn model(&self, max_retries: u32, backoff: Duration) -> (Arc<dyn Model>, String) {
        model_at(self.api(), self.base_url(), max_retries, backoff)
    }

    fn api(&self) -> Api {
        match self {
            Fake::Anthropic(_) => Api::Anthropic,
            Fake::OpenAi(_) => Api::OpenAi,
        }
    }

    /// The body of every request Frodo made, in order.
    fn bodies(&self) -> Vec<Value> {
        self.server()
            .requests_for("Frodo")
            .into_iter()
            .map(|r| r.body)
            .collect()
    }
}

/// A model for `api` at `base_url` with [`KEY`], and its `Debug` output.
fn model_at(
    api: Api,
    base_url: String,
    max_retries: u32,
    backoff: Duration,
) -> (Arc<dyn Model>, String) {
    match api {
        Api::Anthropic => {
            let mut config = AnthropicConfig::new("claude-test");
            config.base_url = base_url;
            config.api_key = Some(Secret::new(KEY));
            config.max_retries = max_retries;
            config.backoff = backoff;
            let model = AnthropicModel::new(config).expect("a configured Anthropic model");
            let debug = format!("{model:?}");
            (Arc::new(model), debug)
        }
        Api::OpenAi => {
            let mut config = OpenAiConfig::new("fake-model");
            config.base_url = base_url;
            config.api_key = Some(Secret::new(KEY));
            config.max_retries = max_retries;
            config.backoff = backoff;
            let model = OpenAiModel::new(config).expect("a configured OpenAI-compatible model");
            let debug = format!("{model:?}");
            (Arc::new(model), debug)
        }
    }
}

fn request(messages: Vec<ChatMessage>) -> ModelRequest {
    ModelRequest {
        agent: "Frodo".into(),
        kind: "mortal".into(),
        assignment: Some("make hello.txt".into()),
        turn: 0,
        system: SYSTEM.into(),
        messages,
        tools: ToolName::ALL.to_vec(),
    }
}

/// One call, bounded by [`STEP`].
async fn complete(model: &dyn Model, request: ModelRequest) -> Result<ModelReply, ModelError> {
    tokio::time::timeout(STEP, model.complete(request))
        .await
        .unwrap_or_else(|_| panic!("{} did not answer within {STEP:?}", model.label()))
}

/// The message of a [`ModelError::Backend`], or a panic naming what came instead.
fn backend_message(result: Result<ModelReply, ModelError>) -> String {
    match result {
        Err(ModelError::Backend { message, .. }) => message,
        other => panic!("expected a backend error, got {other:?}"),
    }
}

fn commit() -> ToolCall {
    ToolCall::Commit {
        description: "hello.txt exists".into(),
        assertion: "test -f hello.txt".into(),
        needs_signoff: false,
    }
}

async fn streams_text(api: Api) {
    let fake = Fake::start(api);
    fake.server()
        .script("Frodo", vec![Step::text("Hello from the fake, friend.")]);
    let (model, _) = fake.model(0, QUICK);
    let reply = complete(&*model, request(vec![ChatMessage::user("Alice: hi")]))
        .await
        .expect("a text reply");
    assert_eq!(reply.text, "Hello from the fake, friend.");
    assert!(reply.tool_calls.is_empty());
    assert_eq!(reply.stop, StopReason::EndTurn);
    let usage = reply.usage.expect("the stream reports usage");
    assert_eq!(usage.output_tokens, 5);
    assert!(usage.input_tokens > 0);

    let requests = fake.server().requests_for("Frodo");
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.body["stream"], true);
    match api {
        Api::Anthropic => {
            assert_eq!(sent.path, "/v1/messages");
            assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(sent.body["system"], SYSTEM);
            assert_eq!(sent.body["tools"].as_array().map(Vec::len), Some(9));
        }
        Api::OpenAi => {
            assert_eq!(sent.path, "/v1/chat/completions");
            assert_eq!(sent.body["messages"][0]["role"], "system");
            assert_eq!(sent.body["stream_options"]["include_usage"], true);
            assert_eq!(sent.body["tools"][0]["type"], "function");
        }
    }
    fake.server().assert_no_unscripted();
}

async fn round_trips_a_tool_call(api: Api) {
    let fake = Fake::start(api);
    fake.server().script(
        "Frodo",
        vec![
            Step::tool(
                "add_commitment",
                json!({"description": "hello.txt exists", "assertion": "test -f hello.txt"}),
            ),
            Step::text("Committed; Tavern said: {last_user}"),
        ],
    );
    let (model, _) = fake.model(0, QUICK);
    let mut conversation = vec![ChatMessage::user("Alice: make hello.txt")];
    let first = complete(&*model, request(conversation.clone()))
        .await
        .expect("a tool call");
    assert_eq!(first.tool_calls, vec![commit()]);
    assert_eq!(first.stop, StopReason::ToolUse);

    conversation.push(ChatMessage {
        tool_calls: first.tool_calls,
        ..ChatMessage::assistant(first.text)
    });
    conversation.push(ChatMessage {
        tool_results: vec![ToolResult::ok("commitment 1 added")],
        ..ChatMessage::user("")
    });
    let second = complete(&*model, request(conversation))
        .await
        .expect("a text reply");
    assert_eq!(second.text, "Committed; Tavern said: commitment 1 added");
    assert_eq!(second.stop, StopReason::EndTurn);

    let bodies = fake.bodies();
    assert_eq!(bodies.len(), 2);
    let messages = &bodies[1]["messages"];
    match api {
        Api::Anthropic => {
            let call = &messages[1]["content"][0];
            assert_eq!(messages[1]["role"], "assistant");
            assert_eq!(call["type"], "tool_use");
            assert_eq!(call["id"], "toolu_tavern_1_0");
            assert_eq!(call["name"], "add_commitment");
            assert_eq!(call["input"]["assertion"], "test -f hello.txt");
            let result = &messages[2]["content"][0];
            assert_eq!(messages[2]["role"], "user");
            assert_eq!(
                *result,
                json!({"type": "tool_result", "tool_use_id": "toolu_tavern_1_0",
                       "content": "commitment 1 added", "is_error": false})
            );
            // The empty text of the result line is left out rather than sent empty.
            assert_eq!(messages[2]["content"].as_array().map(Vec::len), Some(1));
        }
        Api::OpenAi => {
            let assistant = &messages[2];
            assert_eq!(assistant["role"], "assistant");
            assert_eq!(assistant["content"], Value::Null);
            assert_eq!(assistant["tool_calls"][0]["id"], "call_1_0");
            assert_eq!(
                assistant["tool_calls"][0]["function"]["name"],
                "add_commitment"
            );
            let arguments: Value = serde_json::from_str(
                assistant["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .expect("arguments are a JSON string"),
            )
            .expect("arguments parse as JSON");
            assert_eq!(arguments["assertion"], "test -f hello.txt");
            assert_eq!(
                messages[3],
                json!({"role": "tool", "tool_call_id": "call_1_0", "content": "commitment 1 added"})
            );
            assert_eq!(messages.as_array().map(Vec::len), Some(4));
        }
    }
    fake.server().assert_no_unscripted();
}

async fn retries_a_rate_limit_as_told(api: Api) {
    let fake = Fake::start(api);
    fake.server().script(
        "Frodo",
        vec![Step::rate_limited(0), Step::text("after the wait")],
    );
    // The backoff is longer than the call's bound (capped at 30 s, STEP is 20 s): only a client
    // that waits what `retry-after: 0` says, rather than its own backoff, answers in time.
    let (model, _) = fake.model(2, Duration::from_secs(60));
    let reply = complete(&*model, request(vec![ChatMessage::user("Alice: hi")]))
        .await
        .expect("success after one retry");
    assert_eq!(reply.text, "after the wait");
    assert_eq!(fake.bodies().len(), 2);
    fake.server().assert_no_unscripted();
}

async fn waits_as_long_as_retry_after_says(api: Api) {
    let fake = Fake::start(api);
    fake.server().script(
        "Frodo",
        vec![Step::rate_limited(1), Step::text("after the wait")],
    );
    // With a 1 ms backoff, only a client that waits out `retry-after: 1` takes a second.
    let (model, _) = fake.model(2, QUICK);
    let started = std::time::Instant::now();
    let reply = complete(&*model, request(vec![ChatMessage::user("Alice: hi")]))
        .await
        .expect("success after one retry");
    let waited = started.elapsed();
    assert_eq!(reply.text, "after the wait");
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the second that retry-after asked for"
    );
    assert_eq!(fake.bodies().len(), 2);
    fake.server().assert_no_unscripted();
}

async fn gives_up_after_max_retries(api: Api) {
    let fake = Fake::start(api);
    let (failing, api_message, status) = match api {
        Api::Anthropic => (Step::overloaded(), "overloaded_error: Overloaded", "529"),
        Api::OpenAi => (
            Step::server_error(),
            "server_error: Internal server error (fake)",
            "500",
        ),
    };
    // One more failure than the client will try, so the script never runs out.
    fake.server().script("Frodo", vec![failing; 4]);
    let (model, _) = fake.model(2, QUICK);
    let message =
        backend_message(complete(&*model, request(vec![ChatMessage::user("Alice: hi")])).await);
    assert_eq!(
        message,
        format!("the API answered {status} {api_message} (gave up after 3 attempts)")
    );
    assert_eq!(fake.bodies().len(), 3);
    fake.server().assert_no_unscripted();
}

async fn does_not_retry_a_bad_request(api: Api) {
    let fake = Fake::start(api);
    fake.server().script(
        "Frodo",
        vec![
            Step::error(400, "messages: the conversation is malformed"),
            Step::text("never reached"),
        ],
    );
    let (model, _) = fake.model(2, QUICK);
    let message =
        backend_message(complete(&*model, request(vec![ChatMessage::user("Alice: hi")])).await);
    assert!(message.starts_with("the API answered 400 "), "{message}");
    assert!(
        message.contains("messages: the conversation is malformed"),
        "{message}"
    );
    assert!(!message.contains("gave up"), "{message}");
    assert_eq!(fake.bodies().len(), 1);
    fake.server().assert_no_unscripted();
}

async fn sends_the_key_but_never_shows_it(api: Api) {
    let fake = Fake::start(api);
    // Some servers quote the key they were sent in their 401 (OpenAI quotes part of it).
    fake.server().script(
        "Frodo",
        vec![Step::error(
            401,
            format!("Incorrect API key provided: {KEY}"),
        )],
    );
    let (model, debug) = fake.model(2, QUICK);
    let error = complete(&*model, request(vec![ChatMessage::user("Alice: hi")]))
        .await
        .expect_err("a 401");
    let shown = error.to_string();
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("Incorrect API key provided: ***"), "{shown}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(!model.label().contains(KEY));

    let sent = &fake.server().requests_for("Frodo")[0];
    match api {
        Api::Anthropic => {
            assert_eq!(sent.header("x-api-key"), Some(KEY));
            assert!(shown.contains("check ANTHROPIC_API_KEY"), "{shown}");
        }
        Api::OpenAi => {
            assert_eq!(
                sent.header("authorization").map(str::to_owned),
                Some(format!("Bearer {KEY}"))
            );
            assert!(shown.contains("check OPENAI_API_KEY"), "{shown}");
        }
    }
    fake.server().assert_no_unscripted();
}

async fn retries_an_unreachable_server_then_says_where(api: Api) {
    // A port that was free a moment ago: nothing listens there, so connecting is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free loopback port")
        .port();
    let base = match api {
        Api::Anthropic => format!("http://127.0.0.1:{port}"),
        Api::OpenAi => format!("http://127.0.0.1:{port}/v1"),
    };
    let (model, _) = model_at(api, base.clone(), 1, QUICK);
    let message =
        backend_message(complete(&*model, request(vec![ChatMessage::user("Alice: hi")])).await);
    assert!(
        message.starts_with(&format!("could not connect to {base}")),
        "{message}"
    );
    assert!(message.ends_with("(gave up after 2 attempts)"), "{message}");
}

/// Runs each case once per backend, as `backends::anthropic::CASE` and `backends::openai::CASE`.
macro_rules! for_both_backends {
    ($($case:ident),* $(,)?) => {
        mod anthropic {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Api::Anthropic).await;
                }
            )*
        }
        mod openai {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Api::OpenAi).await;
                }
            )*
        }
    };
}

for_both_backends!(
    streams_text,
    round_trips_a_tool_call,
    retries_a_rate_limit_as_told,
    waits_as_long_as_retry_after_says,
    gives_up_after_max_retries,
    does_not_retry_a_bad_request,
    sends_the_key_but_never_shows_it,
    retries_an_unreachable_server_then_says_where,
);
