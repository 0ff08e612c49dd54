//! The tail cache: the most recent plaintext batches of a partition, so tailing consumers read
//! what was just appended without a disk read and a decryption. It holds contiguous offsets only
//! (newest last); an append that does not continue the cached range starts it over. Capacity is
//! in bytes and small by default ([`super::DEFAULT_CACHE_BYTES`]): an edge node may hold many
//! partitions.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Recent plaintext batches (base offset, last offset, bytes), contiguous, newest last.
pub(super) struct TailCache {
    batches: VecDeque<(i64, i64, Bytes)>,
    bytes: usize,
    capacity: usize,
}

impl TailCache {
    /// An empty cache holding up to `capacity` bytes (0 disables it).
    pub(super) fn new(capacity: usize) -> TailCache {
        TailCache {
            batches: VecDeque::new(),
            bytes: 0,
            capacity,
        }
    }

    /// Change the capacity; 0 disables the cache and empties it.
    pub(super) fn set_capacity(&mut self, bytes: usize) {
        self.capacity = bytes;
        if bytes == 0 {
            self.clear();
        }
    }

    /// Add the batch `[base, last]`; evicts the oldest batches beyond the capacity (the newest
    /// batch is kept even if it alone exceeds it).
    pub(super) fn push(&mut self, base: i64, last: i64, data: Bytes) {
        if self.capacity == 0 {
            return;
        }
        if let Some(&(_, prev_last, _)) = self.batches.back() {
            if prev_last + 1 != base {
                self.clear();
            }
        }
        self.bytes += data.len();
        self.batches.push_back((base, last, data));
        while self.bytes > self.capacity && self.batches.len() > 1 {
            if let Some((_, _, d)) = self.batches.pop_front() {
                self.bytes -= d.len();
            }
        }
    }

    /// Forget everything (the log changed under the cache: compaction swap, close).
    pub(super) fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    /// Batches from the one containing `from`, below `limit`, up to `max_bytes` (at least one).
    pub(super) fn read(&self, from: i64, max_bytes: usize, limit: i64) -> Option<Bytes> {
        let first = self.batches.front()?;
        if from < first.0 {
            return None;
        }
        let i = self.batches.partition_point(|b| b.1 < from);
        let mut parts: Vec<&Bytes> = Vec::new();
        let mut total = 0usize;
        for (base, _, data) in self.batches.iter().skip(i) {
            if *base >= limit || (!parts.is_empty() && total + data.len() > max_bytes) {
                break;
            }
            total += data.len();
            parts.push(data);
        }
        match parts.len() {
            0 => None,
            1 => Some(parts[0].clone()),
            _ => {
                let mut b = BytesMut::with_capacity(total);
                for p in parts {
                    b.extend_from_slice(p);
                }
                Some(b.freeze())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn serves_from_the_batch_containing_the_offset_below_the_limit() {
        let mut c = TailCache::new(1000);
        c.push(0, 1, data(10, 1));
        c.push(2, 4, data(10, 2));
        c.push(5, 5, data(10, 3));
        assert_eq!(c.read(3, 100, 10).unwrap().len(), 20, "batches 2..4 and 5");
        assert_eq!(c.read(0, 100, 5).unwrap().len(), 20, "stops at the limit");
        assert_eq!(
            c.read(0, 15, 10).unwrap().len(),
            10,
            "max_bytes, at least one"
        );
        assert_eq!(
            c.read(0, 1, 10).unwrap().len(),
            10,
            "one batch even over max_bytes"
        );
        assert!(c.read(6, 100, 10).is_none(), "past the end");
        assert!(c.read(5, 100, 5).is_none(), "at the limit");
    }

    #[test]
    fn evicts_oldest_and_restarts_on_a_gap() {
        let mut c = TailCache::new(25);
        c.push(0, 0, data(10, 1));
        c.push(1, 1, data(10, 2));
        c.push(2, 2, data(10, 3));
        assert!(c.read(0, 100, 10).is_none(), "offset 0 was evicted");
        assert_eq!(c.read(1, 100, 10).unwrap().len(), 20);
        c.push(7, 7, data(5, 4)); // not contiguous: starts over
        assert!(c.read(2, 100, 10).is_none());
        assert_eq!(c.read(7, 100, 10).unwrap(), data(5, 4));
        let mut big = TailCache::new(4);
        big.push(0, 0, data(10, 1));
        assert!(big.read(0, 100, 10).is_some(), "the newest batch stays");
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = TailCache::new(100);
        c.push(0, 0, data(10, 1));
        c.set_capacity(0);
        assert!(c.read(0, 100, 10).is_none());
        c.push(1, 1, data(10, 1));
        assert!(c.read(1, 100, 10).is_none());
    }
}
