//! Fixtures in `src/whatsapp/fixtures/` follow the payloads of Meta's WhatsApp Cloud API
//! "messages webhook reference"
//! (<https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages>)
//! and its pages per type: `…/messages/text` (`text-tr.json`), `…/image` (`image-nl.json`),
//! `…/document` (`document.json`), `…/audio`, `…/video`, `…/sticker` (`media-batch.json`),
//! `…/location` (`location-tr.json`), `…/contacts` (`contacts-ar.json`), `…/interactive`
//! (`interactive.json`), `…/button` (`button.json`), `…/reaction` (`reaction.json`),
//! `…/unsupported` (`unsupported.json`) and `…/status` (`statuses.json`, `status-failed.json`),
//! with the reference's example ids (WABA 102290129340398, phone number id 106540352242922) and
//! customers writing Turkish, Dutch and Arabic. Most are stored as Meta sends them, non-ASCII
//! escaped as `\uXXXX`; `image-nl.json` and `interactive.json` are raw UTF-8. Signatures follow
//! Meta's "Getting Started" webhooks guide (HMAC-SHA256 of the body under the App Secret).

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Channel, ConversationEvent, Direction, RawRecord, attachment};

use super::*;
use crate::meta::tests::{APP_SECRET, account, headers, request, signature};
use crate::webhook::ITEM_ATTRIBUTE;

const TEXT_TR: &str = include_str!("fixtures/text-tr.json");
const IMAGE_NL: &str = include_str!("fixtures/image-nl.json");
const DOCUMENT: &str = include_str!("fixtures/document.json");
const MEDIA_BATCH: &str = include_str!("fixtures/media-batch.json");
const LOCATION_TR: &str = include_str!("fixtures/location-tr.json");
const CONTACTS_AR: &str = include_str!("fixtures/contacts-ar.json");
const INTERACTIVE: &str = include_str!("fixtures/interactive.json");
const BUTTON: &str = include_str!("fixtures/button.json");
const REACTION: &str = include_str!("fixtures/reaction.json");
const UNSUPPORTED: &str = include_str!("fixtures/unsupported.json");
const STATUSES: &str = include_str!("fixtures/statuses.json");
const STATUS_FAILED: &str = include_str!("fixtures/status-failed.json");

/// The items `accept` finds in a signed body.
fn accept(body: &str) -> Result<Vec<Item>, Rejection> {
    let headers = headers(Some(&signature(APP_SECRET, body.as_bytes())));
    let request = request(&headers, "", body.as_bytes());
    WhatsApp.verify(&account(), &request)?;
    match WhatsApp.accept(&account(), &request)? {
        Accepted::Items(items) => Ok(items),
        Accepted::Reply(reply) => panic!("unexpected reply {reply:?}"),
    }
}

/// The raw record the gateway writes for item `index` of `body` on account `shop`.
/// The raw record the gateway stores for item `index` of `body` on account `shop`.
fn raw(body: &str, index: usize) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000);
    crate::kit::records_at(&WhatsApp, &account(), "application/json", body.as_bytes(), received_at).swap_remove(index)
}

fn normalize(body: &str, index: usize) -> Option<ConversationEvent> {
    WhatsApp
        .normalize(&raw(body, index), &crate::NoKnownEvents)
        .expect("fixture normalizes")
}

fn event(body: &str, index: usize) -> ConversationEvent {
    normalize(body, index).expect("an event")
}

fn text(event: &ConversationEvent) -> &str {
    &event.body.as_ref().unwrap().text
}

fn reference(event: &ConversationEvent) -> &ProviderReference {
    event.provider.as_ref().unwrap()
}

