//! Text into comparable words: case, diacritics and letter variants folded, per language.
//!
//! Every word of a message and every lexicon term goes through the same steps, so a lexicon
//! written with proper letters matches a customer who typed without them (`siparis` is
//! `sipariş`, `أرجاع` is `ارجاع`) and the other way round:
//!
//! 1. lowercase by the language's rules: in Turkish and Azerbaijani `I` is `ı` and `İ` is `i`;
//!    elsewhere `İ` is `i` too (a Turkish name in an English sentence);
//! 2. the stem, by the language's Snowball stemmer when `rust-stemmers` has one, so
//!    `returned`/`returns`, `bestellingen`/`bestelling`, `siparişler`/`sipariş`, `طلبات`/`طلب`
//!    meet;
//! 3. folded: Unicode canonical decomposition with the combining marks dropped (accents, Arabic
//!    harakat and the hamza on alef, waw and yeh), Turkish `ı` as `i`, Arabic tatweel dropped,
//!    `ى` as `ي` and `ة` as `ه`.
//!
//! Arabic words also get their forms without the attached conjunction, preposition and article
//! (`وال`, `بال`, `لل`, `ال`, ...), as alternatives to the whole word, so `بالبطاقة` meets
//! `بطاقة` while `بطاقة` itself still meets `بطاقة`.

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_segmentation::UnicodeSegmentation;

/// How one language's words are made comparable.
pub(crate) struct Folder {
    turkic: bool,
    arabic: bool,
    stemmer: Option<Stemmer>,
}

/// One word of a message, ready to compare.
#[derive(Debug)]
pub(crate) struct Word {
    /// The folded word, then its forms without attached prefixes (Arabic).
    pub forms: Vec<String>,
    /// The folded stem; empty when the language has no stemmer.
    pub stem: String,
}

impl Folder {
    /// The folder for an ISO 639-1 language code; any code works, a language without a Snowball
    /// stemmer is only folded.
    pub fn new(language: &str) -> Self {
        let algorithm = match language {
            "ar" => Some(Algorithm::Arabic),
            "da" => Some(Algorithm::Danish),
            "de" => Some(Algorithm::German),
            "el" => Some(Algorithm::Greek),
            "en" => Some(Algorithm::English),
            "es" => Some(Algorithm::Spanish),
            "fi" => Some(Algorithm::Finnish),
            "fr" => Some(Algorithm::French),
            "hu" => Some(Algorithm::Hungarian),
            "it" => Some(Algorithm::Italian),
            "nl" => Some(Algorithm::Dutch),
            "no" | "nb" => Some(Algorithm::Norwegian),
            "pt" => Some(Algorithm::Portuguese),
            "ro" => Some(Algorithm::Romanian),
            "ru" => Some(Algorithm::Russian),
            "sv" => Some(Algorithm::Swedish),
            "ta" => Some(Algorithm::Tamil),
            "tr" => Some(Algorithm::Turkish),
            _ => None,
        };
        Self {
            turkic: matches!(language, "tr" | "az"),
            arabic: language == "ar",
            stemmer: algorithm.map(Stemmer::create),
        }
    }

    /// The words of `text`, in order.
    pub fn words(&self, text: &str) -> Vec<Word> {
        text.unicode_words().map(|word| self.word(word)).collect()
    }

    /// One word (a lexicon term's word is folded the same way). A word in the other script
    /// (Latin for Arabic, Arabic for the others) is only folded: no stem, no prefixes.
    pub fn word(&self, word: &str) -> Word {
        let lower = self.lowercase(word);
        let folded = fold(&lower);
        let own_script = word.chars().any(is_arabic) == self.arabic;
        let stem = match &self.stemmer {
            Some(stemmer) if own_script => fold(&stemmer.stem(&lower)),
            _ => String::new(),
        };
        let mut forms = vec![folded];
        if self.arabic && own_script {
            forms.extend(arabic_without_prefixes(&forms[0]));
        }
        Word { forms, stem }
    }

    fn lowercase(&self, word: &str) -> String {
        word.chars()
            .flat_map(|c| match c {
                'İ' => 'i'.to_lowercase(),
                'I' if self.turkic => 'ı'.to_lowercase(),
                c => c.to_lowercase(),
            })
            .collect()
    }
}

/// Whether `c` is an Arabic letter (the Arabic block and its supplement).
fn is_arabic(c: char) -> bool {
    matches!(c, '\u{0600}'..='\u{06FF}' | '\u{0750}'..='\u{077F}')
}

