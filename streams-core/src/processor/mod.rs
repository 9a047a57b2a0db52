//! The Processor API: write a [`Processor`], wire it into a
//! [`Topology`](crate::Topology), and it receives every record of its
//! parents through [`Processor::process`], with a [`ProcessorContext`] to
//! forward results, reach connected state stores and schedule punctuations.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::TaskId;
use crate::error::{BoxError, Result, StreamsError, TopologyError};
use crate::record::{ProducerRecord, Record, RecordMetadata};
use crate::state::{
    KeyValueStoreHandle, SessionStoreHandle, StoreHandle, TaskStore, WindowStoreHandle,
};

/// What [`Processor`] callbacks return: user code may fail with any error.
pub type ProcessResult = std::result::Result<(), BoxError>;

/// A node of the topology that processes records one at a time.
///
/// Only `process` is required. Processors are created per task by a
/// supplier, so each partition has its own instance and no locking is
/// needed inside one.
///
/// ```
/// use streams_core::processor::{Processor, ProcessorContext, ProcessResult};
/// use streams_core::Record;
///
/// /// Forwards the length of each value.
/// struct Lengths;
///
/// impl Processor<String, String, String, usize> for Lengths {
///     fn process(&mut self, record: Record<String, String>, ctx: &mut ProcessorContext<'_, String, usize>) -> ProcessResult {
///         let length = record.value.len();
///         ctx.forward(record.with_value(length))?;
///         Ok(())
///     }
/// }
/// ```
pub trait Processor<KIn, VIn, KOut = KIn, VOut = VIn>: Send {
    /// Called once when the task starts, before any record: look up stores
    /// and schedule punctuations here.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> ProcessResult {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record.
    fn process(
        &mut self,
        record: Record<KIn, VIn>,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
    ) -> ProcessResult;

    /// Called once when the task closes.
    fn close(&mut self) -> ProcessResult {
        Ok(())
    }
}

/// Creates a processor per task. Any `Fn() -> P` closure is a supplier.
pub trait ProcessorSupplier<KIn, VIn, KOut, VOut>: Send + Sync + 'static {
    /// The processor type.
    type Processor: Processor<KIn, VIn, KOut, VOut> + 'static;
    /// A fresh processor.
    fn get(&self) -> Self::Processor;
}

impl<F, P, KIn, VIn, KOut, VOut> ProcessorSupplier<KIn, VIn, KOut, VOut> for F
where
    F: Fn() -> P + Send + Sync + 'static,
    P: Processor<KIn, VIn, KOut, VOut> + 'static,
{
    type Processor = P;
    fn get(&self) -> P {
        self()
    }
}

/// When a punctuation fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// As stream time (the largest record timestamp seen by the task)
    /// advances: first as soon as the task has data, then every interval of
    /// event time. Never fires while no records arrive.
    StreamTime,
    /// Every interval of wall-clock time, whether records arrive or not.
    WallClockTime,
}

/// Cancels a scheduled punctuation.
#[derive(Debug, Clone)]
pub struct Cancellable(Arc<AtomicBool>);

impl Cancellable {
    pub(crate) fn new() -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (Cancellable(flag.clone()), flag)
    }

    /// Stops the punctuation; it does not fire again.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A processor's view of its task: forward records, reach stores, schedule
/// punctuations, request a commit, and read the current record's metadata.
///
/// `KOut` and `VOut` are the types this processor forwards.
pub struct ProcessorContext<'a, KOut, VOut> {
    pub(crate) task: &'a mut dyn TaskContext,
    pub(crate) node: usize,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<'a, KOut, VOut> ProcessorContext<'a, KOut, VOut> {
    pub(crate) fn new(task: &'a mut dyn TaskContext, node: usize) -> Self {
        ProcessorContext {
            task,
            node,
            _types: PhantomData,
        }
    }

    /// The application's id.
    pub fn application_id(&self) -> &str {
        self.task.application_id()
    }

    /// The task this processor runs in: sub-topology and partition.
    pub fn task_id(&self) -> crate::TaskId {
        self.task.task_id()
    }

    /// This processor node's name.
    pub fn node_name(&self) -> &str {
        self.task.node_name(self.node)
    }

    /// Topic, partition and offset of the record being processed; `None`
    /// inside a punctuation.
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.record_metadata()
    }

    /// The current stream time: the largest timestamp the task has seen.
    pub fn current_stream_time(&self) -> i64 {
        self.task.stream_time()
    }

    /// The current wall-clock time in ms (mocked by the test driver).
    pub fn current_system_time(&self) -> i64 {
        self.task.wall_clock()
    }

    /// Asks the runtime to commit soon (as Kafka Streams' `commit()`).
    pub fn commit(&mut self) {
        self.task.request_commit();
    }

    /// A typed key-value store connected to this processor (or a global one).
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        self.lookup().key_value_store(name)
    }

    /// Counts a record dropped because the window it belongs to had
    /// closed (stream time passed the window's end plus its grace), in the
    /// task's drop counts.
    pub(crate) fn record_expired_window_drop(&mut self) {
        self.task.count_expired_window();
    }

    /// A typed window store connected to this processor.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStoreHandle<K, V>> {
        self.task.find_store(self.node, name)?.window()
    }

    /// A typed session store connected to this processor.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStoreHandle<K, V>> {
        self.task.find_store(self.node, name)?.session()
    }

    pub(crate) fn lookup(&self) -> StoreLookup<'_> {
        StoreLookup {
            task: &*self.task,
            node: self.node,
        }
    }

    /// A store of any kind connected to this processor, such as a custom
    /// store: use [`StoreHandle::with`] to reach it as its own type.
    pub fn state_store(&self, name: &str) -> Result<StoreHandle> {
        Ok(self.task.find_store(self.node, name)?.handle.clone())
    }
}

