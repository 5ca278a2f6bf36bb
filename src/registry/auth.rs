//! Authorizing requests as containerd's docker authorizer does, with what pullgate learns
//! kept between probes: each endpoint's challenge (so a known registry needs no 401 round
//! trip) and bearer tokens per (realm, service, scope, credential) until shortly before
//! they expire (so a known repository needs no token request). A token is keyed by the
//! credential that earned it: nothing crosses tenants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use moka::Expiry;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::challenge::Challenge;
use super::transport::{Ask, status_outcome};
use super::{Endpoint, Registry};
use crate::keyring::Credential;
use crate::verdict::{Outcome, Verdict};

/// How an endpoint wants requests authorized, learnt from its 401 challenges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum Scheme {
    /// Not challenged (yet): requests go without `Authorization`.
    #[default]
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Scheme {
    /// The scheme a 401 asks for; `None` when it asks nothing usable.
    pub fn of(challenge: &Challenge) -> Self {
        match challenge {
            Challenge::Basic => Scheme::Basic,
            Challenge::Bearer { realm, service, .. } => Scheme::Bearer {
                realm: realm.clone(),
                service: service.clone(),
            },
        }
    }
}

/// What containerd makes of a kubelet credential ([`Credential::presented`] holds the
/// rule): a username and a password are presented; anything else is an anonymous
/// attempt, except that a username without password is named in the refusal of a Basic
/// challenge. Either way the credential still "matched" for the kubelet, so there is no
/// separate anonymous retry.
#[derive(Debug, Clone, Copy)]
pub(super) enum Secret<'a> {
    Anonymous,
    UsernameOnly,
    Basic(&'a Credential),
}

impl<'a> Secret<'a> {
    pub fn of(credential: Option<&'a Credential>) -> Self {
        match credential {
            Some(c) if c.presented().is_some() => Secret::Basic(c),
            Some(c) if !c.username.is_empty() => Secret::UsernameOnly,
            _ => Secret::Anonymous,
        }
    }

    pub fn basic_header(&self) -> Option<String> {
        match self {
            Secret::Basic(c) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", c.username, c.password))
            )),
            _ => None,
        }
    }

    /// Length-prefixed SHA-256 of the username and password, `None` for anonymous: what
    /// a cached token is keyed by.
    fn fingerprint(&self) -> Option<[u8; 32]> {
        let Secret::Basic(c) = self else {
            return None;
        };
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [c.username.as_bytes(), c.password.as_bytes()] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Some(out)
    }
}

/// One authorization decision for one request.
pub(super) enum Authorization {
    /// Send this `Authorization` value (or none).
    Header(Option<String>),
    /// This credential cannot be used here; the pull fails with it (why, for messages).
    Refused(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    realm: Arc<str>,
    service: Option<Arc<str>>,
    scope: Arc<str>,
    credential: Option<[u8; 32]>,
}

#[derive(Clone)]
pub(super) struct Token {
    value: Arc<str>,
    lifetime: Duration,
}

struct TokenExpiry;

impl Expiry<TokenKey, Token> for TokenExpiry {
    fn expire_after_create(&self, _: &TokenKey, token: &Token, _: Instant) -> Option<Duration> {
        Some(token.lifetime)
    }
}

/// Bearer tokens, each until shortly before it expires.
pub(super) struct TokenCache {
    inner: moka::sync::Cache<TokenKey, Token>,
}

impl TokenCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(TokenExpiry)
                .build(),
        }
    }
}

