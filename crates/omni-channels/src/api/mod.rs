//! The generic HTTP API channel: `POST /v1/messages` for systems that are not a known provider
//! (the shop's contact form, an order system).
//!
//! The body, documented in the README:
//!
//! ```json
//! {"customer": {"name": "Ayşe Yılmaz", "email": "ayse@example.com", "phone": "+905551112233"},
//!  "subject": "Siparişim nerede?", "text": "...", "thread_id": "order-1042", "external_id": "form-77"}
//! ```
//!
//! Ids:
//! - event id: over the account and `external_id`, so posting the same `external_id` again is
//!   recognised as the same message; without `external_id`, over the exact body bytes;
//! - conversation id: with `thread_id`, over the account, the customer (email, else phone) and
//!   the thread id; without it, over the event id, so each message starts its own conversation;
//! - partition key: over the account and the customer, so one customer's messages stay in order.

mod payload;

use omni_proto::v1::{Body, Channel, ConversationEvent, Direction, ProviderReference, RawRecord};

pub use payload::{ApiMessage, Customer, ValidMessage, parse};

use crate::{Normalize, NormalizeError, ids};

/// The `provider` of raw records from this channel.
pub const PROVIDER: &str = "http-api";
/// The channel name used in ids.
const CHANNEL: &str = "api";

/// The ids of one accepted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageIds {
    /// The deterministic event id.
    pub event_id: String,
    /// The deterministic conversation id.
    pub conversation_id: String,
    /// The Kafka key of the raw record.
    pub partition_key: String,
}

/// Computes the ids of a valid message received on `account` with exactly `body`.
pub fn ids(account: &str, message: &ValidMessage, body: &[u8]) -> MessageIds {
    let event_id = ids::event_id(CHANNEL, account, message.external_id.as_deref(), body);
    let customer = message.customer_key();
    let conversation_id = match &message.thread_id {
        Some(thread) => ids::conversation_id(&[CHANNEL, account, "thread", customer, thread]),
        None => ids::conversation_id(&[CHANNEL, account, "event", &event_id]),
    };
    let partition_key = ids::partition_key(&[CHANNEL, account, customer]);
    MessageIds {
        event_id,
        conversation_id,
        partition_key,
    }
}

/// Normalizes raw records of the HTTP API channel.
pub struct ApiNormalizer;

impl Normalize for ApiNormalizer {
    fn folder(&self) -> &'static str {
        "api"
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, known: &dyn crate::KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        self.event(raw, known).map(Some)
    }
}

