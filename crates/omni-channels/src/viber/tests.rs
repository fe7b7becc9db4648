//! Fixtures in `src/viber/fixtures/` follow Viber's REST Bot API callbacks
//! (<https://developers.viber.com/docs/api/rest-bot-api/#callbacks>) and the message data model
//! (<https://creators.viber.com/docs/bots-api/data-models/message>), with message tokens above
//! 2^53 as Viber sends them. The expected signature was computed independently with Python's
//! `hmac` (`hmac.new(b"viber-test-auth-token", body, hashlib.sha256).hexdigest()`), the
//! computation of the official `viber-bot-python` SDK.

use omni_proto::v1::attachment::Content;

use super::*;

const TEXT: &str = include_str!("fixtures/message-text.json");
const TEXT_TR: &str = include_str!("fixtures/message-text-tr.json");
const PICTURE: &str = include_str!("fixtures/message-picture.json");
const FILE: &str = include_str!("fixtures/message-file.json");
const LOCATION: &str = include_str!("fixtures/message-location.json");
const CONTACT: &str = include_str!("fixtures/message-contact.json");
const STICKER: &str = include_str!("fixtures/message-sticker.json");

pub(super) fn event(body: &str) -> ConversationEvent {
    crate::kit::events(&Viber, &Viber.development_account(), "application/json", body.as_bytes())
        .swap_remove(0)
        .expect("a message event")
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&Viber)
        .no_event(&[
            "conversation-started.json",
            "delivered.json",
            "failed.json",
            "seen.json",
            "subscribed.json",
            "unsubscribed.json",
            "webhook.json",
        ])
        .run();
}

#[test]
fn the_signature_is_the_sdks_hex_hmac_of_the_body() {
    let account = WebhookAccount::new("viber-test-auth-token");
    let signed = Viber.sign(&account, "", "application/json", TEXT.as_bytes(), crate::kit::now());
    assert_eq!(
        signed.headers,
        [(
            SIGNATURE_HEADER,
            "97c8b2490aa07ebde5a71e23719c34aeb519f707110ca797105aec0dbb6942fd".to_owned()
        )]
    );
}

#[test]
fn a_turkish_text_keeps_its_letters_its_sender_and_its_64_bit_token() {
    let event = event(TEXT_TR);
    let body = event.body.as_ref().unwrap();
    assert!(body.text.contains("Sipariş no: #SHP-48377. İade"), "{}", body.text);
    assert_eq!(event.language, "tr");
    assert_eq!(event.channel, Channel::Viber as i32);
    let customer = &event.participants[0];
    assert_eq!(customer.display_name, "Ayşe Yıldırım");
    assert_eq!(customer.identifiers[0].value, "Yp5nR8cW1qLz7dXk2Tb9Vg==");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.message_id, "5920486127730559104");
    assert_eq!(provider.reply_to, "Yp5nR8cW1qLz7dXk2Tb9Vg==");
    assert_eq!(event.occurred_at.unwrap().seconds, 1_735_731_058);
    assert_eq!(event.occurred_at.unwrap().nanos, 904_000_000);
}

#[test]
fn one_customer_is_one_conversation_whatever_they_send() {
    let sender_of = |body: &str| event(body).conversation_id;
    assert_eq!(sender_of(TEXT_TR), sender_of(PICTURE));
    assert_eq!(sender_of(LOCATION), sender_of(CONTACT));
    assert_ne!(sender_of(TEXT_TR), sender_of(LOCATION));
}

#[test]
fn media_become_references_with_their_type() {
    let picture = event(PICTURE);
    assert_eq!(picture.body.as_ref().unwrap().text, "Fermuarın fotoğrafı");
    assert_eq!(picture.attachments[0].media_type, "image/jpeg");
    assert_eq!(picture.attachments[0].size_bytes, 284_113);
    assert!(matches!(&picture.attachments[0].content, Some(Content::Reference(url)) if url.starts_with("https://dl-media.viber.com/")));
    let file = event(FILE);
    assert_eq!(file.attachments[0].name, "invoice-SHP-48213.pdf");
    assert_eq!(file.attachments[0].media_type, "application/pdf");
    assert!(!file.body.as_ref().unwrap().text.is_empty());
}

#[test]
fn locations_contacts_and_stickers_read_as_text() {
    let location = event(LOCATION);
    assert!((location.locations[0].latitude - 51.507446).abs() < 1e-9);
    let contact = event(CONTACT);
    assert_eq!(contact.contacts[0].identifiers[0].value, "+447700900481");
    assert!(contact.body.as_ref().unwrap().text.contains("Tom Bennett"));
    assert_eq!(event(STICKER).body.as_ref().unwrap().text, "Sent a sticker");
}
