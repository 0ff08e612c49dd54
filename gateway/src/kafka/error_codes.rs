//! Mapping of core errors ([`BrokerError`], [`LogError`], [`ConfigError`], [`ReplicaError`], the
//! controller's [`ControllerError`] and [`SubmitError`]) to Kafka error codes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use rill_core::batch::BatchError;
use rill_core::broker::BrokerError;
use rill_core::controller::placement::PlacementError;
use rill_core::controller::ControllerError;
use rill_core::log::LogError;
use rill_core::replica::ReplicaError;
use rill_core::topic_config::ConfigError;

use super::cluster_view::SubmitError;

/// No error.
pub const NONE: i16 = 0;

/// Kafka error code of a log error.
pub fn log_error_code(err: &LogError) -> i16 {
    match err {
        LogError::Batch(b) => batch_error_code(b),
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        // Corrupt stored data is reported like Kafka reports a storage problem: the client may retry
        // on another replica; here there is none, but the message explains.
        LogError::Corrupt { .. } => ResponseError::KafkaStorageError.code(),
        LogError::Crypto(_) => ResponseError::KafkaStorageError.code(),
        LogError::Io { .. } => ResponseError::KafkaStorageError.code(),
        LogError::Closed | LogError::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
        LogError::Producer(p) => producer_error_code(p),
        LogError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
        // Replication-internal failures (follower appends, epoch bookkeeping).
        LogError::UnexpectedOffset { .. }
        | LogError::InvalidLeaderEpoch { .. }
        | LogError::TruncationInsideBatch { .. } => ResponseError::UnknownServerError.code(),
    }
}

/// Kafka error code of a replica-layer error (a stale broker epoch and a fetch from a broker that
/// is not a replica answer NOT_LEADER_OR_FOLLOWER, as Kafka does).
pub fn replica_error_code(err: &ReplicaError) -> i16 {
    match err {
        ReplicaError::UnknownTopicOrPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        ReplicaError::NotLeaderOrFollower { .. }
        | ReplicaError::UnknownReplica { .. }
        | ReplicaError::StaleBrokerEpoch { .. } => ResponseError::NotLeaderOrFollower.code(),
        ReplicaError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
        ReplicaError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch.code(),
        ReplicaError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
        ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend.code()
        }
        ReplicaError::RequestTimedOut(_) => ResponseError::RequestTimedOut.code(),
        ReplicaError::Log(l) => log_error_code(l),
        ReplicaError::Task(_) => ResponseError::UnknownServerError.code(),
    }
}

/// Kafka error code of a refused idempotent batch.
pub fn producer_error_code(err: &rill_core::producer_state::ProducerError) -> i16 {
    use rill_core::producer_state::ProducerError as P;
    match err {
        P::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        P::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch.code(),
        P::UnknownProducer { .. } => ResponseError::UnknownProducerId.code(),
        P::DuplicateInMultiBatch { .. } => ResponseError::DuplicateSequenceNumber.code(),
    }
}

/// Kafka error code of an invalid batch.
pub fn batch_error_code(err: &BatchError) -> i16 {
    match err {
        BatchError::Malformed(_)
        | BatchError::Encode(_)
        | BatchError::Decode(_)
        | BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage.code(),
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BatchError::Empty | BatchError::MissingKey => ResponseError::InvalidRecord.code(),
    }
}

/// Kafka error code of a broker error.
pub fn broker_error_code(err: &BrokerError) -> i16 {
    match err {
        BrokerError::UnknownTopicOrPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        BrokerError::UnknownTopicId(_) => ResponseError::UnknownTopicId.code(),
        BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        BrokerError::InvalidTopic { .. } => ResponseError::InvalidTopicException.code(),
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
        BrokerError::ManagedByController(_) => ResponseError::InvalidRequest.code(),
        BrokerError::Config(c) => config_error_code(c),
        BrokerError::Log(l) => log_error_code(l),
        BrokerError::WrongMasterKey { .. }
        | BrokerError::Key(_)
        | BrokerError::Metadata(_)
        | BrokerError::Io { .. } => ResponseError::KafkaStorageError.code(),
    }
}

/// Kafka error code of a failed ACL change: REQUEST_TIMED_OUT (retriable) when a cluster
/// member's controller did not commit it, else UNKNOWN_SERVER_ERROR.
pub fn acl_store_error_code(err: &rill_core::authorizer::store::AclStoreError) -> i16 {
    use rill_core::authorizer::store::AclStoreError as E;
    match err {
        E::Unavailable(_) => ResponseError::RequestTimedOut.code(),
        E::Storage(_) | E::UnknownCode(_) => ResponseError::UnknownServerError.code(),
    }
}

/// Kafka error code of a config error.
pub fn config_error_code(_err: &ConfigError) -> i16 {
    ResponseError::InvalidConfig.code()
}

