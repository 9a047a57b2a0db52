//! Property test: every store stack behaves as a `BTreeMap` under random
//! sequences of writes, deletes, flushes and scans.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use state_stores::testing::{RecordingSink, collect, tempdir};
use state_stores::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore, KeyValueStore,
    ReadOnlyKeyValueStore, RocksDbStore, StateStore,
};

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutIfAbsent(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    PutAll(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Flush,
    Range(Option<Vec<u8>>, Option<Vec<u8>>),
    ReverseRange(Option<Vec<u8>>, Option<Vec<u8>>),
    Prefix(Vec<u8>),
}

/// Short keys over a small alphabet, so operations collide often.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xff)], 0..4)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (key(), value()).prop_map(|(k, v)| Op::PutIfAbsent(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => proptest::collection::vec((key(), proptest::option::of(value())), 0..5).prop_map(Op::PutAll),
        1 => Just(Op::Flush),
        1 => (proptest::option::of(key()), proptest::option::of(key())).prop_map(|(f, t)| Op::Range(f, t)),
        1 => (proptest::option::of(key()), proptest::option::of(key())).prop_map(|(f, t)| Op::ReverseRange(f, t)),
        1 => key().prop_map(Op::Prefix),
    ]
}

fn model_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    from: &Option<Vec<u8>>,
    to: &Option<Vec<u8>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Vec::new();
    }
    let lo = from
        .as_ref()
        .map_or(Bound::Unbounded, |f| Bound::Included(f.clone()));
    let hi = to
        .as_ref()
        .map_or(Bound::Unbounded, |t| Bound::Included(t.clone()));
    model
        .range((lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn check(store: &mut dyn KeyValueStore, ops: &[Op]) {
    let mut model = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put(k, v) => {
                store.put(k, v).unwrap();
                model.insert(k.clone(), v.clone());
            }
            Op::PutIfAbsent(k, v) => {
                let expected = model.get(k).cloned();
                if expected.is_none() {
                    model.insert(k.clone(), v.clone());
                }
                assert_eq!(store.put_if_absent(k, v).unwrap(), expected);
            }
            Op::Delete(k) => assert_eq!(store.delete(k).unwrap(), model.remove(k)),
            Op::PutAll(writes) => {
                let borrowed: Vec<_> = writes
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_deref()))
                    .collect();
                store.put_all(&borrowed).unwrap();
                for (k, v) in writes {
                    match v {
                        Some(v) => model.insert(k.clone(), v.clone()),
                        None => model.remove(k),
                    };
                }
            }
            Op::Flush => store.flush().unwrap(),
            Op::Range(f, t) => {
                let got = collect(store.range(f.as_deref(), t.as_deref()).unwrap()).unwrap();
                assert_eq!(got, model_range(&model, f, t), "range {f:?}..={t:?}");
            }
            Op::ReverseRange(f, t) => {
                let got =
                    collect(store.reverse_range(f.as_deref(), t.as_deref()).unwrap()).unwrap();
                let mut expected = model_range(&model, f, t);
                expected.reverse();
                assert_eq!(got, expected, "reverse range {f:?}..={t:?}");
            }
            Op::Prefix(p) => {
                let got = collect(store.prefix_scan(p).unwrap()).unwrap();
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, expected, "prefix {p:?}");
            }
        }
        for k in model.keys() {
            assert_eq!(store.get(k).unwrap().as_ref(), model.get(k));
        }
    }
    let all: Vec<_> = model.into_iter().collect();
    assert_eq!(collect(store.all().unwrap()).unwrap(), all);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn in_memory_matches_btreemap(ops in proptest::collection::vec(op(), 0..60)) {
        check(&mut InMemoryKeyValueStore::new("s"), &ops);
    }

    #[test]
    fn cached_logged_in_memory_matches_btreemap(ops in proptest::collection::vec(op(), 0..60), cache in 0usize..600) {
        let logged = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("s"), Box::new(RecordingSink::new()));
        check(&mut CachingKeyValueStore::new(logged, cache), &ops);
    }

    #[test]
    fn rocksdb_matches_btreemap(ops in proptest::collection::vec(op(), 0..60)) {
        let dir = tempdir().unwrap();
        check(&mut RocksDbStore::open("s", dir.path()).unwrap(), &ops);
    }

    #[test]
    fn cached_rocksdb_matches_btreemap(ops in proptest::collection::vec(op(), 0..60), cache in 0usize..600) {
        let dir = tempdir().unwrap();
        check(&mut CachingKeyValueStore::new(RocksDbStore::open("s", dir.path()).unwrap(), cache), &ops);
    }

    /// Replaying a logged store's changelog into an empty store rebuilds it.
    #[test]
    fn changelog_replay_rebuilds_the_store(ops in proptest::collection::vec(op(), 0..60), cache in 0usize..600) {
        let sink = RecordingSink::new();
        let logged = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("s"), Box::new(sink.clone()));
        let mut store = CachingKeyValueStore::new(logged, cache);
        check(&mut store, &ops);
        store.flush().unwrap();

        let changes = sink.changes();
        let batch: Vec<_> = changes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        let mut restored = InMemoryKeyValueStore::new("s");
        state_stores::restore_key_value_batch(&mut restored, &batch).unwrap();
        prop_assert_eq!(collect(restored.all().unwrap()).unwrap(), collect(store.all().unwrap()).unwrap());
    }
}
