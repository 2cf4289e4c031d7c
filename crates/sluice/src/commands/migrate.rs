use std::process::ExitCode;

use sluice_config::Config;

#[tokio::main(flavor = "current_thread")]
pub async fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let store = super::open_store(cfg).await?;
    println!("migrations applied ({:?})", store.backend());
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
