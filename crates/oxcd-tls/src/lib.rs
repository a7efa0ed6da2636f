//! Transport security as etcd serves it (etcd's `TLSInfo`), on rustls.
//!
//! - A port with a certificate serves it; with `--trusted-ca-file` or `--client-cert-auth` it also
//!   requires a client certificate signed by those CAs (etcd's `RequireAndVerifyClientCert` under
//!   the same condition), checked against `--*-crl-file` when given, and, on the peer port, against
//!   `--peer-cert-allowed-cn` / `--peer-cert-allowed-hostname`.
//! - Every file is re-read when it changes (its modification time or length), checked at each new
//!   connection, as etcd re-reads its certificate at each handshake: a rotated certificate, CA
//!   bundle or CRL is served without a restart. A change that does not load (a certificate written
//!   before its key, say) keeps the last good configuration and is logged; the next change is
//!   tried again.
//! - TLS 1.2 and 1.3 only (`--tls-min-version`, `--tls-max-version`); `--cipher-suites` takes Go's
//!   names and limits TLS 1.2's suites, TLS 1.3's are always on (as in Go).
//! - Bad files are refused at start with Go's wording where etcd has one.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use rustls::SupportedProtocolVersion;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use oxcd_datadir::config::{ConfigError, ServerConfig, TlsVersion, TransportSecurity, tls_version};

/// What a port's TLS could not load.
fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError::Tls(msg.into())
}

/// What a port's rustls configuration is built from.
struct Settings {
    sec: TransportSecurity,
    provider: Arc<CryptoProvider>,
    versions: Vec<&'static SupportedProtocolVersion>,
    /// The application protocols a server offers, preferred first.
    alpn: Vec<Vec<u8>>,
}

/// A rustls configuration of one port (a server's or a client's), rebuilt when one of its files
/// changes.
pub struct Reloading<C> {
    settings: Settings,
    build: fn(&Settings) -> Result<Arc<C>, ConfigError>,
    current: Mutex<(Stamp, Arc<C>)>,
}

/// The TLS of one listening port.
pub type ServerTls = Reloading<rustls::ServerConfig>;
/// The TLS a member uses as a client (of its peers, or of the leader's client port): the other
/// side's certificate checked against the trusted CA file (or the system's CAs), its own
/// certificate presented (the client certificate, or the serving one).
pub type ClientTls = Reloading<rustls::ClientConfig>;

impl Reloading<rustls::ServerConfig> {
    /// Loads a listening port's TLS (`alpn`: the application protocols it offers, preferred first).
    pub fn new(sec: &TransportSecurity, cfg: &ServerConfig, alpn: &[&[u8]]) -> Result<Arc<ServerTls>, ConfigError> {
        Reloading::load(sec, cfg, alpn, build_server)
    }
}

impl Reloading<rustls::ClientConfig> {
    pub fn new(sec: &TransportSecurity, cfg: &ServerConfig) -> Result<Arc<ClientTls>, ConfigError> {
        Reloading::load(sec, cfg, &[], build_client)
    }
}

impl<C> Reloading<C> {
    fn load(
        sec: &TransportSecurity,
        cfg: &ServerConfig,
        alpn: &[&[u8]],
        build: fn(&Settings) -> Result<Arc<C>, ConfigError>,
    ) -> Result<Arc<Self>, ConfigError> {
        let settings = Settings {
            sec: sec.clone(),
            provider: provider(cfg)?,
            versions: versions(cfg)?,
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
        };
        let stamp = Stamp::of(sec);
        let config = build(&settings)?;
        Ok(Arc::new(Reloading { settings, build, current: Mutex::new((stamp, config)) }))
    }

    /// The configuration for a new connection: rebuilt first if a file changed.
    pub fn config(&self) -> Arc<C> {
        let stamp = Stamp::of(&self.settings.sec);
        let mut current = self.current.lock();
        if current.0 != stamp {
            current.0 = stamp;
            match (self.build)(&self.settings) {
                Ok(c) => {
                    tracing::info!(cert_file = %self.settings.sec.cert_file, "TLS files changed; reloaded");
                    current.1 = c;
                }
                Err(e) => tracing::warn!(error = %e, "TLS files changed but do not load; using the previous ones"),
            }
        }
        current.1.clone()
    }
}

