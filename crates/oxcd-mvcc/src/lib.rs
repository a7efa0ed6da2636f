//! The MVCC store: every mutation creates a new store revision; keys keep create_revision,
//! mod_revision and version; deletes leave tombstones; compaction drops history.
//!
//! Layout: the `key` bucket of the backend maps revision keys ([`Revision::to_key`]) to encoded
//! `mvccpb.KeyValue`s (a tombstone holds only the key); the in-memory [`index`] maps each key to its
//! generations of revisions. Reads take a backend read transaction first and the index lock second,
//! so compaction (index first, backend deletes after) never hides a value a reader was promised.
//!
//! [`watchable`] turns applied revisions into watch responses with bounded memory.
//!
//! The store knows nothing of Raft, gRPC or the server; requests arrive as plain calls from the
//! applier, which owns the single write path.

mod index;
mod key_index;
mod kvstore;
pub mod metrics;
mod revision;
pub mod watchable;

pub use kvstore::{KvHash, KvRead, MvccError, RangeOptions, RangeResult, ReadView, Store, TxnWrite, meta};
pub use revision::{REV_BYTES, RevKey, Revision};
