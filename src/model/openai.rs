//! The OpenAI-compatible chat completions backend (OpenAI itself, Ollama, vLLM, the llama.cpp server,
//! LM Studio): its configuration, mapping a Tavern conversation onto chat messages, and reading the
//! streamed chunks back into a [`ModelReply`].
//!
//! Compatible servers differ in small ways, so the reading is lenient where that costs nothing: error
//! bodies may be objects or plain strings, tool-call deltas may come whole or in pieces, arguments may
//! be a JSON string or an object, and a stream that gave a finish reason may end without `[DONE]`.
//! Retries, error wording and tool-call pairing are shared with the Anthropic backend and live in
//! the crate-private `model::http` module.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tavern_plugin_api::{
    ChatMessage, Model, ModelError, ModelReply, ModelRequest, Role, StopReason, Usage,
};

use super::http::{self, AttemptError, CallSite, EventAssembler, Flow, RawCall, RetryPolicy};
use super::secret::Secret;

/// Where the API is when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach an OpenAI-compatible server and how to call it.
///
/// Its `Debug` shows the key as `***`.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The API's address including `/v1`, like `OPENAI_BASE_URL`; default [`DEFAULT_BASE_URL`]. For
    /// Ollama that is `http://localhost:11434/v1`.
    pub base_url: String,
    /// The key, sent as `authorization: Bearer ...` (`OPENAI_API_KEY`); local servers need none.
    pub api_key: Option<Secret>,
    /// The model, e.g. `gpt-4.1` or `qwen2.5-coder:14b`.
    pub model: String,
    /// Retries after a failed first attempt (rate limits, server errors); default 4.
    pub max_retries: u32,
    /// The wait before the first retry, doubling for each further one up to 30 s; default 500 ms.
    pub backoff: Duration,
    /// How long one attempt, including the whole streamed answer, may take; default 600 s.
    pub request_timeout: Duration,
}

impl OpenAiConfig {
    /// The defaults for `model`, with no key and OpenAI's address.
    pub fn new(model: &str) -> OpenAiConfig {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            model: model.to_owned(),
            max_retries: 4,
            backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(600),
        }
    }

    /// The defaults for `model`, with the address and key read from `OPENAI_BASE_URL` and
    /// `OPENAI_API_KEY`. Empty variables count as unset.
    pub fn from_env(model: &str) -> OpenAiConfig {
        OpenAiConfig::from_lookup(model, http::env_var)
    }

    /// [`OpenAiConfig::from_env`] over any lookup, so it can be tested without the process's
    /// environment.
    fn from_lookup(model: &str, lookup: impl Fn(&str) -> Option<String>) -> OpenAiConfig {
        let mut config = OpenAiConfig::new(model);
        if let Some(url) = lookup("OPENAI_BASE_URL") {
            config.base_url = url;
        }
        config.api_key = lookup("OPENAI_API_KEY").map(Secret::new);
        config
    }
}

/// A model reached through an OpenAI-compatible chat completions API, streaming its answers.
pub struct OpenAiModel {
    config: OpenAiConfig,
    /// `{base_url}/chat/completions`.
    url: String,
    label: String,
    client: reqwest::Client,
    /// The `authorization` header, built once and marked sensitive; none for keyless local servers.
    auth: Option<reqwest::header::HeaderValue>,
}

impl fmt::Debug for OpenAiModel {
    // Written out rather than derived so the output stays the config (key as `***`) and not the
    // client's or the header's internals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiModel")
            .field("label", &self.label)
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiModel {
    /// A model for `config`. Fails with [`ModelError::Unavailable`], saying what to set, when OpenAI
    /// itself is addressed without a key, or when the configuration cannot work.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiModel, ModelError> {
        let label = format!("openai:{}", config.model);
        let unavailable = |message: String| ModelError::Unavailable {
            model: label.clone(),
            message,
        };
        if config.model.trim().is_empty() {
            return Err(unavailable(
                "no model name was given; name one, e.g. openai:gpt-4.1 or openai:qwen2.5-coder"
                    .to_owned(),
            ));
        }
        let base = http::base_url(&config.base_url, "OPENAI_BASE_URL").map_err(unavailable)?;
        // Local servers need no key, so only OpenAI's own API, which always does, is refused.
        if config.api_key.is_none() && base == DEFAULT_BASE_URL {
            return Err(unavailable(
                "no API key is set; set OPENAI_API_KEY, or OPENAI_BASE_URL to use a local server \
                 (e.g. http://localhost:11434/v1 for Ollama)"
                    .to_owned(),
            ));
        }
        let auth = match &config.api_key {
            Some(key) => {
                Some(http::secret_header(key, "Bearer ", "OPENAI_API_KEY").map_err(unavailable)?)
            }
            None => None,
        };
        let client = http::client(config.request_timeout).map_err(unavailable)?;
        Ok(OpenAiModel {
            url: format!("{base}/chat/completions"),
            label,
            client,
            auth,
            config,
        })
    }

