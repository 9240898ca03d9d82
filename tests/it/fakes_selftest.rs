//! Tests of the fake model servers themselves: wire formats (SSE and JSON, both dialects), per-agent
//! scripts, errors as steps, the in-flight counter, and one run of the real Claude Code CLI.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::{output_with_timeout, FakeAnthropic, FakeOpenAi, Step, ToolUse};

/// The bound on every HTTP exchange in these tests.
const TIMEOUT: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("build a reqwest client")
}

/// POSTs `body` and returns the status, headers and whole body text.
async fn post(url: &str, body: &Value) -> (StatusCode, HeaderMap, String) {
    let response = client()
        .post(url)
        .header("x-api-key", "sk-test")
        .json(body)
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("read the response body");
    (status, headers, text)
}

/// An Anthropic request whose system prompt names `agent` in its second block, as the CLI sends
/// `--append-system-prompt` text after its own.
fn anthropic_request(agent: &str, user: Value, stream: bool) -> Value {
    json!({
        "model": "claude-fake-1",
        "max_tokens": 1000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "You are a helpful agent."},
            {"type": "text", "text": format!("Be brief.\nYour name is {agent} (mortal).\n")},
        ],
        "messages": [{"role": "user", "content": user}],
    })
}

/// `(event, data)` per SSE frame; `event` is "" for frames without an `event:` line.
fn sse_frames(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name.to_owned();
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    data = if payload == "[DONE]" {
                        json!("[DONE]")
                    } else {
                        serde_json::from_str(payload)
                            .unwrap_or_else(|error| panic!("SSE data {payload:?}: {error}"))
                    };
                }
            }
            (event, data)
        })
        .collect()
}

#[tokio::test]
async fn anthropic_streams_a_text_reply_as_sse_frames() {
    let fake = FakeAnthropic::start();
    fake.script("Frodo", vec![Step::text("Hello, {last_user}!")]);
    let url = format!("{}/v1/messages?beta=true", fake.base_url());

    let (status, headers, body) =
        post(&url, &anthropic_request("Frodo", json!("world"), true)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let frames = sse_frames(&body);
    let events: Vec<&str> = frames.iter().map(|(event, _)| event.as_str()).collect();
    assert_eq!(
        events,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (event, data) in &frames {
        assert_eq!(data["type"], *event, "each frame's data names its event");
    }
    let start = &frames[0].1["message"];
    assert_eq!(start["model"], "claude-fake-1", "the model is echoed");
    assert!(start["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("msg_fake_")));
    assert_eq!(start["content"], json!([]));
    let text: String = frames
        .iter()
        .filter(|(event, _)| event == "content_block_delta")
        .map(|(_, data)| data["delta"]["text"].as_str().expect("a text delta"))
        .collect();
    assert_eq!(text, "Hello, world!");
    assert_eq!(frames[5].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(frames[5].1["usage"]["output_tokens"], 5);

    let recorded = fake.requests_for("Frodo");
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].path, "/v1/messages",
        "the query string is not part of the path"
    );
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].header("X-Api-Key"), Some("sk-test"));
    assert_eq!(recorded[0].step, Some(0));
    assert_eq!(recorded[0].body["messages"][0]["content"], "world");
}

#[tokio::test]
async fn anthropic_streams_tool_input_in_pieces_that_concatenate() {
    let fake = FakeAnthropic::start();
    let write = json!({"file_path": "/tmp/x/hello.txt", "content": "hello\n"});
    let bash = json!({"command": "ls -la", "description": "list"});
    fake.script(
        "Sam",
        vec![Step::tools(
            Some("Two things."),
            vec![
                ToolUse::new("Write", write.clone()),
                ToolUse::new("Bash", bash.clone()),
            ],
        )],
    );
    let url = format!("{}/v1/messages", fake.base_url());

    let (status, _, body) = post(&url, &anthropic_request("Sam", json!("go"), true)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let frames = sse_frames(&body);
    let starts: Vec<&Value> = frames
        .iter()
        .filter(|(event, _)| event == "content_block_start")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(starts.len(), 3, "one text block and two tool_use blocks");
    assert_eq!(starts[0]["content_block"]["type"], "text");
    let mut tool_ids = Vec::new();
    for (index, (name, input)) in [(1, ("Write", &write)), (2, ("Bash", &bash))] {
        let block = &starts[index]["content_block"];
        assert_eq!(starts[index]["index"], index);
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], name);
        assert_eq!(block["input"], json!({}));
        tool_ids.push(block["id"].as_str().expect("a tool_use id").to_owned());
        let pieces: Vec<&str> = frames
            .iter()
            .filter(|(event, data)| event == "content_block_delta" && data["index"] == index)
            .map(|(_, data)| {
                assert_eq!(data["delta"]["type"], "input_json_delta");
                data["delta"]["partial_json"]
                    .as_str()
                    .expect("a partial_json piece")
            })
            .collect();
        assert_eq!(pieces.len(), 2, "the input arrives in two pieces");
        let joined: Value = serde_json::from_str(&pieces.concat()).expect("the pieces form JSON");
        assert_eq!(&joined, input);
    }
    assert!(tool_ids.iter().all(|id| id.starts_with("toolu_fake_")));
    assert_ne!(tool_ids[0], tool_ids[1], "tool ids are unique");
    let delta = frames
        .iter()
        .find(|(event, _)| event == "message_delta")
        .expect("a message_delta frame");
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn anthropic_answers_json_when_not_streaming_and_serves_the_side_endpoints() {
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![
            Step::tool("Read", json!({"file_path": "/etc/hostname"})),
            Step::text("Read: {last_user}"),
        ],
    );
    let url = format!("{}/v1/messages?beta=true", fake.base_url());

    let (status, headers, body) =
        post(&url, &anthropic_request("Frodo", json!("read it"), false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let message: Value = serde_json::from_str(&body).expect("a JSON message");
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-fake-1");
    assert_eq!(message["stop_reason"], "tool_use");
    assert_eq!(message["stop_sequence"], Value::Null);
    assert_eq!(message["usage"]["output_tokens"], 5);
    assert_eq!(message["content"][0]["type"], "tool_use");
    assert_eq!(message["content"][0]["name"], "Read");
    assert_eq!(
        message["content"][0]["input"],
        json!({"file_path": "/etc/hostname"})
    );
    let tool_id = message["content"][0]["id"].clone();

    // The tool result comes back as blocks inside a tool_result block; `{last_user}` sees its text.
    let result = json!([{"type": "tool_result", "tool_use_id": tool_id,
                         "content": [{"type": "text", "text": "tavern-host"}]}]);
    let (_, _, body) = post(&url, &anthropic_request("Frodo", result, false)).await;
    let message: Value = serde_json::from_str(&body).expect("a JSON message");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["content"],
        json!([{"type": "text", "text": "Read: tavern-host"}])
    );

    let (status, _, body) = post(
        &format!("{}/v1/messages/count_tokens?beta=true", fake.base_url()),
        &json!({"model": "m", "messages": []}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"input_tokens": 10})
    );
    let probe = client()
        .head(fake.base_url())
        .send()
        .await
        .expect("HEAD / answers");
    assert_eq!(probe.status(), StatusCode::OK);

    let all = fake.requests();
    assert_eq!(all.len(), 4, "side requests are recorded too: {all:?}");
    assert_eq!(
        fake.model_requests().len(),
        2,
        "but only two were model requests"
    );
    assert_eq!(all[3].method, "HEAD");
    assert!(!all[2].is_model && all[2].path == "/v1/messages/count_tokens");
}

