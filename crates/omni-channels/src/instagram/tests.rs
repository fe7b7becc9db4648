//! Fixtures in `src/instagram/fixtures/` follow the examples of Meta's "Webhooks for Instagram
//! Messaging" (<https://developers.facebook.com/docs/messenger-platform/instagram/features/webhook>)
//! and the Instagram Platform webhook examples
//! (<https://developers.facebook.com/docs/instagram-platform/webhooks/examples>): the
//! `object: instagram` envelope with `entry[].messaging[]`, a text message (`text-ar.json`, in
//! Arabic), image, share and story-mention attachments (`media.json`), a story reply
//! (`story-reply-tr.json`, Turkish), an echo (`echo.json`), `messaging_seen` (`seen.json`),
//! `message_reactions` (`reaction.json`), an ice-breaker `messaging_postbacks`
//! (`postback.json`), and the `is_deleted` / `is_unsupported` messages
//! (`deleted-unsupported.json`). Non-ASCII text is `\uXXXX`-escaped as Meta sends it. Signing
//! follows the Getting Started guide (<https://developers.facebook.com/docs/graph-api/webhooks/getting-started>).

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Channel, ConversationEvent, attachment};

use super::*;
use crate::meta::tests::{accept, account, headers, normalize, raw, request, signature};
use crate::webhook::{Rejection, WebhookAdapter};
use crate::{Normalize, NormalizeError, ids};

const TEXT_AR: &str = include_str!("fixtures/text-ar.json");
const MEDIA: &str = include_str!("fixtures/media.json");
const STORY_REPLY_TR: &str = include_str!("fixtures/story-reply-tr.json");
const ECHO: &str = include_str!("fixtures/echo.json");
const SEEN: &str = include_str!("fixtures/seen.json");
const REACTION: &str = include_str!("fixtures/reaction.json");
const POSTBACK: &str = include_str!("fixtures/postback.json");
const DELETED_UNSUPPORTED: &str = include_str!("fixtures/deleted-unsupported.json");

const IG_ACCOUNT: &str = "17841405822304914";
const NOUR: &str = "1350246543298765";
const ZEYNEP: &str = "2461357654309876";

fn event(body: &str, index: usize) -> ConversationEvent {
    normalize(&INSTAGRAM, body, index).expect("an event")
}

fn text(event: &ConversationEvent) -> &str {
    &event.body.as_ref().unwrap().text
}

#[test]
fn the_adapter_is_registered_under_its_name() {
    assert_eq!(INSTAGRAM.name(), "instagram");
    assert_eq!(INSTAGRAM.id_channel(), "instagram");
    assert_eq!(
        crate::webhook::webhook_adapter("instagram").map(|a| a.channel()),
        Some(Channel::Instagram)
    );
}

#[test]
fn signatures_and_the_handshake_are_checked() {
    let body = TEXT_AR.as_bytes();
    let good = headers(Some(&signature(crate::meta::tests::APP_SECRET, body)));
    assert_eq!(INSTAGRAM.verify(&account(), &request(&good, "", body)), Ok(()));
    let forged = headers(Some(&signature("guessed-secret", body)));
    assert!(matches!(
        INSTAGRAM.verify(&account(), &request(&forged, "", body)),
        Err(Rejection::Forbidden(_))
    ));
    let missing = headers(None);
    assert!(matches!(
        INSTAGRAM.verify(&account(), &request(&missing, "", body)),
        Err(Rejection::Unauthorized(_))
    ));
    let reply = INSTAGRAM
        .handshake(
            &account(),
            &request(
                &missing,
                "hub.mode=subscribe&hub.challenge=42&hub.verify_token=omni-verify-3b9d",
                b"",
            ),
        )
        .unwrap();
    assert_eq!(reply.body, b"42");
}

