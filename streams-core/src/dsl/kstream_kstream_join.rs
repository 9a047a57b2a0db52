//! [`KStreamJoinWindow`] and [`KStreamKStreamJoin`]: two streams joined on
//! their keys within [`JoinWindows`] (Kafka Streams' processors of the same
//! names).
//!
//! Each side has a window processor and a join processor. The window
//! processor drops a record that is late for its window and puts the others
//! in its side's window store, which keeps every record (duplicates too);
//! its join processor then joins the record with every record of the other
//! side's store that has the same key and a timestamp within the window.
//!
//! Left and outer joins are not eager (Kafka Streams' semantics since 3.1):
//! a record without a match waits in a key-value store both sides share
//! (`KSTREAM-OUTERSHARED-…-store`), keyed by time, side and key so that it
//! reads in time order, until a match removes it or its window closes; a
//! record that then advances the join's stream time emits it, joined with
//! `None` for the missing side. So every left record of a left join is
//! emitted exactly once: joined, or alone after its window.
//!
//! Times: the join's stream time is the largest timestamp either join
//! processor of the task has seen (Kafka Streams' shared `TimeTracker`). A
//! left record at `t` joins right records from `t - before` to `t + after`
//! and its window closes once stream time passes `t + after + grace`; a
//! right record sees the mirror (`after` before it, `before` after it).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::kstream::KStream;
use super::options::{Named, StreamJoined};
use super::{BuilderState, Data, FnProcessor, Serdes};
use crate::TaskId;
use crate::error::TopologyError;
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::{Headers, Record};
use crate::serde::{BytesSerde, SerdeRef, default_serde};
use crate::state::{
    KeyValueStoreBuilder, KeyValueStoreHandle, StoreBuilder, Stores, WindowBytesStoreSupplier,
    WindowStoreBuilder, WindowStoreHandle,
};
use crate::window::JoinWindows;

/// Joins a left and a right value, either of which may be missing (only
/// in left and outer joins, for records without a match).
pub(crate) type StreamJoiner<VL, VR, VOut> =
    Arc<dyn Fn(Option<&VL>, Option<&VR>) -> VOut + Send + Sync>;

/// One input of the join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinSide {
    /// The stream `join` was called on.
    Left,
    /// The stream passed to it.
    Right,
}

impl JoinSide {
    /// How long before and after a record of this side the other side's
    /// records join it.
    fn reach(self, windows: &JoinWindows) -> (i64, i64) {
        match self {
            JoinSide::Left => (windows.before_ms(), windows.after_ms()),
            JoinSide::Right => (windows.after_ms(), windows.before_ms()),
        }
    }

    /// Whether the window of a record of this side at `timestamp` has
    /// closed at `stream_time`: a new record for it is late, and the
    /// record, if it has no match yet, never will.
    fn closed(self, windows: &JoinWindows, timestamp: i64, stream_time: i64) -> bool {
        let (_, after) = self.reach(windows);
        timestamp
            .saturating_add(after)
            .saturating_add(windows.grace())
            < stream_time
    }

    /// The side's byte in the shared store, as Kafka Streams'
    /// `TimestampedKeyAndJoinSide` writes it (left 1, right 0).
    fn byte(self) -> u8 {
        match self {
            JoinSide::Left => 1,
            JoinSide::Right => 0,
        }
    }

    fn from_byte(byte: u8) -> Self {
        if byte == 0 {
            JoinSide::Right
        } else {
            JoinSide::Left
        }
    }

    fn other(self) -> Self {
        match self {
            JoinSide::Left => JoinSide::Right,
            JoinSide::Right => JoinSide::Left,
        }
    }
}

/// The join's clock in one task, shared by its processors.
#[derive(Debug)]
struct JoinTime {
    /// The largest timestamp either join processor has seen.
    stream_time: i64,
    /// No record without a match waits with an earlier timestamp;
    /// `i64::MIN` when unknown (after a restart), so the store is read.
    min_time: i64,
}

/// The join's clocks, one per task, as Kafka Streams'
/// `TimeTrackerSupplier`: created by the first processor of a task to ask,
/// dropped when the task's processors close.
#[derive(Clone, Default)]
pub(crate) struct JoinTimes(Arc<Mutex<HashMap<TaskId, Arc<Mutex<JoinTime>>>>>);

impl JoinTimes {
    fn get(&self, task: TaskId) -> Arc<Mutex<JoinTime>> {
        lock(&self.0)
            .entry(task)
            .or_insert_with(|| {
                Arc::new(Mutex::new(JoinTime {
                    stream_time: i64::MIN,
                    min_time: i64::MIN,
                }))
            })
            .clone()
    }

    fn remove(&self, task: TaskId) {
        lock(&self.0).remove(&task);
    }
}

