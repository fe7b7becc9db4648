//! The way back on email: an agent's reply as a mail to the customer, threaded to their message.
//!
//! The mail is built here (pure, tested without a server); the sender service hands it to SMTP
//! through lettre. Its Message-ID is `<omni-reply.<outbound id>@<domain>>`: the same reply always
//! gets the same Message-ID, so a copy sent again after a crash is collapsed by the customer's
//! client, and when a copy comes back into a support mailbox (a Bcc, a Sent folder) the email
//! adapter recognises it as omni's own and keeps it out of the helpdesk ([`is_own_message_id`]).

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use omni_proto::v1::contact_identifier::Kind as IdentifierKind;
use omni_proto::v1::outbound_message::Kind;
use omni_proto::v1::{Attachment, OutboundMessage, ReplyAddress, attachment};

/// The local-part prefix of the Message-IDs omni gives its replies.
pub const OWN_MESSAGE_ID_PREFIX: &str = "omni-reply.";

/// The Message-ID (without angle brackets) of an outbound message.
pub fn message_id(outbound_id: &str, domain: &str) -> String {
    format!("{OWN_MESSAGE_ID_PREFIX}{outbound_id}@{domain}")
}

/// Whether a Message-ID (without angle brackets) is one omni gave a reply it sent.
pub fn is_own_message_id(message_id: &str) -> bool {
    let Some((local, _domain)) = message_id.rsplit_once('@') else {
        return false;
    };
    local
        .strip_prefix(OWN_MESSAGE_ID_PREFIX)
        .is_some_and(|id| id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Why a reply cannot be sent by email.
#[derive(Debug, thiserror::Error)]
pub enum EmailReplyError {
    /// The conversation names no address to write to.
    #[error("the customer has no email address to reply to")]
    NoAddress,
    /// An address does not parse.
    #[error("`{address}` is not a mail address: {reason}")]
    BadAddress {
        /// The address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The message could not be built.
    #[error("cannot build the mail: {0}")]
    Build(#[from] lettre::error::Error),
}

/// The subject of a reply: `Re: ` once, and the ticket reference once.
pub fn reply_subject(subject: &str, ticket_reference: &str) -> String {
    let subject = subject.trim();
    let mut core = if ticket_reference.is_empty() || subject.contains(ticket_reference) {
        subject.to_owned()
    } else if subject.is_empty() {
        ticket_reference.to_owned()
    } else {
        format!("{ticket_reference} {subject}")
    };
    if core.is_empty() {
        core = "(no subject)".to_owned();
    }
    let has_re = subject.get(..3).is_some_and(|re| re.eq_ignore_ascii_case("re:"));
    if has_re { core } else { format!("Re: {core}") }
}

/// The mail for `outbound` to the customer of `address`, from `from`, with Message-ID under
/// `domain`, In-Reply-To the customer's latest message and References the thread root and it.
pub fn build(address: &ReplyAddress, outbound: &OutboundMessage, from: &Mailbox, domain: &str) -> Result<Message, EmailReplyError> {
    let provider = address.provider.clone().unwrap_or_default();
    let to_address = if provider.reply_to.is_empty() {
        address
            .customer
            .iter()
            .flat_map(|c| &c.identifiers)
            .find(|i| i.kind == IdentifierKind::Email as i32)
            .map(|i| i.value.clone())
            .ok_or(EmailReplyError::NoAddress)?
    } else {
        provider.reply_to.clone()
    };
    let to_name = address.customer.as_ref().map(|c| c.display_name.clone()).filter(|n| !n.is_empty());
    let to = Mailbox::new(
        to_name,
        to_address
            .parse()
            .map_err(|error: lettre::address::AddressError| EmailReplyError::BadAddress {
                address: to_address.clone(),
                reason: error.to_string(),
            })?,
    );
    let subject = if outbound.subject.is_empty() {
        &address.subject
    } else {
        &outbound.subject
    };
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(reply_subject(subject, &outbound.ticket_reference))
        .message_id(Some(format!("<{}>", message_id(&outbound.outbound_id, domain))));
    if outbound.kind() == Kind::Acknowledgement {
        // RFC 3834: an automatic answer says so, so the customer's own auto-responder (and any
        // well-behaved robot) does not answer it, and no mail loop starts.
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".to_owned(),
        ));
    }
    if !provider.message_id.is_empty() {
        builder = builder.in_reply_to(format!("<{}>", provider.message_id));
        let mut references = Vec::new();
        if !provider.thread_id.is_empty() && provider.thread_id != provider.message_id {
            references.push(format!("<{}>", provider.thread_id));
        }
        references.push(format!("<{}>", provider.message_id));
        builder = builder.references(references.join(" "));
    }
    let body = outbound.body.clone().unwrap_or_default();
    let text = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body.text);
    let files: Vec<SinglePart> = outbound.attachments.iter().filter_map(file_part).collect();
    let message = match (body.html.is_empty(), files.is_empty()) {
        (true, true) => builder.singlepart(text)?,
        (false, true) => builder.multipart(alternative(text, body.html))?,
        (html_empty, false) => {
            let mut mixed = if html_empty {
                MultiPart::mixed().singlepart(text)
            } else {
                MultiPart::mixed().multipart(alternative(text, body.html))
            };
            for file in files {
                mixed = mixed.singlepart(file);
            }
            builder.multipart(mixed)?
        }
    };
    Ok(message)
}

fn alternative(text: SinglePart, html: String) -> MultiPart {
    MultiPart::alternative()
        .singlepart(text)
        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html))
}

