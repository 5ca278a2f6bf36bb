//! Content digests (`sha256:<64 hex>`), kept as 32 bytes: a cache holds hundreds of
//! thousands of them, and nearly every registry digest is SHA-256.

use std::fmt;

/// A content digest. SHA-256 digests are stored as their 32 bytes; any other algorithm
/// a registry may announce (`sha512:…`) is kept as text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl Digest {
    /// Read `algorithm:hex` as a registry sends it (`Docker-Content-Digest`, descriptors).
    /// `None` for anything that is not `algorithm:encoded`.
    pub fn parse(s: &str) -> Option<Self> {
        let (algorithm, hex) = s.split_once(':')?;
        if algorithm.is_empty() || hex.is_empty() {
            return None;
        }
        if algorithm == "sha256" && hex.len() == 64 {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            // Uppercase hex is not a valid OCI digest; keep it as written so it never
            // compares equal to the canonical form.
            if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return Some(Digest::Other(s.into()));
            }
            return Some(Digest::Sha256(out));
        }
        Some(Digest::Other(s.into()))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Digest::Sha256(out)
    }

    /// The first 12 hex characters, for short messages.
    pub fn short(&self) -> String {
        let full = self.to_string();
        match full.split_once(':') {
            Some((_, hex)) => hex.chars().take(12).collect(),
            None => full,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(bytes) => {
                f.write_str("sha256:")?;
                for b in bytes {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Digest::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn sha256_round_trips_through_32_bytes() {
        let text = format!("sha256:{HEX}");
        let d = Digest::parse(&text).expect("digest");
        assert!(matches!(d, Digest::Sha256(_)));
        assert_eq!(d.to_string(), text);
        assert_eq!(d.short(), "0123456789ab");
    }

    #[test]
    fn other_algorithms_and_odd_forms_are_kept_as_text() {
        let sha512 = format!("sha512:{HEX}{HEX}");
        assert_eq!(
            Digest::parse(&sha512).map(|d| d.to_string()),
            Some(sha512.clone())
        );
        let upper = format!("sha256:{}", HEX.to_uppercase());
        assert!(matches!(Digest::parse(&upper), Some(Digest::Other(_))));
        assert_eq!(Digest::parse("sha256"), None);
        assert_eq!(Digest::parse(":abc"), None);
        assert_eq!(Digest::parse("sha256:"), None);
    }

    #[test]
    fn sha256_of_bytes() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
