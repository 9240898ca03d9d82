//! The terminal console: a chat with Jake (or a joined agent) plus commands that bypass any model.
//!
//! Commands parse once, here, into intents; the same intents a model's tool calls produce. Output is
//! plain lines on stdout, so the console works in a terminal, in a pipe and under a test harness alike.

pub mod render;

use std::future::Future;
use tavern_plugin_api::{AgentKind, BroadcastScope, RestartStrategy, TaskMode};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::domain::{Actor, Answer, Intent, ModesPatch, Summon};
use crate::executor::{Receipt, Tavern};

/// A parsed console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text for the current conversation.
    Say(String),
    /// An intent to submit.
    Submit(Intent),
    /// `/join NAME`.
    Join(String),
    /// `/leave`.
    Leave,
    /// `/agents`.
    Agents,
    /// `/log [N]`.
    Log(usize),
    /// `/status`.
    Status,
    /// `/pending`.
    Pending,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
}

/// A console line that could not be parsed; the message says the right form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

fn usage(text: &str) -> UsageError {
    UsageError(format!("usage: {text} (see /help)"))
}

fn on_off(key: &str, value: &str) -> Result<bool, UsageError> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(UsageError(format!(
            "{key} must be on or off, not {value:?}"
        ))),
    }
}

/// Each agent type's model in one line, for the console.
fn models_line(models: &crate::model::KindModels) -> String {
    let show = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".to_string());
    if models.jake == models.mortal
        && models.mortal == models.drone
        && models.drone == models.monitor
    {
        return show(&models.jake);
    }
    format!(
        "jake {}, mortal {}, drone {}, monitor {}",
        show(&models.jake),
        show(&models.mortal),
        show(&models.drone),
        show(&models.monitor)
    )
}

/// A pending item's id as people type it: `7` or `#7`.
fn pending_id(text: &str, form: &str) -> Result<u32, UsageError> {
    text.trim_start_matches('#')
        .parse()
        .map_err(|_| usage(&format!("{form}, ID a number from /pending")))
}

