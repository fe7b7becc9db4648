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
/// The raw record attribute saying that a credential was blanked in the stored payload.
pub const REDACTED_ATTRIBUTE: &str = "redacted";

/// One account of one provider: `[gateway.webhooks.<provider>.<account>]`: the signing secret
/// every provider has, and the provider's own settings, which its adapter reads as a typed struct
/// of its own ([`WebhookAccount::settings`]) and checks in [`WebhookAdapter::check_account`];
/// `omni config check` lists what is missing or unknown.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct WebhookAccount {
    /// The signing secret, named as the provider's console names it (see each adapter's
    /// [`WebhookAdapter::development_account`] docs and the README's provider table).
    pub secret: String,
    /// The exact public URL set in the provider's console for this account, for providers that
    /// sign the URL they call (Twilio). Without it the gateway rebuilds the URL from the
    /// request's Host header, which is wrong behind a TLS-terminating proxy.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Every other key of the account's table, for the adapter to read.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl WebhookAccount {
    /// An account with this secret and no other settings.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            public_url: None,
            settings: serde_json::Map::new(),
        }
    }

    /// The account with one more setting.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.settings.insert(key.to_owned(), value.into());
        self
    }

    /// The provider's settings as its adapter's typed struct (which should deny unknown fields),
    /// or what is wrong with them, as a sentence naming the field.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(serde_json::Value::Object(self.settings.clone())).map_err(|error| error.to_string())
    }

    /// The secret and every text setting: what a development-secret check looks at.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.secret.as_str()).chain(self.settings.values().filter_map(serde_json::Value::as_str))
    }
}

/// The settings of a provider that has none besides its secret.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Every development secret starts with this: public values, accepted only on loopback.
pub const DEVELOPMENT_SECRET_PREFIX: &str = "omni-dev-";

/// A request as the provider would sign it ([`WebhookAdapter::sign`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// Headers to send, the signature's among them.
    pub headers: Vec<(&'static str, String)>,
    /// The body to send: the given one, or with the credential put in (Aircall's token).
    pub body: Vec<u8>,
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
        media_type(self.header("content-type").unwrap_or_default())
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

    /// Config problems of one account (a missing `verify_token`, ...), each a sentence naming the
    /// field; `loopback` tells whether the gateway listens on loopback only. The default: a secret
    /// of at least 8 characters and no other settings.
    fn check_account(&self, account: &WebhookAccount, loopback: bool) -> Vec<String> {
        let _ = loopback;
        let mut problems = check_secret(account);
        if let Err(problem) = account.settings::<NoSettings>() {
            problems.push(problem);
        }
        problems
    }

    /// The account `default` that `[gateway] development_webhooks` gives this provider: public
    /// development values (starting with [`DEVELOPMENT_SECRET_PREFIX`]), for local runs and tests.
    fn development_account(&self) -> WebhookAccount;

    /// The request headers the provider's signature travels in, lowercase (the fuzz harness
    /// varies them; the conformance kit drops them to make an unsigned request).
    fn signature_headers(&self) -> &'static [&'static str];

    /// How old a signed timestamp may be, for providers that sign one (Slack: 5 minutes).
    fn replay_window(&self) -> Option<std::time::Duration> {
        None
    }

    /// Signs `body` for `account` as the provider does, called at `url` at `now`: for the
    /// conformance kit, the tests, the load generator and whoever wants to try a setup by hand.
    /// `content_type` is the one the request is sent with.
    fn sign(&self, account: &WebhookAccount, url: &str, content_type: &str, body: &[u8], now: SystemTime) -> Signed;

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

/// The default secret check: at least 8 characters.
pub fn check_secret(account: &WebhookAccount) -> Vec<String> {
    if account.secret.len() < 8 {
        vec!["secret: must be at least 8 characters".to_owned()]
    } else {
        Vec::new()
    }
}

/// What replaces a credential in a stored payload (see [`WebhookAdapter::stored_payload`]).
pub const REDACTED: &str = "[redacted]";

