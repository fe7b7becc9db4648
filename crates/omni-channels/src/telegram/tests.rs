//! Fixtures in `src/telegram/fixtures/` follow the update examples of "Marvin's Marvellous
//! Guide to All Things Webhook", section "Testing your bot with updates"
//! (<https://core.telegram.org/bots/webhooks#testing-your-bot-with-updates>: message with text,
//! with a reply, edited message, document, voice, callback query), with Turkish and Dutch
//! customer texts; photo, location, venue, contact and the service message follow the object
//! definitions of <https://core.telegram.org/bots/api#message> (`PhotoSize`, `Location`, `Venue`,
//! `Contact`, `new_chat_members`). The secret header follows
//! <https://core.telegram.org/bots/api#setwebhook> (`secret_token`).

use std::time::SystemTime;

use omni_proto::v1::attachment::Content as Reference;

use super::*;

const SECRET: &str = "shop-bot_Secret-2024";
const TEXT_TR: &str = include_str!("fixtures/message-tr.json");
const REPLY: &str = include_str!("fixtures/reply.json");
const EDITED: &str = include_str!("fixtures/edited.json");
const PHOTO_NL: &str = include_str!("fixtures/photo-nl.json");
const DOCUMENT: &str = include_str!("fixtures/document.json");
const VOICE: &str = include_str!("fixtures/voice.json");
const LOCATION: &str = include_str!("fixtures/location.json");
const VENUE: &str = include_str!("fixtures/venue.json");
const CONTACT: &str = include_str!("fixtures/contact.json");
const CALLBACK_QUERY: &str = include_str!("fixtures/callback-query.json");
const NEW_CHAT_MEMBERS: &str = include_str!("fixtures/new-chat-members.json");

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: SECRET.into(),
        ..Default::default()
    }
}

fn headers(token: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(token) = token {
        headers.insert("X-Telegram-Bot-Api-Secret-Token", token.parse().unwrap());
    }
    headers
}

fn request<'a>(headers: &'a http::HeaderMap, body: &'a str) -> WebhookRequest<'a> {
    WebhookRequest {
        url: "https://omni.example.com/webhooks/telegram/shop",
        query: "",
        headers,
        body: body.as_bytes(),
        now: SystemTime::now(),
    }
}

