//! What a `read_committed` consumer on Apache Kafka would see in a topic,
//! worked out from the raw log.
//!
//! The development broker stores transactional batches and their COMMIT and
//! ABORT markers, but its Fetch responses carry an empty aborted-transactions
//! list, so librdkafka's `read_committed` cannot hide aborted records (see
//! README.md, "Development broker"). This module fetches the raw record
//! batches itself over the Kafka wire protocol, with only `std`, and applies
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
use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::{Duration, Instant};

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
pub fn parse_batch(bytes: &[u8]) -> io::Result<RecordBatch> {
    let mut r = Reader::new(bytes);
    let base_offset = r.i64()?;
    let at = |what: &str| format!("batch at offset {base_offset}: {what}");
    let length = r.i32()?;
    if usize::try_from(length).ok() != Some(bytes.len() - LOG_OVERHEAD) {
        return Err(invalid(at(&format!(
            "length {length} does not match its {} bytes",
            bytes.len() - LOG_OVERHEAD
        ))));
    }
    let _partition_leader_epoch = r.i32()?;
    let magic = r.i8()?;
    if magic != 2 {
        return Err(invalid(at(&format!(
            "message format v{magic}, only v2 is supported"
        ))));
    }
    let crc = r.u32()?;
    // The checksum covers everything from the attributes on.
    let computed = crc32c(&bytes[r.pos..]);
    if crc != computed {
        return Err(invalid(at(&format!(
            "checksum {crc:#010x} does not match the content's {computed:#010x}"
        ))));
    }
    let attributes = r.i16()?;
    let compression = attributes & COMPRESSION_MASK;
    if compression != 0 {
        return Err(invalid(at(&format!(
            "compressed (codec {compression}); this reader handles uncompressed batches only, \
             produce with compression.type=none"
        ))));
    }
    let last_offset_delta = r.i32()?;
    let base_timestamp = r.i64()?;
    let max_timestamp = r.i64()?;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let _base_sequence = r.i32()?;
    let count = r.i32()?;
    let count = usize::try_from(count)
        .map_err(|_| invalid(at(&format!("negative record count {count}"))))?;
    let mut records = Vec::with_capacity(count.min(bytes.len()));
    for index in 0..count {
        let record = parse_record(&mut r, base_offset, base_timestamp)
            .map_err(|e| invalid(at(&format!("record {index} of {count}: {e}"))))?;
        records.push(if attributes & LOG_APPEND_TIME != 0 {
            // The broker's append time replaces every record's own.
            Record {
                timestamp: max_timestamp,
                ..record
            }
        } else {
            record
        });
    }
    if attributes & CONTROL != 0 {
        for record in &records {
            control_marker(record).map_err(|e| invalid(at(&e.to_string())))?;
        }
    }
    if r.remaining() != 0 {
        return Err(invalid(at(&format!(
            "{} bytes left after its {count} records",
            r.remaining()
        ))));
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

fn parse_record(r: &mut Reader<'_>, base_offset: i64, base_timestamp: i64) -> io::Result<Record> {
    let length = r.varint()?;
    let length =
        usize::try_from(length).map_err(|_| invalid(format!("negative record length {length}")))?;
    let mut body = Reader::new(r.bytes(length)?);
    let _attributes = body.i8()?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes()?;
    let value = body.nullable_bytes()?;
    let header_count = body.varint()?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| invalid(format!("negative header count {header_count}")))?;
    let mut headers = Vec::with_capacity(header_count.min(length));
    for _ in 0..header_count {
        let key = body
            .nullable_bytes()?
            .ok_or_else(|| invalid("null header key".to_owned()))?;
        let key =
            String::from_utf8(key).map_err(|_| invalid("header key is not UTF-8".to_owned()))?;
        headers.push((key, body.nullable_bytes()?));
    }
    if body.remaining() != 0 {
        return Err(invalid(format!(
            "{} bytes left in a record of {length}",
            body.remaining()
        )));
    }
    Ok(Record {
        offset: base_offset + i64::from(offset_delta),
        timestamp: base_timestamp.wrapping_add(timestamp_delta),
        key,
        value,
        headers,
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The same error with where it happened in front.
fn in_partition(topic: &str, partition: i32, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{topic}/{partition}: {e}"))
}

/// A bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn bytes(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let Some(slice) = self.buf.get(self.pos..).and_then(|rest| rest.get(..n)) else {
            return Err(invalid(format!(
                "needs {n} bytes at position {}, {} left",
                self.pos,
                self.remaining()
            )));
        };
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    fn i8(&mut self) -> io::Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> io::Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A string with an i16 length, -1 meaning null.
    fn nullable_string(&mut self) -> io::Result<Option<&'a [u8]>> {
        let len = self.i16()?;
        match usize::try_from(len) {
            Ok(n) => Ok(Some(self.bytes(n)?)),
            Err(_) => Ok(None),
        }
    }

    /// An array's length, -1 (null) read as empty.
    fn array_len(&mut self) -> io::Result<usize> {
        Ok(usize::try_from(self.i32()?).unwrap_or(0))
    }

    /// An unsigned LEB128 value of at most `max_bytes` bytes.
    fn unsigned_varint(&mut self, max_bytes: usize) -> io::Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..max_bytes {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(invalid(format!("varint at position {start} is cut off")));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid(format!(
            "varint at position {start} is longer than {max_bytes} bytes"
        )))
    }

    /// A zigzag-encoded 32-bit varint.
    fn varint(&mut self) -> io::Result<i32> {
        let start = self.pos;
        let raw = u32::try_from(self.unsigned_varint(5)?)
            .map_err(|_| invalid(format!("varint at position {start} exceeds 32 bits")))?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag-encoded 64-bit varint.
    fn varlong(&mut self) -> io::Result<i64> {
        let start = self.pos;
        let raw = self.unsigned_varint(10)?;
        // The tenth byte may only carry the 64th bit.
        if self.pos - start == 10 && self.buf[self.pos - 1] > 1 {
            return Err(invalid(format!(
                "varlong at position {start} exceeds 64 bits"
            )));
        }
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Bytes prefixed by a varint length, -1 meaning null.
    fn nullable_bytes(&mut self) -> io::Result<Option<Vec<u8>>> {
        let at = self.pos;
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(invalid(format!("length {n} at position {at}"))),
            n => Ok(Some(self.bytes(n as usize)?.to_vec())),
        }
    }
}

/// CRC-32C (Castagnoli), the checksum of record batches v2.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// ---------------------------------------------------------------------------
// Writing a raw batch.

/// Produce v3: the first version that carries record batches v2, and
/// non-flexible.
const PRODUCE_API_KEY: i16 = 0;
const PRODUCE_VERSION: i16 = 3;

/// A record batch v2 at base offset 0 whose attributes name compression
/// `codec` (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd; 5 to 7 are no codec
/// at all) and whose `count` records are `payload`, taken as compressed
/// as is, with a correct checksum: for tests of batches a consumer cannot
/// read, which no well-behaved producer writes.
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
    connection.correlation_id = 1;
    let mut request = request_header(PRODUCE_API_KEY, PRODUCE_VERSION, 1)?;
    request.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    request.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    request.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    request.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut request, topic)?;
    request.extend_from_slice(&1i32.to_be_bytes()); // one partition
    request.extend_from_slice(&partition.to_be_bytes());
    let size = i32::try_from(batch.len()).map_err(|_| invalid("batch too large".into()))?;
    request.extend_from_slice(&size.to_be_bytes());
    request.extend_from_slice(batch);
    let response = connection.round_trip(&request)?;
    let mut r = Reader::new(&response);
    check_correlation(&mut r, 1)?;
    for _ in 0..r.array_len()? {
        r.nullable_string()?; // topic
        for _ in 0..r.array_len()? {
            r.i32()?; // partition
            let code = r.i16()?;
            if code != 0 {
                return Err(broker_error(code));
            }
            r.i64()?; // base offset
            r.i64()?; // log append time
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The Fetch request over TCP.

/// Fetch v4: the first version with isolation levels and the last stable
/// offset, and non-flexible (no tagged fields), which every broker since
/// Kafka 0.11 and the development broker accept.
const FETCH_API_KEY: i16 = 1;
const FETCH_VERSION: i16 = 4;
/// Metadata v4: the first version that can ask not to create a missing
/// topic, and non-flexible.
const METADATA_API_KEY: i16 = 3;
const METADATA_VERSION: i16 = 4;
const CLIENT_ID: &str = "tests-committed-reader";
const FETCH_MAX_WAIT_MS: i32 = 10;
/// How long without progress before giving up.
const NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest per-partition fetch size tried when one batch does not fit.
const MAX_PARTITION_BYTES: i32 = 64 << 20;

/// One partition's part of a Fetch response.
struct FetchedPartition {
    high_watermark: i64,
    records: Vec<u8>,
}

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
        let parsed = parse_record_set(&fetched.records).map_err(|e| {
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
        if whole_batches == 0 && !fetched.records.is_empty() {
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
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut request = request_header(METADATA_API_KEY, METADATA_VERSION, self.correlation_id)?;
        request.extend_from_slice(&1i32.to_be_bytes()); // one topic
        put_string(&mut request, topic)?;
        request.push(0); // allow_auto_topic_creation: false
        let address = self.address.clone();
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("metadata v{METADATA_VERSION} from {address}: {e}"),
            )
        };
        let response = self.round_trip(&request).map_err(context)?;
        parse_metadata_response(&response, self.correlation_id, topic, partition).map_err(context)
    }

    fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        partition_bytes: i32,
    ) -> io::Result<FetchedPartition> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let request = fetch_request(
            self.correlation_id,
            topic,
            partition,
            offset,
            partition_bytes,
        )?;
        let address = self.address.clone();
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("fetch v{FETCH_VERSION} at offset {offset} from {address}: {e}"),
            )
        };
        let response = self.round_trip(&request).map_err(context)?;
        parse_fetch_response(&response, self.correlation_id, topic, partition).map_err(context)
    }

    /// Sends a request (without its size prefix) and returns the response
    /// body (without its size prefix).
    fn round_trip(&mut self, request: &[u8]) -> io::Result<Vec<u8>> {
        let size = i32::try_from(request.len()).expect("a small request");
        self.stream.write_all(&size.to_be_bytes())?;
        self.stream.write_all(request)?;
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

fn put_string(out: &mut Vec<u8>, s: &str) -> io::Result<()> {
    let len = i16::try_from(s.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} is too long")))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Request header v1: api key, version, correlation id, client id.
fn request_header(api_key: i16, version: i16, correlation_id: i32) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&correlation_id.to_be_bytes());
    put_string(&mut out, CLIENT_ID)?;
    Ok(out)
}

