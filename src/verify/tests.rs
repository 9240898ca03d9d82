//! Tests for assertion running: verdicts, output capture and truncation, working directory, timeouts,
//! cancellation and clean-up of background grandchildren.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;

/// Upper bound for any single test step, so a regression fails the test instead of hanging the suite.
const STEP: Duration = Duration::from_secs(20);

fn spec<'a>(command: &'a str, dir: &'a Path) -> AssertionSpec<'a> {
    AssertionSpec {
        command,
        dir,
        timeout: Duration::from_secs(10),
        output_limit: 4096,
    }
}

/// Runs `spec` with a fresh token, bounded by [`STEP`], and expects it to be observable.
async fn run(spec: AssertionSpec<'_>) -> CheckReport {
    timeout(STEP, run_assertion(spec, &CancellationToken::new()))
        .await
        .expect("run_assertion exceeded the test step bound")
        .expect("run_assertion failed")
}

/// A killed process that nobody has reaped yet is a zombie; it no longer runs, so it counts as gone.
/// Checking for zombies matters because orphans are reaped by PID 1, which may not do so promptly here.
fn process_gone(pid: Pid) -> bool {
    if kill(pid, None) == Err(Errno::ESRCH) {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Polls until `pid` is gone, failing the test if it survives for a few seconds.
async fn assert_gone_soon(pid: Pid) {
    let gone = timeout(Duration::from_secs(5), async {
        while !process_gone(pid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "background process {pid} survived the kill");
}

/// Reads the background pid that a test command printed on its first output line.
fn first_line_pid(report: &CheckReport) -> Pid {
    let line = report.output_tail.lines().next().unwrap_or_default();
    let raw: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected a pid first, got {:?}", report.output_tail));
    Pid::from_raw(raw)
}

#[tokio::test]
async fn true_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(spec("true", dir.path())).await;
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.exit_code, Some(0));
    assert_eq!(report.signal, None);
    assert!(!report.timed_out && !report.cancelled);
}

#[tokio::test]
async fn exit_code_is_reported_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(spec("exit 3", dir.path())).await;
    assert_eq!(report.exit_code, Some(3));
    assert!(!report.passed());
    assert!(!report.timed_out && !report.cancelled);
}

#[tokio::test]
async fn stdout_then_stderr_is_captured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(spec("echo hi; echo err >&2", dir.path())).await;
    assert!(report.passed());
    assert_eq!(report.output_tail, "hi\nerr\n");
}

#[tokio::test]
async fn stdin_is_null_so_readers_do_not_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(spec("cat", dir.path())).await;
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.output_tail, "");
}

#[tokio::test]
async fn big_output_is_truncated_to_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(spec("yes | head -c 1000000", dir.path())).await;
    assert!(report.passed(), "exit {:?}", report.exit_code);
    assert_eq!(report.output_tail.len(), 4096);
    // One million bytes of "y\n" end on a newline, so the last 4096 bytes are 2048 whole lines.
    assert_eq!(report.output_tail, "y\n".repeat(2048));
}

#[tokio::test]
async fn combined_tail_keeps_the_end_of_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec("printf out; printf err >&2", dir.path());
    s.output_limit = 5;
    let report = run(s).await;
    assert_eq!(report.output_tail, "uterr");
}

#[tokio::test]
async fn truncation_starts_on_a_char_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bytes: "a" (1), "é" (2), "€" (3); octal escapes keep the test independent of the locale.
    let command = r"printf 'a\303\251\342\202\254'";
    let mut s = spec(command, dir.path());

    s.output_limit = 5;
    assert_eq!(run(s).await.output_tail, "é€");

    // Four bytes would start inside "é", so its orphaned continuation byte is dropped.
    s.output_limit = 4;
    assert_eq!(run(s).await.output_tail, "€");

    s.output_limit = 0;
    assert_eq!(run(s).await.output_tail, "");
}

#[tokio::test]
async fn invalid_utf8_is_lossy_and_still_within_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(r"printf 'ab\377\377'", dir.path());
    s.output_limit = 4;
    let report = run(s).await;
    assert!(report.output_tail.len() <= 4, "{:?}", report.output_tail);
    assert!(report.output_tail.ends_with('\u{FFFD}'));
}

