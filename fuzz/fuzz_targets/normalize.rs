//! Every normalizer (MIME email, the HTTP API, every webhook provider, Asterisk CDR lines) on
//! arbitrary payloads: it may refuse (a dead letter), never panic. A panic here would crash the
//! normalizer on one bad record and stall its partition. See `harness::normalize`.
#![no_main]

#[path = "../harness/mod.rs"]
// Each target calls one entry point of the shared harness; the others are unused here.
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::normalize(data));
