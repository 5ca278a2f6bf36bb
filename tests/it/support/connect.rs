//! A forward proxy speaking HTTP `CONNECT`, as corporate egress proxies do: it resolves
//! target names itself (from a table given by the test, so names no DNS knows, such as
//! `registry.test`, reach local registries), tunnels the bytes, and records every
//! `CONNECT` line and header it saw. It never sees what travels inside a TLS tunnel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// `CONNECT registry.test:5000`, or `GET http://…` for a forwarded request.
    pub line: String,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
}

impl ProxyRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    /// `host:port` as the client names it → where it really is.
    routes: HashMap<String, SocketAddr>,
    seen: Vec<ProxyRequest>,
}

/// The running proxy; dropping it stops it and every tunnel.
pub struct ConnectProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind((super::LOCALHOST, 0))
            .await
            .expect("bind the CONNECT proxy");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut tunnels = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                tunnels.spawn(serve(stream, shared.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Send `CONNECT name` (`registry.test:443`) to `to`.
    pub fn route(&self, name: &str, to: SocketAddr) {
        self.state
            .lock()
            .expect("proxy state")
            .routes
            .insert(name.to_string(), to);
    }

    pub fn requests(&self) -> Vec<ProxyRequest> {
        self.state.lock().expect("proxy state").seen.clone()
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    // Bounded: a request head of at most 100 lines.
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h).await.unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let line = line.trim().to_string();
    let target = line
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string);
    let route = {
        let mut s = state.lock().expect("proxy state");
        s.seen.push(ProxyRequest {
            line: line.clone(),
            headers,
        });
        target.as_ref().and_then(|t| s.routes.get(t).copied())
    };
    let mut client = reader.into_inner();
    let Some(to) = route else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(to).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
