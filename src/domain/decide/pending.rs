//! What waits for a person: questions, tool approvals, and the answers that settle them.

use super::*;

pub(super) fn ask_user(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    question: &str,
    class: QuestionClass,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} can ask its own questions",
            node.name
        )));
    }
    if question.trim().is_empty() {
        return Err(DomainError::Empty("the question"));
    }
    let change = transition(
        node,
        AgentState::WaitingForInput,
        Some("asked a question".into()),
    )?;
    // The question bubbles up the tree to the person who asked for the work; each ancestor it passed
    // is recorded, so the person sees the chain and each level could later handle or transform it.
    let via = state.ancestors(&node.name);
    let to = node
        .requester
        .clone()
        .or_else(|| node.last_human.clone())
        .map(Party::User)
        .unwrap_or(Party::Tavern);
    let mut msg = new_message(
        env,
        Party::Agent(node.name.clone()),
        to,
        MessageKind::Question { class },
        question.trim().to_string(),
    );
    msg.via = via;
    let pending = Outcome::PendingOpened {
        id: state.next_pending_id(),
        agent: node.name.clone(),
        item: PendingItem::Question {
            question: msg.text.clone(),
            class,
        },
    };
    Ok(Decision::done(vec![
        change,
        Outcome::MessagePosted(msg),
        pending,
    ]))
}

pub(super) fn request_approval(
    state: &TavernState,
    actor: &Actor,
    agent: &str,
    tool: &str,
    input: &serde_json::Value,
) -> Result<Decision> {
    let node = live(state, agent)?;
    if !matches!(actor, Actor::Agent(a) if a.eq_ignore_ascii_case(&node.name)) {
        return Err(DomainError::NotAllowed(format!(
            "only {} can ask to use a tool for itself",
            node.name
        )));
    }
    if tool.trim().is_empty() {
        return Err(DomainError::Empty("the tool name"));
    }
    Ok(Decision::done(vec![Outcome::PendingOpened {
        id: state.next_pending_id(),
        agent: node.name.clone(),
        item: PendingItem::Approval {
            tool: tool.to_string(),
            input: input.clone(),
        },
    }]))
}

pub(super) fn answer_pending(
    state: &TavernState,
    actor: &Actor,
    id: u32,
    answer: &Answer,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let Actor::User(by) = actor else {
        return Err(DomainError::NotAllowed(
            "only people answer approvals and questions".into(),
        ));
    };
    let pending = state.pending.get(&id).ok_or_else(|| {
        DomainError::NoSuchPending(format!(
            "nothing is pending as #{id}; /pending lists what waits"
        ))
    })?;
    if let Some((who, _)) = &pending.settled {
        return Err(DomainError::NoSuchPending(format!(
            "#{id} was already settled by @{who}"
        )));
    }
    let node = live(state, &pending.agent)?;
    let settle = |settled| Outcome::PendingSettled {
        id,
        by: by.clone(),
        settled,
    };
    let outcomes = match (&pending.item, answer) {
        (PendingItem::Approval { .. }, Answer::Allow) => vec![settle(Settled::Allowed)],
        (PendingItem::Approval { .. }, Answer::Deny { reason }) => {
            let reason = reason
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| format!("@{by} denied this tool call"));
            vec![settle(Settled::Denied { reason })]
        }
        (PendingItem::Approval { tool, input }, Answer::Always) => {
            // When no rule narrow enough exists (see `permission::always_rule`), "always" means "yes,
            // this once", and the person is told so by the settled record carrying no rule.
            match crate::permission::always_rule(tool, input, env.project) {
                Some(rule) => vec![
                    settle(Settled::AllowedAlways {
                        rule: rule.to_string(),
                    }),
                    Outcome::RuleAdded {
                        agent: node.name.clone(),
                        rule: rule.to_string(),
                    },
                ],
                None => vec![settle(Settled::Allowed)],
            }
        }
        (PendingItem::Question { .. }, Answer::Text { text }) => {
            if text.trim().is_empty() {
                return Err(DomainError::Empty("the answer"));
            }
            // The answer is a message from the person, like any reply in the agent's thread; sending
            // it settles every question the agent has open (see `send_message`).
            return send_message(state, actor, &node.name, text, env);
        }
        (PendingItem::Commitment { index, .. }, Answer::Allow) => {
            let approval = Approval::Approved { by: by.clone() };
            let mut outcomes = vec![
                settle(Settled::Allowed),
                Outcome::CommitmentReviewed {
                    agent: node.name.clone(),
                    index: *index,
                    approval: approval.clone(),
                },
            ];
            outcomes.extend(after_review(state, node, *index, |c| c.approval = approval, env)?);
            outcomes
        }
        (
            PendingItem::Commitment {
                index,
                description,
                assertion,
            },
            Answer::Deny { reason },
        ) => {
            let reason = reason.clone().filter(|r| !r.trim().is_empty());
            let approval = Approval::Rejected {
                by: by.clone(),
                reason: reason.clone(),
            };
            let because = reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let mut outcomes = vec![
                settle(Settled::Denied {
                    reason: reason
                        .clone()
                        .unwrap_or_else(|| format!("@{by} rejected it")),
                }),
                Outcome::CommitmentReviewed {
                    agent: node.name.clone(),
                    index: *index,
                    approval: approval.clone(),
                },
                message(
                    env,
                    Party::Tavern,
                    Party::Agent(node.name.clone()),
                    MessageKind::Notice,
                    format!(
                        "@{by} rejected your commitment #{} ({description} — `{assertion}`){because}. \
                         It no longer counts toward done; commit to something that shows the work is done instead.",
                        index + 1
                    ),
                ),
            ];
            outcomes.extend(after_review(state, node, *index, |c| c.approval = approval, env)?);
            outcomes
        }
        (PendingItem::Commitment { .. }, _) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a proposed commitment: approve it with /approve {id} or reject it with /deny {id} [REASON]"
            )))
        }
        (PendingItem::Approval { .. }, Answer::Text { .. }) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a tool approval: answer it with /approve {id}, /deny {id} [REASON] or /always {id}"
            )))
        }
        (PendingItem::Question { .. }, _) => {
            return Err(DomainError::NoSuchPending(format!(
                "#{id} is a question: answer it with /answer {id} TEXT"
            )))
        }
    };
    Ok(Decision::done(outcomes))
}
