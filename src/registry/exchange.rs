//! One request to one endpoint with containerd's authorization dance: the request goes
//! out without credentials, a 401 challenge is answered (Basic, or a bearer token from the
//! realm) and the request is sent once more. What pullgate learnt earlier about the
//! endpoint (its challenge, a live token for this very credential) lets it send the
//! authorized request first — one round trip — and fall back to the full dance whenever
//! that shortcut is refused, so the answer is always the one containerd would get.

use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use super::auth::{Authorization, Scheme, Secret};
use super::challenge::{self, Challenge};
use super::transport::{Ask, Response, SendError, speaks_plain_http, status_outcome};
use super::{Endpoint, Knowledge, Registry};
use crate::verdict::{Outcome, Verdict};

/// What one request got.
pub(super) enum Exchange {
    Ok {
        response: Response,
        /// The `Authorization` that worked, for follow-up requests in the same repository.
        authorization: Option<String>,
    },
    /// HTTP 404 (with whatever authorization reached that far).
    NotFound { authorization: Option<String> },
    /// 401/403 the credential cannot get past, with why (for messages).
    Refused(String),
    /// No usable answer: an outage, a timeout, a 429, a blocked address.
    Failed(Outcome),
}

/// One request, before authorization.
#[derive(Clone, Copy)]
pub(super) struct Request<'a> {
    pub method: &'a Method,
    pub repository: &'a str,
    /// After `<repository>/`: `manifests/<ref>` or `blobs/<digest>`.
    pub path: &'a str,
    pub accept: Option<&'static str>,
    /// A redirect is the answer (a blob HEAD: distribution redirects to storage only for
    /// a blob it has, and a storage URL signed for GET may refuse a HEAD).
    pub redirect_is_answer: bool,
}

enum Sent {
    Response(Response),
    Failed(Outcome),
}

impl Registry {
    /// Send `request` to `endpoint` as `secret`, authorizing as the endpoint asks.
    pub(super) async fn exchange(
        &self,
        endpoint: &Endpoint,
        secret: Secret<'_>,
        request: Request<'_>,
        deadline: Instant,
    ) -> Exchange {
        let mut method = request.method.clone();
        // A registry without HEAD support is asked with GET, as containerd does after 405.
        for _ in 0..2 {
            let request = Request {
                method: &method,
                ..request
            };
            let result = self.dance(endpoint, secret, request, deadline).await;
            if let Exchange::Ok { response, .. } = &result
                && matches!(
                    response.status,
                    StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
                )
            {
                if method == Method::HEAD {
                    method = Method::GET;
                    continue;
                }
                return Exchange::Failed(status_outcome(
                    &endpoint.host,
                    response.status,
                    &response.headers,
                    "the registry",
                ));
            }
            return result;
        }
        Exchange::Failed(Outcome::new(
            Verdict::RegistryUnavailable,
            format!("{}: HEAD and GET were both refused", endpoint.host),
        ))
    }

    async fn dance(
        &self,
        endpoint: &Endpoint,
        secret: Secret<'_>,
        request: Request<'_>,
        deadline: Instant,
    ) -> Exchange {
        let known = self.knowledge(endpoint);
        let mut token_refused: Option<(Scheme, String)> = None;
        let mut retry_fresh = false;

        // The shortcut: authorize first with what was learnt about this endpoint.
        if known.scheme != Scheme::Open {
            match self
                .authorize(
                    endpoint,
                    &known.scheme,
                    secret,
                    request.repository,
                    None,
                    false,
                    deadline,
                )
                .await
            {
                Err(outcome) => return Exchange::Failed(outcome),
                Ok(Authorization::Refused(why)) => {
                    token_refused = Some((known.scheme.clone(), why))
                }
                // Nothing to send ahead (an anonymous attempt on a Basic registry): the
                // plain request below is the same one.
                Ok(Authorization::Header(None)) => {}
                Ok(Authorization::Header(header)) => {
                    match self
                        .send_to(endpoint, request, header.as_deref(), deadline)
                        .await
                    {
                        Sent::Failed(outcome) => return Exchange::Failed(outcome),
                        Sent::Response(r) if r.status == StatusCode::UNAUTHORIZED => {
                            // A stale token, or a challenge that changed: do it as containerd does.
                            retry_fresh = true;
                        }
                        Sent::Response(r) => {
                            return classify(r, header, false, request.redirect_is_answer);
                        }
                    }
                }
            }
        }

        // containerd: first without credentials…
        let first = match self.send_to(endpoint, request, None, deadline).await {
            Sent::Failed(outcome) => return Exchange::Failed(outcome),
            Sent::Response(r) => r,
        };
        if first.status != StatusCode::UNAUTHORIZED {
            return classify(first, None, false, request.redirect_is_answer);
        }
        // …then answering the challenge.
        let Some(chosen) = challenge::preferred(challenges(&first)) else {
            return Exchange::Refused(
                "the registry requires authentication (HTTP 401) and names no usable scheme"
                    .to_string(),
            );
        };
        let scheme = Scheme::of(&chosen);
        let challenge_scope = match &chosen {
            Challenge::Bearer { scope, .. } => scope.clone(),
            Challenge::Basic => None,
        };
        self.learn(endpoint, |k| k.scheme = scheme.clone());
        if scheme == Scheme::Basic && secret.basic_header().is_none() {
            return Exchange::Refused(match secret {
                Secret::UsernameOnly => "the credential has a username but no password, which cannot answer the registry's Basic challenge".to_string(),
                _ => "the registry requires authentication (HTTP 401)".to_string(),
            });
        }
        if let Some((refused_scheme, why)) = token_refused
            && refused_scheme == scheme
        {
            return Exchange::Refused(why);
        }
        let header = match self
            .authorize(
                endpoint,
                &scheme,
                secret,
                request.repository,
                challenge_scope.as_deref(),
                retry_fresh,
                deadline,
            )
            .await
        {
            Err(outcome) => return Exchange::Failed(outcome),
            Ok(Authorization::Refused(why)) => return Exchange::Refused(why),
            Ok(Authorization::Header(header)) => header,
        };
        match self
            .send_to(endpoint, request, header.as_deref(), deadline)
            .await
        {
            Sent::Failed(outcome) => Exchange::Failed(outcome),
            Sent::Response(r) => classify(r, header, true, request.redirect_is_answer),
        }
    }

