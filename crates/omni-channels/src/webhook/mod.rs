//! The contract between the webhook gateway and a provider adapter.
//!
//! The gateway answers `POST` (and, for handshakes, `GET`) at `/webhooks/<provider>/<account>`.
//! For each request it:
//!
//! 1. finds the adapter by `<provider>` ([`webhook_adapter`]) and the account's secrets by
//!    `<account>` in `[gateway.webhooks.<provider>.<account>]` (404 when either is unknown);
//! 2. reads the body within `max_body_bytes` (413 over it);
//! 3. calls [`WebhookAdapter::verify`] before anything else looks at the body: a bad or missing
//!    signature or an expired timestamp is a [`Rejection`] (401/403) and nothing is written;
//! 4. calls [`WebhookAdapter::accept`]: either a handshake [`Reply`] that stores nothing (Slack's
//!    `url_verification`), or the [`Item`]s in the payload (400 for a body the provider would
//!    never send);
//! 5. writes one raw record per item, each with the provider's exact body, the item's index in
//!    the attribute [`ITEM_ATTRIBUTE`] and the event id
//!    `ids::event_id(adapter.id_channel(), account, item.provider_message_id)`;
//! 6. answers [`WebhookAdapter::acknowledgement`] only once the broker acknowledged every record,
//!    so the provider's own retry covers any failure, and a retried delivery gets the same
//!    event ids and is skipped by the normalizer.
//!
//! The normalizer then calls the adapter's [`crate::Normalize::normalize`] once per raw record;
//! it reads the item at [`ITEM_ATTRIBUTE`] and returns `None` for items that mean nothing to an
//! agent (delivery receipts, reads, typing), which stay in the raw topic only.
//!
//! Adapters are pure: no I/O, no clock except `WebhookRequest::now`, so every check is unit-tested.

pub mod signature;
pub mod text;

use std::collections::BTreeMap;
use std::time::SystemTime;

use omni_proto::v1::{Channel, RawRecord};
use serde::Deserialize;

use crate::{Normalize, NormalizeError};

/// The raw record attribute holding the index of the record's item in its payload.
pub const ITEM_ATTRIBUTE: &str = "item";
/// The raw record attribute holding the request's `Content-Type`.
pub const CONTENT_TYPE_ATTRIBUTE: &str = "content_type";

/// One account of one provider: `[gateway.webhooks.<provider>.<account>]`. Which fields a
/// provider needs is its [`WebhookAdapter::check_account`]'s business; `omni config check` lists
/// what is missing.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAccount {
    /// The signing secret, named as the provider's console names it: Meta's App Secret, X's
    /// consumer secret, Telegram's `secret_token`, Slack's Signing Secret, Twilio's Auth Token,
    /// Aircall's webhook token.
    pub secret: String,
    /// Meta only: the Verify Token typed into the webhook settings, echoed back in the GET handshake.
    #[serde(default)]
    pub verify_token: Option<String>,
    /// Twilio only: the exact public URL configured in Twilio's console for this account (Twilio
    /// signs the URL it called). Without it the URL is rebuilt from the request's Host header,
    /// which is wrong behind a TLS-terminating proxy.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Slack only: the channel ids whose messages are customer messages (the support channel);
    /// direct messages to the app are always accepted. Empty: every channel the app is in.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// One webhook request, as the adapter sees it.
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    /// The full URL the provider called, as the provider sees it (scheme, host, path, query):
    /// the account's `public_url` plus the request's query, or rebuilt from the Host header.
    pub url: &'a str,
    /// The raw query string, without `?`; empty when none.
    pub query: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The exact body.
    pub body: &'a [u8],
    /// The gateway's clock, for replay windows.
    pub now: SystemTime,
}

impl WebhookRequest<'_> {
    /// A header as text; `None` when missing or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The `Content-Type` without parameters, lowercased; empty when missing.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .and_then(|value| value.split(';').next())
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    /// The query's pairs, percent-decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes()).into_owned().collect()
    }
}

