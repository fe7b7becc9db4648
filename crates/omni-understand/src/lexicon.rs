//! Problem-area lexicons: terms per tag and language, matched against a message's words.
//!
//! A term is one or more words, matched in order on adjacent words of the message:
//! - a plain word matches a word with the same folded form or the same stem (`return` matches
//!   `returned`, `returning`); a Latin word of three letters or fewer by its form only (the
//!   stem of `ups` is `up`);
//! - `iade*` matches a word that starts with `iade` (Turkish suffixes: `iadesini`,
//!   `iadem`), `*kaart` one that ends with `kaart` (Dutch compounds: `cadeaukaart`), `*punt*`
//!   one that contains `punt`;
//! - `...` between two words lets up to three other words stand between them (`send ... back`
//!   matches `send the shoes back`).
//!
//! Every word of a term is split and folded like the message's words (see [`crate::fold`]):
//! `e-gift` is the two words `e gift`, and terms are written the way a dictionary spells them.

use std::collections::{BTreeMap, HashMap};

use unicode_segmentation::UnicodeSegmentation;

use crate::fold::{Folder, Word, fold};

/// Most words `...` lets stand between two words of a term.
const GAP: usize = 3;

/// One word of a term.
#[derive(Debug)]
enum Pattern {
    /// A whole word: its folded form and its stem.
    Word {
        form: String,
        stem: String,
    },
    Prefix(String),
    Suffix(String),
    Infix(String),
    /// `...`: up to [`GAP`] words.
    Gap,
}

impl Pattern {
    fn matches(&self, word: &Word) -> bool {
        match self {
            Self::Word { form, stem } => word.forms.iter().any(|f| f == form) || (!stem.is_empty() && *stem == word.stem),
            Self::Prefix(prefix) => word.forms.iter().any(|f| f.starts_with(prefix.as_str())),
            Self::Suffix(suffix) => word.forms.iter().any(|f| f.ends_with(suffix.as_str())),
            Self::Infix(part) => word.forms.iter().any(|f| f.contains(part.as_str())),
            Self::Gap => false,
        }
    }
}

/// A term and the tag it gives.
#[derive(Debug)]
struct Term {
    tag: usize,
    patterns: Vec<Pattern>,
}

impl Term {
    /// Where a match of `patterns` starting at `at` ends (exclusive), if there is one.
    fn match_end(patterns: &[Pattern], words: &[Word], at: usize) -> Option<usize> {
        let Some((first, rest)) = patterns.split_first() else {
            return Some(at);
        };
        match first {
            Pattern::Gap => (at..=(at + GAP).min(words.len())).find_map(|next| Self::match_end(rest, words, next)),
            pattern => {
                if words.get(at).is_some_and(|word| pattern.matches(word)) {
                    Self::match_end(rest, words, at + 1)
                } else {
                    None
                }
            }
        }
    }
}

/// One language's terms and how its words are folded, with the terms indexed by their first
/// word so a message's word is tried only against the terms that can start there.
struct Language {
    folder: Folder,
    terms: Vec<Term>,
    /// First word's folded form and stem -> terms.
    by_word: HashMap<String, Vec<usize>>,
    /// First word's prefix (`iade*`) -> terms.
    by_prefix: HashMap<String, Vec<usize>>,
    /// First word's suffix (`*kaart`) -> terms.
    by_suffix: HashMap<String, Vec<usize>>,
    /// Terms starting with an infix (`*punt*`): tried everywhere.
    anywhere: Vec<usize>,
}

impl Language {
    fn new(language: &str) -> Self {
        Self {
            folder: Folder::new(language),
            terms: Vec::new(),
            by_word: HashMap::new(),
            by_prefix: HashMap::new(),
            by_suffix: HashMap::new(),
            anywhere: Vec::new(),
        }
    }

    fn add(&mut self, term: Term) {
        let index = self.terms.len();
        match &term.patterns[0] {
            Pattern::Word { form, stem } => {
                self.by_word.entry(form.clone()).or_default().push(index);
                if !stem.is_empty() && stem != form {
                    self.by_word.entry(stem.clone()).or_default().push(index);
                }
            }
            Pattern::Prefix(prefix) => self.by_prefix.entry(prefix.clone()).or_default().push(index),
            Pattern::Suffix(suffix) => self.by_suffix.entry(suffix.clone()).or_default().push(index),
            Pattern::Infix(_) | Pattern::Gap => self.anywhere.push(index),
        }
        self.terms.push(term);
    }

