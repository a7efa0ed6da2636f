//! `--enable-log-rotation`: the log file rotated as etcd rotates it (etcd uses lumberjack), with
//! the same `--log-rotation-config-json` settings and the same file names, so that log shippers
//! and clean-up jobs written for etcd find what they expect.
//!
//! - A line that would take the file past `maxsize` MiB (default 100) first renames the file to
//!   `<name>-<UTC time 2006-01-02T15-04-05.000><ext>` beside it (local time with `localtime`) and
//!   starts a new one. A file already that large at start is rotated at the first line.
//! - After a rotation, a background thread removes the backups beyond the newest `maxbackups`
//!   (0: keep all) and those older than `maxage` days (0: keep all), then gzips the remaining
//!   backups to `<backup>.gz` when `compress` is set.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

const MIB: u64 = 1024 * 1024;
/// Backup time stamps, Go's `2006-01-02T15-04-05.000`: fixed width, so names sort by time.
const STAMP_LEN: usize = "2006-01-02T15-04-05.000".len();

/// `--log-rotation-config-json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationConfig {
    /// MiB a file may reach before it is rotated (0: 100).
    pub max_size: u64,
    /// Days a backup is kept (0: no limit).
    pub max_age: u64,
    /// Backups kept (0: no limit).
    pub max_backups: usize,
    /// Name backups by local time instead of UTC.
    pub local_time: bool,
    /// Gzip backups.
    pub compress: bool,
}

impl RotationConfig {
    /// Reads the JSON as Go's encoding/json reads it into etcd's struct (field names match
    /// case-insensitively, unknown fields are ignored), with etcd's error words. Negative numbers,
    /// which etcd accepts and then fails every log write on, are refused.
    pub fn parse(text: &str) -> Result<RotationConfig, String> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("improperly formatted log rotation config: {e}"))?;
        let Value::Object(map) = doc else {
            return Err(format!(
                "invalid log rotation config: json: cannot unmarshal {} into Go value of type embed.logRotationConfig",
                go_kind(&doc)
            ));
        };
        let mut cfg = RotationConfig { max_size: 0, max_age: 0, max_backups: 0, local_time: false, compress: false };
        for (key, value) in &map {
            let field = key.to_ascii_lowercase();
            let int = |v: &Value| -> Result<u64, String> {
                if let Some(n) = v.as_u64() {
                    return Ok(n);
                }
                if v.as_i64().is_some() {
                    return Err(format!("invalid log rotation config: {field} must not be negative"));
                }
                Err(type_error(&field, v, "int"))
            };
            match field.as_str() {
                "maxsize" => cfg.max_size = int(value)?,
                "maxage" => cfg.max_age = int(value)?,
                "maxbackups" => cfg.max_backups = int(value)? as usize,
                "localtime" => cfg.local_time = value.as_bool().ok_or_else(|| type_error(&field, value, "bool"))?,
                "compress" => cfg.compress = value.as_bool().ok_or_else(|| type_error(&field, value, "bool"))?,
                _ => {}
            }
        }
        Ok(cfg)
    }

    fn max_bytes(&self) -> u64 {
        if self.max_size == 0 { 100 * MIB } else { self.max_size.saturating_mul(MIB) }
    }
}

fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_error(field: &str, v: &Value, want: &str) -> String {
    format!(
        "invalid log rotation config: json: cannot unmarshal {} into Go struct field logRotationConfig.{field} of type {want}",
        go_kind(v)
    )
}

/// etcd's check of `--log-outputs` when rotation is on: one file at most, and not only
/// stderr/stdout.
pub fn check_outputs(outputs: &[String]) -> Result<(), String> {
    let files = outputs.iter().filter(|o| !matches!(o.as_str(), "default" | "stderr" | "stdout")).count();
    if (outputs.len() == 1 && files == 0) || files > 1 {
        return Err("--log-outputs requires a single file path when --log-rotate-config-json is defined".into());
    }
    Ok(())
}

/// A log file that rotates itself.
pub struct Rotating {
    path: PathBuf,
    cfg: RotationConfig,
    file: File,
    size: u64,
    /// The offset of backup names' times: UTC, or the local offset read at open (it can only be
    /// read while the process has one thread).
    offset: time::UtcOffset,
    /// Wakes the thread that removes and compresses backups.
    mill: mpsc::Sender<()>,
    /// No line written yet: a file that is exactly full rotates too (lumberjack's `>=` at open).
    first: bool,
}

