//! The load generator's HTTPS client: hyper's client connections (HTTP/1.1 keep-alive or
//! HTTP/2) over rustls, one TCP connection per [`Conn`], trusting only the bench CA.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use axum::body::Bytes;
use axum::http::{Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Longest wait for one answer (the server's own check budget is 9 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which HTTP version a connection speaks (negotiated with ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1,
    H2,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::H1 => "HTTP/1.1",
            Protocol::H2 => "HTTP/2",
        }
    }
}

/// TLS settings for one protocol, trusting only `ca_pem`.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    protocol: Protocol,
}

impl Tls {
    pub fn new(ca_pem: &Path, protocol: Protocol) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .with_context(|| format!("reading {}", ca_pem.display()))?
        {
            roots.add(cert.context("CA PEM")?)?;
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![match protocol {
            Protocol::H1 => b"http/1.1".to_vec(),
            Protocol::H2 => b"h2".to_vec(),
        }];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            protocol,
        })
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One keep-alive connection to the webhook. HTTP/2 connections can be cloned to share one
/// TCP connection between several concurrent streams.
pub struct Conn {
    sender: Sender,
    authority: String,
    driver: Arc<Driver>,
}

/// Aborts the connection task when the last handle goes.
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: &Tls) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::from(addr.ip());
        let stream = tls
            .connector
            .connect(name, tcp)
            .await
            .context("TLS handshake with the webhook")?;
        let io = TokioIo::new(stream);
        let (sender, driver) = match tls.protocol {
            Protocol::H1 => {
                let (sender, conn) = http1::handshake(io).await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Sender::H1(sender), task)
            }
            Protocol::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Sender::H2(sender), task)
            }
        };
        Ok(Conn {
            sender,
            authority: addr.to_string(),
            driver: Arc::new(Driver(driver)),
        })
    }

    /// Another handle on the same HTTP/2 connection (a new stream per request).
    pub fn share(&self) -> Option<Conn> {
        match &self.sender {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Conn {
                sender: Sender::H2(s.clone()),
                authority: self.authority.clone(),
                driver: self.driver.clone(),
            }),
        }
    }

    /// POST `body` to `path`; the status and the whole answer body. Gives up after
    /// [`REQUEST_TIMEOUT`], so that a stuck server cannot hang the bench.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, body))
            .await
            .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&mut self, path: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let request = Request::post(format!("https://{}{path}", self.authority))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))?;
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                let (mut parts, body) = request.into_parts();
                // HTTP/1.1 wants origin-form and a Host header.
                parts.headers.insert(header::HOST, self.authority.parse()?);
                parts.uri = path.parse()?;
                s.send_request(Request::from_parts(parts, body)).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Whether an AdmissionReview answer allowed the request without a warning.
pub fn allowed_cleanly(status: u16, body: &[u8]) -> bool {
    status == 200 && contains(body, b"\"allowed\":true") && !contains(body, b"\"warnings\"")
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
