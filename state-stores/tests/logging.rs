//! Change logging, restoration and the record cache.

use std::sync::Arc;

use state_stores::testing::{RecordingSink, collect, tempdir};
use state_stores::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, I64Serde, InMemoryKeyValueStore,
    KeyValueStore, ReadOnlyKeyValueStore, RocksDbStore, StateRestoreCallback, StateStore,
    StoreError, StringSerde, TypedKeyValueStore,
};

fn change(k: &str, v: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
}

fn logged(sink: &RecordingSink) -> ChangeLoggingKeyValueStore<InMemoryKeyValueStore> {
    ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("s"), Box::new(sink.clone()))
}

fn logged_on_disk(
    name: &str,
    dir: &std::path::Path,
    sink: &RecordingSink,
) -> ChangeLoggingKeyValueStore<RocksDbStore> {
    ChangeLoggingKeyValueStore::new(
        RocksDbStore::open(name, dir).unwrap(),
        Box::new(sink.clone()),
    )
}

#[test]
fn every_write_and_delete_is_logged_in_order() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"a", b"1").unwrap();
    store.put_if_absent(b"a", b"ignored").unwrap();
    store.put_if_absent(b"b", b"2").unwrap();
    store.put_all(&[(b"c", Some(b"3")), (b"a", None)]).unwrap();
    store.delete(b"b").unwrap();
    store.delete(b"never-there").unwrap();
    assert_eq!(
        sink.changes(),
        vec![
            change("a", Some("1")),
            change("b", Some("2")),
            change("c", Some("3")),
            change("a", None),
            change("b", None),
            change("never-there", None),
        ]
    );
}

#[test]
fn restore_applies_without_logging_again() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    store.put(b"stale", b"x").unwrap();
    let before = sink.changes().len();
    store
        .restore_batch(&[(b"a", Some(b"1")), (b"stale", None), (b"a", Some(b"2"))])
        .unwrap();
    assert_eq!(
        sink.changes().len(),
        before,
        "restoring must not write the changelog"
    );
    assert_eq!(
        collect(store.all().unwrap()).unwrap(),
        vec![(b"a".to_vec(), b"2".to_vec())]
    );
}

