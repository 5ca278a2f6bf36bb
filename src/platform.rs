//! Platforms (`os/arch[/variant]`) and the index check containerd applies: an index must
//! hold an entry for a platform the pod can run on ("no match for platform in manifest").

use std::fmt;
use std::str::FromStr;

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

    /// containerd's `Normalize`: lowercase, architecture aliases (`x86_64`, `aarch64`,
    /// `armhf`…), and the default variants spelt the canonical way (`amd64/v1` and
    /// `arm64/v8` have none, `arm` is `v7`).
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_string(), String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_string(),
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                if variant == "8" || variant == "v8" {
                    String::new()
                } else {
                    variant
                },
            ),
            "armhf" => ("arm".to_string(), "v7".to_string()),
            "armel" => ("arm".to_string(), "v6".to_string()),
            "arm" => (
                "arm".to_string(),
                match variant.as_str() {
                    "" | "7" => "v7".to_string(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            _ => (arch, variant),
        };
        Platform::new(&os, &arch, Some(&variant))
    }

    /// containerd's `platformVector`: what a node of this platform runs, in order of
    /// preference — amd64 also runs 386, arm/vN also runs arm/v(N-1)…v5, arm64 also runs
    /// arm/v8…v5 (and lower arm64 minor versions). The kubelet pulls with this matcher.
    pub fn compatible(&self) -> Vec<Platform> {
        let p = self.normalized();
        let mut out = vec![p.clone()];
        let with =
            |arch: &str, variant: Option<String>| Platform::new(&p.os, arch, variant.as_deref());
        let variant_number = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
        match p.architecture.as_str() {
            "amd64" => {
                if let Some(mut level) = p.variant.as_deref().and_then(variant_number) {
                    while level > 1 {
                        level -= 1;
                        out.push(with("amd64", (level > 1).then(|| format!("v{level}"))));
                    }
                }
                out.push(with("386", None));
            }
            "arm" => {
                if let Some(mut level) = p.variant.as_deref().and_then(variant_number) {
                    while level > 5 {
                        level -= 1;
                        out.push(with("arm", Some(format!("v{level}"))));
                    }
                }
            }
            "arm64" => {
                let variant = p.variant.clone().unwrap_or_else(|| "v8".to_string());
                let (major, minor) = match variant.trim_start_matches('v').split_once('.') {
                    Some((major, minor)) => {
                        (major.parse::<u32>().ok(), minor.parse::<u32>().unwrap_or(0))
                    }
                    None => (variant.trim_start_matches('v').parse::<u32>().ok(), 0),
                };
                if let Some(mut major) = major.filter(|m| *m >= 8) {
                    let mut minor = minor;
                    let name = |major: u32, minor: u32| {
                        if minor == 0 {
                            format!("v{major}")
                        } else {
                            format!("v{major}.{minor}")
                        }
                    };
                    if major == 9 {
                        for m in (0..minor).rev() {
                            out.push(with("arm64", Some(name(9, m))));
                        }
                        // v9.0 diverged from v8.5: v9.x runs v8.(x+5).
                        minor += 5;
                        major = 8;
                        out.push(with("arm64", Some(name(8, minor))));
                    }
                    for m in (0..minor).rev() {
                        let v = name(major, m);
                        out.push(with("arm64", (v != "v8").then_some(v)));
                    }
                }
                let arm = with("arm", Some("v8".to_string()));
                out.extend(arm.compatible());
            }
            _ => {}
        }
        out
    }

    /// Where an index entry of platform `self` stands for a node of platform `wanted`: its
    /// position among what the node runs (0 = the node's own platform), or `None` when the
    /// node does not run it. An empty `os` is the node's own OS (`platforms.Normalize`:
    /// `normalizeOS("")` is `runtime.GOOS`).
    pub fn rank_for(&self, wanted: &Platform) -> Option<usize> {
        let mut entry = self.clone();
        if entry.os.is_empty() {
            entry.os = wanted.os.clone();
        }
        let entry = entry.normalized();
        wanted.compatible().iter().position(|p| *p == entry)
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        // Like containerd's specifier syntax; variants may have a minor version (v8.2).
        let ok = |p: &str, extra: &[u8]| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.contains(&b)
                })
        };
        match parts.as_slice() {
            [os, arch] if ok(os, b"") && ok(arch, b"") => Ok(Self::new(os, arch, None)),
            [os, arch, variant] if ok(os, b"") && ok(arch, b"") && ok(variant, b".") => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn p(s: &str) -> Platform {
        s.parse().expect("valid platform")
    }

    #[rstest]
    #[case::same("linux/amd64", "linux/amd64", true)]
    #[case::amd64_v1_is_amd64("linux/amd64/v1", "linux/amd64", true)]
    #[case::amd64_runs_386("linux/386", "linux/amd64", true)]
    #[case::amd64_v3_needs_a_v3_node("linux/amd64/v3", "linux/amd64", false)]
    #[case::amd64_v3_node_runs_v2("linux/amd64/v2", "linux/amd64/v3", true)]
    #[case::arm64_v8_is_arm64("linux/arm64/v8", "linux/arm64", true)]
    #[case::arm64_default_variant("linux/arm64", "linux/arm64/v8", true)]
    #[case::arm64_runs_32_bit_arm("linux/arm/v7", "linux/arm64", true)]
    #[case::arm64_v8_2_needs_a_newer_node("linux/arm64/v8.2", "linux/arm64", false)]
    #[case::arm64_v9_runs_v8_5("linux/arm64/v8.5", "linux/arm64/v9", true)]
    #[case::arm_default_variant("linux/arm", "linux/arm/v7", true)]
    #[case::arm_v7_runs_v6("linux/arm/v6", "linux/arm/v7", true)]
    #[case::arm_v6_does_not_run_v7("linux/arm/v7", "linux/arm/v6", false)]
    #[case::aliases("Linux/x86_64", "linux/amd64", true)]
    #[case::aarch64("linux/aarch64", "linux/arm64", true)]
    #[case::other_arch("linux/arm64", "linux/amd64", false)]
    #[case::amd64_does_not_run_arm("linux/amd64", "linux/arm64", false)]
    #[case::other_os("windows/amd64", "linux/amd64", false)]
    fn entries_satisfy_requests_as_containerd_matches_them(
        #[case] entry: &str,
        #[case] wanted: &str,
        #[case] ok: bool,
    ) {
        assert_eq!(p(entry).rank_for(&p(wanted)).is_some(), ok);
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
