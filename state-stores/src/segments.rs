//! Time segments for the RocksDB window and session stores, as Kafka
//! Streams keeps them: each segment a RocksDB database of its own, in a
//! directory named by its id, holding the entries whose time falls within
//! one segment interval; expired data goes a whole segment at a time.
//!
//! Within a segment, keys are key-first as Kafka Streams' key schemas lay
//! them out: the record's key, then fixed-size times (and for windows a
//! sequence number), so one key's entries are one seek away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::retention::RetentionClock;
use crate::store::ensure_open;
use crate::{
    KeyValueIterator, ReadOnlyKeyValueStore, Result, RocksDbStore, StateStore, StoreError,
};

/// A time as stored in a key: big-endian with the sign bit flipped, so
/// byte order is numeric order (negative times included).
pub(crate) fn time_bytes(time: i64) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

/// The time that [`time_bytes`] wrote at the start of `bytes`.
pub(crate) fn read_time(bytes: &[u8]) -> Option<i64> {
    let raw = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?) ^ (1 << 63);
    Some(raw as i64)
}

/// The entries between `lower` and `upper` (both inclusive: a key, then
/// a fixed-size suffix of times) in `segment` whose stored key has
/// `len` bytes, the key's length and the suffix's.
///
/// Every stored key between the bounds starts with the key, but another
/// key that extends it (or a shorter one whose times happen to continue
/// it) may sort in among its entries: only a stored key of exactly `len`
/// bytes is the key's, as Kafka Streams filters its key-first seeks.
pub(crate) fn seek_key<'a>(
    segment: &'a RocksDbStore,
    lower: &[u8],
    upper: &[u8],
    len: usize,
) -> KeyValueIterator<'a> {
    match segment.range(Some(lower), Some(upper)) {
        Ok(entries) => Box::new(
            entries
                .filter(move |entry| entry.as_ref().map_or(true, |(bytes, _)| bytes.len() == len)),
        ),
        Err(error) => Box::new(std::iter::once(Err(error))),
    }
}

/// A store's segments and its clock: the latest time written.
pub(crate) struct Segments {
    name: String,
    dir: PathBuf,
    interval: i64,
    segments: BTreeMap<i64, RocksDbStore>,
    clock: RetentionClock,
    open: bool,
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl Segments {
    /// Opens the segments under `dir` (creating it if needed), each
    /// `max(retention / 2, 1 min)` long, as Kafka Streams sizes them. The
    /// clock is the latest time (read from a stored key by `time_of`) in
    /// the newest segment that holds any: keys are key-first, so that
    /// segment is read whole, once.
    pub(crate) fn open(
        name: String,
        dir: &Path,
        retention: i64,
        time_of: fn(&[u8]) -> Option<i64>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            action: "creating segmented store directory",
            path: dir.to_owned(),
            source,
        })?;
        let mut clock = RetentionClock::new(retention);
        let mut segments = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Io {
            action: "reading segmented store directory",
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            segments.insert(id, RocksDbStore::open(&name, entry.path())?);
        }
        for segment in segments.values().rev() {
            let mut latest = None;
            for entry in segment.all()? {
                latest = latest.max(time_of(&entry?.0));
            }
            if let Some(time) = latest {
                clock.observe(time);
                break;
            }
        }
        Ok(Segments {
            name,
            dir: dir.to_owned(),
            interval: (clock.retention() / 2).max(60_000),
            segments,
            clock,
            open: true,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    pub(crate) fn retention(&self) -> i64 {
        self.clock.retention()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        ensure_open(self.open, &self.name)
    }

    /// The earliest time still kept.
    pub(crate) fn min_live(&self) -> i64 {
        self.clock.min_live()
    }

    fn segment_id(&self, time: i64) -> i64 {
        time.div_euclid(self.interval)
    }

    /// Moves the clock to `time`; whether `time` is still kept. Segments
    /// whose every entry has expired are dropped, directories and all.
    pub(crate) fn observe(&mut self, time: i64) -> Result<bool> {
        self.check_open()?;
        let kept = self.clock.observe(time);
        let live = self.segment_id(self.min_live());
        let expired: Vec<i64> = self.segments.range(..live).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(mut segment) = self.segments.remove(&id) {
                segment.close()?;
                let path = segment.path().to_path_buf();
                std::fs::remove_dir_all(&path).map_err(|source| StoreError::Io {
                    action: "dropping an expired segment",
                    path,
                    source,
                })?;
            }
        }
        Ok(kept)
    }

    /// The segment for `time`, created if needed.
    pub(crate) fn segment_for(&mut self, time: i64) -> Result<&mut RocksDbStore> {
        let id = self.segment_id(time);
        match self.segments.entry(id) {
            std::collections::btree_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::btree_map::Entry::Vacant(entry) => Ok(entry.insert(
                RocksDbStore::open(&self.name, self.dir.join(id.to_string()))?,
            )),
        }
    }

    /// The segment for `time`, if there is one.
    pub(crate) fn get(&self, time: i64) -> Option<&RocksDbStore> {
        self.segments.get(&self.segment_id(time))
    }

    /// The segments that may hold times from `from` to `to`, oldest first.
    pub(crate) fn covering(&self, from: i64, to: i64) -> impl Iterator<Item = &RocksDbStore> {
        let (first, last) = (self.segment_id(from), self.segment_id(to));
        self.segments
            .range(first..=last.max(first))
            .map(|(_, segment)| segment)
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        for segment in self.segments.values_mut() {
            segment.flush()?;
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let mut first = Ok(());
        for segment in self.segments.values_mut() {
            first = first.and(segment.close());
        }
        self.segments.clear();
        first
    }
}
