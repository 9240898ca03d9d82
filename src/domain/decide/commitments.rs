//! Commitments: adding them, reviewing an agent's own proposals, and the verdict of a verification (Done, back to work with a gap report, or waiting for a person).

use super::*;

pub(super) fn add_commitment(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    description: &str,
    assertion: &str,
    needs_signoff: bool,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    may_act_on(state, actor, node, "add commitments to")?;
    if node.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake makes no commitments; the agents doing the work do".into(),
        ));
    }
    if description.trim().is_empty() {
        return Err(DomainError::Empty("the commitment's description"));
    }
    if assertion.trim().is_empty() {
        return Err(DomainError::Empty("the commitment's assertion"));
    }
    if matches!(node.state, AgentState::Verifying | AgentState::Done) {
        return Err(DomainError::NotAllowed(format!(
            "{} is {}; commitments can only be added before it signals done",
            node.name, node.state
        )));
    }
    // An agent's own promise is a proposal to the person who asked for the work; what a person or a
    // parent asks of it counts at once.
    let proposed = env.approve_own_commitments
        && node.requester.is_some()
        && matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name));
    let commitment = Commitment {
        description: description.trim().to_string(),
        assertion: assertion.trim().to_string(),
        needs_signoff,
        signed_off_by: None,
        last_check: None,
        approval: if proposed {
            Approval::Proposed
        } else {
            Approval::Accepted
        },
    };
    let mut outcomes = Vec::new();
    if proposed {
        outcomes.push(Outcome::PendingOpened {
            id: state.next_pending_id(),
            agent: node.name.clone(),
            item: PendingItem::Commitment {
                index: node.commitments.len(),
                description: commitment.description.clone(),
                assertion: commitment.assertion.clone(),
            },
        });
    }
    outcomes.insert(
        0,
        Outcome::CommitmentAdded {
            agent: node.name.clone(),
            index: node.commitments.len(),
            commitment,
        },
    );
    Ok(Decision::done(outcomes))
}

/// What a person's word on one commitment (an approval, a rejection, a sign-off; `change` applies it)
/// does to an agent that already signalled done: with its checks finished, it is Done once every
/// commitment that counts is satisfied, and back at work when none counts any more.
pub(super) fn after_review(
    state: &TavernState,
    node: &AgentNode,
    index: usize,
    change: impl FnOnce(&mut Commitment),
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    if node.state != AgentState::Verifying || state.verification_running(&node.name) {
        return Ok(Vec::new());
    }
    let mut after = node.commitments.clone();
    change(&mut after[index]);
    let counted: Vec<&Commitment> = after.iter().filter(|c| c.counts()).collect();
    if counted.is_empty() {
        return Ok(vec![transition(
            node,
            AgentState::Working,
            Some("none of its commitments counts any more".into()),
        )?]);
    }
    if counted.iter().all(|c| c.satisfied()) {
        return complete(state, node, env);
    }
    Ok(Vec::new())
}

pub(super) fn approve(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    number: usize,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let Actor::User(user) = actor else {
        return Err(DomainError::NotAllowed(
            "only a person can sign off a commitment".into(),
        ));
    };
    let node = live(state, agent)?;
    let count = node.commitments.len();
    let index =
        number
            .checked_sub(1)
            .filter(|i| *i < count)
            .ok_or(DomainError::NoSuchCommitment {
                agent: node.name.clone(),
                number,
                count,
            })?;
    if !node.commitments[index].needs_signoff {
        return Err(DomainError::NotAllowed(format!(
            "{}'s commitment #{number} does not need a sign-off; its assertion decides",
            node.name
        )));
    }
    let mut outcomes = vec![Outcome::CommitmentSignedOff {
        agent: node.name.clone(),
        index,
        by: user.clone(),
    }];
    // The last missing sign-off of an agent whose checks already passed completes it.
    outcomes.extend(after_review(
        state,
        node,
        index,
        |c| c.signed_off_by = Some(user.clone()),
        env,
    )?);
    Ok(Decision::done(outcomes))
}

/// Moves a verifying agent to Done, tells its parent, and dismisses drones.
pub(super) fn complete(
    state: &TavernState,
    node: &AgentNode,
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    let mut outcomes = vec![transition(
        node,
        AgentState::Done,
        Some("every commitment passed".into()),
    )?];
    let n = node.commitments.iter().filter(|c| c.counts()).count();
    outcomes.extend(tell_parent(
        state,
        &Actor::Tavern,
        node,
        format!("{} is Done: {n}/{n} commitments pass.", node.name),
        env,
    ));
    if registry::plugin(node.kind).policy().dismiss_when_done {
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Done,
            to: AgentState::DismissedReaped,
            reason: Some(format!("a {} ends itself once done", node.kind)),
        });
    }
    Ok(outcomes)
}

