//! A persistent key-value store on RocksDB.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};

use crate::store::{KeyValueIterator, Write, copy_value, inverted, prefix_upper_bound};
use crate::{KeyValueStore, ReadOnlyKeyValueStore, Result, StateStore, StoreError};

/// A key-value store in a RocksDB database of its own directory.
///
/// As in Kafka Streams, RocksDB's write-ahead log is off: the changelog is
/// what makes writes durable, and [`flush`](StateStore::flush) writes the
/// memtable to disk before the runtime records a checkpoint. Data flushed
/// before [`close`](StateStore::close) is there when the directory is opened
/// again.
pub struct RocksDbStore {
    name: String,
    path: PathBuf,
    db: Option<DB>,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("open", &self.db.is_some())
            .finish()
    }
}

impl RocksDbStore {
    /// Opens (creating if needed) the store `name` in directory `path`.
    ///
    /// Fails with [`StoreError::Locked`] when another instance, in this
    /// process or another, has the directory open.
    pub fn open(name: impl Into<String>, path: impl AsRef<Path>) -> Result<Self> {
        let name = name.into();
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
            action: "creating store directory",
            path: path.clone(),
            source,
        })?;
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, &path).map_err(|source| {
            let message = source.to_string();
            if message.to_ascii_lowercase().contains("lock") {
                StoreError::Locked {
                    path: path.clone(),
                    message,
                }
            } else {
                StoreError::RocksDb {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbStore {
            name,
            path,
            db: Some(db),
            write_options,
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| StoreError::Closed {
            name: self.name.clone(),
        })
    }

    fn error(&self, source: rocksdb::Error) -> StoreError {
        StoreError::RocksDb {
            name: self.name.clone(),
            path: self.path.clone(),
            source,
        }
    }

    fn scan(&self, mode: IteratorMode<'_>, options: ReadOptions) -> Result<KeyValueIterator<'_>> {
        let iter = self.db()?.iterator_opt(mode, options);
        Ok(Box::new(iter.map(move |item| match item {
            Ok((key, value)) => Ok((key.into_vec(), value.into_vec())),
            Err(source) => Err(self.error(source)),
        })))
    }
}

/// The smallest key greater than `key`: RocksDB's upper bound is exclusive,
/// ours is inclusive.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl StateStore for RocksDbStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        true
    }
    fn is_open(&self) -> bool {
        self.db.is_some()
    }
    fn flush(&mut self) -> Result<()> {
        self.db()?.flush().map_err(|e| self.error(e))
    }
    fn flush_cache(&mut self) -> Result<()> {
        // Writes are readable from the memtable; writing it to disk (with
        // the write-ahead log off) is for checkpoints only.
        self.db().map(drop)
    }
    fn close(&mut self) -> Result<()> {
        if self.db.is_none() {
            return Ok(());
        }
        let flushed = self.flush();
        // Dropping the handle releases the directory's lock.
        self.db = None;
        flushed
    }
}

impl ReadOnlyKeyValueStore for RocksDbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db()?.get(key).map_err(|e| self.error(e))
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        // Pinned: RocksDB hands out its own copy, read without a new vector.
        let value = self.db()?.get_pinned(key).map_err(|e| self.error(e))?;
        Ok(copy_value(value.as_deref(), out))
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> {
        if inverted(from, to) {
            self.db()?;
            return Ok(Box::new(std::iter::empty()));
        }
        let mut options = ReadOptions::default();
        if let Some(to) = to {
            options.set_iterate_upper_bound(successor(to));
        }
        let mode = from.map_or(IteratorMode::Start, |from| {
            IteratorMode::From(from, Direction::Forward)
        });
        self.scan(mode, options)
    }

    fn reverse_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<KeyValueIterator<'_>> {
        if inverted(from, to) {
            self.db()?;
            return Ok(Box::new(std::iter::empty()));
        }
        let mut options = ReadOptions::default();
        if let Some(from) = from {
            options.set_iterate_lower_bound(from.to_vec());
        }
        // A reverse seek lands on the last key <= `to`.
        let mode = to.map_or(IteratorMode::End, |to| {
            IteratorMode::From(to, Direction::Reverse)
        });
        self.scan(mode, options)
    }

    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>> {
        let mut options = ReadOptions::default();
        if let Some(upper) = prefix_upper_bound(prefix) {
            options.set_iterate_upper_bound(upper);
        }
        self.scan(IteratorMode::From(prefix, Direction::Forward), options)
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        let db = self.db()?;
        let estimate = db
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.error(e))?;
        Ok(estimate.unwrap_or(0))
    }
}

impl KeyValueStore for RocksDbStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db()?
            .put_opt(key, value, &self.write_options)
            .map_err(|e| self.error(e))
    }

    fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        for (key, value) in writes {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        db.write_opt(batch, &self.write_options)
            .map_err(|e| self.error(e))
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.db()?;
        let old = db.get(key).map_err(|e| self.error(e))?;
        if old.is_some() {
            db.delete_opt(key, &self.write_options)
                .map_err(|e| self.error(e))?;
        }
        Ok(old)
    }
}
