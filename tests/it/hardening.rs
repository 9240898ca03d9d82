//! Regression tests for what a skeptical tester found by probing the console, the log and the documents
//! with bad input and faults (issue 11): each reproduces one defect as a person would meet it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{
    agents_in_log, all_documents_parse, assert_log_consistent, run_tavern, tavern_command, Console,
    Project, STEP,
};

/// The names of the agents a replay of the project's log knows, sorted.
fn names_in_log(project: &Project) -> Vec<String> {
    agents_in_log(&project.tavern())
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_ten_megabyte_summon_and_chat_line_replays_them() {
    let project = Project::new();
    let big = "C".repeat(10 << 20);
    let input = format!("/summon {big}\n{big}\n/quit\n");
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], &input).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ok #2 summoned Frodo"),
        "{}",
        &stdout[..2000]
    );
    // Before the fix the backward scan for the last entry copied the whole line once per 16 KiB read:
    // this start took minutes. `run_tavern` gives it STEP.
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "/agents\n").await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("Reopened the tavern: 3 log entries replayed."),
        "{stdout}"
    );
    assert!(stdout.contains("Frodo (mortal) Working"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tavern_is_refused_even_with_the_lock_file_deleted() {
    let project = Project::new();
    let mut first = Console::start(project.path(), &[]);
    first.expect_contains("Type to talk to Jake").await;
    // Whatever a person deletes in .tavern/ that looks like a lock, the running tavern keeps it.
    for name in ["lock", "log/main.lock", "LOCK"] {
        let _ = std::fs::remove_file(project.tavern().join(name));
    }
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "/summon sneak in\n").await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("another Tavern is already running on this project"),
        "{stderr}"
    );
    first.send("/summon stay").await;
    first.expect_contains("ok #2 summoned Frodo").await;
    first.quit().await;
    // One writer, so one entry per seq: the log still opens and replays.
    assert_log_consistent(&project.tavern());
    assert_eq!(names_in_log(&project), ["Frodo", "Jake"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_tavern_holding_only_the_lock_file_is_seen() {
    let project = Project::new();
    std::fs::create_dir_all(project.tavern()).unwrap();
    // What an earlier version of Tavern holds while it runs: a flock on .tavern/lock, nothing else.
    let old = std::fs::File::create(project.tavern().join("lock")).unwrap();
    old.try_lock().unwrap();
    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains("another Tavern is already running on this project"),
        "{stderr}"
    );
    old.unlock().unwrap();
    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_emptied_log_beside_documents_is_refused_with_what_to_do() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon keep me\n").await;
    assert!(ok);
    let tavern = project.tavern();
    let frodo = std::fs::read_to_string(tavern.join("agents/Frodo.md")).unwrap();
    let log = tavern.join("log/main.jsonl");
    let original_log = std::fs::read_to_string(&log).unwrap();
    let documents = files_under(&tavern.join("agents")).len()
        + files_under(&tavern.join("messages")).len()
        + files_under(&tavern.join("work")).len();

    std::fs::remove_file(&log).unwrap();
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "/summon x\n").await;
    assert!(!ok, "{stdout}");
    for needle in [
        format!("holds {documents} documents of an earlier tavern"),
        "main.jsonl is missing".to_string(),
        "Restore the log".to_string(),
        "move".to_string(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} in {stderr}");
    }
    // Nothing was created or overwritten.
    assert!(!log.exists());
    assert_eq!(
        std::fs::read_to_string(tavern.join("agents/Frodo.md")).unwrap(),
        frodo
    );

    // A log cut back to its header is the same loss.
    let header = original_log.lines().next().unwrap();
    std::fs::write(&log, format!("{header}\n")).unwrap();
    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(!ok);
    assert!(stderr.contains("main.jsonl holds no entries"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(tavern.join("agents/Frodo.md")).unwrap(),
        frodo
    );

    // Restoring the log restores the tavern.
    std::fs::write(&log, &original_log).unwrap();
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "/agents\n").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Frodo (mortal) Working"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_that_is_not_utf8_is_set_aside_and_rewritten_from_the_log() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon mind the bytes\n").await;
    assert!(ok);
    let tavern = project.tavern();
    let path = tavern.join("agents/Frodo.md");
    let good = std::fs::read_to_string(&path).unwrap();
    let bad: &[u8] = b"+++\nname = \"Frodo\xff\xfe\"\n+++\n";

    // While Tavern was stopped.
    std::fs::write(&path, bad).unwrap();
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "warning: .tavern/agents/Frodo.md is not valid UTF-8 (byte 18 is not text); \
             moved it to .tavern/attic/agents/Frodo.md"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("repaired 1 documents"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
    assert_eq!(
        std::fs::read(tavern.join("attic/agents/Frodo.md")).unwrap(),
        bad
    );
    all_documents_parse(&tavern);

    // While Tavern runs: the watcher sets it aside too (once the bytes have held still for a settle
    // period, so a save in progress is not taken for damage), and the document comes back. A prompt
    // override is a person's own file: one that is not UTF-8 is left where it is.
    let mut console = Console::start(project.path(), &[]);
    console.expect_contains("Type to talk to Jake").await;
    let prompt = tavern.join("prompts/mortal.md");
    std::fs::write(&prompt, bad).unwrap();
    std::fs::write(&path, bad).unwrap();
    let attic = tavern.join("attic/agents/Frodo.2.md");
    // Another process's files: a bounded poll is the only way to wait for them.
    let restored = tokio::time::timeout(STEP, async {
        loop {
            if attic.exists() && std::fs::read(&path).ok().as_deref() == Some(good.as_bytes()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        restored.is_ok(),
        "Frodo.md was not rewritten: {:?}",
        files_under(&tavern)
    );
    assert_eq!(std::fs::read(&attic).unwrap(), bad);
    // Both changed together, so the prompt has been looked at as often as Frodo.md by now.
    assert_eq!(std::fs::read(&prompt).unwrap(), bad);
    assert!(!tavern.join("attic/prompts").exists());
    console.send("/agents").await;
    console.expect_contains("Frodo (mortal) Working").await;
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_of_entries_cut_off_the_log_are_set_aside_at_start() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon lost\n").await;
    assert!(ok);
    let tavern = project.tavern();
    // Cut the log back to its first entry (as a torn tail, or a restored backup, leaves it).
    let log = tavern.join("log/main.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text.lines().take(2).collect();
    assert!(kept[1].contains(r#""seq":1,"#), "{}", kept[1]);
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    // A file a person made in agents/ is theirs, and stays.
    std::fs::write(tavern.join("agents/Notes.md"), "my own notes\n").unwrap();
    let before = files_under(&tavern.join("messages")).len();
    assert!(before > 0);

    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "/agents\n").await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "warning: .tavern/agents/Frodo.md was written by Tavern, but no entry of the log \
             accounts for it; moved it to .tavern/attic/agents/Frodo.md"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("Frodo (mortal)"), "{stdout}");
    assert_eq!(
        files_under(&tavern.join("agents")),
        ["Jake.md", "Notes.md"],
        "{stdout}"
    );
    assert!(files_under(&tavern.join("work")).is_empty());
    let attic = files_under(&tavern.join("attic"));
    let set_aside = attic.iter().filter(|p| p.starts_with("messages/")).count();
    assert!(set_aside >= 1, "{attic:?}");
    assert_eq!(
        files_under(&tavern.join("messages")).len() + set_aside,
        before
    );
    assert!(attic.contains(&"agents/Frodo.md".to_string()), "{attic:?}");
    assert!(
        attic.contains(&"work/pending/Frodo.md".to_string()),
        "{attic:?}"
    );
    // A new summon takes the name again without overwriting anything of the old one's.
    let (ok, stdout, _) = run_tavern(project.path(), &["console"], "/summon again\n").await;
    assert!(ok);
    assert!(stdout.contains("ok #2 summoned Frodo"), "{stdout}");
    assert!(tavern.join("attic/agents/Frodo.md").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_log_line_stops_the_start_with_file_and_line() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon guard it\n").await;
    assert!(ok);
    let log = project.tavern().join("log/main.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(r#""seq":2,"#))
        .unwrap()
        + 1;
    // The assignment changes by one byte; the JSON stays valid.
    let altered = text.replacen("guard it", "guard iT", 1);
    assert_ne!(altered, text);
    std::fs::write(&log, altered).unwrap();
    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "main.jsonl line {line}: the line's checksum does not match"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("Tavern never skips a damaged line"),
        "{stderr}"
    );
    // Said once, not once per cause.
    assert_eq!(
        stderr.matches("checksum does not match").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_in_the_config_are_errors_naming_the_key_said_once() {
    let project = Project::new();
    let cases = [
        (
            "[model]\nmax_concurrent_calls = 2305843009213693952\n",
            "`model.max_concurrent_calls` is 2305843009213693952; it must be from 1 to 10000",
        ),
        (
            "[verify]\ntimeout_secs = 18446744073709551615\n",
            "line 2 (`verify.timeout_secs`)",
        ),
        (
            "[supervisor]\nrestart_window_secs = 1e300\n",
            "`supervisor.restart_window_secs` is 1e300; it must be a positive number of seconds",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let file = project.write(&format!("huge-{i}.toml"), text);
        let (ok, _, stderr) = run_tavern(
            project.path(),
            &["--config", file.to_str().unwrap(), "console"],
            "",
        )
        .await;
        assert!(!ok, "{text}");
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        let body = first.split_once(": ").map_or(first, |(_, b)| b);
        assert_eq!(stderr.matches(body).count(), 1, "said twice: {stderr}");
    }
    assert!(!project.tavern().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_console_cleanly_and_loses_nothing() {
    let project = Project::new();
    let mut child = tavern_command(project.path(), &["console"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wait_for = async |needle: &str| {
        tokio::time::timeout(STEP, async {
            while let Some(line) = out.next_line().await.unwrap() {
                if line.contains(needle) {
                    return;
                }
            }
            panic!("the output ended before {needle:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?}"))
    };
    wait_for("Type to talk to Jake").await;
    stdin.write_all(b"/summon keep this\n").await.unwrap();
    wait_for("ok #2 summoned Frodo").await;
    // The reader goes away, like `tavern console | head`; the next line Tavern writes fails.
    drop(out);
    stdin
        .write_all(b"/agents\n/summon never read\n")
        .await
        .unwrap();
    // Standard input stays open: the console stops because its output is gone.
    let output = tokio::time::timeout(STEP, child.wait_with_output())
        .await
        .expect("the console did not stop after its output closed")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("standard output was closed"), "{stderr}");
    drop(stdin);
    // What was acknowledged is kept, the log is whole, and nothing after the failed write ran.
    assert_log_consistent(&project.tavern());
    assert_eq!(names_in_log(&project), ["Frodo", "Jake"]);
    let (ok, stdout, _) = run_tavern(project.path(), &["console"], "/agents\n").await;
    assert!(ok);
    assert!(stdout.contains("Frodo (mortal) Working"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summon_names_and_directories_are_checked_where_they_are_typed() {
    let project = Project::new();
    std::fs::create_dir(project.path().join("my dir")).unwrap();
    let input = "/summon a --name \"two words\"\n\
                 /summon b --dir nowhere\n\
                 /summon c --name Sam --dir \"my dir\"\n";
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], input).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "error #2: cannot use the name \"two words\": an agent's name is one word, without \
             spaces or quotes"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "error: --dir nowhere: {} is not a directory",
            project.path().join("nowhere").display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("ok #3 summoned Sam"), "{stdout}");
    assert_eq!(names_in_log(&project), ["Jake", "Sam"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_discord_token_is_called_malformed_and_never_shown() {
    let project = Project::new();
    let mut command = tavern_command(project.path(), &["serve"]);
    command
        .env("DISCORD_TOKEN", "not a token\u{7}sekrit")
        .env("TAVERN_DISCORD__GUILD_ID", "1")
        .env("TAVERN_DISCORD__CHANNEL_ID", "2")
        .stdin(Stdio::null());
    let output = tokio::time::timeout(STEP, command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("DISCORD_TOKEN is malformed"), "{stderr}");
    assert!(!stderr.contains("sekrit"), "{stderr}");
    assert!(!stderr.contains("channel"), "{stderr}");
    // Nothing was opened: the token is checked before the tavern.
    assert!(!project.tavern().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_on_a_pipe_carry_no_colour_codes() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "").await;
    assert!(ok);
    // A torn last line makes the log writer warn through tracing on stderr, which is a pipe here.
    let log = project.tavern().join("log/main.jsonl");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, b"{\"v\":1,\"seq\":").unwrap();
    let (ok, stdout, stderr) = run_tavern(project.path(), &["console"], "").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("the log's last line was torn"), "{stdout}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
