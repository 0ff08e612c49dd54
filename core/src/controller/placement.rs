//! Replica placement for new topics and partitions: Kafka's round-robin assignment
//! (`AdminUtils.assignReplicasToBrokersRackUnaware` / `...RackAware`).
//!
//! Partition `p`'s first replica (its preferred leader) is broker `(p + start) % n` of the broker
//! list, so leaders spread evenly; the other replicas follow at a shift that grows by one every `n`
//! partitions, so followers spread too. With racks, the broker list alternates racks first and a
//! replica is skipped while a rack (or broker) without a replica of the partition remains. The
//! start index and shift are random in Kafka (so topics do not all lead on broker 0); the caller
//! passes them in, so the active controller chooses and the log records the result.

/// A broker that may receive replicas, with its rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    pub broker_id: i32,
    pub rack: Option<String>,
}

/// Where the round robin starts (Kafka picks both at random per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementStart {
    /// Index of the first partition's leader in the broker list.
    pub start_index: usize,
    /// Initial shift of the followers from the leader.
    pub replica_shift: usize,
}

impl PlacementStart {
    /// A random start, as Kafka does.
    pub fn random() -> Self {
        let mut buf = [0u8; 16];
        // Without randomness the placement is still valid, only less spread over topics.
        let _ = getrandom::fill(&mut buf);
        let (a, b) = buf.split_at(8);
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w) as usize
        };
        Self {
            start_index: word(a),
            replica_shift: word(b),
        }
    }

    /// A fixed start (tests, reproducible plans).
    pub fn fixed(index: usize) -> Self {
        Self {
            start_index: index,
            replica_shift: index,
        }
    }
}

/// Why replicas cannot be placed (Kafka's INVALID_REPLICATION_FACTOR / INVALID_PARTITIONS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// INVALID_REPLICATION_FACTOR: zero/negative, or more than the usable brokers.
    #[error("replication factor {replication_factor} is invalid with {brokers} usable broker(s)")]
    InvalidReplicationFactor {
        replication_factor: i32,
        brokers: usize,
    },
    /// INVALID_PARTITIONS: zero or negative partition count.
    #[error("partition count {0} is invalid")]
    InvalidPartitions(i32),
    /// Some brokers have a rack and others not (Kafka refuses rack-aware placement then).
    #[error("not all brokers have rack information for rack-aware replica placement")]
    MixedRacks,
}

/// Replica lists for partitions `first_partition..first_partition + partitions`, one per partition,
/// the preferred leader first. Brokers are used in id order.
pub fn assign_replicas(
    brokers: &[PlacementBroker],
    partitions: i32,
    replication_factor: i32,
    first_partition: i32,
    start: PlacementStart,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if partitions <= 0 {
        return Err(PlacementError::InvalidPartitions(partitions));
    }
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 || rf > brokers.len() {
        return Err(PlacementError::InvalidReplicationFactor {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|b| b.broker_id);
    let racked = sorted.iter().filter(|b| b.rack.is_some()).count();
    let partitions = usize::try_from(partitions).unwrap_or(0);
    let first_partition = usize::try_from(first_partition).unwrap_or(0);
    if racked == 0 {
        let ids: Vec<i32> = sorted.iter().map(|b| b.broker_id).collect();
        Ok(rack_unaware(&ids, partitions, rf, first_partition, start))
    } else if racked == sorted.len() {
        Ok(rack_aware(&sorted, partitions, rf, first_partition, start))
    } else {
        Err(PlacementError::MixedRacks)
    }
}

/// Kafka's `replicaIndex`: the broker index of the `j`-th follower.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    let shift = 1 + (shift + j) % (n - 1);
    (first + shift) % n
}

fn rack_unaware(
    ids: &[i32],
    partitions: usize,
    rf: usize,
    first_partition: usize,
    start: PlacementStart,
) -> Vec<Vec<i32>> {
    let n = ids.len();
    let start_index = start.start_index % n;
    let mut shift = start.replica_shift % n;
    let mut out = Vec::with_capacity(partitions);
    for p in first_partition..first_partition + partitions {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start_index) % n;
        let mut replicas = vec![ids[first]];
        replicas.extend((0..rf - 1).map(|j| ids[replica_index(first, shift, j, n)]));
        out.push(replicas);
    }
    out
}

/// Kafka's `getRackAlternatedBrokerList`: racks in name order, taking one broker of each in turn.
fn rack_alternated(brokers: &[PlacementBroker]) -> Vec<(i32, &str)> {
    let mut by_rack: std::collections::BTreeMap<&str, std::collections::VecDeque<i32>> =
        Default::default();
    for b in brokers {
        if let Some(rack) = &b.rack {
            by_rack.entry(rack).or_default().push_back(b.broker_id);
        }
    }
    let mut out = Vec::with_capacity(brokers.len());
    while out.len() < brokers.len() {
        for (rack, ids) in by_rack.iter_mut() {
            if let Some(id) = ids.pop_front() {
                out.push((id, *rack));
            }
        }
    }
    out
}

