//! The binary's configuration surface, through real processes: etcd's flag names, `ETCD_*`
//! environment variables, an etcd-format YAML `--config-file`, the `${name}.oxcd` data directory
//! default, refusal of invalid settings, and SIGTERM shutdown.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxcd_testkit::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_oxcd");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn member_name(client_port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = etcd_client::Client::connect([format!("127.0.0.1:{client_port}")], None).await
            && c.put("k", "v", None).await.is_ok()
        {
            // The name is published through Raft just after start; wait for it.
            let ms = c.member_list().await.unwrap();
            let name = ms.members()[0].name().to_string();
            if !name.is_empty() {
                return name;
            }
        }
        assert!(Instant::now() < deadline, "member on port {client_port} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn environment_variables_configure_the_member_and_data_dir_defaults_to_name_dot_oxcd() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, pp) = (free_port(), free_port());
    let child = Command::new(BIN)
        .current_dir(dir.path())
        .env("ETCD_NAME", "envy")
        .env("ETCD_LISTEN_CLIENT_URLS", format!("http://127.0.0.1:{cp}"))
        .env("ETCD_ADVERTISE_CLIENT_URLS", format!("http://127.0.0.1:{cp}"))
        .env("ETCD_LISTEN_PEER_URLS", format!("http://127.0.0.1:{pp}"))
        .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", format!("http://127.0.0.1:{pp}"))
        .env("ETCD_HEARTBEAT_INTERVAL", "50")
        .env("ETCD_ELECTION_TIMEOUT", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _p = Proc(child);
    assert_eq!(member_name(cp).await, "envy");
    assert!(dir.path().join("envy.oxcd/member/wal").is_dir());
    assert!(dir.path().join("envy.oxcd/member/snap/db").is_file());
}

#[tokio::test]
async fn a_yaml_config_file_in_etcds_format_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, pp) = (free_port(), free_port());
    let data = dir.path().join("data");
    let yaml = format!(
        "name: from-file\ndata-dir: {}\nlisten-client-urls: http://127.0.0.1:{cp}\nadvertise-client-urls: http://127.0.0.1:{cp}\n\
         listen-peer-urls: http://127.0.0.1:{pp}\ninitial-advertise-peer-urls: http://127.0.0.1:{pp}\n\
         initial-cluster: from-file=http://127.0.0.1:{pp}\ninitial-cluster-state: new\nheartbeat-interval: 50\nelection-timeout: 500\n",
        data.display()
    );
    let file = dir.path().join("oxcd.yaml");
    std::fs::write(&file, yaml).unwrap();
    let child =
        Command::new(BIN).arg("--config-file").arg(&file).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let _p = Proc(child);
    assert_eq!(member_name(cp).await, "from-file");
    assert!(data.join("member/wal").is_dir());
}

#[test]
fn invalid_settings_are_refused_with_etcds_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--heartbeat-interval", "100", "--election-timeout", "300"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
        "{err}"
    );
    let out = Command::new(BIN).current_dir(dir.path()).arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_member_cleanly_and_it_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, pp) = (free_port(), free_port());
    let args = [
        "-name".to_string(), // Go-style single dash, as etcd accepts
        "solo".into(),
        "--listen-client-urls".into(),
        format!("http://127.0.0.1:{cp}"),
        "--advertise-client-urls".into(),
        format!("http://127.0.0.1:{cp}"),
        "--listen-peer-urls".into(),
        format!("http://127.0.0.1:{pp}"),
        "--initial-advertise-peer-urls".into(),
        format!("http://127.0.0.1:{pp}"),
    ];
    let spawn = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    assert_eq!(member_name(cp).await, "solo");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let _p = Proc(spawn());
    assert_eq!(member_name(cp).await, "solo");
    let mut c = etcd_client::Client::connect([format!("127.0.0.1:{cp}")], None).await.unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value_str().unwrap(), "v");
}

#[tokio::test]
async fn a_taken_client_port_stops_the_member_and_the_test_cluster_sees_it_at_once() {
    use oxcd_testkit::{Binary, Cluster, ClusterOptions};
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let opts = ClusterOptions { ports: vec![(port, free_port())], ..Default::default() };
    let started = Instant::now();
    let err = match Cluster::start(Binary::Oxcd(BIN.into()), opts).await {
        Ok(_) => panic!("a member started on a port another socket holds"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("exited before it was ready"), "{err}");
    assert!(err.to_ascii_lowercase().contains("address already in use"), "{err}");
    // Not the 30 s readiness timeout: the harness saw the process end.
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}
