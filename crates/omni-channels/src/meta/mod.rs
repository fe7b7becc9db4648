//! What the Meta adapters share: the `GET` subscription handshake, the `X-Hub-Signature-256`
//! check, the account check, (in [`messaging`]) the one implementation behind Messenger and
//! Instagram, and (in [`media`]) the download of their attachments.
//!
//! Both checks follow Meta's "Getting Started" webhooks guide
//! (<https://developers.facebook.com/docs/graph-api/webhooks/getting-started>):
//!
//! - **Verification request** (`GET`): `hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<c>`;
//!   when the token equals the account's `verify_token` (compared in constant time) the answer is
//!   `200` with the challenge as `text/plain`; a missing token is `401`, a wrong one (or another
//!   mode) `403`, a matching token without a challenge `400`.
//! - **Event notification** (`POST`): `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//!   exact body under the App Secret (`secret`). Meta signs the bytes it sends (non-ASCII text
//!   escaped as `\uXXXX`), so the check runs over the body exactly as received, never over a
//!   re-serialisation. Missing: `401`; not `sha256=<hex>` or not matching: `403`.

pub mod media;
pub mod messaging;
pub mod send;

use crate::webhook::signature::{tokens_equal, verify_sha256_hex};
use crate::webhook::{Rejection, Reply, WebhookAccount, WebhookRequest};

/// The header carrying Meta's payload signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The longest `hub.challenge` echoed back (Meta sends a short integer).
const MAX_CHALLENGE: usize = 256;

/// A Meta account's settings besides `secret` (the app's App Secret).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSettings {
    /// The Verify Token typed into the app's webhook settings, echoed in the GET handshake.
    pub verify_token: Option<String>,
}

/// The development account of every Meta adapter (public values, loopback only).
pub fn development_account() -> WebhookAccount {
    WebhookAccount::new("omni-dev-meta-app-secret").with("verify_token", "omni-dev-verify-token")
}

/// Config problems of a Meta account: the default secret check plus a required `verify_token`.
pub fn check_account(account: &WebhookAccount) -> Vec<String> {
    let mut problems = Vec::new();
    if account.secret.len() < 8 {
        problems.push("secret: must be the app's App Secret (at least 8 characters)".to_owned());
    }
    match account.settings::<MetaSettings>().map(|settings| settings.verify_token) {
        Err(problem) => problems.push(problem),
        Ok(None) => problems.push("verify_token: required, the Verify Token typed into the app's webhook settings".to_owned()),
        Ok(Some(token)) if token.trim().is_empty() => problems.push("verify_token: must not be blank".to_owned()),
        Ok(Some(_)) => {}
    }
    problems
}

/// `X-Hub-Signature-256` for `body`, as Meta computes it.
pub fn sign(account: &WebhookAccount, body: &[u8]) -> crate::webhook::Signed {
    let digest = crate::webhook::signature::hmac_sha256(account.secret.as_bytes(), &[body]);
    crate::webhook::Signed {
        headers: vec![(SIGNATURE_HEADER, format!("sha256={}", hex::encode(digest)))],
        body: body.to_vec(),
    }
}

/// Answers Meta's verification request (see the module documentation).
pub fn handshake(account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Reply, Rejection> {
    let pairs = request.query_pairs();
    let param = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let Some(presented) = param("hub.verify_token") else {
        return Err(Rejection::Unauthorized("hub.verify_token is missing".to_owned()));
    };
    let configured = account.settings::<MetaSettings>().ok().and_then(|settings| settings.verify_token);
    let expected = configured.as_deref().filter(|token| !token.is_empty());
    // Compared even when nothing is configured, so a missing config takes the same time.
    let matches = tokens_equal(presented, expected.unwrap_or_default()) && expected.is_some();
    if !matches {
        return Err(Rejection::Forbidden("hub.verify_token does not match".to_owned()));
    }
    if param("hub.mode") != Some("subscribe") {
        return Err(Rejection::Forbidden("hub.mode is not subscribe".to_owned()));
    }
    match param("hub.challenge") {
        Some(challenge) if !challenge.is_empty() && challenge.len() <= MAX_CHALLENGE => Ok(Reply::text(challenge)),
        _ => Err(Rejection::BadRequest("hub.challenge is missing or too long".to_owned())),
    }
}

/// Checks `X-Hub-Signature-256` over the exact body (see the module documentation).
pub fn verify(account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
    let Some(header) = request.headers.get(SIGNATURE_HEADER) else {
        return Err(Rejection::Unauthorized("X-Hub-Signature-256 is missing".to_owned()));
    };
    let header = header
        .to_str()
        .map_err(|_| Rejection::Forbidden("X-Hub-Signature-256 is not text".to_owned()))?;
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return Err(Rejection::Forbidden("X-Hub-Signature-256 is not sha256=<hex>".to_owned()));
    };
    verify_sha256_hex(account.secret.as_bytes(), &[request.body], hex, "X-Hub-Signature-256")
}

