//! [`ForgeResolver`]: how the Gitea client finds the forge's address,
//! without a thread per request.
//!
//! ureq resolves the host before it looks for a pooled connection, and its
//! default resolver, given a timeout (this client always sets one), looks
//! the host up on a new thread each time: a thread created and joined on
//! every forge request, even for an IP address and even when a kept-alive
//! connection is then reused. This resolver answers an IP address at once,
//! and keeps a host name's addresses for [`KEEP`] after a lookup; the
//! lookups themselves are ureq's own (on a thread, within the timeout).
//! Failed lookups are not kept, so a name that did not resolve is looked up
//! again on the next request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are used after its lookup: about as
/// long as ureq keeps an idle connection, which goes on using the address
/// it was opened to.
pub const KEEP: Duration = Duration::from_secs(10);

/// The last lookup: `host:port`, when it was made, what it found.
type Kept = (String, Instant, ResolvedSocketAddrs);

/// See the module documentation.
#[derive(Default)]
pub struct ForgeResolver {
    lookup: DefaultResolver,
    kept: Mutex<Option<Kept>>,
}

impl std::fmt::Debug for ForgeResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForgeResolver").finish_non_exhaustive()
    }
}

impl Resolver for ForgeResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(authority) = uri.authority() else {
            return self.lookup.resolve(uri, config, timeout);
        };
        let port = authority.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        let Some(port) = port else {
            return self.lookup.resolve(uri, config, timeout);
        };
        let host = authority.host();
        // `[::1]` in a URI is the IPv6 address ::1.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let mut found = self.empty();
            found.push(SocketAddr::new(ip, port));
            return Ok(found);
        }
        let key = format!("{host}:{port}");
        {
            let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((name, at, addrs)) = kept.as_ref()
                && *name == key
                && at.elapsed() < KEEP
            {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((key, Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Timeout;

    fn resolve(r: &ForgeResolver, url: &str) -> Result<Vec<SocketAddr>, ureq::Error> {
        let uri: Uri = url.parse().unwrap();
        let timeout = NextTimeout {
            after: std::time::Duration::from_secs(5).into(),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &Config::default(), timeout)
            .map(|a| a.iter().copied().collect())
    }

    #[test]
    fn an_ip_address_is_its_own_answer_with_the_url_or_scheme_port() {
        let r = ForgeResolver::default();
        assert_eq!(
            resolve(&r, "http://127.0.0.1:3000/api/v1").unwrap(),
            vec!["127.0.0.1:3000".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/api/v1").unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://10.1.2.3/").unwrap(),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
        assert!(r.kept.lock().unwrap().is_none(), "nothing looked up");
    }

    #[test]
    fn a_name_is_looked_up_then_kept_for_its_host_and_port() {
        let r = ForgeResolver::default();
        let first = resolve(&r, "http://localhost:3000/x").unwrap();
        assert!(
            first
                .iter()
                .all(|a| a.port() == 3000 && a.ip().is_loopback())
        );
        let at = r.kept.lock().unwrap().as_ref().map(|k| (k.0.clone(), k.1));
        assert_eq!(at.as_ref().map(|k| k.0.as_str()), Some("localhost:3000"));
        assert_eq!(resolve(&r, "http://localhost:3000/y").unwrap(), first);
        let again = r.kept.lock().unwrap().as_ref().map(|k| (k.0.clone(), k.1));
        assert_eq!(
            again, at,
            "answered from what was kept, not looked up again"
        );
        // Another port is another lookup.
        let other = resolve(&r, "http://localhost:3001/").unwrap();
        assert!(other.iter().all(|a| a.port() == 3001));
    }

    #[test]
    fn a_failed_lookup_is_not_kept() {
        let r = ForgeResolver::default();
        assert!(resolve(&r, "http://nonexistent.invalid:3000/").is_err());
        assert!(r.kept.lock().unwrap().is_none());
    }
}
