//! An agent's turns: starting one, and closing it when it ends or fails.

use super::*;

pub(super) fn take_turn(state: &TavernState, actor: &Actor, agent: &str) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} takes its own turns",
            node.name
        )));
    }
    let mut outcomes = Vec::new();
    match node.state {
        AgentState::Working => {}
        AgentState::Summoned | AgentState::WaitingForInput | AgentState::WaitingForWakeup => {
            outcomes.push(transition(
                node,
                AgentState::Working,
                Some("new input".into()),
            )?);
        }
        other => {
            return Err(DomainError::NotAllowed(format!(
                "{} is {other} and takes no turns now",
                node.name
            )))
        }
    }
    outcomes.push(Outcome::InboxRead {
        agent: node.name.clone(),
        from: node.read_upto,
        upto: node.inbox.len(),
    });
    Ok(Decision {
        outcomes,
        continues: true,
    })
}

/// The outcomes of a failed turn. Its input is handed back so the restarted task reads it again, while
/// the agent has restarts left. Past the limit an agent is reaped (by the restart that follows), and
/// Jake — who is never reaped — drops that input and tells the person, who can say it again.
pub fn fail_turn(
    state: &TavernState,
    agent: &str,
    inbox_from: usize,
    error: &str,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(node) = state.agent(agent) else {
        return Vec::new();
    };
    if node.recent_restarts(env.now, env.restart_window) < env.max_restarts {
        return vec![Outcome::InboxRewound {
            agent: node.name.clone(),
            upto: inbox_from,
        }];
    }
    if node.kind != AgentKind::Jake {
        return Vec::new();
    }
    let to = node
        .last_human
        .clone()
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    vec![message(
        env,
        Party::Tavern,
        to,
        MessageKind::Notice,
        format!(
            "Jake could not answer after {} tries: {error}. Your message is kept in the log; \
             say it again once the model is back.",
            env.max_restarts + 1
        ),
    )]
}

/// The outcomes that end a turn: the reply posted to the agent's conversation.
pub fn finish_turn(
    state: &TavernState,
    agent: &str,
    reply_text: &str,
    env: &mut DecideEnv<'_>,
) -> Vec<Outcome> {
    let Some(node) = state.agent(agent) else {
        return Vec::new();
    };
    if reply_text.trim().is_empty() {
        return Vec::new();
    }
    // An agent speaks in its own conversation, which the person who asked for its work reads.
    let to = node
        .requester
        .clone()
        .or_else(|| node.last_human.clone())
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    vec![message(
        env,
        Party::Agent(node.name.clone()),
        to,
        MessageKind::Chat,
        reply_text.to_string(),
    )]
}
