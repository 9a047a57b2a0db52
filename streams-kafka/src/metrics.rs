//! Runtime metrics per stream thread and task: records processed, process
//! and commit latency, rebalances, dropped and dead-lettered records,
//! consumer lag and restoration progress; rendered as Prometheus text
//! by `prometheus-client`.
//!
//! Stream threads count in plain fields of their own and publish a copy
//! here now and then, so the processing path never touches shared state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::StateRestoreListener;
use streams_core::TaskId;

/// Counters of one stream thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadMetrics {
    /// Records taken from the consumer and processed.
    pub records_processed: u64,
    /// Time spent processing them, in nanoseconds.
    pub process_nanos: u64,
    /// Commits done.
    pub commits: u64,
    /// Time spent committing, in nanoseconds.
    pub commit_nanos: u64,
    /// Rebalances this thread went through.
    pub rebalances: u64,
}

/// Counters of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// The stream thread that runs it.
    pub thread: usize,
    /// Records processed.
    pub records_processed: u64,
    /// Records dropped, for any reason (including those sent to a
    /// dead-letter topic).
    pub dropped_records: u64,
    /// Of those, records sent to a dead-letter topic.
    pub dead_lettered_records: u64,
    /// Dropped as unreadable by the deserialization handler.
    pub dropped_unreadable: u64,
    /// Dropped by the processing handler after user code failed.
    pub dropped_failed: u64,
    /// Dropped for a negative timestamp.
    pub dropped_invalid_timestamp: u64,
    /// Dropped as late: for a window already closed.
    pub dropped_expired_window: u64,
    /// Sent to a dead-letter topic by the deserialization handler.
    pub dead_lettered_unreadable: u64,
    /// Sent to a dead-letter topic by the processing handler.
    pub dead_lettered_failed: u64,
}

/// Restoration of one store partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreMetrics {
    /// Changelog records applied so far.
    pub restored: u64,
    /// Changelog records still to apply (0 once done).
    pub remaining: u64,
}

/// A snapshot of an instance's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Per stream thread.
    pub threads: BTreeMap<usize, ThreadMetrics>,
    /// Per running task.
    pub tasks: BTreeMap<TaskId, TaskMetrics>,
    /// Consumer lag per source (topic, partition), as last reported: the
    /// partition's end minus the consumer's position (Kafka's
    /// `records-lag`), so about 0 for an instance that keeps up.
    pub consumer_lag: BTreeMap<(String, i32), i64>,
    /// Restoration per (store, changelog topic, partition).
    pub restore: BTreeMap<(String, String, i32), RestoreMetrics>,
}

/// The instance's metrics, written by its threads.
#[derive(Default)]
pub(crate) struct Metrics {
    snapshot: Mutex<MetricsSnapshot>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut MetricsSnapshot) -> R) -> R {
        f(&mut self.snapshot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Publishes a thread's counters and its tasks' (replacing the tasks
    /// it published before).
    pub(crate) fn publish_thread(
        &self,
        index: usize,
        thread: ThreadMetrics,
        tasks: impl IntoIterator<Item = (TaskId, TaskMetrics)>,
    ) {
        self.with(|m| {
            m.threads.insert(index, thread);
            m.tasks.retain(|_, t| t.thread != index);
            m.tasks.extend(tasks);
        });
    }

    /// Records consumer lags; a negative lag (librdkafka's "unknown", as
    /// for partitions no longer assigned) removes the partition.
    pub(crate) fn set_lag(&self, lags: impl IntoIterator<Item = ((String, i32), i64)>) {
        self.with(|m| {
            for (partition, lag) in lags {
                if lag >= 0 {
                    m.consumer_lag.insert(partition, lag);
                } else {
                    m.consumer_lag.remove(&partition);
                }
            }
        });
    }

    pub(crate) fn restore_progress(
        &self,
        store: &str,
        topic: &str,
        partition: i32,
        restored: u64,
        remaining: u64,
    ) {
        self.with(|m| {
            m.restore.insert(
                (store.to_owned(), topic.to_owned(), partition),
                RestoreMetrics {
                    restored,
                    remaining,
                },
            );
        });
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        self.with(|m| m.clone())
    }
}

/// Passes restoration events to the user's listener and records them.
pub(crate) struct RecordingRestoreListener<'a> {
    pub(crate) metrics: &'a Metrics,
    pub(crate) inner: Arc<dyn StateRestoreListener>,
    /// Where the changelog being restored ends.
    pub(crate) end: Mutex<i64>,
}

impl StateRestoreListener for RecordingRestoreListener<'_> {
    fn on_restore_start(&self, store: &str, topic: &str, partition: i32, start: i64, end: i64) {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner) = end;
        self.metrics
            .restore_progress(store, topic, partition, 0, (end - start).max(0) as u64);
        self.inner
            .on_restore_start(store, topic, partition, start, end);
    }

    fn on_batch_restored(
        &self,
        store: &str,
        topic: &str,
        partition: i32,
        batch_end: i64,
        count: usize,
    ) {
        let end = *self.end.lock().unwrap_or_else(PoisonError::into_inner);
        let restored = self.metrics.with(|m| {
            m.restore
                .get(&(store.to_owned(), topic.to_owned(), partition))
                .map_or(0, |r| r.restored)
        }) + count as u64;
        let remaining = (end - batch_end - 1).max(0) as u64;
        self.metrics
            .restore_progress(store, topic, partition, restored, remaining);
        self.inner
            .on_batch_restored(store, topic, partition, batch_end, count);
    }

    fn on_restore_end(&self, store: &str, topic: &str, partition: i32, total: u64) {
        self.metrics
            .restore_progress(store, topic, partition, total, 0);
        self.inner.on_restore_end(store, topic, partition, total);
    }
}