#[tokio::test]
async fn scripts_are_per_agent_and_errors_are_consumed_as_steps() {
    let fake = FakeAnthropic::start();
    fake.script(
        "Frodo",
        vec![Step::rate_limited(3), Step::text("ok after retry")],
    );
    fake.script("Sam", vec![Step::overloaded(), Step::server_error()]);
    let url = format!("{}/v1/messages", fake.base_url());
    let frodo = anthropic_request("Frodo", json!("hi"), false);
    let sam = anthropic_request("Sam", json!("hi"), true);

    let (status, headers, body) = post(&url, &frodo).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "3");
    let error: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "rate_limit_error");

    // Sam's script is his own: his first request gets his first step, not Frodo's second.
    let (status, headers, body) = post(&url, &sam).await;
    assert_eq!(status.as_u16(), 529);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("a JSON error body"),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let (status, _, body) = post(&url, &sam).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON")["error"]["type"],
        "api_error"
    );

    let (status, _, body) = post(&url, &frodo).await;
    assert_eq!(status, StatusCode::OK);
    let message: Value = serde_json::from_str(&body).expect("a JSON message");
    assert_eq!(message["content"][0]["text"], "ok after retry");

    // Exhausted: a fallback text naming the agent and echoing the input, never a tool call.
    let (status, _, body) = post(&url, &anthropic_request("Frodo", json!("anyone?"), true)).await;
    assert_eq!(status, StatusCode::OK);
    let frames = sse_frames(&body);
    assert!(frames
        .iter()
        .all(|(_, data)| data["content_block"]["type"] != "tool_use"));
    let text: String = frames
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "(fake) no script left for Frodo; last input: anyone?");

    // A request without an identity line belongs to "", which has no script either.
    let mut anonymous = anthropic_request("x", json!("side request"), false);
    anonymous["system"] = json!("You are a title generator.");
    let (_, _, body) = post(&url, &anonymous).await;
    let message: Value = serde_json::from_str(&body).expect("a JSON message");
    assert_eq!(
        message["content"][0]["text"],
        "(fake) no script left for ; last input: side request"
    );
    assert_eq!(message["stop_reason"], "end_turn");

    let steps: Vec<Option<usize>> = fake.requests_for("Frodo").iter().map(|r| r.step).collect();
    assert_eq!(steps, [Some(0), Some(1), None]);
    assert_eq!(fake.requests_for("Sam").len(), 2);
    assert_eq!(fake.requests_for("").len(), 1);
    // Sam's two requests were both scripted; the fallbacks are named once each.
    assert_eq!(fake.unscripted(), ["Frodo", ""]);

    // Re-scripting replaces the script and restarts its counter.
    fake.script("Frodo", vec![Step::text("second script")]);
    let (_, _, body) = post(&url, &frodo).await;
    let message: Value = serde_json::from_str(&body).expect("a JSON message");
    assert_eq!(message["content"][0]["text"], "second script");
    assert_eq!(
        fake.requests_for("Frodo").last().and_then(|r| r.step),
        Some(0)
    );
}

