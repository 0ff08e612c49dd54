//! The table of supported APIs: [`SUPPORTED_APIS`] is the single source of truth for which APIs
//! and versions this node serves and what they are called. Request decoding rejects anything
//! outside it, ApiVersions advertises exactly it, the dispatcher has an arm for every row and
//! `/metrics` counts requests under its names. The version ranges are those of Apache Kafka 4.0.0
//! for the APIs this node implements (see `docs/kafka-protocol.md`).

use kafka_protocol::messages::ApiKey;

/// One supported API.
#[derive(Debug, Clone, Copy)]
pub struct ApiSupport {
    /// The API.
    pub key: ApiKey,
    /// Kafka's name of the API (as in `/metrics` and logs).
    pub name: &'static str,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Versions below this are advertised but close the connection (Produce v0-2, as Kafka 4.0).
    pub closes_below: i16,
}

const fn api(key: ApiKey, name: &'static str, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
        name,
        min,
        max,
        closes_below: min,
    }
}

/// Every API this node handles, with the versions it advertises (Kafka 4.0.0's ranges).
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    // Kafka 4.0 advertises Produce from v0 (KAFKA-18659: older librdkafka disables compression
    // otherwise) but rejects v0-2 by closing the connection.
    ApiSupport {
        key: ApiKey::Produce,
        name: "Produce",
        min: 0,
        max: 12,
        closes_below: 3,
    },
    api(ApiKey::Fetch, "Fetch", 4, 17),
    api(ApiKey::ListOffsets, "ListOffsets", 1, 9),
    api(ApiKey::Metadata, "Metadata", 0, 12),
    api(ApiKey::ApiVersions, "ApiVersions", 0, 4),
    api(ApiKey::CreateTopics, "CreateTopics", 2, 7),
    api(ApiKey::DeleteTopics, "DeleteTopics", 1, 6),
    api(ApiKey::DeleteRecords, "DeleteRecords", 0, 2),
    api(ApiKey::OffsetForLeaderEpoch, "OffsetForLeaderEpoch", 2, 4),
    api(ApiKey::DescribeConfigs, "DescribeConfigs", 1, 4),
    api(ApiKey::AlterConfigs, "AlterConfigs", 0, 2),
    api(ApiKey::CreatePartitions, "CreatePartitions", 0, 3),
    api(
        ApiKey::IncrementalAlterConfigs,
        "IncrementalAlterConfigs",
        0,
        1,
    ),
    api(ApiKey::DescribeCluster, "DescribeCluster", 0, 1),
    // Partition sizes for third-party consoles (AKHQ, kafka-ui, Cruise Control).
    api(ApiKey::DescribeLogDirs, "DescribeLogDirs", 1, 4),
    // The controller quorum and leader elections (issue 11; see docs/cluster.md).
    api(ApiKey::DescribeQuorum, "DescribeQuorum", 0, 2),
    api(ApiKey::ElectLeaders, "ElectLeaders", 0, 2),
    // Idempotent producers (no transactions).
    api(ApiKey::InitProducerId, "InitProducerId", 0, 5),
    // Consumer groups (classic protocol).
    api(ApiKey::FindCoordinator, "FindCoordinator", 0, 6),
    api(ApiKey::JoinGroup, "JoinGroup", 0, 9),
    api(ApiKey::SyncGroup, "SyncGroup", 0, 5),
    api(ApiKey::Heartbeat, "Heartbeat", 0, 4),
    api(ApiKey::LeaveGroup, "LeaveGroup", 0, 5),
    api(ApiKey::OffsetCommit, "OffsetCommit", 2, 9),
    api(ApiKey::OffsetFetch, "OffsetFetch", 1, 9),
    api(ApiKey::ListGroups, "ListGroups", 0, 5),
    api(ApiKey::DescribeGroups, "DescribeGroups", 0, 6),
    api(ApiKey::DeleteGroups, "DeleteGroups", 0, 2),
    api(ApiKey::OffsetDelete, "OffsetDelete", 0, 0),
    // KIP-848 consumer groups (server-side assignment).
    api(
        ApiKey::ConsumerGroupHeartbeat,
        "ConsumerGroupHeartbeat",
        0,
        1,
    ),
    api(ApiKey::ConsumerGroupDescribe, "ConsumerGroupDescribe", 0, 1),
    // ACLs (the authorizer; Kafka 4.0 removed v0, KIP-896).
    api(ApiKey::DescribeAcls, "DescribeAcls", 1, 3),
    api(ApiKey::CreateAcls, "CreateAcls", 1, 3),
    api(ApiKey::DeleteAcls, "DeleteAcls", 1, 3),
    // SASL (PLAIN, SCRAM-SHA-256/512; see kafka/auth.rs).
    api(ApiKey::SaslHandshake, "SaslHandshake", 0, 1),
    api(ApiKey::SaslAuthenticate, "SaslAuthenticate", 0, 2),
    api(
        ApiKey::DescribeUserScramCredentials,
        "DescribeUserScramCredentials",
        0,
        0,
    ),
    api(
        ApiKey::AlterUserScramCredentials,
        "AlterUserScramCredentials",
        0,
        0,
    ),
];

/// The support row of an API key, if handled.
pub fn supported(key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|a| a.key as i16 == key)
}

/// Kafka's name of an API for metrics and logs: its row's name, "Other" outside the table
/// (request decoding lets no such request through).
pub fn api_name(key: ApiKey) -> &'static str {
    supported(key as i16).map_or("Other", |a| a.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas_and_come_from_the_table() {
        for a in SUPPORTED_APIS {
            assert_eq!(a.name, format!("{:?}", a.key), "row of {:?}", a.key);
            assert_eq!(api_name(a.key), a.name);
        }
        // The two KIP-848 APIs were missing from a second name table and counted as "Other".
        assert_eq!(
            api_name(ApiKey::ConsumerGroupHeartbeat),
            "ConsumerGroupHeartbeat"
        );
        assert_eq!(
            api_name(ApiKey::ConsumerGroupDescribe),
            "ConsumerGroupDescribe"
        );
        assert_eq!(api_name(ApiKey::ShareFetch), "Other");
    }

    #[test]
    fn table_is_within_the_codec_and_unique() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            let codec = a.key.valid_versions();
            assert!(a.closes_below >= a.min && a.min <= a.max, "{:?}", a.key);
            assert!(
                a.closes_below >= codec.min,
                "{:?} decodes below codec",
                a.key
            );
            assert!(a.max <= codec.max, "{:?} above codec", a.key);
            assert!(
                SUPPORTED_APIS[i + 1..].iter().all(|b| b.key != a.key),
                "{:?} twice",
                a.key
            );
        }
    }
}
