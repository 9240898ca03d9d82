//! The projection: the documents under `.tavern/` that the state implies, and edits made to them.
//!
//! The log records intents and outcomes; these documents are what agents, people and tools read. Every
//! document is rendered from the state alone, so re-projecting after a crash repairs whatever the crash
//! left behind. A person may edit an agent's description and notes in its file; Tavern records the edit
//! as an intent. Everything else in the files is managed by Tavern and an edit to it is refused (the
//! refused text stays in the log) and the file restored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use tavern_plugin_api::{Commitment, Modes, RestartStrategy, TaskMode, Usage};

use super::decide::{Decision, DomainError};
use super::intent::EditBase;
use super::outcome::{Message, MessageKind, Outcome, Party};
use super::state::{AgentNode, TavernState};
use crate::blackboard::{front_matter, Collection, DocId, DocName};

/// The front matter of an agent's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFront {
    /// The agent's id (its name).
    pub id: String,
    /// `jake`, `mortal`, `drone` or `monitor`.
    pub kind: String,
    /// The expert prompt, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<String>,
    /// The parent's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The lifecycle state (snake_case).
    pub state: String,
    /// The assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// The model spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The person who asked for the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// How it restarts its children.
    pub restart_strategy: RestartStrategy,
    /// Its task mode.
    pub task_mode: TaskMode,
    /// Its children's names.
    #[serde(default)]
    pub children: Vec<String>,
    /// Its working directory, when not the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The surface thread its work shows in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Its runtime session (the Claude Code CLI's session id), resumed after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Permission rules people added for it by answering "always".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// When it was summoned (unix ms).
    pub created: u64,
    /// When it last changed (unix ms).
    pub updated: u64,
    /// Mode flags.
    pub modes: Modes,
    /// Tokens its model calls used, and their cost where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Commitments.
    #[serde(default)]
    pub commitments: Vec<Commitment>,
}

/// The front matter of a message's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageFront {
    /// The message id.
    pub id: String,
    /// The sender: `@person`, an agent's name, or `tavern`.
    pub from: String,
    /// The recipient, spelled the same way.
    pub to: String,
    /// When (unix ms).
    pub ts: u64,
    /// `chat`, `question`, `notice` or `presence`.
    pub kind: String,
    /// For questions: `quick` or `deep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// For questions: the agents it bubbled through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// The front matter of a work item (one per assignment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkFront {
    /// The agent doing the work.
    pub agent: String,
    /// `pending`, `done` or `failed`.
    pub status: String,
    /// Who asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// When it was created (unix ms).
    pub created: u64,
    /// When it last changed (unix ms).
    pub updated: u64,
}

const DESCRIPTION_HEADING: &str = "## Description\n";
const NOTES_HEADING: &str = "\n## Notes\n";

fn doc_id(collection: Collection, name: &str) -> Option<DocId> {
    DocName::new(name)
        .ok()
        .map(|name| DocId { collection, name })
}

/// The agent's document id.
pub fn agent_doc_id(name: &str) -> Option<DocId> {
    doc_id(Collection::Agents, name)
}

/// The front matter the node projects to.
pub fn agent_front(node: &AgentNode) -> AgentFront {
    AgentFront {
        id: node.name.clone(),
        kind: node.kind.to_string(),
        expert: node.expert.map(|e| e.to_string()),
        parent: node.parent.clone(),
        state: node.state.as_str().to_string(),
        assignment: node.assignment.clone(),
        model: node.model.clone(),
        requester: node.requester.clone(),
        restart_strategy: node.restart,
        task_mode: node.task_mode,
        children: node.children.clone(),
        workdir: node.workdir.clone(),
        thread: node.thread.clone(),
        session: node.session.clone(),
        rules: node.rules.clone(),
        created: node.created,
        updated: node.updated,
        modes: node.modes,
        usage: (node.usage != Usage::default()).then_some(node.usage),
        commitments: node.commitments.clone(),
    }
}

fn agent_body(description: &str, notes: &str) -> String {
    format!(
        "{DESCRIPTION_HEADING}{}\n{NOTES_HEADING}{}\n",
        description.trim_end(),
        notes.trim_end()
    )
}

/// Splits an agent document's body into its description and notes.
///
/// The split is at the *last* "## Notes" heading: descriptions are often written by models and may
/// contain any markdown, while notes are a person's own.
pub fn split_agent_body(body: &str) -> (String, String) {
    let rest = body.strip_prefix(DESCRIPTION_HEADING).unwrap_or(body);
    match rest.rfind(NOTES_HEADING) {
        Some(at) => (
            rest[..at].trim_end().to_string(),
            rest[at + NOTES_HEADING.len()..].trim_end().to_string(),
        ),
        None => (rest.trim_end().to_string(), String::new()),
    }
}

