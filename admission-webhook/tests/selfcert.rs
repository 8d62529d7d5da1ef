//! The webhook's own certificate (`--self-signed-tls`): the pure decisions over a clock given as a
//! parameter, the certificates checked by a real TLS handshake (a rustls client that trusts only
//! `ca.crt`, against `gantry_serve` serving the written files), and the exact API calls against a
//! fake API server (tower-test) that keeps objects and their resourceVersions as the real one
//! does: 409 on a stale update or an existing name.

use base64::Engine;
use gantry_admission_webhook::selfcert::{
    assess, issue, next_backoff, plan, set_ca_bundle, write_files, Config, ConfigKind, ConfigRef,
    ConfigRefError, KeeperError, Material, Plan, SelfSigned, ServiceIdentity, BACKOFF_MAX, CA_CRT, CA_KEY,
    TLS_CRT, TLS_KEY,
};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::admissionregistration::v1::{ServiceReference, WebhookClientConfig};
use k8s_openapi::ByteString;
use kube::client::Body;
use kube::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 24 * 3600;
const NS: &str = "gantry-system";
const SECRET: &str = "gantry-webhook-tls";
const SECRET_PATH: &str = "/api/v1/namespaces/gantry-system/secrets/gantry-webhook-tls";
const SECRETS: &str = "/api/v1/namespaces/gantry-system/secrets";
const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/gantry-webhook";
const VALIDATING: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/gantry-webhook";

fn id() -> ServiceIdentity {
    ServiceIdentity::new("gantry-webhook", NS)
}

/// 2026-01-01T00:00:00Z, the clock of the tests that need no real time.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn fresh(now: SystemTime, id: &ServiceIdentity) -> BTreeMap<String, ByteString> {
    issue(now, id, Plan::Create, None).unwrap().to_data()
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).map(|c| c.unwrap().to_vec()).collect()
}

fn with(data: &BTreeMap<String, ByteString>, key: &str, value: Option<&str>) -> BTreeMap<String, ByteString> {
    let mut d = data.clone();
    match value {
        Some(v) => d.insert(key.to_string(), ByteString(v.as_bytes().to_vec())),
        None => d.remove(key),
    };
    d
}

fn field(data: &BTreeMap<String, ByteString>, key: &str) -> String {
    String::from_utf8(data[key].0.clone()).unwrap()
}

