//! The way back by SMS: an agent's answer through Twilio's Messages API, from the number the
//! customer wrote to; and the answer to a phone call, by SMS to the caller's number.
//!
//! `POST <api_base_url>/2010-04-01/Accounts/<AccountSid>/Messages.json`, HTTP Basic
//! `<AccountSid>:<AuthToken>`, form-encoded `To`, `From` (or `MessagingServiceSid` when the
//! sender is an `MG...` service) and `Body` (at most 1600 characters). The API takes no
//! idempotency key: after a crash during a call the sender does not send again (at-most-once).
//!
//! Documents followed: <https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource>,
//! <https://www.twilio.com/docs/usage/twilios-response> (errors `{code, message, more_info,
//! status}`), <https://www.twilio.com/docs/api/errors> (20003 authentication, 20429 too many
//! requests, 21211 invalid `To`, 21408 region not enabled, 21610 the recipient replied STOP,
//! 21614 not a mobile number).

use std::time::Duration;

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{Channel, OutboundMessage, ReplyAddress};
use serde_json::{Value, json};

pub use crate::outbound::{Refusal, Request};

/// The longest body Twilio takes, in characters.
pub const MAX_BODY_CHARS: usize = 1600;

/// What an account sends with.
#[derive(Clone, Debug)]
pub struct Account<'a> {
    /// `https://api.twilio.com` (or a local stand-in).
    pub api_base_url: &'a str,
    /// The account's SID (`AC...`).
    pub account_sid: &'a str,
    /// Its auth token.
    pub auth_token: &'a str,
    /// The number (E.164) or Messaging Service (`MG...`) answers come from when the conversation
    /// does not name the number the customer wrote to (always, for calls).
    pub from: Option<&'a str>,
    /// Where Twilio reports the message's status (the gateway's `twilio-sms` webhook), sent as
    /// `StatusCallback`; `None`: Twilio reports to the Messaging Service's URL, if any.
    pub status_callback: Option<&'a str>,
}

/// Whether the conversation came in through Twilio Messaging (SMS, or WhatsApp and Messenger
/// through Twilio, whose addresses carry their `whatsapp:` / `messenger:` prefix).
fn through_twilio(address: &ReplyAddress) -> bool {
    address.channel() == Channel::Sms || address.provider.as_ref().is_some_and(|p| p.provider == super::PROVIDER)
}

/// The address to send to: the Twilio customer's own, or a caller's phone number.
fn recipient(address: &ReplyAddress) -> Option<String> {
    let provider = address.provider.clone().unwrap_or_default();
    if through_twilio(address) {
        return Some(provider.reply_to).filter(|to| !to.is_empty());
    }
    let phone = address
        .customer
        .iter()
        .flat_map(|customer| &customer.identifiers)
        .find(|id| id.kind == Kind::Phone as i32)
        .map(|id| id.value.clone());
    phone.or_else(|| Some(provider.reply_to).filter(|to| to.starts_with('+')))
}

/// The Messages API request for `outbound`.
pub fn request(account: &Account<'_>, address: &ReplyAddress, outbound: &OutboundMessage) -> Result<Request, Refusal> {
    let to = recipient(address).ok_or_else(|| Refusal::Refused("the conversation names no phone number to text".into()))?;
    let written_to = address.provider.as_ref().map(|p| p.thread_id.as_str()).unwrap_or_default();
    let from = match (through_twilio(address), written_to) {
        (true, number) if !number.is_empty() => number,
        _ => account
            .from
            .filter(|from| !from.is_empty())
            .ok_or_else(|| Refusal::Refused("no number to send the SMS from: set the account's `from`".into()))?,
    };
    let text = crate::outbound::answer_text(outbound, "SMS", MAX_BODY_CHARS)?;
    let sender = if from.starts_with("MG") { "MessagingServiceSid" } else { "From" };
    let mut body = json!({ "To": to, sender: from, "Body": text });
    if let Some(url) = account.status_callback.filter(|url| !url.is_empty()) {
        body["StatusCallback"] = json!(url);
    }
    Ok(Request {
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            account.api_base_url.trim_end_matches('/'),
            account.account_sid
        ),
        basic: Some((account.account_sid.to_owned(), account.auth_token.to_owned())),
        body,
        form: true,
        ..Request::default()
    })
}

