//! The webhook's own TLS certificate when cert-manager is not used (`gantry webhook
//! --self-signed-tls`): a private CA and a serving certificate kept in a Secret that every replica
//! shares, the CA put into the `caBundle` of the webhook configurations, and both renewed before
//! they expire.
//!
//! At start, and then every [`CHECK_EVERY`], [`SelfSigned::step`]:
//!
//! 1. reads the Secret and decides with [`plan`] (a pure function of the clock and the Secret's
//!    data) whether to keep what it holds, renew only the serving certificate (same CA, so the
//!    `caBundle` does not change), start a new CA (keeping the old one in `ca.crt` while it is
//!    valid, so that no replica still serving a certificate of the old CA is refused) or start
//!    afresh; [`issue`] makes the new material and [`ensure_secret`] stores it (create, or replace
//!    at the `resourceVersion` read). When another replica wrote first (409 Conflict), the Secret
//!    is read again and what that replica stored is used;
//! 2. sets `clientConfig.caBundle` to `ca.crt` on every webhook of each configuration named by
//!    `--ca-bundle-for` that calls this service ([`patch_ca_bundle`]); a configuration that does
//!    not exist yet (Helm may create it after the pod starts) is logged and retried;
//! 3. writes `tls.crt` and `tls.key` into the serving folder ([`write_files`]; each file written
//!    beside and renamed into place), from which `gantry_serve::CertResolver` reloads them while
//!    serving. A certificate from a CA the webhook configurations do not trust yet is written only
//!    once step 2 has succeeded (except the first, when nothing is served yet).
//!
//! A failed step is retried after 1 s, doubling to 5 min ([`next_backoff`]). The Secret holds
//! `ca.crt` (the current CA first, then any older one still valid), `ca.key` (the current CA's
//! key, needed to renew the serving certificate), `tls.crt` and `tls.key`; it is of type
//! `kubernetes.io/tls`, so it can also be mounted as a Secret volume.
//!
//! # RBAC
//!
//! What the webhook's service account needs (also as the table [`RBAC`]):
//!
//! - `""` `secrets`: `get` ([`ensure_secret`]: read the stored certificate), `update`
//!   ([`ensure_secret`]: store a renewed one at the `resourceVersion` read), both limited by
//!   `resourceNames` to the Secret (`--tls-secret`); `create` ([`ensure_secret`]: the first
//!   time), which `resourceNames` cannot limit (the name of an object being created is not known
//!   to the authorizer). A Role in the webhook's namespace.
//! - `admissionregistration.k8s.io` `mutatingwebhookconfigurations` and
//!   `validatingwebhookconfigurations`: `get` and `update` ([`patch_ca_bundle`]: set the
//!   `caBundle`), limited by `resourceNames` to the configurations named by `--ca-bundle-for`. A
//!   ClusterRole (the configurations are cluster-scoped).

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::pem::Pem;

/// The rules the webhook's service account needs for this module: (API group, resource, verbs).
/// `get` and `update` are limited by `resourceNames` (the Secret, the configurations); `create`
/// on secrets cannot be. See the [module documentation](self) for which function uses each.
pub const RBAC: &[(&str, &str, &[&str])] = &[
    ("", "secrets", &["get", "create", "update"]),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", &["get", "update"]),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", &["get", "update"]),
];

/// How often the Secret and the `caBundle`s are checked once serving.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// Lifetime of a new CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(3650 * DAY);
/// Lifetime of a new serving certificate (shorter when the CA expires sooner).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// A CA with less than this left is replaced (its serving certificates would outlive it).
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * DAY);
/// First wait after a failed step; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failed step.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Common name of the CA.
pub const CA_COMMON_NAME: &str = "gantry-webhook-ca";

/// The keys of the Secret's data.
pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

const DAY: u64 = 24 * 3600;
/// New certificates start this much before now, for clocks a little behind ours.
const BACKDATE: i64 = 300;
/// A certificate that starts more than this after now is not trusted to be ours.
const SKEW: i64 = 3600;
/// Tries of a read-modify-write that keeps meeting 409 Conflict.
const TRIES: usize = 5;

/// The Service the webhook is reached through (name and namespace): the identity its serving
/// certificate proves, so the DNS names the certificate must carry. Not to be confused with a
/// workload's identity (`gantry_api::identity`), which says which gang a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    pub service: String,
    pub namespace: String,
}

impl ServiceIdentity {
    pub fn new(service: impl Into<String>, namespace: impl Into<String>) -> ServiceIdentity {
        ServiceIdentity { service: service.into(), namespace: namespace.into() }
    }

    /// The serving certificate's DNS names: NAME, NAME.NS, NAME.NS.svc, NAME.NS.svc.cluster.local.
    pub fn dns_names(&self) -> Vec<String> {
        let (s, ns) = (&self.service, &self.namespace);
        vec![s.clone(), format!("{s}.{ns}"), format!("{s}.{ns}.svc"), format!("{s}.{ns}.svc.cluster.local")]
    }
}

