//! `KStream`: an unbounded stream of records.

use std::collections::HashMap;
use std::sync::Arc;

use super::kstream_global_ktable_join::KStreamGlobalKTableJoin;
use super::kstream_kstream_join::stream_join;
use super::kstream_ktable_join::KStreamKTableJoin;
use super::ktable::{GlobalKTable, KTable};
use super::options::{Grouped, Named, Produced, Repartitioned, StreamJoined};
use super::{Data, FnProcessor, KGroupedStream, Serdes, Shared};
use crate::error::TopologyError;
use crate::processor::{ProcessorContext, ProcessorSupplier};
use crate::record::Record;
use crate::serde::SerdeRef;
use crate::topology::SinkTopic;
use crate::topology::{TopicName, TopicNameExtractor};
use crate::window::JoinWindows;

/// A stream of records, each independent of the others (Kafka Streams'
/// `KStream`). Operators return new streams; nothing runs until the
/// topology is built and started.
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::KStream;
///
/// let builder = StreamsBuilder::new();
/// let orders: KStream<String, i64> = builder.stream("orders");
/// let large = orders.filter(|_, amount| *amount >= 1_000);
/// large.to("large-orders");
/// large.map_values(|amount| amount / 100).to("large-orders-in-hundreds");
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct KStream<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    pub(crate) serdes: Serdes<K, V>,
    /// The key changed since the last partitioning: groupings and joins
    /// must repartition first.
    pub(crate) repartition_required: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            state: self.state.clone(),
            node: self.node.clone(),
            serdes: self.serdes.clone(),
            repartition_required: self.repartition_required,
        }
    }
}

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn source(
        state: Shared,
        topics: Vec<TopicName>,
        consumed: super::Consumed<K, V>,
    ) -> Self {
        let node = {
            let mut st = state.borrow_mut();
            let name = consumed
                .name
                .clone()
                .unwrap_or_else(|| st.next_name("KSTREAM-SOURCE-"));
            let result = st.topology.add_source_node(
                &name,
                topics,
                consumed.keys.clone(),
                consumed.values.clone(),
                consumed.extractor.clone(),
            );
            st.record(result);
            name
        };
        KStream {
            state,
            node,
            serdes: Serdes {
                keys: Some(consumed.keys),
                values: Some(consumed.values),
            },
            repartition_required: false,
        }
    }

    /// Adds a processor fed by `parents` and returns the stream it forms.
    pub(crate) fn add_node<KOut: Data, VOut: Data, S>(
        &self,
        prefix: &str,
        name: Option<Named>,
        parents: &[&str],
        supplier: S,
        key_changed: bool,
        serdes: Serdes<KOut, VOut>,
    ) -> KStream<KOut, VOut>
    where
        S: ProcessorSupplier<K, V, KOut, VOut>,
    {
        let mut st = self.state.borrow_mut();
        let name = name.map(|n| n.0).unwrap_or_else(|| st.next_name(prefix));
        let result = st
            .topology
            .add_processor(&name, supplier, parents)
            .map(|_| ());
        st.record(result);
        KStream {
            state: self.state.clone(),
            node: name,
            serdes,
            repartition_required: self.repartition_required || key_changed,
        }
    }

    fn add<KOut: Data, VOut: Data, S>(
        &self,
        prefix: &str,
        supplier: S,
        key_changed: bool,
        serdes: Serdes<KOut, VOut>,
    ) -> KStream<KOut, VOut>
    where
        S: ProcessorSupplier<K, V, KOut, VOut>,
    {
        self.add_node(prefix, None, &[&self.node], supplier, key_changed, serdes)
    }

    /// Keeps the records for which `predicate` holds.
    ///
    /// # Examples
    /// ```
    /// # use streams_core::{StreamsBuilder, dsl::{Consumed, Produced}, serde::{StringSerde, I64Serde}};
    /// let builder = StreamsBuilder::new();
    /// builder.stream_with(&["amounts"], Consumed::with(StringSerde, I64Serde))
    ///     .filter(|_, amount| *amount > 100)
    ///     .to_with("large-amounts", Produced::with(StringSerde, I64Serde));
    /// # builder.build().unwrap();
    /// ```
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        let predicate = Arc::new(predicate);
        self.add(
            "KSTREAM-FILTER-",
            move || {
                let predicate = predicate.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                        if predicate(&r.key, &r.value) {
                            ctx.forward(r)?;
                        }
                        Ok(())
                    },
                )
            },
            false,
            self.serdes.clone(),
        )
    }

    /// Keeps the records for which `predicate` does not hold.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let lines: KStream<String, String> = builder.stream("lines");
    /// lines.filter_not(|_, line| line.starts_with('#')).to("code");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("lines", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("code", StringSerde, StringSerde);
    /// input.pipe_input("main.rs".into(), "# a comment".into());
    /// input.pipe_input("main.rs".into(), "let x = 1;".into());
    /// assert_eq!(output.read_values_to_list(), ["let x = 1;"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn filter_not(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Replaces key and value; the stream must be repartitioned before a
    /// grouping or join.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Scores `player:points` keyed by game, rekeyed by player.
    /// let builder = StreamsBuilder::new();
    /// let scores: KStream<String, String> = builder.stream("scores");
    /// scores
    ///     .map(|_game, score| {
    ///         let (player, points) = score.split_once(':').unwrap_or((&score, "0"));
    ///         (player.to_owned(), points.parse::<i64>().unwrap_or(0))
    ///     })
    ///     .to("points-by-player");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("scores", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("points-by-player", StringSerde, I64Serde);
    /// input.pipe_input("chess".into(), "ann:12".into());
    /// assert_eq!(output.read_key_values_to_list(), [("ann".to_string(), 12)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map<K2: Data, V2: Data>(
        &self,
        mapper: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let mapper = Arc::new(mapper);
        self.add(
            "KSTREAM-MAP-",
            move || {
                let mapper = mapper.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>| {
                        let (key, value) = mapper(r.key, r.value);
                        ctx.forward(Record {
                            key,
                            value,
                            timestamp: r.timestamp,
                            headers: r.headers,
                        })?;
                        Ok(())
                    },
                )
            },
            true,
            self.serdes.retype(),
        )
    }

    /// Replaces each value, keeping the key (and the partitioning).
    ///
    /// # Examples
    /// ```
    /// # use streams_core::{StreamsBuilder, dsl::{Consumed, Produced}, serde::{StringSerde, U64Serde}};
    /// let builder = StreamsBuilder::new();
    /// builder.stream_with(&["lines"], Consumed::with(StringSerde, StringSerde))
    ///     .map_values(|line| line.len() as u64)
    ///     .to_with("lengths", Produced::with(StringSerde, U64Serde));
    /// # builder.build().unwrap();
    /// ```
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.map_values_with_key(move |_, v| mapper(v))
    }

    /// Replaces each value, given the key too.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let names: KStream<String, String> = builder.stream("names-by-language");
    /// names
    ///     .map_values_with_key(|language, name| match language.as_str() {
    ///         "fr" => format!("Bonjour {name}"),
    ///         _ => format!("Hello {name}"),
    ///     })
    ///     .to("greetings");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("names-by-language", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("greetings", StringSerde, StringSerde);
    /// input.pipe_input("fr".into(), "Ann".into());
    /// input.pipe_input("en".into(), "Bob".into());
    /// assert_eq!(output.read_values_to_list(), ["Bonjour Ann", "Hello Bob"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn map_values_with_key<V2: Data>(
        &self,
        mapper: impl Fn(&K, V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        let mapper = Arc::new(mapper);
        self.add(
            "KSTREAM-MAPVALUES-",
            move || {
                let mapper = mapper.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>| {
                        let value = mapper(&r.key, r.value);
                        ctx.forward(Record {
                            key: r.key,
                            value,
                            timestamp: r.timestamp,
                            headers: r.headers,
                        })?;
                        Ok(())
                    },
                )
            },
            false,
            self.serdes.retype(),
        )
    }

    /// Replaces each record with zero or more records.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // An order `pen,ink` keyed by its id becomes one record per item, keyed by the item;
    /// // an order without items, none.
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders
    ///     .flat_map(|id, items| {
    ///         let items = items.split(',').filter(|item| !item.is_empty());
    ///         items.map(|item| (item.to_owned(), id.clone())).collect::<Vec<_>>()
    ///     })
    ///     .to("orders-by-item");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("orders-by-item", StringSerde, StringSerde);
    /// input.pipe_input("o1".into(), "pen,ink".into());
    /// input.pipe_input("o2".into(), "".into());
    /// let by_item = output.read_key_values_to_list();
    /// assert_eq!(by_item, [("pen".into(), "o1".into()), ("ink".into(), "o1".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        mapper: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let mapper = Arc::new(mapper);
        self.add(
            "KSTREAM-FLATMAP-",
            move || {
                let mapper = mapper.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V2>| {
                        for (key, value) in mapper(r.key, r.value) {
                            ctx.forward(Record {
                                key,
                                value,
                                timestamp: r.timestamp,
                                headers: r.headers.clone(),
                            })?;
                        }
                        Ok(())
                    },
                )
            },
            true,
            self.serdes.retype(),
        )
    }

    /// Replaces each value with zero or more values, keeping the key.
    ///
    /// # Examples
    /// ```
    /// # use streams_core::{StreamsBuilder, dsl::Consumed, serde::{StringSerde, UnitSerde}};
    /// let builder = StreamsBuilder::new();
    /// let words = builder.stream_with(&["lines"], Consumed::with(UnitSerde, StringSerde))
    ///     .flat_map_values(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
    /// # drop(words); builder.build().unwrap();
    /// ```
    pub fn flat_map_values<V2: Data, I>(
        &self,
        mapper: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let mapper = Arc::new(mapper);
        self.add(
            "KSTREAM-FLATMAPVALUES-",
            move || {
                let mapper = mapper.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V2>| {
                        for value in mapper(r.value) {
                            ctx.forward(Record {
                                key: r.key.clone(),
                                value,
                                timestamp: r.timestamp,
                                headers: r.headers.clone(),
                            })?;
                        }
                        Ok(())
                    },
                )
            },
            false,
            self.serdes.retype(),
        )
    }

    /// Sets a new key computed from each record; the stream must be repartitioned before a
    /// grouping or join.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::{StringSerde, UnitSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let emails: KStream<(), String> = builder.stream("emails");
    /// emails
    ///     .select_key(|_, email| email.split('@').nth(1).unwrap_or_default().to_owned())
    ///     .to("emails-by-domain");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("emails", UnitSerde, StringSerde);
    /// let output = driver.create_output_topic("emails-by-domain", StringSerde, StringSerde);
    /// input.pipe_value("ann@example.com".into());
    /// assert_eq!(output.read_key_value(), ("example.com".into(), "ann@example.com".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn select_key<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let selector = Arc::new(selector);
        self.add(
            "KSTREAM-KEY-SELECT-",
            move || {
                let selector = selector.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K2, V>| {
                        let key = selector(&r.key, &r.value);
                        ctx.forward(r.with_key(key))?;
                        Ok(())
                    },
                )
            },
            true,
            self.serdes.retype(),
        )
    }

    /// Calls `action` on each record and passes it on unchanged.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let builder = StreamsBuilder::new();
    /// let events: KStream<String, String> = builder.stream("events");
    /// events.peek(move |key, _| log.lock().unwrap().push(key.clone())).to("events-copy");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("events", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("events-copy", StringSerde, StringSerde);
    /// input.pipe_input("login".into(), "ann".into());
    /// assert_eq!(*seen.lock().unwrap(), ["login"]);
    /// assert_eq!(output.read_key_value(), ("login".into(), "ann".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn peek(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let action = Arc::new(action);
        self.add(
            "KSTREAM-PEEK-",
            move || {
                let action = action.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                        action(&r.key, &r.value);
                        ctx.forward(r)?;
                        Ok(())
                    },
                )
            },
            false,
            self.serdes.clone(),
        )
    }

    /// Calls `action` on each record; the stream ends here.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let alerts = Arc::new(Mutex::new(Vec::new()));
    /// let sent = alerts.clone();
    /// let builder = StreamsBuilder::new();
    /// let errors: KStream<String, String> = builder.stream("errors");
    /// errors.foreach(move |host, error| sent.lock().unwrap().push(format!("{host}: {error}")));
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("errors", StringSerde, StringSerde);
    /// input.pipe_input("web-1".into(), "disk full".into());
    /// assert_eq!(*alerts.lock().unwrap(), ["web-1: disk full"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn foreach(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) {
        let action = Arc::new(action);
        let _: KStream<K, V> = self.add(
            "KSTREAM-FOREACH-",
            move || {
                let action = action.clone();
                FnProcessor::new(move |r: Record<K, V>, _: &mut ProcessorContext<'_, K, V>| {
                    action(&r.key, &r.value);
                    Ok(())
                })
            },
            false,
            self.serdes.clone(),
        );
    }

    /// Splits the stream into named branches: each record goes to the
    /// first branch whose predicate holds. Branch `b` of a split named `p`
    /// is returned under `p` + `b`.
    ///
    /// # Examples
    /// ```
    /// # use streams_core::{StreamsBuilder, dsl::{Consumed, Named}, serde::{StringSerde, I64Serde}};
    /// let builder = StreamsBuilder::new();
    /// let branches = builder.stream_with(&["amounts"], Consumed::with(StringSerde, I64Serde))
    ///     .split(Some(Named::new("amount-")))
    ///     .branch(|_, v| *v < 0, "negative")
    ///     .default_branch("other");
    /// assert!(branches.contains_key("amount-negative") && branches.contains_key("amount-other"));
    /// # drop(branches); builder.build().unwrap();
    /// ```
    pub fn split(&self, named: Option<Named>) -> BranchedKStream<K, V> {
        let prefix = match named {
            Some(Named(name)) => name,
            None => self.state.borrow_mut().next_name("KSTREAM-BRANCH-") + "-",
        };
        BranchedKStream {
            stream: self.clone(),
            prefix,
            branches: Vec::new(),
        }
    }

    /// One stream of the records of both.
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let eu: KStream<String, String> = builder.stream("orders-eu");
    /// let us: KStream<String, String> = builder.stream("orders-us");
    /// eu.merge(&us).to("orders");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut eu_input = driver.create_input_topic("orders-eu", StringSerde, StringSerde);
    /// let mut us_input = driver.create_input_topic("orders-us", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("orders", StringSerde, StringSerde);
    /// eu_input.pipe_input("o1".into(), "pen".into());
    /// us_input.pipe_input("o2".into(), "ink".into());
    /// assert_eq!(output.read_values_to_list(), ["pen", "ink"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let merged = self.add_node(
            "KSTREAM-MERGE-",
            None,
            &[&self.node, &other.node],
            || {
                FnProcessor::new(|r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                    Ok(ctx.forward(r)?)
                })
            },
            other.repartition_required,
            self.serdes.clone(),
        );
        KStream {
            repartition_required: self.repartition_required || other.repartition_required,
            ..merged
        }
    }

    /// Writes the stream to `topic`, with the serdes known from upstream
    /// (a source's, a table's) or the types' defaults. A table's stream of
    /// changes writes its deletes as tombstones. After an operation that
    /// changes the key or value type, the new type's default is used, as
    /// Kafka Streams falls back to its default serdes: a stream read as JSON
    /// and mapped to `i64` writes 8-byte big-endian numbers, not JSON; give
    /// other serdes with [`KStream::to_with`].
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.map_values(|w| w.len() as i64).to("lengths");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to(&self, topic: &str) {
        let produced = self.produced("to()");
        self.to_with(topic, produced);
    }

    /// The serdes [`KStream::to`] writes with.
    fn produced(&self, operation: &str) -> Produced<K, V> {
        let mut st = self.state.borrow_mut();
        Produced {
            keys: st.serde_or_fail(self.serdes.keys.clone(), operation),
            values: st.serde_or_fail(self.serdes.values.clone(), operation),
            partitioner: None,
            name: None,
        }
    }

    /// Writes the stream to `topic` as `produced` says.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{KStream, Produced};
    /// use streams_core::serde::{I32Serde, StringSerde};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<String, String> = builder.stream("words");
    /// words
    ///     .map_values(|w| w.len() as i32)
    ///     .to_with("lengths", Produced::with(StringSerde, I32Serde).with_name("lengths-sink"));
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_with(&self, topic: &str, produced: Produced<K, V>) {
        self.add_sink(
            SinkTopic::Fixed(TopicName::External(topic.to_owned())),
            produced,
        );
    }

    /// Writes each record to the topic `extractor` picks for it.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Produced};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let events: KStream<String, String> = builder.stream("events");
    /// let produced = Produced::with(StringSerde, StringSerde);
    /// events.to_dynamic(|kind, _| format!("events-{kind}"), produced);
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("events", StringSerde, StringSerde);
    /// input.pipe_input("click".into(), "ann".into());
    /// input.pipe_input("view".into(), "bob".into());
    /// let clicks = driver.create_output_topic("events-click", StringSerde, StringSerde);
    /// let views = driver.create_output_topic("events-view", StringSerde, StringSerde);
    /// assert_eq!(clicks.read_values_to_list(), ["ann"]);
    /// assert_eq!(views.read_values_to_list(), ["bob"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn to_dynamic(
        &self,
        extractor: impl Fn(&K, &V) -> String + Send + Sync + 'static,
        produced: Produced<K, V>,
    ) {
        let extractor: TopicNameExtractor<K, V> = Arc::new(extractor);
        self.add_sink(SinkTopic::Dynamic(extractor), produced);
    }

    fn add_sink(&self, topic: SinkTopic<K, V>, produced: Produced<K, V>) {
        let mut st = self.state.borrow_mut();
        let name = produced
            .name
            .clone()
            .unwrap_or_else(|| st.next_name("KSTREAM-SINK-"));
        let result = st.topology.add_sink_node(
            &name,
            topic,
            produced.keys,
            produced.values,
            produced.partitioner,
            &[&self.node],
        );
        st.record(result);
    }

    /// Sends the stream through an internal topic `<application.id>-<name>-repartition`,
    /// so records are partitioned by their current key.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Repartitioned};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Orders `customer:item` keyed by order id, partitioned by customer.
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders
    ///     .select_key(|_, order| order.split(':').next().unwrap_or_default().to_owned())
    ///     .repartition(Repartitioned::with(StringSerde, StringSerde).with_name("by-customer"))
    ///     .to("orders-by-customer");
    /// let topology = builder.build()?;
    /// assert_eq!(topology.describe().subtopologies.len(), 2);
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("shop"))?;
    /// let mut input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("orders-by-customer", StringSerde, StringSerde);
    /// input.pipe_input("o1".into(), "ann:pen".into());
    /// assert_eq!(output.read_key_value(), ("ann".into(), "ann:pen".into()));
    /// assert!(driver.produced_topic_names().contains(&"shop-by-customer-repartition".into()));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let keys = repartitioned.keys.or_else(|| self.serdes.keys.clone());
        let values = repartitioned.values.or_else(|| self.serdes.values.clone());
        let base = match repartitioned.name {
            Some(name) => name,
            None => self.state.borrow_mut().next_name("KSTREAM-REPARTITION-"),
        };
        self.through_repartition_topic(
            &base,
            keys,
            values,
            repartitioned.partitions,
            "repartition()",
        )
    }

    /// Adds the sink to and source from `<base>-repartition`.
    pub(crate) fn through_repartition_topic(
        &self,
        base: &str,
        keys: Option<SerdeRef<K>>,
        values: Option<SerdeRef<V>>,
        partitions: Option<i32>,
        operation: &str,
    ) -> KStream<K, V> {
        let mut st = self.state.borrow_mut();
        let (Some(keys), Some(values)) = (keys, values) else {
            st.fail(TopologyError::new(format!(
                "{operation} after a key change needs a key serde and a value serde for its repartition topic \
                 `{base}-repartition`: give them with Grouped::with or Repartitioned::with"
            )));
            return self.clone();
        };
        let topic = format!("{base}-repartition");
        let sink = st.next_name("KSTREAM-SINK-");
        let source = st.next_name("KSTREAM-SOURCE-");
        let added = st
            .topology
            .add_repartition_topic(&topic, partitions)
            .and_then(|()| {
                st.topology.add_sink_node(
                    &sink,
                    SinkTopic::Fixed(TopicName::Internal(topic.clone())),
                    keys.clone(),
                    values.clone(),
                    None,
                    &[&self.node],
                )?;
                st.topology.add_source_node(
                    &source,
                    vec![TopicName::Internal(topic.clone())],
                    keys.clone(),
                    values.clone(),
                    None,
                )
            });
        st.record(added);
        KStream {
            state: self.state.clone(),
            node: source,
            serdes: Serdes {
                keys: Some(keys),
                values: Some(values),
            },
            repartition_required: false,
        }
    }

    /// Runs a Processor API processor on the stream, connected to `stores`
    /// (added with [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)).
    ///
    /// ```
    /// use streams_core::dsl::KStream;
    /// use streams_core::processor::{ProcessResult, Processor, ProcessorContext};
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{Record, StreamsBuilder, StreamsConfig};
    ///
    /// /// Forwards each value's length, dropping empty values.
    /// struct Lengths;
    ///
    /// impl Processor<String, String, String, i64> for Lengths {
    ///     fn process(
    ///         &mut self,
    ///         record: Record<String, String>,
    ///         ctx: &mut ProcessorContext<'_, String, i64>,
    ///     ) -> ProcessResult {
    ///         if !record.value.is_empty() {
    ///             let length = record.value.len() as i64;
    ///             ctx.forward(record.with_value(length))?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<String, String> = builder.stream("words");
    /// words.process(|| Lengths, &[]).to("lengths");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("words", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("lengths", StringSerde, I64Serde);
    /// input.pipe_input("a".into(), "four".into());
    /// input.pipe_input("b".into(), "".into());
    /// assert_eq!(output.read_key_values_to_list(), [("a".to_string(), 4)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn process<KOut: Data, VOut: Data, S>(
        &self,
        supplier: S,
        stores: &[&str],
    ) -> KStream<KOut, VOut>
    where
        S: ProcessorSupplier<K, V, KOut, VOut>,
    {
        let stream = self.add("KSTREAM-PROCESSOR-", supplier, true, self.serdes.retype());
        let mut st = self.state.borrow_mut();
        let result = st
            .topology
            .connect_processor_and_state_stores(&stream.node, stores)
            .map(|_| ());
        st.record(result);
        drop(st);
        stream
    }

    /// Groups by the current key, for aggregations, with the serdes known
    /// from upstream or the types' defaults.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks.group_by_key().count().to_stream().to("clicks-per-user");
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by_key(&self) -> KGroupedStream<K, V> {
        self.group_by_key_with(Grouped::default())
    }

    /// Groups by the current key, with the serdes and name of `grouped`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::StringSerde;
    ///
    /// let builder = StreamsBuilder::new();
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks.group_by_key_with(Grouped::with(StringSerde, StringSerde)).count();
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by_key_with(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self, grouped)
    }

    /// Groups by a new key that `selector` computes from each record's key
    /// and value (a repartition follows), as Kafka Streams' `groupBy`.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::KStream;
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by(|_, w| w).count();
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by<K2: Data>(
        &self,
        selector: impl Fn(K, V) -> K2 + Send + Sync + 'static,
    ) -> KGroupedStream<K2, V> {
        self.group_by_with(selector, Grouped::default())
    }

    /// [`KStream::group_by`] with the serdes and name of `grouped` for the
    /// repartition topic.
    ///
    /// ```
    /// use streams_core::StreamsBuilder;
    /// use streams_core::dsl::{Grouped, KStream};
    /// use streams_core::serde::{StringSerde, UnitSerde};
    ///
    /// let builder = StreamsBuilder::new();
    /// let words: KStream<(), String> = builder.stream("words");
    /// words.group_by_with(|_, w| w, Grouped::with(StringSerde, StringSerde).with_name("by-word")).count();
    /// builder.build()?;
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn group_by_with<K2: Data>(
        &self,
        selector: impl Fn(K, V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        // The selector takes its arguments by value, as Kafka Streams'
        // lambdas do (`|_, w| w`): a clone of each, the value being kept.
        self.select_key(move |k, v| selector(k.clone(), v.clone()))
            .group_by_key_with(grouped)
    }

    /// The stream as it must be before a join: repartitioned if its key changed.
    fn join_input(&self, operation: &str) -> KStream<K, V> {
        if !self.repartition_required {
            return self.clone();
        }
        let base = self.state.borrow_mut().next_name("KSTREAM-JOIN-");
        self.through_repartition_topic(
            &base,
            self.serdes.keys.clone(),
            self.serdes.values.clone(),
            None,
            operation,
        )
    }

    fn table_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        inner: bool,
        joiner: Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>,
    ) -> KStream<K, VR> {
        let stream = self.join_input(if inner { "join()" } else { "left_join()" });
        let getter = table.getter.clone();
        let prefix = if inner {
            "KSTREAM-JOIN-"
        } else {
            "KSTREAM-LEFTJOIN-"
        };
        let joined = stream.add(
            prefix,
            move || KStreamKTableJoin::new(getter.clone(), joiner.clone(), inner),
            false,
            stream.serdes.retype(),
        );
        let mut st = self.state.borrow_mut();
        let stores: Vec<&str> = table.getter.stores.iter().map(String::as_str).collect();
        let result = st
            .topology
            .connect_processor_and_state_stores(&joined.node, &stores)
            .map(|_| ());
        st.record(result);
        drop(st);
        joined
    }

    /// Joins each record with the table's value for its key; records whose
    /// key has no value in the table are dropped. The stream and the
    /// table's topic must be co-partitioned.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, KStream, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table(
    ///     "users",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("users").in_memory(),
    /// );
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks.join(&users, |page, user| format!("{user} viewed {page}")).to("named-clicks");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut user_input = driver.create_input_topic("users", StringSerde, StringSerde);
    /// let mut click_input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("named-clicks", StringSerde, StringSerde);
    /// click_input.pipe_input("u1".into(), "/home".into()); // no user u1 yet
    /// user_input.pipe_input("u1".into(), "ann".into());
    /// click_input.pipe_input("u1".into(), "/cart".into());
    /// assert_eq!(output.read_values_to_list(), ["ann viewed /cart"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(
            table,
            true,
            Arc::new(move |v, t: Option<&VT>| t.map(|t| joiner(v, t))),
        )
    }

    /// Joins each record with the table's value for its key, or `None`
    /// when the table has none yet.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, KStream, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let users = builder.table(
    ///     "users",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("users").in_memory(),
    /// );
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// clicks
    ///     .left_join(&users, |page, user| {
    ///         format!("{} viewed {page}", user.map_or("someone", String::as_str))
    ///     })
    ///     .to("named-clicks");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut user_input = driver.create_input_topic("users", StringSerde, StringSerde);
    /// let mut click_input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("named-clicks", StringSerde, StringSerde);
    /// click_input.pipe_input("u1".into(), "/home".into()); // no user u1 yet
    /// user_input.pipe_input("u1".into(), "ann".into());
    /// click_input.pipe_input("u1".into(), "/cart".into());
    /// assert_eq!(output.read_values_to_list(), ["someone viewed /home", "ann viewed /cart"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.table_join(table, false, Arc::new(move |v, t| Some(joiner(v, t))))
    }

    /// Joins each record with every record of `other` with the same key
    /// whose timestamp is within `windows` (from `before` earlier to
    /// `after` later), in either order of arrival, as Kafka Streams'
    /// `KStream#join(KStream, ValueJoiner, JoinWindows)`. Each result has
    /// the later of the two timestamps. Records without a match are
    /// dropped, as are records with a null key or value (for types that
    /// have one) and records that come after their window has closed
    /// (`after` plus the grace period behind the stream time; counted as
    /// dropped). Both streams must be co-partitioned: one whose key changed
    /// is repartitioned first. Each side's records are kept for the window
    /// and its grace in a RocksDB window store (see [`StreamJoined`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Ad impressions and clicks, keyed by ad: clicks within 10 s of an impression.
    /// let builder = StreamsBuilder::new();
    /// let impressions: KStream<String, String> = builder.stream("impressions");
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10))?;
    /// impressions
    ///     .join_stream(&clicks, |shown, clicked| format!("{shown}/{clicked}"), windows)
    ///     .to("clicked-impressions");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut impression_input = driver.create_input_topic("impressions", StringSerde, StringSerde);
    /// let mut click_input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("clicked-impressions", StringSerde, StringSerde);
    /// impression_input.pipe_input_at("ad1".into(), "shown".into(), 1_000);
    /// click_input.pipe_input_at("ad1".into(), "clicked".into(), 4_000);
    /// click_input.pipe_input_at("ad1".into(), "clicked again".into(), 30_000); // too late
    /// let joined = output.read_records_to_list();
    /// assert_eq!(joined.len(), 1);
    /// assert_eq!((joined[0].value.as_str(), joined[0].timestamp), ("shown/clicked", 4_000));
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_stream<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        self.join_stream_with(other, joiner, windows, StreamJoined::default())
    }

    /// [`KStream::join_stream`] with the serdes, stores and names of
    /// `joined`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Order totals and payments, keyed by order: the amount still due.
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, i64> = builder.stream("orders");
    /// let payments: KStream<String, i64> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(60))?;
    /// let joined = StreamJoined::with(StringSerde, I64Serde, I64Serde).with_store_name("due").in_memory();
    /// orders
    ///     .join_stream_with(&payments, |total, paid| total - paid, windows, joined)
    ///     .to("due");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut order_input = driver.create_input_topic("orders", StringSerde, I64Serde);
    /// let mut payment_input = driver.create_input_topic("payments", StringSerde, I64Serde);
    /// let output = driver.create_output_topic("due", StringSerde, I64Serde);
    /// order_input.pipe_input_at("o1".into(), 100, 0);
    /// payment_input.pipe_input_at("o1".into(), 60, 5_000);
    /// payment_input.pipe_input_at("o1".into(), 40, 6_000); // every payment joins the order
    /// assert_eq!(output.read_values_to_list(), [40, 60]);
    /// let store = driver.window_store::<String, i64>("due-this-join-store")?;
    /// assert_eq!(store.fetch_range(&"o1".into(), 0, 0)?, [(0, 100)]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_stream_with<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        let joiner = move |this: Option<&V>, that: Option<&VO>| match (this, that) {
            (Some(this), Some(that)) => joiner(this, that),
            _ => unreachable!("an inner join joins two records"),
        };
        stream_join(
            self,
            other,
            windows,
            joined,
            (false, false),
            Arc::new(joiner),
        )
    }

    /// As [`KStream::join_stream`], and each record of this stream that
    /// finds no match in its window is joined with `None`, once the window
    /// (and its grace period) has closed: Kafka Streams'
    /// `KStream#leftJoin(KStream, ValueJoiner, JoinWindows)`, which does
    /// not emit such results eagerly. They wait in a shared store and come
    /// out, in time order, when a later record advances stream time. A
    /// record with a null key (for key types that have one) is joined with
    /// `None` at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let impressions: KStream<String, String> = builder.stream("impressions");
    /// let clicks: KStream<String, String> = builder.stream("clicks");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10))?;
    /// impressions
    ///     .left_join_stream(&clicks, |ad, click| format!("{ad}: {}", click.map_or("-", String::as_str)), windows)
    ///     .to("impression-results");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut impression_input = driver.create_input_topic("impressions", StringSerde, StringSerde);
    /// let mut click_input = driver.create_input_topic("clicks", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("impression-results", StringSerde, StringSerde);
    /// impression_input.pipe_input_at("u1".into(), "ad1".into(), 0);
    /// impression_input.pipe_input_at("u2".into(), "ad2".into(), 1_000);
    /// click_input.pipe_input_at("u2".into(), "click".into(), 2_000);
    /// assert_eq!(output.read_values_to_list(), ["ad2: click"]); // ad1 may still be clicked
    /// impression_input.pipe_input_at("u3".into(), "ad3".into(), 20_000); // ad1's window closes
    /// assert_eq!(output.read_values_to_list(), ["ad1: -"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_stream<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        self.left_join_stream_with(other, joiner, windows, StreamJoined::default())
    }

    /// [`KStream::left_join_stream`] with the serdes, stores and names of
    /// `joined`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let payments: KStream<String, String> = builder.stream("payments");
    /// let windows = JoinWindows::of_time_difference_and_grace(
    ///     Duration::from_secs(60),
    ///     Duration::from_secs(30),
    /// )?;
    /// orders
    ///     .left_join_stream_with(
    ///         &payments,
    ///         |order, payment| format!("{order}: {}", payment.map_or("unpaid", String::as_str)),
    ///         windows,
    ///         StreamJoined::named("payments").in_memory(),
    ///     )
    ///     .to("order-status");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut order_input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("order-status", StringSerde, StringSerde);
    /// order_input.pipe_input_at("o1".into(), "pen".into(), 0);
    /// order_input.pipe_input_at("o2".into(), "ink".into(), 90_000); // within o1's grace
    /// assert!(output.is_empty());
    /// order_input.pipe_input_at("o3".into(), "pad".into(), 90_001); // past it
    /// assert_eq!(output.read_values_to_list(), ["pen: unpaid"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_stream_with<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        let joiner = move |this: Option<&V>, that: Option<&VO>| match this {
            Some(this) => joiner(this, that),
            None => unreachable!("a left join always has the left record"),
        };
        stream_join(
            self,
            other,
            windows,
            joined,
            (true, false),
            Arc::new(joiner),
        )
    }

    /// As [`KStream::left_join_stream`], for the records of both streams:
    /// a record of either that finds no match in its window is joined with
    /// `None` for the other side once its window has closed (Kafka Streams'
    /// `KStream#outerJoin(KStream, ValueJoiner, JoinWindows)`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::KStream;
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Sensor readings from two probes, keyed by room: pairs, or a probe alone.
    /// let builder = StreamsBuilder::new();
    /// let north: KStream<String, String> = builder.stream("north");
    /// let south: KStream<String, String> = builder.stream("south");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(5))?;
    /// let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "?".into());
    /// north
    ///     .outer_join_stream(&south, move |n, s| format!("{}|{}", show(n), show(s)), windows)
    ///     .to("readings");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut north_input = driver.create_input_topic("north", StringSerde, StringSerde);
    /// let mut south_input = driver.create_input_topic("south", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("readings", StringSerde, StringSerde);
    /// north_input.pipe_input_at("hall".into(), "20C".into(), 0);
    /// south_input.pipe_input_at("hall".into(), "21C".into(), 2_000);
    /// south_input.pipe_input_at("attic".into(), "30C".into(), 3_000);
    /// north_input.pipe_input_at("cellar".into(), "12C".into(), 10_000); // attic's window closes
    /// assert_eq!(output.read_values_to_list(), ["20C|21C", "?|30C"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join_stream<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
    ) -> KStream<K, VR> {
        self.outer_join_stream_with(other, joiner, windows, StreamJoined::default())
    }

    /// [`KStream::outer_join_stream`] with the serdes, stores and names of
    /// `joined`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use streams_core::dsl::{KStream, StreamJoined};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::window::JoinWindows;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let north: KStream<String, String> = builder.stream("north");
    /// let south: KStream<String, String> = builder.stream("south");
    /// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(5))?;
    /// let joined = StreamJoined::with(StringSerde, StringSerde, StringSerde)
    ///     .with_store_name("probes")
    ///     .with_name("pair-probes");
    /// north
    ///     .outer_join_stream_with(&south, |n, s| format!("{n:?}|{s:?}"), windows, joined)
    ///     .to("readings");
    /// let topology = builder.build()?;
    /// assert!(topology.store_builder("probes-outer-shared-join-store").is_some());
    /// let driver = TopologyTestDriver::new(topology, StreamsConfig::new("app"))?;
    /// let mut south_input = driver.create_input_topic("south", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("readings", StringSerde, StringSerde);
    /// south_input.pipe_input_at("attic".into(), "30C".into(), 0);
    /// south_input.pipe_input_at("attic".into(), "31C".into(), 6_000);
    /// assert_eq!(output.read_values_to_list(), [r#"None|Some("30C")"#]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn outer_join_stream_with<VO: Data, VR: Data>(
        &self,
        other: &KStream<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, VO>,
    ) -> KStream<K, VR> {
        stream_join(self, other, windows, joined, (true, true), Arc::new(joiner))
    }

    fn global_join<GK: Data, GV: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        inner: bool,
        key_mapper: Arc<dyn Fn(&K, &V) -> GK + Send + Sync>,
        joiner: Arc<dyn Fn(&V, Option<&GV>) -> VR + Send + Sync>,
    ) -> KStream<K, VR> {
        let store = table.store.clone();
        let prefix = if inner {
            "KSTREAM-JOIN-"
        } else {
            "KSTREAM-LEFTJOIN-"
        };
        self.add(
            prefix,
            move || KStreamGlobalKTableJoin::new(&store, key_mapper.clone(), joiner.clone(), inner),
            false,
            self.serdes.retype(),
        )
    }

    /// Joins each record with the global table's value for the key that
    /// `key_mapper` computes; no co-partitioning needed. Records without a
    /// match are dropped.
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, KStream, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Orders keyed by order id, with the id of the product ordered as value.
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table(
    ///     "products",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("products").in_memory(),
    /// );
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders
    ///     .join_global(&products, |_, product| product.clone(), |id, name| format!("{id}={name}"))
    ///     .to("order-details");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut product_input = driver.create_input_topic("products", StringSerde, StringSerde);
    /// let mut order_input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("order-details", StringSerde, StringSerde);
    /// product_input.pipe_input("p1".into(), "pen".into());
    /// order_input.pipe_input("o1".into(), "p1".into());
    /// order_input.pipe_input("o2".into(), "p9".into()); // no such product
    /// assert_eq!(output.read_key_values_to_list(), [("o1".into(), "p1=pen".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn join_global<GK: Data, GV: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_mapper: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, &GV) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        let joiner =
            Arc::new(move |v: &V, g: Option<&GV>| joiner(v, g.expect("inner join has a match")));
        self.global_join(table, true, Arc::new(key_mapper), joiner)
    }

    /// As [`join_global`](Self::join_global), keeping records without a match (`None`).
    ///
    /// ```
    /// use streams_core::dsl::{Consumed, KStream, Materialized};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// // Orders keyed by order id, with the id of the product ordered as value.
    /// let builder = StreamsBuilder::new();
    /// let products = builder.global_table(
    ///     "products",
    ///     Consumed::with(StringSerde, StringSerde),
    ///     Materialized::named("products").in_memory(),
    /// );
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// orders
    ///     .left_join_global(
    ///         &products,
    ///         |_, product_id| product_id.clone(),
    ///         |id, name| format!("{id}={}", name.map_or("unknown", String::as_str)),
    ///     )
    ///     .to("order-details");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut product_input = driver.create_input_topic("products", StringSerde, StringSerde);
    /// let mut order_input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// let output = driver.create_output_topic("order-details", StringSerde, StringSerde);
    /// product_input.pipe_input("p1".into(), "pen".into());
    /// order_input.pipe_input("o1".into(), "p1".into());
    /// order_input.pipe_input("o2".into(), "p9".into()); // no such product
    /// assert_eq!(output.read_values_to_list(), ["p1=pen", "p9=unknown"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn left_join_global<GK: Data, GV: Data, VR: Data>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_mapper: impl Fn(&K, &V) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&GV>) -> VR + Send + Sync + 'static,
    ) -> KStream<K, VR> {
        self.global_join(table, false, Arc::new(key_mapper), Arc::new(joiner))
    }
}

