//! Model backends: parsing model specs and building the [`Model`] each agent thinks with.
//!
//! Backends: the Anthropic Messages API (`anthropic:MODEL`), OpenAI-compatible chat completions
//! (`openai:MODEL`: Ollama, vLLM, llama.cpp server, LM Studio), and the scripted model
//! (`scripted:PATH`), which replays replies from a TOML script so tests and offline demos run the whole
//! loop without a model service and says it is scripted wherever it shows. `claude-code[:MODEL]` names
//! the Claude Code CLI runtime, which is not a [`Model`]: the CLI runs the agent's whole turn itself
//! (see `crate::turn::cli`). Keys come from the environment only and live in [`secret::Secret`].

pub mod anthropic;
mod http;
pub mod openai;
pub mod scripted;
pub mod secret;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use tavern_plugin_api::{Model, ModelError};

/// Which model an agent uses, parsed from a spec string like `scripted:demo.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelSpec {
    /// Replies from a TOML script (absolute path).
    Scripted(PathBuf),
    /// The Anthropic Messages API with this model id.
    Anthropic(String),
    /// An OpenAI-compatible chat-completions API with this model name.
    OpenAi(String),
    /// The Claude Code CLI, with its default model or this one.
    ClaudeCode {
        /// The model (`--model`), when not the CLI's default.
        model: Option<String>,
    },
}

impl ModelSpec {
    /// Parses a spec; empty or `none` means no model. Relative script paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Option<ModelSpec>, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        if text == "claude-code" {
            return Ok(Some(ModelSpec::ClaudeCode { model: None }));
        }
        match text.split_once(':') {
            Some(("anthropic", model)) if !model.trim().is_empty() => {
                Ok(Some(ModelSpec::Anthropic(model.trim().to_string())))
            }
            Some(("openai", model)) if !model.trim().is_empty() => {
                Ok(Some(ModelSpec::OpenAi(model.trim().to_string())))
            }
            Some(("claude-code", model)) if !model.trim().is_empty() => Ok(Some(ModelSpec::ClaudeCode {
                model: Some(model.trim().to_string()),
            })),
            Some(("scripted", path)) if !path.trim().is_empty() => {
                let path = PathBuf::from(path.trim());
                let path = if path.is_absolute() {
                    path
                } else {
                    base.join(path)
                };
                Ok(Some(ModelSpec::Scripted(path)))
            }
            _ => Err(format!(
                "is {text:?}, which is not a model this build knows: use anthropic:MODEL, openai:MODEL, \
                 claude-code[:MODEL], scripted:PATH (a reply script), or leave it empty for none"
            )),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Scripted(path) => write!(f, "scripted:{}", path.display()),
            ModelSpec::Anthropic(model) => write!(f, "anthropic:{model}"),
            ModelSpec::OpenAi(model) => write!(f, "openai:{model}"),
            ModelSpec::ClaudeCode { model: None } => f.write_str("claude-code"),
            ModelSpec::ClaudeCode { model: Some(model) } => write!(f, "claude-code:{model}"),
        }
    }
}

/// The model spec for each agent type, as configured; an agent summoned without a model of its own
/// uses its type's, looked up at each turn so a changed configuration applies after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindModels {
    /// Jake's.
    pub jake: Option<String>,
    /// Mortals' (and experts').
    pub mortal: Option<String>,
    /// Drones'.
    pub drone: Option<String>,
    /// Monitors'.
    pub monitor: Option<String>,
}

impl KindModels {
    /// The same spec for every type (`--model`).
    pub fn all(spec: Option<String>) -> KindModels {
        KindModels {
            jake: spec.clone(),
            mortal: spec.clone(),
            drone: spec.clone(),
            monitor: spec,
        }
    }

    /// The configured spec for a type.
    pub fn for_kind(&self, kind: tavern_plugin_api::AgentKind) -> Option<&str> {
        use tavern_plugin_api::AgentKind;
        match kind {
            AgentKind::Jake => self.jake.as_deref(),
            AgentKind::Mortal => self.mortal.as_deref(),
            AgentKind::Drone => self.drone.as_deref(),
            AgentKind::Monitor => self.monitor.as_deref(),
        }
    }

    /// The spec an agent thinks with: its own, else its type's.
    pub fn effective<'a>(
        &'a self,
        own: Option<&'a str>,
        kind: tavern_plugin_api::AgentKind,
    ) -> Option<&'a str> {
        own.or_else(|| self.for_kind(kind))
    }
}

/// Builds and caches models by spec, so each script is read once and shared by the agents using it.
///
/// The cache sits behind a std `Mutex` that is only held to look up or insert, never across an await.
#[derive(Clone)]
pub struct Models {
    cache: Arc<Mutex<HashMap<ModelSpec, Arc<dyn Model>>>>,
    max_retries: u32,
}

impl Models {
    /// An empty cache whose API backends retry failed calls this many times.
    pub fn with_retries(max_retries: u32) -> Models {
        Models {
            cache: Arc::default(),
            max_retries,
        }
    }

    /// The model for a spec, loading it on first use.
    pub fn get(&self, spec: &ModelSpec) -> Result<Arc<dyn Model>, ModelError> {
        if let Some(model) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(spec)
        {
            return Ok(model.clone());
        }
        let model: Arc<dyn Model> = match spec {
            ModelSpec::Scripted(path) => Arc::new(scripted::ScriptedModel::load(path).map_err(
                |e| ModelError::Backend {
                    model: spec.to_string(),
                    message: e.to_string(),
                },
            )?),
            ModelSpec::Anthropic(model) => {
                let mut config = anthropic::AnthropicConfig::from_env(model);
                config.max_retries = self.max_retries;
                Arc::new(anthropic::AnthropicModel::new(config)?)
            }
            ModelSpec::OpenAi(model) => {
                let mut config = openai::OpenAiConfig::from_env(model);
                config.max_retries = self.max_retries;
                Arc::new(openai::OpenAiModel::new(config)?)
            }
            ModelSpec::ClaudeCode { .. } => {
                return Err(ModelError::Unavailable {
                    model: spec.to_string(),
                    message: "the Claude Code CLI runs whole turns itself and is not called as a \
                              model; this is a bug in Tavern"
                        .to_string(),
                })
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.clone(), model.clone());
        Ok(model)
    }
}
