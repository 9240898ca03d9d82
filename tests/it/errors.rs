//! Bad input gets a clear error that names the problem, and loses nothing.

use crate::support::{run_tavern, Console, Project};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_transition_is_refused_by_name_and_recorded() {
    let project = Project::new();
    let mut console = Console::start(project.path(), &[]);
    console.send("/summon build it").await;
    console.expect_contains("ok #2 summoned Frodo").await;
    console.send("/dismiss Frodo").await;
    let error = console.expect_contains("error #3:").await;
    assert!(
        error.contains("Frodo cannot go from Working to DismissedReaped")
            && error.contains("only a Done agent can be dismissed"),
        "{error}"
    );
    console.send("/done Jake").await;
    let error = console.expect_contains("error #4:").await;
    assert!(error.contains("Jake"), "{error}");
    // The refusals are in the log, and Frodo is untouched.
    let log = console
        .command_block("/log 2", |l| l.starts_with('#'), |l| l.starts_with("#4 "))
        .await;
    assert!(
        log[0].contains("dismiss Frodo → failed: Frodo cannot go from Working"),
        "{log:?}"
    );
    let tree = console.agents("Frodo").await;
    assert!(
        tree.last().unwrap().contains("Frodo (mortal) Working"),
        "{tree:?}"
    );
    console.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_traversal_name_is_refused_and_nothing_is_written_outside() {
    let project = Project::new();
    let mut console = Console::start(project.path(), &[]);
    console.send("/summon escape --name ../../evil").await;
    let error = console.expect_contains("error #2:").await;
    assert!(
        error.contains("cannot use the name \"../../evil\"") && error.contains(".."),
        "{error}"
    );
    console.send("/summon escape --name a/b").await;
    let error = console.expect_contains("error #3:").await;
    assert!(error.contains("\"a/b\""), "{error}");
    console.quit().await;
    assert!(!project.path().join("evil.md").exists());
    assert!(!project.path().parent().unwrap().join("evil.md").exists());
    let agents: Vec<_> = std::fs::read_dir(project.tavern().join("agents"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(agents, vec!["Jake.md".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_config_names_the_key() {
    let project = Project::new();
    let bad_type = project.write("bad-type.toml", "[verify]\ntimeout_secs = \"soon\"\n");
    let (ok, _, stderr) = run_tavern(
        project.path(),
        &["--config", bad_type.to_str().unwrap(), "console"],
        "",
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("verify.timeout_secs"), "{stderr}");

    let unknown = project.write("unknown.toml", "[model]\ndefualt = \"x\"\n");
    let (ok, _, stderr) = run_tavern(
        project.path(),
        &["--config", unknown.to_str().unwrap(), "console"],
        "",
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("defualt"), "{stderr}");

    let bad_value = project.write("zero.toml", "[model]\nmax_concurrent_calls = 0\n");
    let (ok, _, stderr) = run_tavern(
        project.path(),
        &["--config", bad_value.to_str().unwrap(), "console"],
        "",
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("model.max_concurrent_calls"), "{stderr}");

    let (ok, _, stderr) = run_tavern(project.path(), &["--model", "gpt:5", "console"], "").await;
    assert!(!ok);
    assert!(
        stderr.contains("--model") && stderr.contains("gpt:5"),
        "{stderr}"
    );
    // None of these created any state.
    assert!(!project.tavern().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_apply_and_are_validated() {
    let project = Project::new();
    let mut command = crate::support::tavern_command(project.path(), &["console"]);
    command.env("TAVERN_TAVERN__THEME", "talmudic");
    let mut child = command.spawn().unwrap();
    drop(child.stdin.take());
    let out = tokio::time::timeout(crate::support::STEP, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let (_, stdout, _) = run_tavern(project.path(), &["console"], "/summon learn\n").await;
    assert!(stdout.contains("summoned Hillel"), "{stdout}");

    // A secret that happens to start with TAVERN_ is not configuration, and goes nowhere.
    let mut command = crate::support::tavern_command(project.path(), &["console"]);
    command.env("TAVERN_DISCORD_TOKEN", "sekrit-token-123");
    let out = tokio::time::timeout(crate::support::STEP, command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in walk(&project.tavern()) {
        let text = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&text).contains("sekrit-token-123"),
            "{} holds the secret",
            entry.display()
        );
    }

    let mut command = crate::support::tavern_command(project.path(), &["console"]);
    command.env("TAVERN_TAVERN__THEME", "klingon");
    let out = tokio::time::timeout(crate::support::STEP, command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("tavern.theme") && stderr.contains("klingon"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_line_in_the_middle_stops_start_with_file_and_line() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon a\n/summon b\n").await;
    assert!(ok);
    let log = project.tavern().join("log/main.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    lines[2] = "{\"v\":1,\"seq\":2,\"branch\":\"main\",GARBAGE";
    let damaged = format!("{}\n", lines.join("\n"));
    std::fs::write(&log, &damaged).unwrap();

    let (ok, _, stderr) = run_tavern(project.path(), &["console"], "/summon c\n").await;
    assert!(!ok, "Tavern must not start on a damaged log");
    assert!(stderr.contains("main.jsonl"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    // Nothing was lost or changed: the damaged file is exactly as it was.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), damaged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_cut_with_a_warning() {
    let project = Project::new();
    let (ok, _, _) = run_tavern(project.path(), &["console"], "/summon a\n").await;
    assert!(ok);
    let log = project.tavern().join("log/main.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"v\":1,\"seq\":3,\"bra");
    std::fs::write(&log, &text).unwrap();
    let (ok, stdout, _) = run_tavern(project.path(), &["console"], "/agents\n").await;
    assert!(ok);
    assert!(stdout.contains("the log's last line was torn"), "{stdout}");
    assert!(stdout.contains("Frodo (mortal) Working"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_assertion_is_killed_at_the_timeout_and_reported() {
    let project = Project::new();
    let config = project.write("fast.toml", "[verify]\ntimeout_secs = 0.5\n");
    let mut console = Console::start(project.path(), &["--config", config.to_str().unwrap()]);
    console.send("/summon wait forever").await;
    console.expect_contains("ok #2 summoned Frodo").await;
    console
        .send("/commit Frodo it finishes -- sleep 300 & sleep 300")
        .await;
    console.expect_contains("ok #3").await;
    console.send("/done Frodo").await;
    console
        .expect_contains("✗ Frodo commitment #1 timed out (process group killed)")
        .await;
    console
        .expect_contains("· Frodo: Verifying → Working (verification failed)")
        .await;
    let gap = console.expect_contains("timed out and was killed").await;
    assert!(gap.contains("#1 it finishes"), "{gap}");
    console.quit().await;
}

/// Every file under a directory.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}
