//! Go's `net/url.Parse` (Go 1.27 `url.go`), `net.SplitHostPort` and the IPv6 check of
//! `net/netip.ParseAddr`, on bytes: the kubelet runs every docker config key and every
//! image name through them before matching, and what Go refuses is never matched.
//!
//! Go strings are bytes: percent-decoding (`%FF`) can put any byte in a host or a path,
//! so hosts and paths here are `Vec<u8>`, never `String`.

use std::fmt;

/// Why Go's `url.Parse` refuses a string (never quoting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    ControlCharacter,
    MissingScheme,
    FirstSegmentColon,
    InvalidUserinfo,
    InvalidIpLiteral,
    MissingBracket,
    InvalidPort,
    InvalidHost,
    InvalidEscape,
    InvalidHostCharacter,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::ControlCharacter => "invalid control character in URL",
            UrlError::MissingScheme => "missing protocol scheme",
            UrlError::FirstSegmentColon => "first path segment in URL cannot contain colon",
            UrlError::InvalidUserinfo => "invalid userinfo",
            UrlError::InvalidIpLiteral => "invalid IP-literal",
            UrlError::MissingBracket => "missing ']' in host",
            UrlError::InvalidPort => "invalid port after host",
            UrlError::InvalidHost => "invalid host (not an IPv6 address)",
            UrlError::InvalidEscape => "invalid URL escape",
            UrlError::InvalidHostCharacter => "invalid character in host name",
        })
    }
}

/// The fields of Go's `url.URL` the keyring reads (plus what the tests compare).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Url {
    /// Lower-cased, as Go leaves it.
    pub scheme: Vec<u8>,
    /// Unescaped userinfo, when an `@` was present (never part of the host).
    pub user: Option<Vec<u8>>,
    /// Unescaped `host[:port]`, case kept (Go does not lower-case hosts).
    pub host: Vec<u8>,
    /// The unescaped path.
    pub path: Vec<u8>,
    pub raw_query: Vec<u8>,
    pub fragment: Vec<u8>,
    /// `scheme:opaque`, for a scheme followed by something other than `/`.
    pub opaque: Vec<u8>,
}

/// The encoding modes of `url.go` that unescaping distinguishes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    Fragment,
}

/// `shouldEscape(c, encodeHost)` is false: the ASCII a host may hold unescaped.
fn host_byte_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
        )
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.wrapping_sub(b'A').wrapping_add(10),
    }
}

/// `unescape(s, mode)`.
fn unescape(s: &[u8], mode: Mode) -> Result<Vec<u8>, UrlError> {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let (Some(&h), Some(&l)) = (s.get(i + 1), s.get(i + 2)) else {
                    return Err(UrlError::InvalidEscape);
                };
                if !h.is_ascii_hexdigit() || !l.is_ascii_hexdigit() {
                    return Err(UrlError::InvalidEscape);
                }
                // RFC 3986 §3.2.2: a host %-encodes only non-ASCII bytes (and `%25`).
                if mode == Mode::Host && unhex(h) < 8 && &s[i..i + 3] != b"%25" {
                    return Err(UrlError::InvalidEscape);
                }
                if mode == Mode::Zone {
                    let v = unhex(h) << 4 | unhex(l);
                    if &s[i..i + 3] != b"%25" && v != b' ' && !host_byte_ok(v) {
                        return Err(UrlError::InvalidEscape);
                    }
                }
                i += 3;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && !host_byte_ok(c) {
                    return Err(UrlError::InvalidHostCharacter);
                }
                i += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            out.push(unhex(s[i + 1]) << 4 | unhex(s[i + 2]));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn find(s: &[u8], c: u8) -> Option<usize> {
    s.iter().position(|&b| b == c)
}

fn rfind(s: &[u8], c: u8) -> Option<usize> {
    s.iter().rposition(|&b| b == c)
}

/// `getScheme`: `[a-zA-Z][a-zA-Z0-9+.-]*:`, else no scheme.
fn split_scheme(raw: &[u8]) -> Result<(&[u8], &[u8]), UrlError> {
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err(UrlError::MissingScheme),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok((&[], raw)),
        }
    }
    Ok((&[], raw))
}

