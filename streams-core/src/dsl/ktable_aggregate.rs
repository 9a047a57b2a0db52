//! [`KTableAggregate`]: a grouped table's aggregation.

use std::sync::Arc;

use super::Change;
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::state::KeyValueStoreHandle;

/// One aggregation step of a table: key, change, the aggregate so far;
/// `None` deletes the aggregate.
pub(crate) type TableStep<K, V, VA> =
    Arc<dyn Fn(&K, Change<V>, Option<VA>) -> Option<VA> + Send + Sync>;

/// Applies each row change to its group's aggregate in a store, taking the
/// old value out and adding the new, and forwards the aggregate's change
/// (Kafka Streams' `KTableAggregate`; `count` and `reduce` are steps of it).
pub(crate) struct KTableAggregate<K, V, VA> {
    store: String,
    step: TableStep<K, V, VA>,
    handle: Option<KeyValueStoreHandle<K, VA>>,
}

impl<K, V, VA> KTableAggregate<K, V, VA> {
    pub(crate) fn new(store: &str, step: TableStep<K, V, VA>) -> Self {
        KTableAggregate {
            store: store.to_owned(),
            step,
            handle: None,
        }
    }
}

impl<K, V, VA> Processor<K, Change<V>, K, Change<VA>> for KTableAggregate<K, V, VA>
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
        r: Record<K, Change<V>>,
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
        let new = (self.step)(&key, value, old.clone());
        store_and_forward(
            handle,
            ctx,
            Record::new(key, Change { new, old }, timestamp).with_headers(headers),
        )
    }
}

/// Stores an aggregate's change (`None` deletes it) and forwards it: what
/// every aggregation does after its step.
pub(crate) fn store_and_forward<K, VA>(
    handle: &KeyValueStoreHandle<K, VA>,
    ctx: &mut ProcessorContext<'_, K, Change<VA>>,
    change: Record<K, Change<VA>>,
) -> ProcessResult
where
    K: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    match &change.value.new {
        Some(value) => handle.put(&change.key, value)?,
        None => drop(handle.delete(&change.key)?),
    }
    ctx.forward(change)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::test_support::{changes, one_processor};
    use crate::serde::{ChangeSerde, I64Serde, StringSerde};

    #[test]
    fn takes_the_old_row_out_adds_the_new_and_deletes_an_empty_group() {
        // A sum that disappears when it reaches zero rows.
        let step: TableStep<String, i64, i64> = Arc::new(|_, change, sum| {
            let sum = sum.unwrap_or(0) - change.old.unwrap_or(0) + change.new.unwrap_or(0);
            (sum != 0).then_some(sum)
        });
        let driver = one_processor(
            StringSerde,
            ChangeSerde::new(Arc::new(I64Serde)),
            I64Serde,
            move || KTableAggregate::new("agg", step.clone()),
        );
        let mut input =
            driver.create_input_topic("in", StringSerde, ChangeSerde::new(Arc::new(I64Serde)));
        let change = |new, old| Change { new, old };
        input.pipe_input("g".into(), change(Some(3), None));
        input.pipe_input("g".into(), change(Some(4), Some(3)));
        input.pipe_input("g".into(), change(None, Some(4)));
        assert_eq!(
            changes::<String, i64>(&driver),
            [
                ("g".into(), Some(3), None),
                ("g".into(), Some(4), Some(3)),
                ("g".into(), None, Some(4)),
            ]
        );
        let store = driver.key_value_store::<String, i64>("agg").unwrap();
        assert_eq!(store.get(&"g".to_string()).unwrap(), None, "deleted");
    }
}
