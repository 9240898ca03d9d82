//! What the two HTTP model backends ([`anthropic`](super::anthropic) and [`openai`](super::openai))
//! share: the retry loop and its backoff, reading `retry-after` and API error bodies, the wording of
//! the errors people see, positional tool-call ids with results paired to their calls, and reading
//! the tool calls a model made.
//!
//! Everything here is independent of either API's JSON shapes, which stay in the backend modules.

use std::future::Future;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use tavern_plugin_api::{ChatMessage, ModelError, ModelReply, Role, ToolCall, ToolResult};

use super::secret::Secret;

/// The longest the exponential backoff waits between two attempts.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The longest Tavern waits when an API's `retry-after` asks for it. Longer waits fail at once
/// instead, with the wait in the message: an agent silently stuck for an hour is worse than an error
/// that says when to try again.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long connecting may take, separately from the whole request's timeout: a host that does not
/// answer should be retried within seconds, not after the ten minutes a long answer may need.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error body is read. Proxies answer errors with whole HTML pages; the API's own
/// error bodies are far smaller.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How much of a non-JSON error body is quoted in a message.
const MAX_QUOTED_BODY: usize = 300;

/// The most text and tool input one streamed reply may accumulate. A server that never stops
/// streaming would otherwise grow memory until the request timeout.
pub(crate) const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// How many `source()` levels of a transport error are quoted.
const MAX_ERROR_CHAIN: usize = 8;

/// How often a call is retried and how long it waits in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt; `max_retries + 1` attempts in all.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles for each further retry, up to [`BACKOFF_CAP`].
    pub backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry) when the API did not say.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(BACKOFF_CAP)
    }
}

/// Why one attempt of a call failed; whether it is worth another attempt follows from the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AttemptError {
    /// The API answered with an error status. Retried for 429 and 5xx (which includes Anthropic's
    /// 529 "overloaded"); any other status means the request itself is wrong and fails at once.
    #[error("the API answered {status} {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The API's error type and message, e.g. `overloaded_error: Overloaded`.
        detail: String,
        /// How long the API asked us to wait, from `retry-after`.
        retry_after: Option<Duration>,
    },
    /// The API reported an error inside an answer it had started to stream. The API only does this
    /// when it is overloaded mid-answer, so it is retried like a 529.
    #[error("the API stopped its answer with an error: {detail}")]
    InStream {
        /// The error's type and message.
        detail: String,
    },
    /// No connection could be made, or it broke before the answer was complete. Retried.
    #[error("{context}: {message}")]
    Transport {
        /// What was being done, e.g. `could not connect to http://...`.
        context: String,
        /// The underlying error chain.
        message: String,
    },
    /// The whole request took longer than its timeout. Not retried: the next attempt would most
    /// likely take as long, and the caller has already waited the full timeout once.
    #[error(
        "no complete answer arrived within {} s (the request timeout); a slow local server may need \
         a longer one",
        .after.as_secs()
    )]
    Timeout {
        /// The timeout that passed.
        after: Duration,
    },
    /// The answer arrived but could not be read (malformed events, an unexpected content type, a
    /// reply too large). Not retried: the server would send the same again.
    #[error("the answer could not be read: {0}")]
    Unreadable(String),
}

impl AttemptError {
    /// Whether another attempt may succeed.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => *status == 429 || *status >= 500,
            AttemptError::InStream { .. } | AttemptError::Transport { .. } => true,
            AttemptError::Timeout { .. } | AttemptError::Unreadable(_) => false,
        }
    }

    /// The wait the API asked for, if it did.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// An error status with its body read as an API error.
    pub(crate) fn from_status(
        status: StatusCode,
        body: &str,
        retry_after: Option<Duration>,
    ) -> Self {
        AttemptError::Status {
            status: status.as_u16(),
            detail: error_detail(status, body),
            retry_after,
        }
    }

    /// A failure of the HTTP client while sending or reading. `url` names where it was going.
    pub(crate) fn from_reqwest(error: &reqwest::Error, url: &str, timeout: Duration) -> Self {
        if error.is_connect() {
            AttemptError::Transport {
                context: format!("could not connect to {url}"),
                message: error_chain(error),
            }
        } else if error.is_timeout() {
            AttemptError::Timeout { after: timeout }
        } else if error.is_builder() || error.is_redirect() {
            AttemptError::Unreadable(error_chain(error))
        } else {
            AttemptError::Transport {
                context: format!("the connection to {url} broke"),
                message: error_chain(error),
            }
        }
    }
}

