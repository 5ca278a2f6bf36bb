//! Egress proxies chosen exactly as containerd chooses them: containerd's registry client
//! uses Go's `http.ProxyFromEnvironment`, i.e. `golang.org/x/net/http/httpproxy`
//! (`FromEnvironment`, `parseProxy`, `useProxy`, `config.init`), read once per process.
//! reqwest's own environment handling differs (it reads `ALL_PROXY`, and `.example.com`
//! there also matches `example.com`), so pullgate decides with Go's rules and hands reqwest
//! the answer.

use std::net::IpAddr;

use reqwest::Url;

use super::guard::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy address {value:?} in {variable}: {reason}")]
    Invalid {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "{variable} names a {scheme} proxy ({host}); pullgate reaches registries through http:// and https:// proxies only"
    )]
    Unsupported {
        variable: &'static str,
        scheme: String,
        host: String,
    },
}

/// What Go's `ProxyFromEnvironment` answers for one request URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<'a> {
    Direct,
    Via(&'a Url),
    /// The request fails (Go's CGI guard).
    Refused(&'static str),
}

/// The proxy settings of this process (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`).
#[derive(Clone, Default)]
pub struct ProxyRules {
    http: Option<Url>,
    https: Option<Url>,
    /// `REQUEST_METHOD` is set: Go refuses `HTTP_PROXY` in a CGI environment.
    cgi: bool,
    no_proxy: NoProxy,
}

impl std::fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Proxy URLs may carry a password: print hosts only.
        let host = |u: &Option<Url>| u.as_ref().map(|u| u.host_str().unwrap_or("").to_string());
        f.debug_struct("ProxyRules")
            .field("http", &host(&self.http))
            .field("https", &host(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxyRules {
    /// Read this process's environment as Go's `httpproxy.FromEnvironment` does.
    pub fn from_env() -> Result<Self, ProxyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the variables through `lookup`: the upper-case name first, then the
    /// lower-case one; an empty value counts as unset (`getEnvAny`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let get = |upper: &'static str, lower: &'static str| {
            [upper, lower]
                .into_iter()
                .find_map(|name| lookup(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
        };
        Self::new(
            get("HTTP_PROXY", "http_proxy"),
            get("HTTPS_PROXY", "https_proxy"),
            get("NO_PROXY", "no_proxy")
                .map(|(_, v)| v)
                .unwrap_or_default(),
            lookup("REQUEST_METHOD").is_some_and(|v| !v.is_empty()),
        )
    }

    /// Rules from explicit values: `(variable name, value)` for each proxy.
    pub fn new(
        http: Option<(&'static str, String)>,
        https: Option<(&'static str, String)>,
        no_proxy: String,
        cgi: bool,
    ) -> Result<Self, ProxyError> {
        let parse =
            |p: Option<(&'static str, String)>| p.map(|(var, v)| parse_proxy(var, &v)).transpose();
        Ok(Self {
            http: parse(http)?,
            https: parse(https)?,
            cgi,
            no_proxy: NoProxy::parse(&no_proxy),
        })
    }

    /// No proxy at all.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// Hosts of the configured proxies: the SSRF guard must let pullgate reach them
    /// whatever their address.
    pub fn proxy_hosts(&self) -> Vec<String> {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .filter_map(|u| u.host_str().map(str::to_string))
            .collect()
    }

    /// `proxyForURL`: the proxy a request to `url` goes through, if any.
    pub fn proxy_for(&self, url: &Url) -> Option<&Url> {
        match self.choose(url) {
            Choice::Via(proxy) => Some(proxy),
            Choice::Direct | Choice::Refused(_) => None,
        }
    }

    /// Go's full answer, including its refusal to use `HTTP_PROXY` under CGI.
    pub fn choose(&self, url: &Url) -> Choice<'_> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        };
        let Some(proxy) = proxy else {
            return Choice::Direct;
        };
        if url.scheme() == "http" && self.cgi {
            return Choice::Refused(
                "refusing to use HTTP_PROXY value in CGI environment; see golang.org/s/cgihttpproxy",
            );
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Choice::Direct;
        };
        if self.use_proxy(host, port) {
            Choice::Via(proxy)
        } else {
            Choice::Direct
        }
    }

    /// `useProxy`: never for localhost or loopback, then the `NO_PROXY` matchers.
    fn use_proxy(&self, host: &str, port: u16) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare == "localhost" {
            return false;
        }
        // netip unmaps IPv4-mapped addresses: ::ffff:127.0.0.1 is loopback.
        let ip = bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return false;
        }
        !self.no_proxy.matches(&bare.to_ascii_lowercase(), port, ip)
    }
}

/// `parseProxy` (Go 1.23+): a value that does not parse as a URL with a scheme and a
/// host is tried again with `http://` in front. pullgate then carries http:// and
/// https:// proxies; anything else (SOCKS) is refused at start-up, never ignored.
fn parse_proxy(variable: &'static str, value: &str) -> Result<Url, ProxyError> {
    let direct = Url::parse(value)
        .ok()
        .filter(|u| u.has_host() && !u.scheme().is_empty());
    let url = match direct {
        Some(u) => u,
        None => Url::parse(&format!("http://{value}"))
            .ok()
            .filter(Url::has_host)
            .ok_or_else(|| ProxyError::Invalid {
                variable,
                value: redact(value),
                reason: "not a URL".to_string(),
            })?,
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProxyError::Unsupported {
            variable,
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
        });
    }
    Ok(url)
}

/// A proxy value for an error message: its password never prints.
fn redact(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => value.to_string(),
    }
}

/// `NO_PROXY`, parsed as `httpproxy.config.init` does.
#[derive(Debug, Clone, Default)]
struct NoProxy {
    all: bool,
    cidrs: Vec<Cidr>,
    /// `(ip, port)`; an empty port matches any.
    ips: Vec<(IpAddr, Option<u16>)>,
    domains: Vec<DomainMatch>,
}

#[derive(Debug, Clone)]
struct DomainMatch {
    /// With its leading dot: `.example.com`.
    suffix: String,
    port: Option<u16>,
    /// Written without a leading dot (or `*.`): also matches the domain itself.
    match_host: bool,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut out = NoProxy::default();
        for entry in list.split(',') {
            let p = entry.trim().to_ascii_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return NoProxy {
                    all: true,
                    ..NoProxy::default()
                };
            }
            if p.contains('/') {
                if let Ok(cidr) = p.parse::<Cidr>() {
                    out.cidrs.push(cidr);
                }
                // Go: a '/' entry that is not a CIDR falls through to the host rules and
                // can then only match a host name containing '/', i.e. nothing.
                continue;
            }
            let (host, port) = match split_host_port(&p) {
                Some((h, port)) => {
                    if h.is_empty() {
                        continue;
                    }
                    // A port Go cannot read never equals a request's port.
                    (h.to_string(), Some(port.parse::<u16>().unwrap_or(0)))
                }
                None => (p.clone(), None),
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                out.ips.push((ip, port));
                continue;
            }
            let host = host
                .strip_prefix('*')
                .filter(|h| h.starts_with('.'))
                .unwrap_or(&host);
            let (suffix, match_host) = match host.strip_prefix('.') {
                Some(_) => (host.to_string(), false),
                None => (format!(".{host}"), true),
            };
            // Go punycodes entries (`idnaASCII`), as hosts in URLs are.
            let suffix = if suffix.is_ascii() {
                suffix
            } else {
                Url::parse(&format!("http://x{suffix}"))
                    .ok()
                    .and_then(|u| u.host_str().map(|h| h[1..].to_string()))
                    .unwrap_or(suffix)
            };
            out.domains.push(DomainMatch {
                suffix,
                port,
                match_host,
            });
        }
        out
    }

    fn matches(&self, host: &str, port: u16, ip: Option<IpAddr>) -> bool {
        if self.all {
            return true;
        }
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        if let Some(ip) = ip
            && (self.cidrs.iter().any(|c| c.contains(ip))
                || self
                    .ips
                    .iter()
                    .any(|(i, p)| i.to_canonical() == ip && port_ok(p)))
        {
            return true;
        }
        // Domain entries never match an IP literal (x/net cde1dda9, CVE-2025-22870).
        ip.is_none()
            && self.domains.iter().any(|d| {
                (host.ends_with(&d.suffix) || (d.match_host && host == &d.suffix[1..]))
                    && port_ok(&d.port)
            })
    }
}

