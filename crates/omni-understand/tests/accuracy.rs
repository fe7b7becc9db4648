//! Accuracy on the labelled set (`tests/labelled/*.jsonl`, short customer messages written for
//! omni, labelled with language, problem areas and order numbers): prints language accuracy
//! (lingua as configured, and whatlang on the same languages for comparison), per-tag precision
//! and recall, micro-F1, the share of area-less messages left untagged and order-number
//! precision/recall, and holds the shipped configuration to the targets of the README.
//!
//! `OMNI_ACCURACY_VERBOSE=1` also prints every miss.

use std::collections::BTreeMap;

use omni_runtime::{Problems, Settings};
use omni_understand::{Understanding, UnderstandingConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Labelled {
    language: String,
    text: String,
    tags: Vec<String>,
    order_numbers: Vec<String>,
}

/// Languages whose messages carry problem-area labels the shipped lexicons cover.
const TAGGED: [&str; 4] = ["en", "tr", "ar", "nl"];

fn labelled() -> Vec<Labelled> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labelled");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut all = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
        for (n, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            let entry: Labelled = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), n + 1));
            all.push(entry);
        }
    }
    all
}

fn shipped_config() -> UnderstandingConfig {
    let settings = Settings::load_from(None, std::iter::empty()).unwrap();
    let mut problems = Problems::default();
    let config: UnderstandingConfig = settings.section("normalizer.understanding", &mut problems).unwrap();
    assert!(problems.is_empty(), "{problems}");
    config
}

fn whatlang_code(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Eng => "en",
        Tur => "tr",
        Ara => "ar",
        Nld => "nl",
        Deu => "de",
        Fra => "fr",
        Spa => "es",
        _ => "other",
    }
}

#[derive(Default)]
struct Counts {
    right: usize,
    unknown: usize,
    all: usize,
}

impl Counts {
    fn share(&self) -> f64 {
        self.right as f64 / self.all.max(1) as f64
    }
}

