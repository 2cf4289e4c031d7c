//! The HTTP surface: auth, body limits, malformed input, unknown models, request ids,
//! probes, `/v1/models`, embeddings and direct `provider:model` access.

use serde_json::{Value, json};
use sluice_e2e::{Gateway, KEY, MockProvider, Step, Wire, ask, provider};

async fn gateway(extra: &str) -> (MockProvider, Gateway) {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let config = format!(
        "[server]\nmax_body_bytes = 4096\n{extra}\n{}[models.m]\nchain = [\"up:model-a\"]\n",
        provider("up", &mock, &["sk-up"], "")
    );
    (mock, Gateway::start(&config).await)
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response carries x-request-id"
    );
    let body: Value = resp.json().await.expect("errors are JSON");
    let err = &body["error"];
    assert!(
        err["message"].is_string() && err["type"].is_string(),
        "OpenAI error shape: {body}"
    );
    (status, body)
}

#[tokio::test]
async fn missing_and_wrong_keys_are_refused_before_any_upstream_call() {
    let (mock, gw) = gateway("").await;
    let url = gw.url("/v1/chat/completions");
    let c = &gw.client;
    let (s, b) = error_of(c.post(&url).json(&ask("m", "hi")).send().await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let (s, b) = error_of(
        c.post(&url)
            .bearer_auth("sk-wrong")
            .json(&ask("m", "hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (s, _) = error_of(
        c.post(&url)
            .header("authorization", "Basic abc")
            .json(&ask("m", "hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let almost = &KEY[..KEY.len() - 1];
    let (s, _) = error_of(
        c.post(&url)
            .bearer_auth(almost)
            .json(&ask("m", "hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "a prefix of the key is not the key");
    let (s, _) = error_of(c.get(gw.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(s, 401, "/v1/models needs a key too");
    assert_eq!(mock.calls(), 0, "nothing reached the provider");
}

#[tokio::test]
async fn oversized_body_gets_413_and_nothing_goes_upstream() {
    let (mock, gw) = gateway("").await;
    let big = "x".repeat(5000);
    let (s, b) = error_of(gw.post("/v1/chat/completions", &ask("m", &big)).await).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (413, Some("request_too_large")),
        "{b}"
    );
    // Without a content-length (chunked), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"".to_vec()),
        Ok(vec![b'y'; 5000]),
        Ok(b"\"}]}".to_vec()),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .body(body)
        .send()
        .await
        .unwrap();
    let (s, _) = error_of(resp).await;
    assert_eq!(s, 413);
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn malformed_and_misshapen_json_get_stable_codes() {
    let (mock, gw) = gateway("").await;
    let send = |body: &'static str| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, b) = error_of(send("{\"model\": \"m\",").await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{b}"
    );
    let (s, b) = error_of(send("{\"model\": \"m\"}").await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("messages"),
        "names the missing field: {b}"
    );
    let (s, b) = error_of(
        send("{\"model\": \"m\", \"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = error_of(send("{\"model\": \"m\", \"messages\": []}").await.unwrap()).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn unknown_models_and_routes() {
    let (mock, gw) = gateway("").await;
    let r = gw.chat(ask("nope", "hi")).await;
    assert_eq!((r.status, r.code()), (404, "model_not_found"));
    let r = gw.chat(ask("up:model-a", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "model_not_found"),
        "direct models are off by default"
    );
    let (s, b) = error_of(gw.client.get(gw.url("/v2/whatever")).send().await.unwrap()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = error_of(
        gw.client
            .get(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn direct_models_when_allowed() {
    let (mock, gw) = gateway("allow_direct_models = true").await;
    let r = gw.chat(ask("up:some-new-model", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.header("x-sluice-model"), "some-new-model");
    assert_eq!(mock.requests()[0].body["model"], "some-new-model");
    let r = gw.chat(ask("ghost:model", "hi")).await;
    assert_eq!(r.status, 404, "an unknown provider is still unknown");
    let models: Value = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m", "up:model-a"]);
}

#[tokio::test]
async fn models_lists_aliases() {
    let (_mock, gw) = gateway("").await;
    let resp = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(
        body["data"],
        json!([{"id": "m", "object": "model", "created": 0, "owned_by": "sluice"}])
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let (_mock, gw) = gateway("").await;
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "trace-123")
        .json(&ask("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    let own = resp.headers()["x-sluice-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        own, "trace-123",
        "the gateway keys its records by its own id"
    );
    // A second request reusing the client's id is still a request of its own: both are in
    // the ledger.
    let again = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "trace-123")
        .json(&ask("m", "hi"))
        .send()
        .await
        .unwrap();
    assert_ne!(
        again.headers()["x-sluice-request-id"].to_str().unwrap(),
        own
    );
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    assert_eq!(gw.service.store().count_spend().await.unwrap(), 2);
    let a = gw.client.get(gw.url("/healthz")).send().await.unwrap();
    let b = gw.client.get(gw.url("/healthz")).send().await.unwrap();
    let (a, b) = (
        a.headers()["x-request-id"].clone(),
        b.headers()["x-request-id"].clone(),
    );
    assert!(!a.is_empty() && a != b, "fresh ids differ");
    let bad = gw
        .client
        .get(gw.url("/healthz"))
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert_ne!(
        bad.headers()["x-request-id"],
        "has space",
        "unsafe ids are replaced"
    );
}

#[tokio::test]
async fn probes_need_no_key_and_readyz_fails_while_draining() {
    let (_mock, gw) = gateway("").await;
    let h = gw.client.get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.state.start_draining();
    let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

/// A SQLite file replaced by another while the gateway has it open is left alone, and
/// `/readyz` says the gateway is not ready until a restart opens the new one; the key
/// refresh notices within its interval.
#[tokio::test]
async fn readyz_fails_when_the_sqlite_file_is_replaced() {
    let (_mock, gw) = gateway("").await;
    let path = gw
        .service
        .store()
        .sqlite_path()
        .expect("a SQLite store")
        .to_owned();
    std::fs::rename(&path, path.with_extension("moved")).expect("move away");
    std::fs::write(&path, b"another file").expect("replace");
    let lost = sluice_e2e::eventually(10, async || {
        let r = gw.client.get(gw.url("/readyz")).send().await.unwrap();
        r.status() == 503
            && r.json::<serde_json::Value>().await.unwrap()["status"] == "database_file_lost"
    })
    .await;
    assert!(lost, "readyz should report the lost database file");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"another file",
        "the new file is left alone"
    );
}

#[tokio::test]
async fn embeddings_through_openai_and_gemini_and_refused_for_anthropic() {
    let o = MockProvider::start(Wire::OpenAi).await;
    let g = MockProvider::start(Wire::Gemini).await;
    let a = MockProvider::start(Wire::Anthropic).await;
    let config = format!(
        "{}{}{}[models.emb]\nchain = [\"o:text-embedding-3-small\"]\n[models.gemb]\nchain = [\"g:text-embedding-004\"]\n[models.aemb]\nchain = [\"a:claude\"]\n",
        provider("o", &o, &["k"], ""),
        provider("g", &g, &["k"], ""),
        provider("a", &a, &["k"], "")
    );
    let gw = Gateway::start(&config).await;
    for model in ["emb", "gemb"] {
        let resp = gw
            .post(
                "/v1/embeddings",
                &json!({"model": model, "input": ["alpha", "beta"]}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{model}: one vector per input");
        assert_eq!(data[1]["index"], 1);
        assert!(
            data[0]["embedding"].as_array().unwrap().len() > 1,
            "{model}: {body}"
        );
    }
    assert_eq!(
        g.requests()[0].path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    let resp = gw
        .post("/v1/embeddings", &json!({"model": "aemb", "input": "x"}))
        .await;
    let (s, b) = error_of(resp).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("unsupported_by_provider")),
        "{b}"
    );
    assert_eq!(
        a.calls(),
        0,
        "no call is made to a provider without the API"
    );
    let resp = gw
        .post("/v1/embeddings", &json!({"model": "emb", "input": []}))
        .await;
    let (s, _) = error_of(resp).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn upstream_errors_never_leak_provider_keys() {
    let (mock, gw) = gateway("").await;
    mock.script("model-a", vec![Step::Unauthorized]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_auth_failed"),
        "{}",
        r.json
    );
    assert!(!r.json.to_string().contains("sk-up"), "{}", r.json);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "no_available_key"),
        "{}",
        r.json
    );
    assert_eq!(mock.calls(), 1, "the disabled key is not tried again");
}

#[tokio::test]
async fn direct_model_names_cannot_rewrite_provider_urls() {
    let g = MockProvider::start(Wire::Gemini).await;
    let config = format!(
        "[server]\nallow_direct_models = true\n{}[models.m]\nchain = [\"g:gemini-2.5-flash\"]\n",
        provider("g", &g, &["k"], "")
    );
    let gw = Gateway::start(&config).await;
    for model in [
        "g:../../v1/files",
        "g:x?alt=media",
        "g:a/b",
        "g:x#frag",
        "g:%2e%2e",
    ] {
        let r = gw.chat(ask(model, "hi")).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "unsupported_by_provider"),
            "{model}: {}",
            r.json
        );
    }
    let r = gw.chat(ask("g:with space", "hi")).await;
    assert_eq!(r.status, 404, "whitespace is not a model name");
    assert_eq!(g.calls(), 0, "no crafted path reached the provider");
    let r = gw.chat(ask("g:gemini-2.0-flash-001", "hi")).await;
    assert_eq!(r.status, 200, "ordinary names work: {}", r.json);
}
