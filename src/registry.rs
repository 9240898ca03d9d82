//! The closed registry of agent types: [`AgentKind`] mapped to its plugin crate by an exhaustive match.
//!
//! Nothing is loaded at run time. A project may override a type's or an expert's prompt text with a file
//! `.tavern/prompts/<kind-or-expert>.md`, but it cannot add types.

use tavern_plugin_api::{AgentKind, AgentType, Expert};

use crate::blackboard::{Collection, DocId, DocName, DocStore};

/// The plugin for a kind.
pub fn plugin(kind: AgentKind) -> &'static dyn AgentType {
    match kind {
        AgentKind::Jake => &tavern_plugin_jake::Jake,
        AgentKind::Mortal => &tavern_plugin_mortal::Mortal,
        AgentKind::Drone => &tavern_plugin_drone::Drone,
        AgentKind::Monitor => &tavern_plugin_monitor::Monitor,
    }
}

fn override_text(store: &dyn DocStore, name: &str) -> Option<String> {
    let id = DocId::new(Collection::Prompts, DocName::new(name).ok()?);
    match store.read(&id) {
        Ok(text) => text.filter(|t| !t.trim().is_empty()),
        Err(e) => {
            // A broken override must not silently change an agent's behaviour: say so and use the
            // compiled-in text.
            tracing::warn!("ignoring prompt override {id}: {e}");
            None
        }
    }
}

/// The prompt text for a kind (and expert), with project overrides from `.tavern/prompts/` applied.
///
/// An expert mortal's prompt is the mortal prompt followed by the expert's.
pub fn prompt_text(store: &dyn DocStore, kind: AgentKind, expert: Option<Expert>) -> String {
    let plugin = plugin(kind);
    let mut text =
        override_text(store, kind.as_str()).unwrap_or_else(|| plugin.prompt(None).to_string());
    if let Some(expert) = expert {
        let expert_text = override_text(store, expert.as_str())
            .unwrap_or_else(|| plugin.prompt(Some(expert)).to_string());
        text = format!("{}\n\n{}", text.trim_end(), expert_text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blackboard::MemStore;

    #[test]
    fn every_kind_maps_to_its_own_plugin() {
        for kind in AgentKind::ALL {
            assert_eq!(plugin(kind).kind(), kind);
        }
    }

    #[test]
    fn project_overrides_replace_prompt_text_but_not_types() {
        let store = MemStore::new();
        let base = prompt_text(&store, AgentKind::Mortal, Some(Expert::Reviewer));
        assert!(base.contains("worker agent"), "{base}");
        assert!(base.contains("reviewer"), "{base}");
        store
            .write(
                &DocId::new(Collection::Prompts, DocName::new("reviewer").unwrap()),
                "Review like a hawk.\n",
            )
            .unwrap();
        let overridden = prompt_text(&store, AgentKind::Mortal, Some(Expert::Reviewer));
        assert!(
            overridden.ends_with("Review like a hawk.\n"),
            "{overridden}"
        );
        assert!(overridden.contains("worker agent"));
    }
}