#[test]
fn shipped_understanding_meets_its_targets_on_the_labelled_set() {
    let verbose = std::env::var_os("OMNI_ACCURACY_VERBOSE").is_some();
    let config = shipped_config();
    let understanding = Understanding::new(&config).unwrap();
    let whatlang = whatlang::Detector::with_allowlist(vec![
        whatlang::Lang::Eng,
        whatlang::Lang::Tur,
        whatlang::Lang::Ara,
        whatlang::Lang::Nld,
        whatlang::Lang::Deu,
        whatlang::Lang::Fra,
        whatlang::Lang::Spa,
    ]);
    let set = labelled();

    let mut lingua: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut what: BTreeMap<&str, Counts> = BTreeMap::new();
    // tag -> (true positives, false positives, false negatives)
    let mut tags: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let (mut none_all, mut none_clean) = (0, 0);
    let (mut orders_found, mut orders_right, mut orders_labelled) = (0, 0, 0);
    for entry in &set {
        let found = understanding.understand(&entry.text);
        let detected = found.language.as_ref().map(|(l, _)| l.as_str());
        let counts = lingua.entry(&entry.language).or_default();
        counts.all += 1;
        counts.right += usize::from(detected == Some(entry.language.as_str()));
        counts.unknown += usize::from(detected.is_none());
        if verbose && detected != Some(entry.language.as_str()) {
            println!("language {} as {:?}: {}", entry.language, found.language, entry.text);
        }
        let info = whatlang.detect(&entry.text);
        let counts = what.entry(&entry.language).or_default();
        counts.all += 1;
        let reliable = info.filter(whatlang::Info::is_reliable).map(|i| whatlang_code(i.lang()));
        counts.right += usize::from(reliable == Some(entry.language.as_str()));
        counts.unknown += usize::from(reliable.is_none());

        orders_labelled += entry.order_numbers.len();
        orders_found += found.order_numbers.len();
        orders_right += found.order_numbers.iter().filter(|n| entry.order_numbers.contains(n)).count();
        if verbose && found.order_numbers != entry.order_numbers {
            println!("orders {:?} as {:?}: {}", entry.order_numbers, found.order_numbers, entry.text);
        }

        if !TAGGED.contains(&entry.language.as_str()) {
            continue;
        }
        for tag in config.lexicon.keys() {
            let (expected, got) = (entry.tags.contains(tag), found.tags.contains(tag));
            let counts = tags.entry(tag.clone()).or_default();
            match (expected, got) {
                (true, true) => counts.0 += 1,
                (false, true) => counts.1 += 1,
                (true, false) => counts.2 += 1,
                (false, false) => {}
            }
        }
        if entry.tags.is_empty() {
            none_all += 1;
            none_clean += usize::from(found.tags.is_empty());
        }
        if verbose && found.tags != sorted(&entry.tags) {
            println!("tags {} {:?} as {:?}: {}", entry.language, entry.tags, found.tags, entry.text);
        }
    }

    println!(
        "\nlanguage on {} messages (unknown below confidence {}):",
        set.len(),
        config.min_confidence
    );
    println!(
        "  {:<4} {:>8} {:>8} {:>9} {:>7} {:>9}",
        "", "messages", "lingua", "unknown", "wrong", "whatlang"
    );
    let (mut right, mut all, mut what_right) = (0, 0, 0);
    for (language, counts) in &lingua {
        let whatlang = &what[language];
        println!(
            "  {language:<4} {:>8} {:>7.1}% {:>9} {:>7} {:>8.1}%",
            counts.all,
            100.0 * counts.share(),
            counts.unknown,
            counts.all - counts.right - counts.unknown,
            100.0 * whatlang.share()
        );
        (right, all, what_right) = (right + counts.right, all + counts.all, what_right + whatlang.right);
    }
    let language_accuracy = right as f64 / all as f64;
    println!(
        "  all  {all:>8} {:>7.1}% {:>17} {:>8.1}%",
        100.0 * language_accuracy,
        "",
        100.0 * what_right as f64 / all as f64
    );

    println!(
        "\ntags on the {} messages in {}:",
        set.iter().filter(|e| TAGGED.contains(&e.language.as_str())).count(),
        TAGGED.join(", ")
    );
    println!("  {:<14} {:>9} {:>7} {:>7}", "", "precision", "recall", "labelled");
    let (mut tp, mut fp, mut fnn) = (0, 0, 0);
    for (tag, (t, f, n)) in &tags {
        println!(
            "  {tag:<14} {:>9.2} {:>7.2} {:>7}",
            *t as f64 / (t + f).max(1) as f64,
            *t as f64 / (t + n).max(1) as f64,
            t + n
        );
        (tp, fp, fnn) = (tp + t, fp + f, fnn + n);
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / (tp + fnn).max(1) as f64;
    let f1 = 2.0 * precision * recall / (precision + recall);
    let none_share = none_clean as f64 / none_all.max(1) as f64;
    println!("  micro          {precision:>9.2} {recall:>7.2}   F1 {f1:.3}");
    println!(
        "  messages of no area left untagged: {none_clean}/{none_all} ({:.1}%)",
        100.0 * none_share
    );
    println!(
        "\norder numbers: precision {:.2}, recall {:.2} ({orders_labelled} labelled)",
        orders_right as f64 / orders_found.max(1) as f64,
        orders_right as f64 / orders_labelled.max(1) as f64
    );

    let order_precision = orders_right as f64 / orders_found.max(1) as f64;
    let order_recall = orders_right as f64 / orders_labelled.max(1) as f64;
    assert!(language_accuracy >= 0.97, "language accuracy {language_accuracy:.3} < 0.97");
    assert!(
        order_precision >= 0.95 && order_recall >= 0.95,
        "order numbers: precision {order_precision:.2}, recall {order_recall:.2} < 0.95"
    );
    assert!(f1 >= 0.90, "tags micro-F1 {f1:.3} < 0.90");
    assert!(none_share >= 0.90, "untagged share of area-less messages {none_share:.3} < 0.90");
}

fn sorted(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags
}
