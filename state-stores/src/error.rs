//! Errors of state stores.

use std::path::PathBuf;

/// Everything a state store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store was used after [`StateStore::close`](crate::StateStore::close).
    #[error("state store `{name}` is closed")]
    Closed {
        /// The store's name.
        name: String,
    },
    /// Another store instance (in this process or another) holds the directory.
    #[error("state directory {} is locked by another store instance: {message}", path.display())]
    Locked {
        /// The locked directory.
        path: PathBuf,
        /// What RocksDB reported.
        message: String,
    },
    /// RocksDB failed.
    #[error("RocksDB store `{name}` at {}: {source}", path.display())]
    RocksDb {
        /// The store's name.
        name: String,
        /// The store's directory.
        path: PathBuf,
        /// RocksDB's error.
        #[source]
        source: rocksdb::Error,
    },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, for example "creating directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A key or value could not be (de)serialized.
    #[error("store `{store}`: {source}")]
    Serde {
        /// The store's name.
        store: String,
        /// The cause.
        #[source]
        source: SerdeError,
    },
    /// The changelog sink refused a change.
    #[error("changelog of store `{store}`: {source}")]
    Changelog {
        /// The store's name.
        store: String,
        /// What the sink reported.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether retrying the same operation later may succeed (a store that is
    /// closed during a rebalance will be reopened; a lock may be released).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Closed { .. } | StoreError::Locked { .. })
    }
}

/// A key or value that could not be serialized or deserialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SerdeError {
    message: String,
}

impl SerdeError {
    /// Creates an error with the given explanation.
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError {
            message: message.into(),
        }
    }
}

/// Any error, boxed, as sinks supplied by other crates report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
