//! Fixtures in `src/twilio_sms/fixtures/` follow Twilio's "Twilio's request to your incoming
//! message Webhook URL" (<https://www.twilio.com/docs/messaging/guides/webhook-request>: the
//! request parameters table, with the WhatsApp parameters `ProfileName`, `WaId`, `MessageType`)
//! and "Track the message status of outbound messages"
//! (<https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>: the status
//! callback parameters, with `ErrorCode` on undelivered messages), form-encoded as Twilio sends
//! them, with Turkish and Dutch customer texts. The expected signature was computed independently
//! with Python's `hmac`/`base64` per "Webhooks security"
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>).

use std::time::SystemTime;

use omni_proto::v1::contact_identifier::Kind;

use super::*;
use crate::webhook::{Accepted, Rejection, WebhookAccount, WebhookRequest};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const URL: &str = "https://omni.example.com/webhooks/twilio-sms/shop";
const SMS_TR: &str = include_str!("fixtures/incoming-sms-tr.form");
const MMS: &str = include_str!("fixtures/incoming-mms.form");
const WHATSAPP_NL: &str = include_str!("fixtures/incoming-whatsapp-nl.form");
const DELIVERED: &str = include_str!("fixtures/status-delivered.form");
const UNDELIVERED: &str = include_str!("fixtures/status-undelivered.form");

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: TOKEN.into(),
        public_url: Some(URL.into()),
        ..Default::default()
    }
}

fn headers(content_type: &str, signature: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", content_type.parse().unwrap());
    if let Some(signature) = signature {
        headers.insert("X-Twilio-Signature", signature.parse().unwrap());
    }
    headers
}

fn request<'a>(headers: &'a http::HeaderMap, body: &'a str) -> WebhookRequest<'a> {
    WebhookRequest {
        url: URL,
        query: "",
        headers,
        body: body.as_bytes(),
        now: SystemTime::now(),
    }
}

fn accept(body: &str) -> Result<Accepted, Rejection> {
    let headers = headers("application/x-www-form-urlencoded", None);
    TwilioSms.accept(&account(), &request(&headers, body))
}

fn items_of(body: &str) -> Vec<Item> {
    match accept(body) {
        Ok(Accepted::Items(items)) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway writes for item 0 of `body` on account `shop`.
/// The raw record the gateway stores for item 0 of `body` on account `shop`.
fn raw(body: &str) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_342_500);
    crate::kit::records_at(
        &TwilioSms,
        &account(),
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        received_at,
    )
    .swap_remove(0)
}

fn event(body: &str) -> ConversationEvent {
    TwilioSms
        .normalize(&raw(body), &crate::NoKnownEvents)
        .unwrap()
        .expect("a message event")
}

#[test]
fn a_correctly_signed_request_is_verified() {
    // Computed with Python: base64(hmac.new(TOKEN, URL + sorted name+value pairs, sha1)).
    let headers = headers("application/x-www-form-urlencoded", Some("QGpEBMrUhcbiVjHVaas67qMIJVk="));
    assert_eq!(TwilioSms.verify(&account(), &request(&headers, SMS_TR)), Ok(()));
}

