//! Loading a PEM certificate and key, and swapping in new ones while serving.
//!
//! Kubernetes mounts a TLS Secret as files that it replaces with an atomic symlink swap (the
//! volume's `..data` link is re-pointed at a new timestamped folder), and cert-manager renews the
//! Secret before the certificate expires. [`CertResolver`] serves the pair it last loaded and
//! re-reads the files on request ([`CertResolver::reload_now`]) or every few seconds
//! ([`CertResolver::watch`]); a new pair is swapped in only once both files parse and the key
//! belongs to the certificate, so a half-written or broken Secret never takes the service down:
//! the old pair keeps being served and the problem is logged and shown in
//! [`CertResolver::reload_status`].

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

/// The two PEM files of a TLS server identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, then any intermediate certificates (a chain, leaf first).
    pub cert: PathBuf,
    /// The private key of the first certificate: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), unencrypted.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The pair at the given paths.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into() }
    }

    /// `DIR/tls.crt` and `DIR/tls.key`: a `kubernetes.io/tls` Secret (as cert-manager writes it)
    /// mounted at `DIR`.
    pub fn in_secret_dir(dir: impl AsRef<Path>) -> TlsFiles {
        let dir = dir.as_ref();
        TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }
}

/// Why a certificate/key pair cannot be used. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file cannot be read (missing, not readable, a directory...).
    #[error("cannot read the TLS {what} file {}: {source}; {hint}", path.display())]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        path: PathBuf,
        source: io::Error,
        /// What to check.
        hint: &'static str,
    },
    /// A file is not well-formed PEM.
    #[error("the TLS {what} file {} is not valid PEM ({detail}); it must hold '-----BEGIN ...-----' / '-----END ...-----' blocks, as in a kubernetes.io/tls Secret", path.display())]
    BadPem { what: &'static str, path: PathBuf, detail: String },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate in {}: expected a PEM block '-----BEGIN CERTIFICATE-----'{hint}", path.display())]
    NoCertificate { path: PathBuf, hint: &'static str },
    /// The key file holds no usable private key block.
    #[error("no private key in {}: expected a PEM block 'BEGIN PRIVATE KEY' (PKCS#8), 'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY'{hint}", path.display())]
    NoPrivateKey { path: PathBuf, hint: &'static str },
    /// The key parses as PEM but the crypto provider cannot use it.
    #[error("the private key in {} cannot be used ({detail}); use an unencrypted RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key", path.display())]
    BadKey { path: PathBuf, detail: String },
    /// The first certificate is not valid X.509.
    #[error("the certificate in {} cannot be parsed ({detail}); re-issue it or check that the file is not truncated", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    /// The key is not the key of the first certificate.
    #[error("the private key in {} does not belong to the certificate in {} (the first certificate of the chain must be the server's own); use a certificate and key issued together, from the same version of the Secret", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

/// What [`CertResolver::reload_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files hold the pair being served.
    Unchanged,
    /// The files changed and the new pair is now served to new connections.
    Reloaded,
}

/// Counters and state of the reloads, for logs, health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// New pairs swapped in since start (the first load not counted).
    pub reloads: u64,
    /// Failed reloads: each distinct problem counted once, not once per poll.
    pub failures: u64,
    /// Why the files on disk are not what is served, if they are not; cleared by a successful
    /// reload or when the files are back to the served pair.
    pub last_error: Option<String>,
    /// When the pair being served was loaded.
    pub loaded_at: SystemTime,
    /// When the files were last read.
    pub last_check: SystemTime,
}

/// The file contents last loaded, and the bookkeeping behind [`ReloadStatus`].
struct State {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The last problem counted and logged, with the contents that caused it (empty when a
    /// file could not be read), so that a broken Secret is reported once, not every poll.
    last_failure: Option<(String, Vec<u8>, Vec<u8>)>,
    status: ReloadStatus,
}

/// A rustls certificate resolver that serves the last good pair from [`TlsFiles`] and swaps in
/// new pairs as the files change. Share it (`Arc`) between the server config and whoever
/// reports [`reload_status`](CertResolver::reload_status).
pub struct CertResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// Read on every handshake, written on a reload.
    current: RwLock<Arc<CertifiedKey>>,
    state: Mutex<State>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the state: it holds the key's PEM.
        f.debug_struct("CertResolver").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The crypto provider of every Gantry TLS server: rustls over ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertResolver {
    /// Loads the pair, or says clearly why it cannot be used.
    pub fn load(files: TlsFiles) -> Result<Arc<CertResolver>, CertError> {
        let provider = provider();
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = parse_pair(&files, &cert_pem, &key_pem, &provider)?;
        let now = SystemTime::now();
        let status =
            ReloadStatus { reloads: 0, failures: 0, last_error: None, loaded_at: now, last_check: now };
        Ok(Arc::new(CertResolver {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            state: Mutex::new(State { cert_pem, key_pem, last_failure: None, status }),
        }))
    }

    /// The files this resolver reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The pair served to new connections now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole Arc: writers only replace it.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A snapshot of the reload counters and the current problem, if any.
    pub fn reload_status(&self) -> ReloadStatus {
        self.state().status.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the files now and swaps in the new pair if they changed and are good. On error
    /// the pair being served stays; the error is logged (once per distinct problem) and kept in
    /// [`reload_status`](CertResolver::reload_status). Blocking file I/O on two small files.
    pub fn reload_now(&self) -> Result<ReloadOutcome, CertError> {
        let mut state = self.state();
        state.status.last_check = SystemTime::now();
        let result = match read_pair(&self.files) {
            Err(e) => Err((e, Vec::new(), Vec::new())),
            Ok((cert_pem, key_pem)) if cert_pem == state.cert_pem && key_pem == state.key_pem => Ok(None),
            Ok((cert_pem, key_pem)) => match parse_pair(&self.files, &cert_pem, &key_pem, &self.provider) {
                Ok(key) => Ok(Some((key, cert_pem, key_pem))),
                Err(e) => Err((e, cert_pem, key_pem)),
            },
        };
        match result {
            Ok(None) => {
                state.status.last_error = None;
                state.last_failure = None;
                Ok(ReloadOutcome::Unchanged)
            }
            Ok(Some((key, cert_pem, key_pem))) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
                state.cert_pem = cert_pem;
                state.key_pem = key_pem;
                state.last_failure = None;
                state.status.reloads += 1;
                state.status.last_error = None;
                state.status.loaded_at = SystemTime::now();
                tracing::info!(
                    "loaded the new TLS certificate from {} and key from {}; new connections use it",
                    self.files.cert.display(),
                    self.files.key.display()
                );
                Ok(ReloadOutcome::Reloaded)
            }
            Err((e, cert_pem, key_pem)) => {
                let message = e.to_string();
                let seen = matches!(&state.last_failure, Some((m, c, k)) if *m == message && *c == cert_pem && *k == key_pem);
                if !seen {
                    state.status.failures += 1;
                    tracing::warn!(
                        "TLS certificate reload failed, still serving the previous certificate: {message}"
                    );
                    state.last_failure = Some((message.clone(), cert_pem, key_pem));
                }
                state.status.last_error = Some(message);
                Err(e)
            }
        }
    }

    /// Re-reads the files every `every`, forever (spawn it; drop or abort it to stop). The
    /// outcome of each check is in [`reload_status`](CertResolver::reload_status) and, when it
    /// changes something or fails, in the log. A zero `every` returns at once (no polling).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        if every.is_zero() {
            return;
        }
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let me = self.clone();
            // Errors are already recorded and logged by reload_now.
            let _ = tokio::task::spawn_blocking(move || me.reload_now()).await;
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Reads both files whole, with a hint for each way that can fail.
fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    Ok((read_file("certificate", &files.cert)?, read_file("private key", &files.key)?))
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| {
        let hint = if path.is_dir() {
            "the path is a folder: name the file inside it (tls.crt / tls.key for a kubernetes.io/tls Secret)"
        } else {
            match source.kind() {
                io::ErrorKind::NotFound => "check the path, and that the Secret volume is mounted there (with cert-manager: that the Certificate is Ready and its secretName is the Secret mounted)",
                io::ErrorKind::PermissionDenied => "make it readable by the user this process runs as (the volume's defaultMode, or the pod's fsGroup)",
                _ => "check that the path names a readable file",
            }
        };
        CertError::Read { what, path: path.to_path_buf(), source, hint }
    })
}