/// Why a request is refused before anything is stored. Messages name what failed, never a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 401: the signature, token or timestamp header is missing.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: a signature or token is present and wrong, or the timestamp is outside the replay window.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 400: the body is not something the provider would send.
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// A response the adapter gives itself: a handshake answer or the provider's expected
/// acknowledgement body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// `200 OK` with an empty body.
    pub fn ok() -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
        }
    }

    /// `200 OK` with a text body.
    pub fn text(body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    /// `200 OK` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }
}

/// One thing in a payload that becomes one raw record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The provider's id of this item, unique per account and stable across the provider's
    /// retries (a message id, or a call id plus the call's stage). The event id is computed over it.
    pub provider_message_id: String,
    /// The fields the raw record's key is computed over (`ids::partition_key`): the business
    /// account and the customer, so one customer's items stay in order.
    pub partition_key: Vec<String>,
}

/// What a verified request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A handshake or test request: answer this, store nothing.
    Reply(Reply),
    /// Items to store; may be empty (a payload with nothing in it is acknowledged and not stored).
    Items(Vec<Item>),
}

/// A provider's webhook adapter. The same value also normalizes the provider's raw records.
pub trait WebhookAdapter: Normalize {
    /// The provider's name in URLs and raw records (`whatsapp`, `twilio-sms`, ...); equal to
    /// [`Normalize::provider`].
    fn name(&self) -> &'static str {
        self.provider()
    }

    /// The channel of the provider's records (selects the raw topic's family).
    fn channel(&self) -> Channel;

    /// The channel name in event ids and conversation ids (`whatsapp`, `sms`, `voice`, ...).
    fn id_channel(&self) -> &'static str;

    /// Config problems of one account (a missing `verify_token`, ...), each a sentence naming the field.
    fn check_account(&self, account: &WebhookAccount) -> Vec<String> {
        let mut problems = Vec::new();
        if account.secret.len() < 8 {
            problems.push("secret: must be at least 8 characters".to_owned());
        }
        problems
    }

    /// Answers a `GET` (subscription handshakes). The default: 405, nothing to answer.
    fn handshake(&self, _account: &WebhookAccount, _request: &WebhookRequest<'_>) -> Result<Reply, Rejection> {
        Err(Rejection::BadRequest(format!("{} webhooks do not use GET", self.name())))
    }

    /// Checks that the request comes from the provider, before anything else reads the body.
    /// Compares in constant time.
    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection>;

    /// Parses a verified body into its items, or a handshake reply.
    fn accept(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection>;

    /// The answer once every item is stored. The default: `200 OK`, empty.
    fn acknowledgement(&self) -> Reply {
        Reply::ok()
    }

    /// The bytes stored as the raw record's payload: the exact body, except a credential the
    /// provider puts inside the body (Aircall's token), which is blanked so the raw topic, the
    /// dead-letter topic and `omni tail` never hold a secret. The default: the body unchanged.
    fn stored_payload<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        std::borrow::Cow::Borrowed(body)
    }
}

/// What replaces a credential in a stored payload (see [`WebhookAdapter::stored_payload`]).
pub const REDACTED: &str = "[redacted]";

/// `body` with the JSON string value of the top-level `"key": "<value>"` member replaced by
/// [`REDACTED`], every other byte unchanged; the body itself when the key has no string value.
pub fn redact_json_string_member<'a>(body: &'a [u8], key: &str) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Cow::Borrowed(body);
    };
    let Some(serde_json::Value::String(value)) = object.get(key) else {
        return Cow::Borrowed(body);
    };
    let key_literal = serde_json::to_string(key).unwrap_or_default();
    // The value as it may appear: plain JSON escaping; other escapings of the same text (\u00e9)
    // are not found, and the body is then stored unchanged rather than altered wrongly.
    let literal = serde_json::to_string(value).unwrap_or_default();
    let (haystack, needle) = (body, literal.as_bytes());
    let mut start = 0;
    while let Some(found) = haystack[start..].windows(needle.len().max(1)).position(|w| w == needle) {
        let at = start + found;
        let before = haystack[..at].trim_ascii_end();
        if let Some(before_colon) = before.strip_suffix(b":")
            && before_colon.trim_ascii_end().ends_with(key_literal.as_bytes())
        {
            let mut out = Vec::with_capacity(body.len());
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(serde_json::to_string(REDACTED).unwrap_or_default().as_bytes());
            out.extend_from_slice(&body[at + needle.len()..]);
            return Cow::Owned(out);
        }
        start = at + 1;
    }
    Cow::Borrowed(body)
}

