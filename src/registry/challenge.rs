//! `WWW-Authenticate` parsing (RFC 7235): `Bearer realm="…",service="…",scope="…"` or
//! `Basic realm="…"`. A header may hold several challenges; Bearer is preferred.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        /// `insufficient_scope` and friends, from a 401 on a resource request.
        error: Option<String>,
    },
}

/// Parse every challenge of one header value. Unknown schemes are skipped; a malformed
/// header yields what could be read before the malformation.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let scheme_end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let scheme = &rest[..scheme_end];
        rest = rest[scheme_end..].trim_start_matches([' ', '\t']);
        let (params, after) = parse_params(rest);
        rest = after.trim_start_matches([',', ' ', '\t']);
        if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic);
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = params.get("realm").filter(|r| !r.is_empty()) {
                out.push(Challenge::Bearer {
                    realm: realm.clone(),
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                    error: params.get("error").cloned(),
                });
            }
        } else if scheme.is_empty() {
            break;
        }
    }
    out
}

/// Read `key=value` / `key="quoted \" value"` pairs separated by commas, up to the start of
/// the next challenge (a token not followed by `=`).
fn parse_params(mut s: &str) -> (BTreeMap<String, String>, &str) {
    let mut params = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        let Some(eq) = s.find('=') else {
            return (params, s);
        };
        let key = &s[..eq];
        if key.is_empty() || key.contains([' ', '\t', ',', '"']) {
            // The next challenge's scheme.
            return (params, s);
        }
        let key = key.to_ascii_lowercase();
        s = &s[eq + 1..];
        let value;
        if let Some(quoted) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            v.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            s = &quoted[end.min(quoted.len())..];
        } else {
            let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
            value = s[..end].to_string();
            s = &s[end..];
        }
        params.insert(key, value);
    }
}

/// The challenge to answer: Bearer over Basic.
pub fn preferred(challenges: Vec<Challenge>) -> Option<Challenge> {
    let mut basic = None;
    for c in challenges {
        match c {
            Challenge::Bearer { .. } => return Some(c),
            Challenge::Basic => basic = Some(c),
        }
    }
    basic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(
            c,
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn insufficient_scope_error_is_kept() {
        let c = parse(
            r#"Bearer realm="https://t/token",service="reg",scope="repository:a:pull",error="insufficient_scope""#,
        );
        assert!(
            matches!(&c[0], Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope")
        );
    }

    #[test]
    fn basic_with_realm() {
        assert_eq!(parse(r#"Basic realm="basic-realm""#), [Challenge::Basic]);
        assert_eq!(parse("basic"), [Challenge::Basic]);
    }

    #[test]
    fn several_challenges_prefer_bearer() {
        let c = parse(r#"Basic realm="x", Bearer realm="https://t/token",service="s""#);
        assert_eq!(c.len(), 2);
        assert!(matches!(preferred(c), Some(Challenge::Bearer { .. })));
    }

    #[test]
    fn escapes_and_unquoted_values() {
        let c = parse(r#"Bearer realm=https://t/token, service="a \"b\"""#);
        assert!(
            matches!(&c[0], Challenge::Bearer { realm, service: Some(s), .. } if realm == "https://t/token" && s == "a \"b\"")
        );
    }

    #[test]
    fn garbage_yields_nothing_and_never_panics() {
        for h in [
            "",
            "Bearer",
            "Bearer realm=",
            "Bearer realm=\"unterminated",
            "=,=,=",
            "\"\"",
            "Negotiate abc==",
        ] {
            let _ = parse(h);
        }
        assert!(parse("Bearer").is_empty());
        assert!(parse("Bearer realm=\"\"").is_empty());
    }
}
