//! Shared test support: a temporary project, the real binary driven over pipes, and `.tavern/` readers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long any single expected line may take to appear.
pub const STEP: Duration = Duration::from_secs(20);

/// The scripted model used by the console tests (the same file as the offline demo).
pub fn demo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo-script.toml")
}

/// A temporary project directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("create a temporary project"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn tavern(&self) -> PathBuf {
        self.path().join(".tavern")
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, content).expect("write a project file");
        path
    }
}

/// The real `tavern` binary, as a command with a clean environment.
pub fn tavern_command(project: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tavern"));
    command
        .arg("--project")
        .arg(project)
        .args(args)
        .current_dir(project)
        .env_remove("RUST_LOG")
        .env("TAVERN_CONSOLE__USER", "alice")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Tests are hermetic: a developer's own keys, model addresses or CLI settings never reach them.
    for (key, _) in std::env::vars() {
        let foreign = key.starts_with("ANTHROPIC_")
            || key.starts_with("OPENAI_")
            || key.starts_with("CLAUDE_");
        if foreign || (key.starts_with("TAVERN_") && key != "TAVERN_CONSOLE__USER") {
            command.env_remove(key);
        }
    }
    command
}

/// A running `tavern console`, its output collected line by line.
pub struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stdout line seen so far, for failure messages.
    pub transcript: Vec<String>,
    stderr: mpsc::UnboundedReceiver<String>,
}

impl Console {
    /// Starts `tavern console` on the project with extra arguments.
    pub fn start(project: &Path, args: &[&str]) -> Console {
        Console::start_with_env(project, args, &[])
    }