/// A file of the answer as a MIME attachment; `None` when its bytes are not in the record (too
/// large to carry: the sender notes it on the ticket instead).
fn file_part(file: &Attachment) -> Option<SinglePart> {
    let Some(attachment::Content::Data(data)) = &file.content else {
        return None;
    };
    let content_type =
        ContentType::parse(&file.media_type).unwrap_or_else(|_| ContentType::parse("application/octet-stream").expect("a media type"));
    let name = if file.name.trim().is_empty() {
        "attachment".to_owned()
    } else {
        file.name.clone()
    };
    Some(lettre::message::Attachment::new(name).body(data.clone(), content_type))
}

/// Whether a file of the answer goes with the mail (its bytes are in the record).
pub fn carried(file: &Attachment) -> bool {
    matches!(file.content, Some(attachment::Content::Data(_)))
}

#[cfg(test)]
mod tests {
    use mail_parser::{MessageParser, MimeHeaders};
    use omni_proto::v1::{Body, ContactIdentifier, Participant, ProviderReference};

    use super::*;

    fn address(message_id: &str, thread_id: &str) -> ReplyAddress {
        ReplyAddress {
            provider: Some(ProviderReference {
                provider: "imap".into(),
                account: "support".into(),
                message_id: message_id.into(),
                thread_id: thread_id.into(),
                reply_to: "ayse@example.com".into(),
                ..Default::default()
            }),
            customer: Some(Participant {
                display_name: "Ayşe Yılmaz".into(),
                identifiers: vec![ContactIdentifier {
                    kind: IdentifierKind::Email as i32,
                    value: "ayse@example.com".into(),
                    platform: String::new(),
                }],
                ..Default::default()
            }),
            subject: "Siparişim nerede?".into(),
            ..Default::default()
        }
    }