#[test]
fn a_failing_sink_is_a_changelog_error_naming_the_store() {
    let sink = RecordingSink::new();
    let mut store = logged(&sink);
    sink.set_failing(true);
    let err = store.put(b"a", b"1").unwrap_err();
    assert!(
        matches!(err, StoreError::Changelog { ref store, .. } if store == "s"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "changelog of store `s`: producer queue is full"
    );
}

#[test]
fn cache_collapses_writes_per_key_until_flush() {
    let sink = RecordingSink::new();
    let mut store = CachingKeyValueStore::new(logged(&sink), 1 << 20);
    for i in 0..1000u32 {
        store.put(b"hot", &i.to_be_bytes()).unwrap();
        store.put(format!("k{}", i % 10).as_bytes(), b"v").unwrap();
    }
    store.put(b"doomed", b"x").unwrap();
    store.delete(b"doomed").unwrap();
    assert!(
        sink.changes().is_empty(),
        "nothing reaches the changelog before flush"
    );
    assert_eq!(
        store.inner().inner().approximate_num_entries().unwrap(),
        0,
        "nor the store"
    );
    assert_eq!(
        store.get(b"hot").unwrap(),
        Some(999u32.to_be_bytes().to_vec())
    );

    store.flush().unwrap();
    let changes = sink.changes();
    assert_eq!(changes.len(), 12, "one record per key: hot, k0..k9, doomed");
    assert!(changes.contains(&(b"hot".to_vec(), Some(999u32.to_be_bytes().to_vec()))));
    assert!(changes.contains(&change("doomed", None)));
    assert_eq!(store.dirty_len(), 0);

    store.flush().unwrap();
    assert_eq!(sink.changes().len(), 12, "a second flush sends nothing new");
}

#[test]
fn cache_writes_back_when_over_budget() {
    let sink = RecordingSink::new();
    let mut store = CachingKeyValueStore::new(logged(&sink), 4096);
    for i in 0..1000u32 {
        store.put(&i.to_be_bytes(), &[0u8; 32]).unwrap();
    }
    let written = sink.changes().len();
    assert!(
        written > 900,
        "the budget holds only a few dozen entries, {written} written back"
    );
    assert!(store.dirty_len() < 100);
    store.flush().unwrap();
    assert_eq!(sink.changes().len(), 1000);
}

#[test]
fn cache_is_flushed_by_close() {
    let dir = tempdir().unwrap();
    let mut store =
        CachingKeyValueStore::new(RocksDbStore::open("s", dir.path()).unwrap(), 1 << 20);
    store.put(b"a", b"1").unwrap();
    store.close().unwrap();
    let reopened = RocksDbStore::open("s", dir.path()).unwrap();
    assert_eq!(reopened.get(b"a").unwrap(), Some(b"1".to_vec()));
}

/// A commit under exactly-once sends the cached writes to the changelog
/// and keeps them cached, marked logged: the store below gets them at the
/// next full flush (or when the cache outgrows its budget), without a
/// second changelog record. Files are written only by a full flush.
#[test]
fn flush_cache_logs_cached_writes_and_leaves_the_store_to_a_full_flush() {
    let dir = tempdir().unwrap();
    let sink = RecordingSink::new();
    let mut store = CachingKeyValueStore::new(logged_on_disk("s", dir.path(), &sink), 1 << 20);
    let tables = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sst")
            })
            .count()
    };
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    store.flush_cache().unwrap();
    assert_eq!(
        sink.changes(),
        vec![change("a", Some("1")), change("b", Some("2"))]
    );
    assert_eq!(store.dirty_len(), 2, "still cached");
    assert_eq!(store.inner().inner().get(b"b").unwrap(), None);
    assert_eq!(store.get(b"b").unwrap(), Some(b"2".to_vec()));
    // A key changed since is logged at the next commit; the other is not
    // logged again.
    store.put(b"a", b"3").unwrap();
    store.delete(b"c").unwrap();
    store.flush_cache().unwrap();
    assert_eq!(
        sink.changes()[2..],
        [change("a", Some("3")), change("c", None)]
    );
    store.flush_cache().unwrap();
    assert_eq!(sink.changes().len(), 4, "nothing new, nothing logged");
    assert_eq!(tables(), 0);
    store.flush().unwrap();
    assert_eq!(tables(), 1, "a full flush writes the store out");
    assert_eq!(sink.changes().len(), 4, "and logs nothing twice");
    let stored = collect(store.inner().inner().all().unwrap()).unwrap();
    assert_eq!(
        stored,
        [
            (b"a".to_vec(), b"3".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    // Logged and unlogged writes written back together when the cache
    // outgrows its budget: each logged exactly once.
    let sink = RecordingSink::new();
    let mut store = CachingKeyValueStore::new(logged(&sink), 4096);
    store.put(b"logged", b"1").unwrap();
    store.flush_cache().unwrap();
    for i in 0..64u32 {
        store.put(&i.to_be_bytes(), &[0; 64]).unwrap();
    }
    assert!(store.dirty_len() < 64, "written back when over budget");
    assert_eq!(
        store.inner().inner().get(b"logged").unwrap(),
        Some(b"1".to_vec())
    );
    store.flush().unwrap();
    let changes = sink.changes();
    assert_eq!(changes.len(), 65);
    assert_eq!(changes.iter().filter(|(k, _)| k == b"logged").count(), 1);
}

/// As the store builders stack the layers: a cache over a boxed logging
/// store, itself over a boxed store. Every layer passes the logging calls
/// down, so a commit's records reach the changelog, and once.
#[test]
fn a_commit_logs_through_boxed_layers_and_stacked_caches() {
    let sink = RecordingSink::new();
    let stored: Box<dyn KeyValueStore> = Box::new(InMemoryKeyValueStore::new("s"));
    let logging: Box<dyn KeyValueStore> = Box::new(ChangeLoggingKeyValueStore::new(
        stored,
        Box::new(sink.clone()),
    ));
    let inner_cache: Box<dyn KeyValueStore> = Box::new(CachingKeyValueStore::new(logging, 1 << 20));
    let mut store = CachingKeyValueStore::new(inner_cache, 1 << 20);
    store.put(b"a", b"1").unwrap();
    store.flush_cache().unwrap();
    assert_eq!(sink.changes(), vec![change("a", Some("1"))]);
    store.flush().unwrap();
    assert_eq!(sink.changes().len(), 1, "logged once");
    assert_eq!(store.inner().get(b"a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn cache_restore_drops_superseded_cached_writes() {
    let sink = RecordingSink::new();
    let mut store = CachingKeyValueStore::new(logged(&sink), 1 << 20);
    store.put(b"a", b"cached").unwrap();
    store.restore_batch(&[(b"a", Some(b"restored"))]).unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"restored".to_vec()));
    store.flush().unwrap();
    assert!(sink.changes().is_empty());
}

#[test]
fn typed_store_over_a_logged_rocksdb_store() {
    let dir = tempdir().unwrap();
    let sink = RecordingSink::new();
    let bytes = logged_on_disk("counts", dir.path(), &sink);
    let mut counts = TypedKeyValueStore::new(bytes, Arc::new(StringSerde), Arc::new(I64Serde));
    for word in ["kafka", "streams", "kafka"] {
        let n = counts.get(&word.to_string()).unwrap().unwrap_or(0);
        counts.put(&word.to_string(), &(n + 1)).unwrap();
    }
    assert_eq!(counts.get(&"kafka".to_string()).unwrap(), Some(2));
    assert_eq!(
        counts.put_if_absent(&"streams".to_string(), &9).unwrap(),
        Some(1)
    );
    counts
        .put_all(&[("rust".to_string(), Some(5)), ("streams".to_string(), None)])
        .unwrap();
    let all: Vec<_> = counts.all().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, vec![("kafka".to_string(), 2), ("rust".to_string(), 5)]);
    let from_k: Vec<_> = counts
        .range(Some(&"k".to_string()), None)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(from_k, ["kafka", "rust"]);
    let rev: Vec<_> = counts
        .reverse_range(None, None)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(rev, ["rust", "kafka"]);
    let ka: Vec<_> = counts
        .prefix_scan(&"ka".to_string(), &StringSerde)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(ka, [2]);
    assert_eq!(counts.delete(&"rust".to_string()).unwrap(), Some(5));
    assert_eq!(sink.changes().last().unwrap(), &change("rust", None));
    assert_eq!(
        sink.changes()[0].1.as_deref(),
        Some(&1i64.to_be_bytes()[..])
    );

    // A value the serde cannot read is a clear error, not a panic.
    counts.inner_mut().put(b"broken", b"abc").unwrap();
    let err = counts.get(&"broken".to_string()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "store `counts`: expected i64 of 8 bytes, got 3"
    );
    counts.close().unwrap();
}

#[test]
fn typed_writes_of_any_size_keep_their_own_bytes() {
    // Typed gets and puts encode into reused buffers: a large value, then
    // small ones, must each be stored exactly (nothing left over).
    let mut store = TypedKeyValueStore::new(
        InMemoryKeyValueStore::new("sizes"),
        Arc::new(StringSerde),
        Arc::new(StringSerde),
    );
    let big = "x".repeat(3 << 20);
    store.put(&"big".to_string(), &big).unwrap();
    store.put(&"small".to_string(), &"s".to_string()).unwrap();
    store.put(&"b".to_string(), &String::new()).unwrap();
    assert_eq!(store.get(&"big".to_string()).unwrap(), Some(big));
    assert_eq!(store.get(&"small".to_string()).unwrap(), Some("s".into()));
    assert_eq!(store.get(&"b".to_string()).unwrap(), Some(String::new()));
    assert_eq!(store.get(&"bi".to_string()).unwrap(), None);
}
