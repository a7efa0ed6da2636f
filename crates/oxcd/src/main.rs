//! The `oxcd` binary: etcd's command line (flags, `ETCD_*` environment variables, or an
//! etcd-format YAML `--config-file`), logging, signals and graceful shutdown around one member.

mod flags;
mod logging;
mod rotate;

use std::path::Path;
use std::process::ExitCode;

use oxcd_server::ServerConfig;
use serde::Deserialize;

use crate::flags::{Command, Refusal};

/// Reads the configuration the way etcd does: a config file (from `--config-file` or
/// `ETCD_CONFIG_FILE`) replaces flags and variables; otherwise flags, then `ETCD_*` variables for
/// what the flags left. Returns it with the warnings to log once logging is up.
fn configure(set: Vec<(&'static flags::Flag, String)>) -> Result<(ServerConfig, Vec<String>), Refusal> {
    let file = set
        .iter()
        .rev()
        .find(|(f, _)| f.name == "config-file")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("ETCD_CONFIG_FILE").ok())
        .filter(|v| !v.is_empty());
    let (mut cfg, mut warnings) = match file {
        Some(path) => from_file(Path::new(&path))?,
        None => {
            let mut set = set;
            let env: Vec<(String, String)> = std::env::vars().collect();
            let mut warnings = flags::add_env(&mut set, &env)?;
            let (map, more) = flags::to_config(&set)?;
            warnings.extend(more);
            let cfg =
                ServerConfig::deserialize(serde_json::Value::Object(map)).map_err(|e| Refusal::check(e.to_string()))?;
            (cfg, warnings)
        }
    };
    cfg.apply_feature_gates().map_err(|e| Refusal::check(e.to_string()))?;
    match cfg.logger.as_str() {
        "zap" => {}
        "capnslog" => return Err(Refusal::check("--logger=capnslog is removed in v3.5")),
        other => return Err(Refusal::check(format!("unknown logger option {other:?}"))),
    }
    if logging::level(&cfg.log_level).is_none() {
        // etcd panics here (exit 2).
        return Err(Refusal { message: format!("unrecognized level: {:?}", cfg.log_level), code: 2 });
    }
    if !matches!(cfg.log_format.as_str(), "json" | "console") {
        return Err(Refusal::check(format!("unsupported log format: {}", cfg.log_format)));
    }
    if cfg.enable_distributed_tracing {
        let rate = cfg.distributed_tracing_sampling_rate;
        let problem = match rate {
            ..0 => Some("tracing sampling rate must be positive".to_string()),
            1_000_001.. => Some("tracing sampling rate must be less than 1000000".to_string()),
            _ => None,
        };
        if let Some(p) = problem {
            return Err(Refusal::check(format!("distributed tracing configurition is not valid: ({p})")));
        }
    }
    if cfg.enable_log_rotation {
        rotate::check_outputs(&cfg.log_outputs).map_err(Refusal::check)?;
    }
    if cfg.unsafe_no_fsync {
        warnings.push(
            "--unsafe-no-fsync is on: nothing is fsynced, a crash or power loss loses acknowledged writes".into(),
        );
    }
    Ok((cfg, warnings))
}

/// An etcd YAML configuration file (its keys are the flag names; TLS under
/// `client-transport-security` and `peer-transport-security`).
fn from_file(path: &Path) -> Result<(ServerConfig, Vec<String>), Refusal> {
    let text = std::fs::read_to_string(path).map_err(|e| Refusal::check(format!("open {}: {e}", path.display())))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| Refusal::check(e.to_string()))?;
    let warnings = match &doc {
        serde_yaml::Value::Mapping(m) => flags::check_yaml_keys(m)?,
        _ => Vec::new(),
    };
    let cfg: ServerConfig = serde_yaml::from_value(doc).map_err(|e| Refusal::check(e.to_string()))?;
    Ok((cfg, warnings))
}

/// Stops the start as etcd does: the parser's refusals (code 2) with the usage line, etcd's
/// checks' (code 1) as a "failed to verify flags" log line.
fn refuse(r: Refusal) -> ExitCode {
    if r.code == 2 {
        eprintln!("{}\nUsage:\n\n  oxcd [flags]\n\nRun 'oxcd --help' for the flags.", r.message);
    } else {
        eprintln!(
            "{{\"level\":\"warn\",\"caller\":\"oxcd/main.rs\",\"msg\":\"failed to verify flags\",\"error\":{}}}",
            serde_json::to_string(&r.message).unwrap_or_default()
        );
    }
    ExitCode::from(r.code as u8)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let set = match flags::parse_args(&args) {
        Ok(Command::Help) => {
            println!("{}", flags::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("etcd Version: {}", oxcd_server::grpc::SERVER_VERSION);
            println!("oxcd Version: {}", env!("CARGO_PKG_VERSION"));
            println!("Git SHA: {}", option_env!("OXCD_GIT_SHA").unwrap_or("unknown"));
            println!("Go Version: none (Rust)");
            println!("Go OS/Arch: {}/{}", std::env::consts::OS, go_arch());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(set)) => set,
        Err(r) => return refuse(r),
    };
    let (cfg, warnings) = match configure(set) {
        Ok(c) => c,
        Err(r) => return refuse(r),
    };
    let rotation = match cfg.enable_log_rotation {
        true => match rotate::RotationConfig::parse(&cfg.log_rotation_config_json) {
            Ok(r) => Some(r),
            Err(e) => return refuse(Refusal::check(e)),
        },
        false => None,
    };
    let outputs = match logging::Outputs::open(&cfg.log_outputs, rotation) {
        Ok(o) => o,
        Err(e) => return refuse(Refusal::check(format!("cannot open log output: {e}"))),
    };
    logging::init(&cfg.log_level, &cfg.log_format, outputs);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return refuse(Refusal::check(format!("cannot start the runtime: {e}"))),
    };
    return_freed_memory();
    runtime.block_on(run(cfg))
}

/// Hands the heap's free pages back to the system once a second (glibc's `malloc_trim`).
///
/// glibc keeps what its arenas freed: after a burst of 1000 clients, 15-20 MiB of free chunks
/// stay resident inside the heap until the next burst reuses them. Trimming costs a walk of the
/// free lists (well under a millisecond here) and, under steady load, the page faults of pages
/// reused soon after.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("oxcd-trim".into()).spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                // SAFETY: malloc_trim takes the arenas' own locks; it may run beside any allocation.
                unsafe { libc::malloc_trim(0) };
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread that returns freed memory");
        }
    }
}

/// Go's name for this machine's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn run(cfg: ServerConfig) -> ExitCode {
    // Failpoints named in FAILPOINTS (only in a build with the `failpoints` feature).
    let _failpoints = oxcd_fail::setup();
    let member = match oxcd_server::start(cfg).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "failed to start");
            return ExitCode::from(1);
        }
    };
    let server = member.server.clone();
    let server_for_exit = member.server.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        let mut int = signal(SignalKind::interrupt()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("received signal; shutting down");
        server.stop();
    });
    member.wait().await;
    if server_for_exit.has_failed() {
        tracing::error!("member stopped after a failure; exiting with status 1");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
