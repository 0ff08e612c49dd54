//! The dispatcher: one decoded request to its API's handler.
//!
//! Every API of [`SUPPORTED_APIS`](super::api_support::SUPPORTED_APIS) has an arm here (request decoding lets through
//! nothing else).

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind};

use super::auth::{Listener, Session};
use super::authorization::Caller;
use super::reply::Reply;
use super::{
    alter_configs, alter_user_scram_credentials, api_versions, consumer_group_describe,
    consumer_group_heartbeat, create_acls, create_partitions, create_topics, delete_acls,
    delete_groups, delete_records, delete_topics, describe_acls, describe_cluster,
    describe_configs, describe_groups, describe_log_dirs, describe_quorum,
    describe_user_scram_credentials, elect_leaders, fetch, find_coordinator, heartbeat,
    incremental_alter_configs, init_producer_id, join_group, leave_group, list_groups,
    list_offsets, metadata, offset_commit, offset_delete, offset_fetch, offset_for_leader_epoch,
    produce, sasl_authenticate, sasl_handshake, sync_group, Context,
};

/// Run the handler of one request (`session`: the connection's SASL state, whose user is the
/// principal the handlers authorize). Side effects
/// (appends, topic changes) happen before this returns, so requests pipelined on one connection take effect in order.
pub async fn dispatch(
    ctx: &Arc<Context>,
    header: &RequestHeader,
    body: RequestKind,
    peer: SocketAddr,
    session: &mut Session,
) -> Reply {
    let v = header.request_api_version;
    let caller = match session.listener() {
        Listener::Cluster => Caller::cluster_peer(peer),
        Listener::Client => Caller::new(session.principal_name(), peer),
    };
    match body {
        RequestKind::SaslHandshake(req) => Reply::Now(sasl_handshake::handle(session, v, req)),
        RequestKind::SaslAuthenticate(req) => {
            Reply::Now(sasl_authenticate::handle(session, v, req))
        }
        RequestKind::DescribeUserScramCredentials(req) => Reply::Now(
            describe_user_scram_credentials::handle(ctx, &caller, v, req),
        ),
        RequestKind::AlterUserScramCredentials(req) => {
            Reply::Now(alter_user_scram_credentials::handle(ctx, &caller, v, req).await)
        }
        RequestKind::ApiVersions(req) => Reply::Now(api_versions::handle(ctx, v, req)),
        RequestKind::Metadata(req) => Reply::Now(metadata::handle(ctx, &caller, v, req).await),
        RequestKind::Produce(req) => produce::handle(ctx, &caller, header, req).await,
        RequestKind::Fetch(req) => fetch::handle(ctx, &caller, v, req),
        RequestKind::ListOffsets(req) => Reply::Now(list_offsets::handle(ctx, &caller, v, req)),
        RequestKind::CreateTopics(req) => {
            Reply::Now(create_topics::handle(ctx, &caller, v, req).await)
        }
        RequestKind::DeleteTopics(req) => {
            Reply::Now(delete_topics::handle(ctx, &caller, v, req).await)
        }
        RequestKind::CreatePartitions(req) => {
            Reply::Now(create_partitions::handle(ctx, &caller, v, req).await)
        }
        RequestKind::DescribeConfigs(req) => {
            Reply::Now(describe_configs::handle(ctx, &caller, v, req))
        }
        RequestKind::AlterConfigs(req) => {
            Reply::Now(alter_configs::handle(ctx, &caller, v, req).await)
        }
        RequestKind::IncrementalAlterConfigs(req) => {
            Reply::Now(incremental_alter_configs::handle(ctx, &caller, v, req).await)
        }
        RequestKind::DescribeCluster(req) => {
            Reply::Now(describe_cluster::handle(ctx, &caller, v, req))
        }
        RequestKind::DescribeLogDirs(req) => {
            Reply::Now(describe_log_dirs::handle(ctx, &caller, v, req))
        }
        RequestKind::DescribeQuorum(req) => {
            Reply::Now(describe_quorum::handle(ctx, &caller, v, req))
        }
        RequestKind::ElectLeaders(req) => {
            Reply::Now(elect_leaders::handle(ctx, &caller, v, req).await)
        }
        RequestKind::OffsetForLeaderEpoch(req) => {
            Reply::Now(offset_for_leader_epoch::handle(ctx, &caller, v, req))
        }
        RequestKind::InitProducerId(req) => {
            Reply::Now(init_producer_id::handle(ctx, &caller, v, req).await)
        }
        RequestKind::DeleteRecords(req) => {
            Reply::Now(delete_records::handle(ctx, &caller, v, req).await)
        }
        RequestKind::FindCoordinator(req) => {
            Reply::Now(find_coordinator::handle(ctx, &caller, v, req).await)
        }
        RequestKind::JoinGroup(req) => join_group::handle(ctx, &caller, v, header, peer, req),
        RequestKind::SyncGroup(req) => sync_group::handle(ctx, &caller, v, req),
        RequestKind::Heartbeat(req) => Reply::Now(heartbeat::handle(ctx, &caller, v, req)),
        RequestKind::LeaveGroup(req) => Reply::Now(leave_group::handle(ctx, &caller, v, req)),
        RequestKind::OffsetCommit(req) => {
            Reply::Now(offset_commit::handle(ctx, &caller, v, req).await)
        }
        RequestKind::OffsetFetch(req) => Reply::Now(offset_fetch::handle(ctx, &caller, v, req)),
        RequestKind::ListGroups(req) => Reply::Now(list_groups::handle(ctx, &caller, v, req)),
        RequestKind::DescribeGroups(req) => {
            Reply::Now(describe_groups::handle(ctx, &caller, v, req))
        }
        RequestKind::DeleteGroups(req) => {
            Reply::Now(delete_groups::handle(ctx, &caller, v, req).await)
        }
        RequestKind::OffsetDelete(req) => {
            Reply::Now(offset_delete::handle(ctx, &caller, v, req).await)
        }
        RequestKind::ConsumerGroupHeartbeat(req) => Reply::Now(consumer_group_heartbeat::handle(
            ctx, &caller, v, header, peer, req,
        )),
        RequestKind::DescribeAcls(req) => Reply::Now(describe_acls::handle(ctx, &caller, v, req)),
        RequestKind::CreateAcls(req) => Reply::Now(create_acls::handle(ctx, &caller, v, req).await),
        RequestKind::DeleteAcls(req) => Reply::Now(delete_acls::handle(ctx, &caller, v, req).await),
        RequestKind::ConsumerGroupDescribe(req) => {
            Reply::Now(consumer_group_describe::handle(ctx, &caller, v, req))
        }
        other => {
            // decode_request only lets through APIs in api_support::SUPPORTED_APIS, all matched
            // above.
            Reply::Close(format!(
                "no handler for {:?}",
                std::mem::discriminant(&other)
            ))
        }
    }
}
