//! What a `read_committed` consumer on Apache Kafka would see in a topic,
//! worked out from the raw log.
//!
//! The development broker stores transactional batches and their COMMIT and
//! ABORT markers, but its Fetch responses carry an empty aborted-transactions
//! list, so librdkafka's `read_committed` cannot hide aborted records (see
//! README.md, "Development broker"). This module fetches the raw record
//! batches itself over the Kafka wire protocol (its requests, responses and
//! records encoded and decoded by the `kafka-protocol` crate) and applies
//! the `read_committed` rules to them:
//!
//! - a non-transactional record is kept;
//! - a transactional record is kept when the next marker of its producer in
//!   the partition is COMMIT, and dropped when it is ABORT;
//! - a transaction with no marker yet is open: its records are not returned,
//!   and neither is anything at or after its first offset (the last stable
//!   offset), as on Kafka;
//! - control records are never returned.
//!
//! It also writes raw batches ([`produce_raw`], [`raw_batch`]), for tests
//! of batches that no well-behaved producer writes.
//!
//! ```no_run
//! let broker = tests::shared_broker();
//! let out = tests::committed::read_committed(broker.bootstrap_servers(), "counts", 0).unwrap();
//! assert_eq!(out.open, 0, "a transaction is still open");
//! for record in &out.records {
//!     println!("{} {:?}", record.offset, record.value);
//! }
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

/// One record as a `read_committed` consumer would receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedRecord {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp in milliseconds since the epoch (the broker's append
    /// time when the topic uses log-append time).
    pub timestamp: i64,
    /// Its key; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Its value; `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its headers in order: key and value (`None` for a null value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The committed view of a partition (or of several, concatenated), with
/// counts of what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The records a `read_committed` consumer would receive, in offset
    /// order within each partition.
    pub records: Vec<CommittedRecord>,
    /// Transactional records dropped because their transaction was aborted.
    pub aborted: usize,
    /// COMMIT markers seen.
    pub commits: usize,
    /// ABORT markers seen.
    pub aborts: usize,
    /// Transactional records whose transaction has no marker yet (open).
    pub open: usize,
    /// Records that are committed or non-transactional but lie at or after
    /// the first offset of an open transaction, so Kafka would not return
    /// them yet either.
    pub held_back: usize,
}

impl Committed {
    /// The values of [`Committed::records`], in order; `None` for null ones.
    pub fn values(&self) -> Vec<Option<&[u8]>> {
        self.records.iter().map(|r| r.value.as_deref()).collect()
    }

    fn absorb(&mut self, other: Committed) {
        self.records.extend(other.records);
        self.aborted += other.aborted;
        self.commits += other.commits;
        self.aborts += other.aborts;
        self.open += other.open;
        self.held_back += other.held_back;
    }
}

/// One record of a [`RecordBatch`], as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp in milliseconds since the epoch.
    pub timestamp: i64,
    /// Its key; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Its value; `None` for a null value.
    pub value: Option<Vec<u8>>,
    /// Its headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// A record batch (message format v2) as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record (`base_offset + lastOffsetDelta`).
    pub last_offset: i64,
    /// The producer id (-1 when the producer is not idempotent).
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// Written inside a transaction.
    pub transactional: bool,
    /// Holds control records (transaction markers) rather than data.
    pub control: bool,
    /// Its records.
    pub records: Vec<Record>,
}

/// The kind of a transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The producer's open transaction was aborted.
    Abort,
    /// The producer's open transaction was committed.
    Commit,
}

