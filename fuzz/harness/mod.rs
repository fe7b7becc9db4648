//! The fuzz harness, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and the regression
//! test that replays every input that ever crashed them
//! (`crates/omni-channels/tests/fuzz_regressions.rs`), so both feed the adapters the same way.

use std::time::{Duration, UNIX_EPOCH};

use omni_channels::webhook::{Accepted, WebhookRequest, raw_records, webhook_adapters};
use omni_channels::{NoKnownEvents, adapters};
use omni_proto::v1::RawRecord;

/// Every normalizer on an arbitrary payload: byte 0 picks the adapter, byte 1 the item index
/// attribute, the rest is the payload. May refuse, must not panic.
pub fn normalize(data: &[u8]) {
    let [pick, item, payload @ ..] = data else { return };
    let adapters = adapters();
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
}

/// The headers the webhook target sets: every adapter's signature headers, in registry order,
/// then `content-type` and `host`. An adapter added at the end of the registry with a header of
/// its own moves `content-type` and `host` one place on in older inputs, which then reach the
/// same code with other headers: less apt, never wrong.
pub fn webhook_headers() -> Vec<&'static str> {
    let mut headers: Vec<&'static str> = Vec::new();
    for adapter in webhook_adapters() {
        for header in adapter.signature_headers() {
            if !headers.contains(header) {
                headers.push(header);
            }
        }
    }
    headers.extend(["content-type", "host"]);
    headers
}

/// Every webhook adapter on an arbitrary request: byte 0 picks the adapter; then a query string,
/// the values of [`webhook_headers`] and the body, separated by 0xFF bytes. Handshake, verify and
/// accept may refuse, must not panic, and every record the gateway would store for the items
/// `accept` returns is normalized.
pub fn webhook(data: &[u8]) {
    let [pick, rest @ ..] = data else { return };
    let adapters = webhook_adapters();
    let adapter = adapters[*pick as usize % adapters.len()];
    let mut parts = rest.split(|b| *b == 0xFF);
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut headers = http::HeaderMap::new();
    for name in webhook_headers() {
        if let Some(value) = parts.next()
            && let Ok(value) = http::HeaderValue::from_bytes(value)
        {
            headers.insert(name, value);
        }
    }
    let body: Vec<u8> = parts.flat_map(|p| p.iter().copied().chain([0xFF])).collect();
    let body = body.strip_suffix(&[0xFF]).unwrap_or(&body);
    let account = adapter.development_account();
    let request = WebhookRequest {
        url: "https://omni.example/webhooks/fuzz/default",
        query: &query,
        headers: &headers,
        body,
        now: UNIX_EPOCH + Duration::from_secs(1_795_342_500),
    };
    let _ = adapter.handshake(&account, &request);
    let _ = adapter.verify(&account, &request);
    let _ = adapter.stored_payload(body);
    if let Ok(Accepted::Items(items)) = adapter.accept(&account, &request) {
        for stored in raw_records(adapter, "default", "fuzz", &request, &items) {
            let _ = adapter.normalize(&stored.record, &NoKnownEvents);
        }
    }
}
