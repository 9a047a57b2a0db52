//! [`KStreamSessionWindowAggregate`]: a grouped stream's aggregation in
//! session windows.

use std::sync::Arc;

use super::Change;
use super::kstream_aggregate::StreamStep;
use super::kstream_window_aggregate::drop_late;
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;
use crate::state::SessionStoreHandle;
use crate::window::{SessionWindows, Window, Windowed};

/// Merges two sessions' aggregates: the one built so far (`None`: the
/// initial aggregate) and the next session's.
pub(crate) type SessionMerge<K, VA> = Arc<dyn Fn(&K, Option<VA>, VA) -> VA + Send + Sync>;

/// Folds each record into its key's session (Kafka Streams'
/// `KStreamSessionWindowAggregate`): the sessions within the inactivity gap
/// of the record are merged into one with the record, the merged ones
/// are removed (a tombstone is forwarded for each) and the new session is
/// stored and forwarded. A session's end is its latest record's time; a
/// record whose merged session ended before stream time less grace and
/// gap is late.
pub(crate) struct KStreamSessionWindowAggregate<K, V, VA> {
    store: String,
    windows: SessionWindows,
    step: StreamStep<K, V, VA>,
    merge: SessionMerge<K, VA>,
    handle: Option<SessionStoreHandle<K, VA>>,
}

impl<K, V, VA> KStreamSessionWindowAggregate<K, V, VA> {
    pub(crate) fn new(
        store: &str,
        windows: SessionWindows,
        step: StreamStep<K, V, VA>,
        merge: SessionMerge<K, VA>,
    ) -> Self {
        KStreamSessionWindowAggregate {
            store: store.to_owned(),
            windows,
            step,
            merge,
            handle: None,
        }
    }
}

type SessionContext<'a, K, VA> = ProcessorContext<'a, Windowed<K>, Change<VA>>;

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for KStreamSessionWindowAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut SessionContext<'_, K, VA>) -> ProcessResult {
        self.handle = Some(ctx.session_store(&self.store)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut SessionContext<'_, K, VA>) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let t = r.timestamp;
        let gap = self.windows.inactivity_gap();
        // A session ending at `end` may still grow until `end + gap`, and
        // takes late records for its grace after that (Kafka Streams'
        // close time for sessions).
        let close_time = ctx
            .current_stream_time()
            .saturating_sub(self.windows.grace())
            .saturating_sub(gap);
        let found = handle.find_sessions(&r.key, t.saturating_sub(gap), t.saturating_add(gap))?;
        let single = Window::new(t, t);
        let mut merged = single;
        let mut aggregate = None;
        for (session, value) in &found {
            aggregate = Some((self.merge)(&r.key, aggregate, value.clone()));
            merged = Window::new(
                merged.start.min(session.window.start),
                merged.end.max(session.window.end),
            );
        }
        if merged.end < close_time {
            drop_late(ctx, t, merged, close_time);
            return Ok(());
        }
        if merged != single {
            for (session, old) in found {
                handle.remove(&session)?;
                let end = session.window.end;
                let change = Change {
                    new: None,
                    old: Some(old),
                };
                ctx.forward(Record::new(session, change, end).with_headers(r.headers.clone()))?;
            }
        }
        let Record {
            key,
            value,
            headers,
            ..
        } = r;
        let new = (self.step)(&key, value, aggregate);
        let session = Windowed::new(key, merged);
        handle.put(&session, &new)?;
        let change = Change {
            new: Some(new),
            old: None,
        };
        ctx.forward(Record::new(session, change, merged.end).with_headers(headers))?;
        Ok(())
    }
}
