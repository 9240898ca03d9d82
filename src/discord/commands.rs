//! Slash commands (poise), and the framework that routes every gateway event: messages and reactions go
//! to [`super::inbound`]. Commands answer within Discord's 3-second window: the read-only ones at once,
//! the ones that record an intent or read the log defer first.

use poise::serenity_prelude as serenity;
use tavern_plugin_api::AgentKind;

use super::inbound::{may_talk_to_jake, person};
use super::Surface;
use crate::domain::{Actor, Intent, Summon};
use crate::executor::Receipt;

/// The error type of commands; shown to the person in the command's reply.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
type Context<'a> = poise::Context<'a, Surface, Error>;

/// Whether the person running a command may use Tavern at all, and the command is not a redelivery.
async fn check_allowed(ctx: Context<'_>) -> Result<bool, Error> {
    if !ctx.data().first_delivery(ctx.id()) {
        tracing::debug!(
            "interaction {} was delivered again; it is already answered",
            ctx.id()
        );
        return Ok(false);
    }
    let user = ctx.author().id.get();
    let roles = ctx
        .author_member()
        .await
        .map(|m| super::inbound::role_ids(&m.roles))
        .unwrap_or_default();
    if may_talk_to_jake(&ctx.data().config, user, &roles) {
        return Ok(true);
    }
    ctx.send(
        poise::CreateReply::default()
            .content("Only the people this tavern is set up for can use its commands.")
            .ephemeral(true),
    )
    .await?;
    Ok(false)
}

/// Submits a command's intent with the interaction's id, and answers with what became of it. A
/// redelivered interaction whose intent is already recorded (say, after a restart) is not answered.
async fn submit(ctx: Context<'_>, intent: Intent) -> Result<(), Error> {
    // Recording waits for the log to reach the disk, which a busy machine can stretch past Discord's
    // three seconds; a deferral ("thinking…") first keeps the interaction alive whatever it takes.
    ctx.defer().await?;
    let actor = Actor::User(person(ctx.author().id.get()));
    let origin = format!("discord:interaction:{}", ctx.id());
    let reply = match ctx.data().tavern.submit_from(actor, intent, origin).await? {
        None => return Ok(()),
        Some(Receipt::Accepted { seq, .. }) => format!("ok #{seq}"),
        Some(Receipt::Rejected { seq, error }) => format!("error #{seq}: {error}"),
    };
    ctx.say(reply).await?;
    Ok(())
}

/// Summon an agent under Jake to do a piece of work.
#[poise::command(slash_command, check = "check_allowed")]
async fn summon(
    ctx: Context<'_>,
    #[description = "What the agent is to do"] assignment: String,
    #[description = "mortal (default), drone, monitor, reviewer, tester, architect"] kind: Option<
        String,
    >,
    #[description = "A name instead of the next from the theme"] name: Option<String>,
) -> Result<(), Error> {
    let (kind, expert) = match kind {
        Some(k) => AgentKind::parse_summonable(&k)?,
        None => (AgentKind::Mortal, None),
    };
    let parent = ctx
        .data()
        .tavern
        .read(|s| s.jake.clone())
        .unwrap_or_default();
    submit(
        ctx,
        Intent::Summon(Summon {
            parent,
            assignment: Some(assignment),
            kind,
            expert,
            name,
            model: None,
            workdir: None,
        }),
    )
    .await
}

/// The tree of agents with their states.
#[poise::command(slash_command, check = "check_allowed")]
async fn agents(ctx: Context<'_>) -> Result<(), Error> {
    let tree = ctx.data().tavern.read(crate::console::render::agent_tree);
    ctx.say(format!("```\n{}\n```", clip(&tree, 1900))).await?;
    Ok(())
}

/// The tavern at a glance.
#[poise::command(slash_command, check = "check_allowed")]
async fn status(ctx: Context<'_>) -> Result<(), Error> {
    let (agents, pending) = ctx.data().tavern.read(|s| {
        (
            s.agents_in_order().filter(|n| !n.state.is_dead()).count(),
            s.open_pending().count(),
        )
    });
    ctx.say(format!(
        "{agents} live agents, {pending} waiting for a person"
    ))
    .await?;
    Ok(())
}

/// Dismiss an agent that is Done (its thread is archived).
#[poise::command(slash_command, check = "check_allowed")]
async fn dismiss(ctx: Context<'_>, #[description = "The agent"] name: String) -> Result<(), Error> {
    submit(ctx, Intent::Dismiss { agent: name }).await
}

