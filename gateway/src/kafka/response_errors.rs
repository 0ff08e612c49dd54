//! Every error code a response carries, read off the response just before it is encoded (in
//! [`super::connection`]), so `rill_kafka_request_errors_total{api,code}` counts what clients
//! actually received, whichever handler or helper chose the code, without per-handler code.
//!
//! One arm per response type of [`super::api_support::SUPPORTED_APIS`]; a new API without an arm
//! here is caught by the `every_supported_api_has_an_arm` test.

use kafka_protocol::messages::ResponseKind;

/// The non-zero error codes of `resp`: top-level, per topic, per partition, per resource, per
/// group and per member, in any order (one entry per occurrence).
pub fn error_codes(resp: &ResponseKind) -> Vec<i16> {
    let mut out = Vec::new();
    collect(resp, &mut out);
    out.retain(|c| *c != 0);
    out
}

/// Whether [`error_codes`] knows the fields of this response type.
fn collect(resp: &ResponseKind, out: &mut Vec<i16>) -> bool {
    use ResponseKind as R;
    match resp {
        R::Produce(r) => out.extend(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        R::Fetch(r) => {
            out.push(r.error_code);
            out.extend(
                r.responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
        }
        R::ListOffsets(r) => out.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::Metadata(r) => {
            out.push(r.error_code);
            for t in &r.topics {
                out.push(t.error_code);
                out.extend(t.partitions.iter().map(|p| p.error_code));
            }
        }
        R::ApiVersions(r) => out.push(r.error_code),
        R::CreateTopics(r) => out.extend(r.topics.iter().map(|t| t.error_code)),
        R::DeleteTopics(r) => out.extend(r.responses.iter().map(|t| t.error_code)),
        R::DeleteRecords(r) => out.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::OffsetForLeaderEpoch(r) => out.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::DescribeConfigs(r) => out.extend(r.results.iter().map(|x| x.error_code)),
        R::AlterConfigs(r) => out.extend(r.responses.iter().map(|x| x.error_code)),
        R::IncrementalAlterConfigs(r) => out.extend(r.responses.iter().map(|x| x.error_code)),
        R::CreatePartitions(r) => out.extend(r.results.iter().map(|x| x.error_code)),
        R::DescribeCluster(r) => out.push(r.error_code),
        R::DescribeLogDirs(r) => {
            out.push(r.error_code);
            out.extend(r.results.iter().map(|d| d.error_code));
        }
        R::InitProducerId(r) => out.push(r.error_code),
        R::FindCoordinator(r) => {
            out.push(r.error_code);
            out.extend(r.coordinators.iter().map(|c| c.error_code));
        }
        R::JoinGroup(r) => out.push(r.error_code),
        R::SyncGroup(r) => out.push(r.error_code),
        R::Heartbeat(r) => out.push(r.error_code),
        R::LeaveGroup(r) => {
            out.push(r.error_code);
            out.extend(r.members.iter().map(|m| m.error_code));
        }
        R::OffsetCommit(r) => out.extend(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        R::OffsetFetch(r) => {
            out.push(r.error_code);
            out.extend(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
            for g in &r.groups {
                out.push(g.error_code);
                out.extend(
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        R::ListGroups(r) => out.push(r.error_code),
        R::DescribeGroups(r) => out.extend(r.groups.iter().map(|g| g.error_code)),
        R::DeleteGroups(r) => out.extend(r.results.iter().map(|g| g.error_code)),
        R::OffsetDelete(r) => {
            out.push(r.error_code);
            out.extend(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
        }
        R::ConsumerGroupHeartbeat(r) => out.push(r.error_code),
        R::ConsumerGroupDescribe(r) => out.extend(r.groups.iter().map(|g| g.error_code)),
        R::SaslHandshake(r) => out.push(r.error_code),
        R::SaslAuthenticate(r) => out.push(r.error_code),
        R::DescribeUserScramCredentials(r) => {
            out.push(r.error_code);
            out.extend(r.results.iter().map(|x| x.error_code));
        }
        R::AlterUserScramCredentials(r) => out.extend(r.results.iter().map(|x| x.error_code)),
        R::CreateAcls(r) => out.extend(r.results.iter().map(|a| a.error_code)),
        R::DescribeAcls(r) => out.push(r.error_code),
        R::DeleteAcls(r) => {
            for f in &r.filter_results {
                out.push(f.error_code);
                out.extend(f.matching_acls.iter().map(|m| m.error_code));
            }
        }
        R::DescribeQuorum(r) => {
            out.push(r.error_code);
            out.extend(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
        }
        R::ElectLeaders(r) => {
            out.push(r.error_code);
            out.extend(
                r.replica_election_results
                    .iter()
                    .flat_map(|t| t.partition_result.iter().map(|p| p.error_code)),
            );
        }
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ApiKey, ProduceResponse};

    #[test]
    fn reads_partition_codes_of_produce() {
        let resp = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![
                PartitionProduceResponse::default().with_error_code(0),
                PartitionProduceResponse::default().with_error_code(3),
                PartitionProduceResponse::default().with_error_code(10),
            ]),
        ]));
        let mut codes = error_codes(&resp);
        codes.sort();
        assert_eq!(codes, vec![3, 10]);
    }

    #[test]
    fn every_supported_api_has_an_arm() {
        for api in super::super::api_support::SUPPORTED_APIS {
            let resp = default_response(api.key);
            assert!(
                collect(&resp, &mut Vec::new()),
                "{} has no arm in response_errors",
                api.name
            );
        }
    }

    /// A default response of `key` (ResponseKind has no constructor by key).
    fn default_response(key: ApiKey) -> ResponseKind {
        use kafka_protocol::messages::*;
        match key {
            ApiKey::Produce => ResponseKind::Produce(Default::default()),
            ApiKey::Fetch => ResponseKind::Fetch(Default::default()),
            ApiKey::ListOffsets => ResponseKind::ListOffsets(Default::default()),
            ApiKey::Metadata => ResponseKind::Metadata(Default::default()),
            ApiKey::ApiVersions => ResponseKind::ApiVersions(Default::default()),
            ApiKey::CreateTopics => ResponseKind::CreateTopics(Default::default()),
            ApiKey::DeleteTopics => ResponseKind::DeleteTopics(Default::default()),
            ApiKey::DeleteRecords => ResponseKind::DeleteRecords(Default::default()),
            ApiKey::OffsetForLeaderEpoch => ResponseKind::OffsetForLeaderEpoch(Default::default()),
            ApiKey::DescribeConfigs => ResponseKind::DescribeConfigs(Default::default()),
            ApiKey::AlterConfigs => ResponseKind::AlterConfigs(Default::default()),
            ApiKey::CreatePartitions => ResponseKind::CreatePartitions(Default::default()),
            ApiKey::IncrementalAlterConfigs => {
                ResponseKind::IncrementalAlterConfigs(Default::default())
            }
            ApiKey::DescribeCluster => ResponseKind::DescribeCluster(Default::default()),
            ApiKey::DescribeLogDirs => ResponseKind::DescribeLogDirs(Default::default()),
            ApiKey::InitProducerId => ResponseKind::InitProducerId(Default::default()),
            ApiKey::FindCoordinator => ResponseKind::FindCoordinator(Default::default()),
            ApiKey::JoinGroup => ResponseKind::JoinGroup(Default::default()),
            ApiKey::SyncGroup => ResponseKind::SyncGroup(Default::default()),
            ApiKey::Heartbeat => ResponseKind::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => ResponseKind::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => ResponseKind::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => ResponseKind::OffsetFetch(Default::default()),
            ApiKey::ListGroups => ResponseKind::ListGroups(Default::default()),
            ApiKey::DescribeGroups => ResponseKind::DescribeGroups(Default::default()),
            ApiKey::DeleteGroups => ResponseKind::DeleteGroups(Default::default()),
            ApiKey::OffsetDelete => ResponseKind::OffsetDelete(Default::default()),
            ApiKey::ConsumerGroupHeartbeat => {
                ResponseKind::ConsumerGroupHeartbeat(Default::default())
            }
            ApiKey::ConsumerGroupDescribe => {
                ResponseKind::ConsumerGroupDescribe(Default::default())
            }
            ApiKey::SaslHandshake => ResponseKind::SaslHandshake(Default::default()),
            ApiKey::SaslAuthenticate => ResponseKind::SaslAuthenticate(Default::default()),
            ApiKey::DescribeUserScramCredentials => {
                ResponseKind::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::AlterUserScramCredentials => {
                ResponseKind::AlterUserScramCredentials(Default::default())
            }
            ApiKey::CreateAcls => ResponseKind::CreateAcls(Default::default()),
            ApiKey::DescribeAcls => ResponseKind::DescribeAcls(Default::default()),
            ApiKey::DeleteAcls => ResponseKind::DeleteAcls(Default::default()),
            ApiKey::DescribeQuorum => ResponseKind::DescribeQuorum(Default::default()),
            ApiKey::ElectLeaders => ResponseKind::ElectLeaders(Default::default()),
            other => panic!("{other:?} is supported but has no default response here"),
        }
    }
}