#[test]
fn the_signed_fixture_is_verified_and_a_forged_or_missing_signature_refused() {
    let body = TEXT_TR.as_bytes();
    let good = headers(Some(&signature(APP_SECRET, body)));
    assert_eq!(WhatsApp.verify(&account(), &request(&good, "", body)), Ok(()));
    let forged = headers(Some(&signature("another-app-secret", body)));
    assert!(matches!(
        WhatsApp.verify(&account(), &request(&forged, "", body)),
        Err(Rejection::Forbidden(_))
    ));
    // The same text, signed over its unescaped UTF-8 form: not the bytes Meta sent.
    let unescaped = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(TEXT_TR).unwrap()).unwrap();
    let other = headers(Some(&signature(APP_SECRET, &unescaped)));
    assert!(matches!(
        WhatsApp.verify(&account(), &request(&other, "", body)),
        Err(Rejection::Forbidden(_))
    ));
    let missing = headers(None);
    assert!(matches!(
        WhatsApp.verify(&account(), &request(&missing, "", body)),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn the_handshake_and_the_account_check_are_meta_s() {
    let headers = headers(None);
    let reply = WhatsApp
        .handshake(
            &account(),
            &request(
                &headers,
                "hub.mode=subscribe&hub.challenge=8821&hub.verify_token=omni-verify-3b9d",
                b"",
            ),
        )
        .unwrap();
    assert_eq!(reply.body, b"8821");
    assert!(matches!(
        WhatsApp.handshake(
            &account(),
            &request(&headers, "hub.mode=subscribe&hub.challenge=8821&hub.verify_token=guess", b"")
        ),
        Err(Rejection::Forbidden(_))
    ));
    let problems = WhatsApp.check_account(&WebhookAccount::new(account().secret), true);
    assert!(problems.iter().any(|p| p.starts_with("verify_token")), "{problems:?}");
}

#[test]
fn accept_lists_every_message_and_status_in_payload_order() {
    let items = accept(MEDIA_BATCH).unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i.provider_message_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "wamid.HBgMOTA1NTUxMTEyMjMzFQIAEhgUQVVESU8wMDAwMDAwMDAwMDAwMDEA",
            "wamid.HBgMOTA1NTUxMTEyMjMzFQIAEhgUVklERU8wMDAwMDAwMDAwMDAwMDIA",
            "wamid.HBgMOTA1NTUxMTEyMjMzFQIAEhgUU1RJQ0tFUjAwMDAwMDAwMDAwMDMA"
        ]
    );
    assert!(
        items
            .iter()
            .all(|i| i.partition_key == ["whatsapp", "106540352242922", "905551112233"])
    );
    let statuses = accept(STATUSES).unwrap();
    let ids: Vec<&str> = statuses.iter().map(|i| i.provider_message_id.as_str()).collect();
    let wamid = "wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgSQjZGOTUwRDRFNzg2MUEzN0VEAA==";
    assert_eq!(
        ids,
        [format!("{wamid}/sent"), format!("{wamid}/delivered"), format!("{wamid}/read")]
    );
}

#[test]
fn a_retried_delivery_gives_the_same_items_and_event_ids() {
    assert_eq!(accept(TEXT_TR).unwrap(), accept(TEXT_TR).unwrap());
    assert_eq!(raw(TEXT_TR, 0).event_id, raw(TEXT_TR, 0).event_id);
    assert_ne!(raw(MEDIA_BATCH, 0).event_id, raw(MEDIA_BATCH, 1).event_id);
}

#[test]
fn bodies_whatsapp_would_not_send_are_bad_requests_and_other_fields_are_empty() {
    for body in [
        "not json",
        r#"{"object":"page","entry":[]}"#,
        r#"{"object":"whatsapp_business_account"}"#,
        r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"905551112233","type":"text"}]}}]}]}"#,
    ] {
        assert!(matches!(accept(body), Err(Rejection::BadRequest(_))), "{body}");
    }
    let template_update = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1749416383,"changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":594425479261596,"message_template_name":"siparis_kargoda","message_template_language":"tr","reason":"NONE"}}]}]}"#;
    assert_eq!(accept(template_update), Ok(Vec::new()));
}

