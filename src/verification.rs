//! Verification: Tavern, not the agent, runs every commitment's assertion and records the verdict.

use tavern_plugin_api::CheckSummary;

use crate::domain::decide::verification_verdict;
use crate::executor::{ExecError, Tavern};
use crate::log::{Seq, Status};
use crate::verify::{run_assertion, AssertionSpec};

/// Cancels `stop` once `agent` is no longer Verifying, then waits forever (the assertion, seeing the
/// cancellation, kills its process group and finishes the `select!` this runs in).
async fn stop_when_not_verifying(
    tavern: &Tavern,
    agent: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> std::convert::Infallible {
    let mut events = tavern.subscribe();
    loop {
        let verifying = tavern.read_head(|s| {
            s.agent(agent)
                .is_some_and(|n| n.state == tavern_plugin_api::AgentState::Verifying)
        });
        if !verifying {
            stop.cancel();
            return std::future::pending().await;
        }
        // Any event may be the one; a lagged or closed stream just means checking again or waiting.
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = events.recv().await {
            return std::future::pending().await;
        }
    }
}

/// Runs the assertions of `agent` for the SignalDone entry `seq`, then records each check and the
/// verdict (Done, waiting for sign-off, or back to Working with a gap report) as the entry's outcome.
///
/// If Tavern shuts down mid-way, nothing is recorded and the entry stays open; the next start runs the
/// verification again from the beginning, which is safe because assertions only check.
pub async fn run(tavern: &Tavern, seq: Seq, agent: &str) -> Result<(), ExecError> {
    let commitments = tavern
        .read_head(|s| s.agent(agent).map(|n| n.commitments.clone()))
        .unwrap_or_default();
    let settings = tavern.settings().clone();
    let mut checks = Vec::with_capacity(commitments.len());
    // A commitment a person rejected is not run: they refused it, perhaps because running it is slow
    // or harmful.
    for (index, commitment) in commitments.iter().enumerate().filter(|(_, c)| c.counts()) {
        // An agent reaped mid-verification needs no more checks; the verdict records it as cancelled.
        if tavern.read_head(|s| {
            s.agent(agent)
                .is_none_or(|n| n.state != tavern_plugin_api::AgentState::Verifying)
        }) {
            break;
        }
        let spec = AssertionSpec {
            command: &commitment.assertion,
            dir: &settings.project,
            timeout: settings.verify_timeout,
            output_limit: settings.output_limit,
        };
        // The assertion is stopped early by shutdown, or when its agent stops verifying (reaped).
        let stop = tavern.cancel_token().child_token();
        let report = tokio::select! {
            report = run_assertion(spec, &stop) => report,
            never = stop_when_not_verifying(tavern, agent, &stop) => match never {},
        };
        let check = match report {
            Ok(report) if report.cancelled && tavern.cancel_token().is_cancelled() => return Ok(()),
            Ok(report) if report.cancelled => break,
            Ok(report) => CheckSummary {
                passed: report.passed(),
                exit_code: report.exit_code,
                timed_out: report.timed_out,
                output_tail: report.output_tail.clone(),
                duration_ms: report.duration.as_millis() as u64,
            },
            // The assertion could not even start (the project directory vanished, `sh` is missing):
            // that is a failed check with the reason as its output, never a pass.
            Err(e) => CheckSummary {
                passed: false,
                exit_code: None,
                timed_out: false,
                output_tail: format!("could not run the assertion: {e}"),
                duration_ms: 0,
            },
        };
        checks.push((index, check));
    }
    let agent = agent.to_string();
    tavern
        .update_with(seq, move |state, env| {
            match verification_verdict(state, &agent, checks, env) {
                Some(outcomes) => (Status::Executed, outcomes, None),
                None => (
                    Status::Cancelled,
                    Vec::new(),
                    Some(format!(
                        "{agent} was no longer verifying when its checks finished (it was reaped)"
                    )),
                ),
            }
        })
        .await?;
    Ok(())
}