/// When each file of a port was last changed, as far as its metadata tells.
#[derive(PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64)>>);

impl Stamp {
    fn of(sec: &TransportSecurity) -> Stamp {
        let files = [
            &sec.cert_file,
            &sec.key_file,
            &sec.client_cert_file,
            &sec.client_key_file,
            &sec.trusted_ca_file,
            &sec.crl_file,
        ];
        Stamp(
            files
                .iter()
                .map(|f| std::fs::metadata(f.as_str()).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
                .collect(),
        )
    }
}

fn build_server(settings: &Settings) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let Settings { sec, provider, versions, alpn } = settings;
    let key = certified_key(&sec.cert_file, &sec.key_file, provider)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err(e.to_string()))?;
    let builder = if sec.client_cert_auth || !sec.trusted_ca_file.is_empty() {
        builder.with_client_cert_verifier(client_verifier(sec, provider)?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// A certificate (with its chain) and its private key, checked to belong together.
fn certified_key(cert_file: &str, key_file: &str, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    let certs = read_certs(cert_file)?;
    let pem = std::fs::read(key_file).map_err(|e| err(format!("open {key_file}: {}", io_text(&e))))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| err("tls: failed to find any PEM data in key input".to_string()))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(format!("tls: failed to parse private key {key_file}: {e}")))?;
    let key = CertifiedKey::new(certs, signer);
    key.keys_match().map_err(|_| err("tls: private key does not match public key"))?;
    Ok(key)
}

/// Every certificate of a PEM file.
fn read_certs(file: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(file).map_err(|e| err(format!("open {file}: {}", io_text(&e))))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("tls: failed to parse certificate PEM data in {file}: {e}")))?;
    if certs.is_empty() {
        return Err(err(format!("tls: failed to find any PEM data in certificate input ({file})")));
    }
    Ok(certs)
}

/// An I/O error as Go prints it (`no such file or directory`).
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The CAs that sign acceptable client certificates: `--trusted-ca-file`, or the system's.
fn roots(sec: &TransportSecurity) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    if sec.trusted_ca_file.is_empty() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    } else {
        for c in read_certs(&sec.trusted_ca_file)? {
            roots.add(c).map_err(|e| err(format!("{}: {e}", sec.trusted_ca_file)))?;
        }
    }
    Ok(roots)
}

fn client_verifier(
    sec: &TransportSecurity,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ConfigError> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(sec)?), provider.clone());
    if !sec.crl_file.is_empty() {
        let data = std::fs::read(&sec.crl_file).map_err(|e| err(format!("open {}: {}", sec.crl_file, io_text(&e))))?;
        let crls: Vec<CertificateRevocationListDer<'static>> = if data.starts_with(b"-----") {
            CertificateRevocationListDer::pem_slice_iter(&data)
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("{}: {e}", sec.crl_file)))?
        } else {
            vec![CertificateRevocationListDer::from(data)]
        };
        // etcd checks every certificate of the chain against the list, and accepts those the
        // list does not cover.
        builder = builder.with_crls(crls).allow_unknown_revocation_status();
    }
    let inner = builder.build().map_err(|e| err(format!("client certificate verification: {e}")))?;
    let trusted = if sec.trusted_ca_file.is_empty() { Vec::new() } else { read_certs(&sec.trusted_ca_file)? };
    Ok(Arc::new(ClientVerifier {
        inner,
        trusted,
        cns: sec.allowed_cn.clone(),
        hostnames: sec.allowed_hostname.clone(),
    }))
}

/// The client certificate check: webpki's (chain to a trusted CA, revocation), except that a
/// certificate that is itself one of the trusted CAs' (a self-signed CA certificate, as etcd's
/// own test fixtures use) is accepted while valid, as Go's verifier accepts it; then, when set,
/// one of the allowed common names or host names (etcd's `--peer-cert-allowed-cn`,
/// `--peer-cert-allowed-hostname`).
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trusted: Vec<CertificateDer<'static>>,
    cns: Vec<String>,
    hostnames: Vec<String>,
}

