//! Every input a fuzzer ever crashed (`make fuzz`, targets in `fuzz/fuzz_targets/`), replayed the
//! way its target feeds it: none may panic again. Files in `tests/fixtures/fuzz-regressions/`
//! are named after their target (`normalize-*`, `webhook-*`).

use std::time::{Duration, UNIX_EPOCH};

use omni_channels::webhook::{Accepted, WebhookAccount, WebhookRequest, webhook_adapters};
use omni_channels::{NoKnownEvents, ids, normalizers};
use omni_proto::v1::RawRecord;

/// As `fuzz/fuzz_targets/normalize.rs`.
fn normalize(data: &[u8]) {
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

/// As `fuzz/fuzz_targets/webhook.rs`.
fn webhook(data: &[u8]) {
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

#[test]
fn no_input_that_once_crashed_a_fuzz_target_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the regression folder") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let data = std::fs::read(&path).unwrap();
        if name.starts_with("normalize-") {
            normalize(&data);
        } else if name.starts_with("webhook-") {
            webhook(&data);
        } else {
            panic!("{name}: name it after its target (normalize-*, webhook-*)");
        }
        replayed += 1;
    }
    assert!(replayed >= 1, "the regression fixtures are there");
}