/// `body` with the JSON string value of the top-level `"key": "<value>"` member replaced by
/// [`REDACTED`], every other byte unchanged; the body itself when the key has no string value.
pub fn redact_json_string_member<'a>(body: &'a [u8], key: &str) -> std::borrow::Cow<'a, [u8]> {
    replace_json_string_member(body, key, REDACTED)
}

/// `body` with the JSON string value of the top-level `"key": "<value>"` member replaced by
/// `replacement`, every other byte unchanged; the body itself when the key has no string value.
pub fn replace_json_string_member<'a>(body: &'a [u8], key: &str, replacement: &str) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Cow::Borrowed(body);
    };
    let Some(serde_json::Value::String(value)) = object.get(key) else {
        return Cow::Borrowed(body);
    };
    let key_literal = serde_json::to_string(key).unwrap_or_default();
    // The value as it may appear: plain JSON escaping; other escapings of the same text (\u00e9)
    // are not found, and the body is then returned unchanged rather than altered wrongly.
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
            out.extend_from_slice(serde_json::to_string(replacement).unwrap_or_default().as_bytes());
            out.extend_from_slice(&body[at + needle.len()..]);
            return Cow::Owned(out);
        }
        start = at + 1;
    }
    Cow::Borrowed(body)
}

/// Every webhook adapter: those of [`crate::adapters`] that take webhooks, in its order.
pub fn webhook_adapters() -> &'static [&'static dyn WebhookAdapter] {
    static ALL: std::sync::OnceLock<Vec<&'static dyn WebhookAdapter>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| crate::adapters().iter().filter_map(|adapter| adapter.as_webhook()).collect())
}

/// The adapter answering `/webhooks/<name>/...`.
pub fn webhook_adapter(name: &str) -> Option<&'static dyn WebhookAdapter> {
    webhook_adapters().iter().copied().find(|adapter| adapter.name() == name)
}

/// One raw record to store, and the key it is written with.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The record.
    pub record: RawRecord,
    /// Its Kafka key (`ids::partition_key` over the account and the item's key fields).
    pub key: String,
}

/// The raw records of a verified request's items, exactly as the gateway stores them (steps 5
/// of the module docs): the stored payload ([`WebhookAdapter::stored_payload`]), the request's
/// `Content-Type`, the item index, `received_at` = `request.now`. The adapter tests and the
/// conformance kit build their records here too, so they normalize what production stores.
pub fn raw_records(
    adapter: &dyn WebhookAdapter,
    account: &str,
    connector_id: &str,
    request: &WebhookRequest<'_>,
    items: &[Item],
) -> Vec<Stored> {
    let content_type = request.header("content-type").unwrap_or_default().to_owned();
    let payload = adapter.stored_payload(request.body);
    let mut attributes = std::collections::HashMap::from([(CONTENT_TYPE_ATTRIBUTE.to_owned(), content_type.clone())]);
    if payload.as_ref() != request.body {
        attributes.insert(REDACTED_ATTRIBUTE.to_owned(), "credential in body".to_owned());
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let event_id = crate::ids::event_id(adapter.id_channel(), account, Some(&item.provider_message_id), request.body);
            // The account first: adapters key by the provider's own ids, which only the account scopes.
            let key_fields: Vec<&str> = std::iter::once(account)
                .chain(item.partition_key.iter().map(String::as_str))
                .collect();
            let mut attributes = attributes.clone();
            attributes.insert(ITEM_ATTRIBUTE.to_owned(), index.to_string());
            Stored {
                record: RawRecord {
                    event_id,
                    channel: adapter.channel() as i32,
                    provider: adapter.name().to_owned(),
                    account: account.to_owned(),
                    connector_id: connector_id.to_owned(),
                    received_at: Some(request.now.into()),
                    provider_message_id: item.provider_message_id.clone(),
                    content_type: content_type.clone(),
                    payload: payload.to_vec(),
                    attributes,
                },
                key: crate::ids::partition_key(&key_fields),
            }
        })
        .collect()
}

