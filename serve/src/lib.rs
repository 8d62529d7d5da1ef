//! How Gantry's HTTP services (scheduler extender, admission webhook, quota API) serve an axum
//! [`Router`]: plain HTTP, or HTTPS with a certificate that is reloaded from disk while serving,
//! and a graceful shutdown whose wait is bounded.
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! let tls = Some(gantry_serve::TlsFiles::in_secret_dir("/etc/gantry/tls"));
//! gantry_serve::serve(listener, app, tls, gantry_serve::stop_signal()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A service that exports reload metrics loads the [`CertResolver`] itself, keeps a clone of the
//! `Arc` for [`CertResolver::reload_status`], and calls [`serve_with`].
//!
//! TLS is rustls over the `ring` provider (as kube's client in the same binaries), ALPN `h2` and
//! `http/1.1`. Every connection is its own task: the TLS handshake runs there under
//! [`ServeOptions::handshake_timeout`], so a slow or silent client holds only its own task.
//! Messages go to standard error, as elsewhere in Gantry.

pub mod bodies;
mod certs;
pub mod client;

/// Resolves on SIGTERM (what the kubelet sends a pod that is stopping) or SIGINT (Ctrl-C), the
/// shutdown every Gantry service waits for.
///
/// The handlers are installed when this is called (inside a Tokio runtime), not when the future
/// is first polled: a service that calls it before announcing its address is stopped, not
/// killed, by a signal sent the moment the address appears. Outside a runtime they are installed
/// on the first poll instead.
pub fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        // Each handler on its own: one that installs is waited on even if the other fails.
        let install = || -> [Option<Signal>; 2] {
            [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| signal(kind).ok())
        };
        let early = tokio::runtime::Handle::try_current().ok().map(|_| install());
        async move {
            let [term, int] = early.unwrap_or_else(install);
            let wait = |s: Option<Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            // A signal whose handler could not be installed keeps its default action, which ends
            // the process.
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub use certs::{CertError, CertResolver, ReloadOutcome, ReloadStatus, TlsFiles};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// Timings of [`serve_with`]; [`Default`] suits the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// How often the certificate files are re-read (10 s). Zero: never (reload only through
    /// [`CertResolver::reload_now`]).
    pub reload_interval: Duration,
    /// How long a client may take over the TLS handshake before it is dropped (10 s). Not zero:
    /// every handshake would time out.
    pub handshake_timeout: Duration,
    /// How long, once shutdown is asked for, in-flight requests may take to finish before their
    /// connections are closed (20 s, within Kubernetes' default 30 s termination grace period).
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// Why the server could not start. Once serving, errors of single connections or of `accept`
/// are not fatal: they are skipped (and `accept` errors logged) as `axum::serve` does.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key cannot be used (the message names the file and the fix).
    #[error(transparent)]
    Cert(#[from] CertError),
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Serves `app` on `listener` until `shutdown` completes, over HTTPS when `tls` is given (the
/// files re-read every 10 s) and plain HTTP otherwise; then stops accepting, lets in-flight
/// requests finish for up to 20 s and returns. See [`serve_with`] for other timings and for
/// access to the reload status.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let certs = tls.map(CertResolver::load).transpose()?;
    serve_with(listener, app, certs, ServeOptions::default(), shutdown).await
}

/// [`serve`] with a certificate resolver loaded by the caller (who may keep a clone to report
/// [`CertResolver::reload_status`]) and explicit [`ServeOptions`].
///
/// Plain HTTP speaks HTTP/1.1 (and HTTP/2 with prior knowledge, as `axum::serve` with axum's
/// `http2` feature); HTTPS offers `h2` and `http/1.1` by ALPN. Handlers can extract
/// `ConnectInfo<SocketAddr>` for the peer address in both modes.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<CertResolver>>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = match &tls {
        Some(resolver) => Some(TlsAcceptor::from(Arc::new(server_config(resolver.clone())?))),
        None => None,
    };
    let _watcher = tls.map(|resolver| AbortOnDrop(tokio::spawn(resolver.watch(options.reload_interval))));

    let mut builder = Builder::new(TokioExecutor::new());
    // With a timer hyper enforces its HTTP/1 header-read timeout (30 s): a client that opens a
    // connection and trickles a request's headers is dropped. HTTP/2 uses it for its timeouts.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    // Connection tasks watch `stop` to begin their graceful shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connection tasks so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let conn = Connection { app: app.clone(), builder: builder.clone(), stop: stop_rx.clone(), remote };
                    connections.spawn(conn.run(tcp, acceptor.clone(), options.handshake_timeout));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("cannot accept connections: {e}; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }

    drop(listener);
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            "{} connection(s) still busy {:?} after shutdown began; closing them",
            connections.len(),
            options.shutdown_timeout
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The rustls server configuration: ring, TLS 1.2 and 1.3, the resolver's certificate, ALPN.
fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(certs::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Aborts the task when dropped, so the reload task ends with the server.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one connection task needs.
struct Connection {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    remote: SocketAddr,
}

impl Connection {
    /// Handshakes (with TLS, under `handshake_timeout`) and serves the connection until the
    /// client closes it or shutdown is asked for and its in-flight requests are answered.
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>, handshake_timeout: Duration) {
        // Small request/response exchanges: do not wait to coalesce writes.
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = tls else {
            return self.serve(tcp).await;
        };
        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
        let mut stop = self.stop.clone();
        tokio::select! {
            // A failed or timed-out handshake is the client's problem, not logged: probes and
            // scanners would flood the log.
            done = handshake => if let Ok(Ok(stream)) = done { self.serve(stream).await },
            // Shutting down: no new requests, and this connection has none in flight.
            () = stopping(&mut stop) => {}
        }
    }

    async fn serve<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut self, io: I) {
        let remote = self.remote;
        let app = self.app;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            // One span per request, around whatever the service records (the extender's verb,
            // an admission review, a ledger write), so a filter shows a request's events together.
            let span =
                tracing::debug_span!("http_request", method = %request.method(), path = request.uri().path());
            // A Router is always ready (its poll_ready returns Ready), so call it directly.
            let mut app = app.clone();
            tracing::Instrument::instrument(async move { app.call(request).await }, span)
        });
        let conn = self.builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            // Errors are the client's (reset, malformed request, timeout): nothing to do.
            _ = conn.as_mut() => {}
            () = stopping(&mut self.stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Completes once shutdown is asked for (or the server is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
