//! Image references, parsed and normalized as the kubelet and containerd parse them.
//!
//! The grammar is `github.com/distribution/reference` v0.6.0 (with `go-digest` v1.0.0):
//! `ParseNormalizedNamed`, then `TagNameOnly`. The kubelet calls it in
//! `pkg/util/parsers/parsers.go` `ParseImageName` (Kubernetes 1.32 and later vendor v0.6.0),
//! and containerd parses the same string again with the same package in its CRI `PullImage`
//! (containerd 1.7.19 and later, every 2.x). Older parsers accept a strict subset of it:
//! v0.5.0 (Kubernetes 1.29–1.31, containerd 1.7.0–1.7.18) counts the registry in the
//! 255-character name limit, and `docker/distribution` v2.8.2 (Kubernetes 1.28, containerd 1.6)
//! also refuses IPv6 registries and an uppercase first component. Following v0.6.0 therefore
//! never calls invalid a reference that a supported kubelet would pull.
//! `tests/data/go/` holds what the Go code itself answers, and the tests replay it.
//!
//! Anything the kubelet would reject with `InvalidImageName` is a [`ReferenceError`] here, so
//! an invalid reference never reaches the network (distribution answers `500 {}` for an
//! uppercase repository, for example). [`Reference::parse_for_pull`] also refuses a registry
//! host that no pull can reach (a bracketed host that is no IPv6 address, a port above
//! 65535), so such a host is an invalid reference rather than a registry outage.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Docker Hub's canonical name, as references are normalized.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// `RepositoryNameTotalLengthMax` in distribution/reference v0.6.0: the path, without the
/// registry (v0.5.0 and docker/distribution counted the registry too).
const PATH_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;
/// `digest-hex := /[0-9a-fA-F]{32,}/` in the reference grammar.
const DIGEST_HEX_MIN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid repository name, cannot specify 64-byte hexadecimal strings")]
    HexIdentifier,
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("repository path must not be longer than {PATH_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid registry host {0:?}")]
    InvalidDomain(String),
    #[error("invalid repository path {0:?}")]
    InvalidPath(String),
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("unsupported digest algorithm {0:?} (only sha256, sha384 and sha512)")]
    UnsupportedDigest(String),
    #[error("invalid digest {digest:?}: {algorithm} takes exactly {expected} hex characters")]
    DigestLength {
        digest: String,
        algorithm: &'static str,
        expected: usize,
    },
    #[error("invalid digest {0:?}: algorithm and hex must be lowercase")]
    DigestNotLowercase(String),
    #[error("registry host {host:?} cannot be contacted: {reason}")]
    UnusableHost { host: String, reason: &'static str },
}

/// A normalized image reference: `docker.io/library/nginx:latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parse and normalize an image string as written in a Pod spec: distribution/reference
    /// v0.6.0 `normalize.go` `ParseNormalizedNamed`, then `TagNameOnly`.
    pub fn parse(image: &str) -> Result<Self, ReferenceError> {
        if image.is_empty() {
            // Go says "invalid reference format" (it parses "docker.io/library/"); say why.
            return Err(ReferenceError::Empty);
        }
        if is_identifier(image) {
            return Err(ReferenceError::HexIdentifier);
        }
        let (domain, remainder) = split_docker_domain(image);
        // The lowercase check covers the remainder up to its first ':', registry excluded.
        let remote = remainder.split(':').next().unwrap_or(&remainder);
        if has_uppercase(remote) {
            return Err(ReferenceError::Uppercase(quote(remote)));
        }
        let full = format!("{domain}/{remainder}");
        let parts = match_reference(&full).ok_or_else(|| explain_mismatch(&full))?;
        // reference.go `Parse`: the length limit, then the digest, in that order.
        if parts.path.len() > PATH_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        if let Some(digest) = parts.digest {
            validate_digest(digest)?;
        }
        let (registry, repository) = match parts.domain {
            Some(domain) => (domain, parts.path),
            // The first component failed the domain grammar but is a valid path component
            // (`my_registry.io/app`): Go keeps an empty domain and the whole name as the path,
            // and containerd (`pkg/reference` `Spec.Hostname`) contacts its first component.
            None => parts.path.split_once('/').unwrap_or(("", parts.path)),
        };
        // TagNameOnly: no tag and no digest means `:latest`.
        let tag = match (parts.tag, parts.digest) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        };
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: parts.digest.map(str::to_string),
        })
    }

    /// [`Reference::parse`], then refuse a registry host that no pull can reach: the kubelet
    /// passes such a reference to the runtime, where the pull fails (`ErrImagePull`), and
    /// pullgate could not even build the URL to ask.
    pub fn parse_for_pull(image: &str) -> Result<Self, ReferenceError> {
        let reference = Self::parse(image)?;
        check_host(reference.api_host())?;
        Ok(reference)
    }

    /// Registry as normalized: `docker.io`, `localhost:5000`, `ghcr.io`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Host (and port) that serves the registry API: Docker Hub's API is not on `docker.io`.
    /// An IPv6 literal keeps its brackets (`[::1]:5000`), ready for a URL's authority.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Repository path without the registry: `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// What the manifest is fetched by: a digest wins over a tag (`name:tag@digest` is
    /// pulled by digest, the tag is ignored), as the kubelet and containerd do.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    pub fn is_by_digest(&self) -> bool {
        self.digest.is_some()
    }

    /// `registry/repository`, the string the kubelet's keyring is asked about (`Named.Name()`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Errors quote the offending part, cut to a readable length.
