//! HTML for the helpdesks that take it: plain text escaped, and a mail's own HTML cleaned with
//! its inline images carried in the body, so a photo pasted into a mail shows where the customer
//! put it.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use omni_proto::v1::attachment::Content;
use omni_proto::v1::{Attachment, ConversationEvent};

/// Text escaped for HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Plain text as HTML: escaped, line breaks as `<br>`.
pub(crate) fn text_to_html(text: &str) -> String {
    escape(&text.replace("\r\n", "\n")).replace('\n', "<br>")
}

/// A mail's HTML with its inline images in it (see [`with_inline_images`]).
#[derive(Debug)]
pub(crate) struct InlineHtml {
    /// The cleaned HTML.
    pub html: String,
    /// Which of the files given are now in [`Self::html`] (indexes, ascending): send the others
    /// as attachments.
    pub embedded: Vec<usize>,
}

/// The event's HTML body made safe for an agent's browser (ammonia's allow-list: no scripts,
/// styles, event handlers or forms; no `data:` URL the sender wrote, no relative URL, no remote
/// image), each `<img src="cid:…">`
/// naming an inline file among `files` whose type `embeds` takes (and whose bytes came with the
/// event) turned into a `data:` URL of those bytes; a `cid:` image that names none loses its
/// source and keeps its `alt` text.
///
/// `None` when the event has no HTML or its HTML shows none of the files: the text serves then.
pub(crate) fn with_inline_images(event: &ConversationEvent, files: &[&Attachment], embeds: fn(&str) -> bool) -> Option<InlineHtml> {
    let html = event
        .body
        .as_ref()
        .map(|body| body.html.as_str())
        .filter(|html| !html.trim().is_empty())?;
    let images: HashMap<String, (usize, String)> = files
        .iter()
        .enumerate()
        .filter_map(|(index, file)| match &file.content {
            Some(Content::Data(bytes)) if file.inline && !file.content_id.is_empty() && embeds(&file.media_type) => {
                let url = format!(
                    "data:{};base64,{}",
                    file.media_type.to_ascii_lowercase(),
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                );
                Some((file.content_id.clone(), (index, url)))
            }
            _ => None,
        })
        .collect();
    if images.is_empty() {
        return None;
    }
    let images = Arc::new(images);
    let shown = Arc::new(Mutex::new(BTreeSet::new()));
    let cleaned = {
        let (images, shown) = (Arc::clone(&images), Arc::clone(&shown));
        ammonia::Builder::default()
            .add_url_schemes(["cid"])
            // A relative URL would point into the helpdesk itself, with the agent's session.
            .url_relative(ammonia::UrlRelative::Deny)
            .attribute_filter(move |element, attribute, value| {
                let content_id = cid(value);
                if element != "img" || attribute != "src" {
                    return content_id.is_none().then_some(Cow::Borrowed(value));
                }
                // Only the images the mail carries: a remote one would tell the sender when an
                // agent opened the ticket, and from where.
                let (index, url) = images.get(content_id?.as_ref())?;
                shown.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(*index);
                Some(Cow::Owned(url.clone()))
            })
            .clean(html)
            .to_string()
    };
    let embedded: Vec<usize> = shown
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .copied()
        .collect();
    (!embedded.is_empty()).then_some(InlineHtml { html: cleaned, embedded })
}

/// The Content-ID a `cid:` URL names (RFC 2392: the URL is percent-encoded), or `None` for
/// another URL.
fn cid(url: &str) -> Option<Cow<'_, str>> {
    let url = url.trim();
    let scheme = url.get(..4)?;
    scheme
        .eq_ignore_ascii_case("cid:")
        .then(|| percent_encoding::percent_decode_str(&url[4..]).decode_utf8_lossy())
}

/// JPEG and PNG: the images a helpdesk that takes `data:` URLs turns into inline files.
pub(crate) fn jpeg_or_png(media_type: &str) -> bool {
    media_type.eq_ignore_ascii_case("image/jpeg") || media_type.eq_ignore_ascii_case("image/png")
}

