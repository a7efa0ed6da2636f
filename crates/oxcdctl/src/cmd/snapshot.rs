//! `snapshot save|status|restore`. Save streams the member's backend to a file (`.part`, fsync,
//! rename): etcd and oxcd both send an etcd backend file (bbolt) followed by its SHA-256. Status
//! reads such a file and reports etcd's hash (CRC-32C over every bucket name, key and value), the
//! newest revision, the key count and the size. Restore makes an **oxcd** data directory from it
//! (`${name}.oxcd` by default), whichever server took it: etcd's `snapshot restore` makes an etcd
//! one, and oxcd starts on its own.

use std::io::Write;

use oxcd_api::etcdserverpb::SnapshotRequest;
use oxcd_backend::bolt::Reader;

use crate::cli::{Global, SnapshotCmd};
use crate::client;
use crate::error::{CtlError, EXIT_ERROR, EXIT_INTERRUPTED, Result};
use crate::printer::{Format, Printer, outln};

pub async fn run(g: &Global, p: &mut Printer, cmd: SnapshotCmd) -> Result<()> {
    match cmd {
        SnapshotCmd::Save { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("snapshot save expects one argument"));
            }
            if g.endpoints.len() != 1 {
                return Err(CtlError::new(
                    EXIT_INTERRUPTED,
                    format!(
                        "snapshot must be requested to one selected node, not multiple [{}]",
                        g.endpoints.join(" ")
                    ),
                ));
            }
            save(g, &args[0]).await.map_err(|e| CtlError::new(EXIT_INTERRUPTED, e.msg))?;
            outln!(p, "Snapshot saved at {}", args[0]);
            Ok(())
        }
        SnapshotCmd::Status { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("snapshot status requires exactly one argument"));
            }
            let st = status(&args[0]).map_err(|e| CtlError::new(EXIT_ERROR, e))?;
            p.db_status(&st)
        }
        SnapshotCmd::Restore {
            data_dir,
            wal_dir,
            initial_cluster,
            initial_cluster_token,
            initial_advertise_peer_urls,
            name,
            skip_hash_check,
            args,
        } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("snapshot restore requires exactly one argument"));
            }
            let cfg = oxcd_datadir::ServerConfig {
                name,
                data_dir: (!data_dir.is_empty()).then(|| data_dir.into()),
                initial_cluster: Some(initial_cluster),
                initial_cluster_token,
                initial_advertise_peer_urls,
                ..Default::default()
            };
            if !wal_dir.is_empty() && std::path::Path::new(&wal_dir) != oxcd_datadir::Layout::new(&cfg.data_dir()).wal {
                return Err(CtlError::new(
                    EXIT_ERROR,
                    "--wal-dir: oxcd keeps its WAL in the data directory (member/wal); restore without it",
                ));
            }
            let path = std::path::Path::new(&args[0]);
            oxcd_datadir::etcd_snapshot::restore(path, &cfg, skip_hash_check)
                .map_err(|e| CtlError::new(EXIT_ERROR, go_error(e)))?;
            Ok(())
        }
    }
}

/// A restore error in etcd's words (Go's OS error texts).
fn go_error(e: oxcd_datadir::etcd_snapshot::RestoreError) -> String {
    match e {
        oxcd_datadir::etcd_snapshot::RestoreError::Open { path, source } => format!("open {path}: {}", go_io(&source)),
        e => e.to_string(),
    }
}

async fn save(g: &Global, path: &str) -> Result<()> {
    let conn = client::connect(g).await?;
    let part = format!("{path}.part");
    let mut f = std::fs::File::create(&part)?;
    let mut stream = conn.maintenance().snapshot(SnapshotRequest {}).await.map_err(CtlError::from)?.into_inner();
    loop {
        match stream.message().await {
            Ok(Some(m)) => f.write_all(&m.blob)?,
            Ok(None) => break,
            Err(s) => {
                let _ = std::fs::remove_file(&part);
                return Err(s.into());
            }
        }
    }
    f.sync_all()?;
    std::fs::rename(&part, path)?;
    Ok(())
}

/// What `snapshot status` reports.
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_key: u64,
    pub total_size: u64,
}

fn status(path: &str) -> std::result::Result<DbStatus, String> {
    let data = std::fs::read(path).map_err(|e| format!("stat {path}: {}", go_io(&e)))?;
    let db = Reader::open(&data)?;
    let mut hasher = Crc32c(0);
    let mut st = DbStatus { hash: 0, revision: 0, total_key: 0, total_size: db.size() };
    for (name, bucket) in db.buckets()? {
        hasher.write(&name);
        let is_key = name == b"key";
        db.for_each(&bucket, &mut |k, v| {
            hasher.write(k);
            hasher.write(v);
            if is_key && k.len() >= 8 {
                st.revision = i64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            }
            st.total_key += 1;
        })?;
    }
    st.hash = hasher.0;
    Ok(st)
}

fn go_io(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        _ => "input/output error",
    }
}

/// CRC-32C, fed incrementally.
struct Crc32c(u32);

impl Crc32c {
    fn write(&mut self, b: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, b);
    }
}

impl Printer {
    fn db_status(&mut self, s: &DbStatus) -> Result<()> {
        match self.format {
            Format::Simple => outln!(
                self,
                "{:x}, {}, {}, {}",
                s.hash,
                s.revision,
                s.total_key,
                crate::table::human_bytes(s.total_size)
            ),
            Format::Json => outln!(
                self,
                "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
                s.hash,
                s.revision,
                s.total_key,
                s.total_size
            ),
            Format::Fields => {
                outln!(self, "\"Hash\" : {}", s.hash);
                outln!(self, "\"Revision\" : {}", s.revision);
                outln!(self, "\"Keys\" : {}", s.total_key);
                outln!(self, "\"Size\" : {}", s.total_size);
            }
            Format::Table => {
                let row = vec![
                    format!("{:x}", s.hash),
                    s.revision.to_string(),
                    s.total_key.to_string(),
                    crate::table::human_bytes(s.total_size),
                ];
                let t = crate::table::render(&["hash", "revision", "total keys", "total size"], &[row]);
                self.out.extend_from_slice(t.as_bytes());
            }
            Format::Protobuf => return Err(self.unsupported()),
        }
        Ok(())
    }
}
