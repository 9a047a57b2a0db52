//! Errors: [`StreamsError`] for everything the framework reports, split as
//! Kafka Streams splits them between a topology that cannot be built and a
//! failure while running.

use state_stores::{SerdeError, StoreError};

/// Any error, boxed, as user code reports it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the framework reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The topology is invalid (Kafka Streams' `TopologyException`): found
    /// while building, before anything runs, or when the topics it names
    /// do not fit it.
    #[error("invalid topology: {0}")]
    Topology(TopologyError),
    /// A setting is missing or wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record could not be read, and the handler said to fail.
    #[error("cannot deserialize record from {topic}[{partition}]@{offset}: {source}")]
    Deserialization {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The cause.
        #[source]
        source: SerdeError,
    },
    /// A record's timestamp could not be extracted: its source's
    /// [`TimestampExtractor`](crate::timestamps::TimestampExtractor) failed
    /// (the default, `FailOnInvalidTimestamp`, fails on a negative one).
    /// The task stops, as in Kafka Streams.
    #[error("cannot extract a timestamp from record {topic}[{partition}]@{offset}: {source}")]
    TimestampExtraction {
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// Source offset.
        offset: i64,
        /// The extractor's error.
        #[source]
        source: BoxError,
    },
    /// A key or value could not be serialized for a sink, store or topic.
    #[error("cannot serialize for {target}: {source}")]
    Serialization {
        /// The topic or store written to.
        target: String,
        /// The cause.
        #[source]
        source: SerdeError,
    },
    /// A processor failed; the node names where.
    #[error("processor `{node}` failed: {source}")]
    Processing {
        /// The processor node's name.
        node: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Producing a record failed and the production handler said to fail.
    #[error("cannot produce to {topic}: {message}")]
    Production {
        /// Target topic.
        topic: String,
        /// What the producer reported.
        message: String,
    },
    /// A store was asked for that the processor is not connected to, or with
    /// the wrong types.
    #[error("state store `{name}`: {message}")]
    StoreAccess {
        /// The store's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The client is in a state that does not allow the call (for example a
    /// store query during a rebalance); retrying later may succeed.
    #[error("{0}")]
    InvalidState(String),
    /// A Kafka client failed while the runtime was doing `action`.
    #[error("kafka: {action}: {source}")]
    Kafka {
        /// What was being done, such as "committing offsets".
        action: String,
        /// The client's error: with the `streams-kafka` runtime an
        /// `rdkafka::error::KafkaError` (downcast it to read its code), or
        /// a message when the runtime itself gave up.
        #[source]
        source: BoxError,
        /// Whether the client's error code says a retry may succeed.
        retriable: bool,
    },
    /// This thread no longer owns its tasks (Kafka Streams'
    /// `TaskMigratedException`): its producer was fenced by a newer one, or
    /// the group moved on without it. The thread closes its tasks dirty,
    /// starts a new producer and rejoins; it does not stop.
    #[error("tasks migrated away from this thread: {0}")]
    TaskMigrated(String),
    /// A runtime thread panicked outside user code (a panic in user code
    /// is a [`StreamsError::Processing`] error naming the node).
    #[error("{thread} panicked: {message}")]
    Panicked {
        /// The thread's name.
        thread: String,
        /// The panic's message.
        message: String,
    },
    /// Another instance of the application asked every instance to stop
    /// (an uncaught-exception handler answered `ShutdownApplication`).
    #[error("the application was shut down by instance {instance}: {reason}")]
    ApplicationShutdown {
        /// The instance that asked.
        instance: String,
        /// Its error.
        reason: String,
    },
    /// An I/O error, with what was being done.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StreamsError {
    /// Whether retrying later may succeed (Kafka Streams'
    /// `InvalidStateStoreException` during a rebalance, a closed store).
    pub fn is_retriable(&self) -> bool {
        match self {
            StreamsError::InvalidState(_) => true,
            StreamsError::Store(e) => e.is_retriable(),
            StreamsError::Kafka { retriable, .. } => *retriable,
            _ => false,
        }
    }

    /// Wraps a processor's own error with the node it happened in.
    pub fn processing(node: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StreamsError::Processing {
            node: node.into(),
            source: source.into(),
        }
    }
}

impl From<TopologyError> for StreamsError {
    fn from(error: TopologyError) -> Self {
        StreamsError::Topology(error)
    }
}

/// Why a topology is invalid, with the node or topic at fault when there
/// is one.
///
/// ```
/// use streams_core::serde::StringSerde;
/// use streams_core::{StreamsError, Topology};
///
/// let mut topology = Topology::new();
/// topology.add_source("in", StringSerde, StringSerde, &["words"])?;
/// let Err(StreamsError::Topology(error)) =
///     topology.add_source("in", StringSerde, StringSerde, &["other"])
/// else {
///     panic!("a second node named `in` is refused");
/// };
/// assert_eq!(error.node(), Some("in"));
/// # Ok::<(), StreamsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    message: String,
    node: Option<String>,
    topic: Option<String>,
}

impl TopologyError {
    /// An error about the topology as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        TopologyError {
            message: message.into(),
            node: None,
            topic: None,
        }
    }

    /// An error about node `node`.
    pub fn at_node(node: impl Into<String>, message: impl Into<String>) -> Self {
        TopologyError::new(message).with_node(node)
    }

    /// An error about topic `topic`.
    pub fn at_topic(topic: impl Into<String>, message: impl Into<String>) -> Self {
        TopologyError::new(message).with_topic(topic)
    }

    /// Names the node at fault.
    pub fn with_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Names the topic at fault.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// The node at fault, if one is.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The topic at fault, if one is.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TopologyError {}

/// The result of a framework call.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;
