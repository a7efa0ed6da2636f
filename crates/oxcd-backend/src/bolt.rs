//! bbolt files, the format of etcd's backend and of its snapshots: a writer that lays out a fresh,
//! compact file from sorted buckets, and a read-only reader.
//!
//! oxcd keeps its own backend in redb; it speaks bbolt at the edges, so that a snapshot taken from
//! oxcd is a file etcd's tools (`etcdctl snapshot status|restore`, `etcdutl`) and etcd itself open,
//! and an etcd snapshot can be restored into oxcd.
//!
//! Layout (bbolt's, little-endian): every page starts with a 16-byte header `{id u64, flags u16,
//! count u16, overflow u32}`; a page that holds more than a page of data spans `overflow` more.
//! Pages 0 and 1 are meta pages (`{magic, version 2, page size, flags, root bucket {root, sequence},
//! freelist page, page count, txid, FNV-1a checksum}`), the valid one with the higher txid wins.
//! Leaf elements are `{flags u32, pos u32, ksize u32, vsize u32}`, branch elements `{pos u32,
//! ksize u32, child u64}`, `pos` counting from the element itself. The root bucket is a leaf whose
//! entries (flag 1) are the top-level buckets, each value a `{root u64, sequence u64}` header
//! (root 0: the bucket's page follows inline). The writer never inlines and leaves an empty freelist.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
/// The page size of files this writer makes (the OS page size on the machines etcd runs on).
pub const PAGE_SIZE: usize = 4096;
/// The first page free for data: 0 and 1 are meta pages, 2 the freelist.
const FIRST_DATA_PAGE: u64 = 3;

/// FNV-1a, 64 bits (bbolt's meta checksum).
fn fnv64a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, c| (h ^ *c as u64).wrapping_mul(0x100_0000_01b3))
}

/// Writes a bbolt file: top-level buckets in ascending name order, each with its entries in
/// ascending key order, then [`Writer::finish`].
pub struct Writer {
    out: BufWriter<File>,
    next_page: u64,
    /// (name, root page) of the buckets written so far.
    buckets: Vec<(Vec<u8>, u64)>,
    /// The leaf being filled: its element count, the elements' bytes and the data's bytes.
    leaf: Node,
    /// (first key, page) of the finished pages of the current bucket's bottom level.
    level: Vec<(Vec<u8>, u64)>,
    current: Option<Vec<u8>>,
    last_key: Option<Vec<u8>>,
}

#[derive(Default)]
struct Node {
    count: usize,
    first_key: Vec<u8>,
    elements: Vec<u8>,
    data: Vec<u8>,
}

impl Node {
    fn size(&self) -> usize {
        PAGE_HEADER + self.elements.len() + self.data.len()
    }

    /// Adds a leaf element; its `pos` holds the data offset until the page is laid out.
    fn push_leaf(&mut self, flags: u32, key: &[u8], value: &[&[u8]]) {
        if self.count == 0 {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
        }
        self.count += 1;
        let vsize: usize = value.iter().map(|v| v.len()).sum();
        self.elements.extend_from_slice(&flags.to_le_bytes());
        self.elements.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        self.elements.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.elements.extend_from_slice(&(vsize as u32).to_le_bytes());
        self.data.extend_from_slice(key);
        value.iter().for_each(|v| self.data.extend_from_slice(v));
    }
}

/// Misuse of the writer: out-of-order buckets or keys.
fn order_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bolt writer: {what} out of order"))
}

