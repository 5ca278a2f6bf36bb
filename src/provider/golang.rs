//! The few Go standard-library behaviours the kubelet's credential-provider code leans on,
//! so that durations, URLs and messages read exactly as the kubelet's do: `time.ParseDuration`
//! and `Duration.String`, `strconv.Quote`, and the errors of `url.Parse` behind
//! `pkg/credentialprovider/keyring.go ParseSchemelessURL` (which config validation reports).
//! Expected answers in the tests come from running Go 1.27's standard library.

use std::fmt::Write as _;

/// A Go `time.Duration`: signed nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub i64);

impl GoDuration {
    pub const ZERO: GoDuration = GoDuration(0);

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The non-negative part as a std duration (negative durations expire at once).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }
}

const UNIT_NS: u64 = 1;
const UNIT_US: u64 = 1_000;
const UNIT_MS: u64 = 1_000_000;
const UNIT_S: u64 = 1_000_000_000;
const UNIT_M: u64 = 60 * UNIT_S;
const UNIT_H: u64 = 60 * UNIT_M;
const LIMIT: u64 = 1 << 63;

/// `time.ParseDuration` (Go `src/time/format.go`), errors worded as Go words them.
pub fn parse_duration(orig: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(orig));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(GoDuration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (v, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let pre = before != s.len();
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (fx, fscale, rest) = leading_fraction(s);
            (f, scale, s) = (fx, fscale, rest);
            post = before != s.len();
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                time_quote(orig)
            ));
        }
        let (unit_bytes, rest) = s.split_at(unit_len);
        s = rest;
        let unit = match unit_bytes {
            b"ns" => UNIT_NS,
            // "µs" (U+00B5) and "μs" (U+03BC), as Go's unitMap has both.
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => UNIT_US,
            b"ms" => UNIT_MS,
            b"s" => UNIT_S,
            b"m" => UNIT_M,
            b"h" => UNIT_H,
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(&String::from_utf8_lossy(other)),
                    time_quote(orig)
                ));
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        let mut v = v * unit;
        if f > 0 {
            // Go: float64 keeps nanosecond accuracy for fractions of hours.
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        // d <= 1<<63: the negation fits (1<<63 is i64::MIN).
        return Ok(GoDuration((d as i64).wrapping_neg()));
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(GoDuration(d as i64))
}

fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if x > (LIMIT - 1) / 10 {
                overflow = true;
            } else {
                let y = x * 10 + u64::from(s[i] - b'0');
                if y > LIMIT {
                    overflow = true;
                } else {
                    x = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (x, scale, &s[i..])
}

/// The `time` package's own `quote`: `\xNN` for every byte of a non-ASCII or control
/// character, `\` before `"` and `\`.
fn time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if (c as u32) >= 0x80 || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

impl std::fmt::Display for GoDuration {
    /// `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`, `-1m0s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let neg = self.0 < 0;
        let mut u = self.0.unsigned_abs();
        // Built right to left, as Go does.
        let mut out: Vec<u8> = Vec::with_capacity(32);
        if u < UNIT_S {
            out.push(b's');
            let prec = match u {
                0 => {
                    return f.write_str("0s");
                }
                _ if u < UNIT_US => {
                    out.push(b'n');
                    0
                }
                _ if u < UNIT_MS => {
                    // "µ", U+00B5, reversed because `out` is reversed at the end.
                    out.extend_from_slice(&[0xb5, 0xc2]);
                    3
                }
                _ => {
                    out.push(b'm');
                    6
                }
            };
            u = fmt_frac(&mut out, u, prec);
            fmt_int(&mut out, u);
        } else {
            out.push(b's');
            u = fmt_frac(&mut out, u, 9);
            fmt_int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push(b'm');
                fmt_int(&mut out, u % 60);
                u /= 60;
                if u > 0 {
                    out.push(b'h');
                    fmt_int(&mut out, u);
                }
            }
        }
        if neg {
            out.push(b'-');
        }
        out.reverse();
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// Go's `fmtFrac`, writing reversed: the fraction of v/10^prec without trailing zeros.
fn fmt_frac(out: &mut Vec<u8>, mut v: u64, prec: u32) -> u64 {
    let mut print = false;
    for _ in 0..prec {
        let digit = v % 10;
        print = print || digit != 0;
        if print {
            out.push(b'0' + digit as u8);
        }
        v /= 10;
    }
    if print {
        out.push(b'.');
    }
    v
}

fn fmt_int(out: &mut Vec<u8>, mut v: u64) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    while v > 0 {
        out.push(b'0' + (v % 10) as u8);
        v /= 10;
    }
}

