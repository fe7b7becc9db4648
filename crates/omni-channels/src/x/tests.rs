//! Fixtures in `src/x/fixtures/` follow the payload examples of X's "Account Activity data
//! objects" (<https://developer.x.com/en/docs/twitter-api/enterprise/account-activity-api/guides/account-activity-data-objects>:
//! `direct_message_events` with `users`, `direct_message_indicate_typing_events`,
//! `direct_message_mark_read_events`, `follow_events`), with the DM texts replaced by Turkish
//! customer texts; the media DM follows the media object of "Attaching media" / "Retrieving media"
//! (<https://developer.x.com/en/docs/twitter-api/v1/direct-messages/message-attachments/guides/retrieving-media>).
//! Signatures follow "Securing webhooks"
//! (<https://developer.x.com/en/docs/twitter-api/enterprise/account-activity-api/guides/securing-webhooks>);
//! the expected values were computed independently with Python's `hmac` and `base64`.

use std::time::SystemTime;

use omni_proto::v1::attachment::Content;

use super::*;

const SECRET: &str = "x-consumer-secret";
const DM_TR: &str = include_str!("fixtures/dm-tr.json");
const DM_MEDIA: &str = include_str!("fixtures/dm-media.json");
const DM_OUTGOING: &str = include_str!("fixtures/dm-outgoing.json");
const TYPING: &str = include_str!("fixtures/typing.json");
const READ: &str = include_str!("fixtures/read.json");
const FOLLOW: &str = include_str!("fixtures/follow.json");

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: SECRET.into(),
        ..Default::default()
    }
}

fn sign(body: &str) -> String {
    format!(
        "sha256={}",
        signature::base64(&signature::hmac_sha256(SECRET.as_bytes(), &[body.as_bytes()]))
    )
}

fn headers(signature: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(signature) = signature {
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
    }
    headers
}

fn request<'a>(query: &'a str, headers: &'a http::HeaderMap, body: &'a str) -> WebhookRequest<'a> {
    WebhookRequest {
        url: "https://omni.example.com/webhooks/x/shop",
        query,
        headers,
        body: body.as_bytes(),
        now: SystemTime::now(),
    }
}

fn items(body: &str) -> Vec<Item> {
    let headers = headers(Some(&sign(body)));
    match X.accept(&account(), &request("", &headers, body)) {
        Ok(Accepted::Items(items)) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway writes for item `index` of `body`, on account `shop`.
/// The raw record the gateway stores for item `index` of `body` on account `shop`.
fn raw(body: &str, index: usize) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    crate::kit::records_at(&X, &account(), "application/json", body.as_bytes(), received_at).swap_remove(index)
}

pub(super) fn event(body: &str) -> ConversationEvent {
    X.normalize(&raw(body, 0), &crate::NoKnownEvents).unwrap().expect("a message event")
}

#[test]
fn crc_is_answered_with_the_base64_hmac_of_the_token() {
    let headers = headers(None);
    let reply = X
        .handshake(
            &account(),
            &request("crc_token=Y2ZjNjA5MzAtMzYwMS00NzEzLWFlMGQtYmY0ZTEzNjljNWQy&nonce=1", &headers, ""),
        )
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"response_token": "sha256=WR1dB/7uNa+OfkkAPb7VuXq/nP15WyhdgQ6URfdjRLc="})
    );
}

