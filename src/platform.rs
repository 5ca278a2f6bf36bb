//! Platforms (`os/arch[/variant]`) and the index check containerd applies: an index must
//! hold an entry for a platform the pod can run on ("no match for platform in manifest").

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64")]
pub struct PlatformError(String);

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", None)
    }

    /// Attestation manifests (BuildKit provenance, SBOM) are listed as `unknown/unknown`.
    pub fn is_attestation(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }

    /// containerd's normalization: `arm64` without a variant is `v8`, `arm` is `v7`.
    fn normalized_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, v) => v,
        }
    }

    /// Whether an index entry with platform `self` can run where `wanted` is requested.
    /// A request without a variant accepts any variant of its os/arch.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        match wanted.variant {
            None => true,
            Some(_) => self.normalized_variant() == wanted.normalized_variant(),
        }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self::new(os, arch, None)),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => {
                Ok(Self::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `platform` of an index entry as it is serialized in OCI and Docker indexes.
#[derive(Debug, Clone, Deserialize)]
pub struct IndexPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl From<&IndexPlatform> for Platform {
    fn from(p: &IndexPlatform) -> Self {
        Platform::new(&p.os, &p.architecture, p.variant.as_deref())
    }
}

/// Result of matching an index against the wanted platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexMatch {
    Matched,
    /// No entry fits; these are the platforms the image does have (attestations excluded).
    NoMatch {
        available: Vec<Platform>,
    },
}

/// Match index entries (`None` = an entry without a `platform` field, which containerd
/// would still consider, so it counts as a match) against the wanted platforms.
pub fn match_index(entries: &[Option<Platform>], wanted: &[Platform]) -> IndexMatch {
    let mut available = Vec::new();
    for entry in entries {
        match entry {
            None => return IndexMatch::Matched,
            Some(p) if p.is_attestation() => {}
            Some(p) => {
                if wanted.iter().any(|w| p.satisfies(w)) {
                    return IndexMatch::Matched;
                }
                if !available.contains(p) {
                    available.push(p.clone());
                }
            }
        }
    }
    IndexMatch::NoMatch { available }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn p(s: &str) -> Platform {
        s.parse().expect("valid platform")
    }

    #[rstest]
    #[case::same("linux/amd64", "linux/amd64", true)]
    #[case::variant_in_entry_only("linux/arm64/v8", "linux/arm64", true)]
    #[case::arm64_default_variant("linux/arm64", "linux/arm64/v8", true)]
    #[case::arm_default_variant("linux/arm", "linux/arm/v7", true)]
    #[case::other_variant("linux/arm/v6", "linux/arm/v7", false)]
    #[case::other_arch("linux/arm64", "linux/amd64", false)]
    #[case::other_os("windows/amd64", "linux/amd64", false)]
    fn entries_satisfy_requests(#[case] entry: &str, #[case] wanted: &str, #[case] ok: bool) {
        assert_eq!(p(entry).satisfies(&p(wanted)), ok);
    }

    #[test]
    fn attestations_do_not_count_and_are_not_listed() {
        let entries = vec![Some(p("linux/arm64")), Some(p("unknown/unknown"))];
        assert_eq!(
            match_index(&entries, &[p("linux/amd64")]),
            IndexMatch::NoMatch {
                available: vec![p("linux/arm64")]
            }
        );
        assert_eq!(
            match_index(
                &[Some(p("unknown/unknown"))],
                &[Platform::new("unknown", "unknown", None)]
            ),
            IndexMatch::NoMatch { available: vec![] }
        );
    }

    #[test]
    fn any_requested_platform_is_enough() {
        let entries = vec![Some(p("linux/arm64"))];
        assert_eq!(
            match_index(&entries, &[p("linux/amd64"), p("linux/arm64")]),
            IndexMatch::Matched
        );
    }

    #[rstest]
    #[case("linux")]
    #[case("linux/")]
    #[case("/amd64")]
    #[case("linux/amd64/v1/x")]
    #[case("linux/amd 64")]
    fn bad_platform_strings_are_rejected(#[case] s: &str) {
        assert!(s.parse::<Platform>().is_err());
    }
}
