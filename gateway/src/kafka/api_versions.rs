//! ApiVersions (key 18): advertises exactly [`api_support::SUPPORTED_APIS`].

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::{api_support, request, Context};

/// The supported table as ApiVersions entries.
fn api_keys() -> Vec<ApiVersion> {
    api_support::SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

/// Answer ApiVersions.
pub fn handle(_ctx: &Context, _version: i16, _req: ApiVersionsRequest) -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(0)
            .with_api_keys(api_keys()),
    )
}

/// The v0-format UNSUPPORTED_VERSION reply to an ApiVersions request of a version above ours, so
/// the client retries with one we support (KIP-511).
pub fn unsupported_version_frame(correlation_id: i32) -> anyhow::Result<Bytes> {
    let body = ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    );
    request::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn fallback_is_v0_with_error_and_table() {
        let mut frame = unsupported_version_frame(9).unwrap();
        assert_eq!(frame.get_i32(), 9); // response header v0: correlation id only
        let resp = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert_eq!(resp.error_code, 35);
        assert_eq!(resp.api_keys.len(), api_support::SUPPORTED_APIS.len());
        let av = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .unwrap();
        assert_eq!((av.min_version, av.max_version), (0, 4));
    }
}
