//! [`KStreamWindowAggregate`] and [`KStreamSlidingWindowAggregate`]: a
//! grouped stream's aggregation in time windows.
//!
//! Both keep each window's aggregate in a timestamped window store (the
//! aggregate with the timestamp of its latest record, as Kafka Streams'
//! timestamped window stores do), forward every update as a
//! `Change` of a `Windowed` key, and drop a record late for a window that
//! has closed: stream time (the task's largest timestamp) has passed the
//! window's end plus its grace period.

use super::Change;
use super::kstream_aggregate::StreamStep;
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::{Headers, Record};
use crate::state::WindowStoreHandle;
use crate::window::{SlidingWindows, TimeWindows, Window, Windowed};

/// Logs and counts a record dropped as late for `window`.
pub(crate) fn drop_late<K, V>(
    ctx: &mut ProcessorContext<'_, K, V>,
    timestamp: i64,
    window: Window,
    close_time: i64,
) {
    log::debug!(
        "dropping a record at {timestamp} for the window [{}, {}]: closed, stream time less grace is {close_time}",
        window.start,
        window.end
    );
    ctx.record_expired_window_drop();
}

/// Folds each record into its key's aggregate of every time window (tumbling
/// or hopping) that holds it (Kafka Streams' `KStreamWindowAggregate`).
pub(crate) struct KStreamWindowAggregate<K, V, VA> {
    store: String,
    windows: TimeWindows,
    step: StreamStep<K, V, VA>,
    handle: Option<WindowStoreHandle<K, VA>>,
}

impl<K, V, VA> KStreamWindowAggregate<K, V, VA> {
    pub(crate) fn new(store: &str, windows: TimeWindows, step: StreamStep<K, V, VA>) -> Self {
        KStreamWindowAggregate {
            store: store.to_owned(),
            windows,
            step,
            handle: None,
        }
    }
}

type WindowedContext<'a, K, VA> = ProcessorContext<'a, Windowed<K>, Change<VA>>;

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for KStreamWindowAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut WindowedContext<'_, K, VA>) -> ProcessResult {
        self.handle = Some(ctx.window_store(&self.store)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut WindowedContext<'_, K, VA>) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let close_time = ctx
            .current_stream_time()
            .saturating_sub(self.windows.grace());
        for window in self.windows.windows_for(r.timestamp) {
            if window.end <= close_time {
                drop_late(ctx, r.timestamp, window, close_time);
                continue;
            }
            let old = handle.fetch_timestamped(&r.key, window.start)?;
            update_and_forward(
                handle,
                ctx,
                &self.step,
                (&r.key, &r.value, r.timestamp, &r.headers),
                window,
                old,
            )?;
        }
        Ok(())
    }
}

/// Adds a record (key, value, timestamp, headers) to `window`'s aggregate
/// `old` (with its timestamp; `None`: the initial aggregate), stores the
/// result with the later of the two timestamps, and forwards the change.
fn update_and_forward<K, V, VA>(
    handle: &WindowStoreHandle<K, VA>,
    ctx: &mut WindowedContext<'_, K, VA>,
    step: &StreamStep<K, V, VA>,
    (key, value, timestamp, headers): (&K, &V, i64, &Headers),
    window: Window,
    old: Option<(VA, i64)>,
) -> ProcessResult
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    let (old, timestamp) = match old {
        Some((agg, at)) => (Some(agg), timestamp.max(at)),
        None => (None, timestamp),
    };
    let new = step(key, value.clone(), old.clone());
    handle.put_timestamped(key, Some((&new, timestamp)), window.start)?;
    let change = Change {
        new: Some(new),
        old,
    };
    ctx.forward(
        Record::new(Windowed::new(key.clone(), window), change, timestamp)
            .with_headers(headers.clone()),
    )?;
    Ok(())
}

