//! Kafka protocol server (being implemented).
