//! HTTPS serving, certificate rotation and start-up errors, with certificates made at test time.

mod common;

use common::*;
use gantry_serve::{serve, CertError, CertResolver, ReloadOutcome, ServeError, ServeOptions, TlsFiles};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// Options with the periodic reload off, so that only the test triggers reloads.
fn manual() -> ServeOptions {
    ServeOptions { reload_interval: Duration::ZERO, ..ServeOptions::default() }
}

fn secret_dir(ca: &Ca, serial: u64) -> (tempfile::TempDir, Leaf) {
    let dir = tempfile::tempdir().unwrap();
    let leaf = ca.leaf(serial);
    write_secret_version(dir.path(), "2026_01_01_00_00_00.000000001", &leaf.cert_pem, &leaf.key_pem);
    (dir, leaf)
}

#[tokio::test]
async fn https_over_http1_and_h2_with_a_chain() {
    let ca = Ca::new("gantry test CA");
    let (dir, leaf) = secret_dir(&ca, 1);
    let certs = CertResolver::load(TlsFiles::in_secret_dir(dir.path())).unwrap();
    let server = start(app(Gate::new()), Some(certs), manual()).await;

    let h1 = get_tls(server.addr, &ca.der(), &[b"http/1.1"], "/").await.unwrap();
    assert_eq!((h1.status, h1.body.as_str(), h1.alpn.as_deref()), (200, "hello", Some(&b"http/1.1"[..])));
    assert_eq!(h1.peer.as_ref(), Some(&leaf.der));

    let h2 = get_tls(server.addr, &ca.der(), &[b"h2", b"http/1.1"], "/").await.unwrap();
    assert_eq!((h2.status, h2.body.as_str(), h2.alpn.as_deref()), (200, "hello", Some(&b"h2"[..])));

    // No ALPN at all: HTTP/1.1.
    let none = get_tls(server.addr, &ca.der(), &[], "/peer").await.unwrap();
    assert_eq!(none.status, 200);
    assert!(none.body.starts_with("127.0.0.1:"), "ConnectInfo: {}", none.body);

    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let ca = Ca::new("gantry test CA");
    let other = Ca::new("someone else");
    let (dir, _) = secret_dir(&ca, 1);
    let certs = CertResolver::load(TlsFiles::in_secret_dir(dir.path())).unwrap();
    let server = start(app(Gate::new()), Some(certs), manual()).await;
    assert!(get_tls(server.addr, &other.der(), &[], "/").await.is_err());
    // And the server goes on serving.
    assert_eq!(get_tls(server.addr, &ca.der(), &[], "/").await.unwrap().status, 200);
    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn rotation_by_kubernetes_symlink_swap_reaches_new_connections() {
    let ca = Ca::new("gantry test CA");
    let (dir, first) = secret_dir(&ca, 1);
    let certs = CertResolver::load(TlsFiles::in_secret_dir(dir.path())).unwrap();
    let server = start(app(Gate::new()), Some(certs.clone()), manual()).await;
    assert_eq!(get_tls(server.addr, &ca.der(), &[], "/").await.unwrap().peer, Some(first.der.clone()));

    // Nothing changed yet.
    assert_eq!(certs.reload_now().unwrap(), ReloadOutcome::Unchanged);

    let second = ca.leaf(2);
    write_secret_version(dir.path(), "2026_02_01_00_00_00.000000002", &second.cert_pem, &second.key_pem);
    assert_eq!(certs.reload_now().unwrap(), ReloadOutcome::Reloaded);
    let reply = get_tls(server.addr, &ca.der(), &[], "/").await.unwrap();
    assert_eq!((reply.status, reply.peer), (200, Some(second.der.clone())));
    assert_ne!(first.der, second.der);

    let status = certs.reload_status();
    assert_eq!((status.reloads, status.failures, status.last_error), (1, 0, None));
    assert_eq!(certs.reload_now().unwrap(), ReloadOutcome::Unchanged);
    assert_eq!(certs.reload_status().reloads, 1);

    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn the_periodic_reload_picks_up_files_rewritten_in_place() {
    let ca = Ca::new("gantry test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path().join("server.pem"), dir.path().join("server-key.pem"));
    let first = ca.leaf(1);
    std::fs::write(&files.cert, &first.cert_pem).unwrap();
    std::fs::write(&files.key, &first.key_pem).unwrap();
    let certs = CertResolver::load(files.clone()).unwrap();
    let options = ServeOptions { reload_interval: Duration::from_millis(50), ..ServeOptions::default() };
    let server = start(app(Gate::new()), Some(certs.clone()), options).await;
    assert_eq!(get_tls(server.addr, &ca.der(), &[], "/").await.unwrap().peer, Some(first.der.clone()));

    let second = ca.leaf(2);
    std::fs::write(&files.cert, &second.cert_pem).unwrap();
    std::fs::write(&files.key, &second.key_pem).unwrap();
    let mut seen = None;
    for _ in 0..100 {
        seen = get_tls(server.addr, &ca.der(), &[], "/").await.unwrap().peer;
        if seen.as_ref() == Some(&second.der) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Some(second.der.clone()), "the new certificate was never served");
    assert_eq!(certs.reload_status().reloads, 1);
    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn bad_new_files_keep_the_old_certificate_and_show_the_error() {
    let ca = Ca::new("gantry test CA");
    let (dir, first) = secret_dir(&ca, 1);
    let files = TlsFiles::in_secret_dir(dir.path());
    let certs = CertResolver::load(files.clone()).unwrap();
    let server = start(app(Gate::new()), Some(certs.clone()), manual()).await;
    let served = || async { get_tls(server.addr, &ca.der(), &[], "/").await.unwrap().peer.unwrap() };

    // A broken key.
    write_secret_version(
        dir.path(),
        "v2",
        &first.cert_pem,
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    );
    let err = certs.reload_now().unwrap_err();
    assert!(matches!(err, CertError::BadPem { .. }), "{err}");
    assert_eq!(served().await, first.der);
    let status = certs.reload_status();
    assert_eq!((status.reloads, status.failures), (0, 1));
    let message = status.last_error.unwrap();
    assert!(
        message.contains(&files.key.display().to_string()) && message.contains("not valid PEM"),
        "{message}"
    );

    // The same broken files again: still an error, but counted (and logged) once.
    assert!(certs.reload_now().is_err());
    assert_eq!(certs.reload_status().failures, 1);

    // Half a rotation (a writer that is not atomic): new certificate, old key.
    let second = ca.leaf(2);
    write_secret_version(dir.path(), "v3", &second.cert_pem, &first.key_pem);
    let err = certs.reload_now().unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("does not belong to the certificate"), "{err}");
    assert_eq!(served().await, first.der);
    assert_eq!(certs.reload_status().failures, 2);

    // An empty key file.
    write_secret_version(dir.path(), "v4", &second.cert_pem, "");
    assert!(matches!(certs.reload_now().unwrap_err(), CertError::NoPrivateKey { .. }));
    assert_eq!(served().await, first.der);

    // The Secret disappears for a moment.
    std::fs::remove_file(dir.path().join("tls.key")).unwrap();
    let err = certs.reload_now().unwrap_err();
    assert!(matches!(err, CertError::Read { .. }) && err.to_string().contains("tls.key"), "{err}");
    assert_eq!(served().await, first.der);
    std::os::unix::fs::symlink("..data/tls.key", dir.path().join("tls.key")).unwrap();

    // Fixed: the new pair is served and the error is gone.
    write_secret_version(dir.path(), "v5", &second.cert_pem, &second.key_pem);
    assert_eq!(certs.reload_now().unwrap(), ReloadOutcome::Reloaded);
    assert_eq!(served().await, second.der);
    let status = certs.reload_status();
    assert_eq!((status.reloads, status.failures, status.last_error), (1, 4, None));

    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn start_up_errors_name_the_file_and_the_fix() {
    let ca = Ca::new("gantry test CA");
    let leaf = ca.leaf(1);
    let other = ca.leaf(2);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(path("key.pem"), &leaf.key_pem).unwrap();
    std::fs::write(path("other-key.pem"), &other.key_pem).unwrap();
    std::fs::write(path("empty.pem"), "").unwrap();
    std::fs::write(
        path("encrypted.pem"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(path("truncated.pem"), &leaf.cert_pem[..100]).unwrap();
    std::fs::write(path("junk-cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap();

    let load = |cert: &str, key: &str| {
        CertResolver::load(TlsFiles::new(path(cert), path(key))).unwrap_err().to_string()
    };
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "missing.pem",
            "key.pem",
            &["cannot read the TLS certificate file", "missing.pem", "Secret volume is mounted"],
        ),
        ("cert.pem", "missing.pem", &["cannot read the TLS private key file", "missing.pem"]),
        ("empty.pem", "key.pem", &["no certificate in", "empty.pem", "BEGIN CERTIFICATE"]),
        ("key.pem", "cert.pem", &["no certificate in", "key.pem", "swapped"]),
        ("cert.pem", "empty.pem", &["no private key in", "empty.pem", "BEGIN PRIVATE KEY"]),
        (
            "cert.pem",
            "encrypted.pem",
            &["no private key in", "encrypted.pem", "encrypted, which is not supported"],
        ),
        (
            "cert.pem",
            "other-key.pem",
            &["other-key.pem", "does not belong to the certificate in", "cert.pem"],
        ),
        ("truncated.pem", "key.pem", &["truncated.pem", "not valid PEM"]),
        ("junk-cert.pem", "key.pem", &["junk-cert.pem", "cannot be parsed"]),
        (".", "key.pem", &["is a folder", "tls.crt"]),
    ];
    for (cert, key, wanted) in cases {
        let message = load(cert, key);
        for w in *wanted {
            assert!(message.contains(w), "{cert} / {key}: {message:?} lacks {w:?}");
        }
    }

    // Through `serve`: an error, at once, no panic, nothing served.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let files = TlsFiles::new(path("missing.pem"), path("key.pem"));
    let result =
        tokio::time::timeout(LIMIT, serve(listener, app(Gate::new()), Some(files), std::future::pending()))
            .await
            .unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, ServeError::Cert(CertError::Read { .. })), "{err}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others_and_is_dropped() {
    let ca = Ca::new("gantry test CA");
    let (dir, _) = secret_dir(&ca, 1);
    let certs = CertResolver::load(TlsFiles::in_secret_dir(dir.path())).unwrap();
    // Long enough that handshaking in the accept loop would hold the good client past its 1 s.
    let options = ServeOptions { handshake_timeout: Duration::from_millis(1500), ..manual() };
    let server = start(app(Gate::new()), Some(certs), options).await;

    // One says nothing, one sends the first bytes of a TLS record and stops.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();

    let reply = tokio::time::timeout(Duration::from_secs(1), get_tls(server.addr, &ca.der(), &[], "/"))
        .await
        .expect("blocked by the silent clients")
        .unwrap();
    assert_eq!(reply.status, 200);

    // Both are dropped once the handshake timeout is up.
    for stream in [&mut silent, &mut stalled] {
        let mut buf = [0u8; 64];
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.expect("never dropped");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_over_tls_lets_an_in_flight_request_finish() {
    let ca = Ca::new("gantry test CA");
    let (dir, _) = secret_dir(&ca, 1);
    let certs = CertResolver::load(TlsFiles::in_secret_dir(dir.path())).unwrap();
    let gate = Gate::new();
    let mut server = start(app(gate.clone()), Some(certs), manual()).await;
    let addr = server.addr;

    let ca_der = ca.der();
    let h1 = tokio::spawn(async move { get_tls(addr, &ca_der, &[b"http/1.1"], "/slow").await });
    gate.wait_entered().await;
    let ca_der = ca.der();
    let h2 = tokio::spawn(async move { get_tls(addr, &ca_der, &[b"h2"], "/slow").await });
    gate.wait_entered().await;

    server.stop();
    wait_refused(addr).await;
    assert!(!server.task.is_finished(), "serve returned with requests in flight");
    gate.release();
    gate.release();
    for (request, alpn) in [(h1, &b"http/1.1"[..]), (h2, b"h2")] {
        let reply = tokio::time::timeout(LIMIT, request).await.unwrap().unwrap().unwrap();
        assert_eq!(
            (reply.status, reply.body.as_str(), reply.alpn.as_deref()),
            (200, "slow done", Some(alpn))
        );
    }
    server.stop_and_join(LIMIT).await.unwrap();
}