    /// How this model's calls are retried, logged and redacted.
    fn call_site(&self) -> CallSite<'_> {
        CallSite {
            label: &self.label,
            retry: RetryPolicy {
                max_retries: self.config.max_retries,
                backoff: self.config.backoff,
            },
            secrets: self.config.api_key.iter().collect(),
            hint,
        }
    }
}

/// What to do about an error status that retrying will not fix.
fn hint(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("check OPENAI_API_KEY"),
        403 => Some("the key is not allowed to do this; check its project and permissions"),
        404 => Some(
            "check the model name (the server must have it; `ollama pull` it for Ollama), and that \
             OPENAI_BASE_URL ends in /v1",
        ),
        413 => Some("the conversation is too large for one request"),
        _ => None,
    }
}

#[async_trait]
impl Model for OpenAiModel {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn is_scripted(&self) -> bool {
        false
    }

    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError> {
        let body = request_body(&self.config, &request);
        let site = self.call_site();
        site.run(|_| {
            let mut builder = self.client.post(&self.url).json(&body);
            if let Some(auth) = &self.auth {
                builder = builder.header("authorization", auth.clone());
            }
            http::send_streaming::<ChunkAssembler>(
                builder,
                &self.url,
                self.config.request_timeout,
                &self.label,
            )
        })
        .await
    }
}

/// The JSON body of a streamed chat completions request.
fn request_body(config: &OpenAiConfig, request: &ModelRequest) -> Value {
    let mut body = json!({
        "model": config.model,
        "messages": messages(&request.system, &request.messages),
        "stream": true,
        // Without this the stream carries no token counts.
        "stream_options": {"include_usage": true},
    });
    // Some compatible servers refuse an empty tool list, so none is sent when there are no tools.
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.wire(),
                    "description": tool.description(),
                    "parameters": tool.input_schema(),
                }})
            })
            .collect();
    }
    body
}

/// The system prompt and conversation as chat messages: tool calls on the assistant's message, one
/// `tool` message per result (failed ones start with `error: `), then the user's text if any.
fn messages(system: &str, conversation: &[ChatMessage]) -> Vec<Value> {
    let mut sent = Vec::with_capacity(conversation.len() + 1);
    if !system.is_empty() {
        sent.push(json!({"role": "system", "content": system}));
    }
    let lines = http::pair_tool_calls(conversation, |message, call| {
        format!("call_{message}_{call}")
    });
    for line in lines.iter().filter(|line| !line.is_empty()) {
        match line.role {
            Role::Assistant => {
                // OpenAI wants null, not "", for an assistant message that only calls tools.
                let content = if line.text.is_empty() {
                    Value::Null
                } else {
                    json!(line.text)
                };
                let mut message = json!({"role": "assistant", "content": content});
                if !line.calls.is_empty() {
                    message["tool_calls"] = line
                        .calls
                        .iter()
                        .map(|(id, call)| {
                            json!({"id": id, "type": "function", "function": {
                                "name": call.name().wire(),
                                "arguments": call.wire_input().to_string(),
                            }})
                        })
                        .collect();
                }
                sent.push(message);
            }
            Role::User => {
                for (id, result) in &line.results {
                    let content = if result.ok {
                        result.text.clone()
                    } else {
                        format!("error: {}", result.text)
                    };
                    sent.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                }
                if !line.text.is_empty() {
                    sent.push(json!({"role": "user", "content": line.text}));
                }
            }
        }
    }
    sent
}

/// One streamed `chat.completion.chunk`, as far as Tavern reads it. Everything is optional because
/// compatible servers leave out (or send `null` for) whatever they have nothing to say about.
#[derive(Debug, Default, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some servers report a failure inside the stream as a chunk with only an error.
    #[serde(default)]
    error: Option<Value>,
}