/// `net.SplitHostPort` for a NO_PROXY entry: `host:port` or `[v6]:port`; `None` when the
/// entry has no port (or is a bare IPv6 address).
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    (!host.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn rules(https: &str, no_proxy: &str) -> ProxyRules {
        ProxyRules::new(
            Some(("HTTP_PROXY", "http://proxy.internal:3128".into())),
            Some(("HTTPS_PROXY", https.into())),
            no_proxy.into(),
            false,
        )
        .expect("valid")
    }

    fn via(r: &ProxyRules, url: &str) -> Option<String> {
        r.proxy_for(&Url::parse(url).expect("url"))
            .map(|u| u.host_str().unwrap_or_default().to_string())
    }

    #[rstest]
    #[case::plain("https://registry.example.com/v2/", "", true)]
    #[case::localhost_never("https://localhost:5000/v2/", "", false)]
    #[case::loopback_never("https://127.0.0.5:5000/v2/", "", false)]
    #[case::loopback_v6_never("https://[::1]:5000/v2/", "", false)]
    #[case::star("https://registry.example.com/", "*", false)]
    #[case::domain_matches_itself("https://example.com/", "example.com", false)]
    #[case::domain_matches_subdomains("https://r.example.com/", "example.com", false)]
    #[case::leading_dot_only_subdomains("https://example.com/", ".example.com", true)]
    #[case::leading_dot_subdomain("https://r.example.com/", ".example.com", false)]
    #[case::star_dot_is_leading_dot("https://example.com/", "*.example.com", true)]
    #[case::star_dot_subdomain("https://r.example.com/", "*.example.com", false)]
    #[case::not_a_suffix_of_a_label("https://notexample.com/", "example.com", true)]
    #[case::case_insensitive("https://R.Example.COM/", "EXAMPLE.com", false)]
    #[case::port_must_match("https://r.example.com/", "example.com:8443", true)]
    #[case::port_matches("https://r.example.com:8443/", "example.com:8443", false)]
    #[case::default_port("https://r.example.com/", "example.com:443", false)]
    #[case::ip("https://10.1.2.3/", "10.1.2.3", false)]
    #[case::ip_port("https://10.1.2.3:5000/", "10.1.2.3:5000", false)]
    #[case::ip_other_port("https://10.1.2.3:5001/", "10.1.2.3:5000", true)]
    #[case::cidr("https://10.1.2.3/", "10.0.0.0/8", false)]
    #[case::cidr_does_not_match_names("https://ten.example/", "10.0.0.0/8", true)]
    #[case::list_with_spaces("https://b.io/", " a.io , b.io ", false)]
    fn no_proxy_follows_go(#[case] url: &str, #[case] no_proxy: &str, #[case] proxied: bool) {
        let r = rules("http://proxy.internal:3128", no_proxy);
        assert_eq!(
            via(&r, url).is_some(),
            proxied,
            "{url} with NO_PROXY={no_proxy:?}"
        );
    }

    #[test]
    fn scheme_selects_the_variable() {
        let r = ProxyRules::new(
            Some(("HTTP_PROXY", "http://plain:1".into())),
            Some(("HTTPS_PROXY", "http://secure:2".into())),
            String::new(),
            false,
        )
        .expect("valid");
        assert_eq!(via(&r, "http://r.io/").as_deref(), Some("plain"));
        assert_eq!(via(&r, "https://r.io/").as_deref(), Some("secure"));
        let only_http = ProxyRules::new(
            Some(("HTTP_PROXY", "http://plain:1".into())),
            None,
            String::new(),
            false,
        )
        .expect("valid");
        assert_eq!(via(&only_http, "https://r.io/"), None);
    }

    #[test]
    fn a_value_without_scheme_is_http() {
        let r = rules("proxy.corp:8080", "");
        let p = r
            .proxy_for(&Url::parse("https://r.io/").expect("url"))
            .expect("proxied");
        assert_eq!(
            (p.scheme(), p.host_str(), p.port()),
            ("http", Some("proxy.corp"), Some(8080))
        );
    }

    #[test]
    fn socks5_is_refused_with_a_reason() {
        let err = ProxyRules::new(
            None,
            Some(("HTTPS_PROXY", "socks5://user:secret@s.corp:1080".into())),
            String::new(),
            false,
        )
        .expect_err("unsupported");
        let text = err.to_string();
        assert!(
            text.contains("socks5") && !text.contains("secret"),
            "{text}"
        );
    }

    /// Every answer of Go's `http.ProxyFromEnvironment` in
    /// `tests/data/go/proxy-from-environment.jsonl` (made by `tests/go/proxytable`, Go
    /// 1.27), replayed. Deliberate difference: a proxy value Go would silently turn into
    /// nonsense, or a SOCKS proxy, is refused at start-up instead. Not replayable: Go's
    /// `localhost` exemption is case-sensitive on the host as written (`LOCALHOST` is
    /// proxied), while every URL pullgate sends has its host lower-cased by the parser.
    #[test]
    fn proxy_choice_matches_go_on_its_own_table() {
        let table = include_str!("../../tests/data/go/proxy-from-environment.jsonl");
        let mut replayed = 0;
        for line in table.lines().filter(|l| !l.trim().is_empty()) {
            let row: serde_json::Value = serde_json::from_str(line).expect("json line");
            let env: Vec<(String, String)> = row["env"]
                .as_array()
                .expect("env")
                .iter()
                .filter_map(|e| e.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let raw = row["url"].as_str().expect("url");
            if raw.contains("LOCALHOST") {
                continue;
            }
            let url = Url::parse(raw).expect("url parses");
            let answer = row["answer"].as_str().expect("answer");
            let rules = ProxyRules::from_lookup(|name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            });
            let rules = match rules {
                Ok(r) => r,
                Err(e) => {
                    let proxy = answer.strip_prefix("proxy ").unwrap_or_default();
                    assert!(
                        proxy.starts_with("socks5")
                            || proxy.starts_with("http://http")
                            || proxy.starts_with("http://:"),
                        "refused {env:?}: {e}, but Go uses {answer}"
                    );
                    continue;
                }
            };
            match (rules.choose(&url), answer) {
                (Choice::Direct, "DIRECT") => {}
                (Choice::Refused(why), a) if a == format!("error: {why}") => {}
                (Choice::Via(p), a) if a.starts_with("proxy ") => {
                    let go = Url::parse(&a["proxy ".len()..]).expect("go proxy url");
                    assert_eq!(
                        (
                            p.scheme(),
                            p.host_str(),
                            p.port_or_known_default(),
                            p.username(),
                            p.password()
                        ),
                        (
                            go.scheme(),
                            go.host_str(),
                            go.port_or_known_default(),
                            go.username(),
                            go.password()
                        ),
                        "{env:?} {url}"
                    );
                }
                (ours, go) => panic!("{env:?} {url}: pullgate {ours:?}, Go {go}"),
            }
            replayed += 1;
        }
        assert!(replayed >= 70, "only {replayed} rows replayed");
    }

    #[test]
    fn debug_never_prints_the_proxy_password() {
        let r = rules("http://user:hunter2@proxy.corp:8080", "");
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
