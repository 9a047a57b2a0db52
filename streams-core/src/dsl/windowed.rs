//! Windowed aggregations: a grouped stream [`windowed_by`] time, sliding or
//! session windows, then counted, reduced or aggregated into a
//! `KTable<Windowed<K>, V>` (Kafka Streams' `TimeWindowedKStream` and
//! `SessionWindowedKStream`).
//!
//! [`windowed_by`]: KGroupedStream::windowed_by

use std::sync::Arc;
use std::time::Duration;

use super::grouped::{Aggregation, KGroupedStream, add_aggregation_of};
use super::kstream_aggregate::StreamStep;
use super::kstream_session_window_aggregate::{KStreamSessionWindowAggregate, SessionMerge};
use super::kstream_window_aggregate::{KStreamSlidingWindowAggregate, KStreamWindowAggregate};
use super::ktable::{KTable, ValueGetterSupplier};
use super::options::{Materialized, StoreType};
use super::{Data, Serdes};
use crate::error::TopologyError;
use crate::serde::{I64Serde, SerdeRef, default_serde};
use crate::state::{
    SessionBytesStoreSupplier, SessionStoreBuilder, StoreBuilder, Stores, WindowBytesStoreSupplier,
    WindowStoreBuilder,
};
use crate::window::{
    SessionWindowedSerde, SessionWindows, SlidingWindows, TimeWindowedSerde, TimeWindows, Windowed,
};

/// Windows a grouped stream can be windowed by: [`TimeWindows`] and
/// [`SlidingWindows`] give a [`TimeWindowedKStream`], [`SessionWindows`] a
/// [`SessionWindowedKStream`].
pub trait WindowedBy<K, V> {
    /// The windowed stream.
    type Stream;
    /// `grouped` in these windows.
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Stream;
}

impl<K: Data, V: Data> WindowedBy<K, V> for TimeWindows {
    type Stream = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Stream {
        TimeWindowedKStream {
            grouped: grouped.clone(),
            windows: TimeKind::Fixed(self),
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SlidingWindows {
    type Stream = TimeWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Stream {
        TimeWindowedKStream {
            grouped: grouped.clone(),
            windows: TimeKind::Sliding(self),
        }
    }
}

impl<K: Data, V: Data> WindowedBy<K, V> for SessionWindows {
    type Stream = SessionWindowedKStream<K, V>;
    fn windowed(self, grouped: &KGroupedStream<K, V>) -> Self::Stream {
        SessionWindowedKStream {
            grouped: grouped.clone(),
            windows: self,
        }
    }
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    /// Aggregates in windows: [`TimeWindows`] (tumbling or hopping),
    /// [`SlidingWindows`] or [`SessionWindows`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::serde::{I64Serde, Nullable, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::{TimeWindowedSerde, TimeWindows, Window, Windowed};
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let minute = Duration::from_secs(60);
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks
    ///     .group_by_key()
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(minute)?)
    ///     .count_with(Materialized::named("clicks-per-minute").in_memory())
    ///     .to_stream()
    ///     .to("clicks-per-minute");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// input.pipe_input_at("ann".into(), "/".into(), 1_000);
    /// input.pipe_input_at("ann".into(), "/about".into(), 59_000);
    /// input.pipe_input_at("ann".into(), "/".into(), 61_000);
    /// let keys = TimeWindowedSerde::new(StringSerde, 60_000);
    /// let output = driver.create_output_topic("clicks-per-minute", keys, Nullable(I64Serde));
    /// let at = |start| Windowed::new("ann".to_string(), Window::new(start, start + 60_000));
    /// assert_eq!(
    ///     output.read_key_values_to_list(),
    ///     [(at(0), Some(1)), (at(0), Some(2)), (at(60_000), Some(1))]
    /// );
    /// let store = driver.window_store::<String, i64>("clicks-per-minute")?;
    /// assert_eq!(store.fetch(&"ann".into(), 60_000)?, Some(1));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn windowed_by<W: WindowedBy<K, V>>(&self, windows: W) -> W::Stream {
        windows.windowed(self)
    }
}

#[derive(Clone, Copy)]
enum TimeKind {
    Fixed(TimeWindows),
    Sliding(SlidingWindows),
}

impl TimeKind {
    /// The windows' size, as a store and a windowed key see it.
    fn size(&self) -> i64 {
        match self {
            TimeKind::Fixed(w) => w.size(),
            TimeKind::Sliding(w) => w.time_difference(),
        }
    }