/// Which kind of webhook configuration: mutating or validating. Named apart from the tenancy's
/// workload `Kind` (training, notebook, ...), which is another thing altogether.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Mutating,
    Validating,
}

/// A webhook configuration whose `caBundle` the webhook keeps: `--ca-bundle-for KIND:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
}

/// Why a `--ca-bundle-for` value is not a [`ConfigRef`]. Each message quotes the value given
/// (`arg`) and says how to write it, since a person typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefError {
    /// No `:` between the kind and the name.
    #[error("{arg:?} is not KIND:NAME; write mutating:NAME or validating:NAME")]
    NotKindName { arg: String },
    /// A kind other than `mutating` or `validating`.
    #[error(
        "unknown kind {kind:?} in {arg:?}; write mutating:NAME (a MutatingWebhookConfiguration) or validating:NAME (a ValidatingWebhookConfiguration)"
    )]
    UnknownKind { kind: String, arg: String },
    /// A name Kubernetes would refuse for an object.
    #[error("{name:?} in {arg:?} is not a valid object name; use lower-case letters, digits, '-' and '.'")]
    BadName { name: String, arg: String },
}

impl FromStr for ConfigRef {
    type Err = ConfigRefError;

    /// `mutating:NAME` or `validating:NAME`.
    fn from_str(s: &str) -> Result<ConfigRef, ConfigRefError> {
        let arg = || s.to_string();
        let (kind, name) = s.split_once(':').ok_or_else(|| ConfigRefError::NotKindName { arg: arg() })?;
        let kind = match kind {
            "mutating" => ConfigKind::Mutating,
            "validating" => ConfigKind::Validating,
            other => return Err(ConfigRefError::UnknownKind { kind: other.to_string(), arg: arg() }),
        };
        if !is_dns_subdomain(name) {
            return Err(ConfigRefError::BadName { name: name.to_string(), arg: arg() });
        }
        Ok(ConfigRef { kind, name: name.to_string() })
    }
}

impl fmt::Display for ConfigRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ConfigKind::Mutating => write!(f, "MutatingWebhookConfiguration {}", self.name),
            ConfigKind::Validating => write!(f, "ValidatingWebhookConfiguration {}", self.name),
        }
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): what `--tls-secret` and the configuration names
/// must be.
pub fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Service name (RFC 1035 label): what `--service` must be.
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63
        && !name.contains('.')
        && is_dns_subdomain(name)
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// What to do with what the Secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// It is good: the CA has over a year left, the serving certificate is for our names, signed
    /// by the CA and has more than a third of its lifetime left.
    Keep,
    /// A new serving certificate from the same CA (the `caBundle` stays).
    RenewLeaf,
    /// A new CA (the old one has under a year left, or its key is missing) and serving
    /// certificate; `ca.crt` keeps the old CA after the new one while it is valid.
    NewCa,
    /// Nothing usable (no Secret, no valid CA): a new CA and serving certificate.
    Create,
}

/// The PEM texts the Secret holds and the webhook serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The CA bundle: the current CA first, then older ones still valid.
    pub ca_crt: String,
    /// The current CA's private key (absent only in a kept Secret that was written without it).
    pub ca_key: Option<String>,
    /// The serving certificate.
    pub tls_crt: String,
    /// Its private key.
    pub tls_key: String,
}

impl Material {
    /// The material in a Secret's data, if `ca.crt`, `tls.crt` and `tls.key` are there as text.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Option<Material> {
        Some(Material {
            ca_crt: text(data, CA_CRT)?,
            ca_key: text(data, CA_KEY),
            tls_crt: text(data, TLS_CRT)?,
            tls_key: text(data, TLS_KEY)?,
        })
    }

    /// The Secret's data for this material.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::new();
        data.insert(CA_CRT.to_string(), ByteString(self.ca_crt.as_bytes().to_vec()));
        if let Some(key) = &self.ca_key {
            data.insert(CA_KEY.to_string(), ByteString(key.as_bytes().to_vec()));
        }
        data.insert(TLS_CRT.to_string(), ByteString(self.tls_crt.as_bytes().to_vec()));
        data.insert(TLS_KEY.to_string(), ByteString(self.tls_key.as_bytes().to_vec()));
        data
    }
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// What [`assess`] decides, without the reason.
pub fn plan(now: SystemTime, id: &ServiceIdentity, data: Option<&BTreeMap<String, ByteString>>) -> Plan {
    assess(now, id, data).0
}

