//! The router's failure rules end to end: retries, fallback along the chain, key rotation
//! and cool-downs, `Retry-After`, circuit breakers, timeouts and broken streams.

use std::time::Duration;

use sluice_e2e::{Gateway, MockProvider, Step, Wire, ask, provider};

/// Two OpenAI-format mocks `a` and `b`, alias `m` = [a:model-a, b:model-b].
async fn pair(routing: &str, a_extra: &str) -> (MockProvider, MockProvider, Gateway) {
    let a = MockProvider::start(Wire::OpenAi).await;
    let b = MockProvider::start(Wire::OpenAi).await;
    let config = format!(
        "{}{}[models.m]\nchain = [\"a:model-a\", \"b:model-b\"]\n\n[routing]\nbackoff_base_ms = 5\nbackoff_max_ms = 20\n{routing}\n",
        provider("a", &a, &["sk-a"], a_extra),
        provider("b", &b, &["sk-b"], ""),
    );
    (a, b, Gateway::start(&config).await)
}

#[tokio::test]
async fn server_errors_are_retried_then_the_chain_falls_back() {
    let (a, b, gw) = pair("max_retries = 1", "").await;
    a.script("model-a", vec![Step::ServerError(503)]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(a.calls(), 2, "one try plus one retry on the first entry");
    assert_eq!(b.calls(), 1, "then the next entry answers");
    assert_eq!(r.header("x-sluice-provider"), "b");
    assert_eq!(r.header("x-sluice-model"), "model-b");
    assert_eq!(r.header("x-sluice-attempts"), "3");
}

#[tokio::test]
async fn a_retry_that_succeeds_stays_on_the_entry() {
    let (a, b, gw) = pair("max_retries = 2", "").await;
    a.script(
        "model-a",
        vec![
            Step::ServerError(500),
            Step::Text("second time lucky".into()),
        ],
    );
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "second time lucky");
    assert_eq!((a.calls(), b.calls()), (2, 0));
}

#[tokio::test]
async fn bad_request_fails_at_once_and_is_never_retried() {
    let (a, b, gw) = pair("max_retries = 3", "").await;
    a.script(
        "model-a",
        vec![Step::BadRequest("temperature must be at most 2".into())],
    );
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.code(), "upstream_bad_request");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature"),
        "{}",
        r.json
    );
    assert_eq!(a.calls(), 1, "a 400 goes upstream exactly once");
    assert_eq!(b.calls(), 0, "and never along the chain");
}

#[tokio::test]
async fn content_filter_fails_at_once() {
    let (a, b, gw) = pair("", "").await;
    a.script("model-a", vec![Step::ContentFiltered]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.code(), "content_filter");
    assert_eq!((a.calls(), b.calls()), (1, 0));
}

#[tokio::test]
async fn context_overflow_moves_to_the_next_entry_without_retry() {
    let (a, b, gw) = pair("max_retries = 3", "").await;
    a.script("model-a", vec![Step::ContextOverflow]);
    let r = gw.chat(ask("m", "a very long prompt")).await;
    assert_eq!(r.status, 200);
    assert_eq!((a.calls(), b.calls()), (1, 1));

    b.script("model-b", vec![Step::ContextOverflow]);
    let r = gw.chat(ask("m", "a very long prompt")).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert_eq!(r.code(), "context_length_exceeded");
}

#[tokio::test]
async fn refused_key_is_disabled_and_the_next_key_serves() {
    let a = MockProvider::start(Wire::Anthropic).await;
    a.script_key("sk-revoked", vec![Step::Unauthorized]);
    let config = format!(
        "{}[models.m]\nchain = [\"a:claude\"]\n",
        provider("a", &a, &["sk-revoked", "sk-good"], "")
    );
    let gw = Gateway::start(&config).await;
    for i in 0..4 {
        let r = gw.chat(ask("m", "hi")).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.json);
    }
    let revoked = a
        .requests()
        .iter()
        .filter(|r| r.api_key == "sk-revoked")
        .count();
    assert_eq!(
        revoked, 1,
        "a refused key is used once, then left out of rotation"
    );
    let states = gw.service.snapshot().router.key_states("a");
    assert!(
        states.iter().any(|s| s.1.as_str() == "disabled"),
        "{states:?}"
    );
}

