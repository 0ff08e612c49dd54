//! Choosing a partition for a produced record, as Kafka's Java producer does: murmur2 of the key
//! when there is one (so keyed records land where any Kafka client would put them), otherwise a
//! sticky partition that moves round robin to the next partition after each batch.

use rill_core::partitioner::partition_for_key;

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
