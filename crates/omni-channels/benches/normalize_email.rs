//! Email normalization alone, without Kafka: messages per second over the fixture set (every
//! charset and MIME shape the golden tests cover), each message made unique so the known-events
//! map grows as it would in production. Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p omni-channels --bench normalize_email [-- SECONDS]` (default 5 seconds).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use omni_channels::email::{self, EmailNormalizer};
use omni_proto::v1::RawRecord;

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(5);
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/email/fixtures");
    let mut fixtures: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture").path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    fixtures.sort();
    let normalizer = EmailNormalizer::default();
    println!("email normalization, {seconds} s per row, one core");
    println!("{:<32} {:>10} {:>12} {:>10}", "fixture", "bytes", "messages/s", "MiB/s");
    let mut all = Vec::new();
    for (name, bytes) in &fixtures {
        let (rate, mib) = measure(&normalizer, std::slice::from_ref(bytes), Duration::from_secs(seconds));
        println!("{name:<32} {:>10} {rate:>12.0} {mib:>10.1}", bytes.len());
        all.push(bytes.clone());
    }
    let (rate, mib) = measure(&normalizer, &all, Duration::from_secs(seconds));
    let mean = all.iter().map(Vec::len).sum::<usize>() / all.len();
    println!("{:<32} {mean:>10} {rate:>12.0} {mib:>10.1}", "all fixtures, round robin");
}

/// Normalizes the messages round robin for `duration`, each with a fresh Message-ID, and returns
/// messages per second and MiB per second.
fn measure(normalizer: &EmailNormalizer, messages: &[Vec<u8>], duration: Duration) -> (f64, f64) {
    let mut known: HashMap<String, String> = HashMap::new();
    let started = Instant::now();
    let (mut count, mut bytes) = (0_u64, 0_u64);
    while started.elapsed() < duration {
        for message in messages {
            let payload = [format!("Message-ID: <bench-{count}@omni.test>\r\n").as_bytes(), message].concat();
            let ids = email::ids("support", &payload);
            let raw = RawRecord {
                event_id: ids.event_id,
                provider: email::PROVIDER.into(),
                account: "support".into(),
                payload,
                ..Default::default()
            };
            let event = normalizer.event(&raw, &known).expect("fixtures normalize");
            known.insert(event.event_id, event.conversation_id);
            bytes += raw.payload.len() as u64;
            count += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    (count as f64 / elapsed, bytes as f64 / elapsed / (1024.0 * 1024.0))
}
