//! The `sluice` binary: a thin CLI over `sluice-config`, `sluice-store` and
//! `sluice-gateway`, one command per file under `commands/`.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_config::Config;

/// glibc's malloc took a tenth of the proxy's CPU under load, much of it contending on arena
/// locks between the runtime's threads (measured with perf; see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sluice: a self-hosted AI gateway. It speaks the OpenAI API to clients and routes each
/// request along a priority chain of providers, models and API keys, with retries,
/// failover and circuit breakers.
#[derive(Parser)]
#[command(name = "sluice", version)]
struct Cli {
    /// Config file (TOML). `${VAR}` and `${VAR:-default}` are read from the environment.
    /// [default: config/sluice.toml; for `node`, the node's config: node.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM; then stop accepting connections and let
    /// in-flight requests and streams finish within `server.shutdown_grace_ms`.
    Serve,
    /// Load and validate a config without serving. Exit 0 with a one-line summary, or
    /// exit 2 with every problem listed by field path.
    CheckConfig,
    /// Apply the database's pending migrations (`serve` does this too) and exit.
    Migrate,
    /// Manage gateway API keys in the store (the secret is printed once, at creation).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Print spend totals from the ledger, grouped by key, user, agent, run, model,
    /// provider or day.
    Spend(commands::spend::SpendArgs),
    /// The config's agents, and the breakers that stop them: list, reset.
    #[command(subcommand)]
    Agents(commands::agents::AgentsCommand),
    /// List the agents' schedules and their state, or resume a paused one.
    #[command(subcommand)]
    Schedules(commands::schedules::SchedulesCommand),
    /// Chat channels: approve pairing codes, list and retry replies, set a Telegram bot's
    /// webhook.
    #[command(subcommand)]
    Channels(commands::channels::ChannelsCommand),
    /// Run a tool node: connect to a gateway as a node and serve the tools its config
    /// declares, each a command (see config/node.example.toml), until SIGINT or SIGTERM.
    /// Exit 2 with every problem listed by field path when the config is invalid.
    Node,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Node = cli.command {
        // A node's config is a file of its own, not the gateway's.
        let path = cli.config.unwrap_or_else(|| PathBuf::from("node.toml"));
        return finish(commands::node::run(&path));
    }
    let path = cli
        .config
        .unwrap_or_else(|| PathBuf::from("config/sluice.toml"));
    let cfg = match Config::load(&path) {
        Ok(cfg) => cfg,
        Err(e) => return commands::config_problems(&path, &e),
    };
    let result = match cli.command {
        Command::CheckConfig => {
            println!("{}: {}", path.display(), cfg.summary());
            return ExitCode::SUCCESS;
        }
        Command::Serve => {
            commands::init_logging();
            commands::serve::run(cfg)
        }
        Command::Migrate => commands::migrate::run(&cfg),
        Command::Keys(cmd) => commands::keys::run(&cfg, cmd),
        Command::Spend(args) => commands::spend::run(&cfg, args),
        Command::Agents(cmd) => commands::agents::run(&cfg, cmd),
        Command::Schedules(cmd) => commands::schedules::run(&cfg, cmd),
        Command::Channels(cmd) => commands::channels::run(&cfg, cmd),
        Command::Node => unreachable!("handled before the gateway's config is loaded"),
    };
    finish(result)
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
