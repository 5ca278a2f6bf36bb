//! Invariants on pseudo-random input (a fixed-seed SplitMix64, so a failure reproduces).

use super::base64::{self as go_base64, Padding};
use super::config::decode_auth;
use super::pattern::ImagePattern;
use super::{ConfigFormat, DockerConfig, Keyring, apiserver_accepts, glob, normalize_key, url};

/// SplitMix64: small, deterministic, good enough to spread test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T: ?Sized>(&mut self, from: &[&'a T]) -> &'a T {
        from[self.below(from.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next() as u8)
            .collect()
    }

    /// Up to `max` pieces from `alphabet`, joined.
    fn text(&mut self, alphabet: &[&str], max: usize) -> String {
        (0..self.below(max + 1))
            .map(|_| self.pick(alphabet))
            .collect()
    }
}

const ROUNDS: usize = 20_000;

const JSONISH: &[&str] = &[
    "{", "}", "[", "]", ":", ",", "\"", "\\", "auths", "AUTHS", "auth", "username", "password",
    "null", "1", "-0.5e3", "true", " ", "\n", "r.io", "dXNlcjpw", "=", "\u{17F}", "\u{FEFF}",
    "\\u00e9", "\\ud800", "\u{1}", "é",
];

#[test]
fn decoding_never_panics_and_what_it_reads_the_apiserver_stores() {
    let mut rng = Rng(1);
    for round in 0..ROUNDS {
        let input = if round % 2 == 0 {
            rng.bytes(64)
        } else {
            rng.text(JSONISH, 24).into_bytes()
        };
        for format in [ConfigFormat::DockerConfigJson, ConfigFormat::DockerCfg] {
            if let Ok(config) = DockerConfig::parse(&input, format) {
                assert!(apiserver_accepts(&input), "{input:?}");
                let mut keyring = Keyring::new();
                keyring.add("p", &config);
                let _ = keyring.lookup("docker.io/library/nginx");
            }
        }
        let _ = DockerConfig::parse_any(&input);
    }
}

const USERINFO: &[&str] = &[
    "a", "Z", "0", "-", ".", "_", ":", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=",
    "@",
];
const HOSTISH: &[&str] = &[
    "r", "io", ".", ".", ":5000", ":", "*", "[::1]", "%C3%A9", "-", "_", "x", "/", "/v2/", "/team",
    "?q", "#f", "%2F", "[", "]", " ", "é",
];

#[test]
fn userinfo_never_changes_the_host() {
    let mut rng = Rng(2);
    let mut compared = 0;
    for _ in 0..ROUNDS {
        let rest = rng.text(HOSTISH, 8);
        let Ok(plain) = url::parse(format!("https://{rest}").as_bytes()) else {
            continue;
        };
        let user = rng.text(USERINFO, 6);
        let with_user = url::parse(format!("https://{user}@{rest}").as_bytes());
        // The authority ends at the first `/`: an `@` after it is path, not userinfo.
        if rest.contains(['/', '?', '#', '@']) {
            continue;
        }
        let with_user = with_user.expect("valid userinfo keeps a parsable URL");
        assert_eq!(with_user.host, plain.host, "{user:?}@{rest:?}");
        assert_eq!(
            normalize_key(format!("{user}@{rest}").as_bytes()),
            normalize_key(rest.as_bytes())
        );
        compared += 1;
    }
    assert!(compared > 1000, "only {compared} comparisons");
}

#[test]
fn a_stored_key_parses_back_to_itself() {
    let mut rng = Rng(3);
    let mut compared = 0;
    for _ in 0..ROUNDS {
        let key = format!(
            "{}{}",
            rng.pick(&["", "https://", "http://", "u@"]),
            rng.text(HOSTISH, 8)
        );
        let Some(stored) = normalize_key(key.as_bytes()) else {
            continue;
        };
        // Percent-decoding can leave bytes that mean something else the second time.
        if stored
            .iter()
            .any(|&b| matches!(b, b'%' | b'?' | b'#') || b < 0x20 || b == 0x7f)
        {
            continue;
        }
        let again = url::parse(&[b"https://".as_slice(), &stored].concat()).expect("re-parses");
        assert_eq!([again.host, again.path].concat(), stored, "{key:?}");
        compared += 1;
    }
    assert!(compared > 1000, "only {compared} comparisons");
}

#[test]
fn an_encoded_auth_decodes_back_to_its_username_and_password() {
    let mut rng = Rng(4);
    let alphabet = &[
        "a",
        "Z",
        "9",
        " ",
        ":",
        "=",
        "é",
        "\u{1F600}",
        "+",
        "/",
        "\n",
    ];
    for _ in 0..ROUNDS {
        let user = rng.text(alphabet, 6).replace(':', "");
        let pass = rng.text(alphabet, 8);
        let raw = format!("{user}:{pass}");
        let mut encoded = if rng.below(2) == 0 {
            ::base64::Engine::encode(&::base64::engine::general_purpose::STANDARD, &raw)
        } else {
            ::base64::Engine::encode(&::base64::engine::general_purpose::STANDARD_NO_PAD, &raw)
        };
        // Go skips line breaks wherever they are.
        for _ in 0..rng.below(3) {
            let at = rng.below(encoded.len() + 1);
            encoded.insert_str(at, rng.pick(&["\n", "\r\n", "\r"]));
        }
        assert_eq!(
            decode_auth(&encoded),
            Ok((user.clone(), pass.clone())),
            "{encoded:?}"
        );
    }
}

#[test]
fn base64_never_panics() {
    let mut rng = Rng(5);
    for _ in 0..ROUNDS {
        let input = rng.text(&["A", "z", "+", "/", "=", "\n", "\r", " ", "é", "0"], 12);
        for padding in [Padding::Padded, Padding::Unpadded] {
            let _ = go_base64::decode(input.as_bytes(), padding);
        }
    }
}

#[test]
fn a_pattern_without_metacharacters_matches_exactly_itself() {
    let mut rng = Rng(6);
    for _ in 0..ROUNDS {
        let label = rng.text(&["a", "b", "-", "0", "é", "]", "^", "!"], 6);
        let other = rng.text(&["a", "b", "-", "0", "é", "]", "^", "!"], 6);
        assert!(
            glob::matches(label.as_bytes(), label.as_bytes()),
            "{label:?}"
        );
        assert_eq!(
            glob::matches(label.as_bytes(), other.as_bytes()),
            label == other
        );
        assert!(glob::matches(b"*", other.as_bytes()));
        let _ = glob::matches(&rng.bytes(8), &rng.bytes(8));
    }
}

#[test]
fn an_image_name_as_a_pattern_matches_itself_and_its_repositories() {
    let mut rng = Rng(7);
    let labels = &[
        "registry",
        "r",
        "io",
        "example",
        "com",
        "a-b",
        "localhost",
        "127",
        "0",
    ];
    for _ in 0..ROUNDS {
        let host: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(labels)).collect();
        let port = rng.pick(&["", "", ":5000", ":443"]);
        let path = rng.text(&["/team", "/app", "/a_b", "/x.y", "/v2"], 3);
        let name = format!("{}{port}{path}", host.join("."));
        let pattern = ImagePattern::parse(&name).expect("an image name parses");
        assert!(pattern.matches(&name), "{name}");
        assert!(pattern.matches(&format!("{name}/more")), "{name}");
        // Never across a label boundary: one more label is another registry.
        assert!(!pattern.matches(&format!("x.{name}")), "{name}");
        let _ = ImagePattern::parse(&String::from_utf8_lossy(&rng.bytes(12)));
    }
}
