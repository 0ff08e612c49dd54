//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on a topic's overrides
//! (in a cluster computed against the metadata image and submitted to the controller, as for
//! AlterConfigs).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use rill_core::authorizer::acl::AclOperation;
use rill_core::broker::ConfigOp;

use super::alter_configs::{alter_topic, unsupported_resource};
use super::authorization::Caller;
use super::describe_configs::{config_resource_denied, RESOURCE_TOPIC};
use super::{error_codes, Context};

/// Translate one wire operation.
fn op(name: &str, operation: i8, value: Option<&str>) -> Result<ConfigOp, String> {
    let value = || {
        value
            .map(str::to_string)
            .ok_or_else(|| format!("operation {operation} on '{name}' needs a value"))
    };
    Ok(match operation {
        0 => ConfigOp::Set(name.to_string(), value()?),
        1 => ConfigOp::Delete(name.to_string()),
        2 => ConfigOp::Append(name.to_string(), value()?),
        3 => ConfigOp::Subtract(name.to_string(), value()?),
        other => return Err(format!("unknown config operation {other} on '{name}'")),
    })
}

/// Answer IncrementalAlterConfigs.
pub async fn handle(
    ctx: &Arc<Context>,
    caller: &Caller,
    _version: i16,
    req: IncrementalAlterConfigsRequest,
) -> ResponseKind {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let denied = config_resource_denied(
            ctx,
            caller,
            AclOperation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        );
        let (code, msg) = if let Some(code) = denied {
            (code, None)
        } else if r.resource_type == RESOURCE_TOPIC {
            let ops: Result<Vec<ConfigOp>, String> = r
                .configs
                .iter()
                .map(|c| op(&c.name, c.config_operation, c.value.as_deref()))
                .collect();
            match ops {
                Ok(ops) => {
                    alter_topic(
                        ctx,
                        r.resource_name.to_string(),
                        ops,
                        true,
                        req.validate_only,
                    )
                    .await
                }
                Err(reason) => (
                    ResponseError::InvalidRequest.code(),
                    error_codes::message(reason),
                ),
            }
        } else {
            unsupported_resource(r.resource_type)
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_translate() {
        assert_eq!(
            op("a", 0, Some("1")).unwrap(),
            ConfigOp::Set("a".into(), "1".into())
        );
        assert_eq!(op("a", 1, None).unwrap(), ConfigOp::Delete("a".into()));
        assert_eq!(
            op("a", 2, Some("x")).unwrap(),
            ConfigOp::Append("a".into(), "x".into())
        );
        assert_eq!(
            op("a", 3, Some("x")).unwrap(),
            ConfigOp::Subtract("a".into(), "x".into())
        );
        assert!(op("a", 0, None).is_err());
        assert!(op("a", 9, Some("x")).is_err());
    }
}
