//! The conformance kit: what every webhook adapter must do, checked over the adapter's own
//! fixtures with one call from its tests.
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     kit::WebhookConformance::new(&Telegram)
//!         .no_event(&["callback-query.json", "new-chat-members.json"])
//!         .body_not_signed()
//!         .run();
//! }
//! ```
//!
//! For every file in `src/<folder>/fixtures/` ([`crate::Normalize::folder`]) it checks that
//!
//! 1. a request signed by the adapter's own [`WebhookAdapter::sign`] for its development account
//!    is verified and accepted, and one signed for another secret, an unsigned one (the
//!    [`WebhookAdapter::signature_headers`] left out) and, for providers that sign the body, one
//!    whose body changed after signing are refused as 401/403 before the body is parsed (a
//!    garbage body with a forged signature is refused as unauthorized, not as a bad request);
//! 2. for providers with a [`WebhookAdapter::replay_window`], a signature older than the window
//!    is refused and one inside it accepted;
//! 3. a redelivered payload (signed again, later) gets the same event ids, and every record
//!    normalizes deterministically, to an event with the record's event id and a channel;
//! 4. a fixture listed in [`WebhookConformance::no_event`] (receipts, reads, typing, echoes of
//!    the team's own messages) stores records that normalize to no event, one listed in
//!    [`WebhookConformance::reply`] is a handshake that stores nothing, and every other fixture
//!    gives at least one event; one listed in [`WebhookConformance::needs_earlier`] (a Twilio
//!    recording callback before its call's status) is a clear [`NormalizeError::Malformed`] on its
//!    own;
//! 5. truncated and garbled copies of every fixture are a clear refusal or a clear
//!    [`NormalizeError::Malformed`], never a panic; a `GET` without parameters is refused.
//!
//! The records are built by [`webhook::raw_records`], the gateway's own builder, so what the kit
//! and the adapter tests normalize is what production stores. Adapters whose records come from a
//! connector (email, call logs, the HTTP API) run [`NormalizeConformance`]: the normalizing half of
//! the same checks, over records their test builds as the connector does. The helpers [`signed`],
//! [`records`] and [`events`] are for the adapters' own tests.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use omni_proto::v1::{ConversationEvent, RawRecord};

use crate::webhook::{self, Accepted, Rejection, WebhookAccount, WebhookAdapter, WebhookRequest};
use crate::{NoKnownEvents, NormalizeError};

/// The clock of the kit's requests (2025-06-15).
pub const NOW: u64 = 1_750_000_000;
/// The account name of the kit's requests.
pub const ACCOUNT: &str = "shop";

/// Asserts that `adapter` finds `record` a clear [`NormalizeError::Malformed`] (not an event, not
/// another error, not a panic); the failure shows the record's payload and attributes.
pub fn assert_malformed(adapter: &dyn crate::Normalize, record: &RawRecord) {
    let outcome = adapter.normalize(record, &NoKnownEvents);
    assert!(
        matches!(outcome, Err(NormalizeError::Malformed { .. })),
        "{}: {:?} with attributes {:?} normalized to {outcome:?}, not Malformed",
        adapter.provider(),
        String::from_utf8_lossy(&record.payload[..record.payload.len().min(120)]),
        record.attributes
    );
}

/// The kit's clock as a `SystemTime`.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// The URL the kit's requests are sent to.
pub fn url(adapter: &dyn WebhookAdapter) -> String {
    format!("https://omni.example.com/webhooks/{}/{ACCOUNT}", adapter.name())
}

/// The content type of a fixture, by its extension: `.form` is a form body, anything else JSON.
pub fn content_type(fixture: &str) -> &'static str {
    if fixture.ends_with(".form") {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    }
}

/// Where an adapter's fixtures are: `crates/omni-channels/src/<folder>/fixtures`.
pub fn fixture_dir(adapter: &dyn crate::Normalize) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(adapter.folder())
        .join("fixtures")
}

