//! Test helpers: a CA and leaf certificates made with rcgen, a Secret-volume folder laid out as
//! the kubelet does, a server on 127.0.0.1, and HTTP(S) clients over hyper and tokio-rustls.
#![allow(dead_code)]

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use gantry_serve::{serve_with, CertResolver, ServeError, ServeOptions};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate (for `localhost` and 127.0.0.1) and its key.
pub struct Leaf {
    /// The leaf then the CA: a chain, as cert-manager writes `tls.crt`.
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn leaf(&self, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, format!("gantry test server {serial}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: format!("{}{}", cert.pem(), self.issuer.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Writes one version of a `kubernetes.io/tls` Secret into a volume folder the way the kubelet's
/// atomic writer does: files in a new `..<version>` folder, a `..data_tmp` link to it renamed
/// over `..data` (the atomic step), `tls.crt` and `tls.key` linking through `..data`, and the
/// old version folder removed.
pub fn write_secret_version(dir: &Path, version: &str, cert_pem: &str, key_pem: &str) {
    use std::os::unix::fs::symlink;
    let old = std::fs::read_link(dir.join("..data")).ok();
    let folder = format!("..{version}");
    std::fs::create_dir(dir.join(&folder)).unwrap();
    std::fs::write(dir.join(&folder).join("tls.crt"), cert_pem).unwrap();
    std::fs::write(dir.join(&folder).join("tls.key"), key_pem).unwrap();
    symlink(&folder, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

/// Lets a test hold `/slow` requests open: each entering request sends a message on `entered`
/// and waits for one `release`.
pub struct Gate {
    pub entered: Mutex<mpsc::UnboundedReceiver<()>>,
    entered_tx: mpsc::UnboundedSender<()>,
    release_tx: mpsc::UnboundedSender<()>,
    release: Mutex<mpsc::UnboundedReceiver<()>>,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let (release_tx, release) = mpsc::unbounded_channel();
        Arc::new(Gate { entered: Mutex::new(entered), entered_tx, release_tx, release: Mutex::new(release) })
    }

    pub async fn wait_entered(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.entered.lock().await.recv())
            .await
            .expect("request never reached the handler")
            .unwrap();
    }

    pub fn release(&self) {
        self.release_tx.send(()).unwrap();
    }
}

/// `/` says hello, `/peer` echoes the peer address, `/slow` waits on the gate.
pub fn app(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
        .route(
            "/slow",
            get(move || async move {
                gate.entered_tx.send(()).unwrap();
                gate.release.lock().await.recv().await;
                "slow done"
            }),
        )
}

/// A server on 127.0.0.1 that stops when `stop` is called.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops and waits (at most `limit`) for serve to return.
    pub async fn stop_and_join(mut self, limit: Duration) -> Result<(), ServeError> {
        self.stop();
        tokio::time::timeout(limit, self.task).await.expect("server did not stop in time").unwrap()
    }
}

pub async fn start(app: Router, tls: Option<Arc<CertResolver>>, options: ServeOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(listener, app, tls, options, async move {
        let _ = stopped.await;
    }));
    Running { addr, stop: Some(stop), task }
}

/// What a client saw.
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// The server's leaf certificate (TLS only).
    pub peer: Option<CertificateDer<'static>>,
    /// The ALPN protocol agreed (TLS only).
    pub alpn: Option<Vec<u8>>,
}

pub fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// GET `path` over HTTPS on a new connection, trusting only `ca`, offering `alpn`.
pub async fn get_tls(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    alpn: &[&[u8]],
    path: &str,
) -> Result<Reply, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, alpn));
    let stream = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let (_, session) = stream.get_ref();
    let peer = session.peer_certificates().and_then(|c| c.first()).map(|c| c.clone().into_owned());
    let negotiated = session.alpn_protocol().map(|p| p.to_vec());
    let (status, body) = if negotiated.as_deref() == Some(b"h2") {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        request(&mut sender, addr, path).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        request1(&mut sender, addr, path).await?
    };
    Ok(Reply { status, body, peer, alpn: negotiated })
}

/// GET `path` over plain HTTP/1.1 on a new connection.
pub async fn get_plain(addr: SocketAddr, path: &str) -> Result<Reply, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let (status, body) = request1(&mut sender, addr, path).await?;
    Ok(Reply { status, body, peer: None, alpn: None })
}

fn build(addr: SocketAddr, path: &str) -> Result<hyper::Request<Empty<Bytes>>, BoxError> {
    Ok(hyper::Request::get(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .body(Empty::new())?)
}

pub async fn request1(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), BoxError> {
    let response = sender.send_request(build(addr, path)?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

async fn request(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String), BoxError> {
    let response = sender.send_request(build(addr, path)?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec())?))
}

/// Waits until connecting to `addr` is refused (the listener is closed).
pub async fn wait_refused(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections");
}
