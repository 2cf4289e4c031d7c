//! What an operator allows ([`FetchPolicy`]) and the checks made from it on every URL, the
//! first and each redirect's alike ([`Rules::check_url`]), and on every resolved address
//! ([`Rules::check_address`]).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

use crate::ip::blocked_range;

/// What a [`Fetcher`](crate::Fetcher) may reach and how much it may read.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Host names a fetch may go to: `api.example.com` (that host only), `*.example.org`
    /// (its subdomains, not `example.org` itself), each with an optional `:port`. Without a
    /// port an entry allows ports 80 and 443; with one, that port only. IP addresses do not
    /// belong here: see `allow_networks`.
    pub allow_hosts: Vec<String>,
    /// Networks let through although they are in a blocked range (an internal service, or
    /// `127.0.0.1/32` for a test server). A URL whose host is an IP literal is fetched only
    /// if the address is inside one of these, on any port; a host name still has to be in
    /// `allow_hosts`, and then every address it resolves to must be public or inside one.
    pub allow_networks: Vec<IpNet>,
    /// The most body bytes read. A `Content-Length` above it is refused before reading; a
    /// body without one is cut there and marked `truncated`.
    pub max_bytes: usize,
    /// The whole fetch, redirects and body included.
    pub timeout: Duration,
    /// Resolving and connecting, each hop.
    pub connect_timeout: Duration,
    /// Redirects followed; one more is `too_many_redirects`. Zero follows none.
    pub max_redirects: usize,
}

impl Default for FetchPolicy {
    /// Nothing allowed; a megabyte, 10 s in all, 5 s to connect, 5 redirects.
    fn default() -> FetchPolicy {
        FetchPolicy {
            allow_hosts: Vec::new(),
            allow_networks: Vec::new(),
            max_bytes: 1024 * 1024,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 5,
        }
    }
}

/// A [`FetchPolicy`] that cannot be used, or an HTTP client that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Every problem found, each prefixed with its field (`allow_hosts[2]: …`).
    #[error("invalid fetch policy: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("could not build the fetch client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The policy checked and normalised: host patterns parsed once, lowercased and in ASCII
/// (IDNA), as the `url` crate writes a URL's host.
#[derive(Debug)]
pub(crate) struct Rules {
    hosts: Vec<HostRule>,
    networks: Vec<IpNet>,
}

#[derive(Debug, PartialEq)]
struct HostRule {
    pattern: Pattern,
    /// `None`: 80 and 443.
    port: Option<u16>,
}

#[derive(Debug, PartialEq)]
enum Pattern {
    Exact(String),
    /// The suffix with its leading dot: `.example.org`.
    Subdomains(String),
}

/// Why a URL may not be fetched (or followed, for a redirect).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Scheme(String),
    Credentials,
    NoHost,
    HostNotAllowed(String),
    AddressBlocked {
        host: String,
        range: &'static str,
    },
    /// A redirect from https to plain http.
    Downgrade(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Scheme(scheme) => write!(f, "scheme `{scheme}` is not allowed"),
            Refusal::Credentials => f.write_str("URLs with credentials are not fetched"),
            Refusal::NoHost => f.write_str("the URL has no host"),
            Refusal::HostNotAllowed(host) => write!(f, "{host} is not in the fetch allowlist"),
            Refusal::AddressBlocked { host, range } => {
                write!(
                    f,
                    "{host} is in the {range} range, which fetches may not reach"
                )
            }
            Refusal::Downgrade(host) => write!(f, "{host}: https may not redirect to http"),
        }
    }
}

impl Rules {
    /// Checks `policy`, collecting every problem rather than the first.
    pub(crate) fn from_policy(policy: &FetchPolicy) -> Result<Rules, PolicyError> {
        let mut problems = Vec::new();
        let mut hosts = Vec::with_capacity(policy.allow_hosts.len());
        for (i, entry) in policy.allow_hosts.iter().enumerate() {
            match parse_host_rule(entry) {
                Ok(rule) => hosts.push(rule),
                Err(why) => problems.push(format!("allow_hosts[{i}]: `{entry}` {why}")),
            }
        }
        if policy.allow_hosts.is_empty() && policy.allow_networks.is_empty() {
            problems.push(
                "allow_hosts: empty, and so is allow_networks: nothing could be fetched".into(),
            );
        }
        if policy.max_bytes == 0 {
            problems.push("max_bytes: must be at least 1".into());
        }
        if policy.timeout.is_zero() {
            problems.push("timeout: must be more than zero".into());
        }
        if policy.connect_timeout.is_zero() {
            problems.push("connect_timeout: must be more than zero".into());
        }
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        Ok(Rules {
            hosts,
            networks: policy.allow_networks.clone(),
        })
    }

