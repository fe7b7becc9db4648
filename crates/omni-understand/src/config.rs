//! `[normalizer.understanding]` configuration.

use std::collections::BTreeMap;

use omni_runtime::{Problems, Validate};
use serde::Deserialize;

/// `[normalizer.understanding]`: language detection, problem-area tags and order numbers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnderstandingConfig {
    /// Whether events are understood at all; off, they keep only what the channel said.
    pub enabled: bool,
    /// ISO 639-1 codes the detector chooses among, when the channel declared no language.
    pub languages: Vec<String>,
    /// Least confidence (0 to 1) of the likeliest language; below it the language stays unknown.
    pub min_confidence: f64,
    /// Fewest letters a text needs for a language to be detected at all.
    pub min_letters: usize,
    /// A regular expression (Rust `regex` syntax) for the shop's order numbers; every capture
    /// group that matched, or the whole match when it has none, is a number.
    pub order_number_pattern: String,
    /// `tag -> language -> terms`: see the term syntax in the default config.
    pub lexicon: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Validate for UnderstandingConfig {
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        if !self.enabled {
            return;
        }
        problems.check(
            !self.languages.is_empty(),
            format!("{prefix}.languages"),
            "must name at least one language",
        );
        let detectable = crate::language::detectable();
        for code in &self.languages {
            problems.check(
                detectable.contains(code),
                format!("{prefix}.languages"),
                format!("`{code}` cannot be detected by this build (it can: {})", detectable.join(", ")),
            );
        }
        problems.check(
            (0.0..=1.0).contains(&self.min_confidence),
            format!("{prefix}.min_confidence"),
            "must be between 0 and 1",
        );
        if let Err(error) = regex::Regex::new(&self.order_number_pattern) {
            problems.push(
                format!("{prefix}.order_number_pattern"),
                format!("not a regular expression: {error}"),
            );
        }
        for tag in self.lexicon.keys() {
            problems.check(
                !tag.is_empty()
                    && tag
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
                format!("{prefix}.lexicon.{tag}"),
                "a tag is lowercase ASCII letters, digits, `-` and `_`",
            );
        }
        if let Err(error) = crate::lexicon::Lexicon::new(&self.lexicon) {
            problems.push(format!("{prefix}.lexicon"), error);
        }
    }
}
