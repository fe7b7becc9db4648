//! The JSON body of `POST /v1/messages`, and its validation.

use omni_proto::v1::{ContactIdentifier, Participant, contact_identifier::Kind, participant::Role};
use serde::Deserialize;

/// Most characters of a subject (RFC 5322's line limit).
const MAX_SUBJECT_CHARS: usize = 998;
/// Most characters of an id or name field.
const MAX_ID_CHARS: usize = 256;
/// Most tags.
const MAX_TAGS: usize = 32;

/// The body as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiMessage {
    /// Who wrote; needs an email or a phone.
    pub customer: Customer,
    /// Optional subject line.
    #[serde(default)]
    pub subject: Option<String>,
    /// The message text (required, not blank).
    pub text: String,
    /// The caller's id of the thread (an order number): same customer and thread id, same conversation.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// The caller's id of this message: the same id again is the same message.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Optional BCP 47 language tag of the text, for example `tr` or `nl-BE`.
    #[serde(default)]
    pub language: Option<String>,
    /// Optional tags for routing, for example `["shipping"]`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The customer as sent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Display name, any script.
    #[serde(default)]
    pub name: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number in international form; normalized to E.164.
    #[serde(default)]
    pub phone: Option<String>,
}

/// A message that passed validation, with blank optional fields removed and the phone in E.164.
pub type ValidMessage = ApiMessage;

impl Customer {
    /// The identity conversations are keyed by: the email (lowercased), else the phone.
    pub fn key(&self) -> &str {
        self.email.as_deref().or(self.phone.as_deref()).unwrap_or_default()
    }

    /// The customer as a conversation participant.
    pub fn participant(&self) -> Participant {
        let mut identifiers = Vec::new();
        if let Some(email) = &self.email {
            identifiers.push(ContactIdentifier {
                kind: Kind::Email as i32,
                value: email.clone(),
                platform: String::new(),
            });
        }
        if let Some(phone) = &self.phone {
            identifiers.push(ContactIdentifier {
                kind: Kind::Phone as i32,
                value: phone.clone(),
                platform: String::new(),
            });
        }
        Participant {
            role: Role::Customer as i32,
            display_name: self.name.clone().unwrap_or_default(),
            identifiers,
        }
    }
}

impl ApiMessage {
    /// See [`Customer::key`].
    pub fn customer_key(&self) -> &str {
        self.customer.key()
    }
}

/// Parses and validates a body. On failure, returns every problem found, each naming its field.
pub fn parse(body: &[u8]) -> Result<ValidMessage, Vec<String>> {
    let mut message: ApiMessage = serde_json::from_slice(body).map_err(|error| vec![format!("body is not a valid message: {error}")])?;
    let mut problems = Vec::new();
    let blank_to_none = |value: &mut Option<String>| {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    };
    blank_to_none(&mut message.customer.name);
    blank_to_none(&mut message.customer.email);
    blank_to_none(&mut message.customer.phone);
    blank_to_none(&mut message.subject);
    blank_to_none(&mut message.language);

    if let Some(email) = &message.customer.email {
        let email = email.trim();
        if email.parse::<email_address::EmailAddress>().is_err() {
            problems.push("customer.email: not a valid email address".to_owned());
        }
        message.customer.email = Some(email.to_lowercase());
    }
    if let Some(phone) = &message.customer.phone {
        match phonenumber::parse(None, phone) {
            Ok(number) if phonenumber::is_valid(&number) => {
                message.customer.phone = Some(number.format().mode(phonenumber::Mode::E164).to_string());
            }
            _ => problems.push("customer.phone: not a valid international phone number (E.164, for example +905551112233)".to_owned()),
        }
    }
    if message.customer.email.is_none() && message.customer.phone.is_none() {
        problems.push("customer: needs an email or a phone".to_owned());
    }
    if message.text.trim().is_empty() {
        problems.push("text: must not be blank".to_owned());
    }
    check_len(&mut problems, "customer.name", message.customer.name.as_deref(), MAX_ID_CHARS);
    check_len(&mut problems, "subject", message.subject.as_deref(), MAX_SUBJECT_CHARS);
    for (field, value) in [("thread_id", &message.thread_id), ("external_id", &message.external_id)] {
        if let Some(value) = value {
            if value.trim().is_empty() {
                problems.push(format!("{field}: must not be blank when given"));
            }
            check_len(&mut problems, field, Some(value), MAX_ID_CHARS);
        }
    }
    if let Some(language) = &message.language
        && (language.len() > 35 || !language.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        problems.push("language: not a BCP 47 language tag".to_owned());
    }
    if message.tags.len() > MAX_TAGS {
        problems.push(format!("tags: at most {MAX_TAGS}"));
    }
    message.tags = message
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if problems.is_empty() { Ok(message) } else { Err(problems) }
}

fn check_len(problems: &mut Vec<String>, field: &str, value: Option<&str>, max: usize) {
    if value.is_some_and(|v| v.chars().count() > max) {
        problems.push(format!("{field}: longer than {max} characters"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_named() {
        let problems = parse(br#"{"customer":{"email":"not-an-address","phone":"12"},"text":"  ","thread_id":""}"#).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(fields, ["customer.email", "customer.phone", "text", "thread_id"], "{problems:?}");
    }

    #[test]
    fn a_customer_needs_a_way_to_be_reached() {
        let problems = parse(br#"{"customer":{"name":"Anon"},"text":"hello"}"#).unwrap_err();
        assert_eq!(problems, ["customer: needs an email or a phone"]);
    }

    #[test]
    fn unknown_and_missing_fields_are_reported_by_name() {
        let problems = parse(br#"{"customer":{"email":"a@example.com"},"txt":"hello"}"#).unwrap_err();
        assert!(problems[0].contains("unknown field `txt`"), "{problems:?}");
        let problems = parse(br#"{"customer":{"email":"a@example.com"}}"#).unwrap_err();
        assert!(problems[0].contains("missing field `text`"), "{problems:?}");
    }

    #[test]
    fn phone_is_normalized_to_e164_and_email_to_lowercase() {
        let message = parse(r#"{"customer":{"email":" Ayse@Example.COM ","phone":"+90 555 111 22 33"},"text":"x"}"#.as_bytes()).unwrap();
        assert_eq!(message.customer.phone.as_deref(), Some("+905551112233"));
        assert_eq!(message.customer.email.as_deref(), Some("ayse@example.com"));
        assert_eq!(message.customer_key(), "ayse@example.com");
    }

    #[test]
    fn arabic_and_japanese_text_pass_unchanged() {
        let body =
            r#"{"customer":{"email":"a@example.com","name":"أحمد"},"subject":"注文について","text":"أين طلبي؟ 注文番号は1042です。"}"#;
        let message = parse(body.as_bytes()).unwrap();
        assert_eq!(message.text, "أين طلبي؟ 注文番号は1042です。");
        assert_eq!(message.customer.name.as_deref(), Some("أحمد"));
    }
}

#[cfg(test)]
mod phone_ranges {
    use super::parse;

    #[test]
    fn every_number_in_the_range_the_e2e_test_draws_from_is_valid() {
        for suffix in ["0000000", "1234567", "9999999", "5050505"] {
            let body = format!(r#"{{"customer":{{"phone":"+90532{suffix}"}},"text":"x"}}"#);
            assert!(parse(body.as_bytes()).is_ok(), "+90532{suffix}");
        }
    }
}