/// What to do with a Secret's data (`None`: no Secret) at `now`, and why, for the log.
pub fn assess(
    now: SystemTime,
    id: &ServiceIdentity,
    data: Option<&BTreeMap<String, ByteString>>,
) -> (Plan, String) {
    let now = unix(now);
    let Some(data) = data else { return (Plan::Create, "there is no Secret yet".into()) };
    let Some(ca_pem) = data.get(CA_CRT) else { return (Plan::Create, format!("the Secret has no {CA_CRT}")) };
    let bundle = match parse_certs(&ca_pem.0) {
        Ok(b) => b,
        Err(e) => return (Plan::Create, format!("its {CA_CRT} cannot be used ({e})")),
    };
    let ca = &bundle[0];
    if !ca.is_ca {
        return (Plan::Create, format!("the first certificate of its {CA_CRT} is not a CA"));
    }
    if ca.not_after <= now {
        return (Plan::Create, format!("its CA expired on {}", date(ca.not_after)));
    }
    if ca.not_before > now + SKEW {
        return (
            Plan::Create,
            format!("its CA is not valid before {} (check the clocks)", date(ca.not_before)),
        );
    }
    if ca.not_after - now < secs(CA_RENEW_BEFORE) {
        return (Plan::NewCa, format!("its CA expires on {}, in under a year", date(ca.not_after)));
    }
    let signer = data.get(CA_KEY).and_then(|k| key_of(&k.0, ca)).is_some();
    match leaf_problem(now, id, data, ca) {
        None => (Plan::Keep, String::new()),
        Some(why) if signer => (Plan::RenewLeaf, why),
        Some(why) => (
            Plan::NewCa,
            format!("{why}, and its {CA_KEY} (to sign a new one with) is missing or not the CA's key"),
        ),
    }
}

/// Why the serving certificate in `data` must be renewed, if it must.
fn leaf_problem(
    now: i64,
    id: &ServiceIdentity,
    data: &BTreeMap<String, ByteString>,
    ca: &Cert,
) -> Option<String> {
    let Some(leaf) = data.get(TLS_CRT).and_then(|p| parse_certs(&p.0).ok()).map(|mut v| v.swap_remove(0))
    else {
        return Some(format!("its {TLS_CRT} is missing or not a PEM certificate"));
    };
    if data.get(TLS_KEY).and_then(|k| key_of(&k.0, &leaf)).is_none() {
        return Some(format!("its {TLS_KEY} is missing or not the key of its {TLS_CRT}"));
    }
    if !signed_by(&leaf, ca) {
        return Some(format!("its {TLS_CRT} is not signed by the CA of its {CA_CRT}"));
    }
    let mut want = id.dns_names();
    want.sort();
    let mut have = leaf.dns_names.clone();
    have.sort();
    if have != want {
        return Some(format!("its {TLS_CRT} is for {}, not {}", have.join(", "), want.join(", ")));
    }
    if leaf.not_before > now + SKEW {
        return Some(format!(
            "its {TLS_CRT} is not valid before {} (check the clocks)",
            date(leaf.not_before)
        ));
    }
    // More than a third of its lifetime left, or renew.
    if (leaf.not_after - now).saturating_mul(3) <= leaf.not_after - leaf.not_before {
        return Some(format!(
            "its {TLS_CRT} expires on {}, within the last third of its lifetime",
            date(leaf.not_after)
        ));
    }
    None
}

/// Why certificates could not be made ([`issue`]). Making them needs only the clock, a random
/// source and, to renew the serving certificate alone, the CA kept in the Secret.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// [`Plan::Keep`] for data that does not hold the material.
    #[error("the Secret has no {CA_CRT}, {TLS_CRT} and {TLS_KEY} to keep")]
    NothingToKeep,
    /// [`Plan::RenewLeaf`] without a Secret.
    #[error("there is no Secret whose CA could sign a new certificate")]
    NoSecret,
    /// [`Plan::RenewLeaf`] with a `ca.crt` that is not a PEM certificate.
    #[error("the Secret's {CA_CRT} is not a certificate")]
    CaNotCertificate,
    /// [`Plan::RenewLeaf`] without `ca.key`.
    #[error("the Secret has no {CA_KEY} to sign a new certificate with")]
    NoCaKey,
    /// [`Plan::RenewLeaf`] with a `ca.key` that does not match the CA.
    #[error("the Secret's {CA_KEY} is not the key of its CA")]
    WrongCaKey,
    /// The CA kept in the Secret cannot be used to sign.
    #[error("cannot sign with the Secret's CA: {source}")]
    Signer {
        #[source]
        source: rcgen::Error,
    },
    /// No new key pair could be made.
    #[error("cannot generate an ECDSA P-256 key: {source}")]
    Key {
        #[source]
        source: rcgen::Error,
    },
    /// The new CA could not be signed.
    #[error("cannot make the CA certificate: {source}")]
    CaCertificate {
        #[source]
        source: rcgen::Error,
    },
    /// The Service's names are not valid DNS names (`--service`).
    #[error("--service {service:?} makes invalid DNS names: {source}")]
    DnsNames {
        service: String,
        #[source]
        source: rcgen::Error,
    },
    /// The new serving certificate could not be signed.
    #[error("cannot make the serving certificate: {source}")]
    ServingCertificate {
        #[source]
        source: rcgen::Error,
    },
    /// The clock gives a time a certificate cannot hold.
    #[error("the clock reads an impossible time: {source}")]
    Clock {
        #[source]
        source: time::error::ComponentRange,
    },
}

