//! Fixtures in `src/twilio_voice/fixtures/` follow Twilio's parameter lists, form-encoded as
//! Twilio sends them:
//! - `incoming-ringing.form`: "TwiML™ Voice: Twilio's request to your application"
//!   (<https://www.twilio.com/docs/voice/twiml#request-parameters>), with the geographic data;
//! - `status-*.form`: the Call resource's "StatusCallback" parameters
//!   (<https://www.twilio.com/docs/voice/api/call-resource#statuscallback>: `CallStatus`,
//!   `CallDuration`, `Timestamp`, `CallbackSource`, `SequenceNumber`, `Duration`);
//! - `record-action.form`: `<Record>`'s `action` request
//!   (<https://www.twilio.com/docs/voice/twiml/record#attributes-action>: `RecordingUrl`,
//!   `RecordingDuration`, `RecordingSid`, `Digits`);
//! - `transcription-tr.form`: `<Record>`'s `transcribeCallback` request
//!   (<https://www.twilio.com/docs/voice/twiml/record#attributes-transcribe-callback>), with a
//!   Turkish transcript;
//! - `recording-status-completed.form`: the Recording resource's `recordingStatusCallback`
//!   parameters (<https://www.twilio.com/docs/voice/api/recording#recordingstatuscallback>), which
//!   carry no `From`/`To`.
//!
//! The expected signature was computed independently with Python's `hmac`/`base64` per "Webhooks
//! security" (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>).

use std::collections::HashMap;
use std::time::SystemTime;

use omni_proto::v1::contact_identifier::Kind as IdKind;

use super::*;
use crate::webhook::{Accepted, Rejection, WebhookAccount, WebhookRequest};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const URL: &str = "https://omni.example.com/webhooks/twilio-voice/shop";
const RINGING: &str = include_str!("fixtures/incoming-ringing.form");
const COMPLETED: &str = include_str!("fixtures/status-completed.form");
const NO_ANSWER: &str = include_str!("fixtures/status-no-answer.form");
const BUSY_OUTBOUND: &str = include_str!("fixtures/status-busy-outbound.form");
const RECORD_ACTION: &str = include_str!("fixtures/record-action.form");
const TRANSCRIPTION_TR: &str = include_str!("fixtures/transcription-tr.form");
const RECORDING_STATUS: &str = include_str!("fixtures/recording-status-completed.form");
const CALL: &str = "CA5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b";

fn account() -> WebhookAccount {
    WebhookAccount {
        secret: TOKEN.into(),
        public_url: Some(URL.into()),
        ..Default::default()
    }
}

fn headers(signature: Option<&str>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
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

fn items_of(body: &str) -> Vec<Item> {
    match TwilioVoice.accept(&account(), &request(&headers(None), body)) {
        Ok(Accepted::Items(items)) => items,
        other => panic!("expected items, got {other:?}"),
    }
}

/// The raw record the gateway stores for item 0 of `body` on account `shop`.
fn raw(body: &str) -> RawRecord {
    let received_at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_342_700);
    crate::kit::records_at(
        &TwilioVoice,
        &account(),
        "application/x-www-form-urlencoded",
        body.as_bytes(),
        received_at,
    )
    .swap_remove(0)
}

fn normalize(body: &str) -> Result<Option<ConversationEvent>, NormalizeError> {
    TwilioVoice.normalize(&raw(body), &crate::NoKnownEvents)
}

fn event(body: &str) -> ConversationEvent {
    normalize(body).unwrap().expect("an event")
}

#[test]
fn a_correctly_signed_request_is_verified_and_a_forged_one_refused() {
    // Computed with Python: base64(hmac.new(TOKEN, URL + sorted name+value pairs, sha1)).
    let good = "pth0/XVv/Dy+5QUto/oDpRoVmQk=";
    assert_eq!(TwilioVoice.verify(&account(), &request(&headers(Some(good)), COMPLETED)), Ok(()));
    let forged = COMPLETED.replace("CallDuration=125", "CallDuration=5");
    assert!(matches!(
        TwilioVoice.verify(&account(), &request(&headers(Some(good)), &forged)),
        Err(Rejection::Forbidden(_))
    ));
    assert!(matches!(
        TwilioVoice.verify(&account(), &request(&headers(None), COMPLETED)),
        Err(Rejection::Unauthorized(_))
    ));
}