impl MetricsSnapshot {
    /// The metrics in Prometheus' text format (0.0.4), labelled with the
    /// application id.
    pub fn to_prometheus(&self, application_id: &str) -> String {
        let mut registry = Registry::default();
        self.register(&mut registry, application_id);
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }

    /// Adds the metrics' families to `registry`, each series labelled with
    /// the application id first. (Help texts lack their final period:
    /// `Registry::register` adds it.)
    pub fn register(&self, registry: &mut Registry, application_id: &str) {
        let app = || vec![("application_id", application_id.to_owned())];
        let thread_rows = |f: fn(&ThreadMetrics) -> u64| {
            self.threads.iter().map(move |(i, t)| {
                let mut labels = app();
                labels.push(("thread", i.to_string()));
                (labels, f(t))
            })
        };
        // Sums of seconds, named without `_total`: as counters they would
        // get one, so they are untyped.
        let seconds = |f: fn(&ThreadMetrics) -> u64| MetricRows {
            kind: MetricType::Unknown,
            rows: thread_rows(f)
                .map(|(labels, nanos)| (labels, ConstGauge::new(nanos as f64 / 1e9)))
                .collect(),
        };
        registry.register(
            "streams_thread_records_processed",
            "Records processed by a stream thread",
            counters(thread_rows(|t| t.records_processed)),
        );
        registry.register(
            "streams_thread_process_latency_seconds_sum",
            "Time a stream thread spent processing records",
            seconds(|t| t.process_nanos),
        );
        registry.register(
            "streams_thread_commits",
            "Commits by a stream thread",
            counters(thread_rows(|t| t.commits)),
        );
        registry.register(
            "streams_thread_commit_latency_seconds_sum",
            "Time a stream thread spent committing",
            seconds(|t| t.commit_nanos),
        );
        registry.register(
            "streams_thread_rebalances",
            "Rebalances a stream thread went through",
            counters(thread_rows(|t| t.rebalances)),
        );
        let task_labels = |id: &TaskId, t: &TaskMetrics| {
            let mut labels = app();
            labels.push(("thread", t.thread.to_string()));
            labels.push(("task", id.to_string()));
            labels
        };
        registry.register(
            "streams_task_records_processed",
            "Records processed by a task",
            counters(
                self.tasks
                    .iter()
                    .map(|(id, t)| (task_labels(id, t), t.records_processed)),
            ),
        );
        // One series per reason or handler, so that a sum over the labels
        // is the task's total.
        let labelled = |label: &'static str, parts: &[(&'static str, fn(&TaskMetrics) -> u64)]| {
            counters(parts.iter().flat_map(|&(value, f)| {
                self.tasks.iter().map(move |(id, t)| {
                    let mut labels = task_labels(id, t);
                    labels.push((label, value.to_owned()));
                    (labels, f(t))
                })
            }))
        };
        registry.register(
            "streams_task_dropped_records",
            "Records a task dropped (dead-lettered ones apart), by reason: unreadable \
             (the deserialization handler), failed (the processing handler), \
             invalid-timestamp, expired-window (late for a closed window)",
            labelled(
                "reason",
                &[
                    ("unreadable", |t| t.dropped_unreadable),
                    ("failed", |t| t.dropped_failed),
                    ("invalid-timestamp", |t| t.dropped_invalid_timestamp),
                    ("expired-window", |t| t.dropped_expired_window),
                ],
            ),
        );
        registry.register(
            "streams_task_dead_lettered_records",
            "Records a task sent to a dead-letter topic, by handler",
            labelled(
                "handler",
                &[
                    ("deserialization", |t| t.dead_lettered_unreadable),
                    ("processing", |t| t.dead_lettered_failed),
                ],
            ),
        );
        registry.register(
            "streams_consumer_lag_records",
            "Records between a source partition's position and its end",
            gauges(self.consumer_lag.iter().map(|((topic, p), &lag)| {
                let mut labels = app();
                labels.push(("topic", topic.clone()));
                labels.push(("partition", p.to_string()));
                (labels, lag)
            })),
        );
        let restore_rows = |f: fn(&RestoreMetrics) -> u64| {
            self.restore.iter().map(move |((store, topic, p), r)| {
                let mut labels = app();
                labels.push(("store", store.clone()));
                labels.push(("topic", topic.clone()));
                labels.push(("partition", p.to_string()));
                (labels, f(r))
            })
        };
        registry.register(
            "streams_restore_records",
            "Changelog records restored into a store partition",
            counters(restore_rows(|r| r.restored)),
        );
        registry.register(
            "streams_restore_remaining_records",
            "Changelog records still to restore into a store partition",
            gauges(restore_rows(|r| r.remaining)),
        );
    }
}