/// Renders an agent's document.
pub fn agent_doc(node: &AgentNode) -> String {
    render(
        &agent_front(node),
        &agent_body(&node.description, &node.notes),
    )
}

fn render<F: Serialize>(front: &F, body: &str) -> String {
    // Rendering plain data structures to TOML cannot fail (no maps with non-string keys, no NaN), so an
    // error here is a bug; fall back to the body alone rather than losing the document.
    let text = front_matter::render(front, body).unwrap_or_else(|e| {
        tracing::error!("could not render front matter: {e}");
        body.to_string()
    });
    seal(&text)
}

/// The last line of every document Tavern writes: a checksum of everything before it. It tells Tavern's
/// own writes (current or stale) from a person's edits, across restarts and without any other record.
/// Markdown viewers do not show it.
const SEAL_PREFIX: &str = "<!-- tavern:";
const SEAL_SUFFIX: &str = " -->\n";

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Appends the checksum line.
pub fn seal(text: &str) -> String {
    format!("{text}{SEAL_PREFIX}{:016x}{SEAL_SUFFIX}", stable_hash(text))
}

/// The checksum a document's last line states, whether or not it still matches: for an edited file, it
/// names the version Tavern wrote that the person started from.
pub fn stated_seal(content: &str) -> Option<u64> {
    let start = content.rfind(SEAL_PREFIX)?;
    let hex = content[start..]
        .strip_prefix(SEAL_PREFIX)?
        .strip_suffix(SEAL_SUFFIX)?;
    u64::from_str_radix(hex, 16).ok()
}

/// For an agent document Tavern wrote: its seal and the editable parts, to merge later edits against.
pub fn agent_edit_base(content: &str) -> Option<(u64, EditBase)> {
    let (text, seal) = unseal(content);
    if seal != Seal::Intact {
        return None;
    }
    let (_, body): (AgentFront, String) = front_matter::parse(text).ok()?;
    let (description, notes) = split_agent_body(&body);
    Some((stable_hash(text), EditBase { description, notes }))
}

/// What a document's checksum line says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// Written by Tavern and unchanged since (it may still be out of date).
    Intact,
    /// Changed by someone else since Tavern wrote it, or never written by Tavern.
    Broken,
}

/// Splits off the checksum line: the text without it, and whether it matched.
pub fn unseal(content: &str) -> (&str, Seal) {
    let Some(start) = content.rfind(SEAL_PREFIX) else {
        return (content, Seal::Broken);
    };
    let (text, line) = content.split_at(start);
    let hex = line
        .strip_prefix(SEAL_PREFIX)
        .and_then(|l| l.strip_suffix(SEAL_SUFFIX));
    match hex.and_then(|h| u64::from_str_radix(h, 16).ok()) {
        Some(hash) if hash == stable_hash(text) => (text, Seal::Intact),
        // A broken or missing seal: keep the text as the person left it, minus a seal-like last line.
        _ => (if hex.is_some() { text } else { content }, Seal::Broken),
    }
}

fn party(p: &Party) -> String {
    p.to_string()
}

/// Renders a message's document.
pub fn message_doc(message: &Message) -> String {
    let (kind, class) = match message.kind {
        MessageKind::Chat => ("chat", None),
        MessageKind::Question { class } => (
            "question",
            Some(match class {
                tavern_plugin_api::QuestionClass::Quick => "quick".to_string(),
                tavern_plugin_api::QuestionClass::Deep => "deep".to_string(),
            }),
        ),
        MessageKind::Notice => ("notice", None),
        MessageKind::Presence => ("presence", None),
    };
    let front = MessageFront {
        id: message.id.clone(),
        from: party(&message.from),
        to: party(&message.to),
        ts: message.ts,
        kind: kind.to_string(),
        class,
        via: message.via.clone(),
    };
    render(&front, &format!("{}\n", message.text.trim_end()))
}

/// The message's document id.
pub fn message_doc_id(message: &Message) -> Option<DocId> {
    doc_id(Collection::Messages, &message.id)
}

/// Where the agent's work item lives now and its content, if it has an assignment.
pub fn work_doc(node: &AgentNode) -> Option<(DocId, String)> {
    use tavern_plugin_api::AgentState::*;
    let assignment = node.assignment.as_ref()?;
    let (collection, status) = match node.state {
        Done | DismissedReaped => (Collection::WorkCompleted, "done"),
        FailedReaped => (Collection::WorkCompleted, "failed"),
        _ => (Collection::WorkPending, "pending"),
    };
    let front = WorkFront {
        agent: node.name.clone(),
        status: status.to_string(),
        requester: node.requester.clone(),
        created: node.created,
        updated: node.updated,
    };
    let id = doc_id(collection, &node.name)?;
    Some((id, render(&front, &format!("{}\n", assignment.trim_end()))))
}

