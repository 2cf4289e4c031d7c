//! `sluice schedules list|resume AGENT`: the config's schedules with their state from the
//! store (the state every instance shares), and an operator's resume, which every instance
//! sees at its next fire.

use std::process::ExitCode;

use clap::Subcommand;
use sluice_config::Config;
use sluice_scheduler::schedule::{status, utc_text};

#[derive(Subcommand)]
pub enum SchedulesCommand {
    /// List the config's schedules: pattern (UTC), the key runs are made as, the next fire,
    /// and whether the schedule is paused and why.
    List,
    /// Resume an agent's paused schedule: its next fire starts a run again.
    Resume { agent: String },
}

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config, cmd: SchedulesCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(cfg).await?;
    let now = super::now_ms();
    let code = match cmd {
        SchedulesCommand::List => {
            let rows = store.schedules().await?;
            println!(
                "{:<24} {:<20} {:<16} {:<22} {:<32} REASON",
                "AGENT", "SCHEDULE (UTC)", "RUN AS", "NEXT FIRE", "STATE"
            );
            for agent in cfg.agents.values() {
                let row = rows.iter().find(|r| r.agent == agent.name);
                let Some(s) = status(agent, row, now) else {
                    continue;
                };
                let state = match (s.paused, s.paused_until_ms) {
                    (false, _) => "active".to_owned(),
                    (true, Some(until)) => format!("paused until {}", utc_text(until)),
                    (true, None) => "paused".to_owned(),
                };
                println!(
                    "{:<24} {:<20} {:<16} {:<22} {:<32} {}",
                    s.agent,
                    s.schedule,
                    s.run_as,
                    s.next_fire_ms.map_or_else(|| "-".to_owned(), utc_text),
                    state,
                    s.reason.as_deref().unwrap_or("-")
                );
            }
            ExitCode::SUCCESS
        }
        SchedulesCommand::Resume { agent } => {
            if cfg.agents.get(&agent).is_none_or(|a| a.schedule.is_none()) {
                eprintln!("agent `{agent}` has no schedule in this config");
                ExitCode::FAILURE
            } else if store.resume_schedule(&agent, now).await? {
                println!("resumed the schedule of {agent}");
                ExitCode::SUCCESS
            } else {
                println!("the schedule of {agent} was not paused");
                ExitCode::SUCCESS
            }
        }
    };
    store.close().await;
    Ok(code)
}
