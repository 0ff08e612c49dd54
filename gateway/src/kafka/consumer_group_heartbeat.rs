//! ConsumerGroupHeartbeat (key 68), v0-1: the KIP-848 consumer group protocol
//! (`group.protocol=consumer`). Members join with epoch 0, heartbeat with their epoch and the
//! partitions they own, and receive their server-computed assignment (by topic id). In v0 the
//! coordinator picks member ids; v1 clients bring their own.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader, ResponseKind,
};
use rill_core::authorizer::acl::{AclOperation, ResourceType};
use rill_core::group::{Assignment as Owned, ConsumerHeartbeatRequest, GroupError};

use super::authorization::Caller;
use super::groups::{client_host, s};
use super::Context;

/// Answer ConsumerGroupHeartbeat.
pub fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    header: &RequestHeader,
    peer: SocketAddr,
    req: ConsumerGroupHeartbeatRequest,
) -> ResponseKind {
    if !ctx.authorize(
        caller,
        AclOperation::Read,
        ResourceType::Group,
        &req.group_id,
    ) {
        return ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(
                    kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code(),
                )
                .with_member_epoch(-1),
        );
    }
    let owned = req.topic_partitions.map(|tps| {
        let mut out = Owned::new();
        for tp in tps {
            if !tp.partitions.is_empty() {
                out.entry(tp.topic_id).or_default().extend(tp.partitions);
            }
        }
        out
    });
    let request = ConsumerHeartbeatRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|i| i.to_string()),
        rack_id: req.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.map(|r| r.to_string()),
        server_assignor: req.server_assignor.map(|a| a.to_string()),
        owned,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: client_host(peer),
    };
    let broker = ctx.broker.clone();
    let resolve = move |name: &str| broker.topic(name).map(|t| (t.id, t.partitions));
    let resp = match ctx
        .coordinator(&request.group_id)
        .and_then(|groups| groups.consumer_group_heartbeat(&request, &resolve))
    {
        Ok(r) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(s(r.member_id)))
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(r.heartbeat_interval_ms)
            .with_assignment(r.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(e) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(GroupError::code(&e))
            .with_error_message(Some(s(e.to_string())))
            .with_member_epoch(-1),
    };
    ResponseKind::ConsumerGroupHeartbeat(resp)
}
