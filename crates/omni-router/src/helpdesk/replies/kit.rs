//! The conformance kit of reply webhooks: what every [`ReplyWebhook`] must do with a call,
//! whatever its helpdesk, run with one call from each adapter's tests over its own fixture.
//!
//! - the helpdesk's own call, signed as it signs, verifies and announces its answers, the same
//!   ones every time (a redelivered call is the same answer: the sender dedupes on its id);
//! - a call signed without the secret is a 403, and where the signature covers the body, a body
//!   changed after signing is a 403 too;
//! - a call missing any one of the signature's headers is a 401 (nothing is parsed before
//!   [`ReplyWebhook::verify`] passed);
//! - a truncated or garbled body, signed as the helpdesk would, is a 400 from
//!   [`ReplyWebhook::answers`] (JSON of another shape: a 400 or no answer), never a panic.
//!
//! What only one helpdesk does (Zendesk's replay window, Zammad's `sha1=` prefix, which events
//! carry no answer) stays in that adapter's tests.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use super::{CallError, ReplyCall, ReplyWebhook};
use omni_channels::webhook::Rejection;

/// One reply webhook adapter and how its helpdesk calls it.
pub(crate) struct Case<'a, W> {
    /// The adapter, configured with `sign`'s secret (and pointed at its fake API, if it asks one).
    pub intake: &'a W,
    /// A call announcing at least one answer, as the helpdesk sends it.
    pub fixture: &'a str,
    /// The headers the helpdesk sends with `body`, signed with the configured secret.
    pub sign: &'a dyn Fn(&str) -> HeaderMap,
    /// The same headers made with another secret: what a forger can send.
    pub forge: &'a dyn Fn(&str) -> HeaderMap,
    /// The headers that carry the signature (each one removed must be a 401).
    pub signature_headers: &'a [&'a str],
    /// Whether the signature covers the body (a static token does not).
    pub signs_body: bool,
}

/// A call received now with a five-minute replay window, as the adapters' tests make them.
pub(crate) fn call<'a>(headers: &'a HeaderMap, body: &'a str) -> ReplyCall<'a> {
    ReplyCall::for_test(headers, body, Duration::from_secs(300))
}

/// `fixture` (JSON) with `edit` applied.
pub(crate) fn edited(fixture: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut value: Value = serde_json::from_str(fixture).expect("the fixture is JSON");
    edit(&mut value);
    value.to_string()
}

/// Runs every check of the kit against `case`.
pub(crate) async fn conformance<W: ReplyWebhook>(case: Case<'_, W>) {
    signed_calls_announce_the_same_answers(&case).await;
    forged_calls_are_forbidden(&case);
    missing_signature_headers_are_unauthorized(&case);
    broken_bodies_are_bad_requests(&case).await;
}

async fn signed_calls_announce_the_same_answers<W: ReplyWebhook>(case: &Case<'_, W>) {
    let headers = (case.sign)(case.fixture);
    let call = call(&headers, case.fixture);
    case.intake.verify(&call).expect("the helpdesk's own call verifies");
    let first = case.intake.answers(&call).await.expect("the fixture is read");
    assert!(!first.is_empty(), "the fixture announces an answer");
    for answer in &first {
        assert!(!answer.comment_id.is_empty(), "an answer without its id: {answer:?}");
        assert!(!answer.conversation_id.is_empty(), "an answer without its conversation: {answer:?}");
        assert!(!answer.ticket.id.is_empty(), "an answer without its ticket: {answer:?}");
        assert!(!answer.body.text.trim().is_empty(), "an answer without text: {answer:?}");
    }
    // A redelivery is a new call: signed again (a new timestamp or delivery id where the
    // helpdesk sends one), the same answers.
    let headers = (case.sign)(case.fixture);
    let redelivered = self::call(&headers, case.fixture);
    case.intake.verify(&redelivered).expect("a redelivery verifies");
    let again = case.intake.answers(&redelivered).await.expect("the redelivery is read");
    assert_eq!(first, again, "a redelivered call announces the same answers");
}

fn forged_calls_are_forbidden<W: ReplyWebhook>(case: &Case<'_, W>) {
    let forged = (case.forge)(case.fixture);
    let verified = case.intake.verify(&call(&forged, case.fixture));
    assert!(matches!(verified, Err(Rejection::Forbidden(_))), "another secret: {verified:?}");
    if case.signs_body {
        let headers = (case.sign)(case.fixture);
        let changed = format!("{} ", case.fixture);
        let verified = case.intake.verify(&call(&headers, &changed));
        assert!(
            matches!(verified, Err(Rejection::Forbidden(_))),
            "a body changed after signing: {verified:?}"
        );
    }
}

fn missing_signature_headers_are_unauthorized<W: ReplyWebhook>(case: &Case<'_, W>) {
    let headers = (case.sign)(case.fixture);
    for name in case.signature_headers {
        assert!(headers.contains_key(*name), "`sign` sets {name}");
        let mut without = headers.clone();
        without.remove(*name);
        let verified = case.intake.verify(&call(&without, case.fixture));
        assert!(matches!(verified, Err(Rejection::Unauthorized(_))), "without {name}: {verified:?}");
    }
    let verified = case.intake.verify(&call(&HeaderMap::new(), case.fixture));
    assert!(
        matches!(verified, Err(Rejection::Unauthorized(_))),
        "no headers at all: {verified:?}"
    );
}

async fn broken_bodies_are_bad_requests<W: ReplyWebhook>(case: &Case<'_, W>) {
    let fixture = case.fixture.trim_end();
    let cuts = [0, 1, fixture.len() / 3, fixture.len() / 2, fixture.len() - 1];
    let truncated = cuts.iter().filter_map(|&cut| fixture.get(..cut).map(str::to_owned));
    let not_json = ["\u{0}\u{fffd}{[\"", "<html></html>", "ticket_id=20"].map(str::to_owned);
    for body in truncated.chain(not_json) {
        let answers = signed_answers(case, &body).await;
        assert!(
            matches!(answers, Err(CallError::Refused(Rejection::BadRequest(_)))),
            "{body:?}: {answers:?}"
        );
    }
    // JSON of another shape: refused, or read as announcing nothing.
    for body in ["null", "[]", "\"text\"", "{}", "{\"id\": {}}"] {
        let answers = signed_answers(case, body).await;
        assert!(
            matches!(&answers, Err(CallError::Refused(Rejection::BadRequest(_)))) || matches!(&answers, Ok(none) if none.is_empty()),
            "{body:?}: {answers:?}"
        );
    }
}

async fn signed_answers<W: ReplyWebhook>(case: &Case<'_, W>, body: &str) -> Result<Vec<super::AgentReply>, CallError> {
    let headers = (case.sign)(body);
    let call = call(&headers, body);
    case.intake.verify(&call).expect("a signed call verifies whatever its body");
    case.intake.answers(&call).await
}
