//! Making a message's header section readable before MIME parsing, for two kinds of mail that
//! clients show fine and a strict parser does not:
//!
//! - **no blank line after the header**: the first body line follows the last header field
//!   directly. A line that is neither a header field nor a continuation ends the header there,
//!   and a blank line is put before it, so the line is kept as text;
//! - **raw 8-bit bytes in header fields** (a Latin-1 or Windows-1254 subject sent without RFC
//!   2047): a line that is not UTF-8 is decoded in the first charset that fits it, the message's
//!   declared body charset, then the mailbox's default charset, then Windows-1254 when it holds
//!   bytes only Turkish uses there (ğ ı ş İ Ş Ğ), else Windows-1252, and written as UTF-8, which
//!   the parser reads as RFC 6532 allows. A single-byte charset fits any bytes, so no header
//!   ends up with replacement characters.
//!
//! The raw record keeps the bytes as they came; this is only what the parser reads.

use std::borrow::Cow;

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252, WINDOWS_1254};

/// The raw record attribute carrying the mailbox's `default_charset` (set by the email
/// connector when the mailbox names one).
pub const DEFAULT_CHARSET_ATTRIBUTE: &str = "default_charset";

/// Whether `name` is a charset label this module can read headers in.
pub fn is_charset(name: &str) -> bool {
    Encoding::for_label(name.trim().as_bytes()).is_some()
}

/// Bytes Windows-1254 maps to Ğ İ Ş ğ ı ş, where Windows-1252 has letters Western European text
/// rarely uses (Ð Ý Þ ð ý þ).
const TURKISH_ONLY: [u8; 6] = [0xD0, 0xDD, 0xDE, 0xF0, 0xFD, 0xFE];

/// The message as the parser should read it: unchanged unless its header lacks the blank line
/// before the body or holds lines that are not UTF-8.
pub fn readable<'a>(bytes: &'a [u8], mailbox_charset: Option<&str>) -> Cow<'a, [u8]> {
    let scan = scan(bytes);
    if scan.body_without_blank_line.is_none() && scan.not_utf8.is_empty() {
        return Cow::Borrowed(bytes);
    }
    let charset = (!scan.not_utf8.is_empty()).then(|| charset_for(bytes, &scan, mailbox_charset));
    let header_end = scan.body_without_blank_line.unwrap_or(scan.header_end);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut pos = 0;
    for &(start, end) in &scan.not_utf8 {
        out.extend_from_slice(&bytes[pos..start]);
        let encoding = charset.expect("a charset when a line is not UTF-8");
        out.extend_from_slice(encoding.decode_without_bom_handling(&bytes[start..end]).0.as_bytes());
        pos = end;
    }
    out.extend_from_slice(&bytes[pos..header_end]);
    if scan.body_without_blank_line.is_some() {
        out.extend_from_slice(if scan.crlf { b"\r\n" } else { b"\n" });
    }
    out.extend_from_slice(&bytes[header_end..]);
    Cow::Owned(out)
}

/// Whether the bytes open with a header field (`Name: value`): whether they are a message at all.
pub fn has_fields(bytes: &[u8]) -> bool {
    scan(bytes).fields > 0
}

/// What the header section looks like.
#[derive(Debug, Default)]
struct Scan {
    /// Where the header section ends (the blank line, or where the body starts without one).
    header_end: usize,
    /// Where a body line starts right after the header, without a blank line between.
    body_without_blank_line: Option<usize>,
    /// Header lines (start, end without the line break) that are not UTF-8.
    not_utf8: Vec<(usize, usize)>,
    /// Whether lines end in CRLF.
    crlf: bool,
    /// How many header fields it has.
    fields: usize,
}

fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut pos = 0;
    while pos < bytes.len() {
        let end = bytes[pos..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| pos + i + 1);
        let line = &bytes[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if pos == 0 {
            scan.crlf = line.ends_with(b"\r\n");
        }
        if content.is_empty() {
            break;
        }
        let continuation = scan.fields > 0 && matches!(content[0], b' ' | b'\t');
        let mbox_separator = pos == 0 && content.starts_with(b"From ");
        if !(is_field(content) || continuation || mbox_separator) {
            if scan.fields > 0 {
                scan.body_without_blank_line = Some(pos);
            }
            break;
        }
        scan.fields += usize::from(!continuation);
        if !content.is_ascii() && std::str::from_utf8(content).is_err() {
            scan.not_utf8.push((pos, pos + content.len()));
        }
        pos = end;
    }
    scan.header_end = pos;
    scan
}

