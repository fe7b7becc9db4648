//! The acknowledgement's text: the customer's language's template, the ticket number, the
//! expected first answer, and the help articles of the message's problem areas.

use std::collections::BTreeMap;

use crate::config::Template;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 2] = ["ticket", "expected"];

/// The `{name}` placeholders of a template, in order (`{{` and `}}` are not looked at: a
/// template has no use for braces otherwise).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        found.push(&after[..close]);
        rest = &after[close + 1..];
    }
    found
}

/// The language whose template answers a customer who wrote in `language` (a BCP 47 tag, maybe
/// empty): its primary subtag when there is a template for it, else `default`.
pub fn template_language<'a>(templates: &'a BTreeMap<String, Template>, language: &str, default: &'a str) -> &'a str {
    // `tr-TR`, `tr_TR`, and a list (`tr, en`: its first).
    let primary = language
        .split([',', '-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    templates.get_key_value(&primary).map_or(default, |(key, _)| key.as_str())
}

/// The help links for a message's tags, in `language` (else `default`), each once, in tag order.
pub fn article_links<'a>(
    articles: &'a BTreeMap<String, BTreeMap<String, String>>,
    tags: &[String],
    language: &str,
    default: &str,
) -> Vec<&'a str> {
    let mut links: Vec<&str> = Vec::new();
    for tag in tags {
        let Some(by_language) = articles.get(tag) else { continue };
        if let Some(link) = by_language.get(language).or_else(|| by_language.get(default))
            && !links.contains(&link.as_str())
        {
            links.push(link);
        }
    }
    links
}

/// The text the customer reads.
pub fn render(template: &Template, ticket: &str, expected: &str, links: &[&str]) -> String {
    let mut text = template
        .text
        .replace("{ticket}", ticket)
        .replace("{expected}", expected)
        .trim_end()
        .to_owned();
    if !links.is_empty() {
        text.push_str("\n\n");
        text.push_str(template.articles_intro.trim_end());
        for link in links {
            text.push_str("\n- ");
            text.push_str(link);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Template {
        Template {
            text: text.into(),
            time_format: "%d.%m.%Y %H:%M".into(),
            articles_intro: "Belki bunlar yardımcı olur:".into(),
        }
    }

    #[test]
    fn placeholders_are_found_in_order() {
        assert_eq!(placeholders("#{ticket} by {expected}."), ["ticket", "expected"]);
        assert_eq!(placeholders("no braces"), Vec::<&str>::new());
        assert_eq!(placeholders("{tikcet} {"), ["tikcet"]);
    }

    #[test]
    fn the_customers_language_is_used_when_there_is_a_template_for_it() {
        let templates: BTreeMap<String, Template> = [("en", template("x")), ("tr", template("y"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(template_language(&templates, "tr-TR", "en"), "tr");
        assert_eq!(template_language(&templates, "TR", "en"), "tr");
        assert_eq!(template_language(&templates, "tr, en", "en"), "tr");
        assert_eq!(template_language(&templates, "de", "en"), "en");
        assert_eq!(template_language(&templates, "", "en"), "en");
    }

    #[test]
    fn links_follow_the_tags_in_the_language_or_the_default() {
        let mut articles: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        articles
            .entry("returns".into())
            .or_default()
            .insert("tr".into(), "https://s/tr/iade".into());
        articles
            .entry("returns".into())
            .or_default()
            .insert("en".into(), "https://s/en/returns".into());
        articles
            .entry("tracking".into())
            .or_default()
            .insert("en".into(), "https://s/en/track".into());
        let tags = ["tracking".to_owned(), "returns".to_owned(), "auto".to_owned()];
        assert_eq!(
            article_links(&articles, &tags, "tr", "en"),
            ["https://s/en/track", "https://s/tr/iade"]
        );
        assert_eq!(article_links(&articles, &tags[2..], "tr", "en"), Vec::<&str>::new());
    }

    #[test]
    fn the_text_names_ticket_time_and_links() {
        let text = render(
            &template("Talebiniz #{ticket} alındı; en geç {expected} yanıtlayacağız.\n"),
            "12",
            "07.12.2026 10:00",
            &["https://s/tr/iade"],
        );
        assert_eq!(
            text,
            "Talebiniz #12 alındı; en geç 07.12.2026 10:00 yanıtlayacağız.\n\nBelki bunlar yardımcı olur:\n- https://s/tr/iade"
        );
        assert_eq!(render(&template("#{ticket}"), "7", "", &[]), "#7");
    }
}
