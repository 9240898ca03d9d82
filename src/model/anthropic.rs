//! The Anthropic Messages API backend: its configuration, mapping a Tavern conversation onto the
//! API's messages and content blocks, and reading the streamed answer back into a [`ModelReply`].
//!
//! Retries, error wording and tool-call pairing are shared with the OpenAI-compatible backend and
//! live in the crate-private `model::http` module.

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

/// Where the API is when `ANTHROPIC_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version Tavern speaks, sent as `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// The text put first when a conversation does not start with a user line, because the API requires
/// the first message to be the user's.
const CONVERSATION_STARTS: &str = "(the conversation starts)";

/// How to reach the Anthropic API and how to call it.
///
/// Its `Debug` shows the keys as `***`.
#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The API's address without `/v1`, like `ANTHROPIC_BASE_URL`; default [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// The API key, sent as `x-api-key` (`ANTHROPIC_API_KEY`).
    pub api_key: Option<Secret>,
    /// A bearer token, sent as `authorization: Bearer ...` (`ANTHROPIC_AUTH_TOKEN`), for gateways that
    /// take one instead of an API key. Both are sent when both are set.
    pub auth_token: Option<Secret>,
    /// The model, e.g. `claude-sonnet-4-5`.
    pub model: String,
    /// The most tokens one answer may have; default 8192.
    pub max_tokens: u32,
    /// Retries after a failed first attempt (rate limits, overload, server errors); default 4.
    pub max_retries: u32,
    /// The wait before the first retry, doubling for each further one up to 30 s; default 500 ms.
    pub backoff: Duration,
    /// How long one attempt, including the whole streamed answer, may take; default 600 s.
    pub request_timeout: Duration,
}

impl AnthropicConfig {
    /// The defaults for `model`, with no key and the public API's address.
    pub fn new(model: &str) -> AnthropicConfig {
        AnthropicConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            auth_token: None,
            model: model.to_owned(),
            max_tokens: 8192,
            max_retries: 4,
            backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(600),
        }
    }

    /// The defaults for `model`, with the address and keys read from `ANTHROPIC_BASE_URL`,
    /// `ANTHROPIC_API_KEY` and `ANTHROPIC_AUTH_TOKEN` (the same variables the Claude Code CLI reads).
    /// Empty variables count as unset.
    pub fn from_env(model: &str) -> AnthropicConfig {
        AnthropicConfig::from_lookup(model, http::env_var)
    }

    /// [`AnthropicConfig::from_env`] over any lookup, so it can be tested without the process's
    /// environment.
    fn from_lookup(model: &str, lookup: impl Fn(&str) -> Option<String>) -> AnthropicConfig {
        let mut config = AnthropicConfig::new(model);
        if let Some(url) = lookup("ANTHROPIC_BASE_URL") {
            config.base_url = url;
        }
        config.api_key = lookup("ANTHROPIC_API_KEY").map(Secret::new);
        config.auth_token = lookup("ANTHROPIC_AUTH_TOKEN").map(Secret::new);
        config
    }
}

/// A model reached through the Anthropic Messages API, streaming its answers.
pub struct AnthropicModel {
    config: AnthropicConfig,
    /// `{base_url}/v1/messages`.
    url: String,
    label: String,
    client: reqwest::Client,
    /// The authentication headers, built once and marked sensitive.
    auth: Vec<(&'static str, reqwest::header::HeaderValue)>,
}

impl fmt::Debug for AnthropicModel {
    // Written out rather than derived so the output stays the config (keys as `***`) and not the
    // client's or the headers' internals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicModel")
            .field("label", &self.label)
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AnthropicModel {
    /// A model for `config`. Fails with [`ModelError::Unavailable`], saying what to set, when there is
    /// neither a key nor a gateway to send requests to, or when the configuration cannot work.
    pub fn new(config: AnthropicConfig) -> Result<AnthropicModel, ModelError> {
        let label = format!("anthropic:{}", config.model);
        let unavailable = |message: String| ModelError::Unavailable {
            model: label.clone(),
            message,
        };
        if config.model.trim().is_empty() {
            return Err(unavailable(
                "no model name was given; name one, e.g. anthropic:claude-sonnet-4-5".to_owned(),
            ));
        }
        let base = http::base_url(&config.base_url, "ANTHROPIC_BASE_URL").map_err(unavailable)?;
        // A gateway may authenticate by other means (or not at all), so only the public API, which
        // always needs a key, is refused without one.
        if config.api_key.is_none()
            && config.auth_token.is_none()
            && base == DEFAULT_BASE_URL.trim_end_matches('/')
        {
            return Err(unavailable(
                "no API key is set; set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL to use a gateway)"
                    .to_owned(),
            ));
        }
        let mut auth = Vec::new();
        if let Some(key) = &config.api_key {
            let value = http::secret_header(key, "", "ANTHROPIC_API_KEY").map_err(unavailable)?;
            auth.push(("x-api-key", value));
        }
        if let Some(token) = &config.auth_token {
            let value = http::secret_header(token, "Bearer ", "ANTHROPIC_AUTH_TOKEN")
                .map_err(unavailable)?;
            auth.push(("authorization", value));
        }
        let client = http::client(config.request_timeout).map_err(unavailable)?;
        Ok(AnthropicModel {
            url: format!("{base}/v1/messages"),
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
            secrets: self
                .config
                .api_key
                .iter()
                .chain(self.config.auth_token.iter())
                .collect(),
            hint,
        }
    }
}

/// What to do about an error status that retrying will not fix.
fn hint(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("check ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"),
        403 => Some("the key is not allowed to do this; check its workspace and permissions"),
        404 => Some(
            "check the model name, and that ANTHROPIC_BASE_URL is the API's address without /v1",
        ),
        413 => Some("the conversation is too large for one request"),
        _ => None,
    }
}

#[async_trait]
impl Model for AnthropicModel {
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
            let mut builder = self
                .client
                .post(&self.url)
                .header("anthropic-version", API_VERSION)
                .json(&body);
            for (name, value) in &self.auth {
                builder = builder.header(*name, value.clone());
            }
            http::send_streaming::<StreamAssembler>(
                builder,
                &self.url,
                self.config.request_timeout,
                &self.label,
            )
        })
        .await
    }
}