/// A notice to the node's parent, unless the parent is the one who acted (it already knows).
pub(super) fn tell_parent(
    state: &TavernState,
    actor: &Actor,
    node: &AgentNode,
    text: String,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(parent) = node.parent.as_deref().and_then(|p| state.agent(p)) else {
        return Vec::new();
    };
    if parent.state.is_dead()
        || matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&parent.name))
    {
        return Vec::new();
    }
    vec![message(
        env,
        Party::Tavern,
        Party::Agent(parent.name.clone()),
        MessageKind::Notice,
        text,
    )]
}

/// The outcomes of a verification: each check, then Done, a wait for sign-off, or back to Working with
/// a gap report. Returns `None` when the agent is no longer Verifying (it was reaped meanwhile).
pub fn verification_verdict(
    state: &TavernState,
    agent: &str,
    checks: Vec<(usize, CheckSummary)>,
    env: &mut DecideEnv<'_>,
) -> Option<Vec<Outcome>> {
    let node = state.agent(agent)?;
    let mut outcomes: Vec<Outcome> = checks
        .iter()
        .map(|(index, check)| Outcome::CommitmentChecked {
            agent: node.name.clone(),
            index: *index,
            check: check.clone(),
        })
        .collect();
    if node.state != AgentState::Verifying {
        return None;
    }
    // A rejected commitment neither blocks nor completes anything.
    let failures: Vec<(usize, &CheckSummary)> = checks
        .iter()
        .filter(|(i, c)| !c.passed && node.commitments.get(*i).is_some_and(Commitment::counts))
        .map(|(i, c)| (*i, c))
        .collect();
    if !node.commitments.iter().any(Commitment::counts) || !failures.is_empty() {
        let report = gap_report(node, &failures);
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Verifying,
            to: AgentState::Working,
            reason: Some("verification failed".into()),
        });
        outcomes.push(message(
            env,
            Party::Tavern,
            Party::Agent(node.name.clone()),
            MessageKind::Notice,
            report.clone(),
        ));
        outcomes.extend(tell_parent(
            state,
            &Actor::Tavern,
            node,
            format!("{} went back to Working. {report}", node.name),
            env,
        ));
        return Some(outcomes);
    }
    // What still waits for a person: proposals to approve, and sign-offs.
    let mut waiting = Vec::new();
    for (i, c) in node.commitments.iter().enumerate() {
        if !c.counts() {
            continue;
        }
        if c.awaits_approval() {
            let how = state
                .open_pending()
                .find(|p| {
                    p.agent.eq_ignore_ascii_case(&node.name)
                        && matches!(p.item, PendingItem::Commitment { index, .. } if index == i)
                })
                .map(|p| format!(" (/approve {})", p.id))
                .unwrap_or_default();
            waiting.push(format!("#{} needs your approval{how}", i + 1));
        } else if c.needs_signoff && c.signed_off_by.is_none() {
            waiting.push(format!(
                "#{} needs your sign-off (/approve {} {})",
                i + 1,
                node.name,
                i + 1
            ));
        }
    }
    if waiting.is_empty() {
        // `complete` only fails on an illegal transition, and the agent is Verifying here.
        outcomes.extend(complete(state, node, env).unwrap_or_default());
    } else {
        let to = node
            .requester
            .clone()
            .map(Party::User)
            .unwrap_or(Party::Tavern);
        outcomes.push(message(
            env,
            Party::Tavern,
            to,
            MessageKind::Question {
                class: QuestionClass::Quick,
            },
            format!(
                "{}'s checks pass; commitment {}.",
                node.name,
                waiting.join("; ")
            ),
        ));
    }
    Some(outcomes)
}

/// The gap report: which assertions failed, their exit codes and the end of their output.
pub fn gap_report(node: &AgentNode, failures: &[(usize, &CheckSummary)]) -> String {
    if node.commitments.is_empty() {
        return "Gap report: no commitments. Add at least one commitment with a shell assertion \
                before signalling done; Tavern verifies work only by running assertions."
            .to_string();
    }
    let counted = node.commitments.iter().filter(|c| c.counts()).count();
    if counted == 0 {
        return "Gap report: every commitment you made was rejected. Add a commitment the person \
                can accept before signalling done."
            .to_string();
    }
    let mut report = format!(
        "Gap report: {} of {counted} commitments failed.",
        failures.len(),
    );
    for (index, check) in failures {
        let commitment = &node.commitments[*index];
        let how = if check.timed_out {
            "timed out and was killed".to_string()
        } else {
            match check.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_string(),
            }
        };
        report.push_str(&format!(
            "\n#{} {} — `{}`: {how}",
            index + 1,
            commitment.description,
            commitment.assertion
        ));
        let tail = check.output_tail.trim_end();
        if !tail.is_empty() {
            report.push_str(&format!("\n  output: {}", tail.replace('\n', "\n  ")));
        }
    }
    report
}
