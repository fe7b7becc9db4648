//! What a customer's message is about: its language, its problem areas and the order numbers it
//! mentions, filled into the `ConversationEvent` by the normalizer.
//!
//! - **Language**: detected with lingua among the configured languages, from the subject and the
//!   new text (an email reply's own words, not the quote); below the confidence threshold the
//!   channel's declared language stays (often only its software's locale), or none (unknown)
//!   rather than a guess.
//! - **Tags**: every problem area (`returns`, `refunds`, `shipping`, ...) whose lexicon terms
//!   occur in the text, in any configured lexicon language; terms and words are folded and
//!   stemmed per language first (see [`fold`] and [`lexicon`]). The lexicons are configuration:
//!   an operator adds words, languages and tags without code.
//! - **Order numbers**: every match of the shop's configured pattern, Arabic-Indic digits read
//!   as digits.
//!
//! The labelled set under `tests/labelled/` and `tests/accuracy.rs` measure all three.

mod config;
pub mod fold;
mod language;
pub mod lexicon;

use omni_proto::v1::{ConversationEvent, Direction};
use regex::Regex;

pub use config::UnderstandingConfig;
pub use language::detectable;

/// The language is detected on at most this many characters of a text: a few hundred decide it,
/// and lingua's time grows with the length.
const LANGUAGE_CHARS: usize = 600;
/// Tags and order numbers are looked for in at most this many characters: an email's own new
/// text is rarely longer (a pasted log or a whole quoted thread is), and the time grows with it.
const TAG_CHARS: usize = 3000;

/// At most `chars` characters of `text`.
fn head(text: &str, chars: usize) -> &str {
    text.char_indices().nth(chars).map_or(text, |(at, _)| &text[..at])
}

/// What was found in one text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Understood {
    /// ISO 639-1 code and the detector's confidence; `None` when not detected.
    pub language: Option<(String, f64)>,
    /// Problem-area tags, in the lexicon's (alphabetical) order.
    pub tags: Vec<String>,
    /// Order numbers, in the order they occur, each once.
    pub order_numbers: Vec<String>,
}

/// The detector, the compiled lexicons and the order-number pattern.
pub struct Understanding {
    detector: language::Detector,
    lexicon: lexicon::Lexicon,
    order_number: Regex,
}

impl Understanding {
    /// Builds everything from a validated config (loading the language models takes a moment).
    pub fn new(config: &UnderstandingConfig) -> Result<Self, String> {
        Ok(Self {
            detector: language::Detector::new(&config.languages, config.min_confidence, config.min_letters)?,
            lexicon: lexicon::Lexicon::new(&config.lexicon)?,
            order_number: Regex::new(&config.order_number_pattern).map_err(|error| format!("order_number_pattern: {error}"))?,
        })
    }

    /// Language, tags and order numbers of `text`.
    pub fn understand(&self, text: &str) -> Understood {
        let text = ascii_digits(head(text, TAG_CHARS));
        Understood {
            language: self.language(&text),
            tags: self.tags(&text),
            order_numbers: self.order_numbers(&text),
        }
    }

    /// Only the language of `text`, with the detector's confidence.
    pub fn language(&self, text: &str) -> Option<(String, f64)> {
        self.detector.detect(&words_only(head(text, LANGUAGE_CHARS)))
    }

    /// Only the problem-area tags of `text`.
    pub fn tags(&self, text: &str) -> Vec<String> {
        self.lexicon.tags(head(text, TAG_CHARS)).into_iter().map(str::to_owned).collect()
    }

    /// Fills `event`'s language, tags and order numbers from what the customer wrote. A
    /// language the channel declared is a hint: it stays when nothing is detected or the
    /// detection agrees with it, and a confident detection of another language replaces it (an
    /// email's `Content-Language` and Telegram's `language_code` are the customer's software's
    /// locale, not the message's: Outlook sends `en-US` whatever the customer writes). Events the team wrote (direction outbound), calls (their text is
    /// omni's own summary) and events without text are left as they are; `None` then.
    pub fn apply(&self, event: &mut ConversationEvent) -> Option<Understood> {
        if event.direction() == Direction::Outbound || event.call.is_some() {
            return None;
        }
        let body = event.body.as_ref();
        let own = body.map(|b| if b.new_text.trim().is_empty() { &b.text } else { &b.new_text });
        let text = format!("{}\n{}", strip_reply_prefixes(&event.subject), own.map_or("", String::as_str));
        if text.trim().is_empty() {
            return None;
        }
        let understood = self.understand(&text);
        if let Some((language, _)) = &understood.language
            && primary_subtag(&event.language) != *language
        {
            event.language.clone_from(language);
        }
        for tag in &understood.tags {
            if !event.tags.contains(tag) {
                event.tags.push(tag.clone());
            }
        }
        event.order_numbers.clone_from(&understood.order_numbers);
        Some(understood)
    }

    fn order_numbers(&self, text: &str) -> Vec<String> {
        let mut numbers: Vec<String> = Vec::new();
        for captures in self.order_number.captures_iter(text) {
            let groups: Vec<&str> = captures.iter().skip(1).flatten().map(|m| m.as_str()).collect();
            let whole = captures.get(0).map(|m| m.as_str());
            let found = if self.order_number.captures_len() > 1 {
                groups
            } else {
                whole.into_iter().collect()
            };
            for number in found {
                if !number.is_empty() && !numbers.iter().any(|n| n == number) {
                    numbers.push(number.to_owned());
                }
            }
        }
        numbers
    }
}

