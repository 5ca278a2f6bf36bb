//! The part of Go's `encoding/json` (v1, Go 1.27 `scanner.go`, `decode.go`, `fold.go`) that
//! decoding a docker config touches: the validity check `Unmarshal` runs over the whole
//! input first, string unquoting, and case-insensitive field names.
//!
//! serde_json differs from Go on exactly the inputs a hand-edited pull secret contains:
//! Go folds field names (`Auths`, `USERNAME`, `uſername`), replaces invalid UTF-8 and lone
//! surrogates with U+FFFD instead of failing, and nests 10000 levels deep where serde_json
//! stops at 128.

use std::fmt;

/// `scanner.go maxNestingDepth`: the deepest nesting `Unmarshal` accepts.
pub(crate) const MAX_NESTING_DEPTH: usize = 10_000;

/// Why a document is not JSON, without quoting any of it (it is a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset of the offending byte, or the length for a truncated document.
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// `checkValid`: the scanner's verdict over the whole input. Go accepts any byte ≥ 0x20
/// inside strings (invalid UTF-8 included), only ` \t\r\n` as whitespace, no BOM, and
/// nothing but whitespace after the top-level value.
pub(crate) fn check_valid(data: &[u8]) -> Result<(), SyntaxError> {
    let err = |offset: usize, reason: &'static str| Err(SyntaxError { offset, reason });
    // Open containers, innermost last: b'{' or b'['.
    let mut stack: Vec<u8> = Vec::new();
    let mut i = skip_space(data, 0);
    // What may come next: a value (after `[`, `:`, `,` in an array, or at the top), or a
    // key (after `{` or `,` in an object).
    #[derive(PartialEq)]
    enum Want {
        Value,
        ValueOrClose,
        Key,
        KeyOrClose,
        /// After a value: `,`, the closing bracket, or (at the top) the end.
        Next,
    }
    let mut want = Want::Value;
    loop {
        i = skip_space(data, i);
        let Some(&c) = data.get(i) else {
            return if want == Want::Next && stack.is_empty() {
                Ok(())
            } else {
                err(data.len(), "unexpected end of JSON input")
            };
        };
        match want {
            Want::Next => {
                match (stack.last(), c) {
                    (None, _) => return err(i, "invalid character after top-level value"),
                    (Some(b'{'), b',') => want = Want::Key,
                    (Some(b'['), b',') => want = Want::Value,
                    (Some(b'{'), b'}') | (Some(b'['), b']') => {
                        stack.pop();
                        want = Want::Next;
                    }
                    (Some(b'{'), _) => {
                        return err(i, "invalid character after object key:value pair");
                    }
                    _ => return err(i, "invalid character after array element"),
                }
                i += 1;
            }
            Want::Key | Want::KeyOrClose => {
                if c == b'}' && want == Want::KeyOrClose {
                    stack.pop();
                    want = Want::Next;
                    i += 1;
                    continue;
                }
                if c != b'"' {
                    return err(
                        i,
                        "invalid character looking for beginning of object key string",
                    );
                }
                i = scan_string(data, i)?;
                i = skip_space(data, i);
                match data.get(i) {
                    Some(b':') => i += 1,
                    Some(_) => return err(i, "invalid character after object key"),
                    None => return err(data.len(), "unexpected end of JSON input"),
                }
                want = Want::Value;
            }
            Want::Value | Want::ValueOrClose => {
                if c == b']' && want == Want::ValueOrClose {
                    stack.pop();
                    want = Want::Next;
                    i += 1;
                    continue;
                }
                match c {
                    b'{' | b'[' => {
                        stack.push(c);
                        if stack.len() > MAX_NESTING_DEPTH {
                            return err(i, "exceeded max depth");
                        }
                        want = if c == b'{' {
                            Want::KeyOrClose
                        } else {
                            Want::ValueOrClose
                        };
                        i += 1;
                        continue;
                    }
                    b'"' => i = scan_string(data, i)?,
                    b'-' | b'0'..=b'9' => i = scan_number(data, i)?,
                    b't' => i = scan_word(data, i, b"true")?,
                    b'f' => i = scan_word(data, i, b"false")?,
                    b'n' => i = scan_word(data, i, b"null")?,
                    _ => return err(i, "invalid character looking for beginning of value"),
                }
                want = Want::Next;
            }
        }
    }
}

