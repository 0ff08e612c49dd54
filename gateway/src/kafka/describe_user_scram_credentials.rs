//! DescribeUserScramCredentials (key 50, v0): the SCRAM mechanisms and iteration counts of the
//! named users, or of every user (null or empty list), as `kafka-configs.sh --describe
//! --entity-type users` shows them. Salts and keys never leave the node.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::AclOperation;

use super::authorization::Caller;
use super::Context;

/// Answer DescribeUserScramCredentials.
pub fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: DescribeUserScramCredentialsRequest,
) -> ResponseKind {
    if !ctx.authorize_cluster(caller, AclOperation::Describe) {
        return ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        );
    }
    let store = &ctx.credentials;
    let named: Vec<String> = req
        .users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.as_str().to_string())
        .collect();
    let result = |user: &str, code: i16, message: Option<String>, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.to_string()))
            .with_error_code(code)
            .with_error_message(message.map(StrBytes::from_string))
            .with_credential_infos(infos)
    };
    let infos = |user: &str| -> Vec<CredentialInfo> {
        store
            .all_of(user)
            .iter()
            .map(|(m, c)| {
                CredentialInfo::default()
                    .with_mechanism(m.kafka_type())
                    .with_iterations(i32::try_from(c.iterations).unwrap_or(i32::MAX))
            })
            .collect()
    };
    let results = if named.is_empty() {
        store
            .list()
            .iter()
            .map(|(user, _)| result(user, 0, None, infos(user)))
            .collect()
    } else {
        let mut seen = BTreeSet::new();
        let duplicates: BTreeSet<&String> = named.iter().filter(|u| !seen.insert(*u)).collect();
        let mut done = BTreeSet::new();
        named
            .iter()
            .filter(|u| done.insert(*u))
            .map(|user| {
                if duplicates.contains(user) {
                    return result(
                        user,
                        ResponseError::DuplicateResource.code(),
                        Some("Cannot describe SCRAM credentials for the same user twice in a single request".into()),
                        Vec::new(),
                    );
                }
                let found = infos(user);
                if found.is_empty() {
                    result(
                        user,
                        ResponseError::ResourceNotFound.code(),
                        Some("Attempt to describe a user credential that does not exist".into()),
                        Vec::new(),
                    )
                } else {
                    result(user, 0, None, found)
                }
            })
            .collect()
    };
    ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(0)
            .with_results(results),
    )
}