/// Parses one console line. `jake` is Jake's name, the default parent of summons.
pub fn parse(line: &str, jake: &str) -> Result<Option<Command>, UsageError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Say(line.to_string())));
    };
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    let words: Vec<&str> = args.split_whitespace().collect();
    let command = match name {
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        "agents" => Command::Agents,
        "status" => Command::Status,
        "pending" => Command::Pending,
        "leave" => Command::Leave,
        "join" => match words.as_slice() {
            [name] => Command::Join(name.to_string()),
            _ => return Err(usage("/join NAME")),
        },
        "log" => match words.as_slice() {
            [] => Command::Log(20),
            [n] => Command::Log(
                n.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| usage("/log [N], N a positive number"))?,
            ),
            _ => return Err(usage("/log [N]")),
        },
        "summon" => Command::Submit(parse_summon(args, jake)?),
        "commit" => {
            let (agent, rest) = args
                .split_once(char::is_whitespace)
                .ok_or_else(|| usage("/commit NAME [--signoff] DESCRIPTION -- ASSERTION"))?;
            let rest = rest.trim();
            let (needs_signoff, rest) = match rest.strip_prefix("--signoff") {
                Some(r) => (true, r.trim()),
                None => (false, rest),
            };
            let (description, assertion) = rest
                .split_once(" -- ")
                .or_else(|| rest.strip_prefix("-- ").map(|a| ("", a)))
                .ok_or_else(|| usage("/commit NAME [--signoff] DESCRIPTION -- ASSERTION"))?;
            Command::Submit(Intent::AddCommitment {
                agent: agent.to_string(),
                description: description.trim().to_string(),
                assertion: assertion.trim().to_string(),
                needs_signoff,
            })
        }
        "done" => match words.as_slice() {
            [agent] => Command::Submit(Intent::SignalDone {
                agent: agent.to_string(),
            }),
            _ => return Err(usage("/done NAME")),
        },
        "approve" => match words.as_slice() {
            [id] => Command::Submit(Intent::Answer {
                id: pending_id(id, "/approve ID")?,
                answer: Answer::Allow,
            }),
            [agent, n] => Command::Submit(Intent::Approve {
                agent: agent.to_string(),
                commitment: n
                    .trim_start_matches('#')
                    .parse()
                    .map_err(|_| usage("/approve NAME N, N the commitment's number"))?,
            }),
            _ => {
                return Err(usage(
                    "/approve ID (a pending tool call) or /approve NAME N (a commitment)",
                ))
            }
        },
        "interrupt" => match words.as_slice() {
            [agent] => Command::Submit(Intent::Interrupt {
                agent: agent.to_string(),
            }),
            _ => return Err(usage("/interrupt NAME")),
        },
        "deny" => match words.split_first() {
            Some((id, reason)) => Command::Submit(Intent::Answer {
                id: pending_id(id, "/deny ID [REASON]")?,
                answer: Answer::Deny {
                    reason: Some(reason.join(" ")).filter(|r| !r.is_empty()),
                },
            }),
            None => return Err(usage("/deny ID [REASON]")),
        },
        "always" => match words.as_slice() {
            [id] => Command::Submit(Intent::Answer {
                id: pending_id(id, "/always ID")?,
                answer: Answer::Always,
            }),
            _ => return Err(usage("/always ID")),
        },
        "answer" => match args.split_once(char::is_whitespace) {
            Some((id, text)) if !text.trim().is_empty() => Command::Submit(Intent::Answer {
                id: pending_id(id, "/answer ID TEXT")?,
                answer: Answer::Text {
                    text: text.trim().to_string(),
                },
            }),
            _ => return Err(usage("/answer ID TEXT")),
        },
        "dismiss" => match words.as_slice() {
            [agent] => Command::Submit(Intent::Dismiss {
                agent: agent.to_string(),
            }),
            _ => return Err(usage("/dismiss NAME")),
        },
        "reap" => match words.split_first() {
            Some((agent, reason)) => Command::Submit(Intent::Reap {
                agent: agent.to_string(),
                reason: reason.join(" "),
            }),
            None => return Err(usage("/reap NAME [REASON]")),
        },
        "describe" => match args.split_once(char::is_whitespace) {
            Some((agent, text)) if !text.trim().is_empty() => {
                Command::Submit(Intent::SetDescription {
                    agent: agent.to_string(),
                    text: text.trim().to_string(),
                })
            }
            _ => return Err(usage("/describe NAME TEXT")),
        },
        "mode" => {
            let (agent, pairs) = words
                .split_first()
                .filter(|(_, p)| !p.is_empty())
                .ok_or_else(|| usage("/mode NAME KEY=VALUE..."))?;
            let mut patch = ModesPatch::default();
            for pair in pairs {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| usage("/mode NAME KEY=VALUE..."))?;
                match key {
                    "perseverance" => patch.perseverance = Some(on_off(key, value)?),
                    "backgrounded" => patch.backgrounded = Some(on_off(key, value)?),
                    "task" => patch.task_mode = Some(TaskMode::parse(value).map_err(UsageError)?),
                    other => {
                        return Err(UsageError(format!(
                            "unknown mode {other:?}: use perseverance, backgrounded or task \
                             (presence changes with /join and /leave)"
                        )))
                    }
                }
            }
            Command::Submit(Intent::SetModes {
                agent: agent.to_string(),
                patch,
            })
        }
        "strategy" => match words.as_slice() {
            [agent, "one"] => Command::Submit(Intent::SetRestartStrategy {
                agent: agent.to_string(),
                strategy: RestartStrategy::RestartOne,
            }),
            [agent, "all"] => Command::Submit(Intent::SetRestartStrategy {
                agent: agent.to_string(),
                strategy: RestartStrategy::RestartAll,
            }),
            _ => return Err(usage("/strategy NAME one|all")),
        },
        "broadcast" if !args.is_empty() => Command::Submit(Intent::Broadcast {
            scope: BroadcastScope::All,
            text: args.to_string(),
        }),
        "broadcast" => return Err(usage("/broadcast TEXT")),
        other => {
            return Err(UsageError(format!(
                "unknown command /{other}; /help lists the commands"
            )))
        }
    };
    Ok(Some(command))
}

/// Splits a `/summon` line into words, where a flag's value may be quoted (`--name "two words"`,
/// `--dir 'my dir'`). Only flag values are unquoted: the assignment is free text, where an apostrophe
/// is just an apostrophe.
fn summon_words(args: &str) -> Result<Vec<String>, UsageError> {
    let mut words = Vec::new();
    let mut rest = args.trim_start();
    let mut value_next = false;
    while !rest.is_empty() {
        let quote = rest
            .chars()
            .next()
            .filter(|c| value_next && matches!(c, '"' | '\''));
        let (word, after) = match quote {
            Some(q) => {
                let end = rest[1..].find(q).ok_or_else(|| {
                    UsageError(format!(
                        "the value {rest} has no closing {q}; close the quote or drop it"
                    ))
                })?;
                let after = &rest[2 + end..];
                if after.starts_with(|c: char| !c.is_whitespace()) {
                    return Err(UsageError(format!(
                        "{after:?} follows the closing {q} without a space; put the whole value \
                         inside the quotes"
                    )));
                }
                (&rest[1..1 + end], after)
            }
            None => rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len())),
        };
        value_next = quote.is_none() && word.starts_with("--");
        words.push(word.to_string());
        rest = after.trim_start();
    }
    Ok(words)
}