    /// Starts `tavern console` with extra arguments and environment variables.
    pub fn start_with_env(project: &Path, args: &[&str], env: &[(String, String)]) -> Console {
        let mut all = vec!["console"];
        all.extend_from_slice(args);
        let mut command = tavern_command(project, &all);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the tavern binary");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, stderr) = mpsc::unbounded_channel();
        let err = child.stderr.take().expect("stderr is piped");
        tokio::spawn(async move {
            let mut reader = BufReader::new(err).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            stdin,
            lines,
            transcript: Vec::new(),
            stderr,
        }
    }

    /// Types a line.
    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        tokio::time::timeout(STEP, async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        })
        .await
        .expect("writing to the console timed out")
        .expect("write to the console");
    }

    fn stderr_text(&mut self) -> String {
        let mut out = Vec::new();
        while let Ok(line) = self.stderr.try_recv() {
            out.push(line);
        }
        out.join("\n")
    }

    /// The next line, or `None` at end of output; panics after [`STEP`].
    pub async fn next_line(&mut self) -> Option<String> {
        match tokio::time::timeout(STEP, self.lines.recv()).await {
            Ok(Some(line)) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            Ok(None) => None,
            Err(_) => {
                let stderr = self.stderr_text();
                panic!(
                    "no console output for {STEP:?}.\n--- transcript ---\n{}\n--- stderr ---\n{stderr}",
                    self.transcript.join("\n")
                )
            }
        }
    }

    /// The next line if one comes within `wait`; `None` if the output stays quiet or ends.
    pub async fn next_line_within(&mut self, wait: std::time::Duration) -> Option<String> {
        match tokio::time::timeout(wait, self.lines.recv()).await {
            Ok(Some(line)) => {
                self.transcript.push(line.clone());
                Some(line)
            }
            _ => None,
        }
    }

    /// Waits for a line matching `pred` and returns it; panics (with the transcript) on timeout or EOF.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.transcript.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Ok(None) => {
                    let stderr = self.stderr_text();
                    panic!(
                        "the console ended before {what}.\n--- transcript ---\n{}\n--- stderr ---\n{stderr}",
                        self.transcript.join("\n")
                    )
                }
                Err(_) => {
                    let stderr = self.stderr_text();
                    panic!(
                        "timed out waiting for {what}.\n--- transcript ---\n{}\n--- stderr ---\n{stderr}",
                        self.transcript.join("\n")
                    )
                }
            }
        }
    }

    /// Waits until a line containing each needle has been seen, in any order (for output of agents that
    /// work concurrently).
    pub async fn expect_all(&mut self, needles: &[&str]) {
        let mut missing: Vec<&str> = needles.to_vec();
        let deadline = tokio::time::Instant::now() + STEP;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => {
                    missing.retain(|n| !line.contains(n));
                    self.transcript.push(line);
                }
                _ => {
                    let stderr = self.stderr_text();
                    panic!(
                        "never saw {missing:?}.\n--- transcript ---\n{}\n--- stderr ---\n{stderr}",
                        self.transcript.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub async fn expect_contains(&mut self, needle: &str) -> String {
        let owned = needle.to_string();
        self.expect(&format!("a line containing {needle:?}"), move |l| {
            l.contains(&owned)
        })
        .await
    }

    /// Sends a command and collects the lines of its output (those `belongs` accepts; event lines
    /// printed meanwhile are skipped) up to and including the line `last` accepts.
    pub async fn command_block(
        &mut self,
        command: &str,
        belongs: impl Fn(&str) -> bool,
        last: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        self.send(command).await;
        let mut block = Vec::new();
        loop {
            let line = self.next_line().await.unwrap_or_else(|| {
                panic!(
                    "the console ended during {command}:\n{}",
                    self.transcript.join("\n")
                )
            });
            if !belongs(&line) {
                continue;
            }
            let done = last(&line);
            block.push(line);
            if done {
                return block;
            }
        }
    }

    /// `/agents`, up to the line naming `last_agent`.
    pub async fn agents(&mut self, last_agent: &str) -> Vec<String> {
        let needle = format!("{last_agent} (");
        self.command_block("/agents", is_tree_line, move |l| l.contains(&needle))
            .await
    }

    /// The process id of the running tavern.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the console is running")
    }

    /// Sends `/quit` and waits for a clean exit; returns the output not yet read (see
    /// [`Console::quit_with_transcript`] for all of it).
    pub async fn quit(mut self) -> Vec<String> {
        self.send("/quit").await;
        self.finish().await
    }

    /// Sends `/quit` and waits for a clean exit; returns every line the console printed, from its
    /// first (unlike [`Console::quit`], which returns only those after the last expectation).
    pub async fn quit_with_transcript(self) -> Vec<String> {
        let mut transcript = self.transcript.clone();
        transcript.extend(self.quit().await);
        transcript
    }

    /// Closes stdin (end of input) and waits for exit.
    pub async fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout(STEP, self.lines.recv()).await {
            rest.push(line);
        }
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the console did not exit in time")
            .expect("wait for the console");
        let stderr = self.stderr_text();
        assert!(
            status.success(),
            "the console exited with {status}.\n--- transcript ---\n{}\n{}\n--- stderr ---\n{stderr}",
            self.transcript.join("\n"),
            rest.join("\n")
        );
        rest
    }

    /// Sends SIGTERM (stdin stays open) and waits for a clean exit; returns the remaining output.
    pub async fn terminate(mut self) -> Vec<String> {
        let pid = self.child.id().expect("the console is running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("send SIGTERM");
        let mut rest = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout(STEP, self.lines.recv()).await {
            rest.push(line);
        }
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the console did not exit after SIGTERM")
            .expect("wait for the console");
        assert!(status.success(), "exit status {status}: {rest:?}");
        rest
    }

    /// Kills the process with SIGKILL and waits for it.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("send SIGKILL");
        tokio::time::timeout(STEP, self.child.wait())
            .await
            .expect("the killed console did not exit")
            .expect("wait for the killed console");
    }
}

/// Whether a line is part of the `/agents` tree (the root, or a branch drawn with box characters).
pub fn is_tree_line(line: &str) -> bool {
    line.starts_with("Jake (")
        || ["├─ ", "└─ ", "│  ", "   "]
            .iter()
            .any(|p| line.starts_with(p))
}

