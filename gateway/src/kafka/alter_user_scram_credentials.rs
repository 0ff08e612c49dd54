//! AlterUserScramCredentials (key 51, v0): create, replace and delete SCRAM credentials on a
//! running node (what `kafka-configs.sh --alter --add-config 'SCRAM-SHA-256=[password=...]'` and
//! AdminClient `alter_user_scram_credentials` send). The client sends the salt and the salted
//! password, never the password; the node keeps StoredKey and ServerKey
//! ([`rill_core::credentials`]). Kafka's checks: iterations within 4096..=16384, non-empty user,
//! salt and salted password (UNACCEPTABLE_CREDENTIAL), known mechanism
//! (UNSUPPORTED_SASL_MECHANISM), one operation per user and mechanism (DUPLICATE_RESOURCE),
//! deleting only what exists (RESOURCE_NOT_FOUND). A user's operations apply only when all of
//! them pass. Changes take effect for new connections at once.
//!
//! In a cluster the users live in the metadata image: each user's operations are one
//! [`Command::AlterScramCredentials`] through the controller (validated again when applied), and
//! every member's store mirrors the image ([`CredentialStore::mirror`]), so the user
//! authenticates on every member once that member applied the entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rill_core::authorizer::acl::AclOperation;
use rill_core::controller::Command;
use rill_core::credentials::CredentialStore;
use rill_core::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

use super::authorization::Caller;
use super::cluster_view::ClusterView;
use super::error_codes::submit_error;
use super::Context;

/// One checked operation.
enum Op {
    Upsert(ScramMechanism, ScramCredential),
    Delete(ScramMechanism),
}

fn mechanism(t: i8) -> Option<ScramMechanism> {
    ScramMechanism::ALL
        .into_iter()
        .find(|m| m.kafka_type() == t)
}

type Checked = BTreeMap<String, Result<Vec<Op>, (i16, String)>>;

fn fail(out: &mut Checked, user: &str, code: ResponseError, message: String) {
    out.insert(user.to_string(), Err((code.code(), message)));
}