fn parse_summon(args: &str, jake: &str) -> Result<Intent, UsageError> {
    const USAGE: &str =
        "/summon ASSIGNMENT [--type T] [--model M] [--parent NAME] [--name NAME] [--dir DIR]";
    let words = summon_words(args)?;
    let mut assignment = Vec::new();
    let mut kind = (AgentKind::Mortal, None);
    let mut model = None;
    let mut parent = jake.to_string();
    let mut name = None;
    let mut workdir = None;
    let mut it = words.iter();
    while let Some(word) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| UsageError(format!("{flag} needs a value; usage: {USAGE}")))
        };
        match word.as_str() {
            "--type" => {
                kind = AgentKind::parse_summonable(&value("--type")?)
                    .map_err(|e| UsageError(e.to_string()))?
            }
            "--model" => model = Some(value("--model")?),
            "--parent" => parent = value("--parent")?,
            "--name" => name = Some(value("--name")?),
            "--dir" => workdir = Some(value("--dir")?),
            flag if flag.starts_with("--") => {
                return Err(UsageError(format!("unknown option {flag}; usage: {USAGE}")))
            }
            word => assignment.push(word),
        }
    }
    if assignment.is_empty() {
        return Err(usage(USAGE));
    }
    Ok(Intent::Summon(Summon {
        parent,
        assignment: Some(assignment.join(" ")),
        kind: kind.0,
        expert: kind.1,
        name,
        model,
        workdir,
    }))
}

/// Whether a summon's working directory (if it names one) exists. Checked here, where the person typed
/// it, because deciding does no IO and an agent whose directory is missing would only fail at its
/// first turn.
fn workdir_exists(app: &App, summon: &Summon) -> bool {
    summon
        .workdir
        .as_deref()
        .is_none_or(|dir| app.config.project.join(dir.trim()).is_dir())
}

/// The console's standard output.
///
/// Writing never panics. Once a write fails (the reader went away, as in `tavern console | head -1`),
/// the output is closed: later lines are dropped and [`Output::closed`] resolves, so the console stops
/// reading and the tavern closes as it does at end of input, with everything acknowledged kept.
#[derive(Clone, Default)]
pub struct Output {
    closed: tokio_util::sync::CancellationToken,
}

impl Output {
    /// Writes one line, unless the output is closed.
    pub fn say(&self, line: impl AsRef<str>) {
        use std::io::Write;
        if self.closed.is_cancelled() {
            return;
        }
        let mut out = std::io::stdout().lock();
        let written = writeln!(out, "{}", line.as_ref()).and_then(|()| out.flush());
        if let Err(e) = written {
            self.closed.cancel();
            // Said on stderr, which is still there when only stdout was closed; if it is not, there is
            // nobody left to tell.
            let _ = writeln!(
                std::io::stderr(),
                "tavern: standard output was closed ({e}); closing the tavern"
            );
        }
    }

    /// Resolves once a write has failed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}

/// The console session state.
struct Session {
    out: Output,
    tavern: Tavern,
    user: String,
    joined: Option<String>,
}

impl Session {
    fn jake(&self) -> String {
        self.tavern
            .read(|s| s.jake.clone())
            .unwrap_or_else(|| "Jake".to_string())
    }

    async fn submit(&self, intent: Intent) {
        let actor = Actor::User(self.user.clone());
        match self.tavern.submit(actor, intent.clone(), None).await {
            Ok(Receipt::Accepted { seq, outcomes, .. }) => {
                self.out.say(render::ack(seq, &intent, &outcomes))
            }
            Ok(Receipt::Rejected { seq, error }) => self.out.say(format!("error #{seq}: {error}")),
            Err(e) => self.out.say(format!("error: {e}")),
        }
    }