    /// The terms that may start at `word` (their first word can match it), each once.
    fn candidates(&self, word: &Word, into: &mut Vec<usize>) {
        into.clear();
        into.extend_from_slice(&self.anywhere);
        for key in word.forms.iter().chain(std::iter::once(&word.stem)) {
            if let Some(terms) = self.by_word.get(key) {
                into.extend_from_slice(terms);
            }
        }
        for form in &word.forms {
            for (at, _) in form.char_indices() {
                // `form[at..]` is each suffix; `form[..end]` each prefix (the whole word too).
                let end = form[at..].chars().next().map_or(form.len(), |c| at + c.len_utf8());
                for (map, key) in [(&self.by_suffix, &form[at..]), (&self.by_prefix, &form[..end])] {
                    if let Some(terms) = map.get(key) {
                        into.extend_from_slice(terms);
                    }
                }
            }
        }
        into.sort_unstable();
        into.dedup();
    }
}

/// Every tag's terms in every language, ready to match.
pub(crate) struct Lexicon {
    tags: Vec<String>,
    languages: Vec<Language>,
}

impl Lexicon {
    /// Compiles `tag -> language -> terms`; a term that folds to nothing is an error naming it.
    pub fn new(lexicon: &BTreeMap<String, BTreeMap<String, Vec<String>>>) -> Result<Self, String> {
        let tags: Vec<String> = lexicon.keys().cloned().collect();
        let mut languages: BTreeMap<&str, Language> = BTreeMap::new();
        for (tag_index, (tag, by_language)) in lexicon.iter().enumerate() {
            for (language, terms) in by_language {
                let entry = languages.entry(language).or_insert_with(|| Language::new(language));
                for term in terms {
                    let patterns = compile(&entry.folder, term).ok_or_else(|| format!("{tag}.{language}: term `{term}` has no word"))?;
                    entry.add(Term { tag: tag_index, patterns });
                }
            }
        }
        Ok(Self {
            tags,
            languages: languages.into_values().collect(),
        })
    }

    /// The tags whose terms occur in `text`, in the lexicon's (alphabetical) order. Every
    /// language's terms are tried, each on the text folded by its own rules: a Dutch customer
    /// who writes "refund" still gets `refunds`. A match that lies inside a longer match of
    /// another tag does not count: in "para iadesi" (refund) the word "iadesi" alone (return)
    /// is part of the longer term.
    pub fn tags(&self, text: &str) -> Vec<&str> {
        // (tag, first word, end): word positions are the same in every language, since words
        // are split the same way before each language folds them.
        let mut matches: Vec<(usize, usize, usize)> = Vec::new();
        let mut candidates = Vec::new();
        for language in &self.languages {
            let words = language.folder.words(text);
            for (at, word) in words.iter().enumerate() {
                language.candidates(word, &mut candidates);
                for &index in &candidates {
                    let term = &language.terms[index];
                    if let Some(end) = Term::match_end(&term.patterns, &words, at) {
                        matches.push((term.tag, at, end));
                    }
                }
            }
        }
        let inside_longer = |&(tag, start, end): &(usize, usize, usize)| {
            matches
                .iter()
                .any(|&(other, s, e)| other != tag && s <= start && end <= e && e - s > end - start)
        };
        let mut found = vec![false; self.tags.len()];
        for m in matches.iter().filter(|m| !inside_longer(m)) {
            found[m.0] = true;
        }
        self.tags
            .iter()
            .zip(found)
            .filter_map(|(tag, found)| found.then_some(tag.as_str()))
            .collect()
    }
}

/// A term's patterns, or `None` when it has no word. Each part between spaces is split into
/// words the way a message is (`e-gift` is `e` then `gift`), a leading `*` belonging to its
/// first word and a trailing one to its last.
fn compile(folder: &Folder, term: &str) -> Option<Vec<Pattern>> {
    let mut patterns = Vec::new();
    for part in term.split_whitespace() {
        if part == "..." {
            patterns.push(Pattern::Gap);
            continue;
        }
        let (starts, ends) = (part.starts_with('*'), part.ends_with('*'));
        let words: Vec<&str> = part.trim_matches('*').unicode_words().collect();
        let last = words.len().saturating_sub(1);
        for (index, word) in words.iter().enumerate() {
            patterns.push(pattern(folder, word, starts && index == 0, ends && index == last));
        }
    }
    // A gap at either end matches nothing more than the words without it.
    while matches!(patterns.last(), Some(Pattern::Gap)) {
        patterns.pop();
    }
    while matches!(patterns.first(), Some(Pattern::Gap)) {
        patterns.remove(0);
    }
    (!patterns.is_empty()).then_some(patterns)
}