/// `isSpace`: the only whitespace JSON (and Go) knows.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn skip_space(data: &[u8], mut i: usize) -> usize {
    while data.get(i).is_some_and(|&c| is_space(c)) {
        i += 1;
    }
    i
}

/// A string starting at `data[start] == '"'`; returns the index after its closing quote.
fn scan_string(data: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let err = |offset: usize, reason: &'static str| Err(SyntaxError { offset, reason });
    let mut i = start + 1;
    loop {
        let Some(&c) = data.get(i) else {
            return err(data.len(), "unexpected end of JSON input");
        };
        match c {
            b'"' => return Ok(i + 1),
            b'\\' => match data.get(i + 1) {
                Some(b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"') => i += 2,
                Some(b'u') => {
                    for k in 0..4 {
                        match data.get(i + 2 + k) {
                            Some(h) if h.is_ascii_hexdigit() => {}
                            Some(_) => {
                                return err(
                                    i + 2 + k,
                                    "invalid character in \\u hexadecimal character escape",
                                );
                            }
                            None => return err(data.len(), "unexpected end of JSON input"),
                        }
                    }
                    i += 6;
                }
                Some(_) => return err(i + 1, "invalid character in string escape code"),
                None => return err(data.len(), "unexpected end of JSON input"),
            },
            c if c < 0x20 => return err(i, "invalid character in string literal"),
            _ => i += 1,
        }
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; returns the index after it.
fn scan_number(data: &[u8], start: usize) -> Result<usize, SyntaxError> {
    let at = |i: usize| data.get(i).copied();
    let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    let mut i = start;
    if at(i) == Some(b'-') {
        i += 1;
    }
    match at(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while digit(at(i)) {
                i += 1;
            }
        }
        Some(_) => {
            return Err(SyntaxError {
                offset: i,
                reason: "invalid character in numeric literal",
            });
        }
        None => {
            return Err(SyntaxError {
                offset: data.len(),
                reason: "unexpected end of JSON input",
            });
        }
    }
    if at(i) == Some(b'.') {
        i += 1;
        if !digit(at(i)) {
            return Err(number_error(
                data,
                i,
                "after decimal point in numeric literal",
            ));
        }
        while digit(at(i)) {
            i += 1;
        }
    }
    if matches!(at(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(at(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(at(i)) {
            return Err(number_error(data, i, "in exponent of numeric literal"));
        }
        while digit(at(i)) {
            i += 1;
        }
    }
    Ok(i)
}

fn number_error(data: &[u8], i: usize, reason: &'static str) -> SyntaxError {
    if i >= data.len() {
        SyntaxError {
            offset: data.len(),
            reason: "unexpected end of JSON input",
        }
    } else {
        SyntaxError { offset: i, reason }
    }
}

fn scan_word(data: &[u8], start: usize, word: &'static [u8]) -> Result<usize, SyntaxError> {
    for (k, &w) in word.iter().enumerate() {
        match data.get(start + k) {
            Some(&c) if c == w => {}
            Some(_) => {
                return Err(SyntaxError {
                    offset: start + k,
                    reason: "invalid character in literal",
                });
            }
            None => {
                return Err(SyntaxError {
                    offset: data.len(),
                    reason: "unexpected end of JSON input",
                });
            }
        }
    }
    Ok(start + word.len())
}

/// The kinds of JSON value, named as Go names them in `UnmarshalTypeError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

/// A reader over a document [`check_valid`] accepted: it never meets a syntax error, so
/// it can skip values by counting brackets.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Only for documents that passed [`check_valid`].
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let mut r = Self { data, pos: 0 };
        r.pos = skip_space(data, 0);
        r
    }

    /// The kind of the value at the cursor.
    pub(crate) fn kind(&self) -> Kind {
        match self.data.get(self.pos) {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    /// Skip the value at the cursor (and the whitespace after it).
    pub(crate) fn skip_value(&mut self) {
        let mut depth = 0usize;
        loop {
            let Some(&c) = self.data.get(self.pos) else {
                return;
            };
            match c {
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    self.pos += 1;
                }
                b'"' => self.pos = string_end(self.data, self.pos),
                b',' | b':' => self.pos += 1,
                c if is_space(c) => self.pos += 1,
                _ => {
                    // A number or a literal: up to the next delimiter.
                    while self
                        .data
                        .get(self.pos)
                        .is_some_and(|&c| !matches!(c, b',' | b':' | b'}' | b']') && !is_space(c))
                    {
                        self.pos += 1;
                    }
                }
            }
            if depth == 0 {
                self.pos = skip_space(self.data, self.pos);
                return;
            }
        }
    }

    /// The string at the cursor, unquoted as Go's `unquote` does.
    pub(crate) fn string(&mut self) -> String {
        let end = string_end(self.data, self.pos);
        let s = unquote(&self.data[self.pos + 1..end - 1]);
        self.pos = skip_space(self.data, end);
        s
    }

    /// Iterate an object at the cursor: calls `member(key, reader)` with the cursor on
    /// each value; `member` must consume the value. Stops early on `Err`.
    pub(crate) fn object<E>(
        &mut self,
        mut member: impl FnMut(String, &mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.pos = skip_space(self.data, self.pos + 1);
        if self.data.get(self.pos) == Some(&b'}') {
            self.pos = skip_space(self.data, self.pos + 1);
            return Ok(());
        }
        loop {
            let key = self.string();
            // The `:`.
            self.pos = skip_space(self.data, self.pos + 1);
            member(key, self)?;
            match self.data.get(self.pos) {
                Some(b',') => self.pos = skip_space(self.data, self.pos + 1),
                _ => {
                    // The `}`.
                    self.pos = skip_space(self.data, self.pos + 1);
                    return Ok(());
                }
            }
        }
    }
}

/// The index after the closing quote of the (valid) string starting at `start`.
fn string_end(data: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&c) = data.get(i) {
        match c {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    data.len()
}

/// `unquote` of a string body the scanner accepted: escapes decoded, a surrogate pair
/// joined, a lone surrogate and every byte of invalid UTF-8 turned into U+FFFD.
pub(crate) fn unquote(body: &[u8]) -> String {
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' => {
                let escape = body.get(i + 1).copied().unwrap_or(b'\\');
                i += 2;
                match escape {
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let unit = hex4(&body[i..]).unwrap_or(0xFFFD);
                        i += 4;
                        if (0xD800..0xE000).contains(&unit) {
                            // `utf16.DecodeRune(rr, rr1)`: a high surrogate followed by
                            // an escaped low one is one rune; anything else is U+FFFD and
                            // the next escape is read on its own.
                            let low = (body.get(i) == Some(&b'\\')
                                && body.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(&body[i + 2..]))
                            .flatten();
                            match low {
                                Some(low)
                                    if (0xD800..0xDC00).contains(&unit)
                                        && (0xDC00..0xE000).contains(&low) =>
                                {
                                    let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                    i += 6;
                                }
                                _ => out.push('\u{FFFD}'),
                            }
                        } else {
                            out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                        }
                    }
                    // `"`, `\`, `/`.
                    other => out.push(char::from(other)),
                }
            }
            c if c < 0x80 => {
                out.push(char::from(c));
                i += 1;
            }
            _ => {
                let (c, width) = decode_rune(&body[i..]);
                out.push(c);
                i += width;
            }
        }
    }
    out
}

fn hex4(s: &[u8]) -> Option<u32> {
    let digits = s.get(..4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// `utf8.DecodeRune`: the rune at the start of `s` and its width, or (U+FFFD, 1) when the
/// bytes there are not valid UTF-8 — one replacement per bad byte, unlike Rust's lossy
/// conversion, which replaces a truncated sequence once.
pub(crate) fn decode_rune(s: &[u8]) -> (char, usize) {
    let Some(&first) = s.first() else {
        return ('\u{FFFD}', 0);
    };
    let width = match first {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return ('\u{FFFD}', 1),
    };
    match s.get(..width).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(text) => (text.chars().next().unwrap_or('\u{FFFD}'), width),
        None => ('\u{FFFD}', 1),
    }
}

/// Does JSON object key `key` select the struct field named `name` (ASCII)? Go tries the
/// exact name, then `foldName(key) == foldName(name)`, where `foldName` maps every rune to
/// the smallest rune of its case-folding orbit. The only non-ASCII runes that fold to an
/// ASCII letter are U+017F `ſ` (to `S`) and U+212A KELVIN SIGN (to `K`).
pub(crate) fn field_matches(key: &str, name: &str) -> bool {
    let mut want = name.bytes();
    for c in key.chars() {
        let folded = match c {
            'a'..='z' => c.to_ascii_uppercase() as u8,
            '\u{17F}' => b'S',
            '\u{212A}' => b'K',
            c if c.is_ascii() => c as u8,
            _ => return false,
        };
        match want.next() {
            Some(w) if w.to_ascii_uppercase() == folded => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::object("{}", true)]
    #[case::null("null", true)]
    #[case::padded("  \r\n\t{ } \n", true)]
    #[case::empty("", false)]
    #[case::only_space("   ", false)]
    #[case::bom("\u{FEFF}{}", false)]
    #[case::trailing_data("{} x", false)]
    #[case::two_values("{}{}", false)]
    #[case::trailing_comma(r#"{"a":1,}"#, false)]
    #[case::single_quote_escape(r#""\'""#, false)]
    #[case::control_in_string("\"a\u{1}\"", false)]
    #[case::leading_zero("01", false)]
    #[case::bare_minus("-", false)]
    #[case::exponent("1e+5", true)]
    #[case::bad_exponent("1e", false)]
    #[case::vertical_tab_is_not_space("\u{b}{}", false)]
    fn validity_follows_go_scanner(#[case] input: &str, #[case] valid: bool) {
        assert_eq!(check_valid(input.as_bytes()).is_ok(), valid, "{input:?}");
    }

    #[test]
    fn nesting_stops_at_ten_thousand() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_NESTING_DEPTH),
            "]".repeat(MAX_NESTING_DEPTH)
        );
        assert!(check_valid(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_NESTING_DEPTH + 1),
            "]".repeat(MAX_NESTING_DEPTH + 1)
        );
        assert!(check_valid(deep.as_bytes()).is_err());
    }

    #[rstest]
    #[case::plain(b"abc", "abc")]
    #[case::escapes(br#"\n\t\/\"\\"#, "\n\t/\"\\")]
    #[case::pair(br"\ud83d\ude00", "\u{1F600}")]
    #[case::lone_high(br"\ud83dx", "\u{FFFD}x")]
    #[case::high_then_non_low(br"\ud83d\u0041", "\u{FFFD}A")]
    #[case::lone_low(br"\ude00", "\u{FFFD}")]
    #[case::truncated_sequence_is_two_replacements(b"\xE2\x82", "\u{FFFD}\u{FFFD}")]
    #[case::encoded_surrogate(b"\xED\xA0\x80", "\u{FFFD}\u{FFFD}\u{FFFD}")]
    fn unquote_follows_go(#[case] body: &[u8], #[case] expected: &str) {
        assert_eq!(unquote(body), expected);
    }

    #[rstest]
    #[case("auths", "auths", true)]
    #[case("AUTHS", "auths", true)]
    #[case("auth\u{17F}", "auths", true)]
    #[case("Http\u{212A}eaders", "HttpHeaders", false)]
    #[case("httpheaders", "HttpHeaders", true)]
    #[case("auth", "auths", false)]
    #[case("auths ", "auths", false)]
    #[case("\u{212A}", "k", true)]
    fn field_names_fold_as_go(#[case] key: &str, #[case] name: &str, #[case] matches: bool) {
        assert_eq!(field_matches(key, name), matches);
    }
}
