//! What a message says and carries: its text, HTML, forwarded messages and files.
//!
//! - **text**: every inline text part, in MIME order (an Apple Mail message is text, an image,
//!   more text), each with its line breaks as LF and trailing blanks trimmed, joined by a blank
//!   line; HTML-only parts turned into text;
//! - **HTML**: the HTML parts, when the sender sent any (plain-text parts between them turned
//!   into HTML so nothing is left out); empty otherwise;
//! - **forwarded messages** (`message/rfc822`, inline or attached, a whole message sent as the
//!   body, the original returned in a bounce) become a quoted forward after the text: a
//!   "Forwarded message" line, its From, Date, Subject and To, a blank line and its own text;
//!   their files are listed after the part that contained them;
//! - **empty containers**: a `multipart/*` part with no parts at all (its close delimiter right
//!   after its header) is read as empty, not as swallowing the parts after it;
//! - **attachments**: every other part that is not inline text, except empty `multipart/*`
//!   containers and the machine-readable parts of reports (`message/delivery-status`,
//!   `message/disposition-notification`, `text/rfc822-headers`, ...), which are data about a
//!   bounce or a receipt, not files the customer sent.

use std::collections::HashMap;

use mail_parser::decoders::html::{html_to_text, text_to_html};
use mail_parser::{Address, Message, MessagePart, MimeHeaders, PartType};
use omni_proto::v1::Attachment;
use sha2::{Digest, Sha256};

use super::large::{self, StrippedPart};
use super::reply;

/// The files of a message its connector left on the IMAP server ([`large`]), and where the
/// message is there.
#[derive(Clone, Debug, Default)]
pub struct ClaimChecks {
    /// The parts left out, by IMAP section.
    pub parts: HashMap<String, StrippedPart>,
    /// The message's IMAP URL; a part's is this with `/;SECTION=<part>`.
    pub message_url: String,
}

/// The line that opens a forwarded message in the text.
pub const FORWARD_LINE: &str = "---------- Forwarded message ----------";

/// Report parts (RFC 6522 and its kin): what a mail system says about a message.
const REPORT_PARTS: [&str; 7] = [
    "message/delivery-status",
    "message/global-delivery-status",
    "message/disposition-notification",
    "message/global-disposition-notification",
    "message/feedback-report",
    "message/global-headers",
    "text/rfc822-headers",
];

/// A message's readable content.
#[derive(Debug, Default)]
pub struct Content {
    /// Everything the message says, forwards included.
    pub text: String,
    /// The HTML the sender sent, if any.
    pub html: String,
    /// What the sender wrote this time (without quoted history and signature), then the forwards.
    pub new_text: String,
    /// The files, a forwarded message's after the part that held it.
    pub attachments: Vec<Attachment>,
}

/// The content of `message`; attachments up to `inline_limit` bytes carry their bytes, those in
/// `claims` a reference to their bytes on the IMAP server.
pub fn content(message: &Message<'_>, inline_limit: usize, claims: &ClaimChecks) -> Content {
    let own = own_text(message);
    let sections = if claims.parts.is_empty() {
        HashMap::new()
    } else {
        large::sections(message)
    };
    let mut forwards = Vec::new();
    let mut attachments = Vec::new();
    for index in &message.attachments {
        let Some(part) = message.parts.get(*index as usize) else { continue };
        let claim = sections.get(index).and_then(|section| claims.parts.get(section));
        if let (PartType::Message(inner), None) = (&part.body, claim) {
            let inner_content = content(inner, inline_limit, &ClaimChecks::default());
            forwards.push(forward_block(inner, &inner_content.text));
            attachments.extend(inner_content.attachments);
        } else if is_file(part) {
            let mut file = attachment(part, inline_limit);
            if let Some(claim) = claim {
                file.size_bytes = claim.size_bytes;
                file.sha256 = claim.sha256.clone();
                file.content = Some(omni_proto::v1::attachment::Content::Reference(format!(
                    "{}/;SECTION={}",
                    claims.message_url, claim.section
                )));
            }
            attachments.push(file);
        }
    }
    let with_forwards = |text: String| {
        forwards.iter().fold(text, |text, block| {
            if text.is_empty() {
                block.clone()
            } else {
                format!("{text}\n\n{block}")
            }
        })
    };
    Content {
        new_text: with_forwards(reply::new_text(&own)),
        text: with_forwards(own),
        html: own_html(message),
        attachments,
    }
}