#[tokio::test]
async fn in_flight_counts_concurrent_requests_held_by_the_delay() {
    let fake = FakeAnthropic::start();
    fake.set_delay(Duration::from_millis(800));
    let url = format!("{}/v1/messages", fake.base_url());
    let requests: Vec<_> = ["A", "B", "C", "D"]
        .iter()
        .map(|agent| {
            let url = url.clone();
            let body = anthropic_request(agent, json!("hi"), true);
            tokio::spawn(async move { post(&url, &body).await })
        })
        .collect();

    assert!(
        fake.wait_for_requests_async(4, TIMEOUT).await,
        "four requests arrive"
    );
    assert_eq!(fake.in_flight(), 4, "all four are held by the delay");
    for request in requests {
        let (status, _, body) = request.await.expect("the request task does not panic");
        assert_eq!(status, StatusCode::OK);
        assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    }
    assert_eq!(fake.max_in_flight(), 4);
    assert_eq!(
        fake.in_flight(),
        0,
        "a request stops counting once its stream has ended"
    );
    assert!(
        !fake.wait_for_requests(5, Duration::from_millis(50)),
        "no fifth request came"
    );
}

#[tokio::test]
async fn a_client_that_gives_up_mid_delay_stops_counting_and_drop_stays_bounded() {
    let fake = FakeAnthropic::start();
    fake.set_delay(Duration::from_secs(30));
    let url = format!("{}/v1/messages", fake.base_url());
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("build a reqwest client");

    let gave_up = impatient
        .post(&url)
        .json(&anthropic_request("Frodo", json!("hi"), true))
        .send()
        .await;

    assert!(gave_up.is_err_and(|error| error.is_timeout()));
    assert!(
        fake.wait_for_idle_async(TIMEOUT).await,
        "the aborted request ends on the server too"
    );
    assert_eq!(fake.max_in_flight(), 1);

    // A request still held by the delay must not keep a dropped fake alive.
    let body = anthropic_request("Sam", json!("hi"), true);
    let pending = tokio::spawn(async move { client().post(&url).json(&body).send().await });
    assert!(fake.wait_for_requests_async(2, TIMEOUT).await);
    let dropping = std::time::Instant::now();
    drop(fake);
    assert!(
        dropping.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        dropping.elapsed()
    );
    let outcome = pending.await.expect("the request task does not panic");
    assert!(
        outcome.is_err(),
        "the held request fails once the fake is gone: {outcome:?}"
    );
}

/// An OpenAI chat request whose system message names `agent`.
fn openai_request(agent: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-fake",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": format!("Your name is {agent} (drone).")},
            {"role": "user", "content": "list files"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
              "function": {"name": "ls", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt b.txt"},
        ],
    })
}

