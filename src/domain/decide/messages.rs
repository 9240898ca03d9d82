//! Messages between people and agents, one at a time or broadcast.

use super::*;

pub(super) fn resolve_recipient<'s>(
    state: &'s TavernState,
    actor: &Actor,
    to: &str,
) -> Result<&'s AgentNode> {
    if to.eq_ignore_ascii_case("parent") {
        let Actor::Agent(me) = actor else {
            return Err(DomainError::NotAllowed(
                "only an agent can message its parent".into(),
            ));
        };
        let parent = existing(state, me)?.parent.clone().ok_or_else(|| {
            DomainError::NotAllowed(format!("{me} is the root and has no parent"))
        })?;
        return live(state, &parent);
    }
    live(state, to)
}

pub(super) fn send_message(
    state: &TavernState,
    actor: &Actor,
    to: &str,
    text: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    if text.trim().is_empty() {
        return Err(DomainError::Empty("the message"));
    }
    let from = actor_party(actor)?;
    if let Actor::Agent(me) = actor {
        live(state, me)?;
    }
    let target = resolve_recipient(state, actor, to)?;
    let mut outcomes = vec![message(
        env,
        from,
        Party::Agent(target.name.clone()),
        MessageKind::Chat,
        text.to_string(),
    )];
    // A person talking to an agent answers its open questions, however they reply.
    if let Actor::User(by) = actor {
        outcomes.extend(
            state
                .open_pending()
                .filter(|p| {
                    p.agent.eq_ignore_ascii_case(&target.name)
                        && matches!(p.item, PendingItem::Question { .. })
                })
                .map(|p| Outcome::PendingSettled {
                    id: p.id,
                    by: by.clone(),
                    settled: Settled::Answered,
                }),
        );
    }
    Ok(Decision::done(outcomes))
}

pub(super) fn broadcast(
    state: &TavernState,
    actor: &Actor,
    scope: tavern_plugin_api::BroadcastScope,
    text: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    use tavern_plugin_api::BroadcastScope;
    if text.trim().is_empty() {
        return Err(DomainError::Empty("the message"));
    }
    let from = actor_party(actor)?;
    let me = match actor {
        Actor::Agent(me) => Some(live(state, me)?.name.clone()),
        _ => None,
    };
    let recipients: Vec<String> = match (scope, &me) {
        (BroadcastScope::All, _) => state
            .agents_in_order()
            .map(|n| n.name.clone())
            .filter(|n| Some(n) != me.as_ref())
            .collect(),
        (BroadcastScope::Subtree, Some(me)) => state.descendants(me),
        (BroadcastScope::Siblings, Some(me)) => {
            let parent = state.agent(me).and_then(|n| n.parent.clone());
            parent
                .and_then(|p| state.agent(&p))
                .map(|p| {
                    p.children
                        .iter()
                        .filter(|c| *c != me)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
        (_, None) => return Err(DomainError::NotAllowed(
            "only an agent can broadcast to its siblings or subtree; people can broadcast to all"
                .into(),
        )),
    };
    let mut outcomes = Vec::new();
    for name in recipients {
        if state.agent(&name).is_some_and(|n| !n.state.is_dead()) {
            outcomes.push(message(
                env,
                from.clone(),
                Party::Agent(name),
                MessageKind::Chat,
                text.to_string(),
            ));
        }
    }
    Ok(Decision::done(outcomes))
}
