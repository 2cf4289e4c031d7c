//! The admin API and the store behind the gateway: key lifecycle, refused keys, the spend
//! ledger under concurrency, reports in JSON and CSV, auth-profile state and reset.

#![allow(
    clippy::unwrap_used,
    reason = "a test helper that fails is a failed test"
)]

use serde_json::{Value, json};
use sluice_e2e::{Gateway, MockProvider, Step, Wire, ask, provider};

const ADMIN: &str = "admin-token-0123456789";

async fn gateway(mock: &MockProvider, extra_server: &str) -> Gateway {
    let config = format!(
        "[server]\n{extra_server}\n{}{}[models.m]\nchain = [\"a:model-a\", \"b:model-b\"]\n[models.other]\nchain = [\"b:model-b\"]\n[routing]\nmax_retries = 0\n",
        provider("a", mock, &["sk-a"], ""),
        provider("b", mock, &["sk-b"], "")
    );
    Gateway::start(&config).await
}

async fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = gw.client.request(method.parse().unwrap(), gw.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn chat_with(gw: &Gateway, key: &str, model: &str) -> (u16, Value) {
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&ask(model, "hi"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn admin_api_is_off_without_a_token_and_refuses_wrong_ones() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let off = gateway(&mock, "").await;
    let (s, b) = admin(&off, "GET", "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("admin_disabled")),
        "{b}"
    );

    let on = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let (s, b) = admin(&on, "GET", "/admin/keys", None, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_admin_token"))
    );
    let (s, _) = admin(
        &on,
        "GET",
        "/admin/keys",
        Some("admin-token-wrong-0000"),
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = admin(&on, "GET", "/admin/keys", Some(sluice_e2e::KEY), None).await;
    assert_eq!(s, 401, "a gateway key is not an admin token");
    let (s, _) = admin(&on, "GET", "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn key_lifecycle_through_the_admin_api() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let (s, b) = admin(&gw, "POST", "/admin/keys", Some(ADMIN), Some(json!({"name": "team-a", "user_id": "alice", "allowed_models": ["m"], "limits": {"rpm": 60}}))).await;
    assert_eq!(s, 201, "{b}");
    let secret = b["secret"].as_str().unwrap().to_owned();
    let id = b["key"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-sluice-"));
    assert!(b["key"].get("key_hash").is_none());

    assert_eq!(
        chat_with(&gw, &secret, "m").await.0,
        200,
        "usable at once on this instance"
    );
    let (s, b) = chat_with(&gw, &secret, "other").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{b}"
    );

    let (s, list) = admin(&gw, "GET", "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(list["data"][0]["id"], id);
    assert!(
        !list.to_string().contains(&secret),
        "secrets are shown once only"
    );
    let (s, shown) = admin(&gw, "GET", &format!("/admin/keys/{id}"), Some(ADMIN), None).await;
    assert_eq!((s, shown["user_id"].as_str()), (200, Some("alice")));
    assert_eq!(shown["limits"]["rpm"], 60);

    let (s, b) = admin(
        &gw,
        "DELETE",
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((s, b["revoked"].as_bool()), (200, Some(true)), "{b}");
    let (s, b) = chat_with(&gw, &secret, "m").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("key_revoked")),
        "{b}"
    );
    let (s, b) = admin(
        &gw,
        "DELETE",
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!((s, b["already_revoked"].as_bool()), (200, Some(true)));
    let (s, _) = admin(&gw, "GET", "/admin/keys/key_missing", Some(ADMIN), None).await;
    assert_eq!(s, 404);
    let (s, _) = admin(&gw, "DELETE", "/admin/keys/key_missing", Some(ADMIN), None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = gateway(&mock, "").await;
    let spec = sluice_store::keys::KeySpec {
        name: "short".into(),
        expires_at_ms: Some(1),
        ..Default::default()
    };
    let (secret, key) = spec.issue(0);
    gw.service.store().insert_key(&key).await.unwrap();
    gw.service.keys().refresh(gw.service.store()).await.unwrap();
    let (s, b) = chat_with(&gw, &secret, "m").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("key_expired")),
        "{b}"
    );
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn bad_admin_input_gets_a_clear_400_and_writes_nothing() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let cases = [
        (json!({"name": "x", "colour": "blue"}), "colour"),
        (
            json!({"name": "x", "limits": {"budget_usd_day_nanos": -5}}),
            "limits.budget_usd_day_nanos",
        ),
        (json!({"name": "x", "limits": {"rpm": -1}}), "limits.rpm"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "allowed_models": []}), "allowed_models"),
        (json!({"name": "x", "expires_at_ms": 5}), "expires_at_ms"),
        (json!({"user_id": "x"}), "name"),
        // Control characters would land raw in the text log (a forged line), break
        // Postgres (NUL) or display as something else (direction overrides).
        (json!({"name": "ops\n2026-11-29 ERROR forged"}), "name"),
        (json!({"name": "nul\u{0}byte"}), "name"),
        (json!({"name": "\u{202E}lanretxe"}), "name"),
        (json!({"name": "esc\u{1b}[31m"}), "name"),
        (json!({"name": "x", "user_id": "ali\tce"}), "user_id"),
        (
            json!({"name": "x", "allowed_models": ["m", "bad\u{7}"]}),
            "allowed_models",
        ),
    ];
    for (body, field) in cases {
        let (s, b) = admin(&gw, "POST", "/admin/keys", Some(ADMIN), Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(field),
            "{body} should name {field}: {b}"
        );
    }
    let resp = gw
        .client
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (s, b) = admin(&gw, "GET", "/admin/spend?by=colour", Some(ADMIN), None).await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = admin(&gw, "GET", "/admin/spend?since=soon", Some(ADMIN), None).await;
    assert_eq!(s, 400);
    let (s, _) = admin(&gw, "GET", "/admin/spend?bogus=1", Some(ADMIN), None).await;
    assert_eq!(s, 400);
    let (s, b) = admin(
        &gw,
        "DELETE",
        "/admin/keys/key_%0Aforged",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("id"),
        "{b}"
    );
    let (_, list) = admin(&gw, "GET", "/admin/keys", Some(ADMIN), None).await;
    assert_eq!(list["data"], json!([]), "nothing half-written");
}

#[tokio::test]
async fn every_provider_call_of_concurrent_requests_is_in_the_ledger_once() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    // Every request fails once on `a` then is answered by `b`: two rows per request.
    mock.script("model-a", vec![Step::ServerError(500)]);
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = gw.client.clone();
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let mut body = ask("m", "count me in cached");
            if i % 2 == 0 {
                body["stream"] = json!(true);
            }
            let resp = client
                .post(url)
                .bearer_auth(sluice_e2e::KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A stream's row is queued before its `[DONE]` is sent, so every row is queued by now.
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    assert_eq!(
        gw.service.store().count_spend().await.unwrap(),
        120,
        "60 failed calls + 60 answers"
    );

    let (s, report) = admin(
        &gw,
        "GET",
        "/admin/spend?by=model&since=1h",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{report}");
    let rows = report["data"].as_array().unwrap();
    let a = rows.iter().find(|r| r["group"] == "a:model-a").unwrap();
    let b = rows.iter().find(|r| r["group"] == "b:model-b").unwrap();
    assert_eq!(
        (a["calls"].as_i64(), a["prompt_tokens"].as_i64()),
        (Some(60), Some(0)),
        "failed calls carry no tokens"
    );
    assert_eq!(b["calls"], 60);
    assert!(
        b["prompt_tokens"].as_i64().unwrap() > 0 && b["cached_tokens"].as_i64().unwrap() > 0,
        "{b}"
    );
    assert_eq!(
        b["estimated_calls"], 0,
        "streams reported usage too (injected include_usage)"
    );

    // CSV says the same.
    let csv = gw
        .client
        .get(gw.url("/admin/spend?by=model&since=1h"))
        .bearer_auth(ADMIN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "model,calls,prompt_tokens,completion_tokens,cached_tokens,cost_usd,estimated_calls,saved_usd"
        )
    );
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let json_row = rows
            .iter()
            .find(|r| r["group"] == f[0])
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(f[1], json_row["calls"].to_string(), "{line}");
        assert_eq!(f[2], json_row["prompt_tokens"].to_string(), "{line}");
        assert_eq!(f[3], json_row["completion_tokens"].to_string(), "{line}");
        assert_eq!(f[4], json_row["cached_tokens"].to_string(), "{line}");
    }
    let (_, by_key) = admin(
        &gw,
        "GET",
        "/admin/spend?by=key&since=1h",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        by_key["data"][0]["group"], "config:test",
        "bootstrap keys are named in the ledger"
    );
}

#[tokio::test]
async fn auth_profile_state_is_shown_and_reset() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script_key(
        "sk-a",
        vec![Step::Unauthorized, Step::Text("fine again".into())],
    );
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    assert_eq!(
        gw.chat(ask("m", "hi")).await.header("x-sluice-provider"),
        "b"
    );
    let (s, b) = admin(&gw, "GET", "/admin/auth-profiles", Some(ADMIN), None).await;
    assert_eq!(s, 200);
    let a = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "a")
        .unwrap()
        .clone();
    assert_eq!(a["keys"][0]["state"], "disabled", "{b}");
    assert!(
        a["keys"][0]["profile_id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(!b.to_string().contains("sk-a"), "no secret in the view");

    let (s, _) = admin(
        &gw,
        "POST",
        "/admin/auth-profiles/a/reset",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        r.header("x-sluice-provider"),
        "a",
        "the reset key serves again"
    );
    let (s, _) = admin(
        &gw,
        "POST",
        "/admin/auth-profiles/nope/reset",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn ledger_rows_are_priced_from_the_table_and_the_operators_overrides() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let config = format!(
        "[server]\nadmin_token = \"{ADMIN}\"\n{}[models.priced]\nchain = [\"a:gpt-4o\"]\n[models.custom]\nchain = [\"a:house-model\"]\n[models.free]\nchain = [\"a:unknown-model\"]\n[prices.models.\"house-model\"]\ninput = 1000.0\noutput = 2000.0\n",
        provider("a", &mock, &["sk-a"], "")
    );
    let gw = Gateway::start(&config).await;
    let mut usages = Vec::new();
    for model in ["priced", "custom", "free"] {
        let r = gw
            .chat(ask(model, "please answer this cached prompt"))
            .await;
        assert_eq!(r.status, 200);
        usages.push(r.json["usage"].clone());
    }
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let (_, report) = admin(
        &gw,
        "GET",
        "/admin/spend?by=model&since=1h",
        Some(ADMIN),
        None,
    )
    .await;
    let cost = |group: &str| {
        report["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == group)
            .unwrap()["cost_nanos"]
            .as_i64()
            .unwrap()
    };
    let tokens = |u: &Value| {
        let prompt = u["prompt_tokens"].as_i64().unwrap();
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_i64()
            .unwrap_or(0);
        (
            prompt - cached,
            cached,
            u["completion_tokens"].as_i64().unwrap(),
        )
    };
    // gpt-4o from the shipped table: 2.50 / 10.00 / cached 1.25 USD per 1M tokens.
    let (fresh, cached, out) = tokens(&usages[0]);
    assert!(cached > 0, "the mock reports cached tokens for this prompt");
    assert_eq!(
        cost("a:gpt-4o"),
        fresh * 2_500 + cached * 1_250 + out * 10_000
    );
    // The operator's own model and price (cached tokens default to the input price).
    let (fresh, cached, out) = tokens(&usages[1]);
    assert_eq!(
        cost("a:house-model"),
        (fresh + cached) * 1_000_000 + out * 2_000_000
    );
    assert_eq!(
        cost("a:unknown-model"),
        0,
        "an unpriced model is recorded at 0 (and logged)"
    );
}

#[tokio::test]
async fn calls_without_provider_usage_are_counted_by_sluice_and_marked_estimated() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "mistral-large-latest",
        vec![Step::Text("one two three four".into())],
    );
    // kind = "mistral" does not ask for stream usage, and the mock sends none unasked.
    let config = format!(
        "[server]\nadmin_token = \"{ADMIN}\"\n[providers.mi]\nkind = \"mistral\"\nbase_url = \"{}\"\napi_keys = [\"k\"]\n[models.m]\nchain = [\"mi:mistral-large-latest\"]\n",
        mock.base_url()
    );
    let gw = Gateway::start(&config).await;
    let s = gw.chat_stream(ask("m", "Hello world")).await;
    assert_eq!(s.text(), "one two three four");
    assert!(s.usage().is_none(), "no usage reached the client either");
    gw.service
        .ledger()
        .flush()
        .await
        .expect("ledger rows written");
    let (_, report) = admin(
        &gw,
        "GET",
        "/admin/spend?by=model&since=1h",
        Some(ADMIN),
        None,
    )
    .await;
    let row = &report["data"][0];
    assert_eq!(row["estimated_calls"], 1, "{report}");
    // 3 + 3 + 1 ("user") + 2 ("Hello world") with the o200k estimate.
    assert_eq!(row["prompt_tokens"], 9, "{report}");
    assert_eq!(
        row["completion_tokens"], 5,
        "18 streamed bytes at 4 a token, rounded up"
    );
    assert_eq!(
        row["cost_nanos"],
        9 * 2_000 + 5 * 6_000,
        "priced like any other call"
    );
}

async fn limited_key(gw: &Gateway, limits: Value) -> String {
    let (s, b) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(ADMIN),
        Some(json!({"name": "limited", "limits": limits})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn requests_per_minute_refuse_exactly_at_the_limit() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let key = limited_key(&gw, json!({"rpm": 3})).await;
    let send = || {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&ask("m", "hi"))
            .send()
    };
    for left in ["2", "1", "0"] {
        let resp = send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], left);
    }
    let resp = send().await.unwrap();
    assert_eq!(resp.status(), 429, "the 4th of 3 per minute");
    assert_eq!(
        resp.headers()["retry-after"],
        "20",
        "one request comes back every 20 s"
    );
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(mock.calls(), 3, "the refused request never went upstream");
    // Other keys are not affected.
    assert_eq!(gw.chat(ask("m", "hi")).await.status, 200);
}