fn rack_aware(
    brokers: &[PlacementBroker],
    partitions: usize,
    rf: usize,
    first_partition: usize,
    start: PlacementStart,
) -> Vec<Vec<i32>> {
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    let racks = arranged
        .iter()
        .map(|(_, r)| *r)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let start_index = start.start_index % n;
    let mut shift = start.replica_shift % n;
    let mut out = Vec::with_capacity(partitions);
    for p in first_partition..first_partition + partitions {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start_index) % n;
        let (leader, leader_rack) = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_with = vec![leader_rack];
        let mut k = 0;
        for _ in 0..rf - 1 {
            loop {
                let (broker, rack) = arranged[replica_index(first, shift * racks, k, n)];
                k += 1;
                let rack_ok = !racks_with.contains(&rack) || racks_with.len() == racks;
                let broker_ok = !replicas.contains(&broker) || replicas.len() == n;
                if rack_ok && broker_ok {
                    replicas.push(broker);
                    if !racks_with.contains(&rack) {
                        racks_with.push(rack);
                    }
                    break;
                }
            }
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn plain(ids: &[i32]) -> Vec<PlacementBroker> {
        ids.iter()
            .map(|&broker_id| PlacementBroker {
                broker_id,
                rack: None,
            })
            .collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<PlacementBroker> {
        spec.iter()
            .map(|&(broker_id, rack)| PlacementBroker {
                broker_id,
                rack: Some(rack.to_string()),
            })
            .collect()
    }

    #[test]
    fn rack_unaware_matches_kafkas_assignment() {
        // Kafka's AdminUtilsTest.testReplicaAssignment: 5 brokers, 10 partitions, RF 3,
        // fixed start index 0.
        let got =
            assign_replicas(&plain(&[0, 1, 2, 3, 4]), 10, 3, 0, PlacementStart::fixed(0)).unwrap();
        let want: Vec<Vec<i32>> = vec![
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 0],
            vec![4, 0, 1],
            vec![0, 2, 3],
            vec![1, 3, 4],
            vec![2, 4, 0],
            vec![3, 0, 1],
            vec![4, 1, 2],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let brokers = plain(&[1, 2, 3]);
        for start in 0..6 {
            let got = assign_replicas(&brokers, 6, 3, 0, PlacementStart::fixed(start)).unwrap();
            let mut leaders = BTreeMap::new();
            for r in &got {
                assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{got:?}");
                *leaders.entry(r[0]).or_insert(0) += 1;
            }
            assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        }
    }

    #[test]
    fn rack_aware_puts_each_replica_on_another_rack() {
        let brokers = racked(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]);
        let rack_of: BTreeMap<i32, &str> =
            [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]
                .into_iter()
                .collect();
        for start in 0..6 {
            let got = assign_replicas(&brokers, 12, 3, 0, PlacementStart::fixed(start)).unwrap();
            let mut leaders = BTreeMap::new();
            for r in &got {
                let racks: BTreeSet<_> = r.iter().map(|b| rack_of[b]).collect();
                assert_eq!(racks.len(), 3, "replicas {r:?} share a rack");
                *leaders.entry(r[0]).or_insert(0) += 1;
            }
            assert_eq!(
                leaders.len(),
                6,
                "every broker leads some partition: {got:?}"
            );
        }
    }

    #[test]
    fn rack_aware_with_more_replicas_than_racks_still_uses_distinct_brokers() {
        let brokers = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b")]);
        let got = assign_replicas(&brokers, 8, 3, 0, PlacementStart::fixed(1)).unwrap();
        for r in &got {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{got:?}");
        }
    }

    #[test]
    fn invalid_requests_are_refused() {
        let b = plain(&[1, 2]);
        assert_eq!(
            assign_replicas(&b, 1, 3, 0, PlacementStart::fixed(0)),
            Err(PlacementError::InvalidReplicationFactor {
                replication_factor: 3,
                brokers: 2
            })
        );
        assert!(matches!(
            assign_replicas(&b, 1, 0, 0, PlacementStart::fixed(0)),
            Err(PlacementError::InvalidReplicationFactor { .. })
        ));
        assert_eq!(
            assign_replicas(&b, 0, 1, 0, PlacementStart::fixed(0)),
            Err(PlacementError::InvalidPartitions(0))
        );
        let mut mixed = racked(&[(1, "a")]);
        mixed.extend(plain(&[2]));
        assert_eq!(
            assign_replicas(&mixed, 1, 1, 0, PlacementStart::fixed(0)),
            Err(PlacementError::MixedRacks)
        );
        // One broker, RF 1: no follower shift is computed (no division by zero).
        let one = assign_replicas(&plain(&[7]), 3, 1, 0, PlacementStart::random()).unwrap();
        assert_eq!(one, vec![vec![7], vec![7], vec![7]]);
    }

    #[test]
    fn added_partitions_continue_the_round_robin() {
        let b = plain(&[0, 1, 2, 3, 4]);
        let all = assign_replicas(&b, 10, 3, 0, PlacementStart::fixed(0)).unwrap();
        let tail = assign_replicas(&b, 4, 3, 6, PlacementStart::fixed(0)).unwrap();
        // Leaders depend only on the partition id and the start index, so partitions added
        // later continue the leader rotation of the first ones.
        let leaders: Vec<i32> = tail.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, all[6..].iter().map(|r| r[0]).collect::<Vec<_>>());
    }
}