impl<KOut: Clone + Send + 'static, VOut: Clone + Send + 'static> ProcessorContext<'_, KOut, VOut> {
    /// Sends a record to every child, depth first, as Kafka Streams does:
    /// the children (and theirs) have processed it when this returns.
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<()> {
        // Clones for all but the last child; one look at the children for
        // the usual single child.
        let (count, last) = {
            let children = self.task.children(self.node);
            (children.len(), children.last().copied())
        };
        let Some(last) = last else {
            return Ok(());
        };
        for i in 0..count - 1 {
            let child = self.task.children(self.node)[i];
            self.task.process_at(child, &mut Some(record.clone()))?;
        }
        self.task.process_at(last, &mut Some(record))
    }

    /// Sends a record to the named child only.
    pub fn forward_to(&mut self, child: &str, record: Record<KOut, VOut>) -> Result<()> {
        let task = &*self.task;
        let Some(&index) = task
            .children(self.node)
            .iter()
            .find(|&&c| task.node_name(c) == child)
        else {
            let name = task.node_name(self.node);
            return Err(TopologyError::at_node(
                name,
                format!("`{child}` is not a child of `{name}`"),
            )
            .into());
        };
        self.task.process_at(index, &mut Some(record))
    }

    /// Calls `callback` every `interval` of stream or wall-clock time, with
    /// that time, until the returned handle is cancelled or the task closes.
    pub fn schedule<F>(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
        callback: F,
    ) -> Result<Cancellable>
    where
        F: FnMut(i64, &mut ProcessorContext<'_, KOut, VOut>) -> ProcessResult + Send + 'static,
    {
        let interval = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        if interval < 1 {
            return Err(StreamsError::Config(
                "punctuation interval must be at least 1 ms".into(),
            ));
        }
        let punctuator: Box<dyn ErasedPunctuator> = Box::new(TypedPunctuator::<F, KOut, VOut> {
            callback,
            _types: PhantomData,
        });
        Ok(self.task.schedule(self.node, interval, kind, punctuator))
    }
}

/// What a [`ProcessorContext`] asks of the task running it. The task
/// engine implements it, so the Processor API (and the topology and DSL
/// above it) never name the engine. Nodes are a task's node indices.
pub(crate) trait TaskContext {
    fn application_id(&self) -> &str;
    fn task_id(&self) -> TaskId;
    fn node_name(&self, node: usize) -> &str;
    fn record_metadata(&self) -> Option<&RecordMetadata>;
    fn stream_time(&self) -> i64;
    fn wall_clock(&self) -> i64;
    fn request_commit(&mut self);
    /// A store `node` may use: connected to it, or global.
    fn find_store(&self, node: usize, name: &str) -> Result<&TaskStore>;
    fn children(&self, node: usize) -> &[usize];
    /// Runs `node` on `record` (an `Option<Record<K, V>>`).
    fn process_at(&mut self, node: usize, record: &mut dyn Any) -> Result<()>;
    fn schedule(
        &mut self,
        node: usize,
        interval: i64,
        kind: PunctuationType,
        callback: Box<dyn ErasedPunctuator>,
    ) -> Cancellable;
    /// A source read a record with this timestamp: stream time may advance.
    fn observe_timestamp(&mut self, timestamp: i64);
    /// A source dropped a record with a negative timestamp.
    fn count_invalid_timestamp(&mut self);
    /// A processor dropped a record for a window already closed.
    fn count_expired_window(&mut self);
    /// Sends a sink's record through the task's collector.
    fn send(&mut self, record: ProducerRecord<'_>) -> Result<()>;
}

/// Store access for value getters, built in a processor's context.
pub(crate) struct StoreLookup<'a> {
    task: &'a dyn TaskContext,
    node: usize,
}

