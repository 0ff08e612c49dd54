//! rill-bridge: mirroring edge <-> central over the Kafka protocol (see issue 6). Not yet built.
