//! The words pullgate answers with (ARCHITECTURE.md §4), separate from any transport error.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::digest::Digest;

/// What a pull of one image would meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pullable,
    NotFound,
    Unauthorized,
    NoMatchingPlatform,
    NotAnImage,
    InvalidReference,
    BlockedRegistry,
    /// A pull secret of the pod is one the kubelet refuses to decode: it fails every
    /// pull of the pod, whatever the registry holds.
    InvalidPullSecret,
    RegistryUnavailable,
    RateLimited,
    Timeout,
    Exempt,
}

impl Verdict {
    pub const ALL: [Verdict; 12] = [
        Verdict::Pullable,
        Verdict::NotFound,
        Verdict::Unauthorized,
        Verdict::NoMatchingPlatform,
        Verdict::NotAnImage,
        Verdict::InvalidReference,
        Verdict::BlockedRegistry,
        Verdict::InvalidPullSecret,
        Verdict::RegistryUnavailable,
        Verdict::RateLimited,
        Verdict::Timeout,
        Verdict::Exempt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pullable => "pullable",
            Verdict::NotFound => "not-found",
            Verdict::Unauthorized => "unauthorized",
            Verdict::NoMatchingPlatform => "no-matching-platform",
            Verdict::NotAnImage => "not-an-image",
            Verdict::InvalidReference => "invalid-reference",
            Verdict::BlockedRegistry => "blocked-registry",
            Verdict::InvalidPullSecret => "invalid-pull-secret",
            Verdict::RegistryUnavailable => "registry-unavailable",
            Verdict::RateLimited => "rate-limited",
            Verdict::Timeout => "timeout",
            Verdict::Exempt => "exempt",
        }
    }

    /// The pull would certainly fail: enforce mode denies these.
    pub fn is_definitive_failure(self) -> bool {
        matches!(
            self,
            Verdict::NotFound
                | Verdict::Unauthorized
                | Verdict::NoMatchingPlatform
                | Verdict::NotAnImage
                | Verdict::InvalidReference
                | Verdict::BlockedRegistry
                | Verdict::InvalidPullSecret
        )
    }

    /// We could not find out: the registry was down, slow or rate-limiting.
    pub fn is_indeterminate(self) -> bool {
        matches!(
            self,
            Verdict::RegistryUnavailable | Verdict::RateLimited | Verdict::Timeout
        )
    }

    pub fn is_ok(self) -> bool {
        matches!(self, Verdict::Pullable | Verdict::Exempt)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a registry probe found for one (reference, credentials, platforms): the unit the
/// cache stores. `message` says what the registry said, in words for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub digest: Option<Digest>,
    pub message: String,
    /// `Retry-After` of a 429, kept so callers and the cache can honour it.
    pub retry_after: Option<Duration>,
    /// Something to warn about that does not change the verdict (an image that lacks
    /// some of the pod's platforms, a schema 1 manifest).
    pub note: Option<String>,
}

impl Outcome {
    pub fn new(verdict: Verdict, message: impl Into<String>) -> Self {
        Self {
            verdict,
            digest: None,
            message: message.into(),
            retry_after: None,
            note: None,
        }
    }

    /// A resolved manifest. The message is left empty: a cache holds many of these, and
    /// [`Outcome::text`] says it in words when asked.
    pub fn pullable(digest: Digest) -> Self {
        Self {
            verdict: Verdict::Pullable,
            message: String::new(),
            digest: Some(digest),
            retry_after: None,
            note: None,
        }
    }

    /// What to tell a person.
    pub fn text(&self) -> String {
        match (&self.verdict, self.message.is_empty(), &self.digest) {
            (Verdict::Pullable, true, Some(digest)) => format!("manifest {digest} resolved"),
            _ => self.message.clone(),
        }
    }
}

/// The answer for one container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The image string as written in the spec.
    pub image: String,
    /// The normalized reference, when the image string is valid.
    pub reference: Option<String>,
    /// Container name, when the image came from a pod spec's containers.
    pub container: Option<String>,
    /// Volume name, when the image is an image volume's (`volumes[].image.reference`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    pub verdict: Verdict,
    pub digest: Option<String>,
    pub message: String,
    /// A warning that does not change the verdict (platforms the image lacks among those
    /// the pod may land on); shown as a warning in every mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Nodes the pod can land on that already hold the image and will run it without a
    /// pull (`IfNotPresent`): a definitive failure with these is a warning, not a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_copies: Option<NodeCopies>,
}

/// Node `status.images` evidence for one image: `holding` of the `eligible` nodes the pod
/// can land on report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NodeCopies {
    pub holding: usize,
    pub eligible: usize,
    /// Holders whose kubelet (1.35+) re-checks the pod's credentials for an image pulled
    /// with a Secret (KEP-2535), so their copy may still need a pull the registry refuses.
    #[serde(skip_serializing_if = "is_zero")]
    pub recheck_credentials: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Finding {
    /// `container "web"`, `volume "data"` or `image "…"`: who a message is about.
    pub fn subject(&self, max_image: usize) -> String {
        match (&self.container, &self.volume) {
            (Some(c), _) => format!("container {c:?}"),
            (None, Some(v)) => format!("volume {v:?}"),
            (None, None) => format!("image {:?}", excerpt(&self.image, max_image)),
        }
    }
}

/// At most `max` characters of `s`, with `…` when cut: what a message may quote of input
/// that a user (or an attacker) controls, such as a 1 MiB image string.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
