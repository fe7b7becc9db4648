//! Understanding alone: messages per second over the labelled set (language detection, tags and
//! order numbers with the shipped configuration), one core. Prints figures; asserts nothing.
//!
//! `cargo bench -p omni-understand --bench understand [-- SECONDS]` (default 5 seconds);
//! `make bench-understand`.

use std::time::{Duration, Instant};

use omni_runtime::{Problems, Settings};
use omni_understand::{Understanding, UnderstandingConfig};

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(5);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labelled");
    let mut texts: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(dir).expect("labelled set") {
        let path = entry.expect("file").path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("readable").lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            texts.push((
                value["language"].as_str().unwrap_or("?").to_owned(),
                value["text"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    let settings = Settings::load_from(None, std::iter::empty()).expect("embedded config");
    let mut problems = Problems::default();
    let config: UnderstandingConfig = settings
        .section("normalizer.understanding", &mut problems)
        .expect("understanding section");
    let started = Instant::now();
    let understanding = Understanding::new(&config).expect("understanding");
    println!("models and lexicons loaded in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    let by_language = |language: &str| {
        texts
            .iter()
            .filter(|(l, _)| l == language || language == "all")
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
    };
    println!("understanding, {seconds} s per row, one core");
    println!("{:<14} {:>9} {:>12} {:>12}", "set", "messages", "messages/s", "µs/message");
    let row = |name: &str, set: &[&str], run: &dyn Fn(&str)| {
        let rate = rate(seconds, set, run);
        println!("{name:<14} {:>9} {rate:>12.0} {:>12.1}", set.len(), 1e6 / rate);
    };
    for language in ["all", "en", "tr", "ar", "nl"] {
        row(language, &by_language(language), &|text| {
            drop(std::hint::black_box(understanding.understand(text)))
        });
    }
    let all = by_language("all");
    row("language only", &all, &|text| {
        drop(std::hint::black_box(understanding.language(text)))
    });
    row("tags only", &all, &|text| drop(std::hint::black_box(understanding.tags(text))));
    // A long email body: the English messages one after another, ~8 KiB.
    let mut long = String::new();
    for text in by_language("en").iter().cycle() {
        if long.len() + text.len() >= 8192 {
            break;
        }
        long.push_str(text);
        long.push('\n');
    }
    row("8 KiB email", &[long.as_str()], &|text| {
        drop(std::hint::black_box(understanding.understand(text)))
    });
    row("  language", &[long.as_str()], &|text| {
        drop(std::hint::black_box(understanding.language(text)))
    });
    row("  tags", &[long.as_str()], &|text| {
        drop(std::hint::black_box(understanding.tags(text)))
    });
}

/// Messages per second of `run` over `set`, repeated for `seconds`.
fn rate(seconds: u64, set: &[&str], run: &dyn Fn(&str)) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut done, started) = (0u64, Instant::now());
    while Instant::now() < deadline {
        set.iter().for_each(|text| run(text));
        done += set.len() as u64;
    }
    done as f64 / started.elapsed().as_secs_f64()
}
