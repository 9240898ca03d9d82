//! Fake model servers for the integration tests: the Anthropic Messages API ([`anthropic`]) and an
//! OpenAI-compatible chat completions API ([`openai`]), both on 127.0.0.1 and scripted per agent.
//!
//! This module owns what the two dialects share: the script model ([`Step`], [`ToolUse`]), the record
//! of every request ([`Recorded`]), identifying the agent from its system prompt, the in-flight
//! counter, and the host ([`FakeServer`]) that runs a dialect's router on its own OS thread and tokio
//! runtime, so sync tests (driving a real binary with `std::process`) and async tests can both use it.
//! It also finds and runs the real Claude Code CLI, which is what the Anthropic fake exists for, and
//! holds what the fake Discord shares with these fakes: state tests can wait on ([`Watched`]),
//! header parsing ([`joined_headers`]) and the server thread ([`serve_until_stopped`]).

// Each test module uses only some of these helpers, and the test binary exports nothing, so unused
// ones would otherwise warn.
#![allow(dead_code)]

pub mod anthropic;
pub mod openai;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri};
use axum::Router;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

pub use anthropic::FakeAnthropic;
pub use openai::FakeOpenAi;

/// How long a dropped fake lets in-flight responses finish before its runtime cancels them.
const DRAIN: Duration = Duration::from_secs(1);

/// One scripted model reply (one HTTP request's answer).
#[derive(Clone, Debug)]
pub enum Step {
    /// A text reply, stop_reason end_turn. The text may contain `{last_user}` which is replaced by the
    /// last user message's text (for tool_result blocks: their text content) — lets tests see what
    /// arrived.
    Text(String),
    /// Optional text then one or more tool calls, stop_reason tool_use.
    Tools {
        text: Option<String>,
        calls: Vec<ToolUse>,
    },
    /// An HTTP error with the API's error body; retry_after sets the `retry-after` header (seconds).
    Error {
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
}

/// One tool call in a [`Step::Tools`] reply.
#[derive(Clone, Debug)]
pub struct ToolUse {
    pub name: String,
    pub input: Value,
}

impl ToolUse {
    pub fn new(name: impl Into<String>, input: Value) -> ToolUse {
        ToolUse {
            name: name.into(),
            input,
        }
    }
}

impl Step {
    /// A text reply; `{last_user}` in it echoes what the agent last said or received.
    pub fn text(text: impl Into<String>) -> Step {
        Step::Text(text.into())
    }

    /// A single tool call with no text before it.
    pub fn tool(name: impl Into<String>, input: Value) -> Step {
        Step::Tools {
            text: None,
            calls: vec![ToolUse::new(name, input)],
        }
    }

    /// Text followed by several tool calls in one reply (parallel tool use).
    pub fn tools(text: Option<&str>, calls: Vec<ToolUse>) -> Step {
        Step::Tools {
            text: text.map(str::to_owned),
            calls,
        }
    }

