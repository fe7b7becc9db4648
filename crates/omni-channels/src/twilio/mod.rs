//! What Twilio's Messaging ([`crate::twilio_sms`]) and Voice ([`crate::twilio_voice`]) webhooks
//! share: the `X-Twilio-Signature` check, the form body, the empty TwiML answer, RFC 2822 times and
//! phone addresses.
//!
//! The signature follows Twilio's "Webhooks security" page
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>) and mirrors the official
//! `twilio-python` `RequestValidator` (`twilio/request_validator.py`):
//!
//! - form bodies (`application/x-www-form-urlencoded`): base64(HMAC-SHA1(auth token, url +
//!   every POST parameter's name and value, names sorted, a repeated name's distinct values
//!   sorted));
//! - JSON bodies (`application/json`): Twilio adds `bodySHA256=<hex SHA-256 of the body>` to the
//!   URL's query; the signature is over the URL alone and the body's digest must equal that
//!   parameter;
//! - the URL is tried as given without its port and with the scheme's default port added
//!   (`:443`, `:80`), since Twilio signs either form; either matching is enough.

use std::time::SystemTime;

use omni_proto::v1::ContactIdentifier;
use omni_proto::v1::contact_identifier::Kind;
use sha2::{Digest, Sha256};

use crate::webhook::signature::{base64, hmac_sha1, tokens_equal, verify_sha1_base64};
use crate::webhook::{Accepted, Item, Rejection, Reply, WebhookAccount, WebhookAdapter, WebhookRequest, e164};

/// A Twilio product's webhook (Messaging, Voice): the signature, the form body, the TwiML answer
/// and the account checks are Twilio's, so a product says only its channel and how its form
/// becomes items; [`WebhookAdapter`] follows.
pub trait TwilioWebhook: crate::Normalize {
    /// The channel of the product's records.
    const CHANNEL: omni_proto::v1::Channel;
    /// The channel name in event ids and conversation ids.
    const ID_CHANNEL: &'static str;
    /// The product's webhooks, as a refusal names them ("Twilio Messaging webhooks").
    const WEBHOOKS: &'static str;

    /// The items of a verified form body.
    fn items(body: &[u8]) -> Result<Vec<Item>, String>;
}

impl<T: TwilioWebhook> WebhookAdapter for T {
    fn channel(&self) -> omni_proto::v1::Channel {
        T::CHANNEL
    }

    fn id_channel(&self) -> &'static str {
        T::ID_CHANNEL
    }

    fn check_account(&self, account: &WebhookAccount, loopback: bool) -> Vec<String> {
        check_account(account, loopback)
    }

    fn development_account(&self) -> WebhookAccount {
        development_account()
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE_HEADER]
    }

    fn sign(&self, account: &WebhookAccount, url: &str, content_type: &str, body: &[u8], _now: SystemTime) -> crate::webhook::Signed {
        sign(account, url, content_type, body)
    }

    fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
        verify(account, request)
    }

    fn accept(&self, _account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
        require_form(request, T::WEBHOOKS)?;
        Ok(Accepted::Items(T::items(request.body).map_err(Rejection::BadRequest)?))
    }

    fn acknowledgement(&self) -> Reply {
        acknowledgement()
    }
}

/// The header carrying Twilio's signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
/// The URL query parameter carrying the body's SHA-256 on JSON requests.
pub const BODY_SHA256_PARAMETER: &str = "bodySHA256";
/// Empty TwiML: Twilio does nothing more (no auto reply, no call instruction).
pub const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// The answer Twilio expects once the request is stored: `200`, empty TwiML.
pub fn acknowledgement() -> Reply {
    Reply {
        status: 200,
        content_type: "text/xml",
        body: EMPTY_TWIML.as_bytes().to_vec(),
    }
}

/// The development account of both Twilio adapters (public values, loopback only).
pub fn development_account() -> WebhookAccount {
    WebhookAccount::new("omni-dev-twilio-auth-token")
}

/// Config problems of a Twilio account: the Auth Token and the public URL, which is required
/// off loopback (Twilio signs the URL it calls, and a proxy in front changes what the gateway sees).
pub fn check_account(account: &WebhookAccount, loopback: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if account.secret.len() < 8 {
        problems.push("secret: must be the account's Auth Token (at least 8 characters)".to_owned());
    }
    if let Err(problem) = account.settings::<crate::webhook::NoSettings>() {
        problems.push(problem);
    }
    match &account.public_url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            problems.push("public_url: must be the http(s) URL configured in Twilio's console".to_owned());
        }
        None if !loopback => problems
            .push("public_url: required off loopback: the exact URL set in Twilio's console (Twilio signs the URL it calls)".to_owned()),
        _ => {}
    }
    problems
}

