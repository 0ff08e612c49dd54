//! DescribeCluster (key 60). A node alone is the only broker and the controller. In a cluster
//! the answer comes from the metadata image: every unfenced broker with its advertised Kafka
//! endpoint and rack, and the active controller as the controller id (`-1` while none is
//! known). Needs no ACL; the cluster authorized operations (when asked) are the caller's with the
//! authorizer on.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use rill_core::authorizer::acl::{ResourceType, CLUSTER_NAME};

use super::authorization::Caller;
use super::cluster_view::listener_endpoint;
use super::Context;

/// The brokers and the controller id to answer with.
fn brokers(ctx: &Context) -> (Vec<DescribeClusterBroker>, i32) {
    let Some(cluster) = &ctx.cluster else {
        let broker = DescribeClusterBroker::default()
            .with_broker_id(BrokerId(ctx.node_id))
            .with_host(ctx.host())
            .with_port(i32::from(ctx.advertised_port))
            .with_rack(None);
        return (vec![broker], ctx.node_id);
    };
    let image = cluster.image();
    let brokers = image
        .brokers()
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let endpoint = listener_endpoint(b, &ctx.listener_name)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id))
                    .with_host(StrBytes::from_string(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    (brokers, cluster.quorum().leader_id.unwrap_or(-1))
}

/// Answer DescribeCluster.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    version: i16,
    req: DescribeClusterRequest,
) -> ResponseKind {
    let (brokers, controller_id) = brokers(ctx);
    // A combined node answers for brokers (1) and controllers (2) alike.
    let endpoint_type = if version >= 1 { req.endpoint_type } else { 1 };
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_endpoint_type(endpoint_type)
            .with_cluster_id(StrBytes::from_string(ctx.cluster_id.clone()))
            .with_controller_id(BrokerId(controller_id))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                ctx.authorized_operations(caller, ResourceType::Cluster, CLUSTER_NAME)
                    .unwrap_or(super::metadata::CLUSTER_OPERATIONS)
            } else {
                i32::MIN
            }),
    )
}