    fn grace(&self) -> i64 {
        match self {
            TimeKind::Fixed(w) => w.grace(),
            TimeKind::Sliding(w) => w.grace(),
        }
    }

    /// Kafka Streams' default retention: long enough for every window to
    /// close (a sliding record reaches back two time differences).
    fn least_retention(&self) -> i64 {
        match self {
            TimeKind::Fixed(w) => w.size() + w.grace(),
            TimeKind::Sliding(w) => 2 * w.time_difference() + w.grace(),
        }
    }
}

/// A grouped stream in time windows, tumbling, hopping or sliding (Kafka
/// Streams' `TimeWindowedKStream`): its aggregations give a table keyed
/// by the key and its window.
pub struct TimeWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: TimeKind,
}

/// Which byte store a windowed `Materialized` asks for, or why none.
fn store_kind<K, V>(materialized: &Materialized<K, V>, store: &str) -> Result<bool, TopologyError> {
    match &materialized.store_type {
        StoreType::RocksDb => Ok(true),
        StoreType::InMemory => Ok(false),
        StoreType::Supplier(_) => Err(TopologyError::new(format!(
            "the store `{store}` of a windowed aggregation must be a window or session store, not the key-value store Materialized::from_supplier gives"
        ))),
    }
}

/// The retention `materialized` asks for, else `least`; an error if it is
/// shorter than `least`.
fn retention<K, V>(
    materialized: &Materialized<K, V>,
    store: &str,
    least: i64,
) -> Result<i64, TopologyError> {
    let Some(asked) = materialized.retention else {
        return Ok(least);
    };
    let asked = i64::try_from(asked.as_millis()).unwrap_or(i64::MAX);
    if asked < least {
        return Err(TopologyError::new(format!(
            "the retention of the store `{store}` ({asked} ms) must be at least its windows' size plus their grace period ({least} ms)"
        )));
    }
    Ok(asked)
}

/// What a windowed aggregation's `Materialized` resolves to.
struct StoreSetup<K, VA> {
    keys: SerdeRef<K>,
    values: SerdeRef<VA>,
    persistent: bool,
    /// In ms, at least the windows' size (or gap) plus grace.
    retention: i64,
}