/// `X-Twilio-Signature` for a request to `url`: over the form parameters of a form body, or,
/// for a JSON body, over the URL alone with `bodySHA256` already in it (the caller's job).
pub fn sign(account: &WebhookAccount, url: &str, content_type: &str, body: &[u8]) -> crate::webhook::Signed {
    let params: Vec<(String, String)> = if content_type.starts_with("application/json") {
        Vec::new()
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    };
    crate::webhook::Signed {
        headers: vec![(SIGNATURE_HEADER, signature(&account.secret, url, &params))],
        body: body.to_vec(),
    }
}

/// Checks `X-Twilio-Signature` (401 when missing, 403 when wrong), and for JSON bodies the
/// `bodySHA256` URL parameter against the body (403 when missing or different).
pub fn verify(account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
    let presented = request
        .header(SIGNATURE_HEADER)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| Rejection::Unauthorized("X-Twilio-Signature header missing".to_owned()))?;
    let params = if request.content_type() == "application/json" {
        let presented_hash = query_pairs(request.url)
            .into_iter()
            .find(|(name, _)| name == BODY_SHA256_PARAMETER)
            .map(|(_, value)| value.to_ascii_lowercase())
            .ok_or_else(|| Rejection::Forbidden("JSON body without a bodySHA256 URL parameter".to_owned()))?;
        let computed = hex::encode(Sha256::digest(request.body));
        if !tokens_equal(&presented_hash, &computed) {
            return Err(Rejection::Forbidden("bodySHA256 does not match the body".to_owned()));
        }
        Vec::new()
    } else {
        form_urlencoded::parse(request.body).into_owned().collect()
    };
    let key = account.secret.as_bytes();
    let matches = url_variants(request.url)
        .iter()
        .any(|url| verify_sha1_base64(key, &[signed_data(url, &params).as_bytes()], presented, "X-Twilio-Signature").is_ok());
    if matches {
        Ok(())
    } else {
        Err(Rejection::Forbidden("X-Twilio-Signature does not match".to_owned()))
    }
}

/// The signature Twilio sends for `url` and the POST `params` (empty for JSON bodies), as
/// `X-Twilio-Signature` carries it. For tests and the end-to-end signer's cross-check.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64(&hmac_sha1(auth_token.as_bytes(), &[signed_data(url, params).as_bytes()]))
}

/// `url` followed by each parameter name and value: names sorted, a name's distinct values sorted
/// (as `RequestValidator.compute_signature` does).
fn signed_data(url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut data = url.to_owned();
    for (name, value) in pairs {
        data.push_str(name);
        data.push_str(value);
    }
    data
}

/// The URL without its port and with the scheme's default port when it has none (Twilio's
/// `remove_port` and `add_port`); a URL that does not parse is tried as given.
pub fn url_variants(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_owned()];
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // The port is after the last `:` that is not inside an IPv6 literal.
    let port_start = host_port.rfind(':').filter(|&i| !host_port[i..].contains(']'));
    let (host, port) = match port_start {
        Some(i) if host_port[i + 1..].chars().all(|c| c.is_ascii_digit()) => (&host_port[..i], Some(&host_port[i + 1..])),
        _ => (host_port, None),
    };
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = match port {
        Some(_) => url.to_owned(),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
            format!("{scheme}://{userinfo}{host}:{default}{tail}")
        }
    };
    if without == with { vec![without] } else { vec![without, with] }
}

/// The query pairs of a URL, percent-decoded.
fn query_pairs(url: &str) -> Vec<(String, String)> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    match without_fragment.split_once('?') {
        Some((_, query)) => form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        None => Vec::new(),
    }
}

/// Refuses a JSON body where the adapter reads form parameters (Twilio's Messaging and Voice
/// webhooks are always `application/x-www-form-urlencoded`).
pub fn require_form(request: &WebhookRequest<'_>, what: &str) -> Result<(), Rejection> {
    match request.content_type().as_str() {
        "" | "application/x-www-form-urlencoded" => Ok(()),
        other => Err(Rejection::BadRequest(format!("{what} are form-encoded, not {other}"))),
    }
}

/// An RFC 2822 date as Twilio writes it (`Mon, 16 Aug 2010 03:45:01 +0000`), as Unix seconds;
/// `None` when it is not one (an unknown month, a day the month does not have, a weekday that
/// does not match the date, no zone).
pub fn rfc2822(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(value.trim()).ok().map(|at| at.timestamp())
}

/// Caller ids Twilio gives when the caller's number is withheld ("anonymous", "unknown",
/// "restricted", "blocked"): not a customer's number, never a conversation key.
const WITHHELD_CALLER_IDS: [&str; 4] = ["+266696687", "+86282452253", "+8656696", "+2562533"];