#[test]
fn a_turkish_text_message_normalizes_to_a_readable_event() {
    let event = event(TEXT_TR, 0);
    assert_eq!(
        text(&event),
        "Merhaba, 1042 numaralı siparişim hâlâ gelmedi. Kargo takip numarasını gönderebilir misiniz?"
    );
    assert_eq!(event.body.as_ref().unwrap().new_text, text(&event));
    assert_eq!(event.channel, Channel::Whatsapp as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    assert_eq!(event.event_id, raw(TEXT_TR, 0).event_id);
    let customer = &event.participants[0];
    assert_eq!(customer.role, Role::Customer as i32);
    assert_eq!(customer.display_name, "Ayşe Yılmaz");
    let identifiers: Vec<(i32, &str, &str)> = customer
        .identifiers
        .iter()
        .map(|i| (i.kind, i.value.as_str(), i.platform.as_str()))
        .collect();
    assert_eq!(
        identifiers,
        [
            (Kind::Phone as i32, "+905551112233", ""),
            (Kind::PlatformUserId as i32, "905551112233", "whatsapp")
        ]
    );
    let provider = reference(&event);
    assert_eq!(provider.provider, "whatsapp");
    assert_eq!(provider.account, "shop");
    assert_eq!(
        provider.message_id,
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAEhgUM0E0QjY1OTlBRUUwMzgxMDE0NEYA"
    );
    assert_eq!(provider.reply_to, "905551112233");
    assert_eq!(provider.in_reply_to, "");
    assert_eq!(
        event.occurred_at,
        Some(prost_types::Timestamp {
            seconds: 1_749_416_383,
            nanos: 0
        })
    );
    assert_eq!(
        event.received_at,
        Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0
        })
    );
    assert_eq!(
        event.conversation_id,
        ids::conversation_id(&["whatsapp", "shop", "106540352242922", "905551112233"])
    );
}

#[test]
fn one_customer_is_one_conversation_per_business_number() {
    let first = event(TEXT_TR, 0);
    let document = event(DOCUMENT, 0);
    assert_eq!(first.conversation_id, document.conversation_id);
    assert_ne!(first.event_id, document.event_id);
    let other_customer = event(IMAGE_NL, 0);
    assert_ne!(first.conversation_id, other_customer.conversation_id);
    let other_number = event(&TEXT_TR.replace("106540352242922", "106540352242923"), 0);
    assert_ne!(first.conversation_id, other_number.conversation_id);
    let mut other_account = raw(TEXT_TR, 0);
    other_account.account = "outlet".into();
    let other_account = WhatsApp.normalize(&other_account, &crate::NoKnownEvents).unwrap().unwrap();
    assert_ne!(first.conversation_id, other_account.conversation_id);
}

#[test]
fn an_image_keeps_its_caption_media_id_and_digest() {
    let event = event(IMAGE_NL, 0);
    assert_eq!(
        text(&event),
        "De doos was beschadigd bij aankomst, zie foto. Kan ik een nieuwe krijgen?"
    );
    assert_eq!(event.participants[0].display_name, "Sanne de Vries");
    assert_eq!(event.participants[0].identifiers[0].value, "+31612345678");
    let image = &event.attachments[0];
    assert_eq!(image.media_type, "image/jpeg");
    assert_eq!(image.content, Some(attachment::Content::Reference("1003383421387256".into())));
    // The base64 digest, as lowercase hex.
    assert_eq!(image.sha256, "55b21c0c5b72b99f9f6ca811d0903d1c24fa087b65535336246689ba7899a8ab");
    assert_eq!(image.size_bytes, 0);
}

#[test]
fn a_document_without_caption_reads_as_what_was_sent_and_keeps_the_quoted_message() {
    let event = event(DOCUMENT, 0);
    assert_eq!(text(&event), "Sent application/pdf: fatura-1042.pdf");
    assert_eq!(event.attachments[0].name, "fatura-1042.pdf");
    assert_eq!(
        event.attachments[0].content,
        Some(attachment::Content::Reference("1013859600285441".into()))
    );
    assert_eq!(
        reference(&event).in_reply_to,
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgSQjZGOTUwRDRFNzg2MUEzN0VEAA=="
    );
}

