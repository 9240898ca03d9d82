//! An agent's life outside its turns: reaping (with its subtree), modes, and restarts of its task.

use super::*;

/// What happens to an agent's live descendants when it dies: Done ones are dismissed, the rest reaped.
pub(super) fn cascade(state: &TavernState, root: &str, reason: &str) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for name in state.descendants(root) {
        let Some(node) = state.agent(&name) else {
            continue;
        };
        let reason = Some(reason.to_string());
        match node.state {
            AgentState::FailedReaped | AgentState::DismissedReaped => {}
            AgentState::Done => outcomes.push(Outcome::StateChanged {
                agent: node.name.clone(),
                from: AgentState::Done,
                to: AgentState::DismissedReaped,
                reason,
            }),
            AgentState::Summoned => {
                // Summoned has one way out (to Working), so a reaped Summoned agent passes through it.
                outcomes.push(Outcome::StateChanged {
                    agent: node.name.clone(),
                    from: AgentState::Summoned,
                    to: AgentState::Working,
                    reason: reason.clone(),
                });
                outcomes.push(Outcome::StateChanged {
                    agent: node.name.clone(),
                    from: AgentState::Working,
                    to: AgentState::FailedReaped,
                    reason,
                });
            }
            live => outcomes.push(Outcome::StateChanged {
                agent: node.name.clone(),
                from: live,
                to: AgentState::FailedReaped,
                reason,
            }),
        }
    }
    outcomes
}

pub(super) fn reap(
    state: &TavernState,
    actor: &Actor,
    node: &AgentNode,
    reason: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Vec<Outcome>> {
    if node.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake cannot be reaped: he is the root, and there is exactly one".into(),
        ));
    }
    let why = if reason.trim().is_empty() {
        format!("reaped by {actor}")
    } else {
        reason.trim().to_string()
    };
    let mut outcomes = Vec::new();
    if node.state == AgentState::Summoned {
        outcomes.push(transition(node, AgentState::Working, Some(why.clone()))?);
        outcomes.push(Outcome::StateChanged {
            agent: node.name.clone(),
            from: AgentState::Working,
            to: AgentState::FailedReaped,
            reason: Some(why.clone()),
        });
    } else {
        outcomes.push(transition(
            node,
            AgentState::FailedReaped,
            Some(why.clone()),
        )?);
    }
    outcomes.extend(cascade(
        state,
        &node.name,
        &format!("{} was reaped", node.name),
    ));
    outcomes.extend(tell_parent(
        state,
        actor,
        node,
        format!("{} was reaped: {why}", node.name),
        env,
    ));
    Ok(outcomes)
}

pub(super) fn set_modes(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    patch: &ModesPatch,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    may_act_on(state, actor, node, "change the modes of")?;
    if patch.user_present.is_some() && !matches!(actor, Actor::User(_)) {
        return Err(DomainError::NotAllowed(
            "only a person joining or leaving changes whether a person is present".into(),
        ));
    }
    let modes = patch.applied_to(node.modes);
    let task_mode = patch.task_mode.unwrap_or(node.task_mode);
    let mut outcomes = vec![Outcome::ModesChanged {
        agent: node.name.clone(),
        modes,
        task_mode,
    }];
    if let (Some(present), Actor::User(user)) = (patch.user_present, actor) {
        if present != node.modes.user_present {
            let text = if present {
                format!("@{user} joined the conversation.")
            } else {
                format!("@{user} left the conversation.")
            };
            outcomes.push(message(
                env,
                Party::Tavern,
                Party::Agent(node.name.clone()),
                MessageKind::Presence,
                text,
            ));
        }
    }
    Ok(Decision::done(outcomes))
}

pub(super) fn restart_agent(
    state: &TavernState,
    agent: &str,
    reason: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    let attempt = node.recent_restarts(env.now, env.restart_window) + 1;
    // Jake, the root, is always restarted: the tavern cannot run without him.
    if attempt > env.max_restarts && node.kind != AgentKind::Jake {
        let why = format!(
            "its task failed {attempt} times within {} s (limit {}); last failure: {reason}",
            env.restart_window / 1000,
            env.max_restarts
        );
        return Ok(Decision::done(reap(
            state,
            &Actor::Tavern,
            node,
            &why,
            env,
        )?));
    }
    Ok(Decision::done(vec![Outcome::TaskRestarted {
        agent: node.name.clone(),
        attempt,
    }]))
}
