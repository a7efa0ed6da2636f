use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};

use super::*;

fn entry(index: u64, term: u64) -> EntryRecord {
    EntryRecord { index, term, data: format!("entry-{index}-{term}").into_bytes() }
}

fn only_segment(dir: &Path) -> PathBuf {
    let segs = segment::list(dir).unwrap();
    assert_eq!(segs.len(), 1);
    dir.join(segs[0].file_name())
}

#[test]
fn entries_hard_state_and_metadata_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"meta").unwrap();
    wal.append_entries(&[entry(1, 1), entry(2, 1), entry(3, 2)]);
    wal.set_hard_state(HardState { term: 2, vote: 7, commit: 3 });
    wal.sync().unwrap();
    drop(wal);

    let (_, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.metadata, b"meta");
    assert_eq!(state.hard_state, Some(HardState { term: 2, vote: 7, commit: 3 }));
    assert_eq!(state.entries, vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
}

/// Appends are buffered in the process until `sync` (or `flush`) writes them: the file does not
/// hold them before, so a process that dies first loses them (they were never acknowledged), and
/// the WAL reopens at the last sync. (What `fdatasync` adds over the write, surviving power loss,
/// is not observable from a process.)
#[test]
fn appends_before_sync_are_not_in_the_file_and_die_with_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.append_entries(&[entry(1, 1)]);
    wal.sync().unwrap();
    wal.append_entries(&[entry(2, 1)]);
    let holds = |e: &EntryRecord| {
        let file = std::fs::read(only_segment(dir.path())).unwrap();
        file.windows(e.data.len()).any(|w| w == e.data)
    };
    assert!(holds(&entry(1, 1)), "a synced entry is in the file");
    assert!(!holds(&entry(2, 1)), "an entry appended after the last sync is already in the file");
    drop(wal); // never synced: as if the process died
    let (_, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.entries, vec![entry(1, 1)]);
}

#[test]
fn later_entry_with_same_index_truncates_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.append_entries(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
    wal.sync().unwrap();
    wal.append_entries(&[entry(2, 2)]);
    wal.sync().unwrap();
    drop(wal);
    let (_, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.entries, vec![entry(1, 1), entry(2, 2)]);
}

#[test]
fn torn_tail_is_cut_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.append_entries(&[entry(1, 1), entry(2, 1)]);
    wal.sync().unwrap();
    drop(wal);
    // Simulate a torn write: half a frame of garbage after the valid records.
    let path = only_segment(dir.path());
    let (_, end, _) = record::decode_all(&std::fs::read(&path).unwrap()[..]);
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(end as u64)).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 2, 9, 9]).unwrap();
    drop(f);

    let (mut wal, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.entries, vec![entry(1, 1), entry(2, 1)]);
    wal.append_entries(&[entry(3, 1)]);
    wal.sync().unwrap();
    drop(wal);
    let (_, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.entries, vec![entry(1, 1), entry(2, 1), entry(3, 1)]);
}

#[test]
fn corrupt_record_in_a_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.append_entries(&[entry(1, 1)]);
    wal.sync().unwrap();
    wal.roll().unwrap();
    wal.append_entries(&[entry(2, 1)]);
    wal.sync().unwrap();
    drop(wal);
    let first = dir.path().join(segment::list(dir.path()).unwrap()[0].file_name());
    let mut f = OpenOptions::new().write(true).open(&first).unwrap();
    f.seek(SeekFrom::Start(12)).unwrap();
    f.write_all(&[0xff]).unwrap();
    drop(f);
    assert!(matches!(Wal::open(dir.path()), Err(WalError::Corrupt { .. })));
}

#[test]
fn snapshot_marker_hides_older_entries_and_release_drops_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(dir.path(), b"m").unwrap();
    wal.append_entries(&[entry(1, 1), entry(2, 1)]);
    wal.set_hard_state(HardState { term: 1, vote: 1, commit: 2 });
    wal.sync().unwrap();
    wal.roll().unwrap();
    wal.append_entries(&[entry(3, 1), entry(4, 1)]);
    wal.sync().unwrap();
    wal.roll().unwrap();
    wal.append_entries(&[entry(5, 1)]);
    wal.save_snapshot(SnapshotRecord { index: 3, term: 1, conf_state: b"cs".to_vec() });
    wal.sync().unwrap();
    assert_eq!(wal.segment_count(), 3);
    wal.release_to(3).unwrap();
    // The first segment (entries 1-2) is gone; the second still holds entry 4.
    assert_eq!(wal.segment_count(), 2);
    drop(wal);

    let (_, state) = Wal::open(dir.path()).unwrap();
    assert_eq!(state.snapshot.as_ref().map(|s| s.index), Some(3));
    assert_eq!(state.hard_state, Some(HardState { term: 1, vote: 1, commit: 2 }));
    assert_eq!(state.metadata, b"m");
    assert_eq!(state.entries, vec![entry(4, 1), entry(5, 1)]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// Whatever prefix of the synced bytes survives a crash, open() returns a prefix of the log.
    #[test]
    fn any_truncation_of_the_tail_yields_a_prefix(cut in 0usize..2000) {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::create(dir.path(), b"m").unwrap();
        let all: Vec<_> = (1..=40).map(|i| entry(i, 1)).collect();
        wal.append_entries(&all);
        wal.sync().unwrap();
        drop(wal);
        let path = only_segment(dir.path());
        let (_, end, _) = record::decode_all(&std::fs::read(&path).unwrap()[..]);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(end.saturating_sub(cut) as u64).unwrap();
        drop(f);
        let (_, state) = Wal::open(dir.path()).unwrap();
        proptest::prop_assert!(state.entries.len() <= all.len());
        proptest::prop_assert_eq!(&state.entries[..], &all[..state.entries.len()]);
    }
}
