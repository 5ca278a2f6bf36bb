//! HTTPS for the webhook and plain HTTP for probes and metrics.
//!
//! `POST /validate` on rustls (ALPN h2 + http/1.1), with a header-read timeout, a body
//! limit large enough for UPDATE reviews, a connection limit and a graceful drain.
//! `/healthz`, `/readyz` and `/metrics` live on a separate port.

pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::webhook::{Reply, Webhook, parse_go_duration};

/// Axum's default 2 MiB is too small for an UPDATE review (object + oldObject).
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Limits of the HTTPS listener.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A client must send a request's headers within this time (slowloris).
    pub header_read_timeout: Duration,
    /// TLS handshakes must finish within this time.
    pub handshake_timeout: Duration,
    /// Open connections at most; further clients wait in the accept queue.
    pub max_connections: usize,
    /// On shutdown, in-flight reviews get this long to finish.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// `POST /validate`.
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(close_after_unread_body))
        .with_state(webhook)
}

/// A 413 leaves the rest of the body unread, so HTTP/1.1 cannot reuse the connection:
/// say so, or the client's next request on it fails. (HTTP/2 drops the header.)
async fn close_after_unread_body(mut response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn validate(
    State(webhook): State<Arc<Webhook>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let timeout = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "timeout")
            .and_then(|(_, v)| parse_go_duration(v))
    });
    match webhook.review(&body, timeout).await {
        Reply::Review(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Reply::BadRequest(reason) => {
            (StatusCode::BAD_REQUEST, format!("pullgate: {reason}\n")).into_response()
        }
    }
}

/// State of the operations endpoints.
#[derive(Clone)]
pub struct Ops {
    pub webhook: Arc<Webhook>,
    /// Cleared when shutting down, so the Service stops sending reviews first.
    pub serving: Arc<AtomicBool>,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn ops_router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> Response {
    if !ops.serving.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !ops.webhook.cluster().is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster stores not synced yet\n",
        )
            .into_response();
    }
    "ok\n".into_response()
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let webhook = &ops.webhook;
    webhook
        .metrics()
        .set_cache_entries(webhook.checker().cache().entry_count());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        webhook.metrics().encode(),
    )
        .into_response()
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves, then stop accepting and
/// let in-flight requests finish (up to `drain_timeout`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    tokio::pin!(shutdown);

    loop {
        // Wait for a free slot before accepting: over the limit, clients queue in the
        // kernel's backlog instead of costing us memory.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = options.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("draining in-flight reviews");
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// A future resolving on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: call it before reporting ready, or a
/// SIGTERM in between would kill the process undrained.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
