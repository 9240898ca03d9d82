//! Starting the agent's CLI process: its session (resumed, or started afresh under the same id), the
//! tools Tavern serves it, the environment it must not see (secrets are hidden and redacted), and the
//! deny rules no configuration lifts.

use super::*;

/// The tools Tavern serves over the CLI's pipe for an agent type.
pub(super) fn mcp_tools(tools: &[ToolName]) -> Vec<McpTool> {
    tools
        .iter()
        .map(|tool| McpTool {
            name: tool.wire().to_string(),
            description: tool.description().to_string(),
            input_schema: tool.input_schema(),
        })
        .collect()
}

/// Deny rules no configuration can lift: agents never write Tavern's own state (which would bypass the
/// log) or the project's git hooks (which would run code outside any agent's permissions).
pub(super) fn built_in_denies(project: &std::path::Path) -> Vec<String> {
    let mut rules = Vec::new();
    for tool in ["Write", "Edit", "NotebookEdit"] {
        for dir in [".tavern", ".git/hooks"] {
            // Absolute (`//` in the rule syntax), so they hold whatever directory the agent works in.
            rules.push(format!("{tool}(/{}/{dir}/**)", project.display()));
        }
    }
    rules
}

/// Values of secrets in Tavern's environment, which recorded text must never carry (an agent may read
/// or print one). Read once: the environment does not change while Tavern runs.
pub(super) fn secrets() -> &'static [Secret] {
    static SECRETS: OnceLock<Vec<Secret>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        std::env::vars()
            .filter(|(name, value)| is_secret_name(name) && value.len() >= 8)
            .map(|(_, value)| Secret::new(value))
            .collect()
    })
}

pub(super) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET", "PASSWORD"]
        .iter()
        .any(|marker| name.ends_with(marker) || name.contains(&format!("{marker}_")))
}

/// `text` with every secret value of the environment redacted (see [`Secret::redact`]).
pub(super) fn redact(text: &str) -> String {
    secrets()
        .iter()
        .fold(text.to_owned(), |text, secret| secret.redact(&text))
}

/// Variables of Tavern's environment the CLI has no use for and must not see: other backends' keys,
/// Tavern's own settings and tokens. It keeps `ANTHROPIC_*`, which it needs.
pub(super) fn hidden_from_cli() -> Vec<String> {
    std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("OPENAI_")
                || name.starts_with("TAVERN_")
                || name.starts_with("DISCORD_")
        })
        .collect()
}

/// Why the agent's CLI could not be started.
pub(super) enum SessionError {
    /// The agent or Tavern is stopping.
    Stopping,
    /// Starting failed; the message says why.
    Failed(String),
}

/// The agent's CLI process, started if it has none.
pub(super) async fn ensure_session<'r>(
    recorder: &Recorder,
    plan: &TurnPlan,
    model: Option<String>,
    runtime: &'r mut AgentRuntime,
) -> Result<&'r mut CliSession, SessionError> {
    // Taken out and put back: a borrow of it returned from one branch would keep `runtime` borrowed in
    // the other too (a limit of the borrow checker).
    let session = match runtime.cli.take() {
        Some(session) => session,
        None => {
            let session = start_session(recorder, plan, model, runtime.session_lost).await?;
            runtime.cost_so_far = 0;
            // Started afresh once; from now on the session exists and is resumed.
            runtime.session_lost = false;
            session
        }
    };
    Ok(runtime.cli.insert(session))
}

/// Starts a CLI process for the agent. Its session is resumed once the CLI has had input on it, unless
/// the CLI lost it (`lost`); a session id that was recorded but never used (the process never got its
/// first line) is started afresh under the same id, and an agent without one gets a new id, recorded
/// before the process runs.
pub(super) async fn start_session(
    recorder: &Recorder,
    plan: &TurnPlan,
    model: Option<String>,
    lost: bool,
) -> Result<CliSession, SessionError> {
    let tavern = &recorder.tavern;
    let program = tavern
        .settings()
        .claude_cli
        .clone()
        .map_err(|e| SessionError::Failed(format!("cannot start the Claude Code CLI: {e}")))?;
    let (recorded, used) = tavern.read_head(|s| {
        s.agent(&recorder.agent).map_or((None, false), |n| {
            (n.session.clone(), !n.session_turns.is_empty())
        })
    });
    let start = match recorded {
        Some(id) => {
            let id = Uuid::parse_str(&id).map_err(|e| {
                SessionError::Failed(format!("the recorded session id {id:?} is not a UUID: {e}"))
            })?;
            if (used || plan.input_sent) && !lost {
                SessionStart::Resume(id)
            } else {
                SessionStart::New(id)
            }
        }
        None => {
            let id = Uuid::new_v4();
            if !recorder
                .record(vec![Outcome::SessionStarted {
                    agent: recorder.agent.clone(),
                    session: id.to_string(),
                }])
                .await
            {
                return Err(SessionError::Stopping);
            }
            SessionStart::New(id)
        }
    };
    let prompt = registry::prompt_text(tavern.store().as_ref(), plan.kind, plan.view.expert);
    let rules = tavern.read_head(|s| rules_for(tavern, s, &recorder.agent));
    let mut disallowed: Vec<String> = rules.deny.iter().map(|rule| rule.to_string()).collect();
    disallowed.extend(REPLACED_TOOLS.iter().map(|tool| tool.to_string()));
    let options = CliOptions {
        program,
        cwd: working_dir(tavern, &recorder.agent),
        session: start,
        model,
        append_system_prompt: tavern_plugin_api::compose_system_prompt(&prompt, &plan.view),
        tools: mcp_tools(plan.tools),
        env: Vec::new(),
        env_remove: hidden_from_cli(),
        disallowed_tools: disallowed,
    };
    CliSession::spawn(options, tavern.tracker())
        .await
        .map_err(|e| SessionError::Failed(e.to_string()))
}

/// Where the agent's CLI runs: its own working directory if it was given one, else the project.
pub(super) fn working_dir(tavern: &Tavern, agent: &str) -> PathBuf {
    tavern
        .read_head(|s| s.agent(agent).and_then(|n| n.workdir.clone()))
        .map(PathBuf::from)
        .unwrap_or_else(|| tavern.settings().project.clone())
}
