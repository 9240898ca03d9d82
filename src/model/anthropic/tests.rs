use super::*;
use tavern_plugin_api::{ToolCall, ToolName, ToolResult};

fn commit() -> ToolCall {
    ToolCall::Commit {
        description: "hello.txt exists".into(),
        assertion: "test -f hello.txt".into(),
        needs_signoff: false,
    }
}

/// Feeds `events` (type, data) to a fresh assembler and finishes it.
fn assemble(events: &[(&str, Value)]) -> Result<ModelReply, AttemptError> {
    let mut assembler = StreamAssembler::default();
    for (event, data) in events {
        if assembler.push(event, &data.to_string())? == Flow::Done {
            break;
        }
    }
    assembler.finish("anthropic:test")
}

#[test]
fn the_conversation_starts_with_the_user_and_alternates() {
    assert_eq!(
        messages(&[]),
        vec![json!({"role": "user", "content": [{"type": "text", "text": CONVERSATION_STARTS}]})]
    );
    let sent = messages(&[
        ChatMessage::assistant("I was here first"),
        ChatMessage::user("one"),
        ChatMessage::user("two"),
        ChatMessage::user(""),
        ChatMessage::assistant(""),
        ChatMessage::assistant("reply"),
    ]);
    assert_eq!(
        sent,
        vec![
            json!({"role": "user", "content": [{"type": "text", "text": CONVERSATION_STARTS}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "I was here first"}]}),
            json!({"role": "user", "content": [
                {"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}),
            json!({"role": "assistant", "content": [{"type": "text", "text": "reply"}]}),
        ]
    );
}

#[test]
fn tool_calls_become_tool_use_and_results_come_first_in_the_next_user_message() {
    let sent = messages(&[
        ChatMessage::user("make hello.txt"),
        ChatMessage {
            tool_calls: vec![commit(), ToolCall::Done {}],
            ..ChatMessage::assistant("")
        },
        ChatMessage {
            tool_results: vec![ToolResult::ok("added"), ToolResult::err("")],
            ..ChatMessage::user("Alice: also add a test")
        },
    ]);
    assert_eq!(
        sent[1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_tavern_1_0", "name": "add_commitment",
             "input": {"description": "hello.txt exists", "assertion": "test -f hello.txt",
                       "needs_signoff": false}},
            {"type": "tool_use", "id": "toolu_tavern_1_1", "name": "signal_done", "input": {}},
        ]})
    );
    assert_eq!(
        sent[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_tavern_1_0", "content": "added",
             "is_error": false},
            {"type": "tool_result", "tool_use_id": "toolu_tavern_1_1", "is_error": true},
            {"type": "text", "text": "Alice: also add a test"},
        ]})
    );
}

#[test]
fn the_body_offers_the_tools_and_streams() {
    let mut config = AnthropicConfig::new("claude-test");
    config.max_tokens = 100;
    let request = ModelRequest {
        agent: "Frodo".into(),
        kind: "mortal".into(),
        assignment: None,
        turn: 0,
        system: "Your name is Frodo (mortal).".into(),
        messages: vec![ChatMessage::user("hi")],
        tools: vec![ToolName::Commit],
    };
    let body = request_body(&config, &request);
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(body["stream"], true);
    assert_eq!(body["system"], "Your name is Frodo (mortal).");
    assert_eq!(body["tools"][0]["name"], "add_commitment");
    assert_eq!(
        body["tools"][0]["input_schema"],
        ToolName::Commit.input_schema()
    );
    let bare = request_body(
        &config,
        &ModelRequest {
            system: String::new(),
            tools: Vec::new(),
            ..request
        },
    );
    assert!(bare.get("system").is_none() && bare.get("tools").is_none());
}

