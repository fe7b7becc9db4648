//! Separating what the sender wrote this time from the quoted history and the signature.
//!
//! Mail clients quote in a few recognisable ways: `>`-prefixed lines, an attribution line
//! ("On … wrote:", "Op … schreef …:", "… tarihinde … yazdı:", "Am … schrieb …:", "Le … a écrit :",
//! "… كتب:"), an Outlook header block ("-----Original Message-----", "From: … Sent: …"), and
//! the signature separator "-- ". The new text is everything above the first of these; when that
//! would leave nothing, the whole text is kept. So is it when the sender wrote below or between
//! quoted lines (an interleaved or bottom-posted answer): every line they wrote reaches the
//! helpdesk, with the quotes that give it sense, rather than only the attribution line.

/// The text above the first quote or signature marker.
pub fn new_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .enumerate()
        .position(|(index, line)| starts_history(line, lines.get(index + 1).copied()))
        .unwrap_or(lines.len());
    let forwarded = lines.iter().take(cut + 1).any(|line| is_forward_marker(line));
    if forwarded || answers_among_quotes(&lines[cut..]) {
        return text.trim().to_owned();
    }
    let kept = lines[..cut].join("\n");
    let kept = kept.trim();
    if kept.is_empty() { text.trim().to_owned() } else { kept.to_owned() }
}

/// Whether the line opens a message forwarded inline ("---------- Forwarded message ---------",
/// Apple Mail's "Begin forwarded message:", and the same in Dutch, Turkish, German and Arabic):
/// what follows is what the sender sends now, not history to cut.
fn is_forward_marker(line: &str) -> bool {
    let phrase = line
        .trim()
        .trim_matches(|c: char| c == '-' || c == ':' || c.is_whitespace())
        .to_lowercase();
    [
        "forwarded message",
        "begin forwarded message",
        "doorgestuurd bericht",
        "begin doorgestuurd bericht",
        "yönlendirilen ileti",
        "iletilen ileti",
        "weitergeleitete nachricht",
        "الرسالة المعاد توجيهها",
        "رسالة معاد توجيهها",
    ]
    .contains(&phrase.as_str())
}

/// Whether a line of the sender's own follows a `>`-quoted line in `history` (before a
/// signature, which ends what they wrote).
fn answers_among_quotes(history: &[&str]) -> bool {
    let mut quoted = false;
    for (index, line) in history.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('>') {
            quoted = true;
        } else if *line == "-- " || trimmed == "--" {
            return false;
        } else if quoted && !trimmed.is_empty() && !starts_history(line, history.get(index + 1).copied()) {
            return true;
        }
    }
    false
}

fn starts_history(line: &str, next: Option<&str>) -> bool {
    let trimmed = line.trim();
    if line == "-- " || trimmed == "--" || trimmed.starts_with('>') {
        return true;
    }
    let lower = trimmed.to_lowercase();
    if lower.starts_with("-----original message-----")
        || lower.starts_with("-----oorspronkelijk bericht-----")
        || lower.starts_with("________________________________")
    {
        return true;
    }
    // Outlook: "From: …" followed by "Sent: …" / "Date: …".
    if (lower.starts_with("from:") || lower.starts_with("van:") || lower.starts_with("kimden:"))
        && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            n.starts_with("sent:") || n.starts_with("date:") || n.starts_with("verzonden:") || n.starts_with("gönderildi:")
        })
    {
        return true;
    }
    // An attribution line ends with ':' and names the quoting verb, whatever sits between
    // ("schreef Klantenservice <k@shop.example>:").
    let names_verb = [
            "wrote",
            "schreef",
            "schrieb",
            "a écrit",
            "yazdı",
            "yazmış",
            "geschreven",
            "のメッセージ",
            "書きました",
            "escribió",
        ]
        .iter()
        .any(|verb| lower.contains(verb))
        // Arabic "wrote" (كتب, كتبت) as a word of its own: "مكتب" (office) contains it.
        || lower.split(|c: char| !c.is_alphanumeric()).any(|word| word == "كتب" || word == "كتبت");
    lower.ends_with(':') && names_verb && trimmed.chars().count() < 300
}

