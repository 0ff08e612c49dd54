//! Errors of the group coordinator, each mapped to the Kafka error clients expect.

use kafka_protocol::ResponseError;

use super::config::MAX_GROUP_ID_LEN;
use super::offset_store::OffsetStoreError;

/// Group errors; each maps to the Kafka error code clients expect ([`GroupError::to_kafka`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group id is empty or longer than {MAX_GROUP_ID_LEN} bytes")]
    InvalidGroupId,
    #[error("the session timeout is outside the configured range")]
    InvalidSessionTimeout,
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("stale or unknown generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the protocol type or protocols are incompatible with the group")]
    InconsistentGroupProtocol,
    #[error("another member with the same group.instance.id has joined")]
    FencedInstanceId,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("this node is not the group's coordinator")]
    NotCoordinator,
    #[error("the coordinator is loading the group's partition")]
    CoordinatorLoadInProgress,
    #[error("group not found")]
    GroupIdNotFound,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group is subscribed to this topic")]
    GroupSubscribedToTopic,
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("the member epoch is fenced; rejoin with epoch 0")]
    FencedMemberEpoch,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("unsupported server assignor (supported: uniform, range)")]
    UnsupportedAssignor,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Storage(#[from] OffsetStoreError),
}

impl GroupError {
    /// The Kafka error for this error (storage failures are retriable for clients).
    pub fn to_kafka(&self) -> ResponseError {
        match self {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::NotCoordinator
            | GroupError::Storage(OffsetStoreError::NotCoordinator(_)) => {
                ResponseError::NotCoordinator
            }
            GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
            GroupError::CoordinatorNotAvailable | GroupError::Storage(_) => {
                ResponseError::CoordinatorNotAvailable
            }
            GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
            GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
            GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
            GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
            GroupError::UnsupportedAssignor => ResponseError::UnsupportedAssignor,
            GroupError::InvalidRequest(_) => ResponseError::InvalidRequest,
        }
    }

    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        self.to_kafka().code()
    }
}

/// Group ids must be non-empty and at most [`MAX_GROUP_ID_LEN`] bytes.
pub(crate) fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || group_id.len() > MAX_GROUP_ID_LEN {
        Err(GroupError::InvalidGroupId)
    } else {
        Ok(())
    }
}
