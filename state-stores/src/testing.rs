//! Test kit for stores (feature `test-util`): the contract every key-value
//! store must meet, and a changelog sink that records what it is sent.
//!
//! Run the contract against a store of your own with
//! [`key_value_store_contract!`](crate::key_value_store_contract): it writes
//! one `#[test]` per case, each with a fresh store and temporary directory.
//!
//! ```text
//! state_stores::key_value_store_contract!(|dir| MyStore::open("s", dir).unwrap());
//! ```

use std::sync::{Arc, Mutex};

use crate::changelog::ChangelogSink;
use crate::{BoxError, KeyValueStore, Result, StoreError};

pub use tempfile::{TempDir, tempdir};

/// A changelog record as a [`RecordingSink`] saw it.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A [`ChangelogSink`] that keeps every change it is sent, shared with the
/// test through [`RecordingSink::changes`]. It can be told to fail.
#[derive(Clone, Default)]
pub struct RecordingSink {
    changes: Arc<Mutex<Vec<Change>>>,
    fail: Arc<Mutex<bool>>,
}

impl RecordingSink {
    /// A sink with no changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every change received so far, in order.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().expect("sink lock").clone()
    }

    /// Makes later calls fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, fail: bool) {
        *self.fail.lock().expect("sink lock") = fail;
    }
}

impl ChangelogSink for RecordingSink {
    fn log_change(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), BoxError> {
        if *self.fail.lock().expect("sink lock") {
            return Err("producer queue is full".into());
        }
        self.changes
            .lock()
            .expect("sink lock")
            .push((key.to_vec(), value.map(<[u8]>::to_vec)));
        Ok(())
    }
}

/// Collects an iterator's entries, failing on the first error.
pub fn collect(iter: crate::KeyValueIterator<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    iter.collect()
}

