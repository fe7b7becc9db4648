//! Website chat out: the answer goes onto `omni.webchat.v1` (keyed by conversation), which every
//! gateway replica reads and pushes into the visitor's open chats; a visitor who comes back later
//! gets it when the widget reconnects. Sent = acknowledged by the broker. Written again after a
//! crash, the copy has the same outbound id and the gateway shows it once.
//!
//! A visitor who left ([`presence`]: no chat of theirs open for `[sender] chat_away_after_secs`)
//! and whose email the shop signed, or who typed one in the widget's offline or busy notice, is
//! answered by email from `[sender] answer_away_chats_by_email` instead, and the answer is not
//! pushed into the chat later. Visitors without either: their answers wait for the next visit.

pub mod presence;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use omni_kafka::{CloudEvent, KafkaConfig, ProduceError, Producer, topics};
use omni_proto::v1::{OutboundMessage, ReplyAddress};
use prost::Message as _;

use crate::{ChannelSender, SendError};
use presence::Visitors;

/// How long an answer waits at start for the chat presence to be read before it is pushed into
/// the chat (never mailed on a guess).
const PRESENCE_WAIT: Duration = Duration::from_secs(10);

/// Writes answers to the chat topic with a producer of its own, or mails visitors who left.
pub struct WebChatSender {
    producer: Producer,
    visitors: Arc<Visitors>,
    /// The email sender and the mailbox that answers visitors who left.
    by_email: Option<(Arc<dyn ChannelSender>, String)>,
    away_after: Duration,
}

impl WebChatSender {
    /// The sender's own producer for the chat topic; `visitors` says who left, `by_email` mails
    /// them (none: every answer waits in the chat).
    pub fn new(
        kafka: &KafkaConfig,
        client_id: &str,
        visitors: Arc<Visitors>,
        by_email: Option<(Arc<dyn ChannelSender>, String)>,
        away_after: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            producer: Producer::new(kafka, &format!("{client_id}-webchat"))?,
            visitors,
            by_email,
            away_after,
        })
    }

    /// Mails the answer when its visitor left and the shop signed their email (or the visitor
    /// typed one); returns the Message-ID, or `None` when the answer goes into the chat.
    async fn mail_if_away(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<Option<String>, SendError> {
        let Some((email, mailbox)) = &self.by_email else { return Ok(None) };
        // The email the shop signed, else the one the visitor typed in the offline or busy
        // notice (`reply_to`); neither: the answer waits for the next visit.
        let typed = address.provider.as_ref().map(|p| p.reply_to.clone()).filter(|to| to.contains('@'));
        let (mail_to, was_typed) = match (crate::email::by_email(address, mailbox), typed) {
            (Ok(mail_to), _) => (mail_to, false),
            (Err(_), Some(typed)) => (crate::email::mailed_to(address, mailbox, typed), true),
            (Err(_), None) => return Ok(None),
        };
        if !self.visitors.caught_up(PRESENCE_WAIT).await {
            tracing::warn!(conversation_id = %outbound.conversation_id, "chat presence not read yet: the answer waits in the chat");
            return Ok(None);
        }
        if !self.visitors.away(&outbound.conversation_id, SystemTime::now(), self.away_after) {
            return Ok(None);
        }
        tracing::info!(conversation_id = %outbound.conversation_id, "the visitor left the chat: the answer goes by email");
        match email.send(&mail_to, outbound).await {
            Ok(sent) => {
                metrics::counter!("omni_sender_chat_answers_by_email_total").increment(1);
                Ok(Some(sent))
            }
            // A typed address the mail system refuses (a typo): the answer waits in the chat
            // rather than nowhere.
            Err(SendError::Refused(reason)) if was_typed => {
                tracing::warn!(conversation_id = %outbound.conversation_id, %reason, "the email the visitor typed was refused: the answer waits in the chat");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

#[async_trait::async_trait]
impl crate::ChannelSender for WebChatSender {
    /// Writes the answer (without the agent's files: the chat shows text) and returns where it
    /// landed, `<partition>:<offset>`; or mails it to a visitor who left, and returns its
    /// Message-ID.
    async fn send(&self, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<String, SendError> {
        if let Some(sent) = self.mail_if_away(address, outbound).await? {
            return Ok(sent);
        }
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
