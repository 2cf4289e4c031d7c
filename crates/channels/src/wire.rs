//! The platforms' webhook payloads, as much of them as Sluice reads; every other field is
//! ignored (platforms add fields freely). Parsed only after the raw body is verified.
//!
//! - Slack Events API: <https://api.slack.com/apis/events-api> (the `url_verification`
//!   challenge and the `event_callback` envelope; `app_mention` and `message` events).
//! - Telegram Bot API: <https://core.telegram.org/bots/api#update>.
//! - WhatsApp Cloud API webhooks: the `whatsapp_business_account` object with
//!   `entry[].changes[].value.messages[]`.

use serde::Deserialize;

/// What Slack posts to the Events API URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SlackEnvelope {
    /// Sent once when the URL is set: answer with the challenge.
    UrlVerification { challenge: String },
    EventCallback {
        team_id: String,
        /// Unique per event across retries: the dedupe key.
        event_id: String,
        event: Box<SlackEvent>,
    },
    #[serde(other)]
    Other,
}

/// One event inside an `event_callback`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SlackEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub subtype: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Set on messages posted by a bot (this app's own replies included).
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    pub channel: Option<String>,
    /// `im` for a direct message.
    #[serde(default)]
    pub channel_type: Option<String>,
    pub ts: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
}

impl SlackEvent {
    /// Written by a bot (any, this one included) or a system change, not a person:
    /// never answered, so two bots cannot talk each other into a loop.
    pub fn from_bot(&self) -> bool {
        self.bot_id.is_some() || self.subtype.is_some() || self.user.is_none()
    }

    /// An event Sluice answers: a mention of the app, or a direct message to it.
    pub fn is_for_the_agent(&self) -> bool {
        !self.from_bot()
            && (self.kind == "app_mention"
                || (self.kind == "message" && self.channel_type.as_deref() == Some("im")))
    }

    /// The thread to reply in: the message's thread, or a new thread under it.
    pub fn reply_thread(&self) -> Option<&str> {
        self.thread_ts.as_deref().or(self.ts.as_deref())
    }
}

/// A Telegram update (only messages are read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramUpdate {
    /// Increasing per bot; resent updates keep theirs: the dedupe key.
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<TelegramMessage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramMessage {
    pub message_id: i64,
    #[serde(default)]
    pub from: Option<TelegramUser>,
    pub chat: TelegramChat,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub entities: Vec<TelegramEntity>,
    /// A forum topic's id (supergroups with topics).
    #[serde(default)]
    pub message_thread_id: Option<i64>,
    /// The message this one answers; a reply to the bot is for the bot.
    #[serde(default)]
    pub reply_to_message: Option<Box<TelegramReplied>>,
}