#[test]
fn voice_video_and_sticker_in_one_delivery_are_three_events() {
    let voice = event(MEDIA_BATCH, 0);
    assert_eq!(text(&voice), "Sent audio/ogg; codecs=opus");
    assert_eq!(
        voice.attachments[0].content,
        Some(attachment::Content::Reference("1146597800587519".into()))
    );
    let video = event(MEDIA_BATCH, 1);
    assert_eq!(text(&video), "Paketi açarken çektim");
    assert_eq!(video.attachments[0].media_type, "video/mp4");
    let sticker = event(MEDIA_BATCH, 2);
    assert_eq!(text(&sticker), "Sent image/webp");
    assert_eq!(sticker.attachments[0].sha256, "", "an unreadable digest is dropped");
    assert_eq!(voice.conversation_id, sticker.conversation_id);
    assert_eq!(sticker.occurred_at.unwrap().seconds, 1_749_416_702);
}

#[test]
fn a_location_is_structured_and_readable() {
    let event = event(LOCATION_TR, 0);
    let location = &event.locations[0];
    assert_eq!((location.latitude, location.longitude), (40.9906, 29.0231));
    assert_eq!(location.name, "Kadıköy İskele");
    assert_eq!(location.address, "Caferağa, Rıhtım Cd., 34710 Kadıköy/İstanbul");
    assert_eq!(
        text(&event),
        "Shared a location: Kadıköy İskele, Caferağa, Rıhtım Cd., 34710 Kadıköy/İstanbul (40.9906, 29.0231) https://maps.google.com/?q=40.9906,29.0231"
    );
}

#[test]
fn an_arabic_contact_card_keeps_its_script_numbers_and_company() {
    let event = event(CONTACTS_AR, 0);
    assert_eq!(event.participants[0].display_name, "فاطمة الزهراء");
    assert_eq!(event.participants[0].identifiers[0].value, "+971501234567");
    let card = &event.contacts[0];
    assert_eq!(card.display_name, "محمد العلي");
    assert_eq!(card.organization, "شركة النور للتجارة");
    let identifiers: Vec<(i32, &str)> = card.identifiers.iter().map(|i| (i.kind, i.value.as_str())).collect();
    assert_eq!(
        identifiers,
        [
            (Kind::Phone as i32, "+971507654321"),
            (Kind::PlatformUserId as i32, "971507654321"),
            (Kind::Email as i32, "mohammed.alali@example.com")
        ]
    );
    assert_eq!(
        text(&event),
        "Shared a contact: محمد العلي, شركة النور للتجارة, +971507654321, mohammed.alali@example.com"
    );
}

#[test]
fn tapped_buttons_and_list_rows_read_as_their_titles() {
    let button = event(INTERACTIVE, 0);
    assert_eq!(text(&button), "Ja, retourneren");
    assert_eq!(
        reference(&button).in_reply_to,
        "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBJCVVRUT05TMDAwMDAwMDAwMQA="
    );
    let row = event(INTERACTIVE, 1);
    assert_eq!(text(&row), "Priority Mail Express");
    assert_eq!(
        reference(&row).in_reply_to,
        "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBJMSVNUMDAwMDAwMDAwMDAwMDIA"
    );
    let quick_reply = event(BUTTON, 0);
    assert_eq!(text(&quick_reply), "Teslimatı onayla");
    assert_eq!(
        reference(&quick_reply).in_reply_to,
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgSVEVNUExBVEUwMDAwMDAwMDEA"
    );
}

#[test]
fn a_reaction_is_an_event_and_its_removal_is_not() {
    let reacted = event(REACTION, 0);
    assert_eq!(text(&reacted), "Reacted 👍 to a message");
    assert_eq!(
        reference(&reacted).in_reply_to,
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgSQjZGOTUwRDRFNzg2MUEzN0VEAA=="
    );
    assert_eq!(normalize(REACTION, 1), None);
}

