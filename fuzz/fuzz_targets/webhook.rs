//! Every webhook adapter's request handling on arbitrary requests: the GET handshake, the
//! signature check and `accept` may refuse, never panic (a panic would drop the connection
//! before verification answers). Also checks that `accept` and `normalize` agree: every item
//! `accept` returns can be normalized by index without a panic.
//!
//! Input: byte 0 picks the adapter; then a query string, header values and the body, separated
//! by 0xFF bytes.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use omni_channels::webhook::{Accepted, WebhookAccount, WebhookRequest, webhook_adapters};
use omni_channels::{NoKnownEvents, ids};
use omni_proto::v1::RawRecord;

/// Headers any adapter reads, filled from the input in this order.
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

fuzz_target!(|data: &[u8]| {
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
});