fn counters(rows: impl IntoIterator<Item = (MetricLabels, u64)>) -> MetricRows<ConstCounter> {
    MetricRows::new(rows.into_iter().map(|(l, n)| (l, ConstCounter::new(n))))
}

fn gauges<N>(rows: impl IntoIterator<Item = (MetricLabels, N)>) -> MetricRows<ConstGauge<N>> {
    MetricRows::new(rows.into_iter().map(|(l, n)| (l, ConstGauge::new(n))))
}

/// The label names and values of one series, in order.
pub type MetricLabels = Vec<(&'static str, String)>;

/// A metric family built from a snapshot at scrape time: one series per
/// row, in the order given. (`prometheus_client`'s `Family` keeps its
/// series in a hash map, so in no fixed order, and hides a family that
/// has none.)
#[derive(Debug)]
pub struct MetricRows<M> {
    kind: MetricType,
    rows: Vec<(MetricLabels, M)>,
}

impl<M: TypedMetric> MetricRows<M> {
    /// The family of `rows`, of `M`'s type (e.g. `ConstCounter`).
    pub fn new(rows: impl IntoIterator<Item = (MetricLabels, M)>) -> Self {
        MetricRows {
            kind: M::TYPE,
            rows: rows.into_iter().collect(),
        }
    }
}

impl<M: EncodeMetric> EncodeMetric for MetricRows<M> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> std::fmt::Result {
        for (labels, metric) in &self.rows {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_family_with_labels() {
        let metrics = Metrics::default();
        metrics.publish_thread(
            0,
            ThreadMetrics {
                records_processed: 10,
                process_nanos: 1_500_000_000,
                commits: 2,
                commit_nanos: 1_000,
                rebalances: 1,
            },
            [(
                TaskId {
                    subtopology: 0,
                    partition: 1,
                },
                TaskMetrics {
                    thread: 0,
                    records_processed: 10,
                    dropped_records: 4,
                    dead_lettered_records: 1,
                    dropped_unreadable: 1,
                    dropped_failed: 2,
                    dropped_expired_window: 3,
                    dead_lettered_failed: 1,
                    ..TaskMetrics::default()
                },
            )],
        );
        metrics.set_lag([(("in\"put".to_owned(), 1), 7), (("gone".to_owned(), 0), 3)]);
        metrics.set_lag([(("gone".to_owned(), 0), -1)]);
        metrics.restore_progress("s", "app-s-changelog", 1, 5, 0);
        let text = metrics.snapshot().to_prometheus("app");
        for line in [
            "streams_thread_records_processed_total{application_id=\"app\",thread=\"0\"} 10",
            "streams_thread_process_latency_seconds_sum{application_id=\"app\",thread=\"0\"} 1.5",
            "streams_thread_rebalances_total{application_id=\"app\",thread=\"0\"} 1",
            "streams_task_records_processed_total{application_id=\"app\",thread=\"0\",task=\"0_1\"} 10",
            "streams_task_dropped_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",reason=\"unreadable\"} 1",
            "streams_task_dropped_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",reason=\"failed\"} 2",
            "streams_task_dropped_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",reason=\"invalid-timestamp\"} 0",
            "streams_task_dropped_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",reason=\"expired-window\"} 3",
            "streams_task_dead_lettered_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",handler=\"deserialization\"} 0",
            "streams_task_dead_lettered_records_total{application_id=\"app\",thread=\"0\",task=\"0_1\",handler=\"processing\"} 1",
            "streams_consumer_lag_records{application_id=\"app\",topic=\"in\\\"put\",partition=\"1\"} 7",
            "streams_restore_records_total{application_id=\"app\",store=\"s\",topic=\"app-s-changelog\",partition=\"1\"} 5",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("gone"), "an unassigned partition has no lag");
        for header in [
            "# HELP streams_thread_records_processed_total Records processed by a stream thread.\n\
             # TYPE streams_thread_records_processed_total counter\n",
            "# HELP streams_task_dropped_records_total Records a task dropped (dead-lettered ones \
             apart), by reason: unreadable (the deserialization handler), failed (the processing \
             handler), invalid-timestamp, expired-window (late for a closed window).\n",
            "# TYPE streams_thread_process_latency_seconds_sum untyped\n",
            "# TYPE streams_consumer_lag_records gauge\n",
        ] {
            assert!(text.contains(header), "missing {header} in\n{text}");
        }
        // A family without series still says what it is.
        let empty = MetricsSnapshot::default().to_prometheus("app");
        assert!(
            empty.contains("# TYPE streams_restore_remaining_records gauge\n"),
            "{empty}"
        );
        // A thread that publishes again replaces its tasks.
        metrics.publish_thread(0, ThreadMetrics::default(), []);
        assert!(metrics.snapshot().tasks.is_empty());
    }
}
