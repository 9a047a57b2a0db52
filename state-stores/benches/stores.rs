//! Put, get and range scan for the in-memory and RocksDB stores, bare and
//! with change logging plus the record cache in front.
//!
//! Keys are 8-byte big-endian integers over 10,000 distinct keys, values
//! 64 bytes. The logged stacks send changes to a sink that copies them into
//! a buffer, as a producer's queue would, and are flushed every 1,000
//! writes, as a commit would.

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use state_stores::{
    BoxError, CachingKeyValueStore, ChangeLoggingKeyValueStore, ChangelogSink,
    InMemoryKeyValueStore, KeyValueStore, RocksDbStore,
};

const KEYS: u64 = 10_000;
const VALUE: [u8; 64] = [7; 64];

/// Copies each change into a buffer, cleared when it grows large.
struct BufferSink(Vec<u8>);

impl ChangelogSink for BufferSink {
    fn log_change(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), BoxError> {
        if self.0.len() > 1 << 20 {
            self.0.clear();
        }
        self.0.extend_from_slice(key);
        self.0.extend_from_slice(value.unwrap_or_default());
        Ok(())
    }
}

fn stores(dir: &std::path::Path) -> Vec<(&'static str, Box<dyn KeyValueStore>)> {
    let logged = |inner: Box<dyn KeyValueStore>| -> Box<dyn KeyValueStore> {
        let logged = ChangeLoggingKeyValueStore::new(inner, Box::new(BufferSink(Vec::new())));
        Box::new(CachingKeyValueStore::new(
            logged,
            state_stores::DEFAULT_CACHE_MAX_BYTES,
        ))
    };
    vec![
        ("memory", Box::new(InMemoryKeyValueStore::new("bench"))),
        (
            "rocksdb",
            Box::new(RocksDbStore::open("bench", dir.join("bare")).unwrap()),
        ),
        (
            "memory+log+cache",
            logged(Box::new(InMemoryKeyValueStore::new("bench"))),
        ),
        (
            "rocksdb+log+cache",
            logged(Box::new(
                RocksDbStore::open("bench", dir.join("logged")).unwrap(),
            )),
        ),
    ]
}

fn key(i: u64) -> [u8; 8] {
    // Scatter writes over the key space instead of appending in order.
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS).to_be_bytes()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = stores(dir.path());
    for (_, store) in stores.iter_mut() {
        for i in 0..KEYS {
            store.put(&i.to_be_bytes(), &VALUE).unwrap();
        }
        store.flush().unwrap();
    }

    let mut group = c.benchmark_group("put");
    group.throughput(Throughput::Elements(1));
    for (name, store) in stores.iter_mut() {
        let mut i = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i += 1;
                store.put(&key(i), &VALUE).unwrap();
                if i.is_multiple_of(1000) {
                    store.flush().unwrap();
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(1));
    for (name, store) in stores.iter_mut() {
        store.flush().unwrap();
        let mut i = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i += 1;
                black_box(store.get(&key(i)).unwrap());
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("range_100");
    group.throughput(Throughput::Elements(100));
    for (name, store) in stores.iter_mut() {
        let mut i = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i += 1;
                let from = (i * 7919 % (KEYS - 100)).to_be_bytes();
                let to = (u64::from_be_bytes(from) + 99).to_be_bytes();
                let n = store
                    .range(Some(&from), Some(&to))
                    .unwrap()
                    .inspect(|r| assert!(r.is_ok()))
                    .count();
                assert_eq!(n, 100);
            })
        });
    }
    group.finish();
}

criterion_group!(stores_benches, benches);
criterion_main!(stores_benches);
