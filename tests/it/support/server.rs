//! The accept loop shared by the in-process test servers (token issuer,
//! fault proxy, auth recorder).
//!
//! `axum::serve` would do for plain request/response servers, but the fault
//! proxy must be able to kill a connection with a TCP RST *from inside a
//! handler*, which needs access to the socket hyper owns. So connections are
//! accepted here, each gets a [`ConnControl`] (inserted as a request
//! extension), and hyper-util's auto (HTTP/1 + HTTP/2) builder serves an
//! axum `Router` on it, optionally behind rustls.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A running server; dropping it aborts the accept loop and, with it, every
/// open connection (including handlers that hang on purpose).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-connection control handle, available to handlers as
/// `axum::Extension<ConnControl>`.
#[derive(Clone, Debug)]
pub struct ConnControl(Arc<ConnInner>);

#[derive(Debug)]
struct ConnInner {
    /// A duplicate of the connection's socket fd, used to set `SO_LINGER=0`
    /// on the shared socket (hyper owns the original).
    dup: Mutex<Option<std::net::TcpStream>>,
    kill: Notify,
}

impl ConnControl {
    fn new(stream: &TcpStream) -> Option<Self> {
        let dup = stream.as_fd().try_clone_to_owned().ok()?;
        Some(Self(Arc::new(ConnInner {
            dup: Mutex::new(Some(std::net::TcpStream::from(dup))),
            kill: Notify::new(),
        })))
    }

    /// Abort the connection with a TCP RST and no HTTP answer.
    ///
    /// `SO_LINGER` with a zero timeout makes the final `close()` send RST
    /// instead of FIN; the connection task then drops hyper's side. The
    /// calling handler should simply never return (`std::future::pending`).
    pub fn reset(&self) {
        let dup = self
            .0
            .dup
            .lock()
            .expect("conn control mutex poisoned")
            .take();
        if let Some(dup) = dup {
            // Closing the duplicate fd does not close the socket; hyper's fd
            // is the last one and its close sends the RST.
            let _ = TcpSocket::from_std_stream(dup).set_zero_linger();
        }
        // notify_one stores a permit if the connection task is not waiting yet.
        self.0.kill.notify_one();
    }
}

/// Bind `ip:0`.
pub async fn bind(ip: IpAddr) -> TcpListener {
    TcpListener::bind((ip, 0))
        .await
        .unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"))
}

/// Serve `router` on `listener` (over TLS when `tls` is given) in a task on
/// the current tokio runtime.
pub fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
) -> ServerHandle {
    let addr = listener.local_addr().expect("listener has a local address");
    let acceptor = tls.map(TlsAcceptor::from);
    let task = tokio::spawn(async move {
        // Owned by the accept task: aborting it drops the set, which aborts
        // every connection task.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        conns.spawn(serve_conn(stream, acceptor.clone(), router.clone()));
                    }
                    // e.g. EMFILE: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    ServerHandle { addr, task }
}

async fn serve_conn(stream: TcpStream, tls: Option<TlsAcceptor>, router: Router) {
    let _ = stream.set_nodelay(true);
    let Some(ctl) = ConnControl::new(&stream) else {
        return;
    };
    let svc_ctl = ctl.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(svc_ctl.clone());
        router.clone().oneshot(req)
    });
    let builder = Builder::new(TokioExecutor::new());
    match tls {
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = ctl.0.kill.notified() => {}
            }
        }
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = ctl.0.kill.notified() => {}
            }
        }
    }
}
