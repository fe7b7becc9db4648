//! Channel adapters.
//!
//! Each adapter is one module (one folder) that knows one provider's payloads: how to check a
//! payload when it comes in (so the gateway can answer 400 before storing anything), which
//! deterministic ids to give it, and how to turn its [`RawRecord`] into a [`ConversationEvent`].
//! Every adapter is in one explicit list, [`adapters`]: the gateway finds webhook adapters there
//! by the URL's provider, the normalizer by the record's `provider` ([`normalizer_for`]), and the
//! fuzz harness, the load generator and the conformance kit ([`kit`]) walk it. Adding an adapter
//! means adding its folder and one line there (`docs/adding-a-channel.md`).
//!
//! Normalization is a function of the raw record and of the events normalized before it (see
//! [`KnownEvents`]), so replaying the raw topics in order rebuilds the same conversation events.

pub mod aircall;
pub mod api;
pub mod asterisk;
pub mod email;
pub mod freeswitch;
pub mod ids;
pub mod instagram;
pub mod kit;
pub mod media;
pub mod messenger;
pub mod meta;
pub mod outbound;
pub mod slack;
pub mod telegram;
pub mod twilio;
pub mod twilio_sms;
pub mod twilio_voice;
pub mod viber;
pub mod web_chat;
pub mod webhook;
pub mod whatsapp;
pub mod x;

use omni_proto::v1::{ConversationEvent, RawRecord};

/// Turns raw records of one provider into conversation events.
pub trait Normalize: Send + Sync {
    /// The `provider` value of the raw records this adapter reads.
    fn provider(&self) -> &'static str;

    /// The adapter's folder under `crates/omni-channels/src/`: its code, its tests and, in
    /// `fixtures/`, the provider's payloads that the conformance kit and the fuzz seeds read.
    fn folder(&self) -> &'static str;

    /// Normalizes one record. Must be deterministic: the same record, with the same events
    /// known before it, gives the same event (apart from `normalized_at`, which the caller sets).
    /// `None`: the record means nothing to an agent (a delivery receipt, a read, typing); it
    /// stays in the raw topic only.
    fn normalize(&self, raw: &RawRecord, known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError>;

    /// What the record says about a message omni sent (a provider's delivery status callback),
    /// for omni-sender; `None` for everything else. A record may give both an event and a
    /// receipt (WhatsApp's `failed`, which the agent reads on the ticket too).
    fn receipt(&self, _raw: &RawRecord) -> Result<Option<omni_proto::v1::DeliveryReceipt>, NormalizeError> {
        Ok(None)
    }

    /// Further keys the event's conversation is known by besides its event id, for
    /// [`KnownEvents`] lookups of later messages: what they name it by when that is not its
    /// event id (an email's Message-ID, which two different messages may share).
    fn known_as(&self, _event: &ConversationEvent) -> Vec<String> {
        Vec::new()
    }

    /// The same adapter as a webhook adapter, when it takes provider webhooks: `Some(self)`.
    fn as_webhook(&self) -> Option<&dyn webhook::WebhookAdapter> {
        None
    }
}

/// The events already normalized, by event id: what an adapter may look up to join a message to
/// the conversation of an earlier one (an email reply whose client dropped the thread root).
pub trait KnownEvents {
    /// The conversation the event with this id joined, if it was normalized.
    fn conversation_of(&self, event_id: &str) -> Option<String>;
}

/// No events known: every message is threaded by its own content alone.
pub struct NoKnownEvents;

impl KnownEvents for NoKnownEvents {
    fn conversation_of(&self, _event_id: &str) -> Option<String> {
        None
    }
}

impl<S: std::hash::BuildHasher> KnownEvents for std::collections::HashMap<String, String, S> {
    fn conversation_of(&self, event_id: &str) -> Option<String> {
        self.get(event_id).cloned()
    }
}

/// Why a raw record could not be normalized. Both go to the dead-letter topic: neither is
/// helped by retrying the same record with the same code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NormalizeError {
    /// The payload is not what the provider sends; the message says what is wrong.
    #[error("malformed {provider} payload: {reason}")]
    Malformed {
        /// The provider.
        provider: &'static str,
        /// What is wrong, without message content.
        reason: String,
    },
    /// No adapter reads this provider's records.
    #[error("no adapter for provider `{0}`")]
    UnknownProvider(String),
}

impl NormalizeError {
    /// A [`NormalizeError::Malformed`] of `provider`'s payload.
    pub fn malformed(provider: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            provider,
            reason: reason.into(),
        }
    }
}

/// Every adapter, explicitly listed: the one registry that the gateway, the normalizer, the fuzz
/// harness, the load generator and the tests read. Adding an adapter is its folder and one line
/// here, at the end (the fuzz harness picks adapters by position; see `docs/adding-a-channel.md`).
pub fn adapters() -> &'static [&'static dyn Normalize] {
    static EMAIL: email::EmailNormalizer = email::EmailNormalizer {
        inline_attachment_limit: email::DEFAULT_INLINE_ATTACHMENT_LIMIT,
    };
    static ALL: &[&dyn Normalize] = &[
        &api::ApiNormalizer,
        &EMAIL,
        &whatsapp::WhatsApp,
        &messenger::MESSENGER,
        &instagram::INSTAGRAM,
        &x::X,
        &telegram::Telegram,
        &slack::Slack,
        &twilio_sms::TwilioSms,
        &twilio_voice::TwilioVoice,
        &aircall::Aircall,
        &asterisk::Asterisk,
        &viber::Viber,
        &freeswitch::FreeSwitch,
        &web_chat::WebChat,
    ];
    ALL
}

/// The adapter for a record's `provider`.
pub fn normalizer_for(provider: &str) -> Result<&'static dyn Normalize, NormalizeError> {
    adapters()
        .iter()
        .copied()
        .find(|n| n.provider() == provider)
        .ok_or_else(|| NormalizeError::UnknownProvider(provider.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_found_by_provider() {
        assert_eq!(normalizer_for(api::PROVIDER).unwrap().provider(), "http-api");
        assert_eq!(
            normalizer_for("carrier-pigeon").err(),
            Some(NormalizeError::UnknownProvider("carrier-pigeon".into()))
        );
    }
}