/// A lock that outlives a panic elsewhere: the clock stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `value` is Kafka's null. Only types whose serde reads a null
/// (`Option`s through `Nullable`, `()`) have one; for the others
/// `nullable` is false and nothing is serialized.
fn is_null<T>(serde: &SerdeRef<T>, nullable: bool, value: &T) -> bool {
    nullable
        && matches!(
            serde.serialize_nullable_into(value, &mut Vec::new()),
            Ok(false)
        )
}

/// Whether `serde`'s type has a null.
fn nullable<T>(serde: &SerdeRef<T>) -> bool {
    serde.deserialize_nullable(None).is_ok()
}

/// Everything both sides' processors share: the windows, the stores, the
/// serdes and the joiner.
pub(crate) struct JoinSpec<K, VL, VR, VOut> {
    windows: JoinWindows,
    left_store: String,
    right_store: String,
    /// The shared store of records without a match (left and outer joins).
    outer_store: Option<String>,
    /// Whether left records without a match are emitted (left and outer).
    left_outer: bool,
    /// Whether right records without a match are emitted (outer).
    right_outer: bool,
    joiner: StreamJoiner<VL, VR, VOut>,
    keys: SerdeRef<K>,
    left_values: SerdeRef<VL>,
    right_values: SerdeRef<VR>,
    nullable: [bool; 3],
    times: JoinTimes,
}

/// The stores a join uses: each side's window store, and the shared store
/// of records without a match when the join keeps them.
pub(crate) struct JoinStores {
    pub(crate) left: String,
    pub(crate) right: String,
    pub(crate) outer: Option<String>,
}

/// The serdes of a join's key and of its left and right values.
pub(crate) struct JoinSerdes<K, VL, VR> {
    pub(crate) keys: SerdeRef<K>,
    pub(crate) left: SerdeRef<VL>,
    pub(crate) right: SerdeRef<VR>,
}

impl<K, VL, VR, VOut> JoinSpec<K, VL, VR, VOut> {
    /// A join in `windows` over `stores`; `outer` says whether left and
    /// right records without a match are emitted.
    pub(crate) fn new(
        windows: JoinWindows,
        stores: JoinStores,
        (left_outer, right_outer): (bool, bool),
        joiner: StreamJoiner<VL, VR, VOut>,
        serdes: JoinSerdes<K, VL, VR>,
    ) -> Self {
        JoinSpec {
            windows,
            left_store: stores.left,
            right_store: stores.right,
            outer_store: stores.outer,
            left_outer,
            right_outer,
            joiner,
            nullable: [
                nullable(&serdes.keys),
                nullable(&serdes.left),
                nullable(&serdes.right),
            ],
            keys: serdes.keys,
            left_values: serdes.left,
            right_values: serdes.right,
            times: JoinTimes::default(),
        }
    }

    fn store(&self, side: JoinSide) -> &str {
        match side {
            JoinSide::Left => &self.left_store,
            JoinSide::Right => &self.right_store,
        }
    }

    /// Whether records of `side` without a match are emitted.
    fn outer(&self, side: JoinSide) -> bool {
        match side {
            JoinSide::Left => self.left_outer,
            JoinSide::Right => self.right_outer,
        }
    }

    fn key_is_null(&self, key: &K) -> bool {
        is_null(&self.keys, self.nullable[0], key)
    }
}

/// A side of the join at the type level: which values are this side's,
/// and how they go to the joiner.
pub(crate) trait Side<VL, VR>: Send + Sync + 'static {
    /// This side's values.
    type This: Clone + Send + 'static;
    /// The other side's values.
    type Other: Clone + Send + 'static;
    /// The side.
    const SIDE: JoinSide;
    /// This side's and the other's values as the joiner takes them.
    fn pair<'a>(
        this: Option<&'a Self::This>,
        other: Option<&'a Self::Other>,
    ) -> (Option<&'a VL>, Option<&'a VR>);
    /// The serde of this side's values, and whether they have a null.
    fn values<K, VOut>(spec: &JoinSpec<K, VL, VR, VOut>) -> (&SerdeRef<Self::This>, bool);
}

/// The stream `join` was called on.
pub(crate) struct LeftSide;

/// The stream passed to `join`.
pub(crate) struct RightSide;

impl<VL: Clone + Send + 'static, VR: Clone + Send + 'static> Side<VL, VR> for LeftSide {
    type This = VL;
    type Other = VR;
    const SIDE: JoinSide = JoinSide::Left;
    fn pair<'a>(this: Option<&'a VL>, other: Option<&'a VR>) -> (Option<&'a VL>, Option<&'a VR>) {
        (this, other)
    }
    fn values<K, VOut>(spec: &JoinSpec<K, VL, VR, VOut>) -> (&SerdeRef<VL>, bool) {
        (&spec.left_values, spec.nullable[1])
    }
}