/// The index in [`ITEM_ATTRIBUTE`] of a raw record (0 when absent, for records of single-item
/// providers), or why it cannot be read.
pub fn item_index(raw: &RawRecord, provider: &'static str) -> Result<usize, NormalizeError> {
    match raw.attributes.get(ITEM_ATTRIBUTE) {
        None => Ok(0),
        Some(value) => value
            .parse()
            .map_err(|_| NormalizeError::malformed(provider, format!("attribute `{ITEM_ATTRIBUTE}` is not an index: {value:?}"))),
    }
}

/// Parses a JSON payload, or says why not as a [`NormalizeError::Malformed`].
pub fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8], provider: &'static str) -> Result<T, NormalizeError> {
    serde_json::from_slice(payload).map_err(|error| NormalizeError::malformed(provider, format!("not a {provider} webhook body: {error}")))
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

/// A number as call systems' records key it: [`lenient_phone`] without a region (a leading
/// international `00` read as `+`), else as given (no digit at all: `anonymous`).
pub fn phone_number(number: &str) -> String {
    lenient_phone(number, None).unwrap_or_else(|| number.trim().to_owned())
}

/// A number as a conversation key, leniently: E.164 when it parses, with `region` (an ISO 3166
/// code such as `TR`, the business line's country) for a number written nationally
/// (`0555 111 22 33`), even when it is not a valid number (a sample or a short code); digits
/// alone that make a valid international number read as one (`905551112233`); else `+` and its
/// digits when written internationally, else its digits alone. So one caller's calls
/// meet in one conversation however the call system formats the number. `None` when it has no
/// digit (`anonymous`, empty).
pub fn lenient_phone(number: &str, region: Option<&str>) -> Option<String> {
    let trimmed = number.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let international = trimmed.starts_with('+') || trimmed.starts_with("00");
    let region = region.and_then(|code| code.trim().to_ascii_uppercase().parse::<phonenumber::country::Id>().ok());
    let candidate = match trimmed.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => trimmed.to_owned(),
    };
    // Digits without `+` and no region: international when that makes a valid number (as
    // WhatsApp and Asterisk write them: 905551112233).
    let as_international = || phonenumber::parse(None, format!("+{digits}")).ok().filter(phonenumber::is_valid);
    let parsed = match (international, region) {
        (true, _) => phonenumber::parse(None, &candidate).ok(),
        (false, Some(region)) => phonenumber::parse(Some(region), &candidate).ok().or_else(as_international),
        (false, None) => as_international(),
    };
    Some(match parsed {
        Some(number) => number.format().mode(phonenumber::Mode::E164).to_string(),
        None if international => format!("+{}", digits.trim_start_matches("00")),
        None => digits,
    })
}

/// A `Content-Type` value without its parameters, lowercased (`application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The string at `path` in a JSON value, trimmed; empty when absent or not a string.
pub fn json_str<'a>(value: &'a serde_json::Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
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
    fn phone_numbers_are_keyed_leniently() {
        // A sample number (not valid in any plan) keeps one form however it is written.
        assert_eq!(lenient_phone("+1 (555) 010-0123", None).as_deref(), Some("+15550100123"));
        assert_eq!(lenient_phone("+15550100123", None).as_deref(), Some("+15550100123"));
        // National writing with the line's country.
        assert_eq!(lenient_phone("0555 111 22 33", Some("tr")).as_deref(), Some("+905551112233"));
        assert_eq!(lenient_phone("0031 20 123 4567", None).as_deref(), Some("+31201234567"));
        // A short code stays its digits; nothing to key on is None.
        assert_eq!(lenient_phone("4040", None).as_deref(), Some("4040"));
        assert_eq!(lenient_phone("anonymous", Some("NL")), None);
    }

    #[test]
    fn phone_numbers_become_e164() {
        assert_eq!(e164("905551112233"), "+905551112233");
        assert_eq!(e164("+31 20 123 4567"), "+31201234567");
        assert_eq!(e164("anonymous"), "anonymous");
    }
}
