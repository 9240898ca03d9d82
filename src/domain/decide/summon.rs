//! Opening the tavern and summoning agents: who may summon what, under whom, and with which name.

use super::*;

pub(super) fn open_tavern(
    state: &TavernState,
    theme: &str,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    if state.jake.is_some() {
        return Err(DomainError::AlreadyOpen);
    }
    naming::theme(theme).map_err(|e| DomainError::NotAllowed(e.to_string()))?;
    let jake = NewAgent {
        name: "Jake".to_string(),
        kind: AgentKind::Jake,
        expert: None,
        parent: None,
        assignment: None,
        // Jake uses his type's configured model, looked up at each turn.
        model: None,
        workdir: None,
        modes: Modes::default(),
        requester: None,
        created: env.now,
    };
    Ok(Decision::done(vec![
        Outcome::TavernOpened {
            theme: theme.to_string(),
        },
        Outcome::AgentSummoned(jake),
        Outcome::StateChanged {
            agent: "Jake".to_string(),
            from: AgentState::Summoned,
            to: AgentState::Working,
            reason: Some("the tavern opened".to_string()),
        },
    ]))
}

pub(super) fn choose_name(state: &TavernState, requested: Option<&str>) -> Result<String> {
    if let Some(name) = requested {
        DocName::new(name).map_err(|e| DomainError::BadName {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        // People type names in commands (`/join NAME`, `/done NAME`) and mention them in text, so a
        // name is one word without quotes.
        if name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '`'))
        {
            return Err(DomainError::BadName {
                name: name.to_string(),
                reason:
                    "an agent's name is one word, without spaces or quotes, so it can be typed \
                         in commands like /join NAME"
                        .into(),
            });
        }
        if state.name_taken(name) || name.eq_ignore_ascii_case("jake") {
            return Err(DomainError::BadName {
                name: name.to_string(),
                reason: "that name is taken (names are never reused, even after dismissal)".into(),
            });
        }
        return Ok(name.to_string());
    }
    let theme_id = state.theme.as_deref().unwrap_or("lotr");
    let theme = naming::theme(theme_id).map_err(|e| DomainError::NotAllowed(e.to_string()))?;
    // Every candidate before the state's cursor is taken, so the search starts there.
    Ok(
        naming::next_name_from(theme, state.name_cursor, |candidate| {
            state.name_taken(candidate) || candidate.eq_ignore_ascii_case("jake")
        })
        .0,
    )
}

pub(super) fn decide_summon(
    state: &TavernState,
    actor: &Actor,
    summon: &Summon,
    env: &mut DecideEnv<'_>,
) -> Result<Decision> {
    let parent = live(state, &summon.parent)?;
    may_act_on(state, actor, parent, "summon children under")?;
    let policy = registry::plugin(summon.kind).policy();
    if summon.kind == AgentKind::Jake {
        return Err(DomainError::NotAllowed(
            "Jake cannot be summoned: there is exactly one, and Tavern creates him".into(),
        ));
    }
    if matches!(actor, Actor::User(_)) && !policy.summonable_by_users {
        return Err(DomainError::NotAllowed(format!(
            "people cannot summon a {} directly",
            summon.kind
        )));
    }
    if policy.requires_jake_parent && parent.kind != AgentKind::Jake {
        return Err(DomainError::NotAllowed(format!(
            "a {} must be a child of Jake, not of {}",
            summon.kind, parent.name
        )));
    }
    if matches!(parent.state, AgentState::Verifying | AgentState::Done) {
        return Err(DomainError::NotAllowed(format!(
            "{} is {} and cannot take on children now",
            parent.name, parent.state
        )));
    }
    if summon
        .assignment
        .as_deref()
        .is_some_and(|a| a.trim().is_empty())
    {
        return Err(DomainError::Empty("the assignment"));
    }
    let name = choose_name(state, summon.name.as_deref())?;
    let requester = match actor {
        Actor::User(user) => Some(user.clone()),
        Actor::Agent(_) => parent.requester.clone().or(parent.last_human.clone()),
        Actor::Tavern | Actor::File => parent.requester.clone(),
    };
    // Agents summoned by an agent persevere (they have a job and keep at it until verified);
    // agents summoned by a person start in chat mode.
    let modes = Modes {
        perseverance: matches!(actor, Actor::Agent(_)),
        ..Modes::default()
    };
    // A model named at summon time is checked now, so a typo is an error here rather than a string of
    // failed turns later; it is stored resolved (absolute paths), so it means the same after a restart.
    // Without one the agent uses its type's configured model, looked up at each turn (a mortal summoned
    // by Jake does not inherit Jake's coordinating model).
    let model = match &summon.model {
        Some(spec) => crate::model::ModelSpec::parse(spec, env.project)
            .map_err(|reason| DomainError::BadModel {
                spec: spec.clone(),
                reason,
            })?
            .map(|m| m.to_string()),
        None => None,
    };
    let effective = env.models.effective(model.as_deref(), summon.kind);
    if let (Some(missing), Some(spec)) = (env.claude_cli_missing, effective) {
        if matches!(
            crate::model::ModelSpec::parse(spec, env.project),
            Ok(Some(crate::model::ModelSpec::ClaudeCode { .. }))
        ) {
            return Err(DomainError::BadModel {
                spec: spec.to_string(),
                reason: format!("cannot run here: {missing}"),
            });
        }
    }
    // Resolved against the project now, so it means the same after a restart; whether it exists is
    // checked when a runtime starts there (deciding does no IO), and that error names the directory.
    let workdir = match summon.workdir.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(DomainError::Empty("the working directory")),
        Some(dir) => Some(env.project.join(dir).display().to_string()),
    };
    let new = NewAgent {
        name: name.clone(),
        kind: summon.kind,
        expert: summon.expert,
        parent: Some(parent.name.clone()),
        assignment: summon.assignment.clone(),
        model,
        workdir,
        modes,
        requester,
        created: env.now,
    };
    let mut outcomes = vec![Outcome::AgentSummoned(new)];
    if let Some(assignment) = &summon.assignment {
        // The assignment is the child's first input, and it begins at once.
        let from = actor_party(actor)?;
        outcomes.push(message(
            env,
            from,
            Party::Agent(name.clone()),
            MessageKind::Chat,
            assignment.clone(),
        ));
        outcomes.push(Outcome::StateChanged {
            agent: name,
            from: AgentState::Summoned,
            to: AgentState::Working,
            reason: Some("summoned with an assignment".into()),
        });
    }
    Ok(Decision::done(outcomes))
}