/// Canonical decomposition without combining marks, and the letter variants folded.
pub(crate) fn fold(text: &str) -> String {
    text.nfd()
        .filter(|&c| !is_combining_mark(c))
        .filter_map(|c| match c {
            'ı' => Some('i'),
            // A phone's typographic apostrophe is the lexicon's plain one (`where’s`).
            '\u{2019}' => Some('\''),
            'ـ' => None,
            'ى' => Some('ي'),
            'ة' => Some('ه'),
            c => Some(c),
        })
        .collect()
}

/// The conjunctions (`و`, `ف`), prepositions (`ب`, `ل`, `ك`) and the article (`ال`) Arabic
/// attaches to a word, outermost first.
const CONJUNCTIONS: [&str; 2] = ["و", "ف"];
const PREPOSITIONS: [&str; 3] = ["ب", "ل", "ك"];
const ARTICLE: &str = "ال";

/// `word`'s forms without attached prefixes that leave at least three letters, most stripped
/// last: `وبالطلب` gives `بالطلب`, `الطلب`, `طلب`.
fn arabic_without_prefixes(word: &str) -> Vec<String> {
    let mut forms: Vec<String> = Vec::new();
    let mut push = |rest: &str| {
        if rest.chars().count() >= 3 && rest != word && !forms.iter().any(|f| f == rest) {
            forms.push(rest.to_owned());
        }
    };
    let after_conjunction: Vec<&str> = std::iter::once(word)
        .chain(CONJUNCTIONS.iter().filter_map(|c| word.strip_prefix(c)))
        .collect();
    for rest in after_conjunction {
        push(rest);
        // `لل` is `ل` + `ال` with the alef dropped.
        if let Some(noun) = rest.strip_prefix("لل") {
            push(noun);
        }
        for after in std::iter::once(rest).chain(PREPOSITIONS.iter().filter_map(|p| rest.strip_prefix(p))) {
            push(after);
            if let Some(noun) = after.strip_prefix(ARTICLE) {
                push(noun);
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(language: &str, word: &str) -> String {
        Folder::new(language).word(word).forms.remove(0)
    }

    #[test]
    fn turkish_case_and_letters_fold_to_what_a_plain_keyboard_types() {
        assert_eq!(form("tr", "İADE"), "iade");
        assert_eq!(form("tr", "IŞIK"), "isik");
        assert_eq!(form("tr", "siparişimi"), "siparisimi");
        assert_eq!(form("tr", "değişim"), "degisim");
        // Elsewhere `I` is `i`, and a dotted capital is still `i`.
        assert_eq!(form("en", "INVOICE"), "invoice");
        assert_eq!(form("en", "İstanbul"), "istanbul");
    }

    #[test]
    fn accents_go_and_stems_meet() {
        assert_eq!(form("fr", "remboursé"), "rembourse");
        let dutch = Folder::new("nl");
        assert_eq!(dutch.word("bestellingen").stem, dutch.word("bestelling").stem);
        let english = Folder::new("en");
        assert_eq!(english.word("returned").stem, english.word("returns").stem);
    }

    #[test]
    fn arabic_variants_tatweel_and_harakat_fold() {
        assert_eq!(form("ar", "إرجاع"), form("ar", "ارجاع"));
        assert_eq!(form("ar", "أرجاع"), "ارجاع");
        assert_eq!(form("ar", "طـــلب"), "طلب");
        assert_eq!(form("ar", "طَلَبِي"), "طلبي");
        assert_eq!(form("ar", "فاتورة"), "فاتوره");
        assert_eq!(form("ar", "مستشفى"), "مستشفي");
    }

    #[test]
    fn arabic_prefixes_are_alternatives_not_replacements() {
        let word = Folder::new("ar").word("وبالبطاقة");
        assert_eq!(word.forms[0], "وبالبطاقه");
        assert!(word.forms.iter().any(|f| f == "بطاقه"), "{:?}", word.forms);
        let word = Folder::new("ar").word("للاسترجاع");
        assert!(word.forms.iter().any(|f| f == "استرجاع"), "{:?}", word.forms);
        // A word that only starts like a prefix keeps its whole form first.
        let word = Folder::new("ar").word("بطاقة");
        assert_eq!(word.forms[0], "بطاقه");
    }
}
