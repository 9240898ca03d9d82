//! Model backends: parsing model specs and building the [`Model`] each agent thinks with.
//!
//! This build has one backend, the scripted model, which replays replies from a TOML script so tests
//! and offline demos run the whole loop without a model service. It says it is scripted wherever it
//! shows (its label, the log's `scripted` flag, the console). The Claude Code and HTTP backends plug in
//! here as further [`ModelSpec`] variants.

pub mod anthropic;
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
}

impl ModelSpec {
    /// Parses a spec; empty or `none` means no model. Relative script paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Option<ModelSpec>, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        match text.split_once(':') {
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
                "is {text:?}, which is not a model this build knows: use scripted:PATH (a reply script), \
                 or leave it empty for none"
            )),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Scripted(path) => write!(f, "scripted:{}", path.display()),
        }
    }
}

/// Builds and caches models by spec, so each script is read once and shared by the agents using it.
///
/// The cache sits behind a std `Mutex` that is only held to look up or insert, never across an await.
#[derive(Clone, Default)]
pub struct Models {
    cache: Arc<Mutex<HashMap<ModelSpec, Arc<dyn Model>>>>,
}

impl Models {
    /// An empty cache.
    pub fn new() -> Models {
        Models::default()
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
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.clone(), model.clone());
        Ok(model)
    }
}
