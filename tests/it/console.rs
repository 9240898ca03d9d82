//! The whole loop through the real binary: Jake summons, agents summon children, commitments verify.

use crate::support::{demo_script, Console, Project};

fn script_arg() -> String {
    format!("scripted:{}", demo_script().display())
}

/// Strips the `HH:MM:SS` clock from a `/log` line so it can be compared.
fn without_clock(line: &str) -> String {
    let mut parts: Vec<&str> = line.splitn(3, ' ').collect();
    if parts.len() == 3 {
        parts.remove(1);
    }
    parts.join(" ")
}

async fn log_lines(console: &mut Console, last_seq: u64) -> Vec<String> {
    let last = format!("#{last_seq} ");
    console
        .command_block(
            "/log 100",
            |l| l.starts_with('#'),
            move |l| l.starts_with(&last),
        )
        .await
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .map(|l| without_clock(&l))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jake_summons_a_mortal_who_summons_a_child_whose_commitment_passes() {
    let project = Project::new();
    project.write("parser.txt", "parsed\n");
    let model = script_arg();
    let mut console = Console::start(project.path(), &["--model", &model]);
    console
        .expect_contains("replies come from the script")
        .await;

    console.send("please build me a parser").await;
    // Jake, Frodo and Sam work concurrently, so their lines interleave (even with the acknowledgement);
    // the log checks the order.
    console
        .expect_all(&[
            "ok #2 message to Jake",
            "+ Frodo (mortal) summoned under Jake: Build the parser",
            "[Jake] (scripted) A PARSER!",
            "+ Sam (mortal) summoned under Frodo: Write the parser output",
            "+ Sam commits: parser output exists -- test -f parser.txt",
            "? #1 Sam proposes commitment #1: parser output exists -- test -f parser.txt",
            "· Sam: Working → Verifying",
            "✓ Sam commitment #1 passed",
            "Sam's checks pass; commitment #1 needs your approval (/approve 1).",
            "[Sam] (scripted) Writing parser.txt",
        ])
        .await;
    // Sam's commitment was its own proposal: it counts once the person approves it.
    console.send("/approve 1").await;
    console
        .expect_all(&[
            "✓ @alice approved Sam commitment #1",
            "· Sam: Verifying → Done (every commitment passed)",
            "! Frodo ← Sam is Done: 1/1 commitments pass.",
            "[Frodo] (scripted) Noted. I'll wait for Sam's checks",
        ])
        .await;

    let tree = console.agents("Sam").await;
    assert_eq!(
        tree,
        vec![
            "Jake (jake) Working".to_string(),
            "└─ Frodo (mortal) Working — Build the parser and prove it works".to_string(),
            "   └─ Sam (mortal) Done — Write the parser output file parser.txt [1/1 ✓]".to_string(),
        ]
    );

    let log = log_lines(&mut console, 11).await;
    assert_eq!(
        log,
        vec![
            "#1 tavern open tavern (theme lotr) → executed",
            "#2 @alice message to Jake: please build me a parser → executed",
            "#3 Jake turn of Jake → executed",
            "#4 Jake summon mortal under Jake: Build the parser and prove it works → executed",
            "#5 Frodo turn of Frodo → executed",
            "#6 Frodo summon mortal under Frodo: Write the parser output file parser.txt → executed",
            "#7 Sam turn of Sam → executed",
            "#8 Sam commit Sam: parser output exists -- test -f parser.txt → executed",
            "#9 Sam done Sam → executed",
            "#10 @alice allow #1 → executed",
            "#11 Frodo turn of Frodo → executed",
        ]
    );
    console.quit().await;

    // The documents agree with the log after a clean stop.
    let tavern = project.tavern();
    crate::support::assert_log_consistent(&tavern);
    crate::support::all_documents_parse(&tavern);
    assert_eq!(
        crate::support::agents_on_disk(&tavern),
        crate::support::agents_in_log(&tavern)
    );
    let sam = std::fs::read_to_string(tavern.join("work/completed/Sam.md")).unwrap();
    assert!(sam.contains("status = \"done\""), "{sam}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_assertion_sends_the_agent_back_to_working_with_a_gap_report() {
    let project = Project::new();
    let model = script_arg();
    let mut console = Console::start(project.path(), &["--model", &model]);
    console.send("please build me a parser").await;
    console.expect_contains("· Sam: Working → Verifying").await;
    console
        .expect_contains("✗ Sam commitment #1 failed with exit code 1")
        .await;
    console
        .expect_contains("· Sam: Verifying → Working (verification failed)")
        .await;
    console
        .expect_contains("! Sam ← Gap report: 1 of 1 commitments failed.")
        .await;
    console
        .expect_contains("#1 parser output exists — `test -f parser.txt`: exit code 1")
        .await;
    console
        .expect_contains(
            "! Frodo ← Sam went back to Working. Gap report: 1 of 1 commitments failed.",
        )
        .await;
    // Sam's script tries once more and fails again; then it has nothing more to say and stays Working.
    console
        .expect_contains("no reply scripted for Sam turn 2")
        .await;
    let tree = console.agents("Sam").await;
    assert_eq!(
        tree.last().unwrap(),
        "   └─ Sam (mortal) Working — Write the parser output file parser.txt [0/1 ✓]"
    );

    // Closing the gap by hand and signalling done on Sam's behalf passes verification.
    project.write("parser.txt", "parsed\n");
    console.send("/done Sam").await;
    // The verification may finish before the acknowledgement is printed.
    console
        .expect_all(&["ok #", "commitment #1 needs your approval (/approve 1)"])
        .await;
    console.send("/approve 1").await;
    console
        .expect_contains("· Sam: Verifying → Done (every commitment passed)")
        .await;
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_work_without_a_model() {
    let project = Project::new();
    project.write("ok.txt", "");
    let mut console = Console::start(project.path(), &[]);
    console
        .expect_contains("note: no model is configured")
        .await;
    console.send("/summon write the docs --type tester").await;
    console.expect_contains("ok #2 summoned Frodo").await;
    console
        .send("/commit Frodo docs exist -- test -f ok.txt")
        .await;
    console.expect_contains("ok #3 commit Frodo").await;
    console.send("/done Frodo").await;
    console
        .expect_contains("· Frodo: Verifying → Done (every commitment passed)")
        .await;
    console.send("/dismiss Frodo").await;
    console
        .expect_contains("· Frodo: Done → DismissedReaped")
        .await;
    let tree = console.agents("Frodo").await;
    assert_eq!(
        tree.last().unwrap(),
        "└─ Frodo (mortal/tester) DismissedReaped † — write the docs [1/1 ✓]"
    );
    let status = console
        .command_block(
            "/status",
            |l| {
                [
                    "project:",
                    "model:",
                    "agents:",
                    "log:",
                    "model calls:",
                    "documents:",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            },
            |l| l.starts_with("documents:"),
        )
        .await;
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("model: none configured")),
        "{status:?}"
    );
    console.quit().await;
}

const ASKING: &str = r#"
[[reply]]
agent = "Jake"
tools = [{ summon = { assignment = "pick a database" } }]

[[reply]]
agent = "Frodo"
tools = [{ summon = { assignment = "set up storage" } }]

[[reply]]
agent = "Sam"
text = "One question first."
tools = [{ ask = { question = "Postgres or SQLite?", class = "deep" } }]

[[reply]]
agent = "Sam"
text = "SQLite it is."
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_bubbles_up_to_the_requester_who_answers_in_the_agents_conversation() {
    let project = Project::new();
    let script = project.write("asking.toml", ASKING);
    let model = format!("scripted:{}", script.display());
    let mut console = Console::start(project.path(), &["--model", &model]);
    console.send("we need storage").await;
    console
        .expect_contains("· Sam: Working → WaitingForInput (asked a question)")
        .await;
    console
        .expect_contains("? @alice [DEEP] Sam asks: Postgres or SQLite? (via Frodo → Jake)")
        .await;
    console.send("/join Sam").await;
    console.expect_contains("joined Sam").await;
    console.send("SQLite").await;
    console
        .expect_contains("· Sam: WaitingForInput → Working (new input)")
        .await;
    console
        .expect_contains("[Sam] (scripted) SQLite it is.")
        .await;
    console.send("/leave").await;
    console.expect_contains("back with Jake").await;
    console.quit().await;

    // Sam's conversation, as its model saw it, included the join notice and the answer.
    let state = tavern::app::replay(&project.tavern().join("log"), "main", None).unwrap();
    let sam = state.agent("Sam").unwrap();
    let texts: Vec<&str> = sam
        .conversation
        .iter()
        .map(|&i| state.messages[i].text.as_str())
        .collect();
    assert!(
        texts.contains(&"@alice joined the conversation."),
        "{texts:?}"
    );
    assert!(texts.contains(&"SQLite"), "{texts:?}");
    assert!(!sam.modes.user_present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_at_a_safe_point_and_the_next_start_resumes() {
    let project = Project::new();
    let mut console = Console::start(project.path(), &[]);
    console.send("/summon wait for it").await;
    console.expect_contains("ok #2 summoned Frodo").await;
    // The assertion waits for a marker file, so it is still running when SIGTERM arrives.
    console
        .send("/commit Frodo the go-ahead came -- while [ ! -f go ]; do sleep 0.05; done")
        .await;
    console.expect_contains("ok #3").await;
    console.send("/done Frodo").await;
    console
        .expect_contains("· Frodo: Working → Verifying")
        .await;
    // SIGTERM mid-verification, with stdin still open: Tavern stops promptly and cleanly.
    let rest = console.terminate().await;
    assert!(
        rest.iter().any(|l| l.contains("Closed the tavern")),
        "{rest:?}"
    );
    // The next start resumes the interrupted verification, which now passes.
    project.write("go", "");
    let mut console = Console::start(project.path(), &[]);
    console
        .expect_contains("resuming interrupted work: #4")
        .await;
    console
        .expect_contains("✓ Frodo commitment #1 passed")
        .await;
    console
        .expect_contains("· Frodo: Verifying → Done (every commitment passed)")
        .await;
    console.quit().await;
    crate::support::assert_log_consistent(&project.tavern());
}
