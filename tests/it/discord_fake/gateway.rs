//! The fake gateway at `/ws`: Hello, Identify → READY + GUILD_CREATE, heartbeats, Resume with
//! replay, and the connection side of the fault knobs.
//!
//! Each connection is a task that owns its socket and an unbounded channel. Everything it sends
//! goes through that channel, and the world pushes to it under its lock, so dispatches leave in
//! sequence order and a Resume's replay cannot interleave with new events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::world::{GatewayFrame, Out, Session, World};
use super::Shared;

/// How long a connection waits for the client's answer to a close frame before dropping TCP.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(super) async fn upgrade(ws: WebSocketUpgrade, State(shared): State<Arc<Shared>>) -> Response {
    ws.max_message_size(16 << 20)
        .on_upgrade(move |socket| connection(shared, socket))
}

async fn connection(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (conn, heartbeat_ms) = shared.mutate(|w| {
        w.gw.next_conn += 1;
        w.connections += 1;
        let conn = w.gw.next_conn;
        w.gw.conns.insert(conn, tx.clone());
        (conn, w.gw.heartbeat_ms)
    });
    let hello = json!({"op": 10, "d": {"heartbeat_interval": heartbeat_ms}, "s": null, "t": null});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        run(&shared, conn, &tx, &mut rx, &mut socket).await;
    }
    shared.mutate(|w| {
        w.gw.conns.remove(&conn);
        if w.gw.live == Some(conn) {
            w.gw.live = None;
        }
    });
}

async fn run(
    shared: &Shared,
    conn: u64,
    tx: &mpsc::UnboundedSender<Out>,
    rx: &mut mpsc::UnboundedReceiver<Out>,
    socket: &mut WebSocket,
) {
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    shared.mutate(|w| on_payload(w, conn, tx, text.as_str()));
                }
                Some(Ok(Message::Binary(bytes))) => shared.mutate(|w| {
                    w.note_unexpected(format!(
                        "gateway: binary frame of {} bytes on connection {conn}",
                        bytes.len()
                    ))
                }),
                Some(Ok(Message::Close(_))) => {
                    // Complete the close handshake, as Discord does (serenity's shutdown waits
                    // for the server's close frame): tungstenite queued the reply when it read
                    // the client's frame, and a flush writes it.
                    let _ = tokio::time::timeout(CLOSE_GRACE, socket.flush()).await;
                    return;
                }
                Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Out::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Out::Close(code)) => {
                    let frame = CloseFrame { code, reason: "fake discord".into() };
                    if socket.send(Message::Close(Some(frame))).await.is_ok() {
                        // Let the client read the frame and answer before the TCP goes away, so
                        // it sees the code rather than a reset.
                        let _ = tokio::time::timeout(CLOSE_GRACE, async {
                            while let Some(Ok(message)) = socket.recv().await {
                                if matches!(message, Message::Close(_)) {
                                    break;
                                }
                            }
                        })
                        .await;
                    }
                    return;
                }
                Some(Out::Drop) | None => return,
            },
        }
    }
}

/// Handles one payload from the bot, under the world lock.
fn on_payload(w: &mut World, conn: u64, tx: &mpsc::UnboundedSender<Out>, text: &str) {
    let Ok(payload) = serde_json::from_str::<Value>(text) else {
        w.note_unexpected(format!("gateway: non-JSON payload {text:?}"));
        return;
    };
    let op = payload["op"].as_u64().unwrap_or(u64::MAX);
    let d = payload["d"].clone();
    w.frames.push(GatewayFrame {
        connection: conn,
        op,
        d: d.clone(),
    });
    match op {
        1 => {
            w.heartbeats += 1;
            if !w.gw.no_ack {
                let _ = tx.send(Out::Text(json!({"op": 11}).to_string()));
            }
        }
        2 => identify(w, conn, &d),
        6 => resume(w, conn, tx, &d),
        // Presence and voice state updates: recorded, nothing to answer.
        3 | 4 => {}
        8 => w.note_unexpected(format!(
            "gateway: op 8 Request Guild Members is not implemented by the fake: {d}"
        )),
        _ => w.note_unexpected(format!("gateway: unknown op {op}: {payload}")),
    }
}

fn identify(w: &mut World, conn: u64, d: &Value) {
    w.identifies += 1;
    w.last_identify = d.clone();
    if !d["token"].as_str().is_some_and(|t| t.starts_with("Bot ")) {
        w.note_unexpected(format!(
            "gateway: Identify without a `Bot ` token: {}",
            d["token"]
        ));
    }
    w.gw.sessions_started += 1;
    let id = format!("fake-session-{}", w.gw.sessions_started);
    w.gw.session = Some(Session {
        id: id.clone(),
        seq: 0,
        intents: d["intents"].as_u64().unwrap_or(0),
        buffer: Default::default(),
    });
    w.gw.live = Some(conn);
    let ready = w.ready_json(&id);
    w.dispatch("READY", ready);
    let guild = w.guild_json();
    w.dispatch("GUILD_CREATE", guild);
}

fn resume(w: &mut World, conn: u64, tx: &mpsc::UnboundedSender<Out>, d: &Value) {
    w.resumes += 1;
    let session_id = d["session_id"].as_str().unwrap_or_default();
    let seq = d["seq"].as_u64().unwrap_or(0);
    let valid =
        w.gw.session
            .as_ref()
            .is_some_and(|s| s.id == session_id && seq <= s.seq);
    if !valid {
        w.rejected_resumes += 1;
        let _ = tx.send(Out::Text(
            json!({"op": 9, "d": false, "s": null, "t": null}).to_string(),
        ));
        return;
    }
    let session = w.gw.session.as_ref().expect("checked above");
    let from = seq.saturating_sub(w.gw.redeliver);
    for (s, replayable, frame) in &session.buffer {
        if *s > from && *replayable {
            let _ = tx.send(Out::Text(frame.clone()));
        }
    }
    w.gw.live = Some(conn);
    w.dispatch("RESUMED", json!({}));
}