/// The language part of a BCP 47 tag or a list of them, lowercase (`tr-TR`, `tr, en`: `tr`).
fn primary_subtag(tag: &str) -> String {
    tag.split([',', '-', '_']).next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// `text` with Arabic-Indic and Persian digits as ASCII digits.
fn ascii_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            c => c,
        })
        .collect()
}

/// The text without addresses, links and numbers, which say nothing about its language.
fn words_only(text: &str) -> String {
    text.split_whitespace()
        .filter(|word| !word.contains('@') && !word.contains("://") && !word.starts_with("www."))
        .filter(|word| word.chars().any(char::is_alphabetic))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A subject without the `Re:`/`Fwd:` a client put in front (in any of the usual languages).
fn strip_reply_prefixes(subject: &str) -> &str {
    let mut rest = subject.trim_start();
    loop {
        let Some((head, tail)) = rest.split_once(':') else {
            return rest;
        };
        let head = head.trim().to_lowercase();
        if !matches!(
            head.as_str(),
            "re" | "fw" | "fwd" | "aw" | "wg" | "sv" | "vs" | "ynt" | "ilt" | "tr" | "rv" | "antw" | "doorst"
        ) {
            return rest;
        }
        rest = tail.trim_start();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use omni_proto::v1::{Body, CallData};

    use super::*;

    fn understanding() -> Understanding {
        let mut lexicon: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        lexicon
            .entry("returns".into())
            .or_default()
            .insert("tr".into(), vec!["iade*".into()]);
        lexicon
            .entry("returns".into())
            .or_default()
            .insert("en".into(), vec!["return".into()]);
        lexicon
            .entry("shipping".into())
            .or_default()
            .insert("en".into(), vec!["delivery".into()]);
        Understanding::new(&UnderstandingConfig {
            enabled: true,
            languages: vec!["en".into(), "tr".into(), "nl".into()],
            min_confidence: 0.45,
            min_letters: 4,
            order_number_pattern: r"#(\d{6,9})\b".into(),
            lexicon,
        })
        .unwrap()
    }

    fn event(subject: &str, text: &str, new_text: &str) -> ConversationEvent {
        ConversationEvent {
            direction: Direction::Inbound as i32,
            subject: subject.into(),
            body: Some(Body {
                text: text.into(),
                new_text: new_text.into(),
                ..Default::default()
            }),
            tags: vec!["auto-reply".into()],
            ..Default::default()
        }
    }

    #[test]
    fn an_email_is_understood_from_its_subject_and_new_text_not_the_quote() {
        let quote = "> On Monday you wrote: your delivery #1234567 is on its way, return it if you like";
        let mut event = event(
            "Re: iade",
            &format!("Ürünü iade etmek istiyorum, #7654321 numaralı siparişim.\n{quote}"),
            "Ürünü iade etmek istiyorum, #7654321 numaralı siparişim.",
        );
        let understood = understanding().apply(&mut event).unwrap();
        assert_eq!(understood.language.map(|(l, _)| l).as_deref(), Some("tr"));
        assert_eq!(event.language, "tr");
        // The adapter's tag stays; the quote's `delivery` and order number do not count.
        assert_eq!(event.tags, ["auto-reply", "returns"]);
        assert_eq!(event.order_numbers, ["7654321"]);
    }

    #[test]
    fn a_declared_language_is_a_hint_and_outbound_events_and_calls_are_left_alone() {
        // A client's locale against a confident detection: the text's language wins.
        let mut declared = event("", "I would like to return these shoes please", "");
        declared.language = "nl-BE".into();
        understanding().apply(&mut declared).unwrap();
        assert_eq!((declared.language.as_str(), declared.tags.len()), ("en", 2));
        // The same language, more precisely declared, or nothing detected: the declaration stays.
        let mut agrees = event("", "Ik wil deze schoenen graag terugsturen, ze passen niet", "");
        agrees.language = "nl-BE".into();
        understanding().apply(&mut agrees).unwrap();
        assert_eq!(agrees.language, "nl-BE");
        let mut short = event("", "ok", "");
        short.language = "tr".into();
        understanding().apply(&mut short).unwrap();
        assert_eq!(short.language, "tr");

        let mut outbound = event("", "Your delivery is late, we will return your money", "");
        outbound.direction = Direction::Outbound as i32;
        assert_eq!(understanding().apply(&mut outbound), None);
        assert_eq!((outbound.language.as_str(), outbound.tags.len()), ("", 1));

        let mut call = event("", "Missed call from +905551112233 about a delivery", "");
        call.call = Some(CallData::default());
        assert_eq!(understanding().apply(&mut call), None);
    }

    #[test]
    fn reply_prefixes_go_from_the_subject() {
        assert_eq!(strip_reply_prefixes("Re: Fwd: iade talebi"), "iade talebi");
        assert_eq!(strip_reply_prefixes("YNT: sipariş"), "sipariş");
        assert_eq!(strip_reply_prefixes("Order: 4829113"), "Order: 4829113");
    }

    #[test]
    fn head_cuts_on_characters() {
        assert_eq!(head("iadeş", 5), "iadeş");
        assert_eq!(head("iadeş", 4), "iade");
        assert_eq!(head("طلب", 2), "طل");
    }

    #[test]
    fn eastern_digits_read_as_digits() {
        assert_eq!(ascii_digits("رقم ٤٨٢٩١١٣ و ۱۲"), "رقم 4829113 و 12");
    }

    #[test]
    fn links_addresses_and_numbers_are_not_language() {
        assert_eq!(words_only("zie https://x.example/a jan@x.nl 4829113 bedankt"), "zie bedankt");
    }
}
