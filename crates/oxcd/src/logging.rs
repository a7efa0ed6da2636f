//! The member's log: etcd 3.5's zap lines by default (one JSON object a line: `level`, `ts`,
//! `caller`, `msg`, then the event's fields), or plain text (`--log-format console`, coloured only
//! on a terminal), written to `--log-outputs` (`default`/`stderr`, `stdout`, or files, one of which may rotate:
//! [`crate::rotate`]).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::rotate::{Rotating, RotationConfig};

/// etcd's `--log-level` names, as tracing's levels (`panic` and `fatal` log errors only).
pub fn level(name: &str) -> Option<&'static str> {
    Some(match name {
        "debug" => "debug",
        "info" => "info",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => return None,
    })
}

/// Where log lines go: every output of `--log-outputs`.
#[derive(Clone)]
pub struct Outputs(Arc<Vec<Output>>);

enum Output {
    Stderr,
    Stdout,
    File(Mutex<File>),
    Rotating(Mutex<Rotating>),
}

impl Outputs {
    /// Opens `--log-outputs` (files are appended to, created if missing; rotated when `rotation`
    /// is given, which [`crate::rotate::check_outputs`] allows for one file only).
    pub fn open(names: &[String], rotation: Option<RotationConfig>) -> std::io::Result<Outputs> {
        let mut out = Vec::new();
        for n in names {
            out.push(match (n.as_str(), &rotation) {
                ("default" | "stderr", _) => Output::Stderr,
                ("stdout", _) => Output::Stdout,
                (path, Some(cfg)) => Output::Rotating(Mutex::new(Rotating::open(Path::new(path), cfg.clone())?)),
                (path, None) => Output::File(Mutex::new(OpenOptions::new().create(true).append(true).open(path)?)),
            });
        }
        Ok(Outputs(Arc::new(out)))
    }

    /// Whether every output is a terminal (then console lines may be coloured).
    fn terminal(&self) -> bool {
        self.0.iter().all(|o| match o {
            Output::Stderr => std::io::stderr().is_terminal(),
            Output::Stdout => std::io::stdout().is_terminal(),
            Output::File(_) | Output::Rotating(_) => false,
        })
    }
}

/// One line handed to every output.
pub struct Line(Outputs, Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // Whole lines, so that concurrent events never interleave.
        for o in self.0.0.iter() {
            let _ = match o {
                Output::Stderr => std::io::stderr().write_all(&self.1),
                Output::Stdout => std::io::stdout().write_all(&self.1),
                Output::File(f) => f.lock().map(|mut f| f.write_all(&self.1)).unwrap_or(Ok(())),
                Output::Rotating(f) => f.lock().map(|mut f| f.write_line(&self.1)).unwrap_or(Ok(())),
            };
        }
    }
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(self.clone(), Vec::with_capacity(256))
    }
}

/// zap's JSON encoder as etcd configures it.
pub struct Zap;

impl<S, N> FormatEvent<S, N> for Zap
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields { msg: String::new(), rest: String::new() };
        event.record(&mut fields);
        let level = meta.level().as_str().to_ascii_lowercase();
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", short_path(f)),
            _ => meta.target().to_string(),
        };
        // Raft's own lines, as etcd's zap logger names them.
        let logger = if meta.target() == "raft" { ",\"logger\":\"raft\"" } else { "" };
        write!(
            w,
            "{{\"level\":{},\"ts\":{}{logger},\"caller\":{},\"msg\":{}{}}}",
            json(&level),
            json(&timestamp()),
            json(&caller),
            json(&fields.msg),
            fields.rest
        )?;
        writeln!(w)
    }
}

/// zap's `caller`: the last two parts of the source path (`apply/mod.rs:149`).
fn short_path(path: &str) -> &str {
    let mut cut = path.len();
    for _ in 0..2 {
        match path[..cut].rfind('/') {
            Some(p) => cut = p,
            None => return path,
        }
    }
    &path[cut + 1..]
}

/// zap's ISO-8601 time in UTC with milliseconds (`2026-12-06T02:48:31.640Z`).
fn timestamp() -> String {
    date_time(time::OffsetDateTime::now_utc(), ':') + "Z"
}

/// `2026-12-06T02:48:31.640` with `sep` between hours, minutes and seconds (lumberjack's backup
/// names use `-`).
pub fn date_time(t: time::OffsetDateTime, sep: char) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}{sep}{:02}{sep}{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The event's message and its other fields as `,"key":value` pairs.
struct Fields {
    msg: String,
    rest: String,
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.msg = serde_json::from_str::<String>(&value).unwrap_or(value);
        } else {
            self.rest.push(',');
            // etcd's field names are kebab-case (`expected-duration`, `local-member-id`).
            self.rest.push_str(&json(&field.name().replace('_', "-")));
            self.rest.push(':');
            self.rest.push_str(&value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, json(&format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, json(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, if value.is_finite() { value.to_string() } else { json(&value.to_string()) });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, json(&value.to_string()));
    }
}

/// Installs the logger: `level` is a `--log-level` (already checked), `format` `json` or
/// `console`. `OXCD_LOG` (a tracing filter) overrides the level, per module.
pub fn init(level_name: &str, format: &str, outputs: Outputs) {
    let level = level(level_name).unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},raft={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "console" {
        let ansi = outputs.terminal();
        builder.with_writer(outputs).with_ansi(ansi).init();
    } else {
        builder.event_format(Zap).with_writer(outputs).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_the_last_two_path_parts() {
        assert_eq!(short_path("crates/oxcd-server/src/apply/mod.rs"), "apply/mod.rs");
        assert_eq!(short_path("main.rs"), "main.rs");
        assert_eq!(short_path("src/main.rs"), "src/main.rs");
    }

    #[test]
    fn zap_timestamps_are_utc_with_milliseconds() {
        let t = timestamp();
        assert_eq!(t.len(), "2026-12-06T02:48:31.640Z".len(), "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
