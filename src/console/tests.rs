use super::*;
use tavern_plugin_api::Expert;

fn ok(line: &str) -> Command {
    parse(line, "Jake").unwrap().unwrap()
}

fn err(line: &str) -> String {
    parse(line, "Jake").unwrap_err().to_string()
}

#[test]
fn plain_text_is_chat_and_blank_lines_are_nothing() {
    assert_eq!(ok("hello there"), Command::Say("hello there".into()));
    assert_eq!(parse("   ", "Jake").unwrap(), None);
}

#[test]
fn summon_parses_assignment_and_flags_into_the_same_intent_a_tool_call_makes() {
    assert_eq!(
        ok("/summon write the tests --type tester --parent Frodo --model scripted:x.toml"),
        Command::Submit(Intent::Summon(Summon {
            parent: "Frodo".into(),
            assignment: Some("write the tests".into()),
            kind: AgentKind::Mortal,
            expert: Some(Expert::Tester),
            name: None,
            model: Some("scripted:x.toml".into()),
            workdir: None,
        }))
    );
    assert!(err("/summon").contains("usage: /summon"));
    assert!(err("/summon x --type wizard").contains("unknown agent type"));
    assert!(err("/summon x --parent").contains("--parent needs a value"));
    assert!(err("/summon x --colour red").contains("unknown option --colour"));
}

#[test]
fn a_summon_flag_value_may_be_quoted_and_the_assignment_keeps_its_apostrophes() {
    let Command::Submit(Intent::Summon(summon)) =
        ok(r#"/summon fix the user's bug --name "two words" --dir 'my dir'"#)
    else {
        panic!("not a summon");
    };
    assert_eq!(summon.assignment.as_deref(), Some("fix the user's bug"));
    assert_eq!(summon.name.as_deref(), Some("two words"));
    assert_eq!(summon.workdir.as_deref(), Some("my dir"));
    assert!(err(r#"/summon x --name "two words"#).contains("has no closing \""));
    assert!(err(r#"/summon x --dir "a b"c"#).contains("follows the closing"));
}

#[test]
fn commit_splits_description_and_assertion_at_the_double_dash() {
    assert_eq!(
        ok("/commit Sam tests pass -- cargo test -- --nocapture"),
        Command::Submit(Intent::AddCommitment {
            agent: "Sam".into(),
            description: "tests pass".into(),
            assertion: "cargo test -- --nocapture".into(),
            needs_signoff: false,
        })
    );
    assert_eq!(
        ok("/commit Sam --signoff looks right -- true"),
        Command::Submit(Intent::AddCommitment {
            agent: "Sam".into(),
            description: "looks right".into(),
            assertion: "true".into(),
            needs_signoff: true,
        })
    );
    assert!(err("/commit Sam no assertion").contains("usage: /commit"));
}

#[test]
fn the_other_commands_parse() {
    assert_eq!(ok("/agents"), Command::Agents);
    assert_eq!(ok("/log"), Command::Log(20));
    assert_eq!(ok("/log 5"), Command::Log(5));
    assert!(err("/log zero").contains("usage: /log"));
    assert_eq!(ok("/join Sam"), Command::Join("Sam".into()));
    assert_eq!(ok("/leave"), Command::Leave);
    assert_eq!(
        ok("/done Sam"),
        Command::Submit(Intent::SignalDone {
            agent: "Sam".into()
        })
    );
    assert_eq!(
        ok("/approve Sam #2"),
        Command::Submit(Intent::Approve {
            agent: "Sam".into(),
            commitment: 2
        })
    );
    assert_eq!(
        ok("/reap Sam off track"),
        Command::Submit(Intent::Reap {
            agent: "Sam".into(),
            reason: "off track".into()
        })
    );
    assert_eq!(
        ok("/mode Sam perseverance=on task=plan"),
        Command::Submit(Intent::SetModes {
            agent: "Sam".into(),
            patch: ModesPatch {
                perseverance: Some(true),
                task_mode: Some(TaskMode::Plan),
                ..ModesPatch::default()
            }
        })
    );
    assert!(err("/mode Sam user_present=on").contains("/join"));
    assert_eq!(
        ok("/strategy Jake all"),
        Command::Submit(Intent::SetRestartStrategy {
            agent: "Jake".into(),
            strategy: RestartStrategy::RestartAll
        })
    );
    assert!(err("/frobnicate").contains("unknown command /frobnicate"));
}
