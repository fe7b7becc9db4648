//! Every normalizer (MIME email, the HTTP API, every webhook provider, Asterisk CDR lines) on
//! arbitrary payloads: it may refuse (a dead letter), never panic. A panic here would crash the
//! normalizer on one bad record and stall its partition.
//!
//! Input: byte 0 picks the adapter, byte 1 the item index attribute, the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omni_channels::{NoKnownEvents, normalizers};
use omni_proto::v1::RawRecord;

fuzz_target!(|data: &[u8]| {
    let [pick, item, payload @ ..] = data else { return };
    let adapters = normalizers();
    let adapter = adapters[*pick as usize % adapters.len()];
    let raw = RawRecord {
        event_id: "fuzz".into(),
        provider: adapter.provider().into(),
        account: "default".into(),
        payload: payload.to_vec(),
        attributes: [("item".to_owned(), (item % 4).to_string())].into(),
        received_at: Some(prost_types::Timestamp {
            seconds: 1_795_342_500,
            nanos: 0,
        }),
        ..Default::default()
    };
    let _ = adapter.normalize(&raw, &NoKnownEvents);
});