/// `Name: value`, the name printable ASCII without spaces (a space before the colon is
/// obsolete syntax mail-parser still reads).
fn is_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

/// The first charset that decodes every line that is not UTF-8 without a replacement character.
fn charset_for(bytes: &[u8], scan: &Scan, mailbox_charset: Option<&str>) -> &'static Encoding {
    let lines = || scan.not_utf8.iter().map(|&(start, end)| &bytes[start..end]);
    let fits = |encoding: &&'static Encoding| {
        *encoding != UTF_8 && lines().all(|line| encoding.decode_without_bom_handling_and_without_replacement(line).is_some())
    };
    let label = |name: &str| Encoding::for_label(name.trim().as_bytes());
    // A body declared ASCII says nothing about 8-bit bytes (and WHATWG reads the label as
    // Windows-1252, which would always fit).
    let declared = declared_charset(bytes)
        .filter(|name| !(name.to_ascii_lowercase().contains("ascii") || name.eq_ignore_ascii_case("us")))
        .and_then(label)
        .filter(fits);
    let mailbox = mailbox_charset.and_then(label).filter(fits);
    declared.or(mailbox).unwrap_or_else(|| {
        let turkish = lines().any(|line| line.iter().any(|b| TURKISH_ONLY.contains(b)));
        if turkish { WINDOWS_1254 } else { WINDOWS_1252 }
    })
}

/// The first `charset=` parameter in the message (the top-level Content-Type's, else the first
/// part's): what the sender's client wrote the text in.
fn declared_charset(bytes: &[u8]) -> Option<&str> {
    const NEEDLE: &[u8] = b"charset=";
    let at = bytes.windows(NEEDLE.len()).position(|w| w.eq_ignore_ascii_case(NEEDLE))? + NEEDLE.len();
    let rest = &bytes[at..];
    let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
    let len = rest
        .iter()
        .position(|b| matches!(b, b'"' | b';' | b'\r' | b'\n' | b' ' | b'\t'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..len]).ok().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::readable;

    fn read(bytes: &[u8], mailbox: Option<&str>) -> String {
        String::from_utf8(readable(bytes, mailbox).into_owned()).unwrap()
    }

    #[test]
    fn a_well_formed_message_is_not_copied() {
        let mail = b"Subject: Caf\xc3\xa9\r\nFrom: a@b\r\n\r\nbody";
        assert!(matches!(readable(mail, None), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn a_body_right_after_the_header_gets_its_blank_line() {
        let mail = b"From: a@b\r\nSubject: Order\r\n  folded\r\nWhere is my parcel?\r\nThanks\r\n";
        assert_eq!(
            read(mail, None),
            "From: a@b\r\nSubject: Order\r\n  folded\r\n\r\nWhere is my parcel?\r\nThanks\r\n"
        );
        assert_eq!(read(b"Subject: x\nHello\n", None), "Subject: x\n\nHello\n");
    }

    #[test]
    fn raw_8_bit_headers_take_the_declared_then_the_mailbox_then_a_guessed_charset() {
        let latin = b"Subject: Caf\xe9\r\nContent-Type: text/plain; charset=\"iso-8859-1\"\r\n\r\nx";
        assert!(read(latin, None).starts_with("Subject: Café\r\n"));
        // Declared UTF-8 does not fit the bytes: the mailbox's charset does.
        let arabic = b"Subject: \xd8\xe1\xc8\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx";
        assert!(read(arabic, Some("windows-1256")).starts_with("Subject: طلب\r\n"));
        // Nothing declared: Turkish-only bytes pick Windows-1254, others Windows-1252.
        assert!(read(b"Subject: Sipari\xfeim \xe7\xfdkmad\xfd\r\n\r\nx", None).starts_with("Subject: Siparişim çıkmadı\r\n"));
        assert!(read(b"Subject: \x93Caf\xe9\x94\r\n\r\nx", None).starts_with("Subject: “Café”\r\n"));
    }

    #[test]
    fn text_that_is_no_header_at_all_is_left_alone() {
        assert_eq!(read(b"just some words\r\nand more", None), "just some words\r\nand more");
    }
}
