//! InitProducerId (key 22), v0-5: hands idempotent producers a fresh producer id with epoch 0.
//!
//! Without a transactional id Kafka always allocates a new id (also when an id and epoch are
//! sent, KIP-360), and so does this node; ids are unique across restarts and, in a cluster,
//! across members ([`super::producer_id_manager`]). Transactions are not implemented, so a
//! transactional id is refused.
//!
//! With the authorizer on, an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE
//! on some topic (KIP-679), else CLUSTER_AUTHORIZATION_FAILED.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};
use rill_core::authorizer::acl::{AclOperation, ResourceType, CLUSTER_NAME};

use super::authorization::Caller;
use super::producer_id_manager::ProducerIdError;
use super::Context;

/// Handle InitProducerId.
pub async fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: InitProducerIdRequest,
) -> ResponseKind {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return ResponseKind::InitProducerId(
            resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    if !ctx.authorize_quietly(
        caller,
        AclOperation::IdempotentWrite,
        ResourceType::Cluster,
        CLUSTER_NAME,
    ) && !ctx.authorize_any(caller, AclOperation::Write, ResourceType::Topic)
    {
        if let Some(a) = &ctx.authorization {
            a.denied(
                caller,
                AclOperation::IdempotentWrite,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
        }
        return ResponseKind::InitProducerId(
            resp.with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    match ctx.producer_ids.generate(ctx.cluster.as_ref()).await {
        Ok(id) => ResponseKind::InitProducerId(
            resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        ),
        Err(e @ ProducerIdError::BlockUnavailable(_)) => {
            tracing::warn!(error = %e, "cannot hand out a producer id yet");
            ResponseKind::InitProducerId(
                resp.with_error_code(ResponseError::CoordinatorLoadInProgress.code()),
            )
        }
        Err(e @ (ProducerIdError::Store(_) | ProducerIdError::Task(_))) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            ResponseKind::InitProducerId(
                resp.with_error_code(ResponseError::UnknownServerError.code()),
            )
        }
    }
}