/// Folds each record into its key's sliding windows (Kafka Streams'
/// `KStreamSlidingWindowAggregate`): every distinct set of records no
/// further apart than the time difference is one window, found from the
/// records' own timestamps. A record updates the windows that hold it and
/// creates its own left window (`[t - d, t]`), its right window
/// (`[t + 1, t + 1 + d]`) when later records fall into it, and the right
/// window of the record before it when it is missing.
pub(crate) struct KStreamSlidingWindowAggregate<K, V, VA> {
    store: String,
    windows: SlidingWindows,
    step: StreamStep<K, V, VA>,
    handle: Option<WindowStoreHandle<K, VA>>,
}

impl<K, V, VA> KStreamSlidingWindowAggregate<K, V, VA> {
    pub(crate) fn new(store: &str, windows: SlidingWindows, step: StreamStep<K, V, VA>) -> Self {
        KStreamSlidingWindowAggregate {
            store: store.to_owned(),
            windows,
            step,
            handle: None,
        }
    }
}

/// One record on its way through a sliding aggregation.
struct Input<'a, K, V> {
    key: &'a K,
    value: &'a V,
    timestamp: i64,
    headers: &'a Headers,
    close_time: i64,
}

impl<K, V, VA> KStreamSlidingWindowAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn window(&self, start: i64) -> Window {
        Window::new(start, start.saturating_add(self.windows.time_difference()))
    }

    /// Updates `window` with the record unless the window has closed.
    fn update(
        &self,
        ctx: &mut WindowedContext<'_, K, VA>,
        input: &Input<'_, K, V>,
        window: Window,
        old: Option<(VA, i64)>,
    ) -> ProcessResult {
        if window.end <= input.close_time {
            drop_late(ctx, input.timestamp, window, input.close_time);
            return Ok(());
        }
        let handle = self.handle.as_ref().expect("init looks the store up");
        update_and_forward(
            handle,
            ctx,
            &self.step,
            (input.key, input.value, input.timestamp, input.headers),
            window,
            old,
        )
    }

    /// Copies `aggregate` (of the records after `t`) into the record's right
    /// window, which the record itself is not in.
    fn create_right_window(
        &self,
        ctx: &mut WindowedContext<'_, K, VA>,
        input: &Input<'_, K, V>,
        (aggregate, at): (VA, i64),
    ) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let window = self.window(input.timestamp.saturating_add(1));
        handle.put_timestamped(input.key, Some((&aggregate, at)), window.start)?;
        let change = Change {
            new: Some(aggregate),
            old: None,
        };
        ctx.forward(Record::new(
            Windowed::new(input.key.clone(), window),
            change,
            at,
        ))?;
        Ok(())
    }

    fn unexpected(start: i64, timestamp: i64) -> crate::error::BoxError {
        format!(
            "a sliding window starting at {start} was not expected beside a record at {timestamp}"
        )
        .into()
    }

    /// A record whose left window would start at or after 0.
    fn process_in_order(
        &self,
        ctx: &mut WindowedContext<'_, K, VA>,
        input: &Input<'_, K, V>,
    ) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let t = input.timestamp;
        let d = self.windows.time_difference();
        let mut starts = Vec::new();
        let mut left_aggregate = None;
        let mut right_aggregate: Option<(VA, i64)> = None;
        let (mut left_exists, mut right_exists) = (false, false);
        let mut previous = None;
        for (start, aggregate, at) in handle.fetch_range_timestamped(
            input.key,
            t.saturating_sub(2 * d).max(0),
            t.saturating_add(1),
        )? {
            starts.push(start);
            let end = start.saturating_add(d);
            if end < t {
                // A window wholly before the record: the latest one holds
                // what the record's left window starts from.
                previous = Some(at);
                left_aggregate = Some((aggregate, at));
            } else if end == t {
                left_exists = true;
                if at < t {
                    previous = Some(at);
                }
                self.update(ctx, input, self.window(start), Some((aggregate, at)))?;
            } else if start <= t {
                right_aggregate = Some((aggregate.clone(), at));
                self.update(ctx, input, self.window(start), Some((aggregate, at)))?;
            } else if start == t.saturating_add(1) {
                right_exists = true;
            } else {
                return Err(Self::unexpected(start, t));
            }
        }
        // The previous record's right window, if it is missing and holds
        // this record.
        if let Some(previous) = previous {
            let start = previous + 1;
            if !starts.contains(&start) && start.saturating_add(d) >= t {
                self.update(ctx, input, self.window(start), None)?;
            }
        }
        if !left_exists {
            let base = match (previous, left_aggregate) {
                (Some(previous), Some((aggregate, _))) if t.saturating_sub(d) <= previous => {
                    Some((aggregate, t))
                }
                _ => None,
            };
            self.update(ctx, input, self.window(t.saturating_sub(d)), base)?;
        }
        if !right_exists && let Some(right) = right_aggregate.filter(|(_, at)| *at > t) {
            self.create_right_window(ctx, input, right)?;
        }
        Ok(())
    }

    /// A record earlier than the time difference: windows would start
    /// before 0, so one window from 0 to the difference holds them all.
    fn process_early(
        &self,
        ctx: &mut WindowedContext<'_, K, VA>,
        input: &Input<'_, K, V>,
    ) -> ProcessResult {
        let handle = self.handle.as_ref().expect("init looks the store up");
        let t = input.timestamp;
        let mut combined = None;
        let mut right_aggregate: Option<(VA, i64)> = None;
        let mut right_exists = false;
        let mut starts = Vec::new();
        let mut previous = None;
        for (start, aggregate, at) in
            handle.fetch_range_timestamped(input.key, 0, t.saturating_add(1))?
        {
            starts.push(start);
            if start == 0 {
                if at < t {
                    previous = Some(at);
                }
                combined = Some((aggregate, at));
            } else if start <= t {
                right_aggregate = Some((aggregate.clone(), at));
                self.update(ctx, input, self.window(start), Some((aggregate, at)))?;
            } else if start == t.saturating_add(1) {
                right_exists = true;
            } else {
                return Err(Self::unexpected(start, t));
            }
        }
        // Without a right window found, the combined window holds only
        // records after this one when its latest is later.
        if right_aggregate.is_none()
            && let Some((aggregate, at)) = &combined
            && *at > t
        {
            right_aggregate = Some((aggregate.clone(), *at));
        }
        if !right_exists && let Some(right) = right_aggregate.filter(|(_, at)| *at > t) {
            self.create_right_window(ctx, input, right)?;
        }
        if let Some(previous) = previous
            && !starts.contains(&(previous + 1))
        {
            self.update(ctx, input, self.window(previous + 1), None)?;
        }
        self.update(ctx, input, self.window(0), combined)
    }
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for KStreamSlidingWindowAggregate<K, V, VA>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VA: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut WindowedContext<'_, K, VA>) -> ProcessResult {
        self.handle = Some(ctx.window_store(&self.store)?);
        Ok(())
    }

    fn process(&mut self, r: Record<K, V>, ctx: &mut WindowedContext<'_, K, VA>) -> ProcessResult {
        let close_time = ctx
            .current_stream_time()
            .saturating_sub(self.windows.grace());
        let d = self.windows.time_difference();
        let input = Input {
            key: &r.key,
            value: &r.value,
            timestamp: r.timestamp,
            headers: &r.headers,
            close_time,
        };
        // Late when even its right window has closed.
        if r.timestamp.saturating_add(1 + d) <= close_time {
            let window = self.window(r.timestamp.saturating_add(1));
            drop_late(ctx, r.timestamp, window, close_time);
            return Ok(());
        }
        if r.timestamp < d {
            self.process_early(ctx, &input)
        } else {
            self.process_in_order(ctx, &input)
        }
    }
}