impl<VL: Clone + Send + 'static, VR: Clone + Send + 'static> Side<VL, VR> for RightSide {
    type This = VR;
    type Other = VL;
    const SIDE: JoinSide = JoinSide::Right;
    fn pair<'a>(this: Option<&'a VR>, other: Option<&'a VL>) -> (Option<&'a VL>, Option<&'a VR>) {
        (other, this)
    }
    fn values<K, VOut>(spec: &JoinSpec<K, VL, VR, VOut>) -> (&SerdeRef<VR>, bool) {
        (&spec.right_values, spec.nullable[2])
    }
}

/// Puts each record of one side in that side's window store (Kafka
/// Streams' `KStreamJoinWindow`), after dropping it if it is late: its
/// window closed before it came (counted as an expired-window drop).
/// Records with a null key or value are passed on unstored: they never
/// join.
pub(crate) struct KStreamJoinWindow<K, VL, VR, VOut, S: Side<VL, VR>> {
    spec: Arc<JoinSpec<K, VL, VR, VOut>>,
    store: Option<WindowStoreHandle<K, S::This>>,
    time: Option<(TaskId, Arc<Mutex<JoinTime>>)>,
}

impl<K, VL, VR, VOut, S: Side<VL, VR>> KStreamJoinWindow<K, VL, VR, VOut, S> {
    pub(crate) fn new(spec: Arc<JoinSpec<K, VL, VR, VOut>>) -> Self {
        KStreamJoinWindow {
            spec,
            store: None,
            time: None,
        }
    }
}

impl<K, VL, VR, VOut, S> Processor<K, S::This, K, S::This> for KStreamJoinWindow<K, VL, VR, VOut, S>
where
    K: Clone + Send + 'static,
    VL: Send + 'static,
    VR: Send + 'static,
    VOut: Send + 'static,
    S: Side<VL, VR>,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, S::This>) -> ProcessResult {
        self.store = Some(ctx.window_store(self.spec.store(S::SIDE))?);
        let task = ctx.task_id();
        self.time = Some((task, self.spec.times.get(task)));
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, S::This>,
        ctx: &mut ProcessorContext<'_, K, S::This>,
    ) -> ProcessResult {
        let spec = &*self.spec;
        let (values, nullable) = S::values(spec);
        if spec.key_is_null(&r.key) || is_null(values, nullable, &r.value) {
            return Ok(ctx.forward(r)?);
        }
        let (_, time) = self.time.as_ref().expect("init looks the clock up");
        let stream_time = lock(time).stream_time;
        if S::SIDE.closed(&spec.windows, r.timestamp, stream_time) {
            log::debug!(
                "dropping a record at {} of the {:?} side of a stream-stream join: its window closed, stream time is {stream_time}",
                r.timestamp,
                S::SIDE,
            );
            ctx.record_expired_window_drop();
            return Ok(());
        }
        // Stored before it is joined (Kafka Streams forwards first): the
        // join reads the other side's store only, so the order changes no
        // result, even when a stream is joined with itself, and saves a
        // copy of the record.
        let store = self.store.as_ref().expect("init looks the store up");
        store.put(&r.key, Some(&r.value), r.timestamp)?;
        Ok(ctx.forward(r)?)
    }

    fn close(&mut self) -> ProcessResult {
        if let Some((task, _)) = self.time.take() {
            self.spec.times.remove(task);
        }
        Ok(())
    }
}

/// Joins each record of one side with the other side's records in its
/// window (Kafka Streams' `KStreamKStreamJoin`): one result per match, at
/// the later of the two timestamps. In a left or outer join it keeps the
/// records without a match in the shared store and emits those whose
/// window has closed, in time order, when a record advances stream time.
pub(crate) struct KStreamKStreamJoin<K, VL, VR, VOut, S: Side<VL, VR>> {
    spec: Arc<JoinSpec<K, VL, VR, VOut>>,
    other: Option<WindowStoreHandle<K, S::Other>>,
    outer: Option<KeyValueStoreHandle<Vec<u8>, Vec<u8>>>,
    time: Option<(TaskId, Arc<Mutex<JoinTime>>)>,
    _side: PhantomData<fn() -> S>,
}

impl<K, VL, VR, VOut, S: Side<VL, VR>> KStreamKStreamJoin<K, VL, VR, VOut, S> {
    pub(crate) fn new(spec: Arc<JoinSpec<K, VL, VR, VOut>>) -> Self {
        KStreamKStreamJoin {
            spec,
            other: None,
            outer: None,
            time: None,
            _side: PhantomData,
        }
    }
}