/// The message a Telegram message replies to (only who wrote it is read).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramReplied {
    pub message_id: i64,
    #[serde(default)]
    pub from: Option<TelegramUser>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramUser {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramChat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TelegramEntity {
    /// `mention`, `bot_command`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// In UTF-16 code units, as Telegram counts.
    pub offset: usize,
    pub length: usize,
}

impl TelegramMessage {
    /// The text an entity covers (offsets are UTF-16 code units).
    pub fn entity_text(&self, e: &TelegramEntity) -> Option<String> {
        let units: Vec<u16> = self.text.as_deref()?.encode_utf16().collect();
        let end = e.offset.checked_add(e.length)?;
        String::from_utf16(units.get(e.offset..end)?).ok()
    }

    /// A text message Sluice answers: any in a private chat; in a group, one that
    /// mentions `@bot_username` or sends a command (`/ask` or `/ask@bot_username`).
    pub fn is_for_the_agent(&self, bot_username: &str) -> bool {
        if self.text.is_none() || self.from.as_ref().is_none_or(|u| u.is_bot) {
            return false;
        }
        if self.chat.kind == "private" {
            return true;
        }
        let me = format!("@{bot_username}");
        self.entities.iter().any(|e| {
            let Some(t) = self.entity_text(e) else {
                return false;
            };
            match e.kind.as_str() {
                "mention" => t.eq_ignore_ascii_case(&me),
                "bot_command" => t
                    .split_once('@')
                    .is_none_or(|(_, to)| to.eq_ignore_ascii_case(bot_username)),
                _ => false,
            }
        })
    }
}

/// What the WhatsApp Cloud API posts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppPayload {
    /// `whatsapp_business_account`.
    pub object: String,
    #[serde(default)]
    pub entry: Vec<WhatsAppEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppEntry {
    #[serde(default)]
    pub changes: Vec<WhatsAppChange>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppChange {
    pub field: String,
    pub value: WhatsAppValue,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppValue {
    pub metadata: Option<WhatsAppMetadata>,
    /// Incoming messages.
    #[serde(default)]
    pub messages: Vec<WhatsAppMessage>,
    /// What became of messages the business sent (`sent`, `delivered`, `read`,
    /// `failed`), with the `biz_opaque_callback_data` they were sent with.
    #[serde(default)]
    pub statuses: Vec<WhatsAppStatus>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppStatus {
    /// The `wamid` of the message sent.
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default)]
    pub biz_opaque_callback_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppMetadata {
    /// The business number the message came to: replies are sent from it.
    pub phone_number_id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppMessage {
    /// The dedupe key.
    pub id: String,
    /// The sender's WhatsApp id (their number).
    pub from: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<WhatsAppText>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WhatsAppText {
    pub body: String,
}

impl WhatsAppPayload {
    /// Every status in the payload, with the business number it concerns.
    pub fn statuses(&self) -> impl Iterator<Item = (&str, &WhatsAppStatus)> {
        self.entry
            .iter()
            .flat_map(|e| &e.changes)
            .filter(|c| c.field == "messages")
            .filter_map(|c| Some((c.value.metadata.as_ref()?, &c.value.statuses)))
            .flat_map(|(m, st)| st.iter().map(move |s| (m.phone_number_id.as_str(), s)))
    }

    /// Each text message with the business number it came to.
    pub fn text_messages(&self) -> impl Iterator<Item = (&str, &WhatsAppMessage)> {
        self.entry
            .iter()
            .flat_map(|e| &e.changes)
            .filter(|c| c.field == "messages")
            .filter_map(|c| Some((c.value.metadata.as_ref()?, &c.value.messages)))
            .flat_map(|(m, msgs)| {
                msgs.iter()
                    .map(move |msg| (m.phone_number_id.as_str(), msg))
            })
            .filter(|(_, m)| m.kind == "text" && m.text.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_envelopes_as_slack_documents_them() {
        let challenge: SlackEnvelope = serde_json::from_str(
            r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            challenge,
            SlackEnvelope::UrlVerification {
                challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into()
            }
        );
        let mention: SlackEnvelope = serde_json::from_str(
            r#"{"token":"ZZZ","team_id":"T061EG9R6","api_app_id":"A0PNCHHK2","event":{"type":"app_mention","user":"U061F7AUR","text":"<@U0LAN0Z89> is it everything?","ts":"1515449522.000016","channel":"C0LAN2Q65","event_ts":"1515449522000016"},"type":"event_callback","event_id":"Ev0LAN670R","event_time":1515449522,"authed_users":["U0LAN0Z89"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let SlackEnvelope::EventCallback {
            event_id, event, ..
        } = mention
        else {
            panic!("an event callback");
        };
        assert_eq!(event_id, "Ev0LAN670R");
        assert!(event.is_for_the_agent());
        assert_eq!(event.reply_thread(), Some("1515449522.000016"));
        let event = *event;
        let own_reply = SlackEvent {
            bot_id: Some("B01".into()),
            ..event.clone()
        };
        assert!(
            !own_reply.is_for_the_agent(),
            "a bot's message is never answered"
        );
        let dm = SlackEvent {
            kind: "message".into(),
            channel_type: Some("im".into()),
            thread_ts: Some("1515449000.000001".into()),
            ..event.clone()
        };
        assert!(dm.is_for_the_agent());
        assert_eq!(dm.reply_thread(), Some("1515449000.000001"));
        let channel_chatter = SlackEvent {
            kind: "message".into(),
            channel_type: Some("channel".into()),
            ..event
        };
        assert!(!channel_chatter.is_for_the_agent());
        let other: SlackEnvelope =
            serde_json::from_str(r#"{"type":"app_rate_limited","minute_rate_limited":1518467820}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other, SlackEnvelope::Other);
    }

    #[test]
    fn telegram_answers_private_chats_and_mentions_or_commands_in_groups() {
        let update: TelegramUpdate = serde_json::from_str(
            r#"{"update_id":10000,"message":{"message_id":1365,"from":{"id":1111111,"is_bot":false,"first_name":"Test"},"chat":{"id":1111111,"type":"private"},"date":1441645532,"text":"hello"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = update.message.unwrap_or_else(|| panic!("a message"));
        assert!(m.is_for_the_agent("sluice_bot"));
        let group = |text: &str, entities: &str| -> TelegramMessage {
            serde_json::from_str(&format!(
                r#"{{"message_id":1,"from":{{"id":5,"is_bot":false}},"chat":{{"id":-100,"type":"supergroup"}},"text":"{text}","entities":{entities}}}"#
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(!group("just chatting", "[]").is_for_the_agent("sluice_bot"));
        assert!(
            group(
                "😀 @sluice_bot what now?",
                r#"[{"type":"mention","offset":3,"length":11}]"#
            )
            .is_for_the_agent("sluice_bot"),
            "offsets are UTF-16: the emoji counts two"
        );
        assert!(
            !group(
                "@other_bot hi",
                r#"[{"type":"mention","offset":0,"length":10}]"#
            )
            .is_for_the_agent("sluice_bot")
        );
        assert!(
            group(
                "/ask now",
                r#"[{"type":"bot_command","offset":0,"length":4}]"#
            )
            .is_for_the_agent("sluice_bot")
        );
        assert!(
            !group(
                "/ask@other_bot now",
                r#"[{"type":"bot_command","offset":0,"length":14}]"#
            )
            .is_for_the_agent("sluice_bot")
        );
        assert!(
            !group(
                "@sluice_bot",
                r#"[{"type":"mention","offset":40,"length":11}]"#
            )
            .is_for_the_agent("sluice_bot"),
            "an entity past the text is ignored, not a panic"
        );
    }

    #[test]
    fn whatsapp_text_messages_and_their_business_number() {
        let p: WhatsAppPayload = serde_json::from_str(
            r#"{"object":"whatsapp_business_account","entry":[{"id":"WHATSAPP_BUSINESS_ACCOUNT_ID","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"16505551111","phone_number_id":"123456123"},"contacts":[{"profile":{"name":"test user name"},"wa_id":"16315551181"}],"messages":[{"from":"16315551181","id":"ABGGFlA5Fpa","timestamp":"1504902988","type":"text","text":{"body":"this is a text message"}},{"from":"16315551181","id":"ABGGFlA5Fpb","timestamp":"1504902989","type":"image","image":{"id":"img"}}]},"field":"messages"},{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"16505551111","phone_number_id":"123456123"},"statuses":[{"id":"wamid.x","status":"delivered"}]},"field":"messages"}]}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<_> = p.text_messages().collect();
        assert_eq!(texts.len(), 1, "the image and the status are not answered");
        assert_eq!(texts[0].0, "123456123");
        assert_eq!(texts[0].1.id, "ABGGFlA5Fpa");
        assert_eq!(
            texts[0].1.text.as_ref().map(|t| t.body.as_str()),
            Some("this is a text message")
        );
    }
}