/// The message's own inline text parts, in order.
fn own_text(message: &Message<'_>) -> String {
    let parts: Vec<String> = message
        .text_bodies()
        .filter_map(|part| match &part.body {
            PartType::Text(text) => Some(text.replace("\r\n", "\n")),
            PartType::Html(html) => Some(html_text(html)),
            _ => None,
        })
        .map(|text| text.trim_end().to_owned())
        .filter(|text| !text.trim().is_empty())
        .collect();
    parts.join("\n\n")
}

/// HTML as a reader sees it (html2text): paragraphs, `div`s, list items and table rows on lines
/// of their own, `blockquote`s marked `> ` like quoted mail (so the quoted history of an
/// HTML-only reply is told from the answer), no wrapping, no trailing blanks. mail-parser's own
/// conversion breaks lines only at `br` and `p`, which ran a webmail's `div` lines together.
/// HTML nested deeper than this (a crafted message: real mail nests a few dozen levels) is
/// turned into text by mail-parser's linear conversion instead, which html2text's rendering
/// takes seconds for.
fn html_text(html: &str) -> String {
    if nesting_depth(html) > MAX_HTML_DEPTH {
        return html_to_text(html).replace("\r\n", "\n");
    }
    // A panic inside the renderer on some crafted input must not stop the normalizer on this
    // record forever: such HTML gets the plain conversion.
    let rendered = std::panic::catch_unwind(|| {
        html2text::config::plain_no_decorate()
            .link_footnotes(false)
            .string_from_read(html.as_bytes(), HTML_TEXT_WIDTH)
    });
    match rendered {
        Ok(Ok(text)) => text.replace("\r\n", "\n").lines().map(str::trim_end).collect::<Vec<_>>().join("\n"),
        Ok(Err(_)) | Err(_) => html_to_text(html).replace("\r\n", "\n"),
    }
}

const MAX_HTML_DEPTH: usize = 200;

/// How deep the HTML's elements nest, roughly: opening tags less closing ones, void elements
/// (`br`, `img`, ...) and self-closing tags not counted.
fn nesting_depth(html: &str) -> usize {
    const VOID: [&str; 11] = ["br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "base", "source"];
    let (mut depth, mut deepest) = (0usize, 0usize);
    for tag in html.split('<').skip(1) {
        let end = tag.find('>').unwrap_or(tag.len());
        let inside = &tag[..end];
        if let Some(closing) = inside.strip_prefix('/') {
            if !closing.is_empty() {
                depth = depth.saturating_sub(1);
            }
            continue;
        }
        let name: String = inside
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() || inside.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        depth += 1;
        deepest = deepest.max(depth);
    }
    deepest
}

/// Lines are not wrapped: the helpdesk wraps them for the agent.
const HTML_TEXT_WIDTH: usize = 100_000;

/// The message's HTML parts, when it has any.
fn own_html(message: &Message<'_>) -> String {
    if !message.html_bodies().any(|part| matches!(part.body, PartType::Html(_))) {
        return String::new();
    }
    let parts: Vec<String> = message
        .html_bodies()
        .filter_map(|part| match &part.body {
            PartType::Html(html) => Some(html.to_string()),
            PartType::Text(text) if !text.trim().is_empty() => Some(text_to_html(text)),
            _ => None,
        })
        .collect();
    parts.join("\n")
}

/// A forwarded message as a reader sees it in a mail client.
fn forward_block(inner: &Message<'_>, text: &str) -> String {
    let mut lines = vec![FORWARD_LINE.to_owned()];
    if let Some(from) = inner.from() {
        lines.push(format!("From: {}", addresses(from)));
    }
    if let Some(date) = inner.header_raw("Date") {
        lines.push(format!("Date: {}", date.trim()));
    }
    if let Some(subject) = inner.subject() {
        lines.push(format!("Subject: {}", subject.trim()));
    }
    if let Some(to) = inner.to() {
        lines.push(format!("To: {}", addresses(to)));
    }
    let header = lines.join("\n");
    if text.is_empty() { header } else { format!("{header}\n\n{text}") }
}

/// `Name <address>` (or the address alone) for each address, comma separated.
pub fn addresses(address: &Address<'_>) -> String {
    let one = |addr: &mail_parser::Addr<'_>| match (addr.name(), addr.address()) {
        (Some(name), Some(address)) => format!("{name} <{address}>"),
        (None, Some(address)) => address.to_owned(),
        (Some(name), None) => name.to_owned(),
        (None, None) => String::new(),
    };
    address.iter().map(one).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ")
}