    fn outbound(text: &str) -> OutboundMessage {
        OutboundMessage {
            outbound_id: "0123456789abcdef0123456789abcdef".into(),
            ticket_reference: "[omni-local #12]".into(),
            body: Some(Body {
                text: text.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_reply_is_threaded_to_the_customers_message_and_names_the_ticket() {
        let from: Mailbox = "Support <support@omni.local>".parse().unwrap();
        let mail = build(
            &address("m2@mail.example", "m1@mail.example"),
            &outbound("Kargonuz yolda."),
            &from,
            "omni.local",
        )
        .unwrap();
        let bytes = mail.formatted();
        let parsed = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.message_id(), Some("omni-reply.0123456789abcdef0123456789abcdef@omni.local"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("m2@mail.example"));
        let references: Vec<&str> = parsed.references().as_text_list().unwrap().iter().map(|r| r.as_ref()).collect();
        assert_eq!(references, ["m1@mail.example", "m2@mail.example"]);
        assert_eq!(parsed.subject(), Some("Re: [omni-local #12] Siparişim nerede?"));
        assert_eq!(parsed.to().unwrap().first().unwrap().address(), Some("ayse@example.com"));
        assert_eq!(parsed.to().unwrap().first().unwrap().name(), Some("Ayşe Yılmaz"));
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), "Kargonuz yolda.");
    }

    #[test]
    fn an_acknowledgement_says_it_is_automatic_and_a_reply_does_not() {
        let from: Mailbox = "support@omni.local".parse().unwrap();
        let address = address("m1@mail.example", "m1@mail.example");
        let mut ack = outbound("Mesajınızı aldık.");
        ack.kind = Kind::Acknowledgement as i32;
        let mail = build(&address, &ack, &from, "omni.local").unwrap().formatted();
        let parsed = MessageParser::default().parse(&mail).unwrap();
        assert_eq!(parsed.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("m1@mail.example"));
        let reply = build(&address, &outbound("x"), &from, "omni.local").unwrap().formatted();
        assert!(
            MessageParser::default()
                .parse(&reply)
                .unwrap()
                .header_raw("Auto-Submitted")
                .is_none()
        );
    }

    #[test]
    fn the_agents_files_are_attached_and_a_referenced_one_is_left_out() {
        let from: Mailbox = "support@omni.local".parse().unwrap();
        let mut answer = outbound("Etiketiniz ekte.");
        answer.body.as_mut().unwrap().html = "<p>Etiketiniz ekte.</p>".into();
        let png = vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255];
        answer.attachments = vec![
            Attachment {
                name: "iade etiketi.png".into(),
                media_type: "image/png".into(),
                size_bytes: png.len() as u64,
                content: Some(attachment::Content::Data(png.clone())),
                ..Default::default()
            },
            Attachment {
                name: "katalog.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: 9_000_000,
                content: Some(attachment::Content::Reference("http://rt/REST/2.0/attachment/9".into())),
                ..Default::default()
            },
        ];
        let mail = build(&address("m1@mail.example", "m1@mail.example"), &answer, &from, "omni.local").unwrap();
        let parsed = MessageParser::default().parse(&mail.formatted()).unwrap().into_owned();
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), "Etiketiniz ekte.");
        assert_eq!(parsed.body_html(0).unwrap().trim_end(), "<p>Etiketiniz ekte.</p>");
        let files: Vec<(Option<&str>, &[u8])> = parsed.attachments().map(|a| (a.attachment_name(), a.contents())).collect();
        assert_eq!(files, [(Some("iade etiketi.png"), png.as_slice())]);
        assert!(carried(&answer.attachments[0]) && !carried(&answer.attachments[1]));
    }

    #[test]
    fn a_first_message_is_its_own_thread_root() {
        let from: Mailbox = "support@omni.local".parse().unwrap();
        let mail = build(&address("m1@mail.example", "m1@mail.example"), &outbound("x"), &from, "omni.local").unwrap();
        let parsed = MessageParser::default().parse(&mail.formatted()).unwrap().into_owned();
        assert_eq!(parsed.references().as_text(), Some("m1@mail.example"));
    }

    #[test]
    fn no_address_is_a_clear_error() {
        let mut address = address("m1@x", "");
        address.provider.as_mut().unwrap().reply_to.clear();
        address.customer = None;
        let from: Mailbox = "support@omni.local".parse().unwrap();
        let error = build(&address, &outbound("x"), &from, "omni.local").unwrap_err();
        assert!(matches!(error, EmailReplyError::NoAddress), "{error}");
    }

    #[test]
    fn subjects_get_one_re_and_one_reference() {
        assert_eq!(
            reply_subject("Re: [omni-local #12] Waar?", "[omni-local #12]"),
            "Re: [omni-local #12] Waar?"
        );
        assert_eq!(reply_subject("RE: Waar?", "[omni-local #12]"), "[omni-local #12] RE: Waar?");
        assert_eq!(reply_subject("", ""), "Re: (no subject)");
        assert_eq!(reply_subject("Waar?", ""), "Re: Waar?");
    }

    #[test]
    fn own_message_ids_are_recognised() {
        assert!(is_own_message_id(&message_id("0123456789abcdef0123", "omni.local")));
        assert!(!is_own_message_id("omni-reply.nothex!@omni.local"));
        assert!(!is_own_message_id("omni-reply.0123@omni.local"));
        assert!(!is_own_message_id("CAF=abc@mail.gmail.com"));
    }
}