/// A request as the provider sends it, owning its parts.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The URL it was signed for.
    pub url: String,
    /// Its headers, the content type and signature among them.
    pub headers: http::HeaderMap,
    /// Its body (for Aircall, with the token put in).
    pub body: Vec<u8>,
    /// When the gateway receives it.
    pub now: SystemTime,
}

impl Delivery {
    /// The request the adapter sees.
    pub fn request(&self) -> WebhookRequest<'_> {
        let query = self.url.split_once('?').map_or("", |(_, query)| query);
        WebhookRequest {
            url: &self.url,
            query,
            headers: &self.headers,
            body: &self.body,
            now: self.now,
        }
    }
}

/// `body` signed by `adapter` for `account` at `signed_at`, received at `now`.
pub fn signed_at(
    adapter: &dyn WebhookAdapter,
    account: &WebhookAccount,
    content_type: &str,
    body: &[u8],
    signed_at: SystemTime,
    now: SystemTime,
) -> Delivery {
    let url = url(adapter);
    let signed = adapter.sign(account, &url, content_type, body, signed_at);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_str(content_type).expect("a content type"),
    );
    for (name, value) in signed.headers {
        headers.insert(name, http::HeaderValue::from_str(&value).expect("signature headers are text"));
    }
    Delivery {
        url,
        headers,
        body: signed.body,
        now,
    }
}

/// `body` signed by `adapter` for `account`, as received at [`NOW`].
pub fn signed(adapter: &dyn WebhookAdapter, account: &WebhookAccount, content_type: &str, body: &[u8]) -> Delivery {
    signed_at(adapter, account, content_type, body, now(), now())
}

/// The raw records the gateway stores for `body` signed for `account`; panics, saying why, when
/// the request is refused or is a handshake.
pub fn records(adapter: &dyn WebhookAdapter, account: &WebhookAccount, content_type: &str, body: &[u8]) -> Vec<RawRecord> {
    records_at(adapter, account, content_type, body, now())
}

/// [`records`] received at `received_at`.
pub fn records_at(
    adapter: &dyn WebhookAdapter,
    account: &WebhookAccount,
    content_type: &str,
    body: &[u8],
    received_at: SystemTime,
) -> Vec<RawRecord> {
    let delivery = signed_at(adapter, account, content_type, body, received_at, received_at);
    try_records(adapter, account, &delivery)
        .unwrap_or_else(|rejection| panic!("{}: refused: {rejection}", adapter.name()))
        .unwrap_or_else(|| panic!("{}: a handshake, not items", adapter.name()))
}

/// The events `adapter` normalizes the records of `body` to (`None` for items that mean nothing
/// to an agent), signed for `account`; panics when a record does not normalize.
pub fn events(adapter: &dyn WebhookAdapter, account: &WebhookAccount, content_type: &str, body: &[u8]) -> Vec<Option<ConversationEvent>> {
    records(adapter, account, content_type, body)
        .iter()
        .map(|raw| {
            adapter
                .normalize(raw, &NoKnownEvents)
                .unwrap_or_else(|error| panic!("{}: record does not normalize: {error}", adapter.name()))
        })
        .collect()
}

/// Verifies and accepts `delivery`: its records, `None` for a handshake reply.
pub fn try_records(
    adapter: &dyn WebhookAdapter,
    account: &WebhookAccount,
    delivery: &Delivery,
) -> Result<Option<Vec<RawRecord>>, Rejection> {
    let request = delivery.request();
    adapter.verify(account, &request)?;
    match adapter.accept(account, &request)? {
        Accepted::Reply(_) => Ok(None),
        Accepted::Items(items) => Ok(Some(
            webhook::raw_records(adapter, ACCOUNT, "kit", &request, &items)
                .into_iter()
                .map(|stored| stored.record)
                .collect(),
        )),
    }
}

/// The conformance run of one webhook adapter over its fixtures (see the module docs).
pub struct WebhookConformance {
    adapter: &'static dyn WebhookAdapter,
    no_event: Vec<&'static str>,
    reply: Vec<&'static str>,
    needs_earlier: Vec<&'static str>,
    body_signed: bool,
}

