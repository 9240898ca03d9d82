//! Composing an agent's system prompt from its type's prompt and its node.

use crate::turn::AgentView;

/// Builds the system prompt for one turn: the type's prompt text, then what the agent needs to know
/// about itself this turn (assignment, place in the tree, commitments, modes). Each turn carries all of
/// it, so nothing relies on the model remembering.
pub fn compose_system_prompt(base: &str, node: &AgentView) -> String {
    let mut out = String::with_capacity(base.len() + 512);
    out.push_str(base.trim_end());
    out.push_str("\n\n## You\n");
    out.push_str(&format!("Your name is {} ({}).\n", node.name, node.kind));
    match &node.parent {
        Some(parent) => out.push_str(&format!("Your parent is {parent}.\n")),
        None => out.push_str("You are the root of the tree.\n"),
    }
    if !node.children.is_empty() {
        out.push_str(&format!("Your children: {}.\n", node.children.join(", ")));
    }
    if let Some(requester) = &node.requester {
        out.push_str(&format!("The work was asked for by {requester}.\n"));
    }
    if let Some(assignment) = &node.assignment {
        out.push_str(&format!("\n## Assignment\n{assignment}\n"));
    }
    if !node.description.is_empty() {
        out.push_str(&format!("\n## Description\n{}\n", node.description));
    }
    if !node.commitments.is_empty() {
        out.push_str("\n## Commitments (Tavern runs each assertion when you signal done)\n");
        for (i, c) in node.commitments.iter().enumerate() {
            out.push_str(&format!(
                "{}. {} — `{}` ({})\n",
                i + 1,
                c.description,
                c.assertion,
                c.check_status()
            ));
        }
    }
    out.push_str(&format!(
        "\n## Modes\nperseverance: {}; user present: {}; backgrounded: {}; task mode: {:?}.\n",
        node.modes.perseverance, node.modes.user_present, node.modes.backgrounded, node.task_mode
    ));
    if node.modes.perseverance {
        out.push_str("You are persevering: keep working until your commitments verify; do not stop to wait.\n");
    }
    out
}