#[tokio::test]
async fn tokens_per_minute_reserve_the_estimate_and_settle_to_usage() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let key = limited_key(&gw, json!({"tpm": 200})).await;
    let send = |max_tokens: u64| {
        let mut body = ask("m", "hi");
        body["max_tokens"] = json!(max_tokens);
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    // The prompt is 8 tokens (3 + 3 + "user" + "hi"); 50 more are reserved for output.
    let first = send(50).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["x-ratelimit-remaining-tokens"],
        "142",
        "200 - (8 + 50) reserved"
    );
    let usage: Value = first.json().await.unwrap();
    let used = usage["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        used < 58,
        "the mock uses fewer tokens than reserved: {used}"
    );

    // Settled to the real usage: the second reservation starts from 200 - used.
    let second = send(50).await.unwrap();
    let left: u64 = second.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = 200 - used - 58;
    assert!(
        (expected..=expected + 2).contains(&left),
        "expected about {expected}, got {left}"
    );

    // A request whose reservation cannot fit is refused before it goes upstream.
    let calls = mock.calls();
    let resp = send(190).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("x-ratelimit-limit-tokens"));
    assert_eq!(mock.calls(), calls);
}

#[tokio::test]
async fn a_stream_the_client_abandons_is_still_in_the_ledger() {
    let mock = MockProvider::start(Wire::OpenAi).await;
    mock.script(
        "model-a",
        vec![Step::ChunkGap {
            ms: 50,
            text: "a fairly long answer that keeps on going for a while yet".into(),
        }],
    );
    let gw = gateway(&mock, &format!("admin_token = \"{ADMIN}\"")).await;
    let mut body = ask("m", "hi");
    body["stream"] = json!(true);
    let resp = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(sluice_e2e::KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    drop(stream); // the client goes away mid-answer
    let found = sluice_e2e::eventually(5, async || {
        gw.service
            .ledger()
            .flush()
            .await
            .expect("ledger rows written");
        let (_, report) = admin(
            &gw,
            "GET",
            "/admin/spend?by=model&since=1h",
            Some(ADMIN),
            None,
        )
        .await;
        report["data"].as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["group"] == "a:model-a" && r["calls"] == 1)
        })
    })
    .await;
    assert!(found, "the abandoned stream's call is recorded");
    let rows = gw.service.store().count_spend().await.unwrap();
    assert_eq!(rows, 1);
}

/// Found by a hostile client: every new direct model name without a price added an entry
/// (and a log line) for good. The set is bounded.
#[tokio::test]
async fn unpriced_direct_model_names_do_not_grow_state_without_bound() {
    let gw = Gateway::start(
        "[server]\nallow_direct_models = true\n[providers.free]\nkind = \"mock\"\nwords = 1\n",
    )
    .await;
    for i in 0..1100 {
        let (status, body) = chat_with(&gw, sluice_e2e::KEY, &format!("free:model-{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let remembered = gw.service.unpriced_models();
    assert!(
        remembered <= 1025,
        "{remembered} unpriced names kept for 1100 client-chosen models"
    );
    assert!(
        remembered >= 1000,
        "names are still reported up to the bound"
    );
}