#[test]
fn an_unsupported_message_is_not_dropped_silently() {
    let event = event(UNSUPPORTED, 0);
    assert_eq!(
        text(&event),
        "Sent a message of a type WhatsApp does not pass on to businesses (poll_update). WhatsApp says: Message type unknown (131051): Message type is currently not supported."
    );
    let unknown = UNSUPPORTED.replace(r#""type": "unsupported""#, r#""type": "order""#);
    assert_eq!(
        text(&super::tests::event(&unknown, 0)),
        "Sent a WhatsApp message of type `order` that cannot be shown here."
    );
}

#[test]
fn receipts_are_not_events_and_a_failed_delivery_tells_the_agent() {
    for index in 0..3 {
        assert_eq!(normalize(STATUSES, index), None, "status {index}");
    }
    let failed = event(STATUS_FAILED, 0);
    assert_eq!(
        text(&failed),
        "WhatsApp could not deliver our message wamid.HBgLMzE2MTIzNDU2NzgVAgARGBJGQUlMRUQwMDAwMDAwMDAwMQA= to +31612345678: \
         Re-engagement message (131047): Message failed to send because more than 24 hours have passed since the customer last replied to this number."
    );
    assert_eq!(failed.participants[0].role, Role::Customer as i32);
    assert_eq!(failed.participants[0].identifiers[0].value, "+31612345678");
    assert_eq!(failed.participants[1].role, Role::System as i32);
    assert_eq!(failed.participants[1].display_name, "WhatsApp");
    let provider = reference(&failed);
    assert_eq!(
        provider.message_id,
        "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBJGQUlMRUQwMDAwMDAwMDAwMQA=/failed"
    );
    assert_eq!(provider.in_reply_to, "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBJGQUlMRUQwMDAwMDAwMDAwMQA=");
    assert_eq!(failed.occurred_at.unwrap().seconds, 1_750_860_000);
    // In the conversation of the customer it was meant for.
    assert_eq!(failed.conversation_id, event(IMAGE_NL, 0).conversation_id);
}

#[test]
fn a_record_that_cannot_be_read_is_malformed() {
    let mut garbage = raw(TEXT_TR, 0);
    garbage.payload = b"\x00\x01 not json".to_vec();
    assert!(matches!(
        WhatsApp.normalize(&garbage, &crate::NoKnownEvents),
        Err(NormalizeError::Malformed { provider: "whatsapp", .. })
    ));
    let mut beyond = raw(TEXT_TR, 0);
    beyond.attributes.insert(ITEM_ATTRIBUTE.into(), "5".into());
    crate::kit::assert_malformed(&WhatsApp, &beyond);
    let mut not_an_index = raw(TEXT_TR, 0);
    not_an_index.attributes.insert(ITEM_ATTRIBUTE.into(), "first".into());
    crate::kit::assert_malformed(&WhatsApp, &not_an_index);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&WhatsApp).no_event(&["statuses.json"]).run();
}

#[test]
fn statuses_are_receipts_for_the_sender_and_messages_are_not() {
    use omni_proto::v1::delivery_receipt::Status;
    let statuses = include_str!("fixtures/statuses.json");
    let sent = WhatsApp.receipt(&raw(statuses, 0)).unwrap().expect("a receipt");
    assert_eq!(
        sent.provider_message_id,
        "wamid.HBgMOTA1NTUxMTEyMjMzFQIAERgSQjZGOTUwRDRFNzg2MUEzN0VEAA=="
    );
    assert_eq!(sent.status(), Status::Sent);
    assert_eq!(sent.occurred_at.unwrap().seconds, 1_750_857_384);
    // The customer's conversation: the one their own messages to this number join.
    assert_eq!(sent.conversation_id, event(TEXT_TR, 0).conversation_id);
    let failed = WhatsApp
        .receipt(&raw(include_str!("fixtures/status-failed.json"), 0))
        .unwrap()
        .expect("a receipt");
    assert_eq!(failed.status(), Status::Failed);
    assert!(failed.reason.contains("131047"), "{}", failed.reason);
    assert_eq!(WhatsApp.receipt(&raw(TEXT_TR, 0)).unwrap(), None);
}
