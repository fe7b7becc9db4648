//! Fixtures in `src/freeswitch/fixtures/` are written after `switch_ivr_generate_json_cdr` (the
//! CDR's `core-uuid`, `switchname`, `channel_data`, `variables`, `app_log`, `callflow` with
//! `caller_profile`, `originator` / `originatee` and `times`) and the channel variables FreeSWITCH
//! and mod_voicemail set (`start_epoch`, `answer_epoch`, `bridge_epoch`, `billsec`,
//! `hangup_cause`, `callee_id_name`, `voicemail_message_len`, `voicemail_file_path`). JSON
//! fixtures are posted as `encode` false sends them; `inbound-busy-encoded.form` as the module's
//! defaults do (`encode` and `encode-values` true: the values URL-encoded, then the whole
//! document, `%XX` sequences kept, with FreeSWITCH's unsafe set `\r\n #%&+:;<=>?@[\]^`{|}"`).
//! The Basic credentials are compared with Python's `requests` in the e2e signer test.

use omni_proto::v1::call_data::Outcome;

use super::*;

const ANSWERED_NL: &str = include_str!("fixtures/inbound-answered-nl.json");
const MISSED_TR: &str = include_str!("fixtures/inbound-missed-tr.json");
const VOICEMAIL_TR: &str = include_str!("fixtures/inbound-voicemail-tr.json");
const BUSY_ENCODED: &str = include_str!("fixtures/inbound-busy-encoded.form");
const B_LEG: &str = include_str!("fixtures/b-leg.json");
const OUTBOUND: &str = include_str!("fixtures/outbound-answered.json");
const FORM: &str = "application/x-www-form-urlencoded";

fn account() -> WebhookAccount {
    FreeSwitch.development_account()
}

fn event_as(content_type: &str, body: &[u8]) -> ConversationEvent {
    crate::kit::events(&FreeSwitch, &account(), content_type, body)
        .swap_remove(0)
        .expect("a call event")
}

fn event(body: &str) -> ConversationEvent {
    event_as("application/json", body.as_bytes())
}

fn call(event: &ConversationEvent) -> &CallData {
    event.call.as_ref().expect("call data")
}

fn verify(authorization: Option<&str>) -> Result<(), Rejection> {
    let mut headers = http::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization", value.parse().unwrap());
    }
    let request = WebhookRequest {
        url: "https://omni.example.com/webhooks/freeswitch/default?uuid=x",
        query: "uuid=x",
        headers: &headers,
        body: ANSWERED_NL.as_bytes(),
        now: crate::kit::now(),
    };
    FreeSwitch.verify(&account(), &request)
}

#[test]
fn passes_the_conformance_kit() {
    crate::kit::WebhookConformance::new(&FreeSwitch)
        .no_event(&["b-leg.json"])
        .body_not_signed()
        .run();
}

#[test]
fn basic_credentials_are_cred_exactly() {
    // base64("omni-dev-freeswitch:omni-dev-json-cdr"), as curl sends CURLOPT_USERPWD.
    assert_eq!(verify(Some("Basic b21uaS1kZXYtZnJlZXN3aXRjaDpvbW5pLWRldi1qc29uLWNkcg==")), Ok(()));
    assert_eq!(verify(Some("basic  b21uaS1kZXYtZnJlZXN3aXRjaDpvbW5pLWRldi1qc29uLWNkcg== ")), Ok(()));
    assert!(matches!(verify(None), Err(Rejection::Unauthorized(_))));
    // base64("omni-dev-freeswitch:omni-dev-json-cdX")
    assert!(matches!(
        verify(Some("Basic b21uaS1kZXYtZnJlZXN3aXRjaDpvbW5pLWRldi1qc29uLWNkWA==")),
        Err(Rejection::Forbidden(_))
    ));
    assert!(matches!(verify(Some("Bearer omni-dev-json-cdr")), Err(Rejection::Forbidden(_))));
    assert!(matches!(verify(Some("Basic not*base64")), Err(Rejection::Forbidden(_))));
    assert!(matches!(verify(Some("Basic")), Err(Rejection::Forbidden(_))));
}

#[test]
fn cred_must_be_a_user_and_a_password() {
    let problems = |secret: &str| FreeSwitch.check_account(&WebhookAccount::new(secret), true);
    assert!(problems("pbx1:s3cret-pass").is_empty());
    assert_eq!(problems("no-colon-here").len(), 1);
    assert_eq!(problems(":s3cret-pass").len(), 1);
    assert_eq!(problems("pbx1:short").len(), 1);
    assert_eq!(
        FreeSwitch
            .check_account(&WebhookAccount::new("pbx1:s3cret-pass").with("url", "x"), true)
            .len(),
        1
    );
}