/// Which backend a call belongs to, for logs and the errors people see.
pub(crate) struct CallSite<'a> {
    /// The model's label, e.g. `anthropic:claude-sonnet-4-5`.
    pub label: &'a str,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// Secrets this backend sends, scrubbed from every message it shows or logs.
    pub secrets: Vec<&'a Secret>,
    /// What to do about a status that will not go away by retrying (a 401 means: check the key).
    pub hint: fn(u16) -> Option<&'static str>,
}

impl CallSite<'_> {
    /// `text` with every secret of this backend replaced by `***`.
    fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |text, secret| secret.redact(&text))
    }

    /// The error a person sees for a call that failed with `error` after `attempts` attempts.
    fn final_error(&self, error: &AttemptError, attempts: u32) -> ModelError {
        let mut message = error.to_string();
        if error.retryable() {
            let plural = if attempts == 1 { "" } else { "s" };
            message.push_str(&format!(" (gave up after {attempts} attempt{plural})"));
        } else if let AttemptError::Status { status, .. } = error {
            if let Some(hint) = (self.hint)(*status) {
                message.push_str("; ");
                message.push_str(hint);
            }
        }
        ModelError::Backend {
            model: self.label.to_owned(),
            message: self.redact(&message),
        }
    }

    /// Runs `attempt` until it succeeds, fails in a way retrying cannot help, or has been tried
    /// `max_retries + 1` times. Between attempts it waits what `retry-after` says (exactly, even 0),
    /// else the exponential backoff.
    ///
    /// `attempt` gets the attempt number, starting at 1. Dropping the returned future cancels the
    /// call, including a wait between attempts, which is how Tavern cancels model calls.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, ModelError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let attempts = self.retry.max_retries.saturating_add(1);
        // Bounded: every pass either returns or increases `number`, and the pass with
        // `number == attempts` always returns.
        let mut number = 0u32;
        loop {
            number += 1;
            let error = match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !error.retryable() || number >= attempts {
                return Err(self.final_error(&error, number));
            }
            let wait = error
                .retry_after()
                .unwrap_or_else(|| self.retry.backoff(number));
            if wait > MAX_RETRY_AFTER {
                return Err(ModelError::Backend {
                    model: self.label.to_owned(),
                    message: self.redact(&format!(
                        "{error}, and asked to wait {} s before trying again, longer than Tavern \
                         waits ({} s); try again later",
                        wait.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    )),
                });
            }
            tracing::warn!(
                model = self.label,
                attempt = number,
                of = attempts,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %self.redact(&error.to_string()),
                "model call failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The wait a `retry-after` header asks for, in whole or fractional seconds.
///
/// The HTTP-date form is not read (neither API sends it); such a header falls back to the backoff.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

/// Parses a `retry-after` value in seconds; `None` for anything else, including negative numbers.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    // `try_from_secs_f64` refuses negative, infinite and NaN values, which are no wait at all.
    Duration::try_from_secs_f64(seconds).ok()
}

/// An API error body as `type: message` (or just the message), whichever shape the server used:
/// Anthropic's `{"type":"error","error":{"type","message"}}`, OpenAI's `{"error":{"message","type"}}`,
/// the plain-string `{"error":"..."}` some compatible servers send, a top-level `message` or `detail`,
/// or, failing all of those, the start of the body itself.
pub(crate) fn error_detail(status: StatusCode, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("error");
    let (kind, message) = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => parse_error_json(&json),
        Err(_) => (None, None),
    };
    match (kind, message) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => format!("({reason}): {message}"),
        (Some(kind), None) => format!("{kind} ({reason}) with no message"),
        (None, None) => {
            let quoted = quote_body(body);
            if quoted.is_empty() {
                format!("({reason}) with an empty body")
            } else {
                format!("({reason}): {quoted}")
            }
        }
    }
}

