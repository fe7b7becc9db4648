//! Which language a customer wrote in, or none when the text does not say clearly.
//!
//! lingua, restricted to the configured languages, in its high-accuracy mode: on the labelled
//! set of short messages it was right far more often than whatlang (the accuracy test prints
//! both), which is what matters for chat messages of a few words. Its models for the configured
//! languages are loaded once, when the detector is built, so the first message waits for nothing.

use std::str::FromStr;

use lingua::{IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder};

/// Detects one of the configured languages.
pub(crate) struct Detector {
    /// `None` when only one language is configured: then it is [`Detector::only`].
    detector: Option<LanguageDetector>,
    only: Language,
    min_confidence: f64,
    min_letters: usize,
}

/// The ISO 639-1 codes of the languages this build can detect.
pub fn detectable() -> Vec<String> {
    let mut codes: Vec<String> = Language::all().iter().map(|l| l.iso_code_639_1().to_string()).collect();
    codes.sort();
    codes
}

/// The detectable language of an ISO 639-1 code.
fn language(code: &str) -> Option<Language> {
    let code = IsoCode639_1::from_str(code).ok()?;
    Language::all().into_iter().find(|l| l.iso_code_639_1() == code)
}

impl Detector {
    /// A detector choosing among `codes`; an unknown or undetectable code is an error naming it.
    pub fn new(codes: &[String], min_confidence: f64, min_letters: usize) -> Result<Self, String> {
        let mut languages = Vec::new();
        for code in codes {
            let language = language(code).ok_or_else(|| {
                format!(
                    "language `{code}` cannot be detected by this build (it can: {})",
                    detectable().join(", ")
                )
            })?;
            languages.push(language);
        }
        if languages.is_empty() {
            return Err("no language to detect".into());
        }
        // lingua compares languages; with one configured, every text with enough letters is in it.
        let detector = (languages.len() > 1).then(|| {
            LanguageDetectorBuilder::from_languages(&languages)
                .with_preloaded_language_models()
                .build()
        });
        Ok(Self {
            detector,
            only: languages[0],
            min_confidence,
            min_letters,
        })
    }

    /// The language of `text` with the detector's confidence in it, or `None` when the text has
    /// fewer letters than configured or no language reaches the confidence threshold.
    pub fn detect(&self, text: &str) -> Option<(String, f64)> {
        let letters = text.chars().filter(|c| c.is_alphabetic()).count();
        if letters < self.min_letters {
            return None;
        }
        let Some(detector) = &self.detector else {
            return Some((self.only.iso_code_639_1().to_string(), 1.0));
        };
        let (language, confidence) = detector.compute_language_confidence_values(text).into_iter().next()?;
        (confidence >= self.min_confidence).then(|| (language.iso_code_639_1().to_string(), confidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> Detector {
        let codes: Vec<String> = ["en", "tr", "ar", "nl"].iter().map(|c| (*c).to_owned()).collect();
        Detector::new(&codes, 0.5, 3).unwrap()
    }

    #[test]
    fn clear_text_is_detected() {
        let detector = detector();
        assert_eq!(detector.detect("Siparişim hâlâ gelmedi, iade etmek istiyorum").unwrap().0, "tr");
        assert_eq!(detector.detect("Waar blijft mijn pakketje? Ik wacht al een week").unwrap().0, "nl");
        assert_eq!(detector.detect("أريد إرجاع الحذاء من فضلك").unwrap().0, "ar");
        assert_eq!(detector.detect("Where is my parcel? It has been a week").unwrap().0, "en");
    }

    #[test]
    fn too_little_text_is_no_language() {
        assert_eq!(detector().detect("ok"), None);
        assert_eq!(detector().detect("#4829113 ??"), None);
    }

    #[test]
    fn one_configured_language_is_every_texts_language() {
        let detector = Detector::new(&["nl".into()], 0.5, 3).unwrap();
        assert_eq!(detector.detect("Where is my parcel?"), Some(("nl".to_owned(), 1.0)));
        assert_eq!(detector.detect("ok"), None);
    }

    #[test]
    fn an_undetectable_language_is_named() {
        let error = Detector::new(&["en".into(), "xx".into()], 0.5, 3).err().unwrap();
        assert!(
            error.starts_with("language `xx` cannot be detected by this build (it can: ar, de, en"),
            "{error}"
        );
    }
}
