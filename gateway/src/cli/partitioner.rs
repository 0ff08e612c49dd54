//! Choosing a partition for a produced record, as Kafka's Java producer does: murmur2 of the key
//! when there is one (so keyed records land where any Kafka client would put them), otherwise a
//! sticky partition that moves round robin to the next partition after each batch.

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
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

/// The partition Kafka's default partitioner picks for `key` among `partitions` partitions.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Partition choice for a producer: explicit, keyed (murmur2) or sticky round robin.
#[derive(Debug, Clone)]
pub struct Partitioner {
    partitions: i32,
    fixed: Option<i32>,
    sticky: i32,
}

impl Partitioner {
    /// A partitioner for a topic of `partitions` partitions; `fixed` sends everything to one.
    /// The sticky partition starts at `start` (callers pass something random).
    pub fn new(partitions: i32, fixed: Option<i32>, start: u32) -> Partitioner {
        let partitions = partitions.max(1);
        Partitioner {
            partitions,
            fixed,
            sticky: (start % partitions as u32) as i32,
        }
    }

    /// The partition for a record with this key.
    pub fn partition(&self, key: Option<&[u8]>) -> i32 {
        match (self.fixed, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, self.partitions),
            (None, None) => self.sticky,
        }
    }

    /// Called after a batch of unkeyed records was sent: move the sticky partition on.
    pub fn batch_done(&mut self) {
        self.sticky = (self.sticky + 1) % self.partitions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data),
                *want,
                "murmur2({:?})",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn keyed_partition_matches_java_producer() {
        // Values cross-checked with kafka-python's DefaultPartitioner (same murmur2).
        assert_eq!(partition_for_key(b"a-little-bit-long-string", 6), 2);
        assert_eq!(partition_for_key(b"a-little-bit-longer-string", 6), 5);
        assert_eq!(partition_for_key(b"abc", 6), 3);
        assert_eq!(partition_for_key(b"", 6), 3);
        assert_eq!(partition_for_key(b"key-1", 6), 0);
    }

    #[test]
    fn sticky_moves_round_robin_per_batch() {
        let mut p = Partitioner::new(3, None, 7);
        assert_eq!(p.partition(None), 1);
        assert_eq!(p.partition(None), 1);
        p.batch_done();
        assert_eq!(p.partition(None), 2);
        p.batch_done();
        assert_eq!(p.partition(None), 0);
        assert_eq!(p.partition(Some(b"abc")), partition_for_key(b"abc", 3));
        let fixed = Partitioner::new(3, Some(2), 0);
        assert_eq!(fixed.partition(Some(b"abc")), 2);
        assert_eq!(fixed.partition(None), 2);
    }
}
