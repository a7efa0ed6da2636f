//! The web console (`/ui`) in a real browser: headless Chromium driven by Selenium
//! (`clients/console_session.py`) against a three-member cluster with auth on. It logs in, browses
//! to a key through the prefix tree, reads it as JSON, YAML and hex, edits it and sees the new
//! revision and the diff, sees a put made by etcdctl in a live watch (then pauses, resumes and
//! filters it), deletes a prefix, reads a Kubernetes object's kind, leases and a held lock, revokes
//! the lease, pages through 100,000 keys, logs in as a user whose role reads one prefix and is
//! refused the rest, and sees a killed member marked down. Screenshots go to
//! `target/console-screenshots/`.

mod common;

use std::time::Duration;

use etcd_client::{LockOptions, PutOptions, Txn, TxnOp};
use serde_json::Value;

/// A Kubernetes object as the API server stores it: `k8s\0`, then a `runtime.Unknown` message
/// (field 1 its TypeMeta of apiVersion and kind, field 2 the object's own bytes).
fn k8s_object(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, n: u8, bytes: &[u8]) {
        out.push(n << 3 | 2);
        assert!(bytes.len() < 128, "one-byte lengths only");
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut meta = Vec::new();
    field(&mut meta, 1, api_version.as_bytes());
    field(&mut meta, 2, kind.as_bytes());
    let mut out = b"k8s\0".to_vec();
    field(&mut out, 1, &meta);
    field(&mut out, 2, raw);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium_against_three_members_with_auth_on() {
    let mut cl = common::cluster(3).await;
    let mut c = cl.client_all().await.unwrap();
    c.put("/app/config", r#"{"replicas":3,"image":"web:1"}"#, None).await.unwrap();
    c.put("/registry/deployments/default/web", k8s_object("apps/v1", "Deployment", b"\x0a\x03web"), None)
        .await
        .unwrap();
    for k in ["/tmp/a", "/tmp/b", "/tmp/c/d"] {
        c.put(k, "x", None).await.unwrap();
    }
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("/svc/a", "10.0.0.1", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let held = c.lock("jobs", Some(LockOptions::new().with_lease(lease))).await.unwrap();
    let held = String::from_utf8_lossy(held.key()).to_string();
    // 100,000 keys, 128 to a transaction (etcd's --max-txn-ops), four writers.
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = c.clone();
        writers.push(tokio::spawn(async move {
            for t in (w..100_000 / 128 + 1).step_by(4) {
                let ops: Vec<TxnOp> = (t * 128..((t + 1) * 128).min(100_000))
                    .map(|i| TxnOp::put(format!("/bulk/k{i:06}"), "v".repeat(64), None))
                    .collect();
                if !ops.is_empty() {
                    c.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    c.role_add("app-reader").await.unwrap();
    let perm = etcd_client::Permission::read("/app/").with_prefix();
    c.role_grant_permission("app-reader", perm).await.unwrap();
    c.user_add("viewer", "viewerpw", None).await.unwrap();
    c.user_grant_role("viewer", "app-reader").await.unwrap();
    c.user_add("root", "rootpw", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.auth_enable().await.unwrap();

    // The member the browser sees go down: the third, by its name in the member list.
    let victim = 2;
    let members = cl.client(0).await.unwrap().member_list().await.unwrap();
    let victim_name = members
        .members()
        .iter()
        .find(|m| m.client_urls().contains(&cl.client_url(victim)))
        .map(|m| m.name().to_string())
        .expect("the victim is listed");
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/console_session.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(cl.client_url(0))
        .arg(oxcd_testkit::ETCDCTL_34)
        .arg(cl.endpoint(0))
        .arg(cl.pid(victim).unwrap().to_string())
        .arg(&shots)
        .arg("root:rootpw")
        .arg("viewer:viewerpw")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), child).await.expect("the browser session ends").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser session failed:\n{stdout}\n{stderr}");
    let steps: std::collections::HashMap<String, Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|v| (v["step"].as_str().unwrap().to_string(), v))
        .collect();
    eprintln!("{stdout}");

    let cluster = &steps["cluster"];
    assert_eq!(cluster["members"], 3, "{cluster}");
    assert_eq!(cluster["leaders"], 1, "{cluster}");

    let browse = &steps["browse"];
    assert_eq!(browse["value"], serde_json::json!({"replicas": 3, "image": "web:1"}), "{browse}");
    assert_eq!(browse["pretty"], true, "{browse}");

    let edit = &steps["edit"];
    let rev = edit["revision"].as_i64().unwrap();
    assert!(rev > edit["previous"].as_i64().unwrap(), "{edit}");
    assert_eq!(edit["written"], format!("written at revision {rev}"), "{edit}");
    assert!(edit["confirm"].as_str().unwrap().contains("/app/config"), "{edit}");
    let diff = edit["diff"].as_array().unwrap();
    let has = |class: &str, text: &str| {
        diff.iter().any(|d| d[0].as_str() == Some(class) && d[1].as_str().unwrap().contains(text))
    };
    assert!(has("del", "\"replicas\": 3") && has("add", "\"replicas\": 5"), "{edit}");
    assert!(edit["history"][0].as_str().unwrap().starts_with(&rev.to_string()), "{edit}");
    // The browser's write is what every client reads.
    let now = c.get("/app/config", None).await;
    assert!(now.is_err(), "auth is on: a client without a user is refused");
    let root = etcd_client::ConnectOptions::new().with_user("root", "rootpw");
    let mut rc = etcd_client::Client::connect([cl.client_url(0)], Some(root)).await.unwrap();
    let kv = rc.get("/app/config", None).await.unwrap();
    let kv = &kv.kvs()[0];
    assert_eq!(kv.mod_revision(), rev);
    assert_eq!(kv.value(), br#"{"replicas": 5, "image": "web:2"}"#);

    let renderings = &steps["renderings"];
    assert!(renderings["yaml"].as_str().unwrap().contains("replicas: 5\nimage: web:2"), "{renderings}");
    assert!(renderings["hex"].as_str().unwrap().starts_with("00000000  7b 22 72 65"), "{renderings}");
    assert_eq!(steps["k8s"]["label"], "Kubernetes apps/v1 Deployment");
    let watch = steps["watch"]["seconds"].as_f64().unwrap();
    assert!(watch < 1.0, "the put reached the page after {watch} s");
    let w = &steps["watch"];
    assert!(w["held"].as_str().unwrap().starts_with("paused (1 held)"), "{w}");
    assert_eq!(w["while_paused"], serde_json::json!([]), "{w}");
    let only_deletes = w["only_deletes"].as_array().unwrap();
    assert!(!only_deletes.is_empty() && only_deletes.iter().all(|r| r.as_str().unwrap().contains("DELETE")), "{w}");
    let only_live = w["only_live"].as_array().unwrap();
    assert!(only_live.len() == 1 && only_live[0].as_str().unwrap().contains("/app/live"), "{w}");
    let del = &steps["delete-prefix"];
    assert_eq!(del["confirm"], "Delete 3 keys under \"/tmp/\"?", "{del}");
    assert!(del["result"].as_str().unwrap().starts_with("3 deleted at revision "), "{del}");
    let leases = steps["leases"]["rows"].to_string();
    assert!(leases.contains(&format!("{lease:x}")) && leases.contains("/svc/a"), "{leases}");
    let locks = steps["locks"]["cards"].to_string();
    assert!(locks.contains("jobs") && locks.contains("holds") && locks.contains(&held), "{locks}");

    let revoke = &steps["revoke"];
    assert!(revoke["confirm"].as_str().unwrap().contains(&format!("{lease:x}")), "{revoke}");
    assert!(revoke["result"].as_str().unwrap().starts_with("revoked at revision "), "{revoke}");
    let gone = rc.get("/svc/a", None).await.unwrap();
    assert_eq!(gone.count(), 0, "the revoked lease's key is deleted");

    let bulk = &steps["bulk"];
    assert_eq!(bulk["entries"], 50, "{bulk}");
    assert_eq!(bulk["first"], "k000000", "{bulk}");
    assert_eq!(bulk["second"], "k000050", "{bulk}");
    eprintln!(
        "100,000 keys: first render {:.1} ms after navigation, listing {:.1} ms",
        bulk["first_render_ms"].as_f64().unwrap(),
        bulk["listing_ms"].as_f64().unwrap()
    );

    let viewer = &steps["viewer"];
    assert_eq!(viewer["allowed"], serde_json::json!({"replicas": 5, "image": "web:2"}), "{viewer}");
    assert_eq!(viewer["denied"], "etcdserver: permission denied", "{viewer}");

    assert_eq!(steps["down"]["members"], serde_json::json!([victim_name]));
    cl.wait_exit(victim, Duration::from_secs(5)).await;
}

/// The console's page and assets, their headers, the redirect from `/ui`, its API under `/ui/v3/`
/// while the gateway is off; `--enable-console=false` takes all of it away (404, as any unknown
/// path); and with TLS and client certificates on the client port the console needs them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_from_the_client_port_unless_turned_off() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    let opts = oxcd_testkit::ClusterOptions {
        size: 1,
        extra_args: args(&["--enable-grpc-gateway=false"]),
        ..Default::default()
    };
    let cl = common::cluster_with(opts).await;
    let port: u16 = cl.endpoint(0).rsplit_once(':').unwrap().1.parse().unwrap();
    let page = common::http_get(port, "/ui/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-type: text/html; charset=utf-8"), "{page}");
    assert!(page.contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("<script src=\"app.js\" defer></script>"), "{page}");
    for (path, kind) in [("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let asset = common::http_get(port, path).await;
        assert!(asset.starts_with("HTTP/1.1 200") && asset.contains(kind), "{path}: {asset}");
    }
    let redirect = common::http_get(port, "/ui").await;
    assert!(redirect.starts_with("HTTP/1.1 308") && redirect.contains("location: /ui/"), "{redirect}");
    // The gateway is off, the console's API is not.
    let off = common::http_get(port, "/v3/kv/range").await;
    assert!(off.starts_with("HTTP/1.1 404"), "{off}");
    let c = common::http_post(port, "/ui/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#).await;
    assert!(c.starts_with("HTTP/1.1 200") && c.contains("\"revision\":\"2\""), "{c}");
    drop(cl);

    let opts =
        oxcd_testkit::ClusterOptions { size: 1, extra_args: args(&["--enable-console=false"]), ..Default::default() };
    let cl = common::cluster_with(opts).await;
    let port: u16 = cl.endpoint(0).rsplit_once(':').unwrap().1.parse().unwrap();
    for path in ["/ui/", "/ui", "/ui/app.js"] {
        let r = common::http_get(port, path).await;
        assert!(r.starts_with("HTTP/1.1 404") && r.ends_with("404 page not found\n"), "{path}: {r}");
    }
    drop(cl);

    // With TLS and client certificates on the client port, so is the console.
    let dir = tempfile::tempdir().unwrap();
    let certs = oxcd_testkit::tls::make_certs(dir.path());
    let opts = oxcd_testkit::ClusterOptions { size: 1, tls: Some(certs.clone()), ..Default::default() };
    let cl = common::cluster_with(opts).await;
    let url = format!("{}/ui/", cl.client_url(0));
    assert!(url.starts_with("https://"), "{url}");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let (ca, cert, key) = (certs.file("ca.crt"), certs.file("client.crt"), certs.file("client.key"));
    assert_eq!(curl(&["--cacert", &ca, "--cert", &cert, "--key", &key]), "200");
    assert_eq!(curl(&["--cacert", &ca]), "000", "no client certificate, no page");
}