impl ApiNormalizer {
    /// Normalizes one record; every record of this channel is a message.
    pub fn event(&self, raw: &RawRecord, _known: &dyn crate::KnownEvents) -> Result<ConversationEvent, NormalizeError> {
        let message = parse(&raw.payload).map_err(|problems| NormalizeError::malformed(PROVIDER, problems.join("; ")))?;
        let ids = ids(&raw.account, &message, &raw.payload);
        let reply_to = message
            .customer
            .email
            .clone()
            .or_else(|| message.customer.phone.clone())
            .unwrap_or_default();
        Ok(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids.conversation_id,
            channel: Channel::Api as i32,
            direction: Direction::Inbound as i32,
            participants: vec![message.customer.participant()],
            subject: message.subject.clone().unwrap_or_default(),
            body: Some(Body {
                text: message.text.clone(),
                html: String::new(),
                new_text: message.text.clone(),
            }),
            attachments: Vec::new(),
            call: None,
            language: message.language.clone().unwrap_or_default(),
            tags: message.tags.clone(),
            occurred_at: raw.received_at,
            received_at: raw.received_at,
            normalized_at: None,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: message.external_id.clone().unwrap_or_default(),
                thread_id: message.thread_id.clone().unwrap_or_default(),
                reply_to,
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::contact_identifier::Kind;

    use super::*;

    #[test]
    fn passes_the_conformance_kit() {
        fn records(_name: &str, body: &[u8]) -> Vec<RawRecord> {
            vec![raw(std::str::from_utf8(body).unwrap())]
        }
        crate::kit::NormalizeConformance::new(&ApiNormalizer, records).run();
    }

    fn raw(body: &str) -> RawRecord {
        let message = parse(body.as_bytes()).expect("valid fixture");
        RawRecord {
            event_id: ids("default", &message, body.as_bytes()).event_id,
            channel: Channel::Api as i32,
            provider: PROVIDER.into(),
            account: "default".into(),
            payload: body.as_bytes().to_vec(),
            received_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    const FORM: &str = include_str!("fixtures/contact-form-tr.json");

    #[test]
    fn contact_form_normalizes_to_a_readable_event() {
        let event = ApiNormalizer.event(&raw(FORM), &crate::NoKnownEvents).unwrap();
        assert_eq!(event.subject, "Siparişim nerede?");
        assert_eq!(
            event.body.as_ref().unwrap().text,
            "Merhaba, 1042 numaralı siparişim hâlâ kargoya verilmedi. Ne zaman gelir?"
        );
        let customer = &event.participants[0];
        assert_eq!(customer.display_name, "Ayşe Yılmaz");
        let kinds: Vec<(i32, &str)> = customer.identifiers.iter().map(|i| (i.kind, i.value.as_str())).collect();
        assert_eq!(
            kinds,
            [(Kind::Email as i32, "ayse@example.com"), (Kind::Phone as i32, "+905551112233")]
        );
        assert_eq!(event.provider.as_ref().unwrap().message_id, "form-77");
        assert_eq!(event.provider.as_ref().unwrap().reply_to, "ayse@example.com");
        assert_eq!(event.channel, Channel::Api as i32);
    }

    #[test]
    fn same_customer_and_thread_is_one_conversation() {
        let first = ApiNormalizer.event(&raw(FORM), &crate::NoKnownEvents).unwrap();
        let follow_up = FORM.replace("form-77", "form-78").replace("Ne zaman gelir?", "Cevap bekliyorum.");
        let second = ApiNormalizer.event(&raw(&follow_up), &crate::NoKnownEvents).unwrap();
        assert_eq!(first.conversation_id, second.conversation_id);
        assert_ne!(first.event_id, second.event_id);
        let other_thread = ApiNormalizer
            .event(&raw(&FORM.replace("order-1042", "order-1043")), &crate::NoKnownEvents)
            .unwrap();
        assert_ne!(first.conversation_id, other_thread.conversation_id);
        let other_customer = ApiNormalizer
            .event(&raw(&FORM.replace("ayse@", "fatma@")), &crate::NoKnownEvents)
            .unwrap();
        assert_ne!(first.conversation_id, other_customer.conversation_id);
    }

    #[test]
    fn without_thread_each_message_starts_a_conversation() {
        let a = r#"{"customer":{"phone":"+31 20 123 4567"},"text":"Waar is mijn pakket?"}"#;
        let b = r#"{"customer":{"phone":"+31 20 123 4567"},"text":"Ik wil retourneren."}"#;
        let (a, b) = (
            ApiNormalizer.event(&raw(a), &crate::NoKnownEvents).unwrap(),
            ApiNormalizer.event(&raw(b), &crate::NoKnownEvents).unwrap(),
        );
        assert_ne!(a.conversation_id, b.conversation_id);
        assert_eq!(a.participants[0].identifiers[0].value, "+31201234567");
    }

    #[test]
    fn same_external_id_is_the_same_event() {
        let a = parse(FORM.as_bytes()).unwrap();
        let edited = FORM.replace("Ne zaman gelir?", "Ne zaman?");
        let b = parse(edited.as_bytes()).unwrap();
        assert_eq!(
            ids("default", &a, FORM.as_bytes()).event_id,
            ids("default", &b, edited.as_bytes()).event_id
        );
        assert_ne!(
            ids("default", &a, FORM.as_bytes()).event_id,
            ids("other", &a, FORM.as_bytes()).event_id
        );
    }

    #[test]
    fn a_payload_that_is_not_the_api_shape_is_malformed() {
        let mut record = raw(FORM);
        record.payload = b"\x00\x01not json".to_vec();
        let error = ApiNormalizer.event(&record, &crate::NoKnownEvents).unwrap_err();
        assert!(matches!(error, NormalizeError::Malformed { .. }), "{error}");
    }
}
