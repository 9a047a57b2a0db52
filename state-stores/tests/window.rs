//! The window store contract, run against every window store and stack,
//! and the window changelog's layout and restoration.

use state_stores::testing::RecordingSink;
use state_stores::{
    ChangeLoggingWindowStore, InMemoryWindowStore, ReadOnlyWindowStore, RocksDbWindowStore,
    StateRestoreCallback, StateStore, StoreError, WindowStore, window_store_key,
};

mod in_memory {
    use super::*;
    state_stores::window_store_contract!(|_dir| InMemoryWindowStore::new("windows", 1_000));
}

mod rocksdb {
    use super::*;
    state_stores::window_store_contract!(
        |dir| RocksDbWindowStore::open("windows", dir, 1_000).unwrap()
    );
}

mod logged_in_memory {
    use super::*;
    state_stores::window_store_contract!(|_dir| ChangeLoggingWindowStore::new(
        InMemoryWindowStore::new("windows", 1_000),
        Box::new(RecordingSink::new())
    ));
}

fn logged(sink: &RecordingSink) -> ChangeLoggingWindowStore<InMemoryWindowStore> {
    ChangeLoggingWindowStore::new(InMemoryWindowStore::new("w", 1_000), Box::new(sink.clone()))
}

#[test]
fn every_write_is_logged_with_kafka_streams_window_key_layout() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"alice", Some(b"1"), 60_000).unwrap();
    store.put(b"alice", None, 60_000).unwrap();
    let key = [
        b"alice".as_slice(),
        &60_000_i64.to_be_bytes(),
        &0_u32.to_be_bytes(),
    ]
    .concat();
    assert_eq!(key, window_store_key(b"alice", 60_000, 0));
    assert_eq!(
        sink.changes(),
        [(key.clone(), Some(b"1".to_vec())), (key, None)]
    );
}

#[test]
fn restoring_the_changelog_rebuilds_the_windows_without_logging_again() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"a", Some(b"1"), 10).unwrap();
    store.put(b"b", Some(b"2"), 20).unwrap();
    store.put(b"a", Some(b"3"), 20).unwrap();
    store.put(b"b", None, 20).unwrap();
    let changes = sink.changes();

    let replay = RecordingSink::new();
    let mut restored = logged(&replay);
    let batch: Vec<(&[u8], Option<&[u8]>)> = changes
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    restored.restore_batch(&batch).unwrap();
    assert!(replay.changes().is_empty(), "restoring logs nothing");
    let windows: Vec<_> = restored.all().unwrap().map(Result::unwrap).collect();
    let expected: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
    assert_eq!(windows, expected);
    assert_eq!(
        restored.fetch(b"a", 20).unwrap().as_deref(),
        Some(&b"3"[..])
    );
}

#[test]
fn a_changelog_key_too_short_is_a_changelog_error_naming_the_store() {
    let mut store = InMemoryWindowStore::new("w", 1_000);
    let error = store
        .restore_batch(&[(b"short".as_slice(), None)])
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Changelog { store, .. } if store == "w"),
        "{error:?}"
    );
}

#[test]
fn a_failing_sink_is_a_changelog_error() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    sink.set_failing(true);
    let error = store.put(b"a", Some(b"1"), 10).unwrap_err();
    assert!(matches!(error, StoreError::Changelog { .. }), "{error:?}");
}

fn segment_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn rocksdb_windows_survive_a_reopen_with_the_stores_clock() {
    let dir = state_stores::testing::tempdir().unwrap();
    let retention = 120_000;
    let mut store = RocksDbWindowStore::open("w", dir.path(), retention).unwrap();
    store.put(b"a", Some(b"1"), 0).unwrap();
    store.put(b"a", Some(b"2"), 100_000).unwrap();
    store.put(b"b", Some(b"3"), 150_000).unwrap();
    store.flush().unwrap();
    store.close().unwrap();

    let store = RocksDbWindowStore::open("w", dir.path(), retention).unwrap();
    assert_eq!(
        store.fetch(b"a", 100_000).unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        store.fetch(b"b", 150_000).unwrap().as_deref(),
        Some(&b"3"[..])
    );
    // The clock is the latest start on disk: 0 was expired, and still is.
    assert_eq!(store.fetch(b"a", 0).unwrap(), None);
}

#[test]
fn rocksdb_drops_a_segment_whole_once_all_its_windows_expired() {
    let dir = state_stores::testing::tempdir().unwrap();
    // Retention 2 min: segments of 1 min.
    let mut store = RocksDbWindowStore::open("w", dir.path(), 120_000).unwrap();
    store.put(b"a", Some(b"1"), 0).unwrap();
    store.put(b"a", Some(b"2"), 60_000).unwrap();
    store.put(b"a", Some(b"3"), 120_000).unwrap();
    assert_eq!(segment_dirs(dir.path()), ["0", "1", "2"]);
    // At 180 s, windows before 60 s are gone: segment 0 with them.
    store.put(b"a", Some(b"4"), 180_000).unwrap();
    assert_eq!(segment_dirs(dir.path()), ["1", "2", "3"]);
    assert_eq!(
        store.fetch(b"a", 60_000).unwrap(),
        None,
        "61 s is the first live start"
    );
    assert_eq!(store.all().unwrap().count(), 2);
}
