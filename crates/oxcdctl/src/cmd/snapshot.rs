//! `snapshot save|status|restore`. Save streams the member's backend to a file (`.part`, fsync,
//! rename). Status reads an etcd snapshot, a bbolt file, with the small read-only reader below and
//! reports etcd's hash (CRC-32C over every bucket name, key and value), the newest revision, the key
//! count and the size.

use std::io::Write;

use oxcd_api::etcdserverpb::SnapshotRequest;

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
        SnapshotCmd::Restore { .. } => Err(CtlError::new(
            EXIT_ERROR,
            "snapshot restore is not supported by oxcdctl yet (restore with etcdctl or etcdutl)",
        )),
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
    let db = bolt::Db::open(&data)?;
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

/// A read-only reader of bbolt files: meta pages, branch and leaf pages, buckets (inline or not).
mod bolt {
    const MAGIC: u32 = 0xED0C_DAED;
    const BRANCH: u16 = 0x01;
    const LEAF: u16 = 0x02;
    const BUCKET_LEAF: u32 = 0x01;
    const PAGE_HEADER: usize = 16;

    pub struct Db<'a> {
        data: &'a [u8],
        page_size: usize,
        root: u64,
        high_water: u64,
    }

    /// Where a bucket's entries are: a page of the file, or inline in its parent's value.
    pub enum Bucket<'a> {
        Page(u64),
        Inline(&'a [u8]),
    }

    fn u16_at(b: &[u8], o: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
    }
    fn u32_at(b: &[u8], o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], o: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
    }

    /// FNV-1a, 64 bits (bbolt's meta checksum).
    fn fnv64a(b: &[u8]) -> u64 {
        b.iter().fold(0xcbf2_9ce4_8422_2325, |h, c| (h ^ *c as u64).wrapping_mul(0x100_0000_01b3))
    }

    const CORRUPT: &str = "invalid database";

    impl<'a> Db<'a> {
        pub fn open(data: &'a [u8]) -> Result<Db<'a>, String> {
            let page_size = u32_at(data, PAGE_HEADER + 8).ok_or(CORRUPT)? as usize;
            if page_size < 512 {
                return Err(CORRUPT.into());
            }
            // The valid meta page with the higher transaction id.
            let mut best: Option<(u64, u64, u64)> = None;
            for i in 0..2 {
                let m = i * page_size + PAGE_HEADER;
                let Some(meta) = data.get(m..m + 64) else { continue };
                if u32_at(meta, 0) != Some(MAGIC) || fnv64a(&meta[..56]) != u64_at(meta, 56).unwrap_or(0) {
                    continue;
                }
                let (root, high_water, txid) = (u64_at(meta, 16), u64_at(meta, 40), u64_at(meta, 48));
                let (Some(root), Some(high_water), Some(txid)) = (root, high_water, txid) else { continue };
                if best.is_none_or(|b| txid > b.2) {
                    best = Some((root, high_water, txid));
                }
            }
            let (root, high_water, _) = best.ok_or(CORRUPT)?;
            Ok(Db { data, page_size, root, high_water })
        }

        /// The database's size as bbolt reports it (high water mark × page size).
        pub fn size(&self) -> u64 {
            self.high_water * self.page_size as u64
        }

        fn page(&self, id: u64) -> Result<&'a [u8], String> {
            let start = id as usize * self.page_size;
            let overflow = u32_at(self.data, start + 12).ok_or(CORRUPT)? as usize;
            self.data.get(start..start + (overflow + 1) * self.page_size).ok_or_else(|| CORRUPT.to_string())
        }

        /// The top-level buckets, in key order.
        pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket<'a>)>, String> {
            let mut out = Vec::new();
            self.walk(&Bucket::Page(self.root), &mut |k, v, flags| {
                if flags & BUCKET_LEAF != 0 {
                    out.push((k.to_vec(), bucket_of(v)));
                }
            })?;
            out.into_iter().map(|(k, b)| b.map(|b| (k, b))).collect()
        }

        /// Calls `f` for every key and value of `b`, in key order.
        pub fn for_each(&self, b: &Bucket<'a>, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
            self.walk(b, &mut |k, v, flags| f(k, if flags & BUCKET_LEAF != 0 { &[] } else { v }))
        }

        fn walk(&self, b: &Bucket<'a>, f: &mut dyn FnMut(&'a [u8], &'a [u8], u32)) -> Result<(), String> {
            match b {
                Bucket::Page(id) => self.walk_page(self.page(*id)?, f),
                Bucket::Inline(page) => self.walk_page(page, f),
            }
        }

        fn walk_page(&self, page: &'a [u8], f: &mut dyn FnMut(&'a [u8], &'a [u8], u32)) -> Result<(), String> {
            let flags = u16_at(page, 8).ok_or(CORRUPT)?;
            let count = u16_at(page, 10).ok_or(CORRUPT)? as usize;
            for i in 0..count {
                let e = PAGE_HEADER + i * 16;
                if flags & BRANCH != 0 {
                    let child = u64_at(page, e + 8).ok_or(CORRUPT)?;
                    self.walk_page(self.page(child)?, f)?;
                } else if flags & LEAF != 0 {
                    let eflags = u32_at(page, e).ok_or(CORRUPT)?;
                    let pos = u32_at(page, e + 4).ok_or(CORRUPT)? as usize;
                    let ksize = u32_at(page, e + 8).ok_or(CORRUPT)? as usize;
                    let vsize = u32_at(page, e + 12).ok_or(CORRUPT)? as usize;
                    let k = page.get(e + pos..e + pos + ksize).ok_or(CORRUPT)?;
                    let v = page.get(e + pos + ksize..e + pos + ksize + vsize).ok_or(CORRUPT)?;
                    f(k, v, eflags);
                } else {
                    return Err(CORRUPT.into());
                }
            }
            Ok(())
        }
    }

    fn bucket_of(v: &[u8]) -> Result<Bucket<'_>, String> {
        let root = u64_at(v, 0).ok_or(CORRUPT)?;
        Ok(if root == 0 { Bucket::Inline(&v[16..]) } else { Bucket::Page(root) })
    }
}