/// A Twilio address (`+905551112233`, `whatsapp:+905551112233`, `client:alice`, `sip:...`)
/// split into its channel prefix (empty for plain numbers) and its number in E.164 when it is one.
pub fn split_address(address: &str) -> (&str, String) {
    let address = address.trim();
    match address.split_once(':') {
        Some((prefix, rest)) if !prefix.is_empty() && prefix.chars().all(|c| c.is_ascii_alphabetic()) => (prefix, e164(rest)),
        _ => ("", e164(address)),
    }
}

/// Whether an address is a real phone number (E.164, not a withheld caller id).
pub fn is_phone(address: &str) -> bool {
    let (_, number) = split_address(address);
    number.starts_with('+') && number[1..].chars().all(|c| c.is_ascii_digit()) && !WITHHELD_CALLER_IDS.contains(&number.as_str())
}

/// Whether an address is no usable customer id: empty, a withheld caller id, or a plain word
/// (`anonymous`, `Restricted`) where a number should be. Addresses with a prefix (`client:alice`,
/// `whatsapp:+90...`) are stable ids.
pub fn is_withheld(address: &str) -> bool {
    let (prefix, number) = split_address(address);
    if !prefix.is_empty() {
        return false;
    }
    let plain = number
        .strip_prefix('+')
        .is_some_and(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()));
    !plain || WITHHELD_CALLER_IDS.contains(&number.as_str())
}

/// The identifiers of a Twilio address: its E.164 number when it has one, and the address itself
/// as a platform id when it is not a plain phone number (`whatsapp:+90...`, `client:alice`).
pub fn identifiers(address: &str, platform: &str) -> Vec<ContactIdentifier> {
    let address = address.trim();
    let mut identifiers = Vec::new();
    if address.is_empty() {
        return identifiers;
    }
    let (prefix, number) = split_address(address);
    if is_phone(address) {
        identifiers.push(ContactIdentifier {
            kind: Kind::Phone as i32,
            value: number,
            platform: String::new(),
        });
    }
    if !prefix.is_empty() || !is_phone(address) {
        identifiers.push(ContactIdentifier {
            kind: Kind::PlatformUserId as i32,
            value: address.to_owned(),
            platform: platform.to_owned(),
        });
    }
    identifiers
}

