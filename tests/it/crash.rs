//! Killing Tavern with SIGKILL at many points of a session loses no acknowledged intent.

use crate::support::{
    agents_in_log, agents_on_disk, all_documents_parse, demo_script, Console, Project,
};
use tavern::domain::{Actor, Outcome, TavernSchema};
use tavern::log::LogReader;

/// The acknowledged `(seq, what)` pairs in a transcript: `ok #N what` lines.
fn acks(lines: &[String]) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("ok #"))
        .filter_map(|rest| {
            let (seq, what) = rest.split_once(' ')?;
            Some((seq.parse().ok()?, what.to_string()))
        })
        .collect()
}

async fn session_until(project: &Project, kill_after: usize) -> Vec<String> {
    let model = format!("scripted:{}", demo_script().display());
    let mut console = Console::start(project.path(), &["--model", &model]);
    let mut seen = Vec::new();
    // The banner, then a request that sets off the whole scripted session, then commands.
    let mut sent = false;
    while seen.len() < kill_after {
        // Once the session goes quiet there is nothing left to interrupt; kill it there.
        let Some(line) = console
            .next_line_within(std::time::Duration::from_secs(3))
            .await
        else {
            break;
        };
        if !sent && line.starts_with("Type to talk to Jake") {
            console.send("please build me a parser").await;
            console.send("/summon write the docs").await;
            console.send("/commit Frodo docs exist -- true").await;
            sent = true;
        }
        seen.push(line);
    }
    console.kill().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_loses_no_acknowledged_intent() {
    // Kill points are "right after the session printed its k-th line", so each is a different moment of
    // the session: before and after acknowledgements, mid-turn, mid-verification, mid-projection.
    let mut points = 0;
    for kill_after in 1..=26 {
        let project = Project::new();
        project.write("parser.txt", "parsed\n");
        let seen = session_until(&project, kill_after).await;
        if seen.len() < kill_after {
            // The session went quiet before this point: later points would all be the same moment.
            break;
        }
        let acked = acks(&seen);
        let tavern = project.tavern();

        // Restart: the tavern replays, repairs its documents and resumes; then stop it cleanly.
        let model = format!("scripted:{}", demo_script().display());
        let mut console = Console::start(project.path(), &["--model", &model]);
        console.expect_contains("Type to talk to Jake").await;
        console.quit().await;

        let reader = LogReader::<TavernSchema>::open(&tavern.join("log"), "main")
            .unwrap_or_else(|e| panic!("kill point {kill_after}: the log does not open: {e}"));
        let entries = reader
            .read_range(1, reader.last_seq())
            .expect("read the log");
        for (seq, what) in &acked {
            // The entry under an acknowledged number is the very intent that was acknowledged.
            let entry = entries.iter().find(|e| e.seq == *seq).unwrap_or_else(|| {
                panic!("kill point {kill_after}: acknowledged #{seq} is missing")
            });
            assert_eq!(
                entry.actor,
                Actor::User("alice".into()),
                "kill point {kill_after}: #{seq}"
            );
            match what.strip_prefix("summoned ") {
                Some(name) => assert!(
                    entry
                        .outcomes
                        .iter()
                        .any(|o| matches!(o, Outcome::AgentSummoned(n) if n.name == name)),
                    "kill point {kill_after}: #{seq} did not summon {name}"
                ),
                None => assert_eq!(&entry.intent.summary(), what, "kill point {kill_after}"),
            }
        }
        crate::support::assert_log_consistent(&tavern);
        all_documents_parse(&tavern);
        assert_eq!(
            agents_on_disk(&tavern),
            agents_in_log(&tavern),
            "kill point {kill_after}: the documents do not match the log"
        );
        points += 1;
        eprintln!(
            "kill point {kill_after}: {} lines seen, {} acknowledged",
            seen.len(),
            acked.len()
        );
    }
    assert!(points >= 20);
}
