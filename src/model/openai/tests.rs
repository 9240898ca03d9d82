use super::*;
use tavern_plugin_api::{ToolCall, ToolName, ToolResult};

fn commit() -> ToolCall {
    ToolCall::Commit {
        description: "hello.txt exists".into(),
        assertion: "test -f hello.txt".into(),
        needs_signoff: false,
    }
}

/// Feeds `chunks` (each a `data:` payload) to a fresh assembler and finishes it.
fn assemble(chunks: &[&str]) -> Result<ModelReply, AttemptError> {
    let mut assembler = ChunkAssembler::default();
    for data in chunks {
        if assembler.push("message", data)? == Flow::Done {
            break;
        }
    }
    assembler.finish("openai:test")
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({"object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    .to_string()
}

#[test]
fn tool_calls_go_on_the_assistant_message_and_results_become_tool_messages() {
    let sent = messages(
        "Your name is Frodo (mortal).",
        &[
            ChatMessage::user("make hello.txt"),
            ChatMessage {
                tool_calls: vec![commit(), ToolCall::Done {}],
                ..ChatMessage::assistant("")
            },
            ChatMessage {
                tool_results: vec![ToolResult::ok("added"), ToolResult::err("not yet")],
                ..ChatMessage::user("")
            },
            ChatMessage::assistant("Done."),
            ChatMessage::user(""),
        ],
    );
    assert_eq!(
        sent,
        vec![
            json!({"role": "system", "content": "Your name is Frodo (mortal)."}),
            json!({"role": "user", "content": "make hello.txt"}),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1_0", "type": "function", "function": {"name": "add_commitment",
                 "arguments": commit().wire_input().to_string()}},
                {"id": "call_1_1", "type": "function", "function": {"name": "signal_done",
                 "arguments": "{}"}},
            ]}),
            json!({"role": "tool", "tool_call_id": "call_1_0", "content": "added"}),
            json!({"role": "tool", "tool_call_id": "call_1_1", "content": "error: not yet"}),
            json!({"role": "assistant", "content": "Done."}),
        ]
    );
    // A result line with text gets its user message after the tool messages.
    let sent = messages(
        "",
        &[
            ChatMessage {
                tool_calls: vec![ToolCall::ListAgents {}],
                ..ChatMessage::assistant("Let me look.")
            },
            ChatMessage {
                tool_results: vec![ToolResult::ok("Frodo: working")],
                ..ChatMessage::user("Alice: hurry")
            },
        ],
    );
    assert_eq!(sent[0]["content"], "Let me look.");
    assert_eq!(sent[1]["role"], "tool");
    assert_eq!(sent[2], json!({"role": "user", "content": "Alice: hurry"}));
}

#[test]
fn the_body_offers_functions_streams_and_asks_for_usage() {
    let request = ModelRequest {
        agent: "Frodo".into(),
        kind: "mortal".into(),
        assignment: None,
        turn: 0,
        system: "sys".into(),
        messages: vec![ChatMessage::user("hi")],
        tools: vec![ToolName::Commit],
    };
    let body = request_body(&OpenAiConfig::new("llama"), &request);
    assert_eq!(body["model"], "llama");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "add_commitment");
    assert_eq!(
        body["tools"][0]["function"]["parameters"],
        ToolName::Commit.input_schema()
    );
    let bare = request_body(
        &OpenAiConfig::new("llama"),
        &ModelRequest {
            tools: Vec::new(),
            ..request
        },
    );
    assert!(bare.get("tools").is_none());
}