/// Parses the chain and key and checks that they belong together.
fn parse_pair(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| {
        CertError::BadPem { what: "certificate", path: files.cert.clone(), detail: pem_detail(&e) }
    })?;
    if chain.is_empty() {
        let hint = if contains(cert_pem, b"PRIVATE KEY-----") {
            "; this file holds a private key: are the certificate and key paths swapped?"
        } else {
            ""
        };
        return Err(CertError::NoCertificate { path: files.cert.clone(), hint });
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            let hint = if contains(key_pem, b"ENCRYPTED PRIVATE KEY-----") {
                "; the key here is encrypted, which is not supported: store it unencrypted (as cert-manager does)"
            } else if contains(key_pem, b"BEGIN CERTIFICATE-----") {
                "; this file holds a certificate: are the certificate and key paths swapped?"
            } else {
                ""
            };
            return Err(CertError::NoPrivateKey { path: files.key.clone(), hint });
        }
        Err(e) => {
            return Err(CertError::BadPem {
                what: "private key",
                path: files.key.clone(),
                detail: pem_detail(&e),
            })
        }
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| CertError::BadKey { path: files.key.clone(), detail: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The key cannot tell its public half: nothing to compare, as rustls itself allows.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(CertError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() })
        }
        Err(e) => Err(CertError::BadCertificate { path: files.cert.clone(), detail: e.to_string() }),
    }
}

fn pem_detail(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("missing the line {}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed line {}", String::from_utf8_lossy(line))
        }
        other => other.to_string(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