/// Attribute bits of a record batch.
const COMPRESSION_MASK: i16 = 0x07;
const LOG_APPEND_TIME: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// Bytes from the start of a batch up to and including its record count.
const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` and `batchLength`: the part of a batch header that is not
/// counted in `batchLength`.
const LOG_OVERHEAD: usize = 12;
/// Where the part of a batch that its checksum covers starts: its
/// attributes.
const CRC_START: usize = 21;

/// Reads `partition` of `topic` from the broker at `bootstrap` (`host:port`;
/// the first of a comma-separated list that accepts a connection) and
/// returns what a `read_committed` consumer would see.
///
/// The broker must lead the partition: this speaks to that one broker only.
pub fn read_committed(bootstrap: &str, topic: &str, partition: i32) -> io::Result<Committed> {
    let batches = fetch_all(bootstrap, topic, partition)?;
    Ok(committed_records(partition, &batches))
}

/// [`read_committed`] for partitions `0..partitions` of `topic`, their
/// records concatenated in partition order and their counts added up.
pub fn read_committed_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> io::Result<Committed> {
    let mut all = Committed::default();
    for partition in 0..partitions {
        all.absorb(read_committed(bootstrap, topic, partition)?);
    }
    Ok(all)
}

/// Applies the `read_committed` rules to the batches of one partition,
/// given in offset order, as [`parse_record_set`] returns them.
pub fn committed_records(partition: i32, batches: &[RecordBatch]) -> Committed {
    enum Fate {
        Keep,
        Drop,
        Pending,
    }
    let mut out = Committed::default();
    let mut slots: Vec<(Fate, CommittedRecord)> = Vec::new();
    // Indices in `slots` of each producer's records that await a marker.
    let mut pending: HashMap<i64, Vec<usize>> = HashMap::new();
    for batch in batches {
        if batch.control {
            for record in &batch.records {
                let marker = match control_marker(record) {
                    Ok(Some(marker)) => marker,
                    // Other control types (e.g. KRaft leader changes) carry
                    // no transaction outcome. A key too short to say is
                    // rejected by `parse_batch`, so it cannot be a marker.
                    Ok(None) | Err(_) => continue,
                };
                match marker {
                    Marker::Commit => out.commits += 1,
                    Marker::Abort => out.aborts += 1,
                }
                // The marker settles everything the producer wrote since
                // its previous marker.
                for index in pending.remove(&batch.producer_id).unwrap_or_default() {
                    slots[index].0 = if marker == Marker::Commit {
                        Fate::Keep
                    } else {
                        out.aborted += 1;
                        Fate::Drop
                    };
                }
            }
            continue;
        }
        for record in &batch.records {
            let fate = if batch.transactional {
                pending
                    .entry(batch.producer_id)
                    .or_default()
                    .push(slots.len());
                Fate::Pending
            } else {
                Fate::Keep
            };
            slots.push((
                fate,
                CommittedRecord {
                    partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers: record.headers.clone(),
                },
            ));
        }
    }
    // Kafka serves a read_committed consumer only below the last stable
    // offset: the first offset of the earliest transaction still open.
    let last_stable = pending
        .values()
        .flatten()
        .map(|&index| slots[index].1.offset)
        .min()
        .unwrap_or(i64::MAX);
    for (fate, record) in slots {
        match fate {
            Fate::Keep if record.offset < last_stable => out.records.push(record),
            Fate::Keep => out.held_back += 1,
            Fate::Pending => out.open += 1,
            Fate::Drop => {}
        }
    }
    out
}

/// The transaction marker a control record carries: `None` for control
/// types other than ABORT (0) and COMMIT (1).
pub fn control_marker(record: &Record) -> io::Result<Option<Marker>> {
    let key = record.key.as_deref().unwrap_or_default();
    // The key is a version (i16) and then the type (i16).
    let kind = key.get(2..4).ok_or_else(|| {
        invalid(format!(
            "control record at offset {} has a key of {} bytes, expected at least 4",
            record.offset,
            key.len()
        ))
    })?;
    Ok(match i16::from_be_bytes([kind[0], kind[1]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    })
}

/// Parses the record batches of a Fetch response's record set, in order.
///
/// A batch cut off at the end (a broker may stop a response mid-batch at
/// its size limit) is left out: fetching again from the offset after the
/// last whole batch returns it. Returns an error for malformed batches,
/// checksum mismatches, message formats other than v2, and compressed
/// batches (this reader has no codecs).
pub fn parse_record_set(bytes: &[u8]) -> io::Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    let mut rest = bytes;
    while rest.len() >= LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l >= BATCH_HEADER_LEN - LOG_OVERHEAD)
            .ok_or_else(|| {
                invalid(format!(
                    "batch at offset {base_offset} has an invalid length {length}"
                ))
            })?;
        let Some(batch) = rest.get(..LOG_OVERHEAD + length) else {
            break; // Truncated tail.
        };
        batches.push(parse_batch(batch)?);
        rest = &rest[LOG_OVERHEAD + length..];
    }
    Ok(batches)
}

/// Parses one whole record batch (v2), from its `baseOffset` to its end.
///
/// The header is checked here, so that an error says what is wrong with
/// it; `kafka-protocol`'s [`RecordBatchDecoder`] decodes the records.
pub fn parse_batch(bytes: &[u8]) -> io::Result<RecordBatch> {
    if bytes.len() < BATCH_HEADER_LEN {
        return Err(invalid(format!(
            "a batch of {} bytes, shorter than a batch header ({BATCH_HEADER_LEN})",
            bytes.len()
        )));
    }
    // The header's fields by their byte positions. The decoder returns
    // neither `lastOffsetDelta` nor `maxTimestamp`, and a batch without
    // records (compaction keeps those) has no record to carry the rest.
    let i16_at = |at: usize| i16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let base_offset = i64_at(0);
    let at = |what: &str| format!("batch at offset {base_offset}: {what}");
    let length = i32_at(8);
    if usize::try_from(length).ok() != Some(bytes.len() - LOG_OVERHEAD) {
        return Err(invalid(at(&format!(
            "length {length} does not match its {} bytes",
            bytes.len() - LOG_OVERHEAD
        ))));
    }
    let magic = i8::from_be_bytes([bytes[16]]);
    if magic != 2 {
        return Err(invalid(at(&format!(
            "message format v{magic}, only v2 is supported"
        ))));
    }
    let crc = u32::from_be_bytes(bytes[17..CRC_START].try_into().expect("4 bytes"));
    let computed = crc32c(&bytes[CRC_START..]);
    if crc != computed {
        return Err(invalid(at(&format!(
            "checksum {crc:#010x} does not match the content's {computed:#010x}"
        ))));
    }
    let attributes = i16_at(CRC_START);
    let compression = attributes & COMPRESSION_MASK;
    if compression != 0 {
        return Err(invalid(at(&format!(
            "compressed (codec {compression}); this reader handles uncompressed batches only, \
             produce with compression.type=none"
        ))));
    }
    let last_offset_delta = i32_at(23);
    let base_timestamp = i64_at(27);
    let max_timestamp = i64_at(35);
    let producer_id = i64_at(43);
    let producer_epoch = i16_at(51);
    let count = i32_at(57);
    let count = usize::try_from(count)
        .map_err(|_| invalid(at(&format!("negative record count {count}"))))?;
    // The decoder checks neither that each record fills its length nor
    // that the records fill the batch. This also bounds `count` before the
    // decoder sizes a vector by it.
    let lengths = record_lengths(&bytes[BATCH_HEADER_LEN..], count).map_err(|e| invalid(at(&e)))?;
    let decoded =
        RecordBatchDecoder::decode(&mut &bytes[..]).map_err(|e| invalid(at(&format!("{e:#}"))))?;
    let mut records = Vec::with_capacity(count);
    for (index, (record, length)) in decoded.records.into_iter().zip(lengths).enumerate() {
        let fields = encoded_len(&record, base_offset, base_timestamp);
        if fields != length {
            return Err(invalid(at(&format!(
                "record {index} of {count} is {length} bytes long but its fields take {fields}: \
                 bytes left over, varints longer than they need be, or a repeated header key \
                 (which the decoder keeps once)"
            ))));
        }
        records.push(Record {
            offset: record.offset,
            // The broker's append time replaces every record's own.
            timestamp: if attributes & LOG_APPEND_TIME != 0 {
                max_timestamp
            } else {
                record.timestamp
            },
            key: record.key.map(|key| key.to_vec()),
            value: record.value.map(|value| value.to_vec()),
            headers: record
                .headers
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.map(|v| v.to_vec())))
                .collect(),
        });
    }
    if attributes & CONTROL != 0 {
        for record in &records {
            control_marker(record).map_err(|e| invalid(at(&e.to_string())))?;
        }
    }
    Ok(RecordBatch {
        base_offset,
        last_offset: base_offset + i64::from(last_offset_delta),
        producer_id,
        producer_epoch,
        transactional: attributes & TRANSACTIONAL != 0,
        control: attributes & CONTROL != 0,
        records,
    })
}

/// The length of each of the `count` records of a batch's record section,
/// which they must fill exactly.
fn record_lengths(mut records: &[u8], count: usize) -> Result<Vec<usize>, String> {
    let mut lengths = Vec::new();
    for index in 0..count {
        let (length, prefix) = varint(records).ok_or_else(|| {
            format!("record {index} of {count}: its length is cut off or too long")
        })?;
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| n <= records.len() - prefix)
            .ok_or_else(|| {
                format!(
                    "record {index} of {count} has length {length}, {} bytes left",
                    records.len() - prefix
                )
            })?;
        records = &records[prefix + length..];
        lengths.push(length);
    }
    if !records.is_empty() {
        return Err(format!(
            "{} bytes left after its {count} records",
            records.len()
        ));
    }
    Ok(lengths)
}

/// What a decoded record's fields take encoded as Kafka's clients encode
/// them (shortest varints), to compare with the length its batch gives it.
fn encoded_len(
    record: &kafka_protocol::records::Record,
    base_offset: i64,
    base_timestamp: i64,
) -> usize {
    let bytes =
        |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i64) + b.len());
    1 // attributes
        + varint_len(record.timestamp.wrapping_sub(base_timestamp))
        + varint_len(record.offset.wrapping_sub(base_offset))
        + bytes(record.key.as_deref())
        + bytes(record.value.as_deref())
        + varint_len(record.headers.len() as i64)
        + record
            .headers
            .iter()
            .map(|(key, value)| bytes(Some(key.as_bytes())) + bytes(value.as_deref()))
            .sum::<usize>()
}

// `kafka-protocol` keeps its varint codec to itself: these two serve the
// length checks above.

/// The zigzag varint (32 bits) at the start of `bytes` and the bytes it
/// takes; `None` when it is cut off or longer than 5 bytes.
fn varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let mut raw = 0u32;
    for (i, &byte) in bytes.iter().take(5).enumerate() {
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), i + 1));
        }
    }
    None
}

/// The bytes the shortest zigzag varint for `n` takes.
fn varint_len(n: i64) -> usize {
    let raw = ((n << 1) ^ (n >> 63)) as u64;
    (u64::BITS - raw.leading_zeros()).max(1).div_ceil(7) as usize
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The same error with where it happened in front.
fn in_partition(topic: &str, partition: i32, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{topic}/{partition}: {e}"))
}

/// CRC-32C (Castagnoli), the checksum of record batches v2.
pub fn crc32c(bytes: &[u8]) -> u32 {
    ::crc32c::crc32c(bytes)
}

// ---------------------------------------------------------------------------
// Writing a raw batch.

/// A record batch v2 at base offset 0 whose attributes name compression
/// `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5 to 7 are no codec
/// at all) and whose `count` records are `payload`, taken as compressed
/// as is, with a correct checksum: for tests of batches a consumer cannot
/// read, which no well-behaved producer writes.
///
/// Written by hand: `kafka-protocol`'s encoder compresses what it is given
/// and knows no codec numbers beyond 4.
pub fn raw_batch(codec: i16, count: i32, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new(); // From the attributes on: what the CRC covers.
    body.extend_from_slice(&(codec & 0x7).to_be_bytes()); // attributes
    body.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    body.extend_from_slice(&now.to_be_bytes()); // base timestamp
    body.extend_from_slice(&now.to_be_bytes()); // max timestamp
    body.extend_from_slice(&(-1i64).to_be_bytes()); // producer id: none
    body.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    body.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    body.extend_from_slice(&count.to_be_bytes());
    body.extend_from_slice(payload);
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset (the broker's to set)
    out.extend_from_slice(&((body.len() + 9) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Appends `batch` (a record batch v2, as [`raw_batch`] makes) to
/// `partition` of `topic` on the broker at `bootstrap`, which must lead it,
/// and waits for the broker's answer: its error, if any, is an error.
pub fn produce_raw(bootstrap: &str, topic: &str, partition: i32, batch: &[u8]) -> io::Result<()> {
    let mut connection = Connection::open(bootstrap)?;
    let request = ProduceRequest::default()
        .with_acks(-1) // All in-sync replicas.
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch.to_vec().into())),
                ]),
        ]);
    let response = connection.round_trip(ApiKey::Produce, PRODUCE_VERSION, &request)?;
    let response: ProduceResponse = parse_response(
        &response,
        ApiKey::Produce,
        PRODUCE_VERSION,
        connection.correlation_id,
    )?;
    for partition in response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
    {
        if partition.error_code != 0 {
            return Err(broker_error(partition.error_code));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The Fetch request over TCP.

/// Fetch v4: the first version with isolation levels and the last stable
/// offset, and non-flexible (no tagged fields), which every broker since
/// Kafka 0.11 and the development broker accept.
const FETCH_VERSION: i16 = 4;
/// Metadata v4: the first version that can ask not to create a missing
/// topic.
const METADATA_VERSION: i16 = 4;
/// Produce v3: the first version that carries record batches v2.
const PRODUCE_VERSION: i16 = 3;
const CLIENT_ID: &str = "tests-committed-reader";
const FETCH_MAX_WAIT_MS: i32 = 10;
/// How long without progress before giving up.
const NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest per-partition fetch size tried when one batch does not fit.
const MAX_PARTITION_BYTES: i32 = 64 << 20;

/// Every batch of the partition, in offset order, up to its high watermark.
fn fetch_all(bootstrap: &str, topic: &str, partition: i32) -> io::Result<Vec<RecordBatch>> {
    let mut connection =
        Connection::open(bootstrap).map_err(|e| in_partition(topic, partition, e))?;
    // The development broker answers a Fetch for a missing topic or
    // partition as if it were empty: ask the metadata first, which also
    // says which broker to fetch from.
    let leader = connection
        .partition_leader(topic, partition)
        .map_err(|e| in_partition(topic, partition, e))?;
    if leader != connection.address {
        connection = Connection::open(&leader).map_err(|e| in_partition(topic, partition, e))?;
    }
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut next_offset = 0i64;
    let mut partition_bytes = 1 << 20;
    let mut last_progress = Instant::now();
    loop {
        let fetched = connection
            .fetch(topic, partition, next_offset, partition_bytes)
            .map_err(|e| in_partition(topic, partition, e))?;
        let record_set = fetched.records.as_deref().unwrap_or_default();
        let parsed = parse_record_set(record_set).map_err(|e| {
            in_partition(
                topic,
                partition,
                io::Error::new(e.kind(), format!("fetch at offset {next_offset}: {e}")),
            )
        })?;
        let before = batches.len();
        let whole_batches = parsed.len();
        for mut batch in parsed {
            // A broker may answer with the whole batch holding the fetch
            // offset, so some of it may have been read already.
            if batch.last_offset < next_offset {
                continue;
            }
            batch.records.retain(|r| r.offset >= next_offset);
            next_offset = batch.last_offset + 1;
            batches.push(batch);
        }
        if batches.len() > before {
            last_progress = Instant::now();
            continue;
        }
        if whole_batches == 0 && !record_set.is_empty() {
            // Not even one whole batch fitted: ask for more.
            if partition_bytes >= MAX_PARTITION_BYTES {
                return Err(in_partition(
                    topic,
                    partition,
                    invalid(format!(
                        "the batch at offset {next_offset} does not fit in {MAX_PARTITION_BYTES} bytes"
                    )),
                ));
            }
            partition_bytes *= 2;
            continue;
        }
        // The development broker reports the base offset of the last batch
        // plus one as the high watermark: reaching it and then getting no
        // new batch means everything has been read.
        if next_offset >= fetched.high_watermark {
            return Ok(batches);
        }
        if last_progress.elapsed() > NO_PROGRESS_TIMEOUT {
            return Err(in_partition(
                topic,
                partition,
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no batch at offset {next_offset} within {NO_PROGRESS_TIMEOUT:?} \
                         though the high watermark is {}",
                        fetched.high_watermark
                    ),
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A connection to one broker.
struct Connection {
    stream: TcpStream,
    address: String,
    correlation_id: i32,
}

impl Connection {
    fn open(bootstrap: &str) -> io::Result<Connection> {
        let mut last_error = None;
        for address in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let addrs = match address.to_socket_addrs() {
                Ok(addrs) => addrs,
                Err(e) => {
                    last_error = Some(io::Error::new(e.kind(), format!("{address}: {e}")));
                    continue;
                }
            };
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
                        stream.set_nodelay(true)?;
                        return Ok(Connection {
                            stream,
                            address: address.to_owned(),
                            correlation_id: 0,
                        });
                    }
                    Err(e) => {
                        last_error = Some(io::Error::new(
                            e.kind(),
                            format!("connecting to {address} ({addr}): {e}"),
                        ));
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no broker address in {bootstrap:?}"),
            )
        }))
    }

    /// `host:port` of the broker leading `topic`/`partition`; an error when
    /// either does not exist.
    fn partition_leader(&mut self, topic: &str, partition: i32) -> io::Result<String> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
            ]))
            .with_allow_auto_topic_creation(false);
        let address = self.address.clone();
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("metadata v{METADATA_VERSION} from {address}: {e}"),
            )
        };
        let response = self
            .round_trip(ApiKey::Metadata, METADATA_VERSION, &request)
            .map_err(context)?;
        parse_metadata_response(&response, self.correlation_id, topic, partition).map_err(context)
    }

    fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        partition_bytes: i32,
    ) -> io::Result<PartitionData> {
        let request = fetch_request(topic, partition, offset, partition_bytes);
        let address = self.address.clone();
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("fetch v{FETCH_VERSION} at offset {offset} from {address}: {e}"),
            )
        };
        let response = self
            .round_trip(ApiKey::Fetch, FETCH_VERSION, &request)
            .map_err(context)?;
        parse_fetch_response(&response, self.correlation_id, topic, partition).map_err(context)
    }

    /// Sends `request` as version `version` of `api` and returns the
    /// response (without its size prefix), for [`parse_response`].
    fn round_trip(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &impl Encodable,
    ) -> io::Result<Vec<u8>> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = request_frame(api, version, self.correlation_id, request)?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .map_err(|_| invalid(format!("response size {size} is negative")))?;
        let mut response = vec![0u8; size];
        self.stream.read_exact(&mut response)?;
        Ok(response)
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// A request as sent: its size, its header (the version `api` and
/// `version` call for) and `body`.
fn request_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> io::Result<Vec<u8>> {
    let unencodable = |e: &dyn Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{api:?} v{version} request: {e:#}"),
        )
    };
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut frame = vec![0; 4]; // The size, set below.
    header
        .encode(&mut frame, api.request_header_version(version))
        .map_err(|e| unencodable(&e))?;
    body.encode(&mut frame, version)
        .map_err(|e| unencodable(&e))?;
    let size = i32::try_from(frame.len() - 4).map_err(|_| unencodable(&"too large"))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame)
}