/// The leader's `host:port` for `topic`/`partition` in a Metadata v4
/// response.
fn parse_metadata_response(
    response: &[u8],
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> io::Result<String> {
    let mut r = Reader::new(response);
    check_correlation(&mut r, correlation_id)?;
    let _throttle_time_ms = r.i32()?;
    let mut brokers = HashMap::new();
    for _ in 0..r.array_len()? {
        let node_id = r.i32()?;
        let host = r.nullable_string()?.unwrap_or_default();
        let port = r.i32()?;
        let _rack = r.nullable_string()?;
        brokers.insert(node_id, format!("{}:{port}", String::from_utf8_lossy(host)));
    }
    let _cluster_id = r.nullable_string()?;
    let _controller_id = r.i32()?;
    for _ in 0..r.array_len()? {
        let error_code = r.i16()?;
        let name = r.nullable_string()?.unwrap_or_default();
        let _is_internal = r.i8()?;
        let mut partitions = Vec::new();
        for _ in 0..r.array_len()? {
            let error_code = r.i16()?;
            let index = r.i32()?;
            let leader = r.i32()?;
            for _ in 0..2 {
                // Replicas, then in-sync replicas.
                for _ in 0..r.array_len()? {
                    r.i32()?;
                }
            }
            partitions.push((index, error_code, leader));
        }
        if name != topic.as_bytes() {
            continue;
        }
        if error_code == 3 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the topic does not exist".to_owned(),
            ));
        }
        if error_code != 0 {
            return Err(broker_error(error_code));
        }
        let Some(&(_, error_code, leader)) = partitions.iter().find(|p| p.0 == partition) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the partition does not exist: the topic has {} partitions",
                    partitions.len()
                ),
            ));
        };
        if error_code != 0 {
            return Err(broker_error(error_code));
        }
        return brokers.remove(&leader).ok_or_else(|| {
            io::Error::other(format!(
                "the leader, broker {leader}, is not among the brokers"
            ))
        });
    }
    Err(invalid(
        "the response does not include the topic".to_owned(),
    ))
}