#[tokio::test]
async fn runs_in_the_given_directory() {
    let with_marker = tempfile::tempdir().expect("tempdir");
    std::fs::write(with_marker.path().join("marker"), b"x").expect("write marker");
    let without_marker = tempfile::tempdir().expect("tempdir");

    assert!(run(spec("test -f marker", with_marker.path()))
        .await
        .passed());
    let report = run(spec("test -f marker", without_marker.path())).await;
    assert_eq!(report.exit_code, Some(1));
}

#[tokio::test]
async fn timeout_kills_the_command_and_its_background_grandchild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec("sleep 30 & echo $!; sleep 30", dir.path());
    s.timeout = Duration::from_millis(300);

    let started = Instant::now();
    let report = run(s).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    assert!(report.timed_out, "{report:?}");
    assert!(!report.cancelled);
    assert!(!report.passed());
    assert_eq!(report.exit_code, None);
    assert_eq!(report.signal, Some(Signal::SIGKILL as i32));
    assert_gone_soon(first_line_pid(&report)).await;
}

#[tokio::test]
async fn cancellation_stops_the_command_and_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });

    let mut s = spec("sleep 30 & echo $!; sleep 30", dir.path());
    s.timeout = Duration::from_secs(60);
    let started = Instant::now();
    let report = timeout(STEP, run_assertion(s, &cancel))
        .await
        .expect("run_assertion exceeded the test step bound")
        .expect("run_assertion failed");
    assert!(started.elapsed() < Duration::from_secs(5));
    timeout(STEP, canceller)
        .await
        .expect("canceller exceeded the test step bound")
        .expect("canceller panicked");

    assert!(report.cancelled, "{report:?}");
    assert!(!report.timed_out);
    assert!(!report.passed());
    assert_eq!(report.signal, Some(Signal::SIGKILL as i32));
    assert_gone_soon(first_line_pid(&report)).await;
}

#[tokio::test]
async fn already_cancelled_token_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let report = timeout(STEP, run_assertion(spec("touch ran", dir.path()), &cancel))
        .await
        .expect("run_assertion exceeded the test step bound")
        .expect("run_assertion failed");
    assert!(report.cancelled);
    assert!(!report.passed());
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn background_job_left_after_exit_is_killed_and_does_not_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let report = run(spec("sleep 30 & echo $!", dir.path())).await;
    // The drain waits out its grace period once, then kills the group; well under the 30 s sleep.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(report.passed(), "{report:?}");
    assert_gone_soon(first_line_pid(&report)).await;
}

#[tokio::test]
async fn missing_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist");
    let result = timeout(
        STEP,
        run_assertion(spec("true", &missing), &CancellationToken::new()),
    )
    .await
    .expect("run_assertion exceeded the test step bound");
    let err = result.expect_err("a missing directory must be rejected");
    assert!(matches!(err, VerifyError::DirNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("does-not-exist"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

#[tokio::test]
async fn file_instead_of_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write file");
    let result = timeout(
        STEP,
        run_assertion(spec("true", &file), &CancellationToken::new()),
    )
    .await
    .expect("run_assertion exceeded the test step bound");
    assert!(matches!(result, Err(VerifyError::NotADirectory { .. })));
}

#[test]
fn tail_keeps_only_the_last_bytes_across_chunks() {
    let mut tail = Tail::new(4);
    tail.push(b"ab");
    tail.push(b"cd");
    assert!(!tail.truncated);
    tail.push(b"ef");
    assert!(tail.truncated);
    assert_eq!(tail.to_bytes(), b"cdef");
    tail.push(b"0123456789");
    assert_eq!(tail.to_bytes(), b"6789");
}

#[test]
fn passed_requires_exit_zero_without_timeout_or_cancellation() {
    let ok = CheckReport {
        exit_code: Some(0),
        signal: None,
        timed_out: false,
        cancelled: false,
        output_tail: String::new(),
        duration: Duration::ZERO,
    };
    assert!(ok.passed());
    assert!(!CheckReport {
        timed_out: true,
        ..ok.clone()
    }
    .passed());
    assert!(!CheckReport {
        cancelled: true,
        ..ok.clone()
    }
    .passed());
    assert!(!CheckReport {
        exit_code: None,
        signal: Some(9),
        ..ok
    }
    .passed());
}