#[tokio::test]
async fn openai_streams_text_and_tool_calls_as_chunks() {
    let fake = FakeOpenAi::start();
    let args = json!({"path": "a.txt", "mode": "read"});
    fake.script(
        "Pippin",
        vec![
            Step::text("Files: {last_user}"),
            Step::tools(
                Some("Reading."),
                vec![ToolUse::new("read_file", args.clone())],
            ),
        ],
    );
    let url = format!("{}/v1/chat/completions", fake.base_url());

    let (status, headers, body) = post(&url, &openai_request("Pippin", true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let frames = sse_frames(&body);
    assert_eq!(frames.last().map(|(_, data)| data), Some(&json!("[DONE]")));
    let chunks: Vec<&Value> = frames[..frames.len() - 1]
        .iter()
        .map(|(_, data)| data)
        .collect();
    assert!(chunks
        .iter()
        .all(|chunk| chunk["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|chunk| chunk["model"] == "gpt-fake"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text, "Files: a.txt b.txt",
        "`{{last_user}}` takes the tool message"
    );
    let content_deltas = chunks
        .iter()
        .filter(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert!(content_deltas >= 2, "text arrives in at least two deltas");
    let usage_chunk = chunks.last().expect("a usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 5);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );

    let (_, _, body) = post(&url, &openai_request("Pippin", true)).await;
    let frames = sse_frames(&body);
    let calls: Vec<&Value> = frames
        .iter()
        .filter_map(|(_, data)| data["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls.len(), 2, "the call arrives in two chunks");
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "read_file");
    assert!(calls[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_fake_")));
    assert_eq!(calls[1]["index"], 0);
    assert!(
        calls[1].get("id").is_none(),
        "only the first chunk carries the id"
    );
    let arguments: String = calls
        .iter()
        .map(|call| {
            call["function"]["arguments"]
                .as_str()
                .expect("an arguments piece")
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).expect("JSON arguments"),
        args
    );
    let finish = frames
        .iter()
        .find_map(|(_, data)| data["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
}

#[tokio::test]
async fn openai_answers_one_completion_when_not_streaming() {
    let fake = FakeOpenAi::start();
    fake.script(
        "Merry",
        vec![
            Step::rate_limited(0),
            Step::tool("ls", json!({"dir": "."})),
            Step::text("done"),
        ],
    );
    let url = format!("{}/v1/chat/completions", fake.base_url());
    let mut request = openai_request("Merry", false);
    request
        .as_object_mut()
        .expect("an object")
        .remove("stream_options");

    let (status, headers, body) = post(&url, &request).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "0");
    let error: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["code"], Value::Null);
    assert!(error["error"]["message"].is_string());

    let (status, _, body) = post(&url, &request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let completion: Value = serde_json::from_str(&body).expect("a JSON completion");
    assert_eq!(completion["object"], "chat.completion");
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "ls");
    let arguments = call["function"]["arguments"]
        .as_str()
        .expect("arguments are a string");
    assert_eq!(
        serde_json::from_str::<Value>(arguments).expect("JSON"),
        json!({"dir": "."})
    );
    let usage = &completion["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().expect("prompt tokens") + 5)
    );

    let (_, _, body) = post(&url, &request).await;
    let completion: Value = serde_json::from_str(&body).expect("a JSON completion");
    assert_eq!(completion["choices"][0]["message"]["content"], "done");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert!(completion["choices"][0]["message"]
        .get("tool_calls")
        .is_none());

    let models: Value = client()
        .get(format!("{}/v1/models", fake.base_url()))
        .send()
        .await
        .expect("GET /v1/models")
        .json()
        .await
        .expect("a JSON model list");
    assert_eq!(models["data"][0]["id"], crate::fakes::openai::MODEL);
    assert_eq!(fake.requests_for("Merry").len(), 3);
}

#[test]
fn the_real_claude_cli_writes_a_file_then_answers_against_the_fake() {
    let fake = FakeAnthropic::start();
    let home = tempfile::tempdir().expect("a temporary HOME");
    let cwd = tempfile::tempdir().expect("a temporary project");
    let file = cwd.path().join("hello.txt");
    fake.script(
        "Frodo",
        vec![
            Step::tool("Write", json!({"file_path": file, "content": "hello\n"})),
            Step::text("Done. Tool said: {last_user}"),
        ],
    );
    let mut command = fake.claude_command(home.path(), cwd.path());
    command
        .args([
            "-p",
            "Write hello.txt",
            "--output-format",
            "stream-json",
            "--verbose",
        ])
        .args(["--allowedTools", "Write"])
        .args(["--append-system-prompt", "Your name is Frodo (mortal)."]);

    let output = output_with_timeout(command, Duration::from_secs(60));

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "claude failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("the CLI wrote the file"),
        "hello\n"
    );
    let result: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in:\n{stdout}"));
    assert_eq!(result["is_error"], false, "{result}");
    let answer = result["result"].as_str().expect("a result text");
    assert!(
        answer.starts_with("Done. Tool said: File created successfully"),
        "{answer}"
    );

    let requests = fake.requests_for("Frodo");
    assert_eq!(requests.len(), 2, "{:#?}", fake.requests());
    for request in &requests {
        assert_eq!(request.path, "/v1/messages");
        assert_eq!(
            request.header("x-api-key"),
            Some(crate::fakes::anthropic::API_KEY)
        );
        assert_eq!(request.body["stream"], true);
    }
    assert_eq!(requests[0].step, Some(0));
    assert_eq!(requests[1].step, Some(1));
}
