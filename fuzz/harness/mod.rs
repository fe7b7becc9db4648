//! The fuzz harness, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and the regression
//! test that replays every input that ever crashed them
//! (`crates/omni-channels/tests/fuzz_regressions.rs`), so both feed the adapters the same way.

use std::time::{Duration, UNIX_EPOCH};

use omni_channels::webhook::{Accepted, WebhookAccount, WebhookRequest, webhook_adapters};
use omni_channels::{NoKnownEvents, ids, normalizers};
use omni_proto::v1::RawRecord;

/// Every normalizer on an arbitrary payload: byte 0 picks the adapter, byte 1 the item index
/// attribute, the rest is the payload. May refuse, must not panic.
pub fn normalize(data: &[u8]) {
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
}

/// Every webhook adapter on an arbitrary request: byte 0 picks the adapter; then a query string,
/// header values and the body, separated by 0xFF bytes. Handshake, verify and accept may refuse,
/// must not panic, and every item `accept` returns is normalized by index.
pub fn webhook(data: &[u8]) {
    const HEADERS: [&str; 8] = [
        "x-hub-signature-256",
        "x-twitter-webhooks-signature",
        "x-telegram-bot-api-secret-token",
        "x-slack-request-timestamp",
        "x-slack-signature",
        "x-twilio-signature",
        "content-type",
        "host",
    ];
    let [pick, rest @ ..] = data else { return };
    let adapters = webhook_adapters();
    let adapter = adapters[*pick as usize % adapters.len()];
    let mut parts = rest.split(|b| *b == 0xFF);
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut headers = http::HeaderMap::new();
    for name in HEADERS {
        if let Some(value) = parts.next()
            && let Ok(value) = http::HeaderValue::from_bytes(value)
        {
            headers.insert(name, value);
        }
    }
    let body: Vec<u8> = parts.flat_map(|p| p.iter().copied().chain([0xFF])).collect();
    let body = body.strip_suffix(&[0xFF]).unwrap_or(&body);
    let account = WebhookAccount {
        secret: "fuzz-secret-0123456789".into(),
        verify_token: Some("fuzz-verify-token".into()),
        ..Default::default()
    };
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
        for (index, item) in items.iter().enumerate() {
            let raw = RawRecord {
                event_id: ids::event_id(adapter.id_channel(), "default", Some(&item.provider_message_id), body),
                provider: adapter.name().into(),
                account: "default".into(),
                payload: body.to_vec(),
                attributes: [("item".to_owned(), index.to_string())].into(),
                ..Default::default()
            };
            let _ = adapter.normalize(&raw, &NoKnownEvents);
        }
    }
}
