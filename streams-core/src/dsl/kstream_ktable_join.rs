//! [`KStreamKTableJoin`]: a stream joined with a table's current values.

use std::sync::Arc;

use super::ktable::{Getter, ValueGetterSupplier};
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;

/// Joins a stream value with the table's value for its key (`None` when
/// the table has none); `None` from the joiner forwards nothing.
pub(crate) type StreamTableJoiner<V, VT, VR> =
    Arc<dyn Fn(&V, Option<&VT>) -> Option<VR> + Send + Sync>;

/// Joins each stream record with the table's current value for its key
/// (Kafka Streams' `KStreamKTableJoin`): an inner join drops records whose
/// key has no value in the table; a left join passes `None`.
pub(crate) struct KStreamKTableJoin<K, V, VT, VR> {
    getter: ValueGetterSupplier<K, VT>,
    lookup: Option<Getter<K, VT>>,
    joiner: StreamTableJoiner<V, VT, VR>,
    inner: bool,
}

impl<K, V, VT, VR> KStreamKTableJoin<K, V, VT, VR> {
    pub(crate) fn new(
        getter: ValueGetterSupplier<K, VT>,
        joiner: StreamTableJoiner<V, VT, VR>,
        inner: bool,
    ) -> Self {
        KStreamKTableJoin {
            getter,
            lookup: None,
            joiner,
            inner,
        }
    }
}

impl<K, V, VT, VR> Processor<K, V, K, VR> for KStreamKTableJoin<K, V, VT, VR>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VT: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessResult {
        self.lookup = Some((self.getter.make)(&ctx.lookup())?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessResult {
        let lookup = self.lookup.as_ref().expect("init makes the lookup");
        let other = lookup(&r.key)?;
        if self.inner && other.is_none() {
            return Ok(());
        }
        if let Some(value) = (self.joiner)(&r.value, other.as_ref()) {
            ctx.forward(r.with_value(value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::StringSerde;
    use crate::state::Stores;
    use crate::testing::TopologyTestDriver;
    use crate::{StreamsConfig, Topology};

    /// Stream `in` joined with the table kept in store `table` (fed from
    /// `table-in` by a plain writer), to `out`.
    fn driver(inner: bool) -> TopologyTestDriver {
        let joiner: StreamTableJoiner<String, String, String> =
            Arc::new(|v, t| Some(format!("{v}+{}", t.map_or("none", String::as_str))));
        let getter = ValueGetterSupplier::<String, String>::store("table");
        let mut topology = Topology::new();
        topology
            .add_source("table-source", StringSerde, StringSerde, &["table-in"])
            .and_then(|t| {
                t.add_processor(
                    "table-writer",
                    crate::dsl::test_support::store_writer::<String, String>("table"),
                    &["table-source"],
                )
            })
            .and_then(|t| {
                t.add_state_store(
                    Stores::key_value_store_builder(
                        Stores::in_memory_key_value_store("table"),
                        StringSerde,
                        StringSerde,
                    )
                    .with_logging_disabled(),
                    &["table-writer"],
                )
            })
            .and_then(|t| t.add_source("source", StringSerde, StringSerde, &["in"]))
            .and_then(|t| {
                t.add_processor(
                    "join",
                    move || KStreamKTableJoin::new(getter.clone(), joiner.clone(), inner),
                    &["source"],
                )
            })
            .and_then(|t| t.connect_processor_and_state_stores("join", &["table"]))
            .and_then(|t| t.add_sink("sink", "out", StringSerde, StringSerde, &["join"]))
            .unwrap();
        TopologyTestDriver::new(topology, StreamsConfig::new("test")).unwrap()
    }

    fn run(inner: bool) -> Vec<(String, String)> {
        let driver = driver(inner);
        let mut table = driver.create_input_topic("table-in", StringSerde, StringSerde);
        let mut stream = driver.create_input_topic("in", StringSerde, StringSerde);
        stream.pipe_input("k".into(), "early".into());
        table.pipe_input("k".into(), "t1".into());
        stream.pipe_input("k".into(), "a".into());
        table.pipe_input("k".into(), "t2".into());
        stream.pipe_input("k".into(), "b".into());
        stream.pipe_input("other".into(), "c".into());
        driver
            .create_output_topic("out", StringSerde, StringSerde)
            .read_key_values_to_list()
    }

    #[test]
    fn an_inner_join_takes_the_tables_value_at_the_time_and_drops_records_without_one() {
        assert_eq!(
            run(true),
            [("k".into(), "a+t1".into()), ("k".into(), "b+t2".into())]
        );
    }

    #[test]
    fn a_left_join_keeps_records_without_a_value_in_the_table() {
        assert_eq!(
            run(false),
            [
                ("k".into(), "early+none".into()),
                ("k".into(), "a+t1".into()),
                ("k".into(), "b+t2".into()),
                ("other".into(), "c+none".into()),
            ]
        );
    }
}
