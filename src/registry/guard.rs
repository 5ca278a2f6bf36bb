//! The SSRF guard. A Pod spec chooses which hosts pullgate contacts, so anyone who can
//! create a Pod could point it at internal addresses. Link-local and cloud-metadata
//! addresses are refused by default, checked on the *resolved* addresses (a DNS name can
//! point anywhere), and operators can deny more ranges or allow named registries.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// An address range, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_string());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:169.254.169.254` is 169.254.169.254.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Link-local (where cloud metadata services live) and AWS's IPv6 metadata address.
pub fn default_denied() -> Vec<Cidr> {
    vec![
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
            prefix: 16,
        },
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
            prefix: 10,
        },
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)),
            prefix: 128,
        },
    ]
}

/// Which registry addresses may be contacted.
#[derive(Debug, Clone)]
pub struct AddressPolicy {
    denied: Vec<Cidr>,
    /// Registry host patterns (`*` within a label) contacted whatever they resolve to.
    allowed: Vec<String>,
    /// Exact hosts contacted whatever they resolve to (the egress proxies).
    trusted: Vec<String>,
}

impl Default for AddressPolicy {
    fn default() -> Self {
        Self {
            denied: default_denied(),
            allowed: Vec::new(),
            trusted: Vec::new(),
        }
    }
}

/// A refused address, carried through reqwest's error chain from the resolver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} resolves to {address}, in {range}, which pullgate refuses to contact")]
pub struct Blocked {
    pub host: String,
    pub address: IpAddr,
    pub range: Cidr,
}

impl AddressPolicy {
    /// The default ranges plus `extra`, except for hosts matching `allowed`.
    pub fn new(extra_denied: Vec<Cidr>, allowed: Vec<String>) -> Self {
        let mut denied = default_denied();
        denied.extend(extra_denied);
        Self {
            denied,
            allowed,
            trusted: Vec::new(),
        }
    }

    fn is_allowed_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self
            .trusted
            .iter()
            .any(|t| t.trim_start_matches('[').trim_end_matches(']') == host)
        {
            return true;
        }
        self.allowed.iter().any(|pattern| {
            pattern == host
                || crate::keyring::ImagePattern::parse(pattern)
                    .is_some_and(|p| p.matches_host(host))
        })
    }

    /// Check one address of `host`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Blocked> {
        if self.is_allowed_host(host) {
            return Ok(());
        }
        match self.denied.iter().find(|c| c.contains(address)) {
            Some(range) => Err(Blocked {
                host: host.to_string(),
                address: canonical(address),
                range: *range,
            }),
            None => Ok(()),
        }
    }

    /// Check a URL host that is an IP literal (those never reach the resolver).
    pub fn check_literal(&self, host: &str) -> Result<(), Blocked> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check(host, ip),
            Err(_) => Ok(()),
        }
    }
}

/// Why a proxied request's target may not be contacted.
#[derive(Debug)]
pub enum TargetError {
    Blocked(Blocked),
    /// The name does not resolve here, so its address cannot be checked.
    Unresolved(String),
}

impl AddressPolicy {
    /// Check the *target* of a request an egress proxy will carry: the proxy resolves the
    /// name, and our resolver only ever sees the proxy's, so resolve it here first. A
    /// host listed with `--allow-registry` is trusted by name.
    pub async fn check_target(&self, host: &str) -> Result<(), TargetError> {
        if self.is_allowed_host(host) {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check(host, ip).map_err(TargetError::Blocked);
        }
        let addrs = tokio::net::lookup_host((bare, 0))
            .await
            .map_err(|e| TargetError::Unresolved(e.to_string()))?;
        let mut any = false;
        for addr in addrs {
            any = true;
            self.check(host, addr.ip()).map_err(TargetError::Blocked)?;
        }
        if any {
            Ok(())
        } else {
            Err(TargetError::Unresolved("no address".into()))
        }
    }

    /// Let pullgate reach these hosts whatever their address: the egress proxies the
    /// operator configured.
    pub fn trust_hosts(&mut self, hosts: impl IntoIterator<Item = String>) {
        self.trusted.extend(hosts);
    }
}

/// The system resolver, refusing names with any address in a denied range (a name that
/// resolves to both a public and a metadata address is refused whole: no partial trust).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check(&host, addr.ip())?;
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Find a [`Blocked`] anywhere in an error's source chain.
pub fn blocked_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("169.254.169.254", true)]
    #[case("169.254.0.1", true)]
    #[case("169.255.0.1", false)]
    #[case("10.0.0.1", false)]
    #[case("fe80::1", true)]
    #[case("fd00:ec2::254", true)]
    #[case("fd00:ec2::253", false)]
    #[case("::ffff:169.254.169.254", true)]
    #[case("127.0.0.1", false)]
    fn default_policy_refuses_link_local_and_metadata(#[case] ip: &str, #[case] blocked: bool) {
        let policy = AddressPolicy::default();
        let ip: IpAddr = ip.parse().expect("ip");
        assert_eq!(policy.check("h", ip).is_err(), blocked, "{ip}");
    }

    #[test]
    fn operators_deny_more_and_allow_named_registries() {
        let policy = AddressPolicy::new(
            vec!["10.0.0.0/8".parse().expect("cidr")],
            vec!["mirror.internal".into()],
        );
        assert!(
            policy
                .check("r.example.com", "10.1.2.3".parse().expect("ip"))
                .is_err()
        );
        assert!(
            policy
                .check("mirror.internal", "10.1.2.3".parse().expect("ip"))
                .is_ok()
        );
        assert!(
            policy
                .check("mirror.internal", "169.254.169.254".parse().expect("ip"))
                .is_ok()
        );
    }

    #[rstest]
    #[case("10.0.0.0/8")]
    #[case("fd00::/8")]
    #[case("192.168.1.1")]
    fn cidrs_parse(#[case] s: &str) {
        assert!(s.parse::<Cidr>().is_ok());
    }

    #[rstest]
    #[case("10.0.0.0/33")]
    #[case("fd00::/129")]
    #[case("nope/8")]
    #[case("10.0.0.0/x")]
    fn bad_cidrs_are_rejected(#[case] s: &str) {
        assert!(s.parse::<Cidr>().is_err());
    }

    #[test]
    fn zero_prefix_matches_everything_of_its_family() {
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert!(!all.contains("::2".parse().expect("ip")));
    }
}