#[test]
fn recorded_chunks_assemble_text_tool_calls_finish_and_usage() {
    let reply = assemble(&[
        &chunk(json!({"role": "assistant", "content": ""}), None),
        &chunk(json!({"content": "I will "}), None),
        &chunk(json!({"content": "promise."}), None),
        &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "add_commitment", "arguments": "{\"description\": \"hello.txt exists\", "}}]}),
            None,
        ),
        &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"assertion\": \"test -f hello.txt\"}"}}]}),
            None,
        ),
        &chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                "function": {"name": "signal_done", "arguments": ""}}]}),
            None,
        ),
        &chunk(json!({}), Some("tool_calls")),
        &json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7}})
            .to_string(),
        "[DONE]",
    ])
    .unwrap();
    assert_eq!(reply.text, "I will promise.");
    assert_eq!(reply.tool_calls, vec![commit(), ToolCall::Done {}]);
    assert_eq!(reply.stop, StopReason::ToolUse);
    assert_eq!(
        reply.usage,
        Some(Usage {
            input_tokens: 12,
            output_tokens: 7,
            cost_micros: None
        })
    );
}

#[test]
fn whole_calls_without_index_and_object_arguments_are_read() {
    // Shaped like Ollama: each call whole in one delta, no index, arguments possibly an object.
    let reply = assemble(&[
        &chunk(
            json!({"tool_calls": [
                {"id": "a", "function": {"name": "add_commitment", "arguments":
                    {"description": "hello.txt exists", "assertion": "test -f hello.txt"}}},
                {"id": "b", "function": {"name": "list_agents", "arguments": "{}"}},
            ]}),
            None,
        ),
        &chunk(json!({}), Some("stop")),
    ])
    .unwrap();
    assert_eq!(reply.tool_calls, vec![commit(), ToolCall::ListAgents {}]);
    assert_eq!(reply.stop, StopReason::EndTurn);
    assert_eq!(reply.usage, None);
}

#[test]
fn finish_reasons_map_and_a_stream_without_done_is_accepted_once_finished() {
    let finish = |reason: &str| {
        assemble(&[&chunk(json!({"content": "x"}), Some(reason))])
            .unwrap()
            .stop
    };
    assert_eq!(finish("length"), StopReason::MaxTokens);
    assert_eq!(finish("tool_calls"), StopReason::ToolUse);
    assert_eq!(finish("stop"), StopReason::EndTurn);
    let cut = assemble(&[&chunk(json!({"content": "x"}), None)]).unwrap_err();
    assert!(cut.retryable(), "{cut}");
}

#[test]
fn errors_in_the_stream_are_retryable_in_either_shape() {
    let object =
        assemble(&[r#"{"error": {"message": "model overloaded", "type": "server_error"}}"#])
            .unwrap_err();
    assert_eq!(
        object,
        AttemptError::InStream {
            detail: "server_error: model overloaded".into()
        }
    );
    let string = assemble(&[r#"{"error": "out of memory"}"#]).unwrap_err();
    assert_eq!(
        string,
        AttemptError::InStream {
            detail: "out of memory".into()
        }
    );
    assert!(string.retryable());
    assert!(!assemble(&["{nope"]).unwrap_err().retryable());
}

#[test]
fn configuration_comes_from_the_environment_and_local_servers_need_no_key() {
    let err = OpenAiModel::new(OpenAiConfig::from_lookup("gpt-x", |_| None)).unwrap_err();
    let ModelError::Unavailable { model, message } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(model, "openai:gpt-x");
    assert!(message.contains("OPENAI_API_KEY") && message.contains("OPENAI_BASE_URL"));

    let local = OpenAiConfig::from_lookup("qwen", |name| {
        (name == "OPENAI_BASE_URL").then(|| "http://localhost:11434/v1/".into())
    });
    let model = OpenAiModel::new(local).unwrap();
    assert_eq!(model.url, "http://localhost:11434/v1/chat/completions");
    assert_eq!(model.label(), "openai:qwen");
    assert!(model.auth.is_none());

    let keyed = OpenAiConfig::from_lookup("gpt-x", |name| {
        (name == "OPENAI_API_KEY").then(|| "sk-proj-secret".into())
    });
    let model = OpenAiModel::new(keyed).unwrap();
    let debug = format!("{model:?}");
    assert!(
        !debug.contains("sk-proj-secret") && debug.contains("***"),
        "{debug}"
    );
}