impl WebhookConformance {
    /// The run for `adapter`, over the fixtures in its folder.
    pub fn new(adapter: &'static dyn WebhookAdapter) -> Self {
        Self {
            adapter,
            no_event: Vec::new(),
            reply: Vec::new(),
            needs_earlier: Vec::new(),
            body_signed: true,
        }
    }

    /// Fixtures that store records normalizing to no event (receipts, reads, typing, echoes).
    pub fn no_event(mut self, fixtures: &[&'static str]) -> Self {
        self.no_event.extend_from_slice(fixtures);
        self
    }

    /// Fixtures that are handshakes: answered, nothing stored.
    pub fn reply(mut self, fixtures: &[&'static str]) -> Self {
        self.reply.extend_from_slice(fixtures);
        self
    }

    /// Fixtures whose records normalize only after an earlier record of the same call or
    /// conversation: on their own they must be a clear `Malformed` error.
    pub fn needs_earlier(mut self, fixtures: &[&'static str]) -> Self {
        self.needs_earlier.extend_from_slice(fixtures);
        self
    }

    /// The provider authenticates with a shared token, not a signature over the body (Telegram,
    /// Aircall): a body changed after "signing" cannot be told apart, so that check is skipped.
    pub fn body_not_signed(mut self) -> Self {
        self.body_signed = false;
        self
    }

    /// Runs every check over every fixture; panics naming the fixture and the check that failed.
    pub fn run(self) {
        let fixtures = self.fixtures();
        assert!(
            !fixtures.is_empty(),
            "{}: no fixtures in src/{}/fixtures",
            self.adapter.name(),
            self.adapter.folder()
        );
        for name in self.no_event.iter().chain(&self.reply).chain(&self.needs_earlier) {
            assert!(
                fixtures.iter().any(|(fixture, _)| fixture == name),
                "{}: {name} is listed but not in src/{}/fixtures",
                self.adapter.name(),
                self.adapter.folder()
            );
        }
        self.check_handshake_without_parameters();
        for (name, body) in &fixtures {
            let check = Check {
                adapter: self.adapter,
                name,
                content_type: content_type(name),
                body,
                account: self.adapter.development_account(),
            };
            check.authentication(self.body_signed);
            check.replay_window();
            let expected = if self.needs_earlier.contains(&name.as_str()) {
                Expect::NeedsEarlier
            } else if self.reply.contains(&name.as_str()) {
                Expect::Reply
            } else if self.no_event.contains(&name.as_str()) {
                Expect::NoEvent
            } else {
                Expect::Event
            };
            check.outcome(expected);
            check.garbled();
        }
    }

    fn fixtures(&self) -> Vec<(String, Vec<u8>)> {
        let dir = fixture_dir(self.adapter);
        let mut fixtures: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {}: {error}", self.adapter.name(), dir.display()))
            .map(|entry| {
                let path = entry.expect("a directory entry").path();
                let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("a readable fixture"))
            })
            .collect();
        fixtures.sort();
        fixtures
    }

    fn check_handshake_without_parameters(&self) {
        let account = self.adapter.development_account();
        let delivery = signed(self.adapter, &account, "application/json", b"");
        let answer = self.adapter.handshake(&account, &delivery.request());
        assert!(
            answer.is_err(),
            "{}: a GET without parameters was answered: {answer:?}",
            self.adapter.name()
        );
    }
}

/// Truncated and byte-flipped copies of `body`.
fn garbled_variants(body: &[u8]) -> Vec<Vec<u8>> {
    let len = body.len();
    let mut variants: Vec<Vec<u8>> = [0, 1, len / 3, len / 2, len.saturating_sub(1)]
        .into_iter()
        .map(|cut| body[..cut.min(len)].to_vec())
        .collect();
    for at in [len / 5, len / 2, len * 4 / 5] {
        let mut flipped = body.to_vec();
        if let Some(byte) = flipped.get_mut(at) {
            *byte ^= 0x5a;
            variants.push(flipped);
        }
    }
    variants
}

/// The conformance run of an adapter whose records come from a connector (email, call logs,
/// the HTTP API), not from a webhook: over every fixture in its folder, the records its
/// connector would write (built by the adapter's test, `records`) normalize deterministically
/// to events with the record's event id and a channel, or to none for fixtures listed in
/// [`NormalizeConformance::no_event`]; truncated and byte-flipped payloads are a clear
/// [`NormalizeError::Malformed`] or an event, never a panic.
pub struct NormalizeConformance {
    adapter: &'static dyn crate::Normalize,
    records: fn(&str, &[u8]) -> Vec<RawRecord>,
    no_event: Vec<&'static str>,
}

impl NormalizeConformance {
    /// The run for `adapter`; `records` makes a fixture's raw records as its connector does.
    pub fn new(adapter: &'static dyn crate::Normalize, records: fn(&str, &[u8]) -> Vec<RawRecord>) -> Self {
        Self {
            adapter,
            records,
            no_event: Vec::new(),
        }
    }

    /// Fixtures whose records normalize to no event.
    pub fn no_event(mut self, fixtures: &[&'static str]) -> Self {
        self.no_event.extend_from_slice(fixtures);
        self
    }

    /// Runs every check; panics naming the fixture and the check that failed.
    pub fn run(self) {
        let dir = fixture_dir(self.adapter);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {}: {error}", self.adapter.provider(), dir.display()))
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(!names.is_empty(), "{}: no fixtures", self.adapter.provider());
        for name in &names {
            let fail = |what: &str| format!("{} {name}: {what}", self.adapter.provider());
            let body = std::fs::read(dir.join(name)).expect("a readable fixture");
            let records = (self.records)(name, &body);
            assert!(!records.is_empty(), "{}", fail("no records"));
            let mut events = 0;
            for raw in &records {
                let event = self
                    .adapter
                    .normalize(raw, &NoKnownEvents)
                    .unwrap_or_else(|error| panic!("{}", fail(&format!("does not normalize: {error}"))));
                assert_eq!(
                    event,
                    self.adapter.normalize(raw, &NoKnownEvents).ok().flatten(),
                    "{}",
                    fail("normalized twice, differently")
                );
                if let Some(event) = event {
                    assert_eq!(event.event_id, raw.event_id, "{}", fail("event id is not the record's"));
                    assert_ne!(event.channel, 0, "{}", fail("event without a channel"));
                    events += 1;
                }
                for variant in garbled_variants(&raw.payload) {
                    let mut garbled = raw.clone();
                    garbled.payload = variant;
                    if let Err(error) = self.adapter.normalize(&garbled, &NoKnownEvents) {
                        assert!(matches!(error, NormalizeError::Malformed { .. }), "{}", fail(&error.to_string()));
                    }
                }
            }
            if self.no_event.contains(&name.as_str()) {
                assert_eq!(events, 0, "{}", fail("listed in no_event but gave an event"));
            } else {
                assert!(events > 0, "{}", fail("no event (list it in no_event if that is right)"));
            }
        }
    }
}

enum Expect {
    Event,
    NoEvent,
    NeedsEarlier,
    Reply,
}

struct Check<'a> {
    adapter: &'static dyn WebhookAdapter,
    name: &'a str,
    content_type: &'static str,
    body: &'a [u8],
    account: WebhookAccount,
}

impl Check<'_> {
    fn fail(&self, what: &str) -> String {
        format!("{} {}: {what}", self.adapter.name(), self.name)
    }

    fn refused(&self, delivery: &Delivery, what: &str) {
        match self.adapter.verify(&self.account, &delivery.request()) {
            Err(Rejection::Unauthorized(_) | Rejection::Forbidden(_)) => {}
            other => panic!("{}", self.fail(&format!("{what}: expected 401/403, got {other:?}"))),
        }
    }

    fn authentication(&self, body_signed: bool) {
        let good = signed(self.adapter, &self.account, self.content_type, self.body);
        if let Err(rejection) = self.adapter.verify(&self.account, &good.request()) {
            panic!("{}", self.fail(&format!("a correctly signed request was refused: {rejection}")));
        }
        let mut other = self.account.clone();
        other.secret.push_str("-other");
        self.refused(
            &signed(self.adapter, &other, self.content_type, self.body),
            "signed for another secret",
        );
        let mut unsigned = good.clone();
        unsigned.body = self.body.to_vec();
        for header in self.adapter.signature_headers() {
            unsigned.headers.remove(*header);
        }
        self.refused(&unsigned, "unsigned");
        let garbage = signed(self.adapter, &other, "application/json", b"{\"not\": [a payload");
        self.refused(&garbage, "garbage with a forged signature (verify must come before parsing)");
        if body_signed {
            let mut tampered = good.clone();
            tampered.body.extend_from_slice(b" ");
            self.refused(&tampered, "body changed after signing");
        }
    }

    fn replay_window(&self) {
        let Some(window) = self.adapter.replay_window() else { return };
        let stale = signed_at(self.adapter, &self.account, self.content_type, self.body, now() - window * 2, now());
        self.refused(&stale, "signed twice the replay window ago");
        let fresh = signed_at(self.adapter, &self.account, self.content_type, self.body, now() - window / 2, now());
        assert!(
            self.adapter.verify(&self.account, &fresh.request()).is_ok(),
            "{}",
            self.fail("signed half the replay window ago was refused")
        );
    }

    fn outcome(&self, expected: Expect) {
        let first = try_records(
            self.adapter,
            &self.account,
            &signed(self.adapter, &self.account, self.content_type, self.body),
        )
        .unwrap_or_else(|rejection| panic!("{}", self.fail(&format!("refused: {rejection}"))));
        let Some(records) = first else {
            assert!(
                matches!(expected, Expect::Reply),
                "{}",
                self.fail("answered as a handshake, stored nothing")
            );
            return;
        };
        assert!(
            !matches!(expected, Expect::Reply),
            "{}",
            self.fail("listed as a handshake but stored records")
        );
        let later = now() + Duration::from_secs(60);
        let again = try_records(
            self.adapter,
            &self.account,
            &signed_at(self.adapter, &self.account, self.content_type, self.body, later, later),
        )
        .expect("accepted again")
        .expect("items again");
        let ids = |records: &[RawRecord]| records.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&records), ids(&again), "{}", self.fail("a redelivery got other event ids"));
        if matches!(expected, Expect::NeedsEarlier) {
            for raw in &records {
                let outcome = self.adapter.normalize(raw, &NoKnownEvents);
                assert!(
                    matches!(outcome, Err(NormalizeError::Malformed { .. })),
                    "{}",
                    self.fail(&format!("listed in needs_earlier but normalized alone: {outcome:?}"))
                );
            }
            return;
        }
        let mut events = 0;
        for raw in &records {
            let event = self.normalize(raw);
            assert_eq!(event, self.normalize(raw), "{}", self.fail("normalized twice, differently"));
            if let Some(event) = event {
                assert_eq!(event.event_id, raw.event_id, "{}", self.fail("event id is not the record's"));
                // Not always the adapter's own: Twilio's Messaging API also carries WhatsApp.
                assert_ne!(event.channel, 0, "{}", self.fail("event without a channel"));
                events += 1;
            }
        }
        match expected {
            Expect::Event => assert!(events > 0, "{}", self.fail("no event (list it in no_event if that is right)")),
            Expect::NoEvent => assert_eq!(events, 0, "{}", self.fail("listed in no_event but gave an event")),
            Expect::Reply | Expect::NeedsEarlier => unreachable!("handled above"),
        }
    }

    fn normalize(&self, raw: &RawRecord) -> Option<ConversationEvent> {
        self.adapter
            .normalize(raw, &NoKnownEvents)
            .unwrap_or_else(|error| panic!("{}", self.fail(&format!("does not normalize: {error}"))))
    }

    /// Truncations and byte flips: signed properly, so they get past verification and reach the
    /// parsers; each must be refused or normalize, never panic.
    fn garbled(&self) {
        for variant in garbled_variants(self.body) {
            let delivery = signed(self.adapter, &self.account, self.content_type, &variant);
            let records = match try_records(self.adapter, &self.account, &delivery) {
                Ok(Some(records)) => records,
                Ok(None) | Err(_) => Vec::new(),
            };
            for raw in records {
                if let Err(error) = self.adapter.normalize(&raw, &NoKnownEvents) {
                    assert!(
                        matches!(error, NormalizeError::Malformed { .. }),
                        "{}",
                        self.fail(&error.to_string())
                    );
                }
            }
            // The stored records of the whole fixture with this variant as their payload: a
            // payload the gateway never stored must still be a clear error.
            if let Ok(Some(records)) = try_records(
                self.adapter,
                &self.account,
                &signed(self.adapter, &self.account, self.content_type, self.body),
            ) {
                for mut raw in records {
                    raw.payload.clone_from(&variant);
                    let _ = self.adapter.normalize(&raw, &NoKnownEvents);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::Telegram;
    use crate::{KnownEvents, Normalize};

    /// Telegram, but with a flaw the kit must find.
    struct Flawed {
        verifies: bool,
        deterministic: bool,
    }

    static ACCEPTS_ANYTHING: Flawed = Flawed {
        verifies: false,
        deterministic: true,
    };
    static NOT_DETERMINISTIC: Flawed = Flawed {
        verifies: true,
        deterministic: false,
    };

    impl Normalize for Flawed {
        fn provider(&self) -> &'static str {
            Telegram.provider()
        }

        fn folder(&self) -> &'static str {
            Telegram.folder()
        }

        fn normalize(&self, raw: &RawRecord, known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
            let mut event = Telegram.normalize(raw, known)?;
            if !self.deterministic
                && let Some(event) = event.as_mut()
            {
                static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                event.subject = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string();
            }
            Ok(event)
        }
    }

    impl WebhookAdapter for Flawed {
        fn channel(&self) -> omni_proto::v1::Channel {
            Telegram.channel()
        }

        fn id_channel(&self) -> &'static str {
            Telegram.id_channel()
        }

        fn development_account(&self) -> WebhookAccount {
            Telegram.development_account()
        }

        fn signature_headers(&self) -> &'static [&'static str] {
            Telegram.signature_headers()
        }

        fn sign(&self, account: &WebhookAccount, url: &str, content_type: &str, body: &[u8], now: SystemTime) -> webhook::Signed {
            Telegram.sign(account, url, content_type, body, now)
        }

        fn verify(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<(), Rejection> {
            if self.verifies { Telegram.verify(account, request) } else { Ok(()) }
        }

        fn accept(&self, account: &WebhookAccount, request: &WebhookRequest<'_>) -> Result<Accepted, Rejection> {
            Telegram.accept(account, request)
        }
    }

    #[test]
    #[should_panic(expected = "signed for another secret: expected 401/403")]
    fn an_adapter_that_accepts_any_signature_fails() {
        WebhookConformance::new(&ACCEPTS_ANYTHING)
            .no_event(&["callback-query.json", "new-chat-members.json"])
            .body_not_signed()
            .run();
    }

    #[test]
    #[should_panic(expected = "normalized twice, differently")]
    fn an_adapter_that_normalizes_differently_each_time_fails() {
        WebhookConformance::new(&NOT_DETERMINISTIC)
            .no_event(&["callback-query.json", "new-chat-members.json"])
            .body_not_signed()
            .run();
    }

    #[test]
    #[should_panic(expected = "listed in no_event but gave an event")]
    fn a_wrong_expectation_fails() {
        WebhookConformance::new(&Telegram)
            .no_event(&["callback-query.json", "new-chat-members.json", "message-tr.json"])
            .body_not_signed()
            .run();
    }
}