/// A document to write, or to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocWrite {
    /// Write this content.
    Put(DocId, String),
    /// Remove the document if present.
    Remove(DocId),
}

/// The documents touched by these outcomes, rendered from the current state.
pub fn documents_for(state: &TavernState, outcomes: &[Outcome]) -> Vec<DocWrite> {
    let mut agents = BTreeSet::new();
    let mut messages = BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            Outcome::AgentSummoned(new) => {
                agents.insert(new.name.to_lowercase());
                if let Some(parent) = &new.parent {
                    agents.insert(parent.to_lowercase());
                }
            }
            Outcome::StateChanged { agent, .. }
            | Outcome::CommitmentAdded { agent, .. }
            | Outcome::CommitmentChecked { agent, .. }
            | Outcome::CommitmentSignedOff { agent, .. }
            | Outcome::CommitmentReviewed { agent, .. }
            | Outcome::ModesChanged { agent, .. }
            | Outcome::DescriptionChanged { agent, .. }
            | Outcome::NotesChanged { agent, .. }
            | Outcome::RestartStrategyChanged { agent, .. }
            | Outcome::RuleAdded { agent, .. }
            | Outcome::SessionStarted { agent, .. }
            | Outcome::ThreadAttached { agent, .. }
            | Outcome::ModelReplied { agent, .. } => {
                agents.insert(agent.to_lowercase());
            }
            Outcome::MessagePosted(message) => {
                messages.insert(message.id.clone());
            }
            Outcome::TavernOpened { .. }
            | Outcome::InboxRead { .. }
            | Outcome::InboxRewound { .. }
            | Outcome::ToolCalled { .. }
            | Outcome::TaskRestarted { .. }
            | Outcome::DocumentEditRecorded { .. }
            | Outcome::PendingOpened { .. }
            | Outcome::PendingSettled { .. }
            | Outcome::SessionTurn { .. }
            | Outcome::TurnInterrupted { .. }
            | Outcome::InputSent { .. }
            | Outcome::Activity { .. } => {}
        }
    }
    let mut writes = Vec::new();
    for key in agents {
        if let Some(node) = state.agents.get(&key) {
            writes.extend(agent_writes(node));
        }
    }
    for message in messages.iter().filter_map(|id| state.message(id)) {
        if let Some(id) = message_doc_id(message) {
            writes.push(DocWrite::Put(id, message_doc(message)));
        }
    }
    writes
}

fn agent_writes(node: &AgentNode) -> Vec<DocWrite> {
    let mut writes = Vec::new();
    if let Some(id) = agent_doc_id(&node.name) {
        writes.push(DocWrite::Put(id, agent_doc(node)));
    }
    if let Some((id, content)) = work_doc(node) {
        let other = match id.collection {
            Collection::WorkPending => Collection::WorkCompleted,
            _ => Collection::WorkPending,
        };
        writes.push(DocWrite::Put(id, content));
        if let Some(stale) = doc_id(other, &node.name) {
            writes.push(DocWrite::Remove(stale));
        }
    }
    writes
}

/// Every document the state implies (for re-projection at startup).
pub fn all_documents(state: &TavernState) -> Vec<DocWrite> {
    let mut writes = Vec::new();
    for node in state.agents_in_order() {
        writes.extend(agent_writes(node));
    }
    for message in &state.messages {
        if let Some(id) = message_doc_id(message) {
            writes.push(DocWrite::Put(id, message_doc(message)));
        }
    }
    writes
}

/// The document an edited path should hold according to the state, if Tavern manages that path.
pub fn expected_content(state: &TavernState, id: &DocId) -> Option<String> {
    match id.collection {
        Collection::Agents => state.agent(id.name.as_str()).map(agent_doc),
        Collection::Messages => state.message(id.name.as_str()).map(message_doc),
        Collection::WorkPending | Collection::WorkCompleted => state
            .agent(id.name.as_str())
            .and_then(work_doc)
            .filter(|(doc, _)| doc == id)
            .map(|(_, content)| content),
        Collection::Prompts => None,
    }
}

