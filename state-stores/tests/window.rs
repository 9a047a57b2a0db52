//! The window store contract, run against every window store and stack,
//! and the window changelog's layout and restoration.

use state_stores::testing::RecordingSink;
use state_stores::{
    CachingWindowStore, ChangeLoggingWindowStore, InMemoryWindowStore, ReadOnlyWindowStore,
    RocksDbWindowStore, StateRestoreCallback, StateStore, StoreError, WindowStore,
    window_store_key,
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

mod logged_rocksdb {
    use super::*;
    state_stores::window_store_contract!(|dir| ChangeLoggingWindowStore::new(
        RocksDbWindowStore::open("windows", dir, 1_000).unwrap(),
        Box::new(RecordingSink::new())
    ));
}

mod cached_in_memory {
    use super::*;
    state_stores::window_store_contract!(|_dir| CachingWindowStore::new(
        InMemoryWindowStore::new("windows", 1_000),
        1 << 20
    ));
}

mod cached_rocksdb {
    use super::*;
    state_stores::window_store_contract!(|dir| CachingWindowStore::new(
        RocksDbWindowStore::open("windows", dir, 1_000).unwrap(),
        1 << 20
    ));
}

mod cached_logged_in_memory {
    use super::*;
    state_stores::window_store_contract!(|_dir| CachingWindowStore::new(
        ChangeLoggingWindowStore::new(
            InMemoryWindowStore::new("windows", 1_000),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

mod cached_logged_rocksdb {
    use super::*;
    state_stores::window_store_contract!(|dir| CachingWindowStore::new(
        ChangeLoggingWindowStore::new(
            RocksDbWindowStore::open("windows", dir, 1_000).unwrap(),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

/// A cache so small that every write is written down at once: the
/// write-back path must keep the contract too.
mod tiny_cache_rocksdb {
    use super::*;
    state_stores::window_store_contract!(|dir| CachingWindowStore::new(
        RocksDbWindowStore::open("windows", dir, 1_000).unwrap(),
        1
    ));
}

mod duplicates_in_memory {
    use super::*;
    state_stores::window_store_duplicates_contract!(|_dir| {
        InMemoryWindowStore::new_with_duplicates("windows", 1_000)
    });
}

mod duplicates_rocksdb {
    use super::*;
    state_stores::window_store_duplicates_contract!(|dir| {
        RocksDbWindowStore::open_with_duplicates("windows", dir, 1_000).unwrap()
    });
}

mod duplicates_logged_in_memory {
    use super::*;
    state_stores::window_store_duplicates_contract!(|_dir| ChangeLoggingWindowStore::new(
        InMemoryWindowStore::new_with_duplicates("windows", 1_000),
        Box::new(RecordingSink::new())
    ));
}

/// Boxed, as the runtime holds its stores: a duplicates store still says so.
mod duplicates_logged_boxed_rocksdb {
    use super::*;
    state_stores::window_store_duplicates_contract!(|dir| ChangeLoggingWindowStore::new(
        Box::new(RocksDbWindowStore::open_with_duplicates("windows", dir, 1_000).unwrap())
            as Box<dyn WindowStore>,
        Box::new(RecordingSink::new())
    ));
}

/// A cache over a store that keeps duplicates stands aside.
mod duplicates_cached_logged_in_memory {
    use super::*;
    state_stores::window_store_duplicates_contract!(|_dir| CachingWindowStore::new(
        ChangeLoggingWindowStore::new(
            InMemoryWindowStore::new_with_duplicates("windows", 1_000),
            Box::new(RecordingSink::new())
        ),
        1 << 20
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

fn values(iter: state_stores::WindowIterator<'_>) -> Vec<(i64, Vec<u8>)> {
    iter.map(|entry| {
        let ((_, start), value) = entry.unwrap();
        (start, value)
    })
    .collect()
}

fn batch(changes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<(&[u8], Option<&[u8]>)> {
    changes
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect()
}

#[test]
fn duplicates_are_logged_each_under_its_own_sequence_number() {
    let sink = RecordingSink::new();
    let mut store = ChangeLoggingWindowStore::new(
        InMemoryWindowStore::new_with_duplicates("join", 1_000),
        Box::new(sink.clone()),
    );
    assert!(store.retains_duplicates());
    store.put(b"k", Some(b"1"), 10).unwrap();
    store.put(b"k", Some(b"1"), 10).unwrap();
    store.put(b"k", None, 10).unwrap();
    store.put(b"j", Some(b"2"), 20).unwrap();
    assert_eq!(
        sink.changes(),
        [
            (window_store_key(b"k", 10, 1), Some(b"1".to_vec())),
            (window_store_key(b"k", 10, 2), Some(b"1".to_vec())),
            (window_store_key(b"j", 20, 3), Some(b"2".to_vec())),
        ],
        "numbered from 1, as Kafka Streams; the no-op delete is not logged"
    );
}

#[test]
fn restoring_a_duplicates_changelog_keeps_every_duplicate_and_numbers_new_ones_after() {
    let sink = RecordingSink::new();
    let mut store = ChangeLoggingWindowStore::new(
        InMemoryWindowStore::new_with_duplicates("join", 1_000),
        Box::new(sink.clone()),
    );
    for value in [b"a", b"b", b"c"] {
        store.put(b"k", Some(value), 10).unwrap();
    }
    let changes = sink.changes();

    let dir = state_stores::testing::tempdir().unwrap();
    let replay = RecordingSink::new();
    let mut restored = ChangeLoggingWindowStore::new(
        RocksDbWindowStore::open_with_duplicates("join", dir.path(), 1_000).unwrap(),
        Box::new(replay.clone()),
    );
    restored.restore_batch(&batch(&changes)).unwrap();
    assert!(replay.changes().is_empty(), "restoring logs nothing");
    assert_eq!(
        values(restored.fetch_range(b"k", 0, 100).unwrap()),
        [
            (10, b"a".to_vec()),
            (10, b"b".to_vec()),
            (10, b"c".to_vec())
        ]
    );
    restored.put(b"k", Some(b"d"), 10).unwrap();
    assert_eq!(
        replay.changes(),
        [(window_store_key(b"k", 10, 4), Some(b"d".to_vec()))],
        "a new duplicate must not take a restored one's changelog key"
    );
    assert_eq!(restored.fetch_range(b"k", 10, 10).unwrap().count(), 4);
}

#[test]
fn rocksdb_duplicates_survive_a_reopen_and_new_ones_replace_none() {
    let dir = state_stores::testing::tempdir().unwrap();
    let mut store = RocksDbWindowStore::open_with_duplicates("join", dir.path(), 60_000).unwrap();
    store.put(b"k", Some(b"1"), 10).unwrap();
    store.put(b"k", Some(b"2"), 10).unwrap();
    store.flush().unwrap();
    store.close().unwrap();

    let mut store = RocksDbWindowStore::open_with_duplicates("join", dir.path(), 60_000).unwrap();
    assert!(store.retains_duplicates());
    store.put(b"k", Some(b"3"), 10).unwrap();
    assert_eq!(
        values(store.fetch_range(b"k", 0, 100).unwrap()),
        [
            (10, b"1".to_vec()),
            (10, b"2".to_vec()),
            (10, b"3".to_vec())
        ]
    );
    assert_eq!(store.fetch(b"k", 10).unwrap().as_deref(), Some(&b"1"[..]));
}

fn cached_logged(
    sink: &RecordingSink,
    max_bytes: usize,
) -> CachingWindowStore<ChangeLoggingWindowStore<InMemoryWindowStore>> {
    CachingWindowStore::new(logged(sink), max_bytes)
}

#[test]
fn repeated_writes_to_a_window_reach_the_store_and_changelog_once_per_flush() {
    let sink = RecordingSink::new();
    let mut store = cached_logged(&sink, 1 << 20);
    for n in 0..100u32 {
        store.put(b"k", Some(&n.to_be_bytes()), 10).unwrap();
        store.put(b"j", Some(&n.to_be_bytes()), 20).unwrap();
    }
    assert_eq!(store.dirty_len(), 2);
    assert!(
        sink.changes().is_empty(),
        "nothing written down before a flush"
    );
    assert_eq!(store.inner().fetch(b"k", 10).unwrap(), None);
    assert_eq!(
        store.fetch(b"k", 10).unwrap(),
        Some(99u32.to_be_bytes().to_vec())
    );

    store.flush_cache().unwrap();
    assert_eq!(
        sink.changes(),
        [
            (
                window_store_key(b"k", 10, 0),
                Some(99u32.to_be_bytes().to_vec())
            ),
            (
                window_store_key(b"j", 20, 0),
                Some(99u32.to_be_bytes().to_vec())
            ),
        ],
        "once per window, by start"
    );
    assert_eq!(
        store.inner().fetch(b"k", 10).unwrap(),
        Some(99u32.to_be_bytes().to_vec())
    );
    assert_eq!(store.dirty_len(), 0);

    // A window written and deleted again between flushes: one tombstone.
    store.put(b"k", Some(b"x"), 10).unwrap();
    store.put(b"k", None, 10).unwrap();
    store.flush().unwrap();
    assert_eq!(sink.changes().len(), 3);
    assert_eq!(sink.changes()[2], (window_store_key(b"k", 10, 0), None));
    assert_eq!(store.inner().fetch(b"k", 10).unwrap(), None);
    // Nothing cached: a flush writes nothing.
    store.flush().unwrap();
    assert_eq!(sink.changes().len(), 3);
}

#[test]
fn a_cache_over_its_budget_writes_everything_down() {
    let sink = RecordingSink::new();
    let mut store = cached_logged(&sink, 1_000);
    let value = [7u8; 300];
    store.put(b"a", Some(&value), 10).unwrap();
    store.put(b"b", Some(&value), 10).unwrap();
    assert!(sink.changes().is_empty());
    store.put(b"c", Some(&value), 10).unwrap();
    assert_eq!(
        sink.changes().len(),
        3,
        "over 1,000 bytes: all written down"
    );
    assert_eq!(store.dirty_len(), 0);
    assert_eq!(store.inner().fetch_all(0, 100).unwrap().count(), 3);
}

#[test]
fn a_cached_write_that_expires_before_the_flush_is_never_written_down() {
    let sink = RecordingSink::new();
    let mut store = cached_logged(&sink, 1 << 20);
    store.put(b"a", Some(b"old"), 0).unwrap();
    store.put(b"a", Some(b"new"), 1_000).unwrap();
    // Expired on arrival: ignored, as the store would.
    store.put(b"b", Some(b"late"), 0).unwrap();
    assert_eq!(store.dirty_len(), 1);
    store.flush().unwrap();
    assert_eq!(
        sink.changes(),
        [(window_store_key(b"a", 1_000, 0), Some(b"new".to_vec()))]
    );
}

#[test]
fn restoring_through_a_cache_replaces_what_it_held() {
    let sink = RecordingSink::new();
    let mut store = cached_logged(&sink, 1 << 20);
    store.put(b"a", Some(b"cached"), 10).unwrap();
    let record = window_store_key(b"a", 10, 0);
    store
        .restore_batch(&[(record.as_slice(), Some(b"restored".as_slice()))])
        .unwrap();
    assert_eq!(store.dirty_len(), 0);
    assert_eq!(
        store.fetch(b"a", 10).unwrap().as_deref(),
        Some(&b"restored"[..])
    );
    store.flush().unwrap();
    assert!(sink.changes().is_empty(), "restoring logs nothing");
}
