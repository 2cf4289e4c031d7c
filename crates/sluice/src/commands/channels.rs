//! `sluice channels …`: what an operator does with the chat channels, on the shared store
//! (so from any host that reaches it) or on a platform's API:
//! - `pairing list|approve|revoke`: who asked to talk to a `pairing` channel; an approval
//!   lets the user in and queues a "you're approved" notice that the gateway sends;
//! - `deliveries list|retry`: replies that failed or whose send was uncertain;
//! - `telegram set-webhook|webhook-info|delete-webhook`: a bot's webhook, with its secret.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_config::{Config, TelegramBot};

#[derive(Subcommand)]
pub enum ChannelsCommand {
    /// Pairing requests and approved users of `pairing` channels.
    #[command(subcommand)]
    Pairing(PairingCommand),
    /// Replies waiting, sent, failed or uncertain.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// A Telegram bot's webhook.
    #[command(subcommand)]
    Telegram(TelegramCommand),
}

#[derive(Subcommand)]
pub enum PairingCommand {
    /// Pending requests (with their codes) and approved users.
    List {
        /// Only this platform: slack, telegram or whatsapp.
        #[arg(long)]
        channel: Option<String>,
        /// Also expired and revoked requests.
        #[arg(long)]
        all: bool,
    },
    /// Lets in the user who was given CODE (any case; spaces and dashes ignored).
    Approve {
        code: String,
        /// Who approved, for the record.
        #[arg(long, default_value = "cli")]
        by: String,
    },
    /// Takes a user's approval back (or cancels their request).
    Revoke {
        /// slack, telegram or whatsapp.
        channel: String,
        /// `slack`, the Telegram bot's name, `whatsapp`.
        bot: String,
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries.
    List {
        /// accepted, running, ready, sent, failed or uncertain.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Sends a failed reply again; an uncertain one only with --force (it may then
    /// arrive twice).
    Retry {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum TelegramCommand {
    /// Points the bot (or every configured bot) at its webhook URL, with its secret token
    /// and the update types Sluice reads.
    SetWebhook {
        bot: Option<String>,
        /// The URL (else the bot's `webhook_url`).
        #[arg(long)]
        url: Option<String>,
        /// Drops the updates Telegram holds for the bot.
        #[arg(long)]
        drop_pending_updates: bool,
    },
    /// What Telegram says of the webhook: URL, pending updates, last error.
    WebhookInfo { bot: Option<String> },
    /// Removes the webhook.
    DeleteWebhook { bot: Option<String> },
}

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config, cmd: ChannelsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ChannelsCommand::Pairing(c) => pairing(cfg, c).await,
        ChannelsCommand::Deliveries(c) => deliveries(cfg, c).await,
        ChannelsCommand::Telegram(c) => telegram(cfg, c).await,
    }
}

async fn pairing(cfg: &Config, cmd: PairingCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(cfg).await?;
    let now = super::now_ms();
    let code = match cmd {
        PairingCommand::List { channel, all } => {
            println!(
                "{:<10} {:<12} {:<16} {:<10} {:<10} {:<20} EXPIRES",
                "CHANNEL", "BOT", "USER", "STATE", "CODE", "NAME"
            );
            for p in store.list_pairings(channel.as_deref(), all, now).await? {
                let expires = p.code_expires_at_ms.map_or_else(
                    || "-".into(),
                    |t| format!("in {} min", (t - now).max(0) / 60_000),
                );
                println!(
                    "{:<10} {:<12} {:<16} {:<10} {:<10} {:<20} {expires}",
                    p.channel,
                    p.bot,
                    p.user_id,
                    p.state,
                    p.code.as_deref().unwrap_or("-"),
                    p.display_name.as_deref().unwrap_or("-"),
                );
            }
            ExitCode::SUCCESS
        }
        PairingCommand::Approve { code, by } => {
            match sluice_channels::approve_pairing(&store, &code, &by).await? {
                Some(p) => {
                    println!(
                        "approved {} on {}:{} (they are told)",
                        p.user_id, p.channel, p.bot
                    );
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "no pending request has the code {code} (expired, or already approved)"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        PairingCommand::Revoke {
            channel,
            bot,
            user_id,
        } => {
            if store.revoke_pairing(&channel, &bot, &user_id, now).await? {
                println!("revoked {user_id} on {channel}:{bot}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{user_id} is neither approved nor waiting on {channel}:{bot}");
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}

async fn deliveries(cfg: &Config, cmd: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(cfg).await?;
    let code = match cmd {
        DeliveriesCommand::List {
            state,
            channel,
            limit,
        } => {
            println!(
                "{:<36} {:<9} {:<10} {:<10} {:>8} {:<40} LAST ERROR",
                "ID", "CHANNEL", "KIND", "STATE", "ATTEMPTS", "CONVERSATION"
            );
            for d in store
                .list_deliveries(state.as_deref(), channel.as_deref(), limit)
                .await?
            {
                println!(
                    "{:<36} {:<9} {:<10} {:<10} {:>8} {:<40} {}",
                    d.id,
                    d.channel,
                    d.kind,
                    d.state,
                    d.attempts,
                    d.conversation,
                    d.last_error.as_deref().unwrap_or("-")
                );
            }
            ExitCode::SUCCESS
        }
        DeliveriesCommand::Retry { id, force } => {
            if store.retry_delivery(&id, force, super::now_ms()).await? {
                println!("delivery {id} will be sent again by the running gateway");
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "delivery {id} is not failed (or is uncertain: --force sends it again, and it may arrive twice)"
                );
                ExitCode::FAILURE
            }
        }
    };
    store.close().await;
    Ok(code)
}

fn bots<'a>(cfg: &'a Config, name: Option<&str>) -> anyhow::Result<Vec<&'a TelegramBot>> {
    match name {
        Some(n) => cfg
            .channels
            .telegram
            .get(n)
            .map(|b| vec![b])
            .ok_or_else(|| anyhow::anyhow!("no [channels.telegram.{n}] in this config")),
        None if cfg.channels.telegram.is_empty() => {
            anyhow::bail!("no [channels.telegram.*] in this config")
        }
        None => Ok(cfg.channels.telegram.values().collect()),
    }
}

async fn telegram(cfg: &Config, cmd: TelegramCommand) -> anyhow::Result<ExitCode> {
    use sluice_channels::admin;
    let mut ok = true;
    match cmd {
        TelegramCommand::SetWebhook {
            bot,
            url,
            drop_pending_updates,
        } => {
            for b in bots(cfg, bot.as_deref())? {
                let Some(url) = url.clone().or_else(|| b.webhook_url.clone()) else {
                    eprintln!("{}: no --url and no webhook_url in its config", b.name);
                    ok = false;
                    continue;
                };
                match admin::telegram_set_webhook(b, &url, drop_pending_updates).await {
                    Ok(_) => println!("{}: webhook set to {url}", b.name),
                    Err(e) => {
                        eprintln!("{}: setWebhook failed: {e}", b.name);
                        ok = false;
                        continue;
                    }
                }
                print_info(b).await;
            }
        }
        TelegramCommand::WebhookInfo { bot } => {
            for b in bots(cfg, bot.as_deref())? {
                print_info(b).await;
            }
        }
        TelegramCommand::DeleteWebhook { bot } => {
            for b in bots(cfg, bot.as_deref())? {
                match admin::telegram_delete_webhook(b).await {
                    Ok(_) => println!("{}: webhook deleted", b.name),
                    Err(e) => {
                        eprintln!("{}: deleteWebhook failed: {e}", b.name);
                        ok = false;
                    }
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn print_info(b: &TelegramBot) {
    match sluice_channels::admin::telegram_webhook_info(b).await {
        Ok(info) => println!(
            "{}: url={} pending_update_count={} last_error_message={}",
            b.name,
            info["url"].as_str().unwrap_or(""),
            info["pending_update_count"],
            info["last_error_message"].as_str().unwrap_or("-")
        ),
        Err(e) => eprintln!("{}: getWebhookInfo failed: {e}", b.name),
    }
}