#[test]
fn each_request_kind_gets_its_provider_message_id() {
    let ids: Vec<String> = [RINGING, COMPLETED, RECORD_ACTION, TRANSCRIPTION_TR, RECORDING_STATUS]
        .iter()
        .map(|body| items_of(body)[0].provider_message_id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            format!("{CALL}/status/ringing"),
            format!("{CALL}/status/completed"),
            format!("{CALL}/recording/RE1a2b3c4d5e6f708192a3b4c5d6e7f809"),
            format!("{CALL}/transcription/TR7f6e5d4c3b2a190817f6e5d4c3b2a190"),
            format!("{CALL}/recording/RE2b3c4d5e6f708192a3b4c5d6e7f8091a"),
        ]
    );
    assert_eq!(items_of(COMPLETED)[0].partition_key, ["voice", "+14155552671", "+905551112233"]);
    assert_eq!(items_of(RECORDING_STATUS)[0].partition_key, ["voice", "call", CALL]);
    // A `<Dial record>` action carries a recording but is no voicemail: it is the dialled leg's outcome.
    let dial_action = RECORD_ACTION.replace("CallStatus=completed", "CallStatus=in-progress") + "&DialCallStatus=completed&DialCallSid=CA1";
    assert_eq!(items_of(&dial_action)[0].provider_message_id, format!("{CALL}/dial/CA1"));
    let in_progress = RECORDING_STATUS.replace("RecordingStatus=completed", "RecordingStatus=in-progress");
    assert_eq!(
        items_of(&in_progress)[0].provider_message_id,
        format!("{CALL}/recording/RE2b3c4d5e6f708192a3b4c5d6e7f8091a/in-progress")
    );
}

#[test]
fn accept_refuses_what_twilio_never_sends() {
    for body in [
        "",
        "CallSid=CA1",
        "AccountSid=AC1&CallStatus=completed",
        "CallSid=CA1&AccountSid=AC1&CallStatus=ringing",
    ] {
        assert!(
            matches!(
                TwilioVoice.accept(&account(), &request(&headers(None), body)),
                Err(Rejection::BadRequest(_))
            ),
            "{body}"
        );
    }
}

#[test]
fn a_completed_inbound_call_is_an_answered_call_event() {
    let event = event(COMPLETED);
    assert_eq!(event.channel, Channel::Voice as i32);
    assert_eq!(event.direction, Direction::Inbound as i32);
    let call = event.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Answered);
    assert_eq!(call.from, "+905551112233");
    assert_eq!(call.to, "+14155552671");
    assert_eq!(call.call_id, CALL);
    assert_eq!(call.duration.unwrap().seconds, 125);
    // Timestamp 10:17:05 UTC minus 125 s.
    assert_eq!(call.started_at.unwrap().seconds, 1_795_342_500);
    assert_eq!(event.occurred_at, call.started_at);
    assert_eq!(
        event.body.as_ref().unwrap().text,
        "Answered call from +905551112233 to +14155552671 at 2026-11-22 10:15:00 UTC, 125 s."
    );
    assert_eq!(event.tags, ["call", "answered-call"]);
    let customer = &event.participants[0];
    assert_eq!(customer.role, participant::Role::Customer as i32);
    assert_eq!(customer.identifiers[0].kind, IdKind::Phone as i32);
    assert_eq!(customer.identifiers[0].value, "+905551112233");
    let provider = event.provider.as_ref().unwrap();
    assert_eq!(provider.message_id, format!("{CALL}/status/completed"));
    assert_eq!(provider.reply_to, "+905551112233");
}