    /// Send on the endpoint's learnt scheme; a loopback endpoint that does not speak TLS is
    /// spoken to over plain HTTP from then on, as containerd's CRI does for localhost.
    async fn send_to(
        &self,
        endpoint: &Endpoint,
        request: Request<'_>,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Sent {
        let mut plain = self.knowledge(endpoint).plain_http;
        loop {
            let Some(url) = endpoint.url_with(plain, request.repository, request.path) else {
                return Sent::Failed(Outcome::new(
                    Verdict::RegistryUnavailable,
                    format!(
                        "{}: cannot build a URL for {}",
                        endpoint.host, request.repository
                    ),
                ));
            };
            let mut ask = Ask::new(request.method.clone(), url, endpoint.client)
                .authorized(authorization)
                .with_headers(&endpoint.headers)
                .keeping_redirects(request.redirect_is_answer);
            if let Some(accept) = request.accept {
                ask = ask.accepting(accept);
            }
            match self.send(&endpoint.host, ask, deadline).await {
                Ok(r) => return Sent::Response(r),
                Err(SendError::Transport { error, .. })
                    if !plain && endpoint.plain_http_fallback && speaks_plain_http(&error) =>
                {
                    plain = true;
                    self.learn(endpoint, |k| k.plain_http = true);
                }
                Err(e) => return Sent::Failed(e.into_outcome(&endpoint.host)),
            }
        }
    }

    /// What is known about `endpoint` (nothing, at first).
    pub(super) fn knowledge(&self, endpoint: &Endpoint) -> Knowledge {
        self.knowledge.get(&endpoint.key).unwrap_or(Knowledge {
            plain_http: endpoint.plain_http,
            scheme: Scheme::Open,
        })
    }

    fn learn(&self, endpoint: &Endpoint, change: impl FnOnce(&mut Knowledge)) {
        let mut k = self.knowledge(endpoint);
        change(&mut k);
        self.knowledge.insert(endpoint.key.clone(), k);
    }
}

/// Every challenge of every `WWW-Authenticate` header.
fn challenges(response: &Response) -> Vec<Challenge> {
    response
        .headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}

/// The final answer to an (authorized or anonymous) request.
fn classify(
    response: Response,
    authorization: Option<String>,
    answered: bool,
    redirect_is_answer: bool,
) -> Exchange {
    match response.status {
        s if s.is_success() || (redirect_is_answer && s.is_redirection()) => Exchange::Ok {
            response,
            authorization,
        },
        // The caller turns a 405/501 on HEAD into a GET.
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => Exchange::Ok {
            response,
            authorization,
        },
        StatusCode::NOT_FOUND => Exchange::NotFound { authorization },
        StatusCode::UNAUTHORIZED => {
            let insufficient = challenges(&response).iter().any(
                |c| matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope"),
            );
            Exchange::Refused(
                match (authorization.is_some() || answered, insufficient) {
                    (_, true) => "the registry refused access (insufficient_scope)",
                    (true, false) => "the registry refused the credentials (HTTP 401)",
                    (false, false) => "the registry requires authentication (HTTP 401)",
                }
                .to_string(),
            )
        }
        StatusCode::FORBIDDEN => {
            Exchange::Refused("the registry denied access (HTTP 403)".to_string())
        }
        status => Exchange::Failed(status_outcome(
            response.url.host_str().unwrap_or_default(),
            status,
            &response.headers,
            "the registry",
        )),
    }
}
