//! The official `openai` Python SDK as a client of the real gateway: a plain call, a
//! streamed call, tool calls (served by an Anthropic-format provider), typed errors and a
//! broken stream. The interpreter is `$SLUICE_TEST_PYTHON`, else `.venv/bin/python` at
//! the repository root (scripts/test creates it with `pip install openai`).

use serde_json::json;
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, provider};

#[tokio::test]
async fn openai_python_sdk_plain_stream_and_tools() {
    let oa = MockProvider::start(Wire::OpenAi).await;
    let an = MockProvider::start(Wire::Anthropic).await;
    oa.script(
        "gpt-test",
        vec![Step::Text("Hello from the SDK test".into())],
    );
    oa.script("gpt-cut", vec![Step::CutAfter(2)]);
    an.script(
        "claude-test",
        vec![
            Step::ToolCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            },
            Step::Text("It is 18 degrees.".into()),
            Step::ToolCall {
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            },
        ],
    );
    let config = format!(
        "{}{}[models.plain]\nchain = [\"oa:gpt-test\"]\n[models.tools]\nchain = [\"an:claude-test\"]\n[models.broken]\nchain = [\"oa:gpt-cut\"]\n",
        provider("oa", &oa, &["sk-oa"], ""),
        provider("an", &an, &["sk-an"], "")
    );
    let gw = Gateway::start(&config).await;
    let stdout = sluice_e2e::run_python(
        "sdk_e2e.py",
        &[
            ("SLUICE_BASE_URL", gw.url("/v1")),
            ("SLUICE_KEY", KEY.to_owned()),
        ],
    )
    .await;
    assert!(
        stdout.trim_end().ends_with("cut stream, models"),
        "{stdout}"
    );
    // The tool result reached Anthropic as a tool_result block.
    let follow = &an.requests()[1].body;
    assert_eq!(
        follow["messages"][2]["content"][0]["type"], "tool_result",
        "{follow}"
    );
}