#[test]
fn plan_decides_from_the_clock_and_what_the_secret_holds() {
    let ours = fresh(t0(), &id());
    let other_service = fresh(t0(), &ServiceIdentity::new("other", NS));
    let other_ca = fresh(t0(), &id());
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    type Case = (&'static str, Option<BTreeMap<String, ByteString>>, SystemTime, Plan);
    let cases: Vec<Case> = vec![
        ("no Secret", None, t0(), Plan::Create),
        ("an empty Secret", Some(BTreeMap::new()), t0(), Plan::Create),
        ("just issued", Some(ours.clone()), t0() + days(1), Plan::Keep),
        // Leaf lifetime 365 days (+5 min backdated): over a third left at day 240, not at 250.
        ("leaf with 125 days left", Some(ours.clone()), t0() + days(240), Plan::Keep),
        ("leaf with 115 days left", Some(ours.clone()), t0() + days(250), Plan::RenewLeaf),
        ("leaf expired", Some(ours.clone()), t0() + days(400), Plan::RenewLeaf),
        (
            "leaf for another Service",
            Some(with(&ours, TLS_CRT, Some(&field(&other_service, TLS_CRT)))),
            t0(),
            Plan::RenewLeaf,
        ),
        (
            "leaf for another Service, with its key",
            Some(with(
                &with(&ours, TLS_CRT, Some(&field(&other_service, TLS_CRT))),
                TLS_KEY,
                Some(&field(&other_service, TLS_KEY)),
            )),
            t0(),
            Plan::RenewLeaf,
        ),
        (
            "leaf and key from another CA",
            Some(with(
                &with(&ours, TLS_CRT, Some(&field(&other_ca, TLS_CRT))),
                TLS_KEY,
                Some(&field(&other_ca, TLS_KEY)),
            )),
            t0(),
            Plan::RenewLeaf,
        ),
        (
            "leaf key is another certificate's",
            Some(with(&ours, TLS_KEY, Some(&field(&other_ca, TLS_KEY)))),
            t0(),
            Plan::RenewLeaf,
        ),
        ("garbage tls.crt", Some(with(&ours, TLS_CRT, Some(garbage))), t0(), Plan::RenewLeaf),
        ("no tls.key", Some(with(&ours, TLS_KEY, None)), t0(), Plan::RenewLeaf),
        // CA lifetime 3650 days: under a year left from day 3286.
        ("CA with 366 days left", Some(ours.clone()), t0() + days(3284), Plan::RenewLeaf),
        ("CA with 364 days left", Some(ours.clone()), t0() + days(3286), Plan::NewCa),
        ("CA expired", Some(ours.clone()), t0() + days(3651), Plan::Create),
        ("garbage ca.crt", Some(with(&ours, CA_CRT, Some(garbage))), t0(), Plan::Create),
        ("ca.crt not PEM", Some(with(&ours, CA_CRT, Some("hello"))), t0(), Plan::Create),
        ("ca.crt is the leaf", Some(with(&ours, CA_CRT, Some(&field(&ours, TLS_CRT)))), t0(), Plan::Create),
        ("no ca.crt", Some(with(&ours, CA_CRT, None)), t0(), Plan::Create),
        // Without the CA's key a good leaf is kept, but a renewal needs a new CA.
        ("no ca.key, leaf good", Some(with(&ours, CA_KEY, None)), t0(), Plan::Keep),
        ("no ca.key, leaf expiring", Some(with(&ours, CA_KEY, None)), t0() + days(250), Plan::NewCa),
        (
            "ca.key of another CA, leaf expiring",
            Some(with(&ours, CA_KEY, Some(&field(&other_ca, CA_KEY)))),
            t0() + days(250),
            Plan::NewCa,
        ),
    ];
    for (what, data, now, want) in cases {
        let (got, why) = assess(now, &id(), data.as_ref());
        assert_eq!(got, want, "{what}: {why}");
        assert_eq!(plan(now, &id(), data.as_ref()), want, "{what}");
        assert_eq!(why.is_empty(), want == Plan::Keep, "{what}: a reason for every change ({why:?})");
    }
}

#[test]
fn every_plan_issues_a_secret_that_is_then_kept() {
    let stored = fresh(t0(), &id());
    for (plan, now) in
        [(Plan::Create, t0()), (Plan::RenewLeaf, t0() + days(250)), (Plan::NewCa, t0() + days(3286))]
    {
        let m = issue(now, &id(), plan, Some(&stored)).unwrap();
        assert_eq!(assess(now, &id(), Some(&m.to_data())), (Plan::Keep, String::new()), "{plan:?}");
    }
    assert_eq!(issue(t0(), &id(), Plan::Keep, Some(&stored)).unwrap(), Material::from_data(&stored).unwrap());
}

#[test]
fn the_serving_certificate_has_the_names_and_chains_to_the_ca() {
    let m = issue(t0(), &id(), Plan::Create, None).unwrap();
    let ca_der = &pem_certs(&m.ca_crt)[0];
    let leaf_der = &pem_certs(&m.tls_crt)[0];
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(ca.subject().to_string(), "CN=gantry-webhook-ca");
    assert_eq!(
        ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp(),
        (3650 * DAY + 300) as i64
    );
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), ca.subject());
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(
        leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp(),
        (365 * DAY + 300) as i64
    );
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected name {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "gantry-webhook",
            "gantry-webhook.gantry-system",
            "gantry-webhook.gantry-system.svc",
            "gantry-webhook.gantry-system.svc.cluster.local"
        ]
    );
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    // ECDSA P-256 keys.
    assert_eq!(leaf.public_key().algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
    assert!(m.tls_key.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn renewing_the_leaf_keeps_the_ca_and_a_new_ca_keeps_the_old_one_in_the_bundle() {
    let stored = fresh(t0(), &id());
    let renewed = issue(t0() + days(250), &id(), Plan::RenewLeaf, Some(&stored)).unwrap();
    assert_eq!(renewed.ca_crt, field(&stored, CA_CRT), "same caBundle");
    assert_eq!(renewed.ca_key.as_deref(), Some(field(&stored, CA_KEY).as_str()));
    assert_ne!(renewed.tls_crt, field(&stored, TLS_CRT));
    assert_ne!(renewed.tls_key, field(&stored, TLS_KEY));

    // Near the CA's end: new CA first, the old one after it.
    let rolled = issue(t0() + days(3286), &id(), Plan::NewCa, Some(&renewed.to_data())).unwrap();
    let bundle = pem_certs(&rolled.ca_crt);
    assert_eq!(bundle.len(), 2);
    assert_eq!(bundle[1], pem_certs(&renewed.ca_crt)[0], "the old CA stays trusted");
    assert_ne!(bundle[0], bundle[1]);
    assert_ne!(rolled.ca_key, renewed.ca_key);
    // The leaf is from the new CA, and a leaf-only renewal keeps the bundle as it is ...
    assert_eq!(assess(t0() + days(3287), &id(), Some(&rolled.to_data())).0, Plan::Keep);
    let again = issue(t0() + days(3287), &id(), Plan::RenewLeaf, Some(&rolled.to_data())).unwrap();
    assert_eq!(again.ca_crt, rolled.ca_crt);
    // ... until the old CA has expired: then it leaves the bundle.
    let later = issue(t0() + days(3651), &id(), Plan::RenewLeaf, Some(&rolled.to_data())).unwrap();
    assert_eq!(pem_certs(&later.ca_crt), vec![bundle[0].clone()]);
}

/// A TLS client that trusts only the certificates of `ca_pem`.
fn client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certs(ca_pem) {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Serves the files `write_files` writes, as `gantry webhook` does; the address.
async fn serve(material: &Material) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    assert!(write_files(dir.path(), material).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = Some(gantry_serve::TlsFiles::in_secret_dir(dir.path()));
    tokio::spawn(gantry_serve::serve(listener, axum::Router::new(), tls, std::future::pending()));
    (addr, dir)
}

async fn handshake(addr: std::net::SocketAddr, ca_pem: &str, name: &str) -> Result<(), std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    client(ca_pem).connect(ServerName::try_from(name.to_string()).unwrap(), tcp).await.map(|_| ())
}

#[tokio::test]
async fn a_client_that_trusts_only_ca_crt_accepts_the_served_certificate_for_every_name() {
    let m = issue(SystemTime::now(), &id(), Plan::Create, None).unwrap();
    let (addr, _dir) = serve(&m).await;
    for name in id().dns_names() {
        handshake(addr, &m.ca_crt, &name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = handshake(addr, &m.ca_crt, "gantry-webhook.default.svc").await.unwrap_err();
    assert!(wrong.to_string().contains("not valid for name"), "{wrong}");
    let other = issue(SystemTime::now(), &id(), Plan::Create, None).unwrap();
    let untrusted = handshake(addr, &other.ca_crt, "gantry-webhook.gantry-system.svc").await.unwrap_err();
    // Another CA of the same name: its signature does not verify.
    assert!(untrusted.to_string().contains("invalid peer certificate: BadSignature"), "{untrusted}");
}

#[tokio::test]
async fn during_a_ca_rollover_the_bundle_trusts_the_old_and_the_new_certificates() {
    let now = SystemTime::now();
    // A CA made 3286 days ago (364 days left) whose leaf was renewed yesterday.
    let old = fresh(now - days(3286), &id());
    let old = issue(now - days(1), &id(), Plan::RenewLeaf, Some(&old)).unwrap();
    assert_eq!(plan(now, &id(), Some(&old.to_data())), Plan::NewCa);
    let new = issue(now, &id(), Plan::NewCa, Some(&old.to_data())).unwrap();
    let (old_server, _d1) = serve(&old).await;
    let (new_server, _d2) = serve(&new).await;
    // A replica still serving the old CA's certificate, and one serving the new: both trusted.
    handshake(old_server, &new.ca_crt, "gantry-webhook.gantry-system.svc").await.unwrap();
    handshake(new_server, &new.ca_crt, "gantry-webhook.gantry-system.svc").await.unwrap();
    // The old bundle alone does not trust the new certificate: why it is written only once the
    // caBundle holds the new CA.
    assert!(handshake(new_server, &old.ca_crt, "gantry-webhook.gantry-system.svc").await.is_err());
}

#[test]
fn the_ca_bundle_goes_only_to_the_webhooks_that_call_our_service() {
    let service = |name: &str, ns: &str| WebhookClientConfig {
        service: Some(ServiceReference {
            name: name.into(),
            namespace: ns.into(),
            path: Some("/mutate".into()),
            port: Some(443),
        }),
        ..WebhookClientConfig::default()
    };
    let mut configs = [
        service("gantry-webhook", NS),
        service("gantry-webhook", "other-ns"),
        service("other", NS),
        WebhookClientConfig { url: Some("https://example.com".into()), ..WebhookClientConfig::default() },
        service("gantry-webhook", NS),
    ];
    assert_eq!(set_ca_bundle(configs.iter_mut(), &id(), b"CA"), (2, true));
    let bundles: Vec<Option<&[u8]>> =
        configs.iter().map(|c| c.ca_bundle.as_ref().map(|b| b.0.as_slice())).collect();
    assert_eq!(bundles, [Some(&b"CA"[..]), None, None, None, Some(&b"CA"[..])]);
    assert_eq!(
        set_ca_bundle(configs.iter_mut(), &id(), b"CA"),
        (2, false),
        "nothing to change the second time"
    );
    assert_eq!(set_ca_bundle(configs.iter_mut(), &ServiceIdentity::new("nobody", NS), b"CA"), (0, false));
}

#[test]
fn backoff_doubles_from_one_second_to_five_minutes() {
    let mut wait = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..12 {
        wait = next_backoff(wait);
        seen.push(wait.as_secs());
    }
    assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(BACKOFF_MAX, Duration::from_secs(300));
}

#[test]
fn ca_bundle_for_reads_kind_and_name() {
    assert_eq!(
        "mutating:gantry-webhook".parse::<ConfigRef>().unwrap(),
        ConfigRef { kind: ConfigKind::Mutating, name: "gantry-webhook".into() }
    );
    assert_eq!(
        "validating:a.b".parse::<ConfigRef>().unwrap(),
        ConfigRef { kind: ConfigKind::Validating, name: "a.b".into() }
    );
    let err = "gantry-webhook".parse::<ConfigRef>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"gantry-webhook\" is not KIND:NAME; write mutating:NAME or validating:NAME"
    );
    let err = "Mutating:x".parse::<ConfigRef>().unwrap_err();
    assert!(matches!(&err, ConfigRefError::UnknownKind { kind, .. } if kind == "Mutating"), "{err:?}");
    assert!(err.to_string().starts_with("unknown kind \"Mutating\" in \"Mutating:x\"; write mutating:NAME"));
    let err = "mutating:Bad_Name".parse::<ConfigRef>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"Bad_Name\" in \"mutating:Bad_Name\" is not a valid object name; use lower-case letters, digits, '-' and '.'"
    );
}

#[test]
fn files_are_replaced_whole_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let a = issue(t0(), &id(), Plan::Create, None).unwrap();
    let b = issue(t0(), &id(), Plan::Create, None).unwrap();
    assert!(write_files(dir.path(), &a).unwrap());
    assert!(!write_files(dir.path(), &a).unwrap(), "the same material changes nothing");
    assert!(write_files(dir.path(), &b).unwrap());
    assert_eq!(std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(), b.tls_crt);
    assert_eq!(std::fs::read_to_string(dir.path().join("tls.key")).unwrap(), b.tls_key);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["tls.crt", "tls.key"], "no temporary file left");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("tls.key")).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let err = write_files(&dir.path().join("missing/deeper"), &a).unwrap_err();
    assert!(matches!(err, KeeperError::WriteFile { .. }), "{err:?}");
    assert!(err.to_string().contains("--tls-dir must be a folder this user can write"), "{err}");
    // The I/O error is kept as the cause, not only as text.
    let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(cause.map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound));
}

