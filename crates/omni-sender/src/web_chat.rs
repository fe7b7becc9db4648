//! Website chat out: the answer goes onto `omni.webchat.v1` (keyed by conversation), which every
//! gateway replica reads and pushes into the visitor's open chats; a visitor who comes back later
//! gets it when the widget reconnects. Sent = acknowledged by the broker. Written again after a
//! crash, the copy has the same outbound id and the gateway shows it once.

use omni_kafka::{CloudEvent, KafkaConfig, ProduceError, Producer, topics};
use omni_proto::v1::{OutboundMessage, ReplyAddress};
use prost::Message as _;

use crate::SendError;

/// Writes answers to the chat topic with a producer of its own.
pub struct WebChatSender {
    producer: Producer,
}

impl WebChatSender {
    /// The sender's own producer for the chat topic.
    pub fn new(kafka: &KafkaConfig, client_id: &str) -> anyhow::Result<Self> {
        Ok(Self {
            producer: Producer::new(kafka, &format!("{client_id}-webchat"))?,
        })
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for WebChatSender {
    /// Writes the answer (without the agent's files: the chat shows text) and returns where it
    /// landed, `<partition>:<offset>`.
    async fn send(&self, _address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        let answer = OutboundMessage {
            attachments: Vec::new(),
            ..outbound.clone()
        };
        let headers = CloudEvent {
            id: &answer.outbound_id,
            kind: "omni.v1.OutboundMessage",
            source: "omni/sender/webchat",
            subject: Some(&answer.conversation_id),
            time: std::time::SystemTime::now(),
        }
        .to_headers();
        match self
            .producer
            .send(topics::WEBCHAT, answer.conversation_id.as_bytes(), &answer.encode_to_vec(), headers)
            .await
        {
            Ok(stored) => Ok(format!("{}:{}", stored.partition, stored.offset)),
            Err(ProduceError::Refused(error)) => Err(SendError::Refused(format!("the broker refused the chat answer: {error}"))),
            Err(error) => Err(SendError::Unavailable {
                reason: format!("the chat answer was not stored: {error}"),
                retry_after: None,
            }),
        }
    }
}