/// The part's media type, lowercase, `application/octet-stream` when it has none.
fn media_type(part: &MessagePart<'_>) -> String {
    part.content_type()
        .map(|ct| match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub),
            None => ct.ctype().to_owned(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned())
        .to_ascii_lowercase()
}

/// Whether a part mail-parser lists as an attachment is a file the sender sent.
fn is_file(part: &MessagePart<'_>) -> bool {
    let media_type = media_type(part);
    !(media_type.starts_with("multipart/") || REPORT_PARTS.contains(&media_type.as_str()))
}

fn attachment(part: &MessagePart<'_>, inline_limit: usize) -> Attachment {
    let contents = part.contents();
    let inline = part.content_disposition().is_some_and(|cd| cd.is_inline()) || part.content_id().is_some();
    Attachment {
        name: part.attachment_name().unwrap_or_default().to_owned(),
        media_type: media_type(part),
        size_bytes: contents.len() as u64,
        sha256: hex::encode(Sha256::digest(contents)),
        content: (contents.len() <= inline_limit).then(|| omni_proto::v1::attachment::Content::Data(contents.to_vec())),
        inline,
        content_id: part.content_id().unwrap_or_default().trim_matches(['<', '>']).to_owned(),
    }
}

/// A digest of what the message says and carries, decoded (so a copy that a server re-encoded,
/// gave other `Received` headers or other line endings has the same one; an IMAP server hands
/// out CRLF whatever it was given): every part's decoded contents in order, text with LF line
/// endings and no trailing blanks.
pub fn digest(message: &Message<'_>) -> String {
    let mut hasher = Sha256::new();
    for part in &message.parts {
        let contents: std::borrow::Cow<'_, [u8]> = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text.replace("\r\n", "\n").trim_end().as_bytes().to_vec().into(),
            PartType::Message(inner) => lf_only(inner.raw_message()).into(),
            _ => part.contents().into(),
        };
        hasher.update((contents.len() as u64).to_be_bytes());
        hasher.update(&contents);
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The bytes with every CRLF as LF.
fn lf_only(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (index, &byte) in bytes.iter().enumerate() {
        if !(byte == b'\r' && bytes.get(index + 1) == Some(&b'\n')) {
            out.push(byte);
        }
    }
    out
}

/// The message with the close delimiter of every empty `multipart/*` removed, when it has any:
/// a multipart whose first delimiter line is its close delimiter (`--b--`) has no parts, and a
/// parser that takes that line for a part's start reads the rest of the message into it. Without
/// the line, the container is an empty part, which is no file.
pub fn close_empty_containers(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut boundaries: Vec<&[u8]> = boundaries(bytes).collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    // A hostile message may name thousands: real ones nest a handful.
    boundaries.truncate(MAX_BOUNDARIES);
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(at, _)| at + 1))
        .filter(|&at| bytes.get(at..at + 2) == Some(b"--"))
        .collect();
    let mut removed: Vec<(usize, usize)> = boundaries
        .into_iter()
        .filter_map(|boundary| {
            let first = line_starts.iter().copied().find(|&at| bytes[at + 2..].starts_with(boundary))?;
            let after = first + 2 + boundary.len();
            bytes[after..].starts_with(b"--").then(|| {
                let end = bytes[after..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| after + i + 1);
                (first, end)
            })
        })
        .collect();
    if removed.is_empty() {
        return None;
    }
    removed.sort_unstable();
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    for (start, end) in removed {
        out.extend_from_slice(&bytes[pos..start.max(pos)]);
        pos = pos.max(end);
    }
    out.extend_from_slice(&bytes[pos..]);
    Some(out)
}

/// The most distinct boundaries [`close_empty_containers`] looks at.
const MAX_BOUNDARIES: usize = 64;

/// Every `boundary=` parameter's value in the message.
fn boundaries(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    const NEEDLE: &[u8] = b"boundary=";
    bytes
        .windows(NEEDLE.len())
        .enumerate()
        .filter(|(_, window)| window.eq_ignore_ascii_case(NEEDLE))
        .filter_map(move |(at, _)| {
            let rest = &bytes[at + NEEDLE.len()..];
            let (rest, end_of) = match rest.strip_prefix(b"\"") {
                Some(quoted) => (quoted, &b"\"\r\n"[..]),
                None => (rest, &b"; \t\r\n"[..]),
            };
            let len = rest.iter().position(|b| end_of.contains(b)).unwrap_or(rest.len());
            (len > 0).then(|| &rest[..len])
        })
}
