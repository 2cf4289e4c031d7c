//! The fetch itself: check the URL, send one GET through the guarded client, refuse what is
//! not text or too long, and read at most `max_bytes` of the body.

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use url::Url;

use crate::error::FetchError;
use crate::policy::{FetchPolicy, PolicyError, Rules};
use crate::redirect;
use crate::resolver::{GuardedResolver, Lookup, system_lookup};

const USER_AGENT: &str = concat!("sluice-fetch/", env!("CARGO_PKG_VERSION"));

/// Fetches URLs under one [`FetchPolicy`]. Cheap to clone: clones share the connection
/// pool.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    rules: Arc<Rules>,
    max_bytes: usize,
}

/// A response the policy let through. Any status is an answer (a 404 page is still text
/// the agent may want); only a redirect is followed rather than returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    /// The URL finally answered, after redirects.
    pub url: String,
    pub content_type: Option<String>,
    /// The body as UTF-8, invalid sequences replaced (whatever charset was declared).
    pub body: String,
    /// The body went on past `max_bytes` and was cut there.
    pub truncated: bool,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Fetcher, PolicyError> {
        Fetcher::with_lookup(policy, system_lookup())
    }

    /// As [`Fetcher::new`], names resolved by `lookup`: tests stub DNS with it.
    pub(crate) fn with_lookup(policy: FetchPolicy, lookup: Lookup) -> Result<Fetcher, PolicyError> {
        let rules = Arc::new(Rules::from_policy(&policy)?);
        let client = reqwest::Client::builder()
            // Every name goes through the guard; IP literals are checked by `Rules`.
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&rules), lookup)))
            .redirect(redirect::policy(Arc::clone(&rules), policy.max_redirects))
            // A proxy from HTTP_PROXY would resolve and connect for us, past the guard.
            .no_proxy()
            // The next hop need not learn where the agent came from.
            .referer(false)
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(PolicyError::Client)?;
        Ok(Fetcher {
            client,
            rules,
            max_bytes: policy.max_bytes,
        })
    }

    /// GETs `url` if the policy allows it and every redirect on the way.
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        self.rules
            .check_url(&url)
            .map_err(FetchError::from_refusal)?;
        let host = url.host_str().unwrap_or_default().to_owned();

        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(e, &host))?;

        // Every redirect the policy judged was followed or failed; one still here had a
        // `Location` that is not an http(s) URL (`file:`, `data:`, garbage), never judged.
        if response.status().is_redirection() && response.headers().contains_key(LOCATION) {
            let host = response.url().host_str().unwrap_or_default();
            return Err(FetchError::RedirectRefused(format!(
                "{host} redirected to a location that is not an http(s) URL"
            )));
        }
        let content_type = match response.headers().get(CONTENT_TYPE) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(text) if is_text(text) => Some(text.to_owned()),
                Ok(other) => return Err(FetchError::ContentTypeNotAllowed(other.to_owned())),
                Err(_) => return Err(FetchError::ContentTypeNotAllowed("(not ASCII)".into())),
            },
        };
        if let Some(length) = response.content_length()
            && length > u64::try_from(self.max_bytes).unwrap_or(u64::MAX)
        {
            return Err(FetchError::TooLarge {
                length,
                max: self.max_bytes,
            });
        }

        let status = response.status().as_u16();
        let final_url = response.url().to_string();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::from_reqwest(e, &host))?
        {
            let room = self.max_bytes.saturating_sub(body.len());
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        // The rest of a truncated body is not read: dropping the response closes it.
        Ok(Fetched {
            status,
            url: final_url,
            content_type,
            body: decode(body, truncated),
            truncated,
        })
    }
}

/// Text an agent can read: `text/*`, JSON, XML (and `+json`/`+xml` types such as
/// `application/problem+json` or an Atom feed). Parameters such as `charset` are ignored.
fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    match kind {
        "text" => !subtype.is_empty(),
        "application" => {
            matches!(subtype, "json" | "xml")
                || subtype.len() > 5 && (subtype.ends_with("+json") || subtype.ends_with("+xml"))
        }
        _ => false,
    }
}

