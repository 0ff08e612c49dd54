//! DescribeCluster (key 60): this node is the only broker and the controller. Needs no ACL; the
//! cluster authorized operations (when asked) are the caller's with the authorizer on.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::{ResourceType, CLUSTER_NAME};

use super::authorization::Caller;
use super::Context;

/// Answer DescribeCluster.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: DescribeClusterRequest,
) -> ResponseKind {
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(ctx.node_id))
        .with_host(ctx.host())
        .with_port(i32::from(ctx.advertised_port))
        .with_rack(None);
    // A combined node answers for brokers (1) and controllers (2) alike.
    let endpoint_type = if version >= 1 { req.endpoint_type } else { 1 };
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_endpoint_type(endpoint_type)
            .with_cluster_id(StrBytes::from_string(ctx.cluster_id.clone()))
            .with_controller_id(BrokerId(ctx.node_id))
            .with_brokers(vec![broker])
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                ctx.authorized_operations(caller, ResourceType::Cluster, CLUSTER_NAME)
                    .unwrap_or(super::metadata::CLUSTER_OPERATIONS)
            } else {
                i32::MIN
            }),
    )
}