/// A Meta timestamp as a protobuf timestamp: Messenger and Instagram give milliseconds, WhatsApp
/// seconds; values below 10^11 are read as seconds (10^11 s is the year 5138), the rest as ms.
pub fn timestamp(value: i64) -> prost_types::Timestamp {
    if value.abs() < 100_000_000_000 {
        prost_types::Timestamp { seconds: value, nanos: 0 }
    } else {
        prost_types::Timestamp {
            seconds: value.div_euclid(1000),
            nanos: (value.rem_euclid(1000) * 1_000_000) as i32,
        }
    }
}

/// A JSON value Meta sends as a number in some payloads and a string in others (timestamps,
/// watermarks), read as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Text(text)),
            serde_json::Value::Number(number) => Ok(Text(number.to_string())),
            serde_json::Value::Null => Ok(Text(String::new())),
            other => Err(serde::de::Error::custom(format!("expected a string or a number, got {other}"))),
        }
    }
}

impl Text {
    /// The value as an integer, when it is one.
    pub fn integer(&self) -> Option<i64> {
        self.0.trim().parse().ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::webhook::signature::hmac_sha256;

    /// The App Secret every Meta test signs with.
    pub(crate) const APP_SECRET: &str = "0123456789abcdef0123456789abcdef";
    /// The Verify Token every Meta test account has.
    pub(crate) const VERIFY_TOKEN: &str = "omni-verify-3b9d";

    pub(crate) fn account() -> WebhookAccount {
        WebhookAccount::new(APP_SECRET).with("verify_token", VERIFY_TOKEN)
    }

    /// `sha256=<hex>` as Meta computes it: HMAC-SHA256 of the exact body under the App Secret.
    pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
        format!("sha256={}", hex::encode(hmac_sha256(secret.as_bytes(), &[body])))
    }

    pub(crate) fn headers(signature: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        if let Some(signature) = signature {
            headers.insert("x-hub-signature-256", signature.parse().unwrap());
        }
        headers
    }

