//! An in-memory key-value store, ordered by key.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::store::{
    KeyValueIterator, Write, copy_value, ensure_open, inverted, prefix_upper_bound,
};
use crate::{KeyValueStore, ReadOnlyKeyValueStore, Result, StateStore};

/// A key-value store in a `BTreeMap`: fast, ordered, and gone when the
/// process ends (wrap it in change logging to make it recoverable).
#[derive(Debug)]
pub struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    open: bool,
}

impl InMemoryKeyValueStore {
    /// An empty, open store.
    pub fn new(name: impl Into<String>) -> Self {
        InMemoryKeyValueStore {
            name: name.into(),
            map: BTreeMap::new(),
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        ensure_open(self.open, &self.name)
    }

    fn bounds<'k>(
        from: Option<&'k [u8]>,
        to: Option<&'k [u8]>,
    ) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
        (
            from.map_or(Bound::Unbounded, Bound::Included),
            to.map_or(Bound::Unbounded, Bound::Included),
        )
    }
}

fn owned<'a>(iter: impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a) -> KeyValueIterator<'a> {
    Box::new(iter.map(|(k, v)| Ok((k.clone(), v.clone()))))
}

impl StateStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn persistent(&self) -> bool {
        false
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn flush(&mut self) -> Result<()> {
        self.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.open = false;
        self.map.clear();
        Ok(())
    }
}

impl ReadOnlyKeyValueStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.get(key).cloned())
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.check_open()?;
        Ok(copy_value(self.map.get(key).map(Vec::as_slice), out))
    }

    fn range(&self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<KeyValueIterator<'_>> {
        self.check_open()?;
        if inverted(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(owned(self.map.range::<[u8], _>(Self::bounds(from, to))))
    }

    fn reverse_range(
        &self,
        from: Option<&[u8]>,
        to: Option<&[u8]>,
    ) -> Result<KeyValueIterator<'_>> {
        self.check_open()?;
        if inverted(from, to) {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(owned(
            self.map.range::<[u8], _>(Self::bounds(from, to)).rev(),
        ))
    }

    fn prefix_scan(&self, prefix: &[u8]) -> Result<KeyValueIterator<'_>> {
        self.check_open()?;
        let upper = prefix_upper_bound(prefix);
        let end = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        Ok(owned(
            self.map.range::<[u8], _>((Bound::Included(prefix), end)),
        ))
    }

    fn approximate_num_entries(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.map.len() as u64)
    }
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_open()?;
        // Reuse the existing allocation when the key is already present.
        match self.map.get_mut(key) {
            Some(existing) => {
                existing.clear();
                existing.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    fn put_if_absent(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if let Some(existing) = self.map.get(key) {
            return Ok(Some(existing.clone()));
        }
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(None)
    }

    fn put_all(&mut self, writes: &[Write<'_>]) -> Result<()> {
        self.check_open()?;
        for (key, value) in writes {
            match value {
                Some(value) => self.put(key, value)?,
                None => {
                    self.map.remove(*key);
                }
            }
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        Ok(self.map.remove(key))
    }
}
