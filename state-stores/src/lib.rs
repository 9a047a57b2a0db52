//! State stores for stream processing, as Kafka Streams has them.
//!
//! A [`KeyValueStore`] holds bytes; [`TypedKeyValueStore`] reads and writes
//! typed keys and values through a [`Serde`]. Stores stack:
//!
//! ```text
//! CachingKeyValueStore        collapses writes per key until flush
//!   ChangeLoggingKeyValueStore  reports each write to a ChangelogSink
//!     InMemoryKeyValueStore | RocksDbStore | your own store
//! ```
//!
//! Window and session stores stack the same way: [`CachingWindowStore`]
//! over [`ChangeLoggingWindowStore`] over [`InMemoryWindowStore`] or
//! [`RocksDbWindowStore`], and [`CachingSessionStore`] over
//! [`ChangeLoggingSessionStore`] over [`InMemorySessionStore`] or
//! [`RocksDbSessionStore`].
//!
//! This crate knows nothing of Kafka: the runtime gives a logged store a
//! [`ChangelogSink`] that writes to the store's changelog topic, and restores
//! it through [`StateRestoreCallback::restore_batch`].
//!
//! ```
//! use state_stores::{
//!     CachingKeyValueStore, ChangeLoggingKeyValueStore, InMemoryKeyValueStore,
//!     KeyValueStore, ReadOnlyKeyValueStore, StateStore, BoxError,
//! };
//! use std::sync::{Arc, Mutex};
//!
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let sink = {
//!     let log = log.clone();
//!     move |key: &[u8], value: Option<&[u8]>| -> Result<(), BoxError> {
//!         log.lock().unwrap().push((key.to_vec(), value.map(<[u8]>::to_vec)));
//!         Ok(())
//!     }
//! };
//! let logged = ChangeLoggingKeyValueStore::new(InMemoryKeyValueStore::new("counts"), Box::new(sink));
//! let mut store = CachingKeyValueStore::new(logged, 1 << 20);
//!
//! for n in 1..=100u32 {
//!     store.put(b"kafka", &n.to_be_bytes())?;
//! }
//! assert_eq!(store.get(b"kafka")?, Some(100u32.to_be_bytes().to_vec()));
//! assert!(log.lock().unwrap().is_empty()); // still in the cache
//! store.flush()?;
//! assert_eq!(log.lock().unwrap().len(), 1); // one changelog record for 100 writes
//! # Ok::<(), state_stores::StoreError>(())
//! ```

mod boxed;
mod cache;
mod changelog;
mod error;
mod memory;
mod retention;
mod rocksdb;
mod segments;
mod serdes;
mod session;
mod store;
mod typed;
mod window;
mod window_cache;

#[cfg(feature = "test-util")]
pub mod testing;

pub use cache::{CachingKeyValueStore, DEFAULT_CACHE_MAX_BYTES};
pub use changelog::{
    ChangeLoggingKeyValueStore, ChangelogSink, RestorableKeyValueStore, StateRestoreCallback,
    restore_key_value_batch,
};
pub use error::{BoxError, Result, SerdeError, StoreError};
pub use memory::InMemoryKeyValueStore;
pub use rocksdb::RocksDbStore;
pub use serdes::{
    BytesSerde, F64Serde, I32Serde, I64Serde, Nullable, Serde, StringSerde, U64Serde, UnitSerde,
};
pub use session::{
    ChangeLoggingSessionStore, InMemorySessionStore, ReadOnlySessionStore, RocksDbSessionStore,
    SessionIterator, SessionKeyValue, SessionStore, restore_session_batch, session_store_key,
    split_session_store_key,
};
pub use store::{
    KeyValue, KeyValueIterator, KeyValueStore, ReadOnlyKeyValueStore, StateStore, Write,
};
pub use typed::{TypedIterator, TypedKeyValueStore};
pub use window::{
    ChangeLoggingWindowStore, InMemoryWindowStore, ReadOnlyWindowStore, RocksDbWindowStore,
    WindowIterator, WindowStore, WindowedKeyValue, restore_window_batch, split_trailing_times,
    split_window_store_key, window_store_key,
};
pub use window_cache::{CachingSessionStore, CachingWindowStore};
