use super::*;

#[test]
fn secret_names_are_recognised() {
    for name in [
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "DISCORD_TOKEN",
        "MY_SECRET",
        "DB_PASSWORD",
    ] {
        assert!(is_secret_name(name), "{name}");
    }
    for name in ["HOME", "PATH", "ANTHROPIC_BASE_URL", "KEYBOARD"] {
        assert!(!is_secret_name(name), "{name}");
    }
}

#[test]
fn after_a_call_that_ended_the_turn_later_tavern_calls_are_refused() {
    let view = tavern_plugin_api::AgentView {
        name: "Sam".into(),
        kind: tavern_plugin_api::AgentKind::Mortal,
        expert: None,
        parent: Some("Jake".into()),
        children: Vec::new(),
        state: tavern_plugin_api::AgentState::Working,
        assignment: None,
        description: String::new(),
        commitments: Vec::new(),
        modes: Default::default(),
        task_mode: Default::default(),
        requester: None,
    };
    let tools = registry::plugin(view.kind).policy().tools;
    let message = ToolCall::Message {
        to: "parent".into(),
        text: "one more thing".into(),
    };
    let mut turn = CliTurn::default();
    turn.ran(message.clone(), &ToolResult::ok("Sent to Jake."));
    // A refused done (no commitments yet, say) ends nothing.
    turn.ran(ToolCall::Done {}, &ToolResult::err("no commitments"));
    assert_eq!(view.refusal(tools, turn.ended_by, &message), None);
    turn.ran(ToolCall::Done {}, &ToolResult::ok("Verification started"));
    assert_eq!(
        view.refusal(tools, turn.ended_by, &message),
        Some(ToolResult::err("not run: the turn ended at signal_done"))
    );
    assert_eq!(turn.calls.len(), 3, "every call that ran is in the reply");
}

#[test]
fn tavern_state_and_git_hooks_are_never_writable() {
    let project = std::path::Path::new("/work/proj");
    let rules = Rules {
        allow: vec![Rule::parse("Write(**)").unwrap()],
        deny: built_in_denies(project)
            .iter()
            .map(|r| Rule::parse(r).unwrap())
            .collect(),
    };
    let write = |path: &str| {
        rules.decide(
            "Write",
            &serde_json::json!({"file_path": path, "content": "x"}),
            project,
        )
    };
    assert!(matches!(
        write("/work/proj/.tavern/prompts/jake.md"),
        Decision::Deny(_)
    ));
    assert!(matches!(
        write("/work/proj/.git/hooks/pre-commit"),
        Decision::Deny(_)
    ));
    assert!(matches!(
        write("/work/proj/src/main.rs"),
        Decision::Allow(_)
    ));
}