/// Whether `der` is valid at `now` (its notBefore and notAfter).
fn valid_at(der: &CertificateDer<'_>, now: UnixTime) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| {
        x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64).is_ok_and(|t| c.validity().is_valid_at(t))
    })
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match self.inner.verify_client_cert(end_entity, intermediates, now) {
            Ok(v) => v,
            Err(_) if self.trusted.iter().any(|t| t.as_ref() == end_entity.as_ref()) && valid_at(end_entity, now) => {
                ClientCertVerified::assertion()
            }
            Err(e) => return Err(e),
        };
        if self.cns.is_empty() && self.hostnames.is_empty() {
            return Ok(verified);
        }
        let cn_ok = !self.cns.is_empty() && common_name(end_entity).is_some_and(|cn| self.cns.contains(&cn));
        let host_ok = !self.hostnames.is_empty()
            && webpki::EndEntityCert::try_from(end_entity).is_ok_and(|cert| {
                self.hostnames.iter().any(|h| {
                    ServerName::try_from(h.as_str())
                        .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            });
        if cn_ok || host_ok {
            Ok(verified)
        } else {
            Err(rustls::Error::General("client certificate authentication failed".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The subject's common name of a DER certificate (what etcd takes as the user name of a client
/// that authenticated with a certificate).
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// The TLS versions `--tls-min-version` and `--tls-max-version` allow.
fn versions(cfg: &ServerConfig) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let min = tls_version(&cfg.tls_min_version)?.unwrap_or(TlsVersion::Tls12);
    let max = tls_version(&cfg.tls_max_version)?.unwrap_or(TlsVersion::Tls13);
    let mut out = Vec::new();
    if min <= TlsVersion::Tls13 && TlsVersion::Tls13 <= max {
        out.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::Tls12 && TlsVersion::Tls12 <= max {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// rustls' ring provider, its TLS 1.2 suites limited to `--cipher-suites` when given.
fn provider(cfg: &ServerConfig) -> Result<Arc<CryptoProvider>, ConfigError> {
    let mut p = rustls::crypto::ring::default_provider();
    if !cfg.cipher_suites.is_empty() {
        let all = p.cipher_suites.clone();
        let mut chosen: Vec<_> = all.iter().filter(|s| s.tls13().is_some()).copied().collect();
        for name in &cfg.cipher_suites {
            match go_suite(name)? {
                GoSuite::Tls13 => {}
                GoSuite::Tls12(wanted) => {
                    let suite = all.iter().find(|s| s.suite() == wanted).copied().expect("the ring provider has it");
                    if !chosen.contains(&suite) {
                        chosen.push(suite);
                    }
                }
            }
        }
        p.cipher_suites = chosen;
    }
    Ok(Arc::new(p))
}

enum GoSuite {
    /// A TLS 1.3 suite (always on, as in Go).
    Tls13,
    Tls12(rustls::CipherSuite),
}

/// A cipher suite by Go's name (etcd's `tlsutil.GetCipherSuite`).
fn go_suite(name: &str) -> Result<GoSuite, ConfigError> {
    use rustls::CipherSuite as C;
    Ok(match name {
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => GoSuite::Tls13,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => GoSuite::Tls12(C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => GoSuite::Tls12(C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => GoSuite::Tls12(C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => GoSuite::Tls12(C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls12(C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        // Go knows these; rustls offers no CBC, RC4, 3DES or static-RSA suite.
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => {
            return Err(err(format!(
                "TLS cipher suite {name:?} is not supported by oxcd (TLS 1.2 suites offered: ECDHE with AES-GCM or ChaCha20-Poly1305)"
            )));
        }
        _ => return Err(err(format!("unexpected TLS cipher suite {name:?}"))),
    })
}

fn build_client(settings: &Settings) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let Settings { sec, provider, versions, .. } = settings;
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| err(e.to_string()))?;
    let builder = if sec.auto_tls {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider.clone())))
    } else {
        builder.with_root_certificates(roots(sec)?)
    };
    let (cert, key) = if sec.client_cert_file.is_empty() {
        (&sec.cert_file, &sec.key_file)
    } else {
        (&sec.client_cert_file, &sec.client_key_file)
    };
    let config = if cert.is_empty() {
        builder.with_no_client_auth()
    } else {
        let key = certified_key(cert, key, provider)?;
        builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
    };
    Ok(Arc::new(config))
}

/// etcd's check of a peer's certificate against the address it connects from: a certificate with
/// IP addresses or DNS names among its SANs must name that address (directly, or by a DNS name
/// that resolves to it).
pub fn check_san(der: &CertificateDer<'_>, remote: std::net::IpAddr) -> Result<(), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("bad certificate: {e}"))?;
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Ok(()) };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => ips.push(match b.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes")),
                16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes")),
                _ => continue,
            }),
            _ => {}
        }
    }
    if ips.is_empty() && dns.is_empty() || ips.contains(&remote) {
        return Ok(());
    }
    let resolves_to_remote = |d: &String| {
        std::net::ToSocketAddrs::to_socket_addrs(&(d.as_str(), 0)).is_ok_and(|mut a| a.any(|a| a.ip() == remote))
    };
    if dns.iter().any(resolves_to_remote) {
        return Ok(());
    }
    if dns.is_empty() {
        return Err(format!("x509: certificate is valid for {ips:?}, not {remote}"));
    }
    Err(format!("tls: {:?} does not match any of DNSNames {dns:?}", remote.to_string()))
}

/// `--auto-tls` / `--peer-auto-tls`: the port's settings with a self-signed certificate, made in
/// `dir` (`cert.pem`, `key.pem`, as etcd keeps them under `<data-dir>/fixtures/`) for `hosts`
/// (names or IP addresses, without brackets) and `years`, or the one made there before. As in etcd, the generated certificate replaces the
/// port's settings (no client certificates are asked for, and peers do not verify it), and
/// certificate files given with auto TLS win over it.
pub fn auto_tls(
    sec: &TransportSecurity,
    dir: &std::path::Path,
    hosts: &[String],
    years: u32,
) -> Result<TransportSecurity, ConfigError> {
    if !sec.auto_tls {
        return Ok(sec.clone());
    }
    if sec.has_cert() {
        tracing::warn!("ignoring auto TLS since certs given");
        return Ok(TransportSecurity { auto_tls: false, ..sec.clone() });
    }
    if years == 0 {
        return Err(err("selfSignedCertValidity is invalid,it should be greater than 0"));
    }
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create cert directory {}: {e}", dir.display())))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert.exists() && key.exists()) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| err(e.to_string()))?;
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "etcd");
        params.not_before = time::OffsetDateTime::now_utc();
        params.not_after = params.not_before + time::Duration::days(i64::from(years) * 365);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        for host in hosts {
            params.subject_alt_names.push(match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => {
                    rcgen::SanType::DnsName(host.as_str().try_into().map_err(|e: rcgen::Error| err(e.to_string()))?)
                }
            });
        }
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(e.to_string()))?;
        let made = params.self_signed(&pair).map_err(|e| err(format!("cannot generate x509 certificate: {e}")))?;
        write_private(&key, pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert, made.pem()).map_err(|e| err(format!("cannot write {}: {e}", cert.display())))?;
        tracing::info!(cert = %cert.display(), ?hosts, "automatically generated a self-signed certificate");
    }
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    Ok(TransportSecurity {
        cert_file: cert.clone(),
        key_file: key.clone(),
        client_cert_file: cert,
        client_key_file: key,
        auto_tls: true,
        ..Default::default()
    })
}

/// Writes a private key readable by its owner only.
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(data).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// A server verifier that accepts any certificate; the handshake's signatures are still checked.
/// What a member that made its own certificate (`--peer-auto-tls`) accepts from its peers (etcd's
/// self-signed peers skip verification), and etcdctl's `--insecure-skip-tls-verify`.
#[derive(Debug)]
pub struct AcceptAnyServer(pub Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
