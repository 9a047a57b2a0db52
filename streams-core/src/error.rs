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
    /// while building, before anything runs.
    #[error("invalid topology: {0}")]
    Topology(String),
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
    /// A Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
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

/// The result of a framework call.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;