fn items(body: &str) -> Vec<Item> {
    let headers = headers(Some(SECRET));
    match Telegram.accept(&account(), &request(&headers, body)) {
        Ok(Accepted::Items(items)) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway writes for item 0 of `body`, on account `shop`.
/// The raw record the gateway stores for item 0 of `body` on account `shop`.
fn raw(body: &str) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    crate::kit::records_at(&Telegram, &account(), "application/json", body.as_bytes(), received_at).swap_remove(0)
}

fn event(body: &str) -> ConversationEvent {
    Telegram
        .normalize(&raw(body), &crate::NoKnownEvents)
        .unwrap()
        .expect("a message event")
}

fn text(body: &str) -> String {
    event(body).body.unwrap().text
}

#[test]
fn the_secret_token_header_is_checked() {
    let good = headers(Some(SECRET));
    assert_eq!(Telegram.verify(&account(), &request(&good, TEXT_TR)), Ok(()));
    let wrong = headers(Some("shop-bot_Secret-2025"));
    assert!(matches!(
        Telegram.verify(&account(), &request(&wrong, TEXT_TR)),
        Err(Rejection::Forbidden(_))
    ));
    let empty = headers(Some(""));
    assert!(matches!(
        Telegram.verify(&account(), &request(&empty, TEXT_TR)),
        Err(Rejection::Forbidden(_))
    ));
    let missing = headers(None);
    assert!(matches!(
        Telegram.verify(&account(), &request(&missing, TEXT_TR)),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn the_secret_must_be_a_valid_secret_token() {
    assert!(Telegram.check_account(&account(), true).is_empty());
    let spaces = WebhookAccount {
        secret: "has spaces in it".into(),
        ..Default::default()
    };
    assert_eq!(Telegram.check_account(&spaces, true).len(), 1);
    let short = WebhookAccount {
        secret: "abc".into(),
        ..Default::default()
    };
    assert_eq!(Telegram.check_account(&short, true).len(), 1);
}

#[test]
fn messages_and_edits_are_items_and_other_updates_are_not() {
    assert_eq!(
        items(TEXT_TR),
        [Item {
            provider_message_id: "message/1111111/1365".into(),
            partition_key: vec!["telegram".into(), "1111111".into()],
        }]
    );
    // The edit of message 1365 is its own item, distinct from the original.
    assert_eq!(items(EDITED)[0].provider_message_id, "edited/1111111/1365/1441646600");
    assert!(items(CALLBACK_QUERY).is_empty());
    assert!(items(r#"{"update_id":10011,"my_chat_member":{"chat":{"id":1111111,"type":"private"},"from":{"id":1111111,"is_bot":false,"first_name":"Ayşe"},"date":1441646700,"old_chat_member":{"status":"member"},"new_chat_member":{"status":"kicked"}}}"#).is_empty());
    assert!(items(r#"{"update_id":10012,"channel_post":{"message_id":5,"chat":{"id":-1001,"type":"channel","title":"Duyurular"},"date":1441646800,"text":"Kampanya"}}"#).is_empty());
}

#[test]
fn a_body_that_is_not_an_update_is_refused() {
    let headers = headers(Some(SECRET));
    for body in [
        "",
        "not json",
        "[]",
        r#"{"message":{"message_id":1,"chat":{"id":1},"text":"x"}}"#,
        r#"{"update_id":1,"message":{"text":"x"}}"#,
    ] {
        assert!(
            matches!(Telegram.accept(&account(), &request(&headers, body)), Err(Rejection::BadRequest(_))),
            "{body}"
        );
    }
}

#[test]
fn a_text_message_becomes_a_readable_event() {
    let event = event(TEXT_TR);
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Merhaba, 1042 numaralı siparişim hâlâ gelmedi. Ne zaman gelir?"
    );
    assert_eq!(event.body.as_ref().unwrap().new_text, event.body.as_ref().unwrap().text);
    assert_eq!(event.channel, Channel::Telegram as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    assert_eq!(event.language, "tr");
    assert_eq!(event.occurred_at, Some(webhook::unix_seconds(1_441_645_532)));
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
            (Kind::PlatformUserId as i32, "1111111", "telegram"),
            (Kind::Username as i32, "aysey", "telegram")
        ]
    );
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(
        (
            provider.provider.as_str(),
            provider.account.as_str(),
            provider.message_id.as_str(),
            provider.thread_id.as_str(),
            provider.reply_to.as_str(),
            provider.in_reply_to.as_str()
        ),
        ("telegram", "shop", "1365", "1111111", "1111111", "")
    );
    assert_eq!(event.conversation_id, ids::conversation_id(&["telegram", "shop", "1111111"]));
}

#[test]
fn a_reply_names_the_message_it_answers() {
    let event = event(REPLY);
    assert_eq!(event.body.as_ref().unwrap().text, "Teşekkürler, bekliyorum.");
    assert_eq!(event.provider.as_ref().unwrap().in_reply_to, "1366");
}

#[test]
fn an_edit_says_which_message_it_edits() {
    let event = event(EDITED);
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Edited message 1365: Merhaba, 1043 numaralı siparişim hâlâ gelmedi. Ne zaman gelir?"
    );
    assert_eq!(event.occurred_at, Some(webhook::unix_seconds(1_441_646_600)));
    assert_eq!(event.provider.as_ref().unwrap().message_id, "1365");
    assert_ne!(event.event_id, self::event(TEXT_TR).event_id);
}

#[test]
fn media_become_attachments_with_their_file_id() {
    let photo = event(PHOTO_NL);
    assert_eq!(photo.body.as_ref().unwrap().text, "Het pakket is beschadigd aangekomen, zie foto.");
    assert_eq!(photo.language, "nl");
    assert_eq!(photo.participants[0].display_name, "Jan de Vries");
    assert_eq!(photo.attachments.len(), 1);
    assert_eq!(photo.attachments[0].media_type, "image/jpeg");
    assert_eq!(photo.attachments[0].size_bytes, 80241);
    assert_eq!(
        photo.attachments[0].content,
        Some(Reference::Reference("AgACAgQAAxkBAAIBOmVk-large".into()))
    );

    let document = event(DOCUMENT);
    assert_eq!(document.body.as_ref().unwrap().text, "Sent application/pdf: Testfile.pdf");
    let pdf = &document.attachments[0];
    assert_eq!(
        (pdf.name.as_str(), pdf.media_type.as_str(), pdf.size_bytes),
        ("Testfile.pdf", "application/pdf", 536392)
    );
    assert_eq!(pdf.content, Some(Reference::Reference("AwADBAADbXXXXXXXXXXXGBdhD2l6_XX".into())));
    assert_eq!(document.language, "");

    assert_eq!(text(VOICE), "Sent audio/ogg");
    let sticker = PHOTO_NL.replace(r#""caption": "Het pakket is beschadigd aangekomen, zie foto.""#, r#""sticker": {"file_id": "CAACAgIAAxkBAAIB", "file_unique_id": "AgAD", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "👍"}"#).replace(r#""photo": ["#, r#""photo_was": ["#);
    let sticker = event(&sticker);
    assert_eq!(sticker.body.as_ref().unwrap().text, "Sent a sticker 👍");
    assert_eq!(sticker.attachments[0].media_type, "image/webp");
}

#[test]
fn locations_venues_and_contacts_are_structured_and_readable() {
    let location = event(LOCATION);
    assert_eq!(location.locations.len(), 1);
    assert_eq!(
        (location.locations[0].latitude, location.locations[0].longitude),
        (40.990601, 29.023111)
    );
    assert_eq!(location.body.as_ref().unwrap().text, "Shared a location: (40.990601, 29.023111)");

    let venue = event(VENUE);
    assert_eq!(venue.locations.len(), 1, "a venue's own location is not a second place");
    assert_eq!(venue.locations[0].name, "Kadıköy İskelesi");
    assert_eq!(
        venue.body.as_ref().unwrap().text,
        "Shared a location: Kadıköy İskelesi, Rıhtım Cd., Kadıköy/İstanbul (40.990601, 29.023111)"
    );

    let contact = event(CONTACT);
    assert_eq!(contact.contacts.len(), 1);
    let card = &contact.contacts[0];
    assert_eq!(card.display_name, "Mehmet Demir");
    let identifiers: Vec<(i32, &str)> = card.identifiers.iter().map(|i| (i.kind, i.value.as_str())).collect();
    assert_eq!(
        identifiers,
        [(Kind::Phone as i32, "+905321234567"), (Kind::PlatformUserId as i32, "3333333")]
    );
    assert_eq!(contact.body.as_ref().unwrap().text, "Shared a contact: Mehmet Demir, +905321234567");
}

#[test]
fn one_chat_is_one_conversation_and_retries_are_one_event() {
    let first = event(TEXT_TR);
    let second = event(REPLY);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    // Telegram re-delivers the same update after a failure: same event id.
    assert_eq!(raw(TEXT_TR).event_id, first.event_id);
    let other = event(&TEXT_TR.replace("1111111", "1111119"));
    assert_ne!(first.conversation_id, other.conversation_id);
}

#[test]
fn service_messages_mean_nothing_to_an_agent() {
    assert_eq!(Telegram.normalize(&raw(NEW_CHAT_MEMBERS), &crate::NoKnownEvents), Ok(None));
}

#[test]
fn an_unreadable_record_is_malformed() {
    let mut record = raw(TEXT_TR);
    record.payload = b"{\"update_id\":".to_vec();
    crate::kit::assert_malformed(&Telegram, &record);
    let mut record = raw(TEXT_TR);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "1".into());
    crate::kit::assert_malformed(&Telegram, &record);
    let mut record = raw(TEXT_TR);
    record.payload = CALLBACK_QUERY.as_bytes().to_vec();
    crate::kit::assert_malformed(&Telegram, &record);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&Telegram)
        .no_event(&["callback-query.json", "new-chat-members.json"])
        .body_not_signed()
        .run();
}
