//! The session store contract, run against every session store and stack,
//! and the session changelog's layout and restoration.

use state_stores::testing::RecordingSink;
use state_stores::{
    ChangeLoggingSessionStore, InMemorySessionStore, ReadOnlySessionStore, RocksDbSessionStore,
    SessionStore, StateRestoreCallback, session_store_key,
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
    use state_stores::StateStore;
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
