//! The CLI's permission requests: decided by the agent's rules, or asked of a person as a pending
//! approval that the turn waits for; approvals left open by an interrupted turn are withdrawn.

use super::*;

/// The rules that decide this agent's tool calls: Tavern's own denies, the project's, its type's, and
/// the ones people added for it by answering "always".
pub(super) fn rules_for(tavern: &Tavern, state: &TavernState, agent: &str) -> Rules {
    let settings = tavern.settings();
    let parse = |texts: &[String]| -> Vec<Rule> {
        texts
            .iter()
            .filter_map(|text| match Rule::parse(text) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    // Configured rules were checked at load and people's rules are built by Tavern, so
                    // this is a damaged log or document; say so rather than drop it silently.
                    tracing::warn!("ignoring the permission rule {text:?}: {e}");
                    None
                }
            })
            .collect()
    };
    let built_in = Rules {
        allow: Vec::new(),
        deny: parse(&built_in_denies(&settings.project)),
    };
    let project = Rules {
        allow: parse(&settings.permissions.allow),
        deny: parse(&settings.permissions.deny),
    };
    let node = state.agent(agent);
    let kind = settings
        .permissions
        .kinds
        .iter()
        .find(|(k, _, _)| Some(*k) == node.map(|n| n.kind))
        .map(|(_, allow, deny)| Rules {
            allow: parse(allow),
            deny: parse(deny),
        })
        .unwrap_or_default();
    let own = Rules {
        allow: node.map(|n| parse(&n.rules)).unwrap_or_default(),
        deny: Vec::new(),
    };
    Rules::merged(&[&built_in, &project, &kind, &own])
}

/// Records that approvals the agent opened earlier wait for nothing now (their turn was interrupted,
/// or Tavern restarted during it), so nobody answers a question that is no longer asked.
pub(super) async fn withdraw_stale_approvals(recorder: &Recorder) {
    let stale: Vec<u32> = recorder.tavern.read_head(|s| {
        s.open_pending()
            .filter(|p| {
                p.agent.eq_ignore_ascii_case(&recorder.agent)
                    && matches!(p.item, PendingItem::Approval { .. })
            })
            .map(|p| p.id)
            .collect()
    });
    for id in stale {
        withdraw(recorder, id, "its turn ended before anyone answered").await;
    }
}

pub(super) async fn withdraw(recorder: &Recorder, id: u32, reason: &str) {
    recorder
        .record(vec![Outcome::PendingSettled {
            id,
            by: "tavern".to_string(),
            settled: Settled::Withdrawn {
                reason: reason.to_string(),
            },
        }])
        .await;
}

/// Decides one permission request and answers the CLI.
pub(super) async fn permission(
    recorder: &Arc<Recorder>,
    session: &CliSession,
    interrupts: &mut Interrupts,
    permit: &mut Option<OwnedSemaphorePermit>,
    request_id: &str,
    tool: &str,
    input: serde_json::Value,
) -> Waited {
    let tavern = &recorder.tavern;
    let rules = tavern.read_head(|s| rules_for(tavern, s, &recorder.agent));
    let decision = rules.decide(tool, &input, &tavern.settings().project);
    let summary = clip(&redact(&input_summary(&input)), 200);
    let allowed = matches!(decision, Decision::Allow(_));
    let answer = match decision {
        Decision::Allow(rule) | Decision::Deny(rule) => {
            let decided = Activity::RuleDecided {
                tool: tool.to_string(),
                input: summary,
                allowed,
                rule: rule.to_string(),
            };
            activity(recorder, decided).await;
            if allowed {
                Ok(())
            } else {
                Err(format!("Tavern's rule {rule} denies this call"))
            }
        }
        Decision::Ask => {
            // A person may take a while: the permit goes back meanwhile, so other agents' model calls
            // are not held up by this one's wait.
            *permit = None;
            let answer = match ask_person(recorder, interrupts, tool, &input).await {
                Ok(answer) => answer,
                Err(waited) => return waited,
            };
            let waited = take_permit(recorder.sidecar.permit_again(&recorder.stop), interrupts);
            match waited.await {
                Ok(taken) => *permit = Some(taken),
                Err(waited) => return waited,
            }
            answer
        }
    };
    let sent = match answer {
        Ok(()) => session.allow(request_id, input).await,
        Err(message) => session.deny(request_id, &message).await,
    };
    if let Err(e) = sent {
        tracing::warn!(
            "could not answer {}'s permission request: {e}",
            recorder.agent
        );
    }
    Waited::Answered
}

/// Opens a pending approval and waits for a person's answer: allowed, or denied with the reason for
/// the model. The answer counts once it is durable (read from the durable state, never the head), so
/// nothing runs on an approval the log could still lose. Ends early if the agent stops or the turn is
/// interrupted; the approval is then withdrawn.
pub(super) async fn ask_person(
    recorder: &Arc<Recorder>,
    interrupts: &mut Interrupts,
    tool: &str,
    input: &serde_json::Value,
) -> Result<Result<(), String>, Waited> {
    let tavern = &recorder.tavern;
    // Subscribed before asking, so the answer cannot slip past between the request and the wait.
    let mut events = tavern.subscribe();
    let intent = Intent::RequestApproval {
        agent: recorder.agent.clone(),
        tool: tool.to_string(),
        input: input.clone(),
    };
    let outcomes = match recorder.effect(Act::Intent(intent)).await {
        Effect::Done(_, Some(Receipt::Accepted { outcomes, .. })) => outcomes,
        Effect::Done(result, _) => return Ok(Err(result.text)),
        Effect::Aborted => return Err(Waited::Stopped),
    };
    let id = outcomes.iter().find_map(|o| match o {
        Outcome::PendingOpened { id, .. } => Some(*id),
        _ => None,
    });
    let Some(id) = id else {
        return Ok(Err("Tavern could not open the approval request".into()));
    };
    // Bounded by people: each iteration handles one event, and the wait ends with the answer, the
    // agent's stop, an interrupt, or Tavern's shutdown.
    loop {
        let settled = tavern.read(|s| s.pending.get(&id).and_then(|p| p.settled.clone()));
        if let Some((_, settled)) = settled {
            return Ok(match settled {
                Settled::Allowed | Settled::AllowedAlways { .. } | Settled::Answered => Ok(()),
                Settled::Denied { reason } | Settled::Withdrawn { reason } => Err(reason),
            });
        }
        tokio::select! {
            _ = recorder.stop.cancelled() => return Err(Waited::Stopped),
            _ = tavern.cancel_token().cancelled() => return Err(Waited::Stopped),
            by = interrupts.next() => {
                withdraw(recorder, id, &format!("@{by} interrupted the turn")).await;
                return Err(Waited::Interrupted(by));
            }
            event = events.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(Waited::Stopped),
            },
        }
    }
}