/// Every webhook adapter, explicitly listed.
pub fn webhook_adapters() -> &'static [&'static dyn WebhookAdapter] {
    static ALL: [&dyn WebhookAdapter; 9] = [
        &crate::whatsapp::WhatsApp,
        &crate::messenger::MESSENGER,
        &crate::instagram::INSTAGRAM,
        &crate::x::X,
        &crate::telegram::Telegram,
        &crate::slack::Slack,
        &crate::twilio_sms::TwilioSms,
        &crate::twilio_voice::TwilioVoice,
        &crate::aircall::Aircall,
    ];
    &ALL
}

/// The adapter answering `/webhooks/<name>/...`.
pub fn webhook_adapter(name: &str) -> Option<&'static dyn WebhookAdapter> {
    webhook_adapters().iter().copied().find(|adapter| adapter.name() == name)
}

/// The index in [`ITEM_ATTRIBUTE`] of a raw record (0 when absent, for records of single-item
/// providers), or why it cannot be read.
pub fn item_index(raw: &RawRecord, provider: &'static str) -> Result<usize, NormalizeError> {
    match raw.attributes.get(ITEM_ATTRIBUTE) {
        None => Ok(0),
        Some(value) => value.parse().map_err(|_| NormalizeError::Malformed {
            provider,
            reason: format!("attribute `{ITEM_ATTRIBUTE}` is not an index: {value:?}"),
        }),
    }
}

/// Parses a JSON payload, or says why not as a [`NormalizeError::Malformed`].
pub fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8], provider: &'static str) -> Result<T, NormalizeError> {
    serde_json::from_slice(payload).map_err(|error| NormalizeError::Malformed {
        provider,
        reason: format!("not a {provider} webhook body: {error}"),
    })
}

/// Parses an `application/x-www-form-urlencoded` body into its pairs (last value wins for a
/// repeated name), or says why not.
pub fn parse_form(payload: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(payload).into_owned().collect()
}

/// A phone number in E.164 when it parses as one (`+905551112233`, or digits without `+` as
/// WhatsApp sends them), else the input unchanged.
pub fn e164(number: &str) -> String {
    let trimmed = number.trim();
    let candidate = if trimmed.starts_with('+') {
        trimmed.to_owned()
    } else {
        format!("+{trimmed}")
    };
    match phonenumber::parse(None, &candidate) {
        Ok(parsed) if phonenumber::is_valid(&parsed) => parsed.format().mode(phonenumber::Mode::E164).to_string(),
        _ => trimmed.to_owned(),
    }
}

/// A Unix time in seconds as a protobuf timestamp.
pub fn unix_seconds(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapter_is_found_by_name_and_normalizes_its_own_records() {
        for adapter in webhook_adapters() {
            assert_eq!(webhook_adapter(adapter.name()).map(|a| a.name()), Some(adapter.name()));
            assert_eq!(crate::normalizer_for(adapter.name()).map(|n| n.provider()), Ok(adapter.name()));
        }
        assert!(webhook_adapter("fax").is_none());
    }

    #[test]
    fn a_credential_member_is_redacted_and_nothing_else_changes() {
        let body = br#"{"resource":"call","data":{"note":"token: s3cret"},"token" : "s3cret","x":"\u00e9"}"#;
        let stored = redact_json_string_member(body, "token");
        assert_eq!(
            stored.as_ref(),
            br#"{"resource":"call","data":{"note":"token: s3cret"},"token" : "[redacted]","x":"\u00e9"}"#
        );
        assert_eq!(redact_json_string_member(b"[1]", "token").as_ref(), b"[1]");
        assert_eq!(redact_json_string_member(br#"{"token":1}"#, "token").as_ref(), br#"{"token":1}"#);
    }

    #[test]
    fn phone_numbers_become_e164() {
        assert_eq!(e164("905551112233"), "+905551112233");
        assert_eq!(e164("+31 20 123 4567"), "+31201234567");
        assert_eq!(e164("anonymous"), "anonymous");
    }
}