impl Writer {
    /// Creates (truncates) the file at `path`.
    pub fn create(path: &Path) -> std::io::Result<Writer> {
        let mut file = File::create(path)?;
        file.seek(SeekFrom::Start(FIRST_DATA_PAGE * PAGE_SIZE as u64))?;
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            next_page: FIRST_DATA_PAGE,
            buckets: Vec::new(),
            leaf: Node::default(),
            level: Vec::new(),
            current: None,
            last_key: None,
        })
    }

    /// Starts the next top-level bucket (ending the current one).
    pub fn bucket(&mut self, name: &[u8]) -> std::io::Result<()> {
        self.end_bucket()?;
        if self.buckets.last().is_some_and(|(last, _)| last.as_slice() >= name) {
            return Err(order_error("buckets"));
        }
        self.current = Some(name.to_vec());
        Ok(())
    }

    /// Adds an entry to the current bucket; keys must ascend.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        if self.current.is_none() || self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(order_error("keys"));
        }
        if key.is_empty() {
            // bbolt refuses empty keys (ErrKeyRequired).
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bolt writer: empty key"));
        }
        let added = ELEMENT + key.len() + value.len();
        if self.leaf.count > 0 && self.leaf.size() + added > PAGE_SIZE {
            self.flush_leaf()?;
        }
        self.leaf.push_leaf(0, key, &[value]);
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    fn flush_leaf(&mut self) -> std::io::Result<()> {
        let leaf = std::mem::take(&mut self.leaf);
        let id = self.write_node(LEAF, &leaf)?;
        self.level.push((leaf.first_key, id));
        self.leaf = Node { elements: leaf.elements, data: leaf.data, ..Default::default() };
        self.leaf.elements.clear();
        self.leaf.data.clear();
        Ok(())
    }

    /// Writes a node as a page (plus overflow pages); returns its page id. Element `pos` fields
    /// hold the data offset on entry and become relative to the element here.
    fn write_node(&mut self, flags: u16, node: &Node) -> std::io::Result<u64> {
        let id = self.next_page;
        let pages = node.size().div_ceil(PAGE_SIZE).max(1);
        let mut page = Vec::with_capacity(pages * PAGE_SIZE);
        page.extend_from_slice(&id.to_le_bytes());
        page.extend_from_slice(&flags.to_le_bytes());
        page.extend_from_slice(&(node.count as u16).to_le_bytes());
        page.extend_from_slice(&((pages - 1) as u32).to_le_bytes());
        let pos_field = if flags == LEAF { 4 } else { 0 };
        for (i, e) in node.elements.chunks(ELEMENT).enumerate() {
            let mut e: [u8; ELEMENT] = e.try_into().expect("element size");
            let data_off = u32::from_le_bytes(e[pos_field..pos_field + 4].try_into().expect("4 bytes")) as usize;
            let pos = node.elements.len() - i * ELEMENT + data_off;
            e[pos_field..pos_field + 4].copy_from_slice(&(pos as u32).to_le_bytes());
            page.extend_from_slice(&e);
        }
        page.extend_from_slice(&node.data);
        page.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(&page)?;
        self.next_page += pages as u64;
        Ok(id)
    }

    /// Finishes the current bucket: its last leaf, then branch levels up to one root page.
    fn end_bucket(&mut self) -> std::io::Result<()> {
        let Some(name) = self.current.take() else { return Ok(()) };
        self.last_key = None;
        if self.leaf.count > 0 || self.level.is_empty() {
            self.flush_leaf()?;
        }
        let mut level = std::mem::take(&mut self.level);
        while level.len() > 1 {
            let mut up = Vec::new();
            let mut node = Node::default();
            for (key, child) in level {
                if node.count > 0 && node.size() + ELEMENT + key.len() > PAGE_SIZE {
                    let id = self.write_node(BRANCH, &node)?;
                    up.push((std::mem::take(&mut node.first_key), id));
                    node = Node::default();
                }
                if node.count == 0 {
                    node.first_key = key.clone();
                }
                node.count += 1;
                node.elements.extend_from_slice(&(node.data.len() as u32).to_le_bytes());
                node.elements.extend_from_slice(&(key.len() as u32).to_le_bytes());
                node.elements.extend_from_slice(&child.to_le_bytes());
                node.data.extend_from_slice(&key);
            }
            let id = self.write_node(BRANCH, &node)?;
            up.push((node.first_key, id));
            level = up;
        }
        self.buckets.push((name, level[0].1));
        Ok(())
    }

    /// Writes the root bucket, the freelist and the meta pages, and syncs the file; returns its
    /// size in bytes.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.end_bucket()?;
        let mut root = Node::default();
        for (name, page) in std::mem::take(&mut self.buckets) {
            // The bucket header: its root page and a sequence of 0.
            root.push_leaf(BUCKET_LEAF, &name, &[&page.to_le_bytes(), &0u64.to_le_bytes()]);
        }
        let root_page = self.write_node(LEAF, &root)?;
        let pages = self.next_page;
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        let mut head = vec![0u8; FIRST_DATA_PAGE as usize * PAGE_SIZE];
        for txid in 0..2u64 {
            let p = &mut head[txid as usize * PAGE_SIZE..];
            p[0..8].copy_from_slice(&txid.to_le_bytes());
            p[8..10].copy_from_slice(&META.to_le_bytes());
            let m = &mut p[PAGE_HEADER..PAGE_HEADER + 64];
            m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
            m[4..8].copy_from_slice(&VERSION.to_le_bytes());
            m[8..12].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            m[16..24].copy_from_slice(&root_page.to_le_bytes());
            m[32..40].copy_from_slice(&2u64.to_le_bytes());
            m[40..48].copy_from_slice(&pages.to_le_bytes());
            m[48..56].copy_from_slice(&txid.to_le_bytes());
            let sum = fnv64a(&m[..56]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        let freelist = &mut head[2 * PAGE_SIZE..];
        freelist[0..8].copy_from_slice(&2u64.to_le_bytes());
        freelist[8..10].copy_from_slice(&FREELIST.to_le_bytes());
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&head)?;
        let size = pages * PAGE_SIZE as u64;
        file.set_len(size)?;
        file.sync_all()?;
        Ok(size)
    }
}