/// The JSON body of a streamed Messages API request.
fn request_body(config: &AnthropicConfig, request: &ModelRequest) -> Value {
    let mut body = json!({
        "model": config.model,
        "max_tokens": config.max_tokens,
        "messages": messages(&request.messages),
        "stream": true,
    });
    // The API refuses empty text in places; an empty system prompt and an empty tool list are left
    // out instead of sent empty.
    if !request.system.is_empty() {
        body["system"] = json!(request.system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.wire(),
                    "description": tool.description(),
                    "input_schema": tool.input_schema(),
                })
            })
            .collect();
    }
    body
}

/// The conversation as the API's `messages`: starting with the user, alternating, tool calls as
/// `tool_use` blocks and their results as `tool_result` blocks at the start of the next user message,
/// and no empty text blocks (the API refuses them).
fn messages(conversation: &[ChatMessage]) -> Vec<Value> {
    let lines = http::pair_tool_calls(conversation, |message, call| {
        format!("toolu_tavern_{message}_{call}")
    });
    // Consecutive lines of one role become one message. Within a user message the API wants the
    // tool results before anything else, so they are collected apart from the other blocks.
    let mut merged: Vec<(Role, Vec<Value>, Vec<Value>)> = Vec::new();
    for line in lines.iter().filter(|line| !line.is_empty()) {
        let mut results = Vec::new();
        let mut blocks = Vec::new();
        for (id, result) in &line.results {
            let mut block =
                json!({"type": "tool_result", "tool_use_id": id, "is_error": !result.ok});
            // The content is optional, and an empty one is better left out than sent empty.
            if !result.text.is_empty() {
                block["content"] = json!(result.text);
            }
            results.push(block);
        }
        if !line.text.is_empty() {
            blocks.push(json!({"type": "text", "text": line.text}));
        }
        for (id, call) in &line.calls {
            blocks.push(json!({
                "type": "tool_use",
                "id": id,
                "name": call.name().wire(),
                "input": call.wire_input(),
            }));
        }
        match merged.last_mut() {
            Some((role, earlier_results, earlier_blocks)) if *role == line.role => {
                earlier_results.extend(results);
                earlier_blocks.extend(blocks);
            }
            _ => merged.push((line.role, results, blocks)),
        }
    }
    if merged
        .first()
        .is_none_or(|(role, _, _)| *role != Role::User)
    {
        let opening = json!({"type": "text", "text": CONVERSATION_STARTS});
        merged.insert(0, (Role::User, Vec::new(), vec![opening]));
    }
    merged
        .into_iter()
        .map(|(role, mut results, blocks)| {
            results.extend(blocks);
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": results})
        })
        .collect()
}

/// One streamed event, as far as Tavern reads it. Unknown event and block types are ignored, as the
/// API's versioning policy asks of clients.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: StartedBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Error {
        #[serde(default)]
        error: Value,
    },
    #[serde(other)]
    Other,
}

/// The message as `message_start` announces it: empty content, and the input's token count.
#[derive(Debug, Deserialize)]
struct StartedMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A content block as `content_block_start` opens it; its content follows in deltas.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartedBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        name: String,
        /// Usually `{}`, with the real input following as `input_json_delta`s.
        #[serde(default)]
        input: Value,
    },
    /// Thinking and other blocks Tavern does not show.
    #[serde(other)]
    Other,
}

/// A piece of a content block: text, or a piece of a tool call's input JSON (which only parses once
/// all pieces are joined, so it is kept as text until the block is complete).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

/// The top-level changes `message_delta` carries; only the stop reason matters to Tavern.
#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Token counts; `message_delta` repeats them cumulatively, so later values replace earlier ones.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// A content block being streamed.
///
/// Blocks are kept by the index the API gives them rather than in arrival order of their deltas, so
/// text and tool calls come out in the order the model wrote them.
#[derive(Debug)]
enum Block {
    Text(String),
    ToolUse {
        name: String,
        /// The `input_json_delta` pieces so far.
        json: String,
        /// The input given at the start, used when no deltas follow.
        start_input: Value,
    },
    Ignored,
}