/// Check every operation; per user either the operations or the first error. Deletions are
/// checked against `store` unless `store` is None (a cluster member: its copy may lag, the
/// controller checks them when it applies the command).
fn check(store: Option<&CredentialStore>, req: &AlterUserScramCredentialsRequest) -> Checked {
    let mut out = Checked::new();
    let mut seen = BTreeSet::new();
    let deletions = req
        .deletions
        .iter()
        .map(|d| (d.name.as_str(), d.mechanism, None));
    let upsertions = req
        .upsertions
        .iter()
        .map(|u| (u.name.as_str(), u.mechanism, Some(u)));
    for (user, t, upsert) in deletions.chain(upsertions) {
        if matches!(out.get(user), Some(Err(_))) {
            continue;
        }
        if user.is_empty() {
            fail(
                &mut out,
                user,
                ResponseError::UnacceptableCredential,
                "Username must not be empty".into(),
            );
            continue;
        }
        if let Err(e) = rill_core::credentials::check_user_name(user) {
            fail(
                &mut out,
                user,
                ResponseError::UnacceptableCredential,
                e.to_string(),
            );
            continue;
        }
        let Some(m) = mechanism(t) else {
            fail(
                &mut out,
                user,
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism".into(),
            );
            continue;
        };
        if !seen.insert((user.to_string(), t)) {
            fail(
                &mut out,
                user,
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
            continue;
        }
        let op = match upsert {
            None => {
                if store.is_some_and(|s| s.get(user, m).is_none()) {
                    fail(
                        &mut out,
                        user,
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".into(),
                    );
                    continue;
                }
                Op::Delete(m)
            }
            Some(u) => {
                let iterations = u32::try_from(u.iterations).unwrap_or(0);
                if iterations < MIN_ITERATIONS {
                    fail(
                        &mut out,
                        user,
                        ResponseError::UnacceptableCredential,
                        "Too few iterations".into(),
                    );
                    continue;
                }
                if iterations > MAX_ITERATIONS {
                    fail(
                        &mut out,
                        user,
                        ResponseError::UnacceptableCredential,
                        "Too many iterations".into(),
                    );
                    continue;
                }
                if u.salt.is_empty() || u.salted_password.is_empty() {
                    fail(
                        &mut out,
                        user,
                        ResponseError::UnacceptableCredential,
                        "Salt and salted password must not be empty".into(),
                    );
                    continue;
                }
                Op::Upsert(
                    m,
                    ScramCredential::from_salted(m, &u.salted_password, &u.salt, iterations),
                )
            }
        };
        if let Ok(ops) = out
            .entry(user.to_string())
            .or_insert_with(|| Ok(Vec::new()))
        {
            ops.push(op);
        }
    }
    out
}

/// Answer AlterUserScramCredentials.
pub async fn handle(
    ctx: &Context,
    caller: &Caller,
    _version: i16,
    req: AlterUserScramCredentialsRequest,
) -> ResponseKind {
    let store: Arc<CredentialStore> = ctx.credentials.clone();
    let mut checked = check(ctx.cluster.is_none().then_some(&*store), &req);
    if !ctx.authorize_cluster(caller, AclOperation::Alter) {
        for outcome in checked.values_mut() {
            *outcome = Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                format!("{} may not ALTER the cluster", caller.principal),
            ));
        }
    }
    if let Some(cluster) = &ctx.cluster {
        let results = through_the_controller(cluster.as_ref(), checked).await;
        return respond(results);
    }
    // redb commits (fsync) on the blocking pool.
    let applied = tokio::task::spawn_blocking(move || {
        checked
            .into_iter()
            .map(|(user, ops)| {
                let outcome = ops.and_then(|ops| {
                    for op in ops {
                        let done = match op {
                            Op::Upsert(m, c) => store.upsert(&user, m, c).map(|_| ()),
                            Op::Delete(m) => store.delete(&user, Some(m)).map(|_| ()),
                        };
                        done.map_err(|e| {
                            (ResponseError::UnknownServerError.code(), e.to_string())
                        })?;
                    }
                    tracing::info!(%user, "SCRAM credentials altered");
                    Ok(())
                });
                (user, outcome)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = match applied {
        Ok(r) => r,
        Err(e) => req
            .upsertions
            .iter()
            .map(|u| u.name.as_str().to_string())
            .chain(req.deletions.iter().map(|d| d.name.as_str().to_string()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|u| {
                (
                    u,
                    Err((ResponseError::UnknownServerError.code(), e.to_string())),
                )
            })
            .collect(),
    };
    respond(results)
}

type Outcomes = Vec<(String, Result<(), (i16, String)>)>;

/// A cluster member's answer: each user's checked operations as one controller command.
async fn through_the_controller(cluster: &dyn ClusterView, checked: Checked) -> Outcomes {
    let mut results = Vec::with_capacity(checked.len());
    for (user, ops) in checked {
        let outcome = match ops {
            Err(e) => Err(e),
            Ok(ops) => {
                let mut upsertions = Vec::new();
                let mut deletions = Vec::new();
                for op in ops {
                    match op {
                        Op::Upsert(m, c) => upsertions.push((m, c)),
                        Op::Delete(m) => deletions.push(m),
                    }
                }
                let command = Command::AlterScramCredentials {
                    user: user.clone(),
                    upsertions,
                    deletions,
                };
                match cluster.submit(command).await {
                    Ok(_) => {
                        tracing::info!(%user, "SCRAM credentials altered through the controller");
                        Ok(())
                    }
                    Err(e) => {
                        let (code, _) = submit_error(&e);
                        Err((code, e.to_string()))
                    }
                }
            }
        };
        results.push((user, outcome));
    }
    results
}

fn respond(results: Outcomes) -> ResponseKind {
    ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(
            results
                .into_iter()
                .map(|(user, outcome)| {
                    let (code, message) = match outcome {
                        Ok(()) => (0, None),
                        Err((code, m)) => (code, Some(StrBytes::from_string(m))),
                    };
                    AlterUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user))
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect(),
        ),
    )
}
