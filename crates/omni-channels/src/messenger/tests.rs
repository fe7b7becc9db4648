//! Fixtures in `src/messenger/fixtures/` follow the examples of Meta's Messenger Platform
//! webhook event references: `messages`
//! (<https://developers.facebook.com/docs/messenger-platform/reference/webhook-events/messages>:
//! `text-tr.json`, `reply-nl.json` with `reply_to`, `attachments.json` with image, file and
//! fallback attachments), `message_echoes` (`…/webhook-events/message-echoes`: `echo.json`),
//! `message_reads` and `message_deliveries` (`…/message-reads`, `…/message-deliveries`:
//! `receipts.json`), `messaging_postbacks` (`…/messaging_postbacks`: `postback.json`) and
//! `message_reactions` (`…/message-reactions`: `reaction.json`), wrapped in the `object: page`
//! envelope of the Getting Started guide
//! (<https://developers.facebook.com/docs/graph-api/webhooks/getting-started>), whose signing
//! (HMAC-SHA256 of the body under the App Secret) the tests use. Customers write Turkish (as Meta
//! sends it, `\uXXXX`-escaped) and Dutch (raw UTF-8).

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Channel, ConversationEvent, Direction, attachment};

use super::*;
use crate::meta::tests::{accept, account, headers, normalize, raw, request};
use crate::webhook::{ITEM_ATTRIBUTE, Rejection, WebhookAdapter};
use crate::{Normalize, NormalizeError, ids};

const TEXT_TR: &str = include_str!("fixtures/text-tr.json");
const REPLY_NL: &str = include_str!("fixtures/reply-nl.json");
const ATTACHMENTS: &str = include_str!("fixtures/attachments.json");
const ECHO: &str = include_str!("fixtures/echo.json");
const RECEIPTS: &str = include_str!("fixtures/receipts.json");
const POSTBACK: &str = include_str!("fixtures/postback.json");
const REACTION: &str = include_str!("fixtures/reaction.json");

const PAGE: &str = "104829482298752";
const AYSE: &str = "6543210987654321";

fn event(body: &str, index: usize) -> ConversationEvent {
    normalize(&MESSENGER, body, index).expect("an event")
}

fn text(event: &ConversationEvent) -> &str {
    &event.body.as_ref().unwrap().text
}

#[test]
fn the_adapter_is_registered_under_its_name() {
    assert_eq!(MESSENGER.name(), "messenger");
    assert_eq!(MESSENGER.id_channel(), "messenger");
    assert_eq!(MESSENGER.channel(), Channel::Messenger);
    assert_eq!(
        crate::webhook::webhook_adapter("messenger").map(|a| a.channel()),
        Some(Channel::Messenger)
    );
}

#[test]
fn signatures_and_the_handshake_are_checked() {
    let body = TEXT_TR.as_bytes();
    let forged = headers(Some(&crate::meta::tests::signature("guessed-secret", body)));
    assert!(matches!(
        MESSENGER.verify(&account(), &request(&forged, "", body)),
        Err(Rejection::Forbidden(_))
    ));
    let missing = headers(None);
    assert!(matches!(
        MESSENGER.verify(&account(), &request(&missing, "", body)),
        Err(Rejection::Unauthorized(_))
    ));
    assert!(accept(&MESSENGER, TEXT_TR).is_ok());
    let reply = MESSENGER
        .handshake(
            &account(),
            &request(
                &missing,
                "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=omni-verify-3b9d",
                b"",
            ),
        )
        .unwrap();
    assert_eq!(reply.body, b"1158201444");
    assert!(
        MESSENGER
            .check_account(&crate::webhook::WebhookAccount::new(account().secret), true)
            .len()
            == 1
    );
}

#[test]
fn accept_lists_every_messaging_event_with_stable_ids() {
    let items = accept(&MESSENGER, RECEIPTS).unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i.provider_message_id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("read/{AYSE}/1749416800463"), format!("delivery/{AYSE}/1749416800100")]
    );
    assert!(items.iter().all(|i| i.partition_key == ["messenger", PAGE, AYSE]));
    let attachments = accept(&MESSENGER, ATTACHMENTS).unwrap();
    assert_eq!(attachments.len(), 2);
    assert_eq!(attachments[0].provider_message_id, "mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c");
    assert_eq!(
        accept(&MESSENGER, POSTBACK).unwrap()[0].provider_message_id,
        format!("postback/{AYSE}/1749416900000")
    );
    // The page's own message: keyed by the customer it went to.
    assert_eq!(accept(&MESSENGER, ECHO).unwrap()[0].partition_key, ["messenger", PAGE, AYSE]);
    assert_eq!(accept(&MESSENGER, TEXT_TR), accept(&MESSENGER, TEXT_TR));
    assert_eq!(raw(&MESSENGER, TEXT_TR, 0).event_id, raw(&MESSENGER, TEXT_TR, 0).event_id);
}

#[test]
fn bodies_messenger_would_not_send_are_bad_requests() {
    for body in [
        "[]",
        r#"{"object":"instagram","entry":[]}"#,
        r#"{"object":"whatsapp_business_account","entry":[]}"#,
        r#"{"object":"page"}"#,
        r#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m_1","text":"x"}}]}]}"#,
        r#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"text":"x"}}]}]}"#,
    ] {
        assert!(matches!(accept(&MESSENGER, body), Err(Rejection::BadRequest(_))), "{body}");
    }
    // A feed change is the page's, not a message: acknowledged, nothing stored.
    let feed = r#"{"object":"page","entry":[{"id":"104829482298752","time":1749416384000,"changes":[{"field":"feed","value":{"item":"status","verb":"add"}}]}]}"#;
    assert_eq!(accept(&MESSENGER, feed), Ok(Vec::new()));
}