#[cfg(test)]
mod tests {
    use omni_proto::v1::Body;

    use super::*;

    fn photo(content_id: &str, media_type: &str) -> Attachment {
        Attachment {
            name: "photo".into(),
            media_type: media_type.into(),
            size_bytes: 3,
            content: Some(Content::Data(vec![1, 2, 3])),
            inline: true,
            content_id: content_id.into(),
            ..Default::default()
        }
    }

    fn mail(html: &str, files: Vec<Attachment>) -> ConversationEvent {
        ConversationEvent {
            body: Some(Body {
                text: "see the photo".into(),
                html: html.into(),
                ..Default::default()
            }),
            attachments: files,
            ..Default::default()
        }
    }

    fn inline(event: &ConversationEvent) -> Option<InlineHtml> {
        let files: Vec<&Attachment> = event.attachments.iter().collect();
        with_inline_images(event, &files, jpeg_or_png)
    }

    #[test]
    fn a_cid_image_becomes_a_data_url_and_the_rest_is_cleaned() {
        let event = mail(
            r#"<p onclick="x()" style="position:fixed">Broken <b>lid</b>:</p><img alt="lid" src="cid:lid%40mail"><script>alert(1)</script><img src="data:image/png;base64,AAAA"><a href="javascript:x()">x</a><img src="https://tracker.example/p.gif"><img src="//tracker.example/q.gif"><a href="/api/v1/users">me</a><img srcset="https://tracker.example/r.gif 2x"><a href="cid:lid@mail">lid</a><a href="https://shop.example/order/1">order</a>"#,
            vec![photo("other@mail", "image/png"), photo("lid@mail", "image/JPEG")],
        );
        let inline = inline(&event).expect("the image is shown");
        assert_eq!(inline.embedded, vec![1]);
        assert!(
            inline.html.contains(r#"<img alt="lid" src="data:image/jpeg;base64,AQID">"#),
            "{}",
            inline.html
        );
        assert!(inline.html.contains("<p>Broken <b>lid</b>:</p>"), "{}", inline.html);
        assert!(
            inline
                .html
                .contains(r#"<a href="https://shop.example/order/1" rel="noopener noreferrer">order</a>"#),
            "{}",
            inline.html
        );
        for gone in [
            "script",
            "onclick",
            "style",
            "AAAA",
            "javascript",
            "tracker",
            "/api/",
            "srcset",
            r#"href="cid"#,
        ] {
            assert!(!inline.html.contains(gone), "{gone} left in {}", inline.html);
        }
    }

    #[test]
    fn a_cid_naming_no_file_loses_its_source() {
        let event = mail(
            r#"<img alt="logo" src="cid:logo@shop"><img src="CID:lid@mail">"#,
            vec![photo("lid@mail", "image/png")],
        );
        let inline = inline(&event).expect("one image is shown");
        assert_eq!(inline.html, r#"<img alt="logo"><img src="data:image/png;base64,AQID">"#);
    }

    #[test]
    fn nothing_to_show_leaves_the_text() {
        let gif = mail(r#"<img src="cid:a@b">"#, vec![photo("a@b", "image/gif")]);
        assert!(inline(&gif).is_none(), "a type the helpdesk does not embed stays a file");
        let unreferenced = mail("<p>hi</p>", vec![photo("a@b", "image/png")]);
        assert!(inline(&unreferenced).is_none(), "an image the HTML does not show stays a file");
        let mut listed = mail(r#"<img src="cid:a@b">"#, vec![photo("a@b", "image/png")]);
        listed.attachments[0].content = Some(Content::Reference("imap://x".into()));
        assert!(inline(&listed).is_none(), "a file without its bytes cannot be embedded");
        let text_only = mail("", vec![photo("a@b", "image/png")]);
        assert!(inline(&text_only).is_none());
    }

    #[test]
    fn text_is_escaped_with_line_breaks() {
        assert_eq!(text_to_html("a < b & \"c\"\r\nd's"), "a &lt; b &amp; &quot;c&quot;<br>d&#39;s");
    }
}
