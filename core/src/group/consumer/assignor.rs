//! Server-side partition assignors of the KIP-848 consumer group protocol (Kafka's
//! `UniformAssignor` and `RangeAssignor`): `uniform` (balanced and
//! sticky: members keep what they had as far as balance allows) and `range` (per topic, contiguous
//! ranges over members sorted by id, like the client-side range assignor).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignor names the coordinator accepts; the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// A subscribed topic as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignableTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
}

/// Compute the target assignment of every member.
///
/// `members`: member id -> subscribed topic names; `topics`: the subscribed topics that exist;
/// `previous`: the last target assignment (for stickiness).
pub fn assign(
    assignor: &str,
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &[AssignableTopic],
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match assignor {
        "range" => range(members, topics),
        _ => uniform(members, topics, previous),
    }
}

fn range(
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &[AssignableTopic],
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for t in topics {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|(_, subs)| subs.contains(&t.name))
            .map(|(id, _)| id)
            .collect();
        if eligible.is_empty() || t.partitions <= 0 {
            continue;
        }
        let n = t.partitions as usize;
        let (base, extra) = (n / eligible.len(), n % eligible.len());
        let mut next = 0i32;
        for (i, m) in eligible.iter().enumerate() {
            let count = base + usize::from(i < extra);
            let parts: BTreeSet<i32> = (next..next + count as i32).collect();
            next += count as i32;
            if !parts.is_empty() {
                out.entry((*m).clone()).or_default().insert(t.id, parts);
            }
        }
    }
    out
}

fn uniform(
    members: &BTreeMap<String, BTreeSet<String>>,
    topics: &[AssignableTopic],
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    if members.is_empty() {
        return out;
    }
    // Every assignable partition, with the members allowed to take it.
    let mut partitions: Vec<(Uuid, i32, &str)> = Vec::new();
    for t in topics {
        if members.values().any(|s| s.contains(&t.name)) {
            for p in 0..t.partitions.max(0) {
                partitions.push((t.id, p, t.name.as_str()));
            }
        }
    }
    let total = partitions.len();
    let m = members.len();
    let (floor, mut extra) = (total / m, total % m);
    let mut counts: BTreeMap<&str, usize> = members.keys().map(|k| (k.as_str(), 0)).collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let name_of: BTreeMap<Uuid, &str> = topics.iter().map(|t| (t.id, t.name.as_str())).collect();
    // Sticky pass: keep previous partitions up to a balanced share.
    for (member, subs) in members {
        let Some(prev) = previous.get(member) else {
            continue;
        };
        for (topic, parts) in prev {
            let Some(name) = name_of.get(topic) else {
                continue;
            };
            if !subs.contains(*name) {
                continue;
            }
            let limit = topics
                .iter()
                .find(|t| t.id == *topic)
                .map_or(0, |t| t.partitions);
            for &p in parts.iter().filter(|p| **p < limit) {
                let count = counts.get(member.as_str()).copied().unwrap_or(0);
                let allowed = if count < floor {
                    true
                } else if count == floor && extra > 0 {
                    extra -= 1;
                    true
                } else {
                    false
                };
                if allowed && taken.insert((*topic, p)) {
                    *counts.entry(member.as_str()).or_default() += 1;
                    out.entry(member.clone())
                        .or_default()
                        .entry(*topic)
                        .or_default()
                        .insert(p);
                }
            }
        }
    }
    // Hand out the rest to the least loaded eligible member.
    for (topic, p, name) in partitions {
        if taken.contains(&(topic, p)) {
            continue;
        }
        let best = members
            .iter()
            .filter(|(_, subs)| subs.contains(name))
            .min_by_key(|(id, _)| (counts.get(id.as_str()).copied().unwrap_or(0), (*id).clone()))
            .map(|(id, _)| id.clone());
        if let Some(id) = best {
            *counts
                .entry(members.get_key_value(&id).map_or("", |(k, _)| k.as_str()))
                .or_default() += 1;
            out.entry(id)
                .or_default()
                .entry(topic)
                .or_default()
                .insert(p);
            taken.insert((topic, p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, n: i32) -> AssignableTopic {
        AssignableTopic {
            name: name.into(),
            id: Uuid::from_u128(name.bytes().fold(1u128, |h, b| h * 131 + u128::from(b))),
            partitions: n,
        }
    }

    fn subs(names: &[&str], topics: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    topics.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_is_balanced_complete_and_sticky() {
        let t = topic("t", 7);
        let members = subs(&["a", "b", "c"], &["t"]);
        let first = assign(
            "uniform",
            &members,
            std::slice::from_ref(&t),
            &BTreeMap::new(),
        );
        let counts: Vec<usize> = first.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        // A fourth member joins: the others keep most of what they had.
        let members = subs(&["a", "b", "c", "d"], &["t"]);
        let second = assign("uniform", &members, std::slice::from_ref(&t), &first);
        let counts: Vec<usize> = second.values().map(count).collect();
        assert_eq!(counts.iter().sum::<usize>(), 7);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1);
        let kept: usize = ["a", "b", "c"]
            .iter()
            .map(|m| {
                first[*m][&t.id]
                    .intersection(&second[*m].get(&t.id).cloned().unwrap_or_default())
                    .count()
            })
            .sum();
        assert!(kept >= 5, "only {kept} partitions stayed put");
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let (t, u) = (topic("t", 5), topic("u", 2));
        let mut members = subs(&["a", "b"], &["t", "u"]);
        members.insert("c".into(), ["t".to_string()].into());
        let out = assign("range", &members, &[t.clone(), u.clone()], &BTreeMap::new());
        assert_eq!(out["a"][&t.id], [0, 1].into());
        assert_eq!(out["b"][&t.id], [2, 3].into());
        assert_eq!(out["c"][&t.id], [4].into());
        assert_eq!(out["a"][&u.id], [0].into());
        assert_eq!(out["b"][&u.id], [1].into());
        assert!(!out["c"].contains_key(&u.id));
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let (t, u) = (topic("t", 4), topic("u", 4));
        let mut members = subs(&["a"], &["t"]);
        members.insert("b".into(), ["u".to_string()].into());
        let out = assign(
            "uniform",
            &members,
            &[t.clone(), u.clone()],
            &BTreeMap::new(),
        );
        assert_eq!(out["a"].keys().collect::<Vec<_>>(), vec![&t.id]);
        assert_eq!(count(&out["a"]), 4);
        assert_eq!(out["b"].keys().collect::<Vec<_>>(), vec![&u.id]);
    }
}