/// One choice of a chunk; Tavern asks for one, so only index 0 is read.
#[derive(Debug, Deserialize)]
struct Choice {
    /// Tavern asks for one choice; any other is ignored.
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// What one chunk adds to the answer: a piece of text and pieces of tool calls.
#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of one tool call. The first piece of a call carries its id and name, later pieces only
/// more of the arguments string, which is JSON only once all pieces are joined.
#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    /// Which call the piece belongs to; some servers leave it out when they send each call whole.
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

/// The function part of a tool-call piece.
#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    /// A piece of the JSON string; a few servers send the arguments as an object instead.
    #[serde(default)]
    arguments: Option<Value>,
}

/// Token counts, sent in a last chunk with no choices when `stream_options.include_usage` is set.
#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// A tool call being streamed.
#[derive(Debug, Default)]
struct PendingCall {
    /// The server's index for it.
    index: usize,
    name: String,
    arguments: String,
}

/// Builds the reply from a chat completions stream.
#[derive(Debug, Default)]
struct ChunkAssembler {
    text: String,
    calls: Vec<PendingCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    /// Bytes of text and arguments so far, held under [`http::MAX_REPLY_BYTES`].
    bytes: usize,
    done: bool,
}

impl ChunkAssembler {
    /// Counts `bytes` more of the answer, failing once it passes [`http::MAX_REPLY_BYTES`].
    fn count(&mut self, bytes: usize) -> Result<(), AttemptError> {
        self.bytes += bytes;
        if self.bytes > http::MAX_REPLY_BYTES {
            return Err(AttemptError::Unreadable(format!(
                "the answer grew past {} MiB",
                http::MAX_REPLY_BYTES / (1024 * 1024)
            )));
        }
        Ok(())
    }

    /// Adds a piece of a tool call to the call it belongs to, starting that call if it is new.
    fn tool_call(&mut self, delta: ToolCallDelta) -> Result<(), AttemptError> {
        // Without an index, a piece with an id starts a new call and one without continues the last.
        let index = match delta.index {
            Some(index) => index,
            None if delta.id.is_some() || self.calls.is_empty() => {
                self.calls.iter().map(|c| c.index + 1).max().unwrap_or(0)
            }
            None => self.calls.last().map_or(0, |c| c.index),
        };
        let position = match self.calls.iter().position(|c| c.index == index) {
            Some(position) => position,
            None => {
                self.calls.push(PendingCall {
                    index,
                    ..PendingCall::default()
                });
                self.calls.len() - 1
            }
        };
        let Some(function) = delta.function else {
            return Ok(());
        };
        let arguments = match function.arguments {
            Some(Value::String(piece)) => piece,
            Some(Value::Null) | None => String::new(),
            Some(whole) => whole.to_string(),
        };
        let name = function.name.unwrap_or_default();
        self.count(arguments.len() + name.len())?;
        let call = &mut self.calls[position];
        // The name comes whole in the first piece; a server repeating it must not double it.
        if call.name.is_empty() {
            call.name = name;
        }
        call.arguments.push_str(&arguments);
        Ok(())
    }
}

impl EventAssembler for ChunkAssembler {
    fn push(&mut self, _event: &str, data: &str) -> Result<Flow, AttemptError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Flow::Done);
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| AttemptError::Unreadable(format!("a chunk could not be read: {e}")))?;
        if let Some(error) = chunk.error {
            return Err(AttemptError::InStream {
                detail: http::json_error_detail(&json!({ "error": error })),
            });
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(Usage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cost_micros: None,
            });
        }
        for choice in chunk.choices.into_iter().flatten() {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(content) = delta.content {
                    self.count(content.len())?;
                    self.text.push_str(&content);
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    self.tool_call(call)?;
                }
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(Flow::More)
    }

    fn finish(self, label: &str) -> Result<ModelReply, AttemptError> {
        // The finish reason is the answer's real end; `[DONE]` only closes the stream. Servers that
        // skip `[DONE]` are accepted, streams cut before a finish reason are not.
        if self.finish_reason.is_none() {
            return Err(AttemptError::Transport {
                context: "the answer's stream".to_owned(),
                message: "it ended before a finish reason, so the answer is incomplete".to_owned(),
            });
        }
        let mut text = self.text;
        let raw = self
            .calls
            .into_iter()
            .map(|call| RawCall {
                name: call.name,
                input: call.arguments,
            })
            .collect();
        let tool_calls = http::read_tool_calls(label, raw, &mut text);
        let stop = match self.finish_reason.as_deref() {
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        };
        Ok(ModelReply {
            text,
            tool_calls,
            stop,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests;
