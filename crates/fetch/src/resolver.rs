//! The only DNS the fetch client uses: it resolves a name and hands the HTTP stack the
//! addresses only if every one of them may be reached.
//!
//! Checking and connecting are one step: the addresses checked here are the very ones the
//! connector dials, so a name that answers "public" to a check and "private" to the connect
//! (DNS rebinding) has nothing to exploit. The whole answer is refused if any address is
//! blocked, rather than filtered: an answer that mixes public and private addresses is a
//! rebinding attempt or a misconfiguration, and either way not something to half-trust.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::policy::Rules;

/// What a lookup returns: the addresses of a name (ports are ignored and replaced).
pub(crate) type LookupFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// How a name is looked up: the system resolver, or a stub in tests.
pub(crate) type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// The system resolver (getaddrinfo on a blocking thread, as tokio does it).
pub(crate) fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// A name resolved to an address the policy refuses. The address itself is not kept, so
/// that no message says where an internal name points.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to an address in the {range} range, which fetches may not reach")]
pub(crate) struct BlockedAnswer {
    pub(crate) host: String,
    pub(crate) range: &'static str,
}

pub(crate) struct GuardedResolver {
    rules: Arc<Rules>,
    lookup: Lookup,
}

impl GuardedResolver {
    pub(crate) fn new(rules: Arc<Rules>, lookup: Lookup) -> GuardedResolver {
        GuardedResolver { rules, lookup }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let answer = (self.lookup)(host.clone());
        let rules = Arc::clone(&self.rules);
        Box::pin(async move {
            let addrs = answer.await?;
            if addrs.is_empty() {
                let none = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no addresses"));
                return Err(none.into());
            }
            for addr in &addrs {
                if let Err(range) = rules.check_address(addr.ip()) {
                    return Err(BlockedAnswer { host, range }.into());
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;

    use super::*;
    use crate::FetchPolicy;

    /// A lookup that gives `answers` in turn, one per call, the last one again once used up.
    pub(crate) fn stub(answers: Vec<Vec<&str>>) -> Lookup {
        let answers: Vec<Vec<SocketAddr>> = answers
            .into_iter()
            .map(|ips| {
                ips.into_iter()
                    .map(|ip| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))
                    .collect()
            })
            .collect();
        let next = Arc::new(Mutex::new(0usize));
        Arc::new(move |_host: String| {
            let mut i = next.lock().unwrap();
            let answer = answers[(*i).min(answers.len() - 1)].clone();
            *i += 1;
            Box::pin(async move { Ok(answer) })
        })
    }

    fn resolver(networks: &[&str], lookup: Lookup) -> GuardedResolver {
        let policy = FetchPolicy {
            allow_hosts: vec!["example.test".into()],
            allow_networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
            ..FetchPolicy::default()
        };
        GuardedResolver::new(Arc::new(Rules::from_policy(&policy).unwrap()), lookup)
    }

    async fn resolve(r: &GuardedResolver) -> Result<Vec<SocketAddr>, String> {
        match r.resolve("example.test".parse().unwrap()).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => {
                let blocked = e.downcast_ref::<BlockedAnswer>().expect("a BlockedAnswer");
                Err(blocked.range.to_owned())
            }
        }
    }

    #[tokio::test]
    async fn public_answer_is_passed_through_unchanged() {
        let r = resolver(&[], stub(vec![vec!["93.184.215.14", "2606:2800:21f::1"]]));
        let addrs = resolve(&r).await.unwrap();
        let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        assert_eq!(
            ips,
            ["93.184.215.14", "2606:2800:21f::1"],
            "exactly what was checked"
        );
    }

    #[tokio::test]
    async fn rebinding_from_public_to_private_is_refused_on_the_second_lookup() {
        let r = resolver(&[], stub(vec![vec!["93.184.215.14"], vec!["10.0.0.7"]]));
        assert!(resolve(&r).await.is_ok(), "the first answer is public");
        assert_eq!(
            resolve(&r).await,
            Err("private".into()),
            "each lookup is checked"
        );
    }

    #[tokio::test]
    async fn one_blocked_address_refuses_the_whole_answer() {
        for answer in [
            vec!["93.184.215.14", "127.0.0.1"],
            vec!["169.254.169.254", "93.184.215.14"],
            vec!["2606:2800:21f::1", "::ffff:192.168.0.1"],
        ] {
            let r = resolver(&[], stub(vec![answer.clone()]));
            assert!(
                resolve(&r).await.is_err(),
                "{answer:?} should be refused whole"
            );
        }
    }

    #[tokio::test]
    async fn allow_networks_let_their_addresses_through() {
        let r = resolver(&["127.0.0.1/32"], stub(vec![vec!["127.0.0.1"]]));
        assert!(resolve(&r).await.is_ok());
        let r = resolver(&["127.0.0.1/32"], stub(vec![vec!["127.0.0.1", "::1"]]));
        assert_eq!(
            resolve(&r).await,
            Err("loopback".into()),
            "::1 is not in the network"
        );
    }

    #[tokio::test]
    async fn an_empty_answer_is_an_error() {
        let r = resolver(&[], stub(vec![vec![]]));
        assert!(r.resolve("example.test".parse().unwrap()).await.is_err());
    }
}