/// The error type and message of an error body already parsed as JSON.
fn parse_error_json(json: &serde_json::Value) -> (Option<String>, Option<String>) {
    let text = |value: &serde_json::Value| {
        value
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let error = &json["error"];
    if let Some(message) = text(error) {
        return (None, Some(message));
    }
    if error.is_object() {
        let kind = text(&error["type"]).or_else(|| text(&error["code"]));
        return (kind, text(&error["message"]));
    }
    let message = text(&json["message"]).or_else(|| text(&json["detail"]));
    (None, message)
}

/// The start of a body that is not a JSON error, on one line, for quoting in a message.
fn quote_body(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_QUOTED_BODY {
        one_line
    } else {
        let cut: String = one_line.chars().take(MAX_QUOTED_BODY).collect();
        format!("{cut}…")
    }
}

/// Reads an error response's body, at most [`MAX_ERROR_BODY`] bytes of it. A body that cannot be
/// read reads as empty: the status alone still says what happened.
pub(crate) async fn read_error_body(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    // Bounded by the size cap, the end of the body and the client's request timeout.
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// An error and its sources, joined by `: `. reqwest's own message ("error sending request") hides
/// the useful part, such as "Connection refused", in the sources. The URL is left out because the
/// caller names it itself.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if parts.len() >= MAX_ERROR_CHAIN {
            break;
        }
        let text = cause.to_string();
        // Wrappers often repeat their cause's message; saying it twice helps nobody.
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Builds the HTTP client a backend uses for all its calls.
pub(crate) fn client(request_timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
        .build()
        .map_err(|e| format!("the HTTP client could not be built: {}", error_chain(&e)))
}

/// Checks that a successful answer is a server-sent event stream, which is all the backends read.
pub(crate) fn expect_event_stream(headers: &HeaderMap) -> Result<(), AttemptError> {
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        Ok(())
    } else {
        Err(AttemptError::Unreadable(format!(
            "the server answered with content type {content_type:?} instead of a stream of events \
             (text/event-stream); Tavern asks for a streamed answer, and the server (or a proxy in \
             between) ignored that"
        )))
    }
}

/// Whether an answer's stream should be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    More,
    /// The answer is complete; anything after this is ignored.
    Done,
}

/// Builds a [`ModelReply`] from one answer's server-sent events, one API's event shapes.
pub(crate) trait EventAssembler: Default {
    /// Takes one event: its type (`message` when the server named none) and its data.
    fn push(&mut self, event: &str, data: &str) -> Result<Flow, AttemptError>;
    /// The reply, once the stream ended or said it was done. `label` is for logging dropped calls.
    fn finish(self, label: &str) -> Result<ModelReply, AttemptError>;
}

/// Sends one attempt of a streamed call and assembles its answer with `A`.
///
/// `url` and `timeout` are only for the error messages; the request already carries both.
pub(crate) async fn send_streaming<A: EventAssembler>(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    label: &str,
) -> Result<ModelReply, AttemptError> {
    let response = request
        .send()
        .await
        .map_err(|e| AttemptError::from_reqwest(&e, url, timeout))?;
    let status = response.status();
    if !status.is_success() {
        let wait = retry_after(response.headers());
        let body = read_error_body(response).await;
        return Err(AttemptError::from_status(status, &body, wait));
    }
    expect_event_stream(response.headers())?;
    let mut events = response.bytes_stream().eventsource();
    let mut assembler = A::default();
    // Bounded by the end of the stream, the request timeout, and the assembler's size cap.
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| match e {
            EventStreamError::Transport(e) => AttemptError::from_reqwest(&e, url, timeout),
            other => AttemptError::Unreadable(format!("the event stream is malformed: {other}")),
        })?;
        if assembler.push(&event.event, &event.data)? == Flow::Done {
            break;
        }
    }
    assembler.finish(label)
}

/// The error type and message of an error the API sent as JSON inside a stream.
pub(crate) fn json_error_detail(json: &serde_json::Value) -> String {
    match parse_error_json(json) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) | (Some(message), None) => message,
        (None, None) => quote_body(&json.to_string()),
    }
}

/// A request header carrying a secret, marked sensitive so the HTTP stack never prints it.
/// `prefix` goes before the secret (`Bearer `); `var` names where the secret came from, for the error.
pub(crate) fn secret_header(
    secret: &Secret,
    prefix: &str,
    var: &str,
) -> Result<HeaderValue, String> {
    let mut value =
        HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).map_err(|_| {
            // The error of `from_str` says nothing useful, and must not quote the value.
            format!(
            "{var} contains a character not allowed in an HTTP header (a line break, perhaps); \
             set it to the key alone"
        )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An environment variable's value, trimmed; unset and empty are both `None`.
pub(crate) fn env_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// A base URL without trailing slashes, checked to be http or https.
pub(crate) fn base_url(url: &str, var: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "the base URL {url:?} (from {var} or the configuration) does not start with http:// or \
             https://"
        ))
    }
}

/// One line of the conversation with ids given to its tool calls and its results paired with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// Who said it.
    pub role: Role,
    /// What was said; may be empty.
    pub text: String,
    /// The assistant's tool calls with their ids.
    pub calls: Vec<(String, ToolCall)>,
    /// Results for the previous assistant line's calls, each with its call's id, in the same order.
    pub results: Vec<(String, ToolResult)>,
}

