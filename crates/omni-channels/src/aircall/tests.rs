//! Fixtures in `src/aircall/fixtures/` follow Aircall's Public API reference
//! (<https://developer.aircall.io/api-references/#webhooks>: the event envelope `resource`,
//! `event`, `timestamp`, `token`, `data`, and the documented `call.created` and `number.closed`
//! samples, copied as published) and its Call object
//! (<https://developer.aircall.io/api-references/#call-overview>: `direct_link`, `direction`,
//! `missed_call_reason`, `started_at`, `answered_at`, `raw_digits`, `voicemail`, `recording`,
//! `asset`, `user`, `number`, `contact`, `comments`, `tags`), with Turkish and Dutch customers and a
//! Turkish agent note. Verification follows "Webhooks overview"
//! (<https://developer.aircall.io/docs/webhooks-overview>): the body's `token` is the webhook's token.

use std::time::SystemTime;

use super::*;

const TOKEN: &str = "45XXYYZZa08";
const ANSWERED_TR: &str = include_str!("fixtures/call-ended-answered-tr.json");
const MISSED_NL: &str = include_str!("fixtures/call-ended-missed.json");
const VOICEMAIL: &str = include_str!("fixtures/call-voicemail-left.json");
const COMMENTED_TR: &str = include_str!("fixtures/call-commented-tr.json");
const CREATED: &str = include_str!("fixtures/call-created.json");
const NUMBER_CLOSED: &str = include_str!("fixtures/number-closed.json");

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: TOKEN.into(),
        ..Default::default()
    }
}

fn request<'a>(headers: &'a http::HeaderMap, body: &'a str) -> WebhookRequest<'a> {
    WebhookRequest {
        url: "https://omni.example.com/webhooks/aircall/shop",
        query: "",
        headers,
        body: body.as_bytes(),
        now: SystemTime::now(),
    }
}

fn json_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

fn verify(body: &str) -> Result<(), Rejection> {
    Aircall.verify(&account(), &request(&json_headers(), body))
}

fn accept(body: &str) -> Result<Accepted, Rejection> {
    Aircall.accept(&account(), &request(&json_headers(), body))
}

fn items_of(body: &str) -> Vec<Item> {
    match accept(body) {
        Ok(Accepted::Items(items)) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway stores for item 0 of `body` on account `shop`.
fn raw(body: &str) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_400_000);
    crate::kit::records_at(&Aircall, &account(), "application/json", body.as_bytes(), received_at).swap_remove(0)
}

fn normalize(body: &str) -> Result<Option<ConversationEvent>, NormalizeError> {
    Aircall.normalize(&raw(body), &crate::NoKnownEvents)
}

fn event(body: &str) -> ConversationEvent {
    normalize(body).unwrap().expect("an event")
}