fn check_correlation(r: &mut Reader<'_>, expected: i32) -> io::Result<()> {
    let got = r.i32()?;
    if got != expected {
        return Err(invalid(format!(
            "response to request {got} while waiting for {expected}"
        )));
    }
    Ok(())
}

fn broker_error(code: i16) -> io::Error {
    io::Error::other(format!(
        "broker answered error {code} ({})",
        error_name(code)
    ))
}

/// A Fetch v4 request for one partition, with request header v1, in
/// read_uncommitted mode: the markers and aborted records are wanted too.
fn fetch_request(
    correlation_id: i32,
    topic: &str,
    partition: i32,
    offset: i64,
    partition_bytes: i32,
) -> io::Result<Vec<u8>> {
    let mut out = request_header(FETCH_API_KEY, FETCH_VERSION, correlation_id)?;
    out.extend_from_slice(&(-1i32).to_be_bytes()); // replica_id: a consumer
    // The development broker answers a zero max_wait_ms with no partitions
    // at all, and waits out max_wait_ms when there is nothing to return:
    // keep it short but not zero.
    out.extend_from_slice(&FETCH_MAX_WAIT_MS.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes()); // min_bytes
    out.extend_from_slice(&partition_bytes.to_be_bytes()); // max_bytes
    out.push(0); // isolation_level: read_uncommitted
    out.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut out, topic)?;
    out.extend_from_slice(&1i32.to_be_bytes()); // one partition
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&partition_bytes.to_be_bytes());
    Ok(out)
}

