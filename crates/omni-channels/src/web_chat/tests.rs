use omni_proto::v1::contact_identifier::Kind;

use super::*;
use crate::NoKnownEvents;

fn raw(account: &str, body: &[u8]) -> RawRecord {
    let message: ChatMessage = serde_json::from_slice(body).expect("a fixture");
    RawRecord {
        event_id: ids(account, &message).event_id,
        channel: Channel::WebChat as i32,
        provider: PROVIDER.into(),
        account: account.into(),
        content_type: "application/json".into(),
        payload: body.to_vec(),
        received_at: Some(prost_types::Timestamp {
            seconds: 1_765_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/src/web_chat/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn event(body: &[u8]) -> ConversationEvent {
    WebChat.normalize(&raw("shop", body), &NoKnownEvents).unwrap().unwrap()
}

#[test]
fn passes_the_conformance_kit() {
    fn records(_name: &str, body: &[u8]) -> Vec<RawRecord> {
        vec![raw("shop", body)]
    }
    crate::kit::NormalizeConformance::new(&WebChat, records).run();
}

#[test]
fn an_anonymous_visitor_is_known_by_the_visitor_id_only() {
    let event = event(&fixture("visitor-tr.json"));
    assert_eq!(event.channel(), Channel::WebChat);
    assert_eq!(event.direction(), Direction::Inbound);
    assert_eq!(event.language, "tr-TR");
    let customer = &event.participants[0];
    assert_eq!(customer.display_name, "Ayşe");
    assert_eq!(customer.identifiers.len(), 1);
    assert_eq!(customer.identifiers[0].kind(), Kind::PlatformUserId);
    assert_eq!(customer.identifiers[0].value, "9f2c4d1e8a7b6c5d4e3f2a1b0c9d8e7f");
    assert!(event.body.unwrap().text.contains("1042 numaralı"));
}

#[test]
fn a_verified_customer_carries_the_email_and_one_conversation_across_devices() {
    let body = fixture("verified-customer-nl.json");
    let first = event(&body);
    let customer = &first.participants[0];
    assert_eq!(customer.display_name, "Jan de Vries");
    assert_eq!(customer.identifiers[0].kind(), Kind::Email);
    assert_eq!(customer.identifiers[0].value, "jan.devries@example.nl");
    // Another device: another visitor id, the same customer, the same conversation.
    let mut message: ChatMessage = serde_json::from_slice(&body).unwrap();
    message.visitor = "ffffffffffffffffffffffffffffffff".into();
    message.client_id = "m-1-other".into();
    let second = event(&serde_json::to_vec(&message).unwrap());
    assert_eq!(second.conversation_id, first.conversation_id);
    assert_ne!(second.event_id, first.event_id);
    // Without the verified identity the same visitor is a conversation of its own.
    message.customer = None;
    assert_ne!(event(&serde_json::to_vec(&message).unwrap()).conversation_id, first.conversation_id);
}

#[test]
fn a_message_sent_again_is_the_same_event_and_html_stays_text() {
    let body = fixture("script-ar.json");
    let message: ChatMessage = serde_json::from_slice(&body).unwrap();
    assert_eq!(ids("shop", &message), ids("shop", &message.clone()));
    assert_ne!(ids("shop", &message).event_id, ids("other-shop", &message).event_id);
    let event = event(&body);
    assert_eq!(event.body.as_ref().unwrap().html, "");
    assert!(event.body.unwrap().text.starts_with("<script>"));
}

#[test]
fn an_empty_text_or_an_unknown_field_is_malformed() {
    for body in [
        r#"{"visitor":"v","client_id":"c","text":"   "}"#,
        r#"{"visitor":"v","client_id":"c","text":"hi","admin":true}"#,
        r#"{"visitor":"","client_id":"c","text":"hi"}"#,
    ] {
        let error = WebChat.normalize(&raw_unchecked(body), &NoKnownEvents).unwrap_err();
        assert!(matches!(error, NormalizeError::Malformed { .. }), "{body}: {error:?}");
    }
}

fn raw_unchecked(body: &str) -> RawRecord {
    RawRecord {
        event_id: "e".into(),
        provider: PROVIDER.into(),
        account: "shop".into(),
        payload: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[test]
fn an_image_is_an_attachment_named_by_its_sha256_for_the_router_to_take_from_the_store() {
    let event = event(&fixture("image-en.json"));
    assert_eq!(event.attachments.len(), 1);
    let file = &event.attachments[0];
    assert_eq!(file.name, "box.jpg");
    assert_eq!(file.media_type, "image/jpeg");
    assert_eq!(file.size_bytes, 48213);
    assert_eq!(file.sha256, "4f1c2b7e9a0d3c6b5a8e7f0d1c2b3a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c");
    assert!(file.content.is_none(), "the bytes are in the store, not the event");
    assert_eq!(event.body.unwrap().text, "The parcel arrived like this");
}

#[test]
fn an_image_alone_is_a_message_but_one_without_a_hash_is_malformed() {
    let mut message: ChatMessage = serde_json::from_slice(&fixture("image-en.json")).unwrap();
    message.text = String::new();
    let alone = event(&serde_json::to_vec(&message).unwrap());
    assert_eq!(alone.attachments.len(), 1);
    message.files[0].sha256 = "not-a-digest".into();
    let error = WebChat.normalize(&raw("shop", &serde_json::to_vec(&message).unwrap()), &NoKnownEvents);
    assert!(matches!(error, Err(NormalizeError::Malformed { .. })), "{error:?}");
    message.files.clear();
    let error = WebChat.normalize(&raw("shop", &serde_json::to_vec(&message).unwrap()), &NoKnownEvents);
    assert!(matches!(error, Err(NormalizeError::Malformed { .. })), "{error:?}");
}