#[tokio::test]
async fn quota_and_billing_refusals_rotate_the_key() {
    for (step, wire) in [
        (Step::InsufficientQuota, Wire::OpenAi),
        (Step::PaymentRequired, Wire::OpenAi),
        (Step::InsufficientQuota, Wire::Anthropic),
        (Step::InsufficientQuota, Wire::Gemini),
    ] {
        let a = MockProvider::start(wire).await;
        a.script_key("sk-broke", vec![step.clone()]);
        let config = format!(
            "{}[models.m]\nchain = [\"a:model-a\"]\n",
            provider("a", &a, &["sk-broke", "sk-funded"], "")
        );
        let gw = Gateway::start(&config).await;
        for _ in 0..3 {
            let r = gw.chat(ask("m", "hi")).await;
            assert_eq!(r.status, 200, "{step:?} {wire:?}: {}", r.json);
        }
        let broke = a
            .requests()
            .iter()
            .filter(|r| r.api_key == "sk-broke")
            .count();
        assert_eq!(broke, 1, "{step:?} {wire:?}: the refused key sits out");
        let states = gw.service.snapshot().router.key_states("a");
        assert!(
            states.iter().any(|s| s.1.as_str() == "billing"),
            "{step:?} {wire:?}: {states:?}"
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured_on_the_only_key() {
    let (a, b, gw) = pair("max_retries = 1", "").await;
    a.script(
        "model-a",
        vec![
            Step::RateLimited {
                retry_after_secs: Some(1),
            },
            Step::Text("after the wait".into()),
        ],
    );
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.text(),
        "after the wait",
        "the same entry answered once its key was back"
    );
    assert_eq!((a.calls(), b.calls()), (2, 0));
}

#[tokio::test]
async fn long_retry_after_falls_back_and_a_lone_entry_returns_429() {
    let (a, b, gw) = pair("max_retries = 2\nmax_retry_after_ms = 2000", "").await;
    a.script(
        "model-a",
        vec![Step::RateLimited {
            retry_after_secs: Some(60),
        }],
    );
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (a.calls(), b.calls()),
        (1, 1),
        "a 60 s wait is not worth it: next entry"
    );

    let config = format!(
        "{}[models.solo]\nchain = [\"a:model-a\"]\n[routing]\nmax_retry_after_ms = 2000\n",
        provider("a", &a, &["sk-a"], "")
    );
    let solo = Gateway::start(&config).await;
    let r = solo.chat(ask("solo", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After on a 429");
    assert!(
        (50..=60).contains(&retry),
        "the provider's wait is passed on: {retry}"
    );
    drop(gw);
}

#[tokio::test]
async fn breaker_opens_skips_the_entry_then_half_opens_and_closes() {
    let (a, b, gw) = pair(
        "max_retries = 0\n[routing.breaker]\nfailure_threshold = 2\nopen_ms = 300\nhalf_open_probes = 1",
        "",
    )
    .await;
    a.script("model-a", vec![Step::ServerError(500)]);
    for _ in 0..2 {
        assert_eq!(gw.chat(ask("m", "hi")).await.status, 200);
    }
    assert_eq!(a.calls(), 2);
    let target = sluice_config::Target {
        provider: "a".into(),
        model: "model-a".into(),
    };
    assert_eq!(
        gw.service.snapshot().router.breaker_state(&target).as_str(),
        "open"
    );

    for _ in 0..3 {
        assert_eq!(gw.chat(ask("m", "hi")).await.status, 200);
    }
    assert_eq!(a.calls(), 2, "an open breaker sends nothing to its entry");
    assert_eq!(b.calls(), 5);

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        gw.service.snapshot().router.breaker_state(&target).as_str(),
        "half_open"
    );
    a.script("model-a", vec![Step::Text("recovered".into())]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        r.text(),
        "recovered",
        "the half-open probe goes to the recovered entry"
    );
    assert_eq!(
        gw.service.snapshot().router.breaker_state(&target).as_str(),
        "closed"
    );
    assert_eq!(a.calls(), 3);
}

#[tokio::test]
async fn lone_entry_with_open_breaker_answers_503() {
    let a = MockProvider::start(Wire::OpenAi).await;
    a.script("model-a", vec![Step::ServerError(500)]);
    let config = format!(
        "{}[models.m]\nchain = [\"a:model-a\"]\n[routing]\nmax_retries = 0\n[routing.breaker]\nfailure_threshold = 1\nopen_ms = 60000\n",
        provider("a", &a, &["k"], "")
    );
    let gw = Gateway::start(&config).await;
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!((r.status, r.code()), (502, "upstream_error"));
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!((r.status, r.code()), (503, "circuit_open"), "{}", r.json);
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    assert_eq!(a.calls(), 1);
}

#[tokio::test]
async fn hang_times_out_and_falls_back() {
    // Non-streamed calls wait up to `timeout_ms` for their answer, streams up to
    // `first_byte_timeout_ms` for the first token.
    let (a, b, gw) = pair(
        "max_retries = 0",
        "first_byte_timeout_ms = 200\ntimeout_ms = 200",
    )
    .await;
    a.script("model-a", vec![Step::Hang]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sluice-provider"), "b");
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert!(s.done && s.error().is_none());
    assert_eq!(s.header("x-sluice-provider"), "b");
    assert_eq!((a.calls(), b.calls()), (2, 2));
}

#[tokio::test]
async fn lone_hanging_entry_answers_504() {
    let a = MockProvider::start(Wire::Gemini).await;
    a.script("g", vec![Step::Hang]);
    let config = format!(
        "{}[models.m]\nchain = [\"a:g\"]\n[routing]\nmax_retries = 0\n",
        provider("a", &a, &["k"], "timeout_ms = 150")
    );
    let gw = Gateway::start(&config).await;
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (504, "upstream_timeout"),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn unreachable_provider_falls_back() {
    let (a, b, gw) = pair("max_retries = 1", "connect_timeout_ms = 500").await;
    a.shutdown();
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.header("x-sluice-provider"), "b");
    assert_eq!(
        r.header("x-sluice-attempts"),
        "3",
        "two tries on the dead entry, then b"
    );
    assert_eq!(b.calls(), 1);

    let config = format!(
        "{}[models.solo]\nchain = [\"a:model-a\"]\n[routing]\nmax_retries = 0\n",
        provider("a", &a, &["k"], "")
    );
    let solo = Gateway::start(&config).await;
    let r = solo.chat(ask("solo", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (502, "upstream_unreachable"),
        "{}",
        r.json
    );
    assert!(
        !r.json.to_string().contains("127.0.0.1"),
        "the upstream URL stays in the log: {}",
        r.json
    );
}

#[tokio::test]
async fn stream_cut_mid_answer_ends_with_an_error_event_not_done() {
    for wire in [Wire::OpenAi, Wire::Anthropic, Wire::Gemini] {
        let a = MockProvider::start(wire).await;
        let b = MockProvider::start(Wire::OpenAi).await;
        a.script("model-a", vec![Step::CutAfter(3)]);
        let config = format!(
            "{}{}[models.m]\nchain = [\"a:model-a\", \"b:model-b\"]\n",
            provider("a", &a, &["k"], ""),
            provider("b", &b, &["k"], "")
        );
        let gw = Gateway::start(&config).await;
        let s = gw.chat_stream(ask("m", "tell me a story")).await;
        assert_eq!(s.status, 200, "{wire:?}");
        assert!(
            !s.text().is_empty(),
            "{wire:?}: the first chunks reached the client"
        );
        let err = s
            .error()
            .unwrap_or_else(|| panic!("{wire:?}: an error event ends the stream: {:?}", s.events));
        assert_eq!(err["code"], "upstream_stream_cut", "{wire:?}");
        assert_eq!(err["type"], "api_error", "{wire:?}");
        assert!(!s.done, "{wire:?}: a cut stream never ends with [DONE]");
        assert!(
            s.finish_reason().is_none(),
            "{wire:?}: nor with a finish_reason"
        );
        assert_eq!(b.calls(), 0, "{wire:?}: no failover after the first byte");
        gw.service
            .ledger()
            .flush()
            .await
            .expect("ledger rows written");
        let rows = gw.service.store().recent_spend(10).await.expect("rows");
        assert_eq!(
            rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
            ["upstream_stream_cut"],
            "{wire:?}: the row says how the stream ended"
        );
    }
}

#[tokio::test]
async fn stream_that_fails_before_its_first_token_fails_over() {
    let (a, b, gw) = pair("max_retries = 0", "").await;
    a.script("model-a", vec![Step::CutAfter(0)]);
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert!(s.done, "{:?}", s.events);
    assert!(s.error().is_none());
    assert_eq!(s.header("x-sluice-provider"), "b");
    assert_eq!((a.calls(), b.calls()), (1, 1));

    a.script("model-a", vec![Step::ServerError(500)]);
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.header("x-sluice-provider"), "b");
    assert!(s.done);
}

#[tokio::test]
async fn idle_gap_between_chunks_ends_the_stream_with_an_error() {
    let (a, _b, gw) = pair("", "idle_timeout_ms = 150").await;
    a.script(
        "model-a",
        vec![Step::ChunkGap {
            ms: 600,
            text: "slow words arrive here".into(),
        }],
    );
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.status, 200);
    let err = s.error().expect("idle timeout error event");
    assert_eq!(err["code"], "upstream_idle_timeout");
    assert!(!s.done);
}

#[tokio::test]
async fn chunk_spacing_within_the_idle_limit_streams_through() {
    let (a, _b, gw) = pair("", "idle_timeout_ms = 1000").await;
    a.script(
        "model-a",
        vec![Step::ChunkGap {
            ms: 30,
            text: "five words in slow motion".into(),
        }],
    );
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.text(), "five words in slow motion");
    assert!(s.done);
}

#[tokio::test]
async fn a_slow_first_token_is_bounded_by_first_byte_not_idle() {
    for wire in [Wire::OpenAi, Wire::Anthropic] {
        let a = MockProvider::start(wire).await;
        let b = MockProvider::start(Wire::OpenAi).await;
        a.script(
            "model-a",
            vec![Step::SlowFirstToken {
                ms: 400,
                text: "thought about it".into(),
            }],
        );
        let config = format!(
            "{}{}[models.m]\nchain = [\"a:model-a\", \"b:model-b\"]\n[routing]\nmax_retries = 0\n",
            provider(
                "a",
                &a,
                &["k"],
                "idle_timeout_ms = 100\nfirst_byte_timeout_ms = 5000"
            ),
            provider("b", &b, &["k"], "")
        );
        let gw = Gateway::start(&config).await;
        let s = gw.chat_stream(ask("m", "think first")).await;
        assert_eq!(
            s.header("x-sluice-provider"),
            "a",
            "{wire:?}: no failover for a thinking model"
        );
        assert_eq!(s.text(), "thought about it", "{wire:?}");
        assert!(s.done, "{wire:?}: {:?}", s.events);
        assert_eq!(b.calls(), 0, "{wire:?}");
    }
}

#[tokio::test]
async fn a_first_token_past_first_byte_fails_over() {
    let (a, b, gw) = pair("max_retries = 0", "first_byte_timeout_ms = 150").await;
    a.script(
        "model-a",
        vec![Step::SlowFirstToken {
            ms: 1000,
            text: "too late".into(),
        }],
    );
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(s.header("x-sluice-provider"), "b");
    assert!(s.done);
    assert_eq!((a.calls(), b.calls()), (1, 1));
}

#[tokio::test]
async fn non_streamed_answers_are_bounded_by_total_not_first_byte() {
    let (a, b, gw) = pair(
        "max_retries = 0",
        "first_byte_timeout_ms = 100\ntimeout_ms = 3000",
    )
    .await;
    a.script(
        "model-a",
        vec![Step::Delay {
            ms: 400,
            then: Box::new(Step::Text("slow but whole".into())),
        }],
    );
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        r.text(),
        "slow but whole",
        "headers come with the whole answer: {}",
        r.json
    );
    assert_eq!(b.calls(), 0);

    let solo_mock = MockProvider::start(Wire::OpenAi).await;
    solo_mock.script(
        "m1",
        vec![Step::Delay {
            ms: 800,
            then: Box::new(Step::Text("x".into())),
        }],
    );
    let config = format!(
        "{}[models.solo]\nchain = [\"s:m1\"]\n[routing]\nmax_retries = 0\n",
        provider("s", &solo_mock, &["k"], "timeout_ms = 200")
    );
    let solo = Gateway::start(&config).await;
    let r = solo.chat(ask("solo", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (504, "upstream_timeout"),
        "{}",
        r.json
    );
    drop((a, gw));
}

#[tokio::test]
async fn request_deadline_bounds_all_retries() {
    let (a, b, gw) = pair(
        "max_retries = 5\nrequest_timeout_ms = 300",
        "first_byte_timeout_ms = 10000",
    )
    .await;
    a.script("model-a", vec![Step::Hang]);
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!(
        (r.status, r.code()),
        (504, "upstream_timeout"),
        "{}",
        r.json
    );
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request deadline")
    );
    assert_eq!((a.calls(), b.calls()), (1, 0));
}