/// The key of a record without a match in the shared store, as Kafka
/// Streams' `TimestampedKeyAndJoinSide`: the timestamp (8 bytes,
/// big-endian, so the store reads in time order), the side, the key.
fn outer_key(timestamp: i64, side: JoinSide, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.push(side.byte());
    out.extend_from_slice(key);
    out
}

/// Timestamp, side and key of a shared store key.
fn split_outer_key(bytes: &[u8]) -> Option<(i64, JoinSide, &[u8])> {
    let (timestamp, rest) = bytes.split_first_chunk::<8>()?;
    let (side, key) = rest.split_first()?;
    Some((
        i64::from_be_bytes(*timestamp),
        JoinSide::from_byte(*side),
        key,
    ))
}

/// Appends a value to a shared store entry: every record with the same
/// key, side and timestamp waits in one entry, as in Kafka Streams' list
/// stores. Each value is its length (4 bytes, big-endian), then the side
/// and the value's bytes (Kafka Streams' `LeftOrRightValue`).
fn push_value(list: &mut Vec<u8>, side: JoinSide, value: &[u8]) {
    let len = u32::try_from(1 + value.len()).unwrap_or(u32::MAX);
    list.extend_from_slice(&len.to_be_bytes());
    list.push(side.byte());
    list.extend_from_slice(value);
}

/// The values of a shared store entry, with their sides.
fn split_values(mut list: &[u8]) -> Option<Vec<(JoinSide, &[u8])>> {
    let mut values = Vec::new();
    while !list.is_empty() {
        let (len, rest) = list.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let value = rest.get(..len)?;
        let (side, bytes) = value.split_first()?;
        values.push((JoinSide::from_byte(*side), bytes));
        list = &rest[len..];
    }
    Some(values)
}

fn corrupt(store: &str) -> crate::error::BoxError {
    format!("the store `{store}` holds an entry that is not a stream-stream join's").into()
}

impl<K, VL, VR, VOut, S> KStreamKStreamJoin<K, VL, VR, VOut, S>
where
    K: Clone + Send + 'static,
    VL: Send + 'static,
    VR: Send + 'static,
    VOut: Clone + Send + 'static,
    S: Side<VL, VR>,
{
    /// Emits the records without a match whose window has closed at
    /// `stream_time`, earliest first, and forgets them. `headers` are the
    /// current record's, which the results carry (as in Kafka Streams).
    fn emit_closed(
        &self,
        outer: &KeyValueStoreHandle<Vec<u8>, Vec<u8>>,
        time: &Mutex<JoinTime>,
        ctx: &mut ProcessorContext<'_, K, VOut>,
        headers: &Headers,
        stream_time: i64,
    ) -> ProcessResult {
        let spec = &*self.spec;
        let windows = &spec.windows;
        // Records from this time on have an open window on either side.
        let shortest = windows.before_ms().min(windows.after_ms());
        let open_from = stream_time
            .saturating_sub(shortest)
            .saturating_sub(windows.grace());
        if lock(time).min_time >= open_from || open_from <= 0 {
            return Ok(());
        }
        // Keys up to the bare timestamp `open_from` are the earlier ones.
        let entries = outer.range(None, Some(&open_from.to_be_bytes().to_vec()))?;
        let mut min_open = None;
        let mut done = Vec::new();
        for (key_bytes, list) in entries {
            let name = outer.name();
            let (timestamp, side, key) =
                split_outer_key(&key_bytes).ok_or_else(|| corrupt(name))?;
            if !side.closed(windows, timestamp, stream_time) {
                min_open.get_or_insert(timestamp);
                continue;
            }
            let key = spec.keys.deserialize(key)?;
            for (value_side, bytes) in split_values(&list).ok_or_else(|| corrupt(name))? {
                let joined = match value_side {
                    JoinSide::Left => {
                        (spec.joiner)(Some(&spec.left_values.deserialize(bytes)?), None)
                    }
                    JoinSide::Right => {
                        (spec.joiner)(None, Some(&spec.right_values.deserialize(bytes)?))
                    }
                };
                let record = Record::new(key.clone(), joined, timestamp);
                ctx.forward(record.with_headers(headers.clone()))?;
            }
            done.push((key_bytes, None));
        }
        outer.put_all(&done)?;
        lock(time).min_time = min_open.unwrap_or(open_from);
        Ok(())
    }

    /// Keeps a record without a match until its window closes.
    fn keep_unjoined(
        &self,
        outer: &KeyValueStoreHandle<Vec<u8>, Vec<u8>>,
        time: &Mutex<JoinTime>,
        r: &Record<K, S::This>,
    ) -> ProcessResult {
        let spec = &*self.spec;
        let key = outer_key(r.timestamp, S::SIDE, &spec.keys.serialize(&r.key)?);
        let mut list = outer.get(&key)?.unwrap_or_default();
        let (values, _) = S::values(spec);
        push_value(&mut list, S::SIDE, &values.serialize(&r.value)?);
        outer.put(&key, &list)?;
        let mut time = lock(time);
        time.min_time = time.min_time.min(r.timestamp);
        Ok(())
    }
}

