//! Each redirect is a new URL an untrusted server chose, so it is checked like the first
//! one ([`Rules::check_url`]), and additionally may not leave https for http. A host name on
//! the new URL is then resolved through the guarded resolver like any other.

use std::sync::Arc;

use reqwest::redirect::{Attempt, Policy};
use url::Url;

use crate::policy::{Refusal, Rules};

/// A redirect the policy refused; its source is carried through reqwest's error so that
/// [`FetchError`](crate::FetchError) can report it as `redirect_refused`.
#[derive(Debug, thiserror::Error)]
#[error("redirect refused: {0}")]
pub(crate) struct RedirectRefused(pub(crate) Refusal);

#[derive(Debug, thiserror::Error)]
#[error("stopped after {0} redirects")]
pub(crate) struct TooManyRedirects(pub(crate) usize);

#[derive(Debug, thiserror::Error)]
pub(crate) enum RedirectError {
    #[error(transparent)]
    Refused(#[from] RedirectRefused),
    #[error(transparent)]
    TooMany(#[from] TooManyRedirects),
}

pub(crate) fn policy(rules: Arc<Rules>, max_redirects: usize) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        match judge(&rules, max_redirects, attempt.url(), attempt.previous()) {
            Ok(()) => attempt.follow(),
            Err(RedirectError::Refused(e)) => attempt.error(e),
            Err(RedirectError::TooMany(e)) => attempt.error(e),
        }
    })
}

/// Whether to follow a redirect to `next`. `previous` holds every URL requested so far,
/// the first one included.
pub(crate) fn judge(
    rules: &Rules,
    max_redirects: usize,
    next: &Url,
    previous: &[Url],
) -> Result<(), RedirectError> {
    if previous.len() > max_redirects {
        return Err(TooManyRedirects(max_redirects).into());
    }
    if next.scheme() == "http" && previous.iter().any(|url| url.scheme() == "https") {
        let host = next.host_str().unwrap_or_default().to_owned();
        return Err(RedirectRefused(Refusal::Downgrade(host)).into());
    }
    rules
        .check_url(next)
        .map_err(|refusal| RedirectRefused(refusal).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FetchPolicy;

    fn rules() -> Rules {
        let policy = FetchPolicy {
            allow_hosts: vec!["example.com".into(), "*.example.com".into()],
            allow_networks: vec!["127.0.0.1/32".parse().unwrap()],
            ..FetchPolicy::default()
        };
        Rules::from_policy(&policy).unwrap()
    }

    fn judge_urls(next: &str, previous: &[&str]) -> Result<(), RedirectError> {
        let previous: Vec<Url> = previous.iter().map(|u| Url::parse(u).unwrap()).collect();
        judge(&rules(), 3, &Url::parse(next).unwrap(), &previous)
    }

    fn refusal(next: &str, previous: &[&str]) -> Refusal {
        match judge_urls(next, previous) {
            Err(RedirectError::Refused(RedirectRefused(r))) => r,
            other => panic!("{next} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn allowed_hops_are_followed() {
        assert!(judge_urls("https://www.example.com/b", &["https://example.com/a"]).is_ok());
        assert!(
            judge_urls("https://example.com/b", &["http://example.com/a"]).is_ok(),
            "upgrade"
        );
        assert!(judge_urls("http://127.0.0.1:8080/", &["http://example.com/"]).is_ok());
    }

    #[test]
    fn https_to_http_is_refused_anywhere_in_the_chain() {
        let from = ["https://example.com/a", "https://www.example.com/b"];
        assert_eq!(
            refusal("http://example.com/c", &from),
            Refusal::Downgrade("example.com".into())
        );
        let from = ["https://example.com/", "http://127.0.0.1:1/"];
        assert!(matches!(
            refusal("http://example.com/", &from),
            Refusal::Downgrade(_)
        ));
    }

    #[test]
    fn hops_to_blocked_or_unlisted_places_are_refused() {
        let from = ["http://example.com/"];
        assert!(matches!(
            refusal("http://169.254.169.254/latest/meta-data", &from),
            Refusal::AddressBlocked {
                range: "cloud_metadata",
                ..
            }
        ));
        assert!(matches!(
            refusal("http://0x7f.0.0.2:8080/", &from),
            Refusal::AddressBlocked {
                range: "loopback",
                ..
            }
        ));
        assert!(matches!(
            refusal("http://127.0.0.2/", &from),
            Refusal::AddressBlocked { .. }
        ));
        assert!(matches!(
            refusal("http://[::1]/", &from),
            Refusal::AddressBlocked { .. }
        ));
        assert!(matches!(
            refusal("https://evil.net/", &from),
            Refusal::HostNotAllowed(_)
        ));
        assert!(matches!(
            refusal("ftp://example.com/", &from),
            Refusal::Scheme(_)
        ));
        assert!(matches!(
            refusal("file:///etc/passwd", &from),
            Refusal::Scheme(_)
        ));
        assert!(matches!(
            refusal("http://example.com:22/", &from),
            Refusal::HostNotAllowed(_)
        ));
    }

    #[test]
    fn the_limit_counts_redirects_not_requests() {
        let chain = [
            "http://example.com/0",
            "http://example.com/1",
            "http://example.com/2",
        ];
        assert!(
            judge_urls("http://example.com/3", &chain).is_ok(),
            "the third redirect"
        );
        let chain = [&chain[..], &["http://example.com/3"]].concat();
        assert!(matches!(
            judge_urls("http://example.com/4", &chain),
            Err(RedirectError::TooMany(TooManyRedirects(3)))
        ));
    }
}
