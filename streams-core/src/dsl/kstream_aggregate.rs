//! [`KStreamAggregate`]: a grouped stream's aggregation.

use std::sync::Arc;

use super::Change;
use super::ktable_aggregate::store_and_forward;
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::state::KeyValueStoreHandle;

/// One aggregation step of a stream: key, value, the aggregate so far.
pub(crate) type StreamStep<K, V, VA> = Arc<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

/// Folds each record into its key's aggregate in a store and forwards the
/// change (Kafka Streams' `KStreamAggregate`; `count` and `reduce` are
/// steps of it).
pub(crate) struct KStreamAggregate<K, V, VA> {
    store: String,
    step: StreamStep<K, V, VA>,
    handle: Option<KeyValueStoreHandle<K, VA>>,
}

impl<K, V, VA> KStreamAggregate<K, V, VA> {
    pub(crate) fn new(store: &str, step: StreamStep<K, V, VA>) -> Self {
        KStreamAggregate {
            store: store.to_owned(),
            step,
            handle: None,
        }
    }
}

impl<K, V, VA> Processor<K, V, K, Change<VA>> for KStreamAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> ProcessResult {
        self.handle = Some(ctx.key_value_store(&self.store)?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, V>,
        ctx: &mut ProcessorContext<'_, K, Change<VA>>,
    ) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let old = handle.get(&r.key)?;
        let Record {
            key,
            value,
            timestamp,
            headers,
        } = r;
        let new = Some((self.step)(&key, value, old.clone()));
        store_and_forward(
            handle,
            ctx,
            Record::new(key, Change { new, old }, timestamp).with_headers(headers),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::test_support::{changes, one_processor};
    use crate::serde::{I64Serde, StringSerde};

    #[test]
    fn folds_each_record_into_its_keys_aggregate_and_forwards_the_change() {
        let step: StreamStep<String, String, i64> =
            Arc::new(|_, v, total| total.unwrap_or(0) + v.len() as i64);
        let driver = one_processor(StringSerde, StringSerde, I64Serde, move || {
            KStreamAggregate::new("agg", step.clone())
        });
        let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
        input.pipe_input("a".into(), "xx".into());
        input.pipe_input("b".into(), "y".into());
        input.pipe_input("a".into(), "zzz".into());
        assert_eq!(
            changes::<String, i64>(&driver),
            [
                ("a".into(), Some(2), None),
                ("b".into(), Some(1), None),
                ("a".into(), Some(5), Some(2)),
            ]
        );
        let store = driver.key_value_store::<String, i64>("agg").unwrap();
        assert_eq!(store.get(&"a".to_string()).unwrap(), Some(5));
    }
}
