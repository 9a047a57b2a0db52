//! Session stores, as Kafka Streams' `SessionStore`: a value per key and
//! session (its start and end, both inclusive), kept for a retention
//! period counted back from the latest session end the store has seen.

use std::collections::BTreeMap;

use crate::changelog::{ChangelogSink, StateRestoreCallback, log_change};
use crate::retention::RetentionClock;
use crate::segments::{Segments, read_time, seek_key, time_bytes};
use crate::store::{Write, ensure_open};
use crate::{Result, StateStore, StoreError};

/// A key and its session's start and end, with the value.
pub type SessionKeyValue = ((Vec<u8>, i64, i64), Vec<u8>);

/// Sessions in the order a search gives them (by end, then key, then
/// start).
pub type SessionIterator<'a> = Box<dyn Iterator<Item = Result<SessionKeyValue>> + 'a>;

/// Reads from a session store over bytes.
pub trait ReadOnlySessionStore {
    /// The value of `key`'s session from `start` to `end`.
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>>;
    /// `key`'s sessions that end at or after `earliest_end` and start at or
    /// before `latest_start`: those a record could extend or merge.
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>>;
    /// Every session of `key`.
    fn fetch(&self, key: &[u8]) -> Result<SessionIterator<'_>> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }
}

/// A session store: reads, and writes that age out after the retention.
pub trait SessionStore: StateStore + ReadOnlySessionStore {
    /// Puts `value` (`None`: removes) for `key`'s session from `start` to
    /// `end`. The latest end seen is the store's clock: sessions that end a
    /// retention period or more before it are dropped, and a write to one
    /// is ignored.
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()>;
    /// The retention period in ms.
    fn retention(&self) -> i64;
}

/// A session store's changelog key, as Kafka Streams'
/// `SessionKeySchema.toBinary` writes it: the key, the session's end and
/// its start (8 bytes each, big-endian).
///
/// ```
/// use state_stores::{session_store_key, split_session_store_key};
///
/// let bytes = session_store_key(b"alice", 1_000, 5_000);
/// assert_eq!(bytes, [b"alice".as_slice(), &5_000_i64.to_be_bytes(), &1_000_i64.to_be_bytes()].concat());
/// assert_eq!(split_session_store_key(&bytes), Some((b"alice".as_slice(), 1_000, 5_000)));
/// ```
pub fn session_store_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(key);
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&start.to_be_bytes());
    out
}

/// The key, start and end of a session store's changelog key; `None` for
/// bytes too short to be one.
pub fn split_session_store_key(bytes: &[u8]) -> Option<(&[u8], i64, i64)> {
    let (key, [end, start]) = crate::split_trailing_times::<2>(bytes)?;
    Some((key, start, end))
}

/// A session store in memory: sessions by end, then key, then start.
/// Gone when the process ends (wrap it in change logging).
#[derive(Debug)]
pub struct InMemorySessionStore {
    name: String,
    sessions: BTreeMap<(i64, Vec<u8>, i64), Vec<u8>>,
    /// The latest session end seen, and the retention behind it.
    clock: RetentionClock,
    open: bool,
}

impl InMemorySessionStore {
    /// An empty store keeping sessions for `retention` ms after they end
    /// (at least the inactivity gap plus the grace).
    pub fn new(name: impl Into<String>, retention: i64) -> Self {
        InMemorySessionStore {
            name: name.into(),
            sessions: BTreeMap::new(),
            clock: RetentionClock::new(retention),
            open: true,
        }
    }

    fn check_open(&self) -> Result<()> {
        ensure_open(self.open, &self.name)
    }

    /// The earliest session end still kept.
    fn min_live(&self) -> i64 {
        self.clock.min_live()
    }
}

impl StateStore for InMemorySessionStore {
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
        self.sessions.clear();
        Ok(())
    }
}