/// A number for `CallData.from` / `to`: E.164 when it is one, else as Twilio gave it.
pub fn call_number(address: &str) -> String {
    let (prefix, number) = split_address(address);
    if prefix.is_empty() { number } else { address.trim().to_owned() }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    // Known answers from the official twilio-python tests (tests/unit/test_request_validator.py):
    // token "12345", this URL and these parameters.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn form_body(params: &[(String, String)]) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
    }

    fn account() -> WebhookAccount {
        WebhookAccount {
            secret: TOKEN.into(),
            ..Default::default()
        }
    }

    fn check(url: &str, content_type: &str, body: &[u8], signature: Option<&str>) -> Result<(), Rejection> {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", content_type.parse().unwrap());
        if let Some(signature) = signature {
            headers.insert("x-twilio-signature", signature.parse().unwrap());
        }
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let request = WebhookRequest {
            url,
            query,
            headers: &headers,
            body,
            now: SystemTime::now(),
        };
        verify(&account(), &request)
    }

    #[test]
    fn signature_matches_twilio_python_known_answers() {
        assert_eq!(signature(TOKEN, URL, &params()), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        // Repeated names: distinct values, sorted.
        let repeated: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(signature(TOKEN, URL, &repeated), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn form_requests_verify_with_and_without_port() {
        let body = form_body(&params());
        let form = "application/x-www-form-urlencoded";
        assert_eq!(check(URL, form, body.as_bytes(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")), Ok(()));
        // Twilio signed without the port; the request URL has one.
        assert_eq!(
            check(
                "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
                form,
                body.as_bytes(),
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            ),
            Ok(())
        );
        // Twilio signed with the default port.
        assert_eq!(check(URL, form, body.as_bytes(), Some("kvajT1Ptam85bY51eRf/AJRuM3w=")), Ok(()));
        assert_eq!(
            check(
                &URL.replace("https", "http"),
                form,
                body.as_bytes(),
                Some("0ZXoZLH/DfblKGATFgpif+LLRf4=")
            ),
            Ok(())
        );
    }

    #[test]
    fn forged_or_missing_signatures_are_refused() {
        let body = form_body(&params());
        let form = "application/x-www-form-urlencoded";
        assert!(matches!(check(URL, form, body.as_bytes(), None), Err(Rejection::Unauthorized(_))));
        assert!(matches!(
            check(URL, form, body.as_bytes(), Some("")),
            Err(Rejection::Unauthorized(_))
        ));
        let tampered = body.replace("Digits=1234", "Digits=1235");
        assert!(matches!(
            check(URL, form, tampered.as_bytes(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Err(Rejection::Forbidden(_))
        ));
        assert!(matches!(
            check(
                "https://evil.example/myapp.php?foo=1&bar=2",
                form,
                body.as_bytes(),
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            ),
            Err(Rejection::Forbidden(_))
        ));
        assert!(matches!(
            check(URL, form, body.as_bytes(), Some("not base64!")),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn json_requests_verify_the_url_and_the_body_digest() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = format!("{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
        // Known answer from twilio-python's test_validation_of_body_succeeds.
        let good = "a9nBmqA0ju/hNViExpshrM61xv4=";
        assert_eq!(check(&url, "application/json", body, Some(good)), Ok(()));
        assert!(matches!(
            check(&url, "application/json", br#"{"property": "other", "boolean": true}"#, Some(good)),
            Err(Rejection::Forbidden(_))
        ));
        assert!(matches!(
            check(URL, "application/json", body, Some(good)),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn url_variants_drop_and_add_ports() {
        assert_eq!(
            url_variants("https://example.com/hook?x=1"),
            ["https://example.com/hook?x=1", "https://example.com:443/hook?x=1"]
        );
        assert_eq!(
            url_variants("http://user:pw@example.com:8080/hook"),
            ["http://user:pw@example.com/hook", "http://user:pw@example.com:8080/hook"]
        );
        assert_eq!(url_variants("http://[::1]:8080"), ["http://[::1]", "http://[::1]:8080"]);
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }

    #[test]
    fn rfc_2822_dates_parse() {
        assert_eq!(rfc2822("Mon, 16 Aug 2010 03:45:01 +0000"), Some(1_281_930_301));
        assert_eq!(rfc2822("Sun, 22 Nov 2026 12:15:00 +0200"), Some(1_795_342_500));
        assert_eq!(rfc2822("22 Nov 2026 10:15:00 GMT"), Some(1_795_342_500));
        assert_eq!(rfc2822("yesterday"), None);
        // Found by `make fuzz` (normalize target): a multi-byte month name panicked on slicing.
        assert_eq!(rfc2822("Mon, 16 N\u{fffd}\u{fffd} 2010 03:45:01 +0000"), None);
        assert_eq!(rfc2822("16 é 2010 03:45:01"), None);
    }

    #[test]
    fn rfc_2822_edge_cases() {
        // Leap days: only in leap years.
        assert_eq!(rfc2822("Thu, 29 Feb 2024 00:00:00 +0000"), Some(1_709_164_800));
        assert_eq!(rfc2822("29 Feb 2023 00:00:00 +0000"), None);
        // Days and clock times out of range, unknown months, bad zones.
        for bad in [
            "32 Aug 2010 03:45:01 +0000",
            "0 Aug 2010 03:45:01 +0000",
            "31 Nov 2026 10:15:00 +0000",
            "16 Foo 2010 03:45:01 +0000",
            "16 Aug 2010 24:00:00 +0000",
            "16 Aug 2010 23:60:00 +0000",
            "16 Aug 2010 03:45:01 +2500",
            "16 Aug 2010 03:45:01 +0099",
        ] {
            assert_eq!(rfc2822(bad), None, "{bad}");
        }
        // A weekday that is not the date's.
        assert_eq!(rfc2822("Tue, 16 Aug 2010 03:45:01 +0000"), None);
        // Garbage, and other date formats.
        for bad in [
            "",
            "   ",
            ",",
            "1 2 3 4 5 6 7",
            "2010-08-16T03:45:01Z",
            "\u{fffd}\u{fffd}\u{fffd}",
            "Mon, 16 Aug",
        ] {
            assert_eq!(rfc2822(bad), None, "{bad:?}");
        }
        // Surrounding white space, a trailing comment, a lower-case month, minutes without seconds.
        assert_eq!(rfc2822("  mon, 16 aug 2010 03:45:01 +0000 (UTC) "), Some(1_281_930_301));
        assert_eq!(rfc2822("16 Aug 2010 03:45 -0000"), Some(1_281_930_300));
    }

    #[test]
    fn addresses_split_into_numbers_and_platform_ids() {
        assert!(is_phone("+905551112233"));
        assert!(is_phone("whatsapp:+905551112233"));
        assert!(!is_phone("+266696687"));
        assert!(!is_phone("client:alice"));
        assert!(is_withheld("+266696687"));
        assert!(is_withheld("anonymous"));
        assert!(is_withheld(""));
        assert!(!is_withheld("client:alice"));
        assert!(!is_withheld("+905551112233"));
        let ids = identifiers("whatsapp:+905551112233", "twilio-sms");
        assert_eq!(ids[0].value, "+905551112233");
        assert_eq!(ids[1].value, "whatsapp:+905551112233");
        assert_eq!(identifiers("+905551112233", "twilio-sms").len(), 1);
        assert_eq!(identifiers("client:alice", "twilio-voice")[0].kind, Kind::PlatformUserId as i32);
        assert_eq!(call_number("+31 20 123 4567"), "+31201234567");
    }
}