/// Decodes `response` (without its size prefix) as the answer to request
/// `correlation_id`, version `version` of `api`.
fn parse_response<R: Decodable>(
    response: &[u8],
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> io::Result<R> {
    let malformed = |e: &dyn Display| invalid(format!("{api:?} v{version} response: {e:#}"));
    let mut buf = response;
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version))
        .map_err(|e| malformed(&e))?;
    if header.correlation_id != correlation_id {
        return Err(invalid(format!(
            "response to request {} while waiting for {correlation_id}",
            header.correlation_id
        )));
    }
    R::decode(&mut buf, version).map_err(|e| malformed(&e))
}

/// The leader's `host:port` for `topic`/`partition` in a Metadata v4
/// response.
fn parse_metadata_response(
    response: &[u8],
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> io::Result<String> {
    let response: MetadataResponse =
        parse_response(response, ApiKey::Metadata, METADATA_VERSION, correlation_id)?;
    let Some(found) = response
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
    else {
        return Err(invalid(
            "the response does not include the topic".to_owned(),
        ));
    };
    match ResponseError::try_from_code(found.error_code) {
        None => {}
        Some(ResponseError::UnknownTopicOrPartition) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the topic does not exist".to_owned(),
            ));
        }
        Some(_) => return Err(broker_error(found.error_code)),
    }
    let Some(found_partition) = found
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)
    else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the partition does not exist: the topic has {} partitions",
                found.partitions.len()
            ),
        ));
    };
    if found_partition.error_code != 0 {
        return Err(broker_error(found_partition.error_code));
    }
    let leader = found_partition.leader_id;
    response
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .map(|b| format!("{}:{}", b.host, b.port))
        .ok_or_else(|| {
            io::Error::other(format!(
                "the leader, broker {}, is not among the brokers",
                leader.0
            ))
        })
}

