//! One shared suite run against every wire format: the real gateway and router in front of
//! a mock provider speaking OpenAI, Anthropic or Gemini, JSON and SSE, text and tools.

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Step, Wire, ask, provider};

const WIRES: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Gemini];

async fn setup(wire: Wire) -> (MockProvider, Gateway) {
    let mock = MockProvider::start(wire).await;
    let config = format!(
        "{}\n[models.m]\nchain = [\"up:model-a\"]\n",
        provider("up", &mock, &["sk-upstream"], "")
    );
    let gw = Gateway::start(&config).await;
    (mock, gw)
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }}])
}

#[tokio::test]
async fn text_answer_as_json() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        mock.script("model-a", vec![Step::Text("Bonjour tout le monde".into())]);
        let r = gw.chat(ask("m", "Say hello")).await;
        assert_eq!(r.status, 200, "{wire:?}: {}", r.json);
        assert_eq!(r.text(), "Bonjour tout le monde", "{wire:?}");
        assert_eq!(r.json["choices"][0]["finish_reason"], "stop", "{wire:?}");
        assert_eq!(r.json["object"], "chat.completion", "{wire:?}");
        assert!(
            r.json["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{wire:?}: {}",
            r.json
        );
        assert_eq!(r.header("x-sluice-provider"), "up");
        assert_eq!(r.header("x-sluice-model"), "model-a");
        assert_eq!(mock.calls_for("model-a"), 1, "{wire:?}");
        let sent = &mock.requests()[0];
        assert_eq!(
            sent.api_key, "sk-upstream",
            "{wire:?}: the provider key goes upstream"
        );
    }
}

#[tokio::test]
async fn text_answer_as_stream() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        mock.script("model-a", vec![Step::Text("one two three four".into())]);
        let s = gw.chat_stream(ask("m", "count")).await;
        assert_eq!(s.status, 200, "{wire:?}");
        assert_eq!(s.header("content-type"), "text/event-stream", "{wire:?}");
        assert_eq!(s.text(), "one two three four", "{wire:?}");
        assert_eq!(s.finish_reason(), Some("stop"), "{wire:?}");
        assert!(s.done, "{wire:?}: a complete stream ends with [DONE]");
        assert!(s.error().is_none(), "{wire:?}");
        assert!(
            s.usage().is_none(),
            "{wire:?}: usage only when the client asks for it"
        );
        assert!(
            s.events
                .iter()
                .all(|e| e["object"] == "chat.completion.chunk"),
            "{wire:?}"
        );

        let mut body = ask("m", "count cached");
        body["stream_options"] = json!({"include_usage": true});
        let s = gw.chat_stream(body).await;
        let usage = s
            .usage()
            .unwrap_or_else(|| panic!("{wire:?}: usage chunk expected"));
        assert!(
            usage["prompt_tokens"].as_u64().unwrap() > 0,
            "{wire:?}: {usage}"
        );
        assert!(
            usage["completion_tokens"].as_u64().unwrap() > 0,
            "{wire:?}: {usage}"
        );
        assert!(
            usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{wire:?}: cached tokens pass through: {usage}"
        );
        let last = s.events.last().unwrap();
        assert_eq!(
            last["choices"],
            json!([]),
            "{wire:?}: usage comes in a last chunk of its own"
        );
    }
}

#[tokio::test]
async fn cached_tokens_in_json_usage() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        let r = gw.chat(ask("m", "this prompt is cached")).await;
        assert_eq!(r.status, 200, "{wire:?}");
        let u = &r.json["usage"];
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0);
        assert!(cached > 0, "{wire:?}: {u}");
        assert!(
            u["prompt_tokens"].as_u64().unwrap() >= cached,
            "{wire:?}: prompt includes cached: {u}"
        );
        drop(mock);
    }
}

#[tokio::test]
async fn tool_call_as_json_and_stream() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        let args = json!({"city": "Paris", "unit": "celsius"});
        mock.script(
            "model-a",
            vec![Step::ToolCall {
                name: "get_weather".into(),
                arguments: args.clone(),
            }],
        );
        let mut body = ask("m", "Weather in Paris?");
        body["tools"] = weather_tool();

        let r = gw.chat(body.clone()).await;
        assert_eq!(r.status, 200, "{wire:?}: {}", r.json);
        let call = &r.json["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function", "{wire:?}");
        assert_eq!(call["function"]["name"], "get_weather", "{wire:?}");
        let got: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(got, args, "{wire:?}: arguments survive the translation");
        assert!(
            !call["id"].as_str().unwrap().is_empty(),
            "{wire:?}: a tool call has an id"
        );
        assert_eq!(
            r.json["choices"][0]["finish_reason"], "tool_calls",
            "{wire:?}"
        );

        let s = gw.chat_stream(body).await;
        let calls = s.tool_calls();
        assert_eq!(calls.len(), 1, "{wire:?}: {:?}", s.events);
        assert_eq!(calls[0].1, "get_weather", "{wire:?}");
        let got: Value = serde_json::from_str(&calls[0].2).unwrap();
        assert_eq!(
            got, args,
            "{wire:?}: streamed argument pieces rebuild the arguments"
        );
        assert_eq!(s.finish_reason(), Some("tool_calls"), "{wire:?}");
        assert!(s.done, "{wire:?}");

        // The tools reached the provider in its own format.
        let sent = &mock.requests()[0].body;
        let declared = match wire {
            Wire::OpenAi => sent["tools"][0]["function"]["name"].clone(),
            Wire::Anthropic => sent["tools"][0]["name"].clone(),
            Wire::Gemini => sent["tools"][0]["functionDeclarations"][0]["name"].clone(),
        };
        assert_eq!(declared, "get_weather", "{wire:?}: {sent}");
    }
}

