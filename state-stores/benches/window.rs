//! One key's reads from the RocksDB window and session stores while the
//! window holds 1 or 10,000 keys: what a stream-stream join
//! (`fetch_range` on a store that keeps duplicates) and a session
//! aggregation (`find_sessions`) pay per record.
//!
//! Run with `cargo bench --workspace --profile dev --bench window` (the
//! dev profile is optimised; see the workspace's Cargo.toml).

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use state_stores::{
    ReadOnlySessionStore, ReadOnlyWindowStore, RocksDbSessionStore, RocksDbWindowStore,
    SessionStore, StateStore, WindowStore,
};

/// The join window: every key has a record in it.
const WINDOW: i64 = 1_000;
const VALUE: [u8; 64] = [7; 64];

fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Times `read` of key 0, which must find one entry, on stores from
/// `open` that `put` fills with 1 and with 10,000 keys.
fn one_key_among_many<S: StateStore>(
    c: &mut Criterion,
    group: &str,
    open: impl Fn(&str) -> S,
    put: impl Fn(&mut S, u64),
    read: impl Fn(&S) -> usize,
) {
    let mut group = c.benchmark_group(group);
    for keys in [1_u64, 10_000] {
        let mut store = open(&keys.to_string());
        for i in 0..keys {
            put(&mut store, i);
        }
        store.flush().unwrap();
        group.bench_function(BenchmarkId::from_parameter(keys), |b| {
            b.iter(|| assert_eq!(black_box(read(&store)), 1))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let time = |i: u64| i as i64 % WINDOW;
    one_key_among_many(
        c,
        "window_fetch_range",
        |name| {
            RocksDbWindowStore::open_with_duplicates("join", dir.path().join(name), 60_000).unwrap()
        },
        |store, i| store.put(&key(i), Some(&VALUE), time(i)).unwrap(),
        |store| store.fetch_range(&key(0), 0, WINDOW).unwrap().count(),
    );
    one_key_among_many(
        c,
        "session_find_sessions",
        |name| {
            RocksDbSessionStore::open("sessions", dir.path().join(format!("s{name}")), 60_000)
                .unwrap()
        },
        |store, i| store.put(&key(i), time(i), time(i), Some(&VALUE)).unwrap(),
        |store| store.find_sessions(&key(0), 0, WINDOW).unwrap().count(),
    );
}

criterion_group! {
    name = window_benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(window_benches);
