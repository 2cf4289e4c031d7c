//! Errors of starting the channels (a webhook's own problems are [`crate::WebhookReply`]s).

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channels config: {0}")]
    Config(String),
    #[error("channels store: {0}")]
    Store(String),
}
