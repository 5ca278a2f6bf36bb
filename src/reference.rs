//! Image references, parsed and normalized exactly as `distribution/reference`'s
//! `ParseNormalizedNamed` + `TagNameOnly` do it for the kubelet.
//!
//! Anything the kubelet would reject with `InvalidImageName` is a [`ReferenceError`] here, so
//! an invalid reference never reaches the network (distribution answers `500 {}` for an
//! uppercase repository, for example).

use std::fmt;

/// Docker Hub's canonical name, as references are normalized.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually lives.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// `NameTotalLengthMax` in distribution/reference.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid repository name, cannot specify 64-byte hexadecimal strings")]
    HexIdentifier,
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("invalid registry host {0:?}")]
    InvalidDomain(String),
    #[error("invalid repository path {0:?}")]
    InvalidPath(String),
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedDigest(String),
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
    /// Parse and normalize an image string as written in a Pod spec.
    pub fn parse(image: &str) -> Result<Self, ReferenceError> {
        if image.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if image.len() == 64
            && image
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReferenceError::HexIdentifier);
        }
        let (registry, remainder) = split_docker_domain(image);
        let remainder = remainder.as_str();
        let remote_name = remainder.split(':').next().unwrap_or(remainder);
        if remote_name.to_lowercase() != remote_name {
            return Err(ReferenceError::Uppercase(quote(remote_name)));
        }

        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((left, digest)) => (left, Some(digest)),
            None => (remainder, None),
        };
        // A ':' after the last '/' separates the tag; earlier ones cannot occur in a path.
        let (path, tag) = match name_and_tag.rfind(':') {
            Some(i) if !name_and_tag[i..].contains('/') => {
                (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
            }
            _ => (name_and_tag, None),
        };

        if registry.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        if !is_domain(&registry) {
            return Err(ReferenceError::InvalidDomain(quote(&registry)));
        }
        if !is_path(path) {
            return Err(ReferenceError::InvalidPath(quote(path)));
        }
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(ReferenceError::InvalidTag(quote(tag)));
        }
        if let Some(digest) = digest {
            validate_digest(digest)?;
        }

        // TagNameOnly: no tag and no digest means `:latest`.
        let tag = match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Self {
            registry,
            repository: path.to_string(),
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// Registry as normalized: `docker.io`, `localhost:5000`, `ghcr.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Host (and port) that serves the registry API: Docker Hub's API is not on `docker.io`.
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

    /// `registry/repository`, the string the kubelet's keyring is asked about.
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

/// `splitDockerDomain`: the first component is a registry only if it contains `.` or `:`,
/// is `localhost`, or has an uppercase letter (which a repository never may).
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOCKER_HUB {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        // Official images live under `library/`.
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remainder}"));
    }
    (domain, remainder)
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `domain-component ('.' domain-component)* (':' port)?` or `[ipv6] (':' port)?`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => return !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let bytes = c.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        })
}

/// `path-component ('/' path-component)*`, where a component is
/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn is_path(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(is_path_component)
}

fn is_path_component(component: &str) -> bool {
    let b = component.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

/// The reference grammar (`algorithm:hex{32,}`) and then `go-digest`'s `Parse`: only
/// registered algorithms, with exactly their length of lowercase hex.
fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidDigest(quote(digest));
    let (algorithm, hex) = digest.split_once(':').ok_or_else(invalid)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '-', '_']).all(|c| {
            let b = c.as_bytes();
            !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
        });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(ReferenceError::UnsupportedDigest(quote(other))),
    };
    if hex.len() != expected_len || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid());
    }
    Ok(())
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
    #[case::digest_only(&format!("nginx@{D}"), &format!("docker.io/library/nginx@{D}"))]
    #[case::tag_and_digest(&format!("nginx:1.25@{D}"), &format!("docker.io/library/nginx:1.25@{D}"))]
    #[case::separators("r.io/a.b_c__d-e---f/g", "r.io/a.b_c__d-e---f/g:latest")]
    #[case::tag_chars("r.io/a:V1.0_rc-1", "r.io/a:V1.0_rc-1")]
    #[case::tag_starting_with_underscore("r.io/a:_x", "r.io/a:_x")]
    fn normalizes_like_distribution_reference(#[case] input: &str, #[case] expected: &str) {
        let r = Reference::parse(input).expect("valid reference");
        assert_eq!(r.to_string(), expected);
    }

    #[rstest]
    #[case::empty("")]
    #[case::uppercase_repo("nginx/NGINX")]
    #[case::uppercase_official("Nginx")]
    #[case::uppercase_after_registry("r.io/Team/app")]
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
    #[case::digest_unknown_algorithm("nginx@md5:00000000000000000000000000000000")]
    #[case::digest_without_algorithm(
        "nginx@:0000000000000000000000000000000000000000000000000000000000000000"
    )]
    #[case::empty_path_component("r.io//app")]
    #[case::trailing_slash("r.io/app/")]
    #[case::leading_separator("r.io/-app")]
    #[case::triple_underscore("r.io/a___b")]
    #[case::mixed_separator("r.io/a.-b")]
    #[case::space("r.io/app :1")]
    #[case::leading_space(" nginx")]
    #[case::bad_port("r.io:abc/app")]
    #[case::domain_with_underscore("my_registry.io/app")]
    #[case::double_colon("nginx:1:2")]
    #[case::scheme("https://r.io/app")]
    #[case::name_too_long(&format!("r.io/{}", "a".repeat(260)))]
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
}