    pub(crate) fn request<'a>(headers: &'a http::HeaderMap, query: &'a str, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest {
            url: "https://omni.example.com/webhooks/meta/shop",
            query,
            headers,
            body,
            now: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000),
        }
    }

    /// The items `adapter` accepts in `body`, signed with [`APP_SECRET`].
    pub(crate) fn accept(adapter: &dyn crate::webhook::WebhookAdapter, body: &str) -> Result<Vec<crate::webhook::Item>, Rejection> {
        let headers = headers(Some(&signature(APP_SECRET, body.as_bytes())));
        let request = request(&headers, "", body.as_bytes());
        adapter.verify(&account(), &request)?;
        match adapter.accept(&account(), &request)? {
            crate::webhook::Accepted::Items(items) => Ok(items),
            crate::webhook::Accepted::Reply(reply) => panic!("unexpected reply {reply:?}"),
        }
    }

    /// The raw record the gateway writes for item `index` of `body` on account `shop`.
    pub(crate) fn raw(adapter: &dyn crate::webhook::WebhookAdapter, body: &str, index: usize) -> omni_proto::v1::RawRecord {
        let received_at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000);
        crate::kit::records_at(adapter, &account(), "application/json", body.as_bytes(), received_at).swap_remove(index)
    }

    /// What `adapter` normalizes item `index` of `body` to.
    pub(crate) fn normalize(
        adapter: &dyn crate::webhook::WebhookAdapter,
        body: &str,
        index: usize,
    ) -> Option<omni_proto::v1::ConversationEvent> {
        adapter
            .normalize(&raw(adapter, body, index), &crate::NoKnownEvents)
            .expect("fixture normalizes")
    }

    #[test]
    fn a_signature_computed_with_the_app_secret_over_the_exact_body_is_accepted() {
        let body = br#"{"object":"page","entry":[]}"#;
        let headers = headers(Some(&signature(APP_SECRET, body)));
        assert_eq!(verify(&account(), &request(&headers, "", body)), Ok(()));
        // Upper-case hex is the same digest.
        let upper = format!("sha256={}", signature(APP_SECRET, body)[7..].to_uppercase());
        let headers = super::tests::headers(Some(&upper));
        assert_eq!(verify(&account(), &request(&headers, "", body)), Ok(()));
    }

    #[test]
    fn forged_malformed_and_missing_signatures_are_refused() {
        let body = br#"{"object":"page","entry":[]}"#;
        let forged = headers(Some(&signature("not-the-app-secret", body)));
        assert!(matches!(
            verify(&account(), &request(&forged, "", body)),
            Err(Rejection::Forbidden(_))
        ));
        // Signed over other bytes (a re-serialised body is not the body).
        let other = headers(Some(&signature(APP_SECRET, br#"{"object": "page", "entry": []}"#)));
        assert!(matches!(
            verify(&account(), &request(&other, "", body)),
            Err(Rejection::Forbidden(_))
        ));
        let sha1 = headers(Some(&format!("sha1={}", &signature(APP_SECRET, body)[7..])));
        assert!(matches!(
            verify(&account(), &request(&sha1, "", body)),
            Err(Rejection::Forbidden(_))
        ));
        let garbage = headers(Some("sha256=zz"));
        assert!(matches!(
            verify(&account(), &request(&garbage, "", body)),
            Err(Rejection::Forbidden(_))
        ));
        let missing = headers(None);
        assert!(matches!(
            verify(&account(), &request(&missing, "", body)),
            Err(Rejection::Unauthorized(_))
        ));
    }

    #[test]
    fn the_handshake_echoes_the_challenge_only_for_the_verify_token() {
        let headers = headers(None);
        let ok = handshake(
            &account(),
            &request(
                &headers,
                "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=omni-verify-3b9d",
                b"",
            ),
        )
        .unwrap();
        assert_eq!(ok.status, 200);
        assert!(ok.content_type.starts_with("text/plain"));
        assert_eq!(ok.body, b"1158201444");
        let wrong = handshake(
            &account(),
            &request(
                &headers,
                "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=omni-verify-3b9e",
                b"",
            ),
        );
        assert!(matches!(wrong, Err(Rejection::Forbidden(_))));
        let missing = handshake(&account(), &request(&headers, "hub.mode=subscribe&hub.challenge=1158201444", b""));
        assert!(matches!(missing, Err(Rejection::Unauthorized(_))));
        let other_mode = handshake(
            &account(),
            &request(
                &headers,
                "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=omni-verify-3b9d",
                b"",
            ),
        );
        assert!(matches!(other_mode, Err(Rejection::Forbidden(_))));
        let unconfigured = WebhookAccount::new(account().secret);
        let empty = handshake(
            &unconfigured,
            &request(&headers, "hub.mode=subscribe&hub.challenge=1&hub.verify_token=", b""),
        );
        assert!(matches!(empty, Err(Rejection::Forbidden(_))));
        let no_challenge = handshake(
            &account(),
            &request(&headers, "hub.mode=subscribe&hub.verify_token=omni-verify-3b9d", b""),
        );
        assert!(matches!(no_challenge, Err(Rejection::BadRequest(_))));
    }

    #[test]
    fn an_account_needs_a_verify_token() {
        assert!(check_account(&account()).is_empty());
        let problems = check_account(&WebhookAccount::new(account().secret));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("verify_token"), "{problems:?}");
        assert!(
            !check_account(&WebhookAccount {
                secret: "short".into(),
                ..account()
            })
            .is_empty()
        );
    }

    #[test]
    fn timestamps_in_seconds_and_milliseconds() {
        assert_eq!(
            timestamp(1_749_416_383),
            prost_types::Timestamp {
                seconds: 1_749_416_383,
                nanos: 0
            }
        );
        assert_eq!(
            timestamp(1_458_692_752_478),
            prost_types::Timestamp {
                seconds: 1_458_692_752,
                nanos: 478_000_000
            }
        );
    }
}