#[test]
fn a_page_body_is_not_an_instagram_body() {
    let page = TEXT_AR.replace(r#""object": "instagram""#, r#""object": "page""#);
    assert!(matches!(accept(&INSTAGRAM, &page), Err(Rejection::BadRequest(_))));
}

#[test]
fn accept_lists_every_messaging_event_with_stable_ids() {
    let media = accept(&INSTAGRAM, MEDIA).unwrap();
    assert_eq!(media.len(), 3);
    assert!(media.iter().all(|i| i.partition_key == ["instagram", IG_ACCOUNT, NOUR]));
    let deleted = accept(&INSTAGRAM, DELETED_UNSUPPORTED).unwrap();
    // An unsent message has the mid of the original: its own id must differ from it.
    assert_eq!(
        deleted[0].provider_message_id,
        format!("deleted/{}", accept(&INSTAGRAM, TEXT_AR).unwrap()[0].provider_message_id)
    );
    assert_eq!(
        accept(&INSTAGRAM, SEEN).unwrap()[0].provider_message_id,
        format!("read/{NOUR}/1749416800000")
    );
    assert_eq!(
        accept(&INSTAGRAM, REACTION).unwrap()[1].provider_message_id,
        format!("reaction/{NOUR}/1749416960000")
    );
    assert_eq!(accept(&INSTAGRAM, ECHO).unwrap()[0].partition_key, ["instagram", IG_ACCOUNT, NOUR]);
}

#[test]
fn an_arabic_text_message_normalizes_to_a_readable_event() {
    let event = event(TEXT_AR, 0);
    assert_eq!(text(&event), "مرحباً، متى سيصل طلبي رقم 1042؟");
    assert_eq!(event.channel, Channel::Instagram as i32);
    let customer = &event.participants[0];
    assert_eq!(customer.identifiers[0].kind, Kind::PlatformUserId as i32);
    assert_eq!(customer.identifiers[0].value, NOUR);
    assert_eq!(customer.identifiers[0].platform, "instagram");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.provider, "instagram");
    assert_eq!(provider.reply_to, NOUR);
    assert_eq!(
        provider.message_id,
        "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1ODIyMzA0OTE0OjM0MDI4MjM2Njg0MTcxMDMwMTI0NDI1OTQ1MzA5NjQwNjE"
    );
    assert_eq!(
        event.conversation_id,
        ids::conversation_id(&["instagram", "shop", IG_ACCOUNT, NOUR])
    );
    assert_eq!(event.event_id, raw(&INSTAGRAM, TEXT_AR, 0).event_id);
}

#[test]
fn one_customer_is_one_conversation_and_channels_do_not_mix() {
    let first = event(TEXT_AR, 0);
    let image = event(MEDIA, 0);
    assert_eq!(first.conversation_id, image.conversation_id);
    let other = event(STORY_REPLY_TR, 0);
    assert_ne!(first.conversation_id, other.conversation_id);
    // The same ids arriving as Messenger events are another conversation.
    let as_messenger = crate::messenger::MESSENGER
        .normalize(
            &raw(
                &crate::messenger::MESSENGER,
                &TEXT_AR.replace(r#""object": "instagram""#, r#""object": "page""#),
                0,
            ),
            &crate::NoKnownEvents,
        )
        .unwrap()
        .unwrap();
    assert_ne!(first.conversation_id, as_messenger.conversation_id);
    assert_ne!(first.event_id, as_messenger.event_id);
}

#[test]
fn media_shares_and_story_mentions_are_readable() {
    let image = event(MEDIA, 0);
    assert_eq!(image.attachments[0].media_type, "image/*");
    assert_eq!(
        image.attachments[0].content,
        Some(attachment::Content::Reference(
            "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17912345678901234&signature=AbCdEf".into()
        ))
    );
    assert_eq!(text(&image), "Sent image/*");
    assert_eq!(text(&event(MEDIA, 1)), "Shared a post: https://www.instagram.com/p/C8xYz12AbCd/");
    assert_eq!(
        text(&event(MEDIA, 2)),
        "Mentioned you in their story: https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17998765432109876&signature=XyZ"
    );
}

#[test]
fn a_story_reply_says_which_story() {
    let event = event(STORY_REPLY_TR, 0);
    assert_eq!(
        text(&event),
        "Bu elbisenin M bedeni var mı?\n(Replied to your story: https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18012345678901234&signature=Story)"
    );
    assert_eq!(event.participants[0].identifiers[0].value, ZEYNEP);
}

#[test]
fn echoes_seen_receipts_unsent_messages_and_removed_reactions_are_not_events() {
    assert_eq!(normalize(&INSTAGRAM, ECHO, 0), None);
    assert_eq!(normalize(&INSTAGRAM, SEEN, 0), None);
    assert_eq!(normalize(&INSTAGRAM, DELETED_UNSUPPORTED, 0), None);
    assert_eq!(normalize(&INSTAGRAM, REACTION, 1), None);
}

#[test]
fn reactions_ice_breakers_and_unsupported_messages_are_events() {
    let reacted = event(REACTION, 0);
    assert_eq!(text(&reacted), "Reacted ❤\u{fe0f} to a message");
    let postback = event(POSTBACK, 0);
    assert_eq!(text(&postback), "İade nasıl yapılır?");
    let unsupported = event(DELETED_UNSUPPORTED, 1);
    assert_eq!(
        text(&unsupported),
        "Sent a message Instagram does not show to businesses (a GIF, sticker or other unsupported content)."
    );
}

#[test]
fn a_record_that_cannot_be_read_is_malformed() {
    let mut record = raw(&INSTAGRAM, TEXT_AR, 0);
    record.payload = br#"{"object":"page","entry":[]}"#.to_vec();
    assert!(matches!(
        INSTAGRAM.normalize(&record, &crate::NoKnownEvents),
        Err(NormalizeError::Malformed { provider: "instagram", .. })
    ));
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&INSTAGRAM)
        .no_event(&["echo.json", "seen.json"])
        .run();
}
