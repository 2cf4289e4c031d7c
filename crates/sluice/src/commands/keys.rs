//! `sluice keys create|list|show|revoke`: the same store operations as the admin API.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_config::Config;
use sluice_store::keys::{ApiKey, KeyLimits, KeySpec, parse_span};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown once; only a hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// The owner's user id (budgets and reports group by it).
        #[arg(long)]
        user: Option<String>,
        /// Comma-separated models the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long)]
        expires: Option<String>,
        /// Requests per minute this key may make (across all instances).
        #[arg(long)]
        rpm: Option<i64>,
        /// Tokens per minute this key may use (across all instances).
        #[arg(long)]
        tpm: Option<i64>,
        /// USD the key may spend per UTC day.
        #[arg(long)]
        budget_usd_day: Option<f64>,
        /// USD the key may spend per UTC month.
        #[arg(long)]
        budget_usd_month: Option<f64>,
        /// USD the key may spend in its lifetime.
        #[arg(long)]
        budget_usd_total: Option<f64>,
        /// Tokens the key may use per UTC day.
        #[arg(long)]
        budget_tokens_day: Option<i64>,
        /// Tokens the key may use per UTC month.
        #[arg(long)]
        budget_tokens_month: Option<i64>,
    },
    /// List the keys stopped by the spend-velocity breaker.
    Breakers,
    /// Close a key's spend breaker (a stored key's id, or config:NAME); every instance
    /// lets it through again within its key refresh interval.
    ResetBreaker { id: String },
    /// List keys (never their secrets).
    List,
    /// Show one key as JSON.
    Show { id: String },
    /// Revoke a key; every instance refuses it within its key refresh interval.
    Revoke { id: String },
}

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(cfg).await?;
    let now = super::now_ms();
    let code = match cmd {
        KeysCommand::Create {
            name,
            user,
            models,
            expires,
            rpm,
            tpm,
            budget_usd_day,
            budget_usd_month,
            budget_usd_total,
            budget_tokens_day,
            budget_tokens_month,
        } => {
            let nanos = |v: Option<f64>| v.map(|usd| (usd * 1e9).round() as i64);
            let expires_at_ms = match expires {
                None => None,
                Some(s) => match parse_span(&s) {
                    Some(ms) => Some(now + ms),
                    None => {
                        eprintln!("--expires: `{s}` is not a span like 30d, 12h or 90m");
                        return Ok(ExitCode::from(2));
                    }
                },
            };
            let spec = KeySpec {
                name,
                user_id: user,
                allowed_models: models,
                expires_at_ms,
                limits: KeyLimits {
                    rpm,
                    tpm,
                    budget_usd_day_nanos: nanos(budget_usd_day),
                    budget_usd_month_nanos: nanos(budget_usd_month),
                    budget_usd_total_nanos: nanos(budget_usd_total),
                    budget_tokens_day,
                    budget_tokens_month,
                },
            };
            let problems = spec.problems(now);
            if !problems.is_empty() {
                for p in problems {
                    eprintln!("{p}");
                }
                return Ok(ExitCode::from(2));
            }
            let (secret, key) = spec.issue(now);
            store.insert_key(&key).await?;
            println!("created key {} ({})", key.id, key.name);
            println!("secret (shown once, store it now): {secret}");
            ExitCode::SUCCESS
        }
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            println!(
                "{:<34} {:<20} {:<16} {:<10} USER",
                "ID", "NAME", "PREFIX", "STATE"
            );
            for k in &keys {
                println!(
                    "{:<34} {:<20} {:<16} {:<10} {}",
                    k.id,
                    k.name,
                    k.key_prefix,
                    state(k, now),
                    k.user_id.as_deref().unwrap_or("-")
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Show { id } => match store.get_key(&id).await? {
            Some(k) => {
                println!("{}", serde_json::to_string_pretty(&k)?);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("no key `{id}`");
                ExitCode::from(1)
            }
        },
        KeysCommand::Breakers => {
            for t in store.open_trips(now).await? {
                println!(
                    "{}\ttripped_at_ms={}\t{}",
                    t.key_id, t.tripped_at_ms, t.reason
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::ResetBreaker { id } => {
            if store.reset_trip(&id).await? {
                println!("{id}: spend breaker reset");
                ExitCode::SUCCESS
            } else {
                eprintln!("{id}: its spend breaker is not open");
                ExitCode::from(1)
            }
        }
        KeysCommand::Revoke { id } => {
            if store.get_key(&id).await?.is_none() {
                eprintln!("no key `{id}`");
                ExitCode::from(1)
            } else {
                let changed = store.revoke_key(&id, now).await?;
                println!(
                    "{id} {}",
                    if changed {
                        "revoked"
                    } else {
                        "was already revoked"
                    }
                );
                ExitCode::SUCCESS
            }
        }
    };
    store.close().await;
    Ok(code)
}

fn state(k: &ApiKey, now: i64) -> &'static str {
    if k.revoked_at_ms.is_some() {
        "revoked"
    } else if !k.is_active(now) {
        "expired"
    } else {
        "active"
    }
}