/// `strconv.Quote` for valid UTF-8: printable characters as they are, the usual escapes
/// for the rest.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `url.Parse("https://" + s)` succeeds (`ParseSchemelessURL`); the error as Go
/// prints it otherwise (`parse "https://a b": invalid character " " in host name`).
pub fn parse_schemeless_url(s: &str) -> Result<(), String> {
    let raw = format!("https://{s}");
    // url.Parse: cut off the fragment first; a bad fragment escape quotes the whole URL.
    let (before_fragment, fragment) = match raw.split_once('#') {
        Some((u, frag)) => (u, Some(frag)),
        None => (raw.as_str(), None),
    };
    if let Err(e) = parse_without_fragment(before_fragment) {
        return Err(format!("parse {}: {e}", quote(before_fragment)));
    }
    if let Some(fragment) = fragment
        && let Err(e) = unescape(fragment, Mode::Fragment)
    {
        return Err(format!("parse {}: {e}", quote(&raw)));
    }
    Ok(())
}

/// `net/url parse` for a URL that starts with `https://` and has no fragment.
fn parse_without_fragment(raw: &str) -> Result<(), String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".to_string());
    }
    let rest = &raw["https:".len()..];
    // A lone trailing `?` forces an empty query; otherwise the query starts at the first `?`.
    let rest = match rest.split_once('?') {
        Some((before, _)) => before,
        None => rest,
    };
    let authority_and_path = &rest[2..];
    let (authority, path) = match authority_and_path.find('/') {
        Some(i) => authority_and_path.split_at(i),
        None => (authority_and_path, ""),
    };
    parse_authority(authority)?;
    unescape(path, Mode::Path)
}

fn parse_authority(authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    parse_host(host)?;
    if let Some(userinfo) = userinfo {
        if !userinfo.bytes().all(valid_userinfo_byte) {
            return Err("net/url: invalid userinfo".to_string());
        }
        for part in userinfo.splitn(2, ':') {
            unescape(part, Mode::UserPassword)?;
        }
    }
    Ok(())
}

fn valid_userinfo_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b) || b >= 0x80
}

fn parse_host(host: &str) -> Result<(), String> {
    if let Some(after_bracket) = host.strip_prefix('[') {
        let Some(i) = after_bracket.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        let colon_port = &after_bracket[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {} after host", quote(colon_port)));
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {} after host", quote(colon_port)));
        }
    }
    unescape(host, Mode::Host)
}

/// `validOptionalPort`: empty, or `:` followed by digits only.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Path,
    UserPassword,
    Fragment,
}

/// The checking half of `net/url unescape`: malformed `%` escapes, and characters a host
/// may not hold.
fn unescape(s: &str, mode: Mode) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    let tail = &s[i..];
                    let cut = tail
                        .char_indices()
                        .map(|(j, _)| j)
                        .chain([tail.len()])
                        .take_while(|&j| j <= 3)
                        .last()
                        .unwrap_or(0);
                    return Err(format!("invalid URL escape {}", quote(&tail[..cut])));
                }
                // RFC 3986: in a host, %-encoding is only for non-ASCII bytes (and %25).
                if mode == Mode::Host && hex_value(b[i + 1]) < 8 && &s[i..i + 3] != "%25" {
                    return Err(format!("invalid URL escape {}", quote(&s[i..i + 3])));
                }
                i += 3;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && should_escape_in_host(c) {
                    return Err(format!(
                        "invalid character {} in host name",
                        quote(&(c as char).to_string())
                    ));
                }
                i += 1;
            }
        }
    }
    Ok(())
}

fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `shouldEscape(c, encodeHost)`.
fn should_escape_in_host(c: u8) -> bool {
    !(c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // Answers from Go 1.27: fmt.Println(time.ParseDuration(s)).
    #[rstest]
    #[case("0", Ok(0))]
    #[case("-0", Ok(0))]
    #[case("10m", Ok(600_000_000_000))]
    #[case("12h", Ok(43_200_000_000_000))]
    #[case("12h0m0s", Ok(43_200_000_000_000))]
    #[case("1.5h", Ok(5_400_000_000_000))]
    #[case("-1m", Ok(-60_000_000_000))]
    #[case("+5s", Ok(5_000_000_000))]
    #[case(".5s", Ok(500_000_000))]
    #[case("1µs", Ok(1_000))]
    #[case("1μs", Ok(1_000))]
    #[case("2h45m30.5s", Ok(9_930_500_000_000))]
    #[case("", Err("time: invalid duration \"\""))]
    #[case("10", Err("time: missing unit in duration \"10\""))]
    #[case("10d", Err("time: unknown unit \"d\" in duration \"10d\""))]
    #[case("abc", Err("time: invalid duration \"abc\""))]
    #[case(".s", Err("time: invalid duration \".s\""))]
    #[case("1 m", Err("time: unknown unit \" m\" in duration \"1 m\""))]
    #[case("9999999999h", Err("time: invalid duration \"9999999999h\""))]
    #[case(
        "1é",
        Err("time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"")
    )]
    #[case("-9223372036854775808ns", Ok(i64::MIN))]
    #[case(
        "9223372036854775808ns",
        Err("time: invalid duration \"9223372036854775808ns\"")
    )]
    #[case(
        "-9223372036854775809ns",
        Err("time: invalid duration \"-9223372036854775809ns\"")
    )]
    fn durations_parse_as_go_parses_them(#[case] input: &str, #[case] want: Result<i64, &str>) {
        assert_eq!(
            parse_duration(input),
            want.map(GoDuration).map_err(str::to_string),
            "{input:?}"
        );
    }

    #[rstest]
    #[case(0, "0s")]
    #[case(1, "1ns")]
    #[case(1_500, "1.5µs")]
    #[case(1_500_000, "1.5ms")]
    #[case(-60_000_000_000, "-1m0s")]
    #[case(43_200_000_000_000, "12h0m0s")]
    #[case(9_930_500_000_000, "2h45m30.5s")]
    #[case(i64::MIN, "-2562047h47m16.854775808s")]
    fn durations_print_as_go_prints_them(#[case] nanos: i64, #[case] want: &str) {
        assert_eq!(GoDuration(nanos).to_string(), want);
    }

    #[rstest]
    #[case("abc", "\"abc\"")]
    #[case("a\"b\\c", "\"a\\\"b\\\\c\"")]
    #[case("tab\there\n", "\"tab\\there\\n\"")]
    #[case("\u{1}", "\"\\x01\"")]
    #[case("é", "\"é\"")]
    fn quoting_follows_strconv_quote(#[case] input: &str, #[case] want: &str) {
        assert_eq!(quote(input), want);
    }

    // Answers from Go 1.27: url.Parse("https://" + s).
    #[rstest]
    #[case("*.dkr.ecr.*.amazonaws.com", None)]
    #[case("registry.example.com:5000/team", None)]
    #[case("[::1]:5000", None)]
    #[case("reg.io/a%20b", None)]
    #[case("reg.io?x=1", None)]
    #[case("user:pw@reg.io", None)]
    #[case(
        "reg io",
        Some("parse \"https://reg io\": invalid character \" \" in host name")
    )]
    #[case(
        "reg.io:abc",
        Some("parse \"https://reg.io:abc\": invalid port \":abc\" after host")
    )]
    #[case("[::1", Some("parse \"https://[::1\": missing ']' in host"))]
    #[case(
        "reg.io/%zz",
        Some("parse \"https://reg.io/%zz\": invalid URL escape \"%zz\"")
    )]
    #[case(
        "reg.io/a#%z",
        Some("parse \"https://reg.io/a#%z\": invalid URL escape \"%z\"")
    )]
    #[case(
        "reg%41.io",
        Some("parse \"https://reg%41.io\": invalid URL escape \"%41\"")
    )]
    #[case(
        "reg.io\u{7f}",
        Some("parse \"https://reg.io\\x7f\": net/url: invalid control character in URL")
    )]
    #[case(
        "reg{1}.io",
        Some("parse \"https://reg{1}.io\": invalid character \"{\" in host name")
    )]
    #[case(
        "us er@reg.io",
        Some("parse \"https://us er@reg.io\": net/url: invalid userinfo")
    )]
    #[case(
        "a:b:c",
        Some("parse \"https://a:b:c\": invalid port \":c\" after host")
    )]
    #[case(
        "reg.io/%",
        Some("parse \"https://reg.io/%\": invalid URL escape \"%\"")
    )]
    #[case(
        "reg.io/%4",
        Some("parse \"https://reg.io/%4\": invalid URL escape \"%4\"")
    )]
    #[case(
        "reg|x.io",
        Some("parse \"https://reg|x.io\": invalid character \"|\" in host name")
    )]
    #[case("reg%e2%82.io", None)]
    #[case("[fe80::1%25en0]", None)]
    #[case("reg.io:", None)]
    #[case("https://x.io", None)]
    fn schemeless_urls_fail_as_go_url_parse_fails(#[case] input: &str, #[case] want: Option<&str>) {
        assert_eq!(
            parse_schemeless_url(input).err().as_deref(),
            want,
            "{input:?}"
        );
    }
}