/// Latin-script words shorter than this match by their form only: their stems collide with
/// common words (the English stem of `ups` is `up`, as in "sign up"). Arabic keeps its stems:
/// its words are built on three-letter roots (`وين`, `طلب`).
const SHORTEST_STEMMED: usize = 4;

/// One word of a term: a whole word (by form, and by stem when long enough), or a prefix,
/// suffix or infix (`iade*`, `*kaart`, `*punt*`).
fn pattern(folder: &Folder, word: &str, starts: bool, ends: bool) -> Pattern {
    let folded = || fold(&folder.word(word).forms[0]);
    match (starts, ends) {
        (false, false) => {
            let word = folder.word(word);
            let form = word.forms.into_iter().next().unwrap_or_default();
            let short_latin = form.is_ascii() && form.chars().count() < SHORTEST_STEMMED;
            let stem = if short_latin { String::new() } else { word.stem };
            Pattern::Word { form, stem }
        }
        (false, true) => Pattern::Prefix(folded()),
        (true, false) => Pattern::Suffix(folded()),
        (true, true) => Pattern::Infix(folded()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon(entries: &[(&str, &str, &[&str])]) -> Lexicon {
        let mut map: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (tag, language, terms) in entries {
            map.entry((*tag).into())
                .or_default()
                .insert((*language).into(), terms.iter().map(|t| (*t).to_owned()).collect());
        }
        Lexicon::new(&map).unwrap()
    }

    #[test]
    fn words_stems_and_wildcards_match() {
        let lexicon = lexicon(&[
            ("returns", "en", &["return", "send ... back"]),
            ("returns", "tr", &["iade*"]),
            ("cards", "nl", &["*kaart"]),
            ("refunds", "en", &["money back"]),
        ]);
        assert_eq!(lexicon.tags("I returned the shoes"), ["returns"]);
        assert_eq!(lexicon.tags("can I send the red shoes back"), ["returns"]);
        assert_eq!(lexicon.tags("İADESİNİ nasıl yaparım"), ["returns"]);
        assert_eq!(lexicon.tags("iadesini nasil yaparim"), ["returns"]);
        assert_eq!(lexicon.tags("mijn cadeaukaart werkt niet"), ["cards"]);
        assert_eq!(lexicon.tags("mijn cadeaukaartjes: één werkt niet"), Vec::<&str>::new());
        assert_eq!(lexicon.tags("çok güzel kaart"), ["cards"]);
        assert_eq!(lexicon.tags("I want my money back, I returned it"), ["refunds", "returns"]);
        assert!(lexicon.tags("send me the invoice, I am back home").is_empty());
        // A phrase needs its words adjacent.
        assert!(lexicon.tags("money is tight, back soon").is_empty());
    }

    #[test]
    fn terms_split_like_messages_and_short_words_match_by_form_only() {
        let lexicon = lexicon(&[
            ("cards", "en", &["e-gift"]),
            ("tracking", "en", &["where's my"]),
            ("shipping", "en", &["ups"]),
        ]);
        assert_eq!(lexicon.tags("my E-Gift code fails"), ["cards"]);
        assert_eq!(lexicon.tags("Where’s my parcel?"), ["tracking"]);
        assert_eq!(lexicon.tags("UPS lost it"), ["shipping"]);
        assert!(lexicon.tags("I signed up yesterday, can you follow up").is_empty());
    }

    #[test]
    fn a_longer_match_of_another_tag_wins_its_words() {
        let lexicon = lexicon(&[("returns", "tr", &["iade*"]), ("refunds", "tr", &["para iade*"])]);
        assert_eq!(lexicon.tags("para iadem gelmedi"), ["refunds"]);
        assert_eq!(lexicon.tags("urunu iade ettim, para iadesi ne zaman"), ["refunds", "returns"]);
    }

    #[test]
    fn arabic_terms_meet_prefixed_and_variant_spellings() {
        let lexicon = lexicon(&[("cards", "ar", &["بطاقة"]), ("returns", "ar", &["إرجاع"])]);
        assert_eq!(lexicon.tags("دفعت بالبطاقـــة"), ["cards"]);
        assert_eq!(lexicon.tags("اريد ارجاع الحذاء"), ["returns"]);
        assert_eq!(lexicon.tags("طلب الإرجاع"), ["returns"]);
        assert!(lexicon.tags("شكرا جزيلا").is_empty());
    }

    #[test]
    fn a_term_without_words_is_refused() {
        let mut map: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        map.entry("returns".into()).or_default().insert("en".into(), vec!["*".into()]);
        let error = Lexicon::new(&map).err().unwrap();
        assert_eq!(error, "returns.en: term `*` has no word");
    }
}