    /// Any HTTP error; the error `type` in the body follows from the status in each dialect.
    pub fn error(status: u16, message: impl Into<String>) -> Step {
        Step::Error {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limit_error` with a `retry-after` header of `retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Step {
        Step::Error {
            status: 429,
            message: "Rate limited (fake): slow down".to_owned(),
            retry_after: Some(retry_after_secs),
        }
    }

    /// 529 `overloaded_error` "Overloaded", as the Anthropic API sends when it sheds load.
    pub fn overloaded() -> Step {
        Step::error(529, "Overloaded")
    }

    /// 500 `api_error`.
    pub fn server_error() -> Step {
        Step::error(500, "Internal server error (fake)")
    }

    /// Replaces `{last_user}` in the reply's text; tool inputs are left alone because tests compare
    /// them with what they scripted.
    fn resolve(self, last_user: &str) -> Step {
        let fill = |text: String| text.replace("{last_user}", last_user);
        match self {
            Step::Text(text) => Step::Text(fill(text)),
            Step::Tools { text, calls } => Step::Tools {
                text: text.map(fill),
                calls,
            },
            error @ Step::Error { .. } => error,
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without its query string (the CLI adds `?beta=true`).
    pub path: String,
    /// Header names are lower-case; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body, or `Null` when there was none or it was not JSON.
    pub body: Value,
    /// The `NAME` of `Your name is NAME (kind).` in the system prompt, or "" when absent.
    pub agent: String,
    /// Which step of the agent's script answered it; `None` for the exhausted-script fallback and for
    /// requests that are not model requests.
    pub step: Option<usize>,
    /// Whether this was a model request (messages or chat completions), as opposed to `HEAD /`,
    /// `count_tokens`, the model list or an unknown path.
    pub is_model: bool,
}

impl Recorded {
    /// A header's value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The `NAME` in the first `Your name is NAME (kind).` line of any of `texts`.
///
/// Tavern puts this line in every agent's system prompt, so it is how the fake tells agents apart
/// without any side channel; requests without it (the CLI's own side requests) belong to "".
pub fn agent_name<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    const MARK: &str = "Your name is ";
    for text in texts {
        for line in text.lines() {
            let Some(start) = line.find(MARK) else {
                continue;
            };
            let rest = &line[start + MARK.len()..];
            // The kind is in parentheses and the sentence ends right after it; a line that only
            // happens to contain "Your name is" without that shape is not the identity line.
            if let Some(open) = rest.find(" (") {
                if rest[open..].contains(").") && open > 0 {
                    return rest[..open].to_owned();
                }
            }
        }
    }
    String::new()
}

/// The text of a content value that is either a string or a list of blocks: text blocks' `text` and
/// tool results' `content` (itself a string or blocks), joined by newlines.
///
/// Both dialects use this shape (Anthropic content blocks, OpenAI content parts).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|block| match block["type"].as_str() {
                Some("text") => block["text"].as_str().map(str::to_owned),
                Some("tool_result") => Some(content_text(&block["content"])),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Splits `text` into two non-empty pieces at a char boundary near its middle (one piece when it is
/// too short), so clients must concatenate deltas rather than take the first one.
fn halves(text: &str) -> Vec<String> {
    let mut cut = text.len() / 2;
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut == 0 {
        vec![text.to_owned()]
    } else {
        vec![text[..cut].to_owned(), text[cut..].to_owned()]
    }
}

/// A request's parts, parsed once by the handler and then recorded.
struct Incoming {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// A request's headers by (lower-case) name, repeated headers joined with ", " as HTTP allows.
///
/// Shared by the fake model servers and the fake Discord.
pub(crate) fn joined_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

impl Incoming {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Incoming {
        Incoming {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            headers: joined_headers(headers),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        }
    }

    fn into_recorded(self, agent: String, step: Option<usize>, is_model: bool) -> Recorded {
        Recorded {
            method: self.method,
            path: self.path,
            headers: self.headers,
            body: self.body,
            agent,
            step,
            is_model,
        }
    }
}

/// An agent's script and how far it has been consumed.
struct Script {
    steps: Vec<Step>,
    next: usize,
}

/// What the tests can change or read while the server runs, behind one lock.
#[derive(Default)]
struct State {
    scripts: HashMap<String, Script>,
    requests: Vec<Recorded>,
    model_requests: usize,
    delay: Duration,
}

/// A value behind a std `Mutex` that tests can wait on, from sync code (a `Condvar`) or async code
/// (a `Notify`), until a condition on it holds.
///
/// Whoever changes what a condition reads calls [`Watched::changed`] afterwards. Shared by the fake
/// model servers, the fake Discord and the fake Discord's self-tests.
pub(crate) struct Watched<T> {
    value: Mutex<T>,
    changed: Condvar,
    changed_async: Notify,
}

impl<T: Default> Default for Watched<T> {
    fn default() -> Watched<T> {
        Watched::new(T::default())
    }
}

impl<T> Watched<T> {
    pub(crate) fn new(value: T) -> Watched<T> {
        Watched {
            value: Mutex::new(value),
            changed: Condvar::new(),
            changed_async: Notify::new(),
        }
    }

    /// The value, under the lock (never hold it across an `.await`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        // Every change is a short block of assignments, so a panic in one cannot leave the value
        // worse than half-updated, which is still worth reading.
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiter so it re-checks its condition.
    ///
    /// Taking the lock first matters for sync waiters when a condition also reads something outside
    /// the value (an atomic): they check and start waiting under the lock, so a change made before
    /// this point is seen by the check, and one made after it finds them waiting; no wake-up falls in
    /// between.
    pub(crate) fn changed(&self) {
        drop(self.lock());
        self.changed.notify_all();
        self.changed_async.notify_waiters();
    }

    /// Blocks until `done` holds (checked under the lock) or `timeout` passes; false on timeout.
    ///
    /// For sync code only: an async test whose client runs on its own runtime must use
    /// [`Watched::wait_async`], or it would block the very client it waits for.
    pub(crate) fn wait(&self, timeout: Duration, done: impl Fn(&T) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut value = self.lock();
        loop {
            if done(&value) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            value = self
                .changed
                .wait_timeout(value, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until `done` holds (checked under the lock) or `timeout` passes; false on timeout.
    pub(crate) async fn wait_async(&self, timeout: Duration, done: impl Fn(&T) -> bool) -> bool {
        let changed = async {
            loop {
                // Registering interest before checking closes the gap in which a change (and its
                // wake-up) could come between the check and the wait.
                let notified = self.changed_async.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if done(&self.lock()) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, changed).await.is_ok()
    }
}

/// The state shared by the server's handlers and the test's [`FakeServer`] handle.
///
/// No handler holds the lock across an `.await`: each takes it for one short block (pick a step and
/// record, or read the delay), so tests can also use it from sync code.
#[derive(Default)]
struct Shared {
    /// Its waiters ([`FakeServer::wait_for_requests`], [`FakeServer::wait_for_idle`], …) are woken
    /// when a model request is recorded or finishes.
    state: Watched<State>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Source of the ids in replies (`msg_fake_N`, `toolu_fake_N`, …), unique per server.
    next_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Wakes every waiter so it re-checks its condition.
    fn notify_change(&self) {
        self.state.changed();
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records a request that is not a model request.
    fn record_other(&self, request: Incoming) {
        let recorded = request.into_recorded(String::new(), None, false);
        self.lock().requests.push(recorded);
    }

    /// Starts serving one model request: counts it in flight, consumes the agent's next step,
    /// records it, then waits out the scripted delay.
    ///
    /// Returns the step with `{last_user}` filled in and the in-flight guard, which the caller moves
    /// into the response body so the request stays counted until the body is fully written or the
    /// client goes away.
    async fn serve_model(
        self: &Arc<Self>,
        request: Incoming,
        agent: String,
        last_user: &str,
    ) -> (Step, InFlight) {
        let guard = InFlight::enter(self);
        let (step, delay) = {
            let mut state = self.lock();
            let (step, index) = match state.scripts.get_mut(&agent) {
                Some(script) if script.next < script.steps.len() => {
                    let index = script.next;
                    script.next += 1;
                    (script.steps[index].clone(), Some(index))
                }
                // Falling back to text (never the last step again) guarantees that a client looping
                // on tool calls ends its turn once the script runs out.
                _ => (
                    Step::Text(format!(
                        "(fake) no script left for {agent}; last input: {{last_user}}"
                    )),
                    None,
                ),
            };
            state
                .requests
                .push(request.into_recorded(agent, index, true));
            state.model_requests += 1;
            (step, state.delay)
        };
        self.notify_change();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        (step.resolve(last_user), guard)
    }
}

/// Counts one model request in flight for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.notify_change();
    }
}

/// A response body that yields `chunks` one by one and holds `guard` until the last one is taken.
///
/// Hyper drops the body when it has polled it to the end or when the client went away, so the
/// in-flight count covers the whole response, including a long SSE stream. Each chunk is its own
/// write, which gives streaming clients frames arriving separately, as from the real APIs.
fn guarded_body(chunks: Vec<String>, guard: InFlight) -> Body {
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), guard),
        |(mut rest, guard)| async move {
            let chunk = rest.next()?;
            Some((Ok::<_, Infallible>(Bytes::from(chunk)), (rest, guard)))
        },
    );
    Body::from_stream(stream)
}

/// A running fake server: its address, its shared state, and the thread that runs it.
///
/// Dropping it stops the server: in-flight responses get [`DRAIN`] to finish, then the runtime is
/// shut down and the thread joined, so a drop never waits unboundedly.
pub struct FakeServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Binds 127.0.0.1:0 here (so a bind failure fails the test at once) and serves `build`'s router
    /// on a new thread with its own two-worker runtime.
    fn start(name: &str, build: impl FnOnce(Arc<Shared>) -> Router) -> FakeServer {
        let shared = Arc::new(Shared::default());
        let router = build(Arc::clone(&shared));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a loopback port for the fake model server");
        listener
            .set_nonblocking(true)
            .expect("tokio needs the listener in non-blocking mode");
        let addr = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{name}"))
            .spawn(move || serve_until_stopped("fake-model", listener, router, stopped, DRAIN))
            .expect("spawn the fake model server's thread");
        FakeServer {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, with no trailing slash and no `/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces `agent`'s script and restarts it from its first step. Takes effect on the next
    /// request, even while a client is running.
    pub fn script(&self, agent: &str, steps: Vec<Step>) {
        self.shared
            .lock()
            .scripts
            .insert(agent.to_owned(), Script { steps, next: 0 });
    }

    /// Every request so far, model or not, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Every model request so far, in arrival order.
    pub fn model_requests(&self) -> Vec<Recorded> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| r.is_model)
            .cloned()
            .collect()
    }

    /// The model requests that carried `agent`'s identity line ("" for those without one).
    pub fn requests_for(&self, agent: &str) -> Vec<Recorded> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| r.is_model && r.agent == agent)
            .cloned()
            .collect()
    }

    /// The agents whose model requests found their script used up (or had none) and got the
    /// fallback text, each once, in the order of their first such request. Tests whose number of model calls
    /// is fixed assert this is empty, so a call more than they scripted cannot pass unnoticed.
    pub fn unscripted(&self) -> Vec<String> {
        let state = self.shared.lock();
        let mut agents: Vec<String> = Vec::new();
        for request in state
            .requests
            .iter()
            .filter(|r| r.is_model && r.step.is_none())
        {
            if !agents.contains(&request.agent) {
                agents.push(request.agent.clone());
            }
        }
        agents
    }

    /// Panics naming every agent that got an unscripted request ([`FakeServer::unscripted`]), if any.
    pub fn assert_no_unscripted(&self) {
        let unscripted = self.unscripted();
        assert!(
            unscripted.is_empty(),
            "the fake answered unscripted model requests of {unscripted:?} (\"\" is a request \
             without an identity line); the test made more model calls than it scripted"
        );
    }

    /// Model requests being served right now (counted until the response body is fully written or
    /// the client went away).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most model requests ever served at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Makes every later model request wait this long (while counted in flight) before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Blocks until at least `n` model requests were recorded; false if `timeout` passed first.
    ///
    /// For sync tests, or async tests whose client is another process. An async test whose client
    /// runs on its own runtime must use [`FakeServer::wait_for_requests_async`] instead, or it would
    /// block the very client it waits for.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .state
            .wait(timeout, |state| state.model_requests >= n)
    }

    /// Waits until at least `n` model requests were recorded; false if `timeout` passed first.
    pub async fn wait_for_requests_async(&self, n: usize, timeout: Duration) -> bool {
        self.shared
            .state
            .wait_async(timeout, |state| state.model_requests >= n)
            .await
    }

    /// Blocks until no model request is in flight; false if `timeout` passed first.
    ///
    /// Interrupt tests use it to see that an aborted request really ended on the server's side: the
    /// server drops a request as soon as it notices its client has gone, even mid-delay.
    pub fn wait_for_idle(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        shared
            .state
            .wait(timeout, |_| shared.in_flight.load(Ordering::SeqCst) == 0)
    }

    /// Waits until no model request is in flight; false if `timeout` passed first.
    pub async fn wait_for_idle_async(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        shared
            .state
            .wait_async(timeout, |_| shared.in_flight.load(Ordering::SeqCst) == 0)
            .await
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The receiver is gone only if the server thread already ended, which is what we want.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the fake model server's thread panicked");
            }
        }
    }
}

/// The body of a fake's thread: serve until told to stop, drain for `drain`, then cancel the rest.
/// Shared by the fake model servers and the fake Discord.
pub fn serve_until_stopped(
    name: &str,
    listener: std::net::TcpListener,
    router: Router,
    stop: oneshot::Receiver<()>,
    drain: Duration,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-worker"))
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("build the {name} runtime: {e}"));
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("hand the bound listener to tokio");
        let draining = Arc::new(Notify::new());
        let signal = Arc::clone(&draining);
        // Graceful shutdown lets finished-but-unflushed responses reach their clients; axum::serve
        // already drops per-connection I/O errors, so clients aborting mid-stream (interrupts,
        // retries) never surface as failures here.
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(async move { signal.notified().await })
            .into_future();
        tokio::select! {
            result = server => {
                if let Err(error) = result {
                    eprintln!("{name} stopped with an error: {error}");
                }
            }
            () = async {
                // A dropped sender means the handle is gone too, so either outcome means stop.
                let _ = stop.await;
                draining.notify_one();
                tokio::time::sleep(drain).await;
            } => {}
        }
    });
    // Whatever is still running (a long scripted delay, a client that never reads) is cancelled
    // here so that dropping the fake stays bounded.
    runtime.shutdown_timeout(Duration::from_millis(500));
}

/// The Claude Code CLI version the tests pin: request shapes and stream lines change between releases.
pub const CLAUDE_VERSION: &str = "2.1.197";

/// The Claude Code CLI the tests run: `$TAVERN_CLAUDE_BIN`, else `<repo>/.ci/node_modules/.bin/claude`,
/// installed there from the npm registry on first use (once per machine, under a file lock so test
/// processes running at once do not install it twice).
///
/// Panics with install instructions when it cannot be had, because a test that needs the real CLI
/// cannot say anything useful without it; such tests are never skipped.
pub fn claude_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_or_install_claude).clone()
}

fn find_or_install_claude() -> PathBuf {
    let install = format!(
        "install it with `npm install --prefix .ci @anthropic-ai/claude-code@{CLAUDE_VERSION}` in the \
         repository root (it needs Node.js 18 or later and npm), or point TAVERN_CLAUDE_BIN at a claude \
         executable"
    );
    if let Some(path) = std::env::var_os("TAVERN_CLAUDE_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TAVERN_CLAUDE_BIN={} is not a file; {install}",
            path.display()
        );
        return path;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(".ci/node_modules/.bin/claude");
    if path.is_file() {
        return path;
    }
    let npm = Command::new("npm").arg("--version").output();
    assert!(
        npm.as_ref().is_ok_and(|o| o.status.success()),
        "the Claude Code CLI is not installed at {} and npm is not available to install it: install \
         Node.js 18 or later with npm (for example `apt install nodejs npm`), then {install}",
        path.display()
    );
    std::fs::create_dir_all(root.join(".ci")).expect("create .ci");
    let lock_file = std::fs::File::create(root.join(".ci/claude-install.lock"))
        .expect("create .ci/claude-install.lock");
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock .ci/claude-install.lock");
    // Another test process may have installed it while this one waited for the lock.
    if path.is_file() {
        return path;
    }
    let mut command = Command::new("npm");
    command.current_dir(root).args([
        "install",
        "--prefix",
        ".ci",
        "--no-save",
        "--no-audit",
        "--no-fund",
        &format!("@anthropic-ai/claude-code@{CLAUDE_VERSION}"),
    ]);
    let output = output_with_timeout(command, Duration::from_secs(600));
    assert!(
        output.status.success() && path.is_file(),
        "installing the Claude Code CLI failed ({}); {install}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

/// Runs `command` to completion with stdin closed and output captured, killing it after `timeout`.
///
/// Panics (with the output so far) on timeout, so a hung CLI fails the test instead of hanging it.
pub fn output_with_timeout(mut command: Command, timeout: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {command:?}: {error}"));
    let pid =
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("process ids fit in an i32"));
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    // The watchdog waits on a channel rather than sleeping, so it ends as soon as the child does.
    let watchdog = std::thread::spawn(move || match watched.recv_timeout(timeout) {
        Err(RecvTimeoutError::Timeout) => {
            // Only the child we spawned, by its id. The id could name another process only if the
            // child was reaped in the instant between `wait_with_output` returning and the send
            // below, exactly as the timeout expired; that window is too small to matter here.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            true
        }
        _ => false,
    });
    let output = child
        .wait_with_output()
        .expect("wait for the child process");
    let _ = finished.send(());
    let killed = watchdog.join().expect("the watchdog thread does not panic");
    assert!(
        !killed,
        "{command:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
