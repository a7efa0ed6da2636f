//! `oxcdctl`: etcdctl's commands, flags, environment variables and output formats, so scripts
//! written for etcdctl work by changing the program name, against oxcd and against etcd.

mod cli;
mod client;
mod cmd;
mod error;
mod gojson;
mod printer;
mod prompt;
mod table;
mod tls;
mod usage;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;

use cli::{Cli, Cmd};
use error::{CtlError, EXIT_ERROR};
use printer::Printer;

/// Global flags that `ETCDCTL_<FLAG>` can set: name, shorthand, whether it is a switch.
const ENV_FLAGS: &[(&str, Option<char>, bool)] = &[
    ("cacert", None, false),
    ("cert", None, false),
    ("command-timeout", None, false),
    ("debug", None, true),
    ("dial-timeout", None, false),
    ("discovery-srv", Some('d'), false),
    ("discovery-srv-name", None, false),
    ("endpoints", None, false),
    ("hex", None, true),
    ("insecure-discovery", None, false),
    ("insecure-skip-tls-verify", None, true),
    ("insecure-transport", None, false),
    ("keepalive-time", None, false),
    ("keepalive-timeout", None, false),
    ("key", None, false),
    ("password", None, false),
    ("user", None, false),
    ("write-out", Some('w'), false),
];

/// The environment variable for a flag (`--dial-timeout` is `ETCDCTL_DIAL_TIMEOUT`).
fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// capnslog's line prefix: local time to the microsecond and a level letter.
fn capnslog(level: char) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r fills the zeroed struct from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06} {level} | ",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros()
    )
}

/// Whether an environment value parses for a flag (etcdctl silently ignores one that does not).
fn env_value_ok(name: &str, value: &str) -> bool {
    match name {
        "command-timeout" | "dial-timeout" | "keepalive-time" | "keepalive-timeout" => {
            oxcd_api::duration::parse(value).is_ok()
        }
        "insecure-discovery" | "insecure-transport" => {
            matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True" | "0" | "f" | "F" | "false" | "FALSE" | "False")
        }
        _ => true,
    }
}

/// Applies `ETCDCTL_*` variables to the global flags (and `endpoint`'s `--cluster`), as
/// etcdctl does for commands that build a client: a non-empty value sets a flag not given on the
/// command line; a flag given both ways is fatal; an unknown `ETCDCTL_*` variable gets a warning.
/// The flags go right after the program name, so they never land in an exec command.
fn apply_env(mut argv: Vec<OsString>) -> Result<Vec<OsString>, CtlError> {
    let args: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let path = usage::command_path(&command(), &args);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    if matches!(path.as_slice(), ["version"] | ["snapshot", "status"] | ["completion"]) {
        return Ok(argv);
    }
    let mut flags: Vec<(&str, Option<char>, bool)> = ENV_FLAGS.to_vec();
    if path.first() == Some(&"endpoint") {
        flags.push(("cluster", None, true));
    }
    let given = |name: &str, short: Option<char>| {
        args.iter().take_while(|a| *a != "--").any(|a| {
            *a == format!("--{name}")
                || a.starts_with(&format!("--{name}="))
                || short.is_some_and(|s| *a == format!("-{s}") || a.starts_with(&format!("-{s}=")))
        })
    };
    let mut extra = Vec::new();
    for &(name, short, switch) in &flags {
        let Ok(value) = std::env::var(env_name(name)) else { continue };
        if given(name, short) {
            eprintln!(
                "{}pkg/flags: conflicting environment variable {} is shadowed by corresponding command-line flag \
                 (either unset environment variable or disable flag)",
                capnslog('C'),
                gojson::quote(&env_name(name))
            );
            return Err(CtlError::silent(EXIT_ERROR));
        }
        if value.is_empty() || !env_value_ok(name, &value) {
            continue;
        }
        if switch {
            if matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True") {
                extra.push(OsString::from(format!("--{name}")));
            }
        } else {
            extra.push(OsString::from(format!("--{name}={value}")));
        }
    }
    let mut known: Vec<String> = flags.iter().map(|f| env_name(f.0)).collect();
    known.extend(["ETCDCTL_API".to_string()]);
    if path.first() == Some(&"watch") {
        known.extend(["ETCDCTL_WATCH_KEY".to_string(), "ETCDCTL_WATCH_RANGE_END".to_string()]);
    }
    for (k, v) in std::env::vars() {
        if k.starts_with("ETCDCTL_") && !known.contains(&k) {
            eprintln!("{}pkg/flags: unrecognized environment variable {k}={v}", capnslog('W'));
        }
    }
    let rest = argv.split_off(1.min(argv.len()));
    argv.extend(extra);
    argv.extend(rest);
    Ok(argv)
}