/// The `sid` of the created message, or why there is none.
pub fn read_response(status: u16, body: &[u8]) -> Result<String, Refusal> {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(crate::outbound::accepted_id(answer["sid"].as_str()));
    }
    let code = answer["code"].as_i64().unwrap_or_default();
    let message = answer["message"].as_str().unwrap_or("no message");
    match (status, code) {
        (429, _) | (_, 20429) => Err(Refusal::Later(None, format!("Twilio rate limit ({code}): {message}"))),
        (500.., _) => Err(Refusal::Later(None, format!("Twilio {status} ({code}): {message}"))),
        (401, _) | (_, 20003) => Err(Refusal::Later(
            Some(Duration::from_secs(60)),
            format!("Twilio refused omni's credentials ({code}): {message}"),
        )),
        (_, 21610) => Err(Refusal::Refused(format!(
            "the customer has unsubscribed from this number (replied STOP; 21610): {message}"
        ))),
        _ => Err(Refusal::Refused(format!(
            "Twilio refused the message ({status}, {code}): {message}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::{ContactIdentifier, Participant, ProviderReference};

    use super::*;
    use crate::outbound::fixtures::answer;

    fn sms_address() -> ReplyAddress {
        ReplyAddress {
            channel: Channel::Sms as i32,
            provider: Some(ProviderReference {
                provider: "twilio-sms".into(),
                account: "shop".into(),
                message_id: "SM1".into(),
                thread_id: "+14155550100".into(),
                reply_to: "+905551112233".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn call_address() -> ReplyAddress {
        ReplyAddress {
            channel: Channel::Voice as i32,
            provider: Some(ProviderReference {
                provider: "asterisk".into(),
                account: "pbx".into(),
                reply_to: "905551112233".into(),
                ..Default::default()
            }),
            customer: Some(Participant {
                identifiers: vec![ContactIdentifier {
                    kind: Kind::Phone as i32,
                    value: "+905551112233".into(),
                    platform: String::new(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn account(from: Option<&str>) -> Account<'_> {
        Account {
            api_base_url: "http://127.0.0.1:8095/",
            account_sid: "AC0123456789abcdef0123456789abcdef",
            auth_token: "twilio-token",
            from,
            status_callback: None,
        }
    }

    #[test]
    fn an_sms_answer_comes_from_the_number_the_customer_wrote_to() {
        let request = request(&account(Some("+14155550199")), &sms_address(), &answer("Kargonuz yolda.")).unwrap();
        assert_eq!(
            request.url,
            "http://127.0.0.1:8095/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
        );
        assert!(request.form);
        assert_eq!(
            request.basic,
            Some(("AC0123456789abcdef0123456789abcdef".into(), "twilio-token".into()))
        );
        assert_eq!(
            request.body,
            json!({"To": "+905551112233", "From": "+14155550100", "Body": "Kargonuz yolda."})
        );
        let reported = Account {
            status_callback: Some("https://gw.example/webhooks/twilio-sms/shop"),
            ..account(None)
        };
        let request = super::request(&reported, &sms_address(), &answer("x")).unwrap();
        assert_eq!(request.body["StatusCallback"], "https://gw.example/webhooks/twilio-sms/shop");
    }

    #[test]
    fn whatsapp_through_twilio_goes_back_through_twilio_with_its_prefixes() {
        let mut address = sms_address();
        address.channel = Channel::Whatsapp as i32;
        let provider = address.provider.as_mut().unwrap();
        provider.thread_id = "whatsapp:+14155550100".into();
        provider.reply_to = "whatsapp:+905551112233".into();
        let request = request(&account(None), &address, &answer("Merhaba")).unwrap();
        assert_eq!(
            request.body,
            json!({"To": "whatsapp:+905551112233", "From": "whatsapp:+14155550100", "Body": "Merhaba"})
        );
    }

    #[test]
    fn a_call_is_answered_by_sms_from_the_accounts_sender_or_refused() {
        let request = request(
            &account(Some("MG0123456789abcdef0123456789abcdef")),
            &call_address(),
            &answer("Geri arayacağız."),
        )
        .unwrap();
        assert_eq!(
            request.body,
            json!({"To": "+905551112233", "MessagingServiceSid": "MG0123456789abcdef0123456789abcdef", "Body": "Geri arayacağız."})
        );
        let refused = super::request(&account(None), &call_address(), &answer("x"));
        assert!(
            matches!(refused, Err(Refusal::Refused(ref r)) if r.contains("`from`")),
            "{refused:?}"
        );
        let long = super::request(&account(None), &sms_address(), &answer(&"a".repeat(1601)));
        assert!(matches!(long, Err(Refusal::Refused(ref r)) if r.contains("1600")), "{long:?}");
    }

    #[test]
    fn responses_are_read_as_twilio_documents_them() {
        let created =
            br#"{"sid":"SM3e1f0c2a4b5d6e7f8091a2b3c4d5e6f7","status":"queued","to":"+905551112233","from":"+14155550100","body":"x"}"#;
        assert_eq!(read_response(201, created), Ok("SM3e1f0c2a4b5d6e7f8091a2b3c4d5e6f7".into()));
        let stop = br#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"https://www.twilio.com/docs/errors/21610","status":400}"#;
        assert!(matches!(read_response(400, stop), Err(Refusal::Refused(ref r)) if r.contains("STOP")));
        let limited = br#"{"code":20429,"message":"Too Many Requests","status":429}"#;
        assert!(matches!(read_response(429, limited), Err(Refusal::Later(None, _))));
        let auth = br#"{"code":20003,"message":"Authenticate","status":401}"#;
        assert!(matches!(read_response(401, auth), Err(Refusal::Later(Some(_), _))));
        let invalid = br#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#;
        assert!(matches!(read_response(400, invalid), Err(Refusal::Refused(_))));
        assert!(matches!(read_response(503, b""), Err(Refusal::Later(None, _))));
    }
}
