//! Records as processors see them.

/// Kafka record headers: ordered, keys may repeat, values may be null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, Option<Vec<u8>>)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Appends a header.
    pub fn add(&mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> &mut Self {
        self.0.push((key.into(), value));
        self
    }

    /// Appends a header, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.add(key, Some(value.into()));
        self
    }

    /// The last value of `key`, as Kafka's `lastHeader`.
    pub fn last(&self, key: &str) -> Option<Option<&[u8]>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// Removes every header named `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A record flowing through a topology: key, value, timestamp (ms since
/// the epoch) and headers. Processors receive one and forward new ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers, carried from the input record unless changed.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record with no headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record {
            key,
            value,
            timestamp,
            headers: Headers::new(),
        }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// Where the record being processed came from. Absent during punctuation
/// and for records a punctuator forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
}

/// A record as it is read from or written to a topic: bytes, possibly null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset (for records read); -1 for records not yet written.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Key bytes, or null.
    pub key: Option<Vec<u8>>,
    /// Value bytes, or null.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
}

/// A record as read, borrowed from the consumer's buffer: the processing
/// path copies key and value bytes only when a deserializer builds values
/// from them. An owned [`RawRecord`] is made only for a record that fails
/// (for the deserialization handler).
pub struct RawView<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Key bytes or null.
    pub key: Option<&'a [u8]>,
    /// Value bytes or null.
    pub value: Option<&'a [u8]>,
    /// Moved into the record handed to the topology.
    pub headers: Headers,
}

impl RawView<'_> {
    /// An owned copy.
    pub(crate) fn to_record(&self) -> RawRecord {
        RawRecord {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.headers.clone(),
        }
    }
}

impl RawRecord {
    /// A borrowed view (headers cloned).
    pub(crate) fn view(&self) -> RawView<'_> {
        RawView {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: self.headers.clone(),
        }
    }
}

/// A table update: the key's new value and the value it replaces. `None`
/// as `new` is a delete; `None` as `old` means the key had no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update.
    pub new: Option<V>,
    /// The value before the update.
    pub old: Option<V>,
}

/// A record on its way to a topic.
pub struct ProducerRecord<'a> {
    /// Target topic.
    pub topic: &'a str,
    /// Target partition; `None` lets the collector choose.
    pub partition: Option<i32>,
    /// Key bytes or null.
    pub key: Option<&'a [u8]>,
    /// Value bytes or null.
    pub value: Option<&'a [u8]>,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Headers.
    pub headers: &'a Headers,
    /// A sink's own partitioner, given the topic's partition count.
    pub partitioner: Option<&'a dyn Fn(i32) -> Option<i32>>,
}

/// Where tasks send what they produce: sink output, changelog records and
/// dead letters. The runtime's collector writes to Kafka; the test
/// driver's keeps them in memory.
pub trait RecordCollector: Send + Sync {
    /// Sends one record. Errors are for records that cannot be accepted at
    /// all; delivery failures surface when the collector is flushed.
    fn send(&self, record: ProducerRecord<'_>) -> crate::Result<()>;
}
