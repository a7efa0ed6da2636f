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
mod usage;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::error::ErrorKind;

use cli::{Cli, Cmd};
use error::{CtlError, EXIT_ERROR};
use printer::Printer;

/// Global flags that `ETCDCTL_<FLAG>` can set, and whether each is a switch.
const ENV_FLAGS: &[(&str, Option<char>, bool)] = &[
    ("endpoints", None, false),
    ("dial-timeout", None, false),
    ("command-timeout", None, false),
    ("keepalive-time", None, false),
    ("keepalive-timeout", None, false),
    ("insecure-transport", None, false),
    ("insecure-skip-tls-verify", None, true),
    ("cacert", None, false),
    ("cert", None, false),
    ("key", None, false),
    ("user", None, false),
    ("password", None, false),
    ("write-out", Some('w'), false),
    ("hex", None, true),
    ("debug", None, true),
];

/// The environment variable for a flag (`--dial-timeout` is `ETCDCTL_DIAL_TIMEOUT`).
fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// Adds the global flags set by environment variables to the command line (right after the program
/// name, so they never land in an exec command). A flag given both ways is fatal, as in etcdctl.
fn apply_env(mut argv: Vec<OsString>) -> Result<Vec<OsString>, CtlError> {
    let given = |name: &str, short: Option<char>| {
        argv.iter().take_while(|a| *a != "--").any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{name}")
                || a.starts_with(&format!("--{name}="))
                || short.is_some_and(|s| a == format!("-{s}") || a.starts_with(&format!("-{s}=")))
        })
    };
    let mut extra = Vec::new();
    for &(name, short, switch) in ENV_FLAGS {
        let Ok(value) = std::env::var(env_name(name)) else { continue };
        if given(name, short) {
            return Err(CtlError::new(
                EXIT_ERROR,
                format!(
                    "{{\"level\":\"fatal\",\"msg\":\"conflicting environment variable is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag))\",\
                     \"environment-variable\":\"{}\"}}",
                    env_name(name)
                ),
            ));
        }
        if switch {
            if matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True") {
                extra.push(OsString::from(format!("--{name}")));
            }
        } else {
            extra.push(OsString::from(format!("--{name}={value}")));
        }
    }
    let rest = argv.split_off(1.min(argv.len()));
    argv.extend(extra);
    argv.extend(rest);
    Ok(argv)
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
    if e.msg.starts_with('{') || e.msg.starts_with("panic:") {
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
    if !cli.global.discovery_srv.is_empty() {
        return fail(CtlError::new(EXIT_ERROR, "DNS SRV discovery (--discovery-srv) is not supported by oxcdctl"));
    }
    let mut p = Printer::new(cli.global.write_out, cli.global.hex);
    let result = run(cli, exec, &mut p).await;
    p.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
