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
    #[arg(long, global = true, default_value = "config/sluice.toml")]
    config: PathBuf,
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
    /// Print spend totals from the ledger, grouped by key, user, model, provider or day.
    Spend(commands::spend::SpendArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{}: {} problem(s):", cli.config.display(), e.problems.len());
            for p in &e.problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::CheckConfig => {
            println!("{}: {}", cli.config.display(), cfg.summary());
            return ExitCode::SUCCESS;
        }
        Command::Serve => {
            commands::init_logging();
            commands::serve::run(cfg)
        }
        Command::Migrate => commands::migrate::run(&cfg),
        Command::Keys(cmd) => commands::keys::run(&cfg, cmd),
        Command::Spend(args) => commands::spend::run(&cfg, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
