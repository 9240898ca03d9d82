//! The fake REST API under `/api/v10`, plus `/attachments/...` serving uploaded files.
//!
//! One fallback handler parses the request (JSON or multipart `payload_json` + `files[n]`), waits
//! out any configured delay, then, under the world lock, applies injected failures, the rate limits
//! and the route, records the call, and dispatches the gateway echoes Discord would send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::world::{
    error_body, form_error, rule_matches, value_id, Attachment, Bucket, Command, FilePart,
    InteractionResponse, Reaction, RestCall, Thread, World, APP_ID, ATTACHMENT_SIZE_LIMIT, BOT_ID,
    BOT_NAME, CONTENT_LIMIT, EMBED_TOTAL_LIMIT, GUILD_ID, INTERACTION_DEADLINE, OWNER_ID,
};
use super::Shared;

/// A parsed request.
struct Req {
    method: String,
    /// Without `/api/v10` and the query; percent-encoding kept.
    path: String,
    /// Path segments, percent-decoded.
    segs: Vec<String>,
    query: Vec<(String, String)>,
    headers: BTreeMap<String, String>,
    /// JSON body or `payload_json`; `Null` when absent.
    body: Value,
    files: Vec<(FilePart, Vec<u8>)>,
    /// Set when the body could not be parsed.
    bad_body: Option<String>,
}

impl Req {
    fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, query.join("&"))
        }
    }
}

/// What to answer.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn ok(body: Value) -> Reply {
        Reply::json(200, body)
    }

    fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: u64, message: &str) -> Reply {
        Reply::json(status, error_body(code, message))
    }

    fn unknown_channel() -> Reply {
        Reply::error(404, 10003, "Unknown Channel")
    }

    fn unknown_message() -> Reply {
        Reply::error(404, 10008, "Unknown Message")
    }

    fn unknown_webhook() -> Reply {
        Reply::error(404, 10015, "Unknown Webhook")
    }

    fn form(field: &str, code: &str, message: &str) -> Reply {
        Reply::json(400, form_error(field, code, message))
    }

    fn header(mut self, name: &str, value: impl ToString) -> Reply {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full_path = uri.path().to_owned();
    if let Some(rest) = full_path.strip_prefix("/attachments/") {
        return serve_attachment(&shared, &method, rest);
    }
    let req = parse_request(&method, &uri, &headers, &body);
    let Some(api_path) = full_path.strip_prefix("/api/v10") else {
        let what = format!("REST: {method} {uri} (not under /api/v10)");
        shared.mutate(|w| w.note_unexpected(what));
        return respond(Reply::error(404, 0, "404: Not Found"));
    };
    let req = Req {
        path: api_path.to_owned(),
        segs: api_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        ..req
    };
    let delay = shared.read(|w| {
        w.delays
            .iter()
            .find(|d| rule_matches(&d.method, &d.prefix, &req.method, &req.path))
            .map(|d| d.delay)
    });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let reply = shared.mutate(|w| {
        let reply = process(w, &req);
        w.rest.push(RestCall {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: req.body.clone(),
            files: req.files.iter().map(|(part, _)| part.clone()).collect(),
            headers: req.headers.clone(),
            status: reply.status,
        });
        reply
    });
    respond(reply)
}