impl Rotating {
    /// Opens (appends to) the file at `path`, creating it (and its directory) if missing; the
    /// backups are cleaned up at once, as lumberjack does on its first write.
    pub fn open(path: &Path, cfg: RotationConfig) -> io::Result<Rotating> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        let offset = match cfg.local_time {
            true => time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC),
            false => time::UtcOffset::UTC,
        };
        let (to_mill, wake) = mpsc::channel::<()>();
        let (p, c) = (path.to_path_buf(), cfg.clone());
        std::thread::Builder::new().name("log-mill".into()).spawn(move || {
            while wake.recv().is_ok() {
                while wake.try_recv().is_ok() {}
                mill(&p, &c, SystemTime::now());
            }
        })?;
        let _ = to_mill.send(());
        Ok(Rotating { path: path.to_path_buf(), cfg, file, size, offset, mill: to_mill, first: true })
    }

    /// Writes one whole line, rotating first if it would take the file past its size.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        let max = self.cfg.max_bytes();
        if len > max {
            return Err(io::Error::other(format!("write length {len} exceeds maximum file size {max}")));
        }
        let first = std::mem::take(&mut self.first);
        if self.size + len > max || (first && self.size + len >= max) {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        match std::fs::rename(&self.path, backup_name(&self.path, SystemTime::now(), self.offset)) {
            // Someone moved or removed the file: start a new one all the same.
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.file = open_log(&self.path)?;
        self.size = 0;
        let _ = self.mill.send(());
        Ok(())
    }
}

/// Opens the log file for appending; a new one gets lumberjack's mode, 0600.
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// `<dir>/<stem>-<stamp><ext>` for the log file `path` at `now`.
fn backup_name(path: &Path, now: SystemTime, offset: time::UtcOffset) -> PathBuf {
    let (stem, ext) = split(path);
    let stamp = crate::logging::date_time(time::OffsetDateTime::from(now).to_offset(offset), '-');
    path.with_file_name(format!("{stem}-{stamp}{ext}"))
}

/// The file name's stem and extension (with its dot), as Go's `filepath.Ext` splits them.
fn split(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rfind('.') {
        Some(dot) => (name[..dot].to_string(), name[dot..].to_string()),
        None => (name, String::new()),
    }
}

/// A backup beside the log file: its path, time stamp and whether it is gzipped.
struct Backup {
    path: PathBuf,
    stamp: String,
    gz: bool,
}

/// The backups of the log file `path`, newest first.
fn backups(path: &Path) -> Vec<Backup> {
    let (stem, ext) = split(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{stem}-");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let (body, gz) = match name.strip_suffix(".gz") {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let Some(stamp) = body.strip_prefix(&prefix).and_then(|s| s.strip_suffix(&ext)) else { continue };
        if parse_stamp(stamp).is_some() {
            found.push(Backup { path: entry.path(), stamp: stamp.to_string(), gz });
        }
    }
    found.sort_by(|a, b| b.stamp.cmp(&a.stamp));
    found
}

/// Seconds since the epoch of a backup's time stamp (read as UTC), if it is one.
fn parse_stamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != STAMP_LEN || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b'-' || b[16] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        num(0..4)? as i32,
        time::Month::try_from(num(5..7)? as u8).ok()?,
        num(8..10)? as u8,
    )
    .ok()?;
    let _millis = num(20..23)?;
    let at = date.with_hms(num(11..13)? as u8, num(14..16)? as u8, num(17..19)? as u8).ok()?;
    Some(at.assume_utc().unix_timestamp())
}

