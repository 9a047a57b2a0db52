//! The Java client's default partitioner, so keys land on the partitions
//! where Java producers and Kafka Streams put them.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a serialized key among `partitions`, as Java's
/// `BuiltInPartitioner.partitionForKey` computes it.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// How many records without a key go to one partition before the next
/// takes its turn (see [`partition_for_unkeyed`]): about what fills one of
/// the Java producer's 16 KB batches.
pub const UNKEYED_BATCH: u64 = 128;

/// The partition of the `n`-th record sent without a key or partitioner
/// among `partitions`: batches of [`UNKEYED_BATCH`] records in turn, as
/// Java's sticky partitioner spreads them (one batch per partition, then
/// the next). Chosen here rather than by librdkafka's sticky partitioner,
/// which reads the clock and locks the topic for every record.
pub fn partition_for_unkeyed(n: u64, partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    ((n / UNKEYED_BATCH) % partitions as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unkeyed_records_visit_every_partition_in_batches() {
        let chosen: Vec<i32> = (0..UNKEYED_BATCH * 7)
            .map(|n| partition_for_unkeyed(n, 3))
            .collect();
        for (batch, records) in chosen.chunks(UNKEYED_BATCH as usize).enumerate() {
            assert!(records.iter().all(|&p| p == (batch % 3) as i32), "{batch}");
        }
        assert_eq!(partition_for_unkeyed(u64::MAX, 1), 0);
    }

    #[test]
    fn matches_kafkas_own_test_vectors() {
        // org.apache.kafka.common.utils.UtilsTest.testMurmur2
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
        // librdkafka's rdmurmur2 unit test, which checks the same function.
        assert_eq!(murmur2(b"kafka") as u32, 0xd067_cf64);
        assert_eq!(murmur2(b"giberish123456789") as u32, 0x8f55_2b0c);
        assert_eq!(murmur2(b"1234") as u32, 0x9fc9_7b14);
        assert_eq!(murmur2(b"234") as u32, 0xe7c0_09ca);
        assert_eq!(murmur2(b"34") as u32, 0x8739_30da);
        assert_eq!(murmur2(b"4") as u32, 0x5a4b_5ca1);
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn partitions_are_positive_and_in_range() {
        // -973932308 & 0x7fffffff = 1173551340; % 3 = 0, % 12 = 0, % 7 = 6
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        for i in 0..1000u32 {
            let p = partition_for_key(&i.to_be_bytes(), 5);
            assert!((0..5).contains(&p));
        }
    }
}
