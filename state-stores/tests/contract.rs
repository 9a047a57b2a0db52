//! The key-value store contract, run against every store and stack.

use state_stores::testing::RecordingSink;
use state_stores::{
    CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore, RocksDbStore,
};

mod in_memory {
    use super::*;
    state_stores::key_value_store_contract!(|_dir| InMemoryKeyValueStore::new("store"));
}

mod rocksdb {
    use super::*;
    state_stores::key_value_store_contract!(|dir| RocksDbStore::open("store", dir).unwrap());
}

mod logged_in_memory {
    use super::*;
    state_stores::key_value_store_contract!(|_dir| ChangeLoggingKeyValueStore::new(
        InMemoryKeyValueStore::new("store"),
        Box::new(RecordingSink::new())
    ));
}

mod cached_logged_in_memory {
    use super::*;
    state_stores::key_value_store_contract!(|_dir| CachingKeyValueStore::new(
        ChangeLoggingKeyValueStore::new(
            InMemoryKeyValueStore::new("store"),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

mod cached_logged_rocksdb {
    use super::*;
    state_stores::key_value_store_contract!(|dir| CachingKeyValueStore::new(
        ChangeLoggingKeyValueStore::new(
            RocksDbStore::open("store", dir).unwrap(),
            Box::new(RecordingSink::new())
        ),
        1 << 20
    ));
}

/// A cache so small that almost every write evicts: the write-back path
/// must keep the contract too.
mod tiny_cache_rocksdb {
    use super::*;
    state_stores::key_value_store_contract!(|dir| CachingKeyValueStore::new(
        RocksDbStore::open("store", dir).unwrap(),
        300
    ));
}