#[test]
fn the_body_token_is_checked_before_anything_else() {
    for body in [ANSWERED_TR, NUMBER_CLOSED, CREATED] {
        assert_eq!(verify(body), Ok(()));
    }
    let forged = ANSWERED_TR.replace(TOKEN, "45XXYYZZa09");
    assert!(matches!(verify(&forged), Err(Rejection::Forbidden(_))));
    let missing = ANSWERED_TR.replace(&format!("\"token\": \"{TOKEN}\","), "");
    assert!(matches!(verify(&missing), Err(Rejection::Unauthorized(_))));
    assert!(matches!(verify("not json"), Err(Rejection::Unauthorized(_))));
    assert!(matches!(verify(r#"{"token": 45}"#), Err(Rejection::Unauthorized(_))));
    assert!(matches!(verify(r#"{"token": ""}"#), Err(Rejection::Unauthorized(_))));
}

#[test]
fn get_is_not_a_handshake() {
    assert!(matches!(
        Aircall.handshake(&account(), &request(&json_headers(), "")),
        Err(Rejection::BadRequest(_))
    ));
}

#[test]
fn accept_yields_one_item_per_call_event_and_none_for_other_resources() {
    assert_eq!(
        items_of(ANSWERED_TR),
        [Item {
            provider_message_id: "1834279011/call.ended".into(),
            partition_key: vec!["voice".into(), "+902125551234".into(), "+905551112233".into()],
        }]
    );
    assert_eq!(items_of(CREATED)[0].provider_message_id, "123/call.created");
    assert_eq!(items_of(COMMENTED_TR)[0].provider_message_id, "1834279011/call.commented/318");
    assert_eq!(items_of(VOICEMAIL)[0].provider_message_id, "1834279789/voicemail");
    assert!(items_of(NUMBER_CLOSED).is_empty());
    let user_event = r#"{"resource":"user","event":"user.connected.v2","timestamp":1,"token":"45XXYYZZa08","data":{"id":1}}"#;
    assert!(items_of(user_event).is_empty());
}

#[test]
fn accept_refuses_what_aircall_never_sends() {
    for body in [
        "not json",
        r#"{"token":"45XXYYZZa08"}"#,
        r#"{"resource":"call","event":"call.ended","token":"45XXYYZZa08"}"#,
        r#"{"resource":"call","event":"call.ended","token":"45XXYYZZa08","data":{"direction":"inbound"}}"#,
    ] {
        assert!(matches!(accept(body), Err(Rejection::BadRequest(_))), "{body}");
    }
}

#[test]
fn an_answered_call_is_a_call_event() {
    let event = event(ANSWERED_TR);
    assert_eq!(event.channel, Channel::Voice as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    let call = event.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Answered);
    assert_eq!(call.from, "+905551112233");
    assert_eq!(call.to, "+902125551234");
    assert_eq!(call.agent, "Madelaine Dupont");
    assert_eq!(call.call_id, "1834279011");
    assert_eq!(call.duration.unwrap().seconds, 190);
    assert_eq!(call.started_at.unwrap().seconds, 1_795_342_500);
    assert_eq!(call.recording_reference, "https://assets.aircall.io/calls/1834279011/recording");
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Answered call from +905551112233 to +902125551234 at 2026-11-22 10:15:00 UTC, 190 s, agent Madelaine Dupont.\n\
         Recording: https://assets.aircall.io/calls/1834279011/recording"
    );
    assert_eq!(event.tags, ["call", "answered-call", "refund"]);
    assert_eq!(event.occurred_at, call.started_at);
    let customer = &event.participants[0];
    assert_eq!(customer.role, participant::Role::Customer as i32);
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
            (Kind::Email as i32, "ayse@example.com", ""),
            (Kind::PlatformUserId as i32, "789", "aircall"),
        ]
    );
    let agent = &event.participants[1];
    assert_eq!(agent.role, participant::Role::Agent as i32);
    assert_eq!(agent.display_name, "Madelaine Dupont");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.provider, "aircall");
    assert_eq!(provider.message_id, "1834279011/call.ended");
    assert_eq!(provider.reply_to, "+905551112233");
}

#[test]
fn a_missed_call_says_why_without_inventing_tags() {
    let event = event(MISSED_NL);
    let call = event.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Missed);
    assert!(call.agent.is_empty());
    assert!(call.recording_reference.is_empty());
    assert_eq!(event.tags, ["call", "missed-call"]);
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Missed call from +31612345678 to +902125551234 at 2026-11-22 20:40:00 UTC, 9 s.\nReason: out of opening hours"
    );
    assert_eq!(event.participants.len(), 1);
    assert_eq!(event.participants[0].display_name, "Sanne de Vries");
}

#[test]
fn a_voicemail_is_one_event_whichever_webhook_comes_first() {
    let left = event(VOICEMAIL);
    let call = left.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Voicemail);
    assert_eq!(call.recording_reference, "https://assets.aircall.io/calls/1834279789/voicemail");
    assert_eq!(left.tags, ["call", "voicemail"]);
    assert!(left.body.as_ref().unwrap().text.ends_with("\nReason: no available agent"));
    let ended = VOICEMAIL.replace("call.voicemail_left", "call.ended");
    let ended = event(&ended);
    assert_eq!(ended.call.as_ref().unwrap().outcome(), Outcome::Voicemail);
    assert_eq!(ended.event_id, left.event_id, "the same voicemail, the same event id");
    // Without the asset page, the direct voicemail link.
    let direct = VOICEMAIL.replace("\"https://assets.aircall.io/calls/1834279789/voicemail\"", "null");
    assert!(event(&direct).call.unwrap().recording_reference.contains("voicemail.mp3"));
}