impl<K, VL, VR, VOut, S> Processor<K, S::This, K, VOut> for KStreamKStreamJoin<K, VL, VR, VOut, S>
where
    K: Clone + Send + 'static,
    VL: Send + 'static,
    VR: Send + 'static,
    VOut: Clone + Send + 'static,
    S: Side<VL, VR>,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> ProcessResult {
        self.other = Some(ctx.window_store(self.spec.store(S::SIDE.other()))?);
        if let Some(name) = &self.spec.outer_store {
            self.outer = Some(ctx.key_value_store(name)?);
        }
        let task = ctx.task_id();
        self.time = Some((task, self.spec.times.get(task)));
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, S::This>,
        ctx: &mut ProcessorContext<'_, K, VOut>,
    ) -> ProcessResult {
        let spec = &*self.spec;
        let (_, time) = self.time.as_ref().expect("init looks the clock up");
        let stream_time = {
            let mut time = lock(time);
            time.stream_time = time.stream_time.max(r.timestamp);
            time.stream_time
        };
        let (values, nullable) = S::values(spec);
        let null_key = spec.key_is_null(&r.key);
        if null_key || is_null(values, nullable, &r.value) {
            // A null key never matches; a left (outer) join still emits
            // the record at once when it has a value (Kafka Streams 3.7+).
            if null_key && spec.outer(S::SIDE) && !is_null(values, nullable, &r.value) {
                let (left, right) = S::pair(Some(&r.value), None);
                let joined = (spec.joiner)(left, right);
                ctx.forward(r.with_value(joined))?;
            }
            return Ok(());
        }
        if r.timestamp == stream_time
            && let Some(outer) = &self.outer
        {
            self.emit_closed(outer, time, ctx, &r.headers, stream_time)?;
        }
        let (before, after) = S::SIDE.reach(&spec.windows);
        let from = r.timestamp.saturating_sub(before).max(0);
        let to = r.timestamp.saturating_add(after).max(0);
        let other = self.other.as_ref().expect("init looks the store up");
        let matches = other.fetch_range(&r.key, from, to)?;
        if matches.is_empty() {
            if spec.outer(S::SIDE)
                && let Some(outer) = &self.outer
            {
                self.keep_unjoined(outer, time, &r)?;
            }
            return Ok(());
        }
        // The other side's records without a match so far have one now.
        let other_key = match &self.outer {
            Some(_) if spec.outer(S::SIDE.other()) => Some(spec.keys.serialize(&r.key)?),
            _ => None,
        };
        let mut forgotten = None;
        for (timestamp, value) in matches {
            if let (Some(outer), Some(key)) = (&self.outer, &other_key)
                && forgotten != Some(timestamp)
            {
                let entry = outer_key(timestamp, S::SIDE.other(), key);
                // A read first: a delete of nothing would still be logged.
                if outer.get(&entry)?.is_some() {
                    outer.delete(&entry)?;
                }
                forgotten = Some(timestamp);
            }
            let (left, right) = S::pair(Some(&r.value), Some(&value));
            let joined = (spec.joiner)(left, right);
            let record = Record::new(r.key.clone(), joined, r.timestamp.max(timestamp));
            ctx.forward(record.with_headers(r.headers.clone()))?;
        }
        Ok(())
    }

    fn close(&mut self) -> ProcessResult {
        if let Some((task, _)) = self.time.take() {
            self.spec.times.remove(task);
        }
        Ok(())
    }
}

/// The names of a join's processors, as Kafka Streams' `KStreamImplJoin`
/// gives them: from the join's name when it has one, else generated (the
/// join processors' generated names are taken either way, and name the
/// stores).
struct JoinNames {
    this_windowed: String,
    other_windowed: String,
    this_join: String,
    other_join: String,
    merge: String,
    /// `KSTREAM-JOINTHIS-<n>` or `KSTREAM-OUTERTHIS-<n>`.
    this_generated: String,
    other_generated: String,
    this_suffix: &'static str,
    other_suffix: &'static str,
}