/// The material for `plan` at `now`: for [`Plan::Keep`] what `data` holds; otherwise new
/// certificates (new keys), with the CA of `data` for [`Plan::RenewLeaf`] and its CAs still valid
/// after the new one in `ca.crt` for [`Plan::NewCa`].
pub fn issue(
    now: SystemTime,
    id: &ServiceIdentity,
    plan: Plan,
    data: Option<&BTreeMap<String, ByteString>>,
) -> Result<Material, MaterialError> {
    let t = unix(now);
    // The old bundle's certificates still valid at `now`, re-encoded as this module writes them.
    let old_bundle = || -> String {
        let certs = data.and_then(|d| d.get(CA_CRT)).and_then(|p| parse_certs(&p.0).ok()).unwrap_or_default();
        certs.iter().filter(|c| c.not_after > t).map(|c| pem_encode("CERTIFICATE", &c.der)).collect()
    };
    match plan {
        Plan::Keep => data.and_then(Material::from_data).ok_or(MaterialError::NothingToKeep),
        Plan::Create | Plan::NewCa => {
            let key = new_key()?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, CA_COMMON_NAME);
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = odt(t - BACKDATE)?;
            let ca_not_after = t + secs(CA_VALIDITY);
            params.not_after = odt(ca_not_after)?;
            let ca = params.self_signed(&key).map_err(|source| MaterialError::CaCertificate { source })?;
            let ca_der = ca.der().to_vec();
            let ca_key = key.serialize_pem();
            let issuer = Issuer::new(params, key);
            let (tls_crt, tls_key) = new_leaf(t, id, &issuer, ca_not_after)?;
            let mut ca_crt = pem_encode("CERTIFICATE", &ca_der);
            if plan == Plan::NewCa {
                ca_crt.push_str(&old_bundle());
            }
            Ok(Material { ca_crt, ca_key: Some(ca_key), tls_crt, tls_key })
        }
        Plan::RenewLeaf => {
            let data = data.ok_or(MaterialError::NoSecret)?;
            let ca = data
                .get(CA_CRT)
                .and_then(|p| parse_certs(&p.0).ok())
                .map(|mut v| v.swap_remove(0))
                .ok_or(MaterialError::CaNotCertificate)?;
            let key_pem = text(data, CA_KEY).ok_or(MaterialError::NoCaKey)?;
            let key = key_of(key_pem.as_bytes(), &ca).ok_or(MaterialError::WrongCaKey)?;
            let issuer = Issuer::from_ca_cert_der(&ca.der.as_slice().into(), key)
                .map_err(|source| MaterialError::Signer { source })?;
            let (tls_crt, tls_key) = new_leaf(t, id, &issuer, ca.not_after)?;
            Ok(Material { ca_crt: old_bundle(), ca_key: Some(key_pem), tls_crt, tls_key })
        }
    }
}

fn new_key() -> Result<KeyPair, MaterialError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| MaterialError::Key { source })
}

/// A serving certificate for `id`'s names from `issuer`, ending no later than the CA.
fn new_leaf(
    now: i64,
    id: &ServiceIdentity,
    issuer: &Issuer<'_, KeyPair>,
    ca_not_after: i64,
) -> Result<(String, String), MaterialError> {
    let key = new_key()?;
    let mut params = CertificateParams::new(id.dns_names())
        .map_err(|source| MaterialError::DnsNames { service: id.service.clone(), source })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{}.{}.svc", id.service, id.namespace));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = odt(now - BACKDATE)?;
    params.not_after = odt((now + secs(LEAF_VALIDITY)).min(ca_not_after))?;
    let cert =
        params.signed_by(&key, issuer).map_err(|source| MaterialError::ServingCertificate { source })?;
    Ok((pem_encode("CERTIFICATE", cert.der()), key.serialize_pem()))
}

/// What this module reads of a certificate.
struct Cert {
    der: Vec<u8>,
    not_before: i64,
    not_after: i64,
    is_ca: bool,
    dns_names: Vec<String>,
    /// The subject public key's bits.
    public_key: Vec<u8>,
}

/// Why stored PEM text is not a list of certificates: the reason [`assess`] gives for starting
/// afresh. Private, because only its message leaves this module.
#[derive(Debug, thiserror::Error)]
enum ParseError {
    #[error("not valid PEM: {source}")]
    Pem {
        #[source]
        source: x509_parser::error::PEMError,
    },
    #[error("a {label} block where certificates were expected")]
    NotCertificate { label: String },
    #[error("no PEM certificate")]
    Empty,
    #[error("not an X.509 certificate: {source}")]
    X509 {
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("its subject alternative names cannot be read: {source}")]
    AltNames {
        #[source]
        source: x509_parser::error::X509Error,
    },
}

/// Every PEM block of `pem`, each a certificate; at least one.
fn parse_certs(pem: &[u8]) -> Result<Vec<Cert>, ParseError> {
    let mut certs = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block.map_err(|source| ParseError::Pem { source })?;
        if block.label != "CERTIFICATE" {
            return Err(ParseError::NotCertificate { label: block.label });
        }
        certs.push(parse_cert(&block)?);
    }
    if certs.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(certs)
}

