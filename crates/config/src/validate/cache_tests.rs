//! `[cache]`: off by default, overrides per alias, and every mistake named with its path.

use std::time::Duration;

use crate::Config;
use crate::cache::{CacheMode, CacheScope, DEFAULT_MIN_SIMILARITY};

fn parse(text: &str) -> Result<Config, Vec<String>> {
    Config::parse(text, &|_| None).map_err(|e| e.problems)
}

const BASE: &str = r#"
[providers.openai]
kind = "openai"
api_keys = ["k"]
[models.smart]
chain = ["openai:gpt-4o"]
[models.fast]
chain = ["openai:gpt-4o-mini"]
"#;

#[test]
fn no_cache_section_caches_nothing() {
    let c = parse(BASE).unwrap().cache;
    assert!(!c.any());
    let p = c.policy("smart");
    assert_eq!((p.mode, p.scope), (CacheMode::Off, CacheScope::Key));
    assert_eq!(p.ttl, Duration::from_secs(3_600));
    assert_eq!(p.min_similarity, DEFAULT_MIN_SIMILARITY);
    assert_eq!(p.coalesce, Duration::from_secs(30));
}

#[test]
fn an_alias_overrides_the_default_field_by_field() {
    let c = parse(&format!(
        "{BASE}\n[cache]\nmode = \"exact\"\nttl_s = 60\nscope = \"user\"\n\
         [cache.models.fast]\nmode = \"semantic\"\nmin_similarity = 0.9\nttl_s = 7200\n\
         coalesce_s = 0\n"
    ))
    .unwrap()
    .cache;
    let smart = c.policy("smart");
    assert_eq!(
        (smart.mode, smart.scope),
        (CacheMode::Exact, CacheScope::User)
    );
    let fast = c.policy("fast");
    assert_eq!(
        (fast.mode, fast.scope),
        (CacheMode::Semantic, CacheScope::User)
    );
    assert_eq!(fast.ttl, Duration::from_secs(7_200));
    assert!((fast.min_similarity - 0.9).abs() < 1e-6);
    assert_eq!(fast.coalesce, Duration::ZERO);
    assert_eq!(smart.coalesce, Duration::from_secs(30));
    assert!(c.any() && c.any_semantic());
    assert_eq!(c.max_ttl(), Duration::from_secs(7_200));
}

#[test]
fn every_mistake_is_named() {
    let problems = parse(&format!(
        "{BASE}\n[cache]\nmode = \"always\"\nscope = \"tenant\"\nttl_s = 0\n\
         min_similarity = 1.5\ncoalesce_s = 601\nmax_entries = 0\nmax_bytes = 10\n\
         [cache.models.nope]\nmode = \"exact\"\n"
    ))
    .unwrap_err();
    for want in [
        "cache.mode: `always`",
        "cache.scope: `tenant`",
        "cache.ttl_s",
        "cache.min_similarity",
        "cache.coalesce_s",
        "cache.max_entries",
        "cache.max_bytes",
        "cache.max_answer_bytes",
        "cache.models.nope: no such model alias",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "{want} not in {problems:?}"
        );
    }
    let unknown = parse(&format!("{BASE}\n[cache]\nmodes = \"exact\"\n")).unwrap_err();
    assert!(unknown.iter().any(|p| p.contains("modes")), "{unknown:?}");
}