/// Builds the reply from the Messages API's stream of events.
#[derive(Debug, Default)]
struct StreamAssembler {
    /// Blocks by their index; the API sends them in order, so this stays sorted.
    blocks: Vec<(usize, Block)>,
    stop_reason: Option<String>,
    /// Input tokens including cache reads and writes, and output tokens, once reported.
    input_tokens: Option<[u64; 3]>,
    output_tokens: Option<u64>,
    /// Bytes of text and tool input so far, held under [`http::MAX_REPLY_BYTES`].
    bytes: usize,
    stopped: bool,
}

impl StreamAssembler {
    /// The block with the API's `index`; a reply has a handful, so a linear search is fine.
    fn block(&mut self, index: usize) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, block)| block)
    }

    /// Takes a usage report. Both `message_start` and `message_delta` carry one, and later counts
    /// are totals, not increments, so they replace what came before.
    fn usage(&mut self, usage: WireUsage) {
        if let Some(input) = usage.input_tokens {
            self.input_tokens = Some([
                input,
                usage.cache_creation_input_tokens.unwrap_or(0),
                usage.cache_read_input_tokens.unwrap_or(0),
            ]);
        }
        if let Some(output) = usage.output_tokens {
            self.output_tokens = Some(output);
        }
    }

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
}

impl EventAssembler for StreamAssembler {
    fn push(&mut self, event: &str, data: &str) -> Result<Flow, AttemptError> {
        let parsed: StreamEvent = serde_json::from_str(data).map_err(|e| {
            AttemptError::Unreadable(format!("a {event:?} event could not be read: {e}"))
        })?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.usage(usage);
                }
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let block = match content_block {
                    StartedBlock::Text { text } => {
                        self.count(text.len())?;
                        Block::Text(text)
                    }
                    StartedBlock::ToolUse { name, input } => Block::ToolUse {
                        name,
                        json: String::new(),
                        start_input: input,
                    },
                    StartedBlock::Other => Block::Ignored,
                };
                self.blocks.push((index, block));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let added = match &delta {
                    BlockDelta::TextDelta { text } => text.len(),
                    BlockDelta::InputJsonDelta { partial_json } => partial_json.len(),
                    BlockDelta::Other => 0,
                };
                self.count(added)?;
                if self.block(index).is_none() {
                    match delta {
                        // A delta for a block that never started: keep the text rather than lose it.
                        BlockDelta::TextDelta { text } => {
                            self.blocks.push((index, Block::Text(text)));
                        }
                        BlockDelta::InputJsonDelta { .. } => {
                            return Err(AttemptError::Unreadable(format!(
                                "tool input arrived for block {index}, which never started"
                            )));
                        }
                        BlockDelta::Other => {}
                    }
                    return Ok(Flow::More);
                }
                match (self.block(index), delta) {
                    (Some(Block::Text(text)), BlockDelta::TextDelta { text: piece }) => {
                        text.push_str(&piece);
                    }
                    (
                        Some(Block::ToolUse { json, .. }),
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => {
                        json.push_str(&partial_json);
                    }
                    // Deltas of ignored blocks (thinking), or of a kind that does not fit the block.
                    _ => {}
                }
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Other => {}
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.usage(usage);
                }
            }
            StreamEvent::MessageStop {} => {
                self.stopped = true;
                return Ok(Flow::Done);
            }
            StreamEvent::Error { error } => {
                return Err(AttemptError::InStream {
                    detail: http::json_error_detail(&json!({ "error": error })),
                });
            }
        }
        Ok(Flow::More)
    }

    fn finish(self, label: &str) -> Result<ModelReply, AttemptError> {
        if !self.stopped {
            return Err(AttemptError::Transport {
                context: "the answer's stream".to_owned(),
                message: "it ended before message_stop, so the answer is incomplete".to_owned(),
            });
        }
        let mut text = String::new();
        let mut raw = Vec::new();
        for (_, block) in self.blocks {
            match block {
                Block::Text(piece) if !piece.is_empty() => {
                    http::append_paragraph(&mut text, &piece)
                }
                Block::ToolUse {
                    name,
                    json,
                    start_input,
                } => {
                    let input = if json.trim().is_empty() {
                        start_input.to_string()
                    } else {
                        json
                    };
                    raw.push(RawCall { name, input });
                }
                Block::Text(_) | Block::Ignored => {}
            }
        }
        let tool_calls = http::read_tool_calls(label, raw, &mut text);
        let stop = match self.stop_reason.as_deref() {
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        };
        let usage = (self.input_tokens.is_some() || self.output_tokens.is_some()).then(|| Usage {
            input_tokens: self.input_tokens.map_or(0, |parts| parts.iter().sum()),
            output_tokens: self.output_tokens.unwrap_or(0),
            cost_micros: None,
        });
        Ok(ModelReply {
            text,
            tool_calls,
            stop,
            usage,
        })
    }
}

#[cfg(test)]
mod tests;
