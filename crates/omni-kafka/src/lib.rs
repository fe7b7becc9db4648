//! Kafka plumbing shared by every omni service.
//!
//! Guarantees this crate gives its callers:
//! - [`Producer::send`] resolves only once the broker acknowledged the record (`acks=all`;
//!   idempotent when `[kafka.producer] idempotence` is on), or fails within `message_timeout_ms`.
//!   Connectors acknowledge upstream only after it resolved.
//! - Consumers of a [`consumer::GroupMember`] never store an offset by themselves:
//!   the caller stores a record's offset with [`consumer::store_handled`] (or
//!   [`consumer::store_next`] from its coordinates) once it was fully handled (delivered, or
//!   dead-lettered). Either commits `offset + 1`, the next record to read, which is what a
//!   restarted consumer resumes from.
//! - A [`consumer::GroupMember`] that the group leaves without partitions joins it again.
//! - [`topics::ensure_topics`] creates every omni topic that is missing at start-up.
//! - [`headers`] writes CloudEvents Kafka binding headers on every record.

pub mod config;
pub mod consumer;
pub mod deadletter;
pub mod headers;
pub mod keyed;
pub mod producer;
pub mod reader;
pub mod service;
pub mod state;
pub mod topics;

pub use config::KafkaConfig;
pub use deadletter::DeadLetterWriter;
pub use headers::CloudEvent;
pub use producer::{ProduceError, Producer};
pub use service::{KafkaService, ServiceSection, Stopped, supervise};
