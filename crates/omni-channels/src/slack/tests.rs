//! Fixtures in `src/slack/fixtures/` are the examples of Slack's event reference pages, in the
//! standard event wrapper: `url_verification` (<https://api.slack.com/events/url_verification>),
//! `message.im` (<https://api.slack.com/events/message.im>: `message-im.json` with an English
//! customer text, `message-im-ar.json` with an Arabic one and Slack's `&lt;`/`&gt;` escapes), `message.channels`
//! (<https://api.slack.com/events/message.channels>, in a thread), `file_share`
//! (<https://api.slack.com/events/message/file_share>), `bot_message`
//! (<https://api.slack.com/events/message/bot_message>), `message_changed`
//! (<https://api.slack.com/events/message/message_changed>), `reaction_added`
//! (<https://api.slack.com/events/reaction_added>) and `app_mention`
//! (<https://api.slack.com/events/app_mention>). Signatures follow "Verifying requests from
//! Slack" (<https://api.slack.com/authentication/verifying-requests-from-slack>), including its
//! worked example; the other expected signature was computed independently with Python's `hmac`.

use std::time::SystemTime;

use omni_proto::v1::attachment::Content;

use super::*;

const SECRET: &str = "slack-signing-secret";
const URL_VERIFICATION: &str = include_str!("fixtures/url-verification.json");
const MESSAGE_IM: &str = include_str!("fixtures/message-im.json");
const MESSAGE_IM_AR: &str = include_str!("fixtures/message-im-ar.json");
const MESSAGE_CHANNEL: &str = include_str!("fixtures/message-channel.json");
const FILE_SHARE: &str = include_str!("fixtures/file-share.json");
const BOT_MESSAGE: &str = include_str!("fixtures/bot-message.json");
const MESSAGE_CHANGED: &str = include_str!("fixtures/message-changed.json");
const REACTION_ADDED: &str = include_str!("fixtures/reaction-added.json");
const APP_MENTION: &str = include_str!("fixtures/app-mention.json");

/// The gateway's clock in most tests.
const NOW: u64 = 1_700_000_000;

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: SECRET.into(),
        ..Default::default()
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    format!(
        "v0={}",
        hex::encode(signature::hmac_sha256(
            secret.as_bytes(),
            &[format!("v0:{timestamp}:{body}").as_bytes()]
        ))
    )
}

fn headers(timestamp: Option<&str>, signature: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(timestamp) = timestamp {
        headers.insert("X-Slack-Request-Timestamp", timestamp.parse().unwrap());
    }
    if let Some(signature) = signature {
        headers.insert("X-Slack-Signature", signature.parse().unwrap());
    }
    headers
}

fn request<'a>(headers: &'a http::HeaderMap, body: &'a str, now: SystemTime) -> WebhookRequest<'a> {
    WebhookRequest {
        url: "https://omni.example.com/webhooks/slack/shop",
        query: "",
        headers,
        body: body.as_bytes(),
        now,
    }
}

fn accepted(account: &WebhookAccount, body: &str) -> Accepted {
    let headers = headers(Some(&NOW.to_string()), Some(&sign(SECRET, &NOW.to_string(), body)));
    let request = request(&headers, body, at(NOW));
    Slack.verify(account, &request).expect("signed");
    Slack.accept(account, &request).expect("accepted")
}

fn items(body: &str) -> Vec<Item> {
    match accepted(&account(), body) {
        Accepted::Items(items) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway writes for item 0 of `body`, on account `shop`.
/// The raw record the gateway stores for item 0 of `body` on account `shop`.
fn raw(body: &str) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW);
    crate::kit::records_at(&Slack, &account(), "application/json", body.as_bytes(), received_at).swap_remove(0)
}

fn event(body: &str) -> ConversationEvent {
    Slack
        .normalize(&raw(body), &crate::NoKnownEvents)
        .unwrap()
        .expect("a message event")
}