#[tokio::test]
async fn tool_result_round_trip_reaches_the_provider_in_its_format() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        mock.script(
            "model-a",
            vec![Step::Text("It is 18 degrees in Paris.".into())],
        );
        let body = json!({
            "model": "m",
            "tools": weather_tool(),
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_abc", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_abc", "content": "{\"temp_c\":18}"}
            ]
        });
        let r = gw.chat(body).await;
        assert_eq!(r.status, 200, "{wire:?}: {}", r.json);
        assert_eq!(r.text(), "It is 18 degrees in Paris.", "{wire:?}");
        let sent = &mock.requests()[0].body;
        match wire {
            Wire::OpenAi => {
                assert_eq!(sent["messages"][2]["tool_calls"][0]["id"], "call_abc");
                assert_eq!(sent["messages"][3]["role"], "tool");
                assert_eq!(
                    sent["model"], "model-a",
                    "the upstream model replaces the alias"
                );
            }
            Wire::Anthropic => {
                assert_eq!(sent["system"], "You are terse.");
                assert_eq!(
                    sent["messages"][1]["content"][0]["type"], "tool_use",
                    "{sent}"
                );
                assert_eq!(
                    sent["messages"][1]["content"][0]["input"],
                    json!({"city": "Paris"})
                );
                let result = &sent["messages"][2]["content"][0];
                assert_eq!(result["type"], "tool_result", "{sent}");
                assert_eq!(result["tool_use_id"], "call_abc");
            }
            Wire::Gemini => {
                assert_eq!(
                    sent["systemInstruction"]["parts"][0]["text"],
                    "You are terse."
                );
                let call = &sent["contents"][1]["parts"][0]["functionCall"];
                assert_eq!(call["name"], "get_weather", "{sent}");
                assert_eq!(call["args"], json!({"city": "Paris"}));
                let resp = &sent["contents"][2]["parts"][0]["functionResponse"];
                assert_eq!(resp["name"], "get_weather", "{sent}");
                assert_eq!(resp["response"]["temp_c"], 18, "{sent}");
            }
        }
    }
}

#[tokio::test]
async fn provider_specific_auth_reaches_the_mock() {
    for wire in WIRES {
        let (mock, gw) = setup(wire).await;
        let r = gw.chat(ask("m", "hi")).await;
        assert_eq!(r.status, 200, "{wire:?}");
        let rec = &mock.requests()[0];
        let has = |name: &str| {
            rec.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        match wire {
            Wire::OpenAi => assert!(has("authorization")),
            Wire::Anthropic => assert!(has("x-api-key") && has("anthropic-version")),
            Wire::Gemini => assert!(has("x-goog-api-key")),
        }
    }
}

#[tokio::test]
async fn azure_layout_and_api_key_header() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let root = mock.base_url().trim_end_matches("/v1").to_owned();
    let config = format!(
        "[providers.az]\nkind = \"azure\"\nbase_url = \"{root}\"\napi_version = \"2024-10-21\"\napi_keys = [\"az-key-1\"]\n[models.m]\nchain = [\"az:gpt4o-prod\"]\n[models.e]\nchain = [\"az:embed-prod\"]\n"
    );
    let gw = Gateway::start(&config).await;
    mock.script("gpt4o-prod", vec![Step::Text("from azure".into())]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.text(), "from azure");
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.text(), "from azure");
    let resp = gw
        .post("/v1/embeddings", &json!({"model": "e", "input": "x"}))
        .await;
    assert_eq!(resp.status(), 200);

    let calls = mock.requests();
    assert_eq!(
        calls[0].path,
        "/openai/deployments/gpt4o-prod/chat/completions"
    );
    assert_eq!(calls[0].query, "api-version=2024-10-21");
    assert_eq!(calls[0].api_key, "az-key-1", "the key travels in `api-key`");
    assert!(
        !calls[0]
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization")),
        "no bearer header for Azure"
    );
    assert_eq!(calls[2].path, "/openai/deployments/embed-prod/embeddings");
}

#[tokio::test]
async fn stream_usage_is_injected_only_where_the_preset_allows() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let base = mock.base_url();
    let config = format!(
        "[providers.oa]\nkind = \"openai\"\nbase_url = \"{base}\"\napi_keys = [\"k1\"]\n\
         [providers.mi]\nkind = \"mistral\"\nbase_url = \"{base}\"\napi_keys = [\"k2\"]\n\
         [models.o]\nchain = [\"oa:gpt\"]\n[models.x]\nchain = [\"mi:mistral-large\"]\n"
    );
    let gw = Gateway::start(&config).await;
    let s = gw.chat_stream(ask("o", "hi")).await;
    assert!(
        s.done && s.usage().is_none(),
        "injected usage is not shown to a client that did not ask"
    );
    let s = gw.chat_stream(ask("x", "hi")).await;
    assert!(s.done);
    let calls = mock.requests();
    assert_eq!(
        calls[0].body["stream_options"]["include_usage"], true,
        "openai: injected"
    );
    assert!(
        calls[1].body.get("stream_options").is_none(),
        "mistral: left alone"
    );
}