/// `url.Parse`.
pub fn parse(raw: &[u8]) -> Result<Url, UrlError> {
    // `#frag` is cut off first; control characters are refused only before it.
    let (before, fragment) = match find(raw, b'#') {
        Some(i) => (&raw[..i], Some(&raw[i + 1..])),
        None => (raw, None),
    };
    let mut url = parse_without_fragment(before)?;
    if let Some(fragment) = fragment {
        url.fragment = unescape(fragment, Mode::Fragment)?;
    }
    Ok(url)
}

fn parse_without_fragment(raw: &[u8]) -> Result<Url, UrlError> {
    if raw.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err(UrlError::ControlCharacter);
    }
    let mut url = Url::default();
    if raw == b"*" {
        url.path = b"*".to_vec();
        return Ok(url);
    }
    let (scheme, mut rest) = split_scheme(raw)?;
    url.scheme = scheme.to_ascii_lowercase();
    if rest.last() == Some(&b'?') && rest.iter().filter(|&&b| b == b'?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some(i) = find(rest, b'?') {
        url.raw_query = rest[i + 1..].to_vec();
        rest = &rest[..i];
    }
    if !rest.starts_with(b"/") {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_vec();
            return Ok(url);
        }
        let segment = find(rest, b'/').map_or(rest, |i| &rest[..i]);
        if segment.contains(&b':') {
            return Err(UrlError::FirstSegmentColon);
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with(b"///")) && rest.starts_with(b"//") {
        let authority = &rest[2..];
        let (authority, path) = match find(authority, b'/') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, &b""[..]),
        };
        let (user, host) = parse_authority(&url.scheme, authority)?;
        url.user = user;
        url.host = host;
        rest = path;
    }
    url.path = unescape(rest, Mode::Path)?;
    Ok(url)
}

/// `parseAuthority`: userinfo is everything before the LAST `@`.
#[allow(clippy::type_complexity)]
fn parse_authority(
    scheme: &[u8],
    authority: &[u8],
) -> Result<(Option<Vec<u8>>, Vec<u8>), UrlError> {
    let Some(at) = rfind(authority, b'@') else {
        return Ok((None, parse_host(scheme, authority)?));
    };
    let host = parse_host(scheme, &authority[at + 1..])?;
    let userinfo = &authority[..at];
    // `validUserinfo` ranges over runes: anything outside this ASCII set (any non-ASCII
    // rune, or invalid UTF-8) is refused.
    let valid = userinfo.iter().all(|&c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    });
    if !valid {
        return Err(UrlError::InvalidUserinfo);
    }
    let user = match find(userinfo, b':') {
        None => unescape(userinfo, Mode::UserPassword)?,
        Some(i) => {
            let mut user = unescape(&userinfo[..i], Mode::UserPassword)?;
            let password = unescape(&userinfo[i + 1..], Mode::UserPassword)?;
            user.push(b':');
            user.extend_from_slice(&password);
            user
        }
    };
    Ok((Some(user), host))
}

