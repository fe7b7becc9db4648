//! Every webhook adapter's request handling on arbitrary requests: the GET handshake, the
//! signature check and `accept` may refuse, never panic (a panic would drop the connection before
//! verification answers), and `accept` and `normalize` agree on items. See `harness::webhook`.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::webhook(data));
