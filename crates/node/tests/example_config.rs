//! The shipped node config loads and validates.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use std::path::Path;

use sluice_node::Config;

#[test]
fn the_example_node_config_loads_with_its_token_set() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/node.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let env = |name: &str| (name == "SLUICE_NODE_TOKEN").then(|| "sk-node-token".to_owned());
    let cfg =
        Config::parse_in(&text, &env, path.parent().unwrap()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.url, "ws://127.0.0.1:8080/ws", "the default URL");
    assert_eq!(cfg.name, "build-box");
    let names: Vec<&str> = cfg.tools.iter().map(|t| t.spec.name.as_str()).collect();
    assert_eq!(names, ["echo", "disk_usage", "recent_commits"]);

    let unset = Config::parse_in(&text, &|_| None, path.parent().unwrap()).unwrap_err();
    assert_eq!(
        unset.problems,
        [
            "gateway.token: environment variable SLUICE_NODE_TOKEN is not set (use ${SLUICE_NODE_TOKEN:-default} to make it optional)"
        ],
        "the token is the one variable without a default"
    );
}