/// Removes the backups beyond `max_backups` and older than `max_age` days, then gzips the rest
/// when `compress` is set.
fn mill(path: &Path, cfg: &RotationConfig, now: SystemTime) {
    let mut keep = Vec::new();
    let mut kept_stamps: Vec<String> = Vec::new();
    for b in backups(path) {
        // A backup and its gzipped copy (a compression cut short) count as one.
        let counted = kept_stamps.contains(&b.stamp);
        if !counted && cfg.max_backups > 0 && kept_stamps.len() >= cfg.max_backups {
            let _ = std::fs::remove_file(&b.path);
            continue;
        }
        if !counted {
            kept_stamps.push(b.stamp.clone());
        }
        keep.push(b);
    }
    if cfg.max_age > 0 {
        let cutoff = now
            .checked_sub(Duration::from_secs(cfg.max_age.saturating_mul(24 * 60 * 60)))
            .and_then(|c| c.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        keep.retain(|b| {
            let old = parse_stamp(&b.stamp).is_some_and(|t| t < cutoff);
            if old {
                let _ = std::fs::remove_file(&b.path);
            }
            !old
        });
    }
    if cfg.compress {
        for b in keep.iter().filter(|b| !b.gz) {
            let mut gz_path = b.path.clone().into_os_string();
            gz_path.push(".gz");
            if gzip(&b.path, Path::new(&gz_path)).is_ok() {
                let _ = std::fs::remove_file(&b.path);
            }
        }
    }
}

fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = File::open(from)?;
    let out = File::create(to)?;
    // The backup's mode, as lumberjack keeps it.
    out.set_permissions(src.metadata()?.permissions())?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    io::copy(&mut src, &mut enc)?;
    enc.finish()?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> RotationConfig {
        RotationConfig::parse(json).unwrap()
    }

    #[test]
    fn the_config_is_read_as_go_reads_it() {
        let c = cfg(r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#);
        assert_eq!(c.max_bytes(), 100 * MIB);
        let c = cfg(r#"{"MaxSize": 2, "maxBackups": 3, "Compress": true, "other": "x"}"#);
        assert_eq!((c.max_size, c.max_backups, c.compress), (2, 3, true));
        assert!(RotationConfig::parse("{bad").unwrap_err().starts_with("improperly formatted log rotation config: "));
        assert_eq!(
            RotationConfig::parse(r#"{"maxsize":"x"}"#).unwrap_err(),
            "invalid log rotation config: json: cannot unmarshal string into Go struct field \
             logRotationConfig.maxsize of type int"
        );
        assert!(RotationConfig::parse(r#"{"maxage":-1}"#).unwrap_err().contains("must not be negative"));
        assert!(RotationConfig::parse("[]").unwrap_err().contains("cannot unmarshal array"));
    }

    #[test]
    fn outputs_need_one_file() {
        let o = |v: &[&str]| check_outputs(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(o(&["default"]).is_err());
        assert!(o(&["a.log", "b.log"]).is_err());
        assert!(o(&["a.log"]).is_ok());
        assert!(o(&["stderr", "a.log"]).is_ok());
    }

    #[test]
    fn backup_names_are_lumberjacks() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_608_903_253);
        let b = backup_name(Path::new("/var/log/etcd.log"), at, time::UtcOffset::UTC);
        assert_eq!(b, Path::new("/var/log/etcd-2026-12-07T02-01-43.253.log"));
        assert_eq!(
            backup_name(Path::new("dir/etcd"), at, time::UtcOffset::UTC),
            Path::new("dir/etcd-2026-12-07T02-01-43.253")
        );
        assert_eq!(parse_stamp("2026-12-07T02-01-43.253"), Some(1_796_608_903));
        assert_eq!(parse_stamp("2026-12-07T02:01:43.253"), None);
    }

    #[test]
    fn a_full_file_rotates_and_old_backups_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        let c = RotationConfig { max_size: 1, max_age: 0, max_backups: 2, local_time: false, compress: false };
        let mut r = Rotating::open(&log, c.clone()).unwrap();
        let line = vec![b'x'; 100 * 1024];
        // 10 lines fit in 1 MiB, the 11th starts a new file.
        for _ in 0..11 {
            r.write_line(&line).unwrap();
        }
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 100 * 1024);
        let first = backups(&log);
        assert_eq!(first.len(), 1);
        assert_eq!(std::fs::metadata(&first[0].path).unwrap().len(), 10 * 100 * 1024);
        assert!(r.write_line(&vec![b'y'; 2 * MIB as usize]).is_err(), "a line larger than a file");
        // Three more rotations (a few ms apart, so the names differ); the mill keeps two.
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(5));
            r.rotate().unwrap();
        }
        mill(&log, &c, SystemTime::now());
        assert_eq!(backups(&log).len(), 2);
    }

    #[test]
    fn old_backups_expire_and_the_rest_are_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        std::fs::write(dir.path().join("m-2020-01-01T00-00-00.000.log"), b"old").unwrap();
        std::fs::write(dir.path().join("m-2026-12-07T00-00-00.000.log"), b"new").unwrap();
        std::fs::write(dir.path().join("unrelated.log"), b"x").unwrap();
        let c = RotationConfig { max_size: 1, max_age: 7, max_backups: 0, local_time: false, compress: true };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_608_903);
        mill(&log, &c, now);
        let left: Vec<String> =
            backups(&log).iter().map(|b| b.path.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(left, ["m-2026-12-07T00-00-00.000.log.gz"]);
        let mut text = String::new();
        let gz = File::open(dir.path().join(&left[0])).unwrap();
        io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
        assert_eq!(text, "new");
        assert!(dir.path().join("unrelated.log").exists());
    }
}