/// The last entries of the command log.
#[poise::command(slash_command, check = "check_allowed")]
async fn log(
    ctx: Context<'_>,
    #[description = "How many entries (default 15)"] count: Option<u32>,
) -> Result<(), Error> {
    // Reading the log's tail is file work of unbounded duration: defer first.
    ctx.defer().await?;
    let count = count.unwrap_or(15).clamp(1, 50) as usize;
    let entries = ctx.data().tavern.log().reader().tail(count)?;
    let lines: Vec<String> = entries
        .iter()
        .map(crate::console::render::log_line)
        .collect();
    let text = if lines.is_empty() {
        "(the log is empty)".to_string()
    } else {
        lines.join("\n")
    };
    ctx.say(format!("```\n{}\n```", clip(&text, 1900))).await?;
    Ok(())
}

/// Join an agent's session: it is told you are here, and your replies in its thread reach it.
#[poise::command(slash_command, check = "check_allowed")]
async fn call(ctx: Context<'_>, #[description = "The agent"] name: String) -> Result<(), Error> {
    presence(ctx, name, true).await
}

/// Leave an agent's session: it is told you left.
#[poise::command(slash_command, check = "check_allowed")]
async fn hangup(ctx: Context<'_>, #[description = "The agent"] name: String) -> Result<(), Error> {
    presence(ctx, name, false).await
}

async fn presence(ctx: Context<'_>, name: String, present: bool) -> Result<(), Error> {
    submit(
        ctx,
        Intent::SetModes {
            agent: name,
            patch: crate::domain::ModesPatch {
                user_present: Some(present),
                ..Default::default()
            },
        },
    )
    .await
}

/// Change an agent's modes: perseverance, backgrounded, task mode.
#[poise::command(slash_command, check = "check_allowed")]
async fn mode(
    ctx: Context<'_>,
    #[description = "The agent"] name: String,
    #[description = "Keep working until verified Done instead of stopping to wait"]
    perseverance: Option<bool>,
    #[description = "Run without a conversation of its own"] backgrounded: Option<bool>,
    #[description = "execute, delegate, plan, break_up or unify"] task: Option<String>,
) -> Result<(), Error> {
    let task_mode = task
        .as_deref()
        .map(tavern_plugin_api::TaskMode::parse)
        .transpose()?;
    if perseverance.is_none() && backgrounded.is_none() && task_mode.is_none() {
        ctx.say("Nothing to change: give perseverance, backgrounded or task.")
            .await?;
        return Ok(());
    }
    submit(
        ctx,
        Intent::SetModes {
            agent: name,
            patch: crate::domain::ModesPatch {
                perseverance,
                backgrounded,
                task_mode,
                user_present: None,
            },
        },
    )
    .await
}

fn clip(text: &str, max: usize) -> String {
    super::outbound::truncate(text.to_string(), max)
}

/// The poise framework: the commands, registered in the configured guild at the first READY, and the
/// routing of messages and reactions.
pub fn framework(surface: Surface) -> poise::Framework<Surface, Error> {
    let guild = serenity::GuildId::new(surface.config.guild_id);
    poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: vec![
                summon(),
                agents(),
                status(),
                dismiss(),
                log(),
                call(),
                hangup(),
                mode(),
            ],
            event_handler: |ctx, event| Box::pin(on_event(ctx, event)),
            on_error: |error| Box::pin(on_error(error)),
            ..Default::default()
        })
        // The owners (from the application's info) are not used: access is by the configured lists.
        .initialize_owners(false)
        .setup(move |ctx, _ready, framework| {
            Box::pin(async move {
                poise::builtins::register_in_guild(ctx, &framework.options().commands, guild)
                    .await?;
                Ok(surface)
            })
        })
        .build()
}

async fn on_event(
    ctx: poise::FrameworkContext<'_, Surface, Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    let bot = ctx.bot_id().get();
    match event {
        serenity::FullEvent::Message { new_message } => {
            super::inbound::message(ctx.user_data, bot, new_message).await;
        }
        serenity::FullEvent::ReactionAdd { add_reaction } => {
            super::inbound::reaction(ctx.user_data, bot, add_reaction).await;
        }
        // A new session (at start, or after Discord ended one without a resume): what people wrote
        // while there was none is read back, since Discord will not deliver it.
        serenity::FullEvent::Ready { .. } => {
            super::inbound::catch_up(ctx.user_data, &ctx.serenity_context.http, bot).await;
        }
        _ => {}
    }
    Ok(())
}

/// Failed checks have already been answered (or were a redelivery); everything else is poise's.
async fn on_error(error: poise::FrameworkError<'_, Surface, Error>) {
    match error {
        poise::FrameworkError::CommandCheckFailed {
            error: None, ctx, ..
        } => {
            tracing::info!(
                "/{} was not run: refused or delivered again",
                ctx.command().name
            );
        }
        other => {
            if let Err(e) = poise::builtins::on_error(other).await {
                tracing::error!("could not report a command's error: {e}");
            }
        }
    }
}