fn quote(s: &str) -> String {
    crate::verdict::excerpt(s, 128)
}

/// Go's `strings.ToLower`: each character on its own simple mapping (`İ` is `i`, and no
/// final-sigma rule), unlike `str::to_lowercase`.
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Go's `strings.ToLower(s) != s`.
fn has_uppercase(s: &str) -> bool {
    go_to_lower(s) != s
}

/// `anchoredIdentifierRegexp`: `^[a-f0-9]{64}$`, an image ID rather than a name.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// v0.6.0 `splitDockerDomain`: the first component is a registry only if it is `localhost`,
/// contains `.` or `:`, or has an uppercase letter (which a repository never may);
/// `index.docker.io` is `docker.io`, and a one-component Hub name lives under `library/`.
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((first, rest)) = name.split_once('/') else {
        return (DOCKER_HUB, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) = if first == "localhost" {
        (first, rest)
    } else if first == LEGACY_DOCKER_HUB {
        (DOCKER_HUB, rest)
    } else if first.contains(['.', ':']) || has_uppercase(first) {
        (first, rest)
    } else {
        (DOCKER_HUB, name)
    };
    if domain == DOCKER_HUB && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote.to_string())
}

/// The captures of `referenceRegexp` (then `anchoredNameRegexp` on the name).
struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// `^((?:domainAndPort/)?remoteName)(?::(tag))?(?:@(digest))?$`. No part but the digest may
/// hold an '@', and no part after the last '/' but the tag may hold a ':', so both splits are
/// unique; the optional domain is taken whenever it matches, as Go's leftmost-first
/// submatches do.
fn match_reference(s: &str) -> Option<Parts<'_>> {
    let (left, digest) = match s.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return None;
    }
    let (name, tag) = split_tag(left);
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return None;
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if is_domain_and_port(first) && is_remote_name(rest) => {
            (Some(first), rest)
        }
        _ if is_remote_name(name) => (None, name),
        _ => return None,
    };
    Some(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

/// A ':' after the last '/' separates the tag; earlier ones can only be a registry's port.
fn split_tag(left: &str) -> (&str, Option<&str>) {
    match left.rfind(':') {
        Some(i) if !left[i..].contains('/') => (&left[..i], Some(&left[i + 1..])),
        _ => (left, None),
    }
}

/// `reference.go` `Parse` on a string the grammar refuses: `ErrNameContainsUppercase` if the
/// lowercased string would match, else `ErrReferenceInvalidFormat`, here with the part at fault.
fn explain_mismatch(full: &str) -> ReferenceError {
    let lower = go_to_lower(full);
    let (left, digest) = match full.split_once('@') {
        Some((left, digest)) => (left, Some(digest)),
        None => (full, None),
    };
    let (name, tag) = split_tag(left);
    if lower != full && match_reference(&lower).is_some() {
        return ReferenceError::Uppercase(quote(name));
    }
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return ReferenceError::InvalidDigest(quote(digest));
    }
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return ReferenceError::InvalidTag(quote(tag));
    }
    match name.split_once('/') {
        Some((first, rest)) if !is_domain_and_port(first) && is_remote_name(rest) => {
            ReferenceError::InvalidDomain(quote(first))
        }
        Some((first, rest)) if is_domain_and_port(first) => {
            ReferenceError::InvalidPath(quote(rest))
        }
        _ => ReferenceError::InvalidPath(quote(name)),
    }
}