impl ReadOnlySessionStore for InMemorySessionStore {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        if end < self.min_live() {
            return Ok(None);
        }
        Ok(self.sessions.get(&(end, key.to_vec(), start)).cloned())
    }

    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        self.check_open()?;
        let from = earliest_end.max(self.min_live());
        let key = key.to_vec();
        Ok(Box::new(
            self.sessions
                .range((from, Vec::new(), i64::MIN)..)
                .filter(move |((_, k, start), _)| *k == key && *start <= latest_start)
                .map(|((end, k, start), value)| Ok(((k.clone(), *start, *end), value.clone()))),
        ))
    }
}

impl SessionStore for InMemorySessionStore {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.check_open()?;
        if !self.clock.observe(end) {
            return Ok(());
        }
        self.sessions = self
            .sessions
            .split_off(&(self.clock.min_live(), Vec::new(), i64::MIN));
        let id = (end, key.to_vec(), start);
        match value {
            Some(value) => {
                self.sessions.insert(id, value.to_vec());
            }
            None => {
                self.sessions.remove(&id);
            }
        }
        Ok(())
    }

    fn retention(&self) -> i64 {
        self.clock.retention()
    }
}

/// Applies a session store's changelog records: each key is
/// [`session_store_key`] bytes.
pub fn restore_session_batch<S: SessionStore + ?Sized>(
    store: &mut S,
    records: &[Write<'_>],
) -> Result<()> {
    for (bytes, value) in records {
        let (key, start, end) =
            split_session_store_key(bytes).ok_or_else(|| StoreError::Changelog {
                store: store.name().to_owned(),
                source: format!(
                    "a session store's changelog key has at least 16 bytes, not {}",
                    bytes.len()
                )
                .into(),
            })?;
        store.put(key, start, end, *value)?;
    }
    Ok(())
}

impl StateRestoreCallback for InMemorySessionStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_session_batch(self, records)
    }
}

/// A session store whose every write is also reported to a
/// [`ChangelogSink`], keyed as Kafka Streams keys a session store's
/// changelog.
pub struct ChangeLoggingSessionStore<S> {
    inner: S,
    sink: Box<dyn ChangelogSink>,
}

impl<S: SessionStore> ChangeLoggingSessionStore<S> {
    /// `inner`, logging to `sink`.
    pub fn new(inner: S, sink: Box<dyn ChangelogSink>) -> Self {
        ChangeLoggingSessionStore { inner, sink }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

crate::store::state_store_via_inner!(ChangeLoggingSessionStore over SessionStore);

impl<S: SessionStore> ReadOnlySessionStore for ChangeLoggingSessionStore<S> {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        self.inner.fetch_session(key, start, end)
    }
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        self.inner.find_sessions(key, earliest_end, latest_start)
    }
}

impl<S: SessionStore> SessionStore for ChangeLoggingSessionStore<S> {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        self.inner.put(key, start, end, value)?;
        log_change(
            &mut *self.sink,
            self.inner.name(),
            &session_store_key(key, start, end),
            value,
        )
    }

    fn retention(&self) -> i64 {
        self.inner.retention()
    }
}

impl<S: SessionStore> StateRestoreCallback for ChangeLoggingSessionStore<S> {
    /// Restores the inner store without logging the records again.
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_session_batch(&mut self.inner, records)
    }
}

/// A persistent session store on RocksDB, in time segments by session end
/// as Kafka Streams' `RocksDBSessionStore`: expired sessions are filtered
/// out when read and a segment is dropped whole once all its sessions
/// expired.
///
/// Within a segment, keys are key-first as Kafka Streams'
/// `SessionKeySchema` lays them out: the key, the session's end, its
/// start (8 bytes each, stored with the sign bit flipped so that negative
/// times sort first). So `fetch_session` is one get and `find_sessions`
/// one seek per segment its ends may fall in, whatever the number of
/// other keys.
#[derive(Debug)]
pub struct RocksDbSessionStore {
    segments: Segments,
}

/// The bytes after the key in a stored key: the end and the start.
const SUFFIX: usize = 16;