/// `--debug`: every global flag as `ETCDCTL_<NAME>=<value>` on stderr, as etcdctl prints them.
fn debug_dump(g: &cli::Global) {
    let d = |d: std::time::Duration| oxcd_api::duration::format(d);
    let lines = [
        ("cacert", g.cacert.clone()),
        ("cert", g.cert.clone()),
        ("command-timeout", d(g.command_timeout)),
        ("debug", g.debug.to_string()),
        ("dial-timeout", d(g.dial_timeout)),
        ("discovery-srv", g.discovery_srv.clone()),
        ("discovery-srv-name", g.discovery_srv_name.clone()),
        ("endpoints", format!("[{}]", g.endpoints.join(","))),
        ("hex", g.hex.to_string()),
        ("insecure-discovery", g.insecure_discovery.to_string()),
        ("insecure-skip-tls-verify", g.insecure_skip_tls_verify.to_string()),
        ("insecure-transport", g.insecure_transport.to_string()),
        ("keepalive-time", d(g.keepalive_time)),
        ("keepalive-timeout", d(g.keepalive_timeout)),
        ("key", g.key.clone()),
        ("password", g.password.clone()),
        ("user", g.user.clone()),
        ("write-out", g.write_out.clone()),
    ];
    for (name, value) in lines {
        eprintln!("{}={value}", env_name(name));
    }
}

/// `watch [key] [range_end] -- cmd ...`: the exec command is everything after `--`, which clap
/// would otherwise merge into the positional arguments.
fn split_exec(argv: &mut Vec<OsString>) -> Option<Vec<String>> {
    let watch = argv.iter().position(|a| a == "watch")?;
    let dash = argv.iter().skip(watch).position(|a| a == "--")? + watch;
    let exec: Vec<String> =
        argv.split_off(dash).into_iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    Some(exec)
}

/// The command tree, with cobra's prefix matching on every level.
fn command() -> clap::Command {
    fn infer(c: clap::Command) -> clap::Command {
        let c = c.infer_subcommands(true).disable_help_subcommand(true);
        let names: Vec<String> = c.get_subcommands().map(|s| s.get_name().to_string()).collect();
        names.into_iter().fold(c, |c, n| c.mut_subcommand(n, infer))
    }
    infer(<Cli as clap::CommandFactory>::command())
}

/// cobra's text for a bad flag value: `invalid argument "x" for "--limit" flag: ...`.
fn invalid_value(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let get = |k| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let flag = get(ContextKind::InvalidArg);
    let flag = flag.split([' ', '=']).next().unwrap_or_default().to_string();
    let flag = match flag.strip_prefix('-') {
        Some(s) if !s.starts_with('-') => format!("-{s}"),
        _ => flag,
    };
    let value = get(ContextKind::InvalidValue);
    let reason = match flag.as_str() {
        "--dial-timeout" | "--command-timeout" | "--keepalive-time" | "--keepalive-timeout" => {
            format!("time: invalid duration {}", gojson::quote(&value))
        }
        "--limit" | "--rev" | "--ttl" => format!("strconv.ParseInt: parsing {}: invalid syntax", gojson::quote(&value)),
        _ => format!("strconv.ParseBool: parsing {}: invalid syntax", gojson::quote(&value)),
    };
    format!("invalid argument {} for {} flag: {reason}", gojson::quote(&value), gojson::quote(&flag))
}

/// What cobra does with a command line it cannot parse: help and bare parent commands print the
/// usage (exit 0); an unknown top-level command or a bad flag is an error (exit 1), the flag error
/// with the usage on stdout.
fn usage_error(e: &clap::Error, argv: &[String]) -> Result<(), CtlError> {
    let root = command();
    let path = usage::command_path(&root, argv);
    let usage = || usage::render(&root, &path);
    let print_usage = || {
        print!("{}", usage());
        let _ = std::io::Write::flush(&mut std::io::stdout());
    };
    let twice = |msg: String| CtlError::new(EXIT_ERROR, format!("{msg}\n\nError: {msg}"));
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            print_usage();
            Ok(())
        }
        ErrorKind::InvalidSubcommand if !path.is_empty() => {
            print_usage();
            Ok(())
        }
        ErrorKind::InvalidSubcommand => {
            let name = match e.get(clap::error::ContextKind::InvalidSubcommand) {
                Some(clap::error::ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let msg = format!("unknown command {} for \"oxcdctl\"", gojson::quote(&name));
            Err(CtlError::new(EXIT_ERROR, format!("{msg}\nRun 'oxcdctl --help' for usage.\nError: {msg}")))
        }
        ErrorKind::UnknownArgument => {
            let arg = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            print_usage();
            let msg = match arg.strip_prefix("--") {
                Some(long) => format!("unknown flag: --{}", long.split('=').next().unwrap_or(long)),
                None => {
                    let c = arg.trim_start_matches('-').chars().next().unwrap_or('-');
                    format!("unknown shorthand flag: '{c}' in {arg}")
                }
            };
            Err(twice(msg))
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            print_usage();
            Err(twice(invalid_value(e)))
        }
        _ => Err(CtlError::new(
            EXIT_ERROR,
            e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string(),
        )),
    }
}