/// `domainAndPort := host (':' [0-9]+)?`, `host := domainName | '[' [a-fA-F0-9:]+ ']'`,
/// `domainName := domainNameComponent ('.' domainNameComponent)*` (v0.6.0 `regexp.go`).
fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        (None, after)
    } else {
        let (host, port) = s.split_at(s.find(':').unwrap_or(s.len()));
        (Some(host), port)
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && host.is_none_or(|h| h.split('.').all(is_domain_component))
}

/// `domainNameComponent := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

/// `remoteName := pathComponent ('/' pathComponent)*`.
fn is_remote_name(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `pathComponent := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) if is_alnum_lower(first) && is_alnum_lower(last) => {}
        _ => return false,
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        if !(matches!(separator, "." | "_" | "__") || separator.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `tag := [\w][\w.-]{0,127}` (Go's `\w` is ASCII only).
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    b.first().is_some_and(|&first| word(first))
        && b.len() <= TAG_LENGTH_MAX
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// `digestPat := [A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    algorithm.split(['-', '_', '+', '.']).all(|c| {
        let b = c.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphabetic) && b.iter().all(u8::is_ascii_alphanumeric)
    }) && hex.len() >= DIGEST_HEX_MIN
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// go-digest v1.0.0 `Digest.Validate`, with the algorithms the kubelet and containerd link in
/// (`crypto/sha256`, `crypto/sha512`): a grammatical digest is then refused for an unknown
/// algorithm, a wrong length, or uppercase.
fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let (algorithm, expected) = match algorithm {
        "sha256" => ("sha256", 64),
        "sha384" => ("sha384", 96),
        "sha512" => ("sha512", 128),
        // `DigestRegexpAnchored` wants a lowercase algorithm before it says "unsupported".
        other if has_uppercase(other) => {
            return Err(ReferenceError::DigestNotLowercase(quote(digest)));
        }
        other => return Err(ReferenceError::UnsupportedDigest(quote(other))),
    };
    if hex.len() != expected {
        return Err(ReferenceError::DigestLength {
            digest: quote(digest),
            algorithm,
            expected,
        });
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestNotLowercase(quote(digest)));
    }
    Ok(())
}

