//! The session store contract, run against every session store and stack,
//! and the session changelog's layout and restoration.

use state_stores::testing::RecordingSink;
use state_stores::{
    CachingSessionStore, ChangeLoggingSessionStore, InMemorySessionStore, ReadOnlySessionStore,
    RocksDbSessionStore, SessionStore, StateRestoreCallback, StateStore, session_store_key,
};

mod in_memory {
    use super::*;
    state_stores::session_store_contract!(|_dir| InMemorySessionStore::new("sessions", 1_000));
}

mod rocksdb {
    use super::*;
    state_stores::session_store_contract!(
        |dir| RocksDbSessionStore::open("sessions", dir, 1_000).unwrap()
    );
}

mod logged_in_memory {
    use super::*;
    state_stores::session_store_contract!(|_dir| ChangeLoggingSessionStore::new(
        InMemorySessionStore::new("sessions", 1_000),
        Box::new(RecordingSink::new())
    ));
}

mod logged_rocksdb {
    use super::*;
    state_stores::session_store_contract!(|dir| ChangeLoggingSessionStore::new(
        RocksDbSessionStore::open("sessions", dir, 1_000).unwrap(),
        Box::new(RecordingSink::new())
    ));
}

mod cached_in_memory {
    use super::*;
    state_stores::session_store_contract!(|_dir| CachingSessionStore::new(
        InMemorySessionStore::new("sessions", 1_000),
        1 << 20
    ));
}

mod cached_rocksdb {
    use super::*;
    state_stores::session_store_contract!(|dir| CachingSessionStore::new(
        RocksDbSessionStore::open("sessions", dir, 1_000).unwrap(),
        1 << 20
    ));
}

