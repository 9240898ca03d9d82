//! Verification: Tavern, not the agent, runs every commitment's assertion and records the verdict.

use tavern_plugin_api::CheckSummary;

use crate::domain::decide::verification_verdict;
use crate::executor::{ExecError, Tavern};
use crate::log::{Seq, Status};
use crate::verify::{run_assertion, AssertionSpec};

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
    for commitment in &commitments {
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
        let check = match run_assertion(spec, tavern.cancel_token()).await {
            Ok(report) if report.cancelled => return Ok(()),
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
        checks.push(check);
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
