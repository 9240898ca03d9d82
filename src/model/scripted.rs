//! The scripted model: replies read from a TOML script, picked by agent and turn number.
//!
//! A script is a list of `[[reply]]` tables. Each reply is for an agent by name (`agent = "Frodo"`), for
//! a type (`agent = "kind:mortal"`, or `kind:mortal/reviewer`), or for anyone (`agent = "*"`, the
//! default). When an agent takes its n-th turn (counting from 0), the model uses the most specific group
//! that has any replies for it — by name, else by type, else anyone — and answers with that group's n-th
//! reply. Because the turn number comes from the log, the same script gives the same run every time,
//! across restarts too. A turn past the end of the script gets a labelled "no reply scripted" text.
//!
//! ```toml
//! [[reply]]
//! agent = "Jake"
//! text = "Coming right up!"
//! tools = [{ summon = { assignment = "Write the parser" } }]
//!
//! [[reply]]
//! agent = "kind:mortal"
//! error = "simulated outage"    # this turn's call fails
//! ```

use async_trait::async_trait;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tavern_plugin_api::{Model, ModelError, ModelReply, ModelRequest, ToolCall};

/// A script that could not be loaded; names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("cannot read the model script {path}: {source}")]
    Read {
        /// The script.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("the model script {path} is not valid: {message}")]
    Invalid {
        /// The script.
        path: PathBuf,
        /// What is wrong, with its line where known.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    reply: Vec<ScriptedReply>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedReply {
    #[serde(default = "anyone")]
    agent: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    tools: Vec<ToolCall>,
    #[serde(default)]
    error: Option<String>,
}

fn anyone() -> String {
    "*".to_string()
}

/// A model whose replies come from a script.
#[derive(Debug)]
pub struct ScriptedModel {
    label: String,
    replies: Vec<ScriptedReply>,
}

impl ScriptedModel {
    /// Loads a script file.
    pub fn load(path: &Path) -> Result<ScriptedModel, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ScriptedModel::parse(&text, path)
    }

    /// Parses script text; `path` is for messages and the label.
    pub fn parse(text: &str, path: &Path) -> Result<ScriptedModel, ScriptError> {
        let script: Script = toml::from_str(text).map_err(|e| ScriptError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        for (i, reply) in script.reply.iter().enumerate() {
            if let Some(kind) = reply.agent.strip_prefix("kind:") {
                if kind.is_empty() {
                    return Err(ScriptError::Invalid {
                        path: path.to_path_buf(),
                        message: format!("reply {} has `agent = \"kind:\"` with no type", i + 1),
                    });
                }
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(ScriptedModel {
            label: format!("scripted:{name}"),
            replies: script.reply,
        })
    }

    fn pick(&self, request: &ModelRequest) -> Option<&ScriptedReply> {
        let base_kind = request.kind.split('/').next().unwrap_or(&request.kind);
        let by_name: Vec<&ScriptedReply> = self
            .replies
            .iter()
            .filter(|r| r.agent.eq_ignore_ascii_case(&request.agent))
            .collect();
        let by_kind: Vec<&ScriptedReply> = self
            .replies
            .iter()
            .filter(|r| {
                r.agent.strip_prefix("kind:").is_some_and(|k| {
                    k.eq_ignore_ascii_case(&request.kind) || k.eq_ignore_ascii_case(base_kind)
                })
            })
            .collect();
        let anyone: Vec<&ScriptedReply> = self.replies.iter().filter(|r| r.agent == "*").collect();
        let group = [by_name, by_kind, anyone]
            .into_iter()
            .find(|g| !g.is_empty())?;
        group.get(request.turn as usize).copied()
    }
}

#[async_trait]
impl Model for ScriptedModel {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn is_scripted(&self) -> bool {
        true
    }

    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError> {
        match self.pick(&request) {
            Some(reply) => match &reply.error {
                Some(message) => Err(ModelError::Backend {
                    model: self.label.clone(),
                    message: message.clone(),
                }),
                None => Ok(ModelReply {
                    text: reply.text.clone(),
                    tool_calls: reply.tools.clone(),
                    ..ModelReply::default()
                }),
            },
            None => Ok(ModelReply {
                text: format!(
                    "({}: no reply scripted for {} turn {})",
                    self.label, request.agent, request.turn
                ),
                ..ModelReply::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(agent: &str, kind: &str, turn: u32) -> ModelRequest {
        ModelRequest {
            agent: agent.into(),
            kind: kind.into(),
            assignment: None,
            turn,
            system: String::new(),
            messages: Vec::new(),
            tools: Vec::new(),
        }
    }

    const SCRIPT: &str = r#"
[[reply]]
agent = "Jake"
text = "on it"
tools = [{ summon = { assignment = "parse", type = "tester" } }]

[[reply]]
agent = "kind:mortal"
text = "first mortal turn"

[[reply]]
agent = "Frodo"
text = "frodo 0"

[[reply]]
agent = "Frodo"
error = "boom"
"#;

    #[tokio::test]
    async fn replies_are_picked_by_name_then_kind_then_turn() {
        let model = ScriptedModel::parse(SCRIPT, Path::new("demo.toml")).unwrap();
        assert_eq!(model.label(), "scripted:demo.toml");
        let jake = model.complete(request("jake", "jake", 0)).await.unwrap();
        assert_eq!(jake.text, "on it");
        assert_eq!(jake.tool_calls.len(), 1);
        let frodo = model.complete(request("Frodo", "mortal", 0)).await.unwrap();
        assert_eq!(frodo.text, "frodo 0");
        let err = model
            .complete(request("Frodo", "mortal", 1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("boom"));
        let sam = model
            .complete(request("Sam", "mortal/reviewer", 0))
            .await
            .unwrap();
        assert_eq!(sam.text, "first mortal turn");
        let past_end = model.complete(request("Sam", "mortal", 5)).await.unwrap();
        assert!(
            past_end.text.contains("no reply scripted"),
            "{}",
            past_end.text
        );
        assert!(past_end.tool_calls.is_empty());
    }

    #[test]
    fn bad_scripts_name_the_file_and_problem() {
        let err = ScriptedModel::parse(
            "[[reply]]\ntools = [{ sumon = { assignment = \"x\" } }]\n",
            Path::new("bad.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("sumon"), "{err}");
        let err = ScriptedModel::load(Path::new("/nonexistent/script.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/script.toml"), "{err}");
    }
}
