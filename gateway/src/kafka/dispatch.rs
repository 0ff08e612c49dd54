//! The table of supported APIs and the dispatcher.
//!
//! [`SUPPORTED_APIS`] is the single source of truth: request decoding rejects anything outside it
//! and ApiVersions advertises exactly it. The version ranges are those of Apache Kafka 4.0.0 for
//! the APIs this node implements (see `docs/kafka-protocol.md`).

use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use super::auth::Session;
use super::{
    alter_configs, alter_user_scram_credentials, api_versions, consumer_group_describe,
    consumer_group_heartbeat, create_partitions, create_topics, delete_groups, delete_records,
    delete_topics, describe_cluster, describe_configs, describe_groups,
    describe_user_scram_credentials, fetch, find_coordinator, heartbeat, incremental_alter_configs,
    init_producer_id, join_group, leave_group, list_groups, list_offsets, metadata, offset_commit,
    offset_delete, offset_fetch, offset_for_leader_epoch, produce, sasl_authenticate,
    sasl_handshake, sync_group, Context,
};

/// One supported API.
#[derive(Debug, Clone, Copy)]
pub struct ApiSupport {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised.
    pub min: i16,
    /// Highest version advertised.
    pub max: i16,
    /// Versions below this are advertised but close the connection (Produce v0-2, as Kafka 4.0).
    pub closes_below: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> ApiSupport {
    ApiSupport {
        key,
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
        min: 0,
        max: 12,
        closes_below: 3,
    },
    api(ApiKey::Fetch, 4, 17),
    api(ApiKey::ListOffsets, 1, 9),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    // Idempotent producers (no transactions).
    api(ApiKey::InitProducerId, 0, 5),
    // Consumer groups (classic protocol).
    api(ApiKey::FindCoordinator, 0, 6),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 6),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // KIP-848 consumer groups (server-side assignment).
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    api(ApiKey::ConsumerGroupDescribe, 0, 1),
    // SASL (PLAIN, SCRAM-SHA-256/512; see kafka/auth.rs).
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The support row of an API key, if handled.
pub fn supported(key: i16) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|a| a.key as i16 == key)
}

/// What a handler produced.
#[allow(clippy::large_enum_variant)] // built once per request and moved at once; boxing buys nothing
pub enum Reply {
    /// The response, ready now.
    Now(ResponseKind),
    /// The response after waiting (flush, long poll). Later requests on the connection are read
    /// meanwhile; responses are still written in request order.
    Later(BoxFuture<'static, ResponseKind>),
    /// No response at all (Produce with acks=0).
    Nothing,
    /// Close the connection (Produce acks=0 that failed, as Kafka does), with the reason logged.
    Close(String),
}

/// Run the handler of one request (`session`: the connection's SASL state). Side effects
/// (appends, topic changes) happen before this returns, so requests pipelined on one connection take effect in order.
pub async fn dispatch(
    ctx: &Arc<Context>,
    header: &RequestHeader,
    body: RequestKind,
    peer: SocketAddr,
    session: &mut Session,
) -> Reply {
    let v = header.request_api_version;
    match body {
        RequestKind::SaslHandshake(req) => Reply::Now(sasl_handshake::handle(session, v, req)),
        RequestKind::SaslAuthenticate(req) => {
            Reply::Now(sasl_authenticate::handle(session, v, req))
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            Reply::Now(describe_user_scram_credentials::handle(ctx, v, req))
        }
        RequestKind::AlterUserScramCredentials(req) => {
            Reply::Now(alter_user_scram_credentials::handle(ctx, v, req).await)
        }
        RequestKind::ApiVersions(req) => Reply::Now(api_versions::handle(ctx, v, req)),
        RequestKind::Metadata(req) => Reply::Now(metadata::handle(ctx, v, req).await),
        RequestKind::Produce(req) => produce::handle(ctx, v, req).await,
        RequestKind::Fetch(req) => fetch::handle(ctx, v, req),
        RequestKind::ListOffsets(req) => Reply::Now(list_offsets::handle(ctx, v, req)),
        RequestKind::CreateTopics(req) => Reply::Now(create_topics::handle(ctx, v, req).await),
        RequestKind::DeleteTopics(req) => Reply::Now(delete_topics::handle(ctx, v, req).await),
        RequestKind::CreatePartitions(req) => {
            Reply::Now(create_partitions::handle(ctx, v, req).await)
        }
        RequestKind::DescribeConfigs(req) => Reply::Now(describe_configs::handle(ctx, v, req)),
        RequestKind::AlterConfigs(req) => Reply::Now(alter_configs::handle(ctx, v, req).await),
        RequestKind::IncrementalAlterConfigs(req) => {
            Reply::Now(incremental_alter_configs::handle(ctx, v, req).await)
        }
        RequestKind::DescribeCluster(req) => Reply::Now(describe_cluster::handle(ctx, v, req)),
        RequestKind::OffsetForLeaderEpoch(req) => {
            Reply::Now(offset_for_leader_epoch::handle(ctx, v, req))
        }
        RequestKind::InitProducerId(req) => Reply::Now(init_producer_id::handle(ctx, v, req).await),
        RequestKind::DeleteRecords(req) => Reply::Now(delete_records::handle(ctx, v, req).await),
        RequestKind::FindCoordinator(req) => Reply::Now(find_coordinator::handle(ctx, v, req)),
        RequestKind::JoinGroup(req) => join_group::handle(ctx, v, header, peer, req),
        RequestKind::SyncGroup(req) => sync_group::handle(ctx, v, req),
        RequestKind::Heartbeat(req) => Reply::Now(heartbeat::handle(ctx, v, req)),
        RequestKind::LeaveGroup(req) => Reply::Now(leave_group::handle(ctx, v, req)),
        RequestKind::OffsetCommit(req) => Reply::Now(offset_commit::handle(ctx, v, req).await),
        RequestKind::OffsetFetch(req) => Reply::Now(offset_fetch::handle(ctx, v, req)),
        RequestKind::ListGroups(req) => Reply::Now(list_groups::handle(ctx, v, req)),
        RequestKind::DescribeGroups(req) => Reply::Now(describe_groups::handle(ctx, v, req)),
        RequestKind::DeleteGroups(req) => Reply::Now(delete_groups::handle(ctx, v, req).await),
        RequestKind::OffsetDelete(req) => Reply::Now(offset_delete::handle(ctx, v, req).await),
        RequestKind::ConsumerGroupHeartbeat(req) => {
            Reply::Now(consumer_group_heartbeat::handle(ctx, v, header, peer, req))
        }
        RequestKind::ConsumerGroupDescribe(req) => {
            Reply::Now(consumer_group_describe::handle(ctx, v, req))
        }
        other => {
            // decode_request only lets through APIs in SUPPORTED_APIS, all matched above.
            Reply::Close(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