/// Resolves a windowed aggregation's store from `materialized`: the key
/// serde (else the input's), the aggregate serde (else `default_values`,
/// else the type's default), the kind of store and the retention (at
/// least `least` ms).
fn resolve_store<K: Data, VA: Data>(
    materialized: &Materialized<K, VA>,
    store: &str,
    input_keys: Option<SerdeRef<K>>,
    default_values: Option<SerdeRef<VA>>,
    least: i64,
) -> Result<StoreSetup<K, VA>, TopologyError> {
    let keys = materialized.keys.clone().or(input_keys);
    let values = materialized
        .values
        .clone()
        .or(default_values)
        .or_else(default_serde);
    let (Some(keys), Some(values)) = (keys, values) else {
        return Err(TopologyError::new(format!(
            "the store `{store}` of a windowed aggregation needs a key serde and a value serde: give them with Materialized::with"
        )));
    };
    Ok(StoreSetup {
        keys,
        values,
        persistent: store_kind(materialized, store)?,
        retention: retention(materialized, store, least)?,
    })
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: Option<SerdeRef<VA>>,
        step: StreamStep<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let (store, input) = self
            .grouped
            .prepare(&materialized, "KSTREAM-AGGREGATE-STATE-STORE-");
        let state = &self.grouped.stream.state;
        let stand_in = || KTable {
            state: state.clone(),
            node: input.node.clone(),
            serdes: Serdes::defaults(),
            getter: window_getter(&store),
            store: None,
        };
        let windows = self.windows;
        let setup = resolve_store(
            &materialized,
            &store,
            input.serdes.keys.clone(),
            default_values,
            windows.least_retention(),
        )
        .and_then(|setup| {
            let supplier =
                window_supplier(&store, setup.persistent, setup.retention, windows.size())?;
            Ok((setup, supplier))
        });
        let (StoreSetup { keys, values, .. }, supplier) = match setup {
            Ok(setup) => setup,
            Err(error) => {
                state.borrow_mut().fail(error);
                return stand_in();
            }
        };
        let mut builder =
            WindowStoreBuilder::new(supplier, keys.clone(), values.clone()).timestamped();
        if !materialized.logging {
            builder = builder.with_logging_disabled();
        }
        if let Some(bytes) = materialized.cache_bytes {
            builder = builder.with_caching_enabled(bytes);
        }
        let name = store.clone();
        let aggregation = Aggregation {
            store: store.clone(),
            builder: Arc::new(builder) as Arc<dyn StoreBuilder>,
            keys: Arc::new(TimeWindowedSerde::new(keys, windows.size())),
            values,
            getter: window_getter(&store),
        };
        let table = match windows {
            TimeKind::Fixed(w) => add_aggregation_of(
                state,
                &input.node,
                "KSTREAM-WINDOWAGGREGATE-",
                move || KStreamWindowAggregate::new(&name, w, step.clone()),
                aggregation,
            ),
            TimeKind::Sliding(w) => add_aggregation_of(
                state,
                &input.node,
                "KSTREAM-SLIDINGWINDOWAGGREGATE-",
                move || KStreamSlidingWindowAggregate::new(&name, w, step.clone()),
                aggregation,
            ),
        };
        state
            .borrow_mut()
            .window_graces
            .insert(table.node.clone(), windows.grace());
        table
    }

    /// Counts records per key and window in the store `materialized`
    /// describes (its retention at least the windows' size plus grace).
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            materialized,
            Some(Arc::new(I64Serde)),
            Arc::new(|_, _, count| count.unwrap_or(0) + 1),
        )
    }

    /// Counts records per key and window (a RocksDB store, cached and
    /// logged, with a generated name).
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// Combines the values of each key and window with `reducer` (the
    /// window's first value is the start).
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let default_values = self.grouped.stream.serdes.values.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, value, agg| match agg {
                Some(agg) => reducer(&agg, value),
                None => value,
            }),
        )
    }

    /// Folds the values of each key and window into an aggregate that
    /// starts as `initializer()`.
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.aggregate_with(
            materialized,
            None,
            Arc::new(move |k, v, agg| aggregator(k, v, agg.unwrap_or_else(&initializer))),
        )
    }
}

fn window_supplier(
    store: &str,
    persistent: bool,
    retention: i64,
    size: i64,
) -> Result<Arc<dyn WindowBytesStoreSupplier>, TopologyError> {
    let ms = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    let supplier = if persistent {
        Stores::persistent_window_store(store, ms(retention), ms(size), false)
    } else {
        Stores::in_memory_window_store(store, ms(retention), ms(size), false)
    };
    supplier.map_err(|e| TopologyError::new(e.to_string()))
}

/// Reads a windowed table's value from its window store.
fn window_getter<K: Data, V: Data>(store: &str) -> ValueGetterSupplier<Windowed<K>, V> {
    let name = store.to_owned();
    ValueGetterSupplier {
        stores: vec![name.clone()],
        make: Arc::new(move |lookup| {
            let handle = lookup.window_store::<K, V>(&name)?;
            Ok(Box::new(move |key: &Windowed<K>| {
                handle.fetch(&key.key, key.window.start)
            }))
        }),
    }
}

