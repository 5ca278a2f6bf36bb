//! The kubelet's registry matcher (`pkg/credentialprovider/keyring.go ParseSchemelessURL`,
//! `SplitURL`, `URLsMatch`): what decides which docker config keys serve an image, and
//! which images a credential-provider plugin's `matchImages` covers.

use std::fmt;

use super::{glob, url};

/// A registry pattern as the kubelet reads one: `*.gcr.io`, `registry.example.com:5000/team`,
/// `*.dkr.ecr.*.amazonaws.com`. Built by [`ImagePattern::parse`]; matched against image
/// names (`registry/repository`, as `docker.io/library/nginx`) by [`ImagePattern::matches`].
///
/// The rules (`keyring.go URLsMatch`): the pattern and the image are both parsed by Go's
/// `url.Parse` after `https://`; the ports must be equal (no port matches only no port);
/// the hosts must have as many `.`-separated labels, each matched by Go's
/// `filepath.Match` (`*` within one label); the pattern's path must be a plain string
/// prefix of the image's (`reg.io/foo` matches `reg.io/foobar`).
#[derive(Clone, PartialEq, Eq)]
pub struct ImagePattern {
    /// As given, for messages.
    text: String,
    target: Target,
}

/// `SplitURL` of a parsed URL: host labels, port, path.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    labels: Vec<Vec<u8>>,
    port: Vec<u8>,
    path: Vec<u8>,
}

impl Target {
    /// `ParseSchemelessURL` then `SplitURL`; `None` where Go's `url.Parse` fails.
    pub(crate) fn parse(schemeless: &[u8]) -> Option<Self> {
        let mut raw = b"https://".to_vec();
        raw.extend_from_slice(schemeless);
        let parsed = url::parse(&raw).ok()?;
        // `SplitURL`: when `net.SplitHostPort` fails (no port, too many colons), the whole
        // host is split into labels and the port is empty.
        let (host, port) = url::split_host_port(&parsed.host).unwrap_or((&parsed.host, b""));
        Some(Self {
            labels: host.split(|&b| b == b'.').map(<[u8]>::to_vec).collect(),
            port: port.to_vec(),
            path: parsed.path,
        })
    }

    /// `URLsMatch(self, target)`.
    pub(crate) fn matches(&self, target: &Target) -> bool {
        self.port == target.port
            && self.labels.len() == target.labels.len()
            && target.path.starts_with(&self.path)
            && self
                .labels
                .iter()
                .zip(&target.labels)
                .all(|(glob, label)| glob::matches(glob, label))
    }
}

impl ImagePattern {
    /// `ParseSchemelessURL(pattern)`; `None` where Go refuses it (the kubelet rejects such
    /// a `matchImages` entry, and skips such a docker config key).
    pub fn parse(pattern: &str) -> Option<Self> {
        Some(Self {
            text: pattern.to_string(),
            target: Target::parse(pattern.as_bytes())?,
        })
    }

    /// `URLsMatchStr(pattern, image_name)`: does the pattern cover this image name
    /// (`registry/repository`, no tag or digest)? An image name Go cannot parse matches
    /// nothing.
    pub fn matches(&self, image_name: &str) -> bool {
        Target::parse(image_name.as_bytes()).is_some_and(|target| self.target.matches(&target))
    }

    /// For a bare host name (or IP address) without port or path, as the SSRF guard sees
    /// it after DNS: [`ImagePattern::matches`] of that host, a bare IPv6 address being
    /// bracketed first. A pattern with a port or a path never covers a bare host.
    pub fn matches_host(&self, host: &str) -> bool {
        if host.contains(':') && !host.starts_with('[') {
            self.matches(&format!("[{host}]"))
        } else {
            self.matches(host)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ImagePattern").field(&self.text).finish()
    }
}

impl fmt::Display for ImagePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::ecr(
        "*.dkr.ecr.*.amazonaws.com",
        "123.dkr.ecr.eu-west-1.amazonaws.com/app",
        true
    )]
    #[case::one_label_only("*.gcr.io", "a.b.gcr.io/x", false)]
    #[case::not_zero_labels("*.gcr.io", "gcr.io/x", false)]
    #[case::partial_label("*-docker.pkg.dev", "europe-docker.pkg.dev/p/r/i", true)]
    #[case::port_must_be_equal("r.io", "r.io:5000/x", false)]
    #[case::port_matches("r.io:5000", "r.io:5000/x", true)]
    #[case::path_is_a_string_prefix("r.io/team", "r.io/teamx/app", true)]
    #[case::path_not_a_prefix("r.io/team", "r.io/other", false)]
    #[case::case_sensitive("R.io", "r.io/x", false)]
    fn patterns_match_as_the_kubelet(
        #[case] pattern: &str,
        #[case] image: &str,
        #[case] expected: bool,
    ) {
        let p = ImagePattern::parse(pattern).expect("valid pattern");
        assert_eq!(p.matches(image), expected, "{pattern} {image}");
    }

    #[rstest]
    #[case::class_not_first("r-[a-c].io")]
    #[case::class_first("[a-c].io")]
    #[case::question_mark_is_a_query_so_fine("r?.io")]
    #[case::bad_port("r.io:x")]
    #[case::space("r io")]
    fn what_go_refuses_is_no_pattern(#[case] pattern: &str) {
        let parsed = ImagePattern::parse(pattern);
        if pattern.contains('?') {
            // `r?.io` parses: host `r`, query `.io`.
            assert!(parsed.is_some_and(|p| !p.matches("ra.io/x") && p.matches("r/x")));
        } else {
            assert!(parsed.is_none(), "{pattern}");
        }
    }

    #[rstest]
    #[case("*.internal", "reg.internal", true)]
    #[case("reg.internal:5000", "reg.internal", false)]
    #[case("reg.internal/team", "reg.internal", false)]
    // `[fd00::1]` has no port, so SplitURL keeps the brackets and the "label" is a glob
    // class: an IPv6 literal never matches (the guard compares those as plain strings).
    #[case("[fd00::1]", "fd00::1", false)]
    fn host_only_matching(#[case] pattern: &str, #[case] host: &str, #[case] expected: bool) {
        let p = ImagePattern::parse(pattern).expect("valid pattern");
        assert_eq!(p.matches_host(host), expected, "{pattern} {host}");
    }
}