#[tokio::test]
async fn a_rate_limited_key_rotates_to_the_next_without_waiting() {
    let a = MockProvider::start(Wire::OpenAi).await;
    a.script_key(
        "sk-busy",
        vec![Step::RateLimited {
            retry_after_secs: Some(60),
        }],
    );
    let config = format!(
        "{}[models.m]\nchain = [\"a:model-a\"]\n",
        provider("a", &a, &["sk-busy", "sk-free"], "")
    );
    let gw = Gateway::start(&config).await;
    for _ in 0..3 {
        let r = gw.chat(ask("m", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let keys: Vec<String> = a.requests().iter().map(|r| r.api_key.clone()).collect();
    assert_eq!(
        keys,
        ["sk-busy", "sk-free", "sk-free", "sk-free"],
        "the busy key sits out its Retry-After"
    );
    let states = gw.service.snapshot().router.key_states("a");
    assert!(
        states.iter().any(|s| s.1.as_str() == "cooling_down"),
        "{states:?}"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_still_tells_the_client_when() {
    let a = MockProvider::start(Wire::Anthropic).await;
    a.script(
        "claude",
        vec![Step::RateLimited {
            retry_after_secs: None,
        }],
    );
    let config = format!(
        "{}[models.m]\nchain = [\"a:claude\"]\n[routing]\nrate_limit_cooldown_ms = 20000\n",
        provider("a", &a, &["k"], "")
    );
    let gw = Gateway::start(&config).await;
    let r = gw.chat(ask("m", "hi")).await;
    assert_eq!((r.status, r.code()), (429, "rate_limited"));
    assert_eq!(r.header("retry-after"), "20", "the key's cool-down");
}

#[tokio::test]
async fn streamed_bad_request_is_not_retried_either() {
    let (a, b, gw) = pair("max_retries = 3", "").await;
    a.script(
        "model-a",
        vec![Step::BadRequest("unknown parameter".into())],
    );
    let resp = gw.post("/v1/chat/completions", &serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!((a.calls(), b.calls()), (1, 0));
}

#[tokio::test]
async fn an_entry_that_cannot_express_the_request_is_skipped() {
    let an = MockProvider::start(Wire::Anthropic).await;
    let oa = MockProvider::start(Wire::OpenAi).await;
    let config = format!(
        "{}{}[models.m]\nchain = [\"an:claude\", \"oa:gpt\"]\n",
        provider("an", &an, &["k"], ""),
        provider("oa", &oa, &["k"], "")
    );
    let gw = Gateway::start(&config).await;
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "transcribe"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    ]}]});
    let r = gw.chat(body).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.header("x-sluice-provider"), "oa");
    assert_eq!(
        an.calls(),
        0,
        "nothing was sent to the provider that cannot take it"
    );
    assert_eq!(
        oa.requests()[0].body["messages"][0]["content"][1]["type"],
        "input_audio",
        "passed through whole"
    );
}

#[tokio::test]
async fn streams_that_break_after_commit_count_against_the_breaker() {
    let (a, b, gw) = pair(
        "max_retries = 0\n[routing.breaker]\nfailure_threshold = 2\nopen_ms = 60000",
        "",
    )
    .await;
    a.script("model-a", vec![Step::CutAfter(2)]);
    for _ in 0..2 {
        let s = gw.chat_stream(ask("m", "hi")).await;
        assert_eq!(s.error().unwrap()["code"], "upstream_stream_cut");
    }
    let target = sluice_config::Target {
        provider: "a".into(),
        model: "model-a".into(),
    };
    assert_eq!(
        gw.service.snapshot().router.breaker_state(&target).as_str(),
        "open"
    );
    let s = gw.chat_stream(ask("m", "hi")).await;
    assert_eq!(
        s.header("x-sluice-provider"),
        "b",
        "the broken entry is skipped now"
    );
    assert!(s.done);
    assert_eq!(a.calls(), 2);
    drop(b);
}
