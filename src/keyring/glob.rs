//! Go's `path/filepath.Match` on Linux (Go 1.27 `match.go`), on bytes: the kubelet matches
//! each host label of a registry key against the image's with it
//! (`pkg/credentialprovider/keyring.go URLsMatch`).
//!
//! `*` matches any run of non-`/` bytes, `?` one rune, `[…]` / `[^…]` a rune class with
//! `lo-hi` ranges, `\` escapes. A malformed pattern matches nothing (Go returns
//! `ErrBadPattern`, which the kubelet counts as no match). Invalid UTF-8 is read as Go
//! reads it: each bad byte is one U+FFFD.

use super::json::decode_rune;

const SEPARATOR: u8 = b'/';

/// `filepath.Match(pattern, name)` is `(true, nil)`.
pub fn matches(mut pattern: &[u8], mut name: &[u8]) -> bool {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest unless it holds a `/`.
            return !name.contains(&SEPARATOR);
        }
        let (t, ok, bad) = match_chunk(chunk, name);
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if bad {
            return false;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != SEPARATOR {
                let (t, ok, bad) = match_chunk(chunk, &name[i + 1..]);
                if ok {
                    // The last chunk must exhaust the name.
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                if bad {
                    return false;
                }
                i += 1;
            }
        }
        return false;
    }
    name.is_empty()
}

/// `scanChunk`: an optional run of `*`, then everything up to the next `*` outside a
/// class.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&c| c == b'*').count();
    let pattern = &pattern[stars..];
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => return (stars > 0, &pattern[..i], &pattern[i..]),
            _ => {}
        }
        i += 1;
    }
    (stars > 0, pattern, &[])
}

/// `matchChunk`: (rest of `s`, matched, pattern malformed).
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> (&'a [u8], bool, bool) {
    // Once the match has failed, the chunk is still read to the end to report a
    // malformed pattern.
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        failed = failed || s.is_empty();
        match c {
            b'[' => {
                let mut r = '\u{0}';
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let Some((lo, rest)) = get_esc(chunk) else {
                        return (&[], false, true);
                    };
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let Some((h, rest)) = get_esc(&chunk[1..]) else {
                            return (&[], false, true);
                        };
                        hi = h;
                        chunk = rest;
                    }
                    matched = matched || (lo <= r && r <= hi);
                    ranges += 1;
                }
                failed = failed || matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = s[0] == SEPARATOR;
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return (&[], false, true);
                    }
                }
                if !failed {
                    failed = chunk[0] != s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        (&[], false, false)
    } else {
        (s, true, false)
    }
}

/// `getEsc`: one possibly escaped rune of a class, or `None` for a malformed class.
fn get_esc(mut chunk: &[u8]) -> Option<(char, &[u8])> {
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return None,
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return None;
            }
        }
        Some(_) => {}
    }
    let (r, n) = decode_rune(chunk);
    if r == '\u{FFFD}' && n == 1 {
        return None;
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return None;
    }
    Some((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("*", "anything", true)]
    #[case("*", "", true)]
    #[case("a*c", "abbbc", true)]
    #[case("a*c", "abbbd", false)]
    #[case("a*b*c", "axbyc", true)]
    #[case("[^a]x", "bx", true)]
    #[case("[^a]x", "ax", false)]
    #[case("[!a]x", "!x", true)]
    #[case("[a-c]", "b", true)]
    #[case("\\*", "*", true)]
    #[case("\\", "\\", false)]
    #[case("[", "a", false)]
    #[case("[]a]", "]", false)]
    #[case("?", "\u{e9}", true)]
    #[case("a?", "a/", false)]
    #[case("*x", "a/x", false)]
    #[case("[a-", "a", false)]
    fn matching_follows_go(#[case] pattern: &str, #[case] name: &str, #[case] expected: bool) {
        assert_eq!(
            matches(pattern.as_bytes(), name.as_bytes()),
            expected,
            "{pattern:?} {name:?}"
        );
    }
}