const CORRUPT: &str = "invalid database";

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// A read-only view of a bbolt file held in memory. Every error is bbolt's "invalid database".
pub struct Reader<'a> {
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

impl<'a> Reader<'a> {
    /// Reads the meta pages of `data`.
    pub fn open(data: &'a [u8]) -> Result<Reader<'a>, String> {
        let page_size = u32_at(data, PAGE_HEADER + 8).ok_or(CORRUPT)? as usize;
        if !page_size.is_power_of_two() || !(512..=1 << 16).contains(&page_size) {
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
        Ok(Reader { data, page_size, root, high_water })
    }

    /// The database's size as bbolt reports it (high water mark × page size).
    pub fn size(&self) -> u64 {
        self.high_water.saturating_mul(self.page_size as u64)
    }

    /// Page `id` of the tree (never a meta page, never beyond the high water mark), at most once
    /// per walk: a page reached twice is a cycle or a shared subtree, which a damaged or crafted
    /// file could use to make a walk endless.
    fn page(&self, id: u64, visited: &mut HashSet<u64>) -> Result<&'a [u8], String> {
        if id < 2 || id >= self.high_water || !visited.insert(id) {
            return Err(CORRUPT.into());
        }
        let start = usize::try_from(id).ok().and_then(|i| i.checked_mul(self.page_size)).ok_or(CORRUPT)?;
        let overflow = u32_at(self.data, start.checked_add(12).ok_or(CORRUPT)?).ok_or(CORRUPT)? as usize;
        let len = (overflow + 1).checked_mul(self.page_size).ok_or(CORRUPT)?;
        self.data.get(start..start.checked_add(len).ok_or(CORRUPT)?).ok_or_else(|| CORRUPT.to_string())
    }

    /// The top-level buckets, in name order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket<'a>)>, String> {
        let mut out = Vec::new();
        self.walk(&Bucket::Page(self.root), &mut |k, v, flags| {
            if flags & BUCKET_LEAF != 0 {
                out.push((k.to_vec(), bucket_of(v)));
            }
        })?;
        out.into_iter().map(|(k, b)| b.map(|b| (k, b))).collect()
    }

