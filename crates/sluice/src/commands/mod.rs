//! One command per file: parse its arguments, call the library, print.

pub mod agents;
pub mod channels;
pub mod keys;
pub mod migrate;
pub mod node;
pub mod schedules;
pub mod serve;
pub mod spend;

use std::path::Path;
use std::process::ExitCode;

use sluice_config::{Config, ConfigError};
use sluice_store::Store;

/// Lists every problem of a config file on stderr; exit code 2.
pub fn config_problems(path: &Path, e: &ConfigError) -> ExitCode {
    eprintln!("{}: {} problem(s):", path.display(), e.problems.len());
    for p in &e.problems {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Opens and migrates the configured store.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    Store::open(cfg.database.url.expose())
        .await
        .map_err(|e| anyhow::anyhow!("database ({}): {e}", redact(cfg.database.url.expose())))
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

pub use sluice_service::ids::now_ms;

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