#[test]
fn crc_without_a_token_or_with_a_json_token_is_refused() {
    let headers = headers(None);
    assert!(matches!(
        X.handshake(&account(), &request("", &headers, "")),
        Err(Rejection::BadRequest(_))
    ));
    assert!(matches!(
        X.handshake(&account(), &request("nonce=1", &headers, "")),
        Err(Rejection::BadRequest(_))
    ));
    // The CRC answer is the HMAC that signs a POST body: it must not sign a JSON body on request.
    let forged_body = "crc_token=%7B%22for_user_id%22%3A%221%22%7D";
    assert!(matches!(
        X.handshake(&account(), &request(forged_body, &headers, "")),
        Err(Rejection::BadRequest(_))
    ));
    // Nor a JSON array, which serde would also read as an Account Activity body.
    let array_body = r#"["999",[["message_create","1","1700000000000",[["999"],"666",["refund me"]]]]]"#;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("crc_token", array_body)
        .finish();
    assert!(matches!(
        X.handshake(&account(), &request(&query, &headers, "")),
        Err(Rejection::BadRequest(_))
    ));
    // And even signed, such a body is refused by accept.
    let signed = self::headers(Some(&sign(array_body)));
    assert!(matches!(
        X.accept(&account(), &request("", &signed, array_body)),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn a_body_signed_with_the_consumer_secret_is_verified() {
    let body = r#"{"for_user_id":"1"}"#;
    let headers = headers(Some("sha256=hfVR+B7xHXLf2eIjgiQpYAk6I3c21h4ceJtmD/P/7tI="));
    assert_eq!(X.verify(&account(), &request("", &headers, body)), Ok(()));
    let headers = self::headers(Some(&sign(DM_TR)));
    assert_eq!(X.verify(&account(), &request("", &headers, DM_TR)), Ok(()));
}

#[test]
fn a_forged_or_missing_signature_is_refused() {
    let forged = headers(Some(&sign(DM_TR)));
    let tampered = DM_TR.replace("1042", "9999");
    assert!(matches!(
        X.verify(&account(), &request("", &forged, &tampered)),
        Err(Rejection::Forbidden(_))
    ));
    let other_secret = WebhookAccount {
        secret: "another-consumer-secret".into(),
        ..Default::default()
    };
    assert!(matches!(
        X.verify(&other_secret, &request("", &forged, DM_TR)),
        Err(Rejection::Forbidden(_))
    ));
    let no_prefix = headers(Some("hfVR+B7xHXLf2eIjgiQpYAk6I3c21h4ceJtmD/P/7tI="));
    assert!(matches!(
        X.verify(&account(), &request("", &no_prefix, r#"{"for_user_id":"1"}"#)),
        Err(Rejection::Forbidden(_))
    ));
    let missing = headers(None);
    assert!(matches!(
        X.verify(&account(), &request("", &missing, DM_TR)),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn accept_stores_dms_and_reads_and_acknowledges_the_rest() {
    let dm = items(DM_TR);
    assert_eq!(
        dm,
        [Item {
            provider_message_id: "954491830116155396".into(),
            partition_key: vec!["x".into(), "4337869213".into(), "3001969357".into()],
        }]
    );
    // Our own reply is stored (the customer is the recipient, so it shares the partition) ...
    assert_eq!(items(DM_OUTGOING)[0].partition_key, dm[0].partition_key);
    // ... read receipts are stored, typing indicators and follows are not.
    assert_eq!(items(READ)[0].provider_message_id, "read/199566737/963085315333238788");
    assert!(items(TYPING).is_empty());
    assert!(items(FOLLOW).is_empty());
    assert!(items(r#"{"user_event":{"revoke":{"date_time":"2018-05-24T09:48:12+00:00","target":{"app_id":"13090192"},"source":{"user_id":"63046977"}}}}"#).is_empty());
}

#[test]
fn accept_refuses_what_x_never_sends() {
    let headers = headers(None);
    for body in [
        "not json",
        "[1, 2]",
        r#"{"direct_message_events":[{"type":"message_create","id":"1","message_create":{"target":{"recipient_id":"2"},"sender_id":"3"}}]}"#,
        r#"{"for_user_id":"2","direct_message_events":[{"type":"message_create","id":"1"}]}"#,
    ] {
        assert!(
            matches!(X.accept(&account(), &request("", &headers, body)), Err(Rejection::BadRequest(_))),
            "{body}"
        );
    }
}

#[test]
fn a_customer_dm_becomes_a_readable_event() {
    let event = event(DM_TR);
    let body = event.body.as_ref().unwrap();
    assert_eq!(
        body.text,
        "Merhaba, 1042 numaralı siparişim hâlâ gelmedi. Takip: https://kargo.example.com/takip/1042"
    );
    assert_eq!(body.new_text, body.text);
    assert_eq!(event.channel, Channel::X as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
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
            (Kind::PlatformUserId as i32, "3001969357", "x"),
            (Kind::Username as i32, "aysey", "x")
        ]
    );
    assert_eq!(
        event.occurred_at,
        Some(prost_types::Timestamp {
            seconds: 1_516_403_560,
            nanos: 557_000_000
        })
    );
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(
        (
            provider.provider.as_str(),
            provider.account.as_str(),
            provider.message_id.as_str(),
            provider.reply_to.as_str()
        ),
        ("x", "shop", "954491830116155396", "3001969357")
    );
    assert_eq!(
        event.conversation_id,
        ids::conversation_id(&["x", "shop", "4337869213", "3001969357"])
    );
    assert!(event.attachments.is_empty());
}

#[test]
fn a_dm_with_a_photo_references_the_medium() {
    let event = event(DM_MEDIA);
    assert_eq!(event.body.as_ref().unwrap().text, "Kutu ezik geldi");
    assert_eq!(event.attachments.len(), 1);
    let photo = &event.attachments[0];
    assert_eq!(photo.name, "kAKLTz4u.jpg");
    assert_eq!(photo.media_type, "image/jpeg");
    assert_eq!(
        photo.content,
        Some(Content::Reference(
            "https://ton.twitter.com/1.1/ton/data/dm/1080915117244518404/1080915089218441216/kAKLTz4u.jpg".into()
        ))
    );
    let captionless = DM_MEDIA.replace("Kutu ezik geldi https://t.co", "https://t.co");
    assert_eq!(event_text(&captionless), "Sent image/jpeg: kAKLTz4u.jpg");
}

#[test]
fn a_dm_video_references_its_best_mp4_variant_and_is_named_by_it() {
    let variants = r#""type": "video", "video_info": {"variants": [
        {"content_type": "application/x-mpegURL", "url": "https://video.twimg.com/dm_video/1/pl/a.m3u8?tag=1"},
        {"bitrate": 256000, "content_type": "video/mp4", "url": "https://video.twimg.com/dm_video/1/vid/320x180/low.mp4?tag=1"},
        {"bitrate": 832000, "content_type": "video/mp4", "url": "https://video.twimg.com/dm_video/1/vid/640x360/kutu.mp4?tag=1"}]}"#;
    let event = event(&DM_MEDIA.replace(r#""type": "photo""#, variants));
    let video = &event.attachments[0];
    assert_eq!(video.name, "kutu.mp4", "not the thumbnail's name");
    assert_eq!(video.media_type, "video/mp4");
    assert_eq!(
        video.content,
        Some(Content::Reference(
            "https://video.twimg.com/dm_video/1/vid/640x360/kutu.mp4?tag=1".into()
        ))
    );
}

fn event_text(body: &str) -> String {
    event(body).body.unwrap().text
}

#[test]
fn one_customer_is_one_conversation_and_retries_are_one_event() {
    let first = event(DM_TR);
    let second = event(DM_MEDIA);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    // A retried delivery has the same event id.
    assert_eq!(raw(DM_TR, 0).event_id, first.event_id);
    let other = event(&DM_TR.replace("3001969357", "3001969358"));
    assert_ne!(first.conversation_id, other.conversation_id);
    let other_business = event(&DM_TR.replace("4337869213", "4337869214"));
    assert_ne!(first.conversation_id, other_business.conversation_id);
}

#[test]
fn our_own_messages_and_reads_mean_nothing_to_an_agent() {
    assert_eq!(X.normalize(&raw(DM_OUTGOING, 0), &crate::NoKnownEvents), Ok(None));
    assert_eq!(X.normalize(&raw(READ, 0), &crate::NoKnownEvents), Ok(None));
}

#[test]
fn an_unreadable_record_is_malformed() {
    let mut record = raw(DM_TR, 0);
    record.payload = b"\x00not json".to_vec();
    crate::kit::assert_malformed(&X, &record);
    let mut record = raw(DM_TR, 0);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "1".into());
    crate::kit::assert_malformed(&X, &record);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "first".into());
    crate::kit::assert_malformed(&X, &record);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&X)
        .no_event(&["dm-outgoing.json", "follow.json", "read.json", "typing.json"])
        .run();
}

#[test]
fn a_mediums_type_comes_from_its_variants_its_extension_or_its_kind() {
    use serde_json::json;
    let of = |value: serde_json::Value| media_type(&serde_json::from_value(value).unwrap());
    assert_eq!(
        of(json!({ "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a.png" })),
        "image/png"
    );
    assert_eq!(
        of(json!({ "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a.webp" })),
        "image/webp"
    );
    assert_eq!(
        of(json!({ "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a.JPG" })),
        "image/jpeg"
    );
    assert_eq!(
        of(json!({ "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a" })),
        "image/jpeg"
    );
    assert_eq!(
        of(json!({ "type": "video", "media_url_https": "https://pbs.twimg.com/media/thumb.bin" })),
        "video/mp4"
    );
    let variants = json!({ "type": "video", "media_url_https": "https://pbs.twimg.com/t.jpg", "video_info": { "variants": [
        { "content_type": "application/x-mpegURL", "url": "https://video.twimg.com/a.m3u8" },
        { "content_type": "video/webm", "bitrate": 832000, "url": "https://video.twimg.com/a.webm" }
    ] } });
    assert_eq!(of(variants), "video/webm");
}