#[test]
fn slacks_worked_example_verifies() {
    let secret = WebhookAccount {
        secret: "8f742231b10e8888abcd99yyyzzz85a5".into(),
        ..Default::default()
    };
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let headers = headers(
        Some("1531420618"),
        Some("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
    );
    assert_eq!(Slack.verify(&secret, &request(&headers, body, at(1_531_420_618 + 60))), Ok(()));
    let body = r#"{"type":"app_rate_limited"}"#;
    let headers = self::headers(
        Some("1531420618"),
        Some("v0=23a3ecee35c360294189d63c251f44355d418e69e5b1febf97d145df204cdab4"),
    );
    assert_eq!(Slack.verify(&account(), &request(&headers, body, at(1_531_420_618))), Ok(()));
}

#[test]
fn forged_missing_and_replayed_requests_are_refused() {
    let now = NOW.to_string();
    let good = sign(SECRET, &now, MESSAGE_IM_AR);
    let tampered = MESSAGE_IM_AR.replace("1042", "1043");
    let signed = headers(Some(&now), Some(&good));
    assert!(matches!(
        Slack.verify(&account(), &request(&signed, &tampered, at(NOW))),
        Err(Rejection::Forbidden(_))
    ));
    let other_secret = headers(Some(&now), Some(&sign("another-signing-secret", &now, MESSAGE_IM_AR)));
    assert!(matches!(
        Slack.verify(&account(), &request(&other_secret, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Forbidden(_))
    ));
    // The signature covers the timestamp: a fresh timestamp on an old signature does not verify.
    let moved = headers(Some(&(NOW + 1).to_string()), Some(&good));
    assert!(matches!(
        Slack.verify(&account(), &request(&moved, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Forbidden(_))
    ));
    let not_v0 = headers(Some(&now), Some(good.trim_start_matches("v0=")));
    assert!(matches!(
        Slack.verify(&account(), &request(&not_v0, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Forbidden(_))
    ));
    let no_signature = headers(Some(&now), None);
    assert!(matches!(
        Slack.verify(&account(), &request(&no_signature, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Unauthorized(_))
    ));
    let no_timestamp = headers(None, Some(&good));
    assert!(matches!(
        Slack.verify(&account(), &request(&no_timestamp, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Unauthorized(_))
    ));
    let garbage_timestamp = headers(Some("yesterday"), Some(&good));
    assert!(matches!(
        Slack.verify(&account(), &request(&garbage_timestamp, MESSAGE_IM_AR, at(NOW))),
        Err(Rejection::Forbidden(_))
    ));
}

#[test]
fn the_replay_window_is_five_minutes_either_way() {
    let now = NOW.to_string();
    let signed = headers(Some(&now), Some(&sign(SECRET, &now, MESSAGE_IM_AR)));
    for (clock, ok) in [
        (NOW + 300, true),
        (NOW - 300, true),
        (NOW + 301, false),
        (NOW - 301, false),
        (NOW + 86_400, false),
    ] {
        let result = Slack.verify(&account(), &request(&signed, MESSAGE_IM_AR, at(clock)));
        if ok {
            assert_eq!(result, Ok(()), "clock {clock}");
        } else {
            assert!(matches!(result, Err(Rejection::Forbidden(_))), "clock {clock}: {result:?}");
        }
    }
}

#[test]
fn url_verification_is_answered_with_the_challenge() {
    match accepted(&account(), URL_VERIFICATION) {
        Accepted::Reply(reply) => {
            assert_eq!((reply.status, reply.content_type), (200, "application/json"));
            let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
            );
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn customer_messages_are_items_keyed_by_event_id() {
    assert_eq!(
        items(MESSAGE_IM_AR),
        [Item {
            provider_message_id: "Ev0PV52K21".into(),
            partition_key: vec!["slack".into(), "T061EG9R6".into(), "U2147483697".into()],
        }]
    );
    assert_eq!(items(FILE_SHARE)[0].provider_message_id, "Ev0RDC3A11");
    assert_eq!(items(MESSAGE_CHANNEL)[0].provider_message_id, "Ev0PV52K25");
}

#[test]
fn bots_edits_and_other_events_are_acknowledged_and_not_stored() {
    let join = MESSAGE_IM_AR.replace(r#""channel_type": "im""#, r#""channel_type": "im", "subtype": "channel_join""#);
    let from_a_bot = MESSAGE_IM_AR.replace(r#""channel_type": "im""#, r#""channel_type": "im", "bot_id": "B0123""#);
    let rate_limited =
        r#"{"token":"XXYYZZ","team_id":"T061EG9R6","type":"app_rate_limited","minute_rate_limited":1518467820,"api_app_id":"A123ABC456"}"#;
    for body in [
        BOT_MESSAGE,
        MESSAGE_CHANGED,
        REACTION_ADDED,
        APP_MENTION,
        rate_limited,
        &join,
        &from_a_bot,
    ] {
        assert_eq!(items(body), [], "{body}");
    }
}

#[test]
fn channel_messages_are_stored_only_from_the_configured_channels() {
    let support = WebhookAccount::new(SECRET).with("channels", vec!["C0SUPPORT1"]);
    assert_eq!(accepted(&support, MESSAGE_CHANNEL), Accepted::Items(Vec::new()));
    let listed = WebhookAccount::new(SECRET).with("channels", vec!["C0SUPPORT1", "C024BE91L"]);
    assert!(matches!(accepted(&listed, MESSAGE_CHANNEL), Accepted::Items(items) if items.len() == 1));
    // Direct messages to the app are always stored.
    assert!(matches!(accepted(&support, MESSAGE_IM_AR), Accepted::Items(items) if items.len() == 1));
}

#[test]
fn a_body_slack_never_sends_is_refused() {
    let now = NOW.to_string();
    for body in [
        "not json",
        "[]",
        r#"{"token":"x"}"#,
        r#"{"type":"url_verification"}"#,
        r#"{"type":"event_callback","team_id":"T1","event":{"type":"message","user":"U1","text":"x","ts":"1.2"}}"#,
        r#"{"type":"event_callback","team_id":"T1","event_id":"Ev1","event":{"type":"message","channel":{"id":"C1"}}}"#,
    ] {
        let headers = headers(Some(&now), Some(&sign(SECRET, &now, body)));
        assert!(
            matches!(
                Slack.accept(&account(), &request(&headers, body, at(NOW))),
                Err(Rejection::BadRequest(_))
            ),
            "{body}"
        );
    }
}

#[test]
fn a_direct_message_becomes_a_readable_event() {
    let event = event(MESSAGE_IM_AR);
    let body = event.body.as_ref().unwrap();
    assert_eq!(body.text, "مرحبا، لم يصل طلبي رقم 1042 بعد. متى سيصل؟ <عاجل>");
    assert_eq!(body.new_text, body.text);
    assert_eq!(event.channel, Channel::Slack as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    let customer = &event.participants[0];
    assert_eq!(customer.role, Role::Customer as i32);
    let identifiers: Vec<(i32, &str, &str)> = customer
        .identifiers
        .iter()
        .map(|i| (i.kind, i.value.as_str(), i.platform.as_str()))
        .collect();
    assert_eq!(identifiers, [(Kind::PlatformUserId as i32, "U2147483697", "slack")]);
    assert_eq!(
        event.occurred_at,
        Some(prost_types::Timestamp {
            seconds: 1_355_517_523,
            nanos: 5_000
        })
    );
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(
        (
            provider.provider.as_str(),
            provider.account.as_str(),
            provider.message_id.as_str(),
            provider.thread_id.as_str(),
            provider.reply_to.as_str()
        ),
        ("slack", "shop", "1355517523.000005", "1355517523.000005", "D024BE91L")
    );
    assert_eq!(
        event.conversation_id,
        ids::conversation_id(&["slack", "shop", "T061EG9R6", "U2147483697"])
    );
}

#[test]
fn the_documented_direct_message_is_one_event_of_the_same_conversation() {
    let english = event(MESSAGE_IM);
    assert_eq!(
        english.body.unwrap().text,
        "Hello hello can you hear me? My order 1042 has not arrived yet."
    );
    assert_eq!(english.provider.unwrap().message_id, "1355517500.000001");
    assert_eq!(english.conversation_id, event(MESSAGE_IM_AR).conversation_id);
    assert_eq!(items(MESSAGE_IM)[0].provider_message_id, "Ev0PV52K20");
}

#[test]
fn a_thread_reply_keeps_its_thread() {
    let event = event(MESSAGE_CHANNEL);
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(
        (provider.thread_id.as_str(), provider.reply_to.as_str()),
        ("1355517523.000005", "C024BE91L")
    );
    assert_eq!(event.body.unwrap().text, "Live long and prospect.");
}

#[test]
fn shared_files_become_attachments() {
    let event = event(FILE_SHARE);
    assert_eq!(event.body.as_ref().unwrap().text, "We got one!");
    assert_eq!(event.attachments.len(), 1);
    let file = &event.attachments[0];
    assert_eq!(
        (file.name.as_str(), file.media_type.as_str(), file.size_bytes),
        ("ghostrap.png", "image/png", 196920)
    );
    assert_eq!(
        file.content,
        Some(Content::Reference(
            "https://files.slack.com/files-pri/T061EG9R6-F0RDC39U1/ghostrap.png".into()
        ))
    );
    let without_text = FILE_SHARE.replace(r#""text": "We got one!""#, r#""text": """#);
    assert_eq!(self::event(&without_text).body.unwrap().text, "Sent image/png: ghostrap.png");
}

#[test]
fn one_user_is_one_conversation_and_retries_are_one_event() {
    let first = event(MESSAGE_IM_AR);
    let in_channel = event(MESSAGE_CHANNEL);
    assert_eq!(first.conversation_id, in_channel.conversation_id);
    assert_ne!(first.event_id, in_channel.event_id);
    // A retry (X-Slack-Retry-Num) carries the same event_id: same event id.
    assert_eq!(raw(MESSAGE_IM_AR).event_id, first.event_id);
    let other = event(&MESSAGE_IM_AR.replace("U2147483697", "U2147483698"));
    assert_ne!(first.conversation_id, other.conversation_id);
    let other_team = event(&MESSAGE_IM_AR.replace("\"team_id\": \"T061EG9R6\"", "\"team_id\": \"T061EG9R7\""));
    assert_ne!(first.conversation_id, other_team.conversation_id);
}

#[test]
fn records_of_non_customer_messages_mean_nothing_to_an_agent() {
    let mut record = raw(MESSAGE_IM_AR);
    record.payload = BOT_MESSAGE.as_bytes().to_vec();
    assert_eq!(Slack.normalize(&record, &crate::NoKnownEvents), Ok(None));
    record.payload = MESSAGE_CHANGED.as_bytes().to_vec();
    assert_eq!(Slack.normalize(&record, &crate::NoKnownEvents), Ok(None));
}

#[test]
fn an_unreadable_record_is_malformed() {
    let mut record = raw(MESSAGE_IM_AR);
    record.payload = b"\xff\xfe".to_vec();
    crate::kit::assert_malformed(&Slack, &record);
    let mut record = raw(MESSAGE_IM_AR);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "1".into());
    crate::kit::assert_malformed(&Slack, &record);
    let mut record = raw(MESSAGE_IM_AR);
    record.payload = URL_VERIFICATION.as_bytes().to_vec();
    crate::kit::assert_malformed(&Slack, &record);
}

#[test]
fn slack_timestamps_keep_their_microseconds() {
    assert_eq!(
        slack_ts("1529342088.000086"),
        Some(prost_types::Timestamp {
            seconds: 1_529_342_088,
            nanos: 86_000
        })
    );
    assert_eq!(slack_ts("17"), Some(prost_types::Timestamp { seconds: 17, nanos: 0 }));
    assert_eq!(slack_ts("soon"), None);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&Slack)
        .no_event(&[
            "app-mention.json",
            "bot-message.json",
            "message-changed.json",
            "reaction-added.json",
        ])
        .reply(&["url-verification.json"])
        .run();
}