fn parse_cert(block: &Pem) -> Result<Cert, ParseError> {
    let x = block.parse_x509().map_err(|source| ParseError::X509 { source })?;
    let dns_names = match x.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(source) => return Err(ParseError::AltNames { source }),
    };
    Ok(Cert {
        der: block.contents.clone(),
        not_before: x.validity().not_before.timestamp(),
        not_after: x.validity().not_after.timestamp(),
        is_ca: x.is_ca(),
        dns_names,
        public_key: x.public_key().subject_public_key.data.to_vec(),
    })
}

/// The private key in `pem` if it is `cert`'s.
fn key_of(pem: &[u8], cert: &Cert) -> Option<KeyPair> {
    let key = KeyPair::from_pem(std::str::from_utf8(pem).ok()?).ok()?;
    (key.public_key_raw() == cert.public_key.as_slice()).then_some(key)
}

/// Whether `ca`'s key signed `leaf`.
fn signed_by(leaf: &Cert, ca: &Cert) -> bool {
    match (x509_parser::parse_x509_certificate(&leaf.der), x509_parser::parse_x509_certificate(&ca.der)) {
        (Ok((_, leaf)), Ok((_, ca))) => {
            leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
        }
        _ => false,
    }
}

/// `der` as a PEM block (64-character lines, LF).
fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn odt(t: i64) -> Result<time::OffsetDateTime, MaterialError> {
    time::OffsetDateTime::from_unix_timestamp(t).map_err(|source| MaterialError::Clock { source })
}

/// `YYYY-MM-DD` (UTC), for the log.
fn date(t: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => format!("{t} s after 1970"),
    }
}

/// The expiry date of the first certificate in `pem`, for the log.
fn expiry(pem: &str) -> String {
    parse_certs(pem.as_bytes()).map(|c| date(c[0].not_after)).unwrap_or_else(|_| "?".into())
}

/// Sets `caBundle` to `bundle` on every client configuration that calls `id`'s Service. Returns
/// how many call it and whether any changed.
pub fn set_ca_bundle<'a>(
    configs: impl IntoIterator<Item = &'a mut WebhookClientConfig>,
    id: &ServiceIdentity,
    bundle: &[u8],
) -> (usize, bool) {
    let (mut ours, mut changed) = (0, false);
    for config in configs {
        let calls_us =
            config.service.as_ref().is_some_and(|s| s.name == id.service && s.namespace == id.namespace);
        if !calls_us {
            continue;
        }
        ours += 1;
        if config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle) {
            config.ca_bundle = Some(ByteString(bundle.to_vec()));
            changed = true;
        }
    }
    (ours, changed)
}

/// The wait after a failed step when the wait after the failure before it was `previous` (zero
/// when the step before succeeded): [`BACKOFF_FIRST`], then doubled, at most [`BACKOFF_MAX`].
pub fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX)
}

