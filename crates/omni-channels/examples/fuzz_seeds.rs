//! Seeds the fuzz corpora (`make fuzz`) from every adapter's fixtures, in the input layout of
//! `fuzz/harness/mod.rs`, so the fuzzers start from the providers' documented payloads. Reads the
//! registry (`omni_channels::adapters`), so a new adapter's fixtures are seeds without an edit here.
//!
//! Usage: `cargo run -p omni-channels --example fuzz_seeds -- <corpus dir>`

#[path = "../../../fuzz/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let corpus = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let normalize_dir = corpus.join("normalize");
    let webhook_dir = corpus.join("webhook");
    std::fs::create_dir_all(&normalize_dir)?;
    std::fs::create_dir_all(&webhook_dir)?;
    let webhooks = omni_channels::webhook::webhook_adapters();
    // The query, then one empty value per harness header, then the body.
    let separators = vec![0xFF; harness::webhook_headers().len() + 1];
    let mut count = 0;
    for (index, adapter) in omni_channels::adapters().iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(omni_channels::kit::fixture_dir(*adapter)) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let data = std::fs::read(&path)?;
            let pick = u8::try_from(index).expect("fewer than 256 adapters");
            // Call-log files are read line by line: one seed per line.
            let payloads: Vec<&[u8]> = if adapter.as_webhook().is_none() && path.extension().is_some_and(|e| e == "csv") {
                data.split_inclusive(|b| *b == b'\n').collect()
            } else {
                vec![&data]
            };
            for (n, payload) in payloads.iter().enumerate() {
                let seed = [&[pick, 0][..], payload].concat();
                std::fs::write(normalize_dir.join(format!("{}-{stem}-{n}", adapter.folder())), seed)?;
                count += 1;
            }
            if let Some(position) = webhooks.iter().position(|w| w.name() == adapter.provider()) {
                let pick = u8::try_from(position).expect("fewer than 256 webhook adapters");
                let seed = [&[pick][..], &separators, &data].concat();
                std::fs::write(webhook_dir.join(format!("{}-{stem}", adapter.folder())), seed)?;
                count += 1;
            }
        }
    }
    println!("{count} seeds in {}", corpus.display());
    Ok(())
}