    /// Whether `url` may be requested: http(s), no credentials, and either a host name in
    /// the allowlist on an allowed port or an IP literal inside `allow_networks`. An IP
    /// literal has to be checked here because the HTTP stack connects to it without asking
    /// the resolver; a host name's addresses are checked by the resolver at connect time.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(Refusal::Scheme(scheme.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        let Some(host) = url.host() else {
            return Err(Refusal::NoHost);
        };
        let port = url.port_or_known_default().unwrap_or(0);
        match host {
            Host::Ipv4(v4) => self.check_literal(IpAddr::V4(v4), &host.to_string()),
            Host::Ipv6(v6) => self.check_literal(IpAddr::V6(v6), &host.to_string()),
            Host::Domain(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                if self.hosts.iter().any(|rule| rule.allows(name, port)) {
                    Ok(())
                } else {
                    Err(Refusal::HostNotAllowed(display_host(name, url.port())))
                }
            }
        }
    }

    fn check_literal(&self, ip: IpAddr, host: &str) -> Result<(), Refusal> {
        if self.networks.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => Err(Refusal::AddressBlocked {
                host: host.to_owned(),
                range,
            }),
            None => Err(Refusal::HostNotAllowed(host.to_owned())),
        }
    }

    /// Whether a resolved address may be connected to: public, or inside `allow_networks`.
    /// On refusal, the name of the blocked range.
    pub(crate) fn check_address(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.networks.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => Err(range),
            None => Ok(()),
        }
    }
}

impl HostRule {
    fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = match self.port {
            Some(allowed) => port == allowed,
            None => port == 80 || port == 443,
        };
        let host_ok = match &self.pattern {
            Pattern::Exact(exact) => host == exact,
            Pattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        };
        port_ok && host_ok
    }
}

fn display_host(name: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    }
}