#[test]
fn a_turkish_text_message_normalizes_to_a_readable_event() {
    let event = event(TEXT_TR, 0);
    assert_eq!(
        text(&event),
        "Merhaba, 1042 numaralı siparişim hâlâ kargoya verilmedi. Ne zaman gelir?"
    );
    assert_eq!(event.body.as_ref().unwrap().new_text, text(&event));
    assert_eq!(event.channel, Channel::Messenger as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    assert_eq!(event.event_id, raw(&MESSENGER, TEXT_TR, 0).event_id);
    let customer = &event.participants[0];
    assert_eq!(customer.role, Role::Customer as i32);
    assert_eq!(customer.identifiers.len(), 1);
    assert_eq!(customer.identifiers[0].kind, Kind::PlatformUserId as i32);
    assert_eq!(customer.identifiers[0].value, AYSE);
    assert_eq!(customer.identifiers[0].platform, "messenger");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.provider, "messenger");
    assert_eq!(provider.account, "shop");
    assert_eq!(
        provider.message_id,
        "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"
    );
    assert_eq!(provider.reply_to, AYSE);
    assert_eq!(
        event.occurred_at,
        Some(prost_types::Timestamp {
            seconds: 1_749_416_383,
            nanos: 478_000_000
        })
    );
    assert_eq!(event.conversation_id, ids::conversation_id(&["messenger", "shop", PAGE, AYSE]));
}

#[test]
fn one_customer_is_one_conversation_per_page() {
    let first = event(TEXT_TR, 0);
    let second = event(ATTACHMENTS, 0);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    let other_customer = event(REPLY_NL, 0);
    assert_ne!(first.conversation_id, other_customer.conversation_id);
    let other_page = event(&TEXT_TR.replace(PAGE, "104829482298753"), 0);
    assert_ne!(first.conversation_id, other_page.conversation_id);
}

#[test]
fn a_reply_keeps_the_message_it_answers() {
    let event = event(REPLY_NL, 0);
    assert_eq!(text(&event), "Ik ben geïnteresseerd, maar is de maat 38 nog op voorraad?");
    assert_eq!(
        event.provider.as_ref().unwrap().in_reply_to,
        "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU"
    );
}

#[test]
fn attachments_are_references_to_their_urls_and_links_are_text() {
    let event = event(ATTACHMENTS, 0);
    assert_eq!(event.attachments.len(), 2);
    let image = &event.attachments[0];
    assert_eq!(image.name, "468839425_1234567890_n.jpg");
    assert_eq!(image.media_type, "image/jpeg");
    assert_eq!(
        image.content,
        Some(attachment::Content::Reference(
            "https://scontent.xx.fbcdn.net/v/t1.15752-9/468839425_1234567890_n.jpg?_nc_cat=104&ccb=1-7&oh=00_AYB".into()
        ))
    );
    assert_eq!(event.attachments[1].name, "iade-formu.pdf");
    assert_eq!(event.attachments[1].media_type, "application/pdf");
    assert_eq!(
        text(&event),
        "Sent image/jpeg: 468839425_1234567890_n.jpg\nSent application/pdf: iade-formu.pdf"
    );
    let link = super::tests::event(ATTACHMENTS, 1);
    assert_eq!(text(&link), "Shared a link: Ürün sayfası https://www.example-shop.com.tr/urun/1042");
    assert!(link.attachments.is_empty());
}

#[test]
fn echoes_reads_and_deliveries_are_not_events() {
    assert_eq!(normalize(&MESSENGER, ECHO, 0), None);
    assert_eq!(normalize(&MESSENGER, RECEIPTS, 0), None);
    assert_eq!(normalize(&MESSENGER, RECEIPTS, 1), None);
}

#[test]
fn a_tapped_button_reads_as_its_title() {
    let event = event(POSTBACK, 0);
    assert_eq!(text(&event), "Siparişimi takip et");
    assert_eq!(event.provider.as_ref().unwrap().message_id, "m_postback00000000000000000000001");
    assert_eq!(event.conversation_id, super::tests::event(TEXT_TR, 0).conversation_id);
}

#[test]
fn a_reaction_is_an_event_and_taking_it_back_is_not() {
    let event = event(REACTION, 0);
    assert_eq!(text(&event), "Reacted ❤\u{fe0f} to a message");
    assert_eq!(event.provider.as_ref().unwrap().in_reply_to, "m_echo000000000000000000000000001");
    assert_eq!(normalize(&MESSENGER, REACTION, 1), None);
}

#[test]
fn a_record_that_cannot_be_read_is_malformed() {
    let mut garbage = raw(&MESSENGER, TEXT_TR, 0);
    garbage.payload = b"{\"object\":\"page\",\"entry\":".to_vec();
    assert!(matches!(
        MESSENGER.normalize(&garbage, &crate::NoKnownEvents),
        Err(NormalizeError::Malformed { provider: "messenger", .. })
    ));
    let mut beyond = raw(&MESSENGER, TEXT_TR, 0);
    beyond.attributes.insert(ITEM_ATTRIBUTE.into(), "1".into());
    crate::kit::assert_malformed(&MESSENGER, &beyond);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&MESSENGER)
        .no_event(&["echo.json", "receipts.json"])
        .run();
}