#[test]
fn a_recorded_stream_assembles_text_tool_calls_stop_and_usage() {
    let reply = assemble(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"usage": {
                "input_tokens": 10, "cache_creation_input_tokens": 2,
                "cache_read_input_tokens": 3, "output_tokens": 1}}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "I will "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": "promise."}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block":
                   {"type": "tool_use", "id": "toolu_1", "name": "add_commitment", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta":
                   {"type": "input_json_delta", "partial_json": "{\"description\": \"hello.txt exists\", "}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta":
                   {"type": "input_json_delta", "partial_json": "\"assertion\": \"test -f hello.txt\"}"}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 2, "content_block":
                   {"type": "tool_use", "id": "toolu_2", "name": "signal_done", "input": {}}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 2}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                   "usage": {"output_tokens": 42}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ])
    .unwrap();
    assert_eq!(reply.text, "I will promise.");
    assert_eq!(reply.tool_calls, vec![commit(), ToolCall::Done {}]);
    assert_eq!(reply.stop, StopReason::ToolUse);
    assert_eq!(
        reply.usage,
        Some(Usage {
            input_tokens: 15,
            output_tokens: 42,
            cost_micros: None
        })
    );
}

#[test]
fn stop_reasons_map_and_thinking_is_skipped() {
    let stream = |stop: &str| {
        assemble(&[
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                       "delta": {"type": "text_delta", "text": "ok"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": stop}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
            ("future_event", json!({"type": "future_event"})),
        ])
        .unwrap()
    };
    assert_eq!(stream("max_tokens").stop, StopReason::MaxTokens);
    assert_eq!(stream("end_turn").stop, StopReason::EndTurn);
    assert_eq!(stream("refusal").stop, StopReason::EndTurn);
    assert_eq!(stream("end_turn").text, "ok");
    assert_eq!(stream("end_turn").usage, None);
}

#[test]
fn stream_errors_and_truncated_streams_are_retryable_and_garbage_is_not() {
    let error = assemble(&[(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )])
    .unwrap_err();
    assert_eq!(
        error,
        AttemptError::InStream {
            detail: "overloaded_error: Overloaded".into()
        }
    );
    assert!(error.retryable());
    let truncated = assemble(&[(
        "message_start",
        json!({"type": "message_start", "message": {}}),
    )])
    .unwrap_err();
    assert!(truncated.retryable(), "{truncated}");
    let mut assembler = StreamAssembler::default();
    let garbage = assembler.push("message_start", "{not json").unwrap_err();
    assert!(!garbage.retryable());
}

#[test]
fn a_bad_tool_call_is_dropped_with_a_note() {
    let reply = assemble(&[
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block":
                   {"type": "tool_use", "id": "t", "name": "add_commitment", "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta":
                   {"type": "input_json_delta", "partial_json": "{\"description\": \"x\"}"}}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ])
    .unwrap();
    assert!(reply.tool_calls.is_empty());
    assert!(
        reply
            .text
            .starts_with("(Tavern could not run add_commitment: bad input"),
        "{}",
        reply.text
    );
}

#[test]
fn configuration_comes_from_the_environment_and_a_key_or_gateway_is_required() {
    let config = AnthropicConfig::from_lookup("claude-x", |name| match name {
        "ANTHROPIC_API_KEY" => Some("sk-ant-secret".into()),
        _ => None,
    });
    assert_eq!(config.base_url, DEFAULT_BASE_URL);
    assert_eq!(config.max_tokens, 8192);
    assert_eq!(config.max_retries, 4);
    let model = AnthropicModel::new(config).unwrap();
    assert_eq!(model.label(), "anthropic:claude-x");
    assert!(!model.is_scripted());
    let debug = format!("{model:?}");
    assert!(!debug.contains("sk-ant-secret"), "{debug}");
    assert!(debug.contains("***"), "{debug}");

    let err = AnthropicModel::new(AnthropicConfig::from_lookup("claude-x", |_| None)).unwrap_err();
    let ModelError::Unavailable { model, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(model, "anthropic:claude-x");
    assert!(message.contains("ANTHROPIC_API_KEY") && message.contains("ANTHROPIC_BASE_URL"));

    let gateway = AnthropicConfig::from_lookup("claude-x", |name| {
        (name == "ANTHROPIC_BASE_URL").then(|| "http://localhost:4000/".into())
    });
    let model = AnthropicModel::new(gateway).unwrap();
    assert_eq!(model.url, "http://localhost:4000/v1/messages");

    let mut broken = AnthropicConfig::new("claude-x");
    broken.api_key = Some(Secret::new("sk-ant\nsecret"));
    let err = AnthropicModel::new(broken).unwrap_err().to_string();
    assert!(
        err.contains("ANTHROPIC_API_KEY") && !err.contains("secret"),
        "{err}"
    );
}