/// `host`, `*.suffix`, either with `:port`. The error completes "`entry` …".
fn parse_host_rule(entry: &str) -> Result<HostRule, String> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err("is empty".into());
    }
    if entry.contains('/') {
        return Err("is not a host: write `host` or `host:port`, without scheme or path".into());
    }
    if entry.starts_with('[') || entry.matches(':').count() > 1 {
        return Err("is an IP address: those belong in allow_networks".into());
    }
    let (host, port) = match entry.split_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) if port != 0 => (host, Some(port)),
            _ => return Err(format!("has port `{port}`, not one from 1 to 65535")),
        },
        None => (entry, None),
    };
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if name.contains('*') {
        return Err("has a `*` other than a leading `*.`".into());
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let name = match Host::parse(name) {
        Ok(Host::Domain(name)) => name,
        Ok(Host::Ipv4(_) | Host::Ipv6(_)) => {
            return Err("is an IP address: those belong in allow_networks".into());
        }
        Err(e) => return Err(format!("is not a host name ({e})")),
    };
    if wildcard && !name.contains('.') {
        return Err("is a wildcard over a whole top-level domain".into());
    }
    let pattern = if wildcard {
        Pattern::Subdomains(format!(".{name}"))
    } else {
        Pattern::Exact(name)
    };
    Ok(HostRule { pattern, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(hosts: &[&str], networks: &[&str]) -> Rules {
        let policy = FetchPolicy {
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allow_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
            ..FetchPolicy::default()
        };
        Rules::from_policy(&policy).unwrap()
    }

    fn check(rules: &Rules, url: &str) -> Result<(), Refusal> {
        rules.check_url(&Url::parse(url).unwrap())
    }

    #[test]
    fn exact_entry_matches_that_host_only() {
        let r = rules(&["api.example.com"], &[]);
        assert_eq!(check(&r, "https://api.example.com/v1"), Ok(()));
        assert_eq!(
            check(&r, "http://API.Example.COM/"),
            Ok(()),
            "hosts are case-insensitive"
        );
        assert_eq!(
            check(&r, "https://api.example.com./"),
            Ok(()),
            "a trailing dot is the same host"
        );
        for url in [
            "https://example.com/",
            "https://x.api.example.com/",
            "https://api.example.com.evil.net/",
            "https://evilapi.example.com/",
        ] {
            assert!(
                matches!(check(&r, url), Err(Refusal::HostNotAllowed(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn wildcard_matches_subdomains_not_the_domain_itself() {
        let r = rules(&["*.example.org"], &[]);
        assert_eq!(check(&r, "https://docs.example.org/"), Ok(()));
        assert_eq!(check(&r, "https://a.b.example.org/"), Ok(()), "any depth");
        for url in [
            "https://example.org/",
            "https://badexample.org/",
            "https://example.org.evil.net/",
            "https://docs.example.org.evil.net/",
        ] {
            assert!(
                matches!(check(&r, url), Err(Refusal::HostNotAllowed(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn ports_default_to_80_and_443_unless_the_entry_names_one() {
        let r = rules(&["api.example.com", "*.example.org:8443"], &[]);
        assert_eq!(check(&r, "http://api.example.com/"), Ok(()));
        assert_eq!(check(&r, "https://api.example.com:443/"), Ok(()));
        assert_eq!(
            check(&r, "https://api.example.com:8443/"),
            Err(Refusal::HostNotAllowed("api.example.com:8443".into()))
        );
        assert_eq!(check(&r, "https://a.example.org:8443/"), Ok(()));
        assert!(
            check(&r, "https://a.example.org/").is_err(),
            "the entry names 8443 only"
        );
    }

    #[test]
    fn idn_entries_match_their_punycode() {
        let r = rules(&["bücher.example"], &[]);
        assert_eq!(check(&r, "https://xn--bcher-kva.example/"), Ok(()));
        assert_eq!(check(&r, "https://BÜCHER.example/"), Ok(()));
    }

    #[test]
    fn scheme_and_credentials_are_refused() {
        let r = rules(&["example.com"], &[]);
        assert_eq!(
            check(&r, "ftp://example.com/"),
            Err(Refusal::Scheme("ftp".into()))
        );
        assert_eq!(
            check(&r, "file:///etc/passwd"),
            Err(Refusal::Scheme("file".into()))
        );
        assert_eq!(
            check(&r, "http://u:p@example.com/"),
            Err(Refusal::Credentials)
        );
    }

    #[test]
    fn ip_literals_pass_only_inside_allow_networks() {
        let r = rules(&["example.com"], &["127.0.0.1/32", "2001:db8::/64"]);
        assert_eq!(
            check(&r, "http://127.0.0.1:9000/"),
            Ok(()),
            "any port inside a network"
        );
        assert_eq!(check(&r, "http://[2001:db8::5]/"), Ok(()));
        assert_eq!(
            check(&r, "http://127.0.0.2/"),
            Err(Refusal::AddressBlocked {
                host: "127.0.0.2".into(),
                range: "loopback"
            })
        );
        assert_eq!(
            check(&r, "http://8.8.8.8/"),
            Err(Refusal::HostNotAllowed("8.8.8.8".into())),
            "a public literal is not blocked, just not allowed"
        );
        assert!(matches!(
            check(&r, "http://[::ffff:127.0.0.1]/"),
            Err(Refusal::AddressBlocked {
                range: "loopback",
                ..
            })
        ));
    }

    #[test]
    fn resolved_addresses_pass_if_public_or_inside_allow_networks() {
        let r = rules(&["example.com"], &["10.1.0.0/16"]);
        assert_eq!(r.check_address("8.8.8.8".parse().unwrap()), Ok(()));
        assert_eq!(r.check_address("10.1.2.3".parse().unwrap()), Ok(()));
        assert_eq!(r.check_address("10.2.0.1".parse().unwrap()), Err("private"));
        assert_eq!(r.check_address("::1".parse().unwrap()), Err("loopback"));
    }

    #[test]
    fn bad_entries_are_all_reported_with_their_index() {
        let policy = FetchPolicy {
            allow_hosts: [
                "ok.example.com",
                "",
                "https://example.com/",
                "127.0.0.1",
                "[::1]:80",
                "0x7f.1",
                "*.com",
                "a.*.example.com",
                "*",
                "example.com:0",
                "example.com:http",
                "exa mple.com",
            ]
            .map(String::from)
            .to_vec(),
            max_bytes: 0,
            ..FetchPolicy::default()
        };
        let Err(PolicyError::Invalid(problems)) = Rules::from_policy(&policy) else {
            panic!("the policy should be refused");
        };
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "allow_hosts[1]",
                "allow_hosts[2]",
                "allow_hosts[3]",
                "allow_hosts[4]",
                "allow_hosts[5]",
                "allow_hosts[6]",
                "allow_hosts[7]",
                "allow_hosts[8]",
                "allow_hosts[9]",
                "allow_hosts[10]",
                "allow_hosts[11]",
                "max_bytes",
            ],
            "every bad entry is reported, not only the first: {problems:#?}"
        );
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let Err(PolicyError::Invalid(problems)) = Rules::from_policy(&FetchPolicy::default())
        else {
            panic!("nothing allowed should be refused");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