    async fn handle(&mut self, app: &App, command: Command) -> bool {
        match command {
            Command::Quit => return false,
            Command::Help => self.out.say(render::HELP),
            Command::Agents => self.out.say(self.tavern.read(render::agent_tree)),
            Command::Pending => self.out.say(self.tavern.read(render::pending)),
            Command::Status => {
                let all = &app.config.models;
                let model = [&all.jake, &all.mortal, &all.drone, &all.monitor]
                    .iter()
                    .any(|m| m.is_some())
                    .then(|| models_line(all));
                self.out.say(self.tavern.read(|s| {
                    render::status(
                        s,
                        &app.config.project,
                        model.as_deref(),
                        app.sidecar.available(),
                        app.config.max_concurrent_calls,
                        self.tavern.projection_errors(),
                    )
                }))
            }
            Command::Log(n) => match self.tavern.log().reader().tail(n) {
                Ok(entries) => {
                    for entry in &entries {
                        self.out.say(render::log_line(entry));
                    }
                    if entries.is_empty() {
                        self.out.say("(the log is empty)");
                    }
                }
                Err(e) => self.out.say(format!("error: {e}")),
            },
            Command::Join(name) => {
                let found = self.tavern.read(|s| s.agent(&name).map(|n| n.name.clone()));
                match found {
                    None => self.out.say(format!(
                        "error: no agent is named {name:?}; /agents lists who is here"
                    )),
                    Some(name) => {
                        self.leave().await;
                        self.submit(Intent::SetModes {
                            agent: name.clone(),
                            patch: ModesPatch {
                                user_present: Some(true),
                                ..ModesPatch::default()
                            },
                        })
                        .await;
                        self.out
                            .say(format!("joined {name}: what you type now goes to {name}"));
                        self.joined = Some(name);
                    }
                }
            }
            Command::Leave => {
                if self.joined.is_none() {
                    self.out.say("you are talking to Jake already");
                } else {
                    self.leave().await;
                    self.out.say("back with Jake");
                }
            }
            Command::Say(text) => {
                let to = self.joined.clone().unwrap_or_else(|| self.jake());
                self.submit(Intent::SendMessage { to, text }).await;
            }
            Command::Submit(Intent::Summon(summon)) if !workdir_exists(app, &summon) => {
                let dir = summon.workdir.unwrap_or_default();
                self.out.say(format!(
                    "error: --dir {dir}: {} is not a directory; create it first or name an existing \
                     one (relative to the project)",
                    app.config.project.join(&dir).display()
                ))
            }
            Command::Submit(intent) => self.submit(intent).await,
        }
        true
    }

    async fn leave(&mut self) {
        if let Some(agent) = self.joined.take() {
            let alive = self
                .tavern
                .read(|s| s.agent(&agent).is_some_and(|n| !n.state.is_dead()));
            if alive {
                self.submit(Intent::SetModes {
                    agent,
                    patch: ModesPatch {
                        user_present: Some(false),
                        ..ModesPatch::default()
                    },
                })
                .await;
            }
        }
    }
}

/// Runs the console over `input` until end of input, `/quit`, or `shutdown` resolves.
pub async fn run(
    app: &mut App,
    input: impl AsyncBufRead + Unpin,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tavern = app.tavern.clone();
    let user = app.config.console_user.clone();
    let out = Output::default();
    out.say(format!(
        "Tavern console — project {} (state in {})",
        app.config.project.display(),
        app.config.tavern_dir.display()
    ));
    for line in app.report.lines() {
        out.say(line);
    }
    let models = &app.config.models;
    match &models.jake {
        None => out.say(
            "note: no model is configured, so Jake and the agents will not reply. Every command \
             still works; set ANTHROPIC_API_KEY, configure [model] (see config/default.toml), or \
             start with --model scripted:FILE for a scripted demo.",
        ),
        Some(model) if model.starts_with("scripted:") => out.say(format!(
            "note: replies come from the script {model}, not from a real model"
        )),
        Some(_) => out.say(format!("models: {}", models_line(models))),
    }
    out.say("Type to talk to Jake; /help lists the commands.");

    // Print every durable event as it happens, in log order.
    let mut events = app.take_events();
    let printer_tavern = tavern.clone();
    let printer_user = user.clone();
    let printer = out.clone();
    let cancel = tavern.cancel_token().clone();
    tavern.tracker().spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => match event {
                    Ok(event) => {
                        let lines = printer_tavern
                            .read(|s| render::event_lines(s, &event, &printer_user));
                        for line in lines {
                            printer.say(line);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        printer.say(format!("! {n} events were not shown; /log lists everything"))
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    });

    let mut session = Session {
        out: out.clone(),
        tavern: tavern.clone(),
        user,
        joined: None,
    };
    let mut lines = input.lines();
    tokio::pin!(shutdown);
    loop {
        // Biased, so a closed output stops the console before it reads (and acts on) another line.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = out.closed() => break,
            line = lines.next_line() => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        out.say(format!("error: cannot read the console input: {e}"));
                        break;
                    }
                };
                let jake = session.jake();
                match parse(&line, &jake) {
                    Ok(None) => {}
                    Ok(Some(command)) => {
                        if !session.handle(&*app, command).await {
                            break;
                        }
                    }
                    Err(e) => out.say(format!("error: {e}")),
                }
            }
        }
    }
    session.leave().await;
    Ok(())
}

#[cfg(test)]
mod tests;
