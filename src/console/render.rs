//! Pure rendering of the tavern for the console: the agent tree, events, log lines, status.
//!
//! Everything here is a function of its arguments, so it is tested without a terminal.

use tavern_plugin_api::AgentState;

use crate::domain::{
    Activity, Actor, AgentNode, Intent, Message, MessageKind, Outcome, Party, PendingItem, Settled,
    TavernState,
};
use crate::executor::Event;
use crate::log::{Entry, Status};

fn commitments_badge(node: &AgentNode) -> String {
    if node.commitments.is_empty() {
        return String::new();
    }
    let passed = node
        .commitments
        .iter()
        .filter(|c| c.last_check.as_ref().is_some_and(|k| k.passed))
        .count();
    let checked = node.commitments.iter().any(|c| c.last_check.is_some());
    if checked {
        format!(" [{passed}/{} ✓]", node.commitments.len())
    } else {
        format!(" [{} commitments]", node.commitments.len())
    }
}

fn node_line(node: &AgentNode) -> String {
    let mut line = format!("{} ({}) {}", node.name, node.kind_label(), node.state);
    if node.state.is_dead() {
        line.push_str(" †");
    }
    if let Some(assignment) = &node.assignment {
        let short: String = assignment
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        line.push_str(&format!(" — {short}"));
    }
    line.push_str(&commitments_badge(node));
    line
}

/// The tree of agents with their states, Jake at the root.
pub fn agent_tree(state: &TavernState) -> String {
    let Some(root) = state.jake.as_deref().and_then(|j| state.agent(j)) else {
        return "(the tavern is not open)".to_string();
    };
    let mut out = String::new();
    out.push_str(&node_line(root));
    out.push('\n');
    fn walk(state: &TavernState, node: &AgentNode, prefix: &str, out: &mut String, depth: usize) {
        // The tree is acyclic by construction; the depth bound only guards against a damaged state.
        if depth > state.agents.len() {
            return;
        }
        let children: Vec<&AgentNode> = node
            .children
            .iter()
            .filter_map(|c| state.agent(c))
            .collect();
        for (i, child) in children.iter().enumerate() {
            let last = i + 1 == children.len();
            out.push_str(prefix);
            out.push_str(if last { "└─ " } else { "├─ " });
            out.push_str(&node_line(child));
            out.push('\n');
            let next = format!("{prefix}{}", if last { "   " } else { "│  " });
            walk(state, child, &next, out, depth + 1);
        }
    }
    walk(state, root, "", &mut out, 0);
    out.trim_end().to_string()
}

fn scripted_tag(state: &TavernState, agent: &str) -> &'static str {
    match state.agent(agent) {
        Some(node) if node.scripted => " (scripted)",
        _ => "",
    }
}

fn message_line(state: &TavernState, message: &Message) -> Option<String> {
    let text = message.text.trim_end();
    match (&message.kind, &message.from, &message.to) {
        (MessageKind::Presence, _, _) => None,
        (MessageKind::Question { class }, from, to) => {
            let via = if message.via.is_empty() {
                String::new()
            } else {
                format!(" (via {})", message.via.join(" → "))
            };
            Some(format!("? {to} {} {from} asks: {text}{via}", class.tag()))
        }
        (_, Party::Agent(from), Party::User(_)) => {
            Some(format!("[{from}]{} {text}", scripted_tag(state, from)))
        }
        // What a person typed is already on their screen.
        (MessageKind::Chat, Party::User(_), _) => None,
        (MessageKind::Notice, Party::Tavern, to) => Some(format!("! {to} ← {text}")),
        (_, from, to) => Some(format!("[{from} → {to}] {text}")),
    }
}

