//! HTML for the helpdesks that take it.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_with_line_breaks() {
        assert_eq!(text_to_html("a < b & \"c\"\r\nd's"), "a &lt; b &amp; &quot;c&quot;<br>d&#39;s");
    }
}
