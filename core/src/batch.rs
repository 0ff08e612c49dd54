//! Kafka v2 record batches (being implemented).

/// A batch that fails validation.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch is malformed: {0}")]
    Malformed(String),
}