// ---- Against a fake API server ----

/// One call the webhook made: method, path, JSON body.
type Call = (Method, String, Value);

/// Run by the fake API server on each request before it answers (to simulate another writer).
type Before = Box<dyn FnMut(&Method, &str, &mut HashMap<String, Value>) + Send>;

/// What the fake API server stores, by object path, and every call it answered.
#[derive(Default)]
struct Cluster {
    objects: HashMap<String, Value>,
    calls: Vec<Call>,
    version: u64,
    before: Option<Before>,
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code.as_u16(), "message": reason}),
    )
}

impl Cluster {
    fn answer(&mut self, method: &Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.calls.push((method.clone(), path.to_string(), body.clone()));
        if let Some(before) = &mut self.before {
            before(method, path, &mut self.objects);
        }
        self.version += 1;
        let version = self.version.to_string();
        match *method {
            Method::GET => match self.objects.get(path) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST => {
                let path = format!("{path}/{}", body["metadata"]["name"].as_str().unwrap());
                if self.objects.contains_key(&path) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                let mut o = body;
                o["metadata"]["resourceVersion"] = json!(version);
                self.objects.insert(path, o.clone());
                (StatusCode::CREATED, o)
            }
            Method::PUT => {
                let Some(stored) = self.objects.get(path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if body["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                let mut o = body;
                o["metadata"]["resourceVersion"] = json!(version);
                self.objects.insert(path.to_string(), o.clone());
                (StatusCode::OK, o)
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }

    fn writes(&self) -> Vec<(Method, String)> {
        self.calls.iter().filter(|c| c.0 != Method::GET).map(|c| (c.0.clone(), c.1.clone())).collect()
    }

    fn paths(&self) -> Vec<String> {
        self.calls.iter().map(|c| format!("{} {}", c.0, c.1)).collect()
    }
}

/// A client whose API server is `cluster`.
fn fake_api(cluster: Arc<Mutex<Cluster>>) -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let (code, reply) = cluster.lock().unwrap().answer(&method, &path, body);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    Client::new(service, "default")
}

fn secret(data: &BTreeMap<String, ByteString>, version: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": SECRET, "namespace": NS, "resourceVersion": version}, "data": data})
}

fn webhook(name: &str, service: &str, ca_bundle: Option<&str>) -> Value {
    let mut client_config =
        json!({"service": {"name": service, "namespace": NS, "path": "/mutate", "port": 443}});
    if let Some(b) = ca_bundle {
        client_config["caBundle"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
    }
    json!({"name": name, "clientConfig": client_config, "sideEffects": "None", "admissionReviewVersions": ["v1"]})
}

fn configuration(kind: &str, webhooks: Vec<Value>) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": "gantry-webhook", "resourceVersion": "1"}, "webhooks": webhooks})
}

fn ca_bundle_of(config: &Value, webhook: usize) -> Option<String> {
    config["webhooks"][webhook]["clientConfig"]["caBundle"]
        .as_str()
        .map(|b| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap())
}

fn data_of(secret: &Value) -> BTreeMap<String, ByteString> {
    serde_json::from_value(secret["data"].clone()).unwrap()
}

fn keeper(cluster: &Arc<Mutex<Cluster>>, dir: &std::path::Path, configs: &[&str]) -> SelfSigned {
    let config = Config {
        identity: id(),
        secret: SECRET.into(),
        dir: dir.to_path_buf(),
        configs: configs.iter().map(|c| c.parse().unwrap()).collect(),
        every: Duration::from_secs(3600),
    };
    SelfSigned::new(fake_api(cluster.clone()), config)
}

fn on_disk(dir: &std::path::Path) -> (String, String) {
    (
        std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
        std::fs::read_to_string(dir.join("tls.key")).unwrap(),
    )
}

#[tokio::test]
async fn without_a_secret_it_creates_one_and_sets_the_ca_bundles() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let mut c = cluster.lock().unwrap();
        c.objects.insert(
            MUTATING.into(),
            configuration(
                "MutatingWebhookConfiguration",
                vec![
                    webhook("mutate.gantry.dev", "gantry-webhook", None),
                    webhook("other.example.com", "other", Some("THEIRS")),
                ],
            ),
        );
        c.objects.insert(
            VALIDATING.into(),
            configuration(
                "ValidatingWebhookConfiguration",
                vec![webhook("validate.gantry.dev", "gantry-webhook", Some("STALE"))],
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["mutating:gantry-webhook", "validating:gantry-webhook"]);
    keeper.step(t0()).await.unwrap();

    let c = cluster.lock().unwrap();
    assert_eq!(
        c.paths(),
        [
            format!("GET {SECRET_PATH}"),
            format!("POST {SECRETS}"),
            format!("GET {MUTATING}"),
            format!("PUT {MUTATING}"),
            format!("GET {VALIDATING}"),
            format!("PUT {VALIDATING}"),
        ]
    );
    let created = &c.calls[1].2;
    assert_eq!(created["type"], "kubernetes.io/tls");
    assert_eq!(created["metadata"]["name"], SECRET);
    let data = data_of(created);
    assert_eq!(data.keys().collect::<Vec<_>>(), [CA_CRT, CA_KEY, TLS_CRT, TLS_KEY]);
    assert_eq!(plan(t0(), &id(), Some(&data)), Plan::Keep, "what was stored is good");
    let ca = field(&data, CA_CRT);
    let mutating = &c.objects[MUTATING];
    assert_eq!(ca_bundle_of(mutating, 0).as_deref(), Some(ca.as_str()));
    assert_eq!(
        ca_bundle_of(mutating, 1).as_deref(),
        Some("THEIRS"),
        "another service's webhook is left alone"
    );
    assert_eq!(ca_bundle_of(&c.objects[VALIDATING], 0).as_deref(), Some(ca.as_str()));
    assert_eq!(on_disk(dir.path()), (field(&data, TLS_CRT), field(&data, TLS_KEY)));
    assert!(keeper.ready());
}

#[tokio::test]
async fn a_valid_secret_and_ca_bundle_mean_no_writes() {
    let stored = fresh(t0(), &id());
    let ca = field(&stored, CA_CRT);
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let mut c = cluster.lock().unwrap();
        c.objects.insert(SECRET_PATH.into(), secret(&stored, "5"));
        c.objects.insert(
            MUTATING.into(),
            configuration(
                "MutatingWebhookConfiguration",
                vec![webhook("mutate.gantry.dev", "gantry-webhook", Some(&ca))],
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["mutating:gantry-webhook"]);
    keeper.step(t0() + days(100)).await.unwrap();
    keeper.step(t0() + days(200)).await.unwrap();
    let c = cluster.lock().unwrap();
    assert_eq!(c.writes(), [], "{:?}", c.paths());
    assert_eq!(c.calls.len(), 4, "a read of the Secret and the configuration per step");
    assert_eq!(on_disk(dir.path()), (field(&stored, TLS_CRT), field(&stored, TLS_KEY)));
}

#[tokio::test]
async fn losing_the_create_race_uses_the_winners_certificate() {
    let winner = fresh(t0(), &id());
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let theirs = secret(&winner, "9");
        // Another replica creates the Secret just before this one's POST arrives.
        cluster.lock().unwrap().before = Some(Box::new(move |method, _, objects| {
            if *method == Method::POST {
                objects.insert(SECRET_PATH.into(), theirs.clone());
            }
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &[]);
    keeper.step(t0()).await.unwrap();
    let c = cluster.lock().unwrap();
    assert_eq!(
        c.paths(),
        [format!("GET {SECRET_PATH}"), format!("POST {SECRETS}"), format!("GET {SECRET_PATH}")]
    );
    assert_eq!(c.objects[SECRET_PATH], secret(&winner, "9"), "the winner's Secret is not overwritten");
    assert_eq!(
        on_disk(dir.path()),
        (field(&winner, TLS_CRT), field(&winner, TLS_KEY)),
        "this replica serves the winner's certificate"
    );
}

#[tokio::test]
async fn an_expiring_leaf_is_renewed_at_the_version_read_with_the_same_ca() {
    let stored = fresh(t0(), &id());
    let ca = field(&stored, CA_CRT);
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let mut c = cluster.lock().unwrap();
        let mut s = secret(&stored, "7");
        s["metadata"]["labels"] = json!({"app.kubernetes.io/part-of": "gantry"});
        c.objects.insert(SECRET_PATH.into(), s);
        c.objects.insert(
            MUTATING.into(),
            configuration(
                "MutatingWebhookConfiguration",
                vec![webhook("mutate.gantry.dev", "gantry-webhook", Some(&ca))],
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["mutating:gantry-webhook"]);
    keeper.step(t0() + days(250)).await.unwrap();
    let c = cluster.lock().unwrap();
    assert_eq!(
        c.paths(),
        [format!("GET {SECRET_PATH}"), format!("PUT {SECRET_PATH}"), format!("GET {MUTATING}")],
        "the caBundle is already right"
    );
    let put = &c.calls[1].2;
    assert_eq!(put["metadata"]["resourceVersion"], "7");
    assert_eq!(
        put["metadata"]["labels"]["app.kubernetes.io/part-of"], "gantry",
        "the rest of the Secret stays"
    );
    let data = data_of(put);
    assert_eq!(field(&data, CA_CRT), ca);
    assert_eq!(field(&data, CA_KEY), field(&stored, CA_KEY));
    assert_ne!(field(&data, TLS_CRT), field(&stored, TLS_CRT));
    assert_eq!(plan(t0() + days(250), &id(), Some(&data)), Plan::Keep);
    assert_eq!(on_disk(dir.path()), (field(&data, TLS_CRT), field(&data, TLS_KEY)));
}

#[tokio::test]
async fn a_configuration_updated_meanwhile_is_read_again() {
    let stored = fresh(t0(), &id());
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    {
        let mut c = cluster.lock().unwrap();
        c.objects.insert(SECRET_PATH.into(), secret(&stored, "5"));
        c.objects.insert(
            VALIDATING.into(),
            configuration(
                "ValidatingWebhookConfiguration",
                vec![webhook("validate.gantry.dev", "gantry-webhook", None)],
            ),
        );
        // Helm upgrades the configuration between this replica's read and its write, once.
        let mut once = true;
        c.before = Some(Box::new(move |method, path, objects| {
            if *method == Method::PUT && path == VALIDATING && std::mem::take(&mut once) {
                let o = objects.get_mut(VALIDATING).unwrap();
                o["metadata"]["resourceVersion"] = json!("2");
                o["metadata"]["labels"] = json!({"helm.sh/chart": "gantry-0.2.0"});
            }
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["validating:gantry-webhook"]);
    keeper.step(t0()).await.unwrap();
    let c = cluster.lock().unwrap();
    assert_eq!(
        c.paths(),
        [
            format!("GET {SECRET_PATH}"),
            format!("GET {VALIDATING}"),
            format!("PUT {VALIDATING}"),
            format!("GET {VALIDATING}"),
            format!("PUT {VALIDATING}")
        ]
    );
    let config = &c.objects[VALIDATING];
    assert_eq!(ca_bundle_of(config, 0), Some(field(&stored, CA_CRT)));
    assert_eq!(config["metadata"]["labels"]["helm.sh/chart"], "gantry-0.2.0", "Helm's change is kept");
}

#[tokio::test]
async fn a_configuration_created_later_gets_its_ca_bundle_then() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["mutating:gantry-webhook"]);
    let err = keeper.step(t0()).await.unwrap_err();
    assert!(matches!(err, KeeperError::NoConfiguration { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("MutatingWebhookConfiguration gantry-webhook does not exist (yet)"),
        "{err}"
    );
    assert!(keeper.ready(), "the certificate is served meanwhile");
    let served = on_disk(dir.path());

    cluster.lock().unwrap().objects.insert(
        MUTATING.into(),
        configuration(
            "MutatingWebhookConfiguration",
            vec![webhook("mutate.gantry.dev", "gantry-webhook", None)],
        ),
    );
    keeper.step(t0() + Duration::from_secs(1)).await.unwrap();
    let c = cluster.lock().unwrap();
    let ca = field(&data_of(&c.objects[SECRET_PATH]), CA_CRT);
    assert_eq!(ca_bundle_of(&c.objects[MUTATING], 0), Some(ca));
    assert_eq!(on_disk(dir.path()), served);
    assert_eq!(c.writes(), [(Method::POST, SECRETS.to_string()), (Method::PUT, MUTATING.to_string())]);
}

#[tokio::test]
async fn a_new_ca_is_served_only_once_the_ca_bundle_holds_it() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    cluster.lock().unwrap().objects.insert(
        MUTATING.into(),
        configuration(
            "MutatingWebhookConfiguration",
            vec![webhook("mutate.gantry.dev", "gantry-webhook", None)],
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut keeper = keeper(&cluster, dir.path(), &["mutating:gantry-webhook"]);
    keeper.step(t0()).await.unwrap();
    let first = on_disk(dir.path());

    // Near the CA's end the configuration cannot be read (deleted, or RBAC broken).
    let saved = cluster.lock().unwrap().objects.remove(MUTATING).unwrap();
    let err = keeper.step(t0() + days(3286)).await.unwrap_err().to_string();
    assert!(err.contains("held back until the caBundles are set"), "{err}");
    assert_eq!(on_disk(dir.path()), first, "the old certificate is still served");
    let rolled = data_of(&cluster.lock().unwrap().objects[SECRET_PATH]);
    assert_eq!(pem_certs(&field(&rolled, CA_CRT)).len(), 2, "new CA stored, old kept in the bundle");

    cluster.lock().unwrap().objects.insert(MUTATING.into(), saved);
    keeper.step(t0() + days(3286) + Duration::from_secs(60)).await.unwrap();
    assert_eq!(ca_bundle_of(&cluster.lock().unwrap().objects[MUTATING], 0), Some(field(&rolled, CA_CRT)));
    assert_eq!(on_disk(dir.path()), (field(&rolled, TLS_CRT), field(&rolled, TLS_KEY)));
}

#[tokio::test]
async fn a_forbidden_read_names_the_missing_rule() {
    // Answer 403 to everything.
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            let (code, body) = status(StatusCode::FORBIDDEN, "Forbidden");
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        identity: id(),
        secret: SECRET.into(),
        dir: dir.path().into(),
        configs: vec![],
        every: Duration::from_secs(3600),
    };
    let mut keeper = SelfSigned::new(Client::new(service, "default"), config);
    let err = keeper.step(t0()).await.unwrap_err();
    let KeeperError::ReadSecret { source: kube::Error::Api(status), .. } = &err else {
        panic!("not the Secret's read, with the API server's answer as its cause: {err:?}")
    };
    assert!(status.is_forbidden(), "{status:?}");
    let err = err.to_string();
    assert!(
        err.contains("cannot read Secret gantry-system/gantry-webhook-tls")
            && err.contains("get on secrets (resourceNames [gantry-webhook-tls]) in namespace gantry-system"),
        "{err}"
    );
    assert!(!keeper.ready());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