/// Reads a session table's value from its session store.
fn session_getter<K: Data, V: Data>(store: &str) -> ValueGetterSupplier<Windowed<K>, V> {
    let name = store.to_owned();
    ValueGetterSupplier {
        stores: vec![name.clone()],
        make: Arc::new(move |lookup| {
            let handle = lookup.session_store::<K, V>(&name)?;
            Ok(Box::new(move |key: &Windowed<K>| {
                handle.fetch_session(&key.key, key.window.start, key.window.end)
            }))
        }),
    }
}

/// A grouped stream in session windows (Kafka Streams'
/// `SessionWindowedKStream`): a key's records no further apart than the
/// inactivity gap form one session, and a record that bridges two sessions
/// merges them.
///
/// ```
/// use std::time::Duration;
/// use streams_core::dsl::{KStream, Materialized};
/// use streams_core::serde::{I64Serde, Nullable, StringSerde};
/// use streams_core::testing::TopologyTestDriver;
/// use streams_core::window::{SessionWindowedSerde, SessionWindows, Window, Windowed};
/// use streams_core::{StreamsBuilder, StreamsConfig};
///
/// let builder = StreamsBuilder::new();
/// let clicks: KStream<String, String> = builder.stream("clicks");
/// clicks
///     .group_by_key()
///     .windowed_by(SessionWindows::of_inactivity_gap_and_grace(
///         Duration::from_secs(5),
///         Duration::from_secs(10), // keeps [0, 0] open when 8 s arrives
///     )?)
///     .count_with(Materialized::named("sessions").in_memory())
///     .to_stream()
///     .to("sessions");
/// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
/// let mut input = driver.create_input_topic("clicks", StringSerde, StringSerde);
/// input.pipe_input_at("ann".into(), "/".into(), 0);
/// input.pipe_input_at("ann".into(), "/".into(), 8_000);
/// input.pipe_input_at("ann".into(), "/".into(), 4_000); // bridges the two
/// let output = driver.create_output_topic("sessions", SessionWindowedSerde::new(StringSerde), Nullable(I64Serde));
/// let session = |start, end| Windowed::new("ann".to_string(), Window::new(start, end));
/// assert_eq!(
///     output.read_key_values_to_list(),
///     [
///         (session(0, 0), Some(1)),
///         (session(8_000, 8_000), Some(1)),
///         (session(0, 0), None),
///         (session(8_000, 8_000), None),
///         (session(0, 8_000), Some(3)),
///     ]
/// );
/// let store = driver.session_store::<String, i64>("sessions")?;
/// assert_eq!(store.fetch(&"ann".into())?, [(session(0, 8_000), 3)]);
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct SessionWindowedKStream<K, V> {
    grouped: KGroupedStream<K, V>,
    windows: SessionWindows,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    fn aggregate_with<VA: Data>(
        &self,
        materialized: Materialized<K, VA>,
        default_values: Option<SerdeRef<VA>>,
        step: StreamStep<K, V, VA>,
        merge: SessionMerge<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let (store, input) = self
            .grouped
            .prepare(&materialized, "KSTREAM-AGGREGATE-STATE-STORE-");
        let state = &self.grouped.stream.state;
        let stand_in = || KTable {
            state: state.clone(),
            node: input.node.clone(),
            serdes: Serdes::defaults(),
            getter: session_getter(&store),
            store: None,
        };
        let windows = self.windows;
        let least = windows.inactivity_gap().saturating_add(windows.grace());
        let setup = resolve_store(
            &materialized,
            &store,
            input.serdes.keys.clone(),
            default_values,
            least,
        )
        .and_then(|setup| {
            let retention = Duration::from_millis(setup.retention as u64);
            let supplier: crate::Result<Arc<dyn SessionBytesStoreSupplier>> = if setup.persistent {
                Stores::persistent_session_store(store.as_str(), retention)
            } else {
                Stores::in_memory_session_store(store.as_str(), retention)
            };
            Ok((
                setup,
                supplier.map_err(|e| TopologyError::new(e.to_string()))?,
            ))
        });
        let (StoreSetup { keys, values, .. }, supplier) = match setup {
            Ok(setup) => setup,
            Err(error) => {
                state.borrow_mut().fail(error);
                return stand_in();
            }
        };
        let mut builder = SessionStoreBuilder::new(supplier, keys.clone(), values.clone());
        if !materialized.logging {
            builder = builder.with_logging_disabled();
        }
        if let Some(bytes) = materialized.cache_bytes {
            builder = builder.with_caching_enabled(bytes);
        }
        let name = store.clone();
        let table = add_aggregation_of(
            state,
            &input.node,
            "KSTREAM-SESSIONWINDOWAGGREGATE-",
            move || KStreamSessionWindowAggregate::new(&name, windows, step.clone(), merge.clone()),
            Aggregation {
                store: store.clone(),
                builder: Arc::new(builder) as Arc<dyn StoreBuilder>,
                keys: Arc::new(SessionWindowedSerde::new(keys)),
                values,
                getter: session_getter(&store),
            },
        );
        // A session may still grow for a gap after its end, and take late
        // records for its grace: final only after both (Kafka Streams'
        // `GraphGraceSearchUtil`).
        state.borrow_mut().window_graces.insert(
            table.node.clone(),
            windows.grace().saturating_add(windows.inactivity_gap()),
        );
        table
    }

    /// Counts records per session in the store `materialized` describes.
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            materialized,
            Some(Arc::new(I64Serde)),
            Arc::new(|_, _, count| count.unwrap_or(0) + 1),
            Arc::new(|_, count, other| count.unwrap_or(0) + other),
        )
    }

    /// Counts records per session (a RocksDB store, cached and logged, with
    /// a generated name).
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// Combines the values of each session with `reducer`; merging two
    /// sessions reduces their two results.
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let default_values = self.grouped.stream.serdes.values.clone();
        let reducer = Arc::new(reducer);
        let merger = reducer.clone();
        self.aggregate_with(
            materialized,
            default_values,
            Arc::new(move |_, value, agg| match agg {
                Some(agg) => reducer(&agg, value),
                None => value,
            }),
            Arc::new(move |_, agg, other| match agg {
                Some(agg) => merger(&agg, other),
                None => other,
            }),
        )
    }

    /// Folds each session's values into an aggregate that starts as
    /// `initializer()`; when a record bridges sessions, `merger` combines
    /// their aggregates (Kafka Streams' `Merger`).
    pub fn aggregate<VA: Data>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let initializer = Arc::new(initializer);
        let start = initializer.clone();
        self.aggregate_with(
            materialized,
            None,
            Arc::new(move |k, v, agg| aggregator(k, v, agg.unwrap_or_else(|| initializer()))),
            Arc::new(move |k, agg, other| merger(k, agg.unwrap_or_else(|| start()), other)),
        )
    }
}

impl<K: 'static, V: 'static> Materialized<K, V> {
    /// How long a windowed store keeps its windows (sessions: after they
    /// end); at least the windows' size plus their grace period, which is
    /// the default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Materialized};
    /// use streams_core::window::TimeWindows;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let minute = Duration::from_secs(60);
    /// clicks
    ///     .group_by_key()
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(minute)?)
    ///     .count_with(Materialized::named("clicks").with_retention(60 * minute));
    /// builder.build()?;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks
    ///     .group_by_key()
    ///     .windowed_by(TimeWindows::of_size_with_no_grace(minute)?)
    ///     .count_with(Materialized::named("clicks").with_retention(minute / 2));
    /// assert!(builder.build().is_err(), "shorter than a window");
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }
}