    /// The named top-level bucket, if the file has it.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'a>>, String> {
        Ok(self.buckets()?.into_iter().find(|(n, _)| n == name).map(|(_, b)| b))
    }

    /// Calls `f` for every key and value of `b` in key order (a nested bucket's value is empty).
    pub fn for_each(&self, b: &Bucket<'a>, f: &mut dyn FnMut(&'a [u8], &'a [u8])) -> Result<(), String> {
        self.walk(b, &mut |k, v, flags| f(k, if flags & BUCKET_LEAF != 0 { &[] } else { v }))
    }

    fn walk(&self, b: &Bucket<'a>, f: &mut dyn FnMut(&'a [u8], &'a [u8], u32)) -> Result<(), String> {
        let mut visited = HashSet::new();
        match b {
            Bucket::Page(id) => self.walk_page(self.page(*id, &mut visited)?, &mut visited, f),
            Bucket::Inline(page) => self.walk_page(page, &mut visited, f),
        }
    }

    fn walk_page(
        &self,
        page: &'a [u8],
        visited: &mut HashSet<u64>,
        f: &mut dyn FnMut(&'a [u8], &'a [u8], u32),
    ) -> Result<(), String> {
        let flags = u16_at(page, 8).ok_or(CORRUPT)?;
        let count = u16_at(page, 10).ok_or(CORRUPT)? as usize;
        for i in 0..count {
            let e = PAGE_HEADER + i * ELEMENT;
            if flags & BRANCH != 0 {
                let child = u64_at(page, e + 8).ok_or(CORRUPT)?;
                self.walk_page(self.page(child, visited)?, visited, f)?;
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
    Ok(if root == 0 { Bucket::Inline(v.get(16..).ok_or(CORRUPT)?) } else { Bucket::Page(root) })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    /// Reads everything; an error or a result, never a panic.
    fn try_read_all(data: &[u8]) -> Result<Vec<(Vec<u8>, Entries)>, String> {
        let r = Reader::open(data)?;
        let mut out = Vec::new();
        for (name, b) in r.buckets()? {
            let mut kvs = Vec::new();
            r.for_each(&b, &mut |k, v| kvs.push((k.to_vec(), v.to_vec())))?;
            out.push((name, kvs));
        }
        Ok(out)
    }

    #[test]
    fn what_is_written_reads_back_through_branches_and_overflow_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = Writer::create(&path).unwrap();
        let mut want = Vec::new();
        // Empty, one huge value (overflow pages), many small keys (three levels of branches).
        let buckets: Vec<(&[u8], Entries)> = vec![
            (b"alarm", vec![]),
            (b"big", vec![(b"k".to_vec(), vec![7u8; 3 * PAGE_SIZE + 5]), (b"l".to_vec(), b"v".to_vec())]),
            (b"key", (0..60_000u64).map(|i| (i.to_be_bytes().to_vec(), i.to_string().into_bytes())).collect()),
        ];
        for (name, kvs) in buckets {
            w.bucket(name).unwrap();
            for (k, v) in &kvs {
                w.put(k, v).unwrap();
            }
            want.push((name.to_vec(), kvs));
        }
        let size = w.finish().unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, size);
        assert_eq!(Reader::open(&data).unwrap().size(), size);
        assert_eq!(try_read_all(&data).unwrap(), want);
    }

    #[test]
    fn keys_and_buckets_out_of_order_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(&dir.path().join("db")).unwrap();
        assert!(w.put(b"a", b"").is_err(), "no bucket yet");
        w.bucket(b"b").unwrap();
        w.put(b"k2", b"").unwrap();
        assert!(w.put(b"k1", b"").is_err());
        assert!(w.put(b"k2", b"").is_err());
        assert!(w.bucket(b"a").is_err());
    }

    #[test]
    fn a_branch_pointing_back_is_invalid_not_endless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = Writer::create(&path).unwrap();
        w.bucket(b"key").unwrap();
        assert!(w.put(b"", b"v").is_err(), "bbolt refuses empty keys");
        for i in 0..2000u32 {
            w.put(&i.to_be_bytes(), b"value").unwrap();
        }
        w.finish().unwrap();
        let mut data = std::fs::read(&path).unwrap();
        // Point every child of every branch page at the first branch page itself.
        let pages = data.len() / PAGE_SIZE;
        let is_branch = |data: &[u8], p: usize| u16_at(data, p * PAGE_SIZE + 8) == Some(BRANCH);
        let first_branch = (3..pages).find(|p| is_branch(&data, *p)).unwrap();
        for p in first_branch..pages {
            if !is_branch(&data, p) {
                continue;
            }
            let count = u16_at(&data, p * PAGE_SIZE + 10).unwrap() as usize;
            for i in 0..count {
                let at = p * PAGE_SIZE + PAGE_HEADER + i * ELEMENT + 8;
                data[at..at + 8].copy_from_slice(&(first_branch as u64).to_le_bytes());
            }
        }
        assert_eq!(try_read_all(&data).unwrap_err(), CORRUPT);
    }

    #[test]
    fn damaged_files_are_invalid_not_a_panic() {
        assert_eq!(Reader::open(&[0u8; 100]).err().unwrap(), CORRUPT);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = Writer::create(&path).unwrap();
        w.bucket(b"key").unwrap();
        for i in 0..2000u32 {
            w.put(&i.to_be_bytes(), b"value").unwrap();
        }
        w.finish().unwrap();
        let data = std::fs::read(&path).unwrap();
        // Every truncation and a point of garbage on each page: an error or a result, never a panic.
        for cut in (0..data.len()).step_by(PAGE_SIZE / 2) {
            let _ = try_read_all(&data[..cut]);
        }
        for page in 0..data.len() / PAGE_SIZE {
            let mut bad = data.clone();
            bad[page * PAGE_SIZE + 10..page * PAGE_SIZE + 24].fill(0xFF);
            let _ = try_read_all(&bad);
        }
    }
}
