//! Certificates for TLS tests, made with openssl (as an operator would make them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files [`make_certs`] writes, by role.
#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// `<name>.crt`, `<name>.key` in the directory.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// The flags that serve the client and peer ports with TLS and require client certificates
    /// on both, as kubeadm writes them.
    pub fn server_flags(&self) -> Vec<String> {
        [
            ("--cert-file", "server.crt"),
            ("--key-file", "server.key"),
            ("--trusted-ca-file", "ca.crt"),
            ("--peer-cert-file", "server.crt"),
            ("--peer-key-file", "server.key"),
            ("--peer-trusted-ca-file", "ca.crt"),
        ]
        .iter()
        .flat_map(|(flag, f)| [flag.to_string(), self.file(f)])
        .chain(["--client-cert-auth=true".to_string(), "--peer-client-cert-auth=true".to_string()])
        .collect()
    }
}

/// Runs `script` with sh in `dir`, panicking with its stderr if it fails.
fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().expect("run sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issues `<name>.crt`/`<name>.key` (EC P-256) signed by `<ca>.crt`, with common name `cn` and
/// the given `subjectAltName` (empty: none), usable for server and client authentication.
pub fn issue(dir: &Path, ca: &str, name: &str, cn: &str, san: &str) {
    let san = if san.is_empty() { String::new() } else { format!("subjectAltName={san}\\n") };
    sh(
        dir,
        &format!(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.csr \
             -subj /CN={cn} 2>/dev/null && \
             printf '{san}extendedKeyUsage=serverAuth,clientAuth\\n' > {name}.ext && \
             openssl x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -out {name}.crt -days 2 \
             -extfile {name}.ext 2>/dev/null"
        ),
    );
}

/// Makes, in `dir`: two CAs (`ca`, `otherca`); `server` (signed by `ca`, for 127.0.0.1 and
/// localhost, also a peer's client certificate); `client` (signed by `ca`, common name `root`);
/// `stranger` (signed by `otherca`, also for 127.0.0.1).
pub fn make_certs(dir: &Path) -> Certs {
    for ca in ["ca", "otherca"] {
        sh(
            dir,
            &format!(
                "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {ca}.key \
                 -out {ca}.crt -days 2 -subj /CN={ca} 2>/dev/null"
            ),
        );
    }
    issue(dir, "ca", "server", "server", "IP:127.0.0.1,DNS:localhost");
    issue(dir, "ca", "client", "root", "");
    issue(dir, "otherca", "stranger", "server", "IP:127.0.0.1,DNS:localhost");
    Certs { dir: dir.to_path_buf() }
}