/// How long a token is used: its `expires_in` (60 s when absent, as the distribution
/// token spec says), less a tenth and at least 5 s, so no request carries a token that
/// is about to expire. Tokens living 5 s or less are not kept.
fn usable_for(expires_in: Option<u64>) -> Option<Duration> {
    let lifetime = Duration::from_secs(expires_in.filter(|s| *s > 0).unwrap_or(60));
    let margin = (lifetime / 10).max(Duration::from_secs(5));
    lifetime.checked_sub(margin).filter(|d| !d.is_zero())
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Registry {
    /// The `Authorization` for a request to `endpoint` under `scheme` with `secret`:
    /// from the token cache when a token for exactly this credential and scope is live,
    /// else from the token server. `challenge_scope` is the scope a 401 in this exchange
    /// named (containerd asks for it besides the repository's own); `fresh` skips the
    /// cache (a cached token was just refused).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn authorize(
        &self,
        endpoint: &Endpoint,
        scheme: &Scheme,
        secret: Secret<'_>,
        repository: &str,
        challenge_scope: Option<&str>,
        fresh: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Authorization, Outcome> {
        let (realm, service) = match scheme {
            Scheme::Open => return Ok(Authorization::Header(None)),
            // Whether a Basic challenge can be answered at all is decided when one comes.
            Scheme::Basic => return Ok(Authorization::Header(secret.basic_header())),
            Scheme::Bearer { realm, service } => (realm, service),
        };
        let scope = token_scope(repository, challenge_scope);
        let key = TokenKey {
            realm: realm.as_str().into(),
            service: service.as_deref().map(Arc::from),
            scope: scope.as_str().into(),
            credential: secret.fingerprint(),
        };
        if fresh {
            self.tokens.inner.invalidate(&key);
        } else if let Some(token) = self.tokens.inner.get(&key) {
            return Ok(Authorization::Header(Some(format!(
                "Bearer {}",
                token.value
            ))));
        }
        let url = reqwest::Url::parse(realm).map_err(|e| {
            Outcome::new(
                Verdict::RegistryUnavailable,
                format!(
                    "{}: the token realm {realm:?} is not a URL: {e}",
                    endpoint.host
                ),
            )
        })?;
        let fetched = match secret {
            Secret::Basic(credential) => {
                match self
                    .token_by_post(
                        endpoint,
                        &url,
                        service.as_deref(),
                        &scope,
                        credential,
                        deadline,
                    )
                    .await?
                {
                    Fetched::FallBack => {
                        self.token_by_get(
                            endpoint,
                            &url,
                            service.as_deref(),
                            &scope,
                            secret,
                            deadline,
                        )
                        .await?
                    }
                    other => other,
                }
            }
            _ => {
                self.token_by_get(endpoint, &url, service.as_deref(), &scope, secret, deadline)
                    .await?
            }
        };
        match fetched {
            Fetched::Token { token, expires_in } => {
                let header = format!("Bearer {token}");
                if let Some(lifetime) = usable_for(expires_in) {
                    self.tokens.inner.insert(
                        key,
                        Token {
                            value: token.into(),
                            lifetime,
                        },
                    );
                }
                Ok(Authorization::Header(Some(header)))
            }
            Fetched::Refused(why) => Ok(Authorization::Refused(why)),
            Fetched::FallBack => Ok(Authorization::Refused(
                "the token server refused the credentials".to_string(),
            )),
        }
    }

    /// containerd with a secret: the OAuth2 password grant, POSTed to the realm
    /// (`auth.FetchTokenWithOAuth`, `client_id=containerd-client`). A 400, 401, 404 or 405
    /// falls back to the GET (`doBearerAuth`).
    async fn token_by_post(
        &self,
        endpoint: &Endpoint,
        realm: &reqwest::Url,
        service: Option<&str>,
        scope: &str,
        credential: &Credential,
        deadline: tokio::time::Instant,
    ) -> Result<Fetched, Outcome> {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", "containerd-client")
            .append_pair("grant_type", "password")
            .append_pair("password", &credential.password)
            .append_pair("scope", scope)
            .append_pair("service", service.unwrap_or_default())
            .append_pair("username", &credential.username)
            .finish();
        let host = &*endpoint.host;
        let response = self
            .send(
                host,
                Ask::new(Method::POST, realm.clone(), endpoint.client)
                    .with_headers(&endpoint.headers)
                    .with_form(form),
                deadline,
            )
            .await
            .map_err(|e| e.into_outcome(host))?;
        match response.status {
            s if s.is_success() => {
                let body = response.body.unwrap_or_default();
                match serde_json::from_slice::<TokenResponse>(&body) {
                    Ok(TokenResponse {
                        access_token: Some(token),
                        expires_in,
                        ..
                    }) if !token.is_empty() => Ok(Fetched::Token { token, expires_in }),
                    _ => Err(Outcome::new(
                        Verdict::RegistryUnavailable,
                        format!(
                            "the token server of {host} answered the OAuth request without a token"
                        ),
                    )),
                }
            }
            StatusCode::BAD_REQUEST
            | StatusCode::UNAUTHORIZED
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED => Ok(Fetched::FallBack),
            StatusCode::FORBIDDEN => Ok(Fetched::Refused(
                "the token server refused the credentials (HTTP 403)".to_string(),
            )),
            status => Err(status_outcome(
                host,
                status,
                &response.headers,
                "the token server",
            )),
        }
    }

    /// `auth.FetchToken`: GET the realm with `service` and `scope`, Basic only with a
    /// username and a password; anything else asks for an anonymous token.
    async fn token_by_get(
        &self,
        endpoint: &Endpoint,
        realm: &reqwest::Url,
        service: Option<&str>,
        scope: &str,
        secret: Secret<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Fetched, Outcome> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service.filter(|s| !s.is_empty()) {
                query.append_pair("service", service);
            }
            for s in scope.split(' ') {
                query.append_pair("scope", s);
            }
        }
        let basic = secret.basic_header();
        let host = &*endpoint.host;
        let response = self
            .send(
                host,
                Ask::new(Method::GET, url, endpoint.client)
                    .authorized(basic.as_deref())
                    .with_headers(&endpoint.headers),
                deadline,
            )
            .await
            .map_err(|e| e.into_outcome(host))?;
        match response.status {
            s if s.is_success() => {
                let body = response.body.unwrap_or_default();
                let parsed = serde_json::from_slice::<TokenResponse>(&body).ok();
                let expires_in = parsed.as_ref().and_then(|t| t.expires_in);
                // `access_token` wins over `token` when both are present.
                match parsed
                    .and_then(|t| t.access_token.or(t.token))
                    .filter(|t| !t.is_empty())
                {
                    Some(token) => Ok(Fetched::Token { token, expires_in }),
                    None => Err(Outcome::new(
                        Verdict::RegistryUnavailable,
                        format!("the token server of {host} answered without a token"),
                    )),
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Fetched::Refused(format!(
                "the token server refused the {} (HTTP {})",
                if basic.is_some() {
                    "credentials"
                } else {
                    "anonymous request"
                },
                response.status.as_u16()
            ))),
            status => Err(status_outcome(
                host,
                status,
                &response.headers,
                "the token server",
            )),
        }
    }
}

enum Fetched {
    Token {
        token: String,
        expires_in: Option<u64>,
    },
    Refused(String),
    /// The POST was not understood: ask again with GET.
    FallBack,
}

/// containerd's scopes (`GetTokenScopes`): the repository's pull scope and the
/// challenge's, sorted, duplicates removed, joined by a space.
fn token_scope(repository: &str, challenge_scope: Option<&str>) -> String {
    let mut scopes = vec![format!("repository:{repository}:pull")];
    scopes.extend(
        challenge_scope
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    scopes.sort();
    scopes.dedup();
    scopes.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(user: &str, pass: &str) -> Credential {
        Credential {
            source: "s".into(),
            key: "r.io".into(),
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn containerd_treats_empty_usernames_as_anonymous() {
        let none = cred("", "");
        let password_only = cred("", "p");
        let user_only = cred("u", "");
        let both = cred("u", "p");
        assert!(matches!(Secret::of(None), Secret::Anonymous));
        assert!(matches!(Secret::of(Some(&none)), Secret::Anonymous));
        assert!(matches!(
            Secret::of(Some(&password_only)),
            Secret::Anonymous
        ));
        assert!(matches!(Secret::of(Some(&user_only)), Secret::UsernameOnly));
        assert!(matches!(Secret::of(Some(&both)), Secret::Basic(_)));
        assert_eq!(Secret::of(Some(&user_only)).basic_header(), None);
        assert_eq!(
            Secret::of(Some(&both)).basic_header().as_deref(),
            Some("Basic dTpw")
        );
    }

    #[test]
    fn tokens_are_keyed_by_the_credential_that_earned_them() {
        let a = cred("u", "p1");
        let b = cred("u", "p2");
        assert_ne!(
            Secret::of(Some(&a)).fingerprint(),
            Secret::of(Some(&b)).fingerprint()
        );
        assert_eq!(Secret::of(None).fingerprint(), None);
        assert_eq!(
            Secret::of(Some(&a)).fingerprint(),
            Secret::of(Some(&cred("u", "p1"))).fingerprint()
        );
    }

    #[test]
    fn scopes_are_the_repositorys_and_the_challenges_sorted() {
        assert_eq!(token_scope("a/b", None), "repository:a/b:pull");
        assert_eq!(
            token_scope("a/b", Some("repository:a/b:pull")),
            "repository:a/b:pull"
        );
        assert_eq!(
            token_scope("lib/x", Some("repository:other/y:pull repository:a:pull")),
            "repository:a:pull repository:lib/x:pull repository:other/y:pull"
        );
    }

    #[test]
    fn token_lifetimes_keep_a_margin() {
        assert_eq!(usable_for(None), Some(Duration::from_secs(54)));
        assert_eq!(usable_for(Some(300)), Some(Duration::from_secs(270)));
        assert_eq!(usable_for(Some(30)), Some(Duration::from_secs(25)));
        assert_eq!(usable_for(Some(5)), None);
        assert_eq!(usable_for(Some(0)), Some(Duration::from_secs(54)));
    }
}
