//! Who the customer is to a helpdesk, and what a ticket is called: shared by every helpdesk
//! adapter, since each needs a requester address (most accept only email addresses) and a subject.

use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::{ConversationEvent, participant::Role};

/// The requestor address of the event's customer: the email, else `<E.164>@phone.invalid`, else
/// `<platform user id>@<platform>.invalid`, else for a caller who withheld the number
/// `anonymous-<call id>@voice.invalid`, else for a customer who gave no address at all (an
/// email without From, Sender, Reply-To or Return-Path) `unknown-sender-<conversation
/// id>@unknown.invalid`, one per conversation (addresses RT accepts that can never receive
/// mail). `None` only for an event without a customer.
pub fn requestor(event: &ConversationEvent) -> Option<String> {
    customer_address(event).or_else(|| anonymous_caller(event)).or_else(|| {
        event
            .participants
            .iter()
            .any(|p| p.role == Role::Customer as i32)
            .then(|| format!("unknown-sender-{}@unknown.invalid", event.conversation_id))
    })
}

/// A caller who withheld the number: still a ticket, under the call's own address.
fn anonymous_caller(event: &ConversationEvent) -> Option<String> {
    let call = event.call.as_ref()?;
    let id: String = call
        .call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    Some(format!(
        "anonymous-{}@voice.invalid",
        if id.is_empty() { &event.conversation_id } else { &id }
    ))
}

fn customer_address(event: &ConversationEvent) -> Option<String> {
    let customer = event.participants.iter().find(|p| p.role == Role::Customer as i32)?;
    let by_kind = |kind: Kind| customer.identifiers.iter().find(|i| i.kind == kind as i32).map(|i| i.value.clone());
    by_kind(Kind::Email)
        .or_else(|| by_kind(Kind::Phone).map(|phone| format!("{phone}@phone.invalid")))
        .or_else(|| {
            // A chat or social user id: an address of the platform's own, that cannot receive mail.
            let id = customer.identifiers.iter().find(|i| i.kind == Kind::PlatformUserId as i32)?;
            let platform: String = id.platform.chars().filter(char::is_ascii_alphanumeric).collect();
            let user: String = id
                .value
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .collect();
            (!user.is_empty()).then(|| format!("{user}@{}.invalid", if platform.is_empty() { "platform" } else { &platform }))
        })
}

/// The ticket subject: the event's, else the start of its text.
pub fn subject(event: &ConversationEvent) -> String {
    if !event.subject.trim().is_empty() {
        return event.subject.clone();
    }
    let text = event.body.as_ref().map(|b| b.text.as_str()).unwrap_or_default();
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("(no subject)").trim();
    let mut subject: String = first_line.chars().take(80).collect();
    if first_line.chars().count() > 80 {
        subject.push('…');
    }
    subject
}

#[cfg(test)]
pub(crate) mod tests {
    use omni_proto::v1::{Body, ContactIdentifier, Participant};

    use super::*;

    pub(crate) fn event_with(identifiers: Vec<ContactIdentifier>, subject: &str, text: &str) -> ConversationEvent {
        ConversationEvent {
            subject: subject.into(),
            body: Some(Body {
                text: text.into(),
                ..Default::default()
            }),
            participants: vec![Participant {
                role: Role::Customer as i32,
                display_name: String::new(),
                identifiers,
            }],
            ..Default::default()
        }
    }

    fn id(kind: Kind, value: &str) -> ContactIdentifier {
        ContactIdentifier {
            kind: kind as i32,
            value: value.into(),
            platform: String::new(),
        }
    }

    #[test]
    fn requestor_is_the_email_else_a_phone_address_that_cannot_receive_mail() {
        let both = event_with(vec![id(Kind::Phone, "+905551112233"), id(Kind::Email, "ayse@example.com")], "", "");
        assert_eq!(requestor(&both).as_deref(), Some("ayse@example.com"));
        let phone = event_with(vec![id(Kind::Phone, "+905551112233")], "", "");
        assert_eq!(requestor(&phone).as_deref(), Some("+905551112233@phone.invalid"));
        // A customer without any address (an email without From, Sender, Reply-To or
        // Return-Path): a requestor of the conversation's own that cannot receive mail.
        let mut nobody = event_with(vec![], "", "");
        nobody.conversation_id = "c1".into();
        assert_eq!(requestor(&nobody).as_deref(), Some("unknown-sender-c1@unknown.invalid"));
        nobody.participants.clear();
        assert_eq!(requestor(&nobody), None);
        let mut telegram = id(Kind::PlatformUserId, "123456789");
        telegram.platform = "telegram".into();
        assert_eq!(
            requestor(&event_with(vec![telegram], "", "")).as_deref(),
            Some("123456789@telegram.invalid")
        );
    }

    #[test]
    fn subject_falls_back_to_the_first_line_of_text() {
        assert_eq!(subject(&event_with(vec![], "Siparişim nerede?", "x")), "Siparişim nerede?");
        assert_eq!(
            subject(&event_with(vec![], " ", "\n  Waar is mijn pakket?\nGroet")),
            "Waar is mijn pakket?"
        );
        let long = "ب".repeat(100);
        assert_eq!(subject(&event_with(vec![], "", &long)).chars().count(), 81);
    }
}