impl StoreLookup<'_> {
    pub(crate) fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStoreHandle<K, V>> {
        self.task.find_store(self.node, name)?.key_value()
    }

    pub(crate) fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStoreHandle<K, V>> {
        self.task.find_store(self.node, name)?.window()
    }

    pub(crate) fn state_store(&self, name: &str) -> Result<StoreHandle> {
        Ok(self.task.find_store(self.node, name)?.handle.clone())
    }

    pub(crate) fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStoreHandle<K, V>> {
        self.task.find_store(self.node, name)?.session()
    }
}

/// A punctuation callback with its types erased.
pub(crate) trait ErasedPunctuator: Send {
    fn punctuate(
        &mut self,
        timestamp: i64,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> ProcessResult;
}

struct TypedPunctuator<F, KOut, VOut> {
    callback: F,
    _types: PhantomData<fn(KOut, VOut)>,
}

impl<F, KOut, VOut> ErasedPunctuator for TypedPunctuator<F, KOut, VOut>
where
    F: FnMut(i64, &mut ProcessorContext<'_, KOut, VOut>) -> ProcessResult + Send,
{
    fn punctuate(
        &mut self,
        timestamp: i64,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> ProcessResult {
        (self.callback)(timestamp, &mut ProcessorContext::new(task, node))
    }
}

/// A processor with its types erased, as a task holds it. Records travel
/// between nodes as `&mut Option<Record<K, V>>` behind `dyn Any`, so a hop
/// costs a type check and no allocation.
pub(crate) trait ErasedProcessor: Send {
    fn init(&mut self, task: &mut dyn TaskContext, node: usize) -> Result<()>;
    fn process(
        &mut self,
        record: &mut dyn Any,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> Result<()>;
    fn close(&mut self) -> Result<()>;
}

/// The record handed to `node`, as its type: the wiring checks types when
/// nodes are added, so another type is a bug, reported naming the node.
pub(crate) fn take_record<K: 'static, V: 'static>(
    record: &mut dyn Any,
    task: &dyn TaskContext,
    node: usize,
) -> Result<Record<K, V>> {
    record
        .downcast_mut::<Option<Record<K, V>>>()
        .and_then(Option::take)
        .ok_or_else(|| {
            let name = task.node_name(node);
            TopologyError::at_node(
                name,
                format!(
                    "node `{name}` received a record of the wrong type (expected {})",
                    std::any::type_name::<Record<K, V>>()
                ),
            )
            .into()
        })
}

/// Turns a processor's own error into a framework error naming the node,
/// unless it already is one (an error forwarded up from a child).
pub(crate) fn node_error(task: &dyn TaskContext, node: usize, error: BoxError) -> StreamsError {
    match error.downcast::<StreamsError>() {
        Ok(error) => *error,
        Err(error) => StreamsError::processing(task.node_name(node), error),
    }
}

pub(crate) struct ProcessorAdapter<P, KIn, VIn, KOut, VOut> {
    pub(crate) processor: P,
    pub(crate) _types: PhantomData<fn(KIn, VIn, KOut, VOut)>,
}

impl<P, KIn, VIn, KOut, VOut> ErasedProcessor for ProcessorAdapter<P, KIn, VIn, KOut, VOut>
where
    P: Processor<KIn, VIn, KOut, VOut>,
    KIn: 'static,
    VIn: 'static,
{
    fn init(&mut self, task: &mut dyn TaskContext, node: usize) -> Result<()> {
        let result = self.processor.init(&mut ProcessorContext::new(task, node));
        result.map_err(|e| node_error(task, node, e))
    }

    fn process(
        &mut self,
        record: &mut dyn Any,
        task: &mut dyn TaskContext,
        node: usize,
    ) -> Result<()> {
        let record = take_record::<KIn, VIn>(record, task, node)?;
        let result = self
            .processor
            .process(record, &mut ProcessorContext::new(task, node));
        result.map_err(|e| node_error(task, node, e))
    }

    fn close(&mut self) -> Result<()> {
        self.processor
            .close()
            .map_err(|e| match e.downcast::<StreamsError>() {
                Ok(e) => *e,
                Err(e) => StreamsError::processing("close", e),
            })
    }
}