/// Asserts that a call on a closed store failed with a retriable
/// [`StoreError::Closed`]: what every contract's closed-store case checks.
pub fn assert_closed(result: Result<()>) {
    match result {
        Err(e @ StoreError::Closed { .. }) => assert!(e.is_retriable()),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// A time whose big-endian bytes, sign bit flipped (as a store may keep
/// times so that they sort), are `b` then `0xff`s: key `a` written at this
/// time may sort among key `ab`'s entries when keys come first.
const CONTINUES_AB: i64 =
    i64::from_be_bytes([b'b' ^ 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/// Keys that share leading bytes: the empty key, `a`, keys that extend it
/// by a zero, a letter, and bytes that look like `times` (big-endian,
/// plain and with the sign bit flipped) with `tail` zeros after them, as
/// stored keys of `a` might end.
fn keys_sharing_a_prefix(times: &[i64], tail: usize) -> Vec<Vec<u8>> {
    let looks_stored = |flip: i64| {
        let mut key = b"a".to_vec();
        for time in times {
            key.extend_from_slice(&(time ^ flip).to_be_bytes());
        }
        key.extend(std::iter::repeat_n(0, tail));
        key
    };
    vec![
        Vec::new(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"ab".to_vec(),
        looks_stored(0),
        looks_stored(i64::MIN),
    ]
}

/// The cases of the contract. Each takes a fresh, empty, open store.
pub mod contract {
    use super::*;

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
        entries
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    fn fill(store: &mut dyn KeyValueStore, keys: &[&str]) {
        for key in keys {
            store
                .put(key.as_bytes(), format!("v-{key}").as_bytes())
                .unwrap();
        }
    }

    /// Puts are read back; a second put replaces the value.
    pub fn put_then_get(store: &mut dyn KeyValueStore) {
        assert_eq!(store.get(b"a").unwrap(), None);
        store.put(b"a", b"1").unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        store.put(b"a", b"22").unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"22".to_vec()));
        store.flush().unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"22".to_vec()));
    }

    /// `get_into` copies what `get` returns into a cleared buffer, before
    /// and after a flush, for present, empty, deleted and missing keys.
    pub fn get_into_matches_get(store: &mut dyn KeyValueStore) {
        let check = |store: &dyn KeyValueStore, key: &[u8]| {
            let mut out = b"left over".to_vec();
            let found = store.get_into(key, &mut out).unwrap();
            let expected = store.get(key).unwrap();
            assert_eq!(found, expected.is_some(), "{key:?}");
            assert_eq!(out, expected.unwrap_or_default(), "{key:?}");
        };
        store.put(b"a", b"1").unwrap();
        store.put(b"e", b"").unwrap();
        store.put(b"d", b"gone").unwrap();
        store.delete(b"d").unwrap();
        for flushed in [false, true] {
            for key in [&b"a"[..], b"e", b"d", b"missing"] {
                check(store, key);
            }
            if !flushed {
                store.flush().unwrap();
            }
        }
        let mut out = Vec::new();
        assert!(store.get_into(b"a", &mut out).unwrap());
        assert_eq!(out, b"1");
    }

    /// A cache flush for a commit keeps every write readable.
    pub fn flush_cache_keeps_writes_readable(store: &mut dyn KeyValueStore) {
        store.put(b"a", b"1").unwrap();
        store.put(b"b", b"2").unwrap();
        store.flush_cache().unwrap();
        store.delete(b"b").unwrap();
        store.flush_cache().unwrap();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"b").unwrap(), None);
        store.flush().unwrap();
        assert_eq!(keys(&collect(store.all().unwrap()).unwrap()), ["a"]);
    }

    /// An empty value is a value, not an absence; an empty key is a key.
    pub fn empty_values_and_keys(store: &mut dyn KeyValueStore) {
        store.put(b"k", b"").unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(Vec::new()));
        store.put(b"", b"empty key").unwrap();
        assert_eq!(store.get(b"").unwrap(), Some(b"empty key".to_vec()));
        store.flush().unwrap();
        assert_eq!(store.get(b"k").unwrap(), Some(Vec::new()));
        assert_eq!(
            collect(store.all().unwrap()).unwrap(),
            vec![kv("", "empty key"), kv("k", "")]
        );
    }

    /// Delete returns the old value and removes the key, flushed or not.
    pub fn delete_returns_old_value(store: &mut dyn KeyValueStore) {
        assert_eq!(store.delete(b"missing").unwrap(), None);
        store.put(b"a", b"1").unwrap();
        store.put(b"b", b"2").unwrap();
        store.flush().unwrap();
        assert_eq!(store.delete(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(b"a").unwrap(), None);
        assert_eq!(store.delete(b"a").unwrap(), None);
        store.put(b"c", b"3").unwrap();
        assert_eq!(store.delete(b"c").unwrap(), Some(b"3".to_vec()));
        store.flush().unwrap();
        assert_eq!(store.get(b"c").unwrap(), None);
        assert_eq!(keys(&collect(store.all().unwrap()).unwrap()), ["b"]);
    }

    /// Put-if-absent writes only when the key has no value.
    pub fn put_if_absent_keeps_existing(store: &mut dyn KeyValueStore) {
        assert_eq!(store.put_if_absent(b"a", b"1").unwrap(), None);
        assert_eq!(
            store.put_if_absent(b"a", b"2").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        store.delete(b"a").unwrap();
        assert_eq!(store.put_if_absent(b"a", b"3").unwrap(), None);
        assert_eq!(store.get(b"a").unwrap(), Some(b"3".to_vec()));
    }

    /// A batch applies puts and deletes in order.
    pub fn put_all_applies_in_order(store: &mut dyn KeyValueStore) {
        store.put(b"gone", b"x").unwrap();
        store
            .put_all(&[
                (b"a", Some(b"1")),
                (b"b", Some(b"2")),
                (b"a", Some(b"3")),
                (b"b", None),
                (b"gone", None),
                (b"c", Some(b"4")),
            ])
            .unwrap();
        assert_eq!(
            collect(store.all().unwrap()).unwrap(),
            vec![kv("a", "3"), kv("c", "4")]
        );
        store.put_all(&[]).unwrap();
        assert!(store.approximate_num_entries().unwrap() > 0);
    }

    /// Ranges are inclusive at both ends, open where `None`, ordered.
    pub fn range_is_inclusive_and_ordered(store: &mut dyn KeyValueStore) {
        fill(store, &["d", "a", "c", "e", "b"]);
        store.flush().unwrap();
        fill(store, &["bb", "f"]);
        store.delete(b"c").unwrap();
        let range = |s: &dyn KeyValueStore, from: Option<&str>, to: Option<&str>| {
            keys(
                &collect(
                    s.range(from.map(str::as_bytes), to.map(str::as_bytes))
                        .unwrap(),
                )
                .unwrap(),
            )
        };
        assert_eq!(range(store, Some("b"), Some("d")), ["b", "bb", "d"]);
        assert_eq!(range(store, None, Some("bb")), ["a", "b", "bb"]);
        assert_eq!(range(store, Some("d"), None), ["d", "e", "f"]);
        assert_eq!(range(store, None, None), ["a", "b", "bb", "d", "e", "f"]);
        assert_eq!(range(store, Some("c"), Some("c")), Vec::<String>::new());
        assert_eq!(range(store, Some("x"), Some("z")), Vec::<String>::new());
        let values = collect(store.range(Some(b"e"), Some(b"e")).unwrap()).unwrap();
        assert_eq!(values, vec![kv("e", "v-e")]);
    }

    /// Reverse ranges give the same entries in descending order.
    pub fn reverse_range_is_descending(store: &mut dyn KeyValueStore) {
        fill(store, &["d", "a", "c", "e", "b"]);
        store.flush().unwrap();
        fill(store, &["bb", "f"]);
        store.delete(b"c").unwrap();
        let rev = |s: &dyn KeyValueStore, from: Option<&str>, to: Option<&str>| {
            keys(
                &collect(
                    s.reverse_range(from.map(str::as_bytes), to.map(str::as_bytes))
                        .unwrap(),
                )
                .unwrap(),
            )
        };
        assert_eq!(rev(store, Some("b"), Some("d")), ["d", "bb", "b"]);
        assert_eq!(rev(store, None, Some("bb")), ["bb", "b", "a"]);
        assert_eq!(rev(store, Some("d"), None), ["f", "e", "d"]);
        assert_eq!(rev(store, Some("bc"), Some("cz")), Vec::<String>::new());
        assert_eq!(
            keys(&collect(store.reverse_all().unwrap()).unwrap()),
            ["f", "e", "d", "bb", "b", "a"]
        );
    }

    /// A range whose start is after its end is empty, not an error.
    pub fn inverted_range_is_empty(store: &mut dyn KeyValueStore) {
        fill(store, &["a", "b", "c"]);
        assert!(
            collect(store.range(Some(b"c"), Some(b"a")).unwrap())
                .unwrap()
                .is_empty()
        );
        assert!(
            collect(store.reverse_range(Some(b"c"), Some(b"a")).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    /// Prefix scans return exactly the keys that start with the prefix.
    pub fn prefix_scan_matches_prefix(store: &mut dyn KeyValueStore) {
        fill(store, &["ab", "a", "abc", "b", "aa", "ac"]);
        store.flush().unwrap();
        store.put(b"abd", b"new").unwrap();
        store.delete(b"abc").unwrap();
        let scan =
            |s: &dyn KeyValueStore, p: &[u8]| keys(&collect(s.prefix_scan(p).unwrap()).unwrap());
        assert_eq!(scan(store, b"ab"), ["ab", "abd"]);
        assert_eq!(scan(store, b"a"), ["a", "aa", "ab", "abd", "ac"]);
        assert_eq!(scan(store, b"z"), Vec::<String>::new());
        assert_eq!(scan(store, b"").len(), 6);
        // A prefix of 0xff bytes has no upper bound to stop at.
        store.put(&[0xff, 0xff, 1], b"x").unwrap();
        store.put(&[0xff, 0xfe], b"y").unwrap();
        let high = collect(store.prefix_scan(&[0xff, 0xff]).unwrap()).unwrap();
        assert_eq!(high, vec![(vec![0xff, 0xff, 1], b"x".to_vec())]);
    }

    /// Entry counts are estimates, but close for a store of distinct puts.
    pub fn approximate_count_is_close(store: &mut dyn KeyValueStore) {
        assert_eq!(store.approximate_num_entries().unwrap(), 0);
        for i in 0..200u32 {
            store.put(&i.to_be_bytes(), b"v").unwrap();
        }
        store.flush().unwrap();
        let n = store.approximate_num_entries().unwrap();
        assert!((100..=400).contains(&n), "estimate {n} for 200 entries");
    }

    /// Large values survive unchanged.
    pub fn large_values_round_trip(store: &mut dyn KeyValueStore) {
        let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        store.put(b"big", &big).unwrap();
        store.flush().unwrap();
        assert_eq!(store.get(b"big").unwrap().as_deref(), Some(big.as_slice()));
    }

    /// Many keys come back in byte order, whatever order they were written in.
    pub fn many_keys_scan_in_order(store: &mut dyn KeyValueStore) {
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let key = (i.wrapping_mul(2_654_435_761)).to_be_bytes();
            store.put(&key, &i.to_le_bytes()).unwrap();
            expected.push((key.to_vec(), i.to_le_bytes().to_vec()));
            if i == 1000 {
                store.flush().unwrap();
            }
        }
        expected.sort();
        assert_eq!(collect(store.all().unwrap()).unwrap(), expected);
        expected.reverse();
        assert_eq!(collect(store.reverse_all().unwrap()).unwrap(), expected);
    }

    /// A closed store refuses every operation with a retriable `Closed` error.
    pub fn closed_store_refuses(store: &mut dyn KeyValueStore) {
        store.put(b"a", b"1").unwrap();
        assert!(store.is_open());
        store.close().unwrap();
        assert!(!store.is_open());
        store.close().unwrap();
        let closed = super::assert_closed;
        closed(store.get(b"a").map(drop));
        closed(store.get_into(b"a", &mut Vec::new()).map(drop));
        closed(store.put(b"a", b"2"));
        closed(store.delete(b"a").map(drop));
        closed(store.put_all(&[(b"a", None)]));
        closed(store.range(None, None).map(drop));
        closed(store.prefix_scan(b"a").map(drop));
        closed(store.approximate_num_entries().map(drop));
    }
}

/// Writes one `#[test]` per contract case for the store that `$factory`
/// builds; `$dir` names a fresh temporary directory (a `&Path`) it may use.
#[macro_export]
macro_rules! key_value_store_contract {
    (|$dir:ident| $factory:expr) => {
        $crate::key_value_store_contract!(@cases |$dir| $factory;
            put_then_get, get_into_matches_get, flush_cache_keeps_writes_readable,
            empty_values_and_keys, delete_returns_old_value,
            put_if_absent_keeps_existing, put_all_applies_in_order,
            range_is_inclusive_and_ordered, reverse_range_is_descending,
            inverted_range_is_empty, prefix_scan_matches_prefix,
            approximate_count_is_close, large_values_round_trip,
            many_keys_scan_in_order, closed_store_refuses);
    };
    (@cases |$dir:ident| $factory:expr; $($case:ident),*) => {$(
        #[test]
        fn $case() {
            let tmp = $crate::testing::tempdir().expect("temporary directory");
            let $dir: &::std::path::Path = tmp.path();
            let mut store = $factory;
            $crate::testing::contract::$case(&mut store);
        }
    )*};
}

/// The cases every window store must pass, as functions over a fresh store
/// whose retention is at least 100 ms; run them all with
/// [`window_store_contract!`](crate::window_store_contract).
pub mod window_contract {
    use crate::WindowStore;

    fn all(store: &dyn WindowStore, from: i64, to: i64) -> Vec<(String, i64, String)> {
        store
            .fetch_all(from, to)
            .unwrap()
            .map(|entry| {
                let ((key, start), value) = entry.unwrap();
                (
                    String::from_utf8(key).unwrap(),
                    start,
                    String::from_utf8(value).unwrap(),
                )
            })
            .collect()
    }

    fn row(key: &str, start: i64, value: &str) -> (String, i64, String) {
        (key.to_owned(), start, value.to_owned())
    }

    /// A value is kept per key and window; a window of another key or
    /// start is another value.
    pub fn put_then_fetch(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", Some(b"2"), 20).unwrap();
        store.put(b"b", Some(b"3"), 10).unwrap();
        store.put(b"a", Some(b"4"), 10).unwrap();
        assert_eq!(store.fetch(b"a", 10).unwrap().as_deref(), Some(&b"4"[..]));
        assert_eq!(store.fetch(b"a", 20).unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(store.fetch(b"b", 10).unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(store.fetch(b"b", 20).unwrap(), None);
        // Empty keys and values are keys and values.
        store.put(b"", Some(b""), 20).unwrap();
        assert_eq!(store.fetch(b"", 20).unwrap().as_deref(), Some(&b""[..]));
    }

    /// `None` deletes one window of one key.
    pub fn none_deletes(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", Some(b"2"), 20).unwrap();
        store.put(b"a", None, 10).unwrap();
        assert_eq!(store.fetch(b"a", 10).unwrap(), None);
        assert_eq!(all(store, 0, 100), [row("a", 20, "2")]);
        // Deleting what is not there is harmless.
        store.put(b"z", None, 30).unwrap();
    }

    /// A key's windows, by start, within inclusive bounds, and only that
    /// key's (not a key it is a prefix of).
    pub fn fetch_range_is_inclusive_and_by_start(store: &mut dyn WindowStore) {
        for (start, value) in [(30, "c"), (10, "a"), (20, "b"), (40, "d")] {
            store.put(b"k", Some(value.as_bytes()), start).unwrap();
        }
        store.put(b"k2", Some(b"other"), 20).unwrap();
        let fetched: Vec<(i64, Vec<u8>)> = store
            .fetch_range(b"k", 20, 40)
            .unwrap()
            .map(|e| {
                let ((key, start), value) = e.unwrap();
                assert_eq!(key, b"k");
                (start, value)
            })
            .collect();
        assert_eq!(
            fetched,
            [
                (20, b"b".to_vec()),
                (30, b"c".to_vec()),
                (40, b"d".to_vec())
            ]
        );
        assert_eq!(store.fetch_range(b"k", 40, 20).unwrap().count(), 0);
    }

    /// A key's reads give that key's windows only, not those of keys it
    /// is a prefix of (whatever bytes follow it), nor those of a shorter
    /// key whose window starts happen to continue it.
    pub fn keys_sharing_a_prefix_stay_apart(store: &mut dyn WindowStore) {
        type Row = (Vec<u8>, i64, String);
        let rows = |iter: crate::WindowIterator<'_>| -> Vec<Row> {
            iter.map(|entry| {
                let ((key, start), value) = entry.unwrap();
                (key, start, String::from_utf8(value).unwrap())
            })
            .collect()
        };
        let odd = super::CONTINUES_AB;
        store.put(b"a", Some(b"short"), odd).unwrap();
        store.put(b"ab", Some(b"long"), odd).unwrap();
        for (key, value) in [(&b"ab"[..], "long"), (b"a", "short")] {
            let found = rows(store.fetch_range(key, odd - 10, i64::MAX).unwrap());
            assert_eq!(found, [(key.to_vec(), odd, value.to_owned())]);
            assert_eq!(
                store.fetch(key, odd).unwrap().as_deref(),
                Some(value.as_bytes())
            );
        }

        let keys = super::keys_sharing_a_prefix(&[20], 4);
        let value = |i: usize, start: i64| format!("{i}@{start}");
        for start in [10, 20, 30] {
            for (i, key) in keys.iter().enumerate() {
                store
                    .put(key, Some(value(i, start).as_bytes()), start)
                    .unwrap();
            }
        }
        for (i, key) in keys.iter().enumerate() {
            let expected: Vec<Row> = [10, 20, 30]
                .into_iter()
                .map(|start| (key.clone(), start, value(i, start)))
                .collect();
            assert_eq!(
                rows(store.fetch_range(key, 0, 100).unwrap()),
                expected,
                "{key:?}"
            );
            assert_eq!(
                rows(store.fetch_range(key, 20, 20).unwrap()),
                expected[1..2],
                "{key:?}"
            );
            assert_eq!(
                store.fetch(key, 20).unwrap(),
                Some(value(i, 20).into_bytes()),
                "{key:?}"
            );
        }
        let mut by_key: Vec<(usize, &Vec<u8>)> = keys.iter().enumerate().collect();
        by_key.sort_by_key(|(_, key)| *key);
        let expected: Vec<Row> = [10, 20, 30]
            .into_iter()
            .flat_map(|start| {
                by_key
                    .iter()
                    .map(move |(i, key)| ((*key).clone(), start, value(*i, start)))
            })
            .collect();
        assert_eq!(rows(store.fetch_all(0, 100).unwrap()), expected);
    }

    /// Every key's windows: by start, then key, within inclusive bounds.
    pub fn fetch_all_is_by_start_then_key(store: &mut dyn WindowStore) {
        store.put(b"b", Some(b"1"), 20).unwrap();
        store.put(b"a", Some(b"2"), 20).unwrap();
        store.put(b"c", Some(b"3"), 10).unwrap();
        store.put(b"a", Some(b"4"), 30).unwrap();
        assert_eq!(
            all(store, 10, 20),
            [row("c", 10, "3"), row("a", 20, "2"), row("b", 20, "1")]
        );
        assert_eq!(store.all().unwrap().count(), 4);
        assert!(all(store, 30, 10).is_empty());
    }

    /// The latest window start is the store's clock: windows a retention
    /// or more before it are gone, and writes to them are ignored.
    pub fn windows_expire_after_the_retention(store: &mut dyn WindowStore) {
        let retention = store.retention();
        assert!(
            retention >= 100,
            "the contract wants a retention of 100 ms or more"
        );
        store.put(b"a", Some(b"old"), 0).unwrap();
        store.put(b"a", Some(b"edge"), 1).unwrap();
        store.put(b"a", Some(b"new"), retention).unwrap();
        // Start 0 is a whole retention behind `retention`: gone.
        assert_eq!(store.fetch(b"a", 0).unwrap(), None);
        assert_eq!(store.fetch(b"a", 1).unwrap().as_deref(), Some(&b"edge"[..]));
        assert_eq!(
            all(store, i64::MIN, i64::MAX),
            [row("a", 1, "edge"), row("a", retention, "new")]
        );
        store.put(b"b", Some(b"late"), 0).unwrap();
        assert_eq!(
            store.fetch(b"b", 0).unwrap(),
            None,
            "a late write is ignored"
        );
    }

    /// Writes made before and after a flush read as one store: newer
    /// values replace flushed ones, deletes hide them, and fetches keep
    /// their order. A flush for a commit (`flush_cache`) changes nothing
    /// a read sees.
    pub fn flushed_and_unflushed_writes_merge(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"b", Some(b"2"), 10).unwrap();
        store.put(b"a", Some(b"3"), 20).unwrap();
        store.put(b"c", Some(b"4"), 30).unwrap();
        store.flush().unwrap();
        store.put(b"a", Some(b"5"), 10).unwrap();
        store.put(b"b", None, 10).unwrap();
        store.put(b"b", Some(b"6"), 20).unwrap();
        store.put(b"a", Some(b"7"), 15).unwrap();
        store.put(b"c", None, 30).unwrap();
        store.put(b"c", Some(b"8"), 30).unwrap();
        let expected = [
            row("a", 10, "5"),
            row("a", 15, "7"),
            row("a", 20, "3"),
            row("b", 20, "6"),
            row("c", 30, "8"),
        ];
        for step in ["cached", "flush_cache", "flush"] {
            match step {
                "flush_cache" => store.flush_cache().unwrap(),
                "flush" => store.flush().unwrap(),
                _ => {}
            }
            assert_eq!(all(store, 0, 100), expected, "{step}");
            assert_eq!(all(store, 15, 20), expected[1..4], "{step}");
            let a: Vec<_> = store
                .fetch_range(b"a", 10, 20)
                .unwrap()
                .map(|e| {
                    let ((_, start), value) = e.unwrap();
                    (start, String::from_utf8(value).unwrap())
                })
                .collect();
            assert_eq!(
                a,
                [(10, "5".into()), (15, "7".into()), (20, "3".into())],
                "{step}"
            );
            assert_eq!(store.fetch(b"b", 10).unwrap(), None, "{step}");
            assert_eq!(
                store.fetch(b"a", 10).unwrap().as_deref(),
                Some(&b"5"[..]),
                "{step}"
            );
            assert_eq!(store.fetch_range(b"b", 0, 15).unwrap().count(), 0, "{step}");
        }
    }

    /// Expiry counts every write, flushed or not: a window written before
    /// a flush is gone once a later write (not yet flushed) moves the
    /// clock a retention past it, and stays gone after the next flush.
    pub fn windows_expire_across_a_flush(store: &mut dyn WindowStore) {
        let retention = store.retention();
        store.put(b"a", Some(b"old"), 0).unwrap();
        store.put(b"b", Some(b"old"), 5).unwrap();
        store.flush().unwrap();
        store.put(b"a", Some(b"new"), retention).unwrap();
        for step in ["cached", "flushed"] {
            assert_eq!(store.fetch(b"a", 0).unwrap(), None, "{step}");
            assert_eq!(
                all(store, i64::MIN, i64::MAX),
                [row("b", 5, "old"), row("a", retention, "new")],
                "{step}"
            );
            assert_eq!(store.fetch_range(b"a", 0, 0).unwrap().count(), 0, "{step}");
            store.flush().unwrap();
        }
        store.put(b"a", Some(b"late"), 0).unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.fetch(b"a", 0).unwrap(),
            None,
            "a late write is ignored"
        );
    }

    /// A closed store refuses every call with a retriable `Closed`.
    pub fn closed_window_store_refuses(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.close().unwrap();
        assert!(!store.is_open());
        store.close().unwrap();
        let closed = super::assert_closed;
        closed(store.fetch(b"a", 10).map(drop));
        closed(store.fetch_range(b"a", 0, 10).map(drop));
        closed(store.fetch_all(0, 10).map(drop));
        closed(store.put(b"a", Some(b"2"), 10));
    }
}

/// Writes one `#[test]` per case of [`window_contract`], each with a fresh
/// store from `$factory` (given a temporary directory) whose retention is
/// at least 100 ms.
///
/// ```text
/// state_stores::window_store_contract!(|dir| MyWindowStore::open("w", dir, 1_000).unwrap());
/// ```
#[macro_export]
macro_rules! window_store_contract {
    (|$dir:ident| $factory:expr) => {
        $crate::window_store_contract!(@cases |$dir| $factory;
            put_then_fetch, none_deletes, fetch_range_is_inclusive_and_by_start,
            keys_sharing_a_prefix_stay_apart, fetch_all_is_by_start_then_key, windows_expire_after_the_retention,
            flushed_and_unflushed_writes_merge, windows_expire_across_a_flush,
            closed_window_store_refuses);
    };
    (@cases |$dir:ident| $factory:expr; $($case:ident),*) => {$(
        #[test]
        fn $case() {
            let tmp = $crate::testing::tempdir().expect("temporary directory");
            let $dir: &::std::path::Path = tmp.path();
            let mut store = $factory;
            $crate::testing::window_contract::$case(&mut store);
        }
    )*};
}

/// The cases every window store that keeps duplicates (Kafka Streams'
/// `retainDuplicates`) must pass, as functions over a fresh such store
/// whose retention is at least 100 ms; run them all with
/// [`window_store_duplicates_contract!`](crate::window_store_duplicates_contract).
pub mod window_duplicates_contract {
    use crate::WindowStore;

    type Row = (Vec<u8>, i64, String);

    fn all(store: &dyn WindowStore, from: i64, to: i64) -> Vec<Row> {
        rows(store.fetch_all(from, to).unwrap())
    }

    fn range(store: &dyn WindowStore, key: &[u8], from: i64, to: i64) -> Vec<Row> {
        rows(store.fetch_range(key, from, to).unwrap())
    }

    fn rows(iter: crate::WindowIterator<'_>) -> Vec<Row> {
        iter.map(|entry| {
            let ((key, start), value) = entry.unwrap();
            (key, start, String::from_utf8(value).unwrap())
        })
        .collect()
    }

    fn row(key: &[u8], start: i64, value: &str) -> Row {
        (key.to_vec(), start, value.to_owned())
    }

    /// Every put is an entry of its own, the same value twice included;
    /// fetches give a key and window's entries in the order they were put,
    /// and `fetch` the first.
    pub fn duplicates_are_kept_in_put_order(store: &mut dyn WindowStore) {
        assert!(store.retains_duplicates());
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", Some(b"2"), 10).unwrap();
        store.put(b"b", Some(b"3"), 10).unwrap();
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", Some(b"4"), 20).unwrap();
        store.put(b"a", Some(b"0"), 5).unwrap();
        assert_eq!(
            range(store, b"a", 0, 100),
            [
                row(b"a", 5, "0"),
                row(b"a", 10, "1"),
                row(b"a", 10, "2"),
                row(b"a", 10, "1"),
                row(b"a", 20, "4")
            ]
        );
        assert_eq!(
            all(store, 10, 10),
            [
                row(b"a", 10, "1"),
                row(b"a", 10, "2"),
                row(b"a", 10, "1"),
                row(b"b", 10, "3")
            ]
        );
        assert_eq!(store.fetch(b"a", 10).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(store.fetch(b"b", 10).unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(store.fetch(b"b", 20).unwrap(), None);
        // Hundreds of duplicates keep their order (sequence numbers past
        // one byte).
        for n in 0..300 {
            store
                .put(b"many", Some(n.to_string().as_bytes()), 30)
                .unwrap();
        }
        let values: Vec<String> = range(store, b"many", 30, 30)
            .into_iter()
            .map(|(_, _, value)| value)
            .collect();
        let expected: Vec<String> = (0..300).map(|n: i32| n.to_string()).collect();
        assert_eq!(values, expected);
        assert_eq!(
            store.fetch(b"many", 30).unwrap().as_deref(),
            Some(&b"0"[..])
        );
    }

    /// A put of `None` does nothing: nothing names one duplicate to delete.
    pub fn none_is_a_no_op_with_duplicates(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", None, 10).unwrap();
        store.put(b"z", None, 10).unwrap();
        assert_eq!(all(store, 0, 100), [row(b"a", 10, "1")]);
        assert_eq!(store.fetch(b"a", 10).unwrap().as_deref(), Some(&b"1"[..]));
        // Nor does it move the clock.
        store.put(b"a", None, 10 + store.retention()).unwrap();
        assert_eq!(all(store, 0, 100), [row(b"a", 10, "1")]);
    }

    /// Keys where one is the other followed by bytes that look like a
    /// sequence number stay apart, each in its own order.
    pub fn duplicates_of_keys_sharing_a_prefix_stay_apart(store: &mut dyn WindowStore) {
        let long: &[u8] = &[b'k', 0, 0, 0, 0, 0, 0, 0, 1];
        let short: &[u8] = b"k";
        store.put(long, Some(b"L1"), 10).unwrap();
        store.put(short, Some(b"S1"), 10).unwrap();
        store.put(long, Some(b"L2"), 10).unwrap();
        store.put(short, Some(b"S2"), 10).unwrap();
        store.put(b"", Some(b"E"), 10).unwrap();
        assert_eq!(
            range(store, short, 10, 10),
            [row(short, 10, "S1"), row(short, 10, "S2")]
        );
        assert_eq!(
            range(store, long, 10, 10),
            [row(long, 10, "L1"), row(long, 10, "L2")]
        );
        assert_eq!(
            all(store, 10, 10),
            [
                row(b"", 10, "E"),
                row(short, 10, "S1"),
                row(short, 10, "S2"),
                row(long, 10, "L1"),
                row(long, 10, "L2")
            ]
        );
        assert_eq!(store.fetch(short, 10).unwrap().as_deref(), Some(&b"S1"[..]));
        assert_eq!(store.fetch(long, 10).unwrap().as_deref(), Some(&b"L1"[..]));
        assert_eq!(store.fetch(b"", 10).unwrap().as_deref(), Some(&b"E"[..]));
        assert_eq!(store.fetch(&long[..5], 10).unwrap(), None);
    }

    /// Duplicates expire with their window, and a late one is ignored.
    pub fn duplicates_expire_after_the_retention(store: &mut dyn WindowStore) {
        let retention = store.retention();
        store.put(b"a", Some(b"old"), 0).unwrap();
        store.put(b"a", Some(b"old2"), 0).unwrap();
        store.put(b"a", Some(b"edge"), 1).unwrap();
        store.put(b"a", Some(b"new"), retention).unwrap();
        assert_eq!(store.fetch(b"a", 0).unwrap(), None);
        assert_eq!(
            all(store, i64::MIN, i64::MAX),
            [row(b"a", 1, "edge"), row(b"a", retention, "new")]
        );
        store.put(b"a", Some(b"late"), 0).unwrap();
        assert!(
            range(store, b"a", 0, 0).is_empty(),
            "a late write is ignored"
        );
    }

    /// Duplicates written before and after a flush are all kept, in order.
    pub fn duplicates_survive_a_flush(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.put(b"a", Some(b"2"), 10).unwrap();
        store.flush().unwrap();
        store.put(b"a", Some(b"3"), 10).unwrap();
        store.flush_cache().unwrap();
        store.put(b"a", Some(b"4"), 10).unwrap();
        let expected = [
            row(b"a", 10, "1"),
            row(b"a", 10, "2"),
            row(b"a", 10, "3"),
            row(b"a", 10, "4"),
        ];
        assert_eq!(range(store, b"a", 0, 100), expected);
        store.flush().unwrap();
        assert_eq!(all(store, 0, 100), expected);
    }

    /// A closed store refuses every call with a retriable `Closed`.
    pub fn closed_duplicates_store_refuses(store: &mut dyn WindowStore) {
        store.put(b"a", Some(b"1"), 10).unwrap();
        store.close().unwrap();
        store.close().unwrap();
        let closed = super::assert_closed;
        closed(store.fetch(b"a", 10).map(drop));
        closed(store.fetch_range(b"a", 0, 10).map(drop));
        closed(store.fetch_all(0, 10).map(drop));
        closed(store.put(b"a", Some(b"2"), 10));
        closed(store.put(b"a", None, 10));
    }
}

/// Writes one `#[test]` per case of [`window_duplicates_contract`], each
/// with a fresh store from `$factory` (given a temporary directory) that
/// keeps duplicates and whose retention is at least 100 ms.
///
/// ```text
/// state_stores::window_store_duplicates_contract!(
///     |dir| RocksDbWindowStore::open_with_duplicates("w", dir, 1_000).unwrap()
/// );
/// ```
#[macro_export]
macro_rules! window_store_duplicates_contract {
    (|$dir:ident| $factory:expr) => {
        $crate::window_store_duplicates_contract!(@cases |$dir| $factory;
            duplicates_are_kept_in_put_order, none_is_a_no_op_with_duplicates,
            duplicates_of_keys_sharing_a_prefix_stay_apart,
            duplicates_expire_after_the_retention, duplicates_survive_a_flush,
            closed_duplicates_store_refuses);
    };
    (@cases |$dir:ident| $factory:expr; $($case:ident),*) => {$(
        #[test]
        fn $case() {
            let tmp = $crate::testing::tempdir().expect("temporary directory");
            let $dir: &::std::path::Path = tmp.path();
            let mut store = $factory;
            $crate::testing::window_duplicates_contract::$case(&mut store);
        }
    )*};
}

/// The cases every session store must pass, as functions over a fresh
/// store whose retention is at least 100 ms; run them all with
/// [`session_store_contract!`](crate::session_store_contract).
pub mod session_contract {
    use crate::SessionStore;

    fn sessions(
        store: &dyn SessionStore,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Vec<(i64, i64, String)> {
        store
            .find_sessions(key, earliest_end, latest_start)
            .unwrap()
            .map(|entry| {
                let ((k, start, end), value) = entry.unwrap();
                assert_eq!(k, key, "only the key's sessions");
                (start, end, String::from_utf8(value).unwrap())
            })
            .collect()
    }

    /// A value per key and session; another start or end is another session.
    pub fn put_then_fetch_session(store: &mut dyn SessionStore) {
        store.put(b"a", 10, 20, Some(b"1")).unwrap();
        store.put(b"a", 10, 30, Some(b"2")).unwrap();
        store.put(b"b", 10, 20, Some(b"3")).unwrap();
        assert_eq!(
            store.fetch_session(b"a", 10, 20).unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            store.fetch_session(b"a", 10, 30).unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(
            store.fetch_session(b"b", 10, 20).unwrap().as_deref(),
            Some(&b"3"[..])
        );
        assert_eq!(store.fetch_session(b"b", 10, 30).unwrap(), None);
        assert_eq!(store.fetch(b"a").unwrap().count(), 2);
    }

    /// `None` removes one session.
    pub fn none_removes(store: &mut dyn SessionStore) {
        store.put(b"a", 10, 20, Some(b"1")).unwrap();
        store.put(b"a", 30, 40, Some(b"2")).unwrap();
        store.put(b"a", 10, 20, None).unwrap();
        assert_eq!(
            sessions(store, b"a", i64::MIN, i64::MAX),
            [(30, 40, "2".into())]
        );
        store.put(b"z", 1, 2, None).unwrap();
    }

    /// The sessions a record could join: ending at or after the earliest
    /// end, starting at or before the latest start, ordered by end.
    pub fn find_sessions_returns_the_overlapping_ones(store: &mut dyn SessionStore) {
        store.put(b"k", 0, 10, Some(b"early")).unwrap();
        store.put(b"k", 20, 30, Some(b"middle")).unwrap();
        store.put(b"k", 50, 60, Some(b"late")).unwrap();
        store.put(b"k2", 20, 30, Some(b"other")).unwrap();
        // A record at 35 with a gap of 10 reaches sessions ending at 25 or
        // later and starting at 45 or earlier.
        assert_eq!(sessions(store, b"k", 25, 45), [(20, 30, "middle".into())]);
        assert_eq!(
            sessions(store, b"k", 10, 50),
            [
                (0, 10, "early".into()),
                (20, 30, "middle".into()),
                (50, 60, "late".into())
            ]
        );
        assert!(sessions(store, b"k", 61, i64::MAX).is_empty());
    }

    /// A key's searches give that key's sessions only, not those of keys
    /// it is a prefix of (whatever bytes follow it), nor those of a
    /// shorter key whose session times happen to continue it.
    pub fn session_keys_sharing_a_prefix_stay_apart(store: &mut dyn SessionStore) {
        let odd = super::CONTINUES_AB;
        store.put(b"a", odd, odd, Some(b"short")).unwrap();
        store.put(b"ab", odd, odd, Some(b"long")).unwrap();
        for (key, value) in [(&b"ab"[..], "long"), (b"a", "short")] {
            assert_eq!(
                sessions(store, key, odd - 10, i64::MAX),
                [(odd, odd, value.to_owned())]
            );
            assert_eq!(
                store.fetch_session(key, odd, odd).unwrap().as_deref(),
                Some(value.as_bytes())
            );
        }

        let keys = super::keys_sharing_a_prefix(&[20, 10], 0);
        for (i, key) in keys.iter().enumerate() {
            store
                .put(key, 10, 20, Some(format!("{i}-early").as_bytes()))
                .unwrap();
            store
                .put(key, 30, 40, Some(format!("{i}-late").as_bytes()))
                .unwrap();
        }
        for (i, key) in keys.iter().enumerate() {
            let (early, late) = (format!("{i}-early"), format!("{i}-late"));
            assert_eq!(
                sessions(store, key, i64::MIN, i64::MAX),
                [(10, 20, early.clone()), (30, 40, late.clone())],
                "{key:?}"
            );
            assert_eq!(sessions(store, key, 21, 35), [(30, 40, late)], "{key:?}");
            assert_eq!(
                store.fetch_session(key, 10, 20).unwrap(),
                Some(early.into_bytes()),
                "{key:?}"
            );
        }
    }

    /// The latest end is the store's clock: sessions that end a retention
    /// or more before it are gone, and writes to them are ignored.
    pub fn sessions_expire_after_the_retention(store: &mut dyn SessionStore) {
        let retention = store.retention();
        assert!(
            retention >= 100,
            "the contract wants a retention of 100 ms or more"
        );
        store.put(b"a", 0, 0, Some(b"old")).unwrap();
        store.put(b"a", 0, 1, Some(b"edge")).unwrap();
        store.put(b"a", retention, retention, Some(b"new")).unwrap();
        assert_eq!(store.fetch_session(b"a", 0, 0).unwrap(), None);
        assert_eq!(
            sessions(store, b"a", i64::MIN, i64::MAX),
            [(0, 1, "edge".into()), (retention, retention, "new".into())]
        );
        store.put(b"b", 0, 0, Some(b"late")).unwrap();
        assert_eq!(
            store.fetch_session(b"b", 0, 0).unwrap(),
            None,
            "a late write is ignored"
        );
    }

    /// Sessions written before and after a flush read as one store, in
    /// order; a flush for a commit (`flush_cache`) changes nothing a read
    /// sees.
    pub fn flushed_and_unflushed_sessions_merge(store: &mut dyn SessionStore) {
        store.put(b"k", 0, 10, Some(b"a")).unwrap();
        store.put(b"k", 20, 30, Some(b"b")).unwrap();
        store.put(b"k", 40, 50, Some(b"c")).unwrap();
        store.put(b"j", 20, 30, Some(b"other")).unwrap();
        store.flush().unwrap();
        // A session merge: two stored sessions go, one spanning both comes.
        store.put(b"k", 20, 30, None).unwrap();
        store.put(b"k", 40, 50, None).unwrap();
        store.put(b"k", 20, 50, Some(b"bc")).unwrap();
        store.put(b"k", 0, 10, Some(b"a2")).unwrap();
        store.put(b"k", 5, 30, Some(b"d")).unwrap();
        for step in ["cached", "flush_cache", "flush"] {
            match step {
                "flush_cache" => store.flush_cache().unwrap(),
                "flush" => store.flush().unwrap(),
                _ => {}
            }
            assert_eq!(
                sessions(store, b"k", i64::MIN, i64::MAX),
                [
                    (0, 10, "a2".into()),
                    (5, 30, "d".into()),
                    (20, 50, "bc".into())
                ],
                "{step}"
            );
            assert_eq!(
                sessions(store, b"k", 11, 19),
                [(5, 30, "d".into())],
                "{step}"
            );
            assert_eq!(store.fetch_session(b"k", 40, 50).unwrap(), None, "{step}");
            assert_eq!(
                store.fetch_session(b"k", 0, 10).unwrap().as_deref(),
                Some(&b"a2"[..]),
                "{step}"
            );
            assert_eq!(
                sessions(store, b"j", i64::MIN, i64::MAX),
                [(20, 30, "other".into())],
                "{step}"
            );
        }
    }

    /// Expiry counts every write, flushed or not.
    pub fn sessions_expire_across_a_flush(store: &mut dyn SessionStore) {
        let retention = store.retention();
        store.put(b"a", 0, 0, Some(b"old")).unwrap();
        store.put(b"b", 0, 5, Some(b"kept")).unwrap();
        store.flush().unwrap();
        store.put(b"a", retention, retention, Some(b"new")).unwrap();
        for step in ["cached", "flushed"] {
            assert_eq!(store.fetch_session(b"a", 0, 0).unwrap(), None, "{step}");
            assert_eq!(
                sessions(store, b"a", i64::MIN, i64::MAX),
                [(retention, retention, "new".into())],
                "{step}"
            );
            assert_eq!(
                sessions(store, b"b", i64::MIN, i64::MAX),
                [(0, 5, "kept".into())],
                "{step}"
            );
            store.flush().unwrap();
        }
        store.put(b"a", 0, 0, Some(b"late")).unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.fetch_session(b"a", 0, 0).unwrap(),
            None,
            "a late write is ignored"
        );
    }

    /// A closed store refuses every call with a retriable `Closed`.
    pub fn closed_session_store_refuses(store: &mut dyn SessionStore) {
        store.put(b"a", 1, 2, Some(b"1")).unwrap();
        store.close().unwrap();
        store.close().unwrap();
        let closed = super::assert_closed;
        closed(store.fetch_session(b"a", 1, 2).map(drop));
        closed(store.find_sessions(b"a", 0, 10).map(drop));
        closed(store.put(b"a", 1, 2, None));
    }
}

/// Writes one `#[test]` per case of [`session_contract`], each with a
/// fresh store from `$factory` (given a temporary directory) whose
/// retention is at least 100 ms.
#[macro_export]
macro_rules! session_store_contract {
    (|$dir:ident| $factory:expr) => {
        $crate::session_store_contract!(@cases |$dir| $factory;
            put_then_fetch_session, none_removes, find_sessions_returns_the_overlapping_ones,
            session_keys_sharing_a_prefix_stay_apart,
            sessions_expire_after_the_retention, flushed_and_unflushed_sessions_merge,
            sessions_expire_across_a_flush, closed_session_store_refuses);
    };
    (@cases |$dir:ident| $factory:expr; $($case:ident),*) => {$(
        #[test]
        fn $case() {
            let tmp = $crate::testing::tempdir().expect("temporary directory");
            let $dir: &::std::path::Path = tmp.path();
            let mut store = $factory;
            $crate::testing::session_contract::$case(&mut store);
        }
    )*};
}