#[test]
fn forged_and_missing_signatures_are_refused() {
    let good = "QGpEBMrUhcbiVjHVaas67qMIJVk=";
    let forged = SMS_TR.replace("gelmedi", "geldi");
    let h = headers("application/x-www-form-urlencoded", Some(good));
    assert!(matches!(
        TwilioSms.verify(&account(), &request(&h, &forged)),
        Err(Rejection::Forbidden(_))
    ));
    let other_token = WebhookAccount {
        secret: "fedcba9876543210fedcba9876543210".into(),
        ..account()
    };
    assert!(matches!(
        TwilioSms.verify(&other_token, &request(&h, SMS_TR)),
        Err(Rejection::Forbidden(_))
    ));
    let h = headers("application/x-www-form-urlencoded", None);
    assert!(matches!(
        TwilioSms.verify(&account(), &request(&h, SMS_TR)),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn get_is_not_a_handshake() {
    let h = headers("application/x-www-form-urlencoded", None);
    assert!(matches!(
        TwilioSms.handshake(&account(), &request(&h, "")),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn accept_yields_one_item_per_request() {
    let incoming = items_of(SMS_TR);
    assert_eq!(
        incoming,
        [Item {
            provider_message_id: "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0".into(),
            partition_key: vec!["sms".into(), "+14155552671".into(), "+905551112233".into()],
        }]
    );
    let status = items_of(UNDELIVERED);
    assert_eq!(status[0].provider_message_id, "SM2b3c4d5e6f708192a3b4c5d6e7f8091a/undelivered");
    // The status callback of a reply to the customer stays in the customer's partition.
    assert_eq!(status[0].partition_key, incoming[0].partition_key);
    assert_eq!(
        items_of(DELIVERED)[0].provider_message_id,
        "SM2b3c4d5e6f708192a3b4c5d6e7f8091a/delivered"
    );
}

#[test]
fn accept_refuses_what_twilio_never_sends() {
    assert!(matches!(accept("hello=world"), Err(Rejection::BadRequest(_))));
    assert!(matches!(
        accept("MessageSid=SM1&AccountSid=AC1&Body=hi"),
        Err(Rejection::BadRequest(_))
    ));
    let json = headers("application/json", None);
    assert!(matches!(
        TwilioSms.accept(&account(), &request(&json, r#"{"MessageSid":"SM1"}"#)),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn acknowledgement_is_empty_twiml() {
    let reply = TwilioSms.acknowledgement();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "text/xml");
    assert_eq!(
        String::from_utf8(reply.body).unwrap(),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
    );
}

#[test]
fn an_incoming_sms_normalizes_to_a_readable_event() {
    let event = event(SMS_TR);
    let raw = raw(SMS_TR);
    assert_eq!(event.event_id, raw.event_id);
    assert_eq!(event.channel, Channel::Sms as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    let body = event.body.as_ref().unwrap();
    assert_eq!(
        body.text,
        "Merhaba, 1042 numaralı siparişim hâlâ gelmedi. Kargo takip numarasını paylaşır mısınız?"
    );
    assert_eq!(body.new_text, body.text);
    assert!(body.html.is_empty());
    let customer = &event.participants[0];
    assert_eq!(customer.role, participant::Role::Customer as i32);
    assert_eq!(customer.identifiers.len(), 1);
    assert_eq!(customer.identifiers[0].kind, Kind::Phone as i32);
    assert_eq!(customer.identifiers[0].value, "+905551112233");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.provider, "twilio-sms");
    assert_eq!(provider.account, "shop");
    assert_eq!(provider.message_id, "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0");
    assert_eq!(provider.reply_to, "+905551112233");
    assert_eq!(event.occurred_at, raw.received_at);
    assert_eq!(event.received_at, raw.received_at);
    assert!(event.attachments.is_empty());
    assert!(event.tags.is_empty());
}

#[test]
fn mms_media_become_referenced_attachments() {
    let event = event(MMS);
    assert_eq!(event.attachments.len(), 2);
    assert_eq!(event.attachments[0].media_type, "image/jpeg");
    assert_eq!(event.attachments[1].media_type, "application/pdf");
    match &event.attachments[0].content {
        Some(attachment::Content::Reference(url)) => assert!(url.ends_with("/Media/ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"), "{url}"),
        other => panic!("expected a reference, got {other:?}"),
    }
    assert_eq!(event.body.as_ref().unwrap().text, "Sent image/jpeg\nSent application/pdf");
}

#[test]
fn whatsapp_through_twilio_keeps_its_address_and_profile_name() {
    let event = event(WHATSAPP_NL);
    assert_eq!(event.channel, Channel::Whatsapp as i32);
    let customer = &event.participants[0];
    assert_eq!(customer.display_name, "Sanne de Vries");
    assert_eq!(customer.identifiers[0].value, "+31612345678");
    assert_eq!(customer.identifiers[1].kind, Kind::PlatformUserId as i32);
    assert_eq!(customer.identifiers[1].value, "whatsapp:+31612345678");
    assert_eq!(event.provider.as_ref().unwrap().reply_to, "whatsapp:+31612345678");
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Hallo, mijn pakket is beschadigd aangekomen. Kan ik het retourneren?"
    );
}

#[test]
fn conversations_are_per_customer_and_ids_stable_across_retries() {
    let first = event(SMS_TR);
    assert_eq!(first, event(SMS_TR), "a retried delivery gives the same event");
    let follow_up = SMS_TR
        .replace("SM1f0e2d3c4b5a69788796a5b4c3d2e1f0", "SM00000000000000000000000000000001")
        .replace("Kargo", "L%C3%BCtfen");
    let second = event(&follow_up);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    assert_eq!(first.conversation_id, event(MMS).conversation_id);
    let other_customer = event(&SMS_TR.replace("From=%2B905551112233", "From=%2B905559998877"));
    assert_ne!(first.conversation_id, other_customer.conversation_id);
    let mut other_account = raw(SMS_TR);
    other_account.account = "other-shop".into();
    let other_account = TwilioSms.normalize(&other_account, &crate::NoKnownEvents).unwrap().unwrap();
    assert_ne!(first.conversation_id, other_account.conversation_id);
    assert_ne!(first.conversation_id, event(WHATSAPP_NL).conversation_id);
}

#[test]
fn status_callbacks_normalize_to_nothing() {
    for body in [DELIVERED, UNDELIVERED] {
        assert_eq!(TwilioSms.normalize(&raw(body), &crate::NoKnownEvents), Ok(None));
    }
}

#[test]
fn unreadable_records_are_malformed() {
    let mut record = raw(SMS_TR);
    record.payload = b"\x00\x01not a form".to_vec();
    crate::kit::assert_malformed(&TwilioSms, &record);
    let mut record = raw(SMS_TR);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "1".into());
    crate::kit::assert_malformed(&TwilioSms, &record);
}

#[test]
fn account_config_needs_the_auth_token() {
    assert!(TwilioSms.check_account(&account(), true).is_empty());
    let short = WebhookAccount {
        secret: "abc".into(),
        public_url: Some("omni.example.com/hook".into()),
        ..Default::default()
    };
    assert_eq!(TwilioSms.check_account(&short, true).len(), 2);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&TwilioSms)
        .no_event(&["status-delivered.form", "status-undelivered.form"])
        .run();
}

#[test]
fn status_callbacks_are_receipts_for_the_sender() {
    use omni_proto::v1::delivery_receipt::Status;
    let failed = TwilioSms.receipt(&raw(UNDELIVERED)).unwrap().expect("a receipt");
    assert_eq!(failed.provider_message_id, "SM2b3c4d5e6f708192a3b4c5d6e7f8091a");
    assert_eq!(failed.status(), Status::Failed);
    assert!(failed.reason.contains("30003"), "{}", failed.reason);
    assert_eq!(failed.provider, PROVIDER);
    assert_eq!(failed.account, "shop");
    // The conversation of the customer the message went to (To), as their own messages'.
    let incoming = event(INCOMING_TR_WITH_CUSTOMER_TO_OF_UNDELIVERED);
    assert_eq!(failed.conversation_id, incoming.conversation_id);
    let delivered = TwilioSms.receipt(&raw(DELIVERED)).unwrap().expect("a receipt");
    assert_eq!(delivered.status(), Status::Delivered);
    assert!(delivered.reason.is_empty());
    assert_ne!(delivered.receipt_id, failed.receipt_id);
    assert_eq!(
        TwilioSms.receipt(&raw(DELIVERED)).unwrap().unwrap().receipt_id,
        delivered.receipt_id
    );
    // An incoming message is no receipt.
    assert_eq!(TwilioSms.receipt(&raw(INCOMING_TR_WITH_CUSTOMER_TO_OF_UNDELIVERED)).unwrap(), None);
}

/// An incoming SMS from the customer the undelivered fixture was sent to, to the same number.
const INCOMING_TR_WITH_CUSTOMER_TO_OF_UNDELIVERED: &str = "SmsMessageSid=SM0000000000000000000000000000in01&NumMedia=0&SmsStatus=received&Body=Merhaba&To=%2B14155552671&MessagingServiceSid=MG9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d&MessageSid=SM0000000000000000000000000000in01&AccountSid=AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f&From=%2B905551112233&ApiVersion=2010-04-01";