impl JoinNames {
    fn new(
        st: &mut BuilderState,
        name: Option<&str>,
        (left_outer, right_outer): (bool, bool),
    ) -> Self {
        let named = |st: &mut BuilderState, suffix: &str, prefix: &str| match name {
            Some(name) => format!("{name}{suffix}"),
            None => st.next_name(prefix),
        };
        let this_windowed = named(st, "-this-windowed", "KSTREAM-WINDOWED-");
        let other_windowed = named(st, "-other-windowed", "KSTREAM-WINDOWED-");
        let this_generated = st.next_name(if right_outer {
            OUTER_THIS
        } else {
            "KSTREAM-JOINTHIS-"
        });
        let other_generated = st.next_name(if left_outer {
            "KSTREAM-OUTEROTHER-"
        } else {
            "KSTREAM-JOINOTHER-"
        });
        let this_suffix = if right_outer {
            "-outer-this-join"
        } else {
            "-this-join"
        };
        let other_suffix = if left_outer {
            "-outer-other-join"
        } else {
            "-other-join"
        };
        let merge = named(st, "-merge", "KSTREAM-MERGE-");
        let or_generated = |suffix: &str, generated: &String| {
            name.map_or_else(|| generated.clone(), |name| format!("{name}{suffix}"))
        };
        JoinNames {
            this_windowed,
            other_windowed,
            this_join: or_generated(this_suffix, &this_generated),
            other_join: or_generated(other_suffix, &other_generated),
            merge,
            this_generated,
            other_generated,
            this_suffix,
            other_suffix,
        }
    }

    /// The stores' names: each side's (its supplier's, else from the
    /// stores' base name or the join processor's generated name), and the
    /// shared one of left and outer joins.
    fn stores<K, VL, VR>(
        &self,
        joined: &StreamJoined<K, VL, VR>,
        (left_outer, right_outer): (bool, bool),
    ) -> JoinStores {
        let side = |supplier: &Option<Arc<dyn WindowBytesStoreSupplier>>,
                    suffix: &str,
                    generated: &str| {
            match (supplier, &joined.store_name) {
                (Some(supplier), _) => supplier.name().to_owned(),
                (None, Some(base)) => format!("{base}{suffix}-store"),
                (None, None) => format!("{generated}-store"),
            }
        };
        let shared_suffix = if right_outer {
            "-outer-shared-join"
        } else {
            "-left-shared-join"
        };
        let outer = left_outer.then(|| {
            let base = match (&joined.this_supplier, &joined.store_name) {
                (Some(supplier), _) if !supplier.name().is_empty() => {
                    format!("{}{shared_suffix}", supplier.name())
                }
                (_, Some(base)) => format!("{base}{shared_suffix}"),
                _ => {
                    // The number of the left join processor's name.
                    let prefix = if right_outer {
                        OUTER_THIS
                    } else {
                        "KSTREAM-JOINTHIS-"
                    };
                    let number = self.this_generated.strip_prefix(prefix).unwrap_or_default();
                    format!("KSTREAM-OUTERSHARED-{number}")
                }
            };
            format!("{base}-store")
        });
        JoinStores {
            left: side(
                &joined.this_supplier,
                self.this_suffix,
                &self.this_generated,
            ),
            right: side(
                &joined.other_supplier,
                self.other_suffix,
                &self.other_generated,
            ),
            outer,
        }
    }
}

const OUTER_THIS: &str = "KSTREAM-OUTERTHIS-";

/// A window store supplier given for a join must fit its windows, as Kafka
/// Streams checks: duplicates kept, windows of `before + after`, kept for
/// that plus the grace period.
fn check_supplier(
    supplier: &dyn WindowBytesStoreSupplier,
    windows: &JoinWindows,
) -> Result<(), TopologyError> {
    let size = windows.before_ms().saturating_add(windows.after_ms());
    let retention = size.saturating_add(windows.grace());
    let name = supplier.name();
    if !supplier.retain_duplicates() {
        return Err(TopologyError::new(format!(
            "the window store `{name}` of a stream-stream join must keep duplicates (retain_duplicates)"
        )));
    }
    if supplier.window_size() != size || supplier.retention_period() != retention {
        return Err(TopologyError::new(format!(
            "the window store `{name}` of a stream-stream join must hold windows of {size} ms (before + after) for {retention} ms (plus the grace period), not {} ms for {} ms",
            supplier.window_size(),
            supplier.retention_period()
        )));
    }
    Ok(())
}

/// The window store of one side: its supplier's (checked), else one this
/// join makes, keeping duplicates.
fn side_store<K: 'static, V: 'static>(
    supplier: Option<&Arc<dyn WindowBytesStoreSupplier>>,
    name: &str,
    windows: &JoinWindows,
    (keys, values): (&SerdeRef<K>, &SerdeRef<V>),
    (in_memory, logging): (bool, bool),
) -> Result<WindowStoreBuilder<K, V>, TopologyError> {
    let supplier = match supplier {
        Some(supplier) => {
            check_supplier(&**supplier, windows)?;
            supplier.clone()
        }
        None => {
            // Window stores hold windows of at least 1 ms; a join of
            // records with equal timestamps only (a zero difference) reads
            // nothing from the window ends.
            let size = windows
                .before_ms()
                .saturating_add(windows.after_ms())
                .max(1);
            let retention = windows.before_ms().saturating_add(windows.after_ms());
            let retention = retention.saturating_add(windows.grace()).max(size);
            let ms = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            let supplier = if in_memory {
                Stores::in_memory_window_store(name, ms(retention), ms(size), true)
            } else {
                Stores::persistent_window_store(name, ms(retention), ms(size), true)
            };
            supplier.map_err(|e| TopologyError::new(e.to_string()))?
        }
    };
    let builder = WindowStoreBuilder::new(supplier, keys.clone(), values.clone());
    Ok(if logging {
        builder
    } else {
        builder.with_logging_disabled()
    })
}

