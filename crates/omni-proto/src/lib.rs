//! The `omni.v1` contract: every record omni writes to Kafka is one of these messages.
//!
//! The types are generated from `proto/omni/v1/*.proto`; the README's topic table says which
//! message each topic carries. [`descriptor_pool`] exposes the same schema at run time, so tools
//! such as `omni tail` can render any record as proto3 JSON.

/// Generated types of package `omni.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/omni.v1.rs"));
}

pub mod channels;

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// The encoded `FileDescriptorSet` of `proto/omni/v1`, including the well-known types it imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/omni_descriptor.bin"));

/// The schema of every omni message, for reflection.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the embedded descriptor set is valid"))
}

/// Looks up a message by its full name, for example `omni.v1.ConversationEvent`.
pub fn message_descriptor(full_name: &str) -> Option<MessageDescriptor> {
    descriptor_pool().get_message_by_name(full_name)
}

/// Decodes `bytes` as the message `full_name` and renders it as proto3 JSON.
pub fn decode_to_json(full_name: &str, bytes: &[u8]) -> Result<serde_json::Value, DecodeJsonError> {
    let descriptor = message_descriptor(full_name).ok_or_else(|| DecodeJsonError::UnknownMessage(full_name.to_owned()))?;
    let message = DynamicMessage::decode(descriptor, bytes).map_err(DecodeJsonError::Decode)?;
    serde_json::to_value(&message).map_err(DecodeJsonError::Json)
}

/// Reads proto3 JSON (as [`decode_to_json`] writes it) as the message `full_name` and encodes it.
pub fn encode_from_json(full_name: &str, json: &serde_json::Value) -> Result<Vec<u8>, DecodeJsonError> {
    use prost::Message as _;
    let descriptor = message_descriptor(full_name).ok_or_else(|| DecodeJsonError::UnknownMessage(full_name.to_owned()))?;
    let message = DynamicMessage::deserialize(descriptor, json).map_err(DecodeJsonError::Json)?;
    Ok(message.encode_to_vec())
}

/// Why a record could not be rendered as JSON.
#[derive(Debug)]
pub enum DecodeJsonError {
    /// The schema has no message of that name.
    UnknownMessage(String),
    /// The bytes are not a valid encoding of the message.
    Decode(prost::DecodeError),
    /// The message could not be rendered (should not happen for valid messages).
    Json(serde_json::Error),
}

impl std::fmt::Display for DecodeJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownMessage(name) => write!(f, "no message named `{name}` in the omni schema"),
            Self::Decode(error) => write!(f, "not a valid protobuf encoding: {error}"),
            Self::Json(error) => write!(f, "cannot render as json: {error}"),
        }
    }
}

impl std::error::Error for DecodeJsonError {}

/// Converts a `SystemTime` into a protobuf timestamp.
pub fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_record_type_is_in_the_pool() {
        for name in ["RawRecord", "ConversationEvent", "Delivery", "DeadLetter", "RouterState"] {
            assert!(message_descriptor(&format!("omni.v1.{name}")).is_some(), "{name} missing");
        }
    }

    #[test]
    fn json_rendering_uses_proto3_field_names_and_enum_names() {
        let event = v1::ConversationEvent {
            event_id: "e1".into(),
            conversation_id: "c1".into(),
            channel: v1::Channel::Api as i32,
            subject: "Siparişim nerede?".into(),
            ..Default::default()
        };
        let json = decode_to_json("omni.v1.ConversationEvent", &event.encode_to_vec()).unwrap();
        assert_eq!(json["eventId"], "e1");
        assert_eq!(json["channel"], "CHANNEL_API");
        assert_eq!(json["subject"], "Siparişim nerede?");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let error = decode_to_json("omni.v1.ConversationEvent", &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(error, DecodeJsonError::Decode(_)), "{error}");
    }
}