/// Writes `tls.crt` and `tls.key` into `dir`, each written to a temporary file there and renamed
/// over the old one (the key readable by this user only). Returns whether anything changed.
pub fn write_files(dir: &Path, material: &Material) -> Result<bool, KeeperError> {
    let mut changed = false;
    // The key first: a reader between the two renames sees a mismatched pair and keeps serving the
    // old one until its next read.
    for (name, content) in [(TLS_KEY, &material.tls_key), (TLS_CRT, &material.tls_crt)] {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        write_private(&tmp, content.as_bytes())
            .map_err(|source| KeeperError::WriteFile { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| KeeperError::RenameFile {
            from: tmp.clone(),
            to: path.clone(),
            source,
        })?;
        changed = true;
    }
    Ok(changed)
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// What [`ensure_secret`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The Secret was good; nothing written.
    Kept,
    /// The Secret did not exist and was created.
    Created,
    /// The Secret was replaced (at the `resourceVersion` read), for the reason given.
    Replaced { plan: Plan, why: String },
    /// Another replica wrote the Secret first (409 Conflict); its material is used.
    TookTheirs,
}

/// What [`write_files`] adds to a failure to write the serving folder.
const FILES_HINT: &str = "--tls-dir must be a folder this user can write (an emptyDir volume)";

/// Why a step of the certificate keeper ([`SelfSigned::step`], [`SelfSigned::start`]) or one of
/// its parts ([`ensure_secret`], [`patch_ca_bundle`], [`write_files`]) failed. Each message says
/// what failed and what to change; an API server's error is kept as the `source`, and for a 403
/// the message names the RBAC rule the webhook's service account lacks ([`RBAC`]).
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// New certificates could not be made.
    #[error(transparent)]
    Cert(#[from] MaterialError),
    /// The Secret (`namespace/name`) could not be read.
    #[error("cannot read Secret {secret}: {}", hint_403(.source, .rule))]
    ReadSecret {
        secret: String,
        /// The RBAC rule a 403 would mean is missing.
        rule: String,
        #[source]
        source: kube::Error,
    },
    /// The Secret could not be created (the first time).
    #[error("cannot create Secret {secret}: {}", hint_403(.source, .rule))]
    CreateSecret {
        secret: String,
        rule: String,
        #[source]
        source: kube::Error,
    },
    /// The Secret could not be replaced with renewed material.
    #[error("cannot update Secret {secret}: {}", hint_403(.source, .rule))]
    UpdateSecret {
        secret: String,
        rule: String,
        #[source]
        source: kube::Error,
    },
    /// Other writers kept changing the Secret between each read and write.
    #[error(
        "Secret {secret} kept changing while it was being written ({TRIES} conflicts in a row); will try again"
    )]
    SecretConflicts { secret: String },
    /// The webhook configuration does not exist (Helm may create it after the pod starts).
    #[error(
        "{config} does not exist (yet); its caBundle is set once it does (check the name given to --ca-bundle-for if it never appears)"
    )]
    NoConfiguration { config: ConfigRef },
    /// The webhook configuration could not be read.
    #[error("cannot read {config}: {}", hint_403(.source, .rule))]
    ReadConfiguration {
        config: ConfigRef,
        rule: String,
        #[source]
        source: kube::Error,
    },
    /// No webhook of the configuration calls the webhook's Service, so there was no `caBundle`
    /// to set.
    #[error(
        "none of the webhooks of {config} calls Service {}/{}; pass the Service its clientConfig names with --service (and run in its namespace)",
        .service.namespace,
        .service.service
    )]
    NotCalled { config: ConfigRef, service: ServiceIdentity },
    /// The webhook configuration could not be replaced with the new `caBundle`.
    #[error("cannot update {config}: {}", hint_403(.source, .rule))]
    UpdateConfiguration {
        config: ConfigRef,
        rule: String,
        #[source]
        source: kube::Error,
    },
    /// Other writers kept changing the configuration between each read and write.
    #[error(
        "{config} kept changing while its caBundle was being set ({TRIES} conflicts in a row); will try again"
    )]
    ConfigurationConflicts { config: ConfigRef },
    /// A file in the serving folder could not be written.
    #[error("cannot write {}: {source}; {FILES_HINT}", .path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file written beside its place could not be renamed into it.
    #[error("cannot rename {} to {}: {source}; {FILES_HINT}", .from.display(), .to.display())]
    RenameFile {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The serving folder (`--tls-dir`) could not be created.
    #[error(
        "cannot create --tls-dir {}: {source}; use a folder this user can write (an emptyDir volume)",
        .dir.display()
    )]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing can be written in the serving folder.
    #[error(
        "cannot write in --tls-dir {}: {source}; use a folder this user can write (an emptyDir volume)",
        .dir.display()
    )]
    DirNotWritable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A certificate from a new CA is not served until every `caBundle` holds that CA, or the
    /// API server would refuse the webhook.
    #[error("the new serving certificate is held back until the caBundles are set: it comes from a new CA")]
    HeldBack,
    /// More than one of the above in one step (what could be done was done); shown joined by `; `.
    #[error("{}", join(.0))]
    Several(Vec<KeeperError>),
}