/// Picks `topic`/`partition` out of a Fetch v4 response (response header
/// v0), turning a partition error code into an error.
fn parse_fetch_response(
    response: &[u8],
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> io::Result<FetchedPartition> {
    let mut r = Reader::new(response);
    check_correlation(&mut r, correlation_id)?;
    let _throttle_time_ms = r.i32()?;
    let mut found = None;
    for _ in 0..r.array_len()? {
        let name = r.nullable_string()?.unwrap_or_default();
        for _ in 0..r.array_len()? {
            let index = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            let _last_stable_offset = r.i64()?;
            for _ in 0..r.array_len()? {
                // Aborted transactions: empty on the development broker,
                // and the markers in the log say the same anyway.
                let _producer_id = r.i64()?;
                let _first_offset = r.i64()?;
            }
            let records_len = r.i32()?;
            let records = match usize::try_from(records_len) {
                Ok(n) => r.bytes(n)?.to_vec(),
                Err(_) => Vec::new(), // -1: null
            };
            if name == topic.as_bytes() && index == partition {
                if error_code != 0 {
                    return Err(broker_error(error_code));
                }
                found = Some(FetchedPartition {
                    high_watermark,
                    records,
                });
            }
        }
    }
    found.ok_or_else(|| {
        invalid(format!(
            "the response does not include the partition ({} bytes)",
            response.len()
        ))
    })
}

fn error_name(code: i16) -> &'static str {
    match code {
        1 => "OFFSET_OUT_OF_RANGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION: no such topic or partition",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER: this reader only talks to the bootstrap broker",
        35 => "UNSUPPORTED_VERSION",
        _ => "see the Kafka protocol's error codes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record to encode: offset delta, key, value, headers.
    type Raw<'a> = (
        i32,
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        &'a [(&'a str, Option<&'a [u8]>)],
    );

    fn zigzag(value: i64) -> u64 {
        ((value << 1) ^ (value >> 63)) as u64
    }

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut raw = zigzag(value);
        while raw >= 0x80 {
            out.push((raw as u8 & 0x7f) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varlong(out, -1),
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Encodes a v2 batch by hand, as a producer or the broker would.
    fn batch(
        base_offset: i64,
        producer_id: i64,
        attributes: i16,
        base_timestamp: i64,
        records: &[Raw<'_>],
    ) -> Vec<u8> {
        let mut body = Vec::new(); // From the attributes on: what the CRC covers.
        body.extend_from_slice(&attributes.to_be_bytes());
        let last_delta = records.iter().map(|r| r.0).max().unwrap_or(0);
        body.extend_from_slice(&last_delta.to_be_bytes());
        body.extend_from_slice(&base_timestamp.to_be_bytes());
        body.extend_from_slice(&(base_timestamp + 9).to_be_bytes());
        body.extend_from_slice(&producer_id.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&(records.len() as i32).to_be_bytes());
        for &(delta, key, value, headers) in records {
            let mut record = vec![0u8];
            put_varlong(&mut record, i64::from(delta) * 3); // timestamp delta
            put_varlong(&mut record, i64::from(delta));
            put_bytes(&mut record, key);
            put_bytes(&mut record, value);
            put_varlong(&mut record, headers.len() as i64);
            for &(k, v) in headers {
                put_bytes(&mut record, Some(k.as_bytes()));
                put_bytes(&mut record, v);
            }
            put_varlong(&mut body, record.len() as i64);
            body.extend_from_slice(&record);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&base_offset.to_be_bytes());
        out.extend_from_slice(&((body.len() + 9) as i32).to_be_bytes());
        out.extend_from_slice(&7i32.to_be_bytes()); // partition leader epoch
        out.push(2);
        out.extend_from_slice(&crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
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
    fn varints_decode_edge_cases() {
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
            // A non-minimal encoding is still the same value.
            (&[0x82, 0x80, 0x00], 1),
        ];
        for &(bytes, expected) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint().unwrap(), expected, "{bytes:02x?}");
            assert_eq!(r.remaining(), 0, "{bytes:02x?}");
        }
        // Cut off, too long, and beyond 32 bits.
        for bytes in [
            &[][..],
            &[0x80][..],
            &[0xff, 0xff][..],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00][..],
            &[0xff, 0xff, 0xff, 0xff, 0x1f][..],
        ] {
            assert!(Reader::new(bytes).varint().is_err(), "{bytes:02x?}");
        }
    }

    #[test]
    fn varlongs_decode_edge_cases() {
        for value in [
            0,
            -1,
            1,
            300,
            -300,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ] {
            let mut bytes = Vec::new();
            put_varlong(&mut bytes, value);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varlong().unwrap(), value);
            assert_eq!(r.remaining(), 0);
        }
        let mut max = Vec::new();
        put_varlong(&mut max, i64::MIN);
        assert_eq!(max.len(), 10);
        // A tenth byte with more than the 64th bit, and an eleventh byte.
        let mut over = max.clone();
        *over.last_mut().unwrap() = 0x02;
        assert!(Reader::new(&over).varlong().is_err());
        let mut long = vec![0x80; 10];
        long.push(0);
        assert!(Reader::new(&long).varlong().is_err());
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
        let bytes = batch(0, -1, LOG_APPEND_TIME, 500, &[(0, None, Some(b"x"), &[])]);
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

        let compressed = data(5, -1, 1, &["a"]); // gzip
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
    fn a_fetch_response_is_parsed_and_its_errors_named() {
        let records = plain(0, &["a"]);
        let response = |error: i16| {
            let mut r = Vec::new();
            r.extend_from_slice(&9i32.to_be_bytes()); // correlation id
            r.extend_from_slice(&0i32.to_be_bytes()); // throttle
            r.extend_from_slice(&1i32.to_be_bytes());
            put_string(&mut r, "t").unwrap();
            r.extend_from_slice(&2i32.to_be_bytes());
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
        assert_eq!((ok.high_watermark, ok.records), (1, records.clone()));
        assert!(parse_fetch_response(&response(0), 8, "t", 1).is_err());
        assert!(parse_fetch_response(&response(0), 9, "t", 2).is_err());
        let e = parse_fetch_response(&response(3), 9, "t", 1).err().unwrap();
        assert!(e.to_string().contains("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");
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
        let request = fetch_request(5, "t", 2, 17, 1024).unwrap();
        let mut r = Reader::new(&request);
        assert_eq!((r.i16().unwrap(), r.i16().unwrap()), (1, 4));
        assert_eq!(r.i32().unwrap(), 5);
        let client = r.i16().unwrap() as usize;
        assert_eq!(r.bytes(client).unwrap(), CLIENT_ID.as_bytes());
        assert_eq!(r.i32().unwrap(), -1);
        r.bytes(12).unwrap(); // max wait, min bytes, max bytes
        assert_eq!(r.i8().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.i16().unwrap(), 1);
        assert_eq!(r.bytes(1).unwrap(), b"t");
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.i32().unwrap(), 2);
        assert_eq!(r.i64().unwrap(), 17);
        assert_eq!(r.i32().unwrap(), 1024);
        assert_eq!(r.remaining(), 0);
    }
}