impl Line {
    /// Whether the line says nothing at all, and so can be left out.
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty() && self.calls.is_empty() && self.results.is_empty()
    }
}

/// Gives every tool call an id (`id(message_index, call_index)`, so the same conversation always
/// gets the same ids) and pairs each result with the call at the same position of the previous
/// assistant line.
///
/// Both APIs refuse a call without a result and a result without a call, so the conversation is made
/// whole here: a call that got no result gets a failed one saying so (on the next user line, or on a
/// user line inserted for it), and a result with no call to pair with becomes text.
pub(crate) fn pair_tool_calls(
    messages: &[ChatMessage],
    id: impl Fn(usize, usize) -> String,
) -> Vec<Line> {
    let mut lines = Vec::with_capacity(messages.len() + 1);
    // The ids of the last assistant line's calls that still wait for their results.
    let mut open: Vec<String> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        match message.role {
            Role::User => {
                let mut text = message.text.clone();
                let mut results = Vec::with_capacity(open.len());
                let mut open_ids = std::mem::take(&mut open).into_iter();
                for result in &message.tool_results {
                    match open_ids.next() {
                        Some(call_id) => results.push((call_id, result.clone())),
                        None => append_paragraph(&mut text, &orphan_result_text(result)),
                    }
                }
                results.extend(open_ids.map(|call_id| (call_id, missing_result())));
                lines.push(Line {
                    role: Role::User,
                    text,
                    calls: Vec::new(),
                    results,
                });
            }
            Role::Assistant => {
                if !open.is_empty() {
                    lines.push(results_for(std::mem::take(&mut open)));
                }
                let calls: Vec<(String, ToolCall)> = message
                    .tool_calls
                    .iter()
                    .enumerate()
                    .map(|(i, call)| (id(index, i), call.clone()))
                    .collect();
                open = calls.iter().map(|(call_id, _)| call_id.clone()).collect();
                // Results on an assistant line are not part of the model; keep what they said.
                let mut text = message.text.clone();
                for result in &message.tool_results {
                    append_paragraph(&mut text, &orphan_result_text(result));
                }
                lines.push(Line {
                    role: Role::Assistant,
                    text,
                    calls,
                    results: Vec::new(),
                });
            }
        }
    }
    if !open.is_empty() {
        lines.push(results_for(open));
    }
    lines
}

/// A user line answering every call in `ids` with "no result".
fn results_for(ids: Vec<String>) -> Line {
    Line {
        role: Role::User,
        text: String::new(),
        calls: Vec::new(),
        results: ids
            .into_iter()
            .map(|call_id| (call_id, missing_result()))
            .collect(),
    }
}

/// The result given to a call whose result was never recorded.
fn missing_result() -> ToolResult {
    ToolResult::err("(Tavern has no result for this call)")
}

/// A result that has no call to pair with, as text.
fn orphan_result_text(result: &ToolResult) -> String {
    let outcome = if result.ok { "result" } else { "error" };
    format!("(tool {outcome}: {})", result.text)
}

/// Appends `paragraph` to `text`, separated by a blank line when `text` is not empty.
pub(crate) fn append_paragraph(text: &mut String, paragraph: &str) {
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(paragraph);
}

/// A tool call as a model streamed it: the wire name and the raw JSON text of its input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawCall {
    /// The tool's wire name, e.g. `add_commitment`.
    pub name: String,
    /// The input's JSON text, concatenated from the stream; empty means no input.
    pub input: String,
}

/// Reads the calls a model made. A call Tavern cannot read (unknown tool, input that is not JSON or
/// does not fit the tool) is left out, and a line saying so is appended to `text`, so that neither the
/// model on its next turn nor a person reading the conversation is left wondering what became of it.
pub(crate) fn read_tool_calls(label: &str, raw: Vec<RawCall>, text: &mut String) -> Vec<ToolCall> {
    let mut calls = Vec::with_capacity(raw.len());
    for call in raw {
        let input = if call.input.trim().is_empty() {
            Ok(serde_json::Value::Null)
        } else {
            serde_json::from_str(&call.input)
                .map_err(|e| format!("its input is not valid JSON ({e})"))
        };
        match input.and_then(|input| ToolCall::from_wire(&call.name, input)) {
            Ok(parsed) => calls.push(parsed),
            Err(problem) => {
                tracing::warn!(model = label, tool = %call.name, %problem, "dropped a tool call Tavern cannot run");
                let note = format!("(Tavern could not run {}: {problem})", call.name);
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&note);
            }
        }
    }
    calls
}

#[cfg(test)]
mod tests;