fn broker_error(code: i16) -> io::Error {
    let name = ResponseError::try_from_code(code).map_or_else(String::new, |e| e.to_string());
    io::Error::other(format!("broker answered error {code} ({name})"))
}

/// A Fetch request for one partition, in read_uncommitted mode: the
/// markers and aborted records are wanted too.
fn fetch_request(topic: &str, partition: i32, offset: i64, partition_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        // The development broker answers a zero max_wait_ms with no
        // partitions at all, and waits out max_wait_ms when there is
        // nothing to return: keep it short but not zero.
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(partition_bytes)
        .with_isolation_level(0)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_bytes),
                ]),
        ])
}

/// Picks `topic`/`partition` out of a Fetch v4 response, turning a
/// partition error code into an error.
fn parse_fetch_response(
    response: &[u8],
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> io::Result<PartitionData> {
    let size = response.len();
    let response: FetchResponse =
        parse_response(response, ApiKey::Fetch, FETCH_VERSION, correlation_id)?;
    // Its aborted-transactions list is not read: empty on the development
    // broker, and the markers in the log say the same anyway.
    let found = response
        .responses
        .into_iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            invalid(format!(
                "the response does not include the partition ({size} bytes)"
            ))
        })?;
    if found.error_code != 0 {
        return Err(broker_error(found.error_code));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    use super::*;

    /// A record to encode: offset delta, key, value, headers.
    type Raw<'a> = (
        i32,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [(&'a str, Option<&'a [u8]>)],
    );

    /// Encodes a v2 batch as a producer or the broker would, with the
    /// record at offset delta `d` stamped `base_timestamp + 3 * d`.
    fn batch(
        base_offset: i64,
        producer_id: i64,
        attributes: i16,
        base_timestamp: i64,
        records: &[Raw<'_>],
    ) -> Vec<u8> {
        let records: Vec<kafka_protocol::records::Record> = records
            .iter()
            .map(
                |&(delta, key, value, headers)| kafka_protocol::records::Record {
                    transactional: attributes & TRANSACTIONAL != 0,
                    control: attributes & CONTROL != 0,
                    delete_horizon: false,
                    partition_leader_epoch: 7,
                    producer_id,
                    producer_epoch: 0,
                    timestamp_type: TimestampType::Creation,
                    offset: base_offset + i64::from(delta),
                    // Offset minus sequence is the same for every record, or
                    // the encoder splits them into several batches.
                    sequence: delta,
                    timestamp: base_timestamp + i64::from(delta) * 3,
                    key: key.map(|k| k.to_vec().into()),
                    value: value.map(|v| v.to_vec().into()),
                    headers: headers
                        .iter()
                        .map(|&(k, v)| {
                            (
                                StrBytes::from_string(k.to_owned()),
                                v.map(|v| v.to_vec().into()),
                            )
                        })
                        .collect(),
                },
            )
            .collect();
        let mut out = Vec::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
        out
    }

    /// Sets a batch's length and checksum to match its bytes, after a test
    /// changed them.
    fn reseal(bytes: &mut [u8]) {
        let length = (bytes.len() - LOG_OVERHEAD) as i32;
        bytes[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c(&bytes[CRC_START..]);
        bytes[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
    }

    fn plain(base: i64, values: &[&str]) -> Vec<u8> {
        data(base, -1, 0, values)
    }

    fn txn(base: i64, producer_id: i64, values: &[&str]) -> Vec<u8> {
        data(base, producer_id, TRANSACTIONAL, values)
    }

    fn data(base: i64, producer_id: i64, attributes: i16, values: &[&str]) -> Vec<u8> {
        let records: Vec<Raw<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i32, Some(&b"k"[..]), Some(v.as_bytes()), &[][..]))
            .collect();
        batch(base, producer_id, attributes, 1_000, &records)
    }

    fn marker(offset: i64, producer_id: i64, marker: Marker) -> Vec<u8> {
        let kind: i16 = match marker {
            Marker::Abort => 0,
            Marker::Commit => 1,
        };
        let mut key = 0i16.to_be_bytes().to_vec();
        key.extend_from_slice(&kind.to_be_bytes());
        // The value (version, coordinator epoch) is not read.
        let value = [0u8, 0, 0, 0, 0, 3];
        batch(
            offset,
            producer_id,
            TRANSACTIONAL | CONTROL,
            1_000,
            &[(0, Some(&key), Some(&value), &[])],
        )
    }

    fn view(parts: &[Vec<u8>]) -> Committed {
        let bytes = parts.concat();
        committed_records(3, &parse_record_set(&bytes).unwrap())
    }

    fn values(committed: &Committed) -> Vec<&str> {
        committed
            .values()
            .into_iter()
            .map(|v| std::str::from_utf8(v.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn varints_decode_and_measure_edge_cases() {
        let cases: &[(&[u8], i32)] = &[
            (&[0x00], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x7e], 63),
            (&[0x7f], -64),
            (&[0x80, 0x01], 64),
            (&[0x81, 0x01], -65),
            (&[0xfe, 0xff, 0xff, 0xff, 0x0f], i32::MAX),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f], i32::MIN),
        ];
        for &(bytes, expected) in cases {
            assert_eq!(varint(bytes), Some((expected, bytes.len())), "{bytes:02x?}");
            assert_eq!(varint_len(i64::from(expected)), bytes.len(), "{bytes:02x?}");
        }
        // A non-minimal encoding is still the same value, and what follows
        // is not read.
        assert_eq!(varint(&[0x82, 0x80, 0x00, 0x05]), Some((1, 3)));
        // Cut off, and too long.
        for bytes in [
            &[][..],
            &[0x80][..],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..],
        ] {
            assert_eq!(varint(bytes), None, "{bytes:02x?}");
        }
        assert_eq!(varint_len(i64::MIN), 10);
        assert_eq!(varint_len(i64::MAX), 10);
    }

    #[test]
    fn a_plain_batch_is_read_whole() {
        let headers: &[(&str, Option<&[u8]>)] = &[("h", Some(b"v")), ("n", None)];
        let bytes = batch(
            40,
            -1,
            0,
            1_700_000_000_000,
            &[
                (0, Some(b"a"), Some(b"one"), headers),
                (1, None, None, &[]),
                (2, Some(b""), Some(b""), &[]),
            ],
        );
        let batches = parse_record_set(&bytes).unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!((b.base_offset, b.last_offset), (40, 42));
        assert!(!b.transactional && !b.control);
        let out = committed_records(3, &batches);
        assert_eq!(out.records.len(), 3);
        let first = &out.records[0];
        assert_eq!(first.partition, 3);
        assert_eq!(first.offset, 40);
        assert_eq!(first.timestamp, 1_700_000_000_000);
        assert_eq!(first.key.as_deref(), Some(&b"a"[..]));
        assert_eq!(first.value.as_deref(), Some(&b"one"[..]));
        assert_eq!(
            first.headers,
            vec![
                ("h".to_owned(), Some(b"v".to_vec())),
                ("n".to_owned(), None)
            ]
        );
        let second = &out.records[1];
        assert_eq!((second.offset, second.timestamp), (41, 1_700_000_000_003));
        assert_eq!(
            (second.key.as_deref(), second.value.as_deref()),
            (None, None)
        );
        assert_eq!(out.records[2].value.as_deref(), Some(&b""[..]));
        assert_eq!(
            (out.aborted, out.commits, out.aborts, out.open),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn log_append_time_replaces_record_timestamps() {
        let mut bytes = batch(0, -1, 0, 500, &[(0, None, Some(b"x"), &[])]);
        // What the broker writes for a topic with log-append time: the
        // attribute, and its append time as the batch's max timestamp.
        bytes[CRC_START + 1] |= LOG_APPEND_TIME as u8;
        bytes[35..43].copy_from_slice(&509i64.to_be_bytes());
        reseal(&mut bytes);
        let out = view(&[bytes]);
        assert_eq!(out.records[0].timestamp, 509);
    }

    #[test]
    fn a_committed_transaction_is_returned() {
        let out = view(&[txn(0, 7, &["a", "b", "c"]), marker(3, 7, Marker::Commit)]);
        assert_eq!(values(&out), ["a", "b", "c"]);
        assert_eq!(
            out.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            (out.aborted, out.commits, out.aborts, out.open),
            (0, 1, 0, 0)
        );
    }

    #[test]
    fn an_aborted_transaction_is_dropped() {
        let out = view(&[
            txn(0, 7, &["a", "b"]),
            txn(2, 7, &["c"]),
            marker(3, 7, Marker::Abort),
            plain(4, &["p"]),
        ]);
        assert_eq!(values(&out), ["p"]);
        assert_eq!(
            (out.aborted, out.commits, out.aborts, out.open),
            (3, 0, 1, 0)
        );
    }

    #[test]
    fn an_open_transaction_holds_back_what_follows_it() {
        let out = view(&[
            plain(0, &["before"]),
            txn(1, 7, &["open"]),
            plain(2, &["after"]),
            txn(3, 8, &["committed-after"]),
            marker(4, 8, Marker::Commit),
        ]);
        // Kafka's last stable offset is 1: nothing from there on is served.
        assert_eq!(values(&out), ["before"]);
        assert_eq!((out.open, out.held_back, out.commits), (1, 2, 1));
    }

    #[test]
    fn interleaved_producers_each_follow_their_own_marker() {
        let out = view(&[
            txn(0, 1, &["p1-a"]),
            txn(1, 2, &["p2-a"]),
            plain(2, &["plain"]),
            txn(3, 1, &["p1-b"]),
            marker(4, 2, Marker::Abort),
            txn(5, 2, &["p2-b"]),
            marker(6, 1, Marker::Commit),
            marker(7, 2, Marker::Commit),
            // Producer 1's next transaction aborts without touching the
            // committed one before it.
            txn(8, 1, &["p1-c"]),
            marker(9, 1, Marker::Abort),
        ]);
        assert_eq!(values(&out), ["p1-a", "plain", "p1-b", "p2-b"]);
        assert_eq!(
            out.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 2, 3, 5]
        );
        assert_eq!(
            (out.aborted, out.commits, out.aborts, out.open),
            (2, 2, 2, 0)
        );
    }

    #[test]
    fn a_truncated_tail_is_left_for_the_next_fetch() {
        let first = plain(0, &["a", "b"]);
        let second = plain(2, &["c"]);
        for cut in 0..second.len() {
            let bytes = [&first[..], &second[..cut]].concat();
            let batches = parse_record_set(&bytes).unwrap();
            assert_eq!(batches.len(), 1, "cut at {cut}");
            assert_eq!(batches[0].last_offset, 1);
        }
        assert_eq!(
            parse_record_set(&[first, second].concat()).unwrap().len(),
            2
        );
    }

    #[test]
    fn damaged_or_unsupported_batches_are_errors() {
        let good = plain(5, &["a"]);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let e = parse_record_set(&flipped).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        assert!(e.to_string().contains("offset 5"), "{e}");

        let compressed = raw_batch(1, 1, b"this is not gzip");
        let e = parse_record_set(&compressed).unwrap_err();
        assert!(e.to_string().contains("compressed"), "{e}");

        let mut magic1 = good.clone();
        magic1[16] = 1;
        let e = parse_record_set(&magic1).unwrap_err();
        assert!(e.to_string().contains("v1"), "{e}");

        let bad_marker = batch(
            9,
            4,
            TRANSACTIONAL | CONTROL,
            0,
            &[(0, Some(&[0, 0, 0][..]), None, &[])],
        );
        let e = parse_record_set(&bad_marker).unwrap_err();
        assert!(e.to_string().contains("control record at offset 9"), "{e}");

        let mut short = good.clone();
        short[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(parse_record_set(&short).is_err());
    }

    #[test]
    fn bytes_the_decoder_would_skip_are_errors() {
        // A byte after the last record.
        let mut after = plain(0, &["a"]);
        after.push(0);
        reseal(&mut after);
        let e = parse_record_set(&after).unwrap_err();
        assert!(
            e.to_string().contains("1 bytes left after its 1 records"),
            "{e}"
        );

        // A byte at the end of a record, inside its length (a one-byte
        // zigzag varint here, so one more is two more).
        let mut inside = plain(0, &["a"]);
        inside[BATCH_HEADER_LEN] += 2;
        inside.push(0);
        reseal(&mut inside);
        let e = parse_record_set(&inside).unwrap_err();
        assert!(
            e.to_string().contains("record 0 of 1 is 9 bytes long"),
            "{e}"
        );

        // Two headers with one key, which the decoder would merge.
        let headers: &[(&str, Option<&[u8]>)] = &[("h1", Some(b"x")), ("h2", Some(b"y"))];
        let mut repeated = batch(0, -1, 0, 0, &[(0, None, Some(b"v"), headers)]);
        let at = repeated.windows(2).rposition(|w| w == b"h2").unwrap();
        repeated[at + 1] = b'1';
        reseal(&mut repeated);
        let e = parse_record_set(&repeated).unwrap_err();
        assert!(e.to_string().contains("repeated header key"), "{e}");
    }

    #[test]
    fn a_fetch_response_is_parsed_and_its_errors_named() {
        let records = plain(0, &["a"]);
        // Fetch v4 with response header v0.
        let response = |error: i16| {
            let mut r = Vec::new();
            r.extend_from_slice(&9i32.to_be_bytes()); // correlation id
            r.extend_from_slice(&0i32.to_be_bytes()); // throttle
            r.extend_from_slice(&1i32.to_be_bytes()); // one topic
            r.extend_from_slice(&1i16.to_be_bytes());
            r.push(b't');
            r.extend_from_slice(&2i32.to_be_bytes()); // two partitions
            for (partition, bytes) in [(0i32, &[][..]), (1, &records[..])] {
                r.extend_from_slice(&partition.to_be_bytes());
                r.extend_from_slice(&error.to_be_bytes());
                r.extend_from_slice(&1i64.to_be_bytes()); // high watermark
                r.extend_from_slice(&1i64.to_be_bytes()); // last stable offset
                r.extend_from_slice(&(-1i32).to_be_bytes()); // aborted: null
                r.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                r.extend_from_slice(bytes);
            }
            r
        };
        let ok = parse_fetch_response(&response(0), 9, "t", 1).unwrap();
        assert_eq!(
            (ok.high_watermark, ok.records.as_deref()),
            (1, Some(&records[..]))
        );
        assert!(parse_fetch_response(&response(0), 8, "t", 1).is_err());
        assert!(parse_fetch_response(&response(0), 9, "t", 2).is_err());
        let e = parse_fetch_response(&response(3), 9, "t", 1).unwrap_err();
        assert!(e.to_string().contains("UnknownTopicOrPartition"), "{e}");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn metadata_names_the_leader_or_what_is_missing() {
        // Metadata v4 answers of the development broker (correlation id 1)
        // for topic "e" with one partition, and for a missing topic "nope".
        let one = hex(
            "0000000100000000000000010000006f00093132372e302e302e31000098b5ffff000d74616e7375\
             5f636c75737465720000006f00000001000000016500000000010000000000000000006f00000001\
             0000006f000000010000006f",
        );
        let missing = hex(
            "0000000100000000000000010000006f00093132372e302e302e31000098b5ffff000d74616e7375\
             5f636c75737465720000006f00000001000300046e6f70650000000000",
        );
        assert_eq!(
            parse_metadata_response(&one, 1, "e", 0).unwrap(),
            "127.0.0.1:39093"
        );
        let e = parse_metadata_response(&one, 1, "e", 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("has 1 partitions"), "{e}");
        let e = parse_metadata_response(&missing, 1, "nope", 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(parse_metadata_response(&one, 2, "e", 0).is_err());
    }

    #[test]
    fn the_fetch_request_has_the_v4_layout() {
        let request = fetch_request("t", 2, 17, 1024);
        let frame = request_frame(ApiKey::Fetch, FETCH_VERSION, 5, &request).unwrap();
        let mut expected = Vec::new();
        // Request header v1: api key, version, correlation id, client id.
        expected.extend_from_slice(&1i16.to_be_bytes());
        expected.extend_from_slice(&4i16.to_be_bytes());
        expected.extend_from_slice(&5i32.to_be_bytes());
        expected.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
        expected.extend_from_slice(CLIENT_ID.as_bytes());
        // Replica id (a consumer), max wait, min bytes, max bytes, and
        // isolation level read_uncommitted.
        for n in [-1, FETCH_MAX_WAIT_MS, 1, 1024] {
            expected.extend_from_slice(&n.to_be_bytes());
        }
        expected.push(0);
        // One topic, "t", with one partition: index, offset, max bytes.
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&1i16.to_be_bytes());
        expected.push(b't');
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&17i64.to_be_bytes());
        expected.extend_from_slice(&1024i32.to_be_bytes());
        assert_eq!(frame[..4], (expected.len() as i32).to_be_bytes());
        assert_eq!(frame[4..], expected[..]);
    }
}