fn stored_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + SUFFIX);
    out.extend_from_slice(key);
    out.extend_from_slice(&time_bytes(end));
    out.extend_from_slice(&time_bytes(start));
    out
}

/// The key, start and end of a stored key.
fn split_stored(bytes: &[u8]) -> Option<(&[u8], i64, i64)> {
    let (key, suffix) = bytes.split_at_checked(bytes.len().checked_sub(SUFFIX)?)?;
    Some((key, read_time(&suffix[8..])?, read_time(suffix)?))
}

fn stored_end(bytes: &[u8]) -> Option<i64> {
    split_stored(bytes).map(|(_, _, end)| end)
}

impl RocksDbSessionStore {
    /// Opens (creating if needed) the store `name` in directory `dir`,
    /// keeping sessions for `retention` ms after they end. The store's
    /// clock is the latest session end on disk.
    pub fn open(
        name: impl Into<String>,
        dir: impl AsRef<std::path::Path>,
        retention: i64,
    ) -> Result<Self> {
        Ok(RocksDbSessionStore {
            segments: Segments::open(name.into(), dir.as_ref(), retention, stored_end)?,
        })
    }
}

impl StateStore for RocksDbSessionStore {
    fn name(&self) -> &str {
        self.segments.name()
    }
    fn persistent(&self) -> bool {
        true
    }
    fn is_open(&self) -> bool {
        self.segments.is_open()
    }
    fn flush(&mut self) -> Result<()> {
        self.segments.flush()
    }
    fn flush_cache(&mut self) -> Result<()> {
        // Writes are readable from the memtables; writing them to disk is
        // for checkpoints only (as RocksDbStore).
        self.segments.check_open()
    }
    fn close(&mut self) -> Result<()> {
        self.segments.close()
    }
}

impl ReadOnlySessionStore for RocksDbSessionStore {
    fn fetch_session(&self, key: &[u8], start: i64, end: i64) -> Result<Option<Vec<u8>>> {
        use crate::ReadOnlyKeyValueStore;
        self.segments.check_open()?;
        if end < self.segments.min_live() {
            return Ok(None);
        }
        match self.segments.get(end) {
            Some(segment) => segment.get(&stored_key(key, start, end)),
            None => Ok(None),
        }
    }

    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end: i64,
        latest_start: i64,
    ) -> Result<SessionIterator<'_>> {
        self.segments.check_open()?;
        let from = earliest_end.max(self.segments.min_live());
        // From the key's first session ending at `from` to its last: by
        // end, then start, in each segment, and segments oldest first.
        let lower = stored_key(key, i64::MIN, from);
        let upper = stored_key(key, i64::MAX, i64::MAX);
        Ok(Box::new(
            self.segments
                .covering(from, i64::MAX)
                .flat_map(move |segment| seek_key(segment, &lower, &upper, lower.len()))
                .filter_map(move |entry| match entry {
                    Ok((bytes, value)) => {
                        let (key, start, end) = split_stored(&bytes)?;
                        (start <= latest_start).then(|| Ok(((key.to_vec(), start, end), value)))
                    }
                    Err(error) => Some(Err(error)),
                }),
        ))
    }
}

impl SessionStore for RocksDbSessionStore {
    fn put(&mut self, key: &[u8], start: i64, end: i64, value: Option<&[u8]>) -> Result<()> {
        use crate::KeyValueStore;
        if !self.segments.observe(end)? {
            return Ok(());
        }
        let segment = self.segments.segment_for(end)?;
        let stored = stored_key(key, start, end);
        match value {
            Some(value) => segment.put(&stored, value),
            None => segment.delete(&stored).map(drop),
        }
    }

    fn retention(&self) -> i64 {
        self.segments.retention()
    }
}

impl StateRestoreCallback for RocksDbSessionStore {
    fn restore_batch(&mut self, records: &[Write<'_>]) -> Result<()> {
        restore_session_batch(self, records)
    }
}
