//! `[channels]`: a full config parses with its defaults; unknown fields are refused even
//! in the flattened parts; every problem is named with its path.

use crate::{ChannelPolicy, Config};

fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_SIGNING_SECRET" => Some("8f742231b10e8888abcd99yyyzzz85a5".into()),
        "SLACK_BOT_TOKEN" => Some("xoxb-1".into()),
        "TG_TOKEN" => Some("123:abc".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse(text, &env).map_err(|e| e.problems)
}

const BASE: &str = r#"
[[keys]]
name = "slack"
key = "sk-slack-0123456789"
[providers.openai]
kind = "openai"
api_keys = ["k"]
[models.smart]
chain = ["openai:gpt-4o"]
[agents.helpdesk]
model = "smart"
"#;

#[test]
fn channels_parse_with_defaults_and_secrets_from_the_environment() {
    let cfg = parse(&format!(
        r#"{BASE}
        [channels.slack]
        signing_secret = "${{SLACK_SIGNING_SECRET}}"
        bot_token = "${{SLACK_BOT_TOKEN}}"
        agent = "helpdesk"
        run_as = "slack"
        policy = "allowlist"
        allow_users = ["U0123"]
        user_limits = {{ rpm = 5, budget_usd_day = 0.5 }}
        [channels.telegram.support]
        token = "${{TG_TOKEN}}"
        secret_token = "s3cret_token-1"
        username = "@SupportBot"
        agent = "helpdesk"
        run_as = "slack"
        api_base = "http://127.0.0.1:9/"
        [channels.whatsapp]
        app_secret = "a"
        verify_token = "v"
        access_token = "t"
        phone_number_id = "106540352242922"
        agent = "helpdesk"
        run_as = "slack"
        policy = "open"
        stream_unused = 1
        "#
    ));
    let problems = cfg.unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("stream_unused"),
        "an unknown field in a flattened table is refused: {problems:?}"
    );
    let cfg = parse(&format!(
        r#"{BASE}
        [channels.slack]
        signing_secret = "${{SLACK_SIGNING_SECRET}}"
        bot_token = "${{SLACK_BOT_TOKEN}}"
        agent = "helpdesk"
        run_as = "slack"
        policy = "allowlist"
        allow_users = ["U0123"]
        user_limits = {{ rpm = 5, budget_usd_day = 0.5 }}
        [channels.telegram.support]
        token = "${{TG_TOKEN}}"
        secret_token = "s3cret_token-1"
        username = "@SupportBot"
        agent = "helpdesk"
        run_as = "slack"
        api_base = "http://127.0.0.1:9/"
        "#
    ))
    .unwrap();
    let ch = &cfg.channels;
    let slack = ch.slack.as_ref().unwrap();
    assert_eq!(
        slack.signing_secret.expose(),
        "8f742231b10e8888abcd99yyyzzz85a5"
    );
    assert_eq!(format!("{:?}", slack.bot_token), "***");
    assert_eq!(slack.binding.policy, ChannelPolicy::Allowlist);
    assert_eq!(slack.binding.user_limits.rpm, Some(5));
    assert_eq!(slack.binding.user_limits.usd_day_nanos, Some(500_000_000));
    assert_eq!(slack.binding.api_base, "https://slack.com/api");
    assert!(slack.streaming.stream);
    let tg = &ch.telegram["support"];
    assert_eq!(tg.username.as_deref(), Some("SupportBot"));
    assert_eq!(
        tg.binding.policy,
        ChannelPolicy::Pairing,
        "pairing is the default"
    );
    assert_eq!(tg.binding.api_base, "http://127.0.0.1:9");
    assert_eq!(tg.group_edit_interval.as_millis(), 3_000);
    assert!(ch.whatsapp.is_none());
    assert_eq!(ch.accept_deadline.as_millis(), 2_500);
}

#[test]
fn every_channel_problem_is_named() {
    let problems = parse(&format!(
        r#"{BASE}
        [channels]
        webhook_retention_days = 2
        [channels.slack]
        signing_secret = "${{UNSET_SECRET:-}}"
        bot_token = "x"
        agent = "nobody"
        run_as = "ghost"
        policy = "allowlist"
        api_base = "http://slack.example.com/api"
        edit_interval_ms = 10
        [channels.telegram."bad/name"]
        token = "t"
        secret_token = "has space"
        agent = "helpdesk"
        run_as = "slack"
        webhook_url = "https://gw.example.com:9999/channels/telegram/x"
        [channels.whatsapp]
        app_secret = "a"
        verify_token = "v"
        access_token = "t"
        phone_number_id = "+1 650"
        agent = "helpdesk"
        run_as = "slack"
        policy = "sometimes"
        "#
    ))
    .unwrap_err();
    for expected in [
        "channels.webhook_retention_days",
        "channels.slack.signing_secret: required",
        "channels.slack.agent: no agent `nobody`",
        "channels.slack.run_as: no [[keys]] entry named `ghost`",
        "channels.slack.allow_users: an allowlist with nobody",
        "channels.slack.api_base: http:// only to this host",
        "channels.slack.edit_interval_ms",
        "channels.telegram.bad/name: a bot's name",
        "channels.telegram.bad/name.secret_token",
        "channels.telegram.bad/name.webhook_url",
        "channels.whatsapp.phone_number_id",
        "channels.whatsapp.policy: `sometimes`",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "missing `{expected}` in {problems:#?}"
        );
    }
}
