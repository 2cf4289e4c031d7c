//! `sluice spend --by model --since 7d`: the admin report's query, as a table.

use std::process::ExitCode;

use clap::Args;
use sluice_config::Config;
use sluice_store::keys::parse_span;
use sluice_store::spend::GroupBy;

#[derive(Args)]
pub struct SpendArgs {
    /// key, user, agent, run, model, provider, day, channel, channel_user or session.
    #[arg(long, default_value = "model")]
    by: String,
    /// How far back, e.g. 7d, 24h.
    #[arg(long, default_value = "7d")]
    since: String,
}

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config, args: SpendArgs) -> anyhow::Result<ExitCode> {
    let Some(by) = GroupBy::parse(&args.by) else {
        eprintln!(
            "--by: `{}` is not one of key, user, agent, run, model, provider, day, channel, channel_user, session",
            args.by
        );
        return Ok(ExitCode::from(2));
    };
    let Some(span) = parse_span(&args.since) else {
        eprintln!(
            "--since: `{}` is not a span like 7d, 24h or 30m",
            args.since
        );
        return Ok(ExitCode::from(2));
    };
    let store = super::open_store(cfg).await?;
    let now = super::now_ms();
    let rows = store.spend_report(by, now - span, now + 1).await?;
    println!(
        "{:<40} {:>8} {:>12} {:>12} {:>10} {:>16}",
        args.by.to_uppercase(),
        "CALLS",
        "PROMPT",
        "COMPLETION",
        "CACHED",
        "COST USD"
    );
    for r in &rows {
        println!(
            "{:<40} {:>8} {:>12} {:>12} {:>10} {:>16}",
            r.group,
            r.calls,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            sluice_gateway::routes::admin::usd(r.cost_nanos)
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