/// The messages of `problems`, joined by `; `.
fn join(problems: &[KeeperError]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The API server's error, followed for a 403 by the RBAC rule the service account lacks.
fn hint_403(e: &kube::Error, rule: &str) -> String {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => format!("{e}; give the webhook's service account {rule}"),
        _ => e.to_string(),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

/// Step 1: the material in Secret `name` (of `api`'s namespace) at `now`, made and stored first
/// when [`plan`] says so. On 409 Conflict the Secret is read again and planned anew, so a Secret
/// another replica just wrote is used as it is.
pub async fn ensure_secret(
    api: &Api<Secret>,
    name: &str,
    id: &ServiceIdentity,
    now: SystemTime,
) -> Result<(Material, Stored), KeeperError> {
    let ns = &id.namespace;
    let secret_name = format!("{ns}/{name}");
    let get_rule = format!("get on secrets (resourceNames [{name}]) in namespace {ns}");
    let mut raced = false;
    for _ in 0..TRIES {
        let current = api.get_opt(name).await.map_err(|source| KeeperError::ReadSecret {
            secret: secret_name.clone(),
            rule: get_rule.clone(),
            source,
        })?;
        let data = current.as_ref().and_then(|s| s.data.as_ref());
        let (plan, why) = assess(now, id, data);
        if plan == Plan::Keep {
            let material = issue(now, id, plan, data)?;
            return Ok((material, if raced { Stored::TookTheirs } else { Stored::Kept }));
        }
        let material = issue(now, id, plan, data)?;
        let written = match current {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(ns.clone()),
                        annotations: Some(BTreeMap::from([(
                            gantry_api::keys::GENERATED_BY_ANNOTATION.to_string(),
                            "gantry webhook --self-signed-tls".to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(material.to_data()),
                    ..Secret::default()
                };
                let rule = format!("create on secrets in namespace {ns}");
                api.create(&PostParams::default(), &secret).await.map(|_| Stored::Created).map_err(|source| {
                    let conflict = is_conflict(&source);
                    (conflict, KeeperError::CreateSecret { secret: secret_name.clone(), rule, source })
                })
            }
            Some(mut secret) => {
                // Other keys, labels and the type stay as they are; `metadata.resourceVersion`
                // is the one read, so a concurrent write makes this one fail with 409.
                let mut data = secret.data.take().unwrap_or_default();
                data.remove(CA_KEY);
                data.extend(material.to_data());
                secret.data = Some(data);
                let rule = format!("update on secrets (resourceNames [{name}]) in namespace {ns}");
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .map(|_| Stored::Replaced { plan, why })
                    .map_err(|source| {
                        let conflict = is_conflict(&source);
                        (conflict, KeeperError::UpdateSecret { secret: secret_name.clone(), rule, source })
                    })
            }
        };
        match written {
            Ok(stored) => return Ok((material, stored)),
            Err((true, _)) => raced = true,
            Err((false, e)) => return Err(e),
        }
    }
    Err(KeeperError::SecretConflicts { secret: secret_name })
}

/// What [`patch_ca_bundle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patched {
    /// Every webhook calling the Service already had the bundle.
    Unchanged,
    /// The configuration was replaced; this many webhooks call the Service.
    Updated(usize),
}

/// The two configuration types, for [`patch_ca_bundle`].
trait Configuration:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
    + Clone
    + fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
{
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig>;
}

impl Configuration for MutatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        self.webhooks.iter_mut().flatten().map(|w| &mut w.client_config).collect()
    }
}

impl Configuration for ValidatingWebhookConfiguration {
    fn client_configs(&mut self) -> Vec<&mut WebhookClientConfig> {
        self.webhooks.iter_mut().flatten().map(|w| &mut w.client_config).collect()
    }
}

/// Step 2: sets `caBundle` to `bundle` on the webhooks of `config` that call `id`'s Service,
/// replacing the configuration only when that changes it (read again on 409 Conflict).
pub async fn patch_ca_bundle(
    client: &Client,
    config: &ConfigRef,
    id: &ServiceIdentity,
    bundle: &[u8],
) -> Result<Patched, KeeperError> {
    match config.kind {
        ConfigKind::Mutating => patch_one::<MutatingWebhookConfiguration>(client, config, id, bundle).await,
        ConfigKind::Validating => {
            patch_one::<ValidatingWebhookConfiguration>(client, config, id, bundle).await
        }
    }
}

async fn patch_one<K: Configuration>(
    client: &Client,
    config: &ConfigRef,
    id: &ServiceIdentity,
    bundle: &[u8],
) -> Result<Patched, KeeperError> {
    let api: Api<K> = Api::all(client.clone());
    let name = &config.name;
    let resource = K::plural(&()).into_owned();
    for _ in 0..TRIES {
        let rule =
            format!("get and update on {resource}.admissionregistration.k8s.io (resourceNames [{name}])");
        let mut object = match api.get_opt(name).await {
            Ok(Some(o)) => o,
            Ok(None) => return Err(KeeperError::NoConfiguration { config: config.clone() }),
            Err(source) => {
                return Err(KeeperError::ReadConfiguration { config: config.clone(), rule, source })
            }
        };
        let (ours, changed) = set_ca_bundle(object.client_configs(), id, bundle);
        if ours == 0 {
            return Err(KeeperError::NotCalled { config: config.clone(), service: id.clone() });
        }
        if !changed {
            return Ok(Patched::Unchanged);
        }
        match api.replace(name, &PostParams::default(), &object).await {
            Ok(_) => return Ok(Patched::Updated(ours)),
            Err(e) if is_conflict(&e) => continue,
            Err(source) => {
                return Err(KeeperError::UpdateConfiguration { config: config.clone(), rule, source })
            }
        }
    }
    Err(KeeperError::ConfigurationConflicts { config: config.clone() })
}

/// Where the certificate is kept and whom it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Service (and namespace) the webhook is reached through.
    pub identity: ServiceIdentity,
    /// The Secret in that namespace that holds the CA and serving certificate.
    pub secret: String,
    /// The folder `tls.crt` and `tls.key` are written to and served from.
    pub dir: PathBuf,
    /// The webhook configurations whose `caBundle` is kept.
    pub configs: Vec<ConfigRef>,
    /// How often to check once all is well ([`CHECK_EVERY`]).
    pub every: Duration,
}

/// The certificate's keeper: [`start`](SelfSigned::start) before serving, then
/// [`maintain`](SelfSigned::maintain) for as long as the webhook serves.
pub struct SelfSigned {
    client: Client,
    config: Config,
    /// The CA bundle that came with the files last written (none yet: nothing served).
    written: Option<String>,
    /// The wait before the next step.
    wait: Duration,
    /// The last wait after a failure (zero after a good step).
    backoff: Duration,
}

