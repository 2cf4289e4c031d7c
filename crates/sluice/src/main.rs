//! The `sluice` binary: a thin CLI over `sluice-config` and `sluice-gateway`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// glibc's malloc took a tenth of the proxy's CPU under load, much of it contending on arena
/// locks between the runtime's threads (measured with perf; see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sluice_config::Config;
use sluice_gateway::AppState;

/// Sluice: a self-hosted AI gateway. It speaks the OpenAI API to clients and routes each
/// request along a priority chain of providers, models and API keys, with retries,
/// failover and circuit breakers.
#[derive(Parser)]
#[command(name = "sluice", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM; then stop accepting connections and let
    /// in-flight requests and streams finish within `server.shutdown_grace_ms`.
    Serve {
        /// Config file (TOML). `${VAR}` and `${VAR:-default}` are read from the environment.
        #[arg(long, default_value = "config/sluice.toml")]
        config: PathBuf,
    },
    /// Load and validate a config without serving. Exit 0 with a one-line summary, or
    /// exit 2 with every problem listed by field path.
    CheckConfig {
        #[arg(long, default_value = "config/sluice.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!("{}: {}", config.display(), cfg.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {} problem(s):", config.display(), e.problems.len());
                for p in &e.problems {
                    eprintln!("  {p}");
                }
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            init_logging();
            let cfg = match Config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("{}: {} problem(s):", config.display(), e.problems.len());
                    for p in &e.problems {
                        eprintln!("  {p}");
                    }
                    return ExitCode::from(2);
                }
            };
            match serve(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn serve(cfg: Config) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(&cfg)?);
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    // Tests and scripts read the bound address from this line (port 0 picks a free port).
    tracing::info!("sluice listening on {}", listener.local_addr()?);
    sluice_gateway::run(listener, state, shutdown_signal()).await?;
    tracing::info!("sluice stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