fn respond(reply: Reply) -> Response {
    let mut response = match &reply.body {
        Some(body) => {
            let mut response = Response::new(Body::from(body.to_string()));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            response
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn serve_attachment(shared: &Shared, method: &Method, rest: &str) -> Response {
    // /attachments/{channel}/{attachment}/{filename}
    let id = rest.split('/').nth(1).and_then(|s| s.parse::<u64>().ok());
    let data = shared.read(|w| {
        id.and_then(|id| {
            w.messages
                .iter()
                .flat_map(|m| &m.attachments)
                .find(|a| a.id == id)
                .map(|a| (a.data.clone(), a.content_type.clone()))
        })
    });
    match (method, data) {
        (&Method::GET, Some((data, content_type))) => {
            let mut response = Response::new(Body::from(data));
            if let Some(Ok(value)) = content_type.map(|c| HeaderValue::from_str(&c)) {
                response.headers_mut().insert("content-type", value);
            }
            response
        }
        _ => {
            let what = format!("REST: {method} /attachments/{rest} (no such attachment)");
            shared.mutate(|w| w.note_unexpected(what));
            respond(Reply::error(404, 0, "404: Not Found"))
        }
    }
}

fn parse_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Req {
    let headers = crate::fakes::joined_headers(headers);
    let query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let mut bad_body = None;
    let mut files = Vec::new();
    let mut json_body = Value::Null;
    if content_type.starts_with("multipart/form-data") {
        match parse_multipart(&content_type, body) {
            Some(parts) => {
                for part in parts {
                    if part.name == "payload_json" {
                        match serde_json::from_slice(&part.data) {
                            Ok(v) => json_body = v,
                            Err(e) => bad_body = Some(format!("payload_json is not JSON: {e}")),
                        }
                    } else if let Some(filename) = part.filename {
                        files.push((
                            FilePart {
                                field: part.name,
                                filename,
                                size: part.data.len(),
                                content_type: part.content_type,
                            },
                            part.data,
                        ));
                    }
                }
            }
            None => bad_body = Some("unparseable multipart body".to_owned()),
        }
    } else if !body.is_empty() {
        match serde_json::from_slice(body) {
            Ok(v) => json_body = v,
            Err(e) => bad_body = Some(format!("body is not JSON: {e}")),
        }
    }
    Req {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        segs: Vec::new(),
        query,
        headers,
        body: json_body,
        files,
        bad_body,
    }
}

/// The routes' common prelude (auth, body, injected failures, rate limits), then the route.
fn process(w: &mut World, req: &Req) -> Reply {
    let authorized = req
        .headers
        .get("authorization")
        .is_some_and(|a| a.strip_prefix("Bot ") == Some(super::TOKEN));
    if !authorized && req.path != "/gateway" {
        w.note_unexpected(format!(
            "REST: {} without `Authorization: Bot TOKEN`",
            req.describe()
        ));
        return Reply::error(401, 0, "401: Unauthorized");
    }
    if let Some(problem) = &req.bad_body {
        w.note_unexpected(format!("REST: {}: {problem}", req.describe()));
        return Reply::json(
            400,
            json!({"code": 50109, "message": "The request body contains invalid JSON."}),
        );
    }
    if let Some(index) = w
        .fails
        .iter()
        .position(|f| f.times > 0 && rule_matches(&f.method, &f.prefix, &req.method, &req.path))
    {
        let rule = &mut w.fails[index];
        rule.times -= 1;
        let status = rule.status;
        if rule.times == 0 {
            w.fails.remove(index);
        }
        return injected_failure(w, status);
    }
    if let Some(reply) = rate_limit(w, req) {
        return reply;
    }
    let reply = route(w, req);
    if (200..300).contains(&reply.status) {
        rate_headers(w, req, reply)
    } else {
        reply
    }
}

fn injected_failure(w: &World, status: u16) -> Reply {
    match status {
        429 => too_many(w.injected_retry_after, false, "injected"),
        500 => Reply::error(500, 0, "500: Internal Server Error"),
        502 => Reply::error(502, 0, "502: Bad Gateway"),
        503 => Reply::error(503, 0, "503: Service Unavailable"),
        other => Reply::error(other, 0, &format!("{other}: injected failure")),
    }
}

/// Discord's 429: `Retry-After`, scope headers and the body without `code`.
fn too_many(retry_after: Duration, global: bool, bucket: &str) -> Reply {
    let secs = (retry_after.as_secs_f64() * 1000.0).ceil() / 1000.0;
    let mut reply = Reply::json(
        429,
        json!({"message": "You are being rate limited.", "retry_after": secs, "global": global}),
    )
    .header("retry-after", format!("{secs:.3}"))
    .header("x-ratelimit-scope", if global { "global" } else { "user" })
    .header("x-ratelimit-reset-after", format!("{secs:.3}"))
    .header("x-ratelimit-remaining", 0)
    .header(
        "x-ratelimit-reset",
        format!("{:.3}", epoch_secs() + retry_after.as_secs_f64()),
    )
    .header("x-ratelimit-bucket", bucket_id(bucket));
    if global {
        reply = reply.header("x-ratelimit-global", "true");
    }
    reply
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A stable hex bucket id, like Discord's opaque hashes.
fn bucket_id(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The channel whose message-send budget this request spends.
fn message_post_channel(req: &Req) -> Option<u64> {
    match (req.method.as_str(), req.segs.as_slice()) {
        ("POST", [c, cid, m]) if c == "channels" && m == "messages" => cid.parse().ok(),
        _ => None,
    }
}

fn counts_globally(req: &Req) -> bool {
    !(req.path == "/gateway"
        || req.path.starts_with("/interactions/")
        || req.path.starts_with("/webhooks/"))
}

/// Where a fixed window stands: `Ok((remaining, reset_after))` after counting the request, or
/// `Err(retry_after)` when it is exhausted.
fn spend(
    bucket: &mut Option<Bucket>,
    limit: u32,
    window: Duration,
    now: Instant,
    commit: bool,
) -> Result<(u32, Duration), Duration> {
    let current = match bucket {
        Some(b) if now.duration_since(b.start) < window => *b,
        _ => Bucket {
            start: now,
            count: 0,
        },
    };
    let reset_after = window.saturating_sub(now.duration_since(current.start));
    if current.count >= limit {
        return Err(reset_after);
    }
    if commit {
        *bucket = Some(Bucket {
            start: current.start,
            count: current.count + 1,
        });
    }
    Ok((limit - current.count - 1, reset_after))
}

fn rate_limit(w: &mut World, req: &Req) -> Option<Reply> {
    if !w.limits.enabled {
        return None;
    }
    let now = Instant::now();
    let global = counts_globally(req);
    let (global_limit, global_window) = (w.limits.global_limit, w.limits.global_window);
    if global {
        if let Err(retry) = spend(
            &mut w.limits.global,
            global_limit,
            global_window,
            now,
            false,
        ) {
            w.violations += 1;
            return Some(too_many(retry, true, "global"));
        }
    }
    if let Some(channel) = message_post_channel(req) {
        let (limit, window) = (w.limits.channel_limit, w.limits.channel_window);
        let mut bucket = w.limits.channels.get(&channel).copied();
        if let Err(retry) = spend(&mut bucket, limit, window, now, true) {
            w.violations += 1;
            return Some(too_many(retry, false, &format!("messages:{channel}")));
        }
        if let Some(bucket) = bucket {
            w.limits.channels.insert(channel, bucket);
        }
    }
    if global {
        let _ = spend(&mut w.limits.global, global_limit, global_window, now, true);
    }
    None
}

/// Adds the bucket headers Discord sends on successful responses.
fn rate_headers(w: &World, req: &Req, reply: Reply) -> Reply {
    let now = Instant::now();
    let (name, limit, remaining, reset_after) = match message_post_channel(req) {
        Some(channel) => {
            let limit = w.limits.channel_limit;
            let window = w.limits.channel_window;
            match w.limits.channels.get(&channel) {
                Some(b) if w.limits.enabled && now.duration_since(b.start) < window => (
                    format!("messages:{channel}"),
                    limit,
                    limit.saturating_sub(b.count),
                    window.saturating_sub(now.duration_since(b.start)),
                ),
                _ => (format!("messages:{channel}"), limit, limit, window),
            }
        }
        None => {
            let limit = w.limits.global_limit;
            let window = w.limits.global_window;
            match w.limits.global {
                Some(b) if w.limits.enabled && now.duration_since(b.start) < window => (
                    "global".to_owned(),
                    limit,
                    limit.saturating_sub(b.count),
                    window.saturating_sub(now.duration_since(b.start)),
                ),
                _ => ("global".to_owned(), limit, limit, window),
            }
        }
    };
    reply
        .header("x-ratelimit-limit", limit)
        .header("x-ratelimit-remaining", remaining)
        .header(
            "x-ratelimit-reset-after",
            format!("{:.3}", reset_after.as_secs_f64()),
        )
        .header(
            "x-ratelimit-reset",
            format!("{:.3}", epoch_secs() + reset_after.as_secs_f64()),
        )
        .header("x-ratelimit-bucket", bucket_id(&name))
}

fn unknown_route(w: &mut World, req: &Req) -> Reply {
    w.note_unexpected(format!("REST: unknown route {}", req.describe()));
    Reply::error(404, 0, "404: Not Found")
}

fn route(w: &mut World, req: &Req) -> Reply {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let method = req.method.as_str();
    match (method, segs.as_slice()) {
        ("GET", ["gateway"]) => {
            let ws = format!("{}/ws", w.base_url.replacen("http://", "ws://", 1));
            Reply::ok(json!({"url": ws}))
        }
        ("GET", ["gateway", "bot"]) => {
            let ws = format!("{}/ws", w.base_url.replacen("http://", "ws://", 1));
            Reply::ok(json!({"url": ws, "shards": 1, "session_start_limit":
                {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}}))
        }
        ("GET", ["oauth2", "applications", "@me"]) | ("GET", ["applications", "@me"]) => {
            Reply::ok(json!({
                "id": APP_ID.to_string(), "name": BOT_NAME, "icon": null, "description": "",
                "bot_public": false, "bot_require_code_grant": false, "verify_key": "00",
                "flags": 0, "team": null,
                "owner": {"id": OWNER_ID.to_string(), "username": "owner", "avatar": null},
                "bot": w.user_json(BOT_ID),
            }))
        }
        ("GET", ["users", "@me"]) => Reply::ok(w.user_json(BOT_ID)),
        ("GET", ["users", uid]) => {
            match uid.parse::<u64>().ok().filter(|u| w.users.contains_key(u)) {
                Some(u) => Reply::ok(w.user_json(u)),
                None => Reply::error(404, 10013, "Unknown User"),
            }
        }
        (_, ["channels", cid, rest @ ..]) => {
            let Ok(cid) = cid.parse::<u64>() else {
                return unknown_route(w, req);
            };
            channel_route(w, req, cid, rest)
        }
        (_, ["guilds", gid, rest @ ..]) => {
            if gid.parse::<u64>().ok() != Some(GUILD_ID) {
                return Reply::error(404, 10004, "Unknown Guild");
            }
            guild_route(w, req, rest)
        }
        (_, ["applications", app, rest @ ..]) => {
            if app.parse::<u64>().ok() != Some(APP_ID) {
                return Reply::error(404, 10002, "Unknown Application");
            }
            command_route(w, req, rest)
        }
        ("POST", ["interactions", iid, token, "callback"]) => callback(w, req, iid, token),
        (_, ["webhooks", app, token, rest @ ..]) => webhook_route(w, req, app, token, rest),
        _ => unknown_route(w, req),
    }
}

// ---------------------------------------------------------------- channels and messages

fn channel_route(w: &mut World, req: &Req, cid: u64, rest: &[&str]) -> Reply {
    let method = req.method.as_str();
    if !w.is_channel_or_thread(cid) {
        // Known shapes on an unknown channel are Discord's 10003, anything else is a bad route.
        let known = matches!(
            rest.first().copied(),
            None | Some("messages" | "threads" | "typing" | "thread-members")
        );
        return if known {
            Reply::unknown_channel()
        } else {
            unknown_route(w, req)
        };
    }
    match (method, rest) {
        ("GET", []) => Reply::ok(w.any_channel_json(cid).expect("checked above")),
        ("PATCH", []) => edit_channel(w, req, cid),
        ("DELETE", []) => delete_channel(w, cid),
        ("GET", ["messages"]) => list_messages(w, req, cid),
        ("POST", ["messages"]) => post_message(w, req, cid),
        ("GET", ["messages", mid]) => match find_message(w, cid, mid) {
            Some(id) => Reply::ok(w.message_json(w.message(id).expect("found"), false)),
            None => Reply::unknown_message(),
        },
        ("PATCH", ["messages", mid]) => match find_message(w, cid, mid) {
            Some(id) => edit_message(w, req, id, false),
            None => Reply::unknown_message(),
        },
        ("DELETE", ["messages", mid]) => match find_message(w, cid, mid) {
            Some(id) => {
                delete_message(w, id);
                Reply::no_content()
            }
            None => Reply::unknown_message(),
        },
        (_, ["messages", mid, "reactions", rest @ ..]) => match find_message(w, cid, mid) {
            Some(id) => reaction_route(w, req, cid, id, rest),
            None => Reply::unknown_message(),
        },
        ("POST", ["messages", mid, "threads"]) => match find_message(w, cid, mid) {
            Some(id) => thread_from_message(w, req, cid, id),
            None => Reply::unknown_message(),
        },
        ("POST", ["threads"]) => create_thread(w, req, cid),
        ("POST", ["typing"]) => Reply::no_content(),
        ("PUT", ["thread-members", who]) | ("DELETE", ["thread-members", who]) => {
            let Some(thread) = w.threads.get_mut(&cid) else {
                return Reply::error(400, 50024, "Cannot execute action on this channel type");
            };
            let user = if *who == "@me" {
                Some(BOT_ID)
            } else {
                who.parse().ok()
            };
            let Some(user) = user else {
                return Reply::error(404, 10013, "Unknown User");
            };
            if method == "PUT" {
                if !thread.members.contains(&user) {
                    thread.members.push(user);
                }
            } else {
                thread.members.retain(|m| *m != user);
            }
            Reply::no_content()
        }
        _ => unknown_route(w, req),
    }
}

fn find_message(w: &World, cid: u64, mid: &str) -> Option<u64> {
    let mid = mid.parse::<u64>().ok()?;
    w.message(mid).filter(|m| m.channel == cid).map(|m| m.id)
}

fn list_messages(w: &mut World, req: &Req, cid: u64) -> Reply {
    let limit = req
        .query_value("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Reply::form(
            "limit",
            "NUMBER_TYPE_MAX",
            "int value should be <= 100 and >= 1.",
        );
    }
    let id = |key: &str| req.query_value(key).and_then(|v| v.parse::<u64>().ok());
    let mut list: Vec<&super::world::Msg> = w.messages(cid);
    if let Some(before) = id("before") {
        list.retain(|m| m.id < before);
        list.reverse();
        list.truncate(limit);
    } else if let Some(after) = id("after") {
        list.retain(|m| m.id > after);
        list.truncate(limit);
        list.reverse();
    } else if let Some(around) = id("around") {
        let pos = list
            .iter()
            .position(|m| m.id >= around)
            .unwrap_or(list.len());
        let start = pos.saturating_sub(limit / 2);
        let end = (start + limit).min(list.len());
        list = list[start..end].to_vec();
        list.reverse();
    } else {
        list.reverse();
        list.truncate(limit);
    }
    let body: Vec<Value> = list.iter().map(|m| w.message_json(m, false)).collect();
    Reply::ok(Value::Array(body))
}

/// The validated parts of a message create or edit body.
struct Content {
    content: Option<String>,
    embeds: Option<Value>,
    components: Option<Value>,
    allowed_mentions: Value,
    flags: u64,
    reply_to: Option<u64>,
}

fn embed_chars(embed: &Value) -> usize {
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let mut total = len(&embed["title"])
        + len(&embed["description"])
        + len(&embed["footer"]["text"])
        + len(&embed["author"]["name"]);
    if let Some(fields) = embed["fields"].as_array() {
        for field in fields {
            total += len(&field["name"]) + len(&field["value"]);
        }
    }
    total
}

/// Checks a message body the way Discord does; `Err` is the 400 to answer.
fn validate_content(w: &World, body: &Value, channel: u64) -> Result<Content, Reply> {
    let content = match &body["content"] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    if let Some(text) = &content {
        let count = text.chars().count();
        if count > CONTENT_LIMIT {
            return Err(Reply::form(
                "content",
                "BASE_TYPE_MAX_LENGTH",
                &format!("Must be {CONTENT_LIMIT} or fewer in length."),
            ));
        }
    }
    let embeds = body.get("embeds").cloned().filter(|e| !e.is_null());
    if let Some(list) = embeds.as_ref().and_then(Value::as_array) {
        if list.len() > 10 {
            return Err(Reply::form(
                "embeds",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.",
            ));
        }
        let total: usize = list.iter().map(embed_chars).sum();
        if total > EMBED_TOTAL_LIMIT {
            return Err(Reply::form(
                "embeds",
                "MAX_EMBED_SIZE_EXCEEDED",
                "Embed size exceeds maximum size of 6000",
            ));
        }
        for embed in list {
            if embed["description"]
                .as_str()
                .is_some_and(|d| d.chars().count() > 4096)
            {
                return Err(Reply::form(
                    "embeds",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 4096 or fewer in length.",
                ));
            }
        }
    }
    let allowed = body.get("allowed_mentions").cloned().unwrap_or(Value::Null);
    if !allowed.is_null() {
        let parse: Vec<&str> = allowed["parse"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for key in ["users", "roles"] {
            let listed = allowed[key].as_array().map_or(0, Vec::len);
            if parse.contains(&key) && listed > 0 {
                return Err(Reply::form(
                    "allowed_mentions",
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    &format!("parse:[\"{key}\"] and {key}: [ids...] are mutually exclusive."),
                ));
            }
            if listed > 100 {
                return Err(Reply::form(
                    "allowed_mentions",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                ));
            }
        }
    }
    let reply_to = match body.get("message_reference") {
        Some(reference) if !reference.is_null() => {
            let id = value_id(&reference["message_id"]);
            let found = id.and_then(|id| w.message(id));
            match found {
                Some(m) if m.channel == channel || reference["channel_id"].is_string() => {
                    Some(m.id)
                }
                _ if reference["fail_if_not_exists"] == false => None,
                _ => {
                    return Err(Reply::form(
                        "message_reference",
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    ))
                }
            }
        }
        _ => None,
    };
    Ok(Content {
        content,
        embeds,
        components: body.get("components").cloned().filter(|c| !c.is_null()),
        allowed_mentions: allowed,
        flags: body["flags"].as_u64().unwrap_or(0),
        reply_to,
    })
}

/// The uploaded files as attachments; `Err` when one is over the size limit.
fn attachments_from(w: &mut World, req: &Req) -> Result<Vec<Attachment>, Reply> {
    let mut out = Vec::new();
    for (part, data) in &req.files {
        if data.len() > ATTACHMENT_SIZE_LIMIT {
            return Err(Reply::error(413, 40005, "Request entity too large"));
        }
        out.push(Attachment {
            id: w.next_id(),
            filename: part.filename.clone(),
            size: data.len(),
            content_type: part.content_type.clone(),
            data: data.clone(),
        });
    }
    Ok(out)
}

/// Creates a message authored by the bot from a create body (channel post, interaction reply or
/// follow-up); returns its id. Dispatching is left to the caller.
fn create_bot_message(
    w: &mut World,
    req: &Req,
    body: &Value,
    channel: u64,
    interaction: Option<u64>,
    extra_flags: u64,
) -> Result<u64, Reply> {
    let content = validate_content(w, body, channel)?;
    let attachments = attachments_from(w, req)?;
    let text = content.content.unwrap_or_default();
    let embeds = content.embeds.unwrap_or_else(|| json!([]));
    let components = content.components.unwrap_or_else(|| json!([]));
    let stickers = body["sticker_ids"].as_array().map_or(0, Vec::len);
    let has_embeds = embeds.as_array().is_some_and(|e| !e.is_empty());
    let has_components = components.as_array().is_some_and(|c| !c.is_empty());
    if text.is_empty()
        && attachments.is_empty()
        && !has_embeds
        && !has_components
        && stickers == 0
        && extra_flags & 128 == 0
    {
        return Err(Reply::error(400, 50006, "Cannot send an empty message"));
    }
    Ok(w.store_message(
        channel,
        BOT_ID,
        text,
        attachments,
        embeds,
        components,
        content.allowed_mentions,
        content.reply_to,
        content.flags | extra_flags,
        interaction,
    ))
}

fn post_message(w: &mut World, req: &Req, cid: u64) -> Reply {
    if let Some(thread) = w.threads.get(&cid) {
        if thread.archived && thread.locked {
            return Reply::error(400, 50083, "Thread is archived");
        }
    }
    let id = match create_bot_message(w, req, &req.body, cid, None, 0) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    // Sending into an archived (unlocked) thread unarchives it.
    let unarchived = match w.threads.get_mut(&cid) {
        Some(thread) if thread.archived => {
            thread.archived = false;
            true
        }
        _ => false,
    };
    if unarchived {
        w.dispatch_thread("THREAD_UPDATE", cid, false);
    }
    w.dispatch_message_create(id);
    Reply::ok(w.message_json(w.message(id).expect("just stored"), false))
}

/// Applies an edit body to message `id` (content, embeds, components, allowed_mentions, flags,
/// attachments), then echoes MESSAGE_UPDATE. `webhook` edits may touch any bot message.
fn edit_message(w: &mut World, req: &Req, id: u64, webhook: bool) -> Reply {
    let message = w.message(id).expect("caller found it");
    if message.author != BOT_ID && !webhook {
        // Only flags (suppress embeds) may be edited on others' messages; keep it simple.
        return Reply::error(403, 50005, "Cannot edit a message authored by another user");
    }
    let channel = message.channel;
    let body = &req.body;
    let content = match validate_content(w, body, channel) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    let new_files = match attachments_from(w, req) {
        Ok(files) => files,
        Err(reply) => return reply,
    };
    let (mentions, roles, everyone) = match &content.content {
        Some(text) => {
            let allowed = if content.allowed_mentions.is_null() {
                w.message(id).expect("exists").allowed_mentions.clone()
            } else {
                content.allowed_mentions.clone()
            };
            let found = w.mentions_in(text, &allowed);
            (Some(found.0), Some(found.1), Some(found.2))
        }
        None => (None, None, None),
    };
    let message = w.messages.iter_mut().find(|m| m.id == id).expect("exists");
    if body.get("content").is_some() {
        message.content = content.content.unwrap_or_default();
    }
    if let Some(embeds) = content.embeds {
        message.embeds = embeds;
    }
    if let Some(components) = content.components {
        message.components = components;
    }
    if !content.allowed_mentions.is_null() {
        message.allowed_mentions = content.allowed_mentions;
    }
    if let (Some(m), Some(r), Some(e)) = (mentions, roles, everyone) {
        message.mentions = m;
        message.mention_roles = r;
        message.mention_everyone = e;
    }
    if let Some(flags) = body["flags"].as_u64() {
        message.flags = (message.flags & 64) | flags;
    }
    // The deferred "thinking" state ends with the first edit.
    message.flags &= !128;
    if let Some(keep) = body["attachments"].as_array() {
        let keep: Vec<u64> = keep.iter().filter_map(|a| value_id(&a["id"])).collect();
        message.attachments.retain(|a| keep.contains(&a.id));
    }
    message.attachments.extend(new_files);
    message.edited = true;
    message.edited_timestamp = Some(super::world::now_timestamp());
    w.dispatch_message_update(id);
    Reply::ok(w.message_json(w.message(id).expect("exists"), false))
}

fn delete_message(w: &mut World, id: u64) {
    let Some(message) = w.message(id).cloned() else {
        return;
    };
    w.messages.retain(|m| m.id != id);
    w.reactions.retain(|r| r.message != id);
    if !message.is_ephemeral() {
        w.dispatch(
            "MESSAGE_DELETE",
            json!({"id": id.to_string(), "channel_id": message.channel.to_string(),
                   "guild_id": GUILD_ID.to_string()}),
        );
    }
}

fn reaction_route(w: &mut World, req: &Req, cid: u64, mid: u64, rest: &[&str]) -> Reply {
    match (req.method.as_str(), rest) {
        ("PUT", [emoji, "@me"]) => {
            let reaction = Reaction {
                channel: cid,
                message: mid,
                user: BOT_ID,
                emoji: (*emoji).to_owned(),
            };
            if !w.reactions.contains(&reaction) {
                let d = w.reaction_event_json(&reaction, true);
                w.reactions.push(reaction);
                w.dispatch("MESSAGE_REACTION_ADD", d);
            }
            Reply::no_content()
        }
        ("DELETE", [emoji, who]) => {
            let user = if *who == "@me" {
                Some(BOT_ID)
            } else {
                who.parse().ok()
            };
            let Some(user) = user else {
                return unknown_route(w, req);
            };
            let reaction = Reaction {
                channel: cid,
                message: mid,
                user,
                emoji: (*emoji).to_owned(),
            };
            if w.reactions.contains(&reaction) {
                w.reactions.retain(|r| *r != reaction);
                let d = w.reaction_event_json(&reaction, false);
                w.dispatch("MESSAGE_REACTION_REMOVE", d);
            }
            Reply::no_content()
        }
        ("GET", [emoji]) => {
            let users: Vec<Value> = w
                .reactions
                .iter()
                .filter(|r| r.message == mid && r.emoji == *emoji)
                .map(|r| w.user_json(r.user))
                .collect();
            Reply::ok(Value::Array(users))
        }
        ("DELETE", [emoji]) => {
            w.reactions
                .retain(|r| !(r.message == mid && r.emoji == *emoji));
            Reply::no_content()
        }
        ("DELETE", []) => {
            w.reactions.retain(|r| r.message != mid);
            Reply::no_content()
        }
        _ => unknown_route(w, req),
    }
}

// ---------------------------------------------------------------- threads and channels

fn check_thread_name(name: &Value) -> Result<String, Reply> {
    match name.as_str() {
        Some(n) if (1..=100).contains(&n.chars().count()) => Ok(n.to_owned()),
        Some(_) => Err(Reply::form(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        )),
        None => Err(Reply::form(
            "name",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        )),
    }
}

fn check_archive_duration(value: &Value) -> Result<Option<u32>, Reply> {
    match value {
        Value::Null => Ok(None),
        v => match v.as_u64() {
            Some(d @ (60 | 1440 | 4320 | 10080)) => Ok(Some(d as u32)),
            _ => Err(Reply::form(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.",
            )),
        },
    }
}

fn create_thread(w: &mut World, req: &Req, cid: u64) -> Reply {
    if !w.channels.contains_key(&cid) {
        return Reply::error(400, 50024, "Cannot execute action on this channel type");
    }
    let body = &req.body;
    let name = match check_thread_name(&body["name"]) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let duration = match check_archive_duration(&body["auto_archive_duration"]) {
        Ok(d) => d.unwrap_or(1440),
        Err(reply) => return reply,
    };
    let requested = body["type"].as_u64().map(|t| t as u8);
    let kind = match requested {
        None => 12,
        Some(t @ 10..=12) => t,
        Some(_) => {
            return Reply::form(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of {10, 11, 12}.",
            )
        }
    };
    let id = w.next_id();
    w.threads.insert(
        id,
        Thread {
            id,
            parent: cid,
            name,
            kind,
            requested_kind: requested,
            archived: false,
            locked: false,
            auto_archive_duration: duration,
            owner: BOT_ID,
            from_message: None,
            members: vec![BOT_ID],
        },
    );
    w.dispatch_thread("THREAD_CREATE", id, true);
    Reply::json(201, w.thread_json(&w.threads[&id]))
}

fn thread_from_message(w: &mut World, req: &Req, cid: u64, mid: u64) -> Reply {
    if !w.channels.contains_key(&cid) {
        return Reply::error(400, 50024, "Cannot execute action on this channel type");
    }
    if w.threads.contains_key(&mid) {
        return Reply::error(
            400,
            160004,
            "A thread has already been created for this message",
        );
    }
    let body = &req.body;
    let name = match check_thread_name(&body["name"]) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let duration = match check_archive_duration(&body["auto_archive_duration"]) {
        Ok(d) => d.unwrap_or(1440),
        Err(reply) => return reply,
    };
    // A thread started from a message takes the message's id.
    w.threads.insert(
        mid,
        Thread {
            id: mid,
            parent: cid,
            name,
            kind: 11,
            requested_kind: body["type"].as_u64().map(|t| t as u8),
            archived: false,
            locked: false,
            auto_archive_duration: duration,
            owner: BOT_ID,
            from_message: Some(mid),
            members: vec![BOT_ID],
        },
    );
    w.dispatch_thread("THREAD_CREATE", mid, true);
    Reply::json(201, w.thread_json(&w.threads[&mid]))
}

fn edit_channel(w: &mut World, req: &Req, cid: u64) -> Reply {
    let body = &req.body;
    if w.threads.contains_key(&cid) {
        let name = match body.get("name") {
            Some(n) => match check_thread_name(n) {
                Ok(n) => Some(n),
                Err(reply) => return reply,
            },
            None => None,
        };
        let duration = match check_archive_duration(&body["auto_archive_duration"]) {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        let thread = w.threads.get_mut(&cid).expect("checked");
        if let Some(name) = name {
            thread.name = name;
        }
        if let Some(d) = duration {
            thread.auto_archive_duration = d;
        }
        if let Some(archived) = body["archived"].as_bool() {
            thread.archived = archived;
        }
        if let Some(locked) = body["locked"].as_bool() {
            thread.locked = locked;
        }
        w.dispatch_thread("THREAD_UPDATE", cid, false);
        return Reply::ok(w.thread_json(&w.threads[&cid]));
    }
    let channel = w.channels.get_mut(&cid).expect("checked");
    if let Some(name) = body["name"].as_str() {
        channel.name = name.to_owned();
    }
    if body.get("topic").is_some() {
        channel.topic = body["topic"].as_str().map(str::to_owned);
    }
    let d = w.channel_json(&w.channels[&cid]);
    w.dispatch("CHANNEL_UPDATE", d.clone());
    Reply::ok(d)
}

fn delete_channel(w: &mut World, cid: u64) -> Reply {
    let json = w.any_channel_json(cid).expect("checked");
    if let Some(thread) = w.threads.remove(&cid) {
        w.messages.retain(|m| m.channel != cid);
        w.dispatch(
            "THREAD_DELETE",
            json!({"id": cid.to_string(), "guild_id": GUILD_ID.to_string(),
                   "parent_id": thread.parent.to_string(), "type": thread.kind}),
        );
    } else {
        w.channels.remove(&cid);
        w.messages.retain(|m| m.channel != cid);
        w.dispatch("CHANNEL_DELETE", json.clone());
    }
    Reply::ok(json)
}

fn guild_route(w: &mut World, req: &Req, rest: &[&str]) -> Reply {
    match (req.method.as_str(), rest) {
        ("GET", ["channels"]) => {
            let list: Vec<Value> = w.channels.values().map(|c| w.channel_json(c)).collect();
            Reply::ok(Value::Array(list))
        }
        ("GET", ["threads", "active"]) => {
            let threads: Vec<Value> = w
                .threads
                .values()
                .filter(|t| !t.archived)
                .map(|t| w.thread_json(t))
                .collect();
            Reply::ok(json!({"threads": threads, "members": []}))
        }
        ("GET", ["members", uid]) => {
            match uid.parse::<u64>().ok().filter(|u| w.users.contains_key(u)) {
                Some(u) => Reply::ok(w.member_json(u)),
                None => Reply::error(404, 10007, "Unknown Member"),
            }
        }
        ("GET", ["roles"]) => {
            let roles: Vec<Value> = w
                .roles
                .values()
                .enumerate()
                .map(|(i, r)| w.role_json(r, i))
                .collect();
            Reply::ok(Value::Array(roles))
        }
        _ => unknown_route(w, req),
    }
}

// ---------------------------------------------------------------- commands

fn command_json(command: &Command) -> Value {
    let mut value = command.json.clone();
    if !value.is_object() {
        value = json!({});
    }
    value["id"] = json!(command.id.to_string());
    value["application_id"] = json!(APP_ID.to_string());
    value["version"] = json!(command.id.to_string());
    value["type"] = json!(command.kind);
    if value.get("description").is_none_or(Value::is_null) {
        value["description"] = json!("");
    }
    if value.get("default_member_permissions").is_none() {
        value["default_member_permissions"] = Value::Null;
    }
    if let Some(guild) = command.guild {
        value["guild_id"] = json!(guild.to_string());
    }
    value
}

/// Discord's checks on a command's name, description and options.
fn check_command(body: &Value) -> Result<(), Reply> {
    let kind = body["type"].as_u64().unwrap_or(1);
    let name = body["name"].as_str().unwrap_or_default();
    let count = name.chars().count();
    let valid_slash_name = |n: &str| {
        (1..=32).contains(&n.chars().count())
            && n.chars()
                .all(|c| c == '-' || c == '_' || (c.is_alphanumeric() && !c.is_uppercase()))
    };
    if kind == 1 && !valid_slash_name(name) || !(1..=32).contains(&count) {
        return Err(Reply::form(
            "name",
            "APPLICATION_COMMAND_INVALID_NAME",
            &format!("Command name is invalid: {name:?}"),
        ));
    }
    if kind == 1 {
        let description = body["description"].as_str().unwrap_or_default();
        if !(1..=100).contains(&description.chars().count()) {
            return Err(Reply::form(
                "description",
                "BASE_TYPE_BAD_LENGTH",
                &format!("Must be between 1 and 100 in length ({name})."),
            ));
        }
        fn check_options(options: &Value, valid: &dyn Fn(&str) -> bool) -> Result<(), Reply> {
            let Some(list) = options.as_array() else {
                return Ok(());
            };
            if list.len() > 25 {
                return Err(Reply::form(
                    "options",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 25 or fewer in length.",
                ));
            }
            for option in list {
                let name = option["name"].as_str().unwrap_or_default();
                let description = option["description"].as_str().unwrap_or_default();
                if !valid(name) {
                    return Err(Reply::form(
                        "options",
                        "APPLICATION_COMMAND_INVALID_NAME",
                        &format!("Option name is invalid: {name:?}"),
                    ));
                }
                if !(1..=100).contains(&description.chars().count()) {
                    return Err(Reply::form(
                        "options",
                        "BASE_TYPE_BAD_LENGTH",
                        &format!("Option description must be 1 to 100 long ({name})."),
                    ));
                }
                check_options(&option["options"], valid)?;
            }
            Ok(())
        }
        check_options(&body["options"], &valid_slash_name)?;
    }
    Ok(())
}

fn upsert_command(w: &mut World, body: &Value, guild: Option<u64>) -> Result<Command, Reply> {
    check_command(body)?;
    let kind = body["type"].as_u64().unwrap_or(1) as u8;
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let existing = w
        .commands
        .iter()
        .find(|c| c.name == name && c.guild == guild && c.kind == kind)
        .map(|c| c.id);
    let id = match existing {
        Some(id) => id,
        None => w.next_id(),
    };
    Ok(Command {
        id,
        name,
        guild,
        kind,
        json: body.clone(),
    })
}

fn command_route(w: &mut World, req: &Req, rest: &[&str]) -> Reply {
    let (guild, rest) = match rest {
        ["guilds", gid, rest @ ..] => {
            if gid.parse::<u64>().ok() != Some(GUILD_ID) {
                return Reply::error(404, 10004, "Unknown Guild");
            }
            (Some(GUILD_ID), rest)
        }
        rest => (None, rest),
    };
    match (req.method.as_str(), rest) {
        ("GET", ["commands"]) => {
            let list: Vec<Value> = w
                .commands
                .iter()
                .filter(|c| c.guild == guild)
                .map(command_json)
                .collect();
            Reply::ok(Value::Array(list))
        }
        ("PUT", ["commands"]) => {
            let Some(list) = req.body.as_array() else {
                return Reply::form("_", "BASE_TYPE_ARRAY", "Must be an array.");
            };
            let mut new = Vec::new();
            for body in list {
                match upsert_command(w, body, guild) {
                    Ok(command) => new.push(command),
                    Err(reply) => return reply,
                }
            }
            w.commands.retain(|c| c.guild != guild);
            w.commands.extend(new.iter().cloned());
            Reply::ok(Value::Array(new.iter().map(command_json).collect()))
        }
        ("POST", ["commands"]) => match upsert_command(w, &req.body, guild) {
            Ok(command) => {
                let json = command_json(&command);
                w.commands.retain(|c| c.id != command.id);
                w.commands.push(command);
                Reply::json(201, json)
            }
            Err(reply) => reply,
        },
        ("GET", ["commands", id]) => {
            match w
                .commands
                .iter()
                .find(|c| c.guild == guild && c.id.to_string() == *id)
            {
                Some(c) => Reply::ok(command_json(c)),
                None => Reply::error(404, 10063, "Unknown application command"),
            }
        }
        ("DELETE", ["commands", id]) => {
            let before = w.commands.len();
            w.commands
                .retain(|c| !(c.guild == guild && c.id.to_string() == *id));
            if w.commands.len() == before {
                Reply::error(404, 10063, "Unknown application command")
            } else {
                Reply::no_content()
            }
        }
        _ => unknown_route(w, req),
    }
}

// ---------------------------------------------------------------- interactions

fn callback(w: &mut World, req: &Req, iid: &str, token: &str) -> Reply {
    let Some(iid) = iid
        .parse::<u64>()
        .ok()
        .filter(|i| w.interactions.get(i).is_some_and(|it| it.token == token))
    else {
        return Reply::error(404, 10062, "Unknown interaction");
    };
    let interaction = &w.interactions[&iid];
    if interaction.acknowledged {
        return Reply::error(400, 40060, "Interaction has already been acknowledged.");
    }
    if interaction.created.elapsed() > INTERACTION_DEADLINE {
        return Reply::error(404, 10062, "Unknown interaction");
    }
    let channel = interaction.channel;
    let kind = req.body["type"].as_u64().unwrap_or(0);
    let data = req.body["data"].clone();
    let original = match kind {
        4 => match create_bot_message(w, req, &data, channel, Some(iid), 0) {
            Ok(id) => Some(id),
            Err(reply) => return reply,
        },
        5 => {
            let ephemeral = data["flags"].as_u64().unwrap_or(0) & 64;
            let id = w.store_message(
                channel,
                BOT_ID,
                String::new(),
                Vec::new(),
                json!([]),
                json!([]),
                Value::Null,
                None,
                128 | ephemeral,
                Some(iid),
            );
            Some(id)
        }
        1 | 6 | 7 | 8 | 9 | 10 | 12 => None,
        _ => {
            return Reply::form(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be a valid callback type.",
            )
        }
    };
    let interaction = w.interactions.get_mut(&iid).expect("checked");
    interaction.acknowledged = true;
    interaction.original = original.or(interaction.original);
    interaction
        .responses
        .push(InteractionResponse::Callback { kind, data });
    if let Some(id) = original {
        w.dispatch_message_create(id);
    }
    Reply::no_content()
}

fn webhook_route(w: &mut World, req: &Req, app: &str, token: &str, rest: &[&str]) -> Reply {
    let iid = w
        .interactions
        .values()
        .find(|i| i.token == token)
        .map(|i| i.id);
    let Some(iid) = iid.filter(|_| app.parse::<u64>().ok() == Some(APP_ID)) else {
        return Reply::unknown_webhook();
    };
    if !w.interactions[&iid].acknowledged {
        return Reply::unknown_webhook();
    }
    let interaction = &w.interactions[&iid];
    let channel = interaction.channel;
    let original = interaction.original;
    let target = |which: &str| -> Option<u64> {
        if which == "@original" {
            original
        } else {
            which
                .parse::<u64>()
                .ok()
                .filter(|id| w.message(*id).is_some_and(|m| m.interaction == Some(iid)))
        }
    };
    match (req.method.as_str(), rest) {
        ("POST", []) => {
            let body = req.body.clone();
            w.interactions
                .get_mut(&iid)
                .expect("exists")
                .responses
                .push(InteractionResponse::Followup(body.clone()));
            // The first follow-up after a deferral replaces the "thinking" message.
            if let Some(id) =
                original.filter(|id| w.message(*id).is_some_and(|m| m.flags & 128 != 0))
            {
                return edit_message(w, req, id, true);
            }
            match create_bot_message(w, req, &body, channel, Some(iid), 0) {
                Ok(id) => {
                    w.dispatch_message_create(id);
                    Reply::ok(w.message_json(w.message(id).expect("stored"), false))
                }
                Err(reply) => reply,
            }
        }
        ("GET", ["messages", which]) => match target(which).and_then(|id| w.message(id)) {
            Some(m) => Reply::ok(w.message_json(m, false)),
            None => Reply::unknown_message(),
        },
        ("PATCH", ["messages", which]) => {
            let Some(id) = target(which).filter(|id| w.message(*id).is_some()) else {
                return Reply::unknown_message();
            };
            let response = if *which == "@original" {
                InteractionResponse::EditOriginal(req.body.clone())
            } else {
                InteractionResponse::EditFollowup {
                    message: id,
                    body: req.body.clone(),
                }
            };
            let reply = edit_message(w, req, id, true);
            if reply.status == 200 {
                w.interactions
                    .get_mut(&iid)
                    .expect("exists")
                    .responses
                    .push(response);
            }
            reply
        }
        ("DELETE", ["messages", which]) => {
            match target(which).filter(|id| w.message(*id).is_some()) {
                Some(id) => {
                    delete_message(w, id);
                    Reply::no_content()
                }
                None => Reply::unknown_message(),
            }
        }
        _ => unknown_route(w, req),
    }
}

// ---------------------------------------------------------------- parsing helpers

/// Decodes `%XX` escapes (invalid UTF-8 is replaced); `+` is left alone, as in paths.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A `name="value"` parameter of a Content-Disposition header.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=\"");
    let mut search = header;
    loop {
        let start = search.find(&pattern)?;
        // `filename=` also contains `name=`: require a separator before the key.
        let preceded = search[..start]
            .chars()
            .last()
            .is_none_or(|c| c == ' ' || c == ';');
        let rest = &search[start + pattern.len()..];
        if preceded {
            let end = rest.find('"')?;
            return Some(rest[..end].to_owned());
        }
        search = rest;
    }
}

/// Parses a `multipart/form-data` body (what reqwest's `Form` writes).
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, &delimiter, 0)? + delimiter.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Some(parts);
        }
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let header_end = find(body, b"\r\n\r\n", pos)?;
        let headers = String::from_utf8_lossy(&body[pos..header_end]).into_owned();
        let data_start = header_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let data_end = find(body, &closing, data_start)?;
        let mut name = String::new();
        let mut filename = None;
        let mut part_type = None;
        for line in headers.split("\r\n") {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            match key.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    name = disposition_param(value, "name").unwrap_or_default();
                    filename = disposition_param(value, "filename");
                }
                "content-type" => part_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(Part {
            name,
            filename,
            content_type: part_type,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + closing.len();
    }
}
