use super::*;

const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmwIDAQABAoIBAQCSGm\n-----END RSA PRIVATE KEY-----";

fn samples() -> Vec<(&'static str, String, OutputKind)> {
    vec![
        ("canary", canary(0x1234_5678_9abc_def0_1122_3344_5566_7788), OutputKind::CanaryLeak),
        ("openai", format!("sk-proj-{}", "Ab3dEf6hIj9kLmN0pQr-StU_vWxYz12".repeat(4)), OutputKind::ApiKey),
        ("anthropic", format!("sk-ant-api03-{}", "x9Yz8-Wv7_Ut6".repeat(7)), OutputKind::ApiKey),
        ("google", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe".to_owned(), OutputKind::ApiKey),
        ("github", "ghp_16C7e42F292c6912E7710c838347Ae178B4a".to_owned(), OutputKind::ApiKey),
        ("github_pat", format!("github_pat_11ABCDEFG0{}", "aB3_cD4eF5gH6".repeat(6)), OutputKind::ApiKey),
        ("slack", "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".to_owned(), OutputKind::ApiKey),
        ("stripe", "sk_live_51H8aZ2eZvKYlo2C0aBcDeFgHiJkLmNoP".to_owned(), OutputKind::ApiKey),
        ("aws", "AKIAIOSFODNN7EXAMPLE".to_owned(), OutputKind::AwsKey),
        ("pem", PEM.to_owned(), OutputKind::PrivateKey),
        ("jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".to_owned(), OutputKind::Jwt),
        ("email", "jane.doe+news@mail.example.co.uk".to_owned(), OutputKind::Email),
        ("phone_intl", "+49 30 1234 5678".to_owned(), OutputKind::Phone),
        ("phone_us", "(415) 555-0132".to_owned(), OutputKind::Phone),
        ("card", "4111 1111 1111 1111".to_owned(), OutputKind::CardNumber),
        ("iban", "DE89 3704 0044 0532 0130 00".to_owned(), OutputKind::Iban),
    ]
}

fn rules() -> OutputRules {
    OutputRules {
        canaries: vec![canary(0x1234_5678_9abc_def0_1122_3344_5566_7788)],
        ..OutputRules::default()
    }
}

/// Streams `chunks` through a filter, checking the hold-back bound after every push.
fn stream(chunks: &[&str], rules: &OutputRules) -> Filtered {
    let mut f = OutputFilter::new(rules);
    let mut out = Filtered::default();
    for c in chunks {
        let r = f.push(c);
        assert!(
            f.pending.len() <= f.window(),
            "held back {} > window {}",
            f.pending.len(),
            f.window()
        );
        out.text.push_str(&r.text);
        out.findings.extend(r.findings);
    }
    let r = f.finish();
    out.text.push_str(&r.text);
    out.findings.extend(r.findings);
    out
}

fn boundaries(s: &str) -> Vec<usize> {
    (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect()
}

#[test]
fn every_kind_is_redacted_in_context() {
    for (name, secret, kind) in samples() {
        let text = format!("Sure — here it is: {secret}. Anything else, señor?");
        let out = redact(&text, &rules());
        assert!(
            out.text
                .contains(&format!("{}. Anything", kind.redaction())),
            "{name} not redacted, or the full stop after it taken: {}",
            out.text
        );
        assert!(
            !out.text.contains(&secret[..secret.len().min(24)]),
            "{name} leaked: {}",
            out.text
        );
        assert!(
            out.findings.iter().any(|f| f.kind == kind),
            "{name} not reported"
        );
        let f = out.findings.iter().find(|f| f.kind == kind).unwrap();
        assert!(
            out.text[f.offset..].starts_with(&kind.redaction()),
            "{name}: offset points at the marker"
        );
    }
}

#[test]
fn every_kind_caught_at_every_split_point() {
    for (name, secret, kind) in samples() {
        let text = format!("a «{secret}» b");
        let whole = redact(&text, &rules());
        assert!(whole.findings.iter().any(|f| f.kind == kind), "{name}");
        for i in boundaries(&text) {
            let got = stream(&[&text[..i], &text[i..]], &rules());
            assert_eq!(got, whole, "{name} split at {i}");
        }
    }
}

#[test]
fn char_by_char_and_three_way_splits_equal_the_whole() {
    let text: String = samples()
        .iter()
        .map(|(_, s, _)| format!("x {s} — y\n"))
        .collect();
    let whole = redact(&text, &rules());
    assert_eq!(whole.findings.len(), samples().len(), "{}", whole.text);
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(stream(&refs, &rules()), whole, "one char per chunk");
    let b = boundaries(&text);
    let mut seed = 0x9e37_79b9u64;
    for _ in 0..400 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let i = b[(seed >> 33) as usize % b.len()];
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = b[(seed >> 33) as usize % b.len()];
        let (i, j) = (i.min(j), i.max(j));
        assert_eq!(
            stream(&[&text[..i], &text[i..j], &text[j..]], &rules()),
            whole,
            "split {i},{j}"
        );
    }
}

#[test]
fn benign_text_passes_untouched_and_is_not_held_beyond_window() {
    let text = "The meeting is on 2024-01-15 at 10:30; version 1.2.3; order #123456; \
                call extension 4411. Task-management-system-design is the doc. "
        .repeat(20);
    let out = redact(&text, &rules());
    assert_eq!(out.text, text);
    assert!(out.findings.is_empty());
    let mut f = OutputFilter::new(&rules());
    let r = f.push(&text);
    assert_eq!(
        r.text.len(),
        text.len() - f.window(),
        "holds back exactly the window"
    );
}

#[test]
fn invalid_checksums_are_not_redacted() {
    let card = redact("card 4111 1111 1111 1112 ok", &rules());
    assert!(card.findings.is_empty(), "{:?}", card.findings);
    // (Digits inside an IBAN with a bad checksum may still pass Luhn by chance: 1 in 10.)
    let iban = redact("iban DE89 3704 0044 0532 0130 01 ok", &rules());
    assert!(
        iban.findings.iter().all(|f| f.kind != OutputKind::Iban),
        "{:?}",
        iban.findings
    );
}

#[test]
fn pem_without_end_is_dropped_to_the_end_of_stream() {
    let text = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nmore lines";
    let out = redact(text, &rules());
    assert_eq!(out.text, "key:\n[REDACTED:private_key]");
}

#[test]
fn disabled_rules_pass_through_without_holding_back() {
    let rules = OutputRules {
        canaries: vec![],
        secrets: false,
        pii: false,
        window: 64,
    };
    let mut f = OutputFilter::new(&rules);
    assert_eq!(f.push("jane@example.com").text, "jane@example.com");
}

#[test]
fn long_canary_raises_the_window() {
    let c = format!("canary-{}", "z".repeat(100));
    let f = OutputFilter::new(&OutputRules {
        canaries: vec![c.clone()],
        ..OutputRules::default()
    });
    assert!(f.window() >= c.len());
}

#[test]
fn canary_format() {
    let c = canary(u128::MAX);
    assert_eq!(c.len(), "sluice-canary-".len() + 26);
    assert_ne!(canary(1), canary(2));
}

#[test]
fn a_full_stop_after_a_token_survives_every_split() {
    let jwt = samples()
        .into_iter()
        .find(|(n, _, _)| *n == "jwt")
        .unwrap()
        .1;
    for secret in [jwt.as_str(), "jane.doe@mail.example.com"] {
        let text = format!("Send it to {secret}. Next line.");
        let whole = redact(&text, &rules());
        assert!(whole.text.ends_with("]. Next line."), "{}", whole.text);
        for i in boundaries(&text) {
            assert_eq!(
                stream(&[&text[..i], &text[i..]], &rules()),
                whole,
                "split at {i}"
            );
        }
    }
}

#[test]
fn a_run_of_dots_after_a_token_is_not_held_past_the_window() {
    let r = OutputRules {
        pii: true,
        ..rules()
    };
    let mut f = OutputFilter::new(&r);
    let mut out = f.push("mail jane@example.com").text;
    for _ in 0..500 {
        out.push_str(&f.push(".").text);
        assert!(f.pending.len() <= f.window(), "held {}", f.pending.len());
    }
    out.push_str(&f.finish().text);
    assert_eq!(out, format!("mail [REDACTED:email]{}", ".".repeat(500)));
}