/// UTF-8, lossily. A character the cut split in two is dropped rather than shown as U+FFFD.
fn decode(mut bytes: Vec<u8>, truncated: bool) -> String {
    if truncated {
        let cut = incomplete_tail(&bytes);
        bytes.truncate(bytes.len() - cut);
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// How many bytes at the end start a UTF-8 character that does not finish.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: the character starts further back
        }
        let needed = match byte {
            0xf0..=0xff => 4,
            0xe0..=0xef => 3,
            0xc0..=0xdf => 2,
            _ => 1,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_are_recognised() {
        for ok in [
            "text/plain",
            "text/html; charset=utf-8",
            "TEXT/CSV",
            "application/json",
            "application/json; charset=UTF-8",
            "application/problem+json",
            "application/vnd.api+json",
            "application/xml",
            "application/atom+xml",
        ] {
            assert!(is_text(ok), "{ok} is text");
        }
        for refused in [
            "image/png",
            "application/octet-stream",
            "application/pdf",
            "application/zip",
            "application/+json",
            "application/jsonx",
            "video/mp4",
            "text",
            "text/",
            "",
            "multipart/form-data",
        ] {
            assert!(!is_text(refused), "{refused} is not text");
        }
    }

    #[test]
    fn a_character_split_by_the_cut_is_dropped() {
        let text = "aé€😀";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let decoded = decode(bytes[..cut].to_vec(), true);
            assert!(text.starts_with(&decoded), "cut at {cut}: {decoded:?}");
            assert!(!decoded.contains('\u{fffd}'), "cut at {cut}: {decoded:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        assert_eq!(decode(b"ok \xff done".to_vec(), false), "ok \u{fffd} done");
        assert_eq!(
            decode(b"end \xe2\x82".to_vec(), false),
            "end \u{fffd}",
            "not truncated: kept"
        );
    }

    fn policy(hosts: &[&str], networks: &[&str]) -> FetchPolicy {
        FetchPolicy {
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allow_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
            ..FetchPolicy::default()
        }
    }

    #[tokio::test]
    async fn a_name_answering_public_and_private_is_refused_before_connecting() {
        let lookup = crate::resolver::tests::stub(vec![vec!["93.184.215.14", "127.0.0.1"]]);
        let fetcher = Fetcher::with_lookup(policy(&["rebind.test"], &[]), lookup).unwrap();
        let err = fetcher.get("http://rebind.test/").await.unwrap_err();
        assert!(
            matches!(&err, FetchError::AddressBlocked { host, range: "loopback" } if host == "rebind.test"),
            "the resolver's refusal should be reported as such, got {err:?}"
        );
    }

    #[tokio::test]
    async fn each_redirect_hop_is_resolved_through_the_guard() {
        use axum::{Router, response::Redirect, routing::get};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hop = format!("http://hop.test:{port}/");
        let app = Router::new().route("/", get(move || async move { Redirect::temporary(&hop) }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // start.test is the local server; hop.test answers with it too, and with a private
        // address that no connection may be made to.
        let lookup: Lookup = Arc::new(|host: String| {
            let ips = if host == "start.test" {
                vec!["127.0.0.1"]
            } else {
                vec!["127.0.0.1", "10.0.0.7"]
            };
            let addrs = ips
                .iter()
                .map(|ip| std::net::SocketAddr::new(ip.parse().unwrap(), 0))
                .collect();
            Box::pin(async move { Ok(addrs) })
        });
        let hosts = [format!("start.test:{port}"), format!("hop.test:{port}")];
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let fetcher = Fetcher::with_lookup(policy(&hosts, &["127.0.0.1/32"]), lookup).unwrap();
        let err = fetcher
            .get(&format!("http://start.test:{port}/"))
            .await
            .unwrap_err();
        server.abort();
        assert!(
            matches!(&err, FetchError::AddressBlocked { host, range: "private" } if host == "hop.test"),
            "the hop's name should be refused by the resolver, got {err:?}"
        );
    }
}
