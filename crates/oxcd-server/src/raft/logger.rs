//! Routes raft-rs's slog records into `tracing`, under the `raft` target, as etcd writes its
//! Raft lines: the member's id in hex first (`8e9e05c52164694d became leader at term 2`), member
//! ids in hex wherever they appear.

use slog::{Drain, KV, OwnedKVList, Record};

/// A slog drain that re-emits each record as a tracing event.
pub struct TracingDrain;

/// The record's key-values (`raft_id` apart, it leads the line).
#[derive(Default)]
struct KvCollector {
    id: Option<String>,
    rest: String,
}

impl slog::Serializer for KvCollector {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let val = hex_ids(&val.to_string());
        if key == "raft_id" {
            self.id = Some(val);
        } else {
            let _ = write!(self.rest, " {key}={val}");
        }
        Ok(())
    }
}

/// `s` with every member id in hex. Member ids are random 64-bit numbers (etcd's are too), so
/// any number of 13 digits or more is one; terms, indexes and counts never get that large.
fn hex_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        match digits.parse::<u64>() {
            Ok(id) if digits.len() >= 13 => out.push_str(&format!("{id:x}")),
            _ => out.push_str(digits),
        }
        digits.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // Nothing is formatted for a level no one listens to: raft-rs logs every message it sends
        // at debug level with the whole message (entries and all) as a value, and formatting
        // that for nothing took the Raft thread's time for itself (a leader sending a follower
        // its log fell seconds behind on its heartbeats).
        let enabled = match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            slog::Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            slog::Level::Debug | slog::Level::Trace => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        };
        if !enabled {
            return Ok(());
        }
        let mut kv = KvCollector::default();
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = hex_ids(&record.msg().to_string());
        let line = match &kv.id {
            Some(id) => format!("{id} {msg}{}", kv.rest),
            None => format!("{msg}{}", kv.rest),
        };
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{line}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{line}"),
            slog::Level::Info => tracing::info!(target: "raft", "{line}"),
            slog::Level::Debug | slog::Level::Trace => tracing::debug!(target: "raft", "{line}"),
        }
        Ok(())
    }
}

/// The logger handed to raft-rs.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listens at info and above, and drops what it gets.
    struct AtInfo;

    impl tracing::Subscriber for AtInfo {
        fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
            *metadata.level() <= tracing::Level::INFO
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::INFO)
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// Counts how often it is formatted.
    struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl std::fmt::Debug for Counted {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            write!(f, "counted")
        }
    }

    #[test]
    fn nothing_is_formatted_for_a_level_no_one_listens_to() {
        let formatted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let logger = raft_logger();
        tracing::subscriber::with_default(AtInfo, || {
            slog::debug!(logger, "Sending from {from} to {to}", from = 1, to = 2; "msg" => ?Counted(formatted.clone()));
            assert_eq!(formatted.load(std::sync::atomic::Ordering::Relaxed), 0, "a debug record was formatted");
            slog::info!(logger, "became leader"; "msg" => ?Counted(formatted.clone()));
            assert_eq!(formatted.load(std::sync::atomic::Ordering::Relaxed), 1);
        });
    }

    #[test]
    fn member_ids_are_written_in_hex_and_small_numbers_stay() {
        assert_eq!(
            hex_ids("cast vote for 10276657743932975437 [logterm: 2, index: 17]"),
            "cast vote for 8e9e05c52164694d [logterm: 2, index: 17]"
        );
        assert_eq!(hex_ids("{1234567890123456, 7}"), "{462d53c8abac0, 7}");
        assert_eq!(hex_ids("term 99999999999 ok"), "term 99999999999 ok");
    }
}
