//! [`KStreamGlobalKTableJoin`]: a stream joined with a global table by any
//! key.

use std::sync::Arc;

use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::state::KeyValueStoreHandle;

/// Picks the global table's key for a stream record.
pub(crate) type KeyMapper<K, V, GK> = Arc<dyn Fn(&K, &V) -> GK + Send + Sync>;

/// Joins a stream value with the global table's value (`None` when it has
/// none).
pub(crate) type GlobalJoiner<V, GV, VR> = Arc<dyn Fn(&V, Option<&GV>) -> VR + Send + Sync>;

/// Joins each stream record with the global table's value for the key
/// `key_mapper` picks (Kafka Streams' `KStreamGlobalKTableJoin`): an inner
/// join drops records without a match; a left join passes `None`.
pub(crate) struct KStreamGlobalKTableJoin<K, V, GK, GV, VR> {
    store: String,
    handle: Option<KeyValueStoreHandle<GK, GV>>,
    key_mapper: KeyMapper<K, V, GK>,
    joiner: GlobalJoiner<V, GV, VR>,
    inner: bool,
}

impl<K, V, GK, GV, VR> KStreamGlobalKTableJoin<K, V, GK, GV, VR> {
    pub(crate) fn new(
        store: &str,
        key_mapper: KeyMapper<K, V, GK>,
        joiner: GlobalJoiner<V, GV, VR>,
        inner: bool,
    ) -> Self {
        KStreamGlobalKTableJoin {
            store: store.to_owned(),
            handle: None,
            key_mapper,
            joiner,
            inner,
        }
    }
}

impl<K, V, GK, GV, VR> Processor<K, V, K, VR> for KStreamGlobalKTableJoin<K, V, GK, GV, VR>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    GK: Send + 'static,
    GV: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessResult {
        self.handle = Some(ctx.key_value_store(&self.store)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, K, VR>) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let other = handle.get(&(self.key_mapper)(&r.key, &r.value))?;
        if self.inner && other.is_none() {
            return Ok(());
        }
        let value = (self.joiner)(&r.value, other.as_ref());
        ctx.forward(r.with_value(value))?;
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

    fn run(inner: bool) -> Vec<(String, String)> {
        // Stream values name the global key: "<product>:<amount>".
        let mapper: KeyMapper<String, String, String> =
            Arc::new(|_, v| v.split(':').next().unwrap_or_default().to_owned());
        let joiner: GlobalJoiner<String, String, String> =
            Arc::new(|v, g| format!("{v}@{}", g.map_or("?", String::as_str)));
        let mut topology = Topology::new();
        topology
            .add_global_store(
                Stores::key_value_store_builder(
                    Stores::in_memory_key_value_store("products"),
                    StringSerde,
                    StringSerde,
                )
                .with_logging_disabled(),
                "products-source",
                StringSerde,
                StringSerde,
                "products",
                "products-writer",
                crate::dsl::test_support::store_writer::<String, String>("products"),
            )
            .and_then(|t| t.add_source("source", StringSerde, StringSerde, &["orders"]))
            .and_then(|t| {
                t.add_processor(
                    "join",
                    move || {
                        KStreamGlobalKTableJoin::new(
                            "products",
                            mapper.clone(),
                            joiner.clone(),
                            inner,
                        )
                    },
                    &["source"],
                )
            })
            .and_then(|t| t.add_sink("sink", "out", StringSerde, StringSerde, &["join"]))
            .unwrap();
        let driver = TopologyTestDriver::new(topology, StreamsConfig::new("test")).unwrap();
        let mut products = driver.create_input_topic("products", StringSerde, StringSerde);
        let mut orders = driver.create_input_topic("orders", StringSerde, StringSerde);
        products.pipe_input("p1".into(), "shoes".into());
        // Any key: the stream is keyed by customer, the table by product.
        orders.pipe_input("alice".into(), "p1:2".into());
        orders.pipe_input("bob".into(), "p2:1".into());
        driver
            .create_output_topic("out", StringSerde, StringSerde)
            .read_key_values_to_list()
    }

    #[test]
    fn an_inner_join_looks_up_the_mapped_key_and_drops_records_without_a_match() {
        assert_eq!(run(true), [("alice".into(), "p1:2@shoes".into())]);
    }

    #[test]
    fn a_left_join_keeps_records_without_a_match() {
        assert_eq!(
            run(false),
            [
                ("alice".into(), "p1:2@shoes".into()),
                ("bob".into(), "p2:1@?".into()),
            ]
        );
    }
}