/// A stream being split into branches; see [`KStream::split`].
///
/// ```
/// use streams_core::StreamsBuilder;
/// use streams_core::dsl::{KStream, Named};
///
/// let builder = StreamsBuilder::new();
/// let logs: KStream<String, String> = builder.stream("logs");
/// let by_level = logs
///     .split(Some(Named::new("logs-")))
///     .branch(|_, line| line.starts_with("ERROR"), "errors")
///     .branch(|_, line| line.starts_with("WARN"), "warnings")
///     .no_default_branch();
/// by_level["logs-errors"].to("errors");
/// by_level["logs-warnings"].to("warnings");
/// builder.build()?;
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    prefix: String,
    branches: Vec<(String, Predicate<K, V>)>,
}

impl<K: Data, V: Data> BranchedKStream<K, V> {
    /// Adds a branch named `name` for records matching `predicate` (and no
    /// earlier branch).
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Named};
    /// use streams_core::serde::{I64Serde, StringSerde};
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let amounts: KStream<String, i64> = builder.stream("amounts");
    /// let branches = amounts
    ///     .split(Some(Named::new("amount-")))
    ///     .branch(|_, v| *v < 0, "negative")
    ///     .branch(|_, v| *v < 100, "small") // not the negative ones: they matched first
    ///     .default_branch("large");
    /// branches["amount-negative"].to("refunds");
    /// branches["amount-small"].to("small-payments");
    /// branches["amount-large"].to("large-payments");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("amounts", StringSerde, I64Serde);
    /// input.pipe_key_value_list([("a".into(), -5), ("b".into(), 50), ("c".into(), 500)]);
    /// let read = |topic: &str| {
    ///     driver.create_output_topic(topic, StringSerde, I64Serde).read_values_to_list()
    /// };
    /// assert_eq!(read("refunds"), [-5]);
    /// assert_eq!(read("small-payments"), [50]);
    /// assert_eq!(read("large-payments"), [500]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn branch(
        mut self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        name: &str,
    ) -> Self {
        self.branches
            .push((format!("{}{name}", self.prefix), Arc::new(predicate)));
        self
    }

    /// Ends the split: records matching no branch go to branch `name`.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Named};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let branches = orders
    ///     .split(Some(Named::new("orders-")))
    ///     .branch(|country, _| country == "fr", "fr")
    ///     .default_branch("other");
    /// branches["orders-fr"].to("orders-fr");
    /// branches["orders-other"].to("orders-elsewhere");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// input.pipe_input("fr".into(), "pen".into());
    /// input.pipe_input("de".into(), "ink".into());
    /// let elsewhere = driver.create_output_topic("orders-elsewhere", StringSerde, StringSerde);
    /// assert_eq!(elsewhere.read_key_values_to_list(), [("de".into(), "ink".into())]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn default_branch(mut self, name: &str) -> HashMap<String, KStream<K, V>> {
        self.branches.push((
            format!("{}{name}", self.prefix),
            Arc::new(|_: &K, _: &V| true),
        ));
        self.finish()
    }

    /// Ends the split: records matching no branch are dropped.
    ///
    /// ```
    /// use streams_core::dsl::{KStream, Named};
    /// use streams_core::serde::StringSerde;
    /// use streams_core::testing::TopologyTestDriver;
    /// use streams_core::{StreamsBuilder, StreamsConfig};
    ///
    /// let builder = StreamsBuilder::new();
    /// let orders: KStream<String, String> = builder.stream("orders");
    /// let branches = orders
    ///     .split(Some(Named::new("orders-")))
    ///     .branch(|country, _| country == "fr", "fr")
    ///     .no_default_branch();
    /// assert_eq!(branches.len(), 1);
    /// branches["orders-fr"].to("orders-fr");
    /// let driver = TopologyTestDriver::new(builder.build()?, StreamsConfig::new("app"))?;
    /// let mut input = driver.create_input_topic("orders", StringSerde, StringSerde);
    /// input.pipe_input("fr".into(), "pen".into());
    /// input.pipe_input("de".into(), "ink".into()); // dropped
    /// let fr = driver.create_output_topic("orders-fr", StringSerde, StringSerde);
    /// assert_eq!(fr.read_values_to_list(), ["pen"]);
    /// # Ok::<(), streams_core::StreamsError>(())
    /// ```
    pub fn no_default_branch(self) -> HashMap<String, KStream<K, V>> {
        self.finish()
    }

    fn finish(self) -> HashMap<String, KStream<K, V>> {
        let branches: Arc<Vec<(String, Predicate<K, V>)>> = Arc::new(self.branches);
        let splitter_branches = branches.clone();
        let splitter = self.stream.add_node(
            "KSTREAM-BRANCH-",
            None,
            &[&self.stream.node],
            move || {
                let branches = splitter_branches.clone();
                FnProcessor::new(
                    move |r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                        if let Some((name, _)) = branches.iter().find(|(_, p)| p(&r.key, &r.value))
                        {
                            ctx.forward_to(name, r)?;
                        }
                        Ok(())
                    },
                )
            },
            false,
            self.stream.serdes.clone(),
        );
        branches
            .iter()
            .map(|(name, _)| {
                let branch = splitter.add_node(
                    "KSTREAM-BRANCHCHILD-",
                    Some(Named(name.clone())),
                    &[&splitter.node],
                    || {
                        FnProcessor::new(|r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, V>| {
                            Ok(ctx.forward(r)?)
                        })
                    },
                    false,
                    splitter.serdes.clone(),
                );
                (name.clone(), branch)
            })
            .collect()
    }
}
