//! Golden fixtures: real-world shaped MIME messages in their own charsets, and what each must
//! produce.

use omni_proto::v1::participant::Role;
use omni_proto::v1::{ConversationEvent, RawRecord};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/src/email/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn normalize(name: &str) -> ConversationEvent {
    let bytes = fixture(name);
    let ids = ids("support@shop", &bytes);
    let raw = RawRecord {
        event_id: ids.event_id,
        provider: PROVIDER.into(),
        account: "support@shop".into(),
        payload: bytes,
        ..Default::default()
    };
    EmailNormalizer::default()
        .event(&raw, &crate::NoKnownEvents)
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn text(event: &ConversationEvent) -> &str {
    &event.body.as_ref().unwrap().text
}

#[test]
fn turkish_windows_1254_quoted_printable_with_encoded_words() {
    let event = normalize("tr-windows-1254.eml");
    assert_eq!(event.subject, "Siparişim nerede?");
    assert_eq!(event.participants[0].display_name, "Ayşe Yılmaz");
    assert_eq!(event.participants[0].identifiers[0].value, "ayse@example.com");
    assert_eq!(
        text(&event),
        "Merhaba,\n\nSiparişim 1042 hâlâ gelmedi. İade etmek istiyorum.\n\nTeşekkürler,\nAyşe"
    );
    assert_eq!(event.provider.as_ref().unwrap().message_id, "tr-1@mail.example.com");
    assert_eq!(event.occurred_at.unwrap().seconds, 1_794_809_700, "2026-11-16 06:15:00 UTC");
}

#[test]
fn arabic_windows_1256_base64() {
    let event = normalize("ar-windows-1256.eml");
    assert_eq!(event.subject, "استرداد المبلغ");
    assert_eq!(event.participants[0].display_name, "أحمد");
    assert_eq!(text(&event), "مرحبا،\nأين طلبي رقم 1042؟ أريد استرداد المبلغ.");
}

#[test]
fn japanese_iso_2022_jp() {
    let event = normalize("ja-iso-2022-jp.eml");
    assert_eq!(event.subject, "配送について");
    assert_eq!(event.participants[0].display_name, "山田太郎");
    assert_eq!(text(&event), "お世話になっております。\n注文番号1042の配送状況を教えてください。");
}

#[test]
fn dutch_html_only_reply_becomes_readable_text_in_its_thread() {
    let event = normalize("nl-html-only-reply.eml");
    let body = event.body.as_ref().unwrap();
    assert!(
        body.text.contains("Ik heb €49,95 betaald maar mijn pakket is niet aangekomen."),
        "{}",
        body.text
    );
    assert!(!body.text.contains("<p>"), "{}", body.text);
    assert!(body.html.contains("<blockquote>"));
    assert!(!body.new_text.contains("Uw pakket is onderweg"), "{}", body.new_text);
    // The thread root is the first References id: the customer's first mail.
    let first = ids(
        "support@shop",
        b"Message-ID: <nl-1@mail.example.nl>\r\nSubject: Uw bestelling 1042\r\n\r\nx",
    );
    assert_eq!(event.conversation_id, first.conversation_id);
}

#[test]
fn multipart_with_alternative_inline_image_attachment_quote_and_signature() {
    let event = normalize("en-multipart-attachments.eml");
    assert_eq!(event.participants[0].display_name, "María García");
    let body = event.body.as_ref().unwrap();
    assert_eq!(body.new_text, "Hi,\n\nThe jacket is too small, I want to exchange it for size L.");
    assert!(body.text.contains("> Your order number is 1042."));
    let names: Vec<(&str, &str, bool)> = event
        .attachments
        .iter()
        .map(|a| (a.name.as_str(), a.media_type.as_str(), a.inline))
        .collect();
    assert_eq!(
        names,
        [("jacket.png", "image/png", true), ("invoice-1042.pdf", "application/pdf", false)]
    );
    let png = &event.attachments[0];
    assert_eq!(png.content_id, "photo1@example.es");
    assert_eq!(png.size_bytes, 70);
    assert_eq!(png.sha256.len(), 64);
    assert!(matches!(png.content, Some(omni_proto::v1::attachment::Content::Data(ref d)) if d.starts_with(b"\x89PNG")));
}

#[test]
fn replies_share_the_conversation_of_their_thread_root_and_new_mail_does_not() {
    let root = ids("a", b"Message-ID: <root@x>\r\nSubject: Order\r\n\r\nx");
    let reply = ids("a", b"Message-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nSubject: Re: Order\r\n\r\nx");
    let reply_new_subject = ids(
        "a",
        b"Message-ID: <r2@x>\r\nReferences: <root@x> <r1@x>\r\nSubject: something else\r\n\r\nx",
    );
    let new_mail_old_subject = ids("a", b"Message-ID: <n1@x>\r\nSubject: Re: Order\r\n\r\nx");
    assert_eq!(root.conversation_id, reply.conversation_id);
    assert_eq!(root.conversation_id, reply_new_subject.conversation_id);
    assert_ne!(root.conversation_id, new_mail_old_subject.conversation_id);
    assert_ne!(
        root.conversation_id,
        ids("b", b"Message-ID: <root@x>\r\n\r\nx").conversation_id,
        "mailboxes are separate"
    );
}

#[test]
fn event_id_is_the_message_id_and_content_else_the_bytes() {
    // A copy with other headers is the same message; another text under the same id is not.
    assert_eq!(
        ids("a", b"Message-ID: <m@x>\r\n\r\none").event_id,
        ids("a", b"Received: by relay\r\nMessage-ID: <m@x>\r\nX-Extra: 1\r\n\r\none").event_id
    );
    assert_ne!(
        ids("a", b"Message-ID: <m@x>\r\n\r\none").event_id,
        ids("a", b"Message-ID: <m@x>\r\n\r\ntwo").event_id
    );
    // Stored with LF, handed out by the IMAP server with CRLF: the same message.
    assert_eq!(
        ids("a", b"Message-ID: <m@x>\nSubject: s\n\none\ntwo\n").event_id,
        ids("a", b"Message-ID: <m@x>\r\nSubject: s\r\n\r\none\r\ntwo\r\n").event_id
    );
    // The same text, quoted-printable as a relay may re-encode it: the same message.
    assert_eq!(
        ids(
            "a",
            b"Message-ID: <m@x>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9"
        )
        .event_id,
        ids(
            "a",
            b"Message-ID: <m@x>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9"
        )
        .event_id
    );
    assert_ne!(
        ids("a", b"Subject: s\r\n\r\none").event_id,
        ids("a", b"Subject: s\r\n\r\ntwo").event_id
    );
}

#[test]
fn auto_replies_and_bounces_are_tagged_and_not_customers() {
    let auto = normalize("auto-reply.eml");
    assert_eq!(auto.tags, [TAG_AUTO_REPLY]);
    assert_eq!(auto.participants[0].role, Role::System as i32);
    let bounce = normalize("bounce.eml");
    assert_eq!(bounce.tags, [TAG_BOUNCE]);
    let customer = normalize("tr-windows-1254.eml");
    assert!(customer.tags.is_empty());
    assert_eq!(customer.participants[0].role, Role::Customer as i32);
}

#[test]
fn bytes_that_are_not_an_email_are_malformed() {
    let raw = RawRecord {
        event_id: "e".into(),
        provider: PROVIDER.into(),
        payload: b"\x00\x01\x02 binary junk".to_vec(),
        ..Default::default()
    };
    let error = EmailNormalizer::default().event(&raw, &crate::NoKnownEvents).unwrap_err();
    assert!(matches!(error, NormalizeError::Malformed { .. }), "{error}");
}

fn mail(message_id: &str, thread_headers: &str, subject: &str) -> RawRecord {
    let payload = format!("From: Jan <jan@example.nl>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n{thread_headers}\r\nHoi\r\n")
        .into_bytes();
    RawRecord {
        event_id: ids("support@shop", &payload).event_id,
        provider: PROVIDER.into(),
        account: "support@shop".into(),
        payload,
        ..Default::default()
    }
}

/// What the normalizer keeps of a written event: its conversation under its event id and the
/// keys the adapter says it is known by.
fn remember(known: &mut std::collections::HashMap<String, String>, event: &ConversationEvent) {
    use crate::Normalize as _;
    for key in std::iter::once(event.event_id.clone()).chain(EmailNormalizer::default().known_as(event)) {
        known.insert(key, event.conversation_id.clone());
    }
}

#[test]
fn a_reply_that_dropped_the_root_joins_the_conversation_of_the_message_it_names() {
    let normalizer = EmailNormalizer::default();
    let mut known = std::collections::HashMap::new();
    let root = normalizer.event(&mail("root@x", "", "Bestelling 1042"), &known).unwrap();
    remember(&mut known, &root);
    let second = normalizer
        .event(
            &mail(
                "second@x",
                "In-Reply-To: <root@x>\r\nReferences: <root@x>\r\n",
                "Re: Bestelling 1042",
            ),
            &known,
        )
        .unwrap();
    assert_eq!(second.conversation_id, root.conversation_id);
    remember(&mut known, &second);

    // Outlook-style: only In-Reply-To, naming the second message, not the root.
    let broken = mail("third@x", "In-Reply-To: <second@x>\r\n", "AW: Bestelling 1042");
    assert_eq!(normalizer.event(&broken, &known).unwrap().conversation_id, root.conversation_id);
    // Without the known events the same message would start a thread of its own.
    assert_ne!(
        normalizer.event(&broken, &crate::NoKnownEvents).unwrap().conversation_id,
        root.conversation_id
    );

    // A new subject in the thread stays; an old subject without thread headers does not.
    let renamed = mail("fourth@x", "References: <unknown@elsewhere> <second@x>\r\n", "Nieuwe vraag");
    assert_eq!(normalizer.event(&renamed, &known).unwrap().conversation_id, root.conversation_id);
    let new_mail = mail("fifth@x", "", "Re: Bestelling 1042");
    assert_ne!(normalizer.event(&new_mail, &known).unwrap().conversation_id, root.conversation_id);
}

#[test]
fn a_message_stored_as_its_header_says_so_and_points_at_the_server() {
    let mut raw = mail("big@x", "", "Foto's van de schade");
    raw.attributes = [
        ("truncated", "true"),
        ("size_bytes", "31457280"),
        ("sha256", "ab12"),
        ("imap_folder", "INBOX"),
        ("imap_uid_validity", "1700000000"),
        ("imap_uid", "42"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let event = EmailNormalizer::default().event(&raw, &crate::NoKnownEvents).unwrap();
    assert!(event.tags.contains(&TAG_TRUNCATED.to_owned()), "{:?}", event.tags);
    let whole = event.attachments.last().unwrap();
    assert_eq!(
        (whole.media_type.as_str(), whole.size_bytes, whole.sha256.as_str()),
        ("message/rfc822", 31_457_280, "ab12")
    );
    assert_eq!(
        whole.content,
        Some(omni_proto::v1::attachment::Content::Reference(
            "imap://support@shop/INBOX;UIDVALIDITY=1700000000/;UID=42".into()
        ))
    );
    let whole_message = mail("small@x", "", "x");
    assert!(
        EmailNormalizer::default()
            .event(&whole_message, &crate::NoKnownEvents)
            .unwrap()
            .tags
            .is_empty()
    );
}

#[test]
fn passes_the_conformance_kit() {
    fn records(_name: &str, bytes: &[u8]) -> Vec<RawRecord> {
        vec![RawRecord {
            event_id: ids("support@shop", bytes).event_id,
            channel: omni_proto::v1::Channel::Email as i32,
            provider: PROVIDER.into(),
            account: "support@shop".into(),
            payload: bytes.to_vec(),
            ..Default::default()
        }]
    }
    static EMAIL: EmailNormalizer = EmailNormalizer {
        inline_attachment_limit: crate::email::DEFAULT_INLINE_ATTACHMENT_LIMIT,
    };
    crate::kit::NormalizeConformance::new(&EMAIL, records).run();
}

#[test]
fn a_customer_writing_through_a_group_alias_is_a_message_not_an_auto_reply() {
    // Google Groups adds List-Id, List-Post, ... and `Precedence: list` to every mail it relays.
    let event = normalize("nl-group-alias.eml");
    assert_eq!(event.tags, [TAG_MAILING_LIST]);
    assert_eq!(event.participants[0].role, Role::Customer as i32);
    assert!(
        text(&event).contains("retourneren, hij is te klein. Kunnen jullie"),
        "{}",
        text(&event)
    );

    // A mailbox that says its list mail is automated: the same message opens no ticket.
    let bytes = fixture("nl-group-alias.eml");
    let raw = RawRecord {
        event_id: ids("news@shop", &bytes).event_id,
        provider: PROVIDER.into(),
        account: "news@shop".into(),
        payload: bytes,
        attributes: [(LIST_MAIL_ATTRIBUTE.to_owned(), ListMail::Automated.as_str().to_owned())].into(),
        ..Default::default()
    };
    let event = EmailNormalizer::default().event(&raw, &crate::NoKnownEvents).unwrap();
    assert_eq!(event.tags, [TAG_AUTO_REPLY, TAG_MAILING_LIST]);
    assert_eq!(event.participants[0].role, Role::System as i32);
}

#[test]
fn auto_replies_are_told_by_their_headers_without_auto_submitted() {
    // vacation(1): `Precedence: bulk` and no list headers.
    let vacation = normalize("vacation-precedence-bulk.eml");
    assert_eq!(vacation.tags, [TAG_AUTO_REPLY]);
    // Exchange's out-of-office reply: `X-Auto-Response-Suppress: All`.
    let exchange = normalize("tr-exchange-auto-reply.eml");
    assert_eq!(exchange.tags, [TAG_AUTO_REPLY]);
    assert_eq!(exchange.subject, "Otomatik yanıt: Siparişiniz hazır");
    assert_eq!(exchange.participants[0].role, Role::System as i32);
}

#[test]
fn the_thread_root_travels_with_the_event_for_the_answer_to_name_it() {
    let normalizer = EmailNormalizer::default();
    let first = normalizer.event(&mail("m1@x", "", "Order"), &crate::NoKnownEvents).unwrap();
    assert_eq!(first.provider.as_ref().unwrap().thread_id, "m1@x");
    let reply = normalizer
        .event(
            &mail("m3@x", "In-Reply-To: <m2@x>\r\nReferences: <m1@x> <m2@x>\r\n", "Re: Order"),
            &crate::NoKnownEvents,
        )
        .unwrap();
    let provider = reply.provider.unwrap();
    assert_eq!((provider.message_id.as_str(), provider.thread_id.as_str()), ("m3@x", "m1@x"));
}

#[test]
fn omnis_own_answer_coming_back_is_kept_out() {
    use crate::Normalize as _;
    let normalizer = EmailNormalizer::default();
    let own = mail(&send::message_id("0123456789abcdef0123456789abcdef", "omni.local"), "", "Re: Order");
    assert_eq!(normalizer.normalize(&own, &crate::NoKnownEvents).unwrap(), None);
    // A customer's message whose id merely looks alike is a message.
    let customer = mail("omni-reply.not-ours@mail.example", "", "Order");
    assert!(normalizer.normalize(&customer, &crate::NoKnownEvents).unwrap().is_some());
}

/// One fixture's expected reading, written by hand from what the message shows (golden.json).
#[derive(serde::Deserialize)]
struct Golden {
    fixture: String,
    class: u8,
    subject: String,
    sender: GoldenSender,
    role: String,
    text: Option<String>,
    text_contains: Vec<String>,
    new_text: Option<String>,
    new_text_contains: Vec<String>,
    html_contains: Vec<String>,
    attachments: Vec<GoldenAttachment>,
    tags: Vec<String>,
    in_reply_to: String,
    references: Vec<String>,
    same_event_id_as: Option<String>,
    different_event_id_from: Option<String>,
}

#[derive(serde::Deserialize)]
struct GoldenSender {
    address: String,
    name: String,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct GoldenAttachment {
    name: String,
    media_type: String,
    #[serde(default)]
    inline: bool,
}

impl Golden {
    /// Every way `event` differs from this expectation.
    fn differences(&self, event: &ConversationEvent) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                found.push(what);
            }
        };
        let body = event.body.clone().unwrap_or_default();
        let sender = &event.participants[0];
        let address = sender.identifiers.first().map(|i| i.value.as_str()).unwrap_or_default();
        let provider = event.provider.clone().unwrap_or_default();
        check(event.subject == self.subject, format!("subject {:?}", event.subject));
        check(address == self.sender.address, format!("sender address {address:?}"));
        check(
            sender.display_name == self.sender.name,
            format!("sender name {:?}", sender.display_name),
        );
        let role = if sender.role == Role::System as i32 { "system" } else { "customer" };
        check(role == self.role, format!("role {role}"));
        if let Some(text) = &self.text {
            check(&body.text == text, format!("text {:?}", body.text));
        }
        if let Some(new_text) = &self.new_text {
            check(&body.new_text == new_text, format!("new text {:?}", body.new_text));
        }
        for (field, value, wanted) in [
            ("text", &body.text, &self.text_contains),
            ("new text", &body.new_text, &self.new_text_contains),
            ("html", &body.html, &self.html_contains),
        ] {
            for piece in wanted {
                check(value.contains(piece.as_str()), format!("{field} lacks {piece:?}"));
            }
        }
        let attachments: Vec<GoldenAttachment> = event
            .attachments
            .iter()
            .map(|a| GoldenAttachment {
                name: a.name.clone(),
                media_type: a.media_type.clone(),
                inline: a.inline,
            })
            .collect();
        check(attachments == self.attachments, format!("attachments {attachments:?}"));
        check(event.tags == self.tags, format!("tags {:?}", event.tags));
        check(
            provider.in_reply_to == self.in_reply_to,
            format!("in_reply_to {:?}", provider.in_reply_to),
        );
        check(
            provider.references == self.references,
            format!("references {:?}", provider.references),
        );
        found
    }
}

#[test]
fn every_class_of_odd_mail_reads_as_its_golden_file_says() {
    let path = format!("{}/src/email/golden.json", env!("CARGO_MANIFEST_DIR"));
    let golden: Vec<Golden> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(golden.len() >= 11, "one or more fixtures per class");
    let event_id = |name: &str| ids("support@shop", &fixture(name)).event_id;
    let mut failures = Vec::new();
    for expected in &golden {
        let event = normalize(&expected.fixture);
        for difference in expected.differences(&event) {
            failures.push(format!("{} (class {}): {difference}", expected.fixture, expected.class));
        }
        if let Some(other) = &expected.same_event_id_as
            && event_id(&expected.fixture) != event_id(other)
        {
            failures.push(format!("{}: not the same message as {other}", expected.fixture));
        }
        if let Some(other) = &expected.different_event_id_from
            && event_id(&expected.fixture) == event_id(other)
        {
            failures.push(format!("{}: taken for a copy of {other}", expected.fixture));
        }
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

/// One message of the end-to-end corpus (`tests/corpus/email/manifest.json`).
#[derive(serde::Deserialize)]
struct CorpusEntry {
    file: String,
    subject: String,
    from: String,
    says: Vec<String>,
    attachments: Vec<CorpusAttachment>,
    tags: Vec<String>,
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct CorpusAttachment {
    name: String,
    media_type: String,
}

/// The corpus read without servers: what the end-to-end run (tests/tests/email_corpus.rs) then
/// checks in the helpdesk, here checked on the events, so a difference shows with its message.
#[test]
fn the_email_corpus_reads_as_its_manifest_says() {
    let dir = format!("{}/../../tests/corpus/email", env!("CARGO_MANIFEST_DIR"));
    let manifest: Vec<CorpusEntry> = serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    assert!(manifest.len() >= 60, "a corpus of at least 60 messages");
    let mut failures = Vec::new();
    for entry in &manifest {
        let bytes = std::fs::read(format!("{dir}/{}", entry.file)).unwrap();
        let raw = RawRecord {
            event_id: ids("support", &bytes).event_id,
            provider: PROVIDER.into(),
            account: "support".into(),
            payload: bytes,
            ..Default::default()
        };
        let event = match EmailNormalizer::default().event(&raw, &crate::NoKnownEvents) {
            Ok(event) => event,
            Err(error) => {
                failures.push(format!("{}: {error}", entry.file));
                continue;
            }
        };
        let body = event.body.clone().unwrap_or_default();
        let from = event.participants[0]
            .identifiers
            .first()
            .map(|i| i.value.as_str())
            .unwrap_or_default();
        let attachments: Vec<CorpusAttachment> = event
            .attachments
            .iter()
            .map(|a| CorpusAttachment {
                name: a.name.clone(),
                media_type: a.media_type.clone(),
            })
            .collect();
        let mut differ = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{}: {what}", entry.file));
            }
        };
        differ(event.subject == entry.subject, format!("subject {:?}", event.subject));
        differ(from == entry.from, format!("from {from:?}"));
        differ(event.tags == entry.tags, format!("tags {:?}", event.tags));
        differ(attachments == entry.attachments, format!("attachments {attachments:?}"));
        for phrase in &entry.says {
            // The helpdesk receives new_text: every phrase the customer wrote must be in it.
            differ(
                body.new_text.contains(phrase.as_str()),
                format!("new text lacks {phrase:?}: {:?}", body.new_text),
            );
        }
        differ(
            !(body.text.contains('\u{FFFD}') || event.subject.contains('\u{FFFD}')),
            "replacement characters".to_owned(),
        );
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_message_whose_files_stayed_on_the_server_keeps_its_text_and_points_at_each_file() {
    use base64::Engine as _;
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let bytes = format!(
        "From: Sanne <sanne@example.nl>\r\nSubject: Kapotte vaas\r\nMessage-ID: <vaas@example.nl>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         De vaas is gebroken aangekomen, zie de foto.\r\n--b1\r\nContent-Type: image/jpeg\r\n\
         Content-Disposition: attachment; filename=\"vaas.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1--\r\n",
        base64::engine::general_purpose::STANDARD.encode(&photo)
    )
    .into_bytes();
    let (payload, parts) = large::strip(&bytes).unwrap();
    let raw = RawRecord {
        event_id: ids("support@shop", &bytes).event_id,
        provider: PROVIDER.into(),
        account: "support@shop".into(),
        payload,
        attributes: [
            ("imap_folder", "INBOX"),
            ("imap_uid_validity", "7"),
            ("imap_uid", "42"),
            (large::STRIPPED_ATTRIBUTE, large::attribute(&parts).as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    };
    let event = EmailNormalizer::default().event(&raw, &crate::NoKnownEvents).unwrap();
    assert_eq!(text(&event), "De vaas is gebroken aangekomen, zie de foto.");
    let file = &event.attachments[0];
    assert_eq!(
        (file.name.as_str(), file.media_type.as_str(), file.size_bytes),
        ("vaas.jpg", "image/jpeg", 300_000)
    );
    assert_eq!(file.sha256, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&photo)));
    assert_eq!(
        file.content,
        Some(omni_proto::v1::attachment::Content::Reference(
            "imap://support@shop/INBOX;UIDVALIDITY=7/;UID=42/;SECTION=2".into()
        ))
    );
    // The event id is the whole message's, as the connector computed it.
    assert_eq!(event.event_id, ids("support@shop", &bytes).event_id);
}

#[test]
fn hostile_html_is_text_not_a_crash() {
    // Deep nesting and a huge table, as a sender could craft them: readable text, no stack
    // overflow, no blow-up.
    let deep = format!(
        "{}Hallo{}",
        "<div><blockquote>".repeat(20_000),
        "</blockquote></div>".repeat(20_000)
    );
    let wide = format!("<table><tr>{}</tr></table>", "<td>x</td>".repeat(5_000));
    for html in [deep, wide] {
        let bytes = format!("From: a@b.example\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}").into_bytes();
        let raw = RawRecord {
            event_id: "e".into(),
            provider: PROVIDER.into(),
            payload: bytes,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let event = EmailNormalizer::default().event(&raw, &crate::NoKnownEvents).unwrap();
        assert!(!text(&event).is_empty());
        eprintln!("{} bytes of text in {:?}", text(&event).len(), started.elapsed());
    }
}