/// Kafka error code of a command the controller rejected (each variant names its code).
pub fn controller_error_code(err: &ControllerError) -> i16 {
    use ControllerError as C;
    match err {
        C::StaleBrokerEpoch { .. } => ResponseError::StaleBrokerEpoch.code(),
        C::InconsistentClusterId { .. } => ResponseError::InconsistentClusterId.code(),
        C::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch.code(),
        C::InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion.code(),
        C::NotLeaderOrFollower { .. } => ResponseError::NotLeaderOrFollower.code(),
        C::IneligibleReplica { .. } => ResponseError::IneligibleReplica.code(),
        C::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition.code(),
        C::UnknownTopicId(_) => ResponseError::UnknownTopicId.code(),
        C::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists.code(),
        C::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment.code(),
        C::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        C::ElectionNotNeeded => ResponseError::ElectionNotNeeded.code(),
        C::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable.code(),
        C::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable.code(),
        C::ResourceNotFound(_) => ResponseError::ResourceNotFound.code(),
        C::UnacceptableCredential(_) => ResponseError::UnacceptableCredential.code(),
        C::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
    }
}

/// `(code, message)` for a command without an outcome: the controller's rejection, or
/// REQUEST_TIMED_OUT when no controller answered (the client retries; a client never sees
/// NOT_CONTROLLER, the cluster view forwards to the active controller).
pub fn submit_error(err: &SubmitError) -> (i16, Option<StrBytes>) {
    let code = match err {
        SubmitError::Rejected(e) => controller_error_code(e),
        SubmitError::ControllerUnavailable(_) | SubmitError::Timeout(_) => {
            ResponseError::RequestTimedOut.code()
        }
    };
    (code, message(err.to_string()))
}

/// `(code, message)` for replicas that cannot be placed.
pub fn placement_error(err: &PlacementError) -> (i16, Option<StrBytes>) {
    let code = match err {
        PlacementError::InvalidReplicationFactor { .. } => {
            ResponseError::InvalidReplicationFactor.code()
        }
        PlacementError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        PlacementError::MixedRacks => ResponseError::InvalidReplicaAssignment.code(),
    };
    (code, message(err.to_string()))
}

/// `(code, message)` for a broker error, as responses with an error message want it.
pub fn broker_error(err: &BrokerError) -> (i16, Option<StrBytes>) {
    (
        broker_error_code(err),
        Some(StrBytes::from_string(err.to_string())),
    )
}

/// A protocol string from a message.
pub fn message(msg: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(msg.into()))
}

/// The value of a broker call run on the blocking pool, or the `(code, message)` to answer with:
/// the broker's error, or UNKNOWN_SERVER_ERROR when the task failed (panicked).
pub fn blocking_broker_result<T>(
    outcome: Result<Result<T, BrokerError>, tokio::task::JoinError>,
) -> Result<T, (i16, Option<StrBytes>)> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(broker_error(&e)),
        Err(join) => Err((
            ResponseError::UnknownServerError.code(),
            message(join.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(
            broker_error_code(&BrokerError::UnknownTopicOrPartition {
                topic: "t".into(),
                partition: 0
            }),
            3
        );
        assert_eq!(
            broker_error_code(&BrokerError::TopicAlreadyExists("t".into())),
            36
        );
        assert_eq!(broker_error_code(&BrokerError::InvalidPartitions(0)), 37);
        assert_eq!(
            broker_error_code(&BrokerError::InvalidReplicationFactor(3)),
            38
        );
        assert_eq!(
            log_error_code(&LogError::OffsetOutOfRange {
                offset: 9,
                log_start: 0,
                log_end: 1
            }),
            1
        );
        assert_eq!(
            log_error_code(&LogError::Batch(BatchError::Malformed("crc".into()))),
            2
        );
        assert_eq!(
            broker_error_code(&BrokerError::Config(ConfigError::UnknownKey("x".into()))),
            40
        );
    }

    #[test]
    fn controller_codes_match_kafka() {
        assert_eq!(
            controller_error_code(&ControllerError::ElectionNotNeeded),
            84
        );
        assert_eq!(
            controller_error_code(&ControllerError::PreferredLeaderNotAvailable(1)),
            80
        );
        assert_eq!(
            controller_error_code(&ControllerError::EligibleLeadersNotAvailable),
            83
        );
        assert_eq!(
            controller_error_code(&ControllerError::TopicAlreadyExists("t".into())),
            36
        );
        assert_eq!(
            controller_error_code(&ControllerError::InvalidReplicaAssignment("x".into())),
            39
        );
        assert_eq!(
            controller_error_code(&ControllerError::StaleBrokerEpoch {
                broker_id: 1,
                got: 1,
                current: None
            }),
            ResponseError::StaleBrokerEpoch.code()
        );
        // Nothing the controller cannot be reached for is NOT_CONTROLLER (41).
        for e in [
            SubmitError::ControllerUnavailable("no leader".into()),
            SubmitError::Timeout(std::time::Duration::from_secs(1)),
        ] {
            assert_eq!(submit_error(&e).0, 7, "{e}");
        }
        assert_eq!(
            placement_error(&PlacementError::InvalidReplicationFactor {
                replication_factor: 3,
                brokers: 2
            })
            .0,
            38
        );
    }
}