/// Refuse a registry host (as `api_host` gives it) that no pull can reach, though the grammar
/// allows it. containerd (`pkg/reference` `Parse`) runs `url.Parse("dummy://" + ref)`, which
/// since Go 1.24.8 / 1.25.2 refuses brackets around anything but an IPv6 address; Go's dialer
/// refuses a port above 65535. And pullgate must contact the host containerd would: where the
/// WHATWG host parser behind reqwest's `Url` reads the name differently from Go (`1.2.3` or
/// `0x7f.1` as an IPv4 address, an `xn--` label that is not canonical punycode) or refuses
/// it, the answer could only be wrong.
fn check_host(host: &str) -> Result<(), ReferenceError> {
    let unusable = |reason| ReferenceError::UnusableHost {
        host: quote(host),
        reason,
    };
    // The grammar allows one ':' after a name, or after the closing bracket of an IPv6 literal.
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(unusable("the port is above 65535"));
    }
    let parsed = url::Host::parse(name);
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match (parsed, v6.parse::<Ipv6Addr>()) {
            (Ok(url::Host::Ipv6(ours)), Ok(go)) if ours == go => Ok(()),
            _ => Err(unusable("the brackets do not hold an IPv6 address")),
        };
    }
    match parsed {
        Ok(url::Host::Domain(domain)) if domain == name.to_ascii_lowercase() => Ok(()),
        // Go dials an address only if `net.ParseIP` reads it: a plain dotted quad.
        Ok(url::Host::Ipv4(ours)) if name.parse::<Ipv4Addr>() == Ok(ours) => Ok(()),
        _ => Err(unusable(
            "it is neither a DNS name nor an IP address that pullgate reads as containerd does",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    #[rstest]
    #[case::bare_name("nginx", "docker.io/library/nginx:latest")]
    #[case::bare_name_with_tag("nginx:1.25", "docker.io/library/nginx:1.25")]
    #[case::user_repo("bitnami/redis", "docker.io/bitnami/redis:latest")]
    #[case::explicit_hub("docker.io/nginx", "docker.io/library/nginx:latest")]
    #[case::legacy_hub("index.docker.io/library/nginx:1", "docker.io/library/nginx:1")]
    #[case::legacy_hub_official("index.docker.io/nginx", "docker.io/library/nginx:latest")]
    #[case::registry_with_dot("ghcr.io/org/app:v1", "ghcr.io/org/app:v1")]
    #[case::registry_with_port("registry:5000/app", "registry:5000/app:latest")]
    #[case::port_and_tag(
        "registry.example.com:5000/team/app:1.0",
        "registry.example.com:5000/team/app:1.0"
    )]
    #[case::localhost("localhost/app", "localhost/app:latest")]
    #[case::localhost_port("localhost:5000/app:dev", "localhost:5000/app:dev")]
    #[case::first_component_without_dot_is_a_path("team/app", "docker.io/team/app:latest")]
    #[case::uppercase_first_component_is_a_domain("Registry/app", "Registry/app:latest")]
    #[case::ipv6("[::1]:5000/app", "[::1]:5000/app:latest")]
    #[case::ipv6_without_port("[2001:db8::1]/team/app:v2", "[2001:db8::1]/team/app:v2")]
    #[case::domain_with_underscore_is_read_as_a_path(
        "my_registry.io/app",
        "my_registry.io/app:latest"
    )]
    #[case::digest_only(&format!("nginx@{D}"), &format!("docker.io/library/nginx@{D}"))]
    #[case::tag_and_digest(&format!("nginx:1.25@{D}"), &format!("docker.io/library/nginx:1.25@{D}"))]
    #[case::separators("r.io/a.b_c__d-e---f/g", "r.io/a.b_c__d-e---f/g:latest")]
    #[case::tag_chars("r.io/a:V1.0_rc-1", "r.io/a:V1.0_rc-1")]
    #[case::tag_starting_with_underscore("r.io/a:_x", "r.io/a:_x")]
    #[case::tag_looks_like_a_port("192.168.1.1:5000", "docker.io/library/192.168.1.1:5000")]
    #[case::path_of_255_after_a_registry(
        &format!("r.io/{}", "a".repeat(255)),
        &format!("r.io/{}:latest", "a".repeat(255))
    )]
    fn normalizes_like_distribution_reference(#[case] input: &str, #[case] expected: &str) {
        let r = Reference::parse(input).expect("valid reference");
        assert_eq!(r.to_string(), expected);
    }

    #[rstest]
    #[case::empty("")]
    #[case::uppercase_repo("nginx/NGINX")]
    #[case::uppercase_official("Nginx")]
    #[case::uppercase_after_registry("r.io/Team/app")]
    #[case::uppercase_domain_that_is_no_domain("Foo_Bar/app")]
    #[case::hex_identifier("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    #[case::empty_tag("nginx:")]
    #[case::tag_starting_with_dot("nginx:.x")]
    #[case::tag_too_long(&format!("nginx:{}", "a".repeat(129)))]
    #[case::empty_digest("nginx@")]
    #[case::short_digest("nginx@sha256:abc")]
    #[case::digest_wrong_length("nginx@sha256:0000000000000000000000000000000000000000")]
    #[case::digest_uppercase_hex(
        "nginx@sha256:000000000000000000000000000000000000000000000000000000000000000A"
    )]
    #[case::digest_uppercase_algorithm(
        "nginx@SHA256:0000000000000000000000000000000000000000000000000000000000000000"
    )]
    #[case::digest_unknown_algorithm("nginx@md5:00000000000000000000000000000000")]
    #[case::digest_without_algorithm(
        "nginx@:0000000000000000000000000000000000000000000000000000000000000000"
    )]
    #[case::two_digests(&format!("nginx@{D}@{D}"))]
    #[case::empty_path_component("r.io//app")]
    #[case::trailing_slash("r.io/app/")]
    #[case::leading_separator("r.io/-app")]
    #[case::triple_underscore("r.io/a___b")]
    #[case::mixed_separator("r.io/a.-b")]
    #[case::space("r.io/app :1")]
    #[case::leading_space(" nginx")]
    #[case::bad_port("r.io:abc/app")]
    #[case::two_ports("r.io:1:2/app")]
    #[case::ipv6_zone("[fe80::1%eth0]:5000/app")]
    #[case::ipv6_without_brackets("::1/app")]
    #[case::double_colon("nginx:1:2")]
    #[case::scheme("https://r.io/app")]
    #[case::path_too_long(&format!("r.io/{}", "a".repeat(256)))]
    #[case::official_path_too_long(&"a".repeat(248))]
    #[case::pseudo_domain_counts_in_the_path(&format!("a_b.io/{}", "a".repeat(249)))]
    #[case::non_ascii("registry.\u{e9}/app")]
    fn rejects_what_the_kubelet_calls_invalid_image_name(#[case] input: &str) {
        assert!(
            Reference::parse(input).is_err(),
            "{input:?} should be invalid"
        );
    }

    #[test]
    fn tag_and_digest_is_pulled_by_digest() {
        let r = Reference::parse(&format!("r.io/app:1.0@{D}")).expect("valid");
        assert_eq!(r.manifest_reference(), D);
        assert!(r.is_by_digest());
        assert_eq!(r.tag(), Some("1.0"));
    }

    #[test]
    fn docker_hub_api_lives_on_registry_1() {
        let r = Reference::parse("nginx").expect("valid");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.name(), "docker.io/library/nginx");
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[rstest]
    #[case::ipv6_with_port(
        "[::1]:5000/team/app",
        "[::1]:5000",
        "[::1]:5000/team/app",
        "[::1]:5000"
    )]
    #[case::ipv6_without_port(
        "[2001:db8::1]/app",
        "[2001:db8::1]",
        "[2001:db8::1]/app",
        "[2001:db8::1]:443"
    )]
    #[case::ipv6_uppercase_hex(
        "[2001:DB8::1]:8443/app",
        "[2001:DB8::1]:8443",
        "[2001:DB8::1]:8443/app",
        "[2001:db8::1]:8443"
    )]
    #[case::ipv4_with_port(
        "10.0.0.1:5000/app",
        "10.0.0.1:5000",
        "10.0.0.1:5000/app",
        "10.0.0.1:5000"
    )]
    #[case::name_with_default_port(
        "registry.example.com:443/a/b",
        "registry.example.com:443",
        "registry.example.com:443/a/b",
        "registry.example.com:443"
    )]
    #[case::uppercase_registry(
        "Registry:5000/app",
        "Registry:5000",
        "Registry:5000/app",
        "registry:5000"
    )]
    #[case::underscore_registry(
        "my_registry.io/app",
        "my_registry.io",
        "my_registry.io/app",
        "my_registry.io:443"
    )]
    #[case::punycode_registry(
        "xn--nxasmq6b.com/app",
        "xn--nxasmq6b.com",
        "xn--nxasmq6b.com/app",
        "xn--nxasmq6b.com:443"
    )]
    #[case::docker_hub(
        "nginx",
        "registry-1.docker.io",
        "docker.io/library/nginx",
        "registry-1.docker.io:443"
    )]
    fn api_host_and_name_build_the_url_containerd_would_use(
        #[case] input: &str,
        #[case] api_host: &str,
        #[case] name: &str,
        #[case] authority: &str,
    ) {
        let r = Reference::parse_for_pull(input).expect("pullable reference");
        assert_eq!(r.api_host(), api_host);
        assert_eq!(r.name(), name);
        let url = reqwest::Url::parse(&format!("https://{}/v2/", r.api_host()))
            .expect("the probe can build its URL");
        let port = url.port_or_known_default().unwrap_or_default();
        assert_eq!(
            format!("{}:{port}", url.host_str().unwrap_or_default()),
            authority
        );
    }

    #[rstest]
    #[case::bracketed_non_address("[a]:5000/app")]
    #[case::bracketed_single_group("[1]:5000/app")]
    #[case::bracketed_too_many_groups("[1:2:3:4:5:6:7:8:9]:5000/app")]
    #[case::bracketed_triple_colon("[:::]/app")]
    #[case::port_above_65535("r.io:65536/app")]
    #[case::huge_port("r.io:99999999999999999999/app")]
    #[case::ipv6_port_above_65535("[::1]:70000/app")]
    #[case::numeric_last_label("registry.1/app")]
    #[case::short_ipv4("1.2.3/app")]
    #[case::hex_ipv4("0x7f.1/app")]
    #[case::octal_looking_ipv4("01.2.3.4/app")]
    #[case::out_of_range_ipv4("256.1.1.1/app")]
    #[case::invalid_punycode("xn--a.io/app")]
    fn a_host_no_pull_can_reach_is_refused_before_any_url_is_built(#[case] input: &str) {
        assert!(
            Reference::parse(input).is_ok(),
            "{input:?}: the kubelet accepts it"
        );
        let err = Reference::parse_for_pull(input).expect_err("no pull can reach it");
        assert!(
            matches!(err, ReferenceError::UnusableHost { .. }),
            "{input:?}: {err}"
        );
    }

    /// The category Go's error falls in, as the tables under `tests/data/go/` name them.
    fn go_kind(err: &ReferenceError) -> &'static str {
        match err {
            ReferenceError::Empty
            | ReferenceError::InvalidDomain(_)
            | ReferenceError::InvalidPath(_)
            | ReferenceError::InvalidTag(_)
            | ReferenceError::InvalidDigest(_) => "format",
            ReferenceError::HexIdentifier => "hex",
            ReferenceError::Uppercase(_) => "uppercase",
            ReferenceError::NameTooLong => "too-long",
            ReferenceError::UnsupportedDigest(_) => "digest-unsupported",
            ReferenceError::DigestLength { .. } => "digest-length",
            ReferenceError::DigestNotLowercase(_) => "digest-format",
            ReferenceError::UnusableHost { .. } => "host",
        }
    }

    /// Inverse of the tables' escaping: `\\`, `\t`, `\n` and `\u{hex}`.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('u') => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                    out.push(char::from_u32(code).expect("a char"));
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    }

    fn table(name: &str) -> Vec<Vec<String>> {
        let path = format!("{}/tests/data/go/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("table present");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// Replays `tests/data/go/reference-v0.6.0.tsv`: for each input, what the real Go
    /// `github.com/distribution/reference` v0.6.0 `ParseNormalizedNamed` (with go-digest
    /// v1.0.0, sha256 and sha512 linked, as in the kubelet) answered — the normalized name,
    /// tag and digest, or the kind of error — and whether containerd's second parse
    /// (`url.Parse("dummy://" + ParseDockerRef(image).String())`, Go 1.27) accepted it.
    ///
    /// How the table was made (the Go harness is not committed: it builds fetched code):
    /// the upstream sources were checked out at distribution/reference v0.6.0
    /// (ff14fafe2236e51c2894ac07d4bdfc778e96d682), opencontainers/go-digest v1.0.0
    /// (ea51bea511f75cfa3ef6098cc253c5c3609b037a), docker/distribution v2.8.2 `reference/`
    /// (7c354a4b40feeea21d7eeae4de91c8ff7951e672) and containerd v1.6.20 / v1.7.18
    /// `reference/docker`, wired together with go.mod `replace` directives (no module
    /// download), and run over 5,273 inputs: hand-picked cases read off the regexps (IPv6
    /// literals, ports, separators, length limits, digests, hex identifiers, non-ASCII), every
    /// string literal of the upstream packages' own tests, and 4,600 strings from a splitmix64
    /// generator (seed 20261111) over letters of both cases, digits, `. _ - : / @ [ ]`,
    /// hostnames, IPv6 groups, ports, tags and digests of every registered and unregistered
    /// algorithm and length.
    #[test]
    fn agrees_with_go_distribution_reference_v0_6_0_on_every_input_of_the_table() {
        let rows = table("reference-v0.6.0.tsv");
        assert!(rows.len() > 5000, "the whole table is there");
        let mut disagreements = Vec::new();
        for row in &rows {
            let input = unescape(&row[0]);
            let ours = match Reference::parse(&input) {
                Ok(r) => format!(
                    "ok\t{}\t{}\t{}",
                    r.name(),
                    r.tag().unwrap_or("-"),
                    r.digest().unwrap_or("-")
                ),
                Err(e) => format!("err:{}\t-\t-\t-", go_kind(&e)),
            };
            // Go leaves the tag empty when there is none; TagNameOnly then says "latest".
            let go_tag = match (row[3].as_str(), row[4].as_str()) {
                ("-", "-") if row[1] == "ok" => "latest",
                (tag, _) => tag,
            };
            let go = format!("{}\t{}\t{go_tag}\t{}", row[1], row[2], row[4]);
            if ours != go {
                disagreements.push(format!("{:?}\n   go: {go}\n  ours: {ours}", input));
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} of {} inputs disagree:\n{}",
            disagreements.len(),
            rows.len(),
            disagreements.join("\n")
        );
    }

    #[test]
    fn normalizing_a_second_time_changes_nothing_on_any_accepted_input_of_the_table() {
        for row in table("reference-v0.6.0.tsv") {
            let input = unescape(&row[0]);
            if let Ok(r) = Reference::parse(&input) {
                assert_eq!(Reference::parse(&r.to_string()), Ok(r), "{input:?}");
            }
        }
    }

    #[test]
    fn every_reference_containerd_refuses_to_resolve_is_refused_for_pull() {
        for row in table("reference-v0.6.0.tsv") {
            if row[1] == "ok" && row[6] != "ok" {
                let input = unescape(&row[0]);
                assert!(
                    Reference::parse_for_pull(&input).is_err(),
                    "{input:?}: containerd's url.Parse refuses it"
                );
            }
        }
    }

    #[test]
    fn every_reference_accepted_for_pull_builds_the_probe_url_for_its_own_host() {
        let mut checked = 0;
        for row in table("reference-v0.6.0.tsv") {
            let input = unescape(&row[0]);
            let Ok(r) = Reference::parse_for_pull(&input) else {
                continue;
            };
            assert_eq!(row[6], "ok", "{input:?}: containerd's url.Parse refuses it");
            let url = reqwest::Url::parse(&format!("https://{}/v2/", r.api_host()))
                .unwrap_or_else(|e| panic!("{input:?}: {e}"));
            let (name, port) = match r.api_host().rfind(':') {
                Some(i) if !r.api_host()[i..].contains(']') => {
                    (&r.api_host()[..i], r.api_host()[i + 1..].parse().ok())
                }
                _ => (r.api_host(), Some(443)),
            };
            let same = match url.host() {
                Some(url::Host::Domain(d)) => d == name.to_ascii_lowercase(),
                Some(url::Host::Ipv4(a)) => name.parse::<Ipv4Addr>() == Ok(a),
                Some(url::Host::Ipv6(a)) => {
                    let bare = name.trim_start_matches('[').trim_end_matches(']');
                    bare.parse::<Ipv6Addr>() == Ok(a)
                }
                None => false,
            } && url.port_or_known_default() == port;
            let host = url.host_str().unwrap_or_default();
            assert!(same, "{input:?}: the URL names {host}, not {name}");
            checked += 1;
        }
        assert!(checked > 900, "only {checked} accepted rows");
    }

    /// `tests/data/go/reference-older.tsv` lists every input of the main table that an older
    /// parser pair answers differently: docker/distribution v2.8.2 with containerd 1.6.20
    /// (Kubernetes 1.28, the project's test node) and distribution/reference v0.5.0 with
    /// containerd 1.7.18 (Kubernetes 1.29–1.31). None of them accepts what v0.6.0 refuses,
    /// and what v0.6.0 alone accepts falls in the three classes the module documentation names.
    #[test]
    fn older_kubelets_refuse_only_ipv6_registries_uppercase_registries_and_long_names() {
        let rows = table("reference-older.tsv");
        assert!(!rows.is_empty());
        for row in rows {
            let input = unescape(&row[0]);
            let (current, older) = (&row[1], [&row[2], &row[3]]);
            for old in older {
                if old == "ok" {
                    assert_eq!(current, "ok", "{input:?}: an older parser accepts it");
                }
            }
            if current != "ok" || older.iter().all(|o| *o == "ok") {
                continue;
            }
            let r = Reference::parse(&input).expect("v0.6.0 accepts it");
            let ipv6 = r.registry().starts_with('[');
            let uppercase = r.registry() != r.registry().to_lowercase();
            let long = r.name().len() > PATH_LENGTH_MAX;
            assert!(
                ipv6 || uppercase || long,
                "{input:?}: refused by an older parser for another reason: {row:?}"
            );
        }
    }
}