/// Runs the binary to completion with the given arguments and stdin; returns (success, stdout, stderr).
pub async fn run_tavern(project: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = tavern_command(project, args).spawn().expect("start tavern");
    let mut stdin = child.stdin.take().expect("stdin");
    // Input is written while the output is read: a large input and a chatty answer would otherwise each
    // wait for the other's pipe to drain. A tavern that exits before reading everything (a start that is
    // refused) closes its end, which is not the test's failure.
    let input = input.as_bytes().to_vec();
    let writer = async move {
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let (_, output) = tokio::time::timeout(STEP, async {
        tokio::join!(writer, child.wait_with_output())
    })
    .await
    .expect("tavern did not exit in time");
    let output = output.expect("wait for tavern");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The `(name, parent, state)` of every agent document under `.tavern/agents/`, sorted by name.
pub fn agents_on_disk(tavern: &Path) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    let dir = tavern.join("agents");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("read agents dir").path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read agent doc");
        let (front, _body): (tavern::domain::projection::AgentFront, String) =
            tavern::blackboard::front_matter::parse(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{text}", path.display()));
        out.push((front.id, front.parent, front.state));
    }
    out.sort();
    out
}

/// The same triples from a replay of the log.
pub fn agents_in_log(tavern: &Path) -> Vec<(String, Option<String>, String)> {
    let state = tavern::app::replay(&tavern.join("log"), "main", None).expect("the log replays");
    let mut out: Vec<_> = state
        .agents_in_order()
        .map(|n| {
            (
                n.name.clone(),
                n.parent.clone(),
                n.state.as_str().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Checks that every document under `.tavern/` parses.
pub fn all_documents_parse(tavern: &Path) {
    use tavern::blackboard::front_matter;
    use tavern::domain::projection::{AgentFront, MessageFront, WorkFront};
    fn each(dir: &Path, mut f: impl FnMut(&Path, &str)) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries {
                let path = entry.expect("read dir").path();
                if path.extension().and_then(|e| e.to_str()) == Some("md") {
                    let text = std::fs::read_to_string(&path).expect("read doc");
                    f(&path, &text);
                }
            }
        }
    }
    each(&tavern.join("agents"), |p, t| {
        front_matter::parse::<AgentFront>(t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    });
    each(&tavern.join("messages"), |p, t| {
        front_matter::parse::<MessageFront>(t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    });
    for dir in ["work/pending", "work/completed"] {
        each(&tavern.join(dir), |p, t| {
            front_matter::parse::<WorkFront>(t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        });
    }
}

/// A library-level configuration for a temporary project.
pub fn test_config(
    project: &Project,
    theme: &str,
    model: Option<tavern::model::ModelSpec>,
) -> tavern::config::Config {
    tavern::config::Config {
        project: project.path().to_path_buf(),
        tavern_dir: project.tavern(),
        theme: theme.to_string(),
        models: tavern::model::KindModels::all(model.map(|m| m.to_string())),
        max_retries: 1,
        permissions: Default::default(),
        discord: Default::default(),
        max_concurrent_calls: 4,
        verify_timeout: Duration::from_secs(10),
        output_limit: 1024,
        // Library tests of other things let agents' own commitments count at once.
        approve_own_commitments: false,
        console_user: "alice".to_string(),
        max_restarts: 2,
        restart_window: Duration::from_secs(60),
    }
}

/// Summons a mortal under `parent` as alice and returns its name.
pub async fn summon(tavern: &tavern::executor::Tavern, parent: &str, assignment: &str) -> String {
    use tavern::domain::{Actor, Intent, Outcome, Summon};
    let receipt = tavern
        .submit(
            Actor::User("alice".into()),
            Intent::Summon(Summon {
                parent: parent.into(),
                assignment: Some(assignment.into()),
                kind: tavern_plugin_api::AgentKind::Mortal,
                expert: None,
                name: None,
                model: None,
                workdir: None,
            }),
            None,
        )
        .await
        .expect("the log accepts the summon");
    match receipt {
        tavern::executor::Receipt::Accepted { outcomes, .. } => outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::AgentSummoned(n) => Some(n.name.clone()),
                _ => None,
            })
            .expect("a summon names its agent"),
        other => panic!("the summon was refused: {other:?}"),
    }
}

/// Checks the raw log for what a correct run never writes: a second terminal record for an entry, any
/// record for an entry after its terminal one, two entries caused by the same tool call, or two
/// entries from the same outside request (origin).
pub fn assert_log_consistent(tavern: &Path) {
    use std::collections::{HashMap, HashSet};
    let text = std::fs::read_to_string(tavern.join("log/main.jsonl")).expect("read the log");
    let mut finished: HashSet<u64> = HashSet::new();
    let mut causes: HashMap<(u64, u64), u64> = HashMap::new();
    let mut origins: HashMap<String, u64> = HashMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("log line {}: {e}", n + 1));
        let seq = record["seq"].as_u64().expect("every record has a seq");
        assert!(
            !finished.contains(&seq),
            "log line {}: a record for #{seq} after it finished:\n{line}",
            n + 1
        );
        let status = record["status"].as_str().unwrap_or_default();
        if matches!(status, "executed" | "failed" | "cancelled") {
            finished.insert(seq);
        }
        if let (Some(cause), Some(call)) = (
            record["cause"]["seq"].as_u64(),
            record["cause"]["call"].as_u64(),
        ) {
            if let Some(other) = causes.insert((cause, call), seq) {
                panic!("tool call {call} of turn #{cause} became two entries: #{other} and #{seq}");
            }
        }
        if let Some(origin) = record["origin"].as_str() {
            if let Some(other) = origins.insert(origin.to_string(), seq) {
                panic!("{origin} became two entries: #{other} and #{seq}");
            }
        }
    }
}
