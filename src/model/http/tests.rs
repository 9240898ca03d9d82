use super::*;
use serde_json::json;

fn commit() -> ToolCall {
    ToolCall::Commit {
        description: "file exists".into(),
        assertion: "test -f x".into(),
        needs_signoff: false,
    }
}

fn id(message: usize, call: usize) -> String {
    format!("id_{message}_{call}")
}

#[test]
fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
    let policy = RetryPolicy {
        max_retries: 40,
        backoff: Duration::from_millis(500),
    };
    assert_eq!(policy.backoff(1), Duration::from_millis(500));
    assert_eq!(policy.backoff(2), Duration::from_secs(1));
    assert_eq!(policy.backoff(3), Duration::from_secs(2));
    assert_eq!(policy.backoff(7), BACKOFF_CAP);
    assert_eq!(policy.backoff(40), BACKOFF_CAP);
}

#[test]
fn retry_after_reads_seconds_and_refuses_the_rest() {
    assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
    assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
    assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_retry_after("-1"), None);
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(
        "retry-after",
        reqwest::header::HeaderValue::from_static("3"),
    );
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
}

#[test]
fn error_bodies_of_every_shape_give_type_and_message() {
    let status = |code| StatusCode::from_u16(code).unwrap();
    assert_eq!(
        error_detail(
            status(529),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        ),
        "overloaded_error: Overloaded"
    );
    assert_eq!(
        error_detail(
            status(400),
            r#"{"error":{"message":"bad tools","type":"invalid_request_error","param":null}}"#
        ),
        "invalid_request_error: bad tools"
    );
    assert_eq!(
        error_detail(status(404), r#"{"error":"model 'x' not found"}"#),
        "(Not Found): model 'x' not found"
    );
    assert_eq!(
        error_detail(status(422), r#"{"detail":"messages: field required"}"#),
        "(Unprocessable Entity): messages: field required"
    );
    assert_eq!(
        error_detail(status(502), "<html>\n  <h1>Bad gateway</h1>\n</html>"),
        "(Bad Gateway): <html> <h1>Bad gateway</h1> </html>"
    );
    assert_eq!(
        error_detail(status(503), ""),
        "(Service Unavailable) with an empty body"
    );
    let long = "x".repeat(1000);
    assert!(error_detail(status(500), &long).ends_with('…'));
}

#[test]
fn only_rate_limits_server_errors_and_broken_streams_are_retried() {
    let status = |status| AttemptError::Status {
        status,
        detail: String::new(),
        retry_after: None,
    };
    assert!(status(429).retryable());
    assert!(status(500).retryable());
    assert!(status(529).retryable());
    assert!(!status(400).retryable());
    assert!(!status(401).retryable());
    assert!(AttemptError::InStream {
        detail: String::new()
    }
    .retryable());
    assert!(!AttemptError::Timeout {
        after: Duration::from_secs(1)
    }
    .retryable());
    assert!(!AttemptError::Unreadable(String::new()).retryable());
}

#[tokio::test]
async fn the_retry_loop_counts_attempts_and_words_the_final_error() {
    let key = Secret::new("sk-loop");
    let site = CallSite {
        label: "test:model",
        retry: RetryPolicy {
            max_retries: 2,
            backoff: Duration::from_millis(1),
        },
        secrets: vec![&key],
        hint: |status| (status == 401).then_some("check THE_KEY"),
    };
    let mut made = 0;
    let result: Result<(), ModelError> = site
        .run(|_| {
            made += 1;
            async {
                Err(AttemptError::Status {
                    status: 529,
                    detail: "overloaded_error: Overloaded (key sk-loop)".into(),
                    retry_after: Some(Duration::ZERO),
                })
            }
        })
        .await;
    assert_eq!(made, 3);
    let ModelError::Backend { model, message } = result.unwrap_err() else {
        panic!("not a backend error");
    };
    assert_eq!(model, "test:model");
    assert_eq!(
        message,
        "the API answered 529 overloaded_error: Overloaded (key ***) (gave up after 3 attempts)"
    );

    let mut made = 0;
    let result: Result<(), ModelError> = site
        .run(|_| {
            made += 1;
            async {
                Err(AttemptError::Status {
                    status: 401,
                    detail: "authentication_error: invalid x-api-key".into(),
                    retry_after: None,
                })
            }
        })
        .await;
    assert_eq!(made, 1);
    assert_eq!(
        result.unwrap_err().to_string(),
        "the model test:model failed: the API answered 401 authentication_error: invalid \
         x-api-key; check THE_KEY"
    );

    let result = site
        .run(|attempt| async move {
            if attempt < 3 {
                Err(AttemptError::Status {
                    status: 429,
                    detail: String::new(),
                    retry_after: None,
                })
            } else {
                Ok(attempt)
            }
        })
        .await;
    assert_eq!(result, Ok(3));

    let result: Result<(), ModelError> = site
        .run(|_| async {
            Err(AttemptError::Status {
                status: 429,
                detail: "rate_limit_error: slow down".into(),
                retry_after: Some(Duration::from_secs(3600)),
            })
        })
        .await;
    let message = result.unwrap_err().to_string();
    assert!(message.contains("asked to wait 3600 s"), "{message}");
}

#[test]
fn calls_get_positional_ids_and_results_pair_by_position() {
    let messages = vec![
        ChatMessage::user("hi"),
        ChatMessage {
            tool_calls: vec![commit(), ToolCall::Done {}],
            ..ChatMessage::assistant("on it")
        },
        ChatMessage {
            tool_results: vec![ToolResult::ok("added"), ToolResult::err("not yet")],
            ..ChatMessage::user("")
        },
    ];
    let lines = pair_tool_calls(&messages, id);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[1].calls,
        vec![
            ("id_1_0".into(), commit()),
            ("id_1_1".into(), ToolCall::Done {})
        ]
    );
    assert_eq!(
        lines[2].results,
        vec![
            ("id_1_0".into(), ToolResult::ok("added")),
            ("id_1_1".into(), ToolResult::err("not yet"))
        ]
    );
    // The same conversation always gets the same ids.
    assert_eq!(pair_tool_calls(&messages, id), lines);
}

#[test]
fn missing_and_orphan_results_are_made_whole() {
    let messages = vec![
        ChatMessage {
            tool_calls: vec![commit(), ToolCall::Done {}],
            ..ChatMessage::assistant("")
        },
        // One result for two calls, then a second assistant line with an unanswered call.
        ChatMessage {
            tool_results: vec![ToolResult::ok("added")],
            ..ChatMessage::user("go on")
        },
        ChatMessage {
            tool_calls: vec![commit()],
            ..ChatMessage::assistant("")
        },
        ChatMessage::assistant("thinking"),
        ChatMessage {
            tool_results: vec![ToolResult::ok("stray")],
            ..ChatMessage::user("")
        },
    ];
    let lines = pair_tool_calls(&messages, id);
    assert_eq!(lines[1].results.len(), 2);
    assert_eq!(lines[1].results[1].0, "id_0_1");
    assert!(!lines[1].results[1].1.ok);
    assert_eq!(lines[2].calls[0].0, "id_2_0");
    // The unanswered call gets a user line of its own before the next assistant line.
    assert_eq!(lines[3].role, Role::User);
    assert_eq!(lines[3].results[0].0, "id_2_0");
    assert_eq!(lines[4].text, "thinking");
    assert_eq!(lines[5].text, "(tool result: stray)");
    assert!(lines[5].results.is_empty());
    // A conversation ending on calls gets their (missing) results.
    let lines = pair_tool_calls(&messages[..3], id);
    assert_eq!(lines.last().unwrap().results[0].0, "id_2_0");
}

#[test]
fn unreadable_tool_calls_are_dropped_with_a_note() {
    let mut text = "Promising.".to_owned();
    let calls = read_tool_calls(
        "test:model",
        vec![
            RawCall {
                name: "add_commitment".into(),
                input: json!({"description": "d", "assertion": "true"}).to_string(),
            },
            RawCall {
                name: "add_commitment".into(),
                input: r#"{"description": "d"}"#.into(),
            },
            RawCall {
                name: "rm_rf".into(),
                input: "{}".into(),
            },
            RawCall {
                name: "signal_done".into(),
                input: "{not json".into(),
            },
            RawCall {
                name: "list_agents".into(),
                input: String::new(),
            },
        ],
        &mut text,
    );
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1], ToolCall::ListAgents {});
    let notes: Vec<&str> = text.lines().collect();
    assert_eq!(notes[0], "Promising.");
    assert!(notes[1].starts_with("(Tavern could not run add_commitment: bad input"));
    assert!(notes[1].contains("assertion"), "{text}");
    assert!(
        notes[2].starts_with("(Tavern could not run rm_rf: "),
        "{text}"
    );
    assert!(notes[3].contains("not valid JSON"), "{text}");
}
