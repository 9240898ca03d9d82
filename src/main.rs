//! The `tavern` binary: parse the command line, load the configuration, run a surface until shutdown.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tavern::app::App;
use tavern::config::{Config, Overrides};

/// Tavern: a team's many AI coding agents, coordinated by Jake.
#[derive(Debug, Parser)]
#[command(name = "tavern", version, about)]
struct Cli {
    /// A configuration file (TOML) layered over config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The project directory (its state lives in DIR/.tavern/). Default: the current directory.
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// The default model, e.g. scripted:demo.toml. Default: none (commands still work).
    #[arg(long, global = true, value_name = "SPEC")]
    model: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chat with Jake and run commands in this terminal.
    Console,
    /// Serve the tavern on Discord: Jake in the configured channel, a thread per agent. The bot token
    /// comes from DISCORD_TOKEN; the rest from the [discord] table of the config.
    Serve,
}

fn init_tracing() {
    // Quiet by default: warnings and errors only, on stderr, so the console's stdout stays clean.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a person at a terminal: escape codes in a log file or a pipe are noise.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves when Ctrl-C arrives. If Ctrl-C cannot be listened for, that is said, and this never
/// resolves (the console still stops on /quit or end of input, `serve` on SIGTERM) rather than
/// stopping Tavern at once.
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(
            "cannot listen for Ctrl-C ({e}); stop Tavern with /quit or end of input in the console, or SIGTERM"
        );
        std::future::pending::<()>().await;
    }
}

/// Resolves when Ctrl-C or SIGTERM arrives.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops Tavern");
                ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c().await;
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = Overrides {
        project: cli.project,
        model: cli.model,
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Console => {
            let mut app = App::start(config).await?;
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let result = tavern::console::run(&mut app, stdin, shutdown_signal()).await;
            app.shutdown().await?;
            // Standard output may be closed already (the console stops when it is); nothing to tell then.
            let _ = writeln!(
                std::io::stdout(),
                "Closed the tavern. Everything acknowledged is in .tavern/."
            );
            result
        }
        Command::Serve => {
            // Checked before the tavern opens, so a missing token or setting costs nothing.
            let token = tavern::discord::token_from_env()?;
            tavern::discord::check(&config.discord)?;
            let mut app = App::start(config).await?;
            note("Serving the tavern on Discord; Ctrl-C or SIGTERM stops it.");
            let result = tavern::discord::serve(&mut app, token, shutdown_signal()).await;
            app.shutdown().await?;
            note("Closed the tavern. Everything acknowledged is in .tavern/.");
            Ok(result?)
        }
    }
}

/// Says something on stderr. A closed stderr is not worth a panic: there is nobody left to tell.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// An error and its causes in one line, each said once: many of Tavern's errors already include their
/// cause's text, which `{:#}` would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            note(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Everything Tavern started has stopped by now (the tavern was shut down inside `run`); only the
    // thread reading stdin may still be blocked in read(2), and waiting for it would hang the exit until
    // someone pressed Enter.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: {}", error_text(&e)));
            ExitCode::FAILURE
        }
    }
}