/// `validOptionalPort`: empty, or `:` and digits.
fn valid_optional_port(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// `parseHost`.
fn parse_host(scheme: &[u8], host: &[u8]) -> Result<Vec<u8>, UrlError> {
    match rfind(host, b'[') {
        Some(i) if i > 0 => return Err(UrlError::InvalidIpLiteral),
        Some(_) => {
            let close = rfind(host, b']').ok_or(UrlError::MissingBracket)?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return Err(UrlError::InvalidPort);
            }
            let colon_port = unescape(colon_port, Mode::Host)?;
            let hostname = host.get(1..close).ok_or(UrlError::InvalidIpLiteral)?;
            // RFC 6874: `%25` starts a zone, which may escape more freely.
            let unescaped = match hostname.windows(3).position(|w| w == b"%25") {
                Some(z) => {
                    let mut h = unescape(&hostname[..z], Mode::Host)?;
                    h.extend(unescape(&hostname[z..], Mode::Zone)?);
                    h
                }
                None => unescape(hostname, Mode::Host)?,
            };
            // Only an IPv6 address may stand in brackets (IPv4-mapped included).
            if !is_ipv6_address(&unescaped) {
                return Err(if is_ipv4_address(&unescaped) {
                    UrlError::InvalidIpLiteral
                } else {
                    UrlError::InvalidHost
                });
            }
            let mut out = Vec::with_capacity(unescaped.len() + colon_port.len() + 2);
            out.push(b'[');
            out.extend(unescaped);
            out.push(b']');
            out.extend(colon_port);
            return Ok(out);
        }
        None => {}
    }
    if let Some(first) = find(host, b':') {
        let last = rfind(host, b':').unwrap_or(first);
        // Go 1.26+ (GODEBUG urlstrictcolons=1, the default for a main module declaring
        // go ≥ 1.26): http and https hosts may not hold a second colon. Older toolchains
        // took the last colon as the port separator; for image names, which never hold
        // two colons in the host, both answer the same match.
        let colon = if last != first && !(scheme == b"http" || scheme == b"https") {
            last
        } else {
            first
        };
        if !valid_optional_port(&host[colon..]) {
            return Err(UrlError::InvalidPort);
        }
    }
    unescape(host, Mode::Host)
}

/// `netip.ParseAddr(s)` succeeds with an IPv4 address.
fn is_ipv4_address(s: &[u8]) -> bool {
    for &c in s {
        match c {
            b'.' => return parse_ipv4_fields(s).is_some(),
            b':' | b'%' => return false,
            _ => {}
        }
    }
    false
}

/// `netip.ParseAddr(s)` succeeds with an IPv6 address (`parseIPv6`).
fn is_ipv6_address(s: &[u8]) -> bool {
    for &c in s {
        match c {
            b'.' | b'%' => return false,
            b':' => return parse_ipv6(s),
            _ => {}
        }
    }
    false
}

/// `parseIPv4Fields`: four decimal octets, no leading zeros.
fn parse_ipv4_fields(s: &[u8]) -> Option<[u8; 4]> {
    let mut fields = [0u8; 4];
    let (mut val, mut pos, mut digits) = (0u32, 0usize, 0usize);
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && val == 0 {
                    return None;
                }
                val = val * 10 + u32::from(c - b'0');
                digits += 1;
                if val > 255 {
                    return None;
                }
            }
            b'.' => {
                if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' || pos == 3 {
                    return None;
                }
                fields[pos] = val as u8;
                pos += 1;
                val = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if pos < 3 {
        return None;
    }
    fields[3] = val as u8;
    Some(fields)
}

/// `parseIPv6`, answering only whether it succeeds.
fn parse_ipv6(input: &[u8]) -> bool {
    let mut s = input;
    if let Some(z) = find(s, b'%') {
        if z + 1 == s.len() {
            return false;
        }
        s = &s[..z];
    }
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return true;
        }
    }
    let mut i = 0usize;
    while i < 16 {
        let mut off = 0;
        let mut acc = 0u32;
        while off < s.len() {
            let c = s[off];
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => break,
            };
            acc = (acc << 4) + u32::from(d);
            if off > 3 || acc > 0xFFFF {
                return false;
            }
            off += 1;
        }
        if off == 0 {
            return false;
        }
        if s.get(off) == Some(&b'.') {
            if (ellipsis.is_none() && i != 12) || i + 4 > 16 {
                return false;
            }
            if parse_ipv4_fields(s).is_none() {
                return false;
            }
            s = &[];
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return false;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return false;
    }
    if i < 16 {
        ellipsis.is_some()
    } else {
        ellipsis.is_none()
    }
}

