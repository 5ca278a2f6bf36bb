//! Go's `encoding/base64` decoding (Go 1.27 `base64.go decodeQuantum`) with the standard
//! alphabet, padded (`StdEncoding`) or not (`RawStdEncoding`), and not `Strict`: `\r` and
//! `\n` are skipped wherever they are, and the unused low bits of the last character may
//! be anything. The `base64` crate refuses both, which made pullgate reject secrets the
//! kubelet reads.

use std::fmt;

/// `CorruptInputError`: the byte offset where decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptInput(pub usize);

impl fmt::Display for CorruptInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal base64 data at input byte {}", self.0)
    }
}

/// Which of Go's two standard-alphabet encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// `base64.StdEncoding`: input must come in whole quanta, `=`-padded.
    Padded,
    /// `base64.RawStdEncoding`: no `=` at all; a final quantum of 2 or 3 characters.
    Unpadded,
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// `Encoding.DecodeString`.
pub fn decode(src: &[u8], padding: Padding) -> Result<Vec<u8>, CorruptInput> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut si = 0;
    while si < src.len() {
        let (next, done) = decode_quantum(&mut out, src, si, padding)?;
        si = next;
        if done {
            break;
        }
    }
    Ok(out)
}

/// One quantum from `src[si..]`: the index after it, and whether the input ended.
fn decode_quantum(
    out: &mut Vec<u8>,
    src: &[u8],
    mut si: usize,
    padding: Padding,
) -> Result<(usize, bool), CorruptInput> {
    let mut buf = [0u8; 4];
    let mut len = 0;
    let mut ended = false;
    while len < 4 {
        let Some(&c) = src.get(si) else {
            match (len, padding) {
                (0, _) => return Ok((si, true)),
                (1, _) | (_, Padding::Padded) => return Err(CorruptInput(si - len)),
                _ => {}
            }
            ended = true;
            break;
        };
        si += 1;
        if let Some(v) = value(c) {
            buf[len] = v;
            len += 1;
            continue;
        }
        if c == b'\n' || c == b'\r' {
            continue;
        }
        if c != b'=' || padding == Padding::Unpadded {
            return Err(CorruptInput(si - 1));
        }
        // Padding: `==` after two characters, `=` after three; then only newlines.
        match len {
            0 | 1 => return Err(CorruptInput(si - 1)),
            2 => {
                while src.get(si).is_some_and(|&c| c == b'\n' || c == b'\r') {
                    si += 1;
                }
                match src.get(si) {
                    None => return Err(CorruptInput(src.len())),
                    Some(&b'=') => si += 1,
                    Some(_) => return Err(CorruptInput(si - 1)),
                }
            }
            _ => {}
        }
        while src.get(si).is_some_and(|&c| c == b'\n' || c == b'\r') {
            si += 1;
        }
        if si < src.len() {
            return Err(CorruptInput(si));
        }
        ended = true;
        break;
    }
    let v = u32::from(buf[0]) << 18
        | u32::from(buf[1]) << 12
        | u32::from(buf[2]) << 6
        | u32::from(buf[3]);
    let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    out.extend_from_slice(&bytes[..len.saturating_sub(1)]);
    Ok((si, ended))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::padded("dXNlcjpwYQ==", Padding::Padded, Some("user:pa"))]
    #[case::newlines_anywhere("dXNl\r\ncjpw\nYQ=\n=\n", Padding::Padded, Some("user:pa"))]
    #[case::nonzero_trailing_bits("dXNlcjpwYR==", Padding::Padded, Some("user:pa"))]
    #[case::missing_padding("dXNlcjpwYQ", Padding::Padded, None)]
    #[case::unpadded("dXNlcjpwYQ", Padding::Unpadded, Some("user:pa"))]
    #[case::unpadded_refuses_padding("dXNlcjpwYQ==", Padding::Unpadded, None)]
    #[case::one_dangling_character("dXNlc", Padding::Unpadded, None)]
    #[case::space_is_not_skipped("dXNl cjpw", Padding::Unpadded, None)]
    #[case::garbage_after_padding("YQ==YQ==", Padding::Padded, None)]
    #[case::empty("", Padding::Padded, Some(""))]
    #[case::only_newlines("\n\r\n", Padding::Padded, Some(""))]
    fn decoding_follows_go(
        #[case] input: &str,
        #[case] padding: Padding,
        #[case] expected: Option<&str>,
    ) {
        let got = decode(input.as_bytes(), padding).ok();
        assert_eq!(got.as_deref(), expected.map(str::as_bytes), "{input:?}");
    }
}