async fn run(cli: Cli, exec: Option<Vec<String>>, p: &mut Printer) -> error::Result<()> {
    let g = &cli.global;
    match cli.cmd {
        Cmd::Get(a) => cmd::kv::get(g, p, a).await,
        Cmd::Put(a) => cmd::kv::put(g, p, a).await,
        Cmd::Del(a) => cmd::kv::del(g, p, a).await,
        Cmd::Txn { interactive, args } => cmd::txn::run(g, p, interactive, &args).await,
        Cmd::Compaction { physical, args } => cmd::kv::compaction(g, p, physical, &args).await,
        Cmd::Watch(mut a) => {
            a.exec = exec;
            cmd::watch::run(g, p, a).await
        }
        Cmd::Lease { cmd } => cmd::lease::run(g, p, cmd).await,
        Cmd::Member { cmd } => cmd::member::run(g, p, cmd).await,
        Cmd::Endpoint { cluster, cmd } => cmd::endpoint::run(g, p, cluster, cmd).await,
        Cmd::Alarm { cmd } => cmd::maintenance::alarm(g, p, cmd).await,
        Cmd::Defrag { cluster, data_dir, args } => cmd::maintenance::defrag(g, p, cluster, &data_dir, &args).await,
        Cmd::Snapshot { cmd } => cmd::snapshot::run(g, p, cmd).await,
        Cmd::MoveLeader { args } => cmd::maintenance::move_leader(g, p, &args).await,
        Cmd::Lock { ttl, args } => cmd::concurrency::lock(g, p, ttl, &args).await,
        Cmd::Elect { listen, args } => cmd::concurrency::elect(g, p, listen, &args).await,
        Cmd::Auth { cmd } => cmd::auth::auth(g, p, cmd).await,
        Cmd::User { cmd } => cmd::auth::user(g, p, cmd).await,
        Cmd::Role { cmd } => cmd::auth::role(g, p, cmd).await,
        Cmd::Check { cmd } => cmd::check::run(g, p, cmd).await,
        Cmd::MakeMirror(a) => cmd::mirror::run(g, p, a).await,
        Cmd::Version { .. } => {
            printer::outln!(p, "oxcdctl version: {}", env!("CARGO_PKG_VERSION"));
            printer::outln!(p, "API version: 3.4");
            Ok(())
        }
        Cmd::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "oxcdctl", &mut p.out);
            Ok(())
        }
    }
}

fn fail(e: CtlError) -> ExitCode {
    if e.silent {
        // Already reported.
    } else if e.msg.starts_with("panic:") {
        eprintln!("{}", e.msg);
    } else {
        eprintln!("Error: {}", e.msg);
    }
    ExitCode::from(e.code as u8)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut argv = match apply_env(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let exec = split_exec(&mut argv);
    let parsed =
        command().try_get_matches_from(&argv).and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
            return match usage_error(&e, &argv) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            };
        }
    };
    // `--cert ""` (given, but empty) is refused before anything else, as etcdctl does.
    for name in ["cert", "key", "cacert"] {
        let flag = format!("--{name}");
        let empty = argv.windows(2).any(|w| w[0] == flag.as_str() && w[1].is_empty())
            || argv.iter().any(|a| *a == format!("{flag}=").as_str());
        if empty {
            return fail(CtlError::bad_args(format!("empty string is passed to {flag} option")));
        }
    }
    if !cli.global.discovery_srv.is_empty() {
        return fail(CtlError::new(EXIT_ERROR, "DNS SRV discovery (--discovery-srv) is not supported by oxcdctl"));
    }
    if cli.global.debug {
        debug_dump(&cli.global);
    }
    let format = match cli.global.write_out.as_str() {
        "simple" => printer::Format::Simple,
        "json" => printer::Format::Json,
        "fields" => printer::Format::Fields,
        "protobuf" => printer::Format::Protobuf,
        "table" => printer::Format::Table,
        _ if matches!(cli.cmd, Cmd::Version { .. }) => printer::Format::Simple,
        _ => return fail(CtlError::new(error::EXIT_BAD_FEATURE, "unsupported output format")),
    };
    let mut p = Printer::new(format, cli.global.hex);
    let result = run(cli, exec, &mut p).await;
    p.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