/// `net.SplitHostPort`, or `None` where Go returns an error.
pub fn split_host_port(hostport: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = rfind(hostport, b':')?;
    let (host, j, k) = if hostport.first() == Some(&b'[') {
        let end = find(hostport, b']')?;
        if end + 1 != i {
            return None;
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(&b':') {
            return None;
        }
        (host, 0, 0)
    };
    if hostport[j..].contains(&b'[') || hostport[k..].contains(&b']') {
        return None;
    }
    Some((host, &hostport[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn host_path(raw: &str) -> Option<(String, String)> {
        parse(raw.as_bytes()).ok().map(|u| {
            (
                String::from_utf8_lossy(&u.host).into_owned(),
                String::from_utf8_lossy(&u.path).into_owned(),
            )
        })
    }

    #[rstest]
    #[case::plain("https://r.example.com/team", Some(("r.example.com", "/team")))]
    #[case::userinfo_is_not_host("https://user:pw@r.example.com", Some(("r.example.com", "")))]
    #[case::last_at_wins("https://a@b@r.io/x", Some(("r.io", "/x")))]
    #[case::query_cut("https://r.io/a?b/c", Some(("r.io", "/a")))]
    #[case::fragment_cut("https://r.io/a#b", Some(("r.io", "/a")))]
    #[case::control_character_after_fragment_is_fine("https://r.io/a#\u{1}", Some(("r.io", "/a")))]
    #[case::control_character("https://r.io/a\u{1}", None)]
    #[case::path_unescaped("https://r.io/a%2Fb", Some(("r.io", "/a/b")))]
    #[case::bad_escape("https://r.io/a%zz", None)]
    #[case::host_escape_of_ascii("https://r%41.io", None)]
    #[case::host_escape_of_non_ascii("https://r%C3%A9.io", Some(("ré.io", "")))]
    #[case::host_keeps_case("https://Registry.IO", Some(("Registry.IO", "")))]
    #[case::port("https://r.io:5000", Some(("r.io:5000", "")))]
    #[case::bad_port("https://r.io:50a", None)]
    #[case::empty_port("https://r.io:", Some(("r.io:", "")))]
    #[case::two_colons("https://a:b:5000", None)]
    #[case::bracket_not_first("https://r-[a].io", None)]
    #[case::class_at_start("https://[a-c].io", None)]
    #[case::ipv6("https://[::1]:5000/x", Some(("[::1]:5000", "/x")))]
    #[case::ipv4_in_brackets("https://[127.0.0.1]", None)]
    #[case::zone("https://[fe80::1%25en0]", Some(("[fe80::1%en0]", "")))]
    #[case::space_in_host("https://r io", None)]
    #[case::caret_in_host("https://r^.io", None)]
    #[case::backslash_in_host("https://r\\.io", None)]
    #[case::star_in_host("https://*.r.io", Some(("*.r.io", "")))]
    #[case::non_ascii_userinfo("https://\u{e9}@r.io", None)]
    fn parse_follows_go(#[case] raw: &str, #[case] expected: Option<(&str, &str)>) {
        let expected = expected.map(|(h, p)| (h.to_string(), p.to_string()));
        assert_eq!(host_path(raw), expected, "{raw:?}");
    }

    #[rstest]
    #[case("r.io:5000", Some(("r.io", "5000")))]
    #[case("r.io", None)]
    #[case("[::1]:80", Some(("::1", "80")))]
    #[case("[::1]", None)]
    #[case("a:b:c", None)]
    #[case("r.io:", Some(("r.io", "")))]
    fn split_host_port_follows_go(#[case] hp: &str, #[case] expected: Option<(&str, &str)>) {
        let got = split_host_port(hp.as_bytes());
        let expected = expected.map(|(h, p)| (h.as_bytes(), p.as_bytes()));
        assert_eq!(got, expected);
    }
}
