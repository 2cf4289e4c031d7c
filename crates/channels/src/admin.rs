//! What the CLI does with a Telegram bot's webhook (`sluice channels telegram …`), through
//! the same client the gateway uses: `setWebhook` with the configured secret token and
//! the update types Sluice reads, `getWebhookInfo`, `deleteWebhook`.

use serde_json::{Value, json};
use sluice_config::TelegramBot;

use crate::api::{TelegramApi, client};

fn api(bot: &TelegramBot) -> TelegramApi {
    TelegramApi::new(client(), &bot.binding.api_base, bot.token.clone())
}

/// Points the bot at `url` with its secret token; Telegram's answer.
pub async fn telegram_set_webhook(
    bot: &TelegramBot,
    url: &str,
    drop_pending: bool,
) -> Result<Value, String> {
    let body = json!({
        "url": url,
        "secret_token": bot.secret_token.expose(),
        "allowed_updates": ["message"],
        "drop_pending_updates": drop_pending,
    });
    api(bot)
        .call("setWebhook", &body)
        .await
        .map_err(|e| e.to_string())
}

/// `getWebhookInfo`: the URL, pending updates and the last error Telegram saw.
pub async fn telegram_webhook_info(bot: &TelegramBot) -> Result<Value, String> {
    api(bot)
        .call("getWebhookInfo", &json!({}))
        .await
        .map_err(|e| e.to_string())
}

pub async fn telegram_delete_webhook(bot: &TelegramBot) -> Result<Value, String> {
    api(bot)
        .call("deleteWebhook", &json!({}))
        .await
        .map_err(|e| e.to_string())
}