#[test]
fn terminal_statuses_map_to_outcomes_and_others_to_nothing() {
    let missed = event(NO_ANSWER);
    assert_eq!(missed.call.as_ref().unwrap().outcome(), Outcome::Missed);
    assert_eq!(missed.tags, ["call", "missed-call"]);
    assert!(missed.body.as_ref().unwrap().text.starts_with("Missed call from +905551112233"));
    let canceled = NO_ANSWER.replace("CallStatus=no-answer", "CallStatus=canceled");
    assert_eq!(event(&canceled).call.unwrap().outcome(), Outcome::Missed);
    let failed = NO_ANSWER.replace("CallStatus=no-answer", "CallStatus=failed");
    assert_eq!(event(&failed).tags, ["call", "failed-call"]);
    for status in ["queued", "initiated", "ringing", "in-progress"] {
        let body = COMPLETED.replace("CallStatus=completed", &format!("CallStatus={status}"));
        assert_eq!(normalize(&body), Ok(None), "{status}");
    }
    assert_eq!(normalize(RINGING), Ok(None));
}

#[test]
fn on_outbound_calls_the_customer_is_the_callee() {
    let event = event(BUSY_OUTBOUND);
    assert_eq!(event.direction, Direction::Outbound as i32);
    assert_eq!(event.call.as_ref().unwrap().outcome(), Outcome::Busy);
    assert_eq!(event.tags, ["call", "busy-call"]);
    assert_eq!(event.participants[0].identifiers[0].value, "+31612345678");
    assert_eq!(event.provider.as_ref().unwrap().reply_to, "+31612345678");
    let call = event.call.as_ref().unwrap();
    assert_eq!((call.from.as_str(), call.to.as_str()), ("+14155552671", "+31612345678"));
}

#[test]
fn a_record_action_is_a_voicemail() {
    let event = event(RECORD_ACTION);
    let call = event.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Voicemail);
    assert_eq!(
        call.recording_reference,
        "https://api.twilio.com/2010-04-01/Accounts/AC3f0b7c1e9d2a4b6c8e0f1a2b3c4d5e6f/Recordings/RE1a2b3c4d5e6f708192a3b4c5d6e7f809"
    );
    assert_eq!(call.duration.unwrap().seconds, 14);
    assert_eq!(event.tags, ["call", "voicemail"]);
    assert_eq!(event.occurred_at, event.received_at);
    assert!(event.body.as_ref().unwrap().text.contains("\nRecording: https://api.twilio.com/"));
}

#[test]
fn a_transcription_is_a_voicemail_with_its_transcript() {
    let event = event(TRANSCRIPTION_TR);
    let call = event.call.as_ref().unwrap();
    assert_eq!(call.outcome(), Outcome::Voicemail);
    assert_eq!(
        call.transcript,
        "Merhaba, ben Ayşe Yılmaz. 1042 numaralı siparişim hakkında aramıştım, lütfen beni geri arayın."
    );
    assert!(
        call.transcript_reference
            .ends_with("/Transcriptions/TR7f6e5d4c3b2a190817f6e5d4c3b2a190")
    );
    assert!(
        event
            .body
            .as_ref()
            .unwrap()
            .text
            .ends_with("\nTranscript: Merhaba, ben Ayşe Yılmaz. 1042 numaralı siparişim hakkında aramıştım, lütfen beni geri arayın.")
    );
    assert_eq!(event.conversation_id, self::event(COMPLETED).conversation_id);
    let failed = TRANSCRIPTION_TR.replace("TranscriptionStatus=completed", "TranscriptionStatus=failed");
    assert_eq!(normalize(&failed), Ok(None));
}

#[test]
fn conversations_are_per_customer_and_ids_stable_across_retries() {
    let first = event(COMPLETED);
    assert_eq!(first, event(COMPLETED));
    assert_eq!(first.conversation_id, event(RECORD_ACTION).conversation_id);
    let next_call = COMPLETED.replace(CALL, "CA00000000000000000000000000000001");
    let second = event(&next_call);
    assert_eq!(first.conversation_id, second.conversation_id);
    assert_ne!(first.event_id, second.event_id);
    let other_customer = event(&COMPLETED.replace("%2B905551112233", "%2B905559998877"));
    assert_ne!(first.conversation_id, other_customer.conversation_id);
    // Withheld caller ids do not merge strangers into one conversation.
    let anonymous = COMPLETED.replace("%2B905551112233", "%2B266696687");
    let anonymous_next = next_call.replace("%2B905551112233", "%2B266696687");
    assert_ne!(event(&anonymous).conversation_id, event(&anonymous_next).conversation_id);
    assert_eq!(event(&anonymous).provider.unwrap().reply_to, "");
}