mod cached_logged_in_memory {
    use super::*;
    state_stores::session_store_contract!(|_dir| CachingSessionStore::new(
        ChangeLoggingSessionStore::new(
            InMemorySessionStore::new("sessions", 1_000),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

mod cached_logged_rocksdb {
    use super::*;
    state_stores::session_store_contract!(|dir| CachingSessionStore::new(
        ChangeLoggingSessionStore::new(
            RocksDbSessionStore::open("sessions", dir, 1_000).unwrap(),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

/// A cache so small that every write is written down at once.
mod tiny_cache_rocksdb {
    use super::*;
    state_stores::session_store_contract!(|dir| CachingSessionStore::new(
        RocksDbSessionStore::open("sessions", dir, 1_000).unwrap(),
        1
    ));
}

fn logged(sink: &RecordingSink) -> ChangeLoggingSessionStore<InMemorySessionStore> {
    ChangeLoggingSessionStore::new(
        InMemorySessionStore::new("s", 1_000),
        Box::new(sink.clone()),
    )
}

#[test]
fn every_write_is_logged_with_kafka_streams_session_key_layout() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"alice", 1_000, 5_000, Some(b"3")).unwrap();
    store.put(b"alice", 1_000, 5_000, None).unwrap();
    let key = [
        b"alice".as_slice(),
        &5_000_i64.to_be_bytes(),
        &1_000_i64.to_be_bytes(),
    ]
    .concat();
    assert_eq!(key, session_store_key(b"alice", 1_000, 5_000));
    assert_eq!(
        sink.changes(),
        [(key.clone(), Some(b"3".to_vec())), (key, None)]
    );
}

#[test]
fn restoring_the_changelog_rebuilds_the_sessions_without_logging_again() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"a", 1, 5, Some(b"1")).unwrap();
    store.put(b"a", 1, 5, None).unwrap();
    store.put(b"a", 1, 9, Some(b"2")).unwrap();
    store.put(b"b", 3, 4, Some(b"3")).unwrap();
    let changes = sink.changes();
    let replay = RecordingSink::new();
    let mut restored = logged(&replay);
    let batch: Vec<(&[u8], Option<&[u8]>)> = changes
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    restored.restore_batch(&batch).unwrap();
    assert!(replay.changes().is_empty(), "restoring logs nothing");
    for key in [b"a".as_slice(), b"b"] {
        let got: Vec<_> = restored.fetch(key).unwrap().map(Result::unwrap).collect();
        let want: Vec<_> = store.fetch(key).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn rocksdb_sessions_survive_a_reopen_with_the_stores_clock() {
    let dir = state_stores::testing::tempdir().unwrap();
    let mut store = RocksDbSessionStore::open("s", dir.path(), 120_000).unwrap();
    store.put(b"a", 0, 0, Some(b"old")).unwrap();
    store.put(b"a", 100_000, 130_000, Some(b"kept")).unwrap();
    store.flush().unwrap();
    store.close().unwrap();
    let store = RocksDbSessionStore::open("s", dir.path(), 120_000).unwrap();
    assert_eq!(
        store
            .fetch_session(b"a", 100_000, 130_000)
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    // The clock is the latest end on disk (130 s): the session that ended at 0 expired.
    assert_eq!(store.fetch_session(b"a", 0, 0).unwrap(), None);
    assert_eq!(store.fetch(b"a").unwrap().count(), 1);
}

#[test]
fn repeated_writes_to_a_session_reach_the_store_and_changelog_once_per_flush() {
    let sink = RecordingSink::new();
    let mut store = CachingSessionStore::new(logged(&sink), 1 << 20);
    for n in 0..100u32 {
        store.put(b"k", 10, 20, Some(&n.to_be_bytes())).unwrap();
    }
    // A session that grows: the old one removed, a longer one put, twice.
    store.put(b"j", 0, 5, Some(b"short")).unwrap();
    store.put(b"j", 0, 5, None).unwrap();
    store.put(b"j", 0, 8, Some(b"longer")).unwrap();
    assert_eq!(store.dirty_len(), 3);
    assert!(
        sink.changes().is_empty(),
        "nothing written down before a flush"
    );
    assert_eq!(store.inner().fetch(b"k").unwrap().count(), 0);

    store.flush().unwrap();
    assert_eq!(
        sink.changes(),
        [
            (session_store_key(b"j", 0, 5), None),
            (session_store_key(b"j", 0, 8), Some(b"longer".to_vec())),
            (
                session_store_key(b"k", 10, 20),
                Some(99u32.to_be_bytes().to_vec())
            ),
        ],
        "once per session, by end"
    );
    assert_eq!(
        store.inner().fetch_session(b"k", 10, 20).unwrap(),
        Some(99u32.to_be_bytes().to_vec())
    );
    store.flush_cache().unwrap();
    assert_eq!(sink.changes().len(), 3, "nothing cached, nothing written");
}

#[test]
fn a_session_cache_over_its_budget_writes_everything_down() {
    let sink = RecordingSink::new();
    let mut store = CachingSessionStore::new(logged(&sink), 1_000);
    let value = [7u8; 300];
    store.put(b"a", 0, 10, Some(&value)).unwrap();
    store.put(b"b", 0, 10, Some(&value)).unwrap();
    assert!(sink.changes().is_empty());
    store.put(b"c", 0, 10, Some(&value)).unwrap();
    assert_eq!(
        sink.changes().len(),
        3,
        "over 1,000 bytes: all written down"
    );
    assert_eq!(store.dirty_len(), 0);
}

#[test]
fn a_cached_session_that_expires_before_the_flush_is_never_written_down() {
    let sink = RecordingSink::new();
    let mut store = CachingSessionStore::new(logged(&sink), 1 << 20);
    store.put(b"a", 0, 0, Some(b"old")).unwrap();
    store.put(b"a", 1_000, 1_000, Some(b"new")).unwrap();
    store.put(b"b", 0, 0, Some(b"late")).unwrap();
    assert_eq!(store.dirty_len(), 1);
    store.flush().unwrap();
    assert_eq!(
        sink.changes(),
        [(session_store_key(b"a", 1_000, 1_000), Some(b"new".to_vec()))]
    );
}

#[test]
fn restoring_through_a_session_cache_replaces_what_it_held() {
    let sink = RecordingSink::new();
    let mut store = CachingSessionStore::new(logged(&sink), 1 << 20);
    store.put(b"a", 1, 5, Some(b"cached")).unwrap();
    let record = session_store_key(b"a", 1, 5);
    store
        .restore_batch(&[(record.as_slice(), Some(b"restored".as_slice()))])
        .unwrap();
    assert_eq!(store.dirty_len(), 0);
    assert_eq!(
        store.fetch_session(b"a", 1, 5).unwrap().as_deref(),
        Some(&b"restored"[..])
    );
    store.flush().unwrap();
    assert!(sink.changes().is_empty(), "restoring logs nothing");
}
