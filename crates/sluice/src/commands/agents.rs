//! `sluice agents list|breakers|reset-breaker NAME`: the config's agents, and the
//! breakers that stop them (and keys), from the store every instance shares. A provider's
//! breaker lives in the memory of each serving process: `GET /admin/breakers` shows it.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_config::Config;

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// The agents of the config: model, tools and the main bounds.
    List,
    /// Agent breakers and key spend breakers that are open, as the store has them.
    Breakers,
    /// Close an agent's breaker: every instance lets its runs through again within 2 s.
    ResetBreaker {
        /// The agent's name.
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config, cmd: AgentsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentsCommand::List => {
            println!(
                "{:<24} {:<16} {:>6} {:>10} {:>10}  TOOLS",
                "AGENT", "MODEL", "STEPS", "COST USD", "DEADLINE"
            );
            for a in cfg.agents.values() {
                let tools: Vec<String> = a.tools.iter().map(ToString::to_string).collect();
                println!(
                    "{:<24} {:<16} {:>6} {:>10} {:>9}s  {}",
                    a.name,
                    a.model,
                    a.bounds.max_steps,
                    sluice_protocol::runs::usd(a.bounds.max_cost_nanos),
                    a.bounds.deadline.as_secs(),
                    tools.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentsCommand::Breakers => {
            let store = super::open_store(cfg).await?;
            let agents = store.agent_breakers().await?;
            let keys = store.open_trips(super::now_ms()).await?;
            store.close().await;
            println!(
                "{:<8} {:<32} {:<10} {:>14}  REASON",
                "KIND", "NAME", "STATE", "UNTIL MS"
            );
            for b in &agents {
                println!(
                    "{:<8} {:<32} {:<10} {:>14}  {}",
                    "agent", b.agent, b.state, b.until_ms, b.reason
                );
            }
            for t in &keys {
                let until = t
                    .until_ms
                    .map_or_else(|| "reset".to_owned(), |u| u.to_string());
                println!(
                    "{:<8} {:<32} {:<10} {:>14}  {}",
                    "key", t.key_id, "open", until, t.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentsCommand::ResetBreaker { name } => {
            let store = super::open_store(cfg).await?;
            let closed = store.close_agent_breaker(&name).await?;
            store.close().await;
            if closed {
                println!("agent `{name}`: breaker closed");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("agent `{name}`: its breaker is not open");
                Ok(ExitCode::from(1))
            }
        }
    }
}