#[cfg(test)]
mod tests {
    use super::new_text;

    #[test]
    fn quoted_history_and_signature_are_cut() {
        let text = "Hi,\n\nI want size L.\n\n-- \nMaria\n\nOn Sat, 14 Nov 2026, Shop <s@shop.example> wrote:\n> Thanks";
        assert_eq!(new_text(text), "Hi,\n\nI want size L.");
    }

    #[test]
    fn attribution_lines_in_several_languages() {
        for attribution in [
            "Op 15 nov. 2026 om 10:00 schreef Klantenservice <k@shop.example>:",
            "15 Kas 2026 Pzt, 10:00 tarihinde Destek <d@shop.example> şunu yazdı:",
            "Am 15.11.2026 um 10:00 schrieb Kundendienst:",
            "Le 15 nov. 2026 à 10:00, Service client a écrit :",
        ] {
            let text = format!("Nieuw bericht.\n\n{attribution}\nOud bericht.");
            assert_eq!(new_text(&text), "Nieuw bericht.", "{attribution}");
        }
    }

    #[test]
    fn outlook_header_blocks_are_cut() {
        let text = "Please cancel.\r\n\r\nFrom: Shop Support\r\nSent: Friday, 13 November 2026\r\nSubject: Order";
        assert_eq!(new_text(&text.replace("\r\n", "\n")), "Please cancel.");
        assert_eq!(new_text("Yes.\n-----Original Message-----\nold"), "Yes.");
    }

    #[test]
    fn answers_between_or_below_quotes_keep_the_whole_text() {
        let interleaved = "Ayşe Hanım,\n\n20 Kas 2026 tarihinde Destek <d@shop.example> şunu yazmıştı:\n> Sipariş numaranız nedir?\n1042.\n> Ürünü iade etmek mi istiyorsunuz?\nEvet, iade.\n\n-- \nAyşe";
        assert_eq!(new_text(interleaved), interleaved.trim());
        let bottom = "Op 20 nov. 2026 schreef Klantenservice:\n> Welke maat?\n\nMaat L graag.";
        assert_eq!(new_text(bottom), bottom);
        // Quotes, then only a signature: the answer is above.
        assert_eq!(new_text("Yes.\n\nOn Fri, Shop wrote:\n> Cancel?\n\n-- \nMaria"), "Yes.");
        // An Arabic line about the office (مكتب) ending in a colon is no attribution.
        let office = "الطرد وصل إلى المكتب:\nلكن العلبة مكسورة.";
        assert_eq!(new_text(office), office);
        assert_eq!(
            new_text("نعم.\n\nفي 20 نوفمبر 2026، كتب المتجر <s@shop.example>:\n> هل تريد الإلغاء؟"),
            "نعم."
        );
    }

    #[test]
    fn a_message_forwarded_inline_is_kept_whole() {
        let gmail = "See below.\n\n---------- Forwarded message ---------\nFrom: Parcelway <no-reply@parcelway.example>\nDate: Fri, 20 Nov 2026\nSubject: Missed delivery\n\nWe missed you.";
        assert_eq!(new_text(gmail), gmail);
        let apple = "FYI\n\nBegin forwarded message:\n\nFrom: Shop <s@shop.example>\nDate: 20 November 2026\n\nRefund sent.";
        assert_eq!(new_text(apple), apple);
    }

    #[test]
    fn a_message_that_is_only_a_quote_is_kept_whole() {
        assert_eq!(new_text("> forwarded text\n> more"), "> forwarded text\n> more");
        assert_eq!(new_text("No quote at all.\nSecond line."), "No quote at all.\nSecond line.");
    }
}