fn boxed<B: StoreBuilder + 'static>(builder: B) -> Arc<dyn StoreBuilder> {
    Arc::new(builder)
}

/// `stream` as the join reads it: through `<base>-repartition` (with the
/// join's serdes) when its key changed, the topic named after the join's
/// name (`<name>-left`, `<name>-right`) or, unnamed, after the stream's
/// node, as in Kafka Streams.
fn co_partitioned<K: Data, V: Data>(
    stream: &KStream<K, V>,
    base: Option<String>,
    (keys, values): (&SerdeRef<K>, &SerdeRef<V>),
    operation: &str,
) -> KStream<K, V> {
    if !stream.repartition_required {
        return stream.clone();
    }
    let base = base.unwrap_or_else(|| stream.node.clone());
    stream.through_repartition_topic(
        &base,
        Some(keys.clone()),
        Some(values.clone()),
        None,
        operation,
    )
}

/// Adds a join of `left` with `right` in `windows` to their topology:
/// each side's window processor and store, each side's join processor,
/// the shared store of a left or outer join (`outer`: whether left, and
/// right, records without a match are emitted), and the merge of both
/// sides' results, as Kafka Streams' `KStreamImplJoin` lays them out.
pub(crate) fn stream_join<K: Data, VL: Data, VR: Data, VOut: Data>(
    left: &KStream<K, VL>,
    right: &KStream<K, VR>,
    windows: JoinWindows,
    joined: StreamJoined<K, VL, VR>,
    outer: (bool, bool),
    joiner: StreamJoiner<VL, VR, VOut>,
) -> KStream<K, VOut> {
    let operation = match outer {
        (false, _) => "join_stream()",
        (true, false) => "left_join_stream()",
        (true, true) => "outer_join_stream()",
    };
    let state = left.state.clone();
    let serdes = {
        let mut st = state.borrow_mut();
        let keys = joined.keys.clone();
        let keys = keys
            .or_else(|| left.serdes.keys.clone())
            .or_else(|| right.serdes.keys.clone());
        let left_values = joined.values.clone().or_else(|| left.serdes.values.clone());
        let right_values = joined
            .other_values
            .clone()
            .or_else(|| right.serdes.values.clone());
        JoinSerdes {
            keys: st.serde_or_fail(keys, operation),
            left: st.serde_or_fail(left_values, operation),
            right: st.serde_or_fail(right_values, operation),
        }
    };
    let suffixed = |suffix: &str| joined.name.as_ref().map(|name| format!("{name}{suffix}"));
    let left = co_partitioned(
        left,
        suffixed("-left"),
        (&serdes.keys, &serdes.left),
        operation,
    );
    let right = co_partitioned(
        right,
        suffixed("-right"),
        (&serdes.keys, &serdes.right),
        operation,
    );

    let names = JoinNames::new(&mut state.borrow_mut(), joined.name.as_deref(), outer);
    let stores = names.stores(&joined, outer);
    let kind = (joined.in_memory, joined.logging);
    let left_store = side_store(
        joined.this_supplier.as_ref(),
        &stores.left,
        &windows,
        (&serdes.keys, &serdes.left),
        kind,
    );
    let right_store = side_store(
        joined.other_supplier.as_ref(),
        &stores.right,
        &windows,
        (&serdes.keys, &serdes.right),
        kind,
    );
    let shared_store = stores.outer.as_ref().map(|name| {
        // Kept as the left side's store is: in memory or in RocksDB.
        let in_memory = match &joined.this_supplier {
            Some(supplier) => !supplier.persistent(),
            None => joined.in_memory,
        };
        let supplier = if in_memory {
            Stores::in_memory_key_value_store(name.as_str())
        } else {
            Stores::persistent_key_value_store(name.as_str())
        };
        let builder =
            KeyValueStoreBuilder::new(supplier, Arc::new(BytesSerde), Arc::new(BytesSerde));
        if joined.logging {
            builder
        } else {
            builder.with_logging_disabled()
        }
    });
    if stores.left == stores.right {
        state.borrow_mut().fail(TopologyError::new(format!(
            "the two window stores of a stream-stream join need different names, not both `{}`",
            stores.left
        )));
    }
    let output = Serdes {
        keys: Some(serdes.keys.clone()),
        values: default_serde(),
    };
    let spec = Arc::new(JoinSpec::new(windows, stores, outer, joiner, serdes));

    let make = spec.clone();
    let left_windowed = left.add_node(
        "",
        Some(Named(names.this_windowed)),
        &[&left.node],
        move || KStreamJoinWindow::<K, VL, VR, VOut, LeftSide>::new(make.clone()),
        false,
        left.serdes.clone(),
    );
    let make = spec.clone();
    let right_windowed = right.add_node(
        "",
        Some(Named(names.other_windowed)),
        &[&right.node],
        move || KStreamJoinWindow::<K, VL, VR, VOut, RightSide>::new(make.clone()),
        false,
        right.serdes.clone(),
    );
    let make = spec.clone();
    let left_joined = left_windowed.add_node(
        "",
        Some(Named(names.this_join)),
        &[&left_windowed.node],
        move || KStreamKStreamJoin::<K, VL, VR, VOut, LeftSide>::new(make.clone()),
        false,
        output.clone(),
    );
    let right_joined = right_windowed.add_node(
        "",
        Some(Named(names.other_join)),
        &[&right_windowed.node],
        move || KStreamKStreamJoin::<K, VL, VR, VOut, RightSide>::new(spec.clone()),
        false,
        output.clone(),
    );
    let merged = left_joined.add_node(
        "",
        Some(Named(names.merge)),
        &[&left_joined.node, &right_joined.node],
        || {
            FnProcessor::new(
                |r: Record<K, VOut>, ctx: &mut ProcessorContext<'_, K, VOut>| Ok(ctx.forward(r)?),
            )
        },
        false,
        output,
    );

    let mut st = state.borrow_mut();
    let (left_node, right_node) = (left_windowed.node.as_str(), right_windowed.node.as_str());
    let (left_join, right_join) = (left_joined.node.as_str(), right_joined.node.as_str());
    // Each side's store: written by its window processor, read by the
    // other side's join processor.
    for (builder, processors) in [
        (left_store.map(boxed), [left_node, right_join]),
        (right_store.map(boxed), [right_node, left_join]),
    ] {
        match builder {
            Ok(builder) => {
                let added = st
                    .topology
                    .add_state_store(builder, &processors)
                    .map(|_| ());
                st.record(added);
            }
            Err(error) => st.fail(error),
        }
    }
    if let Some(builder) = shared_store {
        let added = st
            .topology
            .add_state_store(builder, &[left_join, right_join])
            .map(|_| ());
        st.record(added);
    }
    drop(st);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_store_keys_read_in_time_order_and_split_back() {
        let early = outer_key(5, JoinSide::Left, b"zz");
        let late = outer_key(300, JoinSide::Right, b"aa");
        assert!(early < late, "the timestamp comes first");
        assert!(
            outer_key(5, JoinSide::Right, b"zz") < early,
            "then the side, right first"
        );
        assert!(early < open_bound(6) && late > open_bound(6));
        assert_eq!(
            split_outer_key(&late),
            Some((300, JoinSide::Right, &b"aa"[..]))
        );
        assert_eq!(split_outer_key(b"short"), None);
    }

    /// The range bound `emit_closed` reads up to.
    fn open_bound(timestamp: i64) -> Vec<u8> {
        timestamp.to_be_bytes().to_vec()
    }

    #[test]
    fn entries_keep_each_value_with_its_side() {
        let mut list = Vec::new();
        push_value(&mut list, JoinSide::Left, b"first");
        push_value(&mut list, JoinSide::Left, b"");
        push_value(&mut list, JoinSide::Right, b"third");
        assert_eq!(
            split_values(&list),
            Some(vec![
                (JoinSide::Left, &b"first"[..]),
                (JoinSide::Left, &b""[..]),
                (JoinSide::Right, &b"third"[..]),
            ])
        );
        assert_eq!(split_values(&list[..list.len() - 1]), None, "a cut entry");
    }

    #[test]
    fn each_side_sees_the_mirror_of_the_window() {
        let windows = JoinWindows::of_time_difference_and_grace(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_millis(5),
        )
        .unwrap()
        .after(std::time::Duration::from_millis(2))
        .unwrap();
        assert_eq!(JoinSide::Left.reach(&windows), (10, 2));
        assert_eq!(JoinSide::Right.reach(&windows), (2, 10));
        // Left at 100: open up to 100 + 2 + 5; right at 100: up to 100 + 10 + 5.
        assert!(!JoinSide::Left.closed(&windows, 100, 107));
        assert!(JoinSide::Left.closed(&windows, 100, 108));
        assert!(!JoinSide::Right.closed(&windows, 100, 115));
        assert!(JoinSide::Right.closed(&windows, 100, 116));
    }
}