#[test]
fn an_answered_call_names_the_customer_the_agent_and_the_talk_time() {
    let event = event(ANSWERED_NL);
    let call = call(&event);
    assert_eq!(call.outcome(), Outcome::Answered);
    assert_eq!((call.from.as_str(), call.to.as_str()), ("+31612345678", "+31201234567"));
    assert_eq!(call.agent, "Elif Kaya");
    assert_eq!(call.duration.unwrap().seconds, 187);
    assert_eq!(call.call_id, "6f2d8b1a-93c4-4e57-b0a1-2c3d4e5f6a7b");
    assert_eq!(event.direction(), Direction::Inbound);
    assert_eq!(event.participants[0].display_name, "Sanne de Vries");
    assert_eq!(event.participants[0].identifiers[0].value, "+31612345678");
    assert_eq!(event.participants[1].role(), participant::Role::Agent);
    assert_eq!(event.tags, ["call", "answered-call"]);
    assert_eq!(event.occurred_at.unwrap().seconds, 1_795_511_645);
    assert_eq!(
        event.provider.as_ref().unwrap().message_id,
        "cdr/6f2d8b1a-93c4-4e57-b0a1-2c3d4e5f6a7b"
    );
}

#[test]
fn a_caller_who_hung_up_in_the_queue_is_a_missed_call_with_its_cause() {
    let event = event(MISSED_TR);
    assert_eq!(call(&event).outcome(), Outcome::Missed);
    assert_eq!(event.participants[0].display_name, "Ayşe Yılmaz");
    assert_eq!(event.participants.len(), 1, "nobody answered");
    let text = &event.body.as_ref().unwrap().text;
    assert!(text.starts_with("Missed call from +905551112233 to +31201234567"), "{text}");
    assert!(text.ends_with("Reason: originator cancel"), "{text}");
    assert_eq!(call(&event).duration.unwrap().seconds, 48, "the whole call: nobody talked");
}

#[test]
fn a_voicemail_carries_its_file() {
    let event = event(VOICEMAIL_TR);
    let call = call(&event);
    assert_eq!(call.outcome(), Outcome::Voicemail);
    assert!(
        call.recording_reference.ends_with("/5000/msg_4a3b2c1d.wav"),
        "{}",
        call.recording_reference
    );
    assert_eq!(event.tags, ["call", "voicemail"]);
    assert!(!event.body.as_ref().unwrap().text.contains("Reason"));
}

#[test]
fn the_modules_default_encoding_reads_like_plain_json() {
    let event = event_as(FORM, BUSY_ENCODED.as_bytes());
    assert_eq!(call(&event).outcome(), Outcome::Busy);
    assert_eq!(call(&event).from, "+491701234567", "the value's %2B is a plus again");
    assert_eq!(event.participants[0].display_name, "Jürgen Weiß");
    assert!(event.body.as_ref().unwrap().text.ends_with("Reason: user busy"));

    // encode=base64: the same CDR, base64 after `cdr=`.
    let document = form_cdr(BUSY_ENCODED.as_bytes()).unwrap();
    let base64_body = format!("cdr={}", base64::engine::general_purpose::STANDARD.encode(&document));
    let same = event_as(BASE64_FORM, base64_body.as_bytes());
    assert_eq!(same.call, event.call);
    assert_eq!(same.conversation_id, event.conversation_id);
}

#[test]
fn a_b_leg_is_acknowledged_and_not_stored() {
    let records = crate::kit::records(&FreeSwitch, &account(), "application/json", B_LEG.as_bytes());
    assert!(records.is_empty());
}

#[test]
fn a_call_the_team_placed_is_outbound_to_the_dialled_customer() {
    let event = event(OUTBOUND);
    let call = call(&event);
    assert_eq!(event.direction(), Direction::Outbound);
    assert_eq!((call.from.as_str(), call.to.as_str()), ("+31201234567", "+32470123456"));
    assert_eq!(call.outcome(), Outcome::Answered, "the customer picked up");
    assert_eq!(event.participants[0].identifiers[0].value, "+32470123456");
    assert_eq!(event.participants[0].display_name, "", "the caller id name is the shop's");
}

#[test]
fn one_customer_line_is_one_conversation_and_an_anonymous_caller_one_per_call() {
    let nl = event(ANSWERED_NL).conversation_id;
    let redial = ANSWERED_NL.replace("6f2d8b1a-93c4-4e57-b0a1-2c3d4e5f6a7b", "11111111-93c4-4e57-b0a1-2c3d4e5f6a7b");
    assert_eq!(event(&redial).conversation_id, nl);
    assert_ne!(event(MISSED_TR).conversation_id, nl);
    let anonymous = MISSED_TR.replace("+905551112233", "anonymous");
    let other_call = anonymous.replace("0d9e8f7a-6b5c", "0d9e8f7a-0000");
    assert_ne!(event(&anonymous).conversation_id, event(&other_call).conversation_id);
    assert!(event(&anonymous).participants[0].identifiers.is_empty());
}

#[test]
fn older_freeswitch_repeats_callflow_instead_of_an_array() {
    let mut document: Value = serde_json::from_str(MISSED_TR).unwrap();
    let flow = document["callflow"][0].clone();
    document["callflow"] = flow;
    let event = event(&document.to_string());
    assert_eq!(call(&event).from, "+905551112233");
}
