//! TLS for client connections, with etcdctl's flags: `--cacert` (else the system's roots),
//! `--cert`/`--key` (a client certificate), `--insecure-skip-tls-verify` (no server check).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::cli::Global;
use crate::error::{CtlError, Result};

fn bad(msg: impl Into<String>) -> CtlError {
    CtlError::bad_args(msg)
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>> {
    std::fs::metadata(path).map_err(|_| bad(format!("open {path}: no such file or directory")))?;
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("{path}: {e}")))
}

/// The rustls configuration the global flags ask for (ALPN h2, for gRPC).
pub fn client_config(g: &Global) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?;
    let builder = if g.insecure_skip_tls_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(oxcd_tls::AcceptAnyServer(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if g.cacert.is_empty() {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        } else {
            for c in read_certs(&g.cacert)? {
                roots.add(c).map_err(|e| bad(format!("{}: {e}", g.cacert)))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (g.cert.is_empty(), g.key.is_empty()) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            let certs = read_certs(&g.cert)?;
            std::fs::metadata(&g.key).map_err(|_| bad(format!("open {}: no such file or directory", g.key)))?;
            let key = PrivateKeyDer::from_pem_file(&g.key).map_err(|e| bad(format!("{}: {e}", g.key)))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| bad(e.to_string()))?
        }
        _ => {
            return Err(bad(format!("KeyFile and CertFile must both be present[key: {}, cert: {}]", g.key, g.cert)));
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
