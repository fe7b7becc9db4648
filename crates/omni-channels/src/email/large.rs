//! Large messages by claim check: a message too large for one record keeps its header, its text
//! and HTML and the list of its files; only the bytes of its large file parts stay on the IMAP
//! server, each named by its IMAP section (RFC 3501 part number) with its decoded size and
//! SHA-256, so the customer's words always reach the helpdesk and each file can be fetched
//! (`imap://<mailbox>/<folder>;UIDVALIDITY=<v>/;UID=<uid>/;SECTION=<part>`, RFC 5092).
//!
//! The connector calls [`strip`] and records what it left out in the raw record's
//! [`STRIPPED_ATTRIBUTE`]; the adapter reads that attribute, never the message, so a sender
//! cannot make a part of theirs point elsewhere.

use std::collections::HashMap;

use mail_parser::{Message, MessageParser, PartType};
use sha2::{Digest, Sha256};

/// The raw record attribute listing the parts left out, one per line: `<section> <decoded
/// size> <sha256>`.
pub const STRIPPED_ATTRIBUTE: &str = "stripped_parts";

/// File parts whose encoded body is at most this large stay in the record.
pub const KEEP_PARTS_UP_TO: usize = 16 * 1024;

/// A part left out of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrippedPart {
    /// Its IMAP section, `2` or `1.2`.
    pub section: String,
    /// Its decoded size in bytes.
    pub size_bytes: u64,
    /// The SHA-256 of its decoded bytes, hex.
    pub sha256: String,
}

/// The message without the bodies of its file parts larger than [`KEEP_PARTS_UP_TO`], and
/// those parts; `None` when it has no such part. Text and HTML parts are always kept.
pub fn strip(bytes: &[u8]) -> Option<(Vec<u8>, Vec<StrippedPart>)> {
    let message = MessageParser::default().parse(bytes)?;
    let sections = sections(&message);
    let text_parts: Vec<u32> = message.text_body.iter().chain(&message.html_body).copied().collect();
    let mut cut: Vec<(usize, usize, usize)> = Vec::new();
    let mut stripped = Vec::new();
    for &index in &message.attachments {
        let part = &message.parts[index as usize];
        let (header, body, end) = (part.offset_header as usize, part.offset_body as usize, part.offset_end as usize);
        if left_in(&text_parts, index, part) {
            continue;
        }
        let Some(section) = sections.get(&index) else { continue };
        let contents = part.contents();
        stripped.push(StrippedPart {
            section: section.clone(),
            size_bytes: contents.len() as u64,
            sha256: hex::encode(Sha256::digest(contents)),
        });
        cut.push((header, body, end));
    }
    if stripped.is_empty() {
        return None;
    }
    cut.sort_unstable();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut pos = 0;
    for (_, body, end) in cut {
        if body < pos {
            continue;
        }
        out.extend_from_slice(&bytes[pos..body]);
        pos = end;
    }
    out.extend_from_slice(&bytes[pos..]);
    Some((out, stripped))
}

/// The decoded bytes of the parts [`strip`] leaves out, in its order (for the object store).
pub fn stripped_contents(bytes: &[u8]) -> Vec<Vec<u8>> {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return Vec::new();
    };
    let text_parts: Vec<u32> = message.text_body.iter().chain(&message.html_body).copied().collect();
    message
        .attachments
        .iter()
        .map(|&index| (index, &message.parts[index as usize]))
        .filter(|(index, part)| !left_in(&text_parts, *index, part))
        .map(|(_, part)| part.contents().to_vec())
        .collect()
}

/// Whether [`strip`] keeps a part's body in the record.
fn left_in(text_parts: &[u32], index: u32, part: &mail_parser::MessagePart<'_>) -> bool {
    let (body, end) = (part.offset_body as usize, part.offset_end as usize);
    text_parts.contains(&index) || matches!(part.body, PartType::Multipart(_)) || end.saturating_sub(body) <= KEEP_PARTS_UP_TO
}

/// The attribute value listing `parts`.
pub fn attribute(parts: &[StrippedPart]) -> String {
    parts
        .iter()
        .map(|p| format!("{} {} {}", p.section, p.size_bytes, p.sha256))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The parts an attribute lists, by section.
pub fn parse_attribute(value: &str) -> HashMap<String, StrippedPart> {
    value
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let part = StrippedPart {
                section: fields.next()?.to_owned(),
                size_bytes: fields.next()?.parse().ok()?,
                sha256: fields.next()?.to_owned(),
            };
            Some((part.section.clone(), part))
        })
        .collect()
}

/// Every part's IMAP section, by part index: the children of a multipart are numbered from 1
/// under their parent's number; a message that is not multipart has the one part `1`. Parts of
/// forwarded messages are not numbered (a forward is kept or left out whole).
pub fn sections(message: &Message<'_>) -> HashMap<u32, String> {
    let mut found = HashMap::new();
    match &message.parts.first().map(|root| &root.body) {
        Some(PartType::Multipart(children)) => number(message, children, "", &mut found),
        Some(_) => {
            found.insert(0, "1".to_owned());
        }
        None => {}
    }
    found
}

fn number(message: &Message<'_>, children: &[u32], prefix: &str, found: &mut HashMap<u32, String>) {
    for (position, &child) in children.iter().enumerate() {
        let section = if prefix.is_empty() {
            (position + 1).to_string()
        } else {
            format!("{prefix}.{}", position + 1)
        };
        if let Some(PartType::Multipart(grandchildren)) = message.parts.get(child as usize).map(|p| &p.body) {
            number(message, grandchildren, &section, found);
        }
        found.insert(child, section);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders as _;

    fn message_with(photo: &[u8]) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(photo);
        format!(
            "From: a@example.com\r\nSubject: Kapotte vaas\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
             --b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDe vaas is gebroken aangekomen.\r\n\
             --b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>De vaas is gebroken aangekomen.</p>\r\n--b2--\r\n\
             --b1\r\nContent-Type: image/jpeg; name=\"vaas.jpg\"\r\nContent-Disposition: attachment; filename=\"vaas.jpg\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_large_file_leaves_and_the_text_stays() {
        let photo: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = message_with(&photo);
        let (payload, parts) = strip(&bytes).expect("a part to strip");
        assert!(payload.len() < 2_000, "{}", payload.len());
        assert_eq!(
            parts,
            [StrippedPart {
                section: "2".into(),
                size_bytes: 100_000,
                sha256: hex::encode(Sha256::digest(&photo)),
            }]
        );
        let message = MessageParser::default().parse(&payload).unwrap();
        assert_eq!(message.body_text(0).unwrap().trim(), "De vaas is gebroken aangekomen.");
        assert_eq!(message.attachments().next().unwrap().attachment_name(), Some("vaas.jpg"));
        assert_eq!(parse_attribute(&attribute(&parts))["2"], parts[0]);
        // The text parts are 1.1 and 1.2, as an IMAP server numbers them.
        let sections = sections(&MessageParser::default().parse(&bytes).unwrap());
        let mut numbers: Vec<&str> = sections.values().map(String::as_str).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, ["1", "1.1", "1.2", "2"]);
        // The bytes left out, decoded, for the object store: exactly the photo.
        assert_eq!(stripped_contents(&bytes), [photo]);
    }

    #[test]
    fn small_files_stay() {
        assert_eq!(strip(&message_with(b"small")), None);
        assert!(stripped_contents(&message_with(b"small")).is_empty());
    }
}