#[test]
fn a_comment_is_an_agent_note_on_the_callers_conversation() {
    let note = event(COMMENTED_TR);
    assert_eq!(
        note.body.as_ref().unwrap().text,
        "Call note by Madelaine Dupont: Müşteri iade istiyor; kargo firmasıyla görüşüp yarın geri dönülecek."
    );
    assert_eq!(note.direction, Direction::Outbound as i32);
    assert_eq!(note.participants[0].role, participant::Role::Customer as i32);
    assert_eq!(note.participants[1].role, participant::Role::Agent as i32);
    assert_eq!(note.occurred_at.unwrap().seconds, 1_795_342_760);
    assert!(note.call.is_none());
    assert!(note.tags.is_empty());
    assert_eq!(note.conversation_id, event(ANSWERED_TR).conversation_id);
}

#[test]
fn intermediate_call_events_normalize_to_nothing() {
    assert_eq!(normalize(CREATED), Ok(None));
    for name in [
        "call.ringing_on_agent",
        "call.answered",
        "call.tagged",
        "call.hungup",
        "call.archived",
    ] {
        assert_eq!(normalize(&ANSWERED_TR.replace("call.ended", name)), Ok(None), "{name}");
    }
}

#[test]
fn conversations_are_per_customer_and_ids_stable_across_retries() {
    let first = event(ANSWERED_TR);
    assert_eq!(first, event(ANSWERED_TR));
    let next_call = ANSWERED_TR.replace("1834279011", "1834290000");
    let second = event(&next_call);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    assert_ne!(first.conversation_id, event(MISSED_NL).conversation_id);
    // Anonymous callers are not merged into one conversation.
    let anonymous = ANSWERED_TR.replace("\"raw_digits\": \"+90 555 111 22 33\"", "\"raw_digits\": \"anonymous\"");
    let anonymous_next = anonymous.replace("1834279011", "1834290000");
    let (a, b) = (event(&anonymous), event(&anonymous_next));
    assert_ne!(a.conversation_id, b.conversation_id);
    assert_eq!(a.provider.unwrap().reply_to, "");
}

#[test]
fn unreadable_records_are_malformed() {
    let mut record = raw(ANSWERED_TR);
    record.payload = b"{".to_vec();
    crate::kit::assert_malformed(&Aircall, &record);
    let mut record = raw(ANSWERED_TR);
    record.payload = NUMBER_CLOSED.as_bytes().to_vec();
    crate::kit::assert_malformed(&Aircall, &record);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&Aircall)
        .no_event(&["call-created.json", "number-closed.json"])
        .body_not_signed()
        .run();
}

#[test]
fn sample_and_national_numbers_key_one_conversation_and_a_participant_names_the_agent() {
    // Aircall's documented samples carry numbers no numbering plan accepts, and call systems
    // write one caller's number in several ways: each call must not become its own conversation.
    let with = |digits: &str| {
        let mut body: Value = serde_json::from_str(ANSWERED_TR).unwrap();
        body["data"]["raw_digits"] = Value::from(digits);
        body["data"]["user"] = Value::Null;
        body["data"]["id"] = Value::from(call_id(digits));
        event(&body.to_string())
    };
    let sample = with("+1 (555) 010-0123");
    assert_eq!(sample.participants[0].identifiers[0].value, "+15550100123");
    assert_eq!(sample.conversation_id, with("+15550100123").conversation_id);
    // Written nationally on a Turkish line: the same caller as +90.
    assert_eq!(with("0555 111 22 33").conversation_id, with("+90 555 111 22 33").conversation_id);
    // `user` empty, the agent named among the participants.
    assert_eq!(sample.participants[1].display_name, "Madelaine Dupont");
    assert_eq!(sample.call.as_ref().unwrap().agent, "Madelaine Dupont");
}

/// A call id per number, so the variants are different calls.
fn call_id(digits: &str) -> u64 {
    digits.bytes().fold(7_u64, |id, b| id.wrapping_mul(31).wrapping_add(u64::from(b))) % 1_000_000_007
}