impl SelfSigned {
    pub fn new(client: Client, config: Config) -> SelfSigned {
        SelfSigned { client, config, written: None, wait: BACKOFF_FIRST, backoff: Duration::ZERO }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a certificate has been written to the folder (the webhook can serve).
    pub fn ready(&self) -> bool {
        self.written.is_some()
    }

    /// The wait [`maintain`](SelfSigned::maintain) takes before the next step: [`Config::every`]
    /// after a good step, the backoff after a failed one.
    pub fn next_wait(&self) -> Duration {
        self.wait
    }

    /// Steps 1 to 3 once, at `now`. Errors say what failed; what could be done was done (a
    /// configuration that cannot be patched does not keep the files from being written, unless
    /// they come from a CA the API server would not trust yet).
    pub async fn step(&mut self, now: SystemTime) -> Result<(), KeeperError> {
        let id = self.config.identity.clone();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &id.namespace);
        let name = &self.config.secret;
        let (material, stored) = ensure_secret(&api, name, &id, now).await?;
        let where_ = format!("Secret {}/{name}", id.namespace);
        match &stored {
            Stored::Kept => {}
            Stored::Created => tracing::info!(
                "created {where_} with a new CA (until {}) and a serving certificate for {} (until {})",
                expiry(&material.ca_crt),
                id.dns_names().join(", "),
                expiry(&material.tls_crt)
            ),
            Stored::Replaced { plan: Plan::RenewLeaf, why } => {
                tracing::info!(
                    "renewed the serving certificate in {where_} (until {}), same CA: {why}",
                    expiry(&material.tls_crt)
                )
            }
            Stored::Replaced { why, .. } => tracing::info!(
                "new CA (until {}) and serving certificate (until {}) in {where_}: {why}",
                expiry(&material.ca_crt),
                expiry(&material.tls_crt)
            ),
            Stored::TookTheirs => {
                tracing::info!("another replica wrote {where_} first; using its certificate")
            }
        }

        let mut problems = Vec::new();
        for config in &self.config.configs {
            match patch_ca_bundle(&self.client, config, &id, material.ca_crt.as_bytes()).await {
                Ok(Patched::Updated(n)) => {
                    tracing::info!(
                        "set the caBundle of {config} ({n} webhooks call Service {}/{})",
                        id.namespace,
                        id.service
                    )
                }
                Ok(Patched::Unchanged) => {}
                Err(e) => problems.push(e),
            }
        }

        // A certificate from a CA the clients were not given is held back until they are.
        let trusted = match &self.written {
            None => true,
            Some(old) => problems.is_empty() || issuer_in(&material, old),
        };
        if trusted {
            match write_files(&self.config.dir, &material) {
                Ok(changed) => {
                    if changed {
                        tracing::info!(
                            "serving the certificate from {where_} (until {}) from {}",
                            expiry(&material.tls_crt),
                            self.config.dir.display()
                        );
                    }
                    self.written = Some(material.ca_crt.clone());
                }
                Err(e) => problems.push(e),
            }
        } else {
            problems.push(KeeperError::HeldBack);
        }
        if problems.len() > 1 {
            return Err(KeeperError::Several(problems));
        }
        problems.pop().map_or(Ok(()), Err)
    }

    /// Records the outcome of a step: the next wait and, for a failure, the log line.
    fn settle(&mut self, result: &Result<(), KeeperError>) {
        match result {
            Ok(()) => {
                self.backoff = Duration::ZERO;
                self.wait = self.config.every;
            }
            Err(e) => {
                self.backoff = next_backoff(self.backoff);
                self.wait = self.backoff;
                tracing::warn!("{e}; retrying in {} s", self.wait.as_secs());
            }
        }
    }

    /// Before serving: creates the folder, then steps (retrying with backoff) until a certificate
    /// has been written there. Fails only when the folder cannot be written.
    pub async fn start(&mut self) -> Result<(), KeeperError> {
        let dir = &self.config.dir;
        std::fs::create_dir_all(dir).map_err(|source| KeeperError::CreateDir { dir: dir.clone(), source })?;
        let probe = dir.join(".gantry-write-test");
        write_private(&probe, b"")
            .map_err(|source| KeeperError::DirNotWritable { dir: dir.clone(), source })?;
        let _ = std::fs::remove_file(&probe);
        loop {
            let result = self.step(SystemTime::now()).await;
            self.settle(&result);
            if self.ready() {
                return Ok(());
            }
            tokio::time::sleep(self.wait).await;
        }
    }

    /// Once serving: steps every [`Config::every`], or sooner with backoff after a failure.
    /// Never returns.
    pub async fn maintain(mut self) {
        loop {
            tokio::time::sleep(self.wait).await;
            let result = self.step(SystemTime::now()).await;
            self.settle(&result);
        }
    }
}

/// Whether the CA that signed `material`'s certificate is in `bundle`.
fn issuer_in(material: &Material, bundle: &str) -> bool {
    let (Ok(new), Ok(old)) = (parse_certs(material.ca_crt.as_bytes()), parse_certs(bundle.as_bytes())) else {
        return false;
    };
    old.iter().any(|c| c.der == new[0].der)
}
