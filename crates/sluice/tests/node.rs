//! The real `sluice node` against an in-process gateway: a tool implemented by a shell
//! script in a temp dir, invoked through the gateway's node hub; a failing and a slow
//! command; SIGTERM; and a bad config reported by field path.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BIN, run, sigterm, wait_exit};
use serde_json::json;
use sluice_e2e::{Gateway, KEY};

const KEY_REF: &str = "config:test";

const GATEWAY: &str = r#"
[providers.mock]
kind = "mock"
[models.m]
chain = ["mock:model-x"]
"#;

#[tokio::test]
async fn sluice_node_serves_a_script_through_the_gateway() {
    let gw = Gateway::start(GATEWAY).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("echo.sh"),
        "#!/bin/sh\n# The arguments come on stdin.\ncat\n",
    )
    .unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
url = "ws://{}/ws"
token = "${{SLUICE_TEST_NODE_TOKEN}}"
[node]
name = "cli-node"
[[tools]]
name = "echo"
description = "Says it back"
command = ["/bin/sh", "echo.sh"]
cwd = "."
[[tools]]
name = "broken"
command = ["/bin/sh", "-c", "echo 'no such file' >&2; exit 4"]
[[tools]]
name = "slow"
command = ["/bin/sh", "-c", "sleep 30"]
timeout_ms = 300
"#,
            gw.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["node", "--config", config.to_str().unwrap()])
        .env("SLUICE_TEST_NODE_TOKEN", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let lines = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = lines.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let nodes = &gw.state.hub.nodes;
    let listed = sluice_e2e::eventually(20, async || {
        nodes.list(KEY_REF).iter().any(|(n, _)| n == "cli-node")
    })
    .await;
    assert!(listed, "the node registered:\n{}", log.lock().unwrap());
    assert_eq!(nodes.list(KEY_REF)[0].1[0].description, "Says it back");

    let args = json!({"path": "src/main.rs", "lines": [1, 2]});
    let out = nodes
        .invoke(
            KEY_REF,
            "cli-node",
            "echo",
            args.clone(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        out, args,
        "the script got the arguments on stdin and its JSON output came back as JSON"
    );

    let failed = nodes
        .invoke(
            KEY_REF,
            "cli-node",
            "broken",
            json!({}),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(failed.code, "internal_error");
    assert!(
        failed.message.contains("exit status: 4") && failed.message.contains("no such file"),
        "{failed:?}"
    );

    let started = std::time::Instant::now();
    let slow = nodes
        .invoke(
            KEY_REF,
            "cli-node",
            "slow",
            json!({}),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(slow.code, "tool_timeout", "{slow:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the node's own timeout killed it: {:?}",
        started.elapsed()
    );

    sigterm(&child);
    let status = wait_exit(child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}\n{}", log.lock().unwrap());
    assert!(
        sluice_e2e::eventually(5, async || nodes.list(KEY_REF).is_empty()).await,
        "a stopped node is no longer listed"
    );
    let log = log.lock().unwrap().clone();
    assert!(!log.contains(KEY), "the token is never logged:\n{log}");
    gw.stop().await;
}

#[test]
fn sluice_node_lists_every_config_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[gateway]\nurl = \"http://x\"\ntoken = \"${SLUICE_TEST_UNSET_NODE_TOKEN}\"\n[node]\nname = \"n\"\n[[tools]]\nname = \"t\"\ncommand = []\n",
    )
    .unwrap();
    let (code, _, err) = run(&["node", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    for field in [
        "gateway.url",
        "gateway.token",
        "SLUICE_TEST_UNSET_NODE_TOKEN",
        "tools[0].command",
    ] {
        assert!(err.contains(field), "{field} missing:\n{err}");
    }
}
