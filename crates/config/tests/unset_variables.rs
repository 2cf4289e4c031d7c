//! `${VAR}`s that are not set are all reported, each with its field path, together with
//! every other problem of the file (vector's way: every problem at once).

use sluice_config::Config;

const TEXT: &str = r#"
[[keys]]
name = "dev"
key = "${UNSET_GATEWAY_KEY}"

[providers.openai]
kind = "openai"
api_keys = ["${UNSET_OPENAI_KEY}"]
headers = { "X-Title" = "${UNSET_TITLE}" }

[providers.az]
kind = "azure"
base_url = "https://${UNSET_RESOURCE}.openai.azure.com"
api_keys = ["key-set-in-file"]

[models.smart]
chain = ["openai:gpt-4o", "nowhere:m"]

[routing]
backoff_base_ms = 9000
backoff_max_ms = 10
"#;

#[test]
fn every_unset_variable_and_every_other_problem_is_reported() {
    let err = Config::parse(TEXT, &|_| None).unwrap_err();
    let expected = [
        "keys[0].key: environment variable UNSET_GATEWAY_KEY is not set",
        "providers.openai.api_keys[0]: environment variable UNSET_OPENAI_KEY is not set",
        "providers.openai.headers.X-Title: environment variable UNSET_TITLE is not set",
        "providers.az.base_url: environment variable UNSET_RESOURCE is not set",
        "providers.az.api_version: required for kind `azure`",
        "models.smart.chain[1]: provider `nowhere` is not defined",
        "routing.backoff_base_ms: must not exceed routing.backoff_max_ms",
    ];
    for problem in expected {
        assert!(
            err.problems.iter().any(|p| p.starts_with(problem)),
            "`{problem}` missing from:\n{err}"
        );
    }
    assert_eq!(
        err.problems.len(),
        expected.len(),
        "nothing else, and nothing twice (an empty key is not also `too short`):\n{err}"
    );

    // With the variables set, the other problems stay.
    let env = |name: &str| Some(format!("value-of-{name}"));
    let err = Config::parse(TEXT, &env).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
    assert!(err.problems.iter().all(|p| !p.contains("not set")), "{err}");
}
