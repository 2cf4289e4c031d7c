//! `sluice node --config node.toml`: a tool node whose tools are commands
//! (`sluice-node`), until SIGINT or SIGTERM.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match sluice_node::Config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => return Ok(super::config_problems(path, &e)),
    };
    super::init_logging();
    // A node waits on its socket and its tools' processes: two threads are plenty.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(sluice_node::run(cfg, super::serve::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}