#[test]
fn a_recording_status_callback_joins_the_calls_conversation_once_known() {
    let error = normalize(RECORDING_STATUS).unwrap_err();
    match &error {
        NormalizeError::Malformed { reason, .. } => assert!(reason.contains("replay"), "{reason}"),
        other => panic!("expected malformed, got {other:?}"),
    }
    let status = event(COMPLETED);
    let known = HashMap::from([(status.event_id.clone(), status.conversation_id.clone())]);
    let recording = TwilioVoice.normalize(&raw(RECORDING_STATUS), &known).unwrap().unwrap();
    assert_eq!(recording.conversation_id, status.conversation_id);
    let call = recording.call.as_ref().unwrap();
    assert_eq!(call.call_id, CALL);
    assert!(call.recording_reference.ends_with("/Recordings/RE2b3c4d5e6f708192a3b4c5d6e7f8091a"));
    assert_eq!(call.duration.unwrap().seconds, 121);
    assert_eq!(call.started_at.unwrap().seconds, 1_795_342_502);
    assert_eq!(recording.tags, ["call"]);
    assert!(recording.participants.is_empty());
    // A missed call's status callback is found as well.
    let missed = event(&NO_ANSWER.replace("CA0a1b2c3d4e5f60718293a4b5c6d7e8f9", CALL));
    let known = HashMap::from([(missed.event_id.clone(), missed.conversation_id.clone())]);
    assert!(TwilioVoice.normalize(&raw(RECORDING_STATUS), &known).unwrap().is_some());
    let absent = RECORDING_STATUS.replace("RecordingStatus=completed", "RecordingStatus=absent");
    assert_eq!(TwilioVoice.normalize(&raw(&absent), &known), Ok(None));
}

#[test]
fn unreadable_records_are_malformed() {
    let mut record = raw(COMPLETED);
    record.payload = b"garbage".to_vec();
    crate::kit::assert_malformed(&TwilioVoice, &record);
    let mut record = raw(COMPLETED);
    record.attributes.insert(webhook::ITEM_ATTRIBUTE.into(), "x".into());
    crate::kit::assert_malformed(&TwilioVoice, &record);
}

#[test]
fn acknowledgement_is_empty_twiml() {
    let reply = TwilioVoice.acknowledgement();
    assert_eq!((reply.status, reply.content_type), (200, "text/xml"));
    assert!(String::from_utf8(reply.body).unwrap().ends_with("<Response></Response>"));
}

#[test]
fn a_dial_action_says_whether_an_agent_took_the_call_under_its_own_id() {
    // A `<Dial action>` request: the standard parameters (CallStatus of the parent call, which
    // may well be `completed` when the caller hung up) plus DialCallStatus/DialCallSid/
    // DialCallDuration (https://www.twilio.com/docs/voice/twiml/dial#action).
    let dial = |status: &str| {
        format!(
            "{}&DialCallStatus={status}&DialCallSid=CA0000000000000000000000000000dial&DialCallDuration=0",
            COMPLETED.trim_end()
        )
    };
    let ids = items_of(&dial("no-answer"));
    assert_eq!(
        ids[0].provider_message_id,
        format!("{CALL}/dial/CA0000000000000000000000000000dial")
    );
    assert_ne!(ids[0].provider_message_id, items_of(COMPLETED)[0].provider_message_id);
    assert_eq!(event(&dial("no-answer")).call.unwrap().outcome(), Outcome::Missed);
    assert_eq!(event(&dial("busy")).call.unwrap().outcome(), Outcome::Busy);
    assert_eq!(event(&dial("completed")).call.unwrap().outcome(), Outcome::Answered);
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&TwilioVoice)
        .no_event(&["incoming-ringing.form"])
        .needs_earlier(&["recording-status-completed.form"])
        .run();
}