/// Decides an edit made to a file outside Tavern.
pub(super) fn decide_edit(
    state: &TavernState,
    path: &str,
    content: Option<&str>,
    base: Option<&EditBase>,
) -> Result<Decision, DomainError> {
    let edit_error = |reason: String| DomainError::Edit {
        path: path.to_string(),
        reason,
    };
    let id = DocId::from_relative_path(Path::new(path))
        .ok_or_else(|| edit_error("not a Tavern document".to_string()))?;
    let recorded = || {
        Ok(Decision {
            outcomes: vec![Outcome::DocumentEditRecorded {
                path: path.to_string(),
                ignored: Vec::new(),
            }],
            continues: false,
        })
    };
    if id.collection == Collection::Prompts {
        // Prompt overrides are read from their files when a turn starts; the log keeps the audit trail.
        return recorded();
    }
    let expected = expected_content(state, &id);
    if content.is_some() && content.map(str::to_string) == expected {
        return recorded();
    }
    match id.collection {
        Collection::Agents => {}
        Collection::Messages => {
            return Err(edit_error(
                "messages are records and cannot be changed; post a new message instead. Tavern restored the file."
                    .to_string(),
            ))
        }
        _ => {
            return Err(edit_error(
                "work items follow their agent's state and cannot be edited. Tavern restored the file."
                    .to_string(),
            ))
        }
    }
    let node = state.agent(id.name.as_str()).ok_or_else(|| {
        edit_error(
            "no agent has this name; agents are created by summoning, not by adding files".into(),
        )
    })?;
    let Some(content) = content else {
        return Err(edit_error(
            "agent files cannot be deleted (dead agents keep their files). Tavern restored it from the log."
                .to_string(),
        ));
    };
    let (content, _) = unseal(content);
    let (front, body): (AgentFront, String) = front_matter::parse(content).map_err(|e| {
        edit_error(format!(
            "{e}. Tavern restored the file; your text is kept in the log"
        ))
    })?;
    let current = agent_front(node);
    let mut changed = Vec::new();
    macro_rules! cmp {
        ($($field:ident),*) => { $( if front.$field != current.$field { changed.push(stringify!($field)); } )* };
    }
    cmp!(
        id,
        kind,
        expert,
        parent,
        state,
        assignment,
        model,
        requester,
        restart_strategy,
        task_mode,
        children,
        workdir,
        thread,
        session,
        rules,
        created,
        modes,
        usage,
        commitments
    );
    let (description, notes) = split_agent_body(&body);
    // The version the person started from: known from the file's checksum line, or — if Tavern has not
    // changed the agent since (same `updated` stamp) — the current one. Otherwise the edit cannot be
    // merged safely.
    let current_texts = EditBase {
        description: node.description.trim_end().to_string(),
        notes: node.notes.trim_end().to_string(),
    };
    let base =
        match base {
            Some(base) => base.clone(),
            None if front.updated == current.updated => current_texts.clone(),
            None => return Err(edit_error(
                "the agent changed after this copy of the file was written, so the edit cannot be \
                 merged; your text is kept in the log — re-apply it to the current file"
                    .to_string(),
            )),
        };
    let mut outcomes = Vec::new();
    let mut conflicts = Vec::new();
    for (field, edited, was, now) in [
        (
            "description",
            &description,
            &base.description,
            &current_texts.description,
        ),
        ("notes", &notes, &base.notes, &current_texts.notes),
    ] {
        if edited == was || edited == now {
            // The person did not touch it, or made the change Tavern already has.
            continue;
        }
        if now != was {
            // Both the person and Tavern changed it since the base: keep Tavern's, report the clash.
            conflicts.push(field);
            continue;
        }
        outcomes.push(match field {
            "description" => Outcome::DescriptionChanged {
                agent: node.name.clone(),
                text: edited.clone(),
            },
            _ => Outcome::NotesChanged {
                agent: node.name.clone(),
                text: edited.clone(),
            },
        });
    }
    if outcomes.is_empty() && !conflicts.is_empty() {
        return Err(edit_error(format!(
            "the {} changed in Tavern while the file was being edited; Tavern kept its version, and \
             your text is kept in the log",
            conflicts.join(" and ")
        )));
    }
    let managed = |changed: &[&str]| {
        if changed.len() == 1 {
            format!("the field `{}` is", changed[0])
        } else {
            format!("the fields `{}` are", changed.join("`, `"))
        }
    };
    if outcomes.is_empty() && !changed.is_empty() {
        return Err(edit_error(format!(
            "{} managed by Tavern; only the description and notes may be edited in the file \
             (use the console commands for the rest). Tavern restored the file; your text is kept in the log",
            managed(&changed)
        )));
    }
    // A person who edited the description or notes may have saved an editor buffer opened before the
    // agent moved on, so its managed fields are stale rather than edited: take the description and
    // notes, and say which managed fields were left as Tavern has them.
    outcomes.push(Outcome::DocumentEditRecorded {
        path: path.to_string(),
        ignored: changed
            .iter()
            .map(|f| f.to_string())
            .chain(
                conflicts
                    .iter()
                    .map(|f| format!("{f} (changed in Tavern meanwhile)")),
            )
            .collect(),
    });
    Ok(Decision {
        outcomes,
        continues: false,
    })
}
