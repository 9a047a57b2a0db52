//! What only the RocksDB store does: persistence and directory locking.

use state_stores::testing::{collect, tempdir};
use state_stores::{KeyValueStore, ReadOnlyKeyValueStore, RocksDbStore, StateStore, StoreError};

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempdir().unwrap();
    let mut store = RocksDbStore::open("s", dir.path()).unwrap();
    assert!(store.persistent());
    for i in 0..1000u32 {
        store.put(&i.to_be_bytes(), &(i * 2).to_be_bytes()).unwrap();
    }
    store.delete(&7u32.to_be_bytes()).unwrap();
    store.close().unwrap();

    let store = RocksDbStore::open("s", dir.path()).unwrap();
    assert_eq!(
        store.get(&5u32.to_be_bytes()).unwrap(),
        Some(10u32.to_be_bytes().to_vec())
    );
    assert_eq!(store.get(&7u32.to_be_bytes()).unwrap(), None);
    assert_eq!(collect(store.all().unwrap()).unwrap().len(), 999);
}

#[test]
fn dropping_without_close_keeps_flushed_data() {
    let dir = tempdir().unwrap();
    {
        let mut store = RocksDbStore::open("s", dir.path()).unwrap();
        store.put(b"a", b"1").unwrap();
        store.flush().unwrap();
    }
    let store = RocksDbStore::open("s", dir.path()).unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn second_open_of_a_locked_directory_is_a_clear_error() {
    let dir = tempdir().unwrap();
    let mut first = RocksDbStore::open("s", dir.path()).unwrap();
    let err = RocksDbStore::open("s", dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { ref path, .. } if path == dir.path()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("locked"), "{message}");
    assert!(err.is_retriable());

    // Closing the first releases the lock.
    first.close().unwrap();
    RocksDbStore::open("s", dir.path()).unwrap();
}

#[test]
fn unusable_path_is_an_io_error_naming_it() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = RocksDbStore::open("s", file.join("store")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