/// The console lines for one durable event. `me` is the console's user, whose own refused commands are
/// reported where they were typed.
pub fn event_lines(state: &TavernState, event: &Event, me: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for outcome in &event.outcomes {
        match outcome {
            Outcome::AgentSummoned(new) => {
                let kind = match new.expert {
                    Some(e) => format!("{}/{}", new.kind, e),
                    None => new.kind.to_string(),
                };
                match &new.parent {
                    None => lines.push(format!("+ {} ({kind}) is behind the bar", new.name)),
                    Some(parent) => lines.push(format!(
                        "+ {} ({kind}) summoned under {parent}{}",
                        new.name,
                        new.assignment
                            .as_deref()
                            .map(|a| format!(": {a}"))
                            .unwrap_or_default()
                    )),
                }
            }
            Outcome::StateChanged {
                agent,
                from,
                to,
                reason,
            } => lines.push(format!(
                "· {agent}: {from} → {to}{}",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            Outcome::CommitmentAdded {
                agent, commitment, ..
            } => lines.push(format!(
                "+ {agent} commits: {} -- {}{}",
                commitment.description,
                commitment.assertion,
                if commitment.needs_signoff {
                    " (needs sign-off)"
                } else {
                    ""
                }
            )),
            Outcome::CommitmentChecked {
                agent,
                index,
                check,
            } => {
                let how = if check.passed {
                    format!("passed in {} ms", check.duration_ms)
                } else if check.timed_out {
                    "timed out (process group killed)".to_string()
                } else {
                    match check.exit_code {
                        Some(code) => format!("failed with exit code {code}"),
                        None => "failed (killed by a signal)".to_string(),
                    }
                };
                let mark = if check.passed { "✓" } else { "✗" };
                lines.push(format!("  {mark} {agent} commitment #{} {how}", index + 1));
            }
            Outcome::CommitmentSignedOff { agent, index, by } => lines.push(format!(
                "✓ @{by} signed off {agent} commitment #{}",
                index + 1
            )),
            Outcome::CommitmentReviewed {
                agent,
                index,
                approval,
            } => match approval {
                tavern_plugin_api::Approval::Approved { by } => lines.push(format!(
                    "✓ @{by} approved {agent} commitment #{}",
                    index + 1
                )),
                tavern_plugin_api::Approval::Rejected { by, reason } => lines.push(format!(
                    "✗ @{by} rejected {agent} commitment #{}{}",
                    index + 1,
                    reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )),
                tavern_plugin_api::Approval::Accepted | tavern_plugin_api::Approval::Proposed => {}
            },
            Outcome::MessagePosted(message) => lines.extend(message_line(state, message)),
            Outcome::ModesChanged {
                agent,
                modes,
                task_mode,
            } => lines.push(format!(
                "· {agent} modes: perseverance {}, user present {}, backgrounded {}, task {:?}",
                modes.perseverance, modes.user_present, modes.backgrounded, task_mode
            )),
            Outcome::DescriptionChanged { agent, text } => {
                lines.push(format!("· {agent} description: {text}"))
            }
            Outcome::NotesChanged { agent, .. } => lines.push(format!("· {agent} notes changed")),
            Outcome::RestartStrategyChanged { agent, strategy } => {
                lines.push(format!("· {agent} restart strategy: {strategy:?}"))
            }
            Outcome::TaskRestarted { agent, attempt } => lines.push(format!(
                "! {agent}'s task was restarted (restart {attempt})"
            )),
            Outcome::DocumentEditRecorded { path, ignored } if ignored.is_empty() => {
                lines.push(format!("· file edit recorded: {path}"))
            }
            Outcome::DocumentEditRecorded { path, ignored } => lines.push(format!(
                "· file edit recorded: {path} (managed fields left as they were: {})",
                ignored.join(", ")
            )),
            Outcome::PendingOpened { id, agent, item } => {
                lines.push(pending_line(*id, agent, item))
            }
            Outcome::PendingSettled { id, by, settled } => lines.push(match settled {
                Settled::Allowed => format!("✓ @{by} allowed #{id}"),
                Settled::Denied { reason } => format!("✗ @{by} denied #{id}: {reason}"),
                Settled::AllowedAlways { rule } => {
                    format!("✓ @{by} allowed #{id} and from now on {rule}")
                }
                Settled::Answered => format!("✓ @{by} answered #{id}"),
                Settled::Withdrawn { reason } => format!("· #{id} withdrawn: {reason}"),
            }),
            Outcome::TurnInterrupted { agent, by, .. } => {
                lines.push(format!("! @{by} interrupted {agent}'s turn"))
            }
            Outcome::RuleAdded { agent, rule } => {
                lines.push(format!("· {agent} may now use {rule} without asking"))
            }
            Outcome::ThreadAttached { agent, thread, .. } => {
                lines.push(format!("· {agent} works in thread {thread}"))
            }
            Outcome::SessionStarted { agent, session } => {
                lines.push(format!("· {agent} session {session}"))
            }
            Outcome::Activity { agent, activity } => lines.push(match activity {
                Activity::Text { text } => format!("{agent}: {text}"),
                Activity::ToolUse { tool, input } => format!("  {agent} ⚙ {tool} {input}"),
                Activity::ToolResult { tool, ok, text } => {
                    let mark = if *ok { "←" } else { "✗" };
                    format!("  {agent} {mark} {tool}: {text}")
                }
                Activity::RuleDecided {
                    tool,
                    input,
                    allowed,
                    rule,
                } => format!(
                    "  {agent} {} {tool} {input} (rule {rule})",
                    if *allowed { "may use" } else { "may not use" }
                ),
            }),
            Outcome::TavernOpened { .. }
            | Outcome::InboxRead { .. }
            | Outcome::InboxRewound { .. }
            | Outcome::ModelReplied { .. }
            | Outcome::SessionTurn { .. }
            | Outcome::InputSent { .. }
            | Outcome::ToolCalled { .. } => {}
        }
    }
    if event.status == Status::Cancelled {
        if let Some(error) = &event.error {
            lines.push(format!("· {error}"));
        }
    }
    if event.status == Status::Failed {
        if let Some(error) = &event.error {
            let own = matches!(&event.actor, Some(Actor::User(u)) if u == me);
            if !own {
                let who = event
                    .actor
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| format!("#{}", event.seq));
                lines.push(format!("! {who}: {error}"));
            }
        }
    }
    lines
}

/// The `/pending` text.
pub fn pending(state: &TavernState) -> String {
    let lines: Vec<String> = state
        .open_pending()
        .map(|p| pending_line(p.id, &p.agent, &p.item))
        .collect();
    if lines.is_empty() {
        "nothing is waiting for you".to_string()
    } else {
        lines.join("\n")
    }
}

/// How a pending approval or question is shown, with the commands that answer it.
pub fn pending_line(id: u32, agent: &str, item: &PendingItem) -> String {
    match item {
        PendingItem::Approval { tool, input } => format!(
            "? #{id} {agent} wants to use {tool}: {} — /approve {id}, /deny {id} [REASON], /always {id}",
            crate::domain::input_summary(input)
        ),
        PendingItem::Question { question, class } => format!(
            "? #{id} {agent} asks {}: {question} — /answer {id} TEXT",
            class.tag()
        ),
        PendingItem::Commitment {
            index,
            description,
            assertion,
        } => format!(
            "? #{id} {agent} proposes commitment #{}: {description} -- {assertion} — /approve {id}, /deny {id} [REASON]",
            index + 1
        ),
    }
}

fn clock(ts: u64) -> String {
    let secs = (ts / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// One `/log` line.
pub fn log_line(entry: &Entry<crate::domain::TavernSchema>) -> String {
    let status = match entry.status {
        Status::Pending => "pending",
        Status::Executing => "executing",
        Status::Executed => "executed",
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
    };
    let mut line = format!(
        "#{} {} {} {} → {status}",
        entry.seq,
        clock(entry.ts),
        entry.actor,
        entry.intent.summary()
    );
    if let Some(error) = &entry.error {
        let first = error.lines().next().unwrap_or("");
        line.push_str(&format!(": {first}"));
    }
    line
}

/// The help text.
pub const HELP: &str = "\
Talk to Jake by typing. Commands (they need no model):
  /join NAME                talk to one agent instead of Jake (/leave to come back)
  /summon ASSIGNMENT [--type T] [--model M] [--parent NAME] [--name NAME] [--dir DIR]
                            T: mortal (default), drone, monitor, reviewer, tester, architect
  /agents                   the tree of agents with their states
  /commit NAME [--signoff] DESCRIPTION -- ASSERTION
                            add a commitment (a shell assertion; exit 0 = pass)
  /done NAME                signal done for NAME: Tavern runs its assertions
  /approve NAME N           sign off NAME's commitment #N
  /interrupt NAME           stop NAME's running turn; what it did stands and it waits for you
  /pending                  tool calls waiting for approval and agents' open questions
  /approve ID               let a pending tool call run once
  /deny ID [REASON]         refuse it; the reason goes back to the agent
  /always ID                let it run, and let NAME make calls like it without asking
  /answer ID TEXT           answer an agent's question (or /join it and just talk)
  /dismiss NAME             dismiss a Done agent (and its subtree)
  /reap NAME [REASON]       stop an agent now (FailedReaped; its live children are reaped, its Done ones dismissed)
  /describe NAME TEXT       set an agent's description
  /mode NAME KEY=VALUE...   perseverance=on|off backgrounded=on|off task=execute|delegate|plan|break_up|unify
  /strategy NAME one|all    how NAME restarts its children's failed tasks
  /broadcast TEXT           send TEXT to every live agent
  /log [N]                  the last N intents (default 20)
  /status                   the tavern at a glance
  /help                     this text
  /quit                     leave (Ctrl-D and Ctrl-C work too)";

/// The `/status` text.
pub fn status(
    state: &TavernState,
    project: &std::path::Path,
    model: Option<&str>,
    free_calls: usize,
    max_calls: usize,
    projection_errors: (u64, Option<String>),
) -> String {
    let mut counts: Vec<(AgentState, usize)> = Vec::new();
    for node in state.agents_in_order() {
        match counts.iter_mut().find(|(s, _)| *s == node.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((node.state, 1)),
        }
    }
    counts.sort();
    let by_state = counts
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let model = match model {
        Some(m) if m.starts_with("scripted:") => {
            format!("{m} (scripted replies, not a real model)")
        }
        Some(m) => m.to_string(),
        None => "none configured (commands work; agents do not think)".to_string(),
    };
    let docs = match projection_errors {
        (0, _) => "all written".to_string(),
        (n, last) => format!(
            "{n} write errors (last: {}); they are rewritten from the log at the next start",
            last.unwrap_or_default()
        ),
    };
    format!(
        "project: {}\nmodel: {model}\nagents: {} ({by_state})\nlog: {} entries, {} running\nmodel calls: {free_calls} of {max_calls} free\ndocuments: {docs}",
        project.display(),
        state.agents.len(),
        state.last_seq,
        state.open.len(),
    )
}

/// Which intents a user's console line produced, for the acknowledgement line.
pub fn ack(seq: u64, intent: &Intent, outcomes: &[Outcome]) -> String {
    let detail = match intent {
        Intent::Summon(_) => outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::AgentSummoned(n) => Some(format!("summoned {}", n.name)),
                _ => None,
            })
            .unwrap_or_else(|| intent.summary()),
        _ => intent.summary(),
    };
    format!("ok #{seq} {detail}")
}
