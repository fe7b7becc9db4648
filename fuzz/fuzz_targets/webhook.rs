//! Every webhook adapter's request handling on arbitrary requests: the GET handshake, the
//! signature check and `accept` may refuse, never panic (a panic would drop the connection before
//! verification answers), and `accept` and `normalize` agree on items. See `harness::webhook`.
#![no_main]

#[path = "../harness/mod.rs"]
// Each target calls one entry point of the shared harness; the others are unused here.
#[allow(dead_code)]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::webhook(data));
